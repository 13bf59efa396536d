//! What several nodes on one store need from it, with several stores on one
//! database standing for the nodes: the first-start token made once (both
//! backends), and on PostgreSQL the concurrent-job cap under concurrency,
//! delivery claims, the failed-authentication lockout and the retention
//! purge that one node runs at a time.

use std::{path::PathBuf, sync::Arc};

use strictpy_store::{
    Created, JobCap, JobSpec, JobStore, Keyring, LockoutRule, NewJob, StoreLocation, TokenKind,
    TokenLimits, TokenRecord,
};
use strictpy_types::{JobStatus, Limits, Outcome, Verdict};
use uuid::Uuid;

const KEY: &str = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

async fn open(location: &StoreLocation) -> Arc<dyn JobStore> {
    location
        .open(Arc::new(Keyring::parse(KEY).expect("keys")))
        .await
        .expect("open")
}

/// A fresh Postgres database's location and URL; `None` when skipped.
fn postgres() -> Option<(StoreLocation, String)> {
    let url = strictpy_testpg::server()?.fresh_url();
    let location = StoreLocation::from_url(Some(&url), &PathBuf::new()).expect("location");
    Some((location, url))
}

fn token(id: &str, parent: Option<&str>) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        kind: if parent.is_some() {
            TokenKind::Access
        } else {
            TokenKind::Api
        },
        tenant: "t1".into(),
        name: id.into(),
        hash: format!("{id:0>64}"),
        scopes: vec!["jobs:write".into()],
        created_at: 1,
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
        parent_id: parent.map(str::to_owned),
        family_id: None,
        used_at: None,
        limits: TokenLimits::default(),
    }
}

fn job(token_id: &str, key: Option<&str>) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        tenant: "t1".into(),
        token_id: Some(token_id.into()),
        idempotency_key: key.map(str::to_owned),
        request_hash: "h".into(),
        created_at: 1,
        spec: JobSpec {
            code: "print(1)".into(),
            stdin: String::new(),
            context: None,
            allow: Vec::new(),
            allowlist: Default::default(),
            limits: Limits::default(),
            seed: None,
            function: None,
        },
        callback_url: Some("https://example.test/hook".into()),
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
