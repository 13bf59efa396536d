//! Command-line parsing and the `run` / `check` subcommands.
//!
//! Exit codes: 0 succeeded, 1 failed, 2 rejected by the static check, 64 bad
//! usage (sysexits' `EX_USAGE`).

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use strictpy_sandbox::{CancelHandle, Job, Sandbox, SandboxConfig};
use strictpy_types::{LimitOverrides, Limits, Outcome, Policy, Status, Violation};

/// Exit code for a successful run or a clean check.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code for a run that failed (exception, limit, internal error).
pub(crate) const EXIT_FAILED: u8 = 1;
/// Exit code for code the static check rejected.
pub(crate) const EXIT_REJECTED: u8 = 2;
/// Exit code for bad command-line usage or unreadable inputs.
pub(crate) const EXIT_USAGE: u8 = 64;

/// Runs untrusted Python in RustPython under wasmtime, with a static policy check.
#[derive(Debug, Parser)]
#[command(name = "strictpy", version, about)]
struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Check a file statically, then run it in the sandbox.
    Run(RunArgs),
    /// Run only the static policy check.
    Check(CheckArgs),
    /// Run the HTTP job service.
    Serve(crate::serve::ServeArgs),
    /// Measure job latency, throughput, fuel, memory and the CPU micro-suite
    /// against CPython, and print a table.
    Bench(crate::bench::BenchArgs),
    /// Create, list and revoke API tokens in the data dir's store.
    Token(crate::token::TokenArgs),
    /// Send a file to a running strictpy server (token from
    /// `$STRICTPY_TOKEN`) and print the verdict as `run` does.
    Submit(crate::submit::SubmitArgs),
    /// Deploy and invoke stored functions on a running strictpy server
    /// (token from `$STRICTPY_TOKEN`).
    Function(crate::function::FunctionArgs),
    /// Soak a real `strictpy serve` it starts itself: thousands of jobs, some
    /// hostile, optionally with SIGKILLs; exits 1 on any lost job or 5xx.
    Soak(crate::soak::SoakArgs),
    /// Drive running servers with `wait: true` hello jobs (round-robin over
    /// `--url`) and print jobs/s, p50 and p99.
    Load(crate::load::LoadArgs),
}

/// Options shared by `run` and `check`.
#[derive(Debug, Args)]
struct PolicyArgs {
    /// The Python file, or `-` for stdin.
    file: String,
    /// Allow one more module for this call (repeatable), within the policy.
    #[arg(long = "allow", value_name = "MODULE")]
    allow: Vec<String>,
    /// A TOML file with a `[policy]` table (the server's config format).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// `strictpy check`.
#[derive(Debug, Args)]
struct CheckArgs {
    /// File, allowlist and policy.
    #[command(flatten)]
    common: PolicyArgs,
}

/// A job's inputs and limits: the flags `run` and `submit` share.
#[derive(Debug, Args)]
pub(crate) struct JobArgs {
    /// Wall-clock limit in milliseconds.
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// Fuel budget (about one unit per wasm instruction).
    #[arg(long)]
    pub(crate) fuel: Option<u64>,
    /// Memory cap in MiB.
    #[arg(long)]
    pub(crate) memory_mb: Option<u64>,
    /// Cap on stdout and on stderr, each, in bytes.
    #[arg(long)]
    pub(crate) max_output_bytes: Option<u64>,
    /// A JSON object whose keys become globals.
    #[arg(long, value_name = "JSON")]
    pub(crate) context: Option<String>,
    /// A file to feed to the program's stdin.
    #[arg(long, value_name = "FILE")]
    pub(crate) stdin: Option<PathBuf>,
    /// Seed every source of randomness, for a reproducible run.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
}

impl JobArgs {
    /// The limit flags.
    pub(crate) fn overrides(&self) -> LimitOverrides {
        LimitOverrides {
            timeout_ms: self.timeout_ms,
            fuel: self.fuel,
            memory_mb: self.memory_mb,
            max_output_bytes: self.max_output_bytes,
        }
    }

    /// `--context` parsed: a JSON object whose keys are safe identifiers.
    pub(crate) fn context_value(&self) -> anyhow::Result<Option<serde_json::Value>> {
        let Some(text) = &self.context else {
            return Ok(None);
        };
        let value: serde_json::Value =
            serde_json::from_str(text).context("--context is not valid JSON")?;
        let Some(obj) = value.as_object() else {
            bail!("--context must be a JSON object");
        };
        for key in obj.keys() {
            strictpy_analyzer::check_context_key(key)
                .map_err(|m| anyhow::anyhow!("--context: {m}"))?;
        }
        Ok(Some(value))
    }

