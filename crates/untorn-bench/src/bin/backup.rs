//! Backup benchmark: what keeping the displaced version as a backup adds to one durable atomic
//! write, against the same write without a backup, measured side by side in one run.
//!
//! ```text
//! cargo run --release -p untorn-bench --bin backup -- --dir DIR [--quick]
//! sudo scripts/bench-backup-append.sh [--quick]   # this and `append`, on a journaled ext4
//! ```
//!
//! # What is measured
//!
//! The latency of one durable atomic replacement of an **existing** file, at 1 KiB and 64 MiB
//! (`--sizes`), for three contenders, each replacing its own file in its own sub-directory of
//! `DIR` (so that one contender's backups never sit in another's directory listing):
//!
//! - **without**: `untorn::write(path, data)`: temp file, `fsync`, `RENAME_EXCHANGE`, `fsync`
//!   of the directory, `unlink` of the displaced inode.
//! - **with**: `untorn::OpenOptions::new().backups(5).write(path, data)`: the same, but the
//!   displaced inode is renamed to `NAME.<UTC>.bak` (covered by the same directory `fsync`)
//!   instead of being unlinked, and the oldest backup beyond 5 is removed.
//! - **copy, then write** (the seeds' approach, for reference): `std::fs::copy` of the file to
//!   a backup name, `fsync` of the copy, `fsync` of the directory, then `untorn::write`; the
//!   oldest copy beyond 5 is removed (timed too: retention is part of the cost, as for `with`).
//!
//! Every file exists before timing starts, and a few untimed warm-up rounds (7 by default)
//! fill the retention, so that every timed write of `with` displaces one version and prunes
//! one, as it would in steady state: backups never pile up beyond 5. Writes alternate between
//! two different buffers, so each backup differs from the live file; after the run the
//! benchmark checks every live file, that `with` and `copy` hold exactly 5 backups whose newest
//! is the version written before the last, and that no temp file is left over.
//!
//! The contenders are **interleaved**: every round runs each contender once, in a fresh random
//! order (so each one follows each other equally often in expectation), so that the noise of a
//! shared machine falls on all alike. Before each
//! timed write the file system is **settled** with an untimed `syncfs(2)`, so that no contender
//! pays the deferred journal work of the one before it (e.g. the block frees of an
//! `unlink` of 64 MiB); `--no-settle` turns that off.
//!
//! # How to read the results
//!
//! Times are **medians** over the rounds. `with / without` is the ratio of the medians: 1.00
//! means a backup costs nothing measurable, 1.10 means 10% more. The goal checked is
//! `with / without` ≤ 1.1 at 64 MiB, where a backup made by copying costs a second 64 MiB write
//! and `fsync` (`copy / without` shows that, ~2×); a miss prints FAIL but the exit code stays 0
//! (this is a report). Next to the ratio is a 95% bootstrap interval (rounds resampled with
//! their pairing kept): if it straddles the goal, the machine was too noisy to decide, so run
//! again with more `--rounds`. At 1 KiB all three are dominated by the journal commits of the
//! two `fsync`s, and the ratio shows the cost of the backup's extra system calls (the rename,
//! and the directory listing of the pruning).
//!
//! Run it on a journaled file system (`scripts/bench-backup-append.sh` makes a fresh ext4 loop
//! mount): the root fs of the development VMs has no journal and synchronous discard. The load
//! average and I/O pressure printed before and after the run tell whether a neighbour was busy.
//!
//! # Options
//!
//! `--quick` (fewer rounds), `--rounds N` (the same count at every size), `--warmup N`,
//! `--sizes 1K,64M`, `--no-settle`, `--other-files N` (N unrelated empty files in each
//! contender's directory, default 0: the pruning of `with` lists the whole directory, so this
//! shows what a crowded directory costs it). The benchmark works in `DIR/untorn-backup-bench/`,
//! which it removes at the end.

