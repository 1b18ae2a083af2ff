//! HTTP/1.1 served by the gateway itself for the requests that make up nearly all
//! proxied traffic: a head without a body, without an upgrade, without `Expect`.
//!
//! hyper's server runs each request through a dispatcher and a state machine built for
//! every case HTTP allows. For the common one, this loop reads the head, runs the
//! pipeline and writes the response in the connection's own task, with one read and
//! one write per request (BENCHMARKS.md has the counts).
//!
//! Everything else goes to hyper, on the same connection, with the bytes read so far
//! replayed first ([`Replay`]): a request with a body, an upgrade, `Expect`, a target
//! that is not origin-form, a head `httparse` refuses or that exceeds the limits, the
//! HTTP/2 preface. hyper then serves the rest of the connection exactly as it served
//! all of it before (behind the second framing reading of [`super::framing`]), so a
//! head is only ever served here if it is unambiguous: strict `httparse` syntax, no
//! `Transfer-Encoding`, no `Content-Length` but a single `0`, and nothing after it
//! belongs to it.

use std::future::poll_fn;
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Response, StatusCode, Uri, Version, header};
use http_body::{Body as _, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::clock;
use crate::config::Limits;
use crate::proxy::pipeline::{ConnInfo, Gateway, handle};
use crate::proxy::request::{ClientRequest, Field, Known, RequestHeaders};
use crate::proxy::upstream::BodyError;
use crate::proxy::upstream::codec::UpstreamHeaders;
use crate::proxy::{Body, RequestBody};

/// The most headers a head served here may have; one with more (`limits.max_headers`
/// allows up to 1,000) goes to hyper, which applies the configured limit.
const MAX_HEADERS: usize = 128;
/// How much room the read buffer gets before each read.
const READ_CHUNK: usize = 8 * 1024;
/// Response bytes gathered before they are written even though more are ready.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Body pieces at least this large are written as they are, not copied.
const WRITE_DIRECT: usize = 16 * 1024;

/// What becomes of the connection once this server stops serving it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// It is finished: close it.
    Close,
    /// hyper serves the rest of it, starting with the bytes already read.
    HandOff,
}

/// What the request loop and the connection's shutdown and idle watch share.
#[derive(Debug, Default)]
pub(super) struct ConnState {
    /// Whether a request is being read or served (or bytes of the next one are
    /// buffered).
    busy: AtomicBool,
    /// Whether the connection closes after the response in flight.
    closing: AtomicBool,
}

impl ConnState {
    /// Whether the connection is between requests with nothing read: closing it now
    /// cuts nothing off.
    pub(super) fn is_between_requests(&self) -> bool {
        !self.busy.load(Ordering::Relaxed)
    }

    /// Asks the loop to close the connection after the response in flight.
    pub(super) fn close_after_response(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Whether [`ConnState::close_after_response`] was asked for.
    pub(super) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
    }
}

/// Serves requests on `io` until the connection ends or a request needs hyper;
/// `buf` holds the bytes read and not yet served.
pub(super) async fn serve<S>(
    io: &mut S,
    buf: &mut BytesMut,
    gateway: &Gateway,
    conn: &ConnInfo,
    limits: &Limits,
    state: &ConnState,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The response being written, kept for the life of the connection.
    let mut out = Vec::new();
    loop {
        let (request, keep_alive) = match read_head(io, buf, limits, state).await {
            Ok(HeadRead::Request(request, keep_alive)) => (request, keep_alive),
            Ok(HeadRead::HandOff) => return Next::HandOff,
            Ok(HeadRead::Closed) => return Next::Close,
            Err(err) => {
                tracing::debug!(client.addr = %conn.peer, error = %err, "reading a request failed");
                return Next::Close;
            }
        };
        let exchange = Exchange {
            version: request.version,
            head_request: request.method == Method::HEAD,
            keep_alive,
        };
        let response = handle(gateway, conn, request).await;
        match write_response(io, &mut out, response, &exchange, state).await {
            Ok(true) => {}
            Ok(false) => {
                // Best effort: the peer may be gone already.
                let _ = io.shutdown().await;
                return Next::Close;
            }
            Err(err) => {
                tracing::debug!(client.addr = %conn.peer, error = %err, "writing a response failed");
                return Next::Close;
            }
        }
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "the request is moved once; boxing it would allocate on every request"
)]
enum HeadRead {
    Request(ClientRequest, bool),
    HandOff,
    Closed,
}

