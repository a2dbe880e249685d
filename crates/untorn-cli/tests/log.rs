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
