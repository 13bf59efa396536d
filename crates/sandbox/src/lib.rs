//! The sandbox runtime: runs one Python job in a fresh wasmtime instance of the
//! RustPython guest, under fuel, an epoch deadline and a memory cap.
//!
//! Architecture Invariant: this is the only crate that links wasmtime. Callers
//! see [`Sandbox`], [`SandboxConfig`], [`Job`] and the plain data of
//! `strictpy-types`; no wasmtime type crosses this crate's API.
//!
//! The Engine, the compiled Module and the `InstancePre` are built once per
//! [`Sandbox`]. Every job gets a new `Store` and a new instance, so no state
//! can pass from one job to the next.

mod cache;
mod compiled;
pub mod live;
mod output;
mod resident;
mod snapshot;
mod verdict;

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use strictpy_types::{Limits, Outcome};
use wasmtime::{
    Caller, Config, Engine, InstancePre, Linker, Memory, ResourceLimiter, Store, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtxBuilder, p1::WasiP1Ctx, p2::pipe::MemoryInputPipe};

pub use cache::LoadedFrom;
pub use compiled::{CompileError, checksum};
pub use live::{LiveEvent, LiveTap, StreamKind};
use output::CappedOutput;

/// How often the epoch ticker advances the engine's epoch. Each tick lets every
/// running job check its deadline and cancel flag, so this is the resolution
/// of timeouts and cancellation.
const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Largest verdict document the guest may hand back (result JSON plus
/// traceback). Anything larger is an internal error, not a host allocation.
const MAX_VERDICT_BYTES: usize = 32 * 1024 * 1024;

/// Errors setting a sandbox up. Running a job never fails this way: every run
/// ends in an [`Outcome`].
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The guest `.wasm` could not be read.
    #[error("cannot read the guest module {path}: {source}")]
    ReadGuest {
        /// The path that was tried.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// wasmtime refused the configuration.
    #[error("cannot configure wasmtime: {0}")]
    Engine(String),
    /// The guest failed to compile or load.
    #[error("cannot compile the guest: {0}")]
    Compile(String),
    /// The guest's imports could not be satisfied.
    #[error("cannot link the guest: {0}")]
    Link(String),
    /// Pre-initialising the guest failed.
    #[error("cannot snapshot the guest: {0}")]
    Snapshot(String),
}

/// Sizes the pooling instance allocator: every slot (memory, tables, instance,
/// async stack) is reserved up front, so instantiation only maps what a job
/// touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// How many jobs may run at once. One more is refused (as `internal`,
    /// "sandbox busy") rather than queued: callers size their worker pools to
    /// this.
    pub max_instances: u32,
    /// The largest memory any job may ask for, in MiB: the size of each slot.
    pub max_memory_mb: u64,
}

/// How to build a [`Sandbox`]. Deliberately narrow: the knobs a caller needs,
/// not wasmtime's whole `Config`.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The guest module (`strictpy-guest.wasm`).
    pub guest: PathBuf,
    /// Where precompiled artefacts are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Whether to meter fuel. Off only for benchmarks of its cost.
    pub fuel_metering: bool,
    /// Size of the wasm call stack, in bytes. RustPython recurses natively for
    /// every Python call, so this bounds Python recursion depth too.
    pub max_wasm_stack: usize,
    /// Run the guest's initialisation once and start every job from that
    /// snapshot (on by default). Off only to measure what it saves.
    pub snapshot: bool,
    /// Use the pooling instance allocator with these sizes; `None` uses the
    /// on-demand allocator.
    pub pool: Option<PoolConfig>,
    /// Modules the snapshot imports ahead of time (hidden from jobs until an
    /// allowed import asks for them), so that allowing one costs a job
    /// nothing. The default is the default policy's allowed and allowable
    /// modules; a server passes its operator's. The snapshot is cached per
    /// set. Ignored without a snapshot.
    pub preload: BTreeSet<String>,
    /// With a pool: after a slot's first jobs, join the runs of pages they
    /// wrote so that wasmtime's reset keeps them all resident (see
    /// `resident.rs`). On by default; off only to measure what it changes.
    pub keep_working_set: bool,
}

