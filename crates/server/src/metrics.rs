//! Prometheus metrics served at `/metrics`: jobs by status and verdict, queue
//! depth, running jobs, latency and fuel histograms, webhook deliveries.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use strictpy_types::{JobStatus, Outcome};

/// Labels of a finished job.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// The final status.
    pub status: String,
    /// The verdict kind, or `none` for a success.
    pub verdict: String,
}

/// Every value of [`DeliveryLabels::result`].
pub const DELIVERY_RESULTS: &[&str] = &["delivered", "retryable_error", "client_error", "refused"];

/// Labels of one webhook delivery attempt.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// One of [`DELIVERY_RESULTS`].
    pub result: String,
}

/// Every metric the server keeps, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    /// The registry the text format is rendered from.
    registry: Registry,
    /// Jobs accepted (not counting idempotent replays).
    pub submitted: Counter,
    /// `wait: true` jobs stored `running` and handed straight to an idle
    /// worker, skipping the queue (a subset of `submitted`).
    pub handed_off: Counter,
    /// Jobs that reached a final status.
    pub finished: Family<JobLabels, Counter>,
    /// Jobs waiting for a worker; set on every scrape.
    pub queue_depth: Gauge,
    /// Jobs running now.
    pub running: Gauge,
    /// Time from acceptance to final status, in seconds.
    pub latency: Histogram,
    /// Time inside the sandbox, in seconds.
    pub run_time: Histogram,
    /// Fuel burned per run.
    pub fuel: Histogram,
    /// Webhook delivery attempts by result.
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// Requests with a bad bearer token.
    pub auth_failures: Counter,
    /// Requests refused with `429`.
    pub rate_limited: Counter,
    /// Jobs that requests wait on (`wait: true`, `DELETE`); set on every
    /// scrape.
    pub waiters: Gauge,
    /// Tasks alive on the async runtime; set on every scrape.
    pub alive_tasks: Gauge,
    /// The default sustained requests per minute a token may make to THIS
    /// node: request buckets are per node, so across N nodes behind a load
    /// balancer a token's rate is at most N times this (docs/scale-out.md).
    pub token_rate_per_node: Gauge,
    /// The default burst of a token's bucket on this node.
    pub token_burst_per_node: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `strictpy_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("strictpy");
        let submitted = Counter::default();
        let handed_off = Counter::default();
        let finished = Family::<JobLabels, Counter>::default();
        let queue_depth = Gauge::default();
        let running = Gauge::default();
        let latency = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        let run_time = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        let fuel = Histogram::new(exponential_buckets(1e6, 4.0, 14));
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let auth_failures = Counter::default();
        let rate_limited = Counter::default();
        let waiters = Gauge::default();
        let alive_tasks = Gauge::default();
        registry.register(
            "http_waiters",
            "Jobs that requests wait on (wait: true, DELETE)",
            waiters.clone(),
        );
        registry.register(
            "runtime_alive_tasks",
            "Tasks alive on the async runtime",
            alive_tasks.clone(),
        );
        let token_rate_per_node = Gauge::default();
        let token_burst_per_node = Gauge::default();
        registry.register(
            "token_requests_per_minute_per_node",
            "Default sustained requests per minute per token on this node (buckets are per node)",
            token_rate_per_node.clone(),
        );
        registry.register(
            "token_burst_per_node",
            "Default burst per token on this node (buckets are per node)",
            token_burst_per_node.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests with a bad bearer token",
            auth_failures.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused with 429",
            rate_limited.clone(),
        );
        registry.register("jobs_submitted", "Jobs accepted", submitted.clone());
        registry.register(
            "jobs_handed_off",
            "wait: true jobs stored running and handed straight to an idle worker",
            handed_off.clone(),
        );
        registry.register(
            "jobs_finished",
            "Jobs that reached a final status, by status and verdict",
            finished.clone(),
        );
        registry.register(
            "queue_depth",
            "Jobs waiting for a worker",
            queue_depth.clone(),
        );
        registry.register("jobs_running", "Jobs running now", running.clone());
        registry.register(
            "job_latency_seconds",
            "Time from acceptance to final status",
            latency.clone(),
        );
        registry.register(
            "job_run_seconds",
            "Time spent running in the sandbox",
            run_time.clone(),
        );
        registry.register("job_fuel", "Fuel burned per run", fuel.clone());
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by result",
            deliveries.clone(),
        );
        // Create every delivery series up front, so dashboards see zeros
        // rather than a missing metric before the first webhook.
        for result in DELIVERY_RESULTS {
            let _ = deliveries.get_or_create(&DeliveryLabels {
                result: (*result).to_owned(),
            });
        }
        Self {
            registry,
            submitted,
            handed_off,
            finished,
            queue_depth,
            running,
            latency,
            run_time,
            fuel,
            deliveries,
            auth_failures,
            rate_limited,
            waiters,
            alive_tasks,
            token_rate_per_node,
            token_burst_per_node,
        }
    }

    /// [`Metrics::new`] with this node's request-bucket settings exposed.
    pub fn per_node(rate: &crate::config::RateLimitConfig) -> Self {
        let metrics = Self::new();
        metrics
            .token_rate_per_node
            .set(i64::from(rate.requests_per_minute));
        metrics.token_burst_per_node.set(i64::from(rate.burst));
        metrics
    }

    /// Counts a job that reached `status`; `latency_s` is acceptance to end.
    pub fn job_finished(&self, status: JobStatus, outcome: &Outcome, latency_s: f64) {
        let verdict = outcome.verdict().map_or("none", |v| v.as_str());
        self.finished
            .get_or_create(&JobLabels {
                status: status.as_str().to_owned(),
                verdict: verdict.to_owned(),
            })
            .inc();
        self.latency.observe(latency_s.max(0.0));
    }

    /// Counts one webhook attempt.
    pub fn delivery(&self, result: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
