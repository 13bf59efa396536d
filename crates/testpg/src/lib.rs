//! A private PostgreSQL server for a test binary: started on first use, one
//! per binary, with a fresh database per test, and stopped when the binary
//! exits.
//!
//! The server is Debian's `postgresql` package (`make test` installs it).
//! PostgreSQL refuses to run as root, so as root `initdb` and `pg_ctl` run
//! as the `postgres` user (through `runuser`), with the data directory and
//! the unix socket in a temporary directory that user owns. It listens on a
//! free port of 127.0.0.1 and asks for a password (SCRAM) over TCP, so the
//! tests go through real password authentication.
//!
//! A test binary's statics are never dropped, so a small watchdog shell
//! (started with the server) polls the test process and, once it is gone,
//! stops the server and removes the directory. That holds even when the
//! test binary is killed.
//!
//! Without PostgreSQL, [`server`] returns `None` and says so on stderr,
//! and the Postgres half of a suite is skipped; when `CI` is set it panics
//! instead, so CI never silently skips it.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

/// The superuser `initdb` creates, which the tests connect as.
pub const USER: &str = "strictpy";

/// Its password (a test server on loopback, gone when the tests end).
pub const PASSWORD: &str = "strictpy-test-password";

/// A running private server.
#[derive(Debug)]
pub struct PgServer {
    /// The directory holding PostgreSQL's programs.
    bindir: PathBuf,
    /// The temporary directory: `data/`, the socket, the log.
    dir: PathBuf,
    /// The TCP port on 127.0.0.1.
    port: u16,
    /// How many databases were made, for unique names.
    made: AtomicUsize,
    /// The prefix that runs a server program as the `postgres` user (empty
    /// when the tests do not run as root).
    run_as: Vec<String>,
}

/// The server of this test binary, started on first call; `None` when
/// PostgreSQL is not installed (and `CI` is not set).
pub fn server() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| match PgServer::start() {
            Ok(server) => Some(server),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("PostgreSQL tests cannot be skipped in CI: {why}")
            }
            Err(why) => {
                eprintln!("SKIPPING the PostgreSQL half of the tests: {why}");
                None
            }
        })
        .as_ref()
}

impl PgServer {
    /// A server of its own, besides the binary's shared [`server`], for a
    /// test that stops and restarts it ([`PgServer::stop`]) without taking
    /// the database away from every other test. It is stopped and removed
    /// when the test binary exits, like the shared one.
    pub fn start_private() -> Result<Self, String> {
        Self::start()
    }

    /// initdb, then pg_ctl start, then the watchdog.
    fn start() -> Result<Self, String> {
        let bindir = find_bindir().ok_or(
            "PostgreSQL is not installed (`make test` installs it: apt-get install -y postgresql)",
        )?;
        let root = output("id", &["-u"])?.trim() == "0";
        let run_as: Vec<String> = if root {
            ["runuser", "-u", "postgres", "--"]
                .map(str::to_owned)
                .to_vec()
        } else {
            Vec::new()
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("strictpy-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, PASSWORD).map_err(|e| e.to_string())?;
        if root {
            let uid = output("id", &["-u", "postgres"])?;
            let gid = output("id", &["-g", "postgres"])?;
            let (uid, gid) = (
                uid.trim().parse().map_err(|_| "bad uid of postgres")?,
                gid.trim().parse().map_err(|_| "bad gid of postgres")?,
            );
            for path in [&dir, &pwfile] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
            }
        }
        let mut server = Self {
            bindir,
            dir,
            port: 0,
            made: AtomicUsize::new(0),
            run_as,
        };
        // From here on the directory is removed when the tests end, whatever
        // fails next.
        server.spawn_watchdog()?;
        let data = server.data_dir();
        server.run_server_program(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                USER,
                &format!("--pwfile={}", pwfile.display()),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ],
        )?;
        // A port can be taken between finding it free and the server binding
        // it; then try another.
        for attempt in 1.. {
            server.port = free_port()?;
            match server.pg_ctl_start() {
                Ok(()) => break,
                Err(e) if attempt < 5 && e.contains("already in use") => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(server)
    }

    /// `pg_ctl start` on [`PgServer::port`], waiting until it accepts
    /// connections. Durability settings are off: these databases are
    /// thrown away, and the tests do not pull the power.
    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 \
             -c fsync=off -c full_page_writes=off -c synchronous_commit=off",
            self.port,
            self.dir.display()
        );
        self.run_server_program(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir().to_string_lossy(),
                "-l",
                &self.dir.join("log").to_string_lossy(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
    }

    /// Stops the server (fast shutdown), for tests of a database that goes
    /// away under a running node.
    pub fn stop(&self) -> Result<(), String> {
        self.run_server_program(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir().to_string_lossy(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
    }

    /// Starts the server again after [`PgServer::stop`], on the same port.
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl_start()
    }

    /// Runs `program` from the server's bindir as the `postgres` user.
    fn run_server_program(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let path = self.bindir.join(program);
        let mut cmd = match self.run_as.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(&path);
                cmd
            }
            None => Command::new(&path),
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed ({}): {}{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            ))
        }
    }