impl SandboxConfig {
    /// The defaults for a guest at `guest`, caching next to it.
    pub fn new(guest: impl Into<PathBuf>) -> Self {
        let guest = guest.into();
        let cache_dir = guest.parent().map(|p| p.join("cache"));
        Self {
            guest,
            cache_dir,
            fuel_metering: true,
            max_wasm_stack: 4 << 20,
            snapshot: true,
            pool: None,
            preload: default_preload(),
            keep_working_set: true,
        }
    }
}

/// The modules `policy` lets a job import: its allowed modules and the
/// allowable ones a call may add. What [`SandboxConfig::preload`] should be
/// for a sandbox that serves jobs under `policy`.
pub fn preload_for(policy: &strictpy_types::Policy) -> BTreeSet<String> {
    policy
        .allowed_modules
        .iter()
        .chain(&policy.allowable_modules)
        .cloned()
        .collect()
}

/// [`preload_for`] the default policy.
pub fn default_preload() -> BTreeSet<String> {
    preload_for(&strictpy_types::Policy::default())
}

/// One job: everything the guest needs, already validated by the caller.
#[derive(Debug, Clone, Default)]
pub struct Job {
    /// The Python source.
    pub code: String,
    /// Bytes for the program's stdin.
    pub stdin: Vec<u8>,
    /// A JSON object whose keys become globals.
    pub context: Option<serde_json::Value>,
    /// The effective import allowlist (top-level names).
    pub allowlist: BTreeSet<String>,
    /// The limits to enforce.
    pub limits: Limits,
    /// Seeds every source of randomness the guest sees, making the run
    /// reproducible, fuel count included.
    pub seed: Option<u64>,
    /// Where to forward stdout and stderr as the program writes them (see
    /// [`live`]); the capture in the [`Outcome`] is the same either way.
    pub live: Option<LiveTap>,
    /// `code` as [`Sandbox::compile`] compiled it, on a sandbox with the same
    /// [`Sandbox::code_key`]: the guest runs it instead of compiling `code`.
    /// The caller vouches that it belongs to `code` (a stored function
    /// checks its checksum and key); bytes the guest cannot decode are
    /// ignored and `code` is compiled as usual.
    pub compiled: Option<Vec<u8>>,
    /// Only compile `code` (see [`Sandbox::compile`]).
    pub compile_only: bool,
}

/// Cancels a running (or not yet started) job from another thread.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle {
    /// Set once cancellation is asked for.
    flag: Arc<AtomicBool>,
    /// Wakes a job that is blocked in a host call (a sleep).
    notify: Arc<tokio::sync::Notify>,
}

impl CancelHandle {
    /// A fresh, un-cancelled handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the job to stop. It ends with verdict `cancelled` within one epoch
    /// tick, or at once if it is sleeping.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// True once [`CancelHandle::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Where the time of one run went, for `strictpy run --timings` and benches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Phases {
    /// Creating the store and instantiating the module.
    pub instantiate: Duration,
    /// The guest's `strictpy_init`: building the Python VM.
    pub init: Duration,
    /// Fuel burned by `strictpy_init`.
    pub init_fuel: u64,
    /// The guest's `_start`: running the job.
    pub run: Duration,
    /// Fuel burned by `_start`.
    pub run_fuel: u64,
}

/// Per-store state: WASI, the memory limiter, and the job's channels.
struct JobState {
    /// WASI preview 1, with no preopens, no env and in-memory stdio.
    wasi: WasiP1Ctx,
    /// Enforces the memory cap and records the peak.
    limiter: MemoryLimiter,
    /// The input document the guest reads through `strictpy.input_*`.
    input: Vec<u8>,
    /// The verdict document the guest sent, if it sent one.
    verdict: Option<Vec<u8>>,
    /// The wall-clock deadline.
    deadline: Instant,
    /// The job's cancel flag.
    cancel: Arc<AtomicBool>,
}

