//! Every "no" the gateway says goes through here: one reason type, one mapping to
//! status, stable code, log line and response body.
//!
//! Clients get a generic body (a small HTML page for browsers, JSON otherwise) with the
//! request id; the log line with the same request id carries the detail. Nothing here
//! prints secrets: reasons carry addresses, route ids and error kinds, never header
//! values, cookies or tokens.

use std::net::IpAddr;

use http::{HeaderValue, Response, StatusCode, Version, header};

use super::Body;
use super::path::PathError;

/// Who caused a failure (Pingora's error source): the client, the upstream, or us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The request was malformed or not allowed.
    Client,
    /// The upstream failed or was too slow.
    Upstream,
    /// The gateway itself could not serve the request.
    Internal,
}

/// Why a request stopped before (or instead of) reaching the upstream.
#[derive(Debug, thiserror::Error)]
pub enum Reject {
    /// Message framing the gateway will not relay (`Content-Length` with
    /// `Transfer-Encoding`, duplicate lengths, a transfer coding other than chunked).
    #[error("ambiguous message framing: {0}")]
    BadFraming(&'static str),
    /// The request target is longer than the configured bound.
    #[error("request target longer than {limit} bytes")]
    UriTooLong {
        /// The configured bound.
        limit: usize,
    },
    /// The path is ambiguously encoded.
    #[error("path refused: {0}")]
    AmbiguousPath(PathError),
    /// A request target form the gateway does not proxy (`CONNECT`, `OPTIONS *`).
    #[error("request target form not proxied")]
    UnsupportedTarget,
    /// No usable `Host`, several of them, or one that disagrees with the request target.
    #[error("missing or ambiguous host")]
    BadHost,
    /// No route is configured for this host.
    #[error("no route for host `{host}`")]
    UnknownHost {
        /// The requested host (already validated to host-name characters).
        host: String,
        /// 421 or 404, as configured.
        status: StatusCode,
    },
    /// The host is known but no route prefix matches the path.
    #[error("no route matches the path on host `{host}`")]
    NoRoute {
        /// The requested host.
        host: String,
    },
    /// A path under the reserved `/.portcullis/` prefix that is not an endpoint.
    #[error("unknown reserved endpoint")]
    ReservedPath,
    /// A trusted proxy sent an `X-Forwarded-For` the gateway cannot read.
    #[error("unreadable X-Forwarded-For from trusted proxy")]
    BadForwardedFor,
    /// The client address is not in an applicable allowlist.
    #[error("client ip `{ip}` not in the `{list}` allowlist")]
    IpNotAllowed {
        /// The client address the decision used.
        ip: IpAddr,
        /// Which list refused it (e.g. `route:wiki`).
        list: String,
    },
    /// A protected route was asked for without an authenticated principal.
    #[error("no authenticated principal for resource `{resource}`")]
    Unauthenticated {
        /// The route's Cedar resource entity.
        resource: String,
    },
    /// A browser without a session: send it to sign in, then back.
    #[error("sign-in required")]
    SignInRequired {
        /// The sign-in page with the return target.
        location: String,
    },
    /// The policy engine did not allow the request.
    #[error("denied by policy ({basis})")]
    Denied {
        /// What the deny rests on: no permit, a forbid, or an evaluation error.
        basis: String,
    },
    /// The upstream could not be reached or broke the exchange.
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),
    /// The upstream did not answer in time.
    #[error("upstream did not respond within the route's response timeout")]
    UpstreamTimeout,
    /// A forward-auth question from a peer that is not a trusted proxy.
    #[error("forward-auth asked by a peer that is not a trusted proxy")]
    UntrustedForwardAuth,
    /// A forward-auth question that does not describe a request.
    #[error("malformed forward-auth question: {0}")]
    BadForwardAuth(&'static str),
    /// The store could not be asked (credentials cannot be checked, so nobody passes).
    #[error("store unavailable")]
    StoreUnavailable,
    /// The gateway could not build the forwarded request.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Reject {
    /// Stable machine code for API clients, metrics and (later) the audit event.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::BadFraming(_) => "bad_framing",
            Reject::UriTooLong { .. } => "uri_too_long",
            Reject::AmbiguousPath(_) => "ambiguous_path",
            Reject::UnsupportedTarget => "unsupported_target",
            Reject::BadHost => "bad_host",
            Reject::UnknownHost { .. } => "unknown_host",
            Reject::NoRoute { .. } => "no_route",
            Reject::ReservedPath => "not_found",
            Reject::BadForwardedFor => "bad_forwarded_for",
            Reject::IpNotAllowed { .. } => "ip_not_allowed",
            Reject::Unauthenticated { .. } => "unauthenticated",
            Reject::Denied { .. } => "denied",
            Reject::SignInRequired { .. } => "sign_in_required",
            Reject::UpstreamUnavailable(_) => "upstream_unavailable",
            Reject::UpstreamTimeout => "upstream_timeout",
            Reject::StoreUnavailable => "unavailable",
            Reject::UntrustedForwardAuth => "untrusted_forward_auth",
            Reject::BadForwardAuth(_) => "bad_forward_auth",
            Reject::Internal(_) => "internal",
        }
    }

    /// The HTTP status the client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            Reject::BadFraming(_)
            | Reject::AmbiguousPath(_)
            | Reject::BadHost
            | Reject::BadForwardedFor
            | Reject::UnsupportedTarget
            | Reject::BadForwardAuth(_) => StatusCode::BAD_REQUEST,
            Reject::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Reject::UnknownHost { status, .. } => *status,
            Reject::NoRoute { .. } | Reject::ReservedPath => StatusCode::NOT_FOUND,
            Reject::IpNotAllowed { .. } | Reject::Denied { .. } | Reject::UntrustedForwardAuth => {
                StatusCode::FORBIDDEN
            }
            Reject::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Reject::SignInRequired { .. } => StatusCode::SEE_OTHER,
            Reject::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            Reject::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reject::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reject::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Who caused it.
    pub fn source(&self) -> ErrorSource {
        match self {
            Reject::UpstreamUnavailable(_) | Reject::UpstreamTimeout => ErrorSource::Upstream,
            Reject::Internal(_) | Reject::StoreUnavailable => ErrorSource::Internal,
            _ => ErrorSource::Client,
        }
    }

    /// Logs the reason with the request id and builds the generic response.
    pub fn into_response(self, request: &RequestMeta<'_>) -> Response<Body> {
        let status = self.status();
        let code = self.code();
        match self.source() {
            ErrorSource::Client => tracing::info!(
                request_id = %request.request_id, code, status = status.as_u16(), reason = %self, "request rejected"
            ),
            ErrorSource::Upstream => tracing::warn!(
                request_id = %request.request_id, code, status = status.as_u16(), reason = %self, "upstream failure"
            ),
            ErrorSource::Internal => tracing::error!(
                request_id = %request.request_id, code, status = status.as_u16(), reason = %self, "internal failure"
            ),
        }
        let close = matches!(self, Reject::BadFraming(_));
        let mut response = error_response(status, code, request, close);
        if let Reject::SignInRequired { location } = &self
            && let Ok(location) = HeaderValue::from_str(location)
        {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }
}

