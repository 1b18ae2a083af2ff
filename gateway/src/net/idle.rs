//! Idle detection for client connections and WebSocket tunnels: a wrapper that counts
//! the reads and writes that moved bytes, and a future that resolves once that count
//! has stood still for the idle timeout.
//!
//! Counting instead of stamping a time keeps a clock read off every read and write
//! of the hot path; the idle future samples the count four times per timeout, so a
//! connection is closed after between 1 and 1.25 times the timeout of silence (never
//! before).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How many reads and writes moved bytes on a connection.
#[derive(Debug, Clone)]
pub struct Activity(Arc<AtomicU64>);

impl Activity {
    fn touch(&self) {
        // Only "changed or not" matters, so a lost update between two threads is
        // harmless and a plain load and store is enough (no locked instruction).
        let count = self.0.load(Ordering::Relaxed);
        self.0.store(count.wrapping_add(1), Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// An I/O object that records activity.
#[derive(Debug)]
pub struct ActivityIo<T> {
    inner: T,
    activity: Activity,
}

impl<T> ActivityIo<T> {
    /// Wraps `inner`; it counts as active now.
    pub fn new(inner: T) -> ActivityIo<T> {
        let activity = Activity(Arc::new(AtomicU64::new(0)));
        ActivityIo { inner, activity }
    }

    /// Wraps `inner`, counting into an existing `activity` (the same connection,
    /// wrapped anew).
    pub fn resume(inner: T, activity: Activity) -> ActivityIo<T> {
        ActivityIo { inner, activity }
    }

    /// The wrapped object.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// A handle to this connection's activity stamp.
    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// The wrapped object.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() != before {
            self.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
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

/// Resolves once `activity` has been still for `timeout` (sampled every quarter of
/// it, so between 1 and 1.25 × `timeout` after the last byte moved).
pub async fn until_idle(activity: &Activity, timeout: Duration) {
    let step = (timeout / 4).max(Duration::from_millis(1));
    let mut seen = activity.count();
    let mut still = Duration::ZERO;
    loop {
        tokio::time::sleep(step).await;
        let now = activity.count();
        if now == seen {
            still += step;
            if still >= timeout {
                return;
            }
        } else {
            seen = now;
            still = Duration::ZERO;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Activity, until_idle};

    #[tokio::test]
    async fn idle_only_after_a_whole_timeout_without_activity() {
        let activity = Activity(std::sync::Arc::default());
        let timeout = Duration::from_millis(200);
        // Busy for twice the timeout: not idle.
        let busy = activity.clone();
        let toucher = tokio::spawn(async move {
            for _ in 0..40 {
                busy.touch();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let started = crate::clock::monotonic_now();
        until_idle(&activity, timeout).await;
        let waited = started.elapsed();
        toucher.await.unwrap();
        // The last touch comes at 390 ms at the earliest.
        assert!(
            waited >= Duration::from_millis(390) + timeout,
            "idle after {waited:?} although busy for 400 ms"
        );
        // Quiet from the start: idle once the timeout has passed.
        let started = crate::clock::monotonic_now();
        until_idle(&activity, timeout).await;
        let waited = started.elapsed();
        assert!(waited >= timeout, "{waited:?}");
    }
}