/// The job's standard streams.
#[derive(Default)]
struct JobIo {
    /// Bytes for stdin.
    stdin: Vec<u8>,
    /// The capped stdout sink.
    stdout: CappedOutput,
    /// The capped stderr sink.
    stderr: CappedOutput,
}

impl JobState {
    /// A store state with an empty WASI world: no preopened directories, an
    /// empty environment, argv `["main"]`, and in-memory stdio.
    fn new(
        io: JobIo,
        seed: Option<u64>,
        memory_cap: usize,
        cancel: Arc<AtomicBool>,
        deadline: Instant,
    ) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(io.stdin))
            .stdout(io.stdout)
            .stderr(io.stderr)
            .args(&["main"]);
        if let Some(seed) = seed {
            // Every byte of randomness the guest sees (`random`, `os.urandom`,
            // Rust's ThreadRng) comes from these generators, so a seed makes
            // the whole run reproducible.
            use rand::SeedableRng;
            wasi.secure_random(rand::rngs::StdRng::seed_from_u64(seed))
                .insecure_random(rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed))
                .insecure_random_seed(u128::from(seed));
        }
        Self {
            wasi: wasi.build_p1(),
            limiter: MemoryLimiter {
                cap: memory_cap,
                peak: 0,
                denied: false,
            },
            input: Vec::new(),
            verdict: None,
            deadline,
            cancel,
        }
    }
}

/// Caps linear memory and remembers the largest size granted.
struct MemoryLimiter {
    /// The cap, in bytes.
    cap: usize,
    /// The largest memory size granted so far, in bytes.
    peak: usize,
    /// True once a growth was refused.
    denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.denied = true;
            self.peak = self.peak.max(current);
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The guest's tables hold function references; RustPython never needs
        // more than a few thousand.
        Ok(desired <= 100_000)
    }
}

