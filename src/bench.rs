//! `strictpy bench`: the harness engineers run to see where a job's time and
//! memory go, next to CPython (and native RustPython and pydantic-monty, when
//! installed) measured in the same invocation, and the same hello job through
//! a real `strictpy serve` (`http.rs`). Every figure here is measured on the
//! spot; the issue-3 targets and issue 12's ratios are checked against them
//! at the end.
//!
//! Clocks: every latency is `std::time::Instant` (CLOCK_MONOTONIC) around the
//! call being measured, on the calling thread. Subprocess compute times come
//! from the interpreter's own `time.perf_counter()`.

mod external;
mod functions;
mod http;
mod monty;
mod snippets;
mod stats;
mod table;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use strictpy_sandbox::{CancelHandle, Job, LoadedFrom, PoolConfig, Sandbox, SandboxConfig};
use strictpy_types::{Limits, Policy, Status};

use external::Interpreter;
use snippets::{CHECK_SMALL, EMPTY, HELLO, SPIN, SUITE};
use stats::{Summary, geomean, median, ms, summarise};

/// Lines in the large static-check input.
const CHECK_LARGE_LINES: usize = 1000;

/// `strictpy bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Hello jobs timed for the latency percentiles (after warm-up).
    #[arg(long, default_value_t = 1000)]
    iterations: usize,
    /// Concurrency levels for the throughput rows, comma-separated. The pooled
    /// sandbox is sized to the largest.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    concurrency: Vec<usize>,
    /// Seconds each throughput level runs for.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Runs of each micro-suite snippet per runner; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Small counts everywhere, for a smoke test (a few seconds once the
    /// guest is cached). The figures are then rough.
    #[arg(long)]
    quick: bool,
    /// Print one JSON document on stdout instead of the table (and no
    /// progress bar).
    #[arg(long)]
    json: bool,
    /// Sections to leave out, comma-separated.
    #[arg(long, value_delimiter = ',', value_enum)]
    skip: Vec<Section>,
    /// The guest module; defaults to `$STRICTPY_GUEST` or the one built next
    /// to this binary.
    #[arg(long, value_name = "FILE")]
    guest: Option<PathBuf>,
    /// The CPython to compare against.
    #[arg(long, value_name = "PROGRAM", default_value = "python3")]
    python: PathBuf,
    /// A native RustPython binary to compare against; skipped when absent.
    #[arg(long, value_name = "PROGRAM", default_value = "rustpython")]
    rustpython: PathBuf,
    /// The store of the HTTP section's server: `postgres://...` (a database
    /// of its own, already running), or SQLite in a temporary data dir when
    /// omitted.
    #[arg(long, value_name = "URL")]
    store_url: Option<String>,
}

/// The parts of the run that `--skip` can leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// Hello and empty job latency.
    Latency,
    /// Subprocess spawns of the reference interpreters for the hello job.
    Spawn,
    /// Jobs per second at each concurrency.
    Throughput,
    /// The fuel-per-second calibration.
    Fuel,
    /// RSS per concurrent job.
    Rss,
    /// The CPU micro-suite.
    Suite,
    /// The suite's fuel-off runs (they need a second precompiled guest).
    FuelOff,
    /// The static check timings.
    Check,
    /// The import tax: a job that only imports each allowable module.
    Imports,
    /// A stored function's invocation against the same source as a job.
    Functions,
    /// pydantic-monty's fresh-session hello and snippets (when importable).
    Monty,
    /// The hello job through a real `strictpy serve` child.
    Http,
}

/// How many of everything, resolved from the flags.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Timed hello jobs.
    pub iterations: usize,
    /// Untimed hello jobs first, so caches, pool slots and page tables are warm.
    pub warmup: usize,
    /// Timed `python3 -c 'print("hi")'` spawns.
    pub spawns: usize,
    /// Throughput concurrency levels.
    pub concurrency: Vec<usize>,
    /// Seconds per throughput level.
    pub seconds: f64,
    /// Runs per snippet per runner.
    pub repeat: usize,
    /// Wall-clock limit of the spin job that calibrates fuel, in ms.
    pub spin_ms: u64,
    /// How long each RSS job holds its instance, in ms.
    pub hold_ms: u64,
    /// Timed static checks of the small file (the large one gets a fifth).
    pub check_iterations: usize,
    /// Whether `--quick` was given.
    pub quick: bool,
}

impl Plan {
    fn from_args(args: &BenchArgs) -> anyhow::Result<Self> {
        let mut concurrency = args.concurrency.clone();
        concurrency.sort_unstable();
        concurrency.dedup();
        if concurrency.is_empty() || concurrency[0] == 0 {
            bail!("--concurrency needs levels of at least 1");
        }
        if args.iterations == 0 || args.repeat == 0 {
            bail!("--iterations and --repeat must be at least 1");
        }
        if !(args.seconds > 0.0 && args.seconds.is_finite()) {
            bail!("--seconds must be positive");
        }
        Ok(if args.quick {
            Self {
                iterations: args.iterations.min(50),
                warmup: 5,
                spawns: 5,
                concurrency,
                seconds: args.seconds.min(0.25),
                repeat: 1,
                spin_ms: 200,
                hold_ms: 200,
                check_iterations: 20,
                quick: true,
            }
        } else {
            Self {
                iterations: args.iterations,
                warmup: 50,
                spawns: (args.iterations / 20).clamp(20, 100),
                concurrency,
                seconds: args.seconds,
                repeat: args.repeat,
                spin_ms: 1000,
                hold_ms: 500,
                check_iterations: args.iterations,
                quick: false,
            }
        })
    }

