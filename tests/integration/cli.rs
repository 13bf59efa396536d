//! The `strictpy` binary: exit codes, human and JSON output.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use serde_json::Value;

fn strictpy(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strictpy"))
        .args(args)
        .env("STRICTPY_GUEST", crate::guest_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strictpy");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn json_outcome(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "exactly one JSON object: {text}");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn run_succeeds_with_exit_0_and_a_verdict_line() {
    let out = strictpy(&["run", "-"], "print('hi')");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("strictpy: succeeded"), "{err}");
    assert!(err.contains("fuel"), "{err}");
}

#[test]
fn run_json_prints_one_outcome() {
    let out = strictpy(
        &["run", "--json", "--context", r#"{"x": 20}"#, "-"],
        "result = x + 1",
    );
    assert_eq!(out.status.code(), Some(0));
    let v = json_outcome(&out);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["result"], 21);
    assert!(v["usage"]["fuel_consumed"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn failures_exit_1() {
    let out = strictpy(
        &["run", "--json", "--timeout-ms", "200", "-"],
        "while True: pass",
    );
    assert_eq!(out.status.code(), Some(1));
    let v = json_outcome(&out);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["kind"], "timeout");
    assert_eq!(v["error"]["limit"], 200);
}

#[test]
fn rejections_exit_2_with_all_violations() {
    let out = strictpy(
        &["run", "--json", "-"],
        "import os\nimport subprocess\neval('1')",
    );
    assert_eq!(out.status.code(), Some(2));
    let v = json_outcome(&out);
    assert_eq!(v["status"], "rejected");
    assert_eq!(v["error"]["kind"], "forbidden_import");
    assert_eq!(v["error"]["violations"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["usage"]["fuel_consumed"], 0);
}

#[test]
fn allow_adds_a_module_within_policy() {
    let code = "import random\nprint(type(random.random()).__name__)";
    assert_eq!(strictpy(&["run", "-"], code).status.code(), Some(2));
    let out = strictpy(&["run", "--allow", "random", "-"], code);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "float\n");
    // `os` is outside what a call may add.
    assert_eq!(
        strictpy(&["run", "--allow", "os", "-"], "print(1)")
            .status
            .code(),
        Some(64)
    );
}

#[test]
fn check_exits_0_or_2() {
    let ok = strictpy(&["check", "-"], "import json\nprint(json.dumps(1))");
    assert_eq!(ok.status.code(), Some(0));
    let bad = strictpy(&["check", "--json", "-"], "import socket");
    assert_eq!(bad.status.code(), Some(2));
    let v = json_outcome(&bad);
    assert_eq!(v["ok"], false);
    assert_eq!(v["violations"][0]["rule"], "forbidden_import");
    assert_eq!(v["violations"][0]["line"], 1);
}

#[test]
fn bad_usage_exits_64() {
    assert_eq!(strictpy(&["run"], "").status.code(), Some(64));
    assert_eq!(
        strictpy(&["run", "--fuel", "lots", "-"], "").status.code(),
        Some(64)
    );
    assert_eq!(
        strictpy(&["run", "--context", "[1]", "-"], "")
            .status
            .code(),
        Some(64)
    );
    assert_eq!(
        strictpy(&["run", "--memory-mb", "999999", "-"], "")
            .status
            .code(),
        Some(64)
    );
    assert_eq!(
        strictpy(&["run", "/nonexistent/file.py"], "").status.code(),
        Some(64)
    );
}

#[test]
fn policy_file_changes_the_allowlist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        "[policy]\nallowed_modules = [\"math\"]\nforbidden_builtins = [\"print\"]\n",
    )
    .expect("write policy");
    let p = path.to_str().expect("utf-8 path");
    let out = strictpy(
        &["check", "--json", "--policy", p, "-"],
        "import json\nprint(1)",
    );
    assert_eq!(out.status.code(), Some(2));
    let v = json_outcome(&out);
    let rules: Vec<_> = v["violations"]
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x["rule"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(rules, ["forbidden_import", "forbidden_builtin"]);
}

#[test]
fn an_operator_allowed_exec_still_meets_the_run_time_policy() {
    // The operator lifts the builtin deny list, so `exec` passes the static
    // check; the guest still refuses the import inside it.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, "[policy]\nforbidden_builtins = []\n").expect("write policy");
    let p = path.to_str().expect("utf-8 path");
    let out = strictpy(&["run", "--json", "--policy", p, "-"], "exec('import os')");
    assert_eq!(out.status.code(), Some(1));
    let v = json_outcome(&out);
    assert_eq!(v["error"]["kind"], "exception");
    assert_eq!(v["error"]["exception_type"], "ImportError");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("strictpy policy"),
        "{v}"
    );
}

