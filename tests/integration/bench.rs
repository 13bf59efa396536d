//! `strictpy bench`: a quick run emits every section in its JSON document and
//! renders a table. No figure is asserted: timings are benchmarks, not tests.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strictpy"))
        .arg("bench")
        .args(["--quick", "--rustpython", "/nonexistent/rustpython"])
        .args(args)
        .env("STRICTPY_GUEST", crate::guest_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run strictpy bench")
}

#[test]
fn quick_json_has_every_section() {
    // Fuel-off runs are skipped: they need a second precompiled guest, which
    // would make the first run of this test take a minute.
    let out = bench(&[
        "--json",
        "--skip",
        "fuel-off",
        "--iterations",
        "20",
        "--concurrency",
        "1,2",
        "--seconds",
        "0.1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");

    assert!(doc["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert_eq!(doc["plan"]["quick"], true);
    assert_eq!(doc["machine"]["rustpython"], Value::Null);
    for key in ["hello", "empty"] {
        let total = &doc[key]["total"];
        assert_eq!(total["n"], 20, "{key}");
        for p in ["p50_ms", "p90_ms", "p99_ms", "mean_ms"] {
            assert!(total[p].as_f64().unwrap() > 0.0, "{key}.{p}");
        }
    }
    assert!(doc["hello"]["fuel"].as_u64().unwrap() > 0);

    let throughput = doc["throughput"].as_array().unwrap();
    let levels: Vec<u64> = throughput
        .iter()
        .map(|t| t["concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(levels, [1, 2]);
    assert!(throughput.iter().all(|t| t["failed"] == 0));

    assert!(doc["fuel_rate"]["fuel_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(doc["rss"].as_array().unwrap().len(), 2);

    let suite = doc["suite"].as_array().unwrap();
    assert_eq!(suite.len(), 5);
    for row in suite {
        assert!(row["fuel"].as_u64().unwrap() > 0, "{row}");
        assert_eq!(row["fuel_off_ms"], Value::Null, "{row}");
        // The sandbox and CPython (when present) print the same thing.
        assert_eq!(row["outputs_agree"], true, "{row}");
    }

    let check = doc["check"].as_array().unwrap();
    assert_eq!(check.len(), 2);
    assert_eq!(check[1]["lines"], 1000);

    // The import tax: one row per allowable module, each within the 1 M target.
    let imports = doc["imports"].as_array().unwrap();
    assert_eq!(
        imports.len(),
        strictpy_types::Policy::default().allowable_modules.len()
    );
    for row in imports {
        assert!(row["fuel"].as_u64().unwrap() > 0, "{row}");
        assert!(row["tax_fuel"].as_u64().unwrap() < 1_000_000, "{row}");
    }

    // Stored functions: the invocation runs the same program with less fuel
    // (no parse, no compile) and prints the same thing (the harness checks).
    let functions = doc["functions"].as_array().unwrap();
    assert_eq!(functions.len(), 2);
    for row in functions {
        let (job, invoke) = (row["job_fuel"].as_u64(), row["invoke_fuel"].as_u64());
        assert!(invoke.unwrap() < job.unwrap(), "{row}");
        assert!(row["compiled_bytes"].as_u64().unwrap() > 0, "{row}");
    }

    let targets = doc["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 7);
    // Native RustPython was pointed at a missing path, so its target is
    // reported as not measured rather than guessed.
    assert!(
        targets
            .iter()
            .any(|t| t["name"].as_str().unwrap().contains("RustPython") && t["met"].is_null())
    );
}

#[test]
fn table_output_lists_the_targets() {
    let out = bench(&[
        "--skip",
        "latency,spawn,throughput,fuel,rss,suite,imports,functions",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Static check"), "{text}");
    assert!(text.contains("Issue-3 targets"), "{text}");
    assert!(text.contains("not measured"), "{text}");
}