    fn max_concurrency(&self) -> usize {
        self.concurrency.iter().copied().max().unwrap_or(1)
    }
}

/// The machine and tools the run used.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub nproc: usize,
    /// The first `model name` in /proc/cpuinfo.
    pub cpu: String,
    /// This strictpy's version.
    pub strictpy: String,
    /// CPython's `--version` and path, if it was found.
    pub python3: Option<String>,
    /// Native RustPython's `--version` and path, if it was found.
    pub rustpython: Option<String>,
    /// Whether `python3` can import `pydantic_monty` (its version is in
    /// [`Report::monty`]).
    pub pydantic_monty: bool,
    /// The 1-minute load average when the run started: other work on the
    /// machine skews every figure, so the report says how busy it was.
    pub load_start: Option<f64>,
    /// The 1-minute load average when the run ended.
    pub load_end: Option<f64>,
}

/// Loading one sandbox configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    /// Wall time of `Sandbox::new`.
    pub ms: f64,
    /// `cache` or `compiled`.
    pub from: &'static str,
}

/// Latency of one kind of in-process job.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Whole-call latency of `Sandbox::run_with`, host side.
    pub total: Summary,
    /// `Phases::instantiate`: store creation to a ready instance.
    pub instantiate: Summary,
    /// `Phases::run`: the guest's `_start`.
    pub run: Summary,
    /// Dropping the spent instance: the pool slot's reset. Part of `total`;
    /// the server pays it after the job's answer is on its way
    /// (`Sandbox::run_deferred`).
    pub reset: Summary,
    /// Fuel the job burned (the same every run).
    pub fuel: u64,
}

/// One throughput level.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Threads running hello jobs back to back.
    pub concurrency: usize,
    /// Jobs completed.
    pub jobs: u64,
    /// Jobs that did not succeed (should be zero).
    pub failed: u64,
    /// Wall seconds from start until the last thread finished.
    pub seconds: f64,
    /// `jobs / seconds`.
    pub jobs_per_s: f64,
}

/// The fuel/time calibration.
#[derive(Debug, Clone, Serialize)]
pub struct FuelRate {
    /// Fuel the spin job burned before its deadline stopped it.
    pub fuel: u64,
    /// Its wall time, in seconds.
    pub seconds: f64,
    /// `fuel / seconds`.
    pub fuel_per_s: f64,
}

/// RSS while several jobs hold instances at once.
#[derive(Debug, Clone, Serialize)]
pub struct Rss {
    /// What each job ran.
    pub job: &'static str,
    /// Jobs held running at once.
    pub jobs: usize,
    /// VmRSS just before the jobs started, in MiB.
    pub before_mib: f64,
    /// The highest VmRSS sampled while they ran, in MiB.
    pub peak_mib: f64,
    /// `(peak - before) / jobs`, in MiB.
    pub per_job_mib: f64,
    /// The largest guest linear memory any of the jobs reached, in MiB.
    pub guest_memory_mib: f64,
}

/// One snippet of the micro-suite across runners. Times are medians in ms.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteRow {
    /// The snippet's name.
    pub name: &'static str,
    /// Sandbox with fuel metering, whole job.
    pub fuel_on_ms: f64,
    /// Sandbox without fuel metering, whole job.
    pub fuel_off_ms: Option<f64>,
    /// Fuel burned with metering on.
    pub fuel: u64,
    /// `fuel / fuel_on seconds`.
    pub fuel_per_s: f64,
    /// `python3 -I -S -c`, spawn to exit.
    pub cpython_spawn_ms: Option<f64>,
    /// CPython's own compile-and-run time of the snippet.
    pub cpython_compute_ms: Option<f64>,
    /// Native RustPython, spawn to exit.
    pub rustpython_spawn_ms: Option<f64>,
    /// Native RustPython's own compile-and-run time of the snippet.
    pub rustpython_compute_ms: Option<f64>,
    /// pydantic-monty, one fresh session (see [`monty`]); `None` when it is
    /// absent or cannot run the snippet.
    pub monty_ms: Option<f64>,
    /// Whether every runner printed the same output.
    pub outputs_agree: bool,
}

/// Timings of the static check (or the bare parse) on one input.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    /// `small`, `1000 lines`, or `1000 lines, bare parse`.
    pub name: String,
    /// Lines in the input.
    pub lines: usize,
    /// Bytes in the input.
    pub bytes: usize,
    /// Per-call latency.
    pub latency: Summary,
}

/// The import tax of one module: a job that only imports it, against the
/// empty job.
#[derive(Debug, Clone, Serialize)]
pub struct ImportRow {
    /// The module.
    pub module: String,
    /// Fuel of `import <module>` (the same every run).
    pub fuel: u64,
    /// `fuel` minus the empty job's fuel: what allowing it costs a job.
    pub tax_fuel: u64,
    /// Median whole-job wall time, in ms.
    pub ms: f64,
}

