//! Header hygiene: what the upstream is told, and what it must never be told by a client.
//!
//! Order matters and is fixed here: first the headers named in `Connection` and the
//! hop-by-hop set go; then every client-supplied header in the gateway's namespace
//! (`X-Portcullis-*`, `X-Forwarded-*`, `Forwarded`, `X-Real-IP` and any configured
//! identity header, compared after lower-casing and mapping `_` to `-`, because
//! WSGI/PHP upstreams treat `X_Forwarded_For` as `X-Forwarded-For`); only then are the
//! gateway's own forwarding headers set. A `Connection` token can therefore neither
//! remove a header the gateway sets nor smuggle one past the filter.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::authz::Authorized;
use super::request::{Known, RequestHeaders};
use crate::api_token;
use crate::assertion::UpstreamIdentity;
use crate::session::cookie_pairs;

// Header names the gateway writes, built at compile time rather than parsed per use.
/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_PORTCULLIS_USER: HeaderName = HeaderName::from_static("x-portcullis-user");
const X_PORTCULLIS_EMAIL: HeaderName = HeaderName::from_static("x-portcullis-email");
const X_PORTCULLIS_AUTH_METHOD: HeaderName = HeaderName::from_static("x-portcullis-auth-method");
const X_PORTCULLIS_ROLES: HeaderName = HeaderName::from_static("x-portcullis-roles");
const X_PORTCULLIS_WORKSPACE: HeaderName = HeaderName::from_static("x-portcullis-workspace");
const X_PORTCULLIS_ASSERTION: HeaderName = HeaderName::from_static("x-portcullis-assertion");

/// Name prefixes the gateway owns towards upstreams.
const RESERVED_PREFIXES: [&str; 2] = ["x-portcullis-", "x-forwarded-"];
/// Exact names the gateway owns towards upstreams.
const RESERVED_NAMES: [&str; 2] = ["forwarded", "x-real-ip"];
/// The prefix of the gateway's own cookies (session, CSRF).
const GATEWAY_COOKIE_PREFIX: &str = "__Host-portcullis";

/// Whether a client-sent header named `name` must be dropped before forwarding.
/// Names are compared after lower-casing and mapping `_` to `-`, without allocating:
/// this runs for every header of every request.
pub fn is_reserved(name: &[u8], extra: &[HeaderName]) -> bool {
    RESERVED_PREFIXES.iter().any(|prefix| {
        name.get(..prefix.len())
            .is_some_and(|head| normalised_eq(head, prefix.as_bytes()))
    }) || RESERVED_NAMES
        .iter()
        .any(|reserved| normalised_eq(name, reserved.as_bytes()))
        || extra
            .iter()
            .any(|reserved| normalised_eq(name, reserved.as_str().as_bytes()))
}

/// Whether `name`, lower-cased with `_` read as `-`, is exactly `reserved`.
fn normalised_eq(name: &[u8], reserved: &[u8]) -> bool {
    name.len() == reserved.len()
        && name.iter().zip(reserved).all(|(&byte, &want)| {
            let byte = if byte == b'_' {
                b'-'
            } else {
                byte.to_ascii_lowercase()
            };
            byte == want
        })
}

/// Removes hop-by-hop headers (including those named in `Connection`), every
/// client-supplied header in the gateway's namespace (and those in `extra`), and the
/// gateway's own cookies. A `Cookie` line that also carries the client's own cookies
/// is replaced by one without the gateway's, written into `added`.
pub fn sanitize_request(
    headers: &mut RequestHeaders,
    extra: &[HeaderName],
    added: &mut HeaderLines,
) {
    // The names were classified when the head was read: most requests carry no
    // hop-by-hop header and nothing in the gateway's namespace.
    let (mut hop_by_hop, mut cookie, mut reserved) = (false, false, !extra.is_empty());
    for field in headers.fields() {
        hop_by_hop |= field.is_hop_by_hop();
        cookie |= field.known() == Known::Cookie;
        reserved |= field.is_reserved();
    }
    if hop_by_hop {
        headers.drop_hop_by_hop();
    }
    if cookie {
        strip_gateway_cookies(headers, added);
    }
    if reserved {
        headers.drop_where(|name, field| field.is_reserved() || is_reserved(name, extra));
    }
}

