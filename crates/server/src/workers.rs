//! The bounded job queue and the worker pool.
//!
//! Each worker is an OS thread of its own, because `Sandbox::run_with` is
//! synchronous and must never run on the async runtime's threads: with every
//! worker busy on `while True: pass`, the HTTP side still answers at once.
//! Workers reach the (async) store through the runtime's `Handle`.

use std::{
    collections::VecDeque,
    panic::AssertUnwindSafe,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Instant,
};

use strictpy_sandbox::{CancelHandle, Job, Sandbox};
use strictpy_store::{JobRecord, NewJob, StoreError};
use strictpy_types::{JobStatus, Outcome, RunError, Verdict};
use uuid::Uuid;

use crate::{AppState, Shared, now_ms, queue::Next};

/// The message of a job whose worker stopped under it.
pub const WORKER_STOPPED: &str =
    "worker stopped: the server stopped while this job was running; it was not re-run";

/// The message of a job the shutdown grace period ran out on.
pub const SHUTDOWN_STOPPED: &str =
    "worker stopped: the server shut down before the job finished (grace period exceeded)";

/// A FIFO of job ids with a fixed capacity, shared by the HTTP handlers (who
/// push) and the worker threads (who block on pop).
#[derive(Debug)]
pub struct JobQueue {
    /// The ids, the reservations and the closed flag.
    inner: Mutex<QueueInner>,
    /// Signalled on every push and on close.
    ready: Condvar,
    /// Most ids (queued plus reserved) at once.
    capacity: usize,
}

/// The queue's state under its mutex.
#[derive(Debug, Default)]
struct QueueInner {
    /// Ids waiting for a worker, oldest first.
    items: VecDeque<Uuid>,
    /// Slots promised to requests that are still writing their job.
    reserved: usize,
    /// Jobs their requests stored `running` for an idle worker, which
    /// workers take before any queued id (see [`JobQueue::try_reserve_handoff`]).
    handoffs: VecDeque<Handoff>,
    /// Hand-offs promised to requests that are still writing their job.
    handoffs_reserved: usize,
    /// Workers inside [`JobQueue::pop`] that have not taken anything yet.
    idle: usize,
    /// Set at shutdown: workers stop taking jobs.
    closed: bool,
}

/// A job its request stored as `running` (a `wait: true` job that found a
/// worker idle), handed to that worker in memory: the worker neither
/// writes a start nor reads the job back.
#[derive(Debug)]
pub struct Handoff {
    /// The job as stored.
    pub record: Box<JobRecord>,
    /// Its cancel handle, in `running_jobs` since before the insert.
    pub running: RunningJob,
    /// Set when the job was handed over before anything of it was stored
    /// (a waiting job without an idempotency key): then whichever ends
    /// first, the run or its request's wait, writes it.
    pub unwritten: Option<Arc<Unwritten>>,
}

/// A waiting job handed to a worker before it was stored, and who writes
/// it. The worker, at the job's end, inserts it final in one write; its
/// request, when its wait ends first (the wait's limit, shutdown), inserts
/// it `running` before it answers `202`, and the worker then finishes the
/// row as usual. The lock makes the two exclusive and is held through the
/// write, so whoever comes second sees what the first one did.
#[derive(Debug)]
pub struct Unwritten(tokio::sync::Mutex<Write>);

/// Where an [`Unwritten`] job stands.
#[derive(Debug)]
pub enum Write {
    /// Nothing is stored yet: the job as its request would insert it.
    Pending(Box<NewJob>),
    /// Its request stored it `running`; the worker finishes the row.
    Running,
    /// The worker stored it final.
    Finished,
    /// A write failed, so nothing is stored, and nothing will be: the error
    /// (taken by the request, which answers with it) if the worker met it.
    Failed(Option<StoreError>),
}