async fn read_head<S>(
    io: &mut S,
    buf: &mut BytesMut,
    limits: &Limits,
    state: &ConnState,
) -> io::Result<HeadRead>
where
    S: AsyncRead + Unpin,
{
    let mut deadline = None;
    loop {
        state.set_busy(!buf.is_empty());
        if !buf.is_empty() {
            match parse_head(buf, limits.max_headers, limits.max_header_bytes) {
                Parsed::Serve {
                    request,
                    keep_alive,
                } => return Ok(HeadRead::Request(request, keep_alive)),
                Parsed::HandOff => return Ok(HeadRead::HandOff),
                // hyper answers 431 for a head over the limit.
                Parsed::Partial if buf.len() >= limits.max_header_bytes => {
                    return Ok(HeadRead::HandOff);
                }
                Parsed::Partial => {}
            }
        }
        if state.is_closing() && buf.is_empty() {
            return Ok(HeadRead::Closed);
        }
        buf.reserve(READ_CHUNK);
        let read = if buf.is_empty() {
            // Between requests the connection's idle timeout applies.
            io.read_buf(buf).await?
        } else {
            // A head that has begun must be complete within the header read timeout.
            let deadline = *deadline.get_or_insert_with(|| {
                tokio::time::Instant::from_std(clock::monotonic_now()) + limits.header_read_timeout
            });
            match tokio::time::timeout_at(deadline, io.read_buf(buf)).await {
                Ok(read) => read?,
                Err(_elapsed) => return Ok(HeadRead::Closed),
            }
        };
        if read == 0 {
            return Ok(HeadRead::Closed);
        }
    }
}

/// What the head at the start of a connection's buffer gets.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "the request is moved once; boxing it would allocate on every request"
)]
pub enum Parsed {
    /// Served here: the request, taken out of the buffer.
    Serve {
        /// The request, with no body.
        request: ClientRequest,
        /// Whether the client wants the connection kept open afterwards.
        keep_alive: bool,
    },
    /// Not complete yet: the buffer is unchanged.
    Partial,
    /// For hyper: the buffer is unchanged.
    HandOff,
}

/// What a complete head said, before it is taken out of the buffer.
struct Accepted {
    len: usize,
    method: Method,
    version: Version,
    target: (usize, usize),
    keep_alive: bool,
    fields: Vec<Field>,
}

/// Parses the head at the start of `buf` with at most `max_headers` headers and
/// `max_bytes` bytes, and takes it out of `buf` only when it is served here (a head
/// over either limit goes to hyper, which refuses it with 431).
pub fn parse_head(buf: &mut BytesMut, max_headers: usize, max_bytes: usize) -> Parsed {
    let accepted = match scan_head(buf, max_headers.min(MAX_HEADERS)) {
        Ok(Some(accepted)) if accepted.len <= max_bytes => accepted,
        Ok(Some(_)) | Err(Refused) => return Parsed::HandOff,
        Ok(None) => return Parsed::Partial,
    };
    let head = buf.split_to(accepted.len).freeze();
    let (start, end) = accepted.target;
    let Ok(uri) = Uri::from_maybe_shared(head.slice(start..end)) else {
        // A target `Uri` refuses: put the head back for hyper, which answers it.
        let mut whole = BytesMut::with_capacity(head.len() + buf.len());
        whole.extend_from_slice(&head);
        whole.extend_from_slice(buf);
        *buf = whole;
        return Parsed::HandOff;
    };
    Parsed::Serve {
        request: ClientRequest {
            method: accepted.method,
            uri,
            version: accepted.version,
            headers: RequestHeaders::from_wire(head, accepted.fields),
            body: RequestBody::Empty,
            upgrade: None,
        },
        keep_alive: accepted.keep_alive,
    }
}

/// The head is not one this server serves.
struct Refused;

