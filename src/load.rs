//! `strictpy load`: a small load driver for running servers. It POSTs
//! `wait: true` hello jobs round-robin over one or more nodes (`--url`,
//! repeatable) from `--concurrency` clients for `--seconds`, and prints
//! jobs/s and the latency percentiles of the answers. The scale-out figures
//! in `docs/benchmarks.md` (1, 2 and 3 nodes on one Postgres; SQLite vs
//! Postgres) come from it.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::cli::EXIT_OK;

/// `strictpy load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// A node's base URL (`http://127.0.0.1:8080`); repeat for several
    /// nodes, which get the requests round-robin.
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// A file holding the API token (default: `$STRICTPY_TOKEN`). It needs
    /// `jobs:write` and a rate limit the load cannot reach.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// How long to measure, after a one-second warm-up.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Tally {
    /// Latencies of the `200 succeeded` answers, in microseconds.
    ok: Vec<u64>,
    /// Answers that were not a succeeded job, or failed requests.
    bad: u64,
}

/// Runs `strictpy load`.
pub fn load(args: LoadArgs) -> anyhow::Result<u8> {
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_owned(),
        None => std::env::var("STRICTPY_TOKEN")
            .context("set STRICTPY_TOKEN or --token-file")?
            .trim()
            .to_owned(),
    };
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(drive(args, token))
}

async fn drive(args: LoadArgs, token: String) -> anyhow::Result<u8> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let urls: Arc<Vec<String>> = Arc::new(
        args.urls
            .iter()
            .map(|u| format!("{}/v1/jobs", u.trim_end_matches('/')))
            .collect(),
    );
    let token = Arc::new(format!("Bearer {token}"));
    let warm_until = Instant::now() + Duration::from_secs(1);
    let end = warm_until + Duration::from_secs(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..args.concurrency {
        let (client, urls, token) = (client.clone(), urls.clone(), token.clone());
        tasks.spawn(async move {
            let mut tally = Tally::default();
            let mut n = lane;
            while Instant::now() < end {
                let url = &urls[n % urls.len()];
                n += 1;
                let started = Instant::now();
                let reply = client
                    .post(url)
                    .header("authorization", token.as_str())
                    .header("content-type", "application/json")
                    .body(r#"{"code": "print(\"hi\")", "wait": true}"#)
                    .send()
                    .await;
                let good = match reply {
                    Ok(r) if r.status() == reqwest::StatusCode::OK => r
                        .json::<serde_json::Value>()
                        .await
                        .is_ok_and(|j| j["status"] == "succeeded"),
                    _ => false,
                };
                if started < warm_until {
                    continue;
                }
                if good {
                    tally
                        .ok
                        .push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
                } else {
                    tally.bad += 1;
                }
            }
            tally
        });
    }
    let mut all = Tally::default();
    while let Some(t) = tasks.join_next().await {
        let t = t?;
        all.ok.extend(t.ok);
        all.bad += t.bad;
    }
    all.ok.sort_unstable();
    let pct = |p: f64| {
        if all.ok.is_empty() {
            return 0.0;
        }
        let i = ((all.ok.len() as f64 - 1.0) * p).round() as usize;
        all.ok[i.min(all.ok.len() - 1)] as f64 / 1000.0
    };
    let rate = all.ok.len() as f64 / args.seconds.max(1) as f64;
    let (p50, p99) = (pct(0.50), pct(0.99));
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "nodes": args.urls.len(),
                "concurrency": args.concurrency,
                "seconds": args.seconds,
                "jobs": all.ok.len(),
                "jobs_per_second": rate,
                "p50_ms": p50,
                "p99_ms": p99,
                "bad": all.bad,
            })
        );
    } else {
        println!(
            "nodes {}  concurrency {}  jobs {}  jobs/s {rate:.1}  p50 {p50:.2} ms  p99 {p99:.2} ms  bad {}",
            args.urls.len(),
            args.concurrency,
            all.ok.len(),
            all.bad
        );
    }
    Ok(if all.bad == 0 { EXIT_OK } else { 1 })
}