#[test]
fn stdin_file_and_seed_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "41\n").expect("write input");
    let i = input.to_str().expect("utf-8 path");
    let code = "import random\nresult = [int(input()) + 1, random.random()]";
    let a = strictpy(
        &[
            "run", "--json", "--allow", "random", "--seed", "9", "--stdin", i, "-",
        ],
        code,
    );
    let b = strictpy(
        &[
            "run", "--json", "--allow", "random", "--seed", "9", "--stdin", i, "-",
        ],
        code,
    );
    let (a, b) = (json_outcome(&a), json_outcome(&b));
    assert_eq!(a["result"][0], 42);
    assert_eq!(a["result"], b["result"]);
    assert_eq!(a["usage"]["fuel_consumed"], b["usage"]["fuel_consumed"]);
}

/// `strictpy function ARGS` against a server, with `token` in
/// `STRICTPY_TOKEN` and `stdin` on stdin.
fn function(args: &[&str], stdin: &str, token: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strictpy"))
        .arg("function")
        .args(args)
        .env_remove("STRICTPY_URL")
        .env("STRICTPY_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strictpy function");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

#[test]
fn function_deploy_and_invoke_print_like_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = crate::server::process::Process::start(dir.path());
    let token = std::fs::read_to_string(dir.path().join("admin-token"))
        .expect("admin token")
        .trim()
        .to_owned();
    let url = server.base.as_str();
    let code = "print('hello', who)\nresult = {'twice': n * 2}";
    let deployed = function(
        &["deploy", "-", "--name", "greet", "--url", url],
        code,
        &token,
    );
    assert_eq!(deployed.status.code(), Some(0), "{}", stderr(&deployed));
    assert!(
        stderr(&deployed).contains("deployed greet version 1 (compiled)"),
        "{}",
        stderr(&deployed)
    );
    // Deploying the same name again stores the next version.
    let again = function(
        &["deploy", "-", "--name", "greet", "--url", url, "--json"],
        &format!("{code}\nprint('v2')"),
        &token,
    );
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let doc: Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(doc["version"], 2);

    let ran = function(
        &[
            "invoke",
            "greet",
            "--url",
            url,
            "--context",
            r#"{"who": "ada", "n": 21}"#,
        ],
        "",
        &token,
    );
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "hello ada\nv2\n");
    assert!(
        stderr(&ran).contains("strictpy: result = {\"twice\":42}"),
        "{}",
        stderr(&ran)
    );
    let v1 = function(
        &[
            "invoke",
            "greet",
            "--version",
            "1",
            "--url",
            url,
            "--json",
            "--context",
            r#"{"who": "bob", "n": 1}"#,
        ],
        "",
        &token,
    );
    let outcome = json_outcome(&v1);
    assert_eq!(outcome["stdout"], "hello bob\n");
    assert_eq!(outcome["result"]["twice"], 2);

    // A failing program exits 1; a missing function is bad usage (64); a
    // policy violation at deploy is a rejection (2).
    let failing = function(
        &["invoke", "greet", "--url", url, "--context", r#"{"n": 1}"#],
        "",
        &token,
    );
    assert_eq!(failing.status.code(), Some(1), "{}", stderr(&failing));
    let missing = function(&["invoke", "nope", "--url", url], "", &token);
    assert_eq!(missing.status.code(), Some(64), "{}", stderr(&missing));
    let rejected = function(
        &["deploy", "-", "--name", "evil", "--url", url],
        "import socket",
        &token,
    );
    assert_eq!(rejected.status.code(), Some(2), "{}", stderr(&rejected));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
