//! What several nodes on one store need from it, with several stores on one
//! database standing for the nodes: the first-start token made once (both
//! backends), and on PostgreSQL the concurrent-job cap under concurrency,
//! delivery claims, the failed-authentication lockout and the retention
//! purge that one node runs at a time.

use std::{path::PathBuf, sync::Arc};

use strictpy_store::{
    Created, JobCap, JobStore, LockoutRule, NewJob, StoreLocation, TokenKind, TokenRecord,
};
use strictpy_types::{JobStatus, Outcome, Verdict};
use uuid::Uuid;

mod common;

async fn open(location: &StoreLocation) -> Arc<dyn JobStore> {
    location
        .open(common::ring(common::KEY_1))
        .await
        .expect("open")
}

/// A fresh Postgres database's location and URL; `None` when skipped.
fn postgres() -> Option<(StoreLocation, String)> {
    let url = strictpy_testpg::server()?.fresh_url();
    let location = StoreLocation::from_url(Some(&url), &PathBuf::new()).expect("location");
    Some((location, url))
}

/// A `jobs:write` token of tenant `t1`: an API token, or with a `parent`
/// an access token exchanged for it.
fn token(id: &str, parent: Option<&str>) -> TokenRecord {
    let kind = if parent.is_some() {
        TokenKind::Access
    } else {
        TokenKind::Api
    };
    TokenRecord {
        name: id.into(),
        scopes: vec!["jobs:write".into()],
        parent_id: parent.map(str::to_owned),
        ..common::token(id, kind, "t1", 1)
    }
}

/// A job by token `token_id` with a webhook.
fn job(token_id: &str, key: Option<&str>) -> NewJob {
    NewJob {
        token_id: Some(token_id.into()),
        callback_url: Some("https://example.test/hook".into()),
        ..common::new_job(key)
    }
}

