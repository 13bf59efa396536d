//! The real `strictpy serve` process: `kill -9` while a job runs and jobs
//! wait, then a restart on the same data dir; the same under concurrent
//! submissions; and SIGTERM's graceful drain. Also how every test starts
//! the process (`serve_command` and `spawn_listening`, which the cluster
//! harness uses too).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use serde_json::{Value, json};

use super::Backend;

/// A running `strictpy serve` and its base URL (also used by the
/// `strictpy submit` tests).
pub(crate) struct Process {
    /// The child process.
    pub(crate) child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
}

impl Process {
    /// Starts `strictpy serve` on an ephemeral port with one worker and
    /// waits for its "listening on" line.
    pub(crate) fn start(data_dir: &Path) -> Self {
        Self::start_on(data_dir, None)
    }

    /// [`Process::start`] on the store `store_url` (given as
    /// `STRICTPY_STORE_URL`; `None`: SQLite in the data dir).
    pub(crate) fn start_on(data_dir: &Path, store_url: Option<&str>) -> Self {
        let mut command = serve_command(data_dir, 1);
        if let Some(url) = store_url {
            command.env("STRICTPY_STORE_URL", url);
        }
        let (child, base) = spawn_listening(
            command
                .env("STRICTPY_SHUTDOWN_GRACE_MS", "20000")
                .stderr(Stdio::inherit()),
        )
        .unwrap_or_else(|why| panic!("{why}"));
        Self { child, base }
    }

