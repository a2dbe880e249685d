//! Unit tests of locks and locked read-modify-write.

use crate::sys::errnos::*;
use crate::sys::testing::{Call, Probe};
use crate::sys::{FsKind, Sys};
use crate::tests::{assert_no_leftovers, skip};
use crate::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn nb() -> LockOptions {
    let mut o = LockOptions::new();
    o.nonblocking();
    o
}

#[test]
fn exclusive_excludes_and_shared_shares() {
    let d = dir();
    let p = d.path().join("state.json");
    let held = lock(&p).unwrap();
    assert_eq!(held.path(), d.path().join("state.json.lock"));
    let e = nb().lock(&p).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WouldBlock);
    assert!(e.to_string().contains("state.json.lock"), "{e}");
    assert_eq!(
        nb().shared(true).lock(&p).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    drop(held);

    let s1 = lock_shared(&p).unwrap();
    let s2 = nb().shared(true).lock(&p).unwrap();
    assert!(s1.is_shared() && s2.is_shared());
    assert_eq!(nb().lock(&p).unwrap_err().kind(), ErrorKind::WouldBlock);
    s1.unlock().unwrap();
    drop(s2);
    drop(nb().lock(&p).unwrap());
    // The lock file stays: deleting it would break mutual exclusion.
    assert!(d.path().join("state.json.lock").exists());
}

#[test]
fn timeout_fails_in_about_the_time_and_says_so() {
    let d = dir();
    let p = d.path().join("f");
    let _held = lock(&p).unwrap();
    let t = Instant::now();
    let e = LockOptions::new()
        .timeout(Duration::from_millis(200))
        .lock(&p)
        .unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(700),
        "{took:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("f.lock") && msg.contains("timed out after 2"),
        "{msg}"
    );
}

#[test]
fn a_timed_out_waiter_never_keeps_the_lock() {
    let d = dir();
    let p = d.path().join("f");
    let held = lock(&p).unwrap();
    for _ in 0..3 {
        let e = LockOptions::new()
            .timeout(Duration::from_millis(20))
            .lock(&p)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
    }
    drop(held);
    assert_abandoned_waiters_let_go(&p);
}

/// Once the lock of `p` is free, the waiters that gave up on it (on helper threads still
/// blocked in the kernel) take it and let go of it at once: it is soon free.
fn assert_abandoned_waiters_let_go(p: &std::path::Path) {
    let t = Instant::now();
    loop {
        match nb().lock(p) {
            Ok(_) => break,
            Err(_) if t.elapsed() < Duration::from_secs(2) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("the lock stayed held by an abandoned waiter: {e}"),
        }
    }
}

#[test]
fn a_cancelled_wait_stops_with_interrupted_and_never_keeps_the_lock() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let d = dir();
    let p = d.path().join("f");
    let held = lock(&p).unwrap();
    // A flag set while the wait goes on (as a signal handler would).
    let flag = Arc::new(AtomicBool::new(false));
    let f2 = flag.clone();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(60));
        f2.store(true, Ordering::SeqCst);
    });
    let t = Instant::now();
    let e = LockOptions::new().cancel_when(flag).lock(&p).unwrap_err();
    setter.join().unwrap();
    assert_eq!(e.kind(), ErrorKind::Interrupted, "{e}");
    assert!(e.to_string().contains("f.lock"), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(60));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // A flag never set: the lock is taken once it is free.
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
    });
    let l = LockOptions::new()
        .cancel_when(Arc::new(AtomicBool::new(false)))
        .lock(&p)
        .unwrap();
    h.join().unwrap();
    drop(l);
    assert_abandoned_waiters_let_go(&p);
}

#[test]
fn timeout_succeeds_when_the_holder_lets_go_in_time() {
    let d = dir();
    let p = d.path().join("f");
    let held = lock(&p).unwrap();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
    });
    let t = Instant::now();
    let l = LockOptions::new()
        .timeout(Duration::from_secs(5))
        .lock(&p)
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));
    h.join().unwrap();
    drop(l);
}

