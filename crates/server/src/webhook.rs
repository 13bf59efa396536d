//! Webhook delivery: signs a job's final state, POSTs it to the job's
//! `callback_url` with retries, and refuses hosts on internal networks (the
//! SSRF guard).
//!
//! The guard runs when the job is submitted (so a bad URL is a `422`), before
//! every attempt (for IP-literal hosts) and inside the HTTP client's resolver
//! (so a name that resolves differently later, DNS rebinding, is still
//! refused at connect time). Redirects are never followed.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use hmac::{Hmac, Mac};
use reqwest::{
    StatusCode, Url,
    dns::{Addrs, Name, Resolve, Resolving},
};
use sha2::Sha256;
use strictpy_store::{Callback, DeliveryAttempt, DeliveryState, JobStore};
use uuid::Uuid;

use crate::{config::WebhookConfig, metrics::Metrics, now_ms};

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Strictpy-Signature";

/// The file in the data dir that keeps a generated secret.
const SECRET_FILE: &str = "webhook-secret";

/// Why a webhook could not be set up or a URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL does not parse or is not http(s).
    #[error("invalid callback_url: {0}")]
    InvalidUrl(String),
    /// The host is, or resolves to, an address the guard refuses.
    #[error("callback_url refused: {0}")]
    Refused(String),
    /// The secrets come from the configuration, so they rotate there.
    #[error(
        "the webhook secrets are set in the configuration; rotate them there (webhook.secret and webhook.previous_secret)"
    )]
    Configured,
    /// The secret file could not be read or written.
    #[error("cannot load the webhook secret: {0}")]
    Secret(std::io::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the webhook client: {0}")]
    Client(String),
}

/// Which address ranges callbacks may reach besides the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// Loopback (127.0.0.0/8, ::1).
    pub loopback: bool,
    /// Private, shared, unique-local and link-local ranges.
    pub private: bool,
}

impl Reach {
    /// Why `ip` is refused, or `None` if it may be contacted.
    pub fn refuse(self, ip: IpAddr) -> Option<&'static str> {
        match ip {
            IpAddr::V4(v4) => self.refuse_v4(v4),
            IpAddr::V6(v6) => {
                // An IPv4 address wrapped in IPv6 (mapped, or NAT64's
                // well-known prefix) is judged as that IPv4 address.
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return self.refuse_v4(v4);
                }
                let seg = v6.segments();
                if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
                    let [a, b] = seg[6].to_be_bytes();
                    let [c, d] = seg[7].to_be_bytes();
                    return self.refuse_v4(Ipv4Addr::new(a, b, c, d));
                }
                self.refuse_v6(v6)
            }
        }
    }

    fn refuse_v4(self, ip: Ipv4Addr) -> Option<&'static str> {
        let [a, b, ..] = ip.octets();
        if ip.is_loopback() {
            return (!self.loopback).then_some("loopback address");
        }
        if ip.is_unspecified() || a == 0 {
            return Some("unspecified address");
        }
        if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
            return Some("broadcast, multicast or reserved address");
        }
        let private = ip.is_private()
            || ip.is_link_local()
            || (a == 100 && (64..128).contains(&b))
            || (a == 192 && b == 0 && ip.octets()[2] == 0);
        (private && !self.private).then_some("private, shared or link-local address")
    }

    fn refuse_v6(self, ip: Ipv6Addr) -> Option<&'static str> {
        let first = ip.segments()[0];
        if ip.is_loopback() {
            return (!self.loopback).then_some("loopback address");
        }
        if ip.is_unspecified() || ip.is_multicast() {
            return Some("unspecified or multicast address");
        }
        let unique_local = first & 0xfe00 == 0xfc00;
        let link_local = first & 0xffc0 == 0xfe80;
        ((unique_local || link_local) && !self.private)
            .then_some("unique-local or link-local address")
    }
}