    /// The bytes of `--stdin`, or none.
    pub(crate) fn stdin_bytes(&self) -> anyhow::Result<Vec<u8>> {
        match &self.stdin {
            Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display())),
            None => Ok(Vec::new()),
        }
    }
}

/// `strictpy run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// File, allowlist and policy.
    #[command(flatten)]
    common: PolicyArgs,
    /// Inputs and limits.
    #[command(flatten)]
    job: JobArgs,
    /// The guest module; defaults to `$STRICTPY_GUEST` or the one built next
    /// to this binary.
    #[arg(long, value_name = "FILE")]
    guest: Option<PathBuf>,
    /// Print where the time went (instantiate, VM init, run) to stderr.
    #[arg(long)]
    timings: bool,
    /// Build the Python VM inside this job instead of starting from the
    /// pre-initialised snapshot (to measure what the snapshot saves).
    #[arg(long)]
    no_snapshot: bool,
}

/// The parts of a config file the CLI reads.
#[derive(Debug, Default, Deserialize)]
struct PolicyFile {
    /// The `[policy]` table; other tables belong to the server.
    #[serde(default)]
    policy: Option<Policy>,
}

/// Entry point: parse, dispatch, map errors to exit codes.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => check(args),
        Command::Serve(args) => crate::serve::serve(args),
        Command::Bench(args) => crate::bench::bench(args),
        Command::Submit(args) => crate::submit::submit(args),
        Command::Function(args) => crate::function::function(args),
        Command::Token(args) => crate::token::token(args),
        Command::Soak(args) => crate::soak::soak(args),
        Command::Load(args) => crate::load::load(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("strictpy: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

pub(crate) fn read_source(file: &str) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
    } else {
        buf = std::fs::read(file).with_context(|| format!("reading {file}"))?;
    }
    Ok(buf)
}

/// Loads the policy (default, or from a TOML file) and the call's allowlist.
pub fn load_policy(
    path: Option<&Path>,
    allow: &[String],
) -> anyhow::Result<(Policy, BTreeSet<String>)> {
    let policy = match path {
        None => Policy::default(),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let file: PolicyFile =
                toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
            file.policy.unwrap_or_default()
        }
    };
    let allowlist = policy.effective_allowlist(allow)?;
    Ok((policy, allowlist))
}

/// Runs the static check; `Some(outcome)` when the source is rejected.
fn static_check(
    source: &[u8],
    policy: &Policy,
    allowlist: &BTreeSet<String>,
) -> Result<String, Vec<Violation>> {
    let violations = strictpy_analyzer::check(source, policy, allowlist);
    if !violations.is_empty() {
        return Err(violations);
    }
    // The analyzer accepted it, so it is UTF-8; drop a BOM the way Python does.
    let text = String::from_utf8_lossy(source);
    Ok(text.strip_prefix('\u{feff}').unwrap_or(&text).to_owned())
}

fn print_violations(violations: &[Violation]) {
    for v in violations {
        eprintln!("{}:{}: {}: {}", v.line, v.column, v.rule, v.message);
    }
}

fn check(args: CheckArgs) -> anyhow::Result<u8> {
    let source = read_source(&args.common.file)?;
    let (policy, allowlist) = load_policy(args.common.policy.as_deref(), &args.common.allow)?;
    let violations = strictpy_analyzer::check(&source, &policy, &allowlist);
    if args.common.json {
        let doc = serde_json::json!({ "ok": violations.is_empty(), "violations": violations });
        println!("{doc}");
    } else if violations.is_empty() {
        eprintln!("strictpy: ok");
    } else {
        print_violations(&violations);
        eprintln!("strictpy: rejected ({} violations)", violations.len());
    }
    Ok(if violations.is_empty() {
        EXIT_OK
    } else {
        EXIT_REJECTED
    })
}

