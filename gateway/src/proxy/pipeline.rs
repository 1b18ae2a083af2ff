//! Runs the hot-path steps in order; the first "no" wins and becomes a [`Reject`].
//!
//! 1. framing and request-target checks; 2. reserved `/.portcullis/` endpoints;
//! 3. client IP; 4. host and canonical path → route; 5. IP allowlists;
//! 6. authentication for protected routes; 7. header hygiene and forwarding headers;
//! 8. the upstream exchange (streamed; WebSocket upgrades tunnelled).

mod forward_auth;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use http::{HeaderName, HeaderValue, Method, Response, StatusCode, Version, header};
use hyper_util::rt::TokioIo;
use portcullis_policy::Environment;

use super::allowlist::check_allowlists;
use super::authn::{Authenticator, ConnCredentials};
use super::authz::{Authorized, LastDecision, RequestFacts, authorize};
use super::headers::{
    ForwardedPeer, HeaderLines, UpstreamChain, sanitize_request, set_forwarding, set_identity,
    set_identity_headers,
};
use super::path::{CanonicalPath, PathError};
use super::reject::{Reject, RequestMeta, error_response, wants_html};
use super::request::{ClientRequest, Known, RequestHeaders};
use super::route::{LastHost, Route, RouteTable};
use super::upstream::{ResponseTimer, Tunnel, UpstreamError};
use super::{Body, RequestBody, full};
use crate::assertion::Assertions;
use crate::authz::ActivePolicy;
use crate::authz::bindings::StoreBindings;
use crate::clock;
use crate::config::{Access, Config};
use crate::crypto::{SecretBox, SigningKey};
use crate::login::LoginSetupError;
use crate::login::password::{PasswordError, PasswordHasher};
use crate::login::{LOGIN_PATH, Login, Origin};
use crate::net::client_ip::{ClientIp, TrustedProxies, client_ip};
use crate::net::framing::FramingFlag;
use crate::net::idle::{ActivityIo, until_idle};
use crate::ops::metrics;
use crate::session::{SessionMemo, Sessions};
use crate::store::{SessionHash, Store, WorkspaceId};

/// The reserved prefix for the gateway's own endpoints, on every host.
pub const RESERVED_PREFIX: &str = "/.portcullis/";

/// Everything the hot path reads, built once from the configuration.
pub struct Gateway {
    policy: Arc<ActivePolicy>,
    bindings: StoreBindings,
    assertions: Assertions,
    authenticator: Authenticator,
    login: Option<Login>,
    environment: Environment,
    routes: RouteTable,
    trusted: TrustedProxies,
    strip_headers: Vec<HeaderName>,
    reject_path_parameters: bool,
    max_uri_bytes: usize,
    idle_timeout: std::time::Duration,
    draining: AtomicBool,
}

/// Why the hot-path state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// An upstream client could not be built.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The password hasher's parameters are invalid.
    #[error(transparent)]
    Passwords(#[from] PasswordError),
    /// Email codes or single sign-on could not be set up.
    #[error(transparent)]
    Login(#[from] LoginSetupError),
}

/// What the gateway knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Raised when an HTTP/1.1 head on this connection had ambiguous framing.
    pub framing: FramingFlag,
    /// The peer as the forwarding headers write it.
    pub forwarded: ForwardedPeer,
    /// The upstream response deadline its requests reuse.
    pub response_timer: Arc<ResponseTimer>,
    /// What its last authenticated requests presented.
    pub credentials: Arc<ConnCredentials>,
    /// The last decision its requests got, with what it was made from.
    pub last_decision: Arc<LastDecision>,
    /// The host its last request named.
    pub last_host: Arc<LastHost>,
}

impl ConnInfo {
    /// What a connection from `peer` is known by.
    pub fn new(peer: SocketAddr, tls: bool, framing: FramingFlag) -> ConnInfo {
        ConnInfo {
            peer,
            tls,
            framing,
            forwarded: ForwardedPeer::new(peer.ip()),
            response_timer: Arc::default(),
            credentials: Arc::default(),
            last_decision: Arc::default(),
            last_host: Arc::default(),
        }
    }
}

