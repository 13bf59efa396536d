//! Integration tests: one binary, a module per area. They drive the real guest
//! in the real sandbox, and the real `strictpy` binary.

/// Instantiates each named test fn, which takes a
/// [`server::Backend`], once per store backend: `sqlite::NAME` and
/// `postgres::NAME`. The Postgres half runs on the test binary's private
/// server (`strictpy-testpg`) and is skipped, saying so, only where
/// PostgreSQL is not installed and `CI` is not set.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::server::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if strictpy_testpg::server().is_some() {
                        super::$name($crate::server::Backend::Postgres).await;
                    }
                }
            )*
        }
    };
}

mod bench;
mod cli;
mod cluster;
mod escapes;
mod fidelity;
mod isolation;
mod modules;
mod security;
mod server;
mod snapshot;
mod soak;
mod sse;
mod submit;
mod verdicts;

use std::{collections::BTreeSet, path::PathBuf, sync::OnceLock};

use strictpy_sandbox::{Job, Sandbox, SandboxConfig};
use strictpy_types::{Limits, Outcome, Policy};

/// The guest the Makefile built; `make test` exports its path.
pub fn guest_path() -> PathBuf {
    std::env::var_os("STRICTPY_GUEST").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/guest/strictpy-guest.wasm"),
        PathBuf::from,
    )
}

/// One sandbox for the whole test binary. Loading reuses the precompiled
/// artefact from the cache, so only the very first run compiles.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        Sandbox::new(&SandboxConfig::new(guest_path()))
            .unwrap_or_else(|e| panic!("cannot load the guest (run `make guest`): {e}"))
    })
}

/// The default allowlist plus `extra`.
pub fn allowlist(extra: &[&str]) -> BTreeSet<String> {
    let mut set = Policy::default().allowed_modules;
    set.extend(extra.iter().map(|s| (*s).to_owned()));
    set
}

/// A job with default limits and allowlist.
pub fn job(code: &str) -> Job {
    Job {
        code: code.to_owned(),
        allowlist: allowlist(&[]),
        limits: Limits::default(),
        ..Job::default()
    }
}

/// Runs `code` with defaults.
pub fn run(code: &str) -> Outcome {
    sandbox().run(&job(code))
}
