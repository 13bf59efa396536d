//! The security audit log: events are emitted on the `security` tracing
//! target at once and written to the store in batches by a background task,
//! so recording one never adds a database write to the request's latency.
//!
//! This module knows nothing of who is calling; `auth::Principal::event`
//! fills an [`Event`] from the caller, so the dependency runs one way only.

use std::net::IpAddr;

use serde_json::{Value, json};
use strictpy_store::{JobStore, NewAuditEvent};
use tokio::sync::{mpsc, oneshot};

use crate::now_ms;

/// Events waiting for the writer; past this, recording waits briefly (see
/// [`AuditLog::record`]).
const QUEUE: usize = 10_000;

/// Most events written in one transaction.
const BATCH: usize = 500;

/// A security event being built.
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened.
    pub name: &'static str,
    /// The tenant concerned.
    pub tenant: Option<String>,
    /// The public id of the token concerned.
    pub token_id: Option<String>,
    /// The client's IP.
    pub ip: Option<IpAddr>,
    /// Event-specific details.
    pub details: Value,
}

impl Event {
    /// An event with nothing but its name.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            tenant: None,
            token_id: None,
            ip: None,
            details: Value::Null,
        }
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.tenant = Some(tenant.to_owned());
        self
    }

    /// Sets the token id.
    pub fn token(mut self, id: &str) -> Self {
        self.token_id = Some(id.to_owned());
        self
    }

    /// Sets the IP.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Sets the details.
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// The row to store, stamped with the current time.
    pub fn stored(self) -> NewAuditEvent {
        NewAuditEvent {
            at: now_ms(),
            event: self.name.to_owned(),
            tenant: self.tenant,
            token_id: self.token_id,
            ip: self.ip.map(|ip| ip.to_string()),
            details: self.details,
        }
    }
}

/// A message to the writer task.
#[derive(Debug)]
enum Message {
    /// An event to store.
    Event(NewAuditEvent),
    /// Answer once everything sent before is stored.
    Flush(oneshot::Sender<()>),
}

/// The handle every part of the server records events through.
#[derive(Debug, Clone)]
pub struct AuditLog {
    /// To the writer task.
    tx: mpsc::Sender<Message>,
}

impl AuditLog {
    /// Starts the writer task on the current runtime.
    pub fn start(store: std::sync::Arc<dyn JobStore>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(store, rx));
        Self { tx }
    }

    /// Records an event: logs it on the `security` target and queues it for
    /// the store. Never blocks the caller: when the queue is full (the store
    /// is far behind), the event is handed to a task that waits for room.
    pub fn record(&self, event: Event) {
        let stored = event.stored();
        // Successful authentication is routine; it goes to the store and to
        // the log at debug level, the rest at info.
        let details = stored.details.to_string();
        if stored.event == "auth_success" {
            tracing::debug!(target: "security", event = %stored.event, tenant = ?stored.tenant, token_id = ?stored.token_id, ip = ?stored.ip, details = %details);
        } else {
            tracing::info!(target: "security", event = %stored.event, tenant = ?stored.tenant, token_id = ?stored.token_id, ip = ?stored.ip, details = %details);
        }
        if let Err(mpsc::error::TrySendError::Full(msg)) = self.tx.try_send(Message::Event(stored))
        {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(msg).await;
            });
        }
    }

    /// Waits until every event recorded so far is in the store.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Writes queued events in batches until every sender is gone.
async fn writer(store: std::sync::Arc<dyn JobStore>, mut rx: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut events = Vec::with_capacity(batch.len());
        for msg in batch.drain(..) {
            match msg {
                Message::Event(e) => events.push(e),
                Message::Flush(done) => waiting.push(done),
            }
        }
        if !events.is_empty() {
            let n = events.len();
            if let Err(e) = store.append_audit(events).await {
                tracing::error!(target: "security", error = %e, lost = n, "cannot store audit events");
            }
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// The details of a job's final state worth an audit event: a limit that
/// fired, or an import the guest refused at run time.
pub fn job_event(outcome: &strictpy_types::Outcome) -> Option<(&'static str, Value)> {
    use strictpy_types::Verdict;
    let Some(error) = outcome.error.as_ref() else {
        let truncated = outcome.stdout_truncated || outcome.stderr_truncated;
        return truncated.then(|| ("limit_hit", json!({ "verdict": "output_truncated" })));
    };
    match error.kind {
        Verdict::Timeout
        | Verdict::FuelExhausted
        | Verdict::MemoryLimit
        | Verdict::StackOverflow => Some((
            "limit_hit",
            json!({ "verdict": error.kind, "limit": error.limit }),
        )),
        // The guest's import guard raises ImportError with this wording
        // (guest/src/policy.rs); it is the guest's refusal, not a missing
        // module.
        Verdict::Exception
            if error.exception_type.as_deref() == Some("ImportError")
                && error.message.contains("not allowed by the strictpy policy") =>
        {
            Some((
                "runtime_import_refused",
                json!({ "message": error.message }),
            ))
        }
        _ => None,
    }
}
