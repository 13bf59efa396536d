//! `strictpy function`: stored functions on a running strictpy server, over
//! the same client as `strictpy submit` (HTTPS, `$STRICTPY_TOKEN`, retries).
//! `deploy` registers a file under a name, or stores it as the name's next
//! version if the name exists; `invoke` runs the function as a job and
//! prints the verdict exactly as `strictpy run` does, with its exit codes.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cli::{EXIT_OK, read_source};
use crate::submit::{Failure, REQUEST_TIMEOUT, Remote, conclude, connect, refused, run_remote};

/// `strictpy function`.
#[derive(Debug, Args)]
pub struct FunctionArgs {
    /// What to do.
    #[command(subcommand)]
    command: FunctionCommand,
}

/// The `function` subcommands.
#[derive(Debug, Subcommand)]
enum FunctionCommand {
    /// Register FILE as function NAME, or store it as NAME's next version.
    Deploy(DeployArgs),
    /// Run function NAME as a job and print the verdict as `run` does.
    Invoke(InvokeArgs),
}

/// Where the server is; as for `strictpy submit`.
#[derive(Debug, Args)]
struct Connection {
    /// The server's base URL (https://, or http:// for loopback only).
    /// Defaults to `$STRICTPY_URL`; the token comes from `$STRICTPY_TOKEN`.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// A PEM file of CA certificates to trust besides the built-in roots.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Attempts per request, the first included.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    max_attempts: u32,
    /// Cap of the first backoff in milliseconds.
    #[arg(long, default_value_t = 250, value_name = "MS")]
    backoff_ms: u64,
}

impl Connection {
    fn remote(&self) -> anyhow::Result<Remote> {
        connect(
            self.url.clone(),
            self.ca_cert.as_deref(),
            self.max_attempts,
            self.backoff_ms,
        )
    }
}

/// `strictpy function deploy`.
#[derive(Debug, Args)]
struct DeployArgs {
    /// The Python file, or `-` for stdin.
    file: String,
    /// The function's name (a letter or `_`, then letters, digits, `_`, `-`).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// What the function is for.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Allow one more module (repeatable), within the server's policy.
    #[arg(long = "allow", value_name = "MODULE")]
    allow: Vec<String>,
    /// Print the stored function as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// The server.
    #[command(flatten)]
    connection: Connection,
}

/// `strictpy function invoke`.
#[derive(Debug, Args)]
struct InvokeArgs {
    /// The function's name.
    name: String,
    /// The version to run; the newest by default.
    #[arg(long, value_name = "N")]
    version: Option<i64>,
    /// Print exactly one JSON object (the outcome) on stdout.
    #[arg(long)]
    json: bool,
    /// Inputs and limits, as for `strictpy run` (limits only tighten the
    /// function's own).
    #[command(flatten)]
    job: crate::cli::JobArgs,
    /// The idempotency key; by default a fresh UUID.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// The server.
    #[command(flatten)]
    connection: Connection,
}

/// Runs `strictpy function`; returns the exit code.
pub fn function(args: FunctionArgs) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match args.command {
        FunctionCommand::Deploy(a) => runtime.block_on(deploy(a)),
        FunctionCommand::Invoke(a) => runtime.block_on(invoke(a)),
    }
}

async fn deploy(args: DeployArgs) -> anyhow::Result<u8> {
    let remote = args.connection.remote()?;
    let source = read_source(&args.file)?;
    let code = String::from_utf8(source)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", args.file))?;
    let mut body = json!({ "code": code, "allow": args.allow });
    if let Some(d) = &args.description {
        body["description"] = json!(d);
    }
    let mut register = body.clone();
    register["name"] = json!(args.name);
    let answer = remote
        .send(
            Method::POST,
            "/v1/functions",
            Some(&register),
            REQUEST_TIMEOUT,
        )
        .await?;
    let answer = match answer {
        Err(Failure::Api { status, .. }) if status == StatusCode::CONFLICT => {
            let path = format!("/v1/functions/{}", args.name);
            remote
                .send(Method::PUT, &path, Some(&body), REQUEST_TIMEOUT)
                .await?
        }
        other => other,
    };
    match answer {
        Ok((_, function)) => {
            if args.json {
                println!("{function}");
            } else {
                eprintln!(
                    "strictpy: deployed {} version {}{}",
                    function["name"].as_str().unwrap_or(&args.name),
                    function["version"],
                    if function["compiled"] == Value::Bool(true) {
                        " (compiled)"
                    } else {
                        ""
                    }
                );
            }
            Ok(EXIT_OK)
        }
        Err(failure) => refused(failure, args.json, "function deploy"),
    }
}

async fn invoke(args: InvokeArgs) -> anyhow::Result<u8> {
    let remote = args.connection.remote()?;
    let mut body = crate::submit::run_options(&args.job, args.idempotency_key.as_deref())?;
    if let Some(v) = args.version {
        body["version"] = json!(v);
    }
    let path = format!("/v1/functions/{}/invoke", args.name);
    let result = run_remote(&remote, &path, &body, false).await?;
    conclude(result, args.json, "function invoke")
}
