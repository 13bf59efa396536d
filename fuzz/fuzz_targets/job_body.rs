//! Fuzz target: `POST /v1/jobs` and `POST /v1/jobs/batch` bodies as the
//! server decodes and validates them (`strictpy_server::fuzzing`). The first
//! byte picks the route. Never a panic; every refusal is a 4xx in the error
//! shape; an accepted job still passes once re-encoded by serde_json.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use strictpy_server::fuzzing::{JobChecks, is_client_error};

static CHECKS: LazyLock<JobChecks> = LazyLock::new(JobChecks::default);

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    if route % 2 == 0 {
        match CHECKS.job(body) {
            Ok(checked) => {
                assert!(!checked.allowlist.is_empty());
                let value: serde_json::Value =
                    serde_json::from_slice(body).expect("an accepted body is JSON");
                let again = serde_json::to_vec(&value).expect("re-encodes");
                assert!(CHECKS.job(&again).is_ok(), "re-encoded job refused");
            }
            Err(e) => assert!(is_client_error(&e), "{e}"),
        }
    } else {
        match CHECKS.batch(body) {
            Ok(passed) => assert!(passed <= 20),
            Err(e) => assert!(is_client_error(&e), "{e}"),
        }
    }
});
