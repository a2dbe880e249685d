//! Group commit: one transaction of N small files against N single durable writes, and against
//! the floors of any rename-based batch, in one run, repeated.
//!
//! ```text
//! cargo run --release -p untorn-bench --bin txn -- --dir DIR [--files 100] [--rounds 15]
//! sudo scripts/bench-txn.sh [--quick]            # ext4 and xfs loop mounts, direct I/O
//! ```
//!
//! Contenders, each replacing the same N files of 1 KiB (each its own set of files):
//!
//! - **single**: N × `untorn::write` (each: fsync of the file and of the directory);
//! - **transaction**: one `untorn::Transaction` writing the N files (locks, journal, flags, one
//!   `syncfs` for all temps, the journal and its directory, the renames, one fsync of the
//!   directory);
//! - **floor**: create + write + close a temp and rename it over the file, N times, with no
//!   sync and no lock: what any atomic replacement of the N files by rename costs at the least
//!   (its data is not even written when it returns);
//! - **durable floor**: the same, but made durable as cheaply as it can be: all temps created
//!   and written, one `syncfs`, all renames, one fsync of the directory. No lock, no journal:
//!   not atomic as a whole across a crash (some renames may survive and others not), so no
//!   transaction can cost less.
//!
//! The goals: `transaction / floor` ≤ 1.25 and `single / transaction` ≥ 20. The first is
//! bounded by `durable floor / floor` (the two flushes and the data they write, which the no-sync
//! floor never waits for), printed beside it: when that bound alone exceeds the goal, no
//! transaction can meet it here. `transaction / durable floor` is what untorn's locks, journal,
//! flags and checksums add.
//!
//! Each round runs every contender once, in a fresh random order, each after an untimed
//! `syncfs` (settled: nobody pays another's deferred journal work; `--no-settle` turns that
//! off). The whole run is repeated (`--repeats`, default 3) and the last table gives every
//! repeat's ratios beside their floors, the range, and PASS only if every repeat met the goal.
//! Run it on a journaled file system (`scripts/bench-txn.sh` makes ext4 and xfs loop mounts):
//! the root file system of these machines has no journal.
//!
//! Options: `--files N`, `--rounds R`, `--repeats N`, `--quick`, `--no-settle`, `--seed N`,
//! `--only single|txn|floor|durable` (one contender alone, for profiling: no ratio printed).

use rustix::fs::{self as rfs, Mode, OFlags};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use untorn_bench::cmdline::CmdLine;
use untorn_bench::report::{fs_description, machine_noise, Goal, Repeats};
use untorn_bench::run::{clock_seed, settle};
use untorn_bench::stats::{median, percentile, Rng};
use untorn_bench::units::fmt_ns;
use untorn_bench::Res;

const GOAL_FLOOR: f64 = 1.25;
const GOAL_SPEEDUP: f64 = 20.0;

const USAGE: &str = "usage: txn --dir DIR [--files N] [--rounds R] [--repeats N] [--quick] \
                     [--no-settle] [--seed N] [--only single|txn|floor|durable]";

const NAMES: [&str; 4] = ["single", "txn", "floor", "durable"];

struct Opts {
    dir: PathBuf,
    files: usize,
    rounds: usize,
    repeats: usize,
    settle: bool,
    seed: u64,
    only: Option<usize>,
}

fn parse_args(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        dir: PathBuf::new(),
        files: 100,
        rounds: 15,
        repeats: 3,
        settle: true,
        seed: clock_seed(),
        only: None,
    };
    let mut dir = None;
    let mut c = CmdLine::new(args, USAGE);
    while let Some(a) = c.next_arg() {
        match a {
            "--dir" => dir = Some(PathBuf::from(c.value(a)?)),
            "--files" => o.files = c.parse(a)?,
            "--rounds" => o.rounds = c.parse(a)?,
            "--repeats" => o.repeats = c.parse(a)?,
            "--quick" => o.rounds = 5,
            "--no-settle" => o.settle = false,
            "--seed" => o.seed = c.parse(a)?,
            "--only" => {
                let v = c.value(a)?;
                o.only = Some(
                    NAMES
                        .iter()
                        .position(|n| *n == v)
                        .ok_or_else(|| format!("--only {v}?\n{USAGE}"))?,
                );
            }
            "-h" | "--help" => c.help(),
            other => return Err(c.unknown(other)),
        }
    }
    o.dir = c.required(dir, "--dir")?;
    if o.files == 0 || o.rounds == 0 || o.repeats == 0 {
        return Err(format!("nothing to measure\n{USAGE}").into());
    }
    Ok(o)
}

fn body(r: usize, i: usize) -> String {
    format!(
        "{{\"round\": {r}, \"file\": {i}, \"pad\": \"{}\"}}\n",
        "x".repeat(980)
    )
}

/// The temp a floor writes before renaming it over `p`.
fn tmp_of(p: &Path) -> PathBuf {
    p.with_extension("floor.tmp")
}

