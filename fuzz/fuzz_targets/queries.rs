//! Fuzz target: the query strings of `GET /v1/jobs` and `GET /v1/audit` as
//! the server decodes (axum's `Query`) and validates them. The first byte
//! picks the route. Never a panic; every refusal is a 4xx in the error
//! shape; an accepted page size is within its documented range.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strictpy_server::fuzzing::{self, is_client_error};

fuzz_target!(|data: &[u8]| {
    let Some((&route, query)) = data.split_first() else {
        return;
    };
    let query = String::from_utf8_lossy(query);
    let (result, max) = if route % 2 == 0 {
        (fuzzing::job_list_query(&query), 200)
    } else {
        (fuzzing::audit_list_query(&query), 1000)
    };
    match result {
        Ok(limit) => assert!((1..=max).contains(&limit), "{limit}"),
        Err(e) => assert!(is_client_error(&e), "{e}"),
    }
});