/// Checks the head at the start of `buf`: `Ok(None)` while it is incomplete.
fn scan_head(buf: &[u8], max_headers: usize) -> Result<Option<Accepted>, Refused> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request
        .parse_with_uninit_headers(buf, slots.get_mut(..max_headers).ok_or(Refused)?)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Refused),
    };
    let version = match request.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(Refused),
    };
    let method =
        Method::from_bytes(request.method.ok_or(Refused)?.as_bytes()).map_err(|_| Refused)?;
    let target = request.path.ok_or(Refused)?;
    if method == Method::CONNECT || !target.starts_with('/') {
        return Err(Refused);
    }
    let mut keep_alive = version == Version::HTTP_11;
    let mut lengths = 0;
    let mut fields = Vec::with_capacity(request.headers.len());
    for line in request.headers.iter() {
        // httparse accepted only what `HeaderName` and `HeaderValue` accept (names of
        // token characters; values without CR, LF, NUL or other controls but tab).
        let name = line.name.as_bytes();
        let name_at = offset_in(buf, name);
        let value_at = offset_in(buf, line.value);
        let field = Field::new(
            name,
            (name_at, name_at + name.len()),
            (value_at, value_at + line.value.len()),
        )
        .ok_or(Refused)?;
        match field.known() {
            Known::TransferEncoding | Known::Upgrade | Known::Expect => return Err(Refused),
            Known::ContentLength => {
                lengths += 1;
                if lengths > 1 || line.value != b"0" {
                    return Err(Refused);
                }
            }
            Known::Connection => {
                for token in line.value.split(|&byte| byte == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive")
                        && version == Version::HTTP_10
                    {
                        keep_alive = true;
                    }
                }
            }
            _ => {}
        }
        fields.push(field);
    }
    let start = offset_in(buf, target.as_bytes());
    Ok(Some(Accepted {
        len,
        method,
        version,
        target: (start, start + target.len()),
        keep_alive,
        fields,
    }))
}

/// Where `part`, a slice of `whole`, begins in it.
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}

/// What the response depends on from its request.
struct Exchange {
    version: Version,
    head_request: bool,
    keep_alive: bool,
}

/// How a response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304): whatever the body yields is dropped.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked (an HTTP/1.1 client, a body of unknown length).
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, a body of unknown length).
    UntilClose,
}

/// Writes `response`; `Ok(true)` when the connection can carry another request.
async fn write_response<S>(
    io: &mut S,
    out: &mut Vec<u8>,
    response: Response<Body>,
    exchange: &Exchange,
    state: &ConnState,
) -> io::Result<bool>
where
    S: AsyncWrite + Unpin,
{
    let (parts, mut body) = response.into_parts();
    // An upstream's headers come as ready lines, written as they are.
    let upstream = body.upstream_headers();
    let status = parts.status;
    let declared = upstream
        .as_ref()
        .and_then(UpstreamHeaders::content_length)
        .or_else(|| declared_length(&parts.headers));
    let bodiless = status.is_informational() || status == StatusCode::NO_CONTENT;
    let (framing, length_header) = if bodiless {
        (Framing::None, None)
    } else if exchange.head_request || status == StatusCode::NOT_MODIFIED {
        // The length of what a GET would have returned, if the response said it (an
        // empty body says nothing about that).
        (Framing::None, declared)
    } else if let Some(length) = declared.or_else(|| body.size_hint().exact()) {
        (Framing::Length(length), Some(length))
    } else if exchange.version == Version::HTTP_11 {
        (Framing::Chunked, None)
    } else {
        (Framing::UntilClose, None)
    };
    let keep_alive = exchange.keep_alive
        && framing != Framing::UntilClose
        && !state.is_closing()
        && !says_close(&parts.headers);

    out.clear();
    write_head(
        out,
        status,
        &parts.headers,
        upstream.as_ref(),
        framing,
        length_header,
        connection_line(keep_alive, exchange.version),
    );
    drop(parts);

    let mut sent: u64 = 0;
    loop {
        let frame = match poll_now(&mut body).await {
            Some(frame) => frame,
            None => {
                // Nothing more yet: what is gathered goes out before waiting.
                flush(io, out).await?;
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers are not forwarded (README).
                Err(_trailers) => continue,
            },
            Some(Err(err)) => {
                // The status is sent; all that is left is to cut the body off.
                flush(io, out).await?;
                return Err(io::Error::other(BodyCut(err)));
            }
        };
        match framing {
            Framing::None => {}
            Framing::Length(length) => {
                let room = length.saturating_sub(sent);
                let take = usize::try_from(room).map_or(data.len(), |room| room.min(data.len()));
                put(io, out, data.get(..take).unwrap_or_default()).await?;
                sent += take as u64;
                if take < data.len() {
                    // A body longer than its length: the client got what was declared.
                    flush(io, out).await?;
                    return Ok(false);
                }
            }
            Framing::Chunked if data.is_empty() => {}
            Framing::Chunked => {
                let _ = write!(out, "{:x}\r\n", data.len());
                put(io, out, &data).await?;
                out.extend_from_slice(b"\r\n");
            }
            Framing::UntilClose => put(io, out, &data).await?,
        }
        if out.len() >= WRITE_HIGH_WATER {
            flush(io, out).await?;
        }
    }
    let complete = match framing {
        Framing::Chunked => {
            out.extend_from_slice(b"0\r\n\r\n");
            true
        }
        Framing::Length(length) => sent == length,
        Framing::None | Framing::UntilClose => true,
    };
    flush(io, out).await?;
    Ok(keep_alive && complete)
}

