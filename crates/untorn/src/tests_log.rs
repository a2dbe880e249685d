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
    assert_eq!(valid_prefix(b"", l), Ok((0, None)));
    assert_eq!(valid_prefix(b"a\n", l), Ok((2, None)));
    // A last line without its newline may be a legitimate line (`untorn write` adds none):
    // in a log of lines it stays.
    assert_eq!(valid_prefix(b"a\nbc", l), Ok((4, None)));
    assert_eq!(valid_prefix(b"abc", l), Ok((3, None)));
    // Zeros where the data should be (the size reached the disk first), with or without a
    // newline among them or after them (the end of a record whose start never reached the
    // disk).
    assert_eq!(valid_prefix(b"a\n\0\0\0\0", l), Ok((2, Some(Zeros))));
    assert_eq!(valid_prefix(b"a\n\0\0x\n", l), Ok((2, Some(Zeros))));
    assert_eq!(valid_prefix(b"a\n\0\0x\n\0\n", l), Ok((2, Some(Zeros))));
    assert_eq!(valid_prefix(b"a\nb\0", l), Ok((2, Some(Zeros))));
    assert_eq!(valid_prefix(b"\0\0", j), Ok((0, Some(Zeros))));
    // What follows zeros goes with them if it cannot stay by itself; a last line that may stay
    // (a line, or JSON) makes the zeros before it a line that is not a record: refused.
    assert_eq!(valid_prefix(b"1\n\0\0\n{\"b", j), Ok((2, Some(Zeros))));
    assert_eq!(valid_prefix(b"a\n\0\0\nxyz", l).unwrap_err().offset, 2);
    assert_eq!(valid_prefix(b"{}\n\0\0\n{}", j).unwrap_err().offset, 3);
    // JSON Lines: an unterminated last line stays if it is JSON, and is a torn record if not.
    assert_eq!(
        valid_prefix(b"{\"a\":1}\n{\"a\":", j),
        Ok((8, Some(Incomplete)))
    );
    assert_eq!(valid_prefix(b"{\"a\":1}\n{\"a\":2}", j), Ok((15, None)));
    assert_eq!(valid_prefix(b"{\"a\":1}\ngarbage\n", l), Ok((16, None)));
    // A complete line is never cut: one that is not a record is refused, whether it ends the
    // log or not, and the last such line is named.
    let bad = valid_prefix(b"{\"a\":1}\ngarbage\n", j).unwrap_err();
    assert_eq!((bad.offset, bad.column), (8, 1));
    assert!(bad.why.contains("not JSON"), "{}", bad.why);
    let bad = valid_prefix(b"x\ny\n{}\nz\n{}\n{\"a", j).unwrap_err();
    assert_eq!(bad.offset, 7);
    assert_eq!(valid_prefix(b"x\0\n{}\n", j).unwrap_err().offset, 0);
    let bad = valid_prefix(b"a\nb\0c\nd\n", l).unwrap_err();
    assert_eq!((bad.offset, bad.column), (2, 2));
    assert!(bad.why.contains("NUL"), "{}", bad.why);
    // An empty line is not JSON either.
    assert_eq!(valid_prefix(b"{}\n\n", j).unwrap_err().offset, 3);
}