/// One issue-3 target, checked against this run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is measured.
    pub name: &'static str,
    /// The goal, as text.
    pub goal: &'static str,
    /// The measured value, as text; `None` when the run did not measure it.
    pub measured: Option<String>,
    /// Whether it is met; `None` when not measured.
    pub met: Option<bool>,
}

/// One of issue 12's targets: a ratio of two figures of this run.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// What over what.
    pub name: &'static str,
    /// The goal, as text.
    pub goal: &'static str,
    /// The ratio; `None` when the run did not measure both sides.
    pub value: Option<f64>,
    /// Whether it is met; `None` when not measured.
    pub met: Option<bool>,
}

/// Everything one run measured: the `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// The counts it used.
    pub plan: Plan,
    /// Loading the fuel-on pooled sandbox.
    pub load_fuel_on: Load,
    /// Loading the fuel-off pooled sandbox, when the suite ran fuel-off.
    pub load_fuel_off: Option<Load>,
    /// `print("hi")` in-process.
    pub hello: Option<Latency>,
    /// `pass` in-process: the cost of starting a job.
    pub empty: Option<Latency>,
    /// `python3 -I -S -c 'print("hi")'`, spawn to exit.
    pub python_hello_spawn: Option<Summary>,
    /// Native `rustpython -c 'print("hi")'`, spawn to exit.
    pub rustpython_hello_spawn: Option<Summary>,
    /// Throughput at each level.
    pub throughput: Vec<Throughput>,
    /// Fuel per second.
    pub fuel_rate: Option<FuelRate>,
    /// RSS per concurrent job.
    pub rss: Vec<Rss>,
    /// The micro-suite.
    pub suite: Vec<SuiteRow>,
    /// The static check.
    pub check: Vec<CheckRow>,
    /// The bare parse of the 1000-line file by the check's parser, timed
    /// interleaved with the check of the same file on the same threads.
    pub parse: Option<CheckRow>,
    /// pydantic-monty, when `python3` can import it.
    pub monty: Option<monty::Monty>,
    /// The hello job through a real `strictpy serve`.
    pub http: Option<http::Http>,
    /// The import tax of each allowable module.
    pub imports: Vec<ImportRow>,
    /// Stored-function invocations against the same source as jobs.
    pub functions: Vec<functions::FunctionRow>,
    /// The issue-3 targets.
    pub targets: Vec<Target>,
    /// Issue 12's targets, each a ratio inside this run.
    pub ratios: Vec<Ratio>,
}

