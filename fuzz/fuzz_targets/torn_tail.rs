//! `untorn::log::valid_prefix`, the torn-tail judge behind `tail`, `repair` and every append.
//!
//! The first byte picks the format (`j` or `J`: JSON Lines, anything else: lines); the rest is
//! the log. Checked: no panic, and
//! - when the log is accepted, `(len, reason)`: the kept part is no longer than the log; it has
//!   no torn reason exactly when it is the whole log; a cut is at a line boundary; **no
//!   complete line without NUL bytes is ever cut** (every `\n`-terminated line of the cut part
//!   holds a NUL byte; an unterminated one is cut only if it holds a NUL byte or, in JSON
//!   Lines, is not JSON); every complete line kept holds no NUL byte; and it is a fixed point:
//!   the judge run on the kept part keeps all of it (so a repair is idempotent), and the kept
//!   part, ended with a `\n` if it lacks one, then a fresh record, is kept whole (an append
//!   after a repair never removes anything);
//! - when it is refused (a complete line that is not a record): the line named starts at a line
//!   boundary and is complete (a `\n` follows it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use untorn::log::{valid_prefix, LogFormat, TornReason};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, log)) = data.split_first() else {
        return;
    };
    let format = match selector {
        b'j' | b'J' => LogFormat::JsonLines,
        _ => LogFormat::Lines,
    };
    let (len, reason) = match valid_prefix(log, format) {
        Ok(v) => v,
        Err(bad) => {
            assert!(bad.offset < log.len(), "refused line past the end: {bad:?}");
            assert!(
                bad.offset == 0 || log[bad.offset - 1] == b'\n',
                "refused line does not start a line: {bad:?}"
            );
            assert!(
                log[bad.offset..].contains(&b'\n'),
                "refused an unterminated line: {bad:?}"
            );
            return;
        }
    };
    assert!(
        len <= log.len(),
        "kept length {len} > log length {}",
        log.len()
    );
    assert_eq!(
        reason.is_none(),
        len == log.len(),
        "torn reason {reason:?} with {len} of {} bytes kept",
        log.len()
    );
    let (kept, cut) = log.split_at(len);
    if reason.is_some() {
        assert!(
            len == 0 || log[len - 1] == b'\n',
            "cut at {len}, not at a line boundary"
        );
    }
    // Never a complete line without NUL bytes cut.
    let mut lines = cut.split_inclusive(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if line.ends_with(b"\n") {
            assert!(line.contains(&0), "cut a complete line: {line:?}");
        } else {
            assert!(lines.peek().is_none());
            // Judged alone, it is not a record (JSON Lines only: any line is a record of
            // lines).
            let not_a_record = format == LogFormat::JsonLines
                && valid_prefix(line, format) == Ok((0, Some(TornReason::Incomplete)));
            assert!(
                line.contains(&0) || not_a_record,
                "cut an unterminated line that may stay: {line:?} ({reason:?})"
            );
        }
    }
    for line in kept.split_inclusive(|&b| b == b'\n') {
        if line.ends_with(b"\n") {
            assert!(!line.contains(&0), "kept a complete line with NUL bytes");
        }
    }
    assert_eq!(
        valid_prefix(kept, format),
        Ok((len, None)),
        "not idempotent on the kept {len} bytes"
    );
    let mut appended = kept.to_vec();
    if !appended.is_empty() && !appended.ends_with(b"\n") {
        appended.push(b'\n');
    }
    appended.extend_from_slice(b"{}\n");
    assert_eq!(
        valid_prefix(&appended, format),
        Ok((appended.len(), None)),
        "an append after the repair was not kept whole"
    );
});
