//! Work that several nodes on one shared store divide between them, so it
//! happens once per cluster rather than once per node: the sweep that picks
//! up webhook deliveries nobody holds (their node died, or stopped before
//! it claimed them). The retention purge and the first-start admin token
//! take their locks in the store itself (`JobStore::purge`,
//! `JobStore::insert_first_token`).

use std::time::Duration;

use crate::AppState;

/// How often a node looks for deliveries nobody holds.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// How long a final job's pending delivery may stay unclaimed before
/// another node takes it: the node that finished the job claims it within
/// milliseconds unless it died in between.
pub const UNCLAIMED_MS: i64 = 10_000;

/// Deliveries claimed per sweep; the rest wait for the next one.
const SWEEP_BATCH: u32 = 64;

/// Starts the delivery sweep when the store is shared. On SQLite the one
/// process delivers what a previous run left pending at start, as before.
pub fn spawn(state: &AppState) {
    if state.queue.database().is_none() {
        return;
    }
    let state = state.clone();
    state.runtime.clone().spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !state.accepting.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let claimed = state
                .store
                .claim_pending_callbacks(
                    state.webhooks.owner().to_owned(),
                    state.webhooks.claim_ms(),
                    UNCLAIMED_MS,
                    SWEEP_BATCH,
                )
                .await;
            match claimed {
                Ok(ids) => {
                    if !ids.is_empty() {
                        tracing::info!(count = ids.len(), "webhook: took over pending deliveries");
                    }
                    for id in ids {
                        state.spawn_webhook(id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhook: the delivery sweep failed"),
            }
        }
    });
}
