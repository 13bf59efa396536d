//! `strictpy token`: create, list and revoke API tokens directly in the
//! server's store: SQLite in the data dir, or the Postgres database of
//! `--store-url`, `STRICTPY_STORE_URL` or the config's `[store] url` (the
//! servers may be running; each write is its own transaction). The same
//! operations exist over HTTP for `admin` tokens.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use strictpy_server::{
    audit::Event,
    config::{Config, FlagOverrides},
    routes::tokens::{CreateTokenRequest, CreatedToken, TokenView, token_spec},
};
use strictpy_store::{JobStore, TokenKind, TokenLimits};

/// `strictpy token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    command: TokenCommand,
    /// The server's TOML config file, for its data dir and encryption key.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The data dir (default ./data, or the config's).
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// The store, as the server's `--store-url` (default: the config's, or
    /// SQLite in the data dir).
    #[arg(long, value_name = "URL", global = true)]
    store_url: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

/// The token subcommands.
#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token and print it (it is shown only once).
    Create(CreateArgs),
    /// List API tokens (never their secrets).
    List {
        /// Only this tenant's tokens.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a token, and every token exchanged for it.
    Revoke {
        /// The token's public id (from `token list`).
        id: String,
    },
}

/// `strictpy token create`.
#[derive(Debug, Args)]
struct CreateArgs {
    /// The tenant the token acts for.
    #[arg(long)]
    tenant: String,
    /// A scope (repeatable): jobs:write, jobs:read, check, functions:write,
    /// functions:invoke, admin.
    #[arg(long = "scope", required = true, value_name = "SCOPE")]
    scopes: Vec<String>,
    /// A name for people.
    #[arg(long)]
    name: Option<String>,
    /// Lifetime, such as 30d or 12h; omitted, the token never expires.
    #[arg(long, value_name = "DURATION")]
    expires_in: Option<String>,
    /// Requests per minute for this token (default: the server's).
    #[arg(long)]
    requests_per_minute: Option<u32>,
    /// Burst above the sustained rate.
    #[arg(long)]
    burst: Option<u32>,
    /// Jobs queued or running at once.
    #[arg(long)]
    concurrent_jobs: Option<u32>,
}

/// Runs `strictpy token ...`; returns the exit code.
pub fn token(args: TokenArgs) -> anyhow::Result<u8> {
    let flags = FlagOverrides {
        data_dir: args.data_dir.clone(),
        store: args
            .store_url
            .clone()
            .map(|url| strictpy_server::config::StoreUrlFlag { url }),
        ..FlagOverrides::default()
    };
    let config = Config::load(args.config.as_deref(), &flags)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = strictpy_server::open_store(&config).await?;
        let store = store.as_ref();
        match args.command {
            TokenCommand::Create(c) => create(store, c, args.json).await,
            TokenCommand::List { tenant } => list(store, tenant, args.json).await,
            TokenCommand::Revoke { id } => revoke(store, id, args.json).await,
        }
    })
}

async fn create(store: &dyn JobStore, c: CreateArgs, as_json: bool) -> anyhow::Result<u8> {
    let expires_in_secs = c
        .expires_in
        .as_deref()
        .map(|d| humantime::parse_duration(d).with_context(|| format!("--expires-in {d:?}")))
        .transpose()?
        .map(|d| d.as_secs().max(1));
    let spec = token_spec(CreateTokenRequest {
        tenant: c.tenant,
        scopes: c.scopes,
        name: c.name,
        expires_in_secs,
        rate_limit: Some(TokenLimits {
            requests_per_minute: c.requests_per_minute,
            burst: c.burst,
            concurrent_jobs: c.concurrent_jobs,
        }),
    })
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let token = spec.issue().map_err(|e| anyhow::anyhow!("{}", e.message))?;
    store.insert_token(token.record.clone()).await?;
    store
        .append_audit(vec![
            Event::new("token_created")
                .tenant(&token.record.tenant)
                .token(&token.record.id)
                .details(json!({ "scopes": token.record.scopes, "via": "cli" }))
                .stored(),
        ])
        .await?;
    let created = CreatedToken {
        view: TokenView::from(&token.record),
        token: token.secret,
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&created)?);
    } else {
        eprintln!(
            "created token {} for tenant {} with scopes {}; it is shown only now:",
            created.view.id,
            created.view.tenant,
            created.view.scopes.join(" ")
        );
        println!("{}", created.token);
    }
    Ok(0)
}

async fn list(store: &dyn JobStore, tenant: Option<String>, as_json: bool) -> anyhow::Result<u8> {
    let tokens = store.list_tokens(tenant).await?;
    let views: Vec<TokenView> = tokens.iter().map(TokenView::from).collect();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "tokens": views }))?
        );
        return Ok(0);
    }
    println!(
        "{:<16}  {:<16}  {:<28}  {:<24}  {:<24}  NAME",
        "ID", "TENANT", "SCOPES", "EXPIRES", "STATE"
    );
    for v in views {
        let state = match (&v.revoked_at, &v.last_used_at) {
            (Some(r), _) => format!("revoked {r}"),
            (None, Some(u)) => format!("used {u}"),
            (None, None) => "never used".into(),
        };
        println!(
            "{:<16}  {:<16}  {:<28}  {:<24}  {:<24}  {}",
            v.id,
            v.tenant,
            v.scopes.join(","),
            v.expires_at.as_deref().unwrap_or("never"),
            state,
            v.name
        );
    }
    Ok(0)
}

async fn revoke(store: &dyn JobStore, id: String, as_json: bool) -> anyhow::Result<u8> {
    let Some(token) = store
        .token(id.clone())
        .await?
        .filter(|t| t.kind == TokenKind::Api)
    else {
        bail!("no API token {id}");
    };
    let changed = store
        .revoke_token(id.clone(), strictpy_server::now_ms())
        .await?;
    if changed {
        store
            .append_audit(vec![
                Event::new("token_revoked")
                    .tenant(&token.tenant)
                    .token(&id)
                    .details(json!({ "via": "cli" }))
                    .stored(),
            ])
            .await?;
    }
    if as_json {
        println!(
            "{}",
            json!({ "id": id, "revoked": true, "already_revoked": !changed })
        );
    } else if changed {
        println!("revoked {id}");
    } else {
        println!("{id} was already revoked");
    }
    Ok(0)
}