impl Gateway {
    /// Builds the hot-path state (route table and upstream clients) from a configuration
    /// and the active policy.
    pub fn new(
        config: &Config,
        policy: Arc<ActivePolicy>,
        store: Store,
        secrets: Arc<dyn SecretBox>,
        signing: SigningKey,
    ) -> Result<Gateway, GatewayError> {
        let (sessions, login) = match config.login {
            None => (None, None),
            Some(login_config) => {
                // By default half the cores hash passwords, so a login storm leaves
                // the other half to proxied traffic (with every core hashing, even at
                // the lowest priority, proxied p99 on a 2-core machine went from 0.3
                // to 3-6 ms; with one, to 2-3 ms, what the storm does to a plain nginx
                // there).
                let cores = std::thread::available_parallelism().map_or(2, usize::from);
                let threads = config.password_threads.unwrap_or((cores / 2).max(1));
                let hasher = PasswordHasher::new(config.passwords, threads)?;
                let sessions = Arc::new(Sessions::new(store.clone()));
                let login = Login::new(
                    store.clone(),
                    Arc::clone(&sessions),
                    hasher,
                    secrets,
                    login_config,
                    config.sessions,
                )
                .configure(config, &|name| std::env::var(name).ok())?;
                (Some(sessions), Some(login))
            }
        };
        Ok(Gateway {
            policy,
            bindings: StoreBindings::new(store.clone()),
            assertions: Assertions::new(signing),
            login,
            authenticator: Authenticator::new(store, sessions),
            environment: config.policy.environment,
            routes: RouteTable::build(&config.routes, config.unknown_host_status, config.workers)?,
            trusted: TrustedProxies::new(config.trusted_proxies.clone()),
            strip_headers: config.strip_headers.clone(),
            reject_path_parameters: config.reject_path_parameters,
            max_uri_bytes: config.limits.max_uri_bytes,
            idle_timeout: config.limits.idle_timeout,
            draining: AtomicBool::new(false),
        })
    }