fn run_one(which: usize, paths: &[PathBuf], dir: &rustix::fd::OwnedFd, round: usize) -> Res<()> {
    match which {
        0 => {
            for (i, p) in paths.iter().enumerate() {
                untorn::write(p, body(round, i))?;
            }
        }
        1 => {
            let mut tx = untorn::Transaction::new();
            for (i, p) in paths.iter().enumerate() {
                tx.write(p, body(round, i))?;
            }
            tx.commit()?;
        }
        2 => {
            for (i, p) in paths.iter().enumerate() {
                let tmp = tmp_of(p);
                std::fs::write(&tmp, body(round, i))?;
                std::fs::rename(&tmp, p)?;
            }
        }
        _ => {
            for (i, p) in paths.iter().enumerate() {
                std::fs::write(tmp_of(p), body(round, i))?;
            }
            rfs::syncfs(dir)?;
            for p in paths {
                std::fs::rename(tmp_of(p), p)?;
            }
            rfs::fsync(dir)?;
        }
    }
    Ok(())
}

fn run(args: &[String]) -> Res<()> {
    let o = parse_args(args)?;
    let work = o.dir.join("untorn-bench-txn");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    // Each contender its own files, in its own directory (no directory grows more for one).
    let mut sets = Vec::new();
    let mut dirs = Vec::new();
    for name in NAMES {
        let d = work.join(name);
        std::fs::create_dir_all(&d)?;
        let paths: Vec<PathBuf> = (0..o.files)
            .map(|i| d.join(format!("f{i:04}.json")))
            .collect();
        for (i, p) in paths.iter().enumerate() {
            untorn::write(p, body(0, i))?;
        }
        dirs.push(rfs::open(
            &d,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?);
        sets.push(paths);
    }
    let root = rfs::open(
        &work,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if let Some(w) = o.only {
        for r in 1..=o.rounds {
            run_one(w, &sets[w], &dirs[w], r)?;
        }
        std::fs::remove_dir_all(&work)?;
        return Ok(());
    }

    println!(
        "# Transactions: one of {} files × 1 KiB against single writes and the floors\n",
        o.files
    );
    println!(
        "dir `{}` ({}); {} rounds × {} repeats, every contender once per round in a fresh random \
         order (seed {}); {}.\n",
        o.dir.display(),
        fs_description(&o.dir),
        o.rounds,
        o.repeats,
        o.seed,
        if o.settle {
            "an untimed syncfs before each"
        } else {
            "not settled (--no-settle)"
        }
    );
    println!("Before: {}\n", machine_noise());
    let mut rng = Rng(o.seed);
    let mut table = Repeats::new();
    let mut round = 0;
    for k in 1..=o.repeats {
        let mut times = vec![Vec::new(); NAMES.len()];
        let mut order: Vec<usize> = (0..NAMES.len()).collect();
        for _ in 0..o.rounds {
            rng.shuffle(&mut order);
            for &w in &order {
                round += 1;
                settle(&root, o.settle)?;
                let t = Instant::now();
                run_one(w, &sets[w], &dirs[w], round)?;
                times[w].push(t.elapsed().as_nanos() as f64);
            }
        }
        let m: Vec<f64> = times.iter().map(|t| median(t)).collect();
        println!("## Repeat {k} of {}\n", o.repeats);
        println!(
            "| {} files × 1 KiB | median | per file | p10 – p90 |",
            o.files
        );
        println!("|---|---|---|---|");
        for (w, label) in [
            "single: N × `untorn::write`",
            "one `Transaction`",
            "floor: create + write + rename, no sync, no lock",
            "durable floor: the same, one syncfs before the renames, one dir fsync after",
        ]
        .iter()
        .enumerate()
        {
            println!(
                "| {label} | {} | {} | {} – {} |",
                fmt_ns(m[w]),
                fmt_ns(m[w] / o.files as f64),
                fmt_ns(percentile(&times[w], 0.1)),
                fmt_ns(percentile(&times[w], 0.9))
            );
        }
        println!(
            "\ntransaction / floor {:.2} (the bound, durable floor / floor: {:.2}); transaction \
             / durable floor {:.2}; single / transaction {:.1}×\n",
            m[1] / m[2],
            m[3] / m[2],
            m[1] / m[3],
            m[0] / m[1]
        );
        let floor = format!("floor {}", fmt_ns(m[2]));
        table.add(
            "transaction / floor",
            Goal::AtMost(GOAL_FLOOR),
            m[1] / m[2],
            &floor,
        );
        table.add(
            "the bound: durable floor / floor",
            Goal::None,
            m[3] / m[2],
            &floor,
        );
        table.add(
            "transaction / durable floor (what untorn adds)",
            Goal::None,
            m[1] / m[3],
            format!("durable floor {}", fmt_ns(m[3])),
        );
        table.add(
            "single / transaction",
            Goal::AtLeast(GOAL_SPEEDUP),
            m[0] / m[1],
            format!("single {}", fmt_ns(m[0])),
        );
    }
    // Every file holds a whole version of its last round: nothing was lost or mixed.
    for p in sets.iter().flatten() {
        let text = std::fs::read_to_string(p)?;
        if !text.starts_with("{\"round\": ") || !text.ends_with("\"}\n") {
            return Err(format!("{}: {text:.40}", p.display()).into());
        }
    }
    drop(root);
    drop(dirs);
    std::fs::remove_dir_all(&work)?;
    println!("After: {}\n", machine_noise());
    table.print(
        &format!(
            "Every repeat: ratio (floor), range, goal ({} repeats)",
            o.repeats
        ),
        2,
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("txn: {e}");
            ExitCode::FAILURE
        }
    }
}