/// A job in [`Shared::unwritten_jobs`]: what readers see of it, and its
/// write.
#[derive(Debug, Clone)]
pub struct UnwrittenJob {
    /// The job as it would be stored now (`running`).
    pub record: Arc<JobRecord>,
    /// Who writes it, and whether it still may be written.
    pub write: Arc<Unwritten>,
}

impl Unwritten {
    /// `job`, not stored yet.
    pub fn new(job: NewJob) -> Arc<Self> {
        Arc::new(Self(tokio::sync::Mutex::new(Write::Pending(Box::new(job)))))
    }

    /// The write state, for the request (async).
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, Write> {
        self.0.lock().await
    }
}

/// What a worker takes from the queue.
#[derive(Debug)]
pub enum Popped {
    /// A queued job's id: the worker starts it in the store.
    Queued(Uuid),
    /// A job already stored `running`.
    Started(Handoff),
}

/// A promise of one place in the queue, taken before the job is stored so a
/// committed job always fits. Dropping it unused gives the place back.
#[derive(Debug)]
pub struct Slot<'a> {
    /// The queue the place is in.
    queue: &'a JobQueue,
    /// True for a promise of an idle worker ([`JobQueue::try_reserve_handoff`]).
    handoff: bool,
    /// True once [`Slot::push`] or [`Slot::hand_off`] used it.
    used: bool,
}

impl JobQueue {
    /// An empty queue holding at most `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(QueueInner::default()),
            ready: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueInner> {
        // The queue's state stays consistent under every panic (each update
        // is a single push, pop or counter change), so a poisoned lock is
        // safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a place, or `None` when the queue is full or closed.
    pub fn try_reserve(&self) -> Option<Slot<'_>> {
        let mut inner = self.lock();
        if inner.closed || inner.items.len() + inner.reserved >= self.capacity {
            return None;
        }
        inner.reserved += 1;
        Some(Slot {
            queue: self,
            handoff: false,
            used: false,
        })
    }

    /// Promises an idle worker to a job about to be stored `running`, or
    /// `None` unless a worker is idle that nothing queued, handed off or
    /// promised yet will take. So a hand-off never passes a job queued
    /// before it, and waits only when a request that reserved a queue
    /// place after it stores its job first and takes the worker (then the
    /// hand-off runs next, ahead of every queued id).
    pub fn try_reserve_handoff(&self) -> Option<Slot<'_>> {
        let mut inner = self.lock();
        let promised =
            inner.items.len() + inner.reserved + inner.handoffs.len() + inner.handoffs_reserved;
        if inner.closed || inner.idle <= promised || promised >= self.capacity {
            return None;
        }
        inner.handoffs_reserved += 1;
        Some(Slot {
            queue: self,
            handoff: true,
            used: false,
        })
    }

    /// Queues a job found in the store at start-up, beyond the capacity if
    /// need be: it was accepted before, so it must run.
    pub fn push_recovered(&self, id: Uuid) {
        self.lock().items.push_back(id);
        self.ready.notify_one();
    }

    /// Counts the calling worker idle from now on, before it wakes the
    /// clients of the job it just finished: a client that sends its next
    /// `wait: true` job the moment it has its answer then finds the worker
    /// free for a hand-off. The worker's next [`JobQueue::pop`] (with
    /// `counted`) takes this count over.
    pub fn idle_from_now(&self) {
        self.lock().idle += 1;
    }

    /// Blocks until there is a job, or returns `None` once the queue is
    /// closed. `counted`: the worker already counted itself idle
    /// ([`JobQueue::idle_from_now`]).
    pub fn pop(&self, counted: bool) -> Option<Popped> {
        let mut inner = self.lock();
        if !counted {
            inner.idle += 1;
        }
        let popped = loop {
            // A hand-off is stored `running` already: it is taken even
            // after close, and shutdown's grace period covers it as it
            // covers every running job. (One pushed after the last worker
            // left is `running` in the store, which the next start's
            // recovery fails, as it fails any job a stop interrupted.)
            if let Some(handoff) = inner.handoffs.pop_front() {
                break Some(Popped::Started(handoff));
            }
            if inner.closed {
                break None;
            }
            if let Some(id) = inner.items.pop_front() {
                break Some(Popped::Queued(id));
            }
            inner = self.ready.wait(inner).unwrap_or_else(|p| p.into_inner());
        };
        inner.idle -= 1;
        popped
    }

    /// Drops a cancelled job from the queue; true if it was there.
    pub fn remove(&self, id: Uuid) -> bool {
        let mut inner = self.lock();
        let before = inner.items.len();
        inner.items.retain(|x| *x != id);
        inner.items.len() != before
    }

    /// Stops handing out ids; what is left stays queued in the store.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Ids waiting for a worker.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// True when no id waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Slot<'_> {
    /// True when this is the promise of an idle worker, for a job to be
    /// stored `running` and passed on with [`Slot::hand_off`].
    pub fn is_handoff(&self) -> bool {
        self.handoff
    }

    /// Uses the place for queued job `id` (a hand-off promise, too, can
    /// take a queued job).
    pub fn push(mut self, id: Uuid) {
        let mut inner = self.queue.lock();
        self.release(&mut inner);
        inner.items.push_back(id);
        drop(inner);
        self.queue.ready.notify_one();
    }

    /// Passes the job its request stored `running` to the promised worker.
    pub fn hand_off(mut self, handoff: Handoff) {
        let mut inner = self.queue.lock();
        self.release(&mut inner);
        inner.handoffs.push_back(handoff);
        drop(inner);
        self.queue.ready.notify_one();
    }

    /// Gives the promise back (once).
    fn release(&mut self, inner: &mut QueueInner) {
        if std::mem::replace(&mut self.used, true) {
            return;
        }
        if self.handoff {
            inner.handoffs_reserved -= 1;
        } else {
            inner.reserved -= 1;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.used {
            let queue = self.queue;
            self.release(&mut queue.lock());
        }
    }
}