    /// Marks the gateway as draining: readiness turns 503 so load balancers move away.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The policy revision in force.
    pub fn policy_revision(&self) -> String {
        self.policy.revision()
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// What the lines the gateway adds to a request take besides the identity lines
/// (forwarding, request id, roles), so their buffer is allocated once.
const ADDED_LINES_BYTES: usize = 512;

/// The header that tells the upstream the request id.
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-portcullis-request-id");

/// A request id: 64 random bits as 16 lower-case hex digits, kept on the stack.
struct RequestId([u8; 16]);

impl RequestId {
    fn random() -> RequestId {
        let value = rand::random::<u64>();
        let mut digits = [b'0'; 16];
        for (place, digit) in digits.iter_mut().rev().enumerate() {
            let nibble = (value >> (4 * place)) & 0xf;
            *digit =
                char::from_digit(u32::try_from(nibble).unwrap_or(0), 16).map_or(b'0', |c| c as u8);
        }
        RequestId(digits)
    }

    fn as_str(&self) -> &str {
        // Always ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or("0000000000000000")
    }
}

/// Serves one request from a client connection.
pub async fn handle(gateway: &Gateway, conn: &ConnInfo, request: ClientRequest) -> Response<Body> {
    let started = clock::monotonic_now();
    let request_id = RequestId::random();
    let meta = RequestMeta {
        request_id: request_id.as_str(),
        wants_html: wants_html(request.headers.get(Known::Accept)),
        version: request.version,
    };
    let mut route = None;
    let result = proxy(gateway, conn, &meta, request, &mut route).await;
    let (response, outcome) = match result {
        Ok(response) => (response, metrics::PROXIED),
        Err(reject) => {
            let code = reject.code();
            (reject.into_response(&meta), code)
        }
    };
    match route {
        Some(route) => route.metrics.record(outcome, started.elapsed()),
        None => metrics::record_request("-", outcome, started.elapsed()),
    }
    response
}

async fn proxy<'g>(
    gateway: &'g Gateway,
    conn: &ConnInfo,
    meta: &RequestMeta<'_>,
    request: ClientRequest,
    route_found: &mut Option<&'g Route>,
) -> Result<Response<Body>, Reject> {
    if conn.framing.is_ambiguous() {
        return Err(Reject::BadFraming(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    // A head the gateway's own HTTP/1.1 server served (no body) was refused there for
    // everything this refuses (`net::http1`, whose tests pin it).
    if !matches!(request.body, RequestBody::Empty) {
        check_framing(request.version, &request.headers)?;
    }
    if request.method == Method::CONNECT || request.uri.path() == "*" {
        return Err(Reject::UnsupportedTarget);
    }
    let target_len = request
        .uri
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if target_len > gateway.max_uri_bytes {
        return Err(Reject::UriTooLong {
            limit: gateway.max_uri_bytes,
        });
    }
    let path = CanonicalPath::parse(request.uri.path(), gateway.reject_path_parameters).map_err(
        |err| match err {
            PathError::NotOriginForm => Reject::UnsupportedTarget,
            other => Reject::AmbiguousPath(other),
        },
    )?;
    if path.as_str() == forward_auth::FORWARD_AUTH_PATH && request.method == Method::GET {
        return forward_auth::check(gateway, conn, meta, &request).await;
    }
    let reserved = path.as_str() == "/.portcullis" || path.as_str().starts_with(RESERVED_PREFIX);
    let is_login_path = crate::login::is_login_path(path.as_str());
    if reserved && !(is_login_path && gateway.login.is_some()) {
        return reserved_endpoint(gateway, &path, meta);
    }

    let client = client_ip(conn.peer.ip(), &request.headers, &gateway.trusted)?;
    let host = conn.last_host.request_host(
        request.uri.authority(),
        request.headers.get_all(Known::Host),
    )?;
    if let (true, Some(login)) = (reserved, &gateway.login) {
        // Behind a TLS-terminating trusted proxy the browser's origin is https even
        // though this hop is plain HTTP.
        let forwarded_https = gateway.trusted.contains(conn.peer.ip().to_canonical())
            && request
                .headers
                .get(Known::XForwardedProto)
                .is_some_and(|proto| proto.eq_ignore_ascii_case(b"https"));
        let scheme = if conn.tls || forwarded_https {
            "https"
        } else {
            "http"
        };
        let origin = Origin {
            client,
            expected_origin: format!("{scheme}://{}", host.raw()),
        };
        // Boxed: the sign-in flows' futures are many kilobytes, and unboxed they would
        // make every proxied request's future as large (hyper moves it on each
        // request; callgrind counted 20k instructions of memcpy).
        let request = request.into_http();
        return Ok(Box::pin(login.handle(path.as_str(), request, &origin)).await);
    }
    let route = gateway.routes.lookup(host.name(), &path)?;
    *route_found = Some(route);
    check_allowlists(client, route.allowlist.as_ref())?;
    let authorized = if route.access == Access::Protected {
        // One reading of the wall clock serves the session check, the decision's
        // context and the assertion.
        let now = clock::system_now();
        let authorized = check_access(
            gateway,
            conn,
            route,
            &request.headers,
            &request.method,
            client,
            now,
        )
        .await
        .map_err(|reject| sign_in_instead(gateway, reject, &request, meta))?;
        Some((authorized, now))
    } else {
        None
    };

    let websocket = route.websocket && is_websocket_upgrade(&request);
    let ClientRequest {
        method,
        uri,
        mut headers,
        body,
        upgrade,
        ..
    } = request;
    let client_upgrade = if websocket { upgrade } else { None };
    let chain = if gateway.trusted.contains(conn.peer.ip().to_canonical()) {
        UpstreamChain::capture(&headers)
    } else {
        UpstreamChain::default()
    };
    // The identity lines come ready, prepared once for the principal on this route.
    let identity = match &authorized {
        Some((authorized, now)) => Some(
            gateway
                .assertions
                .for_request(authorized.principal(), &route.id, *now)
                .await,
        ),
        None => None,
    };
    // What the gateway adds goes beside the client's headers, ready to write, in one
    // buffer sized for it (the identity lines and their assertion are most of it).
    let identity_bytes = identity
        .as_ref()
        .map_or(0, |identity| identity.lines().as_bytes().len());
    let mut added = HeaderLines::with_capacity(ADDED_LINES_BYTES + identity_bytes);
    sanitize_request(&mut headers, &gateway.strip_headers, &mut added);
    let proto = if conn.tls { "https" } else { "http" };
    set_forwarding(&mut added, chain, &conn.forwarded, proto, host.raw());
    if let (Some((authorized, _)), Some(identity)) = (&authorized, &identity) {
        set_identity(&mut added, &mut headers, authorized, identity);
    }
    forwarded_host(&mut headers, &mut added, route, host.raw())?;
    added.push_text(&REQUEST_ID_HEADER, meta.request_id);
    if websocket {
        added.push(&header::CONNECTION, &HeaderValue::from_static("upgrade"));
        added.push(&header::UPGRADE, &HeaderValue::from_static("websocket"));
    }
    let response = route
        .upstream
        .send(
            &method,
            uri.query(),
            &headers,
            &added,
            body,
            &path,
            &conn.response_timer,
        )
        .await?;

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(Reject::UpstreamUnavailable(
                "upstream switched protocols unasked".into(),
            ));
        };
        let (mut parts, mut body) = response.into_parts();
        // The upstream's 101 headers (`Sec-WebSocket-Accept`, …) go to the client.
        if let Some(upstream_headers) = body.take_headers() {
            parts.headers = upstream_headers.to_map();
        }
        let Some(upstream) = body.into_tunnel() else {
            return Err(Reject::Internal("a 101 response without its connection"));
        };
        // A tunnel opened under a session closes when the session ends.
        let watch = authorized
            .as_ref()
            .and_then(|(authorized, _)| authorized.principal().session())
            .zip(gateway.authenticator.sessions())
            .map(|((workspace, hash), sessions)| SessionWatch {
                sessions: Arc::clone(sessions),
                workspace,
                hash: hash.clone(),
            });
        spawn_tunnel(
            client_upgrade,
            upstream,
            gateway.idle_timeout,
            watch,
            meta.request_id.to_owned(),
        );
        // The response head came without hop-by-hop headers (`upstream::codec`).
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts
            .headers
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return Ok(Response::from_parts(parts, full("")));
    }
    // Hop-by-hop headers were left out when the head was parsed (`upstream::codec`).
    Ok(response.map(Body::Upstream))
}

/// Authenticates the caller of a protected route (session cookie or API token in
/// `headers`) and asks the policy whether `method` on the route is allowed for them
/// from `client`. Shared by the proxy and the forward-auth endpoint.
pub(super) async fn check_access(
    gateway: &Gateway,
    conn: &ConnInfo,
    route: &Route,
    headers: &RequestHeaders,
    method: &Method,
    client: ClientIp,
    now: SystemTime,
) -> Result<Authorized, Reject> {
    let principal = gateway
        .authenticator
        .authenticate(headers, &conn.credentials, route, now)
        .await?;
    let snapshot = gateway.policy.snapshot();
    let remembered = principal.session_memo().and_then(SessionMemo::bindings);
    let store_bindings = match (remembered, principal.stored()) {
        (Some(remembered), _) => Some(remembered),
        (None, Some((user, workspace))) => {
            let bindings = gateway
                .bindings
                .of(workspace, user, snapshot.directory())
                .await
                .map_err(|err| {
                    tracing::error!(error = %err, "role binding lookup failed");
                    Reject::StoreUnavailable
                })?;
            // A signed-in browser's next requests find them with its session.
            if let Some(memo) = principal.session_memo() {
                memo.remember_bindings(&bindings);
            }
            Some(bindings)
        }
        (None, None) => None,
    };
    let facts = RequestFacts {
        method,
        client,
        environment: gateway.environment,
        now,
    };
    authorize(
        &snapshot,
        store_bindings.as_ref(),
        principal,
        route,
        facts,
        &conn.last_decision,
    )
}

/// A browser that is not signed in is sent to the sign-in page (and back afterwards)
/// rather than shown an error; API clients keep the 401.
fn sign_in_instead(
    gateway: &Gateway,
    reject: Reject,
    request: &ClientRequest,
    meta: &RequestMeta<'_>,
) -> Reject {
    let browser_read = meta.wants_html && matches!(request.method, Method::GET | Method::HEAD);
    if !matches!(reject, Reject::Unauthenticated { .. }) || !browser_read || gateway.login.is_none()
    {
        return reject;
    }
    let return_to = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", return_to)
        .finish();
    Reject::SignInRequired {
        location: format!("{LOGIN_PATH}?{query}"),
    }
}

/// Refuses framing a smuggling attack relies on: `Content-Length` together with
/// `Transfer-Encoding`, several or list-valued lengths, a transfer coding other than
/// exactly `chunked`, and any transfer coding on HTTP/1.0.
pub(crate) fn check_framing(version: Version, headers: &RequestHeaders) -> Result<(), Reject> {
    // Read through the iterators (no collecting).
    let mut lengths = headers.get_all(Known::ContentLength);
    let mut codings = headers.get_all(Known::TransferEncoding);
    let (length, coding) = (lengths.next(), codings.next());
    if length.is_some() && coding.is_some() {
        return Err(Reject::BadFraming(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if lengths.next().is_some() {
        return Err(Reject::BadFraming("more than one Content-Length"));
    }
    if let Some(length) = length
        && (length.is_empty() || !length.iter().all(u8::is_ascii_digit))
    {
        return Err(Reject::BadFraming("Content-Length is not a single number"));
    }
    if let Some(coding) = coding {
        if version == Version::HTTP_10 {
            return Err(Reject::BadFraming("Transfer-Encoding on HTTP/1.0"));
        }
        if codings.next().is_some() || !coding.eq_ignore_ascii_case(b"chunked") {
            return Err(Reject::BadFraming(
                "Transfer-Encoding other than exactly `chunked`",
            ));
        }
    }
    Ok(())
}

fn reserved_endpoint(
    gateway: &Gateway,
    path: &CanonicalPath,
    meta: &RequestMeta<'_>,
) -> Result<Response<Body>, Reject> {
    match path.as_str() {
        "/.portcullis/jwks.json" => Ok(json_response(
            StatusCode::OK,
            gateway.assertions.jwks().to_owned(),
        )),
        "/.portcullis/health" => Ok(json_response(StatusCode::OK, health_body(gateway, "ok"))),
        "/.portcullis/ready" if gateway.is_draining() => Ok(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            meta,
            false,
        )),
        "/.portcullis/ready" => Ok(json_response(StatusCode::OK, health_body(gateway, "ready"))),
        _ => Err(Reject::ReservedPath),
    }
}

/// `{"status":…,"policy_revision":…}`: probes also tell which bundle is in force.
pub fn health_body(gateway: &Gateway, status: &str) -> String {
    serde_json::json!({ "status": status, "policy_revision": gateway.policy_revision() })
        .to_string()
        + "\n"
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The `Host` the upstream sees: the client's (the default, so apps build correct
/// links) or, with `preserve_host = false`, the upstream's own authority.
fn forwarded_host(
    headers: &mut RequestHeaders,
    added: &mut HeaderLines,
    route: &Route,
    raw_host: &str,
) -> Result<(), Reject> {
    if route.preserve_host {
        // An HTTP/1.1 client's `Host` is already the one to pass on.
        if headers.get(Known::Host) == Some(raw_host.as_bytes()) {
            return Ok(());
        }
        headers.remove(Known::Host);
        if !added.push_text(&header::HOST, raw_host) {
            return Err(Reject::BadHost);
        }
    } else {
        headers.remove(Known::Host);
        added.push(&header::HOST, route.upstream.host());
    }
    Ok(())
}

fn is_websocket_upgrade(request: &ClientRequest) -> bool {
    let headers = &request.headers;
    request.version == Version::HTTP_11
        && request.method == Method::GET
        && headers
            .get_all(Known::Connection)
            .filter(|value| std::str::from_utf8(value).is_ok())
            .flat_map(|value| value.split(|&byte| byte == b','))
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        && headers
            .get(Known::Upgrade)
            .is_some_and(|value| value.eq_ignore_ascii_case(b"websocket"))
}

/// The session a tunnel was opened under.
struct SessionWatch {
    sessions: Arc<Sessions>,
    workspace: WorkspaceId,
    hash: SessionHash,
}

/// How often an open tunnel re-checks its session.
const SESSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves when the watched session is no longer live (never without a session).
async fn session_ended(watch: Option<&SessionWatch>) {
    let Some(watch) = watch else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(SESSION_RECHECK).await;
        let now = time::OffsetDateTime::from(clock::system_now());
        if !watch
            .sessions
            .is_live(watch.workspace, &watch.hash, now)
            .await
        {
            return;
        }
    }
}

fn spawn_tunnel(
    client: hyper::upgrade::OnUpgrade,
    mut upstream: Tunnel,
    idle_timeout: std::time::Duration,
    watch: Option<SessionWatch>,
    request_id: String,
) {
    tokio::spawn(async move {
        let client = match client.await {
            Ok(client) => client,
            Err(err) => {
                tracing::debug!(request_id, error = %err, "websocket upgrade did not complete");
                return;
            }
        };
        let mut client = ActivityIo::new(TokioIo::new(client));
        let activity = client.activity();
        tokio::select! {
            result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(err) = result {
                    tracing::debug!(request_id, error = %err, "websocket tunnel closed with error");
                }
            }
            () = until_idle(&activity, idle_timeout) => {
                tracing::debug!(request_id, "websocket tunnel idle; closing");
            }
            () = session_ended(watch.as_ref()) => {
                tracing::info!(request_id, "session ended; closing its websocket");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, Version, header};

    use super::{RequestId, check_framing};

    #[test]
    fn request_ids_are_sixteen_hex_digits_and_differ() {
        let first = RequestId::random();
        let second = RequestId::random();
        for id in [&first, &second] {
            assert_eq!(id.as_str().len(), 16);
            assert!(
                id.as_str()
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            );
        }
        assert_ne!(first.as_str(), second.as_str());
    }

    fn check(version: Version, pairs: &[(&str, &str)]) -> String {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            if let (Ok(name), Ok(value)) = (
                name.parse::<header::HeaderName>(),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        match check_framing(
            version,
            &crate::proxy::request::RequestHeaders::from_map(&headers),
        ) {
            Ok(()) => "ok".into(),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn framing_rules() {
        let v11 = Version::HTTP_11;
        assert_eq!(check(v11, &[("content-length", "5")]), "ok");
        assert_eq!(check(v11, &[("transfer-encoding", "chunked")]), "ok");
        assert_eq!(check(v11, &[("transfer-encoding", "Chunked")]), "ok");
        assert_eq!(
            check(
                v11,
                &[("content-length", "5"), ("transfer-encoding", "chunked")]
            ),
            "ambiguous message framing: both Content-Length and Transfer-Encoding"
        );
        assert_eq!(
            check(v11, &[("content-length", "5"), ("content-length", "5")]),
            "ambiguous message framing: more than one Content-Length"
        );
        assert_eq!(
            check(v11, &[("content-length", "5, 5")]),
            "ambiguous message framing: Content-Length is not a single number"
        );
        assert_eq!(
            check(v11, &[("transfer-encoding", "gzip, chunked")]),
            "ambiguous message framing: Transfer-Encoding other than exactly `chunked`"
        );
        assert_eq!(
            check(
                v11,
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked")
                ]
            ),
            "ambiguous message framing: Transfer-Encoding other than exactly `chunked`"
        );
        assert_eq!(
            check(Version::HTTP_10, &[("transfer-encoding", "chunked")]),
            "ambiguous message framing: Transfer-Encoding on HTTP/1.0"
        );
    }
}
