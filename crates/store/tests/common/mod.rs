//! Fixtures the store's test files share (`backends.rs`, `cluster.rs`):
//! the test key, and the plain records the tests insert.

use std::sync::Arc;

use strictpy_store::{JobSpec, Keyring, NewJob, TokenKind, TokenLimits, TokenRecord};
use strictpy_types::Limits;
use uuid::Uuid;

/// A test key ring with one key, `k1`.
pub const KEY_1: &str = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// The key ring `text` describes.
pub fn ring(text: &str) -> Arc<Keyring> {
    Arc::new(Keyring::parse(text).expect("keys"))
}

/// A job that prints `1`, with the default limits.
pub fn spec() -> JobSpec {
    JobSpec {
        code: "print(1)".into(),
        stdin: String::new(),
        context: None,
        allow: Vec::new(),
        allowlist: Default::default(),
        limits: Limits::default(),
        seed: None,
        function: None,
    }
}

/// A new [`spec`] job of tenant `t1`, with the idempotency key `key`, no
/// token and no webhook.
pub fn new_job(key: Option<&str>) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        tenant: "t1".into(),
        token_id: None,
        idempotency_key: key.map(str::to_owned),
        request_hash: "h".into(),
        created_at: 1,
        spec: spec(),
        callback_url: None,
    }
}

/// A live `jobs:read` token of `tenant` made at `created_at`, whose hash is
/// its id padded.
pub fn token(id: &str, kind: TokenKind, tenant: &str, created_at: i64) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        kind,
        tenant: tenant.into(),
        name: format!("{id} name"),
        hash: format!("{id:0>64}"),
        scopes: vec!["jobs:read".into()],
        created_at,
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
        parent_id: None,
        family_id: None,
        used_at: None,
        limits: TokenLimits::default(),
    }
}
