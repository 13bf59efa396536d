//! The retention task: final jobs and audit events past their TTL are
//! deleted in the background, with expired exchanged tokens and stale
//! rate-limit state.

use std::time::Duration;

use crate::{AppState, now_ms};

/// Starts the retention task: every `purge_interval_secs`, final jobs and
/// audit events past their TTL are deleted, with expired exchanged tokens and
/// stale rate-limit state.
pub fn spawn(state: &AppState) {
    let state = state.clone();
    let r = state.config.retention;
    let secs_ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    state.runtime.clone().spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(r.purge_interval_secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !state.accepting.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let now = now_ms();
            let purged = state
                .store
                .purge(
                    now.saturating_sub(secs_ms(r.jobs_ttl_secs)),
                    now.saturating_sub(secs_ms(r.audit_ttl_secs)),
                    now.saturating_sub(24 * 60 * 60 * 1000),
                )
                .await;
            state.guard.prune();
            match purged {
                Ok(p) if p.jobs + p.audit + p.tokens > 0 => {
                    tracing::info!(
                        jobs = p.jobs,
                        audit = p.audit,
                        tokens = p.tokens,
                        "retention purge"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "retention purge failed"),
            }
        }
    });
}
