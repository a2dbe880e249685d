//! Transactions and locks outside the paths the proofs walk (issue "nothing lost, ever"):
//! a change that cannot be applied, symlinked names, signals while waiting, the lock order a
//! script follows, recovery beside live writers, and the metadata a replaced file keeps.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    std::env::var_os("UNTORN_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| assert_cmd::cargo::cargo_bin("untorn"))
}

fn untorn(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read(p: impl AsRef<Path>) -> String {
    fs::read_to_string(p).unwrap()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED: {test}: {why}");
    assert!(
        std::env::var("UNTORN_REQUIRE_ALL").as_deref() != Ok("1"),
        "{test} skipped ({why}) with UNTORN_REQUIRE_ALL=1"
    );
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// No journal, no flag, no temp left in `dir`.
fn settled(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(!n.starts_with(".untorn-txn-"), "journal left: {n}");
        assert!(!n.ends_with(".tmp"), "temp left: {n}");
        if n.ends_with(".lock") {
            assert_eq!(e.metadata().unwrap().len(), 0, "flag left in {n}");
        }
    }
}

/// Item 3: a transaction whose rename would fail (onto a directory) is refused before its
/// commit point: nothing changes, exit 8, and later commands on its files work.
#[test]
fn a_change_that_cannot_be_applied_is_refused_before_the_commit_point() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::write(p.join("x.json"), "{\"x\": 1}\n").unwrap();
    fs::write(p.join("a.json"), "{\"a\": 1}\n").unwrap();
    fs::write(p.join("src.json"), "{\"x\": 2}\n").unwrap();
    fs::create_dir(p.join("adir")).unwrap();
    let o = untorn(p, &["txn", "put", "x.json=src.json", "mv", "a.json=adir"]);
    assert_eq!(o.status.code(), Some(8), "{}", err(&o));
    assert!(err(&o).contains("adir"), "{}", err(&o));
    assert!(err(&o).contains("nothing was changed"), "{}", err(&o));
    assert_eq!(read(p.join("x.json")), "{\"x\": 1}\n", "half applied");
    assert_eq!(read(p.join("a.json")), "{\"a\": 1}\n");
    settled(p);
    // Nothing is wedged: every later command on those files works.
    assert!(untorn(p, &["recover", "."]).status.success());
    assert!(untorn(p, &["write", "x.json", "{\"x\": 3}\n"])
        .status
        .success());
    let o = untorn(p, &["edit", "a.json", "--", "jq", "-c", ".a += 1"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(read(p.join("a.json")), "{\"a\":2}\n");
}

/// Item 3, immutable targets: refused before the commit point (exit 4), nothing changes, and
/// nothing stays wedged once the attribute is gone.
#[test]
fn an_immutable_target_is_refused_before_the_commit_point() {
    if !is_root() || !have("chattr") {
        return skip(
            "an_immutable_target_is_refused_before_the_commit_point",
            "needs root and chattr",
        );
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::write(p.join("x.json"), "{\"x\": 1}\n").unwrap();
    fs::write(p.join("frozen.json"), "{\"f\": 1}\n").unwrap();
    fs::write(p.join("src.json"), "{\"v\": 2}\n").unwrap();
    let chattr = |flag: &str, f: &str| {
        assert!(Command::new("chattr")
            .args([flag, f])
            .current_dir(p)
            .status()
            .unwrap()
            .success());
    };
    chattr("+i", "frozen.json");
    let o = untorn(
        p,
        &[
            "txn",
            "put",
            "x.json=src.json",
            "put",
            "frozen.json=src.json",
        ],
    );
    chattr("-i", "frozen.json");
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert!(err(&o).contains("immutable"), "{}", err(&o));
    assert_eq!(read(p.join("x.json")), "{\"x\": 1}\n");
    assert_eq!(read(p.join("frozen.json")), "{\"f\": 1}\n");
    settled(p);
    let o = untorn(
        p,
        &[
            "txn",
            "put",
            "x.json=src.json",
            "put",
            "frozen.json=src.json",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(read(p.join("frozen.json")), "{\"v\": 2}\n");
}

/// Item 3, the way out: a committed transaction that cannot be applied after a crash (its
/// target became a directory meanwhile) is reported by `recover`, with the way out; `recover
/// --abandon` applies the rest, gives that change up, and leaves nothing wedged.
#[test]
fn a_committed_transaction_that_cannot_be_finished_has_a_way_out() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for f in ["a.json", "b.json"] {
        fs::write(p.join(f), "{\"v\": 1}\n").unwrap();
    }
    crash_state(
        p,
        &[("a.json", "{\"v\": 2}\n"), ("b.json", "{\"v\": 2}\n")],
        0x31,
    );
    // After the crash, before recovery, b.json becomes a directory.
    fs::remove_file(p.join("b.json")).unwrap();
    fs::create_dir(p.join("b.json")).unwrap();
    fs::write(p.join("b.json/keep"), "inside").unwrap();
    let o = untorn(p, &["recover", "."]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("--abandon"), "{out}");
    // A write of the other file waits for nothing and does not run blind either: it reports.
    let o = untorn(p, &["recover", ".", "--abandon"]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        err(&o)
    );
    assert_eq!(read(p.join("a.json")), "{\"v\": 2}\n", "the rest applied");
    assert_eq!(
        read(p.join("b.json/keep")),
        "inside",
        "the directory untouched"
    );
    assert!(!fs::read_dir(p).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".untorn-txn-")));
    assert!(untorn(p, &["write", "a.json", "{\"v\": 3}\n"])
        .status
        .success());
    assert!(untorn(p, &["recover", "."]).status.success());
}

/// `recover --dry-run` on a directory with a crashed transaction (committed: temps, flags, a
/// journal; and one that never got its flags, one of whose lock files does not exist yet)
/// prints the plan and changes nothing: every name and every byte as before, no lock file
/// created.
#[test]
fn recover_dry_run_on_a_crashed_transaction_creates_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for f in ["a.json", "b.json", "c.json"] {
        fs::write(p.join(f), "{\"v\": 1}\n").unwrap();
    }
    crash_state(p, &[("a.json", "{\"v\": 2}\n")], 0x51);
    crash_state(
        p,
        &[("b.json", "{\"v\": 2}\n"), ("c.json", "{\"v\": 2}\n")],
        0x52,
    );
    // The second never reached its commit point: c.json's lock file was never made.
    fs::remove_file(p.join("c.json.lock")).unwrap();
    let listing = || {
        let mut v: Vec<(String, Vec<u8>, u64)> = fs::read_dir(p)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let md = e.metadata().unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                    md.len(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = listing();
    for args in [
        &["recover", "--dry-run", "."][..],
        &["recover", "--dry-run", "--json", "."][..],
    ] {
        let o = untorn(p, args);
        assert!(o.status.success(), "{args:?}: {}", err(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("finish") && out.contains("undo"),
            "{args:?}: {out}"
        );
        assert_eq!(listing(), before, "{args:?} changed the directory");
        assert!(!p.join("c.json.lock").exists());
    }
    // And for real: both settled.
    assert!(untorn(p, &["recover", "."]).status.success());
    assert_eq!(read(p.join("a.json")), "{\"v\": 2}\n");
    assert_eq!(read(p.join("b.json")), "{\"v\": 1}\n");
}

/// The state a crash just after a transaction's commit point leaves (temps, flags, one journal),
/// for `files` (name, new content) of `dir`.
fn crash_state(dir: &Path, files: &[(&str, &str)], tag: u16) {
    use untorn::txn::journal::{Dir, Entry, Journal, Name};
    let m = fs::metadata(dir).unwrap();
    let mut j = Journal {
        id: [tag as u8; 16],
        dirs: vec![Dir {
            dev: m.dev(),
            ino: m.ino(),
            path: dir.canonicalize().unwrap(),
        }],
        ..Journal::default()
    };
    for (name, content) in files {
        let temp = format!(".{name}.untorn-{tag:08x}.tmp");
        fs::write(dir.join(&temp), content).unwrap();
        let t = fs::metadata(dir.join(&temp)).unwrap();
        j.entries.push(Entry::Put {
            dir: 0,
            temp: temp.into(),
            target: (*name).into(),
            dev: t.dev(),
            ino: t.ino(),
            size: content.len() as u64,
            crc: crc32(content.as_bytes()),
        });
        let lock = format!("{name}.lock");
        fs::File::create(dir.join(&lock))
            .unwrap()
            .set_len(u64::from(tag))
            .unwrap();
        j.locks.push(Name {
            dir: 0,
            name: lock.into(),
        });
    }
    let jp = dir.join(format!(".untorn-txn-{tag:04x}.journal"));
    fs::write(&jp, j.encode()).unwrap();
    fs::set_permissions(&jp, fs::Permissions::from_mode(0o600)).unwrap();
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Item 4: a transaction on `real/c.json`, committed but not applied (a crash), then a write
/// through a symlink to it: the write finishes the transaction first (it looks at the lock
/// file of the file it changes, not of the link), so a later `recover` cannot undo it.
#[test]
fn a_write_through_a_symlink_is_never_undone_by_a_later_recovery() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::create_dir(p.join("real")).unwrap();
    fs::write(p.join("real/c.json"), "{\"c\": 1}\n").unwrap();
    std::os::unix::fs::symlink("real/c.json", p.join("link.json")).unwrap();
    crash_state(&p.join("real"), &[("c.json", "{\"c\": 2}\n")], 0x41);
    let o = untorn(p, &["write", "link.json", "{\"c\": 3}\n"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(untorn(&p.join("real"), &["recover", "."]).status.success());
    assert!(untorn(p, &["recover", "."]).status.success());
    assert_eq!(
        read(p.join("real/c.json")),
        "{\"c\": 3}\n",
        "the acknowledged write was undone"
    );
    settled(&p.join("real"));
}

/// Item 5: two edit loops on one file, one through a symlink: one lock (the file's), no lost
/// update.
#[test]
fn edits_through_a_symlink_and_the_real_name_exclude_each_other() {
    if !have("jq") {
        return skip(
            "edits_through_a_symlink_and_the_real_name_exclude_each_other",
            "jq missing",
        );
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_path_buf();
    fs::create_dir(p.join("real")).unwrap();
    fs::write(p.join("real/c.json"), "{\"n\": 0}\n").unwrap();
    std::os::unix::fs::symlink("real/c.json", p.join("link.json")).unwrap();
    const N: usize = 40;
    let handles: Vec<_> = ["real/c.json", "link.json"]
        .into_iter()
        .map(|name| {
            let p = p.clone();
            std::thread::spawn(move || {
                for _ in 0..N {
                    let o = untorn(&p, &["edit", name, "--", "jq", "-c", ".n += 1"]);
                    assert!(o.status.success(), "{}", err(&o));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        read(p.join("real/c.json")),
        format!("{{\"n\":{}}}\n", 2 * N)
    );
    assert!(!p.join("link.json.lock").exists(), "a lock beside the link");
}

/// Item 8: SIGTERM to a `txn` waiting for its locks abandons it at once (exit 143, nothing
/// changed), even when the lock is never freed; and SIGTERM while it reads a FIFO source ends
/// it at once too.
#[test]
fn a_signal_abandons_a_txn_that_waits() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    fs::write(p.join("a.json"), "{\"a\": 1}\n").unwrap();
    fs::write(p.join("src.json"), "{\"a\": 2}\n").unwrap();
    let held = untorn::LockOptions::new().lock(p.join("a.json")).unwrap();
    let mut child = Command::new(bin())
        .args(["txn", "put", "a.json=src.json"])
        .current_dir(p)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let t = Instant::now();
    let status = wait_at_most(&mut child, Duration::from_secs(5));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "still waiting after SIGTERM"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(143));
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        read(p.join("a.json")),
        "{\"a\": 1}\n",
        "applied after the signal"
    );
    settled(p);

    // A FIFO source nobody writes: SIGTERM ends it (before, it was ignored until end of input).
    let fifo = p.join("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["txn", "put", "a.json=fifo"])
        .current_dir(p)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = wait_at_most(&mut child, Duration::from_secs(5));
    assert!(status.is_some(), "a txn reading a FIFO ignored SIGTERM");
    assert_eq!(status.and_then(|s| s.code()), Some(143));
    assert_eq!(read(p.join("a.json")), "{\"a\": 1}\n");
    settled(p);
}

fn wait_at_most(c: &mut std::process::Child, d: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < d {
        if let Some(s) = c.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

/// Item 9: the lock order the docs give is the one untorn follows: lock files by their full
/// path (symlinks resolved), byte order. While a script holds the first of two locks in that
/// order, a transaction over both waits for it without taking the second (so a script that
/// takes them in the documented order can never deadlock with it). The lock files are made so
/// that their inode order is the opposite of their name order.
#[test]
fn transactions_take_locks_in_the_documented_order() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    // b's lock file first: it gets the lower inode number.
    fs::write(p.join("b.json.lock"), "").unwrap();
    fs::write(p.join("a.json.lock"), "").unwrap();
    for f in ["a.json", "b.json"] {
        fs::write(p.join(f), "{}\n").unwrap();
    }
    fs::write(p.join("src.json"), "{\"v\": 2}\n").unwrap();
    let first = untorn::LockOptions::new()
        .lock_file(p.join("a.json.lock"))
        .unwrap();
    let mut child = Command::new(bin())
        .args([
            "txn",
            "--timeout",
            "5s",
            "put",
            "b.json=src.json",
            "put",
            "a.json=src.json",
        ])
        .current_dir(p)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    // The transaction waits for a.json.lock and holds nothing else: b's lock is free.
    let second = untorn::LockOptions::new()
        .nonblocking()
        .lock_file(p.join("b.json.lock"));
    assert!(
        second.is_ok(),
        "the transaction took b before a: {second:?}"
    );
    drop(second);
    drop(first);
    let status = wait_at_most(&mut child, Duration::from_secs(10)).expect("deadlock");
    assert!(status.success());
    assert_eq!(read(p.join("a.json")), "{\"v\": 2}\n");
}

/// Item 11: `recover DIR` while writers run: a temp its own writer removes meanwhile is not an
/// error, and the rest of the recovery goes on.
#[test]
fn recover_beside_live_writers_never_fails_on_their_temps() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_path_buf();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let o = untorn(
                        &p,
                        &[
                            "write",
                            "--temp",
                            "named",
                            &format!("w{w}.json"),
                            &format!("{{\"n\": {n}}}"),
                        ],
                    );
                    assert!(o.status.success(), "{}", err(&o));
                    n += 1;
                }
            })
        })
        .collect();
    let t = Instant::now();
    let mut runs = 0;
    while t.elapsed() < Duration::from_secs(4) {
        let o = untorn(&p, &["recover", "."]);
        assert!(
            o.status.success(),
            "recover failed beside live writers: {}{}",
            String::from_utf8_lossy(&o.stdout),
            err(&o)
        );
        runs += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(runs > 5, "only {runs} recoveries ran");
}

/// Item 13 (transactions): `txn put` over a file of group G, by a member of G who cannot give
/// it back its owner, keeps the group as `write` does (the temp would otherwise get the
/// caller's own group), and the mode.
#[test]
fn txn_put_keeps_the_group_as_write_does() {
    if !is_root() || !have("setpriv") {
        return skip(
            "txn_put_keeps_the_group_as_write_does",
            "needs root and setpriv",
        );
    }
    let d = tempfile::Builder::new()
        .prefix("untorn-group-")
        .tempdir_in("/tmp")
        .unwrap();
    let p = d.path();
    fs::set_permissions(p, fs::Permissions::from_mode(0o777)).unwrap();
    const G: u32 = 4242;
    for (f, cmd) in [("t.json", "txn"), ("w.json", "write")] {
        let target = p.join(f);
        fs::write(&target, "{\"v\": 1}\n").unwrap();
        rustix::fs::chown(
            &target,
            Some(rustix::fs::Uid::from_raw(0)),
            Some(rustix::fs::Gid::from_raw(G)),
        )
        .unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o660)).unwrap();
        fs::write(p.join("src.json"), "{\"v\": 2}\n").unwrap();
        fs::set_permissions(p.join("src.json"), fs::Permissions::from_mode(0o644)).unwrap();
        let args: Vec<String> = if cmd == "txn" {
            vec!["txn".into(), "put".into(), format!("{f}=src.json")]
        } else {
            vec!["write".into(), f.into(), "{\"v\": 2}\n".into()]
        };
        let o = Command::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--groups",
                &G.to_string(),
                "--",
            ])
            .arg(bin())
            .args(&args)
            .current_dir(p)
            .output()
            .unwrap();
        assert!(o.status.success(), "{cmd}: {}", err(&o));
        let m = fs::metadata(&target).unwrap();
        assert_eq!(m.gid(), G, "{cmd} changed the group");
        assert_eq!(m.mode() & 0o777, 0o660, "{cmd} changed the mode");
        assert_eq!(read(&target), "{\"v\": 2}\n");
    }
}
