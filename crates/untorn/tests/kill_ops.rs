//! SIGKILL torture of the locked update and of writes with backups: a child process runs the
//! operation in a loop, printing `ACK n` after each returns; it is killed at a random moment,
//! and the invariants are checked. `UNTORN_KILL_ROUNDS` sets the kills per operation (default
//! 100; the long mode of `scripts/prove` uses 5000).
//!
//! The test binary re-executes itself as the child (`child_ops`, a no-op unless
//! `UNTORN_KILL_CHILD` is set).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn rounds() -> usize {
    std::env::var("UNTORN_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

fn version(n: u64) -> String {
    format!("{n}\n").repeat(1 + (n as usize * 31) % 3000)
}

fn which(s: &str) -> Option<u64> {
    let n: u64 = s.lines().next()?.parse().ok()?;
    (version(n) == s).then_some(n)
}

#[test]
fn child_ops() {
    let Ok(dir) = std::env::var("UNTORN_KILL_CHILD") else {
        return;
    };
    let dir = Path::new(&dir);
    let start: u64 = std::env::var("UNTORN_KILL_START").unwrap().parse().unwrap();
    match std::env::var("UNTORN_KILL_OP").unwrap().as_str() {
        "update" => loop {
            let n = untorn::update_json(dir.join("n.json"), 0u64, |n: &mut u64| {
                *n += 1;
                *n
            })
            .unwrap();
            println!("ACK {n}");
        },
        "backup" => {
            for n in start.. {
                let mut o = untorn::OpenOptions::new();
                o.backups(3);
                o.write(dir.join("f"), version(n)).unwrap();
                println!("ACK {n}");
            }
        }
        other => panic!("unknown op {other}"),
    }
}

/// Runs the child once, kills it after a random number of acks and a random delay; returns the
/// last acknowledged n, if any.
fn one_kill(dir: &Path, op: &str, start: u64) -> Option<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_ops",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env("UNTORN_KILL_CHILD", dir)
        .env("UNTORN_KILL_OP", op)
        .env("UNTORN_KILL_START", start.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let want = fastrand::usize(0..5);
    let (mut acks, mut last) = (0, None);
    let mut line = String::new();
    while acks < want {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(n) = line.trim().strip_prefix("ACK ") {
            last = Some(n.parse().unwrap());
            acks += 1;
        }
    }
    std::thread::sleep(Duration::from_micros(fastrand::u64(0..4000)));
    child.kill().unwrap();
    child.wait().unwrap();
    for l in out.lines() {
        if let Some(n) = l.unwrap().trim().strip_prefix("ACK ") {
            last = Some(n.parse().unwrap());
        }
    }
    last
}

fn report(op: &str, kills: usize, violations: usize, extra: &str) {
    let line = format!("PROOF kill op={op} kills={kills} violations={violations} {extra}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

#[test]
fn killed_updates_lose_no_acknowledged_increment() {
    if std::env::var_os("UNTORN_KILL_CHILD").is_some() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut acked = 0u64;
    let n = rounds();
    for _ in 0..n {
        if let Some(a) = one_kill(d.path(), "update", 0) {
            acked = a;
        }
        let now: u64 = if d.path().join("n.json").exists() {
            untorn::read_json(d.path().join("n.json")).expect("the counter parses after a kill")
        } else {
            0
        };
        assert!(
            now >= acked && now <= acked + 1,
            "count {now}, last acked {acked}"
        );
        acked = now;
    }
    report("update", n, 0, &format!("final_count={acked}"));
}

#[test]
fn killed_writes_keep_whole_files_and_backups() {
    if std::env::var_os("UNTORN_KILL_CHILD").is_some() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("f");
    let mut next = 1u64;
    let mut acked = None;
    let n = rounds();
    for _ in 0..n {
        let a = one_kill(d.path(), "backup", next);
        if a.is_some() {
            acked = a;
        }
        let Ok(s) = std::fs::read_to_string(&f) else {
            assert!(acked.is_none(), "the file vanished");
            continue;
        };
        let v = which(&s).expect("the file is one whole version");
        if let Some(a) = acked {
            assert!(v >= a, "version {v}, but {a} was acknowledged");
        }
        // Retention is applied after each commit: a kill between the commit and the pruning
        // leaves one more backup, until the next write prunes (checked after the loop).
        let backups = untorn::backups(&f).unwrap();
        for b in &backups {
            let bs = std::fs::read_to_string(&b.path).unwrap();
            let bv = which(&bs).expect("every backup is one whole version");
            assert!(bv < v, "backup {bv} not older than the file {v}");
        }
        next = v + 1000;
        acked = Some(v);
    }
    let mut o = untorn::OpenOptions::new();
    o.backups(3);
    o.write(&f, version(next)).unwrap();
    assert_eq!(
        untorn::backups(&f).unwrap().len(),
        3,
        "retention after a write"
    );
    report("backup", n, 0, "");
}
