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
//!
//! Before each timed side the file system is **settled** with an untimed `syncfs(2)` (as in the
//! append benchmark), so that neither side pays the deferred work of the other: the single
//! writes leave the in-place metadata writes of 200 journal commits behind them, which the
//! transaction's `syncfs` would otherwise write out on their behalf. `--no-settle` turns that
//! off (then the transaction pays for the writes before it).
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
    let mut settle = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--files" => files = args.next().and_then(|v| v.parse().ok()).unwrap_or(files),
            "--rounds" => rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            "--quick" => rounds = 3,
            "--only" => only = args.next(),
            "--no-settle" => settle = false,
            other => {
                eprintln!("usage: txn --dir DIR [--files N] [--rounds R] [--quick] [--no-settle] [--only single|txn|floor] (not {other})");
                std::process::exit(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: txn --dir DIR [--files N] [--rounds R] [--quick] [--no-settle] [--only single|txn|floor]");
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
    let root = std::fs::File::open(&work).expect("open the work directory");
    let settle_now = || {
        if settle {
            rustix::fs::syncfs(&root).expect("syncfs");
        }
    };
    // The floor: what any atomic replacement of the N files by rename costs here, with no
    // durability at all (temp create + write + close + rename; no lock, no sync).
    let run_floor = |round: usize| {
        settle_now();
        let t = Instant::now();
        for (i, p) in paths.iter().enumerate() {
            let tmp = p.with_extension("floor.tmp");
            std::fs::write(&tmp, body(round, i)).expect("floor write");
            std::fs::rename(&tmp, p).expect("floor rename");
        }
        t.elapsed()
    };
    let run_single = |round: usize| {
        settle_now();
        let t = Instant::now();
        for (i, p) in paths.iter().enumerate() {
            untorn::write(p, body(round, i)).expect("write");
        }
        t.elapsed()
    };
    let run_txn = |round: usize| {
        settle_now();
        let t = Instant::now();
        let mut tx = untorn::Transaction::new();
        for (i, p) in paths.iter().enumerate() {
            tx.write(p, body(round, i)).expect("stage");
        }
        tx.commit().expect("commit");
        t.elapsed()
    };
    let (mut single, mut txn, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for r in 1..=rounds {
        if let Some(o) = &only {
            match o.as_str() {
                "single" => drop(run_single(r)),
                "txn" => drop(run_txn(r)),
                "floor" => drop(run_floor(r)),
                _ => panic!("--only single|txn|floor"),
            }
            continue;
        }
        // Each contender follows each other one about equally often.
        let order: [usize; 3] = match r % 6 {
            0 => [0, 1, 2],
            1 => [1, 2, 0],
            2 => [2, 0, 1],
            3 => [0, 2, 1],
            4 => [2, 1, 0],
            _ => [1, 0, 2],
        };
        for (k, c) in order.into_iter().enumerate() {
            let round = r * 3 + k;
            match c {
                0 => single.push(run_single(round)),
                1 => txn.push(run_txn(round)),
                _ => floor.push(run_floor(round)),
            }
        }
    }
    if only.is_some() {
        let _ = std::fs::remove_dir_all(&work);
        return;
    }
    // Every file holds the last round's content: nothing was lost or mixed.
    for p in &paths {
        let text = std::fs::read_to_string(p).expect("read back");
        assert!(
            text.starts_with("{\"round\": "),
            "{}: {text:.40}",
            p.display()
        );
    }
    let (s, t, f) = (median(&mut single), median(&mut txn), median(&mut floor));
    let ratio = s.as_secs_f64() / t.as_secs_f64();
    let best = s.as_secs_f64() / f.as_secs_f64();
    println!(
        "{files} files × 1 KiB, {rounds} rounds, {}\n",
        if settle {
            "settled (an untimed syncfs before each side)"
        } else {
            "not settled (--no-settle)"
        }
    );
    println!("| {files} files × 1 KiB | median | per file |");
    println!("|---|---|---|");
    for (name, d) in [
        (format!("{files} × untorn::write"), s),
        ("one Transaction".to_string(), t),
        (
            "floor: create + write + rename, no sync, no lock".to_string(),
            f,
        ),
    ] {
        println!(
            "| {name} | {:.2} ms | {:.0} µs |",
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e6 / files as f64
        );
    }
    println!(
        "\ntransaction / floor: {:.2} (what the transaction adds to the bare renames: locks, \
         journal, flags, two flushes)",
        t.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "single / floor: {best:.1}× (no way of replacing the files by rename beats this ratio \
         here)"
    );
    println!(
        "ratio single/transaction: {ratio:.1}× (goal ≥ 20× at 100 files: {})",
        if ratio >= 20.0 { "PASS" } else { "FAIL" }
    );
    let _ = std::fs::remove_dir_all(&work);
}
