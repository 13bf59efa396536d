//! The multi-node harness: one private PostgreSQL database (`strictpy-testpg`)
//! and N real `strictpy serve` processes (the release binary) on free
//! loopback ports, each with its own data dir and the same store URL and
//! encryption keys, with helpers to submit, get and wait for jobs (also
//! through `ClusterClient`, a cloneable handle for spawned tasks), and to
//! SIGKILL and restart a node.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;

use crate::server::process::{serve_command, spawn_listening};

/// The encryption key every node of a test cluster shares (a test key; the
/// databases are thrown away).
pub(crate) const CLUSTER_KEY: &str =
    "cluster:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The webhook secret the nodes sign with.
pub(crate) const WEBHOOK_SECRET: &str = "cluster-webhook-secret";

/// How a cluster is started.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// How many nodes.
    pub(crate) nodes: usize,
    /// Workers per node.
    pub(crate) workers: usize,
    /// Extra environment for every node (`STRICTPY_*` config variables).
    pub(crate) env: Vec<(String, String)>,
}

impl Spec {
    /// `nodes` nodes of one worker each, quick webhook retries, loopback
    /// callbacks allowed, request buckets large enough for polling.
    pub(crate) fn new(nodes: usize) -> Self {
        Self {
            nodes,
            workers: 1,
            env: [
                ("STRICTPY_WEBHOOK__SECRET", WEBHOOK_SECRET),
                ("STRICTPY_WEBHOOK__ALLOW_LOOPBACK", "true"),
                ("STRICTPY_WEBHOOK__BACKOFF_BASE_MS", "20"),
                ("STRICTPY_WEBHOOK__BACKOFF_MAX_MS", "200"),
                ("STRICTPY_SHUTDOWN_GRACE_MS", "5000"),
                // Tests poll every 20 ms with the admin token; the default
                // bucket (600 a minute) would refuse them.
                ("STRICTPY_RATE_LIMIT__REQUESTS_PER_MINUTE", "60000"),
                ("STRICTPY_RATE_LIMIT__BURST", "1000"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec(),
        }
    }

    /// Sets (or replaces) one environment variable of every node.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets the workers per node.
    pub(crate) fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }
}

/// One `strictpy serve` of a cluster.
pub(crate) struct Node {
    /// The node's own temporary directory: `data/` and `log`.
    dir: tempfile::TempDir,
    /// The process; `None` while killed.
    child: Option<Child>,
    /// `http://127.0.0.1:<port>` of the current process.
    pub(crate) base: String,
}

impl Node {
    /// The node's data dir.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the node wrote to stderr (all its runs).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The process id of the running process.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A response from a node.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The status.
    pub(crate) status: StatusCode,
    /// The headers.
    pub(crate) headers: HeaderMap,
    /// The body as JSON, or `Null`.
    pub(crate) json: Value,
    /// The body as text.
    pub(crate) text: String,
}

/// N nodes on one database.
pub(crate) struct Cluster {
    /// The nodes, in start order.
    pub(crate) nodes: Vec<Node>,
    /// The store URL every node uses (with the test password in it).
    pub(crate) store_url: String,
    /// How the nodes were started (for restarts).
    spec: Spec,
    /// The first-start admin token.
    pub(crate) token: String,
    /// A plain HTTP client.
    pub(crate) client: reqwest::Client,
    /// The requests to the nodes, on their current addresses.
    handle: ClusterClient,
}

/// The requests of a cluster ([`ClusterClient::submit`], `get`, `until`, ...)
/// are its handle's.
impl std::ops::Deref for Cluster {
    type Target = ClusterClient;

    fn deref(&self) -> &ClusterClient {
        &self.handle
    }
}

/// Starts `strictpy serve` on `dir/data` against `store_url`, its stderr
/// appended to `dir/log`; returns the child and its base URL, or what it
/// said before it exited.
pub(crate) fn spawn_node(
    dir: &Path,
    store_url: &str,
    spec: &Spec,
) -> Result<(Child, String), String> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))
        .map_err(|e| e.to_string())?;
    let mut command = serve_command(&data, spec.workers);
    command
        .arg("--store-url")
        .arg(store_url)
        .env("STRICTPY_ENCRYPTION_KEY", CLUSTER_KEY)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stderr(log);
    spawn_listening(&mut command).map_err(|why| {
        format!(
            "{why}: {}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        )
    })
}