/// What the rejection path needs to know about the request.
pub struct RequestMeta<'a> {
    /// The request id, also sent to the upstream and written in logs.
    pub request_id: &'a str,
    /// Whether the client asked for HTML (a browser).
    pub wants_html: bool,
    /// The request's HTTP version.
    pub version: Version,
}

/// A generic error response for `status`, naming `code` and the request id.
pub fn error_response(
    status: StatusCode,
    code: &str,
    request: &RequestMeta<'_>,
    close: bool,
) -> Response<Body> {
    let (content_type, body) = if request.wants_html {
        let title = status.canonical_reason().unwrap_or("Error");
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status_code} {title}</title></head>\
                 <body><main><h1>{status_code} {title}</h1><p>The request could not be completed.</p>\
                 <p>Error code: <code>{code}</code><br>Request id: <code>{id}</code></p></main></body></html>\n",
                status_code = status.as_u16(),
                id = request.request_id,
            ),
        )
    } else {
        (
            "application/json",
            format!(
                "{{\"error\":\"{code}\",\"request_id\":\"{}\"}}\n",
                request.request_id
            ),
        )
    };
    let mut response = Response::new(super::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(id) = HeaderValue::from_str(request.request_id) {
        headers.insert("x-request-id", id);
    }
    if close && request.version < Version::HTTP_2 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Whether the `Accept` header prefers HTML (browsers send `text/html` first).
pub fn wants_html(accept: Option<&[u8]>) -> bool {
    accept.is_some_and(|value| memchr::memmem::find(value, b"text/html").is_some())
}
