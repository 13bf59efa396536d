//! `strictpy serve`: loads the configuration, the guest and the store, then
//! runs the HTTP job service until SIGTERM or Ctrl-C.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use clap::Args;
use strictpy_sandbox::{PoolConfig, Sandbox, SandboxConfig};
use strictpy_server::{
    Server,
    config::{Config, FlagOverrides, StoreUrlFlag, TlsConfig},
};

/// `strictpy serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML config file (see docs/configuration.md). `STRICTPY_*` variables
    /// override it, and these flags override both.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The address to listen on (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Where the job database lives (default ./data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The store: postgres://user@host:port/db, or sqlite://PATH (default:
    /// SQLite in the data dir). Also `STRICTPY_STORE_URL`.
    #[arg(long, value_name = "URL")]
    pub store_url: Option<String>,
    /// Jobs run at once (default: the number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Jobs that may wait for a worker (default 1000).
    #[arg(long)]
    pub queue_size: Option<usize>,
    /// The guest module; defaults to `$STRICTPY_GUEST` or the one built next
    /// to this binary.
    #[arg(long, value_name = "FILE")]
    pub guest: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address; only for use behind a
    /// proxy that terminates TLS.
    #[arg(long)]
    pub allow_insecure_http: bool,
}

/// Runs the service; returns the process exit code.
pub fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let flags = FlagOverrides {
        listen: args.listen,
        data_dir: args.data_dir,
        guest: args.guest,
        workers: args.workers,
        queue_size: args.queue_size,
        tls: TlsConfig {
            cert: args.tls_cert,
            key: args.tls_key,
        },
        allow_insecure_http: args.allow_insecure_http.then_some(true),
        store: args.store_url.map(|url| StoreUrlFlag { url }),
    };
    let config = Config::load(args.config.as_deref(), &flags)?;
    // A bad certificate is reported before the slow part (loading the guest).
    let tls = strictpy_server::tls::load(&config.tls)?;
    let guest = crate::cli::guest_path(config.guest.as_deref())?;
    // One pooled instance slot per worker, each as large as the biggest
    // memory a job may ask for: instantiation then only maps what a job
    // touches, and stacks stay warm between jobs. One slot more is for
    // compiling a stored function when it is registered or updated (on the
    // blocking pool, beside the workers), so that a registration while
    // every worker is busy still stores its compiled form.
    let (_, max_limits) = config.limits.resolve()?;
    let mut sandbox_config = SandboxConfig::new(&guest);
    // The snapshot pre-imports what this operator's policy can allow.
    sandbox_config.preload = strictpy_sandbox::preload_for(&config.policy);
    sandbox_config.pool = Some(PoolConfig {
        max_instances: u32::try_from(config.workers.saturating_add(1)).unwrap_or(u32::MAX),
        max_memory_mb: max_limits.memory_mb,
    });
    let sandbox = Sandbox::new(&sandbox_config)
        .with_context(|| format!("loading the guest {}", guest.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.http_threads)
        .enable_all()
        .thread_name("strictpy-http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listen = config.listen;
        let data_dir = config.data_dir.clone();
        let server = Server::start(config, Arc::new(sandbox)).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Scripts and tests read this line to find the port of `--listen
        // 127.0.0.1:0`.
        println!("strictpy: listening on {scheme}://{addr}");
        tracing::info!(%addr, scheme, data_dir = %data_dir.display(), "serving");
        let signal = strictpy_server::shutdown_signal();
        match tls {
            Some(tls) => strictpy_server::serve_tls(server, listener, tls, signal).await?,
            None => strictpy_server::serve(server, listener, signal).await?,
        }
        anyhow::Ok(0)
    })
}
