//! One request and its response on an upstream connection, driven by the task of the
//! client's request itself: no task per upstream connection, no channel between the
//! two sides, so a proxied request wakes one task instead of three.
//!
//! The request body is sent while the response is read (both in the same poll), so a
//! full-duplex exchange streams and an upstream that answers before reading the whole
//! upload does not stall. The response body is read straight from the connection by
//! [`UpstreamBody`], which puts the connection back in its pool the moment the body
//! ends exactly where its framing said, and closes it otherwise.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::{Method, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::codec::{
    self, ChunkError, ChunkedDecoder, Decoded, Framing, Parsed, RequestFraming, ResponseHead,
    UpstreamHeaders,
};
use super::conn::Conn;
use super::pool::Pool;
use crate::proxy::RequestBody;
use crate::proxy::request::{Known, RequestHeaders};

/// The most pieces handed to one vectored write.
const MAX_SLICES: usize = 8;

/// Why a response body stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Reading from or writing to the upstream failed.
    #[error("upstream connection: {0}")]
    Io(#[from] io::Error),
    /// The upstream closed the connection before the body's declared end.
    #[error("upstream closed the connection before the body ended")]
    Truncated,
    /// The chunked body was malformed.
    #[error("upstream body: {0}")]
    Chunked(#[from] ChunkError),
}

/// Why an exchange failed before a response head arrived.
pub(super) struct Failed {
    pub(super) reason: String,
    /// Nothing came back: the kept connection was closed by the upstream, so an
    /// idempotent request may go again on a fresh one, if its body was not read
    /// ([`Outgoing::again`] decides that).
    pub(super) retryable: bool,
}

/// What is left to send of a request: queued bytes (the head, framing, body data) and
/// the client's body still to be read.
pub(super) struct Outgoing {
    queue: VecDeque<Bytes>,
    body: Option<RequestBody>,
    framing: RequestFraming,
    /// Whether any of the client's body has been read (it cannot be sent twice; an
    /// empty body's end can be read again).
    started: bool,
    /// Whether everything has been written and flushed.
    finished: bool,
    /// Whether sending stopped early (the upstream stopped reading, or the client's
    /// body failed): the connection is then never kept.
    abandoned: bool,
}

/// Why sending the request stopped.
enum SendError {
    Upstream(io::Error),
    Client(hyper::Error),
}

impl Outgoing {
    /// A request whose head is `head` and whose body is `body` framed as `framing`.
    pub(super) fn new(head: Bytes, body: RequestBody, framing: RequestFraming) -> Outgoing {
        Outgoing {
            queue: VecDeque::from([head]),
            body: (framing != RequestFraming::Empty).then_some(body),
            framing,
            started: false,
            finished: false,
            abandoned: false,
        }
    }

    /// The same request again, for a fresh connection; `None` once its body was read.
    pub(super) fn again(self, head: Bytes) -> Option<Outgoing> {
        if self.started {
            return None;
        }
        Some(Outgoing {
            queue: VecDeque::from([head]),
            finished: false,
            abandoned: false,
            ..self
        })
    }

    /// Writes as much as it can: `Ready(Ok)` once all is written and flushed.
    fn poll_send<W>(&mut self, io: &mut W, cx: &mut Context<'_>) -> Poll<Result<(), SendError>>
    where
        W: AsyncWrite + Unpin,
    {
        if self.finished || self.abandoned {
            return Poll::Ready(Ok(()));
        }
        loop {
            while !self.queue.is_empty() {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (slot, piece) in slices.iter_mut().zip(&self.queue) {
                    *slot = IoSlice::new(piece);
                    count += 1;
                }
                let written = ready!(
                    Pin::new(&mut *io).poll_write_vectored(cx, slices.get(..count).unwrap_or(&[]))
                )
                .map_err(SendError::Upstream)?;
                if written == 0 {
                    return Poll::Ready(Err(SendError::Upstream(io::ErrorKind::WriteZero.into())));
                }
                self.consume(written);
            }
            let Some(body) = self.body.as_mut() else {
                ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(SendError::Upstream)?;
                self.finished = true;
                return Poll::Ready(Ok(()));
            };
            // Whatever was written is on its way before waiting on the client.
            let frame = match Pin::new(body).poll_frame(cx) {
                Poll::Pending => {
                    ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(SendError::Upstream)?;
                    return Poll::Pending;
                }
                Poll::Ready(frame) => frame,
            };
            match frame {
                Some(Ok(frame)) => {
                    self.started = true;
                    // Request trailers are not forwarded (README): an HTTP/1.1 upstream
                    // that wants them says so in `TE`, a hop-by-hop header.
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        self.push_data(data);
                    }
                }
                Some(Err(err)) => {
                    self.started = true;
                    return Poll::Ready(Err(SendError::Client(err)));
                }
                None => {
                    self.body = None;
                    if self.framing == RequestFraming::Chunked {
                        self.queue.push_back(Bytes::from_static(b"0\r\n\r\n"));
                    }
                }
            }
        }
    }

    /// Stops sending. A body already begun is dropped; one not yet read stays, so
    /// [`again`](Outgoing::again) can still send the whole request elsewhere.
    fn abandon(&mut self) {
        if self.started {
            self.body = None;
        }
        self.queue.clear();
        self.abandoned = true;
    }

    fn push_data(&mut self, data: Bytes) {
        if self.framing == RequestFraming::Chunked {
            self.queue.push_back(codec::chunk_size_line(data.len()));
            self.queue.push_back(data);
            self.queue.push_back(Bytes::from_static(b"\r\n"));
        } else {
            self.queue.push_back(data);
        }
    }

    fn consume(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.queue.pop_front();
        }
    }
}