/// Entry point of `strictpy bench`.
pub fn bench(args: BenchArgs) -> anyhow::Result<u8> {
    let plan = Plan::from_args(&args)?;
    let skip = |s: Section| args.skip.contains(&s);
    let guest = crate::cli::guest_path(args.guest.as_deref())?;

    let python = Interpreter::probe(&args.python, &["-I", "-S"]);
    let rustpython = Interpreter::probe(&args.rustpython, &["-I", "-S"]);
    let machine = Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu: cpu_model(),
        strictpy: env!("CARGO_PKG_VERSION").to_owned(),
        python3: python.as_ref().map(Interpreter::describe),
        rustpython: rustpython.as_ref().map(Interpreter::describe),
        pydantic_monty: !skip(Section::Monty)
            && python
                .as_ref()
                .is_some_and(|p| monty::available(&p.program)),
        load_start: load_average(),
        load_end: None,
    };

    let pool = PoolConfig {
        max_instances: u32::try_from(plan.max_concurrency()).context("--concurrency too large")?,
        max_memory_mb: Limits::default().memory_mb,
    };
    let with_fuel_off = !skip(Section::Suite) && !skip(Section::FuelOff);

    let progress = progress_bar(
        args.json,
        total_steps(
            &plan,
            &skip,
            usize::from(python.is_some()) + usize::from(rustpython.is_some()),
        ),
    );
    progress.set_message("loading the guest (the first run compiles it)");
    let (sandbox, load_fuel_on) = load(&guest, pool, true)?;
    progress.inc(1);
    let fuel_off = if with_fuel_off {
        progress.set_message("loading the fuel-off guest");
        let (s, l) = load(&guest, pool, false)?;
        progress.inc(1);
        Some((s, l))
    } else {
        None
    };

    let mut report = Report {
        machine,
        plan: plan.clone(),
        load_fuel_on,
        load_fuel_off: fuel_off.as_ref().map(|(_, l)| l.clone()),
        hello: None,
        empty: None,
        python_hello_spawn: None,
        rustpython_hello_spawn: None,
        throughput: Vec::new(),
        fuel_rate: None,
        rss: Vec::new(),
        suite: Vec::new(),
        check: Vec::new(),
        parse: None,
        monty: None,
        http: None,
        imports: Vec::new(),
        functions: Vec::new(),
        targets: Vec::new(),
        ratios: Vec::new(),
    };

    if !skip(Section::Latency) {
        progress.set_message("warm-up");
        for _ in 0..plan.warmup {
            run_ok(&sandbox, &job(HELLO))?;
            progress.inc(1);
        }
        progress.set_message("hello job latency");
        report.hello = Some(latency(&sandbox, HELLO, plan.iterations, &progress)?);
        progress.set_message("empty job latency");
        report.empty = Some(latency(&sandbox, EMPTY, plan.iterations, &progress)?);
    }

    if !skip(Section::Spawn) {
        if let Some(py) = &python {
            progress.set_message("python3 hello spawns");
            report.python_hello_spawn = Some(spawn_latency(py, plan.spawns, &progress)?);
        }
        if let Some(rp) = &rustpython {
            progress.set_message("rustpython hello spawns");
            report.rustpython_hello_spawn = Some(spawn_latency(rp, plan.spawns, &progress)?);
        }
    }

    if !skip(Section::Throughput) {
        for &c in &plan.concurrency {
            progress.set_message(format!("throughput at concurrency {c}"));
            report
                .throughput
                .push(throughput(&sandbox, c, plan.seconds)?);
            progress.inc(1);
        }
    }

    if !skip(Section::Fuel) {
        progress.set_message("fuel per second");
        report.fuel_rate = Some(fuel_rate(&sandbox, plan.spin_ms)?);
        progress.inc(1);
    }

    if !skip(Section::Rss) {
        let k = plan.max_concurrency();
        let hold_s = plan.hold_ms as f64 / 1000.0;
        let idle = format!("import time\nprint(\"hi\")\ntime.sleep({hold_s})\n");
        let busy = format!(
            "import time\ndata = [str(i) for i in range(100000)]\ntime.sleep({hold_s})\nprint(len(data))\n"
        );
        progress.set_message("RSS per concurrent job");
        report
            .rss
            .push(rss(&sandbox, "hello + sleep", &idle, k, plan.hold_ms)?);
        progress.inc(1);
        report.rss.push(rss(
            &sandbox,
            "100k-item list + sleep",
            &busy,
            k,
            plan.hold_ms,
        )?);
        progress.inc(1);
    }

    if report.machine.pydantic_monty
        && let Some(py) = &python
    {
        progress.set_message("pydantic-monty");
        let snippets = if skip(Section::Suite) { &[][..] } else { SUITE };
        report.monty = Some(monty::run(
            &py.program,
            plan.warmup,
            plan.iterations,
            snippets,
            plan.repeat,
        )?);
        progress.inc(1);
    }

    if !skip(Section::Suite) {
        let runners = SuiteRunners {
            fuel_on: &sandbox,
            fuel_off: fuel_off.as_ref().map(|(s, _)| s),
            python: python.as_ref(),
            rustpython: rustpython.as_ref(),
            monty: report.monty.as_ref(),
        };
        for snippet in SUITE {
            progress.set_message(format!("micro-suite: {}", snippet.name));
            report
                .suite
                .push(suite_row(&runners, snippet, plan.repeat, &progress)?);
        }
    }

    if !skip(Section::Check) {
        progress.set_message("static check");
        let large = snippets::check_source(CHECK_LARGE_LINES);
        report.check.push(check_latency(
            "small",
            CHECK_SMALL,
            plan.check_iterations,
            &progress,
        )?);
        let (check, parse) =
            check_and_parse(&large, (plan.check_iterations / 5).max(5), &progress)?;
        report.check.push(check);
        report.parse = Some(parse);
    }

    if !skip(Section::Imports) {
        progress.set_message("import tax");
        report.imports = import_tax(&sandbox, plan.repeat, &progress)?;
    }

    if !skip(Section::Functions) {
        progress.set_message("stored functions: invocation vs job");
        report.functions = functions::rows(&sandbox, plan.repeat.max(5), &progress)?;
    }

    // Last, with the in-process sandboxes gone, so the server has the
    // machine to itself (and once its signal handler is installed, Ctrl-C
    // ends the section rather than the process).
    drop(fuel_off);
    drop(sandbox);
    if !skip(Section::Http) {
        progress.set_message("hello job through HTTP (a strictpy serve child)");
        let plan = http::HttpPlan {
            guest: guest.clone(),
            store_url: args.store_url.clone(),
            warmup: plan.warmup,
            iterations: plan.iterations,
            seconds: plan.seconds,
        };
        match http::run(&plan) {
            Ok(h) => report.http = Some(h),
            Err(e) if e.is::<http::Interrupted>() => {
                progress.finish_and_clear();
                eprintln!("strictpy bench: {e}");
                return Ok(130);
            }
            Err(e) => return Err(e.context("the HTTP section")),
        }
        progress.inc(1);
    }

    progress.finish_and_clear();
    report.machine.load_end = load_average();
    report.targets = targets(&report);
    report.ratios = ratios(&report);

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table::render(&report));
    }
    Ok(0)
}

/// Everything that runs the micro-suite.
struct SuiteRunners<'a> {
    /// The pooled sandbox with fuel metering.
    fuel_on: &'a Sandbox,
    /// The pooled sandbox without, if loaded.
    fuel_off: Option<&'a Sandbox>,
    /// CPython, if found.
    python: Option<&'a Interpreter>,
    /// Native RustPython, if found.
    rustpython: Option<&'a Interpreter>,
    /// pydantic-monty's runs of the suite (made before the suite, in one
    /// driver process), if it is importable.
    monty: Option<&'a monty::Monty>,
}

