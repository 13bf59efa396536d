//! Built-in TLS and the plain-HTTP rule, on the real `strictpy serve`
//! process: a real handshake against a self-signed certificate made here,
//! HSTS on the answer, plain HTTP refused on the TLS port without stopping
//! the server, and no plain HTTP off loopback unless explicitly allowed.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use reqwest::StatusCode;

/// A running `strictpy serve`.
pub struct Serve {
    /// The process.
    pub child: Child,
    /// The address it printed, such as `https://127.0.0.1:4711`.
    pub url: String,
}

impl Serve {
    /// `strictpy serve --workers 1 --data-dir DIR ARGS...` with `env`, its
    /// stderr sent to `stderr` (or inherited); waits for the listening line.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)], stderr: Option<Stdio>) -> Self {
        crate::server::warm_guest_cache();
        let mut command = Command::new(env!("CARGO_BIN_EXE_strictpy"));
        command
            .args(["serve", "--workers", "1", "--data-dir"])
            .arg(dir)
            .args(args)
            .env("STRICTPY_GUEST", crate::guest_path())
            .stdout(Stdio::piped())
            .stderr(stderr.unwrap_or_else(Stdio::inherit));
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn strictpy serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut seen = String::new();
        let url = loop {
            let mut line = String::new();
            let read = stdout.read_line(&mut line).expect("read stdout");
            assert!(read > 0, "exited before listening; stdout: {seen:?}");
            if let Some(url) = line.trim().strip_prefix("strictpy: listening on ") {
                break url.to_owned();
            }
            seen.push_str(&line);
        };
        // Keep reading, so later output never meets a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Self { child, url }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.url))
    }

    /// SIGTERM, then waits: a graceful stop must exit 0.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(exit.success(), "graceful exit: {exit:?}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM
/// files into `dir`: (certificate PEM, certificate path, key path).
fn self_signed(dir: &Path) -> (String, PathBuf, PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate a certificate");
    let cert_pem = certified.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    (cert_pem, cert, key)
}

/// A client that trusts only `cert_pem` and sends `localhost` to `port`.
fn tls_client(cert_pem: &str, port: u16) -> reqwest::Client {
    // reqwest is built without a provider of its own; this is the one the
    // server uses too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("PEM"))
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Runs `strictpy serve ARGS` expecting it to refuse to start.
fn refused(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strictpy"))
        .args(["serve", "--workers", "1", "--data-dir"])
        .arg(dir)
        .args(args)
        .env("STRICTPY_GUEST", crate::guest_path())
        .stdin(Stdio::null())
        .output()
        .expect("run strictpy serve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_hsts_and_survives_plain_http_on_its_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_pem, cert, key) = self_signed(dir.path());
    let cert = cert.to_str().expect("utf-8 path");
    let key = key.to_str().expect("utf-8 path");
    let server = Serve::start(
        &dir.path().join("data"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ],
        &[],
        None,
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let port = server.port();
    let client = tls_client(&cert_pem, port);
    let url = format!("https://localhost:{port}/healthz");

    let reply = client.get(&url).send().await.expect("TLS request");
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(
        reply
            .headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000")
    );
    let body: serde_json::Value = reply.json().await.expect("json");
    assert_eq!(body["status"], "ok");

    // Errors carry HSTS too.
    let reply = client
        .get(format!("https://localhost:{port}/no-such-route"))
        .send()
        .await
        .expect("TLS request");
    assert_eq!(reply.status(), StatusCode::NOT_FOUND);
    assert!(reply.headers().contains_key("strict-transport-security"));

    // Plain HTTP on the TLS port gets no HTTP answer...
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let attempt = plain
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(attempt.is_err(), "plain HTTP answered: {attempt:?}");
    // ...and neither does a client that does not trust the certificate.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    assert!(untrusting.get(&url).send().await.is_err());

    // Failed handshakes did not stop the server.
    let reply = client.get(&url).send().await.expect("TLS request");
    assert_eq!(reply.status(), StatusCode::OK);

    // SIGTERM still shuts down gracefully over TLS.
    drop(client);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_off_loopback_needs_allow_insecure_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");

    let out = refused(&data, &["--listen", "0.0.0.0:0"]);
    assert!(!out.status.success(), "started: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve plain HTTP on 0.0.0.0:0")
            && stderr.contains("--allow-insecure-http")
            && stderr.contains("--tls-cert"),
        "{stderr}"
    );

    // The same refusal from the environment's settings.
    let out = Command::new(env!("CARGO_BIN_EXE_strictpy"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .env("STRICTPY_LISTEN", "[::]:0")
        .output()
        .expect("run strictpy serve");
    assert!(!out.status.success(), "started: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("plain HTTP"));

    let server = Serve::start(
        &data,
        &["--listen", "0.0.0.0:0", "--allow-insecure-http"],
        &[],
        None,
    );
    assert!(server.url.starts_with("http://0.0.0.0:"), "{}", server.url);
    let reply = reqwest::get(format!("http://127.0.0.1:{}/healthz", server.port()))
        .await
        .expect("plain request");
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(!reply.headers().contains_key("strict-transport-security"));
    server.stop();
}

#[test]
fn bad_or_incomplete_tls_settings_refuse_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().expect("utf-8 path");

    let out = refused(&data, &["--tls-cert", missing, "--tls-key", missing]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read certificate"), "{stderr}");

    // A certificate whose key is not its own.
    let (_, cert, _) = self_signed(dir.path());
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    let (_, _, wrong_key) = self_signed(&other);
    let out = refused(
        &data,
        &[
            "--tls-cert",
            cert.to_str().expect("utf-8 path"),
            "--tls-key",
            wrong_key.to_str().expect("utf-8 path"),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid TLS certificate or key"),
        "{stderr}"
    );

    // A key in the configuration without its certificate.
    let out = Command::new(env!("CARGO_BIN_EXE_strictpy"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .env("STRICTPY_TLS__KEY", missing)
        .output()
        .expect("run strictpy serve");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be set together"));
}