/// Parses a callback URL and refuses schemes other than http(s).
pub fn parse_url(raw: &str) -> Result<Url, WebhookError> {
    let url = Url::parse(raw).map_err(|e| WebhookError::InvalidUrl(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(WebhookError::InvalidUrl(format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookError::InvalidUrl(
            "credentials in the URL are not accepted".into(),
        ));
    }
    if url.host().is_none() {
        return Err(WebhookError::InvalidUrl("the URL has no host".into()));
    }
    Ok(url)
}

/// Resolves the URL's host and refuses it if any address is refused.
pub async fn check_url(url: &Url, reach: Reach) -> Result<(), WebhookError> {
    let Some(host) = url.host_str() else {
        return Err(WebhookError::InvalidUrl("the URL has no host".into()));
    };
    // IPv6 literals come bracketed; IP literals need no lookup.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return check_ips([ip], reach);
    }
    let addrs = resolve(host)
        .await
        .map_err(|e| WebhookError::Refused(format!("cannot resolve {host}: {e}")))?;
    check_ips(addrs.iter().map(SocketAddr::ip), reach)
}

fn check_ips(ips: impl IntoIterator<Item = IpAddr>, reach: Reach) -> Result<(), WebhookError> {
    let mut any = false;
    for ip in ips {
        any = true;
        if let Some(why) = reach.refuse(ip) {
            return Err(WebhookError::Refused(format!("{ip} is a {why}")));
        }
    }
    if any {
        Ok(())
    } else {
        Err(WebhookError::Refused("the host has no address".into()))
    }
}

async fn resolve(host: &str) -> std::io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host((host, 0)).await?.collect())
}

/// The HTTP client's resolver: resolves, then refuses the whole name if any
/// of its addresses is refused.
#[derive(Debug, Clone, Copy)]
struct GuardedResolver {
    /// What may be reached.
    reach: Reach,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let reach = self.reach;
        Box::pin(async move {
            let addrs = resolve(name.as_str()).await?;
            check_ips(addrs.iter().map(SocketAddr::ip), reach)?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The signature header value for `body` at Unix time `t`:
/// `t=<t>,v1=<hex hmac-sha256(secret, "<t>.<body>")>`.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    sign_all(&[secret.to_vec()], t, body)
}

/// [`sign`] with every active secret, newest first: one `v1=` entry per
/// secret, so a receiver holding either key accepts the delivery while
/// secrets rotate.
pub fn sign_all(secrets: &[Vec<u8>], t: u64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hmac_hex(secret, t, body));
    }
    header
}

