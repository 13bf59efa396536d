//! `strictpy soak`, short: a few hundred jobs (a tenth hostile) against a real
//! `strictpy serve` that is SIGKILLed once and restarted; every accepted job
//! must end final and as expected, with no 5xx. The full run is `make soak`.

use std::process::{Command, Stdio};

use serde_json::Value;

#[test]
fn a_short_soak_with_one_kill_loses_nothing() {
    super::server::warm_guest_cache();
    let out = Command::new(env!("CARGO_BIN_EXE_strictpy"))
        .args([
            "soak",
            "--jobs",
            "300",
            "--concurrency",
            "16",
            "--kill",
            "1",
        ])
        .args(["--seed", "7", "--json"])
        .env("STRICTPY_GUEST", crate::guest_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .expect("run strictpy soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("soak printed no JSON summary ({e}): {stdout}"));
    assert_eq!(out.status.code(), Some(0), "{summary:#}");
    assert_eq!(summary["jobs"], 300);
    assert_eq!(summary["kills"], 1, "{summary:#}");
    for zero in ["lost", "wrong", "refused", "unanswered", "server_errors"] {
        assert_eq!(summary[zero], 0, "{zero}: {summary:#}");
    }
    assert_eq!(summary["listed"], 300, "{summary:#}");
    assert_eq!(summary["ok"], 300, "{summary:#}");
    // The hostile tenth really was hostile and was judged by its verdict.
    let hostile = summary["hostile"].as_u64().unwrap_or(0);
    assert!(hostile >= 10, "{summary:#}");
    let by_kind: u64 = summary["hostile_ok"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert!(
        by_kind + summary["interrupted"].as_u64().unwrap_or(0) >= hostile,
        "{summary:#}"
    );
    assert!(
        summary["rss_peak_mib"].as_f64().unwrap_or(0.0) > 0.0,
        "{summary:#}"
    );
}
