//! Where queued jobs wait for a worker: in this process's memory
//! ([`JobQueue`], SQLite: one node per store) or in the database
//! ([`DbQueue`], Postgres: any number of nodes). The workers run one loop
//! over [`Queue`] whichever it is.
//!
//! In the database, a worker claims the oldest queued job itself (`FOR
//! UPDATE SKIP LOCKED`), holds a lease the node's heartbeat renews
//! (`cluster.rs`), and finishes the job only while the lease is still its
//! own. Idle workers sleep until a `NOTIFY` says a job was queued, or
//! `cluster.poll_ms` passes. A `wait: true` job that finds one of this
//! node's workers idle, with nothing queued in the cluster, is inserted
//! already claimed by this node and handed to that worker in memory
//! ([`Queue::reserve_handoff`]): no `NOTIFY` to hear and no claim to make.

use std::{
    collections::VecDeque,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use strictpy_store::{JobRecord, PostgresStore, StoreError};
use strictpy_types::{JobStatus, Outcome};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    AppState, now_ms,
    workers::{Handoff, JobQueue, Popped, RunningJob, Slot},
};

/// The job queue of a node.
#[derive(Debug)]
pub enum Queue {
    /// In memory (SQLite).
    Memory(JobQueue),
    /// In the database (Postgres).
    Database(Box<DbQueue>),
}

/// The queue in a Postgres store, as one node sees it.
#[derive(Debug)]
pub struct DbQueue {
    /// The store whose `jobs` table is the queue.
    pub store: PostgresStore,
    /// This node's id, written on its leases.
    pub node: String,
    /// Lease length in milliseconds.
    pub lease_ms: i64,
    /// How long an idle worker sleeps when nothing wakes it.
    poll: Duration,
    /// Most queued jobs in the whole cluster before submissions get `503`.
    capacity: usize,
    /// Wakes one idle worker: a job was queued (NOTIFY), or a worker just
    /// claimed one and there may be more.
    wake: Notify,
    /// Set at shutdown: workers stop claiming.
    closed: AtomicBool,
    /// Queued jobs in the cluster as last counted (for `/metrics`).
    depth: AtomicUsize,
    /// When a claim last failed with a store error, so a database outage
    /// is logged once a few seconds rather than by every idle worker.
    last_error_at: AtomicU64,
    /// This node's idle workers and the jobs handed to them.
    local: Mutex<Local>,
}

/// This node's idle workers, as [`Queue::reserve_handoff`] promises them,
/// and the jobs their requests inserted already claimed for them.
#[derive(Debug, Default)]
struct Local {
    /// Workers in [`DbQueue::claim`] (waiting, or claiming), not running
    /// a job.
    idle: usize,
    /// Idle workers promised to requests that are still inserting.
    promised: usize,
    /// Jobs inserted `running` under this node's lease, for the next idle
    /// worker, which takes them before it claims.
    handoffs: VecDeque<Handoff>,
}

/// The promise of an idle worker of this node (see [`Queue::reserve_handoff`]);
/// dropping it unused gives the worker back.
#[derive(Debug)]
pub struct DbSlot<'a> {
    /// The queue the worker waits in.
    queue: &'a DbQueue,
    /// True once the promise was used or given back.
    used: bool,
}

impl DbSlot<'_> {
    /// Gives the promise back (once); with `handoff`, hands that job over.
    /// Either way one idle worker is woken: the one waiting for this
    /// hand-off, or, given back, one that may have slept through a
    /// `NOTIFY` while every idle worker was promised.
    fn release(&mut self, handoff: Option<Handoff>) {
        if std::mem::replace(&mut self.used, true) {
            return;
        }
        let mut local = self.queue.local();
        local.promised -= 1;
        if let Some(handoff) = handoff {
            local.handoffs.push_back(handoff);
        }
        drop(local);
        self.queue.wake.notify_one();
    }
}

impl Drop for DbSlot<'_> {
    fn drop(&mut self) {
        self.release(None);
    }
}

/// A place in the queue taken before a job is stored.
#[derive(Debug)]
pub enum Reservation<'a> {
    /// A slot of the in-memory queue.
    Memory(Slot<'a>),
    /// Nothing to hold: the stored row is the queue entry, and the insert
    /// trigger wakes a worker.
    Database,
    /// An idle worker of this node, promised to a job to be inserted
    /// already claimed ([`strictpy_store::PostgresStore::create_claimed`]).
    DatabaseHandoff(DbSlot<'a>),
}

impl Reservation<'_> {
    /// Queues the stored job `id` (a hand-off promise, too, can take a
    /// queued job: in the database, the promised worker is then free again
    /// and the insert's `NOTIFY` wakes a worker).
    pub fn push(self, id: Uuid) {
        match self {
            Self::Memory(slot) => slot.push(id),
            Self::Database => {}
            Self::DatabaseHandoff(mut slot) => slot.release(None),
        }
    }

    /// True when this promises an idle worker of this node
    /// ([`Queue::reserve_handoff`]).
    pub fn is_handoff(&self) -> bool {
        match self {
            Self::Memory(slot) => slot.is_handoff(),
            Self::Database => false,
            Self::DatabaseHandoff(_) => true,
        }
    }

    /// Passes a job stored `running` (in the database: under this node's
    /// lease) to the worker this promised.
    pub fn hand_off(self, handoff: Handoff) {
        match self {
            Self::Memory(slot) => slot.hand_off(handoff),
            Self::Database => {}
            Self::DatabaseHandoff(mut slot) => slot.release(Some(handoff)),
        }
    }
}

