//! Fuzz target: the bodies of `POST /v1/tokens` and of the OAuth-style
//! endpoints (`/v1/oauth/token`, `/v1/oauth/token/refresh`,
//! `/v1/oauth/revoke`), each as a form and as JSON, as the server decodes
//! and validates them. The first byte picks the route and encoding. Never a
//! panic; every refusal is a 4xx in the error shape; an accepted token
//! request gives the same token once re-encoded.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strictpy_server::fuzzing::{self, is_client_error};

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let form = route & 1 == 1;
    let result = match (route >> 1) % 4 {
        0 => match fuzzing::token_create(body) {
            Ok((tenant, scopes)) => {
                let value: serde_json::Value =
                    serde_json::from_slice(body).expect("an accepted body is JSON");
                let again = serde_json::to_vec(&value).expect("re-encodes");
                let (t, s) = fuzzing::token_create(&again).expect("re-encoded token refused");
                assert_eq!((t, s), (tenant, scopes));
                Ok(())
            }
            Err(e) => Err(e),
        },
        1 => fuzzing::oauth_token(form, body),
        2 => fuzzing::oauth_refresh(form, body),
        _ => fuzzing::oauth_revoke(form, body),
    };
    if let Err(e) = result {
        assert!(is_client_error(&e), "{e}");
    }
});
