//! Faults the service must survive, each made real: a data dir on a tmpfs
//! that fills up, a database that turns read-only (an ext4 image whose
//! files become immutable; PostgreSQL's `default_transaction_read_only`),
//! PostgreSQL stopped and restarted under a running server, clients that
//! go away during `wait: true`, and clients that send their head or body a
//! byte at a time. New work gets `503 storage_unavailable` (with
//! `Retry-After`) or `408`, never a `500`, a hang or a panic; nothing
//! accepted is lost; the service recovers by itself.
//!
//! The filesystem tests mount (they run as root, as `make test` does); where
//! mounting is not permitted they say so and skip.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use axum::{Router, http::StatusCode};
use serde_json::{Value, json};
use strictpy_server::{Server, config::Config};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::{Reply, admin_token, call, error_code, shared_sandbox, test_config};

/// A filesystem mounted for one test; unmounted (and its loop device
/// detached) when dropped, even when the test fails.
struct Mount {
    /// Where it is mounted.
    point: PathBuf,
    /// The loop device behind an image, if any.
    loop_dev: Option<String>,
}

impl Mount {
    /// A tmpfs of `size` (such as `"8m"`) on `point`; `None`, saying why,
    /// when mounting is not permitted here.
    fn tmpfs(point: &Path, size: &str) -> Option<Self> {
        let ok = run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            point,
        );
        match ok {
            Ok(()) => Some(Self {
                point: point.to_owned(),
                loop_dev: None,
            }),
            Err(why) => {
                eprintln!("SKIPPING: cannot mount a tmpfs (needs root): {why}");
                None
            }
        }
    }

    /// A fresh ext4 image of `mb` MiB, loop-mounted on `point`.
    fn ext4(image: &Path, mb: u64, point: &Path) -> Option<Self> {
        let made = std::fs::File::create(image)
            .and_then(|f| f.set_len(mb * 1024 * 1024))
            .map_err(|e| e.to_string())
            .and_then(|()| run("mkfs.ext4", &["-q", "-F"], image));
        if let Err(why) = made {
            eprintln!("SKIPPING: cannot make an ext4 image: {why}");
            return None;
        }
        let dev = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(image)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let Some(dev) = dev else {
            eprintln!("SKIPPING: cannot attach a loop device (needs root)");
            return None;
        };
        match run("mount", &[&dev], point) {
            Ok(()) => Some(Self {
                point: point.to_owned(),
                loop_dev: Some(dev),
            }),
            Err(why) => {
                let _ = Command::new("losetup").args(["-d", &dev]).status();
                eprintln!("SKIPPING: cannot mount an ext4 image (needs root): {why}");
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy: the server's last file handles may close a moment later.
        let _ = Command::new("umount").arg("-l").arg(&self.point).status();
        if let Some(dev) = &self.loop_dev {
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
    }
}

/// Runs `program args... last`, failing with its stderr.
fn run(program: &str, args: &[&str], last: &Path) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .arg(last)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Fills the filesystem under `dir` with a ballast file until a write
/// fails for want of space; returns the file, to be removed to free it.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).expect("ballast");
    let chunk = vec![0xA5u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Small writes too, so not even a partial chunk of space is left.
    while file.write(&[0xA5]).is_ok_and(|n| n == 1) {}
    path
}

/// A server on `config` driven through its router, with its admin token.
struct Node {
    /// The server; `None` once shut down.
    server: Option<Server>,
    /// Its router.
    app: Router,
    /// The first-start admin token.
    token: String,
}

impl Node {
    async fn start(config: Config) -> Self {
        let data_dir = config.data_dir.clone();
        let server = Server::start(config, shared_sandbox())
            .await
            .expect("server starts");
        Self {
            app: server.router(),
            server: Some(server),
            token: admin_token(&data_dir),
        }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        call(
            &self.app,
            Some(&self.token),
            method,
            uri,
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    /// Submits a job; the reply as it came.
    async fn submit(&self, job: Value) -> Reply {
        self.call("POST", "/v1/jobs", Some(job)).await
    }

    /// Polls job `id` until it is final, through whatever outage: a `503`
    /// while the store is down is waited out, anything else but `200` fails.
    async fn until_final(&self, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let reply = self.call("GET", &format!("/v1/jobs/{id}"), None).await;
            match reply.status {
                StatusCode::OK if is_final(&reply.json) => return reply.json,
                StatusCode::OK => {}
                StatusCode::SERVICE_UNAVAILABLE => assert_unavailable(&reply),
                other => panic!("GET job {id}: {other} {}", reply.text),
            }
            assert!(Instant::now() < deadline, "job {id} never became final");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls job `id` until a worker started it.
    async fn until_running(&self, id: &str) {
        for _ in 0..400 {
            let reply = self.call("GET", &format!("/v1/jobs/{id}"), None).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            if reply.json["status"] != "queued" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("job {id} never started");
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

fn is_final(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

fn id_of(reply: &Reply) -> String {
    reply.json["id"].as_str().expect("a job id").to_owned()
}

/// Asserts a `503 storage_unavailable` with a `Retry-After`.
fn assert_unavailable(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text
    );
    assert_eq!(error_code(reply), "storage_unavailable", "{}", reply.text);
    let retry: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!(retry >= 1);
}

/// A job that is still running when the fault begins and ends during it.
fn slow_job() -> Value {
    json!({"code": "import time\ntime.sleep(1.5)\nprint('outlived the outage')"})
}

/// Submits until the store refuses (at most `tries`): every answer is `202`
/// or `503 storage_unavailable`, never anything else. Returns the accepted
/// ids and how many were refused.
async fn submit_until_refused(
    node: &Node,
    tries: usize,
    stdin: &str,
) -> (Vec<(String, usize)>, usize) {
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..tries {
        let reply = node
            .submit(json!({"code": format!("print({i})"), "stdin": stdin}))
            .await;
        match reply.status {
            StatusCode::ACCEPTED => accepted.push((id_of(&reply), i)),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_unavailable(&reply);
                refused += 1;
                if refused >= 3 {
                    break;
                }
            }
            other => panic!("submission {i} during the outage: {other} {}", reply.text),
        }
    }
    (accepted, refused)
}

/// Every accepted job ends `succeeded` with its own output.
async fn assert_all_ran(node: &Node, accepted: &[(String, usize)]) {
    for (id, i) in accepted {
        let job = node.until_final(id, Duration::from_secs(60)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["stdout"], format!("{i}\n"), "{job}");
    }
}

/// After an outage, the job that was running through it ended as it should.
async fn assert_outlived(node: &Node, slow: &str) {
    let job = node.until_final(slow, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["stdout"], "outlived the outage\n", "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_503_and_the_service_recovers_when_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(_mount) = Mount::tmpfs(dir.path(), "8m") else {
        return;
    };
    let mut config = test_config(&dir.path().join("data"));
    config.queue_size = 400;
    let node = Node::start(config).await;
    let slow = node.submit(slow_job()).await;
    assert_eq!(slow.status, StatusCode::ACCEPTED, "{}", slow.text);
    let slow = id_of(&slow);
    node.until_running(&slow).await;

    let ballast = fill(dir.path());
    // Writes go on while SQLite's WAL still has room it allocated before;
    // then every submission is refused, cleanly.
    let stdin = "s".repeat(16 * 1024);
    let (accepted, refused) = submit_until_refused(&node, 400, &stdin).await;
    assert!(refused > 0, "a full disk must refuse submissions");
    // Reads still answer while the disk is full.
    let health = node.call("GET", "/v1/jobs?limit=1", None).await;
    assert!(
        matches!(
            health.status,
            StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE
        ),
        "{}",
        health.text
    );

    std::fs::remove_file(&ballast).expect("free the space");
    // Without a restart: the job that ran through it is recorded, every
    // accepted job runs, and new jobs are accepted again.
    assert_outlived(&node, &slow).await;
    assert_all_ran(&node, &accepted).await;
    let after = node
        .submit(json!({"code": "print('space is back')", "wait": true}))
        .await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text);
    assert_eq!(after.json["stdout"], "space is back\n");
    node.stop().await;
}

/// Sets or clears the immutable flag of the SQLite database and its WAL
/// (not `-shm`, which SQLite maps into memory: a write there would fault).
fn set_immutable(data_dir: &Path, on: bool) {
    let flag = if on { "+i" } else { "-i" };
    for name in ["strictpy.db", "strictpy.db-wal"] {
        let path = data_dir.join(name);
        if path.exists() {
            run("chattr", &[flag], &path).expect("chattr");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_database_is_503_and_recovers() {
    // `mount -o remount,ro` is refused (EBUSY) while SQLite holds the file
    // open for writing, and `blockdev --setro` under a mounted ext4 only
    // warns; making the files immutable fails every write at once with
    // EPERM (SQLITE_IOERR_WRITE) and is undone just as cleanly.
    let dir = tempfile::tempdir().expect("tempdir");
    let point = dir.path().join("mnt");
    std::fs::create_dir(&point).expect("mount point");
    let Some(_mount) = Mount::ext4(&dir.path().join("image"), 32, &point) else {
        return;
    };
    let data = point.join("data");
    // A short wait, so that a waiting job can outlast it (below).
    let mut config = test_config(&data);
    config.max_wait_ms = 300;
    let node = Node::start(config).await;
    let slow = node.submit(slow_job()).await;
    assert_eq!(slow.status, StatusCode::ACCEPTED, "{}", slow.text);
    let slow = id_of(&slow);
    node.until_running(&slow).await;

    set_immutable(&data, true);
    let (accepted, refused) = submit_until_refused(&node, 20, "").await;
    assert!(refused > 0, "a read-only database must refuse submissions");
    assert!(accepted.is_empty(), "nothing can be stored: {accepted:?}");
    // A waiting job goes to the idle worker before anything of it is
    // stored: its one write, at its end, fails, so it is refused the same
    // way, and nothing of it is stored; the worker stays up.
    let handed_off = || async {
        let metrics = node.call("GET", "/metrics", None).await;
        metrics
            .text
            .lines()
            .find_map(|l| l.strip_prefix("strictpy_jobs_handed_off_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("the hand-off counter")
    };
    let before = handed_off().await;
    let waiting = node
        .submit(json!({"code": "print('never stored')", "wait": true}))
        .await;
    assert_unavailable(&waiting);
    assert_eq!(
        handed_off().await,
        before + 1.0,
        "it went to the idle worker"
    );
    // One that outlasts its wait is written by its request, `running`,
    // before a `202`: that write fails too, so it is refused, and the run
    // nobody will hear of is stopped (else the worker would still spin
    // when the store is back, below).
    let spinning = node
        .submit(
            json!({"code": "while True:\n    pass", "limits": {"timeout_ms": 20000}, "wait": true}),
        )
        .await;
    assert_unavailable(&spinning);
    assert_eq!(handed_off().await, before + 2.0, "{}", spinning.text);
    // The running job ends meanwhile but cannot be recorded; it is not
    // dropped: the worker retries until the store takes it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = node.call("GET", &format!("/v1/jobs/{slow}"), None).await;
    assert_eq!(during.status, StatusCode::OK, "{}", during.text);
    assert_eq!(during.json["status"], "running", "{}", during.text);

    set_immutable(&data, false);
    assert_outlived(&node, &slow).await;
    // Nothing runs any more: the spinner was stopped, not left to its
    // 20 s limit.
    let mut running = f64::NAN;
    for _ in 0..100 {
        let metrics = node.call("GET", "/metrics", None).await;
        running = metrics
            .text
            .lines()
            .find_map(|l| l.strip_prefix("strictpy_jobs_running "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("the running gauge");
        if running == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(running, 0.0, "a job still runs");
    let after = node
        .submit(json!({"code": "print('writable again')", "wait": true}))
        .await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text);
    assert_eq!(after.json["stdout"], "writable again\n");
    // Only the two jobs that were accepted exist.
    let listed = node.call("GET", "/v1/jobs?limit=50", None).await;
    let ids: Vec<&str> = listed.json["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{}", listed.text);
    assert!(ids.contains(&slow.as_str()), "{}", listed.text);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_only_then_stopped_is_503_and_recovers() {
    if strictpy_testpg::server().is_none() {
        return;
    }
    // A server of its own: this test makes the whole cluster read-only and
    // stops it, which must not touch the other tests' databases.
    let pg = strictpy_testpg::PgServer::start_private().expect("a private PostgreSQL");
    let url = pg.fresh_url();
    let db = strictpy_testpg::PgServer::database_of(&url).to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.store.url = Some(url);
    config.store.timeout_ms = 1_000;
    let node = Node::start(config).await;

    // Read-only, the way an operator (or a failover to a standby) does it.
    let slow = id_of(&node.submit(slow_job()).await);
    node.until_running(&slow).await;
    pg.psql(
        &db,
        &[
            "ALTER SYSTEM SET default_transaction_read_only = on",
            "SELECT pg_reload_conf()",
        ],
    )
    .expect("read-only");
    // The reload reaches every session at its next statement; give the
    // backends a moment to take the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (accepted, refused) = submit_until_refused(&node, 20, "").await;
    assert!(refused > 0, "a read-only database must refuse submissions");
    assert!(accepted.is_empty(), "nothing can be stored: {accepted:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.psql(
        &db,
        &[
            "ALTER SYSTEM RESET default_transaction_read_only",
            "SELECT pg_reload_conf()",
        ],
    )
    .expect("writable");
    assert_outlived(&node, &slow).await;

    // Stopped under the running server, then started again.
    let slow = id_of(&node.submit(slow_job()).await);
    node.until_running(&slow).await;
    pg.stop().expect("pg_ctl stop");
    let refused = node.submit(json!({"code": "print(1)"})).await;
    assert_unavailable(&refused);
    let ready = node.call("GET", "/readyz", None).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text
    );
    assert_eq!(ready.json["status"], "not_ready");
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.restart().expect("pg_ctl start");
    assert_outlived(&node, &slow).await;
    let ready = node.call("GET", "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    let after = node
        .submit(json!({"code": "print('back')", "wait": true}))
        .await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text);
    assert_eq!(after.json["stdout"], "back\n");
    node.stop().await;
    let _ = pg.stop();
}

/// A server on a real listener of 127.0.0.1, stopped when dropped.
struct Listening {
    /// Its address.
    addr: SocketAddr,
    /// The admin token.
    token: String,
    /// Ends `serve`.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The serving task.
    serving: Option<tokio::task::JoinHandle<Result<(), strictpy_server::ServerError>>>,
    /// The data dir.
    _dir: tempfile::TempDir,
}

impl Listening {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let server = Server::start(config, shared_sandbox())
            .await
            .expect("server starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(strictpy_server::serve(server, listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            token: admin_token(dir.path()),
            stop: Some(stop),
            serving: Some(serving),
            _dir: dir,
        }
    }

    /// A fresh connection on which a request head with the admin token was
    /// sent, for a JSON body of `len` bytes (the caller sends it, or not);
    /// `extra` header lines end it.
    async fn send_head(&self, method: &str, path: &str, len: usize, extra: &str) -> TcpStream {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: {len}\r\n{extra}\r\n",
            self.token,
        );
        let mut stream = TcpStream::connect(self.addr).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("head");
        stream
    }

    /// One request on a fresh connection with `Connection: close`, read to
    /// its end: the status and the body. No connection stays behind.
    async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = self
            .send_head(method, path, body.len(), "connection: close\r\n")
            .await;
        stream.write_all(body.as_bytes()).await.expect("body");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
            .await
            .expect("an answer in time")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// The value of the gauge `name` in `/metrics`.
    async fn gauge(&self, name: &str) -> i64 {
        let (status, text) = self.request("GET", "/metrics", None).await;
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no gauge {name} in {text}"))
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving
                .await
                .expect("serve task")
                .expect("serve ends cleanly");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_leave_during_wait_leave_no_waiter_or_task_behind() {
    let live = Listening::start(|c| c.queue_size = 100).await;
    // Warm up (the first request starts what a server starts once), then
    // the baseline.
    let _ = live.gauge("strictpy_runtime_alive_tasks").await;
    let baseline = live.gauge("strictpy_runtime_alive_tasks").await;
    assert_eq!(live.gauge("strictpy_http_waiters").await, 0);

    // Clients that send `wait: true` and hang up before the answer.
    const LEAVERS: usize = 20;
    for i in 0..LEAVERS {
        let body = json!({
            "code": format!("import time\ntime.sleep(0.2)\nprint({i})"),
            "wait": true,
            "idempotency_key": format!("leaver-{i}"),
        })
        .to_string();
        let mut stream = live.send_head("POST", "/v1/jobs", body.len(), "").await;
        stream.write_all(body.as_bytes()).await.expect("body");
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(stream);
    }
    // Cancelling queued jobs: each cancel finds its job already final when
    // it starts waiting (the case that used to leave an entry behind).
    let busy: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..4 {
            let (status, body) = live
                .request(
                    "POST",
                    "/v1/jobs",
                    Some(&json!({"code": "import time\ntime.sleep(1)"})),
                )
                .await;
            assert_eq!(status, 202, "{body}");
            let job: Value = serde_json::from_str(&body).expect("json");
            ids.push(job["id"].as_str().expect("id").to_owned());
        }
        ids
    };
    let mut cancelled = 0;
    for id in &busy {
        let (status, body) = live
            .request("DELETE", &format!("/v1/jobs/{id}"), None)
            .await;
        assert!(matches!(status, 200 | 202 | 409), "{status} {body}");
        cancelled += 1;
    }
    assert_eq!(cancelled, busy.len());

    // Every job that was left behind still ran to its end and is stored.
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..LEAVERS {
        // The idempotency key finds the job again.
        let job = loop {
            let (status, body) = live
                .request(
                    "POST",
                    "/v1/jobs",
                    Some(&json!({
                        "code": format!("import time\ntime.sleep(0.2)\nprint({i})"),
                        "wait": true,
                        "idempotency_key": format!("leaver-{i}"),
                    })),
                )
                .await;
            assert!(matches!(status, 200 | 202), "{status} {body}");
            let job: Value = serde_json::from_str(&body).expect("json");
            if is_final(&job) {
                break job;
            }
            assert!(Instant::now() < deadline, "job {i} never ended");
        };
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["stdout"], format!("{i}\n"), "{job}");
    }
    for id in &busy {
        let (status, body) = live.request("GET", &format!("/v1/jobs/{id}"), None).await;
        assert_eq!(status, 200, "{body}");
        let job: Value = serde_json::from_str(&body).expect("json");
        assert!(is_final(&job) || job["status"] == "running", "{job}");
    }

    // Nothing is left behind: no waiter, and the runtime's tasks are back
    // to what they were (within the few a background batch may hold).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiters = live.gauge("strictpy_http_waiters").await;
        let tasks = live.gauge("strictpy_runtime_alive_tasks").await;
        if waiters == 0 && tasks <= baseline + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {waiters} waiters, {tasks} tasks (baseline {baseline})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    live.stop().await;
}

/// Writes `bytes` to `stream` one at a time, each followed by up to 200 ms
/// of reading what the server answers, until they run out or the server
/// closes; returns what it answered. Panics with `held` past 15 s, so a
/// server that never cuts the client off fails the test.
async fn trickle(
    stream: &mut TcpStream,
    bytes: impl IntoIterator<Item = u8>,
    held: &str,
) -> Vec<u8> {
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    for byte in bytes {
        if stream.write_all(&[byte]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{held}");
    }
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_by_the_read_timeouts() {
    let live = Listening::start(|c| {
        c.header_read_timeout_ms = 1_000;
        c.body_read_timeout_ms = 1_500;
    })
    .await;
    let _ = live.gauge("strictpy_runtime_alive_tasks").await;
    let baseline = live.gauge("strictpy_runtime_alive_tasks").await;

    // A head that never ends: a byte every 200 ms, forever.
    let never_ending_head = async {
        let mut stream = TcpStream::connect(live.addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
            .await
            .expect("head");
        let started = Instant::now();
        let answer = trickle(
            &mut stream,
            std::iter::repeat(b'a'),
            "a head that never ends held its connection",
        )
        .await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(!answer.contains(" 200 "), "{answer}");
        started.elapsed()
    };
    // A body trickled a byte every 200 ms: 408, then the connection closes.
    let trickled_body = async {
        let body = json!({"code": format!("print('{}')", "x".repeat(200))}).to_string();
        let mut stream = live.send_head("POST", "/v1/jobs", body.len(), "").await;
        let started = Instant::now();
        let mut answer = trickle(
            &mut stream,
            body.bytes(),
            "a trickled body held its request",
        )
        .await;
        // Whatever is left of the answer, up to the close.
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        started.elapsed()
    };
    // Meanwhile the service answers everyone else at once.
    let others = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let (status, body) = live.request("GET", "/healthz", None).await;
        assert_eq!(status, 200, "{body}");
        started.elapsed()
    };
    let (head_took, body_took, other_took) = tokio::join!(never_ending_head, trickled_body, others);
    assert!(head_took >= Duration::from_millis(900), "{head_took:?}");
    assert!(body_took >= Duration::from_millis(1_400), "{body_took:?}");
    assert!(other_took < Duration::from_secs(2), "{other_took:?}");
    // Nothing was stored from the cut-off body.
    let (status, body) = live.request("GET", "/v1/jobs", None).await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(0), "{list}");
    // And the cut-off connections left no task behind.
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.gauge("strictpy_runtime_alive_tasks").await > baseline + 2 {
        assert!(Instant::now() < deadline, "slow clients left tasks behind");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    live.stop().await;
}