/// A job a worker is running, as seen by `DELETE` and by shutdown.
#[derive(Debug, Clone, Default)]
pub struct RunningJob {
    /// Interrupts the sandbox.
    pub cancel: CancelHandle,
    /// Set when a client cancelled it (as opposed to shutdown).
    pub by_user: Arc<AtomicBool>,
}

/// Starts `count` worker threads.
pub fn spawn(
    state: &AppState,
    sandbox: &Arc<Sandbox>,
    count: usize,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..count)
        .map(|i| {
            let worker_state = state.clone();
            let sandbox = sandbox.clone();
            state.workers_alive.fetch_add(1, Ordering::SeqCst);
            // Counted idle here, before its thread runs, so that a request
            // arriving the moment the server listens finds every worker
            // free (a hand-off) rather than racing the thread's start. (If
            // the thread cannot start, the server does not start either.)
            let counted = state.queue.idle_from_now();
            let spawned = std::thread::Builder::new()
                .name(format!("strictpy-worker-{i}"))
                .spawn(move || worker_loop(worker_state, sandbox, counted));
            if spawned.is_err() {
                // The thread never started, so it will never count itself down.
                state.workers_alive.fetch_sub(1, Ordering::SeqCst);
            }
            spawned
        })
        .collect()
}

/// Counts a worker down when its thread ends, however it ends.
struct Alive(AppState);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.workers_alive.fetch_sub(1, Ordering::SeqCst);
        self.0.workers_done.notify_waiters();
    }
}

fn worker_loop(state: AppState, sandbox: Arc<Sandbox>, counted: bool) {
    let _alive = Alive(state.clone());
    // This thread blocks on every job anyway: SQLite statements run here
    // rather than hopping to the blocking pool and back.
    strictpy_store::run_statements_inline();
    // Whether this worker already counted itself idle for its next job.
    let mut counted = counted;
    loop {
        match state
            .queue
            .next(&state, RunningJob::default(), std::mem::take(&mut counted))
        {
            Next::Job(record, running, unwritten) => {
                let id = record.id;
                counted = execute(&state, &sandbox, *record, &running, unwritten);
                state.running_jobs().remove(&id);
            }
            Next::Skip => {}
            Next::Closed => break,
        }
    }
}

