//! Long-lived analyzer threads with large stacks.
//!
//! Spawning a thread per check cost about a third of a 1000-line check: the
//! kernel maps and faults in a fresh stack, and glibc gives the new thread an
//! empty malloc arena, so building and dropping the syntax tree starts cold.
//! A few threads that live as long as the process keep both warm. A panic
//! inside a check is caught on the worker, which stays up.

use std::{
    collections::BTreeSet,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, OnceLock, mpsc},
};

use strictpy_types::{Policy, Violation};

use crate::{WORKER_STACK_BYTES, analyze, parser_failed};

/// One check for a worker: owned copies of the inputs, and where to answer.
struct Request {
    /// The source bytes.
    source: Vec<u8>,
    /// The policy.
    policy: Policy,
    /// The effective allowlist.
    allowlist: BTreeSet<String>,
    /// The caller waits on the other end.
    reply: mpsc::SyncSender<Vec<Violation>>,
}

/// The queue every worker takes checks from.
struct Pool {
    /// Checks in; `None` when no worker could be started.
    tx: Option<mpsc::Sender<Request>>,
}

/// At most this many workers: checks are short, and each worker reserves
/// (but only commits what it touches of) a large stack.
const MAX_WORKERS: usize = 8;

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
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

fn worker(rx: &Mutex<mpsc::Receiver<Request>>) {
    loop {
        // The lock is held only while waiting for the next request; a
        // poisoned lock still guards a usable receiver.
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(req) = next else {
            return;
        };
        let violations = std::panic::catch_unwind(AssertUnwindSafe(|| {
            analyze(&req.source, &req.policy, &req.allowlist)
        }))
        .unwrap_or_else(|_| vec![parser_failed()]);
        // The caller may have gone; nothing to do then.
        let _ = req.reply.send(violations);
    }
}

/// Runs one check on a worker; `None` when no worker is available, so the
/// caller falls back to a thread of its own.
pub(crate) fn run(
    source: &[u8],
    policy: &Policy,
    allowlist: &BTreeSet<String>,
) -> Option<Vec<Violation>> {
    let tx = pool().tx.as_ref()?;
    let (reply, answer) = mpsc::sync_channel(1);
    tx.send(Request {
        source: source.to_vec(),
        policy: policy.clone(),
        allowlist: allowlist.clone(),
        reply,
    })
    .ok()?;
    answer.recv().ok()
}
