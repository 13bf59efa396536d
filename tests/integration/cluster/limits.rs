//! Limits that hold across nodes: the concurrent-job cap of a token, the
//! failed-authentication lockout, revocation (over HTTP and through the
//! token CLI while the nodes run), and the per-node request-rate figure.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::harness::{Cluster, Spec, id_of, token_cli};

/// A token of tenant `default` with the job scopes, made over HTTP on node 0.
async fn job_token(cluster: &Cluster, limits: Value) -> (String, String) {
    let reply = cluster
        .request(
            0,
            Method::POST,
            "/v1/tokens",
            Some(&json!({
                "tenant": "default",
                "scopes": ["jobs:write", "jobs:read"],
                "name": "cluster test",
                "rate_limit": limits,
            })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    (
        reply.json["token"].as_str().expect("token").to_owned(),
        reply.json["id"].as_str().expect("id").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrent_job_cap_holds_across_two_nodes_submitting_at_once() {
    let Some(cluster) = Cluster::start(Spec::new(2)) else {
        return;
    };
    let (token, _) = job_token(&cluster, json!({"concurrent_jobs": 2})).await;
    let slow = json!({"code": "import time\ntime.sleep(2.5)\nprint('done')"});
    // Eight submissions at once, four to each node: exactly the cap gets in.
    let replies = futures_join(
        (0..8)
            .map(|n| {
                let (cluster, token, slow) = (&cluster, &token, &slow);
                async move { cluster.submit_as(n % 2, token, slow).await }
            })
            .collect(),
    )
    .await;
    let accepted: Vec<&Value> = replies
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .map(|r| &r.json)
        .collect();
    let refused = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .inspect(|r| assert_eq!(r.json["error"]["code"], "too_many_jobs", "{}", r.text))
        .count();
    assert_eq!(accepted.len(), 2, "{replies:?}");
    assert_eq!(refused, 6, "{replies:?}");
    // Once they are final, the token may submit again, on either node.
    for job in &accepted {
        let done = cluster.wait_final(0, &id_of(job)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    for i in 0..2 {
        let reply = cluster
            .submit_as(i, &token, &json!({"code": "print(1)"}))
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    }
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_on_two_nodes_add_up_to_one_lockout_on_both() {
    let spec = Spec::new(2)
        .env("STRICTPY_LOCKOUT__MAX_FAILURES", "4")
        .env("STRICTPY_LOCKOUT__DURATION_SECS", "60");
    let Some(cluster) = Cluster::start(spec) else {
        return;
    };
    let bad = "spk_0123456789abcdef_not-a-real-secret-at-all-000000";
    // Two failures on each node: neither node alone saw four.
    for i in [0, 1, 0] {
        let reply = cluster
            .request_as(i, Some(bad), Method::GET, "/v1/jobs", None)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    }
    // Before the fourth failure the good token still works on both nodes.
    for i in 0..2 {
        let ok = cluster.request(i, Method::GET, "/v1/jobs", None).await;
        assert_eq!(ok.status, StatusCode::OK, "node {i}: {}", ok.text);
    }
    let reply = cluster
        .request_as(1, Some(bad), Method::GET, "/v1/jobs", None)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    // The failure is recorded in the background, within milliseconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    for i in [0, 1] {
        loop {
            let reply = cluster.request(i, Method::GET, "/v1/jobs", None).await;
            if reply.status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(reply.json["error"]["code"], "locked_out", "{}", reply.text);
                let retry: u64 = reply.headers["retry-after"]
                    .to_str()
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .expect("Retry-After");
                assert!((1..=60).contains(&retry), "Retry-After {retry}");
                break;
            }
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            assert!(
                Instant::now() < deadline,
                "node {i} never locked the address out"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let lockouts = cluster.sql("SELECT count(*) FROM auth_lockouts WHERE ip = '127.0.0.1'");
    assert_eq!(lockouts, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_node_is_refused_by_every_node_at_once() {
    let Some(cluster) = Cluster::start(Spec::new(3)) else {
        return;
    };
    let (token, id) = job_token(&cluster, json!({})).await;
    for i in 0..cluster.len() {
        let ok = cluster
            .request_as(i, Some(&token), Method::GET, "/v1/jobs", None)
            .await;
        assert_eq!(ok.status, StatusCode::OK, "node {i}: {}", ok.text);
    }
    let revoked = cluster
        .request(2, Method::DELETE, &format!("/v1/tokens/{id}"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    // No wait: every node looks the token up in the database per request.
    for i in 0..cluster.len() {
        let refused = cluster
            .request_as(i, Some(&token), Method::GET, "/v1/jobs", None)
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNAUTHORIZED,
            "node {i}: {}",
            refused.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_cli_creates_and_revokes_tokens_for_running_nodes() {
    let Some(cluster) = Cluster::start(Spec::new(2)) else {
        return;
    };
    let created = token_cli(
        &cluster.store_url,
        &[
            "create",
            "--tenant",
            "default",
            "--scope",
            "jobs:write",
            "--scope",
            "jobs:read",
            "--name",
            "from the cli",
        ],
    );
    let token = created["token"].as_str().expect("token").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    // Works on both nodes at once.
    let (job_a, job_b) = (
        json!({"code": "print('a')", "wait": true}),
        json!({"code": "print('b')", "wait": true}),
    );
    let (a, b) = tokio::join!(
        cluster.submit_as(0, &token, &job_a),
        cluster.submit_as(1, &token, &job_b),
    );
    for (reply, out) in [(a, "a\n"), (b, "b\n")] {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.json["stdout"], out, "{}", reply.text);
    }
    let listed = token_cli(&cluster.store_url, &["list"]);
    assert!(
        listed["tokens"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["id"] == id.as_str())),
        "{listed}"
    );
    let revoked = token_cli(&cluster.store_url, &["revoke", &id]);
    assert_eq!(revoked["revoked"], true, "{revoked}");
    let (a, b) = tokio::join!(
        cluster.request_as(0, Some(&token), Method::GET, "/v1/jobs", None),
        cluster.request_as(1, Some(&token), Method::GET, "/v1/jobs", None),
    );
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
    assert_eq!(b.status, StatusCode::UNAUTHORIZED, "{}", b.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_exposes_its_per_node_request_rate() {
    let spec = Spec::new(2)
        .env("STRICTPY_RATE_LIMIT__REQUESTS_PER_MINUTE", "120")
        .env("STRICTPY_RATE_LIMIT__BURST", "7");
    let Some(cluster) = Cluster::start(spec) else {
        return;
    };
    for i in 0..2 {
        let reply = cluster.request(i, Method::GET, "/metrics", None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert!(
            reply
                .text
                .lines()
                .any(|l| l == "strictpy_token_requests_per_minute_per_node 120"),
            "{}",
            reply.text
        );
        assert!(
            reply
                .text
                .lines()
                .any(|l| l == "strictpy_token_burst_per_node 7"),
            "{}",
            reply.text
        );
    }
    // And `/v1/cluster` says the same, with what it means across the live
    // nodes: at most twice the per-node rate here.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = cluster.request(0, Method::GET, "/v1/cluster", None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let live = reply.json["nodes"]
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["alive"] == true).count());
        if live == 2 {
            let rate = &reply.json["rate_limit"];
            assert_eq!(rate["per_node_requests_per_minute"], 120, "{}", reply.text);
            assert_eq!(rate["per_node_burst"], 7, "{}", reply.text);
            assert_eq!(
                rate["cluster_max_requests_per_minute"], 240,
                "{}",
                reply.text
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both nodes alive: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