/// Why the host stopped the guest, carried through wasmtime as an error value
/// and recovered by downcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum HostStop {
    /// The wall-clock deadline passed.
    #[error("deadline exceeded")]
    Deadline,
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// Advances the engine epoch on a fixed tick until dropped.
struct Ticker {
    /// Tells the thread to stop.
    stop: Arc<AtomicBool>,
    /// The ticker thread, joined on drop.
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("strictpy-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A ready-to-run sandbox: engine, compiled guest and linker, built once.
pub struct Sandbox {
    /// The engine all jobs share (code is shared; state is not).
    engine: Engine,
    /// The guest, pre-linked: instantiating it is the per-job cost.
    pre: InstancePre<JobState>,
    /// Whether fuel is metered.
    fuel_metering: bool,
    /// Whether the module is a pre-initialised snapshot (no init call needed).
    snapshot: bool,
    /// How the module was obtained.
    loaded_from: LoadedFrom,
    /// Keeps pooled slots' working sets resident between jobs.
    groomer: resident::Groomer,
    /// What compiled code objects depend on: see [`Sandbox::code_key`].
    code_key: String,
    /// Keeps the epoch advancing while the sandbox lives.
    _ticker: Ticker,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("fuel_metering", &self.fuel_metering)
            .field("loaded_from", &self.loaded_from)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Builds the engine, loads (or compiles and caches) the guest, and links
    /// WASI and the strictpy imports.
    pub fn new(config: &SandboxConfig) -> Result<Self, SandboxError> {
        let mut cfg = Config::new();
        cfg.consume_fuel(config.fuel_metering)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack)
            // Host calls run on the fiber's stack too; keep room above the
            // wasm limit for them.
            .async_stack_size(config.max_wasm_stack + (2 << 20))
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        if let Some(pool) = config.pool {
            let mut p = wasmtime::PoolingAllocationConfig::new();
            let slot =
                usize::try_from(pool.max_memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
            p.total_core_instances(pool.max_instances)
                .total_memories(pool.max_instances)
                .total_tables(pool.max_instances)
                .total_stacks(pool.max_instances)
                .max_memory_size(slot)
                // RustPython's function table holds a few thousand entries.
                .table_elements(64 * 1024)
                // When a slot is reused, reset the pages the last job dirtied
                // by copying them back from the snapshot (found with Linux's
                // PAGEMAP_SCAN) instead of unmapping them: the next job then
                // takes no page faults on its working set. Pages past these
                // sizes are decommitted as usual.
                .pagemap_scan(wasmtime::Enabled::Auto)
                .linear_memory_keep_resident(16 << 20)
                .table_keep_resident(256 << 10)
                .async_stack_keep_resident(2 << 20);
            cfg.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(p));
        }
        let engine = Engine::new(&cfg).map_err(|e| SandboxError::Engine(e.to_string()))?;

        let mut linker: Linker<JobState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut JobState| &mut s.wasi)
            .map_err(|e| SandboxError::Link(e.to_string()))?;
        link_strictpy(&mut linker).map_err(|e| SandboxError::Link(e.to_string()))?;

        let preload = strictpy_protocol::Preload {
            modules: config.preload.iter().cloned().collect(),
        };
        let variant = cache::variant(config.snapshot, config.fuel_metering, &preload.modules);
        let (module, loaded_from) = cache::load(
            &engine,
            &config.guest,
            config.cache_dir.as_deref(),
            &variant,
            |wasm| {
                if !config.snapshot {
                    return Ok(wasm.to_vec());
                }
                // The snapshot's randomness (and so its hash secret) is
                // derived from the guest itself: the same guest gives the
                // same snapshot, and the same fuel counts, everywhere.
                let digest = blake3::hash(wasm);
                let mut seed = [0u8; 8];
                seed.copy_from_slice(&digest.as_bytes()[..8]);
                let state = JobState::new(
                    JobIo::default(),
                    Some(u64::from_le_bytes(seed)),
                    usize::MAX,
                    Arc::new(AtomicBool::new(false)),
                    Instant::now(),
                );
                snapshot::wizen(
                    &engine,
                    &linker,
                    wasm,
                    state,
                    config.fuel_metering,
                    &preload,
                )
            },
        )?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| SandboxError::Link(e.to_string()))?;
        let ticker =
            Ticker::start(engine.clone()).map_err(|e| SandboxError::Engine(e.to_string()))?;
        let code_key =
            compiled::code_key(&config.guest).map_err(|source| SandboxError::ReadGuest {
                path: config.guest.clone(),
                source,
            })?;
        Ok(Self {
            engine,
            pre,
            fuel_metering: config.fuel_metering,
            snapshot: config.snapshot,
            loaded_from,
            groomer: resident::Groomer::new(config.pool.is_some() && config.keep_working_set),
            code_key,
            _ticker: ticker,
        })
    }

    /// Whether the guest came from the cache or was compiled now.
    pub fn loaded_from(&self) -> LoadedFrom {
        self.loaded_from
    }

    /// Runs one job to completion on the calling thread. Must not be called
    /// from inside an async runtime; use [`Sandbox::run_async`] there.
    pub fn run(&self, job: &Job) -> Outcome {
        self.run_with(job, &CancelHandle::new()).0
    }

    /// Like [`Sandbox::run`], with a cancel handle, also reporting phases.
    pub fn run_with(&self, job: &Job, cancel: &CancelHandle) -> (Outcome, Phases) {
        let (outcome, phases, spent) = self.run_deferred(job, cancel);
        drop(spent);
        (outcome, phases)
    }

    /// Like [`Sandbox::run_with`], but hands back the finished job's
    /// instance as a [`Spent`] instead of dropping it. Dropping it resets
    /// the pool slot, which costs about as much CPU as a hello job's run: a
    /// caller with an answer to deliver delivers it first and drops the
    /// [`Spent`] after, so the reset overlaps the answer's trip to its
    /// client instead of delaying it.
    pub fn run_deferred(&self, job: &Job, cancel: &CancelHandle) -> (Outcome, Phases, Spent) {
        thread_local! {
            // One small current-thread runtime per OS thread drives the async
            // WASI calls and the host-side deadline timer.
            static RUNTIME: Option<tokio::runtime::Runtime> =
                tokio::runtime::Builder::new_current_thread().enable_time().build().ok();
        }
        RUNTIME.with(|rt| match rt {
            Some(rt) => rt.block_on(self.run_spent(job, cancel)),
            None => (
                verdict::internal("cannot start the job runtime", Default::default()),
                Phases::default(),
                Spent(None),
            ),
        })
    }

    /// Runs one job. Every failure, trap or limit becomes part of the
    /// [`Outcome`]; this never panics on anything the guest does.
    pub async fn run_async(&self, job: &Job, cancel: &CancelHandle) -> (Outcome, Phases) {
        let (outcome, phases, spent) = self.run_spent(job, cancel).await;
        drop(spent);
        (outcome, phases)
    }

    /// [`Sandbox::run_async`], handing back the spent instance.
    async fn run_spent(&self, job: &Job, cancel: &CancelHandle) -> (Outcome, Phases, Spent) {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(job.limits.timeout_ms);
        let cap = usize::try_from(job.limits.max_output_bytes).unwrap_or(usize::MAX);
        let stdout = CappedOutput::new(cap).forwarding(job.live.clone(), StreamKind::Stdout);
        let stderr = CappedOutput::new(cap).forwarding(job.live.clone(), StreamKind::Stderr);
        let input = match verdict::encode_input(job) {
            Ok(input) => input,
            Err(msg) => {
                return (
                    verdict::internal(&msg, Default::default()),
                    Phases::default(),
                    Spent(None),
                );
            }
        };

        let memory_cap =
            usize::try_from(job.limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let mut state = JobState::new(
            JobIo {
                stdin: job.stdin.clone(),
                stdout: stdout.clone(),
                stderr: stderr.clone(),
            },
            job.seed,
            memory_cap,
            cancel.flag.clone(),
            deadline,
        );
        state.input = input;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let fuel = if self.fuel_metering {
            job.limits.fuel
        } else {
            0
        };
        if self.fuel_metering && store.set_fuel(fuel).is_err() {
            return (
                verdict::internal("cannot set fuel", Default::default()),
                Phases::default(),
                Spent(None),
            );
        }
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            if state.cancel.load(Ordering::Relaxed) {
                return Err(HostStop::Cancelled.into());
            }
            if Instant::now() >= state.deadline {
                return Err(HostStop::Deadline.into());
            }
            Ok(UpdateDeadline::Continue(1))
        });

        let mut phases = Phases::default();
        // The instance, once its `_start` has returned (with or without a
        // trap): only then is its memory at rest and safe to groom.
        let mut finished = None;
        let guarded = async {
            let t = Instant::now();
            let instance = self.pre.instantiate_async(&mut store).await?;
            phases.instantiate = t.elapsed();

            if !self.snapshot {
                let t = Instant::now();
                let init = instance.get_typed_func::<(), ()>(&mut store, snapshot::INIT_EXPORT)?;
                init.call_async(&mut store, ()).await?;
                phases.init = t.elapsed();
                phases.init_fuel = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
            }

            let t = Instant::now();
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            let r = start.call_async(&mut store, ()).await;
            phases.run = t.elapsed();
            finished = Some(instance);
            r
        };
        let stop = tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), guarded) => match r {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(verdict::Stop::Error(e)),
                Err(_) => Some(verdict::Stop::Deadline),
            },
            () = wait_cancelled(cancel) => Some(verdict::Stop::Cancelled),
        };
        let fuel_left = if self.fuel_metering {
            store.get_fuel().unwrap_or(0)
        } else {
            0
        };
        let consumed = fuel.saturating_sub(fuel_left);
        if let Some(memory) = finished.and_then(|i| i.get_memory(&mut store, "memory")) {
            self.groomer.after_job(memory.data_mut(&mut store));
        }
        if self.fuel_metering {
            phases.run_fuel = consumed.saturating_sub(phases.init_fuel);
        }
        // Read what the verdict needs and keep the store: dropping it is
        // the slot reset, which the caller may defer (see `Spent`).
        let state = store.data_mut();
        let (guest_verdict, denied, peak) = (
            state.verdict.take(),
            state.limiter.denied,
            state.limiter.peak,
        );
        let (out, out_cut) = stdout.take();
        let (err, err_cut) = stderr.take();
        let outcome = verdict::decide(verdict::Ending {
            stop,
            verdict: guest_verdict,
            memory_denied: denied,
            limits: job.limits,
            stdout: (out, out_cut),
            stderr: (err, err_cut),
            usage: strictpy_types::Usage {
                fuel_consumed: consumed,
                wall_time_ms: round_ms(started.elapsed()),
                memory_peak_bytes: peak as u64,
            },
        });
        (outcome, phases, Spent(Some(store)))
    }
}

