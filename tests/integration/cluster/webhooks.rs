//! Webhooks across nodes: exactly one node delivers each final state, and a
//! delivery that a SIGKILLed node left in flight is made by another node.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::harness::{Cluster, Spec, id_of};

/// What the receiver saw, and whether it still hangs on requests.
#[derive(Default)]
struct Receiver {
    /// Deliveries per job id.
    seen: Mutex<HashMap<String, u32>>,
    /// While set, requests are held (never answered) instead of counted.
    hang: AtomicBool,
    /// Requests that arrived while hanging.
    held: Mutex<u32>,
}

impl Receiver {
    fn counts(&self) -> HashMap<String, u32> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A real HTTP receiver on loopback that counts deliveries per job.
async fn receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    async fn hook(State(r): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
        if r.hang.load(Ordering::SeqCst) {
            *r.held.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            // Longer than any test: the sender times out or dies first.
            tokio::time::sleep(Duration::from_secs(300)).await;
            return StatusCode::OK;
        }
        let job: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let id = job["id"].as_str().unwrap_or("?").to_owned();
        *r.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default() += 1;
        StatusCode::OK
    }
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_final_state_is_delivered_once_by_one_of_two_nodes() {
    let Some(mut cluster) = Cluster::start(Spec::new(2)) else {
        return;
    };
    let (url, receiver) = receiver().await;
    let mut ids = Vec::new();
    for n in 0..16 {
        let job = cluster
            .submit(
                n % 2,
                &json!({"code": format!("print({n})"), "callback_url": url}),
            )
            .await;
        ids.push(id_of(&job));
    }
    for id in &ids {
        cluster.wait_final(0, id).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in &ids {
        loop {
            let job = cluster.get(0, id).await;
            if job["callback"]["status"] == "delivered" {
                break;
            }
            assert!(Instant::now() < deadline, "not delivered: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A restarted node sweeps at once for deliveries nobody holds, and both
    // nodes sweep every two seconds: none of them delivers again.
    cluster.kill(1);
    cluster.restart(1);
    tokio::time::sleep(strictpy_server::duties::SWEEP_EVERY * 2).await;
    let counts = receiver.counts();
    assert_eq!(counts.len(), ids.len(), "{counts:?}");
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "job {id}: {counts:?}");
    }
    let owners = cluster.sql(
        "SELECT count(*) FROM jobs WHERE callback_owner IS NULL OR callback_lease_expires_at IS NULL",
    );
    assert_eq!(owners, "0", "every delivery was claimed before it was made");
    // A claim names its node by the id on its job leases: here the node
    // that finished the job claimed and made its delivery.
    let node_ids = [cluster.node_id(0), cluster.node_id(1)];
    let claims = cluster.sql("SELECT lease_owner, callback_owner FROM jobs");
    for line in claims.lines() {
        let (ran, claimed) = line.split_once('|').expect("two columns");
        assert_eq!(ran, claimed, "{claims}");
        assert!(
            node_ids.iter().any(|n| n == claimed),
            "{claimed}: {node_ids:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_left_in_flight_by_a_killed_node_is_made_by_another_node() {
    // A short attempt timeout keeps the claim (backoff cap + timeout +
    // margin) a few seconds long.
    let spec = Spec::new(2).env("STRICTPY_WEBHOOK__TIMEOUT_MS", "2000");
    let Some(mut cluster) = Cluster::start(spec) else {
        return;
    };
    let (url, receiver) = receiver().await;
    receiver.hang.store(true, Ordering::SeqCst);
    let job = cluster
        .submit(0, &json!({"code": "print('hi')", "callback_url": url}))
        .await;
    let id = id_of(&job);
    cluster.wait_final(0, &id).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while *receiver.held.lock().unwrap_or_else(|p| p.into_inner()) == 0 {
        assert!(Instant::now() < deadline, "no node attempted the delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The node that ran the job (any node's worker may claim it from the
    // database queue) makes its delivery, and is inside its first attempt,
    // holding the claim: kill it there.
    let owner = cluster.sql(&format!("SELECT lease_owner FROM jobs WHERE id = '{id}'"));
    let runner = (0..cluster.len())
        .find(|&i| cluster.node_id(i) == owner.trim())
        .unwrap_or_else(|| panic!("no node is {owner:?}"));
    // Its claim on the delivery names it too.
    assert_eq!(
        cluster.sql(&format!(
            "SELECT callback_owner FROM jobs WHERE id = '{id}'"
        )),
        owner
    );
    let other = 1 - runner;
    cluster.kill(runner);
    receiver.hang.store(false, Ordering::SeqCst);
    let killed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        let job = cluster.get(other, &id).await;
        if job["callback"]["status"] != "pending" {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "node {other} never took over: {job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "delivery taken over {} ms after the kill",
        killed.elapsed().as_millis()
    );
    assert_eq!(job["callback"]["status"], "delivered", "{job}");
    // The runner died before recording its attempt; the other node's is
    // the one on record, and the receiver counted exactly one answered delivery.
    let attempts = job["callback"]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{job}");
    assert_eq!(attempts[0]["status_code"], 200, "{job}");
    assert_eq!(
        cluster.sql(&format!(
            "SELECT callback_owner FROM jobs WHERE id = '{id}'"
        )),
        cluster.node_id(other),
        "the node that took over holds the claim"
    );
    tokio::time::sleep(strictpy_server::duties::SWEEP_EVERY * 2).await;
    assert_eq!(
        receiver.counts().get(&id),
        Some(&1),
        "{:?}",
        receiver.counts()
    );
}