/// How many progress steps the plan takes, so the bar has a length.
fn total_steps(plan: &Plan, skip: &dyn Fn(Section) -> bool, interpreters: usize) -> u64 {
    let mut n = 2;
    if !skip(Section::Latency) {
        n += plan.warmup + 2 * plan.iterations;
    }
    if !skip(Section::Spawn) {
        n += plan.spawns * interpreters;
    }
    if !skip(Section::Throughput) {
        n += plan.concurrency.len();
    }
    if !skip(Section::Fuel) {
        n += 1;
    }
    if !skip(Section::Rss) {
        n += 2;
    }
    if !skip(Section::Suite) {
        n += SUITE.len() * plan.repeat * 3;
    }
    if !skip(Section::Check) {
        // The 1000-line file's check and bare parse, interleaved.
        n += plan.check_iterations + 2 * (plan.check_iterations / 5).max(5);
    }
    if !skip(Section::Imports) {
        n += (Policy::default().allowable_modules.len() + 1) * plan.repeat;
    }
    // pydantic-monty (when importable) and the HTTP section: one step each.
    n += usize::from(!skip(Section::Monty)) + usize::from(!skip(Section::Http));
    if !skip(Section::Functions) {
        n += functions::programs().len() * plan.repeat.max(5) * 2;
    }
    n as u64
}

/// A progress bar on stderr; hidden for `--json` (and by indicatif itself
/// when stderr is not a terminal).
fn progress_bar(json: bool, len: u64) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Builds one pooled sandbox and times it.
fn load(guest: &std::path::Path, pool: PoolConfig, fuel: bool) -> anyhow::Result<(Sandbox, Load)> {
    let mut config = SandboxConfig::new(guest);
    config.fuel_metering = fuel;
    config.pool = Some(pool);
    let started = Instant::now();
    let sandbox = Sandbox::new(&config)
        .with_context(|| format!("loading the guest (fuel metering {fuel})"))?;
    let load = Load {
        ms: ms(started.elapsed()),
        from: match sandbox.loaded_from() {
            LoadedFrom::Cache => "cache",
            LoadedFrom::Compiled => "compiled",
        },
    };
    Ok((sandbox, load))
}

/// A job with the default limits and allowlist.
fn job(code: &str) -> Job {
    Job {
        code: code.to_owned(),
        allowlist: Policy::default().allowed_modules,
        limits: Limits::default(),
        ..Job::default()
    }
}

/// Runs a job that must succeed, and returns its stdout and fuel.
fn run_ok(sandbox: &Sandbox, job: &Job) -> anyhow::Result<(String, u64)> {
    let outcome = sandbox.run(job);
    if outcome.status != Status::Succeeded {
        bail!(
            "a benchmark job failed: {:?} {}",
            outcome.error.as_ref().map(|e| e.kind),
            outcome
                .error
                .as_ref()
                .map(|e| e.message.as_str())
                .unwrap_or_default()
        );
    }
    Ok((outcome.stdout, outcome.usage.fuel_consumed))
}

/// Times `iterations` runs of `code`, whole call and phases.
fn latency(
    sandbox: &Sandbox,
    code: &str,
    iterations: usize,
    progress: &ProgressBar,
) -> anyhow::Result<Latency> {
    let job = job(code);
    let mut total = Vec::with_capacity(iterations);
    let mut instantiate = Vec::with_capacity(iterations);
    let mut run = Vec::with_capacity(iterations);
    let mut reset = Vec::with_capacity(iterations);
    let mut fuel = 0;
    for _ in 0..iterations {
        let cancel = CancelHandle::new();
        let started = Instant::now();
        let (outcome, phases, spent) = sandbox.run_deferred(&job, &cancel);
        let answered = Instant::now();
        drop(spent);
        let done = Instant::now();
        total.push(done - started);
        reset.push(done - answered);
        if outcome.status != Status::Succeeded {
            bail!("the {code:?} job failed: {:?}", outcome.error);
        }
        instantiate.push(phases.instantiate);
        run.push(phases.run);
        fuel = outcome.usage.fuel_consumed;
        progress.inc(1);
    }
    Ok(Latency {
        total: summarise(&total),
        instantiate: summarise(&instantiate),
        run: summarise(&run),
        reset: summarise(&reset),
        fuel,
    })
}

/// Times `n` spawns of `print("hi")` after two untimed ones.
fn spawn_latency(
    interp: &Interpreter,
    n: usize,
    progress: &ProgressBar,
) -> anyhow::Result<Summary> {
    for _ in 0..2 {
        interp.run(HELLO)?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let (d, _) = interp.run(HELLO)?;
        samples.push(d);
        progress.inc(1);
    }
    Ok(summarise(&samples))
}