/// A response body that failed after its head was sent.
#[derive(Debug, thiserror::Error)]
#[error("response body failed: {0}")]
struct BodyCut(BodyError);

/// The `Connection` line a response needs: `close` when the connection ends after
/// it, `keep-alive` for an HTTP/1.0 client that keeps it, none otherwise.
fn connection_line(keep_alive: bool, version: Version) -> &'static [u8] {
    if !keep_alive {
        b"connection: close\r\n"
    } else if version == Version::HTTP_10 {
        b"connection: keep-alive\r\n"
    } else {
        b""
    }
}

fn write_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    upstream: Option<&UpstreamHeaders>,
    framing: Framing,
    length: Option<u64>,
    connection: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        // Framing and connection management are this hop's own.
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // Without hop-by-hop headers or `Content-Length` (`UpstreamHeaders`).
    if let Some(upstream) = upstream {
        out.extend_from_slice(upstream.lines());
    }
    if let Some(length) = length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(connection);
    if !upstream.is_some_and(UpstreamHeaders::has_date) && !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The response's `Content-Length`, when it has exactly one and it is a number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()?.parse().ok()
}

/// Whether the response asks for the connection to close.
fn says_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&byte| byte == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// The body's next frame if it is ready now (`None` if not: the body then wakes the
/// task when it is).
async fn poll_now(body: &mut Body) -> Option<Option<Result<Frame<Bytes>, BodyError>>> {
    poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(frame) => Some(frame),
            Poll::Pending => None,
        })
    })
    .await
}

/// Appends `data` to what is gathered, or writes it as it is when it is large.
async fn put<S>(io: &mut S, out: &mut Vec<u8>, data: &[u8]) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    if data.len() < WRITE_DIRECT {
        out.extend_from_slice(data);
        return Ok(());
    }
    flush(io, out).await?;
    io.write_all(data).await
}

/// Writes out what is gathered.
async fn flush<S>(io: &mut S, out: &mut Vec<u8>) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    io.flush().await
}

/// Appends the current time as an HTTP date, formatted at most once a second per
/// thread.
fn http_date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = clock::system_now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    CACHED.with_borrow_mut(|(cached_second, text)| {
        if *cached_second != second {
            *cached_second = second;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

/// An I/O object that reads `prefix` first: the bytes this server read before it
/// handed the connection to hyper.
#[derive(Debug)]
pub(super) struct Replay<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Replay<S> {
    pub(super) fn new(prefix: Bytes, inner: S) -> Replay<S> {
        Replay { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let take = self.prefix.len().min(buf.remaining());
        let piece = self.prefix.split_to(take);
        buf.put_slice(&piece);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
