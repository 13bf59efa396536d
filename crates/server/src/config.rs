//! Server configuration: defaults, a TOML file, `STRICTPY_*` environment
//! variables and command-line flags, merged with figment in that order (later
//! wins). `docs/configuration.md` documents every setting.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use strictpy_types::{LimitOverrides, Limits, Policy};

use crate::net::Cidr;

mod cluster;
mod security;

pub use cluster::ClusterConfig;
pub use security::{AuthConfig, InputLimits, LockoutConfig, RateLimitConfig, RetentionConfig};

/// The top-level keys, so environment variables meant for other parts of
/// strictpy (`STRICTPY_GUEST` is one of ours, `STRICTPY_LOG` is not) do not
/// trip the unknown-key check.
const KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "guest",
    "max_body_bytes",
    "max_wait_ms",
    "header_read_timeout_ms",
    "body_read_timeout_ms",
    "workers",
    "http_threads",
    "queue_size",
    "live_buffer_bytes",
    "shutdown_grace_ms",
    "limits",
    "policy",
    "webhook",
    "auth",
    "rate_limit",
    "lockout",
    "retention",
    "input",
    "tls",
    "allow_insecure_http",
    "network",
    "encryption",
    "store",
    "cluster",
];

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value has the wrong type.
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// The values parse but contradict each other.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Everything `strictpy serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Where the job database (and the generated webhook secret) live.
    pub data_dir: PathBuf,
    /// The guest module; `None` looks in the usual places.
    pub guest: Option<PathBuf>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long `wait: true` holds a request open before answering `202`.
    pub max_wait_ms: u64,
    /// How long a connection may take to send a request head; past it the
    /// connection is closed.
    pub header_read_timeout_ms: u64,
    /// How long a request body may take to arrive after its head; past it
    /// the request is answered `408`.
    pub body_read_timeout_ms: u64,
    /// Jobs that run at once; each has an OS thread of its own.
    pub workers: usize,
    /// Threads of the async runtime that serves HTTP (and everything else
    /// that is not a job). Half the cores by default: a job's own thread
    /// does about three quarters of its work, and on two cores a second
    /// HTTP thread costs more in wake-ups between the two than it adds.
    pub http_threads: usize,
    /// Jobs that may wait for a worker before submissions get `503`.
    pub queue_size: usize,
    /// Bytes of live output kept per running job for
    /// `GET /v1/jobs/{id}/events` readers; one who falls further behind
    /// gets a gap (the bytes are in the final event).
    pub live_buffer_bytes: usize,
    /// On SIGTERM or Ctrl-C, how long running jobs may take to finish.
    pub shutdown_grace_ms: u64,
    /// Default and maximum limits.
    pub limits: LimitsConfig,
    /// The static and import policy.
    pub policy: Policy,
    /// Webhook delivery.
    pub webhook: WebhookConfig,
    /// Token lifetimes and the first-start admin token.
    pub auth: AuthConfig,
    /// Per-token and per-IP rate limits.
    pub rate_limit: RateLimitConfig,
    /// Failed-auth lockout.
    pub lockout: LockoutConfig,
    /// How long jobs and audit events are kept.
    pub retention: RetentionConfig,
    /// Caps on request fields.
    pub input: InputLimits,
    /// Built-in TLS; off unless both files are set.
    pub tls: TlsConfig,
    /// Serve plain HTTP on a non-loopback address: only behind a proxy that
    /// terminates TLS.
    pub allow_insecure_http: bool,
    /// The IP allowlist and the proxies trusted for `X-Forwarded-For`.
    pub network: NetworkConfig,
    /// Where the keys that encrypt job data at rest come from.
    pub encryption: EncryptionConfig,
    /// Which database holds the jobs, tokens and audit log.
    pub store: StoreConfig,
    /// Leases and node identity when several nodes share a Postgres store.
    pub cluster: ClusterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            guest: None,
            max_body_bytes: 2 * 1024 * 1024,
            max_wait_ms: 30_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 60_000,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            http_threads: std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            queue_size: 1000,
            live_buffer_bytes: 256 * 1024,
            shutdown_grace_ms: 30_000,
            limits: LimitsConfig::default(),
            policy: Policy::default(),
            webhook: WebhookConfig::default(),
            auth: AuthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            lockout: LockoutConfig::default(),
            retention: RetentionConfig::default(),
            input: InputLimits::default(),
            tls: TlsConfig::default(),
            allow_insecure_http: false,
            network: NetworkConfig::default(),
            encryption: EncryptionConfig::default(),
            store: StoreConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// Built-in TLS: a PEM certificate chain and its PEM private key. Both or