#[test]
fn lock_files_are_safe_to_create() {
    let d = dir();
    let p = d.path().join("a");
    drop(lock(&p).unwrap());
    let m = fs::metadata(d.path().join("a.lock")).unwrap().mode() & 0o777;
    assert_eq!(m & 0o002, 0, "not world-writable: {m:o}");

    // A symlink planted as the lock file is not followed.
    let victim = d.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, d.path().join("b.lock")).unwrap();
    let e = lock(d.path().join("b")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Symlink, "{e}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");

    // A FIFO is refused, without hanging.
    let fifo = d.path().join("c.lock");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    assert_eq!(
        lock(d.path().join("c")).unwrap_err().kind(),
        ErrorKind::NotAFile
    );
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn shared_file_systems_and_missing_flock_are_errors_not_silence() {
    let d = dir();
    let p = d.path().join("f");
    let probe = Probe::real();
    probe.pretend_fs(FsKind::Nfs);
    let e = LockOptions::new()
        .sys(Arc::new(probe.clone()) as Arc<dyn Sys>)
        .lock(&p)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("shared between machines"), "{e}");
    // Explicitly accepted: the lock works (locally).
    let l = LockOptions::new()
        .sys(Arc::new(probe) as Arc<dyn Sys>)
        .allow_shared_fs(true)
        .lock(&p)
        .unwrap();
    drop(l);

    let probe = Probe::real();
    probe.fail_nth(Some(Call::Lock), 1, ENOLCK);
    let e = LockOptions::new()
        .sys(Arc::new(probe) as Arc<dyn Sys>)
        .lock(&p)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("does not support flock"), "{e}");
}

#[test]
fn flock_1_and_untorn_exclude_each_other() {
    if Command::new("flock").arg("--version").output().is_err() {
        skip("flock_1_and_untorn_exclude_each_other: flock(1) from util-linux is not installed");
        return;
    }
    let d = dir();
    let p = d.path().join("state.json");
    let held = lock(&p).unwrap();
    let st = Command::new("flock")
        .args(["-n", "-E", "42"])
        .arg(d.path().join("state.json.lock"))
        .arg("true")
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(42), "flock(1) saw untorn's lock");
    drop(held);
    // -o: the lock is not inherited by `sleep`, so killing flock(1) releases it.
    let mut child = Command::new("flock")
        .arg("-o")
        .arg(d.path().join("state.json.lock"))
        .args(["sleep", "5"])
        .spawn()
        .unwrap();
    let t = Instant::now();
    while nb().lock(&p).is_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "flock(1) never took the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(nb().lock(&p).unwrap_err().kind(), ErrorKind::WouldBlock);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(nb().lock(&p).unwrap());
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Default)]
struct State {
    count: u64,
    names: Vec<String>,
}

#[test]
fn update_writes_only_changes_and_keeps_the_file_on_error() {
    let d = dir();
    let p = d.path().join("q.txt");
    assert!(update(&p, |old| {
        assert_eq!(old, None);
        Ok::<_, Error>(Some(b"a\n".to_vec()))
    })
    .unwrap());
    let ino = fs::metadata(&p).unwrap().ino();
    // No change: nothing written (same inode).
    assert!(!update(&p, |_| Ok::<_, Error>(None)).unwrap());
    assert!(!update(&p, |old| Ok::<_, Error>(old.map(<[u8]>::to_vec))).unwrap());
    assert_eq!(fs::metadata(&p).unwrap().ino(), ino);
    // The closure's error comes back; the file is as it was.
    #[derive(Debug)]
    struct Mine(String);
    impl From<Error> for Mine {
        fn from(e: Error) -> Self {
            Mine(e.to_string())
        }
    }
    let e = update(&p, |_| Err::<Option<Vec<u8>>, _>(Mine("no".into()))).unwrap_err();
    assert_eq!(e.0, "no");
    assert_eq!(fs::read(&p).unwrap(), b"a\n");
    assert_no_leftovers(d.path());
}

