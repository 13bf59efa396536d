//! What several server processes on one store need from it: the arguments
//! of the [`crate::JobStore`] methods that make once-per-cluster work and
//! cluster-wide limits hold in the database rather than in one process's
//! memory (see `docs/scale-out.md`).
//!
//! On SQLite, one process owns the store, so the trait's default methods
//! keep today's behaviour; `PostgresStore` implements them with
//! transaction-level advisory locks and `FOR UPDATE SKIP LOCKED` claims
//! (`postgres/duties.rs`).

/// The concurrent-job cap of one API token (and every token exchanged for
/// it), checked inside the insert of a new job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCap {
    /// The API token whose jobs count: the submitting token, or the API
    /// token it was exchanged from (the server's budget key).
    pub budget_key: String,
    /// Jobs queued or running at once, across every node.
    pub limit: u32,
}

/// The failed-authentication lockout rule, applied to failures recorded in
/// the store by every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutRule {
    /// Failures within the window that lock an address out.
    pub max_failures: u32,
    /// The window, in milliseconds.
    pub window_ms: i64,
    /// How long the lockout lasts, in milliseconds.
    pub duration_ms: i64,
}

/// The advisory-lock class (the first key of the two-key form) of each
/// cluster duty; the second key names the instance (a hash of the token or
/// address), so unrelated tokens and addresses do not wait on each other.
pub(crate) mod lock_class {
    /// One API token's job count, while a job is inserted.
    pub const JOB_CAP: i32 = 0x7370_0001;
    /// One address's failure count.
    pub const LOCKOUT: i32 = 0x7370_0002;
    /// The first-start admin token (one instance).
    pub const BOOTSTRAP: i32 = 0x7370_0003;
    /// The retention purge (one instance).
    pub const RETENTION: i32 = 0x7370_0004;
}
