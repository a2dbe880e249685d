//! Appends from many processes, and appenders killed at random moments.
//!
//! The test binary re-executes itself as the child processes (`child_appender`, which does
//! nothing unless `UNTORN_APPEND_CHILD` is set).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const PROCS: usize = 8;
const EACH: usize = 1000;

/// A record that shows when it was torn or interleaved: it names its writer and number, and
/// carries a body whose length and content both depend on them.
fn record(p: usize, n: usize) -> String {
    let body: String =
        std::iter::repeat_n(char::from(b'a' + (n % 26) as u8), 20 + (p * 7 + n) % 150).collect();
    format!("{{\"p\":{p},\"n\":{n},\"body\":\"{body}\"}}")
}

fn parse(line: &[u8]) -> (usize, usize) {
    let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_else(|e| {
        panic!(
            "not a whole record ({e}): {}",
            String::from_utf8_lossy(line)
        )
    });
    let (p, n) = (
        v["p"].as_u64().unwrap() as usize,
        v["n"].as_u64().unwrap() as usize,
    );
    assert_eq!(String::from_utf8_lossy(line), record(p, n), "record intact");
    (p, n)
}

#[test]
fn child_appender() {
    let Ok(path) = std::env::var("UNTORN_APPEND_CHILD") else {
        return;
    };
    let p: usize = std::env::var("UNTORN_APPEND_P").unwrap().parse().unwrap();
    let count: usize = std::env::var("UNTORN_APPEND_N").unwrap().parse().unwrap();
    let mut opts = untorn::AppendOptions::new();
    opts.format(untorn::LogFormat::JsonLines);
    for n in 0..count {
        opts.append(&path, record(p, n)).unwrap();
        // Acknowledged: this record must survive whatever happens next.
        println!("ACK {n}");
    }
}

fn spawn(path: &std::path::Path, p: usize, n: usize) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_appender",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env("UNTORN_APPEND_CHILD", path)
        .env("UNTORN_APPEND_P", p.to_string())
        .env("UNTORN_APPEND_N", n.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn eight_processes_append_every_record_exactly_once() {
    if std::env::var_os("UNTORN_APPEND_CHILD").is_some() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("events.jsonl");
    let kids: Vec<_> = (0..PROCS).map(|p| spawn(&path, p, EACH)).collect();
    for k in kids {
        assert!(k.wait_with_output().unwrap().status.success());
    }
    let log = untorn::read_log(&path, untorn::LogFormat::JsonLines).unwrap();
    assert_eq!(log.torn, None);
    let mut seen = HashSet::new();
    let mut last = [None; PROCS];
    for line in &log.records {
        let (p, n) = parse(line);
        assert!(seen.insert((p, n)), "record {p}/{n} twice");
        // Each writer's records appear in the order it appended them.
        assert!(
            last[p].is_none_or(|l| l < n),
            "{p}: {n} after {:?}",
            last[p]
        );
        last[p] = Some(n);
    }
    assert_eq!(seen.len(), PROCS * EACH);
}

#[test]
fn killed_appenders_lose_no_acknowledged_record() {
    if std::env::var_os("UNTORN_APPEND_CHILD").is_some() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("log.jsonl");
    let kills: usize = std::env::var("UNTORN_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut acked: Vec<HashSet<usize>> = vec![HashSet::new(); kills];
    for (k, acks) in acked.iter_mut().enumerate() {
        let mut child = spawn(&path, k, 1_000_000);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Let it run for a random number of appends (sometimes none), then SIGKILL it.
        let want = fastrand::usize(0..20);
        let mut line = String::new();
        while acks.len() < want {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(n) = line.trim().strip_prefix("ACK ") {
                acks.insert(n.parse().unwrap());
            }
        }
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..2000)));
        child.kill().unwrap();
        child.wait().unwrap();
        // Acknowledgements printed before the kill landed.
        for l in out.lines() {
            if let Some(n) = l.unwrap().trim().strip_prefix("ACK ") {
                acks.insert(n.parse().unwrap());
            }
        }
    }
    let log = untorn::read_log(&path, untorn::LogFormat::JsonLines).unwrap();
    let mut present: Vec<HashSet<usize>> = vec![HashSet::new(); kills];
    for line in &log.records {
        let (p, n) = parse(line);
        assert!(present[p].insert(n), "record {p}/{n} twice");
    }
    let mut total = 0;
    for p in 0..kills {
        for n in &acked[p] {
            assert!(present[p].contains(n), "acknowledged record {p}/{n} lost");
        }
        total += acked[p].len();
    }
    assert!(total > 0);
    let line = format!("PROOF kill op=append kills={kills} violations=0 acked_records={total}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    // A last append repairs whatever a kill left, and is never glued to it.
    untorn::append(&path, record(999, 0)).unwrap();
    let log = untorn::read_log(&path, untorn::LogFormat::JsonLines).unwrap();
    assert_eq!(log.torn, None);
    assert_eq!(parse(log.records.last().unwrap()), (999, 0));
}
