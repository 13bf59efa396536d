//! Reference interpreters run as subprocesses: CPython (`python3 -I -S`) and,
//! when one is installed, a native RustPython binary.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::snippets::{COMPUTE_MARKER, timed_wrapper};

/// One reference interpreter.
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// The executable.
    pub program: PathBuf,
    /// Flags before `-c`: isolated mode and no `site`, so start-up is as lean
    /// as the interpreter allows.
    pub flags: Vec<String>,
    /// What `--version` printed, for the report.
    pub version: String,
}

/// One timed subprocess run of a snippet.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    /// From spawn to exit, as the caller sees it.
    pub spawn: Duration,
    /// The snippet's own compile-and-run time, measured inside the
    /// interpreter with `time.perf_counter()`.
    pub compute: Option<Duration>,
}

impl Interpreter {
    /// Finds `program` (a path, or a name looked up on `PATH`) and asks for its
    /// version; `None` when it is absent or does not run.
    pub fn probe(program: &Path, flags: &[&str]) -> Option<Self> {
        let resolved = resolve(program)?;
        let out = Command::new(&resolved)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        // CPython prints its version on stdout; older releases used stderr.
        let text = if out.stdout.is_empty() {
            out.stderr
        } else {
            out.stdout
        };
        // A version manager's shim (pyenv's `python3` is a shell script)
        // would add its own start-up to every spawn, so time the interpreter
        // it runs instead: the one `sys.executable` names.
        let program = Command::new(&resolved)
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.is_file())
            .unwrap_or(resolved);
        Some(Self {
            program,
            flags: flags.iter().map(|s| (*s).to_owned()).collect(),
            // RustPython prints two lines (version, then build); keep them on one.
            version: String::from_utf8_lossy(&text)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    /// Its version and the executable that runs, for the report.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.version, self.program.display())
    }

    /// Runs `code` once with `-c` and returns the wall time of the whole
    /// process and its stdout.
    pub fn run(&self, code: &str) -> anyhow::Result<(Duration, String)> {
        let started = Instant::now();
        let out = Command::new(&self.program)
            .args(&self.flags)
            .arg("-c")
            .arg(code)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("spawning {}", self.program.display()))?;
        let spawn = started.elapsed();
        if !out.status.success() {
            bail!(
                "{} exited with {}: {}",
                self.program.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok((spawn, String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// Runs a suite snippet inside [`timed_wrapper`]: returns both times and
    /// the snippet's own output (without the timing line).
    pub fn run_timed(&self, code: &str) -> anyhow::Result<(Timed, String)> {
        let (spawn, stdout) = self.run(&timed_wrapper(code))?;
        let mut compute = None;
        let mut output = String::new();
        for line in stdout.lines() {
            match line.strip_prefix(COMPUTE_MARKER) {
                Some(rest) => {
                    compute = rest
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .map(Duration::from_secs_f64);
                }
                None => {
                    output.push_str(line);
                    output.push('\n');
                }
            }
        }
        Ok((Timed { spawn, compute }, output))
    }
}

/// Resolves a program name the way a shell would: a path with a separator is
/// taken as is, a bare name is searched on `PATH`.
fn resolve(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