/// Issue 13, item 1: a log whose last line has no newline (`untorn write` adds none) keeps it;
/// the append ends it first, in its one write.
#[test]
fn append_keeps_and_ends_an_unterminated_last_line() {
    let d = dir();
    let p = d.path().join("progress.log");
    fs::write(&p, "step 1 done").unwrap();
    let probe = Probe::real();
    let done = AppendOptions::new()
        .sys(Arc::new(probe.clone()) as Arc<dyn Sys>)
        .append(&p, "step 2 done")
        .unwrap();
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        "step 1 done\nstep 2 done\n"
    );
    assert_eq!(done.repaired, None);
    assert!(done.terminated);
    assert_eq!(done.bytes, 12);
    assert_eq!(probe.count(Call::Write), 1, "{}", probe.transcript());
    // Reads return it as a record.
    fs::write(&p, "a\nb").unwrap();
    let log = read_log(&p, LogFormat::Lines).unwrap();
    assert_eq!(log.records, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(log.torn, None);
    assert_eq!(repair(&p, LogFormat::Lines).unwrap(), None);
    assert_eq!(fs::read(&p).unwrap(), b"a\nb");
    // A failed append leaves it as it was (unterminated).
    let probe = Probe::real();
    probe.fail_nth(Some(Call::Write), 1, ENOSPC);
    AppendOptions::new()
        .sys(Arc::new(probe) as Arc<dyn Sys>)
        .append(&p, "c")
        .unwrap_err();
    assert_eq!(fs::read(&p).unwrap(), b"a\nb");
}

/// Issue 13, item 2: appending JSON Lines to a text file used to cut every trailing line that
/// is not JSON (the whole file). It is refused, naming the file and the line; nothing changes.
#[test]
fn jsonl_refuses_a_file_that_is_not_json_lines() {
    let d = dir();
    let p = d.path().join("notes.txt");
    // Long enough that the end is judged from a window, not the whole file.
    let text: String = (1..=1000)
        .map(|i| format!("note {i}: {}\n", "x".repeat(i % 50)))
        .collect();
    fs::write(&p, &text).unwrap();
    let jsonl = || {
        let mut o = AppendOptions::new();
        o.format(LogFormat::JsonLines);
        o
    };
    let e = jsonl().append(&p, "{\"a\":1}").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidContent);
    assert_eq!(e.op(), Op::Append);
    assert_eq!(e.location(), Some((1000, 2)));
    let msg = e.to_string();
    assert!(
        msg.contains("notes.txt") && msg.contains("line 1000") && msg.contains("not JSON Lines"),
        "{msg}"
    );
    for e in [
        repair(&p, LogFormat::JsonLines).unwrap_err(),
        read_log(&p, LogFormat::JsonLines).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::InvalidContent);
        assert!(e.to_string().contains("line 1000"), "{e}");
    }
    assert_eq!(fs::read_to_string(&p).unwrap(), text);
    // A JSON Lines log with one bad complete line: refused too, naming it; nothing cut.
    let q = d.path().join("e.jsonl");
    fs::write(&q, "{\"n\":1}\n{\"n\":2}\nnot json\n{\"n\":").unwrap();
    let e = jsonl().append(&q, "{\"n\":3}").unwrap_err();
    assert!(e.to_string().contains("line 3"), "{e}");
    assert_eq!(
        fs::read(&q).unwrap(),
        b"{\"n\":1}\n{\"n\":2}\nnot json\n{\"n\":"
    );
    // The same file as plain lines: the torn-looking tail is a line, kept and ended.
    let done = AppendOptions::new().append(&q, "next").unwrap();
    assert_eq!(done.repaired, None);
    assert_eq!(
        fs::read(&q).unwrap(),
        b"{\"n\":1}\n{\"n\":2}\nnot json\n{\"n\":\nnext\n"
    );
}

