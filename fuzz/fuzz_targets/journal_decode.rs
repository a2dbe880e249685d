//! `untorn::txn::Journal::decode` on arbitrary bytes: it must never panic (a journal is read
//! back after a crash, so it may be truncated, zero-filled or garbage), and whatever it accepts
//! must survive a round trip: `decode(encode(j)) == j`.
//!
//! Random bytes almost never carry a valid CRC-32, which would keep the fuzzer at the checksum
//! check; so each input is decoded twice: as it is, and with its last 4 bytes replaced by the
//! CRC of the rest, which lets the fuzzer explore the structure behind the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use untorn::txn::Journal;

fn check(bytes: &[u8]) {
    let Ok(journal) = Journal::decode(bytes) else {
        return;
    };
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