/// neither.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (`--tls-cert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The private key: PKCS#8, PKCS#1 or SEC1 (`--tls-key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// True when TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert.is_some() || self.key.is_some()
    }

    /// True when neither file is set (and so nothing to serialize).
    fn is_unset(&self) -> bool {
        !self.enabled()
    }
}

/// Encryption at rest (see `docs/security.md`). The keys themselves come from
/// `STRICTPY_ENCRYPTION_KEY` when it is set, which wins over any file; that
/// variable is deliberately not a config key, so keys never sit in a config
/// file next to other settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// A key file (mode 0600) to use instead of the one generated in
    /// `<data_dir>/encryption-keys`; it must exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// The store (`[store]`, see `docs/scale-out.md`). Without a URL the store
/// is SQLite in the data dir.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://user@host:port/db` for PostgreSQL, `sqlite://PATH` for a
    /// SQLite file elsewhere; also `STRICTPY_STORE_URL` and `--store-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A file holding the Postgres password, read when the URL has none and
    /// `PGPASSWORD` is not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Connections in the Postgres pool (default: twice the cores plus two).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<usize>,
    /// How long a statement waits for a connection before the request gets
    /// `503`, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            password_file: None,
            pool_size: None,
            timeout_ms: 5_000,
        }
    }
}

impl std::fmt::Debug for StoreConfig {
    /// The URL without its password: configs get logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field(
                "url",
                &self.url.as_deref().map(strictpy_store::without_password),
            )
            .field("password_file", &self.password_file)
            .field("pool_size", &self.pool_size)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// `--store-url`, as the `[store]` table it overrides.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreUrlFlag {
    /// The URL.
    pub url: String,
}

/// Who may call: the IP allowlist, and the proxies whose `X-Forwarded-For`
/// is believed. See `crate::net`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Client addresses allowed to call (CIDR ranges or addresses); empty
    /// allows everyone. Others get `403 ip_not_allowed`.
    pub allow: Vec<Cidr>,
    /// Proxies (CIDR ranges or addresses) whose `X-Forwarded-For` names the
    /// client; from anyone else the header is ignored.
    pub trusted_proxies: Vec<Cidr>,
}

/// Default and maximum limits. Each table names only the limits it changes;
/// the rest keep the built-in values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Limits for a request that asks for none (built-in: 5 s, 1024 MiB).
    pub default: LimitOverrides,
    /// The most a request may ask for (built-in: 60 s, 2048 MiB).
    pub max: LimitOverrides,
}

impl LimitsConfig {
    /// The effective default and maximum limits.
    pub fn resolve(&self) -> Result<(Limits, Limits), ConfigError> {
        let max = Limits::default_max()
            .with_overrides(&self.max, &OPERATOR_CEILING)
            .map_err(|e| ConfigError::Invalid(format!("limits.max: {e}")))?;
        let default = Limits::default()
            .with_overrides(&self.default, &max)
            .map_err(|e| ConfigError::Invalid(format!("limits.default: {e}")))?;
        Ok((default, max))
    }
}

/// A ceiling for the operator's own maxima: anything an operator might sanely
/// configure, so only zero and absurd values are refused.
const OPERATOR_CEILING: Limits = Limits {
    timeout_ms: 24 * 60 * 60 * 1000,
    fuel: u64::MAX,
    memory_mb: 4096,
    max_output_bytes: 1 << 30,
};

/// Webhook delivery settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// The HMAC key for `Strictpy-Signature`. Unset: a random secret is made
    /// once and kept in `<data_dir>/webhook-secret`.
    pub secret: Option<String>,
    /// A second key that deliveries are also signed with while receivers
    /// move to `secret` (each delivery then carries two `v1=` signatures).
    pub previous_secret: Option<String>,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// Timeout of one attempt, in milliseconds.
    pub timeout_ms: u64,
    /// Backoff before the second attempt; it doubles each time, with jitter.
    pub backoff_base_ms: u64,
    /// Upper bound of one backoff.
    pub backoff_max_ms: u64,
    /// Allow callback hosts on loopback addresses (for tests and local
    /// development).
    pub allow_loopback: bool,
    /// Allow callback hosts on private, shared, unique-local and link-local
    /// addresses, which include cloud metadata endpoints.
    pub allow_private: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            secret: None,
            previous_secret: None,
            max_attempts: 5,
            timeout_ms: 10_000,
            backoff_base_ms: 500,
            backoff_max_ms: 60_000,
            allow_loopback: false,
            allow_private: false,
        }
    }
}