use rustix::fd::OwnedFd;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use untorn_bench::cmdline::CmdLine;
use untorn_bench::report::{interleaved_setup, machine_noise};
use untorn_bench::run::{clock_seed, fresh_work_dir, interleave, make_data, phase};
use untorn_bench::stats::{median, percentile, ratio_ci, Rng};
use untorn_bench::units::{fmt_ns, fmt_ratio, size_label, KIB, MIB};
use untorn_bench::Res;

/// Backups kept by `with` and by `copy`.
const KEEP: usize = 5;
/// The goal: `with / without` at most this at `GOAL_SIZE`.
const GOAL: f64 = 1.1;
const GOAL_SIZE: usize = 64 * MIB;
const NAME: &str = "state.bin";
/// Bootstrap resamples per confidence interval.
const RESAMPLES: usize = 2000;

const USAGE: &str = "usage: backup --dir DIR [--quick] [--rounds N] [--warmup N] \
                     [--sizes 1K,64M] [--no-settle] [--other-files N]";

struct Opts {
    dir: PathBuf,
    quick: bool,
    rounds: Option<usize>,
    warmup: usize,
    sizes: Vec<usize>,
    settle: bool,
    other_files: usize,
}

fn parse_args(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        dir: PathBuf::new(),
        quick: false,
        rounds: None,
        warmup: KEEP + 2,
        sizes: vec![KIB, 64 * MIB],
        settle: true,
        other_files: 0,
    };
    let mut dir = None;
    let mut c = CmdLine::new(args, USAGE);
    while let Some(a) = c.next_arg() {
        match a {
            "--dir" => dir = Some(PathBuf::from(c.value("--dir")?)),
            "--quick" => o.quick = true,
            "--rounds" => o.rounds = Some(c.parse("--rounds")?),
            "--warmup" => o.warmup = c.parse("--warmup")?,
            "--sizes" => o.sizes = c.sizes("--sizes")?,
            "--no-settle" => o.settle = false,
            "--other-files" => o.other_files = c.parse("--other-files")?,
            "-h" | "--help" => c.help(),
            other => return Err(c.unknown(other)),
        }
    }
    o.dir = c.required(dir, "--dir")?;
    if o.rounds == Some(0) || o.sizes.is_empty() {
        return Err(format!("nothing to measure\n{USAGE}").into());
    }
    Ok(o)
}

/// Timed rounds at `size`: the big writes take ~50 ms each, the small ones ~0.5 ms.
fn rounds_for(size: usize, o: &Opts) -> usize {
    if let Some(r) = o.rounds {
        return r;
    }
    match (size >= 16 * MIB, o.quick) {
        (true, false) => 61,
        (true, true) => 9,
        (false, false) => 401,
        (false, true) => 41,
    }
}

// ---------------------------------------------------------------------------------------------
// The contenders.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Without,
    With,
    CopyThenWrite,
}

const KINDS: [Kind; 3] = [Kind::Without, Kind::With, Kind::CopyThenWrite];

impl Kind {
    fn dir_name(self) -> &'static str {
        match self {
            Kind::Without => "without",
            Kind::With => "with",
            Kind::CopyThenWrite => "copy",
        }
    }
}

/// One contender's file, in its own directory.
struct Target {
    kind: Kind,
    dir: PathBuf,
    path: PathBuf,
    with_backups: untorn::OpenOptions,
    /// `copy`: its backup copies, oldest first, and the next copy's number.
    copies: VecDeque<PathBuf>,
    seq: u64,
    /// How many writes it has made (the buffer of write `k` is `k % 2`).
    writes: usize,
    /// Unrelated files in its directory.
    other_files: usize,
}

