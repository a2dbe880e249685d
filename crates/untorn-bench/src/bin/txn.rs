//! Group commit: one transaction of N small files against N single durable writes, in one run.
//!
//! ```text
//! cargo run --release -p untorn-bench --bin txn -- --dir DIR [--files 100] [--rounds 15]
//! ```
//!
//! Each round, in alternating order: N × `untorn::write` of a 1 KiB file (each: fsync of the
//! file and of the directory), and one `untorn::Transaction` writing the same N files (one
//! `syncfs` for all temps, the journal and its directory, then one fsync of the directory).
//! Prints the median of each and the ratio single/transaction; the goal is ≥ 20× at 100 files.
//! Run it on a journaled file system (`scripts/bench-ext4.sh` makes one; see
//! ../shared/crash-testing.md): the root file system of these machines has no journal.

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut dir = None;
    let mut files = 100usize;
    let mut rounds = 15usize;
    // For profiling one side alone: `--only single` or `--only txn` (no ratio is printed).
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--files" => files = args.next().and_then(|v| v.parse().ok()).unwrap_or(files),
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            "--quick" => rounds = 3,
            "--only" => only = args.next(),
            other => {
                eprintln!("usage: txn --dir DIR [--files N] [--rounds R] [--quick] (not {other})");
                std::process::exit(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: txn --dir DIR [--files N] [--rounds R] [--quick]");
        std::process::exit(2);
    };
    let work = dir.join("untorn-bench-txn");
    std::fs::create_dir_all(&work).expect("create the work directory");
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| work.join(format!("f{i:04}.json")))
        .collect();
    let body = |r: usize, i: usize| {
        format!(
            "{{\"round\": {r}, \"file\": {i}, \"pad\": \"{}\"}}\n",
            "x".repeat(980)
        )
    };
    for (i, p) in paths.iter().enumerate() {
        untorn::write(p, body(0, i)).expect("seed");
    }
    let (mut single, mut txn) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let run_single = |round: usize| {
            let t = Instant::now();
            for (i, p) in paths.iter().enumerate() {
                untorn::write(p, body(round, i)).expect("write");
            }
            t.elapsed()
        };
        let run_txn = |round: usize| {
            let t = Instant::now();
            let mut tx = untorn::Transaction::new();
            for (i, p) in paths.iter().enumerate() {
                tx.write(p, body(round, i)).expect("stage");
            }
            tx.commit().expect("commit");
            t.elapsed()
        };
        if let Some(o) = &only {
            match o.as_str() {
                "single" => drop(run_single(r)),
                "txn" => drop(run_txn(r)),
                _ => panic!("--only single|txn"),
            }
            continue;
        }
        if r % 2 == 0 {
            single.push(run_single(r * 2));
            txn.push(run_txn(r * 2 + 1));
        } else {
            txn.push(run_txn(r * 2));
            single.push(run_single(r * 2 + 1));
        }
    }
    if only.is_some() {
        let _ = std::fs::remove_dir_all(&work);
        return;
    }
    let (s, t) = (median(&mut single), median(&mut txn));
    let ratio = s.as_secs_f64() / t.as_secs_f64();
    println!("| {files} files × 1 KiB | median | per file |");
    println!("|---|---|---|");
    println!(
        "| {files} × untorn::write | {:.2} ms | {:.0} µs |",
        s.as_secs_f64() * 1e3,
        s.as_secs_f64() * 1e6 / files as f64
    );
    println!(
        "| one Transaction | {:.2} ms | {:.0} µs |",
        t.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e6 / files as f64
    );
    println!(
        "\nratio single/transaction: {ratio:.1}× (goal ≥ 20× at 100 files: {})",
        if ratio >= 20.0 { "PASS" } else { "FAIL" }
    );
    let _ = std::fs::remove_dir_all(&work);
}
