//! When a queued job will start: a moving window of recent run times and
//! the free workers turn "jobs ahead of it" into milliseconds. The same
//! estimate gives a full queue's `Retry-After`.

use std::{collections::VecDeque, sync::Mutex};

use strictpy_store::{JobRecord, StoreError};
use strictpy_types::JobStatus;

use crate::{AppState, views::JobView};

/// How many recent run times the estimate averages.
const WINDOW: usize = 64;

/// The recent run times of this node's workers.
#[derive(Debug, Default)]
pub struct RunTimes {
    /// Run times in milliseconds, oldest first, at most [`WINDOW`].
    recent: Mutex<VecDeque<u64>>,
}

impl RunTimes {
    /// Records one job's run time.
    pub fn record(&self, ms: u64) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back(ms);
    }

    /// The mean of the window; `None` before any job ran.
    pub fn mean_ms(&self) -> Option<u64> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let n = recent.len() as u64;
        (n > 0).then(|| recent.iter().sum::<u64>().div_ceil(n))
    }
}

/// Milliseconds until a job with `ahead` queued jobs before it starts, on
/// `workers` workers of which `free` are idle, when a run takes `mean_ms`:
/// the jobs ahead take the free workers first, then every busy worker
/// frees up once per mean run time. `None` when a worker is needed and no
/// run time was seen yet.
pub fn start_ms(ahead: u64, free: u64, workers: u64, mean_ms: Option<u64>) -> Option<u64> {
    if ahead < free {
        return Some(0);
    }
    let waves = (ahead + 1 - free).div_ceil(workers.max(1));
    mean_ms.map(|m| waves.saturating_mul(m))
}

/// Seconds for `Retry-After`: the estimate rounded up, at least 1, at most
/// an hour; 1 without an estimate.
pub fn retry_after_secs(estimate_ms: Option<u64>) -> u64 {
    estimate_ms.map_or(1, |ms| ms.div_ceil(1000).clamp(1, 3600))
}

/// `job` as the API shows it, with its place in the queue and estimated
/// start while it is queued (both `null` otherwise).
pub async fn job_view(state: &AppState, job: &JobRecord) -> Result<JobView, StoreError> {
    let mut view = JobView::from(job);
    if job.status == JobStatus::Queued {
        let ahead = state.store.queued_ahead(job.id).await?;
        view.queue_position = Some(ahead);
        view.estimated_start_ms = state.estimate_start_ms(ahead);
    }
    Ok(view)
}

/// `Retry-After` for a full queue: when the job at the head of the queue
/// is expected to start, which frees a place.
pub fn queue_full_retry_after(state: &AppState) -> u64 {
    retry_after_secs(state.estimate_start_ms(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_workers_start_at_once_then_waves() {
        assert_eq!(start_ms(0, 1, 2, None), Some(0));
        assert_eq!(start_ms(0, 0, 2, Some(100)), Some(100));
        assert_eq!(start_ms(1, 0, 2, Some(100)), Some(100));
        assert_eq!(start_ms(2, 0, 2, Some(100)), Some(200));
        assert_eq!(start_ms(3, 1, 2, Some(100)), Some(200));
        assert_eq!(start_ms(5, 0, 2, None), None);
    }

    #[test]
    fn the_window_moves() {
        let times = RunTimes::default();
        assert_eq!(times.mean_ms(), None);
        for _ in 0..WINDOW {
            times.record(10);
        }
        assert_eq!(times.mean_ms(), Some(10));
        for _ in 0..WINDOW {
            times.record(30);
        }
        assert_eq!(times.mean_ms(), Some(30));
        assert_eq!(retry_after_secs(Some(1)), 1);
        assert_eq!(retry_after_secs(Some(2001)), 3);
        assert_eq!(retry_after_secs(None), 1);
    }
}
