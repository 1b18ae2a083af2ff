//! The kept-alive connections of one route's upstream, kept per serving thread.
//!
//! A socket belongs to the reactor of the thread that opened it: used from another
//! thread, every readiness event would have to wake that thread's tasks from afar.
//! So each serving thread ([`crate::net::workers`]) keeps its own idle list, takes
//! only from it, and a connection always goes back to the list of the thread that
//! opened it.
//!
//! An idle connection is owned by the pool; a request takes one out (the most
//! recently used, whose buffers are warm) and owns it until its response body ends,
//! when [`exchange::UpstreamBody`](super::exchange::UpstreamBody) puts it back. A
//! connection the upstream closed while it was idle shows as readable and is dropped
//! when a checkout meets it; one that closes between the checkout and the request is
//! caught by the exchange, which sends an idempotent request once more on a fresh
//! connection (never a request whose body was read). At most [`KEEP`] connections
//! are kept; one idle for longer than [`IDLE`] is closed when a checkout meets it
//! (an upstream's own keep-alive timeout usually closes it first).

use std::sync::Mutex;
use std::time::Duration;

use super::conn::{Conn, Connector};
use crate::clock;
use crate::net::workers;

/// The most idle connections kept per route and serving thread.
const KEEP: usize = 64;
/// A kept connection idle for this long is closed.
const IDLE: Duration = Duration::from_secs(90);

/// One route's connections.
pub(super) struct Pool {
    connector: Connector,
    /// Idle connections of each serving thread, the most recently used last. The
    /// locks are never contended: only their own thread takes them.
    idle: Box<[Mutex<Vec<Conn>>]>,
}

impl Pool {
    /// A pool for `threads` serving threads.
    pub(super) fn new(connector: Connector, threads: usize) -> Pool {
        Pool {
            connector,
            idle: (0..threads.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        }
    }

    /// The idle list of serving thread `thread`.
    fn idle(&self, thread: usize) -> Option<&Mutex<Vec<Conn>>> {
        self.idle.get(thread % self.idle.len())
    }

    /// The most recently used idle connection of this serving thread that can still
    /// take a request.
    pub(super) fn checkout(&self) -> Option<Conn> {
        let now = clock::monotonic_now();
        // A poisoned lock only means another request panicked here; the list itself
        // is always consistent, but a fresh connection is safe too.
        let mut idle = self.idle(workers::current())?.lock().ok()?;
        // The longest idle is first: retire it once it is stale, one per checkout.
        if idle
            .first()
            .is_some_and(|oldest| now.saturating_duration_since(oldest.used) > IDLE)
        {
            idle.remove(0);
        }
        while let Some(mut conn) = idle.pop() {
            if now.saturating_duration_since(conn.used) <= IDLE && conn.is_reusable() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection whose exchange has ended cleanly, unless enough are kept,
    /// with the serving thread that opened it.
    pub(super) fn put(&self, mut conn: Conn) {
        conn.used = clock::monotonic_now();
        if let Some(Ok(mut idle)) = self.idle(conn.home).map(Mutex::lock)
            && idle.len() < KEEP
        {
            idle.push(conn);
        }
    }

    /// Opens a new connection.
    pub(super) async fn connect(&self) -> Result<Conn, String> {
        self.connector.connect(clock::monotonic_now()).await
    }
}
