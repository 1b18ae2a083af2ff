//! The serving threads: one per core, each running a single-threaded Tokio runtime,
//! the way nginx runs a worker process per core and Envoy a worker thread per core.
//!
//! A connection is accepted on the main runtime and handed, once, to the worker with
//! the fewest live connections; from then on everything it does (TLS, parsing, the
//! checks, the upstream exchange, the response) runs on that one thread. No task is
//! stolen by another thread and no request wakes another core, so the costs a
//! work-stealing scheduler adds to every request (waking an idle worker to look for
//! work, moving a task and its data between cores) are not paid. Upstream
//! connections are kept per worker for the same reason (see
//! [`crate::proxy::upstream`]).
//!
//! The price is nginx's: a request that computes for long holds up the other
//! connections of its worker. The hot path does no blocking work (password hashing
//! has threads of its own), so that is a cold-decision's microseconds at most.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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
    /// Where the search for the least loaded worker starts, so ties rotate.
    next: AtomicUsize,
}

struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    /// Connections handed to this worker that have not ended yet.
    live: Arc<AtomicUsize>,
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
            let live = Arc::new(AtomicUsize::new(0));
            let thread = std::thread::Builder::new()
                .name(format!("portcullis-worker-{index}"))
                .spawn({
                    let live = Arc::clone(&live);
                    move || {
                        INDEX.with(|cell| cell.set(index));
                        runtime.block_on(run(queue, live));
                    }
                })
                .map_err(|source| WorkersError::Start { index, source })?;
            workers.push(Worker { jobs, live, thread });
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

    /// Runs `task()` on the worker with the fewest live connections: `task` is
    /// called on that worker's thread (so what it registers with the runtime, such
    /// as a socket, belongs to that worker) and its future runs there to the end.
    pub fn spawn<F, Fut>(&self, task: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.workers.len();
        let chosen = (0..n)
            .map(|offset| (start + offset) % n)
            .min_by_key(|&index| {
                self.workers
                    .get(index)
                    .map_or(usize::MAX, |worker| worker.live.load(Ordering::Relaxed))
            })
            .and_then(|index| self.workers.get(index));
        let Some(worker) = chosen else {
            return;
        };
        worker.live.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move || Box::pin(task()));
        if worker.jobs.send(job).is_err() {
            // The worker is gone (only after `stop`): the task is dropped unrun.
            worker.live.fetch_sub(1, Ordering::Relaxed);
        }
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
async fn run(mut queue: mpsc::UnboundedReceiver<Job>, live: Arc<AtomicUsize>) {
    while let Some(job) = queue.recv().await {
        let task = job();
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            let _live = Live(live);
            task.await;
        });
    }
}

/// Counts a connection as live until dropped (also when its task is cancelled).
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::{mpsc, oneshot};

    use super::{Workers, current};

    /// Tasks run on the serving threads, each on the worker it was handed to, and
    /// new work goes to the worker with the fewest live tasks.
    #[test]
    fn tasks_go_to_the_least_loaded_worker_and_stay_there() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.count(), 2);
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let mut releases = Vec::new();
        // Four long-lived tasks: two on each worker, whatever the rotation.
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