/// Removes `__Host-portcullis*` cookies (session, CSRF) from `Cookie` headers: they
/// prove things to the gateway and are none of the upstream's business.
fn strip_gateway_cookies(headers: &mut RequestHeaders, added: &mut HeaderLines) {
    let (mut ours, mut theirs) = (false, false);
    for pair in headers.get_all(Known::Cookie).flat_map(cookie_pairs) {
        if pair.starts_with(GATEWAY_COOKIE_PREFIX.as_bytes()) {
            ours = true;
        } else {
            theirs = true;
        }
    }
    if !ours {
        return;
    }
    if theirs {
        // Each line is passed on without the gateway's pairs (HTTP/2 clients may send
        // several lines).
        for value in headers.get_all(Known::Cookie) {
            let Ok(text) = std::str::from_utf8(value) else {
                // Not text: cannot be filtered pair by pair, so it is not forwarded.
                continue;
            };
            let kept: Vec<&str> = cookie_pairs(text.as_bytes())
                .filter(|pair| !pair.starts_with(GATEWAY_COOKIE_PREFIX.as_bytes()))
                .filter_map(|pair| std::str::from_utf8(pair).ok())
                .collect();
            if !kept.is_empty() {
                added.push_text(&header::COOKIE, &kept.join("; "));
            }
        }
    }
    headers.remove(Known::Cookie);
}

/// Whether `name`, in any case, is a hop-by-hop header (one of the fixed set; the
/// upstream response parser also drops the names `Connection` lists).
pub fn is_hop_by_hop_name(name: &[u8]) -> bool {
    // By length first: this runs for every header of every response.
    let is = |wanted: &[u8]| name.eq_ignore_ascii_case(wanted);
    match name.len() {
        2 => is(b"te"),
        7 => is(b"trailer") || is(b"upgrade"),
        10 => is(b"connection") || is(b"keep-alive"),
        16 => is(b"proxy-connection"),
        17 => is(b"transfer-encoding"),
        18 => is(b"proxy-authenticate"),
        19 => is(b"proxy-authorization"),
        _ => false,
    }
}

/// Header lines the gateway adds to a forwarded request, in wire form
/// (`name: value\r\n`), written by the upstream encoder after the client's headers.
///
/// They are kept apart from the client's lines (`proxy::request`, from which hygiene
/// only ever drops lines) because most of them are the same from one request to the
/// next (a connection's forwarding lines, a session's identity lines) and are
/// prepared once. Lines are only ever made from a `HeaderName` and a value
/// `HeaderValue` accepts (a checked text, or a client's value, which is one), so none
/// can hold a CR, LF or NUL of its own; the client's lines of a name the gateway
/// writes (its namespace, `Host`, `Cookie`) are dropped first, so no name appears twice.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderLines(Vec<u8>);

impl HeaderLines {
    /// Room for `bytes` of lines.
    pub fn with_capacity(bytes: usize) -> HeaderLines {
        HeaderLines(Vec::with_capacity(bytes))
    }

    /// Adds `name: value`.
    pub fn push(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.push_raw(name, value.as_bytes());
    }

    /// Adds `name: value` if `value` is text a header may carry (visible ASCII, space,
    /// tab); otherwise adds nothing and says so.
    pub fn push_text(&mut self, name: &HeaderName, value: &str) -> bool {
        let fits = is_header_text(value);
        if fits {
            self.push_raw(name, value.as_bytes());
        }
        fits
    }

    /// Adds `name: a,b,c` for the items that are header text (others are left out).
    fn push_list(&mut self, name: &HeaderName, items: &[String]) {
        self.0.extend_from_slice(name.as_str().as_bytes());
        self.0.extend_from_slice(b": ");
        let mut first = true;
        for item in items.iter().filter(|item| is_header_text(item)) {
            if !first {
                self.0.push(b',');
            }
            first = false;
            self.0.extend_from_slice(item.as_bytes());
        }
        self.0.extend_from_slice(b"\r\n");
    }