fn hmac_hex(secret: &[u8], t: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Webhook delivery: the client, the secret and the retry policy.
#[derive(Debug)]
pub struct Webhooks {
    /// The HTTP client: no redirects, a timeout, the guarded resolver.
    client: reqwest::Client,
    /// The active HMAC keys, newest first (two while rotating).
    secrets: std::sync::RwLock<Vec<Vec<u8>>>,
    /// Where generated secrets are kept; `None` when the configuration sets
    /// them (and rotation happens there).
    secret_file: Option<std::path::PathBuf>,
    /// Retry and reach settings.
    config: WebhookConfig,
    /// Who this process is when it claims a delivery in a shared store: the
    /// node id it writes on its job leases (`cluster::node_id`), so an
    /// operator sees which node holds a claim. A node restarted under its
    /// id takes its previous life's claims only as any node would, once
    /// they expired (the sweep), since only the sweep hands out deliveries
    /// another process began.
    owner: String,
}

/// How long a delivery claim outlives the attempt it covers: the slack for
/// a slow store write after the attempt. Leases are on the database's
/// clock, so nodes' clocks need not agree.
pub const CLAIM_MARGIN_MS: u64 = 3_000;

impl Webhooks {
    /// Builds the client and loads (or creates) the secret; `owner` names
    /// this node in delivery claims.
    pub fn new(
        config: &WebhookConfig,
        data_dir: &Path,
        owner: String,
    ) -> Result<Self, WebhookError> {
        // reqwest is built without a default crypto provider (no aws-lc), so
        // install ring's; a second install in the same process is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(config.timeout_ms))
            .dns_resolver(Arc::new(GuardedResolver {
                reach: reach(config),
            }))
            .user_agent(concat!("strictpy-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let (secrets, secret_file) = match &config.secret {
            Some(s) => {
                let mut secrets = vec![s.as_bytes().to_vec()];
                secrets.extend(config.previous_secret.iter().map(|p| p.as_bytes().to_vec()));
                (secrets, None)
            }
            None => (
                load_or_create_secret(data_dir)?,
                Some(data_dir.join(SECRET_FILE)),
            ),
        };
        Ok(Self {
            client,
            secrets: std::sync::RwLock::new(secrets),
            secret_file,
            config: config.clone(),
            owner,
        })
    }

    /// Who this process is in delivery claims (its node id).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// How long one claim lasts: the longest backoff, one attempt's timeout
    /// and [`CLAIM_MARGIN_MS`]. A claim is renewed before every attempt.
    pub fn claim_ms(&self) -> i64 {
        let ms = self
            .config
            .backoff_max_ms
            .saturating_add(self.config.timeout_ms)
            .saturating_add(CLAIM_MARGIN_MS);
        i64::try_from(ms).unwrap_or(i64::MAX)
    }

    /// Claims (or renews) job `id`'s delivery for this process; false when
    /// another node holds it. A store error counts as not claimed: the
    /// sweep of some node retries once the claim expires.
    async fn claim(&self, store: &dyn JobStore, id: Uuid) -> bool {
        match store
            .claim_callback(id, self.owner.clone(), self.claim_ms())
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(%id, error = %e, "webhook: cannot claim the delivery");
                false
            }
        }
    }

    /// The active secrets, newest first.
    pub fn active_secrets(&self) -> Vec<Vec<u8>> {
        self.secrets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts a rotation: a new random secret signs every delivery from now
    /// on, next to the current one, until [`Webhooks::retire_previous`].
    /// Returns the new secret (shown once). Refused when the configuration
    /// sets the secrets.
    pub fn rotate(&self) -> Result<String, WebhookError> {
        let path = self.secret_file.as_ref().ok_or(WebhookError::Configured)?;
        let mut secrets = self.secrets.write().unwrap_or_else(|p| p.into_inner());
        let new = random_secret();
        let mut next = vec![new.as_bytes().to_vec()];
        next.extend(secrets.first().cloned());
        save_secrets(path, &next)?;
        *secrets = next;
        Ok(new)
    }

    /// Ends a rotation: only the newest secret signs from now on. Returns
    /// how many secrets were retired.
    pub fn retire_previous(&self) -> Result<usize, WebhookError> {
        let path = self.secret_file.as_ref().ok_or(WebhookError::Configured)?;
        let mut secrets = self.secrets.write().unwrap_or_else(|p| p.into_inner());
        let retired = secrets.len().saturating_sub(1);
        secrets.truncate(1);
        save_secrets(path, &secrets)?;
        Ok(retired)
    }

    /// What callbacks may reach.
    pub fn reach(&self) -> Reach {
        reach(&self.config)
    }

    /// The backoff before attempt `n + 1` (n ≥ 1): base · 2^(n-1), capped, then
    /// a random 50–100 % of it so receivers are not hit in lockstep.
    fn backoff(&self, n: u32) -> Duration {
        let exp = self
            .config
            .backoff_base_ms
            .saturating_mul(1u64 << n.saturating_sub(1).min(30))
            .min(self.config.backoff_max_ms);
        let jitter = (Uuid::new_v4().as_u128() % 1000) as u64;
        Duration::from_millis(exp / 2 + exp / 2 * jitter / 1000)
    }

    /// Delivers job `id`'s final state, recording every attempt on the job.
    /// Each attempt is made under this process's claim on the delivery (see
    /// [`JobStore::claim_callback`]), so on a store several nodes share,
    /// exactly one node delivers it; the job is read after the claim, so a
    /// delivery another node finished is not repeated.
    pub async fn deliver(&self, store: &dyn JobStore, metrics: &Metrics, id: Uuid, body: Vec<u8>) {
        if !self.claim(store, id).await {
            tracing::debug!(%id, "webhook: another node holds the delivery");
            return;
        }
        let Ok(Some(job)) = store.get(id).await else {
            tracing::warn!(%id, "webhook: job not found");
            return;
        };
        let Some(mut callback) = job.callback else {
            return;
        };
        if callback.state != DeliveryState::Pending {
            return;
        }
        let start = u32::try_from(callback.attempts.len()).unwrap_or(u32::MAX);
        for n in start..self.config.max_attempts {
            if n > start && !self.claim(store, id).await {
                tracing::warn!(%id, "webhook: the claim was lost; another node goes on");
                return;
            }
            if n > 0 {
                tokio::time::sleep(self.backoff(n)).await;
            }
            let (attempt, result) = self.attempt(&callback.url, &body).await;
            metrics.delivery(result.label());
            callback.attempts.push(attempt);
            callback.state = match result {
                AttemptResult::Delivered => DeliveryState::Delivered,
                AttemptResult::Retry if n + 1 < self.config.max_attempts => DeliveryState::Pending,
                _ => DeliveryState::Failed,
            };
            if let Err(e) = store.set_callback(id, callback.clone()).await {
                tracing::error!(%id, error = %e, "webhook: cannot record the attempt");
            }
            if callback.state != DeliveryState::Pending {
                break;
            }
        }
        tracing::info!(%id, state = ?callback.state, attempts = callback.attempts.len(), "webhook done");
    }

    async fn attempt(&self, raw_url: &str, body: &[u8]) -> (DeliveryAttempt, AttemptResult) {
        let at = now_ms();
        let started = Instant::now();
        let done = |status_code: Option<u16>, error: Option<String>, result| {
            let attempt = DeliveryAttempt {
                at,
                status_code,
                error,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            (attempt, result)
        };
        let url = match parse_url(raw_url) {
            Ok(url) => url,
            Err(e) => return done(None, Some(e.to_string()), AttemptResult::Refused),
        };
        if let Err(e) = check_url(&url, self.reach()).await {
            return done(None, Some(e.to_string()), AttemptResult::Refused);
        }
        let t = u64::try_from(at / 1000).unwrap_or(0);
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign_all(&self.active_secrets(), t, body))
            .body(body.to_vec())
            .send()
            .await;
        match response {
            Ok(r) => {
                let status = r.status();
                let code = Some(status.as_u16());
                if status.is_success() {
                    done(code, None, AttemptResult::Delivered)
                } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    done(
                        code,
                        Some(format!("receiver answered {status}")),
                        AttemptResult::Retry,
                    )
                } else {
                    // 4xx means the receiver rejects this delivery; a 3xx is
                    // not followed, since a redirect could point anywhere.
                    done(
                        code,
                        Some(format!("receiver answered {status}; not retried")),
                        AttemptResult::Rejected,
                    )
                }
            }
            Err(e) => {
                let refused = is_refusal(&e);
                let message = error_chain(&e);
                if refused {
                    done(None, Some(message), AttemptResult::Refused)
                } else {
                    done(None, Some(message), AttemptResult::Retry)
                }
            }
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptResult {
    /// 2xx.
    Delivered,
    /// 5xx, 429, a timeout or a connection error: try again.
    Retry,
    /// Any other answer: do not try again.
    Rejected,
    /// The guard refused the host.
    Refused,
}

impl AttemptResult {
    fn label(self) -> &'static str {
        match self {
            AttemptResult::Delivered => "delivered",
            AttemptResult::Retry => "retryable_error",
            AttemptResult::Rejected => "client_error",
            AttemptResult::Refused => "refused",
        }
    }
}

/// True when the client failed because the guarded resolver refused the host.
fn is_refusal(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if matches!(
            e.downcast_ref::<WebhookError>(),
            Some(WebhookError::Refused(_))
        ) {
            return true;
        }
        source = e.source();
    }
    false
}

/// The error and its causes, joined, for the attempt record.
fn error_chain(err: &reqwest::Error) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

fn reach(config: &WebhookConfig) -> Reach {
    Reach {
        loopback: config.allow_loopback,
        private: config.allow_private,
    }
}

/// 256 random bits from the OS generator (two v4 UUIDs' worth), as hex.
fn random_secret() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// Reads `<data_dir>/webhook-secret` (one secret per line, newest first; two
/// during a rotation), creating it with one random secret on first use.
fn load_or_create_secret(data_dir: &Path) -> Result<Vec<Vec<u8>>, WebhookError> {
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secrets: Vec<Vec<u8>> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| l.as_bytes().to_vec())
                .collect();
            if !secrets.is_empty() {
                return Ok(secrets);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(WebhookError::Secret(e)),
    }
    strictpy_store::create_data_dir(data_dir).map_err(WebhookError::Secret)?;
    let secret = random_secret();
    save_secrets(&path, &[secret.as_bytes().to_vec()])?;
    tracing::info!(path = %path.display(), "generated a webhook secret");
    Ok(vec![secret.into_bytes()])
}

