//! Lost updates: 8 processes × 500 locked increments of one JSON counter through the library.
//! The final count must be exact.
//!
//! The test re-executes its own binary as the child processes (`child_increments`, which does
//! nothing unless `UNTORN_COUNTER_CHILD` is set).

use serde::{Deserialize, Serialize};
use std::process::Command;

#[derive(Serialize, Deserialize, Default)]
struct Counter {
    count: u64,
}

const PROCS: usize = 8;
const EACH: u64 = 500;

#[test]
fn child_increments() {
    let Ok(path) = std::env::var("UNTORN_COUNTER_CHILD") else {
        return;
    };
    for _ in 0..EACH {
        untorn::update_json(&path, Counter::default(), |c: &mut Counter| c.count += 1)
            .expect("increment");
    }
}

#[test]
fn eight_processes_lose_no_increment() {
    if std::env::var_os("UNTORN_COUNTER_CHILD").is_some() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("counter.json");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCS)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_increments",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("UNTORN_COUNTER_CHILD", &path)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let c: Counter = untorn::read_json(&path).unwrap();
    assert_eq!(c.count, PROCS as u64 * EACH);
}
