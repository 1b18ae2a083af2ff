//! The serving threads: one per core, each running a single-threaded Tokio runtime,
//! the way nginx runs a worker process per core and Envoy a worker thread per core.
//!
//! A connection is accepted on the main runtime and handed, once, to the next worker
//! in turn; from then on everything it does (TLS, parsing, the
//! checks, the upstream exchange, the response) runs on that one thread. No task is
//! stolen by another thread and no request wakes another core, so the costs a
//! work-stealing scheduler adds to every request (waking an idle worker to look for
//! work, moving a task and its data between cores) are not paid. Upstream
//! connections are kept per worker for the same reason (see
//! [`crate::proxy::upstream`]).
//!
//! New connections go round the workers in turn rather than to the one holding the
//! fewest: idle kept-alive connections (a front proxy's pool, browsers) would
//! otherwise steer a burst of busy ones onto one worker (measured: a 61/39 CPU split
//! and 11% less throughput with 32 idle connections on one side).
//!
//! The price is nginx's: a request that computes for long holds up the other
//! connections of its worker. The hot path does no blocking work (password hashing
//! has threads of its own), so that is a cold-decision's microseconds at most.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

thread_local! {
    /// This thread's worker index; 0 on every other thread.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The worker index of the calling thread: `0..count` on a serving thread, 0
/// elsewhere (the main runtime, tests).
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// The number of serving threads when the configuration does not say: the CPUs this
/// process may use (which honours cgroup CPU quotas).
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;
type Job = Box<dyn FnOnce() -> Task + Send>;

/// Why the serving threads could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    /// A thread or its runtime could not be created.
    #[error("cannot start serving thread {index}: {source}")]
    Start {
        /// The worker index.
        index: usize,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The running serving threads.
pub struct Workers {
    workers: Vec<Worker>,
    /// Whose turn the next connection is.
    next: AtomicUsize,
}

struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    thread: JoinHandle<()>,
}

impl Workers {
    /// Starts `count` (at least one) serving threads.
    pub fn start(count: usize) -> Result<Workers, WorkersError> {
        let mut workers = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| WorkersError::Start { index, source })?;
            let (jobs, queue) = mpsc::unbounded_channel();
            let thread = std::thread::Builder::new()
                .name(format!("portcullis-worker-{index}"))
                .spawn(move || {
                    INDEX.with(|cell| cell.set(index));
                    runtime.block_on(run(queue));
                })
                .map_err(|source| WorkersError::Start { index, source })?;
            workers.push(Worker { jobs, thread });
        }
        Ok(Workers {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// How many serving threads run.
    pub fn count(&self) -> usize {
        self.workers.len()
    }

    /// Runs `task()` on the next worker in turn: `task` is called on that worker's
    /// thread (so what it registers with the runtime, such as a socket, belongs to
    /// that worker) and its future runs there to the end.
    pub fn spawn<F, Fut>(&self, task: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(worker) = self.workers.get(turn % self.workers.len().max(1)) else {
            return;
        };
        let job: Job = Box::new(move || Box::pin(task()));
        // An error means the worker is gone (only after `stop`): the task is dropped.
        let _ = worker.jobs.send(job);
    }

    /// Stops every worker: tasks still running are dropped, then the threads are
    /// joined. Callers drain connections first.
    pub fn stop(self) {
        let threads: Vec<JoinHandle<()>> = self
            .workers
            .into_iter()
            .map(|worker| {
                drop(worker.jobs);
                worker.thread
            })
            .collect();
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a serving thread panicked");
            }
        }
    }
}

/// A worker's loop: start every job it is given, until its queue closes.
async fn run(mut queue: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = queue.recv().await {
        tokio::spawn(job());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::{mpsc, oneshot};

    use super::{Workers, current};

    /// Tasks go round the serving threads in turn, and each runs to its end on the
    /// worker it was handed to.
    #[test]
    fn tasks_go_round_the_workers_and_stay_there() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.count(), 2);
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let mut releases = Vec::new();
        // Four long-lived tasks: two on each worker.
        for _ in 0..4 {
            let (release, wait) = oneshot::channel::<()>();
            releases.push(release);
            let seen_tx = seen_tx.clone();
            workers.spawn(move || {
                let started_on = current();
                let thread = std::thread::current().id();
                async move {
                    let _ = wait.await;
                    // Still on the thread that started it.
                    assert_eq!(std::thread::current().id(), thread);
                    seen_tx.send(started_on).unwrap();
                }
            });
        }
        drop(seen_tx);
        for release in releases {
            release.send(()).unwrap();
        }
        let mut on = [0usize; 2];
        while let Some(index) = seen.blocking_recv() {
            on[index] += 1;
        }
        assert_eq!(on, [2, 2]);
        workers.stop();
    }

    /// A task's future runs on a serving thread, never the caller's.
    #[test]
    fn tasks_run_on_serving_threads() {
        let workers = Workers::start(1).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let (done_tx, done) = oneshot::channel();
        let counter = Arc::clone(&ran);
        workers.spawn(move || async move {
            let name = std::thread::current().name().map(str::to_owned);
            counter.fetch_add(1, Ordering::Relaxed);
            done_tx.send(name).unwrap();
        });
        let name = done.blocking_recv().unwrap();
        assert_eq!(name.as_deref(), Some("portcullis-worker-0"));
        assert_eq!(ran.load(Ordering::Relaxed), 1);
        workers.stop();
    }
}