/// What a worker gets from [`Queue::next`].
#[derive(Debug)]
pub enum Next {
    /// A job, already `running` and registered in `running_jobs` under
    /// this cancel handle.
    Job(
        Box<JobRecord>,
        RunningJob,
        Option<std::sync::Arc<crate::workers::Unwritten>>,
    ),
    /// Nothing to run this time (the job was cancelled while queued).
    Skip,
    /// The queue is closed: the worker ends.
    Closed,
}

impl DbQueue {
    /// The queue of node `node` in `store`.
    pub fn new(store: PostgresStore, node: String, config: &crate::Config) -> Self {
        Self {
            store,
            node,
            lease_ms: config.cluster.lease_ms(),
            poll: Duration::from_millis(config.cluster.poll_ms),
            capacity: config.queue_size,
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            depth: AtomicUsize::new(0),
            last_error_at: AtomicU64::new(0),
            local: Mutex::new(Local::default()),
        }
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        // Every update of `Local` is a single counter change, push or pop,
        // so it stays consistent under any panic: a poisoned lock is safe.
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lease a job inserted already claimed by this node gets, started
    /// at `started_at`.
    pub fn claim_at(&self, started_at: i64) -> strictpy_store::Claim<'_> {
        strictpy_store::Claim {
            node: &self.node,
            lease_ms: self.lease_ms,
            started_at,
        }
    }

    /// Wakes one idle worker of this node: a job was queued.
    pub fn wake_one(&self) {
        self.wake.notify_one();
    }

    /// Records the cluster's queue depth as just counted.
    pub fn set_depth(&self, depth: u64) {
        self.depth.store(
            usize::try_from(depth).unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
    }

    /// Takes a job handed to this node's idle workers, or claims jobs
    /// until one is found or the queue closes, sleeping between tries
    /// until woken or the poll period passes. `counted`: the worker already
    /// counted itself idle ([`Queue::idle_from_now`]).
    async fn claim(&self, state: &AppState, running: RunningJob, counted: bool) -> Next {
        if !counted {
            self.local().idle += 1;
        }
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            // Enabled before the hand-offs are looked at and the claim is
            // made, so a hand-off or a NOTIFY meanwhile is not lost.
            woken.as_mut().enable();
            let all_promised = {
                let mut local = self.local();
                // A hand-off is stored `running` under this node's lease:
                // it is taken even after close, and shutdown's grace period
                // covers it as it covers every running job.
                if let Some(handoff) = local.handoffs.pop_front() {
                    local.idle -= 1;
                    return Next::Job(handoff.record, handoff.running, None);
                }
                if self.closed.load(Ordering::SeqCst) {
                    local.idle -= 1;
                    return Next::Closed;
                }
                // Every idle worker promised to a job being inserted: this
                // one waits for its hand-off (or for the promise to be given
                // back) rather than claiming. A claiming worker still counts
                // as idle: a request that arrives during the claim's round
                // trip is promised it, and should the claim find a job
                // (queued before, so it goes first) the hand-off waits for
                // the next worker free, as a queued job would.
                local.idle <= local.promised
            };
            if all_promised {
                let _ = tokio::time::timeout(self.poll, woken).await;
                continue;
            }
            match self.store.claim(&self.node, self.lease_ms, now_ms()).await {
                Ok(Some(record)) => {
                    self.local().idle -= 1;
                    state.running_jobs().insert(record.id, running.clone());
                    // There may be more: let another idle worker look.
                    self.wake.notify_one();
                    return Next::Job(Box::new(record), running, None);
                }
                Ok(None) => {}
                Err(e) => {
                    let now = u64::try_from(now_ms()).unwrap_or(0);
                    let last = self.last_error_at.swap(now, Ordering::Relaxed);
                    if now.saturating_sub(last) > 5_000 {
                        tracing::warn!(error = %e, "cannot claim a job");
                    }
                }
            }
            let _ = tokio::time::timeout(self.poll, woken).await;
        }
    }

    /// Promises an idle worker of this node that no other request counts
    /// on, or `None`.
    fn try_reserve_handoff(&self) -> Option<DbSlot<'_>> {
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        let mut local = self.local();
        if local.idle <= local.promised + local.handoffs.len() {
            return None;
        }
        local.promised += 1;
        Some(DbSlot {
            queue: self,
            used: false,
        })
    }
}