/// Finds the guest module: the flag, `$STRICTPY_GUEST`, then the places the
/// Makefile puts it relative to this binary.
pub fn guest_path(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_owned());
    }
    if let Some(p) = std::env::var_os("STRICTPY_GUEST") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the strictpy binary")?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let candidates = [
        dir.join("strictpy-guest.wasm"),
        dir.join("../guest/strictpy-guest.wasm"),
        dir.join("../../target/guest/strictpy-guest.wasm"),
    ];
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "guest module not found (looked at {}); run `make guest` or set STRICTPY_GUEST",
        candidates[1].display()
    )
}

fn run(args: RunArgs) -> anyhow::Result<u8> {
    let source = read_source(&args.common.file)?;
    let (policy, allowlist) = load_policy(args.common.policy.as_deref(), &args.common.allow)?;
    let code = match static_check(&source, &policy, &allowlist) {
        Ok(code) => code,
        Err(violations) => {
            let outcome = Outcome::rejected(violations);
            report(&outcome, args.common.json, None)?;
            return Ok(EXIT_REJECTED);
        }
    };
    let context = args.job.context_value()?;
    let stdin = args.job.stdin_bytes()?;
    let limits = Limits::default().with_overrides(&args.job.overrides(), &Limits::default_max())?;
    let guest = guest_path(args.guest.as_deref())?;
    let load_started = std::time::Instant::now();
    let mut config = SandboxConfig::new(&guest);
    config.snapshot = !args.no_snapshot;
    config.preload = strictpy_sandbox::preload_for(&policy);
    let sandbox = match Sandbox::new(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("strictpy: {e}");
            return Ok(EXIT_FAILED);
        }
    };
    let load_time = load_started.elapsed();
    let job = Job {
        code,
        stdin,
        context,
        allowlist,
        limits,
        seed: args.job.seed,
        ..Job::default()
    };
    let (outcome, phases) = sandbox.run_with(&job, &CancelHandle::new());
    let timings = args.timings.then(|| {
        format!(
            "strictpy: timings: load {:.2} ms ({:?}), instantiate {:.3} ms, vm init {:.2} ms ({} fuel), run {:.2} ms ({} fuel)",
            load_time.as_secs_f64() * 1e3,
            sandbox.loaded_from(),
            phases.instantiate.as_secs_f64() * 1e3,
            phases.init.as_secs_f64() * 1e3,
            phases.init_fuel,
            phases.run.as_secs_f64() * 1e3,
            phases.run_fuel,
        )
    });
    report(&outcome, args.common.json, timings.as_deref())?;
    Ok(match outcome.status {
        Status::Succeeded => EXIT_OK,
        Status::Failed => EXIT_FAILED,
        Status::Rejected => EXIT_REJECTED,
    })
}

/// Prints an outcome: one JSON object, or the program's output plus a
/// one-line verdict on stderr.
pub(crate) fn report(outcome: &Outcome, json: bool, timings: Option<&str>) -> anyhow::Result<()> {
    if let Some(t) = timings {
        eprintln!("{t}");
    }
    if json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, outcome)?;
        writeln!(out)?;
        return Ok(());
    }
    {
        let mut out = std::io::stdout().lock();
        out.write_all(outcome.stdout.as_bytes())?;
        out.flush()?;
    }
    let mut err = std::io::stderr().lock();
    err.write_all(outcome.stderr.as_bytes())?;
    if let Some(v) = outcome.error.as_ref().and_then(|e| e.violations.as_ref()) {
        drop(err);
        print_violations(v);
        err = std::io::stderr().lock();
    }
    if let Some(result) = &outcome.result {
        writeln!(err, "strictpy: result = {result}")?;
    }
    let u = &outcome.usage;
    let usage = format!(
        "fuel {} · {:.2} ms · peak memory {:.1} MiB",
        u.fuel_consumed,
        u.wall_time_ms,
        u.memory_peak_bytes as f64 / (1024.0 * 1024.0)
    );
    let truncated = match (outcome.stdout_truncated, outcome.stderr_truncated) {
        (false, false) => "",
        (true, false) => " · stdout truncated",
        (false, true) => " · stderr truncated",
        (true, true) => " · stdout and stderr truncated",
    };
    match &outcome.error {
        None => writeln!(err, "strictpy: succeeded · {usage}{truncated}")?,
        Some(e) => writeln!(
            err,
            "strictpy: {} ({}: {}) · {usage}{truncated}",
            match outcome.status {
                Status::Rejected => "rejected",
                _ => "failed",
            },
            e.kind,
            e.message
        )?,
    }
    Ok(())
}
