//! `strictpy bench`: a quick run emits every section in its JSON document and
//! renders a table; the HTTP section drives a real `strictpy serve` child on
//! SQLite and on PostgreSQL and cleans it up, also when interrupted. No
//! figure is asserted: timings are benchmarks, not tests.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Every section but the HTTP one and what it needs (the in-process hello
/// latency and throughput, whose ratios it is judged by).
const ALL_BUT_HTTP: &str = "spawn,fuel,rss,suite,fuel-off,check,imports,monty";

/// `strictpy bench ARGS` with its temporary files under `tmp`.
fn bench_in(tmp: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strictpy"));
    cmd.arg("bench")
        .args(["--rustpython", "/nonexistent/rustpython"])
        .args(args)
        .env("STRICTPY_GUEST", crate::guest_path())
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn bench(args: &[&str]) -> Output {
    let tmp = tempfile::tempdir().expect("tempdir");
    bench_in(tmp.path(), &[&["--quick"][..], args].concat())
        .output()
        .expect("run strictpy bench")
}

/// The JSON document of a bench run that must have succeeded.
fn document(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// Whether the `python3` on `PATH` can import pydantic-monty, as the bench
/// decides it.
fn monty_importable() -> bool {
    Command::new("python3")
        .args(["-c", "import pydantic_monty"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the HTTP section (and the in-process rows its ratios need) with
/// `extra` flags; asserts its rows are real and that the server's data dir
/// is gone afterwards. Returns the document.
fn http_section(extra: &[&str]) -> Value {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        "--quick",
        "--json",
        "--skip",
        ALL_BUT_HTTP,
        "--iterations",
        "20",
        "--concurrency",
        "1,2",
        "--seconds",
        "0.3",
    ];
    args.extend_from_slice(extra);
    let out = bench_in(tmp.path(), &args).output().expect("run bench");
    let doc = document(&out);
    let http = &doc["http"];
    let latency = &http["latency"];
    assert_eq!(latency["n"], 20, "{http}");
    let p50 = latency["p50_ms"].as_f64().expect("as in the report");
    assert!(p50 > 0.0, "{http}");
    assert!(
        latency["p99_ms"].as_f64().expect("as in the report") >= p50,
        "{http}"
    );
    assert!(
        http["workers"].as_u64().expect("as in the report") >= 1,
        "{http}"
    );
    let t = &http["throughput"];
    assert_eq!(t["connections"], 4, "{t}");
    assert!(t["jobs"].as_u64().expect("as in the report") > 0, "{t}");
    assert_eq!(t["failed"], 0, "{t}");
    assert!(
        t["jobs_per_s"].as_f64().expect("as in the report") > 0.0,
        "{t}"
    );
    // The HTTP ratios are computed from this run's rows.
    let ratios = doc["ratios"].as_array().expect("as in the report");
    for name in [
        "HTTP wait:true hello p50",
        "HTTP wait:true hello p99",
        "HTTP jobs/s",
    ] {
        let r = ratios
            .iter()
            .find(|r| {
                r["name"]
                    .as_str()
                    .expect("as in the report")
                    .starts_with(name)
            })
            .unwrap_or_else(|| panic!("no ratio {name}: {ratios:?}"));
        assert!(r["value"].as_f64().expect("as in the report") > 0.0, "{r}");
        assert!(r["met"].is_boolean(), "{r}");
    }
    // The server's data dir (and so its database and log) was removed.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("as in the report")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    doc
}

#[test]
fn http_section_on_sqlite() {
    let doc = http_section(&[]);
    assert_eq!(doc["http"]["store"], "sqlite");
}

#[test]
fn http_section_on_postgres() {
    let Some(pg) = strictpy_testpg::server() else {
        return;
    };
    let url = pg.fresh_url();
    let doc = http_section(&["--store-url", &url]);
    assert_eq!(doc["http"]["store"], "postgres");
    // The jobs really went through that database.
    let db = strictpy_testpg::PgServer::database_of(&url);
    let jobs: u64 = pg
        .query(db, "SELECT count(*) FROM jobs")
        .trim()
        .parse()
        .unwrap();
    assert!(jobs > 20, "{jobs}");
}

/// The children of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[test]
fn interrupted_http_section_stops_its_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut bench = bench_in(
        tmp.path(),
        &[
            "--json",
            "--skip",
            &format!("latency,throughput,{ALL_BUT_HTTP}"),
            "--iterations",
            "1000000",
        ],
    )
    .spawn()
    .expect("start bench");
    let pid = bench.id();
    // Wait for the `strictpy serve` child to be up and answering jobs.
    let deadline = Instant::now() + Duration::from_secs(120);
    let server = loop {
        let serving = children(pid).into_iter().find(|c| {
            std::fs::read(format!("/proc/{c}/cmdline"))
                .is_ok_and(|cmd| cmd.split(|b| *b == 0).any(|arg| arg == b"serve"))
        });
        if let Some(s) = serving {
            break s;
        }
        assert!(Instant::now() < deadline, "the server never started");
        assert!(bench.try_wait().unwrap().is_none(), "bench ended early");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Let it load the guest and start answering (the section would run
    // for hours with this many iterations).
    std::thread::sleep(Duration::from_millis(1500));
    // SIGINT to the bench alone (not its process group, as a terminal's
    // Ctrl-C would): the bench itself must stop the server.
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let out = bench.wait_with_output().expect("bench exits");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server was killed and reaped, and its data dir removed.
    assert!(
        !Path::new(&format!("/proc/{server}")).exists(),
        "server {server} still running"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn quick_json_has_every_section() {
    // Fuel-off runs are skipped: they need a second precompiled guest, which
    // would make the first run of this test take a minute.
    let out = bench(&[
        "--json",
        "--skip",
        "fuel-off,http",
        "--iterations",
        "20",
        "--concurrency",
        "1,2",
        "--seconds",
        "0.1",
    ]);
    let doc = document(&out);

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
    // The bare parse of the same file, as many samples as its check.
    let parse = &doc["parse"];
    assert_eq!(parse["lines"], 1000);
    assert_eq!(parse["bytes"], check[1]["bytes"]);
    assert_eq!(parse["latency"]["n"], check[1]["latency"]["n"]);
    assert!(parse["latency"]["p50_ms"].as_f64().unwrap() > 0.0);

    // pydantic-monty runs exactly when python3 can import it.
    let monty = monty_importable();
    assert_eq!(doc["machine"]["pydantic_monty"], monty);
    if monty {
        assert_eq!(doc["monty"]["hello"]["n"], 20);
        assert!(doc["monty"]["hello"]["p50_ms"].as_f64().unwrap() > 0.0);
        // It runs fib(25) (plain Python), and it printed what the sandbox did.
        let fib = suite.iter().find(|r| r["name"] == "fib(25)").unwrap();
        assert!(fib["monty_ms"].as_f64().unwrap() > 0.0, "{fib}");
    } else {
        assert_eq!(doc["monty"], Value::Null);
        assert!(suite.iter().all(|r| r["monty_ms"].is_null()));
    }

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
    // Issue 12's ratios: all six listed; those of this run's rows measured.
    let ratios = doc["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 6);
    for r in ratios {
        let name = r["name"].as_str().unwrap();
        let measured = !name.starts_with("HTTP") && (monty || !name.contains("monty"));
        assert_eq!(r["value"].is_f64(), measured, "{r}");
        assert_eq!(r["met"].is_boolean(), measured, "{r}");
    }
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
