//! `untorn txn`, run as a user would.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn untorn(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_untorn"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn read(dir: &Path, n: &str) -> Option<String> {
    fs::read_to_string(dir.join(n)).ok()
}

#[test]
fn put_rm_mv_commit_together_and_print_what_they_did() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::write(p.join("new_a.json"), "{\"a\": 2}\n").unwrap();
    fs::write(p.join("new_b.yaml"), "b: 2\n").unwrap();
    fs::write(p.join("a.json"), "{\"a\": 1}\n").unwrap();
    fs::write(p.join("old.txt"), "x").unwrap();
    fs::write(p.join("from.txt"), "moved").unwrap();
    let out = untorn(
        &[
            "txn",
            "put",
            "a.json=new_a.json",
            "put",
            "b.yaml=new_b.yaml",
            "rm",
            "old.txt",
            "mv",
            "from.txt=to.txt",
        ],
        p,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "wrote\ta.json\nwrote\tb.yaml\nremoved\told.txt\nrenamed\tfrom.txt\tto.txt\n"
    );
    assert_eq!(read(p, "a.json").unwrap(), "{\"a\": 2}\n");
    assert_eq!(read(p, "b.yaml").unwrap(), "b: 2\n");
    assert!(read(p, "old.txt").is_none() && read(p, "from.txt").is_none());
    assert_eq!(read(p, "to.txt").unwrap(), "moved");
}

#[test]
fn any_bad_change_means_no_change_at_all() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::write(p.join("a.json"), "{\"a\": 1}\n").unwrap();
    fs::write(p.join("good.json"), "{\"a\": 2}\n").unwrap();
    fs::write(p.join("bad.json"), "{\"a\": ").unwrap();
    // Invalid content for the target's format: exit 12.
    let out = untorn(
        &["txn", "put", "a.json=good.json", "put", "b.json=bad.json"],
        p,
    );
    assert_eq!(out.status.code(), Some(12), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("b.json"));
    // A missing source: exit 3; removing a missing file: exit 3.
    let out = untorn(
        &["txn", "put", "a.json=good.json", "put", "c.json=nope.json"],
        p,
    );
    assert_eq!(out.status.code(), Some(3));
    let out = untorn(&["txn", "put", "a.json=good.json", "rm", "ghost"], p);
    assert_eq!(out.status.code(), Some(3));
    // Bad words: exit 2.
    for args in [
        &["txn"][..],
        &["txn", "put"],
        &["txn", "put", "a.json"],
        &["txn", "cp", "a=b"],
    ] {
        assert_eq!(untorn(args, p).status.code(), Some(2), "{args:?}");
    }
    assert_eq!(read(p, "a.json").unwrap(), "{\"a\": 1}\n");
    assert!(read(p, "b.json").is_none() && read(p, "c.json").is_none());
    // --no-check lets any bytes through.
    let out = untorn(&["txn", "--no-check", "put", "b.json=bad.json"], p);
    assert!(out.status.success());
}

#[test]
fn manifests_and_stdin() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::write(p.join("src"), "from a file\n").unwrap();
    fs::write(
        p.join("changes.txt"),
        "# today's changes\nput one.txt=src\n\n  put two.txt=src  \n",
    )
    .unwrap();
    let out = untorn(&["txn", "--manifest", "changes.txt"], p);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(read(p, "one.txt").unwrap(), "from a file\n");
    assert_eq!(read(p, "two.txt").unwrap(), "from a file\n");
    fs::write(p.join("bad.txt"), "put one.txt=src\nrm\n").unwrap();
    let out = untorn(&["txn", "-m", "bad.txt"], p);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    let mut c = Command::new(env!("CARGO_BIN_EXE_untorn"))
        .args(["txn", "put", "three.txt=-"])
        .current_dir(p)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"from stdin").unwrap();
    assert!(c.wait().unwrap().success());
    assert_eq!(read(p, "three.txt").unwrap(), "from stdin");
}

#[test]
fn sigint_before_the_commit_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::write(p.join("a.txt"), "old").unwrap();
    fs::write(p.join("src"), "new").unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_untorn"))
        .args(["txn", "put", "a.txt=src", "put", "b.txt=-"])
        .current_dir(p)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(b"partial").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&c),
        rustix::process::Signal::INT,
    )
    .unwrap();
    drop(stdin);
    let out = c.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was changed"));
    assert_eq!(read(p, "a.txt").unwrap(), "old");
    assert!(read(p, "b.txt").is_none());
}

#[test]
fn sigterm_during_a_commit_finishes_it_first() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let n = 300;
    let mut manifest = String::new();
    fs::write(p.join("src"), vec![b'x'; 256 * 1024]).unwrap();
    for i in 0..n {
        fs::write(p.join(format!("f{i}")), "old").unwrap();
        manifest.push_str(&format!("put f{i}=src\n"));
    }
    fs::write(p.join("m"), manifest).unwrap();
    let mut terminated = 0;
    for attempt in 0..3 {
        let c = Command::new(env!("CARGO_BIN_EXE_untorn"))
            .args(["txn", "--no-check", "-m", "m"])
            .current_dir(p)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50 + 100 * attempt));
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&c),
            rustix::process::Signal::TERM,
        );
        let out = c.wait_with_output().unwrap();
        let olds = (0..n)
            .filter(|i| read(p, &format!("f{i}")).unwrap() == "old")
            .count();
        assert!(
            olds == 0 || olds == n,
            "a mix after SIGTERM: {olds} of {n} old"
        );
        match out.status.code() {
            Some(143) => terminated += 1,
            Some(0) => {}
            other => panic!("exit {other:?}"),
        }
        for i in 0..n {
            fs::write(p.join(format!("f{i}")), "old").unwrap();
        }
    }
    assert!(terminated > 0, "the signal never landed during a run");
}
