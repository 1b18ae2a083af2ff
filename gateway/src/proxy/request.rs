//! A client's request as the hot path reads it: the head's header lines kept in wire
//! form, with an index saying where each name and value lies and which of the few names
//! the pipeline reads it is.
//!
//! The gateway's own HTTP/1.1 server hands the bytes it read over as they are
//! ([`RequestHeaders::from_wire`]): no header becomes a `HeaderName` and a `HeaderValue`
//! in a hashed map only to be looked up a few times, taken out again by the header
//! hygiene and written back out to the upstream. Requests hyper served (bodies,
//! upgrades, HTTP/2) come from its `HeaderMap` ([`RequestHeaders::from_map`]), so both
//! kinds meet one pipeline.
//!
//! Every line in the index is one `HeaderName` and `HeaderValue` would accept: from the
//! wire, `httparse` refused anything else first (its name and value rules are theirs,
//! which `net::http1`'s tests and the `request_head` fuzz target pin); from a map, they
//! were those types. So a kept line can be written to the upstream as it is, and can
//! always become a map entry again ([`RequestHeaders::to_map`]).
//!
//! Hygiene only ever drops lines ([`RequestHeaders::drop_where`]); what the gateway
//! adds goes into separate, ready-made lines (`headers::HeaderLines`).

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::RequestBody;
use super::headers::{is_hop_by_hop_name, is_reserved};

