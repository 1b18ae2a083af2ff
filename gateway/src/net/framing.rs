//! A second reading of HTTP/1.1 message framing, for what hyper tolerates.
//!
//! When a request carries both `Content-Length` and `Transfer-Encoding`, hyper follows
//! RFC 9112 §6.3 (the transfer coding wins, the length is dropped from the headers and
//! the connection closes afterwards), so by the time the pipeline sees the request the
//! conflict is invisible. Portcullis refuses such requests outright instead. This module
//! follows the client's byte stream as hyper reads it — request heads, fixed-length
//! bodies, chunked bodies — and raises a per-connection flag when a head carries both
//! headers. The pipeline rejects every request on a flagged connection.
//!
//! Anything this tracker does not understand (an upgrade, HTTP/2, a head it cannot
//! parse, limits exceeded) switches it off: hyper refuses malformed input by itself,
//! and an upgraded connection is no longer HTTP.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest chunk-size line or trailer section the tracker follows.
const MAX_LINE: usize = 4096;
/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Set once a request head on the connection carried both `Content-Length` and
/// `Transfer-Encoding`.
#[derive(Debug, Clone, Default)]
pub struct FramingFlag(Arc<AtomicBool>);

impl FramingFlag {
    /// Whether the connection sent ambiguous framing.
    pub fn is_ambiguous(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Where in the byte stream the tracker is.
#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// Inside a body of known remaining length.
    Fixed(u64),
    /// Collecting a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Inside chunk data.
    ChunkData(u64),
    /// Expecting the CRLF after chunk data; the number says how many bytes are left.
    ChunkEnd(u8),
    /// Collecting the trailer section after the last chunk.
    Trailers(Vec<u8>),
    /// Not following this connection (any more).
    Off,
}

/// Follows HTTP/1.1 request framing over a stream of bytes.
#[derive(Debug)]
pub struct FramingTracker {
    state: State,
    max_head: usize,
    flag: FramingFlag,
}

impl FramingTracker {
    /// A tracker for a new connection; heads longer than `max_head` switch it off.
    pub fn new(max_head: usize, flag: FramingFlag) -> FramingTracker {
        FramingTracker {
            state: State::Head(Vec::new()),
            max_head,
            flag,
        }
    }