/// A torn JSON record is cut, and the append says so in what it returns.
#[test]
fn append_returns_the_torn_tail_it_cut() {
    let d = dir();
    let p = d.path().join("e.jsonl");
    fs::write(&p, "{\"n\":1}\n{\"n\"").unwrap();
    let done = append_jsonl(&p, &serde_json::json!({"n": 2})).unwrap();
    let t = done.repaired.unwrap();
    assert_eq!(
        (t.valid_len, t.junk_len, t.reason),
        (8, 4, TornReason::Incomplete)
    );
    assert!(!done.terminated);
    assert_eq!(fs::read_to_string(&p).unwrap(), "{\"n\":1}\n{\"n\":2}\n");
    // Zeros after an unterminated line: cut back to the last complete line.
    fs::write(&p, b"{\"n\":1}\n{\"n\":2}\0\0\0").unwrap();
    let done = append_jsonl(&p, &serde_json::json!({"n": 3})).unwrap();
    assert_eq!(done.repaired.unwrap().reason, TornReason::Zeros);
    assert_eq!(fs::read_to_string(&p).unwrap(), "{\"n\":1}\n{\"n\":3}\n");
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

/// The end is judged from a window at the file's end; lines longer than the window, and zeros
/// beyond it, are judged the same as in a short file.
#[test]
fn long_lines_and_long_zero_runs_are_judged_whole() {
    let d = dir();
    let p = d.path().join("big.jsonl");
    let long_json = format!("{{\"pad\":\"{}\"}}", "y".repeat(20_000));
    let long_text = "z".repeat(20_000);
    let jsonl = || {
        let mut o = AppendOptions::new();
        o.format(LogFormat::JsonLines);
        o
    };
    // A long complete record, then a torn one: only the torn one goes.
    fs::write(&p, format!("{{}}\n{long_json}\n{{\"n\":")).unwrap();
    let t = jsonl().append(&p, "{}").unwrap().repaired.unwrap();
    assert_eq!(t.valid_len as usize, 3 + long_json.len() + 1);
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        format!("{{}}\n{long_json}\n{{}}\n")
    );
    // A long unterminated record that is JSON stays.
    fs::write(&p, format!("{{}}\n{long_json}")).unwrap();
    let done = jsonl().append(&p, "{}").unwrap();
    assert_eq!((done.repaired, done.terminated), (None, true));
    // A long last complete line that is not JSON: refused, named.
    let before = format!("{{}}\n{long_text}\n{{\"n\":");
    fs::write(&p, &before).unwrap();
    let e = jsonl().append(&p, "{}").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    assert_eq!(fs::read_to_string(&p).unwrap(), before);
    // Before a valid last line, it is for reads to find (an append judges the last complete
    // line only: O(record)).
    let before = format!("{{}}\n{long_text}\n{{}}\n");
    fs::write(&p, &before).unwrap();
    let e = read_log(&p, LogFormat::JsonLines).unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    jsonl().append(&p, "{}").unwrap();
    // A long run of lines holding zeros after the last record: all cut.
    let mut junk = b"{}\n".to_vec();
    for _ in 0..3000 {
        junk.extend_from_slice(b"\0\0\0\0\0\0\0\0\0\n");
    }
    fs::write(&p, &junk).unwrap();
    let t = repair(&p, LogFormat::JsonLines).unwrap().unwrap();
    assert_eq!((t.valid_len, t.reason), (3, TornReason::Zeros));
    assert_eq!(fs::read(&p).unwrap(), b"{}\n");
}

/// Issue 13, item 7: a failed append that created the log removes it again (an empty log left
/// behind is not "nothing changed"), at whichever step it fails.
#[test]
fn a_failed_append_that_created_the_log_removes_it() {
    let d = dir();
    let p = d.path().join("new.log");
    for (call, errno) in [
        (Call::Write, ENOSPC),
        (Call::Sync, EIO),
        (Call::SyncDir, EIO),
    ] {
        let probe = Probe::real();
        probe.fail_nth(Some(call), 1, errno);
        let e = AppendOptions::new()
            .sys(Arc::new(probe.clone()) as Arc<dyn Sys>)
            .append(&p, "first")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::from_errno(errno), "{call:?}");
        assert!(
            e.to_string().contains("new.log") && e.to_string().contains("was removed"),
            "{call:?}: {e}"
        );
        assert!(
            !p.exists(),
            "{call:?}: the log is left:\n{}",
            probe.transcript()
        );
    }
    // A log that existed is never removed by a failed append.
    fs::write(&p, "").unwrap();
    let probe = Probe::real();
    probe.fail_nth(Some(Call::Write), 1, ENOSPC);
    AppendOptions::new()
        .sys(Arc::new(probe) as Arc<dyn Sys>)
        .append(&p, "first")
        .unwrap_err();
    assert_eq!(fs::read(&p).unwrap(), b"");
}
