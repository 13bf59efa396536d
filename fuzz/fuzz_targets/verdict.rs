//! Fuzz target: the host's reading of the guest's verdict document
//! (`strictpy_protocol::outcome::decode`) must turn any bytes into a result or
//! an error, never panic, and never hand on more than the documented caps.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strictpy_protocol::{MAX_MESSAGE_BYTES, MAX_TRACEBACK_BYTES, outcome};
use strictpy_types::{Limits, Verdict};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    for memory_denied in [false, true] {
        let Ok((result, error)) = outcome::decode(Some(data), memory_denied, &limits) else {
            continue;
        };
        if let Some(error) = error {
            assert!(result.is_none(), "a failed run carries no result");
            // The message is `type: message`, each part capped.
            assert!(error.message.len() <= 2 * MAX_MESSAGE_BYTES + 2, "{}", error.message.len());
            if let Some(tb) = &error.traceback {
                assert!(tb.len() <= MAX_TRACEBACK_BYTES, "{}", tb.len());
            }
            if error.kind == Verdict::MemoryLimit {
                assert!(memory_denied);
            }
        }
    }
    assert!(outcome::decode(None, false, &limits).is_err());
});