/// The names the pipeline reads, recognised once when the head is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// `Host`.
    Host,
    /// `Cookie`.
    Cookie,
    /// `Authorization`.
    Authorization,
    /// `Accept`.
    Accept,
    /// `Connection`.
    Connection,
    /// `Upgrade`.
    Upgrade,
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Expect`.
    Expect,
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `X-Forwarded-Proto`.
    XForwardedProto,
    /// `X-Forwarded-Host`.
    XForwardedHost,
    /// `Forwarded`.
    Forwarded,
    /// Any other name.
    Other,
}

impl Known {
    /// Which known name `name` (in any case) is.
    pub fn of(name: &[u8]) -> Known {
        // By length first: this runs for every header of every request.
        let is = |wanted: &[u8]| name.eq_ignore_ascii_case(wanted);
        match name.len() {
            4 if is(b"host") => Known::Host,
            6 if is(b"cookie") => Known::Cookie,
            6 if is(b"accept") => Known::Accept,
            6 if is(b"expect") => Known::Expect,
            7 if is(b"upgrade") => Known::Upgrade,
            9 if is(b"forwarded") => Known::Forwarded,
            10 if is(b"connection") => Known::Connection,
            13 if is(b"authorization") => Known::Authorization,
            14 if is(b"content-length") => Known::ContentLength,
            15 if is(b"x-forwarded-for") => Known::XForwardedFor,
            16 if is(b"x-forwarded-host") => Known::XForwardedHost,
            17 if is(b"transfer-encoding") => Known::TransferEncoding,
            17 if is(b"x-forwarded-proto") => Known::XForwardedProto,
            _ => Known::Other,
        }
    }
}

/// One header line: where its name and value lie in the head, and what its name is.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    name: (u32, u32),
    value: (u32, u32),
    known: Known,
    /// A hop-by-hop name (RFC 9110 §7.6.1).
    hop_by_hop: bool,
    /// A name in the gateway's namespace (`headers::is_reserved`, without the
    /// configured extras).
    reserved: bool,
    /// Still forwarded.
    kept: bool,
}

impl Field {
    /// The line whose name lies at `name` and value at `value` (byte ranges of the
    /// head), with `name_bytes` its name.
    pub fn new(name_bytes: &[u8], name: (usize, usize), value: (usize, usize)) -> Option<Field> {
        let span = |(start, end): (usize, usize)| {
            Some((u32::try_from(start).ok()?, u32::try_from(end).ok()?))
        };
        Some(Field {
            name: span(name)?,
            value: span(value)?,
            known: Known::of(name_bytes),
            hop_by_hop: is_hop_by_hop_name(name_bytes),
            reserved: is_reserved(name_bytes, &[]),
            kept: true,
        })
    }

    /// Which known name this is.
    pub fn known(&self) -> Known {
        self.known
    }

    /// Whether the name is hop-by-hop.
    pub fn is_hop_by_hop(&self) -> bool {
        self.hop_by_hop
    }

    /// Whether the name is in the gateway's namespace.
    pub fn is_reserved(&self) -> bool {
        self.reserved
    }
}

/// A client request's header lines in wire form, with their index.
#[derive(Debug, Clone, Default)]
pub struct RequestHeaders {
    /// The bytes the lines lie in (the whole head, for a head read from the wire).
    head: Bytes,
    fields: Vec<Field>,
}

fn slice(head: &[u8], (start, end): (u32, u32)) -> &[u8] {
    head.get(start as usize..end as usize).unwrap_or_default()
}

impl RequestHeaders {
    /// The lines `fields` index in `head` (built by `net::http1` from what `httparse`
    /// accepted).
    pub fn from_wire(head: Bytes, fields: Vec<Field>) -> RequestHeaders {
        RequestHeaders { head, fields }
    }

    /// The lines of a map, in its order.
    pub fn from_map(map: &HeaderMap) -> RequestHeaders {
        let size = map
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        let mut head = BytesMut::with_capacity(size);
        let mut fields = Vec::with_capacity(map.len());
        for (name, value) in map {
            let name_start = head.len();
            head.extend_from_slice(name.as_str().as_bytes());
            let value_start = head.len();
            head.extend_from_slice(value.as_bytes());
            if let Some(field) = Field::new(
                name.as_str().as_bytes(),
                (name_start, value_start),
                (value_start, head.len()),
            ) {
                fields.push(field);
            }
        }
        RequestHeaders {
            head: head.freeze(),
            fields,
        }
    }

    /// The kept lines as a map.
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.fields.len());
        for (name, value) in self.iter() {
            // Both always succeed (module docs); a line that did not would be dropped.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name),
                HeaderValue::from_maybe_shared(self.value_bytes(value)),
            ) {
                map.append(name, value);
            }
        }
        map
    }

    /// The kept lines, as name and value.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], &[u8])> {
        self.fields.iter().filter(|field| field.kept).map(|field| {
            (
                slice(&self.head, field.name),
                slice(&self.head, field.value),
            )
        })
    }

    /// The kept lines' fields.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|field| field.kept)
    }

    /// Every kept value of `known`, in order.
    pub fn get_all(&self, known: Known) -> impl DoubleEndedIterator<Item = &[u8]> {
        self.fields
            .iter()
            .filter(move |field| field.kept && field.known == known)
            .map(|field| slice(&self.head, field.value))
    }

    /// The first kept value of `known`.
    pub fn get(&self, known: Known) -> Option<&[u8]> {
        self.get_all(known).next()
    }

    /// Whether a line of `known` is kept.
    pub fn contains(&self, known: Known) -> bool {
        self.get(known).is_some()
    }

    /// Every kept value of the header named `name` (lower case), in order.
    pub fn get_all_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(line, _)| line.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// `value` (a slice of these headers' bytes) as shared bytes, without a copy.
    pub fn value_bytes(&self, value: &[u8]) -> Bytes {
        self.head.slice_ref(value)
    }

    /// Stops forwarding every kept line for which `drop` says so.
    pub fn drop_where(&mut self, mut drop: impl FnMut(&[u8], &Field) -> bool) {
        let head = &self.head;
        for field in self.fields.iter_mut().filter(|field| field.kept) {
            if drop(slice(head, field.name), field) {
                field.kept = false;
            }
        }
    }

    /// Stops forwarding every hop-by-hop line and every line a `Connection` token names
    /// (a `Connection` line that is not text names nothing).
    pub fn drop_hop_by_hop(&mut self) {
        let head = &self.head;
        let tokens: Vec<&[u8]> = self
            .fields
            .iter()
            .filter(|field| field.kept && field.known == Known::Connection)
            .map(|field| slice(head, field.value))
            .filter(|line| std::str::from_utf8(line).is_ok())
            .flat_map(|line| line.split(|&byte| byte == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|token| !token.is_empty())
            .collect();
        for field in self.fields.iter_mut().filter(|field| field.kept) {
            let name = slice(head, field.name);
            if field.hop_by_hop || tokens.iter().any(|token| name.eq_ignore_ascii_case(token)) {
                field.kept = false;
            }
        }
    }

    /// Stops forwarding every line of `known`.
    pub fn remove(&mut self, known: Known) {
        self.drop_where(|_, field| field.known == known);
    }

    /// How many bytes the kept lines take as `name: value\r\n`.
    pub fn wire_len(&self) -> usize {
        self.fields
            .iter()
            .filter(|field| field.kept)
            .map(|field| (field.name.1 - field.name.0 + field.value.1 - field.value.0) as usize + 4)
            .sum()
    }

    /// Writes the kept lines as `name: value\r\n`.
    pub fn write_to(&self, out: &mut BytesMut) {
        for (name, value) in self.iter() {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A client's request: its head, with the headers in wire form, and its body.
#[derive(Debug)]
pub struct ClientRequest {
    /// The method.
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// The HTTP version.
    pub version: Version,
    /// The header lines.
    pub headers: RequestHeaders,
    /// The body.
    pub body: RequestBody,
    /// hyper's handle on the connection once it is upgraded (requests hyper served).
    pub upgrade: Option<OnUpgrade>,
}

impl ClientRequest {
    /// A request hyper served.
    pub fn from_hyper(mut request: Request<Incoming>) -> ClientRequest {
        let upgrade = request.extensions_mut().remove::<OnUpgrade>();
        let (parts, body) = request.into_parts();
        ClientRequest {
            headers: RequestHeaders::from_map(&parts.headers),
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            body: RequestBody::Hyper(body),
            upgrade,
        }
    }

    /// The request as an `http::Request` (for the sign-in flows, which read forms).
    pub fn into_http(self) -> Request<RequestBody> {
        let mut request = Request::new(self.body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.to_map();
        if let Some(upgrade) = self.upgrade {
            request.extensions_mut().insert(upgrade);
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, header};

    use super::{Known, RequestHeaders};

    #[test]
    fn known_names_in_any_case() {
        for (name, known) in [
            (&b"Host"[..], Known::Host),
            (b"COOKIE", Known::Cookie),
            (b"authorization", Known::Authorization),
            (b"Accept", Known::Accept),
            (b"Connection", Known::Connection),
            (b"upgrade", Known::Upgrade),
            (b"Content-Length", Known::ContentLength),
            (b"Transfer-Encoding", Known::TransferEncoding),
            (b"Expect", Known::Expect),
            (b"X-Forwarded-For", Known::XForwardedFor),
            (b"x-forwarded-proto", Known::XForwardedProto),
            (b"X-Forwarded-Host", Known::XForwardedHost),
            (b"Forwarded", Known::Forwarded),
            (b"X_Forwarded_For", Known::Other),
            (b"hosts", Known::Other),
            (b"", Known::Other),
        ] {
            assert_eq!(Known::of(name), known, "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn a_map_round_trips_and_dropped_lines_are_gone() {
        let mut map = HeaderMap::new();
        map.append(header::HOST, HeaderValue::from_static("app.test"));
        map.append(header::COOKIE, HeaderValue::from_static("a=1"));
        map.append(header::COOKIE, HeaderValue::from_static("b=2"));
        map.append("x-portcullis-user", HeaderValue::from_static("forged"));
        map.append("x-other", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        let mut headers = RequestHeaders::from_map(&map);
        assert_eq!(headers.to_map(), map);
        let cookies: Vec<&[u8]> = headers.get_all(Known::Cookie).collect();
        assert_eq!(cookies, [&b"a=1"[..], b"b=2"]);
        assert_eq!(headers.get(Known::Host), Some(&b"app.test"[..]));
        assert_eq!(headers.get_all_named("X-Other").count(), 1);
        headers.drop_where(|_, field| field.is_reserved());
        headers.remove(Known::Cookie);
        let names: Vec<String> = headers
            .iter()
            .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
            .collect();
        assert_eq!(names, ["host", "x-other"]);
        assert!(!headers.contains(Known::Cookie));
        let mut out = bytes::BytesMut::new();
        headers.write_to(&mut out);
        assert_eq!(out.len(), headers.wire_len());
        assert_eq!(&out[..], b"host: app.test\r\nx-other: caf\xc3\xa9\r\n");
    }
}
