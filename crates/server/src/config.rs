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

/// The top-level keys, so environment variables meant for other parts of
/// strictpy (`STRICTPY_GUEST` is one of ours, `STRICTPY_LOG` is not) do not
/// trip the unknown-key check.
const KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "guest",
    "max_body_bytes",
    "max_wait_ms",
    "workers",
    "queue_size",
    "shutdown_grace_ms",
    "limits",
    "policy",
    "webhook",
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
    /// Jobs that run at once; each has an OS thread of its own.
    pub workers: usize,
    /// Jobs that may wait for a worker before submissions get `503`.
    pub queue_size: usize,
    /// On SIGTERM or Ctrl-C, how long running jobs may take to finish.
    pub shutdown_grace_ms: u64,
    /// Default and maximum limits.
    pub limits: LimitsConfig,
    /// The static and import policy.
    pub policy: Policy,
    /// Webhook delivery.
    pub webhook: WebhookConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            guest: None,
            max_body_bytes: 2 * 1024 * 1024,
            max_wait_ms: 30_000,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            queue_size: 1000,
            shutdown_grace_ms: 30_000,
            limits: LimitsConfig::default(),
            policy: Policy::default(),
            webhook: WebhookConfig::default(),
        }
    }
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
}

impl Config {
    /// Loads the configuration: built-in defaults, then `file`, then
    /// `STRICTPY_*` variables (`__` separates nested keys, as in
    /// `STRICTPY_WEBHOOK__SECRET`), then `flags`.
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
        let config: Config = figment
            .merge(env)
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: non-zero sizes and consistent limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers == 0 {
            return Err(ConfigError::Invalid("workers must be at least 1".into()));
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
        Ok(())
    }
}

// figment's `Jail` closures must return its own (large) error type.
#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn file_env_and_flags_merge_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "strictpy.toml",
                r#"
                listen = "127.0.0.1:9000"
                workers = 3
                queue_size = 7
                [limits.max]
                timeout_ms = 10000
                [webhook]
                secret = "from-file"
                "#,
            )?;
            jail.set_env("STRICTPY_WORKERS", "5");
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
            assert_eq!(config.queue_size, 9);
            assert_eq!(config.webhook.secret.as_deref(), Some("from-env"));
            let (default, max) = config.limits.resolve().map_err(|e| e.to_string())?;
            assert_eq!(max.timeout_ms, 10_000);
            assert_eq!(default.timeout_ms, 5_000);
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
}
