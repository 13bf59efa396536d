//! The harness itself: nodes on one database see each other's jobs, a
//! SIGKILLed node comes back on its data dir, and SIGTERM stops one.

use serde_json::json;

use super::harness::{Cluster, Spec, id_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_to_one_node_is_visible_on_every_node() {
    let Some(mut cluster) = Cluster::start(Spec::new(2).workers(1)) else {
        return;
    };
    let job = cluster.submit(0, &json!({"code": "print(6 * 7)"})).await;
    let id = id_of(&job);
    let done = cluster.wait_final(1, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["stdout"], "42\n");
    let before = cluster.nodes[1].pid();
    cluster.kill(1);
    assert_eq!(cluster.nodes[1].pid(), None);
    cluster.restart(1);
    assert!(cluster.nodes[1].pid().is_some() && cluster.nodes[1].pid() != before);
    let again = cluster.get(1, &id).await;
    assert_eq!(again["stdout"], "42\n");
    let rows = cluster.sql(&format!("SELECT count(*) FROM jobs WHERE id = '{id}'"));
    assert_eq!(rows, "1");
    cluster.terminate(0);
    assert_eq!(cluster.nodes[0].pid(), None);
    assert_eq!(cluster.get(1, &id).await["stdout"], "42\n");
}
