//! The `strictpy` command: `run` and `check` one Python file the way the
//! service runs every job, `serve` the HTTP job service, `bench` the sandbox.

mod bench;
mod cli;
mod function;
mod load;
mod serve;
mod soak;
mod submit;
mod token;

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: the static check builds and drops a
/// syntax tree of many small nodes per request, and the service's hot paths
/// allocate on many threads; mimalloc's per-thread free lists make both
/// cheaper (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The service logs its requests; one-shot commands stay quiet unless asked.
    let default_level = if std::env::args().nth(1).as_deref() == Some("serve") {
        "info"
    } else {
        "warn"
    };
    // Every line passes through the redactor, so credentials that reach a
    // log (a header, a query string, a dependency's debug output) are
    // replaced before they are written. Colours only on a terminal: escape
    // codes in files would also get between a field's name and its value.
    tracing_subscriber::fmt()
        .with_writer(strictpy_server::redact::RedactingWriter::new(
            std::io::stderr,
        ))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRICTPY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    cli::main()
}