/// Sends `outgoing` on `conn` and reads the response head (interim responses skipped).
pub(super) async fn exchange(
    conn: &mut Conn,
    outgoing: &mut Outgoing,
    head_request: bool,
) -> Result<ResponseHead, Failed> {
    let mut progress = HeadProgress::default();
    std::future::poll_fn(|cx| poll_head(conn, outgoing, head_request, &mut progress, cx)).await
}

/// What an exchange has seen while waiting for its response head.
#[derive(Default)]
struct HeadProgress {
    /// Whether any byte of a response came.
    received: bool,
    /// Why writing the request failed, if it did: an upstream may answer early and
    /// close (a 413 for an upload), so the response is still read.
    write_error: Option<String>,
}

fn poll_head(
    conn: &mut Conn,
    outgoing: &mut Outgoing,
    head_request: bool,
    progress: &mut HeadProgress,
    cx: &mut Context<'_>,
) -> Poll<Result<ResponseHead, Failed>> {
    let fail = |reason: String, retryable: bool| Poll::Ready(Err(Failed { reason, retryable }));
    match outgoing.poll_send(&mut conn.stream, cx) {
        Poll::Ready(Err(SendError::Upstream(err))) => {
            outgoing.abandon();
            progress.write_error = Some(format!("writing the request: {err}"));
        }
        Poll::Ready(Err(SendError::Client(err))) => {
            return fail(format!("reading the client's body: {err}"), false);
        }
        Poll::Ready(Ok(())) | Poll::Pending => {}
    }
    loop {
        match codec::parse_response_head(&mut conn.read_buf, head_request) {
            Ok(Parsed::Head(head)) => return Poll::Ready(Ok(head)),
            Ok(Parsed::Interim) => continue,
            Ok(Parsed::Partial) => {}
            Err(err) => return fail(err.to_string(), false),
        }
        let nothing_came = !progress.received;
        match ready!(conn.poll_fill(cx)) {
            Ok(0) if conn.read_buf.is_empty() && nothing_came => {
                let reason = progress
                    .write_error
                    .take()
                    .unwrap_or_else(|| "connection closed before a response".into());
                return fail(reason, true);
            }
            Ok(0) => return fail("connection closed inside the response head".into(), false),
            Ok(_) => progress.received = true,
            Err(err) => {
                let reason = match progress.write_error.take() {
                    Some(write) => format!("{write}; reading the response: {err}"),
                    None => format!("reading the response: {err}"),
                };
                return fail(reason, nothing_came);
            }
        }
    }
}

/// Turns a response head into the response handed to the client side, with a body
/// that reads the rest from `conn` (and puts it back in `pool` when done).
pub(super) fn response(
    head: ResponseHead,
    conn: Conn,
    outgoing: Outgoing,
    pool: &Arc<Pool>,
) -> Response<UpstreamBody> {
    let reading = match head.framing {
        Framing::Empty => Reading::Length(0),
        Framing::Length(length) => Reading::Length(length),
        Framing::Chunked => Reading::Chunked(ChunkedDecoder::default()),
        Framing::UntilClose => Reading::UntilClose,
        Framing::Tunnel => Reading::Tunnel,
    };
    let mut body = UpstreamBody {
        headers: Some(head.headers),
        state: Some(Box::new(Live {
            conn,
            pool: Arc::clone(pool),
            outgoing,
            reading,
            reusable: head.reusable,
        })),
    };
    if matches!(
        body.state.as_deref(),
        Some(Live {
            reading: Reading::Length(0),
            ..
        })
    ) {
        body.finish();
    }
    // The headers travel with the body, in wire form, until a side needs a map.
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    response
}

/// A response body read straight from its upstream connection, carrying the
/// response's headers in wire form until someone takes them.
pub struct UpstreamBody {
    /// The upstream's end-to-end headers, not (yet) in the response's `HeaderMap`.
    headers: Option<UpstreamHeaders>,
    /// `None` once the body has ended (the connection is back in its pool or closed).
    state: Option<Box<Live>>,
}