/// Hello jobs back to back on `c` threads sharing one sandbox, for `seconds`.
fn throughput(sandbox: &Sandbox, c: usize, seconds: f64) -> anyhow::Result<Throughput> {
    let job = job(HELLO);
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(seconds);
    std::thread::scope(|scope| {
        for _ in 0..c {
            scope.spawn(|| {
                while Instant::now() < end {
                    let outcome = sandbox.run(&job);
                    if outcome.status == Status::Succeeded {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let jobs = done.load(Ordering::Relaxed);
    Ok(Throughput {
        concurrency: c,
        jobs,
        failed: failed.load(Ordering::Relaxed),
        seconds: elapsed,
        jobs_per_s: jobs as f64 / elapsed,
    })
}

/// Spins until the deadline and divides the fuel burned by the wall time.
fn fuel_rate(sandbox: &Sandbox, spin_ms: u64) -> anyhow::Result<FuelRate> {
    let mut job = job(SPIN);
    job.limits.timeout_ms = spin_ms;
    let outcome = sandbox.run(&job);
    if outcome.status == Status::Succeeded || outcome.usage.fuel_consumed == 0 {
        bail!("the spin job did not run until its deadline");
    }
    let seconds = outcome.usage.wall_time_ms / 1000.0;
    Ok(FuelRate {
        fuel: outcome.usage.fuel_consumed,
        seconds,
        fuel_per_s: outcome.usage.fuel_consumed as f64 / seconds,
    })
}

/// Reads this process's resident set size from /proc/self/status, in bytes.
fn vm_rss() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

/// Holds `k` jobs running at once (each sleeps `hold_ms` inside the guest)
/// and samples VmRSS every millisecond meanwhile. The baseline is taken after
/// earlier sections warmed the pool, so it already includes the shared
/// compiled code and the snapshot image; what grows is per-job memory.
fn rss(
    sandbox: &Sandbox,
    label: &'static str,
    code: &str,
    k: usize,
    hold_ms: u64,
) -> anyhow::Result<Rss> {
    let job = job(code);
    // One untimed round first, so each thread's one-off allocations (its job
    // runtime, first-touch of pool slots) are not counted as per-job memory.
    run_ok(sandbox, &job)?;
    let before = vm_rss()?;
    let mut peak = before;
    let guest_peak = AtomicU64::new(0);
    let mut first_error = None;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..k)
            .map(|_| {
                scope.spawn(|| {
                    let outcome = sandbox.run(&job);
                    guest_peak.fetch_max(outcome.usage.memory_peak_bytes, Ordering::Relaxed);
                    outcome.status == Status::Succeeded
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_millis(hold_ms * 4 + 2000);
        while handles.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
            if let Ok(now) = vm_rss() {
                peak = peak.max(now);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for h in handles {
            if !matches!(h.join(), Ok(true)) && first_error.is_none() {
                first_error = Some(format!("an RSS job ({label}) failed"));
            }
        }
    });
    if let Some(e) = first_error {
        bail!(e);
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    Ok(Rss {
        job: label,
        jobs: k,
        before_mib: mib(before),
        peak_mib: mib(peak),
        per_job_mib: mib(peak.saturating_sub(before)) / k as f64,
        guest_memory_mib: mib(guest_peak.load(Ordering::Relaxed)),
    })
}

/// Runs one snippet `repeat` times in every runner and keeps the medians.
fn suite_row(
    runners: &SuiteRunners<'_>,
    snippet: &snippets::Snippet,
    repeat: usize,
    progress: &ProgressBar,
) -> anyhow::Result<SuiteRow> {
    let job = job(snippet.code);
    let mut on = Vec::new();
    let mut off = Vec::new();
    let mut fuel = 0;
    let (mut py_spawn, mut py_compute) = (Vec::new(), Vec::new());
    let (mut rp_spawn, mut rp_compute) = (Vec::new(), Vec::new());
    let mut outputs = Vec::new();
    for _ in 0..repeat {
        let started = Instant::now();
        let (out, f) = run_ok(runners.fuel_on, &job)
            .with_context(|| format!("micro-suite {} (fuel on)", snippet.name))?;
        on.push(ms(started.elapsed()));
        fuel = f;
        outputs.push(out);
        progress.inc(1);
        if let Some(sandbox) = runners.fuel_off {
            let started = Instant::now();
            let (out, _) = run_ok(sandbox, &job)
                .with_context(|| format!("micro-suite {} (fuel off)", snippet.name))?;
            off.push(ms(started.elapsed()));
            outputs.push(out);
        }
        if let Some(py) = runners.python {
            let (t, out) = py.run_timed(snippet.code)?;
            py_spawn.push(ms(t.spawn));
            py_compute.extend(t.compute.map(ms));
            outputs.push(out);
        }
        progress.inc(1);
        if let Some(rp) = runners.rustpython {
            // A native RustPython that cannot run a snippet is reported as
            // missing for it rather than ending the whole run.
            if let Ok((t, out)) = rp.run_timed(snippet.code) {
                rp_spawn.push(ms(t.spawn));
                rp_compute.extend(t.compute.map(ms));
                outputs.push(out);
            }
        }
        progress.inc(1);
    }
    // pydantic-monty's output joins the comparison only for snippets it ran.
    let monty = runners
        .monty
        .and_then(|m| m.suite.iter().find(|s| s.name == snippet.name))
        .filter(|s| s.ms.is_some());
    outputs.extend(monty.and_then(|s| s.output.clone()));
    let fuel_on_ms = median(&on).unwrap_or_default();
    Ok(SuiteRow {
        name: snippet.name,
        fuel_on_ms,
        fuel_off_ms: median(&off),
        fuel,
        fuel_per_s: fuel as f64 / (fuel_on_ms / 1000.0),
        cpython_spawn_ms: median(&py_spawn),
        cpython_compute_ms: median(&py_compute),
        rustpython_spawn_ms: median(&rp_spawn),
        rustpython_compute_ms: median(&rp_compute),
        monty_ms: monty.and_then(|s| s.ms),
        outputs_agree: outputs.windows(2).all(|w| w[0] == w[1]),
    })
}

/// Times the static check on `source`, after a few untimed calls.
fn check_latency(
    name: &str,
    source: &str,
    iterations: usize,
    progress: &ProgressBar,
) -> anyhow::Result<CheckRow> {
    let policy = Policy::default();
    let allowlist = policy.effective_allowlist(&[])?;
    let violations = strictpy_analyzer::check(source.as_bytes(), &policy, &allowlist);
    if !violations.is_empty() {
        bail!(
            "the {name} static-check input is rejected: {}",
            violations[0].message
        );
    }
    for _ in 0..5 {
        std::hint::black_box(strictpy_analyzer::check(
            source.as_bytes(),
            &policy,
            &allowlist,
        ));
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        std::hint::black_box(strictpy_analyzer::check(
            std::hint::black_box(source.as_bytes()),
            &policy,
            &allowlist,
        ));
        samples.push(started.elapsed());
        progress.inc(1);
    }
    Ok(CheckRow {
        name: name.to_owned(),
        lines: source.lines().count(),
        bytes: source.len(),
        latency: summarise(&samples),
    })
}

/// Times the check of `source` and its bare parse
/// ([`strictpy_analyzer::bare_parse`]) interleaved, one of each per round,
/// so both see the same machine: both hand the source to the analyzer's
/// worker threads and wait for the answer, so they differ only in the work
/// done there.
fn check_and_parse(
    source: &str,
    iterations: usize,
    progress: &ProgressBar,
) -> anyhow::Result<(CheckRow, CheckRow)> {
    let policy = Policy::default();
    let allowlist = policy.effective_allowlist(&[])?;
    let check = || strictpy_analyzer::check(source.as_bytes(), &policy, &allowlist);
    let parse = || strictpy_analyzer::bare_parse(std::hint::black_box(source));
    if let Some(v) = check().first() {
        bail!(
            "the 1000-line static-check input is rejected: {}",
            v.message
        );
    }
    if parse() != Some(0) {
        bail!("the bare parse of the 1000-line input did not succeed");
    }
    for _ in 0..5 {
        std::hint::black_box((check(), parse()));
    }
    let (mut checks, mut parses) = (
        Vec::with_capacity(iterations),
        Vec::with_capacity(iterations),
    );
    for _ in 0..iterations {
        let started = Instant::now();
        std::hint::black_box(check());
        checks.push(started.elapsed());
        progress.inc(1);
        let started = Instant::now();
        std::hint::black_box(parse());
        parses.push(started.elapsed());
        progress.inc(1);
    }
    let row = |name: &str, samples: &[Duration]| CheckRow {
        name: name.to_owned(),
        lines: source.lines().count(),
        bytes: source.len(),
        latency: summarise(samples),
    };
    Ok((
        row("1000 lines", &checks),
        row("1000 lines, bare parse", &parses),
    ))
}

/// The 1-minute load average from /proc/loadavg.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The first CPU model name in /proc/cpuinfo.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Runs a job that only imports each allowable module, `repeat` times, and
/// an empty job to subtract: the import tax per module.
fn import_tax(
    sandbox: &Sandbox,
    repeat: usize,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<ImportRow>> {
    let timed = |j: &Job| -> anyhow::Result<(u64, f64)> {
        let mut fuel = 0;
        let mut times = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let started = Instant::now();
            fuel = run_ok(sandbox, j)?.1;
            times.push(ms(started.elapsed()));
            progress.inc(1);
        }
        Ok((fuel, median(&times).unwrap_or_default()))
    };
    let (empty_fuel, _) = timed(&job(EMPTY))?;
    let mut rows = Vec::new();
    for module in Policy::default().allowable_modules {
        let mut j = job(&format!("import {module}\n"));
        j.allowlist.insert(module.clone());
        let (fuel, ms) = timed(&j)?;
        rows.push(ImportRow {
            tax_fuel: fuel.saturating_sub(empty_fuel),
            module,
            fuel,
            ms,
        });
    }
    Ok(rows)
}

/// Checks the issue-3 targets against the report.
fn targets(r: &Report) -> Vec<Target> {
    let mut out = Vec::new();
    let hello_p50 = r.hello.as_ref().map(|h| h.total.p50_ms);
    out.push(Target {
        name: "hello job p50, in-process",
        goal: "<= 0.5 ms",
        measured: hello_p50.map(|v| format!("{v:.3} ms")),
        met: hello_p50.map(|v| v <= 0.5),
    });
    let speedup = match (hello_p50, &r.python_hello_spawn) {
        (Some(h), Some(py)) if h > 0.0 => Some(py.p50_ms / h),
        _ => None,
    };
    out.push(Target {
        name: "hello vs python3 -I -S spawn (p50)",
        goal: ">= 15x faster",
        measured: speedup.map(|v| format!("{v:.1}x")),
        met: speedup.map(|v| v >= 15.0),
    });
    let best = r
        .throughput
        .iter()
        .max_by(|a, b| a.jobs_per_s.total_cmp(&b.jobs_per_s));
    out.push(Target {
        name: "trivial jobs/s in-process (best level)",
        goal: ">= 1500 jobs/s on 2 cores",
        measured: best.map(|t| format!("{:.0}/s at c={}", t.jobs_per_s, t.concurrency)),
        met: best.map(|t| t.jobs_per_s >= 1500.0),
    });
    let rp_ratios: Vec<f64> = r
        .suite
        .iter()
        .filter_map(|s| s.rustpython_compute_ms.map(|rp| s.fuel_on_ms / rp))
        .collect();
    let rp = if rp_ratios.len() == r.suite.len() {
        geomean(&rp_ratios)
    } else {
        None
    };
    out.push(Target {
        name: "micro-suite fuel-on vs native RustPython",
        goal: "<= 1.3x (geomean)",
        measured: rp.map(|v| format!("{v:.2}x")),
        met: rp.map(|v| v <= 1.3),
    });
    let large = r.check.iter().find(|c| c.lines >= CHECK_LARGE_LINES);
    out.push(Target {
        name: "static check, 1000 lines (p50)",
        goal: "<= 1 ms",
        measured: large.map(|c| format!("{:.3} ms", c.latency.p50_ms)),
        met: large.map(|c| c.latency.p50_ms <= 1.0),
    });
    let worst = r.imports.iter().max_by_key(|i| i.tax_fuel);
    out.push(Target {
        name: "import tax of the worst allowable module",
        goal: "<= 1 M fuel",
        measured: worst.map(|i| format!("{} {:.2} M", i.module, i.tax_fuel as f64 / 1e6)),
        met: worst.map(|i| i.tax_fuel <= 1_000_000),
    });
    let rss = r.rss.first().map(|x| x.per_job_mib);
    out.push(Target {
        name: "extra RSS per concurrent job (hello + sleep)",
        goal: "<= 20 MiB",
        measured: rss.map(|v| format!("{v:.2} MiB")),
        met: rss.map(|v| v <= 20.0),
    });
    out
}

/// Issue 12's targets, each a ratio of two figures of this run.
fn ratios(r: &Report) -> Vec<Ratio> {
    let ratio = |name, goal, a: Option<f64>, b: Option<f64>, ok: fn(f64) -> bool| {
        let value = match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        Ratio {
            name,
            goal,
            value,
            met: value.map(ok),
        }
    };
    let hello = r.hello.as_ref().map(|h| h.total.p50_ms);
    let http = r.http.as_ref();
    let in_process = |c: usize| {
        r.throughput
            .iter()
            .find(|t| t.concurrency == c)
            .map(|t| t.jobs_per_s)
    };
    let parse = r.parse.as_ref().map(|p| p.latency.p50_ms);
    let check = r
        .check
        .iter()
        .find(|c| c.lines >= CHECK_LARGE_LINES)
        .map(|c| c.latency.p50_ms);
    vec![
        ratio(
            "hello p50 / pydantic-monty fresh-session hello p50",
            "<= 2",
            hello,
            r.monty.as_ref().map(|m| m.hello.p50_ms),
            |v| v <= 2.0,
        ),
        ratio(
            "HTTP wait:true hello p50 (1 conn) / in-process hello p50",
            "<= 1.5",
            http.map(|h| h.latency.p50_ms),
            hello,
            |v| v <= 1.5,
        ),
        ratio(
            "HTTP wait:true hello p99 (1 conn) / in-process hello p50",
            "<= 3",
            http.map(|h| h.latency.p99_ms),
            hello,
            |v| v <= 3.0,
        ),
        ratio(
            "HTTP jobs/s (4 conns) / in-process jobs/s at the server's workers",
            ">= 0.70",
            http.map(|h| h.throughput.jobs_per_s),
            http.and_then(|h| in_process(h.workers)),
            |v| v >= 0.70,
        ),
        ratio(
            "in-process jobs/s, 2 threads / 1 thread",
            ">= 1.8",
            in_process(2),
            in_process(1),
            |v| v >= 1.8,
        ),
        ratio(
            "static check p50 / bare parse p50 (1000 lines)",
            "<= 1.25",
            check,
            parse,
            |v| v <= 1.25,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_snippet_passes_the_default_static_check() {
        let policy = Policy::default();
        let allowlist = policy.effective_allowlist(&[]).unwrap();
        let large = snippets::check_source(CHECK_LARGE_LINES);
        let sources =
            SUITE
                .iter()
                .map(|s| s.code)
                .chain([HELLO, EMPTY, SPIN, CHECK_SMALL, large.as_str()]);
        for source in sources {
            let violations = strictpy_analyzer::check(source.as_bytes(), &policy, &allowlist);
            assert!(violations.is_empty(), "{source}: {violations:?}");
        }
    }

    #[test]
    fn generated_source_has_exactly_the_asked_lines() {
        for n in [0, 7, 15, 1000, 1003] {
            assert_eq!(snippets::check_source(n).lines().count(), n.max(5), "{n}");
        }
    }

    #[test]
    fn timed_wrapper_escapes_the_snippet() {
        let wrapped = snippets::timed_wrapper("print(\"a\\\\b\")\n");
        assert!(
            wrapped.contains(r#"_bench_src = "print(\"a\\\\b\")\n""#),
            "{wrapped}"
        );
    }
}