/// Whether a job's status is final.
pub(crate) fn is_final(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// A job's id.
pub(crate) fn id_of(job: &Value) -> String {
    job["id"].as_str().expect("a job has an id").to_owned()
}

impl Cluster {
    /// Starts a cluster of `spec.nodes` nodes at once on a fresh database of
    /// the test binary's PostgreSQL; `None` when PostgreSQL is not installed
    /// (and `CI` is not set), so the test is skipped, saying so.
    pub(crate) fn start(spec: Spec) -> Option<Self> {
        let pg = strictpy_testpg::server()?;
        let store_url = pg.fresh_url();
        Some(Self::start_on(&store_url, spec).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Starts the nodes on `store_url`, all at once (each on its own thread,
    /// so they really race on an empty database).
    pub(crate) fn start_on(store_url: &str, spec: Spec) -> Result<Self, String> {
        let dirs: Vec<tempfile::TempDir> = (0..spec.nodes)
            .map(|_| tempfile::tempdir().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        crate::server::warm_guest_cache();
        let started: Vec<Result<(Child, String), String>> = std::thread::scope(|s| {
            let handles: Vec<_> = dirs
                .iter()
                .map(|dir| s.spawn(|| spawn_node(dir.path(), store_url, &spec)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("start panicked".into())))
                .collect()
        });
        let mut nodes = Vec::new();
        let mut failures = Vec::new();
        for (dir, started) in dirs.into_iter().zip(started) {
            match started {
                Ok((child, base)) => nodes.push(Node {
                    dir,
                    child: Some(child),
                    base,
                }),
                Err(e) => failures.push(e),
            }
        }
        let client = crate::server::http_client();
        let mut cluster = Self {
            nodes,
            store_url: store_url.to_owned(),
            spec,
            token: String::new(),
            handle: ClusterClient {
                bases: Arc::from([]),
                token: Arc::from(""),
                http: client.clone(),
            },
            client,
        };
        if !failures.is_empty() {
            return Err(failures.join("\n"));
        }
        cluster.token = cluster
            .admin_tokens()
            .into_iter()
            .next()
            .ok_or("no node wrote admin-token")?;
        cluster.refresh_handle();
        Ok(cluster)
    }

    /// Every `admin-token` file the nodes wrote (the first start writes
    /// one, in the data dir of the node that made it).
    pub(crate) fn admin_tokens(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| std::fs::read_to_string(n.data_dir().join("admin-token")).ok())
            .map(|t| t.trim().to_owned())
            .collect()
    }

    /// Node `i`'s base URL.
    pub(crate) fn base(&self, i: usize) -> &str {
        &self.nodes[i].base
    }

    /// The node count.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// A cheap, cloneable handle on the nodes as they are now, for tasks a
    /// test spawns (take a new one after a restart: the node has a new
    /// port). The cluster's own requests go through it (`Deref`).
    pub(crate) fn client(&self) -> ClusterClient {
        self.handle.clone()
    }

    /// The handle after a node (re)started: the nodes' addresses now.
    fn refresh_handle(&mut self) {
        self.handle = ClusterClient {
            bases: (0..self.len()).map(|i| self.base(i).to_owned()).collect(),
            token: self.token.as_str().into(),
            http: self.client.clone(),
        };
    }

    /// Node `i`'s id, which it writes on its job leases and delivery claims
    /// (`<data_dir>/node-id`).
    pub(crate) fn node_id(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].data_dir().join("node-id"))
            .unwrap_or_else(|e| panic!("node {i} wrote no node-id: {e}"))
            .trim()
            .to_owned()
    }

    /// SIGKILLs node `i` (no chance to clean anything up) and reaps it.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    /// Stops node `i` with SIGTERM (a graceful drain) and waits for it.
    pub(crate) fn terminate(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its data dir (after [`Cluster::kill`]);
    /// it gets a new port.
    pub(crate) fn restart(&mut self, i: usize) {
        self.try_restart(i).unwrap_or_else(|e| panic!("{e}"));
    }

    /// [`Cluster::restart`], returning why the node did not come up.
    pub(crate) fn try_restart(&mut self, i: usize) -> Result<(), String> {
        self.kill(i);
        let (child, base) = spawn_node(self.nodes[i].dir.path(), &self.store_url, &self.spec)?;
        self.nodes[i].child = Some(child);
        self.nodes[i].base = base;
        self.refresh_handle();
        Ok(())
    }

    /// Starts one more node on the same database with `spec` (for nodes
    /// that differ from the others, such as a mis-keyed one).
    pub(crate) fn spawn_extra(
        &self,
        spec: &Spec,
    ) -> Result<(tempfile::TempDir, Child, String), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (child, base) = spawn_node(dir.path(), &self.store_url, spec)?;
        Ok((dir, child, base))
    }

    /// The spec the nodes run with.
    pub(crate) fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Runs `sql` on the cluster's database with `psql` and returns its
    /// unaligned, tuples-only output (for counting rows in tests).
    pub(crate) fn sql(&self, sql: &str) -> String {
        strictpy_testpg::server()
            .expect("a cluster has a server")
            .query(strictpy_testpg::PgServer::database_of(&self.store_url), sql)
    }
}

/// A handle on a cluster's nodes that tasks can own: their addresses when
/// it was taken ([`Cluster::client`]), the admin token and the HTTP client.
#[derive(Clone)]
pub(crate) struct ClusterClient {
    /// Each node's base URL, in start order.
    bases: Arc<[String]>,
    /// The first-start admin token.
    token: Arc<str>,
    /// The HTTP client (itself a shared handle).
    http: reqwest::Client,
}

impl ClusterClient {
    /// One request to node `i` with `token` (`None`: no credentials).
    pub(crate) async fn request_as(
        &self,
        i: usize,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.bases[i]))
            .timeout(Duration::from_secs(60));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("node {i}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Reply {
            status,
            headers,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    /// One request to node `i` with the admin token.
    pub(crate) async fn request(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Reply {
        self.request_as(i, Some(&self.token), method, path, body)
            .await
    }

    /// `POST /v1/jobs` to node `i` with `token`.
    pub(crate) async fn submit_as(&self, i: usize, token: &str, job: &Value) -> Reply {
        self.request_as(i, Some(token), Method::POST, "/v1/jobs", Some(job))
            .await
    }

    /// `POST /v1/jobs` to node `i` with the admin token; panics unless it is
    /// accepted (202, or 200 for `wait: true`), and returns the job.
    pub(crate) async fn submit(&self, i: usize, job: &Value) -> Value {
        let reply = self.submit_as(i, &self.token, job).await;
        assert!(
            matches!(reply.status, StatusCode::ACCEPTED | StatusCode::OK),
            "node {i} refused the job: {} {}",
            reply.status,
            reply.text
        );
        reply.json
    }

    /// `GET /v1/jobs/{id}` on node `i` (admin token); panics unless 200.
    pub(crate) async fn get(&self, i: usize, id: &str) -> Value {
        let reply = self
            .request(i, Method::GET, &format!("/v1/jobs/{id}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "node {i}: {}", reply.text);
        reply.json
    }

    /// Polls node `i` until `done` holds for job `id` (60 s at most, so a
    /// broken cluster fails the test instead of hanging it).
    pub(crate) async fn until(&self, i: usize, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job = self.get(i, id).await;
            if done(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never reached the expected state on node {i}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls node `i` until job `id` is final.
    pub(crate) async fn wait_final(&self, i: usize, id: &str) -> Value {
        self.until(i, id, is_final).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Runs `strictpy token ARGS --json` against the cluster's store (through
/// `--store-url`, with the cluster's keys), as an operator would while the
/// nodes run; returns its parsed JSON output, or panics with its stderr.
pub(crate) fn token_cli(store_url: &str, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_strictpy"))
        .env_remove("STRICTPY_STORE_URL")
        .arg("token")
        .args(args)
        .args(["--json", "--store-url", store_url, "--data-dir"])
        .arg(dir.path())
        .env("STRICTPY_ENCRYPTION_KEY", CLUSTER_KEY)
        .stdin(Stdio::null())
        .output()
        .expect("run strictpy token");
    assert!(
        out.status.success(),
        "strictpy token {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "strictpy token {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