impl Queue {
    /// Takes a place for a job about to be stored, or `None` when the queue
    /// is full (in the database: as many jobs queued, cluster-wide, as
    /// `queue_size`) or closed.
    pub async fn reserve(&self) -> Result<Option<Reservation<'_>>, StoreError> {
        match self {
            Self::Memory(q) => Ok(q.try_reserve().map(Reservation::Memory)),
            Self::Database(q) => {
                if q.closed.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                // Counted, not reserved: nodes that race may overshoot the
                // cap by the submissions in flight, never by more.
                let queued = q.store.queued_count().await?;
                q.set_depth(queued);
                Ok((queued < q.capacity as u64).then_some(Reservation::Database))
            }
        }
    }

    /// Promises an idle worker of this node to a `wait: true` job, which
    /// its request then stores `running` and hands over in memory (no
    /// start to write, no read-back; in the database, no `NOTIFY` and no
    /// claim: the insert is the claim). `None` when no worker is free.
    pub fn reserve_handoff(&self) -> Option<Reservation<'_>> {
        match self {
            Self::Memory(q) => q.try_reserve_handoff().map(Reservation::Memory),
            Self::Database(q) => q.try_reserve_handoff().map(Reservation::DatabaseHandoff),
        }
    }

    /// Counts the calling worker, which just stored its job's end, idle
    /// for the next job before it wakes that job's clients
    /// ([`JobQueue::idle_from_now`]): a client that sends its next
    /// `wait: true` job the moment it has its answer then finds the worker
    /// free for a hand-off. The worker's next [`Queue::next`] (with
    /// `counted`) takes this count over.
    pub fn idle_from_now(&self) -> bool {
        match self {
            Self::Memory(q) => q.idle_from_now(),
            Self::Database(q) => q.local().idle += 1,
        }
        true
    }

    /// Queues a job found in the store at start-up (in memory only: in the
    /// database it is still queued where it is).
    pub fn push_recovered(&self, id: Uuid) {
        if let Self::Memory(q) = self {
            q.push_recovered(id);
        }
    }

    /// Drops a job cancelled while queued from the in-memory queue (in the
    /// database, the store's update to `cancelled` already did).
    pub fn remove(&self, id: Uuid) -> bool {
        match self {
            Self::Memory(q) => q.remove(id),
            Self::Database(_) => false,
        }
    }

    /// Stops handing out jobs; queued ones stay in the store.
    pub fn close(&self) {
        match self {
            Self::Memory(q) => q.close(),
            Self::Database(q) => {
                q.closed.store(true, Ordering::SeqCst);
                q.wake.notify_waiters();
            }
        }
    }

    /// Jobs waiting for a worker (in the database: in the whole cluster, as
    /// last counted).
    pub fn len(&self) -> usize {
        match self {
            Self::Memory(q) => q.len(),
            Self::Database(q) => q.depth.load(Ordering::Relaxed),
        }
    }

    /// True when no job waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The database queue, if this node has one: it has one exactly when
    /// its store is shared by several nodes (`JobStore::postgres`), and
    /// this is how the server asks that question.
    pub fn database(&self) -> Option<&DbQueue> {
        match self {
            Self::Memory(_) => None,
            Self::Database(q) => Some(q.as_ref()),
        }
    }

    /// The next job for a worker thread, blocking it until there is one.
    /// The job is registered in `running_jobs` under `running` before it
    /// can be cancelled by id. `counted`: the worker already counted
    /// itself idle ([`Queue::idle_from_now`]).
    pub fn next(&self, state: &AppState, running: RunningJob, counted: bool) -> Next {
        match self {
            Self::Memory(q) => {
                let id = match q.pop(counted) {
                    None => return Next::Closed,
                    // Stored `running`, and registered, by its request.
                    Some(Popped::Started(h)) => return Next::Job(h.record, h.running, h.unwritten),
                    Some(Popped::Queued(id)) => id,
                };
                // Register before claiming, so a DELETE that finds the job
                // running always finds its cancel handle too.
                state.running_jobs().insert(id, running.clone());
                let started = crate::workers::retrying(state, id, "start", || {
                    state.runtime.block_on(state.store.start(id, now_ms()))
                });
                match started {
                    Ok(Some(record)) => return Next::Job(Box::new(record), running, None),
                    Ok(None) => {} // Cancelled while queued.
                    Err(e) => tracing::error!(%id, error = %e, "cannot start job"),
                }
                state.running_jobs().remove(&id);
                Next::Skip
            }
            Self::Database(q) => state.runtime.block_on(q.claim(state, running, counted)),
        }
    }

    /// Records a job's final state, as of `at`: only while the job is still `running`
    /// (in the database: still under this node's lease). False otherwise.
    pub fn finish(
        &self,
        state: &AppState,
        id: Uuid,
        status: JobStatus,
        outcome: &Outcome,
        at: i64,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Memory(_) => {
                state
                    .runtime
                    .block_on(state.store.finish(id, status, outcome.clone(), at))
            }
            Self::Database(q) => state
                .runtime
                .block_on(q.store.finish_owned(id, &q.node, status, outcome, at)),
        }
    }

    /// Asks the node running job `id` to interrupt it, when that is not
    /// this node (in memory there is no other node).
    pub async fn cancel_elsewhere(&self, id: Uuid) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Database(q) => q.store.notify_cancel(id).await,
        }
    }
}
