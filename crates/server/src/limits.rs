//! Abuse resistance: per-token request buckets and concurrent-job caps,
//! a per-IP bucket for traffic without valid credentials, and the lockout
//! of IPs that keep presenting bad tokens.
//!
//! The buckets are `governor`'s GCRA limiters. A token's bucket is keyed by
//! its API token, so access tokens exchanged from one API token share its
//! budget instead of multiplying it.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::{InMemoryState, NotKeyed, keyed::DefaultKeyedStateStore},
};
use strictpy_store::TokenLimits;
use uuid::Uuid;

use crate::config::{LockoutConfig, RateLimitConfig};

/// A direct (single-key) limiter that reports its remaining capacity.
type Bucket = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// The per-IP limiter for traffic without valid credentials.
type IpBuckets =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

/// The effective limits of one caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    /// Sustained requests per minute.
    pub per_minute: u32,
    /// Burst above it.
    pub burst: u32,
    /// Jobs queued or running at once.
    pub concurrent_jobs: u32,
}

impl Effective {
    /// A token's own limits over the server defaults.
    pub fn of(token: &TokenLimits, defaults: &RateLimitConfig) -> Self {
        Self {
            per_minute: token
                .requests_per_minute
                .unwrap_or(defaults.requests_per_minute),
            burst: token.burst.unwrap_or(defaults.burst),
            concurrent_jobs: token.concurrent_jobs.unwrap_or(defaults.concurrent_jobs),
        }
    }
}

/// Why a request was refused here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A bucket is empty.
    RateLimited {
        /// Seconds until a request would be allowed (at least 1).
        retry_after: u64,
        /// The `RateLimit-Policy` header value.
        policy: String,
        /// The `RateLimit` header value.
        state: String,
    },
    /// The caller already has its maximum of jobs queued or running.
    TooManyJobs {
        /// The cap.
        limit: u32,
    },
    /// The IP is locked out after too many bad tokens.
    LockedOut {
        /// Seconds until the lockout ends.
        retry_after: u64,
    },
}

/// One IP's recent authentication failures.
#[derive(Debug, Default)]
struct Failures {
    /// When each failure in the window happened, oldest first.
    times: VecDeque<Instant>,
    /// Set while the IP is locked out.
    locked_until: Option<Instant>,
}

/// Everything this module tracks. Memory is bounded by [`Guard::prune`],
/// which the retention task calls.
#[derive(Debug)]
pub struct Guard {
    /// Server defaults.
    config: RateLimitConfig,
    /// Lockout settings.
    lockout: LockoutConfig,
    /// One bucket per API token, made on first use.
    buckets: Mutex<HashMap<String, (Effective, Arc<Bucket>)>>,
    /// The per-IP bucket for unauthenticated traffic.
    ip_buckets: IpBuckets,
    /// Jobs queued or running per API token.
    active: Mutex<HashMap<String, u32>>,
    /// Which API token each active job counts against.
    job_owner: Mutex<HashMap<Uuid, String>>,
    /// Recent failures per IP.
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// The clock of every bucket.
    clock: DefaultClock,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps hold plain counters that stay valid whatever panicked.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn quota(per_minute: u32, burst: u32) -> Quota {
    Quota::per_minute(nonzero(per_minute)).allow_burst(nonzero(burst))
}

/// The IETF draft's headers (draft-ietf-httpapi-ratelimit-headers):
/// `RateLimit-Policy: "name";q=<quota>;w=<window>` and
/// `RateLimit: "name";r=<remaining>;t=<seconds to reset>`.
fn headers(name: &str, per_minute: u32, remaining: u32, reset: u64) -> (String, String) {
    (
        format!("\"{name}\";q={per_minute};w=60"),
        format!("\"{name}\";r={remaining};t={reset}"),
    )
}

impl Guard {
    /// A guard with the server's settings.
    pub fn new(config: RateLimitConfig, lockout: LockoutConfig) -> Self {
        let clock = DefaultClock::default();
        Self {
            ip_buckets: RateLimiter::dashmap_with_clock(
                quota(
                    config.unauthenticated_per_minute,
                    config.unauthenticated_burst,
                ),
                clock.clone(),
            )
            .with_middleware::<StateInformationMiddleware>(),
            config,
            lockout,
            buckets: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            job_owner: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// The server defaults.
    pub fn defaults(&self) -> &RateLimitConfig {
        &self.config
    }

    fn refusal(&self, name: &str, per_minute: u32, wait: Duration) -> Refusal {
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let retry_after = retry_after.max(1);
        let (policy, state) = headers(name, per_minute, 0, retry_after);
        Refusal::RateLimited {
            retry_after,
            policy,
            state,
        }
    }

    /// Takes one request from the bucket of API token `key`.
    pub fn check_token(&self, key: &str, limits: Effective) -> Result<(), Refusal> {
        let bucket = {
            let mut buckets = lock(&self.buckets);
            match buckets.get(key) {
                Some((l, b)) if *l == limits => b.clone(),
                _ => {
                    let b = Arc::new(
                        RateLimiter::direct_with_clock(
                            quota(limits.per_minute, limits.burst),
                            self.clock.clone(),
                        )
                        .with_middleware::<StateInformationMiddleware>(),
                    );
                    buckets.insert(key.to_owned(), (limits, b.clone()));
                    b
                }
            }
        };
        match bucket.check() {
            Ok(_) => Ok(()),
            Err(not_until) => Err(self.refusal(
                "token",
                limits.per_minute,
                not_until.wait_time_from(self.clock.now()),
            )),
        }
    }

    /// Takes one request from the bucket of an IP without valid credentials.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        match self.ip_buckets.check_key(&ip) {
            Ok(_) => Ok(()),
            Err(not_until) => Err(self.refusal(
                "ip",
                self.config.unauthenticated_per_minute,
                not_until.wait_time_from(self.clock.now()),
            )),
        }
    }

