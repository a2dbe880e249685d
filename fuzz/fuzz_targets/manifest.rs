//! `untorn::txn::parse_manifest` (`untorn txn --manifest FILE`) on arbitrary bytes, and
//! `untorn::txn::parse_ops` (the words of `untorn txn put A=B rm C ...`) on words split from the
//! same bytes at spaces, tabs, newlines and NULs. Neither may panic. What they accept must mean
//! the same when written back: each change, printed as its verb and argument, parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use untorn::txn::{parse_manifest, parse_ops, ManifestOp};

/// The words of one change, as `untorn txn` takes them on its command line.
fn words(op: &ManifestOp) -> [Vec<u8>; 2] {
    let join = |a: &std::path::Path, b: &std::path::Path| {
        let mut v = a.as_os_str().as_bytes().to_vec();
        v.push(b'=');
        v.extend_from_slice(b.as_os_str().as_bytes());
        v
    };
    match op {
        ManifestOp::Put { target, source } => [b"put".to_vec(), join(target, source)],
        ManifestOp::Remove(p) => [b"rm".to_vec(), p.as_os_str().as_bytes().to_vec()],
        ManifestOp::Rename { from, to } => [b"mv".to_vec(), join(from, to)],
        other => panic!("a change this target does not know: {other:?}"),
    }
}

fn reparse(op: &ManifestOp) {
    let [verb, arg] = words(op);
    let again = parse_ops([OsString::from_vec(verb), OsString::from_vec(arg)])
        .unwrap_or_else(|e| panic!("{op:?} written back does not parse: {e}"));
    assert_eq!(
        again.as_slice(),
        std::slice::from_ref(op),
        "changed when written back"
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(ops) = parse_manifest(data) {
        for op in &ops {
            reparse(op);
            // A manifest line, written back, parses to the same change.
            let [verb, arg] = words(op);
            let line = [verb, b" ".to_vec(), arg, b"\n".to_vec()].concat();
            assert_eq!(
                parse_manifest(&line).as_deref(),
                Ok(std::slice::from_ref(op)),
                "manifest line {:?} changed when written back",
                String::from_utf8_lossy(&line)
            );
        }
    }
    let words: Vec<OsString> = data
        .split(|b| matches!(b, b' ' | b'\t' | b'\n' | 0))
        .filter(|w| !w.is_empty())
        .map(|w| OsString::from_vec(w.to_vec()))
        .collect();
    let n = words.len();
    if let Ok(ops) = parse_ops(words) {
        assert_eq!(ops.len() * 2, n, "{n} words gave {} changes", ops.len());
        for op in &ops {
            reparse(op);
        }
    }
});