    fn push_raw(&mut self, name: &HeaderName, value: &[u8]) {
        self.0.extend_from_slice(name.as_str().as_bytes());
        self.0.extend_from_slice(b": ");
        self.0.extend_from_slice(value);
        self.0.extend_from_slice(b"\r\n");
    }

    /// Adds every line of `other`.
    pub fn append(&mut self, other: &HeaderLines) {
        self.0.extend_from_slice(&other.0);
    }

    /// The lines as they go on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The lines as name and value pairs.
    #[cfg(test)]
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let text = std::str::from_utf8(&self.0).unwrap_or_default();
        text.split_terminator("\r\n")
            .filter_map(|line| line.split_once(": "))
    }
}

/// Whether `value` is text a header may carry: visible ASCII, space and tab (what
/// `HeaderValue::to_str` accepts).
pub fn is_header_text(value: &str) -> bool {
    value
        .bytes()
        .all(|byte| byte == b'\t' || (b' '..=b'~').contains(&byte))
}

/// The identity lines that stay the same for a principal on a route (prepared once
/// with the assertion): user, email, sign-in method, workspace, assertion.
pub fn identity_lines(identity: &UpstreamIdentity) -> HeaderLines {
    let mut lines = HeaderLines::with_capacity(
        identity
            .assertion()
            .map_or(0, HeaderValue::len)
            .saturating_add(256),
    );
    for (name, value) in identity_values(identity) {
        lines.push(&name, value);
    }
    lines
}

