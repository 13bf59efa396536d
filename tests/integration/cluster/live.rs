//! Live output and the queue across nodes: a stream opened on one node
//! follows a job running on another (through the database's
//! notifications), resumes on either node with `Last-Event-ID`, keeps
//! tenants apart; queue positions are cluster-wide and count down, and a
//! full cluster queue answers `503` with a `Retry-After` from the answering
//! node's estimate.

use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use super::harness::{Cluster, Spec, id_of};
use crate::sse::{Event, Reader, Source, statuses, text_of};

/// An open event stream over HTTP.
type Sse = Reader<reqwest::Response>;

impl Source for reqwest::Response {
    async fn chunk(&mut self) -> Option<Vec<u8>> {
        reqwest::Response::chunk(self)
            .await
            .expect("the stream broke")
            .map(|bytes| bytes.to_vec())
    }
}

impl Sse {
    /// Events up to and including the first `kind` one.
    async fn until(&mut self, kind: &str) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            let e = self.next().await.expect("an event before the end");
            let done = e.kind == kind;
            assert!(
                done || e.kind != "final",
                "the stream ended first: {seen:?}"
            );
            seen.push(e);
            if done {
                return seen;
            }
        }
    }

    /// Events up to the one that makes the `stream` text of this stream
    /// contain `needle` (a `print` may arrive as several chunks).
    async fn until_text(&mut self, stream: &str, needle: &str) -> Vec<Event> {
        let mut seen = Vec::new();
        let mut text = String::new();
        while !text.contains(needle) {
            let mut more = self.until(stream).await;
            let e = more.last().expect("an event");
            text.push_str(e.data["text"].as_str().expect("text"));
            seen.append(&mut more);
        }
        seen
    }
}

/// Opens job `id`'s event stream on node `i` with `token`, resuming after
/// `last` if given.
async fn open(
    cluster: &Cluster,
    i: usize,
    token: &str,
    id: &str,
    last: Option<&str>,
) -> (StatusCode, Sse) {
    let mut request = cluster
        .client
        .get(format!("{}/v1/jobs/{id}/events", cluster.base(i)))
        .bearer_auth(token)
        .header(header::ACCEPT, "text/event-stream");
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    let response = request.send().await.expect("the node answers");
    let status = response.status();
    if status == StatusCode::OK {
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
    }
    (status, Sse::new(response, Duration::from_secs(30)))
}

/// The index of the node whose worker runs job `id` (it is running).
fn runner(cluster: &Cluster, id: &str) -> usize {
    let owner = cluster.sql(&format!("SELECT lease_owner FROM jobs WHERE id = '{id}'"));
    (0..cluster.len())
        .find(|&i| {
            std::fs::read_to_string(cluster.nodes[i].data_dir().join("node-id"))
                .is_ok_and(|n| n.trim() == owner.trim())
        })
        .unwrap_or_else(|| panic!("no node is {owner:?}"))
}