/// Runs one job and stores its end. Returns whether the worker counted
/// itself idle for the next job ([`crate::queue::Queue::idle_from_now`]).
fn execute(
    state: &AppState,
    sandbox: &Sandbox,
    record: JobRecord,
    running: &RunningJob,
    unwritten: Option<Arc<Unwritten>>,
) -> bool {
    state.metrics.running.inc();
    let spec = &record.spec;
    // The sandbox pushes output straight into this job's feed for
    // `/events` readers, on this thread: the feed never blocks and bounds
    // its own memory (its window), so no channel, drain task or thread
    // wake-up per chunk is needed.
    let feed = state.live.open(record.id);
    // Streams on other nodes that waited for this job get it at once.
    crate::relay::on_open(state, record.id, &feed);
    let tap = strictpy_sandbox::live::sink(move |event| feed.push(event));
    // An invocation of a stored function starts from its compiled form.
    let compiled = spec
        .function
        .as_ref()
        .and_then(|f| crate::compiled::for_job(state, sandbox, &record.tenant, f, &spec.code));
    let job = Job {
        code: spec.code.clone(),
        stdin: spec.stdin.as_bytes().to_vec(),
        context: spec.context.clone(),
        allowlist: spec.allowlist.clone(),
        limits: spec.limits,
        seed: spec.seed,
        live: Some(tap),
        compiled,
        compile_only: false,
    };
    let started = Instant::now();
    // A panic in the sandbox is a bug, but it must end this job, not the
    // worker (which would leave the job `running` forever).
    // The spent instance is dropped (its pool slot reset) only once the
    // job's clients have their answer: the reset then overlaps the answer's
    // trip instead of delaying it.
    let (outcome, spent) = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let (outcome, _, spent) = sandbox.run_deferred(&job, &running.cancel);
        (outcome, Some(spent))
    }))
    .unwrap_or_else(|_| {
        (
            internal_outcome("the sandbox panicked while running this job"),
            None,
        )
    });
    // Every chunk is in the feed by now (the sink ran inside the writes),
    // before the outcome is stored and the feed closed.
    drop(job);
    state.run_times.record(started.elapsed().as_millis() as u64);
    state.metrics.running.dec();
    state
        .metrics
        .run_time
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .fuel
        .observe(outcome.usage.fuel_consumed as f64);
    let (status, outcome) = classify(outcome, running, state.stopping.load(Ordering::SeqCst));
    let id = record.id;
    let mut at = now_ms();
    // Once accepted a job's end must be stored: while the store is down
    // (disk full, read-only, database stopped) keep trying.
    let finish = |at: &mut i64| {
        Some(retrying(state, id, "finish", || {
            *at = now_ms();
            state.queue.finish(state, id, status, &outcome, *at)
        }))
    };
    let finished = match &unwritten {
        None => finish(&mut at),
        Some(unwritten) => {
            // Held through the write: a request whose wait ends meanwhile
            // then finds the job final.
            let mut write = unwritten.0.blocking_lock();
            match std::mem::replace(&mut *write, Write::Finished) {
                // Never accepted, so not retried: the waiting request
                // answers with the error, and nothing of the job remains.
                Write::Pending(job) => {
                    let started_at = record.started_at.unwrap_or(at);
                    let stored = state.runtime.block_on(state.store.create_finished_unsynced(
                        *job,
                        started_at,
                        status,
                        outcome.clone(),
                        at,
                    ));
                    state.unwritten_jobs().remove(&id);
                    match stored {
                        Ok(()) => Some(Ok(true)),
                        Err(e) => {
                            *write = Write::Failed(Some(e));
                            None
                        }
                    }
                }
                Write::Running => finish(&mut at),
                other => {
                    *write = other;
                    None
                }
            }
        }
    };
    state.live.close(id);
    // Free for the next job before its clients hear of this one's end.
    let counted = state.queue.idle_from_now();
    match finished {
        Some(Ok(true)) => state.job_finished(&record, status, &outcome, at),
        Some(Ok(false)) => {
            // Ended elsewhere meanwhile (cancelled, or reaped): the waiters
            // read the job as it was left.
            tracing::warn!(%id, "job was no longer running when it finished");
            state.wake_waiters(id);
        }
        Some(Err(e)) => tracing::error!(%id, error = %e, "cannot record the job's outcome"),
        None => {
            tracing::warn!(%id, "the job could not be stored; its request answers with the error");
            state.job_unstored(id);
        }
    }
    drop(spent);
    counted
}

