//! Unit tests of appends, torn-tail detection and repair.

use crate::log::valid_prefix;
use crate::sys::errnos::*;
use crate::sys::testing::{Call, Probe};
use crate::sys::Sys;
use crate::*;
use std::fs;
use std::io::Write;
use std::sync::Arc;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn append_adds_lines_and_refuses_bad_records() {
    let d = dir();
    let p = d.path().join("progress.log");
    append(&p, "one").unwrap();
    append(&p, "two\n").unwrap();
    AppendOptions::new()
        .append_all(&p, ["three", "four\n"])
        .unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "one\ntwo\nthree\nfour\n");

    let e = append(&p, "a\nb").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains("progress.log") && e.to_string().contains("one line"),
        "{e}"
    );
    assert_eq!(
        append(&p, "a\0b").unwrap_err().kind(),
        ErrorKind::InvalidContent
    );
    let e = AppendOptions::new()
        .format(LogFormat::JsonLines)
        .append(&p, "{not json")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidContent);
    // A batch with one bad record appends nothing.
    assert!(AppendOptions::new().append_all(&p, ["ok", "x\ny"]).is_err());
    assert_eq!(fs::read_to_string(&p).unwrap(), "one\ntwo\nthree\nfour\n");
}

#[test]
fn new_log_gets_a_normal_mode_and_a_durable_entry() {
    let d = dir();
    let p = d.path().join("new.log");
    let probe = Probe::real();
    AppendOptions::new()
        .sys(Arc::new(probe.clone()) as Arc<dyn Sys>)
        .append(&p, "x")
        .unwrap();
    let tr = probe.transcript();
    assert_eq!(probe.count(Call::Sync), 1, "{tr}");
    assert_eq!(
        probe.count(Call::SyncDir),
        1,
        "the new entry is made durable:\n{tr}"
    );
    let write = probe
        .events()
        .iter()
        .position(|e| e.call == Call::Write)
        .unwrap();
    let sync = probe
        .events()
        .iter()
        .position(|e| e.call == Call::Sync)
        .unwrap();
    assert!(write < sync, "{tr}");
    assert_eq!(probe.count(Call::Write), 1, "one write per append:\n{tr}");
    // An existing log: no directory sync.
    let probe = Probe::real();
    AppendOptions::new()
        .sys(Arc::new(probe.clone()) as Arc<dyn Sys>)
        .append(&p, "y")
        .unwrap();
    assert_eq!(probe.count(Call::SyncDir), 0, "{}", probe.transcript());
    use std::os::unix::fs::PermissionsExt;
    let umask = crate::sys::Real.umask();
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o666 & !umask
    );
}

#[test]
fn torn_tails_are_detected() {
    use TornReason::*;
    let l = LogFormat::Lines;
    let j = LogFormat::JsonLines;
    assert_eq!(valid_prefix(b"", l), (0, None));
    assert_eq!(valid_prefix(b"a\n", l), (2, None));
    assert_eq!(valid_prefix(b"a\nbc", l), (2, Some(Incomplete)));
    assert_eq!(valid_prefix(b"abc", l), (0, Some(Incomplete)));
    // Zeros where the data should be (the size reached the disk first), with or without a
    // newline among stale bytes after them.
    assert_eq!(valid_prefix(b"a\n\0\0\0\0", l), (2, Some(Incomplete)));
    assert_eq!(valid_prefix(b"a\n\0\0x\n", l), (2, Some(Zeros)));
    assert_eq!(
        valid_prefix(b"{\"a\":1}\n{\"a\":", j),
        (8, Some(Incomplete))
    );
    assert_eq!(
        valid_prefix(b"{\"a\":1}\ngarbage\n", j),
        (8, Some(InvalidJson))
    );
    assert_eq!(valid_prefix(b"{\"a\":1}\ngarbage\n", l), (16, None));
    // Only the tail is judged: a bad record followed by a good one is not a torn tail.
    assert_eq!(valid_prefix(b"x\0\n{}\n", j), (6, None));
}