/// Submits `code` to node 0 and waits until some node runs it; returns the
/// job id, the node running it and another node.
async fn running(cluster: &Cluster, code: &str) -> (String, usize, usize) {
    let id = id_of(&cluster.submit(0, &json!({ "code": code })).await);
    cluster.until(0, &id, |j| j["status"] == "running").await;
    let r = runner(cluster, &id);
    (id, r, 1 - r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_another_node_gets_chunks_while_the_job_runs() {
    let Some(cluster) = Cluster::start(Spec::new(2)) else {
        return;
    };
    let (id, _, other) = running(
        &cluster,
        "import time\nprint('first')\ntime.sleep(2.5)\nprint('second')\nresult = 1",
    )
    .await;
    let (status, mut stream) = open(&cluster, other, &cluster.token, &id, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut seen = stream.until_text("stdout", "first\n").await;
    // The first line crossed over while the program still sleeps there.
    let now = cluster.get(other, &id).await;
    assert_eq!(now["status"], "running", "{now}");
    assert!(now["stdout"].is_null());
    seen.extend(stream.rest().await);
    assert_eq!(statuses(&seen), [&json!("running"), &json!("succeeded")]);
    let last = seen.last().expect("final");
    assert_eq!((last.kind.as_str(), last.id.as_str()), ("final", "final"));
    assert_eq!(last.data["result"], 1);
    let (text, missed) = text_of(&seen, "stdout", 0);
    assert_eq!((text.as_str(), missed), ("first\nsecond\n", 0));
    assert_eq!(last.data["stdout"], text.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_a_queued_job_follows_it_when_another_node_starts_it() {
    let Some(cluster) = Cluster::start(Spec::new(2)) else {
        return;
    };
    // Both workers busy, so the next job waits in the queue.
    let mut blockers = Vec::new();
    for secs in [2, 3] {
        let job = json!({ "code": format!("import time\ntime.sleep({secs})") });
        blockers.push(id_of(&cluster.submit(0, &job).await));
    }
    for id in &blockers {
        cluster.until(0, id, |j| j["status"] == "running").await;
    }
    let queued = cluster
        .submit(
            1,
            &json!({"code": "import time\nprint('one')\ntime.sleep(1.5)\nprint('two')"}),
        )
        .await;
    assert_eq!(queued["status"], "queued");
    let id = id_of(&queued);
    // Whichever node will run it, one stream is on the other node.
    let (_, mut on0) = open(&cluster, 0, &cluster.token, &id, None).await;
    let (_, mut on1) = open(&cluster, 1, &cluster.token, &id, None).await;
    let first0 = on0.until_text("stdout", "one\n").await;
    let first1 = on1.until_text("stdout", "one\n").await;
    assert_eq!(cluster.get(0, &id).await["status"], "running");
    for (mut seen, stream) in [(first0, &mut on0), (first1, &mut on1)] {
        assert_eq!(seen[0].data["status"], "queued");
        seen.extend(stream.rest().await);
        let (text, missed) = text_of(&seen, "stdout", 0);
        assert_eq!((text.as_str(), missed), ("one\ntwo\n", 0));
        assert_eq!(seen.last().expect("final").data["status"], "succeeded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_on_the_other_node_without_loss_or_repetition() {
    let Some(cluster) = Cluster::start(Spec::new(2)) else {
        return;
    };
    let code =
        "import time\nprint('a')\ntime.sleep(1.5)\nprint('b')\ntime.sleep(1.5)\nprint('c')\n1/0";
    let (id, runs, other) = running(&cluster, code).await;
    // First on the node running it (its own feed), then resumed on the
    // other (the mirror), then again on the first from the mirror's id.
    let (_, mut first) = open(&cluster, runs, &cluster.token, &id, None).await;
    let part1 = first.until("stdout").await;
    drop(first);
    let at1 = part1.last().expect("event").id.clone();
    let (status, mut second) = open(&cluster, other, &cluster.token, &id, Some(&at1)).await;
    assert_eq!(status, StatusCode::OK);
    let part2 = second.until_text("stdout", "b\n").await;
    assert_eq!(cluster.get(other, &id).await["status"], "running");
    drop(second);
    let at2 = part2.last().expect("event").id.clone();
    let (_, mut third) = open(&cluster, runs, &cluster.token, &id, Some(&at2)).await;
    let part3 = third.rest().await;
    let all: Vec<Event> = part1.iter().chain(&part2).chain(&part3).cloned().collect();
    let job = &all.last().expect("final").data;
    assert_eq!(job["status"], "failed");
    for stream in ["stdout", "stderr"] {
        let (text, missed) = text_of(&all, stream, 0);
        assert_eq!(missed, 0);
        assert_eq!(text, job[stream].as_str().expect("output"), "{stream}");
    }
    assert!(
        job["stderr"]
            .as_str()
            .is_some_and(|e| e.contains("ZeroDivisionError"))
    );
    assert_eq!(statuses(&all), [&json!("running"), &json!("failed")]);

    // After the end, the same resume point on the other node gives the same
    // rest from the stored output.
    let (_, mut late) = open(&cluster, other, &cluster.token, &id, Some(&at1)).await;
    let after = late.rest().await;
    let live: Vec<&Event> = part2
        .iter()
        .chain(&part3)
        .filter(|e| e.kind != "status")
        .collect();
    let stored: Vec<&Event> = after.iter().filter(|e| e.kind != "status").collect();
    let text = |events: &[&Event], kind: &str| -> String {
        events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.data["text"].as_str().unwrap_or_default())
            .collect()
    };
    for kind in ["stdout", "stderr"] {
        assert_eq!(text(&live, kind), text(&stored, kind), "{kind}");
    }
    let (status, _) = open(&cluster, other, &cluster.token, &id, Some("final")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

/// A new token of `tenant` with `scopes`, made on node 0.
async fn token(cluster: &Cluster, tenant: &str, scopes: &[&str]) -> String {
    let body = json!({"tenant": tenant, "scopes": scopes, "name": "live test"});
    let reply = cluster
        .request(0, Method::POST, "/v1/tokens", Some(&body))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json["token"].as_str().expect("token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_job_is_a_404_on_every_node() {
    let Some(cluster) = Cluster::start(Spec::new(2)) else {
        return;
    };
    let (id, runs, other) = running(&cluster, "import time\ntime.sleep(2)\nprint('x')").await;
    let stranger = token(&cluster, "other", &["jobs:read"]).await;
    let writer = token(&cluster, "default", &["jobs:write"]).await;
    for i in [runs, other] {
        let (status, _) = open(&cluster, i, &stranger, &id, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "node {i}");
        let (status, _) = open(&cluster, i, &writer, &id, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "node {i}");
        let unknown = "0190b6f7-0000-7000-8000-000000000000";
        let (status, _) = open(&cluster, i, &cluster.token, unknown, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "node {i}");
    }
    // The owner's stream on the other node still gets the job.
    let (_, mut own) = open(&cluster, other, &cluster.token, &id, None).await;
    let events = own.rest().await;
    assert_eq!(text_of(&events, "stdout", 0).0, "x\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_positions_are_cluster_wide_and_count_down_on_every_node() {
    let Some(cluster) = Cluster::start(Spec::new(2)) else {
        return;
    };
    // Two workers in the cluster, freeing up at different times.
    let mut blockers = Vec::new();
    for (i, secs) in [(0, "1.5"), (1, "3.5")] {
        let job = json!({ "code": format!("import time\ntime.sleep({secs})") });
        blockers.push(id_of(&cluster.submit(i, &job).await));
    }
    for id in &blockers {
        cluster.until(0, id, |j| j["status"] == "running").await;
    }
    // Submitted to alternating nodes: each place counts every node's queue.
    let mut queued = Vec::new();
    for i in [0, 1, 0] {
        let job = json!({"code": "import time\ntime.sleep(1.2)"});
        queued.push(cluster.submit(i, &job).await);
    }
    let positions: Vec<&Value> = queued.iter().map(|j| &j["queue_position"]).collect();
    assert_eq!(positions, [&json!(0), &json!(1), &json!(2)]);
    let last = id_of(&queued[2]);
    let mut seen = vec![2];
    loop {
        for i in 0..cluster.len() {
            let job = cluster.get(i, &last).await;
            match job["queue_position"].as_u64() {
                Some(p) => {
                    assert_eq!(job["status"], "queued");
                    assert!(p <= *seen.last().expect("a place"), "{seen:?} then {p}");
                    if seen.last() != Some(&p) {
                        seen.push(p);
                    }
                }
                None => {
                    assert_ne!(job["status"], "queued");
                    assert!(job["estimated_start_ms"].is_null());
                }
            }
        }
        if cluster.get(0, &last).await["status"] != "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, [2, 1, 0], "positions count down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cluster_queue_is_a_503_with_retry_after_from_the_estimate() {
    let Some(cluster) = Cluster::start(Spec::new(2).env("STRICTPY_QUEUE_SIZE", "1")) else {
        return;
    };
    // One run of about 2.2 s, on whichever node claims it: that node has a
    // run time to estimate from, the other none.
    let warm = cluster
        .submit(
            0,
            &json!({"code": "import time\ntime.sleep(2.2)", "wait": true}),
        )
        .await;
    assert_eq!(warm["status"], "succeeded");
    let warmed = runner(&cluster, &id_of(&warm));
    let cold = 1 - warmed;
    // Both workers busy, one after the other (the queue holds one job).
    let mut ids = Vec::new();
    for i in [0, 1] {
        let job = json!({"code": "import time\ntime.sleep(30)"});
        let id = id_of(&cluster.submit(i, &job).await);
        cluster.until(0, &id, |j| j["status"] == "running").await;
        ids.push(id);
    }
    let waiting = cluster.submit(cold, &json!({"code": "print(1)"})).await;
    assert_eq!(waiting["queue_position"], 0);
    ids.push(id_of(&waiting));
    // The cap is the cluster's: both nodes refuse the next job, each with
    // its own estimate of when the head of the queue starts (no worker is
    // free; one mean run time of about 2.2 s, rounded up; no run time seen:
    // 1 s).
    for (i, retry) in [(warmed, "3"), (cold, "1")] {
        let full = cluster
            .submit_as(i, &cluster.token, &json!({"code": "print(2)"}))
            .await;
        assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE, "node {i}");
        assert_eq!(full.json["error"]["code"], "queue_full", "{}", full.text);
        assert_eq!(full.headers[header::RETRY_AFTER], retry, "node {i}");
    }
    for id in &ids {
        cluster
            .request(0, Method::DELETE, &format!("/v1/jobs/{id}"), None)
            .await;
    }
}
