//! The `strictpy` command: `run` and `check` one Python file the way the
//! service runs every job, `serve` the HTTP job service, `bench` the sandbox.

mod bench;
mod cli;
mod serve;

use std::process::ExitCode;

fn main() -> ExitCode {
    // The service logs its requests; one-shot commands stay quiet unless asked.
    let default_level = if std::env::args().nth(1).as_deref() == Some("serve") {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRICTPY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    cli::main()
}