    /// Feeds bytes the client sent, in order.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let (next, used) = match std::mem::replace(&mut self.state, State::Off) {
                State::Off => return,
                // The common case: a whole head arrives in one read. It is followed
                // where it lies, without copying it.
                State::Head(head) if head.is_empty() => match find(data, b"\r\n\r\n") {
                    Some(end) if end + 4 > self.max_head => (State::Off, data.len()),
                    Some(end) => (
                        self.after_head(data.get(..end + 4).unwrap_or(data)),
                        end + 4,
                    ),
                    None => self.collect_head(head, data),
                },
                State::Head(head) => self.collect_head(head, data),
                State::Fixed(remaining) => {
                    let take = remaining.min(data.len() as u64);
                    let left = remaining - take;
                    let next = if left == 0 {
                        State::Head(Vec::new())
                    } else {
                        State::Fixed(left)
                    };
                    (next, usize::try_from(take).unwrap_or(data.len()))
                }
                State::ChunkSize(mut line) => match data.iter().position(|&b| b == b'\n') {
                    Some(newline) => {
                        line.extend_from_slice(data.get(..=newline).unwrap_or(data));
                        let next = match chunk_size(&line) {
                            Some(0) => State::Trailers(Vec::new()),
                            Some(size) => State::ChunkData(size),
                            None => State::Off,
                        };
                        (next, newline + 1)
                    }
                    None => {
                        line.extend_from_slice(data);
                        let next = if line.len() > MAX_LINE {
                            State::Off
                        } else {
                            State::ChunkSize(line)
                        };
                        (next, data.len())
                    }
                },
                State::ChunkData(remaining) => {
                    let take = remaining.min(data.len() as u64);
                    let left = remaining - take;
                    let next = if left == 0 {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(left)
                    };
                    (next, usize::try_from(take).unwrap_or(data.len()))
                }
                State::ChunkEnd(left) => {
                    let next = if left <= 1 {
                        State::ChunkSize(Vec::new())
                    } else {
                        State::ChunkEnd(left - 1)
                    };
                    (next, 1)
                }
                State::Trailers(mut section) => {
                    let before = section.len();
                    section.extend_from_slice(data);
                    let end = if section.starts_with(b"\r\n") {
                        Some(0)
                    } else {
                        find(&section, b"\r\n\r\n").map(|at| at + 2)
                    };
                    match end {
                        Some(at) => (State::Head(Vec::new()), at + 2 - before),
                        None if section.len() > MAX_LINE => (State::Off, data.len()),
                        None => (State::Trailers(section), data.len()),
                    }
                }
            };
            self.state = next;
            data = data.get(used..).unwrap_or_default();
        }
    }

    /// Adds `data` to a head that arrives in pieces.
    fn collect_head(&self, mut head: Vec<u8>, data: &[u8]) -> (State, usize) {
        let before = head.len();
        head.extend_from_slice(data);
        // Only the new bytes (and the three before them) can complete the blank line.
        let from = before.saturating_sub(3);
        let end = head
            .get(from..)
            .and_then(|tail| find(tail, b"\r\n\r\n"))
            .map(|at| at + from);
        match end {
            Some(end) if end + 4 > self.max_head => (State::Off, data.len()),
            Some(end) => {
                let used = end + 4 - before;
                head.truncate(end + 4);
                (self.after_head(&head), used)
            }
            None if head.len() > self.max_head => (State::Off, data.len()),
            None if head.starts_with(H2_PREFACE) => (State::Off, data.len()),
            None => (State::Head(head), data.len()),
        }
    }

    /// Reads a complete head and decides what follows it.
    fn after_head(&self, head: &[u8]) -> State {
        // Clients may send stray CRLFs between requests; hyper skips them too.
        let start = head
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(head.len());
        let head = head.get(start..).unwrap_or_default();
        if head.is_empty() {
            return State::Head(Vec::new());
        }
        if head.starts_with(H2_PREFACE) {
            return State::Off;
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut request = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(_)) = request.parse(head) else {
            return State::Off;
        };
        let mut lengths = Vec::new();
        let mut codings = Vec::new();
        let mut upgrade = false;
        for header in request.headers.iter() {
            if header.name.eq_ignore_ascii_case("content-length") {
                lengths.push(header.value);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                codings.push(header.value);
            } else if header.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        if !lengths.is_empty() && !codings.is_empty() {
            self.flag.raise();
            return State::Off;
        }
        if upgrade || request.method == Some("CONNECT") {
            return State::Off;
        }
        if let Some(last) = codings.last() {
            let chunked = last
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return if chunked {
                State::ChunkSize(Vec::new())
            } else {
                State::Off
            };
        }
        match lengths.first() {
            None => State::Head(Vec::new()),
            Some(value) => match std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(0) => State::Head(Vec::new()),
                Some(length) => State::Fixed(length),
                None => State::Off,
            },
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    // Vectorised: this runs over every request head.
    memchr::memmem::find(haystack, needle)
}

/// The size in a chunk-size line (`1a;ext=1\r\n`).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line
        .split(|&b| b == b';' || b == b'\r' || b == b'\n')
        .next()?;
    let digits = std::str::from_utf8(digits).ok()?.trim();
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// An HTTP/1 connection whose inbound bytes are followed by a [`FramingTracker`].
#[derive(Debug)]
pub struct FramingIo<T> {
    inner: T,
    tracker: FramingTracker,
}

impl<T> FramingIo<T> {
    /// Wraps `inner`, raising `flag` on ambiguous framing.
    pub fn new(inner: T, max_head: usize, flag: FramingFlag) -> FramingIo<T> {
        FramingIo {
            inner,
            tracker: FramingTracker::new(max_head, flag),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FramingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(new) = buf.filled().get(before..)
            && !new.is_empty()
        {
            self.tracker.feed(new);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FramingIo<T> {
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
mod tests {
    use super::{FramingFlag, FramingTracker};

    /// Feeds `stream` in pieces of `step` bytes and says whether the flag went up.
    fn flagged(stream: &[u8], step: usize) -> bool {
        let flag = FramingFlag::default();
        let mut tracker = FramingTracker::new(16 * 1024, flag.clone());
        for piece in stream.chunks(step) {
            tracker.feed(piece);
        }
        flag.is_ambiguous()
    }

    fn every_split(stream: &[u8]) -> Vec<bool> {
        (1..=stream.len().max(1))
            .map(|step| flagged(stream, step))
            .collect()
    }

    #[test]
    fn length_and_coding_together_in_either_order() {
        for stream in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
        ] {
            assert!(every_split(stream).iter().all(|&f| f));
        }
    }

    #[test]
    fn conflict_behind_bodies_on_a_kept_alive_connection() {
        let stream = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 28\r\n\r\nTransfer-Encoding: chunked\r\n\
POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n0\r\nT: 1\r\n\r\n\
GET /c HTTP/1.1\r\nHost: a\r\n\r\n\
POST /d HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(every_split(stream).iter().all(|&f| f));
    }

    #[test]
    fn bodies_that_mention_the_headers_are_not_heads() {
        let stream = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 47\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\
POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2f\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(every_split(stream).iter().all(|&f| !f));
    }

    #[test]
    fn upgrades_and_http2_switch_tracking_off() {
        let upgrade =
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\
POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(every_split(upgrade).iter().all(|&f| !f));
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(every_split(h2).iter().all(|&f| !f));
    }
}