/// A finished job's instance, still holding its pool slot (with a pool) and
/// its memory. Dropping it frees both; with a pool that is the slot reset,
/// where wasmtime copies the snapshot back over every page the job wrote.
/// Nothing in it is reachable from outside: it exists only to choose when
/// that cost is paid (see [`Sandbox::run_deferred`]). While it lives, the
/// slot counts as taken, so a caller holds at most one per worker.
#[must_use = "dropping a Spent is the slot reset; drop it once the answer is delivered"]
pub struct Spent(Option<Store<JobState>>);

impl std::fmt::Debug for Spent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Spent").field(&self.0.is_some()).finish()
    }
}

/// Milliseconds with microsecond precision.
fn round_ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

async fn wait_cancelled(cancel: &CancelHandle) {
    loop {
        let notified = cancel.notify.notified();
        if cancel.is_cancelled() {
            return;
        }
        notified.await;
    }
}

/// Defines the `strictpy` import module: the job's input and the verdict
/// channel. User code cannot reach these: Python has no way to call a wasm
/// import, and the guest calls `verdict` only after the program is done.
fn link_strictpy(linker: &mut Linker<JobState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "strictpy",
        "input_len",
        |caller: Caller<'_, JobState>| -> u32 {
            u32::try_from(caller.data().input.len()).unwrap_or(u32::MAX)
        },
    )?;
    linker.func_wrap(
        "strictpy",
        "input_read",
        |mut caller: Caller<'_, JobState>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let memory = guest_memory(&mut caller)?;
            let (mem, state) = memory.data_and_store_mut(&mut caller);
            let n = (len as usize).min(state.input.len());
            let dst = mem
                .get_mut(ptr as usize..(ptr as usize).saturating_add(n))
                .ok_or_else(|| wasmtime::format_err!("input_read out of bounds"))?;
            dst.copy_from_slice(&state.input[..n]);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "strictpy",
        "verdict",
        |mut caller: Caller<'_, JobState>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            if len as usize > MAX_VERDICT_BYTES {
                caller.data_mut().verdict = Some(
                    br#"{"status":"internal","message":"verdict document too large"}"#.to_vec(),
                );
                return Ok(());
            }
            let memory = guest_memory(&mut caller)?;
            let (mem, state) = memory.data_and_store_mut(&mut caller);
            let src = mem
                .get(ptr as usize..(ptr as usize).saturating_add(len as usize))
                .ok_or_else(|| wasmtime::format_err!("verdict out of bounds"))?;
            state.verdict = Some(src.to_vec());
            Ok(())
        },
    )?;
    Ok(())
}

fn guest_memory(caller: &mut Caller<'_, JobState>) -> wasmtime::Result<Memory> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::format_err!("guest exports no memory"))
}
