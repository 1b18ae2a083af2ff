//! HTTP/1.1 framing towards upstreams, as pure functions over bytes: writing a request
//! head, reading a response head and its framing, and decoding a chunked body.
//!
//! The rules are strict on purpose. A pooled connection carries one user's request
//! after another's, so a response whose end could be read two ways (several or
//! list-valued lengths, a length together with a transfer coding, a coding other than
//! exactly `chunked`, a malformed chunk) is refused with a 502 rather than guessed at,
//! and a connection is kept only when its response ended exactly where its framing
//! said. `gateway/fuzz` (`upstream_response`) feeds both parsers arbitrary bytes.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};

use crate::proxy::headers::{HeaderLines, is_hop_by_hop_name};
use crate::proxy::request::RequestHeaders;

/// The most header lines a response head may have (hyper's default too).
pub const MAX_HEADERS: usize = 100;
/// The most bytes a response head may take.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most bytes of chunk extensions, or of trailers, one body may carry.
const MAX_CHUNK_META: usize = 16 * 1024;

/// How a request body is delimited on the way to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body: neither `Content-Length` nor `Transfer-Encoding` is sent.
    Empty,
    /// The client's `Content-Length` (already among the headers) is kept.
    Length,
    /// The body is sent chunked; `Transfer-Encoding: chunked` is added.
    Chunked,
}

/// A request target with a byte that cannot stand in a request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request target holds a byte that cannot go in a request line")]
pub struct BadTarget;

/// The request line (`path`, and `query` after a `?`), the client's headers and the
/// gateway's `added` lines, ready to write.
pub fn encode_request_head(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &RequestHeaders,
    added: &HeaderLines,
    framing: RequestFraming,
) -> Result<Bytes, BadTarget> {
    // Visible ASCII only: a space, CR or LF would end the target early.
    let visible = |part: &str| part.bytes().all(|byte| byte.is_ascii_graphic());
    if !visible(path) || !query.is_none_or(visible) {
        return Err(BadTarget);
    }
    let size = headers.wire_len()
        + method.as_str().len()
        + path.len()
        + query.map_or(0, str::len)
        + added.as_bytes().len()
        + 64;
    let mut head = BytesMut::with_capacity(size);
    head.extend_from_slice(method.as_str().as_bytes());
    head.extend_from_slice(b" ");
    head.extend_from_slice(path.as_bytes());
    if let Some(query) = query {
        head.extend_from_slice(b"?");
        head.extend_from_slice(query.as_bytes());
    }
    head.extend_from_slice(b" HTTP/1.1\r\n");
    // The client's lines are ones `HeaderName` and `HeaderValue` accept (no CR, LF or
    // NUL), so none can end its line early (`proxy::request`).
    headers.write_to(&mut head);
    head.extend_from_slice(added.as_bytes());
    if framing == RequestFraming::Chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Ok(head.freeze())
}

/// The size line that goes before a chunk of `len` bytes.
pub fn chunk_size_line(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (a `HEAD` request, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
    /// 101 Switching Protocols: the connection becomes a tunnel.
    Tunnel,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// The status code.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The end-to-end headers: hop-by-hop ones, and those `Connection` names, are
    /// left out (they were read for framing and keep-alive).
    pub headers: UpstreamHeaders,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request once this body has ended.
    pub reusable: bool,
}

/// The end-to-end headers of an upstream response, kept in wire form (`name: value`
/// lines, each name spelled as the upstream spelled it, as nginx hands it on) for the
/// client side to write as they are. They become a `HeaderMap` only where one is
/// needed (connections hyper serves, upgrades): the common response is never taken
/// apart and put together again.
///
/// Hop-by-hop headers, the headers `Connection` names and `Content-Length` (each hop
/// frames its own body; the value is kept aside) are not among the lines. Every name
/// and value was checked as `HeaderName` and `HeaderValue` check them, so a line can
/// neither end early nor fail to become a map entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamHeaders {
    lines: Bytes,
    content_length: Option<u64>,
    has_date: bool,
}