impl Target {
    fn new(kind: Kind, base: &Path, initial: &[u8], other_files: usize) -> Res<Target> {
        let dir = base.join(kind.dir_name());
        std::fs::create_dir_all(&dir)?;
        for i in 0..other_files {
            std::fs::write(dir.join(format!("other-{i:06}.txt")), b"")?;
        }
        let path = dir.join(NAME);
        // The file exists before anything is timed: the first write has something to back up.
        std::fs::write(&path, initial)?;
        std::fs::File::open(&path)?.sync_all()?;
        let mut with_backups = untorn::OpenOptions::new();
        with_backups.backups(KEEP);
        Ok(Target {
            kind,
            dir,
            path,
            with_backups,
            copies: VecDeque::new(),
            seq: 0,
            writes: 0,
            other_files,
        })
    }

    fn write(&mut self, data: &[u8]) -> Res<()> {
        match self.kind {
            Kind::Without => {
                untorn::write(&self.path, data)?;
            }
            Kind::With => {
                self.with_backups.write(&self.path, data)?;
            }
            Kind::CopyThenWrite => {
                self.seq += 1;
                let copy = self.dir.join(format!("{NAME}.{:06}.copy", self.seq));
                std::fs::copy(&self.path, &copy)?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&copy)?
                    .sync_all()?;
                std::fs::File::open(&self.dir)?.sync_all()?;
                self.copies.push_back(copy);
                untorn::write(&self.path, data)?;
                while self.copies.len() > KEEP {
                    let old = self.copies.pop_front().expect("more than KEEP");
                    std::fs::remove_file(old)?;
                }
            }
        }
        self.writes += 1;
        Ok(())
    }

    /// After the run: the live file holds the last write, the backups are exactly `KEEP` (fewer
    /// only if there were fewer writes) with
    /// the version before it as the newest, and nothing else is left in the directory.
    fn check(&self, bufs: &[Vec<u8>; 2]) -> Res<()> {
        let what = self.kind.dir_name();
        let n = self.writes;
        if n < 2 {
            return Err(format!("{what}: only {n} writes, too few to check").into());
        }
        // Every write displaced a version (the file existed before the first).
        let keep = n.min(KEEP);
        if std::fs::read(&self.path)? != bufs[(n - 1) % 2] {
            return Err(format!("{what}: the file does not hold the last write").into());
        }
        let previous = &bufs[(n - 2) % 2];
        let entries = std::fs::read_dir(&self.dir)?.count() - self.other_files;
        match self.kind {
            Kind::Without => {
                if entries != 1 {
                    return Err(format!("{what}: {entries} entries left, expected 1").into());
                }
            }
            Kind::With => {
                let b = untorn::backups(&self.path)?;
                if b.len() != keep {
                    return Err(format!("{what}: {} backups, expected {keep}", b.len()).into());
                }
                if std::fs::read(&b[0].path)? != *previous {
                    return Err(format!("{what}: the newest backup is not the last version").into());
                }
                if entries != keep + 1 {
                    let e = entries;
                    return Err(format!("{what}: {e} entries left, expected {}", keep + 1).into());
                }
            }
            Kind::CopyThenWrite => {
                let newest = self.copies.back().ok_or("copy: no copies")?;
                if self.copies.len() != keep || std::fs::read(newest)? != *previous {
                    return Err(format!("{what}: the copies are not the last {keep}").into());
                }
                if entries != keep + 1 {
                    let e = entries;
                    return Err(format!("{what}: {e} entries left, expected {}", keep + 1).into());
                }
            }
        }
        Ok(())
    }
}

struct SizeResult {
    size: usize,
    rounds: usize,
    /// Per contender (in `KINDS` order), per round, nanoseconds.
    times: Vec<Vec<f64>>,
}

