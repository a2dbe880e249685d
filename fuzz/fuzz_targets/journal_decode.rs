//! `untorn::txn::Journal::decode` on arbitrary bytes: it must never panic (a journal is read
//! back after a crash, so it may be truncated, zero-filled or garbage), and whatever it accepts
//! must survive a round trip: `decode(encode(j)) == j`.
//!
//! Random bytes almost never carry a valid CRC-32, which would keep the fuzzer at the checksum
//! check; so each input is decoded twice: as it is, and with its last 4 bytes replaced by the
//! CRC of the rest, which lets the fuzzer explore the structure behind the checksum.
//!
//! Every journal that decodes is then planted, hostile, in a shared directory of the crash
//! simulator (`/d`, sticky; inode 2 on device 1) beside a directory it may name (`/o`, inode 3,
//! which holds no copy of it), once as root's and once as another user's, and `untorn recover
//! /d` runs over it. Whatever the journal says: nothing in `/o` changes (recovery never acts in
//! a directory without a trusted copy of the journal), and another user's journal changes
//! nothing at all.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::Arc;
use untorn::sys::sim::{Sim, Tree};
use untorn::txn::Journal;

const OUTSIDE: &[(&str, &[u8])] = &[
    ("/o/secret", b"outside"),
    ("/o/.secret.untorn-00000000.tmp", b"an outside temp"),
    ("/o/config.json", b"{}"),
    ("/o/config.json.lock", &[0u8]),
];

/// The outside directory's names and contents.
fn outside(t: &Tree) -> Vec<(std::ffi::OsString, Option<Vec<u8>>)> {
    t.names(Path::new("/o"))
        .into_iter()
        .map(|n| {
            let c = t.read(&Path::new("/o").join(&n));
            (n, c)
        })
        .collect()
}

fn recover_on_sim(bytes: &[u8], owner: u32) {
    let sim = Sim::default();
    sim.mkdir(Path::new("/d"));
    sim.mkdir(Path::new("/o"));
    sim.chmod_dir(Path::new("/d"), 0o1777);
    for (p, c) in OUTSIDE {
        sim.put(Path::new(p), c);
    }
    sim.put(Path::new("/d/a.json"), b"{\"a\": 1}");
    sim.put(Path::new("/d/.a.json.untorn-0badc0de.tmp"), b"{\"a\": 2}");
    let j = Path::new("/d/.untorn-txn-0001.journal");
    sim.put(j, bytes);
    sim.chown(j, owner);
    let flag = Path::new("/d/a.json.lock");
    sim.put(flag, &[0u8]);
    sim.chown(flag, owner);
    let before = sim.volatile();
    let mut opts = untorn::RecoverOptions::new();
    opts.sys(Arc::new(sim.clone()));
    let _ = untorn::recover("/d", &opts);
    let after = sim.volatile();
    assert_eq!(
        outside(&before),
        outside(&after),
        "recovery changed a directory without a copy of the journal (owner {owner})"
    );
    if owner != 0 {
        for p in ["/d/a.json", "/d/.untorn-txn-0001.journal", "/d/a.json.lock"] {
            assert_eq!(
                before.read(Path::new(p)),
                after.read(Path::new(p)),
                "another user's journal changed {p}"
            );
        }
    }
}

fn check(bytes: &[u8]) {
    let Ok(journal) = Journal::decode(bytes) else {
        return;
    };
    recover_on_sim(bytes, 0);
    recover_on_sim(bytes, 65534);
    let encoded = journal.encode();
    let again = Journal::decode(&encoded)
        .unwrap_or_else(|e| panic!("re-encoded journal does not decode: {e}: {journal:?}"));
    assert_eq!(again, journal, "journal changed in a round trip");
    // The encoding is canonical: encoding the decoded journal again gives the same bytes.
    assert_eq!(again.encode(), encoded, "encoding is not stable");
    // Any truncation of a valid journal is rejected (the commit point was not reached). Checked
    // on a few cut points only, to keep the target fast.
    for cut in [
        0,
        1,
        encoded.len() / 2,
        encoded.len() - 4,
        encoded.len() - 1,
    ] {
        if cut < encoded.len() {
            assert!(
                Journal::decode(&encoded[..cut]).is_err(),
                "a journal cut to {cut} of {} bytes decodes",
                encoded.len()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 4 {
        let body = &data[..data.len() - 4];
        let mut fixed = body.to_vec();
        fixed.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        check(&fixed);
    }
});
