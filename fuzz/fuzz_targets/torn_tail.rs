//! `untorn::log::valid_prefix`, the torn-tail detector behind `tail`, `repair` and every append.
//!
//! The first byte picks the format (`j` or `J`: JSON Lines, anything else: lines); the rest is
//! the log. Checked: no panic; the valid prefix is no longer than the log and is empty or ends
//! right after a `\n`; it has no torn reason exactly when it is the whole log; and it is a fixed
//! point: the detector run on the prefix keeps all of it and finds nothing torn (so a repair,
//! which truncates to it, is idempotent, and an append after a repair never removes a record).
#![no_main]

use libfuzzer_sys::fuzz_target;
use untorn::log::{valid_prefix, LogFormat};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, log)) = data.split_first() else {
        return;
    };
    let format = match selector {
        b'j' | b'J' => LogFormat::JsonLines,
        _ => LogFormat::Lines,
    };
    let (len, reason) = valid_prefix(log, format);
    assert!(
        len <= log.len(),
        "valid length {len} > log length {}",
        log.len()
    );
    assert!(
        len == 0 || log[len - 1] == b'\n',
        "valid prefix of {len} bytes does not end after a newline"
    );
    assert_eq!(
        reason.is_none(),
        len == log.len(),
        "torn reason {reason:?} with {len} of {} bytes valid",
        log.len()
    );
    let prefix = &log[..len];
    if let Some(body) = prefix.strip_suffix(b"\n") {
        let last = body.rsplit(|&b| b == b'\n').next().unwrap_or(body);
        assert!(!last.contains(&0), "the last kept record holds a NUL byte");
    }
    assert_eq!(
        valid_prefix(prefix, format),
        (len, None),
        "not idempotent on the valid prefix of {len} bytes"
    );
});