impl UpstreamHeaders {
    /// The header lines, each ended by CRLF.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// The `Content-Length` the response declared (for a `HEAD` request or a 304 too,
    /// where it describes the body a GET would have had).
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Whether the upstream sent a `Date`.
    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// The same headers (with `Content-Length`) as a map, values sharing the lines.
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in self.lines.split(|&byte| byte == b'\n') {
            let Some(line) = line.strip_suffix(b"\r") else {
                continue;
            };
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let (name, value) = (line.get(..colon), line.get(colon + 2..));
            if let (Some(name), Some(value)) = (name, value)
                && let Ok(name) = HeaderName::from_bytes(name)
                && let Ok(value) = HeaderValue::from_maybe_shared(self.lines.slice_ref(value))
            {
                map.append(name, value);
            }
        }
        if let Some(length) = self.content_length {
            map.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        map
    }
}

/// Why a response head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not a valid HTTP/1.x status line and headers.
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    /// The head is longer than [`MAX_HEAD_BYTES`].
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    /// The body's end could be read more than one way.
    #[error("ambiguous response framing: {0}")]
    Framing(&'static str),
}

/// What the start of a buffer held.
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet; nothing was consumed.
    Partial,
    /// An interim (1xx, not 101) response, consumed and to be ignored.
    Interim,
    /// A final response head, consumed.
    Head(ResponseHead),
}

/// Parses the response head at the start of `buf` and consumes it when it is whole;
/// `head_request` says whether it answers a `HEAD` (whose response has no body
/// whatever it declares).
pub fn parse_response_head(buf: &mut BytesMut, head_request: bool) -> Result<Parsed, HeadError> {
    if buf.is_empty() {
        return Ok(Parsed::Partial);
    }
    // Parsed in place: what follows the head (usually the whole body) stays where it
    // is, and the head is consumed only once it has been read whole.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(err) => return Err(HeadError::Malformed(err)),
    };
    let status = StatusCode::from_u16(response.code.unwrap_or(0))
        .map_err(|_| HeadError::Malformed(httparse::Error::Status))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        buf.advance(len);
        return Ok(Parsed::Interim);
    }
    let version = if response.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let lines: &[httparse::Header<'_>] = response.headers;
    // One pass reads what framing and keep-alive need and sorts the lines: hop-by-hop
    // headers, and those the response's `Connection` names, describe this connection
    // only; they are read here and never handed on.
    let mut roles = [Role::Dropped; MAX_HEADERS];
    let mut facts = HeadFacts::default();
    for (line, role) in lines.iter().zip(roles.iter_mut()) {
        *role = Role::of(line.name.as_bytes());
        facts.note(*role, line.value);
    }
    let (framing, delimited, content_length) = facts.framing(status, head_request)?;
    // The kept lines are measured first, so the buffer is allocated at its exact size
    // and becomes `Bytes` without a second allocation.
    let mut size = 0;
    for (line, role) in lines.iter().zip(roles.iter_mut()) {
        if role.is_forwarded() {
            let name = line.name.as_bytes();
            if facts.connection.names(name, lines) {
                *role = Role::Dropped;
            } else {
                size += name.len() + line.value.len() + 4;
            }
        }
    }
    let mut kept = Vec::with_capacity(size);
    let mut has_date = false;
    for (line, role) in lines.iter().zip(roles) {
        if !role.is_forwarded() {
            continue;
        }
        // httparse lets through only what `HeaderName` and `HeaderValue` accept:
        // token characters in a name; tab, space to `~` and bytes from 0x80 in a value.
        has_date |= role == Role::Date;
        kept.extend_from_slice(line.name.as_bytes());
        kept.extend_from_slice(b": ");
        kept.extend_from_slice(line.value);
        kept.extend_from_slice(b"\r\n");
    }
    let reusable = delimited && version == Version::HTTP_11 && !facts.connection.close;
    buf.advance(len);
    Ok(Parsed::Head(ResponseHead {
        status,
        version,
        headers: UpstreamHeaders {
            lines: Bytes::from(kept),
            content_length,
            has_date,
        },
        framing,
        reusable,
    }))
}

/// What a response header line is to the gateway, told by its name (by length first:
/// this runs for every line of every response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Handed on to the client.
    Forwarded,
    /// `Date`: handed on, and the client side then need not add one.
    Date,
    /// `Content-Length`: read for framing; each hop frames its own body.
    ContentLength,
    /// `Transfer-Encoding`: read for framing, hop-by-hop.
    TransferEncoding,
    /// `Connection`: read for keep-alive and the names it lists, hop-by-hop.
    Connection,
    /// Another hop-by-hop header, or one a `Connection` line names.
    Dropped,
}