/// Runs the store operation `op` on job `id` from a worker thread, again and
/// again (backing off up to 2 s) while the store is unavailable
/// ([`StoreError::is_unavailable`]), until it succeeds, fails for another
/// reason, or shutdown's grace period ran out (then the job stays as stored:
/// the next start recovers it).
pub(crate) fn retrying<T>(
    state: &AppState,
    id: Uuid,
    what: &str,
    mut op: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut backoff = std::time::Duration::from_millis(50);
    let mut attempt = 0u32;
    loop {
        match op() {
            Err(e) if e.is_unavailable() && !state.stopping.load(Ordering::SeqCst) => {
                attempt += 1;
                if attempt == 1 || attempt.is_multiple_of(30) {
                    tracing::warn!(%id, error = %e, attempt, "store unavailable; retrying {what}");
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
            }
            result => return result,
        }
    }
}

/// The job status an outcome means. A cancel that shutdown (not a client)
/// caused is reported as the worker stopping.
fn classify(outcome: Outcome, running: &RunningJob, stopping: bool) -> (JobStatus, Outcome) {
    match outcome.verdict() {
        None => (JobStatus::Succeeded, outcome),
        Some(Verdict::Cancelled) if running.by_user.load(Ordering::SeqCst) || !stopping => {
            (JobStatus::Cancelled, outcome)
        }
        Some(Verdict::Cancelled) => (
            JobStatus::Failed,
            Outcome {
                error: Some(RunError::new(Verdict::Internal, SHUTDOWN_STOPPED)),
                ..outcome
            },
        ),
        Some(_) => (JobStatus::Failed, outcome),
    }
}

/// A failed outcome with an internal error and nothing else.
pub fn internal_outcome(message: &str) -> Outcome {
    Outcome::failed(Verdict::Internal, message)
}

/// Waits until job `id` is final or `timeout` passes (or shutdown begins),
/// then returns the job as stored. The local finish, or a `NOTIFY` from the
/// node that finished it, wakes the wait; with the queue in the database it
/// also looks again every `cluster.poll_ms`, in case a notice was missed
/// while the `LISTEN` connection was down.
pub async fn wait_final(
    state: &AppState,
    id: Uuid,
    timeout: std::time::Duration,
) -> Result<Option<JobRecord>, StoreError> {
    wait_on(state, state.waiter(id), None, timeout).await
}

/// [`wait_final`] for `job`, just stored by this request, which took
/// `waiter` (on the id it stored the job under) before storing it: no
/// finish can have slipped past, so the wait starts without reading the
/// job back, and a finish on this node hands over the final record. A
/// replay (another job id) waits the ordinary way.
pub async fn wait_fresh(
    state: &AppState,
    waiter: Option<Waiter<'_>>,
    job: &JobRecord,
    timeout: std::time::Duration,
) -> Result<Option<JobRecord>, StoreError> {
    match waiter {
        Some(waiter) if waiter.id == job.id => {
            wait_on(state, waiter, Some(job.clone()), timeout).await
        }
        _ => wait_final(state, job.id, timeout).await,
    }
}

/// The loop of [`wait_final`] on `waiter`'s job; `known` is the job as the
/// caller just stored it, if it did.
async fn wait_on(
    state: &AppState,
    mut waiter: Waiter<'_>,
    mut known: Option<JobRecord>,
    timeout: std::time::Duration,
) -> Result<Option<JobRecord>, StoreError> {
    let id = waiter.id;
    let deadline = tokio::time::Instant::now() + timeout;
    let recheck = match state.queue.database() {
        Some(_) => std::time::Duration::from_millis(state.config.cluster.poll_ms),
        None => timeout,
    };
    loop {
        {
            let notified = waiter.notify().notified();
            tokio::pin!(notified);
            // Enable before reading the store, so a finish between the read
            // and the wait still wakes us.
            notified.as_mut().enable();
            if let Some(done) = waiter.final_record() {
                return Ok(Some(done));
            }
            let job = match known.take() {
                Some(job) => Some(job),
                None => state.job(id).await?,
            };
            match &job {
                Some(j) if !j.status.is_final() && state.accepting.load(Ordering::SeqCst) => {}
                _ => return Ok(job),
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(job);
            }
            let _ = tokio::time::timeout(recheck.min(deadline - now), notified).await;
            if let Some(done) = waiter.final_record() {
                return Ok(Some(done));
            }
        }
        // The finish removed the entry this waiter holds: take a new one.
        waiter = state.waiter(id);
    }
}

/// What requests waiting on one job share: the wake-up, and the final
/// record when this node's worker finished the job.
#[derive(Debug, Default)]
pub struct Waiting {
    /// Woken when the job becomes final or shutdown begins.
    notify: tokio::sync::Notify,
    /// The job as its finish stored it, set before the wake-up.
    done: Mutex<Option<JobRecord>>,
}

impl Waiting {
    /// Wakes every request waiting now.
    pub fn notify_waiters(&self) {
        self.notify.notify_waiters();
    }

    /// Hands the waiters the job's final record (call before waking them).
    pub fn set_final(&self, job: JobRecord) {
        *self.done.lock().unwrap_or_else(|p| p.into_inner()) = Some(job);
    }
}

/// A request's hold on job `id`'s notifier ([`Shared::waiter`]). Dropping
/// it (the request answered, timed out, or its client went away) removes
/// the map's entry once no other request waits on that job, so neither a
/// job that was already final nor a disconnected client leaves one behind.
#[derive(Debug)]
pub struct Waiter<'a> {
    /// Whose waiter map the entry is in.
    shared: &'a Shared,
    /// The job waited on.
    id: Uuid,
    /// This request's handle on the entry.
    notify: Arc<Waiting>,
}

