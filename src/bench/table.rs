//! The human-readable table of a [`Report`].

use std::fmt::Write as _;

use super::{Report, stats::Summary};

/// A float with fixed decimals, or `-` when absent.
fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// `a / b` when both are present and `b` is positive.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// A target's verdict as a word.
fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    }
}

/// One latency row: label, n, p50, p90, p99, mean.
fn latency_row(out: &mut String, label: &str, s: &Summary) {
    let _ = writeln!(
        out,
        "  {label:<38} {:>6} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        s.n, s.p50_ms, s.p90_ms, s.p99_ms, s.mean_ms
    );
}

/// Renders the whole report as text for a terminal.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "strictpy {} bench{} on {} CPUs ({})",
        m.strictpy,
        if r.plan.quick { " --quick" } else { "" },
        m.nproc,
        m.cpu
    );
    let _ = writeln!(
        out,
        "load average (1 min) at start {} and end {}",
        opt(m.load_start, 2),
        opt(m.load_end, 2)
    );
    let _ = writeln!(
        out,
        "python3: {} · native rustpython: {}",
        m.python3.as_deref().unwrap_or("not found"),
        m.rustpython.as_deref().unwrap_or("not found (skipped)")
    );
    let _ = writeln!(
        out,
        "pydantic-monty: {}",
        r.monty
            .as_ref()
            .map_or("not importable by python3 (skipped)", |x| x
                .version
                .as_str())
    );
    let _ = write!(
        out,
        "sandbox load (pooled, {} slots): fuel on {:.1} ms ({})",
        r.plan.concurrency.iter().max().copied().unwrap_or(1),
        r.load_fuel_on.ms,
        r.load_fuel_on.from
    );
    if let Some(l) = &r.load_fuel_off {
        let _ = write!(out, ", fuel off {:.1} ms ({})", l.ms, l.from);
    }
    out.push_str("\n\n");

    if r.hello.is_some() || r.python_hello_spawn.is_some() {
        let _ = writeln!(
            out,
            "Latency (ms)                             {:>6} {:>9} {:>9} {:>9} {:>9}",
            "n", "p50", "p90", "p99", "mean"
        );
        if let Some(h) = &r.hello {
            latency_row(&mut out, "hello job, in-process", &h.total);
            latency_row(&mut out, "  of which instantiate", &h.instantiate);
            latency_row(&mut out, "  of which guest _start", &h.run);
            latency_row(&mut out, "  of which slot reset", &h.reset);
        }
        if let Some(e) = &r.empty {
            latency_row(&mut out, "empty job (`pass`), in-process", &e.total);
        }
        if let Some(py) = &r.python_hello_spawn {
            latency_row(&mut out, "python3 -I -S -c 'print(\"hi\")' spawn", py);
        }
        if let Some(rp) = &r.rustpython_hello_spawn {
            latency_row(&mut out, "rustpython -c 'print(\"hi\")' spawn", rp);
        }
        if let Some(m) = &r.monty {
            latency_row(&mut out, "pydantic-monty fresh-session hello", &m.hello);
        }
        if let (Some(h), Some(py)) = (&r.hello, &r.python_hello_spawn) {
            let _ = writeln!(
                out,
                "  python3 spawn / hello job (p50): {:.1}x",
                py.p50_ms / h.total.p50_ms
            );
        }
        if let Some(h) = &r.hello {
            let _ = writeln!(out, "  hello job fuel: {}", h.fuel);
        }
        out.push('\n');
    }

    if !r.throughput.is_empty() {
        let _ = writeln!(out, "Throughput (hello jobs, threads sharing one sandbox)");
        let _ = writeln!(
            out,
            "  {:>11} {:>8} {:>8} {:>10} {:>8}",
            "concurrency", "jobs", "seconds", "jobs/s", "failed"
        );
        for t in &r.throughput {
            let _ = writeln!(
                out,
                "  {:>11} {:>8} {:>8.2} {:>10.0} {:>8}",
                t.concurrency, t.jobs, t.seconds, t.jobs_per_s, t.failed
            );
        }
        out.push('\n');
    }

    if let Some(h) = &r.http {
        let _ = writeln!(
            out,
            "HTTP: `wait: true` hello through strictpy serve ({}, {} workers) {:>6} {:>9} {:>9} {:>9} {:>9}",
            h.store, h.workers, "n", "p50", "p90", "p99", "mean"
        );
        latency_row(&mut out, "1 connection, request to answer", &h.latency);
        let t = &h.throughput;
        let _ = writeln!(
            out,
            "  {} connections: {} jobs in {:.2} s = {:.0} jobs/s, {} failed\n",
            t.connections, t.jobs, t.seconds, t.jobs_per_s, t.failed
        );
    }

    if let Some(f) = &r.fuel_rate {
        let _ = writeln!(
            out,
            "Fuel calibration: spin loop burned {} fuel in {:.3} s = {:.3e} fuel/s\n",
            f.fuel, f.seconds, f.fuel_per_s
        );
    }

    if !r.rss.is_empty() {
        let _ = writeln!(out, "RSS per concurrent job (VmRSS, MiB)");
        let _ = writeln!(
            out,
            "  {:<26} {:>4} {:>9} {:>9} {:>9} {:>11}",
            "job", "k", "before", "peak", "per job", "guest mem"
        );
        for x in &r.rss {
            let _ = writeln!(
                out,
                "  {:<26} {:>4} {:>9.1} {:>9.1} {:>9.2} {:>11.1}",
                x.job, x.jobs, x.before_mib, x.peak_mib, x.per_job_mib, x.guest_memory_mib
            );
        }
        out.push('\n');
    }

    if !r.suite.is_empty() {
        let _ = writeln!(
            out,
            "CPU micro-suite (median of {}, ms; sandbox = whole job; compute = inside the interpreter)",
            r.plan.repeat
        );
        let _ = writeln!(
            out,
            "  {:<16} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>8} {:>9} {:>8} {:>8}",
            "snippet",
            "fuel on",
            "fuel off",
            "on/off",
            "Mfuel",
            "CPy spawn",
            "CPy comp",
            "/spawn",
            "/comp",
            "RP comp",
            "/RP",
            "Monty",
            "/Monty",
            "agree"
        );
        for s in &r.suite {
            let _ = writeln!(
                out,
                "  {:<16} {:>9.1} {:>9} {:>7} {:>9.1} {:>9} {:>9} {:>8} {:>8} {:>9} {:>8} {:>9} {:>8} {:>8}",
                s.name,
                s.fuel_on_ms,
                opt(s.fuel_off_ms, 1),
                opt(ratio(Some(s.fuel_on_ms), s.fuel_off_ms), 2),
                s.fuel as f64 / 1e6,
                opt(s.cpython_spawn_ms, 1),
                opt(s.cpython_compute_ms, 1),
                opt(ratio(Some(s.fuel_on_ms), s.cpython_spawn_ms), 2),
                opt(ratio(Some(s.fuel_on_ms), s.cpython_compute_ms), 2),
                opt(s.rustpython_compute_ms, 1),
                opt(ratio(Some(s.fuel_on_ms), s.rustpython_compute_ms), 2),
                opt(s.monty_ms, 1),
                opt(ratio(Some(s.fuel_on_ms), s.monty_ms), 2),
                if s.outputs_agree { "yes" } else { "NO" }
            );
        }
        let _ = writeln!(
            out,
            "  on/off = fuel-metering cost; /spawn, /comp, /RP, /Monty = sandbox fuel-on time over CPython spawn, CPython compute, native RustPython compute, pydantic-monty fresh session\n"
        );
    }

    if !r.check.is_empty() {
        let _ = writeln!(
            out,
            "Static check (ms)                        {:>6} {:>9} {:>9} {:>9} {:>9}",
            "n", "p50", "p90", "p99", "mean"
        );
        for c in &r.check {
            let label = format!("{} ({} lines, {} B)", c.name, c.lines, c.bytes);
            latency_row(&mut out, &label, &c.latency);
        }
        if let Some(p) = &r.parse {
            latency_row(&mut out, "  bare parse of the same file", &p.latency);
        }
        out.push('\n');
    }

    if !r.imports.is_empty() {
        let _ = writeln!(
            out,
            "Import tax (job = `import M`)             {:>12} {:>12} {:>9}",
            "fuel", "tax fuel", "ms p50"
        );
        for i in &r.imports {
            let _ = writeln!(
                out,
                "  {:<39} {:>12} {:>12} {:>9.3}",
                i.module, i.fuel, i.tax_fuel, i.ms
            );
        }
        let _ = writeln!(
            out,
            "  tax = fuel over the empty job's: what allowing the module costs every job\n"
        );
    }

    if !r.functions.is_empty() {
        let _ = writeln!(
            out,
            "Stored functions (ms p50)                {:>9} {:>9} {:>8} {:>12} {:>12} {:>9}",
            "job", "invoke", "ratio", "job fuel", "invoke fuel", "bytes"
        );
        for f in &r.functions {
            let _ = writeln!(
                out,
                "  {:<38} {:>9.3} {:>9.3} {:>7.2}x {:>12} {:>12} {:>9}",
                f.name,
                f.job_ms,
                f.invoke_ms,
                f.speedup,
                f.job_fuel,
                f.invoke_fuel,
                f.compiled_bytes
            );
        }
        let _ = writeln!(
            out,
            "  job = static check + run from source; invoke = run from the compiled form\n"
        );
    }

    let _ = writeln!(out, "Issue-3 targets");
    for t in &r.targets {
        let _ = writeln!(
            out,
            "  {:<46} {:<26} {:>14}  {}",
            t.name,
            t.goal,
            t.measured.as_deref().unwrap_or("-"),
            verdict(t.met)
        );
    }
    if !r.ratios.is_empty() {
        let _ = writeln!(out, "\nIssue-12 targets (ratios in this run)");
    }
    for t in &r.ratios {
        let _ = writeln!(
            out,
            "  {:<66} {:<8} {:>8}  {}",
            t.name,
            t.goal,
            opt(t.value, 2),
            verdict(t.met)
        );
    }
    out
}