fn identity_values(
    identity: &UpstreamIdentity,
) -> impl Iterator<Item = (HeaderName, &HeaderValue)> {
    [
        (X_PORTCULLIS_USER, identity.user()),
        (X_PORTCULLIS_EMAIL, identity.email()),
        (X_PORTCULLIS_AUTH_METHOD, identity.auth_method()),
        (X_PORTCULLIS_WORKSPACE, identity.workspace()),
        (X_PORTCULLIS_ASSERTION, identity.assertion()),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
}

/// Adds the identity of an authorized request to `lines` and removes the gateway's
/// own credential from `headers`: the upstream learns who, never the token that proved
/// it. The lines come ready from `identity`; only the roles, which the decision gave,
/// are written here.
pub fn set_identity(
    lines: &mut HeaderLines,
    headers: &mut RequestHeaders,
    authorized: &Authorized,
    identity: &UpstreamIdentity,
) {
    remove_gateway_bearer(headers);
    lines.append(identity.lines());
    lines.push_list(&X_PORTCULLIS_ROLES, authorized.roles());
}

/// The same identity as [`set_identity`], as headers of a response (the forward-auth
/// endpoint's answer, which the front proxy copies onto its request).
pub fn set_identity_headers(
    headers: &mut HeaderMap,
    authorized: &Authorized,
    identity: &UpstreamIdentity,
) {
    for (name, value) in identity_values(identity) {
        headers.insert(name, value.clone());
    }
    insert_owned(headers, X_PORTCULLIS_ROLES, authorized.roles().join(","));
}

fn remove_gateway_bearer(headers: &mut RequestHeaders) {
    if headers
        .get(Known::Authorization)
        .is_some_and(api_token::is_portcullis_bearer)
    {
        headers.remove(Known::Authorization);
    }
}

/// What a trusted proxy in front of us already said, captured before sanitising.
#[derive(Debug, Default)]
pub struct UpstreamChain {
    forwarded_for: Option<String>,
    forwarded: Option<String>,
    proto: Option<Bytes>,
    host: Option<Bytes>,
}

impl UpstreamChain {
    /// Whether no trusted proxy said anything (or none was asked).
    fn is_empty(&self) -> bool {
        self.forwarded_for.is_none()
            && self.forwarded.is_none()
            && self.proto.is_none()
            && self.host.is_none()
    }

    /// Reads the forwarding headers of a request from a trusted proxy.
    pub fn capture(headers: &RequestHeaders) -> UpstreamChain {
        // One pass over the names first: most requests carry none of them.
        let forwarding = [
            Known::XForwardedFor,
            Known::Forwarded,
            Known::XForwardedProto,
            Known::XForwardedHost,
        ];
        if !headers
            .fields()
            .any(|field| forwarding.contains(&field.known()))
        {
            return UpstreamChain::default();
        }
        let join = |known: Known| {
            let parts: Vec<&str> = headers
                .get_all(known)
                .filter_map(|value| std::str::from_utf8(value).ok())
                .collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        };
        UpstreamChain {
            forwarded_for: join(Known::XForwardedFor),
            forwarded: join(Known::Forwarded),
            proto: headers
                .get(Known::XForwardedProto)
                .map(|value| headers.value_bytes(value)),
            host: headers
                .get(Known::XForwardedHost)
                .map(|value| headers.value_bytes(value)),
        }
    }
}

/// A client address as the forwarding headers write it, formatted once per
/// connection rather than once per request.
#[derive(Debug, Clone)]
pub struct ForwardedPeer {
    /// The address, as an `X-Forwarded-For` element.
    address: HeaderValue,
    /// The address as a `Forwarded` node: `for=192.0.2.1` or `for="[2001:db8::1]"`
    /// (shared: a connection's requests each clone it).
    node: Arc<str>,
    /// The forwarding lines last written without a chain before them, with the host
    /// and protocol they were for: a connection's requests nearly always name one
    /// host, so they share one set of lines instead of each formatting and checking it.
    last: Arc<Mutex<Option<LastForwarded>>>,
}

#[derive(Debug)]
struct LastForwarded {
    host: String,
    proto: &'static str,
    lines: HeaderLines,
}

impl ForwardedPeer {
    /// The forwarding texts for `peer` (an IPv4-mapped IPv6 address is written as IPv4).
    pub fn new(peer: IpAddr) -> ForwardedPeer {
        let peer = peer.to_canonical();
        let text = peer.to_string();
        let node = if peer.is_ipv4() {
            format!("for={text}")
        } else {
            format!("for=\"[{text}]\"")
        };
        ForwardedPeer {
            address: HeaderValue::from_maybe_shared(Bytes::from(text))
                .unwrap_or(HeaderValue::from_static("unknown")),
            node: node.into(),
            last: Arc::default(),
        }
    }

    /// Adds the forwarding lines for this peer alone (no trusted proxy before it),
    /// reaching `host` over `proto`.
    fn push_alone(&self, lines: &mut HeaderLines, host: &str, proto: &'static str) {
        if let Ok(last) = self.last.lock()
            && let Some(last) = last.as_ref()
            && last.proto == proto
            && last.host == host
        {
            lines.append(&last.lines);
            return;
        }
        let mut alone = HeaderLines::with_capacity(host.len() * 2 + 128);
        push_forwarding(&mut alone, UpstreamChain::default(), self, proto, host);
        lines.append(&alone);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(LastForwarded {
                host: host.to_owned(),
                proto,
                lines: alone,
            });
        }
    }
}

/// `earlier` (a trusted proxy's elements and `, `, or nothing) followed by this hop's
/// element for `node`.
fn forwarded_element(
    mut earlier: String,
    node: &str,
    host: &str,
    proto: &str,
) -> Option<HeaderValue> {
    earlier.reserve(node.len() + host.len() + 24);
    earlier.push_str(node);
    earlier.push_str(";host=\"");
    earlier.extend(host.chars().filter(|c| !matches!(c, '"' | '\\')));
    earlier.push_str("\";proto=");
    earlier.push_str(proto);
    HeaderValue::from_maybe_shared(Bytes::from(earlier)).ok()
}

/// Adds `X-Forwarded-For/Proto/Host` and `Forwarded`: `peer` is appended to the chain
/// a trusted proxy sent (`chain`), or starts a new chain. `host` is the request's host
/// as the client wrote it.
pub fn set_forwarding(
    lines: &mut HeaderLines,
    chain: UpstreamChain,
    peer: &ForwardedPeer,
    proto: &'static str,
    host: &str,
) {
    if chain.is_empty() {
        peer.push_alone(lines, host, proto);
    } else {
        push_forwarding(lines, chain, peer, proto, host);
    }
}