/// Settings given as command-line flags; `None` leaves the value to the
/// file, the environment or the default.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--guest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest: Option<PathBuf>,
    /// `--workers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// `--queue-size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_size: Option<usize>,
    /// `--tls-cert` and `--tls-key`.
    #[serde(skip_serializing_if = "TlsConfig::is_unset")]
    pub tls: TlsConfig,
    /// `--allow-insecure-http`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_insecure_http: Option<bool>,
    /// `--store-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreUrlFlag>,
}

impl Config {
    /// The encryption keys, from `STRICTPY_ENCRYPTION_KEY`, else
    /// `encryption.key_file`, else `<data_dir>/encryption-keys` (generated on
    /// first start). `strictpy serve` and every CLI command that opens the
    /// store go through here, so they always agree on the keys.
    pub fn keyring(&self) -> Result<strictpy_store::Keyring, strictpy_store::KeyError> {
        strictpy_store::Keyring::from_env(&self.data_dir, self.encryption.key_file.as_deref())
    }

    /// Where the store is: [`StoreConfig::url`] (none: SQLite in the data
    /// dir) with the pool settings.
    pub fn store_location(&self) -> Result<strictpy_store::StoreLocation, ConfigError> {
        let mut location =
            strictpy_store::StoreLocation::from_url(self.store.url.as_deref(), &self.data_dir)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let strictpy_store::StoreLocation::Postgres(options) = &mut location {
            options.password_file = self.store.password_file.clone();
            options.pool_size = self.store.pool_size;
            options.timeout = Some(std::time::Duration::from_millis(self.store.timeout_ms));
        }
        Ok(location)
    }

    /// Loads the configuration: built-in defaults, then `file`, then
    /// `STRICTPY_*` variables (`__` separates nested keys, as in
    /// `STRICTPY_WEBHOOK__SECRET`; `STRICTPY_STORE_URL` is `store.url`),
    /// then `flags`.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let env = Env::prefixed("STRICTPY_").split("__").filter(|key| {
            let top = key.as_str().split('.').next().unwrap_or_default();
            KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
        });
        let store_url = Env::raw()
            .only(&["STRICTPY_STORE_URL"])
            .map(|_| "store.url".into());
        let config: Config = figment
            .merge(env)
            .merge(store_url)
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: non-zero sizes, consistent limits, both
    /// TLS files or neither, and no plain HTTP on a non-loopback address
    /// unless `allow_insecure_http` says a TLS-terminating proxy is in front.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers == 0 {
            return Err(ConfigError::Invalid("workers must be at least 1".into()));
        }
        if self.http_threads == 0 {
            return Err(ConfigError::Invalid(
                "http_threads must be at least 1".into(),
            ));
        }
        if self.queue_size == 0 {
            return Err(ConfigError::Invalid("queue_size must be at least 1".into()));
        }
        if self.webhook.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "webhook.max_attempts must be at least 1".into(),
            ));
        }
        self.limits.resolve()?;
        if self.store.pool_size == Some(0) {
            return Err(ConfigError::Invalid(
                "store.pool_size must be at least 1".into(),
            ));
        }
        if self.header_read_timeout_ms == 0 || self.body_read_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "header_read_timeout_ms and body_read_timeout_ms must be at least 1".into(),
            ));
        }
        if self.store.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "store.timeout_ms must be at least 1".into(),
            ));
        }
        if self.cluster.lease_secs < 3 {
            return Err(ConfigError::Invalid(
                "cluster.lease_secs must be at least 3".into(),
            ));
        }
        if self.cluster.poll_ms == 0 {
            return Err(ConfigError::Invalid(
                "cluster.poll_ms must be at least 1".into(),
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "tls.cert and tls.key (--tls-cert, --tls-key) must be set together".into(),
            ));
        }
        if !self.tls.enabled() && !self.listen.ip().is_loopback() && !self.allow_insecure_http {
            return Err(ConfigError::Invalid(format!(
                "refusing to serve plain HTTP on {}, which is not a loopback address: \
                 set tls.cert and tls.key (--tls-cert, --tls-key), or, if a proxy in \
                 front terminates TLS, allow_insecure_http = true (--allow-insecure-http)",
                self.listen
            )));
        }
        Ok(())
    }
}

