//! Long-lived analyzer threads with large stacks.
//!
//! Spawning a thread per check cost about a third of a 1000-line check: the
//! kernel maps and faults in a fresh stack, and glibc gives the new thread an
//! empty malloc arena, so building and dropping the syntax tree starts cold.
//! A few threads that live as long as the process keep both warm. A panic
//! inside a task is caught on the worker, which stays up.
//!
//! A worker runs any task (the check, or the bare parse that `strictpy bench`
//! times as the check's floor), so both are measured through the same
//! hand-off.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, OnceLock, mpsc},
};

use crate::WORKER_STACK_BYTES;

/// One piece of work for a worker: it runs the task and sends the answer
/// itself, so the queue does not need to know the answer's type.
type Task = Box<dyn FnOnce() + Send>;

/// The queue every worker takes tasks from.
struct Pool {
    /// Tasks in; `None` when no worker could be started.
    tx: Option<mpsc::Sender<Task>>,
}

/// At most this many workers: checks are short, and each worker reserves
/// (but only commits what it touches of) a large stack.
const MAX_WORKERS: usize = 8;

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let n = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_WORKERS);
        let started = (0..n)
            .filter(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("strictpy-analyzer-{i}"))
                    .stack_size(WORKER_STACK_BYTES)
                    .spawn(move || worker(&rx))
                    .is_ok()
            })
            .count();
        Pool {
            tx: (started > 0).then_some(tx),
        }
    })
}

fn worker(rx: &Mutex<mpsc::Receiver<Task>>) {
    loop {
        // The lock is held only while waiting for the next task; a poisoned
        // lock still guards a usable receiver.
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(task) = next else {
            return;
        };
        task();
    }
}

/// Whether any worker is running; when none is, callers use a thread of
/// their own.
pub(crate) fn available() -> bool {
    pool().tx.is_some()
}

/// Runs `task` on a worker and waits for it. `None` when no worker took it
/// (see [`available`]); `Some(Err)` when the task panicked (the worker
/// caught it and stays up).
pub(crate) fn run<R: Send + 'static>(
    task: impl FnOnce() -> R + Send + 'static,
) -> Option<std::thread::Result<R>> {
    let tx = pool().tx.as_ref()?;
    let (reply, answer) = mpsc::sync_channel(1);
    tx.send(Box::new(move || {
        let result = std::panic::catch_unwind(AssertUnwindSafe(task));
        // The caller may have gone; nothing to do then.
        let _ = reply.send(result);
    }))
    .ok()?;
    answer.recv().ok()
}