/// Four stores on one database insert the first token at once: one wins.
async fn first_token_is_made_once(location: StoreLocation) {
    let mut tasks = Vec::new();
    for i in 0..4 {
        let store = open(&location).await;
        tasks.push(tokio::spawn(async move {
            store
                .insert_first_token(token(&format!("boot{i}"), None))
                .await
                .expect("insert")
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.expect("task"));
    }
    assert_eq!(won, 1);
    let store = open(&location).await;
    assert_eq!(store.list_tokens(None).await.expect("list").len(), 1);
    assert!(
        !store
            .insert_first_token(token("late", None))
            .await
            .expect("insert")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_first_token_is_made_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    first_token_is_made_once(StoreLocation::from_url(None, dir.path()).expect("location")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_first_token_is_made_once() {
    if let Some((location, _)) = postgres() {
        first_token_is_made_once(location).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_job_cap_holds_for_inserts_racing_on_two_stores() {
    let Some((location, _)) = postgres() else {
        return;
    };
    let (one, two) = (open(&location).await, open(&location).await);
    one.insert_token(token("api", None)).await.expect("token");
    one.insert_token(token("acc", Some("api")))
        .await
        .expect("token");
    let cap = || JobCap {
        budget_key: "api".into(),
        limit: 3,
    };
    // Twelve inserts at once through two stores, as the API token and the
    // access token exchanged from it: exactly three go in.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        let by = if i % 3 == 0 { "acc" } else { "api" };
        tasks.push(tokio::spawn(async move {
            store
                .create_capped(job(by, None), cap())
                .await
                .expect("create")
        }));
    }
    let mut inserted = Vec::new();
    for t in tasks {
        if let Some(Created::New(job)) = t.await.expect("task") {
            inserted.push(job);
        }
    }
    assert_eq!(inserted.len(), 3);
    assert!(
        one.create_capped(job("api", None), cap())
            .await
            .expect("create")
            .is_none()
    );
    // A final job frees its place; a replay is answered even at the cap.
    let first = &inserted[0];
    one.start(first.id, 2).await.expect("start");
    one.finish(
        first.id,
        JobStatus::Succeeded,
        Outcome::failed(Verdict::Internal, "x"),
        3,
    )
    .await
    .expect("finish");
    let keyed = two
        .create_capped(job("api", Some("k")), cap())
        .await
        .expect("create");
    let Some(Created::New(keyed)) = keyed else {
        panic!("a place was free: {keyed:?}");
    };
    let replay = one
        .create_capped(job("api", Some("k")), cap())
        .await
        .expect("create");
    assert!(matches!(replay, Some(Created::Existing(j)) if j.id == keyed.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deliveries_are_claimed_by_one_owner_until_the_claim_expires() {
    let Some((location, _)) = postgres() else {
        return;
    };
    let (one, two) = (open(&location).await, open(&location).await);
    let mut ids = Vec::new();
    for _ in 0..6 {
        let Created::New(j) = one.create(job("api", None)).await.expect("create") else {
            panic!("new");
        };
        one.start(j.id, 2).await.expect("start");
        one.finish(
            j.id,
            JobStatus::Succeeded,
            Outcome::failed(Verdict::Internal, "x"),
            3,
        )
        .await
        .expect("finish");
        ids.push(j.id);
    }
    // The finishing node claims the first; the other cannot take it.
    assert!(
        one.claim_callback(ids[0], "a".into(), 60_000)
            .await
            .expect("claim")
    );
    assert!(
        one.claim_callback(ids[0], "a".into(), 60_000)
            .await
            .expect("renew")
    );
    assert!(
        !two.claim_callback(ids[0], "b".into(), 60_000)
            .await
            .expect("claim")
    );
    // Two sweeps at once take the other five (unclaimed for long enough:
    // `finished_at` is 3 ms after the epoch), each exactly once.
    let (x, y) = tokio::join!(
        one.claim_pending_callbacks("a".into(), 60_000, 1_000, 100),
        two.claim_pending_callbacks("b".into(), 60_000, 1_000, 100),
    );
    let (x, y) = (x.expect("sweep"), y.expect("sweep"));
    let mut all: Vec<Uuid> = x.iter().chain(&y).copied().collect();
    all.sort();
    let mut rest = ids[1..].to_vec();
    rest.sort();
    assert_eq!(all, rest, "disjoint and complete: {x:?} {y:?}");
    assert!(
        two.claim_pending_callbacks("b".into(), 60_000, 1_000, 100)
            .await
            .expect("sweep")
            .is_empty()
    );
    // A claim that expired (its owner stopped renewing) is taken over.
    assert!(
        one.claim_callback(ids[0], "a".into(), -1)
            .await
            .expect("renew")
    );
    let taken = two
        .claim_pending_callbacks("b".into(), 60_000, 1_000, 100)
        .await
        .expect("sweep");
    assert_eq!(taken, vec![ids[0]]);
    assert!(
        !one.claim_callback(ids[0], "a".into(), 60_000)
            .await
            .expect("claim")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failures_recorded_by_two_stores_start_one_lockout() {
    let Some((location, _)) = postgres() else {
        return;
    };
    let (one, two) = (open(&location).await, open(&location).await);
    let rule = LockoutRule {
        max_failures: 4,
        window_ms: 60_000,
        duration_ms: 30_000,
    };
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .record_auth_failure("10.0.0.1".into(), 1_000 + i, rule)
                .await
                .expect("record")
        }));
    }
    let mut started = Vec::new();
    for t in tasks {
        started.extend(t.await.expect("task"));
    }
    assert_eq!(
        started.len(),
        1,
        "exactly one failure starts it: {started:?}"
    );
    let until = started[0];
    assert!((31_000..=31_006).contains(&until), "{until}");
    assert_eq!(
        one.locked_until("10.0.0.1".into(), 2_000)
            .await
            .expect("read"),
        Some(until)
    );
    assert_eq!(
        two.locked_until("10.0.0.1".into(), until)
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        two.locked_until("10.0.0.2".into(), 2_000)
            .await
            .expect("read"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_purge_is_skipped_while_another_node_purges() {
    let Some((location, url)) = postgres() else {
        return;
    };
    let store = open(&location).await;
    let Created::New(old) = store.create(job("api", None)).await.expect("create") else {
        panic!("new");
    };
    store.start(old.id, 2).await.expect("start");
    store
        .finish(
            old.id,
            JobStatus::Succeeded,
            Outcome::failed(Verdict::Internal, "x"),
            3,
        )
        .await
        .expect("finish");
    // Another node inside its purge: it holds the retention lock.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("raw connection");
    tokio::spawn(conn);
    let held: bool = client
        .query_one("SELECT pg_try_advisory_lock(1936719876, 0)", &[])
        .await
        .expect("lock")
        .get(0);
    assert!(held);
    let skipped = store.purge(100, 100, 100).await.expect("purge");
    assert_eq!(skipped.jobs, 0, "skipped while the lock is held");
    assert!(store.get(old.id).await.expect("get").is_some());
    client
        .execute("SELECT pg_advisory_unlock(1936719876, 0)", &[])
        .await
        .expect("unlock");
    let purged = store.purge(100, 100, 100).await.expect("purge");
    assert_eq!(purged.jobs, 1);
}

/// A waiting job a node's idle worker is promised goes in already claimed
/// by that node (its lease, not another node's, finishes it, and no claim
/// finds it), under the token's cap like any insert, unless a job is queued
/// in the cluster: then it is queued behind that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_job_inserted_claimed_is_leased_to_its_node_unless_one_is_queued() {
    let Some((location, _)) = postgres() else {
        return;
    };
    let store = open(&location).await;
    let pg = store.postgres().expect("a postgres store");
    store.insert_token(token("api", None)).await.expect("token");
    let cap = |limit| JobCap {
        budget_key: "api".into(),
        limit,
    };
    let claim = |node| strictpy_store::Claim {
        node,
        lease_ms: 60_000,
        started_at: 5,
    };
    let done = Outcome::failed(Verdict::Internal, "x");

    // Nothing queued: running, started, and the node's own.
    let Some(Created::New(first)) = pg
        .create_claimed(job("api", None), cap(3), claim("n1"))
        .await
        .expect("insert")
    else {
        panic!("inserted");
    };
    assert_eq!(first.status, JobStatus::Running);
    assert_eq!(first.started_at, Some(5));
    let stored = store.get(first.id).await.expect("get").expect("stored");
    assert_eq!(
        (stored.status, stored.started_at),
        (JobStatus::Running, Some(5))
    );
    assert!(pg.claim("n2", 60_000, 6).await.expect("claim").is_none());
    assert!(
        !pg.finish_owned(first.id, "n2", JobStatus::Succeeded, &done, 7)
            .await
            .expect("finish"),
        "another node's lease does not finish it"
    );

    // The cap counts it: one place left of two.
    assert!(
        pg.create_claimed(job("api", None), cap(1), claim("n1"))
            .await
            .expect("insert")
            .is_none(),
        "at the cap"
    );

    // A job queued first is not passed: the next one queues behind it.
    let Some(Created::New(queued)) = store
        .create_capped(job("api", None), cap(3))
        .await
        .expect("create")
    else {
        panic!("queued");
    };
    let Some(Created::New(behind)) = pg
        .create_claimed(job("api", None), cap(3), claim("n1"))
        .await
        .expect("insert")
    else {
        panic!("inserted");
    };
    assert_eq!(
        (behind.status, behind.started_at),
        (JobStatus::Queued, None)
    );
    let order: Vec<Uuid> = [
        pg.claim("n2", 60_000, 8).await.expect("claim"),
        pg.claim("n2", 60_000, 9).await.expect("claim"),
    ]
    .into_iter()
    .map(|j| j.expect("claimed").id)
    .collect();
    assert_eq!(order, vec![queued.id, behind.id]);

    // The node that holds the lease finishes it, once.
    assert!(
        pg.finish_owned(first.id, "n1", JobStatus::Succeeded, &done, 10)
            .await
            .expect("finish")
    );
    let finished = store.get(first.id).await.expect("get").expect("stored");
    assert_eq!(finished.status, JobStatus::Succeeded);

    // A replay under the same key finds the first job, inserted or not.
    let Some(Created::New(keyed)) = pg
        .create_claimed(job("api", Some("k")), cap(10), claim("n1"))
        .await
        .expect("insert")
    else {
        panic!("inserted");
    };
    let replay = pg
        .create_claimed(job("api", Some("k")), cap(10), claim("n2"))
        .await
        .expect("insert");
    assert!(matches!(replay, Some(Created::Existing(j)) if j.id == keyed.id));
}