/// Replaces the secret file atomically: a private temporary file in the same
/// directory, renamed over the old one, so a crash leaves one or the other.
fn save_secrets(path: &Path, secrets: &[Vec<u8>]) -> Result<(), WebhookError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut text = Vec::new();
    for s in secrets {
        text.extend_from_slice(s);
        text.push(b'\n');
    }
    write_private(&tmp, &text).map_err(WebhookError::Secret)?;
    std::fs::rename(&tmp, path).map_err(WebhookError::Secret)
}

#[cfg(unix)]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Adds the failed delivery record a job gets when its webhook is refused
/// outright, without any attempt.
pub fn refused_callback(url: &str, why: &str) -> Callback {
    Callback {
        url: url.to_owned(),
        state: DeliveryState::Failed,
        attempts: vec![DeliveryAttempt {
            at: now_ms(),
            status_code: None,
            error: Some(why.to_owned()),
            duration_ms: 0,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_refuses_internal_ranges() {
        let strict = Reach {
            loopback: false,
            private: false,
        };
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "fd00:ec2::254",
            "fe80::1",
        ] {
            let ip: IpAddr = ip.parse().expect("test address");
            assert!(strict.refuse(ip).is_some(), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            let ip: IpAddr = ip.parse().expect("test address");
            assert_eq!(strict.refuse(ip), None, "{ip} is public");
        }
        let loopback = Reach {
            loopback: true,
            private: false,
        };
        assert_eq!(loopback.refuse("127.0.0.1".parse().expect("ip")), None);
        assert!(
            loopback
                .refuse("169.254.169.254".parse().expect("ip"))
                .is_some()
        );
    }

    #[tokio::test]
    async fn the_clients_resolver_refuses_names_that_resolve_inside() {
        // This is what stops a name that passed at submission from pointing
        // at loopback by delivery time (DNS rebinding).
        let strict = GuardedResolver {
            reach: Reach {
                loopback: false,
                private: false,
            },
        };
        let name: Name = "localhost".parse().expect("name");
        let err = match strict.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(err.to_string().contains("loopback"), "{err}");
        let open = GuardedResolver {
            reach: Reach {
                loopback: true,
                private: false,
            },
        };
        let name: Name = "localhost".parse().expect("name");
        assert!(open.resolve(name).await.is_ok());
    }

    #[test]
    fn urls_must_be_http_without_credentials() {
        assert!(parse_url("https://example.com/hook").is_ok());
        assert!(parse_url("ftp://example.com/").is_err());
        assert!(parse_url("http://user:pw@example.com/").is_err());
        assert!(parse_url("not a url").is_err());
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
        let sig = sign(b"secret", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }
}
