//! `untorn append`, `untorn tail` and `untorn repair`, run as a user would.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn untorn(args: &[&str], dir: &Path, stdin: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_untorn"))
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    c.wait_with_output().unwrap()
}

#[test]
fn append_lines_from_arguments_and_stdin() {
    let d = tempfile::tempdir().unwrap();
    assert!(untorn(&["append", "p.log", "one", "two"], d.path(), None)
        .status
        .success());
    assert!(
        untorn(&["append", "p.log"], d.path(), Some("three\nfour\n"))
            .status
            .success()
    );
    assert!(untorn(&["append", "p.log"], d.path(), Some("five"))
        .status
        .success());
    assert_eq!(
        fs::read_to_string(d.path().join("p.log")).unwrap(),
        "one\ntwo\nthree\nfour\nfive\n"
    );
    let out = untorn(&["tail", "-n", "2", "p.log"], d.path(), None);
    assert_eq!(out.stdout, b"four\nfive\n");
    let out = untorn(&["tail", "p.log"], d.path(), None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
}

#[test]
fn jsonl_checks_each_record_and_appends_nothing_on_error() {
    let d = tempfile::tempdir().unwrap();
    let out = untorn(
        &["append", "--jsonl", "e.jsonl", "{\"a\":1}", "{oops"],
        d.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(12));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("untorn: cannot append to 'e.jsonl'"),
        "{err}"
    );
    assert!(
        !d.path().join("e.jsonl").exists()
            || fs::read(d.path().join("e.jsonl")).unwrap().is_empty()
    );
    assert!(untorn(
        &["append", "--jsonl", "e.jsonl", "{\"a\":1}"],
        d.path(),
        None
    )
    .status
    .success());
}

#[test]
fn a_torn_tail_is_hidden_repaired_and_never_glued_to() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("e.jsonl");
    fs::write(&p, "{\"n\":1}\n{\"n\":2}\n{\"n\"").unwrap();
    let out = untorn(&["tail", "--jsonl", "e.jsonl"], d.path(), None);
    assert_eq!(out.stdout, b"{\"n\":1}\n{\"n\":2}\n");
    let out = untorn(&["repair", "--jsonl", "e.jsonl"], d.path(), None);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("removed 4 bytes"));
    assert_eq!(fs::read_to_string(&p).unwrap(), "{\"n\":1}\n{\"n\":2}\n");
    // Zeros at the tail (ext4 after a power cut): the next append repairs first.
    let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    assert!(untorn(
        &["append", "--jsonl", "e.jsonl", "{\"n\":3}"],
        d.path(),
        None
    )
    .status
    .success());
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"
    );
    let out = untorn(&["repair", "missing.log"], d.path(), None);
    assert_eq!(out.status.code(), Some(3));
}

/// No temp file, and no file but the ones named, in `dir` (the log's lock file is expected).
fn assert_only(dir: &Path, names: &[&str]) {
    let mut got: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "files in {}", dir.display());
}

/// Issue 13, item 1: `untorn write` adds no newline, so a log started with it ends in an
/// unterminated line; the next append must keep that line (and end it), not cut it as torn.
#[test]
fn append_keeps_a_last_line_without_newline() {
    let d = tempfile::tempdir().unwrap();
    let out = untorn(&["write", "progress.log", "step 1 done"], d.path(), None);
    assert!(out.status.success());
    let out = untorn(&["append", "progress.log", "step 2 done"], d.path(), None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        fs::read_to_string(d.path().join("progress.log")).unwrap(),
        "step 1 done\nstep 2 done\n"
    );
    // Nothing was cut, so nothing to warn about.
    assert!(out.stderr.is_empty(), "{out:?}");
    let out = untorn(&["tail", "progress.log"], d.path(), None);
    assert_eq!(out.stdout, b"step 1 done\nstep 2 done\n");
    // A log whose last line lacks its newline is read whole, that line included.
    fs::write(d.path().join("notes.log"), "a\nb").unwrap();
    let out = untorn(&["tail", "notes.log"], d.path(), None);
    assert_eq!(out.stdout, b"a\nb\n");
    let out = untorn(&["repair", "notes.log"], d.path(), None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(fs::read(d.path().join("notes.log")).unwrap(), b"a\nb");
    assert_only(
        d.path(),
        &[
            "progress.log",
            "progress.log.lock",
            "notes.log",
            "notes.log.lock",
        ],
    );
}

/// Issue 13, item 2: `--jsonl` on a file that is not JSON Lines (a 1,000-line text file) used
/// to truncate every trailing non-JSON line, i.e. the whole file, with exit 0. Now append,
/// repair and tail refuse with exit 12, name the file and the line, and change nothing.
#[test]
fn jsonl_commands_refuse_a_text_file_and_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("notes.txt");
    let text: String = (1..=1000).map(|i| format!("note number {i}\n")).collect();
    fs::write(&p, &text).unwrap();
    for args in [
        &["append", "--jsonl", "notes.txt", "{\"a\":1}"][..],
        &["repair", "--jsonl", "notes.txt"][..],
        &["tail", "--jsonl", "notes.txt"][..],
    ] {
        let out = untorn(args, d.path(), None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(12), "{args:?}: {err}");
        assert!(
            err.contains("'notes.txt'") && err.contains("line 1000") && err.contains("JSON"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(fs::read_to_string(&p).unwrap(), text, "{args:?}");
    }
    // A complete non-JSON line anywhere in what `tail` reads is refused, not skipped.
    fs::write(d.path().join("e.jsonl"), "{\"n\":1}\noops\n{\"n\":2}\n").unwrap();
    let out = untorn(&["tail", "--jsonl", "e.jsonl"], d.path(), None);
    assert_eq!(out.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

/// A JSON Lines log's unterminated last line is kept when it is JSON (and ended by the next
/// append), and cut, loudly, when it is not: the torn record of an interrupted append.
#[test]
fn jsonl_unterminated_last_line_is_kept_if_json_and_cut_loudly_if_not() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("e.jsonl");
    fs::write(&p, "{\"n\":1}\n{\"n\":2}").unwrap();
    let out = untorn(
        &["append", "--jsonl", "e.jsonl", "{\"n\":3}"],
        d.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"
    );
    fs::write(&p, "{\"n\":1}\n{\"n\":2}\n{\"n\":").unwrap();
    let out = untorn(
        &["append", "--jsonl", "e.jsonl", "{\"n\":3}"],
        d.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("'e.jsonl'") && err.contains("5 bytes"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"
    );
}