impl<'a> Waiter<'a> {
    /// Wraps a handle just taken from `shared`'s map.
    pub(crate) fn new(shared: &'a Shared, id: Uuid, notify: Arc<Waiting>) -> Self {
        Self { shared, id, notify }
    }

    /// The notifier, woken when the job becomes final or shutdown begins.
    pub fn notify(&self) -> &tokio::sync::Notify {
        &self.notify.notify
    }

    /// The final job, once this node's worker finished it.
    pub fn final_record(&self) -> Option<JobRecord> {
        self.notify
            .done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        /// What a dropped guard holds instead of its handle, so that handle
        /// is released under the lock (see below).
        static SPARE: std::sync::LazyLock<Arc<Waiting>> =
            std::sync::LazyLock::new(Default::default);
        let mut map = self.shared.waiters();
        let mine = std::mem::replace(&mut self.notify, SPARE.clone());
        // Handles are cloned and released only under this lock, so two
        // counts (the map's and ours) means no one else waits; an entry that
        // is not ours belongs to later waiters (the job finished and another
        // request began waiting on it).
        if map
            .get(&self.id)
            .is_some_and(|cur| Arc::ptr_eq(cur, &mine) && Arc::strong_count(cur) == 2)
        {
            map.remove(&self.id);
        }
        drop(mine);
    }
}

#[cfg(test)]
mod tests {
    use strictpy_store::JobSpec;