// figment's `Jail` closures must return its own (large) error type.
#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn the_key_variable_is_not_a_config_key_but_the_key_file_is() {
        figment::Jail::expect_with(|jail| {
            // `STRICTPY_ENCRYPTION_KEY` reads as the top-level key
            // `encryption_key`: it must be neither rejected nor loaded.
            jail.set_env("STRICTPY_ENCRYPTION_KEY", "k:00");
            jail.set_env("STRICTPY_ENCRYPTION__KEY_FILE", "/etc/strictpy/keys");
            let config =
                Config::load(None, &FlagOverrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(
                config.encryption.key_file.as_deref(),
                Some(Path::new("/etc/strictpy/keys"))
            );
            jail.create_file("enc.toml", "[encryption]\nkey = \"00\"\n")?;
            assert!(
                Config::load(Some(Path::new("enc.toml")), &FlagOverrides::default()).is_err(),
                "keys are not accepted in the config file"
            );
            Ok(())
        });
    }

    #[test]
    fn read_timeouts_come_from_the_file_and_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("strictpy.toml", "header_read_timeout_ms = 2500\n")?;
            jail.set_env("STRICTPY_BODY_READ_TIMEOUT_MS", "7000");
            let config = Config::load(Some(Path::new("strictpy.toml")), &FlagOverrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(config.header_read_timeout_ms, 2_500);
            assert_eq!(config.body_read_timeout_ms, 7_000);
            assert_eq!(Config::default().header_read_timeout_ms, 10_000);
            assert_eq!(Config::default().body_read_timeout_ms, 60_000);
            jail.set_env("STRICTPY_BODY_READ_TIMEOUT_MS", "0");
            let zero = Config::load(Some(Path::new("strictpy.toml")), &FlagOverrides::default());
            assert!(zero.is_err(), "a zero timeout is refused");
            Ok(())
        });
    }

    #[test]
    fn file_env_and_flags_merge_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "strictpy.toml",
                r#"
                listen = "127.0.0.1:9000"
                workers = 3
                http_threads = 3
                queue_size = 7
                [limits.max]
                timeout_ms = 10000
                [webhook]
                secret = "from-file"
                "#,
            )?;
            jail.set_env("STRICTPY_WORKERS", "5");
            jail.set_env("STRICTPY_HTTP_THREADS", "1");
            jail.set_env("STRICTPY_WEBHOOK__SECRET", "from-env");
            jail.set_env("STRICTPY_LOG", "debug");
            let flags = FlagOverrides {
                queue_size: Some(9),
                ..Default::default()
            };
            let config = Config::load(Some(Path::new("strictpy.toml")), &flags)
                .map_err(|e| e.to_string())?;
            assert_eq!(config.listen.port(), 9000);
            assert_eq!(config.workers, 5);
            assert_eq!(config.http_threads, 1);
            assert!(Config::default().http_threads >= 1);
            assert_eq!(config.queue_size, 9);
            assert_eq!(config.webhook.secret.as_deref(), Some("from-env"));
            let (default, max) = config.limits.resolve().map_err(|e| e.to_string())?;
            assert_eq!(max.timeout_ms, 10_000);
            assert_eq!(default.timeout_ms, 5_000);
            Ok(())
        });
    }

    #[test]
    fn the_store_url_comes_from_the_file_the_environment_or_the_flag() {
        figment::Jail::expect_with(|jail| {
            let load = |flags: &FlagOverrides| {
                Config::load(Some(Path::new("store.toml")), flags).map_err(|e| e.to_string())
            };
            jail.create_file(
                "store.toml",
                "[store]\nurl = \"postgres://file@db/jobs\"\npool_size = 4\n",
            )?;
            let config = load(&FlagOverrides::default())?;
            assert_eq!(config.store.url.as_deref(), Some("postgres://file@db/jobs"));
            jail.set_env("STRICTPY_STORE_URL", "postgres://env:hunter2@db/jobs");
            let config = load(&FlagOverrides::default())?;
            assert_eq!(
                config.store.url.as_deref(),
                Some("postgres://env:hunter2@db/jobs")
            );
            assert_eq!(config.store.pool_size, Some(4), "the rest of [store] stays");
            assert!(
                !format!("{config:?}").contains("hunter2"),
                "Debug never shows the password"
            );
            let flags = FlagOverrides {
                store: Some(StoreUrlFlag {
                    url: "sqlite:///srv/jobs.db".into(),
                }),
                ..Default::default()
            };
            let config = load(&flags)?;
            assert!(matches!(
                config.store_location().map_err(|e| e.to_string())?,
                strictpy_store::StoreLocation::SqliteFile(p) if p == Path::new("/srv/jobs.db")
            ));
            // No URL anywhere: SQLite in the data dir, as always.
            let config = Config::default();
            assert!(matches!(
                config.store_location().map_err(|e| e.to_string())?,
                strictpy_store::StoreLocation::DataDir(d) if d == config.data_dir
            ));
            jail.set_env("STRICTPY_STORE_URL", "mysql://db/jobs");
            assert!(load(&FlagOverrides::default())?.store_location().is_err());
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_limits_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "listne = \"127.0.0.1:1\"\n")?;
            assert!(Config::load(Some(Path::new("bad.toml")), &FlagOverrides::default()).is_err());
            jail.create_file(
                "limits.toml",
                "[limits.default]\ntimeout_ms = 90000\n[limits.max]\ntimeout_ms = 1000\n",
            )?;
            let err = Config::load(Some(Path::new("limits.toml")), &FlagOverrides::default())
                .expect_err("default above max");
            assert!(err.to_string().contains("timeout_ms"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn transport_and_network_settings_load_and_validate() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "net.toml",
                r#"
                listen = "0.0.0.0:8443"
                [tls]
                cert = "cert.pem"
                [network]
                allow = ["10.0.0.0/8", "192.0.2.7"]
                trusted_proxies = ["::1"]
                "#,
            )?;
            jail.set_env("STRICTPY_TLS__KEY", "key.pem");
            let config = Config::load(Some(Path::new("net.toml")), &FlagOverrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(config.tls.key.as_deref(), Some(Path::new("key.pem")));
            let allow: Vec<String> = config.network.allow.iter().map(|c| c.to_string()).collect();
            assert_eq!(allow, ["10.0.0.0/8", "192.0.2.7/32"]);
            assert_eq!(config.network.trusted_proxies[0].to_string(), "::1/128");

            // Flags override the file; an empty flag set leaves it alone.
            let flags = FlagOverrides {
                tls: TlsConfig {
                    cert: Some("flag.pem".into()),
                    key: None,
                },
                ..Default::default()
            };
            let config =
                Config::load(Some(Path::new("net.toml")), &flags).map_err(|e| e.to_string())?;
            assert_eq!(config.tls.cert.as_deref(), Some(Path::new("flag.pem")));
            assert_eq!(config.tls.key.as_deref(), Some(Path::new("key.pem")));

            jail.create_file("bad-cidr.toml", "[network]\nallow = [\"10.0.0.0/99\"]\n")?;
            let err = Config::load(Some(Path::new("bad-cidr.toml")), &FlagOverrides::default())
                .expect_err("bad CIDR");
            assert!(err.to_string().contains("10.0.0.0/99"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn plain_http_is_refused_off_loopback_unless_allowed() {
        let mut config = Config {
            listen: "0.0.0.0:8080".parse().expect("addr"),
            ..Config::default()
        };
        let err = config.validate().expect_err("plain HTTP on 0.0.0.0");
        assert!(err.to_string().contains("plain HTTP"), "{err}");
        config.allow_insecure_http = true;
        assert!(config.validate().is_ok());
        config.allow_insecure_http = false;
        config.tls.cert = Some("c.pem".into());
        let err = config.validate().expect_err("cert without key");
        assert!(err.to_string().contains("together"), "{err}");
        config.tls.key = Some("k.pem".into());
        assert!(config.validate().is_ok());
        for loopback in ["127.0.0.1:0", "[::1]:0"] {
            let config = Config {
                listen: loopback.parse().expect("addr"),
                ..Config::default()
            };
            assert!(config.validate().is_ok(), "{loopback}");
        }
    }
}