fn bench_size(size: usize, o: &Opts, work: &Path, root: &OwnedFd) -> Res<SizeResult> {
    let rounds = rounds_for(size, o);
    let bufs = [
        make_data(size, 0x5eed ^ size as u64),
        make_data(size, 0xbeef),
    ];
    let base = work.join(size_label(size).replace(' ', ""));
    let mut ts = KINDS
        .iter()
        .map(|&k| Target::new(k, &base, &bufs[1], o.other_files))
        .collect::<Res<Vec<_>>>()?;
    let mut rng = Rng(clock_seed());
    let times = interleave(ts.len(), o.warmup, rounds, root, o.settle, &mut rng, |i| {
        let t = &mut ts[i];
        t.write(&bufs[t.writes % 2])
    })?;
    for t in &ts {
        t.check(&bufs)?;
    }
    std::fs::remove_dir_all(&base)?;
    Ok(SizeResult {
        size,
        rounds,
        times,
    })
}

fn print_results(results: &[SizeResult]) -> Option<bool> {
    let mut rng = Rng(0x1234_5678);
    let (wo, wi, cp) = (0, 1, 2);
    println!("## Median latency of one durable atomic replacement, with and without a backup\n");
    println!(
        "| size | rounds | without: `untorn::write` | with: `backups({KEEP})` | copy + fsync + dir \
         fsync, then `untorn::write` (seeds) | with / without (95% CI) | copy / without | goal |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut verdict = None;
    for r in results {
        let m: Vec<f64> = r.times.iter().map(|t| median(t)).collect();
        let ratio = m[wi] / m[wo];
        let ci = fmt_ratio(
            ratio,
            ratio_ci(&r.times[wi], &r.times[wo], &mut rng, RESAMPLES),
            3,
        );
        let goal = if r.size == GOAL_SIZE {
            let pass = ratio <= GOAL;
            verdict = Some(pass);
            format!("≤ {GOAL}: {}", if pass { "PASS" } else { "FAIL" })
        } else {
            "—".into()
        };
        println!(
            "| {} | {} | {} | {} | {} | {ci} | {:.2} | {goal} |",
            size_label(r.size),
            r.rounds,
            fmt_ns(m[wo]),
            fmt_ns(m[wi]),
            fmt_ns(m[cp]),
            m[cp] / m[wo],
        );
    }
    println!();
    println!("Spread (p10 – p90) of each contender:\n");
    println!("| size | without | with | copy, then write |");
    println!("|---|---|---|---|");
    for r in results {
        let s: Vec<String> = r
            .times
            .iter()
            .map(|t| {
                format!(
                    "{} – {}",
                    fmt_ns(percentile(t, 0.1)),
                    fmt_ns(percentile(t, 0.9))
                )
            })
            .collect();
        println!("| {} | {} |", size_label(r.size), s.join(" | "));
    }
    println!();
    verdict
}

fn run(args: &[String]) -> Res<()> {
    let o = parse_args(args)?;
    let (work, root) = fresh_work_dir(&o.dir, "untorn-backup-bench")?;

    println!("# Durable atomic write with and without a backup\n");
    let others = format!("{} other files in each directory; ", o.other_files);
    println!(
        "{}\n",
        interleaved_setup(&o.dir, o.warmup, &others, o.settle, "write")
    );
    println!("Before: {}\n", machine_noise());
    let _ = std::io::stdout().flush();

    let mut results = Vec::new();
    for &size in &o.sizes {
        let label = format!("backup: {}", size_label(size));
        results.push(phase(&label, || bench_size(size, &o, &work, &root))?);
    }
    drop(root);
    std::fs::remove_dir_all(&work)?;

    println!("After: {}\n", machine_noise());
    let verdict = print_results(&results);
    match verdict {
        Some(pass) => println!(
            "Goal: a write with backups({KEEP}) costs ≤ {GOAL}× one without, at {}: **{}**",
            size_label(GOAL_SIZE),
            if pass { "PASS" } else { "FAIL" }
        ),
        None => println!(
            "Goal not checked: {} was not among the sizes.",
            size_label(GOAL_SIZE)
        ),
    }
    println!(
        "All checks passed: each file holds its last write; `with` and `copy` keep exactly \
         {KEEP} backups, the newest being the version before the last; no temp files left."
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backup: {e}");
            ExitCode::FAILURE
        }
    }
}
