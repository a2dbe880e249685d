//! Transactions killed with SIGKILL at random moments: after recovery, every file holds the same
//! version, and it is at least the last one acknowledged.
//!
//! The test binary re-executes itself as the child (`child_committer`, a no-op unless
//! `UNTORN_TXN_CHILD` is set).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const FILES: usize = 8;

#[test]
fn child_committer() {
    let Ok(dir) = std::env::var("UNTORN_TXN_CHILD") else {
        return;
    };
    let start: u64 = std::env::var("UNTORN_TXN_START").unwrap().parse().unwrap();
    for v in start.. {
        let mut tx = untorn::Transaction::new();
        for i in 0..FILES {
            // Sizes vary so that a torn or mixed file shows.
            let body = format!("{v}\n").repeat(1 + (v as usize * 7 + i * 13) % 400);
            tx.write(Path::new(&dir).join(format!("f{i}.txt")), body)
                .unwrap();
        }
        tx.commit().unwrap();
        println!("ACK {v}");
    }
}

fn version_of(p: &Path) -> u64 {
    let s = std::fs::read_to_string(p).unwrap();
    let first = s.lines().next().unwrap().to_string();
    let v: u64 = first.parse().unwrap();
    let want = format!("{v}\n").repeat(1 + (v as usize * 7 + p_index(p) * 13) % 400);
    assert_eq!(s, want, "{} is whole", p.display());
    v
}

fn p_index(p: &Path) -> usize {
    let n = p.file_name().unwrap().to_string_lossy();
    n.trim_start_matches('f')
        .trim_end_matches(".txt")
        .parse()
        .unwrap()
}

#[test]
fn killed_transactions_are_all_or_nothing() {
    if std::env::var_os("UNTORN_TXN_CHILD").is_some() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut last_acked = 0;
    let mut next = 1;
    let (mut rolled_forward, mut rolled_back) = (0, 0);
    let kills: usize = std::env::var("UNTORN_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    for _kill in 0..kills {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_committer",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env("UNTORN_TXN_CHILD", d.path())
            .env("UNTORN_TXN_START", next.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let want = fastrand::usize(0..4);
        let mut acks = 0;
        let mut line = String::new();
        while acks < want {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(v) = line.trim().strip_prefix("ACK ") {
                last_acked = v.parse().unwrap();
                acks += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..3000)));
        child.kill().unwrap();
        child.wait().unwrap();
        for l in out.lines() {
            if let Some(v) = l.unwrap().trim().strip_prefix("ACK ") {
                last_acked = v.parse().unwrap();
            }
        }
        // Recovery, as `untorn recover DIR` does it.
        let actions = untorn::recover(d.path(), &untorn::RecoverOptions::default()).unwrap();
        for a in &actions {
            match a {
                untorn::recover::Action::TxnRolledForward(_) => rolled_forward += 1,
                untorn::recover::Action::TxnRolledBack(_) => rolled_back += 1,
                _ => {}
            }
        }
        if !d.path().join("f0.txt").exists() {
            assert_eq!(last_acked, 0);
            continue;
        }
        let v0 = version_of(&d.path().join("f0.txt"));
        for i in 1..FILES {
            assert_eq!(version_of(&d.path().join(format!("f{i}.txt"))), v0, "a mix");
        }
        assert!(
            v0 >= last_acked,
            "acknowledged version {last_acked} lost (found {v0})"
        );
        next = v0.max(last_acked) + 1 + 1000;
    }
    let msg = format!(
        "PROOF kill op=txn kills={kills} violations=0 last_acked={last_acked} rolled_forward={rolled_forward} rolled_back={rolled_back}\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
    assert!(last_acked > 0);
}