    use super::*;

    /// A running job `id`, as a request would hand it off.
    fn handoff(id: Uuid) -> Handoff {
        let spec = JobSpec {
            code: "print(1)".into(),
            stdin: String::new(),
            context: None,
            allow: Vec::new(),
            allowlist: Default::default(),
            limits: Default::default(),
            seed: None,
            function: None,
        };
        let record = JobRecord {
            id,
            tenant: "t".into(),
            token_id: None,
            idempotency_key: None,
            request_hash: "h".into(),
            status: JobStatus::Running,
            created_at: 1,
            started_at: Some(1),
            finished_at: None,
            spec,
            outcome: None,
            callback: None,
        };
        Handoff {
            record: Box::new(record),
            running: RunningJob::default(),
            unwritten: None,
        }
    }

    /// Blocks until `count` workers wait in `queue.pop`.
    fn until_idle(queue: &JobQueue, count: usize) {
        while queue.lock().idle != count {
            std::thread::yield_now();
        }
    }

    /// The id of what `pop` gave, and whether it was handed off.
    fn taken(popped: Option<Popped>) -> Option<(Uuid, bool)> {
        popped.map(|p| match p {
            Popped::Queued(id) => (id, false),
            Popped::Started(h) => (h.record.id, true),
        })
    }

    #[test]
    fn a_handoff_is_promised_only_a_worker_nothing_else_will_take() {
        let queue = JobQueue::new(8);
        assert!(queue.try_reserve_handoff().is_none(), "no worker waits");
        let id = Uuid::now_v7();
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| taken(queue.pop(false)));
            until_idle(&queue, 1);
            let promise = queue.try_reserve_handoff().expect("one idle worker");
            assert!(promise.is_handoff());
            assert!(queue.try_reserve_handoff().is_none(), "already promised");
            drop(promise);
            let queued = queue.try_reserve().expect("a queue place");
            assert!(
                queue.try_reserve_handoff().is_none(),
                "the worker is the queued job's"
            );
            drop(queued);
            queue
                .try_reserve_handoff()
                .expect("given back")
                .hand_off(handoff(id));
            assert_eq!(worker.join().expect("worker"), Some((id, true)));
        });
        let inner = queue.lock();
        assert_eq!(
            (inner.idle, inner.reserved, inner.handoffs_reserved),
            (0, 0, 0)
        );
    }

    #[test]
    fn workers_take_handoffs_first_and_even_after_close() {
        let queue = JobQueue::new(8);
        // As if a worker waited, then took a queued job first (the race
        // `try_reserve_handoff` describes).
        queue.lock().idle = 1;
        let promise = queue.try_reserve_handoff().expect("promised");
        queue.lock().idle = 0;
        let (first, second, third) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        queue.try_reserve().expect("place").push(first);
        promise.hand_off(handoff(second));
        assert_eq!(taken(queue.pop(false)), Some((second, true)));
        assert_eq!(taken(queue.pop(false)), Some((first, false)));
        queue.lock().idle = 1;
        let late = queue.try_reserve_handoff().expect("promised");
        queue.lock().idle = 0;
        queue.close();
        assert!(queue.try_reserve_handoff().is_none(), "closed");
        late.hand_off(handoff(third));
        assert_eq!(
            taken(queue.pop(false)),
            Some((third, true)),
            "already running"
        );
        assert_eq!(taken(queue.pop(false)), None);
    }

    #[test]
    fn a_worker_finishing_a_job_is_promised_before_it_pops() {
        let queue = JobQueue::new(8);
        assert!(queue.try_reserve_handoff().is_none(), "busy");
        queue.idle_from_now();
        let id = Uuid::now_v7();
        queue
            .try_reserve_handoff()
            .expect("free once its job is stored")
            .hand_off(handoff(id));
        assert_eq!(taken(queue.pop(true)), Some((id, true)));
        assert_eq!(queue.lock().idle, 0, "the pop took the count over");
    }
}