    /// Counts job `id` against API token `key`, or refuses when the token
    /// already has its maximum of active jobs.
    pub fn start_job(&self, key: &str, id: Uuid, limit: u32) -> Result<(), Refusal> {
        let mut active = lock(&self.active);
        let n = active.entry(key.to_owned()).or_default();
        if *n >= limit {
            return Err(Refusal::TooManyJobs { limit });
        }
        *n += 1;
        lock(&self.job_owner).insert(id, key.to_owned());
        Ok(())
    }

    /// Job `id` is final: its token may start another.
    pub fn end_job(&self, id: Uuid) {
        let Some(key) = lock(&self.job_owner).remove(&id) else {
            return;
        };
        let mut active = lock(&self.active);
        if let Some(n) = active.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                active.remove(&key);
            }
        }
    }

    /// `Some(seconds left)` while `ip` is locked out.
    pub fn locked_out(&self, ip: IpAddr) -> Option<u64> {
        let failures = lock(&self.failures);
        let until = failures.get(&ip)?.locked_until?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(left.as_secs().max(1))
    }

    /// Records a bad token from `ip`; true when this failure locks it out.
    pub fn auth_failed(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let window = Duration::from_secs(self.lockout.window_secs);
        let mut failures = lock(&self.failures);
        let f = failures.entry(ip).or_default();
        while f
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            f.times.pop_front();
        }
        f.times.push_back(now);
        if f.times.len() >= self.lockout.max_failures as usize
            && f.locked_until.is_none_or(|u| u <= now)
        {
            f.locked_until = Some(now + Duration::from_secs(self.lockout.duration_secs));
            f.times.clear();
            return true;
        }
        false
    }

    /// Drops state that no longer matters: expired lockouts, old failures,
    /// and full buckets.
    pub fn prune(&self) {
        let now = Instant::now();
        let window = Duration::from_secs(self.lockout.window_secs);
        lock(&self.failures).retain(|_, f| {
            f.locked_until.is_some_and(|u| u > now)
                || f.times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) <= window)
        });
        self.ip_buckets.retain_recent();
        self.ip_buckets.shrink_to_fit();
    }
}

impl Refusal {
    /// The `Retry-After` seconds, if any.
    pub fn retry_after(&self) -> u64 {
        match self {
            Self::RateLimited { retry_after, .. } | Self::LockedOut { retry_after } => *retry_after,
            Self::TooManyJobs { .. } => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(per_minute: u32, burst: u32) -> Guard {
        Guard::new(
            RateLimitConfig {
                requests_per_minute: per_minute,
                burst,
                concurrent_jobs: 2,
                unauthenticated_per_minute: per_minute,
                unauthenticated_burst: burst,
            },
            LockoutConfig {
                max_failures: 3,
                window_secs: 60,
                duration_secs: 60,
            },
        )
    }

    #[test]
    fn a_token_bucket_empties_after_its_burst_and_names_the_wait() {
        let g = guard(60, 3);
        let limits = Effective::of(&TokenLimits::default(), g.defaults());
        for _ in 0..3 {
            assert!(g.check_token("t", limits).is_ok());
        }
        let Err(Refusal::RateLimited {
            retry_after,
            policy,
            state,
        }) = g.check_token("t", limits)
        else {
            panic!("the fourth request must be refused");
        };
        assert_eq!(retry_after, 1);
        assert_eq!(policy, "\"token\";q=60;w=60");
        assert_eq!(state, "\"token\";r=0;t=1");
        // Another token has its own bucket.
        assert!(g.check_token("u", limits).is_ok());
    }

    #[test]
    fn concurrent_jobs_are_capped_and_released() {
        let g = guard(60, 3);
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        assert!(g.start_job("t", a, 2).is_ok());
        assert!(g.start_job("t", b, 2).is_ok());
        assert_eq!(
            g.start_job("t", c, 2),
            Err(Refusal::TooManyJobs { limit: 2 })
        );
        g.end_job(a);
        assert!(g.start_job("t", c, 2).is_ok());
    }

    #[test]
    fn repeated_failures_lock_an_ip_out() {
        let g = guard(60, 3);
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert!(!g.auth_failed(ip));
        assert!(!g.auth_failed(ip));
        assert_eq!(g.locked_out(ip), None);
        assert!(g.auth_failed(ip));
        assert!(g.locked_out(ip).is_some_and(|s| s > 0 && s <= 60));
        assert_eq!(g.locked_out([10, 0, 0, 2].into()), None);
        g.prune();
        assert!(g.locked_out(ip).is_some());
    }
}