struct Live {
    conn: Conn,
    pool: Arc<Pool>,
    /// The rest of the request, still sent while the response is read.
    outgoing: Outgoing,
    reading: Reading,
    /// Whether the response allows the connection to be kept.
    reusable: bool,
}

enum Reading {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Tunnel,
}

impl UpstreamBody {
    /// The upstream's headers, which the response's own `HeaderMap` does not hold
    /// (only the first call has them).
    pub fn take_headers(&mut self) -> Option<UpstreamHeaders> {
        self.headers.take()
    }

    /// After a 101 response: the connection, as the upstream half of a tunnel.
    pub fn into_tunnel(mut self) -> Option<Tunnel> {
        match self.state.take() {
            Some(live) if matches!(live.reading, Reading::Tunnel) => {
                Some(Tunnel { conn: live.conn })
            }
            _ => None,
        }
    }

    /// The body has ended: the connection goes back to its pool if the response
    /// ended exactly where its framing said and the whole request was sent.
    fn finish(&mut self) {
        let Some(live) = self.state.take() else {
            return;
        };
        if live.reusable && live.outgoing.finished && live.conn.read_buf.is_empty() {
            live.pool.put(live.conn);
        }
    }
}

/// What the buffered bytes of a body gave.
enum Next {
    Data(Bytes, bool),
    End,
    More,
    Tunnel,
    Failed(BodyError),
}

impl Live {
    /// Sends more of the request if it can. If that fails, the response may still
    /// complete, but the connection is not kept (`finish` sees it unfinished).
    fn keep_sending(&mut self, cx: &mut Context<'_>) {
        if let Poll::Ready(Err(_)) = self.outgoing.poll_send(&mut self.conn.stream, cx) {
            self.outgoing.abandon();
        }
    }

    /// The next piece of the body from what has been read, without reading more;
    /// `Data(_, true)` is the last piece.
    fn next_data(&mut self) -> Next {
        let buf = &mut self.conn.read_buf;
        match &mut self.reading {
            Reading::Tunnel => Next::Tunnel,
            Reading::Length(0) => Next::End,
            Reading::Length(_) | Reading::UntilClose if buf.is_empty() => Next::More,
            Reading::Length(left) => {
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= take as u64;
                Next::Data(buf.split_to(take).freeze(), *left == 0)
            }
            Reading::UntilClose => Next::Data(buf.split().freeze(), false),
            Reading::Chunked(decoder) => match decoder.decode(buf) {
                Ok(Decoded::Data(data)) => Next::Data(data, false),
                Ok(Decoded::End) => Next::End,
                Ok(Decoded::More) => Next::More,
                Err(err) => Next::Failed(err.into()),
            },
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            let Some(live) = this.state.as_mut() else {
                return Poll::Ready(None);
            };
            live.keep_sending(cx);
            match live.next_data() {
                Next::Data(data, last) => {
                    if last {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Next::End => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Next::Tunnel => return Poll::Ready(None),
                Next::Failed(err) => {
                    this.state = None;
                    return Poll::Ready(Some(Err(err)));
                }
                Next::More => {}
            }
            match ready!(live.conn.poll_fill(cx)) {
                Ok(0) if matches!(live.reading, Reading::UntilClose) => {
                    this.state = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.state = None;
                    return Poll::Ready(Some(Err(BodyError::Truncated)));
                }
                Ok(_) => {}
                Err(err) => {
                    this.state = None;
                    return Poll::Ready(Some(Err(err.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.state.as_deref() {
            None => SizeHint::with_exact(0),
            Some(Live {
                reading: Reading::Length(left),
                ..
            }) => SizeHint::with_exact(*left),
            Some(_) => SizeHint::default(),
        }
    }
}

/// The upstream half of a WebSocket tunnel: what was read past the 101 first, then
/// the connection.
pub struct Tunnel {
    conn: Conn,
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let conn = &mut self.conn;
        if !conn.read_buf.is_empty() {
            let take = conn.read_buf.len().min(buf.remaining());
            buf.put_slice(conn.read_buf.get(..take).unwrap_or_default());
            conn.read_buf.advance(take);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut conn.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn.stream).poll_shutdown(cx)
    }
}

/// How the request body is framed towards the upstream: the client's length when it
/// gave one, nothing when there is no body, chunked otherwise (an HTTP/2 or chunked
/// HTTP/1.1 upload).
pub(super) fn request_framing(headers: &RequestHeaders, body: &RequestBody) -> RequestFraming {
    if headers.contains(Known::ContentLength) {
        RequestFraming::Length
    } else if body.is_end_stream() {
        RequestFraming::Empty
    } else {
        RequestFraming::Chunked
    }
}

/// Whether a request may be sent again after its connection failed without a
/// response (RFC 9110 §9.2.2).
pub(super) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