#[test]
fn reads_leave_the_torn_tail_out_and_appends_repair_it_first() {
    let d = dir();
    let p = d.path().join("events.jsonl");
    fs::write(&p, "{\"n\":1}\n{\"n\":2}\n{\"n\":").unwrap();
    let log = read_log(&p, LogFormat::JsonLines).unwrap();
    assert_eq!(
        log.records,
        vec![b"{\"n\":1}".to_vec(), b"{\"n\":2}".to_vec()]
    );
    let t = log.torn.unwrap();
    assert_eq!(
        (t.valid_len, t.junk_len, t.reason),
        (16, 5, TornReason::Incomplete)
    );
    assert_eq!(
        tail(&p, 1, LogFormat::JsonLines).unwrap(),
        vec![b"{\"n\":2}".to_vec()]
    );
    // Reading changes nothing.
    assert_eq!(fs::metadata(&p).unwrap().len(), 21);
    // The next append is never glued to the garbage.
    append_jsonl(&p, &serde_json::json!({"n": 3})).unwrap();
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"
    );
}

#[test]
fn repair_truncates_to_the_last_record_even_far_back() {
    let d = dir();
    let p = d.path().join("a.log");
    // A record, then 300 KiB of zeros: more than one read window.
    let mut f = fs::File::create(&p).unwrap();
    f.write_all(b"keep me\n").unwrap();
    f.write_all(&vec![0u8; 300 * 1024]).unwrap();
    drop(f);
    let t = repair(&p, LogFormat::Lines).unwrap().unwrap();
    assert_eq!(t.valid_len, 8);
    assert_eq!(fs::read(&p).unwrap(), b"keep me\n");
    assert_eq!(repair(&p, LogFormat::Lines).unwrap(), None, "whole now");
    // A log that is all junk is emptied.
    fs::write(&p, b"\0\0\0").unwrap();
    repair(&p, LogFormat::Lines).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"");
    assert_eq!(
        repair(d.path().join("none.log"), LogFormat::Lines)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn a_failed_append_appends_nothing() {
    let d = dir();
    let p = d.path().join("a.log");
    append(&p, "first").unwrap();
    for (call, errno) in [(Call::Write, ENOSPC), (Call::Write, EIO)] {
        let probe = Probe::real();
        probe.fail_nth(Some(call), 1, errno);
        let e = AppendOptions::new()
            .sys(Arc::new(probe) as Arc<dyn Sys>)
            .append(&p, "second")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::from_errno(errno));
        assert!(e.to_string().contains("nothing was appended"), "{e}");
        assert_eq!(fs::read_to_string(&p).unwrap(), "first\n");
    }
    let probe = Probe::real();
    probe.fail_nth(Some(Call::Sync), 1, EIO);
    let e = AppendOptions::new()
        .sys(Arc::new(probe) as Arc<dyn Sys>)
        .append(&p, "third")
        .unwrap_err();
    assert_eq!(e.op(), Op::Sync);
}

#[test]
fn yaml_list_appends() {
    let d = dir();
    let p = d.path().join("events.yaml");
    append_to_yaml_list(&p, None, &serde_json::json!({"event": "a"})).unwrap();
    append_to_yaml_list(&p, None, &"b").unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "- event: a\n- b\n");
    let q = d.path().join("state.yaml");
    fs::write(&q, "name: x\n").unwrap();
    append_to_yaml_list(&q, Some("events"), &1).unwrap();
    append_to_yaml_list(&q, Some("events"), &2).unwrap();
    assert_eq!(
        fs::read_to_string(&q).unwrap(),
        "name: x\nevents:\n- 1\n- 2\n"
    );
    let e = append_to_yaml_list(&q, Some("name"), &3).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidContent);
    assert_eq!(
        fs::read_to_string(&q).unwrap(),
        "name: x\nevents:\n- 1\n- 2\n"
    );
}
