//! Encryption at rest: a job submitted through a real server leaves no
//! plaintext of its code, stdin, context, stdout or result in the data dir,
//! still reads back through the API, and survives a key rotation.

use std::path::Path;

use axum::http::StatusCode;
use serde_json::{Value, json};
use strictpy_server::Server;

use crate::server::{TestServer, admin_token, call, shared_sandbox, test_config};

/// Distinctive strings for each kind of caller data. The program builds its
/// stdout and result markers by concatenation, so each marker can only reach
/// the disk through its own column.
const CODE: &str = "CODE-MARK-7f3a";
const STDIN: &str = "STDIN-MARK-19bd";
const CONTEXT: &str = "CONTEXT-MARK-55c2";
const STDOUT: &str = "STDOUT-MARK-a1b2";
const RESULT: &str = "RESULT-MARK-c3d4";

/// Stored in plain on purpose (it is looked up by value): proves the scan
/// reads the rows at all.
const IDEMPOTENCY_KEY: &str = "IDEM-PLAIN-MARK-e5f6";

fn job_request() -> Value {
    json!({
        "code": format!(
            "# {CODE}\n\
             line = input()\n\
             print('STDOUT' + '-MARK-' + 'a1b2')\n\
             result = {{'r': 'RESULT' + '-MARK-' + 'c3d4', 'line': line, 'n': len(secret)}}\n"
        ),
        "stdin": format!("{STDIN}\n"),
        "context": {"secret": CONTEXT},
        "idempotency_key": IDEMPOTENCY_KEY,
        "wait": true,
    })
}

/// Every file in the data dir (the database, its WAL and shared memory, the
/// generated key and token files), concatenated.
fn data_dir_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            bytes.extend(std::fs::read(&path).expect("read"));
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_of_a_job_reaches_the_data_dir() {
    let mut s = TestServer::start(|_| {}).await;
    let reply = s.call("POST", "/v1/jobs", Some(job_request())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let id = reply.json["id"].as_str().expect("id").to_owned();
    assert_eq!(reply.json["status"], "succeeded", "{}", reply.text);

    // Read back through the API: the store decrypts.
    let job = s.until_final(&id).await;
    assert_eq!(job["stdout"], format!("{STDOUT}\n"));
    assert_eq!(
        job["result"],
        json!({"r": RESULT, "line": STDIN, "n": CONTEXT.len()})
    );
    assert_eq!(job["idempotency_key"], IDEMPOTENCY_KEY);

    if let Some(server) = s.server.take() {
        server.shutdown().await;
    }
    let dir = s._dir.path();
    let raw = data_dir_bytes(dir);
    assert!(
        contains(&raw, IDEMPOTENCY_KEY),
        "the scan must see the stored rows"
    );
    for marker in [CODE, STDIN, CONTEXT, STDOUT, RESULT] {
        assert!(!contains(&raw, marker), "{marker} is on disk in plaintext");
    }

    // With no key configured the first start generated one, private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(dir.join("encryption-keys")).expect("generated key file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}

/// Starts a server on `dir` with the key file `keys`, or returns why not.
async fn start_on(dir: &Path, keys: &Path) -> Result<Server, String> {
    let mut config = test_config(dir);
    config.encryption.key_file = Some(keys.to_owned());
    Server::start(config, shared_sandbox())
        .await
        .map_err(|e| e.to_string())
}

/// Writes a key file readable by its owner only.
fn write_keys(path: &Path, text: &str) {
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).expect("key file");
    std::io::Write::write_all(&mut file, text.as_bytes()).expect("write keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_stay_readable_across_restarts_and_key_rotation() {
    const KEY_1: &str = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY_2: &str = "k2:f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f";
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    let keys = root.path().join("keys");

    write_keys(&keys, &format!("{KEY_1}\n"));
    let server = start_on(&dir, &keys).await.expect("first start");
    let token = admin_token(&dir);
    let app = server.router();
    let body = Some(job_request().to_string().into_bytes());
    let first = call(&app, Some(&token), "POST", "/v1/jobs", body).await;
    assert_eq!(first.json["status"], "succeeded", "{}", first.text);
    let first_id = first.json["id"].as_str().expect("id").to_owned();
    server.shutdown().await;
    drop(app);
    assert!(contains(&data_dir_bytes(&dir), "enc1:k1:"));
    assert!(
        !dir.join("encryption-keys").exists(),
        "a key file was given"
    );

    // Replacing the key instead of rotating it is refused at start.
    write_keys(&keys, &format!("{KEY_2}\n"));
    let err = start_on(&dir, &keys).await.expect_err("lost key");
    assert!(err.contains("k1"), "{err}");

    // Rotation: the new key first, the old one kept.
    write_keys(&keys, &format!("{KEY_2}\n{KEY_1}\n"));
    let server = start_on(&dir, &keys).await.expect("rotated start");
    let app = server.router();
    let uri = format!("/v1/jobs/{first_id}");
    let old = call(&app, Some(&token), "GET", &uri, None).await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.text);
    assert_eq!(old.json["stdout"], format!("{STDOUT}\n"));
    let mut request = job_request();
    request["idempotency_key"] = json!("after-rotation");
    let body = Some(request.to_string().into_bytes());
    let second = call(&app, Some(&token), "POST", "/v1/jobs", body).await;
    assert_eq!(second.json["status"], "succeeded", "{}", second.text);
    server.shutdown().await;
    drop(app);
    assert!(contains(&data_dir_bytes(&dir), "enc1:k2:"));
}