#[test]
fn update_json_round_trips_and_never_overwrites_a_bad_file() {
    let d = dir();
    let p = d.path().join("state.json");
    let n = update_json(&p, State::default(), |s: &mut State| {
        s.count += 1;
        s.names.push("a".into());
        s.count
    })
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        "{\n  \"count\": 1,\n  \"names\": [\n    \"a\"\n  ]\n}\n"
    );
    let s: State = read_json(&p).unwrap();
    assert_eq!(s.count, 1);

    // Unknown keys and their order survive a round trip through serde_json::Value.
    fs::write(&p, "{\"z\": 1, \"count\": 1, \"a\": {\"b\": [1, 2]}}").unwrap();
    update_json(&p, serde_json::Value::Null, |v: &mut serde_json::Value| {
        v["count"] = 2.into();
    })
    .unwrap();
    let text = fs::read_to_string(&p).unwrap();
    assert!(
        text.find("\"z\"").unwrap() < text.find("\"count\"").unwrap(),
        "{text}"
    );
    assert!(text.ends_with("}\n"));

    // A corrupt file is an error naming the line and column, and stays as it is.
    fs::write(&p, "{\"count\": 3,\n oops}").unwrap();
    let e = update_json(&p, State::default(), |s: &mut State| s.count += 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidContent);
    assert_eq!(e.location(), Some((2, 2)));
    assert!(e.to_string().contains("state.json"), "{e}");
    assert_eq!(fs::read_to_string(&p).unwrap(), "{\"count\": 3,\n oops}");
    assert_eq!(
        read_json::<State>(&p).unwrap_err().kind(),
        ErrorKind::InvalidContent
    );
    assert_eq!(
        read_json::<State>(d.path().join("missing.json"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_no_leftovers(d.path());
}

#[test]
fn update_yaml_and_toml() {
    let d = dir();
    let y = d.path().join("q.yaml");
    update_yaml(&y, State::default(), |s: &mut State| {
        s.names.push("job".into())
    })
    .unwrap();
    assert_eq!(fs::read_to_string(&y).unwrap(), "count: 0\nnames:\n- job\n");
    assert_eq!(
        read_yaml::<State>(&y).unwrap().names,
        vec!["job".to_string()]
    );
    let t = d.path().join("c.toml");
    update_toml(&t, State::default(), |s: &mut State| s.count = 7).unwrap();
    assert_eq!(read_toml::<State>(&t).unwrap().count, 7);
    fs::write(&t, "count = = 1\n").unwrap();
    let e = update_toml(&t, State::default(), |s: &mut State| s.count = 8).unwrap_err();
    assert_eq!(e.location().map(|l| l.0), Some(1), "{e}");
    assert_eq!(fs::read_to_string(&t).unwrap(), "count = = 1\n");
}

#[test]
fn update_holds_the_exclusive_lock_while_the_closure_runs() {
    let d = dir();
    let p = d.path().join("s.json");
    update(&p, |_| {
        assert_eq!(
            nb().shared(true).lock(&p).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        Ok::<_, Error>(Some(b"{}".to_vec()))
    })
    .unwrap();
    // And a read takes the shared lock: an exclusive holder blocks it.
    let held = lock(&p).unwrap();
    let mut o = UpdateOptions::new();
    o.lock_options(nb());
    assert_eq!(o.read(&p).unwrap_err().kind(), ErrorKind::WouldBlock);
    drop(held);
    assert_eq!(o.read(&p).unwrap(), b"{}");
}

#[test]
fn threads_updating_one_counter_lose_nothing() {
    let d = dir();
    let p = d.path().join("n.json");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    let mut o = UpdateOptions::new();
                    o.write_options({
                        let mut w = OpenOptions::new();
                        w.durability(Durability::None);
                        w
                    });
                    o.update_as(Format::Json, &p, 0u64, |n: &mut u64| {
                        *n += 1;
                        Ok::<_, Error>(())
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(read_json::<u64>(&p).unwrap(), 100);
}

#[test]
fn a_lock_file_with_foreign_content_still_locks() {
    // Some scripts write their PID into the lock file: that is not a transaction's mark.
    let d = dir();
    let p = d.path().join("s.json");
    fs::write(d.path().join("s.json.lock"), "12345\n").unwrap();
    let l = lock(&p).unwrap();
    assert_eq!(nb().lock(&p).unwrap_err().kind(), ErrorKind::WouldBlock);
    drop(l);
    update(&p, |_| Ok::<_, Error>(Some(b"{}".to_vec()))).unwrap();
    assert_eq!(
        fs::read_to_string(d.path().join("s.json.lock")).unwrap(),
        "12345\n"
    );
}
