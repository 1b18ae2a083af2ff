//! A connection and what watches it (shutdown, idleness), polled as one future without
//! polling the watchers on every wake-up of the connection.
//!
//! `tokio::select!` polls every branch whenever the task wakes. A client connection's
//! task wakes two or three times per request (the client's bytes, the upstream's,
//! room to write), while its watchers (a shutdown signal, an idle timer) fire once in
//! the connection's life at most; polling them each time cost ~900 instructions per
//! request (callgrind), 2% of a signed-in request. [`first`] gives the watchers their
//! own waker and polls them only when it fired.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Which of the two futures given to [`first`] finished first.
#[derive(Debug, PartialEq, Eq)]
pub enum First<A, B> {
    /// The connection.
    Main(A),
    /// A watcher.
    Watcher(B),
}

/// The watchers' waker: it marks them as due and wakes the task.
struct Due {
    due: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Due {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Runs `main` and `watcher` until one of them finishes; `main` is polled first and on
/// every wake-up, `watcher` on the first poll and then only after its own waker fired.
pub async fn first<A: Future, B: Future>(
    main: Pin<&mut A>,
    watcher: B,
) -> First<A::Output, B::Output> {
    let mut main = main;
    let mut watcher = pin!(watcher);
    // Due at first: the watcher is polled once to register its waker.
    let due = Arc::new(Due {
        due: AtomicBool::new(true),
        task: AtomicWaker::new(),
    });
    let waker = Waker::from(Arc::clone(&due));
    poll_fn(move |cx: &mut Context<'_>| {
        if let Poll::Ready(output) = main.as_mut().poll(cx) {
            return Poll::Ready(First::Main(output));
        }
        // Registered before the flag is read: a watcher waking in between still
        // wakes this task.
        due.task.register(cx.waker());
        if due.due.swap(false, Ordering::Acquire)
            && let Poll::Ready(output) = watcher.as_mut().poll(&mut Context::from_waker(&waker))
        {
            return Poll::Ready(First::Watcher(output));
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::{First, first};

    /// A future that counts its polls and is ready after `ready_after` of them,
    /// waking itself each time.
    async fn counted(polls: Arc<AtomicUsize>, ready_after: usize) -> usize {
        std::future::poll_fn(|cx| {
            let seen = polls.fetch_add(1, Ordering::Relaxed) + 1;
            if seen >= ready_after {
                return std::task::Poll::Ready(seen);
            }
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        })
        .await
    }

    #[tokio::test]
    async fn the_watcher_is_polled_only_when_its_waker_fires() {
        let polls = Arc::new(AtomicUsize::new(0));
        let main = pin!(counted(Arc::clone(&polls), 50));
        let watched = Arc::new(AtomicUsize::new(0));
        let watcher_polls = Arc::clone(&watched);
        // Never ready and never woken: polled once, whatever the main future does.
        let watcher = std::future::poll_fn(move |_| {
            watcher_polls.fetch_add(1, Ordering::Relaxed);
            std::task::Poll::<()>::Pending
        });
        assert_eq!(first(main, watcher).await, First::Main(50));
        assert_eq!(watched.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_watcher_that_fires_ends_the_wait() {
        let main = pin!(std::future::pending::<()>());
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(7);
        });
        let outcome = tokio::time::timeout(Duration::from_secs(5), first(main, rx)).await;
        assert_eq!(
            outcome.expect("the watcher woke the task"),
            First::Watcher(Ok(7))
        );
    }

    #[tokio::test]
    async fn the_main_future_wins_when_both_are_ready() {
        let main = pin!(async { 1 });
        assert_eq!(first(main, async { 2 }).await, First::Main(1));
    }
}
