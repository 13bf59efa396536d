//! Once per cluster: three nodes starting at once on an empty database make
//! one admin token; and shared configuration: a node whose keys cannot open
//! the newest job refuses to start.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::harness::{Cluster, Spec, id_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_starting_at_once_on_an_empty_database_make_one_admin_token() {
    let Some(cluster) = Cluster::start(Spec::new(3)) else {
        return;
    };
    assert_eq!(cluster.sql("SELECT count(*) FROM tokens"), "1");
    let files = cluster.admin_tokens();
    assert_eq!(
        files.len(),
        1,
        "exactly one node keeps admin-token: {files:?}"
    );
    let printed = cluster
        .nodes
        .iter()
        .filter(|n| n.log().contains("created the first admin token"))
        .count();
    assert_eq!(printed, 1, "exactly one node prints the token");
    for i in 0..cluster.len() {
        let reply = cluster.request(i, Method::GET, "/v1/tokens", None).await;
        assert_eq!(reply.status, StatusCode::OK, "node {i}: {}", reply.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_keys_cannot_open_the_newest_job_refuses_to_start() {
    let Some(cluster) = Cluster::start(Spec::new(1)) else {
        return;
    };
    let job = cluster
        .submit(0, &json!({"code": "print('sealed')", "wait": true}))
        .await;
    let id = id_of(&job);
    let other_key = "other:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    let spec = cluster
        .spec()
        .clone()
        .env("STRICTPY_ENCRYPTION_KEY", other_key);
    let refused = match cluster.spawn_extra(&spec) {
        Ok((_dir, mut child, base)) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a mis-keyed node started on {base}");
        }
        Err(why) => why,
    };
    assert!(
        refused.contains("sealed with key id cluster"),
        "the refusal names the missing key: {refused}"
    );
    // It wrote nothing: the job still opens with the cluster's keys, and a
    // node with them (the old one after them, first) still starts.
    let again = cluster.get(0, &id).await;
    assert_eq!(again["stdout"], "sealed\n");
    let rotated = format!("{other_key},{}", super::harness::CLUSTER_KEY);
    let spec = cluster
        .spec()
        .clone()
        .env("STRICTPY_ENCRYPTION_KEY", &rotated);
    let (_dir, mut child, _) = cluster
        .spawn_extra(&spec)
        .unwrap_or_else(|e| panic!("a node with both keys starts: {e}"));
    let _ = child.kill();
    let _ = child.wait();
}