fn push_forwarding(
    lines: &mut HeaderLines,
    chain: UpstreamChain,
    peer: &ForwardedPeer,
    proto: &'static str,
    host: &str,
) {
    match chain.forwarded_for {
        Some(mut earlier) => {
            earlier.push_str(", ");
            earlier.push_str(peer.address.to_str().unwrap_or_default());
            lines.push_text(&X_FORWARDED_FOR, &earlier);
        }
        None => lines.push(&X_FORWARDED_FOR, &peer.address),
    }
    let forwarded = match chain.forwarded {
        Some(mut earlier) => {
            earlier.push_str(", ");
            forwarded_element(earlier, &peer.node, host, proto)
        }
        None => forwarded_element(String::new(), &peer.node, host, proto),
    };
    if let Some(forwarded) = forwarded {
        lines.push(&header::FORWARDED, &forwarded);
    }
    // A trusted proxy's values are client header values: no CR, LF or NUL.
    match chain.proto {
        Some(value) => lines.push_raw(&X_FORWARDED_PROTO, &value),
        None => lines.push(&X_FORWARDED_PROTO, &HeaderValue::from_static(proto)),
    }
    match chain.host {
        Some(value) => lines.push_raw(&X_FORWARDED_HOST, &value),
        None => {
            lines.push_text(&X_FORWARDED_HOST, host);
        }
    }
}