    /// Stops the server and removes its directory once this process ends.
    fn spawn_watchdog(&self) -> Result<(), String> {
        let stop = format!(
            "{} {} -D {} -m immediate stop",
            self.run_as.join(" "),
            self.bindir.join("pg_ctl").display(),
            self.data_dir().display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("cannot start the watchdog: {e}"))
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db`, with the password in it.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL of database `db` without a password (for tests of
    /// `PGPASSWORD` and password files).
    pub fn url_without_password(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database and returns its name.
    pub fn fresh_database(&self) -> String {
        let n = self.made.fetch_add(1, Ordering::SeqCst);
        let name = format!("test_{}_{n}", std::process::id());
        let out = Command::new(self.bindir.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .arg(&name)
            .env("PGPASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(out) if out.status.success() => name,
            Ok(out) => panic!(
                "createdb {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("cannot run createdb: {e}"),
        }
    }

    /// A fresh database's URL (see [`PgServer::fresh_database`]).
    pub fn fresh_url(&self) -> String {
        let db = self.fresh_database();
        self.url(&db)
    }
}

impl PgServer {
    /// Every byte PostgreSQL keeps at rest for database `db` after a
    /// checkpoint: the database's own files and the server's WAL (which
    /// every database shares). Tests scan it for plaintext.
    pub fn bytes_at_rest(&self, db: &str) -> Vec<u8> {
        let out = Command::new(self.bindir.join("psql"))
            .arg(self.url(db))
            .args([
                "-Atc",
                "CHECKPOINT",
                "-c",
                "SELECT oid FROM pg_database WHERE datname = current_database()",
            ])
            .stdin(Stdio::null())
            .output();
        let oid = match out {
            Ok(out) if out.status.success() => {
                String::from_utf8_lossy(&out.stdout).trim().to_owned()
            }
            Ok(out) => panic!("psql failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => panic!("cannot run psql: {e}"),
        };
        let data = self.data_dir();
        let mut bytes = Vec::new();
        for dir in [data.join("base").join(oid), data.join("pg_wal")] {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if let Ok(b) = std::fs::read(entry.path()) {
                    bytes.extend_from_slice(&b);
                }
            }
        }
        bytes
    }

    /// Runs each of `statements` (one `-c` each, so none is inside a
    /// transaction block) in database `db` with `psql` as the superuser,
    /// stopping at the first error, and returns what it printed (unaligned,
    /// tuples only, trimmed). The session is never read-only, so a test that
    /// made the server read-only can undo it.
    pub fn psql(&self, db: &str, statements: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(self.bindir.join("psql"));
        cmd.arg(self.url(db))
            .args(["-X", "-Atq", "-v", "ON_ERROR_STOP=1"]);
        for sql in statements {
            cmd.args(["-c", sql]);
        }
        let out = cmd
            .env("PGOPTIONS", "-c default_transaction_read_only=off")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "psql {statements:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Runs one SQL statement with [`PgServer::psql`] on database `db` and
    /// returns its rows, one a line, `|` between columns (tests read what
    /// the store wrote, such as claim counts, straight from the database).
    /// Panics when psql fails: a test helper.
    pub fn query(&self, db: &str, sql: &str) -> String {
        self.psql(db, &[sql]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The database name at the end of a URL made by [`PgServer::url`].
    pub fn database_of(url: &str) -> &str {
        url.rsplit('/').next().unwrap_or_default()
    }
}

/// Where `initdb` is: `$STRICTPY_PG_BINDIR`, Debian's newest
/// `/usr/lib/postgresql/*/bin`, `pg_config --bindir`, or the `PATH`.
fn find_bindir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("STRICTPY_PG_BINDIR").map(PathBuf::from) {
        return has_initdb(&dir).then_some(dir);
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_initdb(dir))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Some(dir);
    }
    if let Ok(dir) = output("pg_config", &["--bindir"]) {
        let dir = PathBuf::from(dir.trim());
        if has_initdb(&dir) {
            return Some(dir);
        }
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| has_initdb(dir)))
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// The stdout of a successful command.
fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