    async fn post(&self, client: &reqwest::Client, body: Value) -> Value {
        let reply = client
            .post(format!("{}/v1/jobs", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_eq!(reply.status(), reqwest::StatusCode::ACCEPTED);
        reply.json().await.expect("json")
    }

    /// `GET /v1/jobs{rest}`, as JSON.
    async fn get_jobs(&self, client: &reqwest::Client, rest: &str) -> Value {
        client
            .get(format!("{}/v1/jobs{rest}", self.base))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json")
    }

    async fn get(&self, client: &reqwest::Client, id: &str) -> Value {
        self.get_jobs(client, &format!("/{id}")).await
    }

    /// `GET /v1/jobs` with `query`.
    async fn list(&self, client: &reqwest::Client, query: &str) -> Value {
        self.get_jobs(client, query).await
    }

    /// The id of the one running job, once there is one.
    async fn only_running(&self, client: &reqwest::Client) -> String {
        for _ in 0..600 {
            let list = self.list(client, "?status=running").await;
            if let Some(id) = list["jobs"][0]["id"].as_str() {
                return id.to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no job started running");
    }

    /// Polls until `done` holds (bounded, so a broken server fails the test).
    async fn until(
        &self,
        client: &reqwest::Client,
        id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..500 {
            let job = self.get(client, id).await;
            if done(&job) {
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("job {id} never reached the expected state");
    }
}

/// `strictpy serve` on an ephemeral loopback port with `workers` workers
/// on `data_dir` and the test guest, ignoring a `STRICTPY_STORE_URL` the
/// test run may have; the caller adds the rest (the precompiled guest is
/// in the cache first, so the process loads it instead of compiling).
pub(crate) fn serve_command(data_dir: &Path, workers: usize) -> Command {
    super::warm_guest_cache();
    let mut command = Command::new(env!("CARGO_BIN_EXE_strictpy"));
    command
        .env_remove("STRICTPY_STORE_URL")
        .args(["serve", "--listen", "127.0.0.1:0", "--workers"])
        .arg(workers.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .env("STRICTPY_GUEST", crate::guest_path())
        .stdin(Stdio::null());
    command
}

/// Spawns a [`serve_command`] and waits for its "listening on" line;
/// returns the child and its base URL, or, when it exits (or says
/// something else) first, how it ended.
pub(crate) fn spawn_listening(command: &mut Command) -> Result<(Child, String), String> {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn strictpy serve: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    match line.trim().strip_prefix("strictpy: listening on ") {
        Some(base) if read.is_ok() => Ok((child, base.to_owned())),
        _ => {
            // Killed in case it is still up and said something else.
            let _ = child.kill();
            let status = child.wait().map_err(|e| e.to_string())?;
            Err(format!(
                "strictpy serve did not listen ({status}; first line {line:?})"
            ))
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_final(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

fn id(job: &Value) -> String {
    job["id"].as_str().expect("id").to_owned()
}

async fn kill_9_then_restart_brings_every_accepted_job_to_a_final_state(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_url = backend.fresh_url();
    let mut first = Process::start_on(dir.path(), store_url.as_deref());
    let client = super::admin_client(dir.path());
    // A client waiting on a spinning job. On SQLite the idle worker is
    // handed the job before anything of it is stored (it is written once,
    // at its end): the kill leaves no trace of it, and its client no
    // answer, so nothing accepted is lost. On Postgres a worker claims it
    // from the store, and the restart fails it as interrupted.
    let spin =
        json!({"code": "while True:\n    pass", "limits": {"timeout_ms": 30000}, "wait": true});
    let waiting_client = tokio::spawn({
        let sent = client
            .post(format!("{}/v1/jobs", first.base))
            .json(&spin)
            .send();
        async move { sent.await.is_ok() }
    });
    // Listed `running` either way (on SQLite from the server's memory).
    let spinning = first.only_running(&client).await;
    let mut waiting = Vec::new();
    for n in 0..3 {
        let job = first
            .post(&client, json!({"code": format!("print({n})")}))
            .await;
        assert_eq!(job["status"], "queued");
        waiting.push(id(&job));
    }
    // SIGKILL: no chance to clean anything up.
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reap");
    drop(first);
    let answered = waiting_client.await.expect("the waiting client");
    assert!(!answered, "the spinning job's client got an answer");

    let second = Process::start_on(dir.path(), store_url.as_deref());
    if backend == Backend::Sqlite {
        let gone = client
            .get(format!("{}/v1/jobs/{spinning}", second.base))
            .send()
            .await
            .expect("GET");
        assert_eq!(gone.status(), reqwest::StatusCode::NOT_FOUND);
    } else {
        let interrupted = second.get(&client, &spinning).await;
        assert_eq!(interrupted["status"], "failed", "{interrupted}");
        assert_eq!(interrupted["error"]["kind"], "internal");
        assert!(
            interrupted["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("worker stopped")),
            "{interrupted}"
        );
        assert!(interrupted["finished_at"].is_string());
    }
    for (n, job) in waiting.iter().enumerate() {
        let done = second.until(&client, job, is_final).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["stdout"], format!("{n}\n"));
    }
    // The queued jobs, and on Postgres the interrupted one: nothing else.
    let all = second.list(&client, "").await;
    let listed = all["jobs"].as_array().map_or(0, Vec::len);
    let expected = waiting.len() + usize::from(backend == Backend::Postgres);
    assert_eq!(listed, expected, "{all}");
}

/// Submitters running at once in the load test below.
const SUBMITTERS: usize = 4;

/// Answers the load test waits for before it kills the server.
const ANSWERS_BEFORE_KILL: usize = 24;

/// A job answered under load: its id, the status code and what it prints.
struct Answered {
    /// The job id.
    id: String,
    /// `200` (`wait: true`, final) or `202` (accepted).
    code: u16,
    /// The job's expected stdout.
    stdout: String,
}

/// `kill -9` while several clients submit, half of them with `wait: true`:
/// every job answered `202` or `200` is in the store after the restart, and
/// each one answered `200` (whose insert is fsynced only lazily) is there
/// with the very outcome the client was given.
async fn kill_9_under_load_keeps_every_answered_job(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_url = backend.fresh_url();
    let mut first = Process::start_on(dir.path(), store_url.as_deref());
    let client = super::admin_client(dir.path());
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Answered>::new()));
    let enough = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut submitters = tokio::task::JoinSet::new();
    for task in 0..SUBMITTERS {
        let (client, base) = (client.clone(), first.base.clone());
        let (answered, enough) = (answered.clone(), enough.clone());
        submitters.spawn(async move {
            for n in 0..25 {
                let stdout = format!("{task}-{n}\n");
                let body = json!({
                    "code": format!("print('{task}-{n}')"),
                    "wait": n % 2 == 0,
                });
                let sent = client.post(format!("{base}/v1/jobs")).json(&body).send();
                // Once the server is gone every request fails: stop.
                let Ok(reply) = sent.await else { return };
                let code = reply.status().as_u16();
                let Ok(job) = reply.json::<Value>().await else {
                    return;
                };
                if code == 200 || code == 202 {
                    let mut all = answered.lock().expect("lock");
                    if code == 200 {
                        // What the client was told is what must be stored.
                        assert_eq!(job["status"], "succeeded", "{job}");
                        assert_eq!(job["stdout"], stdout.as_str(), "{job}");
                    }
                    all.push(Answered {
                        id: id(&job),
                        code,
                        stdout,
                    });
                    if all.len() >= ANSWERS_BEFORE_KILL {
                        enough.notify_one();
                    }
                }
            }
        });
    }
    // Kill with requests still in flight, or once every submitter is done.
    tokio::select! {
        () = enough.notified() => {}
        () = async { while submitters.join_next().await.is_some() {} } => {}
    }
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reap");
    while let Some(done) = submitters.join_next().await {
        done.expect("a submitter panicked");
    }
    drop(first);

    let answered = std::mem::take(&mut *answered.lock().expect("lock"));
    assert!(answered.len() >= 8, "too few answers: {}", answered.len());
    assert!(
        answered.iter().any(|a| a.code == 200),
        "no wait: true answer"
    );
    let second = Process::start_on(dir.path(), store_url.as_deref());
    for job in &answered {
        let stored = second.until(&client, &job.id, is_final).await;
        if job.code == 200 {
            assert_eq!(stored["status"], "succeeded", "{stored}");
            assert_eq!(stored["stdout"], job.stdout.as_str(), "{stored}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_job_finish_and_keeps_queued_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = Process::start(dir.path());
    let client = super::admin_client(dir.path());
    let sleeper = first
        .post(
            &client,
            json!({"code": "import time\ntime.sleep(2.0)\nprint('finished')"}),
        )
        .await;
    let sleeper = id(&sleeper);
    first
        .until(&client, &sleeper, |j| j["status"] == "running")
        .await;
    let queued = id(&first.post(&client, json!({"code": "print('later')"})).await);
    let status = Command::new("kill")
        .args(["-TERM", &first.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = first.child.wait().expect("wait");
    assert!(exit.success(), "graceful exit: {exit:?}");
    drop(first);

    let second = Process::start(dir.path());
    let done = second.get(&client, &sleeper).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["stdout"], "finished\n");
    let later = second.until(&client, &queued, is_final).await;
    assert_eq!(later["status"], "succeeded", "{later}");
    assert_eq!(later["stdout"], "later\n");
}

/// A function registered while the only worker runs a job is still
/// compiled: the sandbox's pool has one slot beyond the workers' for the
/// compile, which runs beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_registered_while_every_worker_is_busy_is_compiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Process::start(dir.path());
    let client = super::admin_client(dir.path());
    let spin = json!({"code": "while True:\n    pass", "limits": {"timeout_ms": 30000}});
    let spinning = id(&server.post(&client, spin).await);
    server
        .until(&client, &spinning, |j| j["status"] == "running")
        .await;
    let created = client
        .post(format!("{}/v1/functions", server.base))
        .json(&json!({"name": "seven", "code": "result = 7"}))
        .send()
        .await
        .expect("POST /v1/functions");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["compiled"], true, "{created}");
    // The spinner is still the one running job.
    let still = server.get(&client, &spinning).await;
    assert_eq!(still["status"], "running", "{still}");
    let cancelled = client
        .delete(format!("{}/v1/jobs/{spinning}", server.base))
        .send()
        .await
        .expect("DELETE");
    assert!(cancelled.status().is_success(), "{}", cancelled.status());
    let done = server.until(&client, &spinning, is_final).await;
    assert_eq!(done["status"], "cancelled", "{done}");
}

on_both_backends!(
    kill_9_then_restart_brings_every_accepted_job_to_a_final_state,
    kill_9_under_load_keeps_every_answered_job,
);