/// Inserts a value built for this header: its buffer becomes the header value as it is.
fn insert_owned(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::{
        ForwardedPeer, HeaderLines, UpstreamChain, X_FORWARDED_HOST, X_PORTCULLIS_ROLES,
        X_PORTCULLIS_USER, is_hop_by_hop_name, is_reserved, sanitize_request, set_forwarding,
    };
    use crate::proxy::request::RequestHeaders;

    /// Headers that describe one connection and are never forwarded (RFC 9110 §7.6.1).
    static HOP_BY_HOP: [HeaderName; 9] = [
        http::header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        http::header::PROXY_AUTHENTICATE,
        http::header::PROXY_AUTHORIZATION,
        http::header::TE,
        http::header::TRAILER,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
    ];

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                map.append(name, value);
            }
        }
        map
    }

    /// `map` as the upstream gets it after hygiene: the lines kept, then those added.
    fn sanitized(map: &HeaderMap) -> HeaderMap {
        let mut headers = RequestHeaders::from_map(map);
        let mut added = HeaderLines::default();
        sanitize_request(&mut headers, &[], &mut added);
        let mut out = headers.to_map();
        for (name, value) in added.pairs() {
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), value.parse())
            {
                out.append(name, value);
            }
        }
        out
    }

    fn names(map: &HeaderMap) -> Vec<String> {
        let mut names: Vec<String> = map.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn reserved_namespace_with_variants() {
        let extra = [HeaderName::from_static("remote-user")];
        for name in [
            "x-portcullis-user",
            "X-Portcullis-Roles",
            "x_portcullis_user",
            "x-forwarded-for",
            "X_Forwarded_Email",
            "forwarded",
            "x-real-ip",
            "remote-user",
            "Remote_User",
        ] {
            assert!(is_reserved(name.as_bytes(), &extra), "{name}");
        }
        for name in [
            "x-portcullisuser",
            "accept",
            "cookie",
            "authorization",
            "x-forward",
        ] {
            assert!(!is_reserved(name.as_bytes(), &extra), "{name}");
        }
    }

    #[test]
    fn client_identity_headers_never_survive() {
        let map = headers(&[
            ("x-portcullis-user", "admin"),
            ("x_portcullis_user", "admin"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("accept", "*/*"),
        ]);
        let map = sanitized(&map);
        assert_eq!(names(&map), ["accept"]);
    }

    #[test]
    fn gateway_cookies_never_reach_the_upstream() {
        let map = headers(&[
            ("cookie", "theme=dark; __Host-portcullis=ws.secret"),
            ("cookie", "__Host-portcullis-csrf=abc;lang=en"),
            ("cookie", "__Host-portcullis=only"),
        ]);
        let map = sanitized(&map);
        let cookies: Vec<_> = map.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["theme=dark", "lang=en"]);
        // Without a gateway cookie the header is left exactly as sent.
        let map = headers(&[("cookie", "a=1;b=2"), ("cookie", "c=3")]);
        let map = sanitized(&map);
        let cookies: Vec<_> = map.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1;b=2", "c=3"]);
        // Only the gateway's cookies, on one line or several: no Cookie header at all.
        let map = headers(&[
            ("cookie", "__Host-portcullis=ws.secret"),
            ("cookie", " __Host-portcullis-csrf=abc; ;"),
        ]);
        let map = sanitized(&map);
        assert!(!map.contains_key("cookie"), "{map:?}");
    }

    #[test]
    fn a_head_from_the_wire_keeps_only_what_the_upstream_may_see() {
        // Names in any case and spelling, as a client may send them.
        let wire = b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Portcullis-User: admin\r\n\
            X_Forwarded_For: 6.6.6.6\r\nConnection: X-Secret, keep-alive\r\n\
            x-SECRET: 1\r\nCookie: __Host-portcullis=ws.secret; theme=dark\r\n\
            TE: trailers\r\nREMOTE_user: root\r\nAccept: */*\r\n\r\n";
        let mut buf = bytes::BytesMut::from(&wire[..]);
        let crate::net::http1::Parsed::Serve { request, .. } =
            crate::net::http1::parse_head(&mut buf, 100, 8192)
        else {
            panic!("not served");
        };
        let mut headers = request.headers;
        let mut added = HeaderLines::default();
        sanitize_request(
            &mut headers,
            &[HeaderName::from_static("remote-user")],
            &mut added,
        );
        let mut kept = bytes::BytesMut::new();
        headers.write_to(&mut kept);
        assert_eq!(&kept[..], b"Host: app.test\r\nAccept: */*\r\n");
        assert_eq!(added.as_bytes(), b"cookie: theme=dark\r\n");
    }

    #[test]
    fn hop_by_hop_names() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop_name(name.as_str().as_bytes()), "{name}");
            let upper = name.as_str().to_ascii_uppercase();
            assert!(is_hop_by_hop_name(upper.as_bytes()), "{upper}");
        }
        for name in [
            "host",
            "content-length",
            "tex",
            "trailers",
            "keep-alive2",
            "cookie",
        ] {
            assert!(!is_hop_by_hop_name(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn connection_tokens_are_hop_by_hop() {
        let map = headers(&[
            ("connection", "keep-alive, x-secret, X-Portcullis-User"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ]);
        let map = sanitized(&map);
        assert_eq!(names(&map), ["accept"]);
    }

    #[test]
    fn every_connection_line_counts_and_bad_tokens_name_nothing() {
        let mut map = headers(&[
            ("connection", "close"),
            ("connection", " X-One ,, not a name,"),
            ("connection", "x-two"),
            ("x-one", "1"),
            ("x-two", "2"),
            ("x-three", "3"),
        ]);
        map.append(
            "connection",
            HeaderValue::from_bytes(b"x-three\xff").unwrap_or(HeaderValue::from_static("")),
        );
        let map = sanitized(&map);
        // The line that is not text names nothing, so `x-three` stays.
        assert_eq!(names(&map), ["x-three"]);
    }

    #[test]
    fn connection_cannot_remove_gateway_headers() {
        // The gateway's own headers are set after sanitising, so naming them in
        // Connection removes only the client's copy.
        let map = headers(&[
            ("connection", "x-forwarded-for, forwarded"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        let map = sanitized(&map);
        assert!(map.is_empty(), "{map:?}");
        let mut lines = HeaderLines::default();
        set_forwarding(
            &mut lines,
            UpstreamChain::default(),
            &ForwardedPeer::new(
                "192.0.2.1"
                    .parse()
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            ),
            "https",
            "app.example",
        );
        let map = as_map(&lines);
        assert_eq!(map["x-forwarded-for"], "192.0.2.1");
        assert_eq!(
            map["forwarded"],
            "for=192.0.2.1;host=\"app.example\";proto=https"
        );
        assert_eq!(map["x-forwarded-proto"], "https");
        assert_eq!(map["x-forwarded-host"], "app.example");
    }

    #[test]
    fn a_connections_forwarded_value_follows_its_host_and_protocol() {
        let peer = ForwardedPeer::new(std::net::Ipv4Addr::new(192, 0, 2, 9).into());
        let forwarded = |host: &str, proto: &'static str| {
            let mut lines = HeaderLines::default();
            set_forwarding(&mut lines, UpstreamChain::default(), &peer, proto, host);
            as_map(&lines)["forwarded"]
                .to_str()
                .unwrap_or_default()
                .to_owned()
        };
        // Reused, changed and reused again: each time the value for this request.
        for _ in 0..2 {
            assert_eq!(
                forwarded("a.example", "https"),
                "for=192.0.2.9;host=\"a.example\";proto=https"
            );
        }
        assert_eq!(
            forwarded("b.example:8443", "https"),
            "for=192.0.2.9;host=\"b.example:8443\";proto=https"
        );
        assert_eq!(
            forwarded("b.example:8443", "http"),
            "for=192.0.2.9;host=\"b.example:8443\";proto=http"
        );
        assert_eq!(
            forwarded("a.example", "https"),
            "for=192.0.2.9;host=\"a.example\";proto=https"
        );
    }

    #[test]
    fn trusted_chain_is_extended() {
        let incoming = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=198.51.100.7"),
            ("x-forwarded-proto", "https"),
        ]);
        // A trusted proxy that said nothing leaves nothing to extend.
        let capture = |map: &HeaderMap| UpstreamChain::capture(&RequestHeaders::from_map(map));
        assert!(capture(&headers(&[("host", "a"), ("x-real-ip", "1")])).is_empty());
        let chain = capture(&incoming);
        let mut lines = HeaderLines::default();
        let peer = "2001:db8::2"
            .parse()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        set_forwarding(
            &mut lines,
            chain,
            &ForwardedPeer::new(peer),
            "http",
            "app.example",
        );
        let map = as_map(&lines);
        assert_eq!(map["x-forwarded-for"], "198.51.100.7, 2001:db8::2");
        assert_eq!(
            map["forwarded"],
            "for=198.51.100.7, for=\"[2001:db8::2]\";host=\"app.example\";proto=http"
        );
        assert_eq!(map["x-forwarded-proto"], "https");
    }

    /// The gateway's lines as a map, to look values up by name.
    fn as_map(lines: &HeaderLines) -> HeaderMap {
        headers(&lines.pairs().collect::<Vec<_>>())
    }

    #[test]
    fn added_lines_never_carry_a_line_break_of_their_own() {
        let mut lines = HeaderLines::default();
        assert!(lines.push_text(&X_FORWARDED_HOST, "app.example:8443"));
        for bad in ["a\r\nx-portcullis-user: admin", "a\nb", "a\0b", "caf\u{e9}"] {
            assert!(!lines.push_text(&X_FORWARDED_HOST, bad), "{bad:?}");
        }
        lines.push(&X_PORTCULLIS_USER, &HeaderValue::from_static("u-1"));
        let roles = [
            "admin".to_owned(),
            "op\r\nx: y".to_owned(),
            "viewer".to_owned(),
        ];
        lines.push_list(&X_PORTCULLIS_ROLES, &roles);
        assert_eq!(
            lines.as_bytes(),
            b"x-forwarded-host: app.example:8443\r\nx-portcullis-user: u-1\r\nx-portcullis-roles: admin,viewer\r\n"
        );
        assert_eq!(
            lines.pairs().collect::<Vec<_>>(),
            [
                ("x-forwarded-host", "app.example:8443"),
                ("x-portcullis-user", "u-1"),
                ("x-portcullis-roles", "admin,viewer")
            ]
        );
    }
}