impl Role {
    fn of(name: &[u8]) -> Role {
        let is = |wanted: &[u8]| name.eq_ignore_ascii_case(wanted);
        match name.len() {
            4 if is(b"date") => Role::Date,
            10 if is(b"connection") => Role::Connection,
            14 if is(b"content-length") => Role::ContentLength,
            17 if is(b"transfer-encoding") => Role::TransferEncoding,
            _ if is_hop_by_hop_name(name) => Role::Dropped,
            _ => Role::Forwarded,
        }
    }

    fn is_forwarded(self) -> bool {
        matches!(self, Role::Forwarded | Role::Date)
    }
}

/// What the framing and keep-alive lines of a head say, gathered in the one pass.
#[derive(Default)]
struct HeadFacts<'a> {
    /// The first `Content-Length` value, and whether there was more than one line.
    length: Option<&'a [u8]>,
    several_lengths: bool,
    /// The first `Transfer-Encoding` value, and whether there was more than one line.
    coding: Option<&'a [u8]>,
    several_codings: bool,
    connection: ConnectionTokens<'a>,
}

impl<'a> HeadFacts<'a> {
    fn note(&mut self, role: Role, value: &'a [u8]) {
        let first = |slot: &mut Option<&'a [u8]>, more: &mut bool| match slot {
            Some(_) => *more = true,
            None => *slot = Some(value),
        };
        match role {
            Role::ContentLength => first(&mut self.length, &mut self.several_lengths),
            Role::TransferEncoding => first(&mut self.coding, &mut self.several_codings),
            Role::Connection => self.connection.add(value),
            Role::Forwarded | Role::Date | Role::Dropped => {}
        }
    }

    /// The body's framing, whether its end is known without the connection closing,
    /// and the declared `Content-Length`.
    fn framing(
        &self,
        status: StatusCode,
        head_request: bool,
    ) -> Result<(Framing, bool, Option<u64>), HeadError> {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok((Framing::Tunnel, false, None));
        }
        if self.several_lengths {
            return Err(HeadError::Framing("more than one Content-Length"));
        }
        if self.length.is_some() && self.coding.is_some() {
            return Err(HeadError::Framing(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if self.several_codings
            || self
                .coding
                .is_some_and(|coding| !coding.eq_ignore_ascii_case(b"chunked"))
        {
            return Err(HeadError::Framing(
                "Transfer-Encoding other than exactly `chunked`",
            ));
        }
        let length = self.length.map(parse_length).transpose()?;
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok((Framing::Empty, true, length));
        }
        Ok(match (length, self.coding) {
            (Some(length), _) => (Framing::Length(length), true, Some(length)),
            (None, Some(_)) => (Framing::Chunked, true, None),
            (None, None) => (Framing::UntilClose, false, None),
        })
    }
}

/// A `Content-Length` value: 1 to 18 ASCII digits (so it fits a `u64`), nothing else.
fn parse_length(value: &[u8]) -> Result<u64, HeadError> {
    let refuse = || HeadError::Framing("Content-Length is not a single number");
    if value.is_empty() || value.len() > 18 {
        return Err(refuse());
    }
    value.iter().try_fold(0_u64, |number, &byte| {
        if byte.is_ascii_digit() {
            Ok(number * 10 + u64::from(byte - b'0'))
        } else {
            Err(refuse())
        }
    })
}

/// The tokens of a head's `Connection` lines: whether one is `close`, and the rest,
/// which name headers that are hop-by-hop for this message.
#[derive(Default)]
struct ConnectionTokens<'a> {
    /// The tokens, when there are at most [`KEPT_TOKENS`] (nearly always one).
    kept: [&'a [u8]; KEPT_TOKENS],
    count: usize,
    /// More tokens than kept: [`Self::names`] reads the lines again.
    overflow: bool,
    close: bool,
}

/// How many `Connection` tokens [`ConnectionTokens`] keeps without re-reading lines.
const KEPT_TOKENS: usize = 4;

impl<'a> ConnectionTokens<'a> {
    /// Takes in the value of one `Connection` line.
    fn add(&mut self, value: &'a [u8]) {
        for token in Self::tokens(value) {
            self.close |= token.eq_ignore_ascii_case(b"close");
            match self.kept.get_mut(self.count) {
                Some(slot) => {
                    *slot = token;
                    self.count += 1;
                }
                None => self.overflow = true,
            }
        }
    }

    fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
        value.split(|&byte| byte == b',').map(<[u8]>::trim_ascii)
    }

    /// Whether a token names the header `name`; `lines` are the head's lines, read
    /// again only when there were more tokens than kept.
    fn names(&self, name: &[u8], lines: &[httparse::Header<'_>]) -> bool {
        if self.overflow {
            return lines
                .iter()
                .filter(|line| line.name.eq_ignore_ascii_case("connection"))
                .flat_map(|line| Self::tokens(line.value))
                .any(|token| token.eq_ignore_ascii_case(name));
        }
        self.kept
            .iter()
            .take(self.count)
            .any(|token| token.eq_ignore_ascii_case(name))
    }
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A chunk size that is not hexadecimal, or too large.
    #[error("malformed chunk size")]
    Size,
    /// A chunk, size line or trailer line not ended by CRLF.
    #[error("chunk not followed by CRLF")]
    LineEnd,
    /// More than 16 KiB of chunk extensions or trailers.
    #[error("chunk extensions or trailers too large")]
    TooMuchMeta,
}

/// What [`ChunkedDecoder::decode`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The body has ended (the last chunk and any trailers, which are dropped).
    End,
    /// More input is needed.
    More,
}

/// Decodes a chunked body incrementally, consuming from the front of a buffer.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// Bytes of chunk extensions and trailers seen so far.
    meta: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size { value: u64, digits: u8 },
    Extension { size: u64 },
    SizeLf { size: u64 },
    Data { left: u64 },
    DataCr,
    DataLf,
    Trailer { line: usize },
    TrailerLf { line: usize },
    Done,
}

impl Default for ChunkedDecoder {
    fn default() -> ChunkedDecoder {
        ChunkedDecoder {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
            },
            meta: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Whether the last chunk (and trailers) has been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes framing from the front of `buf` until body bytes, the end or the end of
    /// the input.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            if let ChunkState::Data { left } = self.state {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let left = left - take as u64;
                self.state = if left == 0 {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data { left }
                };
                return Ok(Decoded::Data(buf.split_to(take).freeze()));
            }
            if self.state == ChunkState::Done {
                return Ok(Decoded::End);
            }
            let Some(&byte) = buf.first() else {
                return Ok(Decoded::More);
            };
            buf.advance(1);
            self.state = self.step(byte)?;
        }
    }

    fn step(&mut self, byte: u8) -> Result<ChunkState, ChunkError> {
        use ChunkState::{DataCr, DataLf, Done, Extension, Size, SizeLf, Trailer, TrailerLf};
        Ok(match (self.state, byte) {
            (Size { value, digits }, _) if byte.is_ascii_hexdigit() => {
                if digits >= 15 {
                    return Err(ChunkError::Size);
                }
                let digit = u64::from(char::from(byte).to_digit(16).unwrap_or(0));
                Size {
                    value: value << 4 | digit,
                    digits: digits + 1,
                }
            }
            (Size { digits: 0, .. }, _) => return Err(ChunkError::Size),
            (Size { value, .. }, b';') => Extension { size: value },
            (Size { value, .. }, b'\r') => SizeLf { size: value },
            (Size { .. }, _) => return Err(ChunkError::Size),
            (Extension { size }, b'\r') => SizeLf { size },
            (Extension { .. }, b'\n') => return Err(ChunkError::LineEnd),
            (Extension { size }, _) => {
                self.count_meta()?;
                Extension { size }
            }
            (SizeLf { size: 0 }, b'\n') => Trailer { line: 0 },
            (SizeLf { size }, b'\n') => ChunkState::Data { left: size },
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size {
                value: 0,
                digits: 0,
            },
            (Trailer { line }, b'\r') => TrailerLf { line },
            (Trailer { .. }, b'\n') => return Err(ChunkError::LineEnd),
            (Trailer { line }, _) => {
                self.count_meta()?;
                Trailer { line: line + 1 }
            }
            (TrailerLf { line: 0 }, b'\n') => Done,
            (TrailerLf { .. }, b'\n') => Trailer { line: 0 },
            (SizeLf { .. } | DataCr | DataLf | TrailerLf { .. }, _) => {
                return Err(ChunkError::LineEnd);
            }
            (ChunkState::Data { .. } | Done, _) => self.state,
        })
    }

    fn count_meta(&mut self) -> Result<(), ChunkError> {
        self.meta += 1;
        if self.meta > MAX_CHUNK_META {
            return Err(ChunkError::TooMuchMeta);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
