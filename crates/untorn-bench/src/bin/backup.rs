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
//! The contenders are **interleaved**: every round runs each contender once, round-robin, the order
//! cycling through all 6 orders of the three from round to round (so each one follows each other
//! about equally often), so that the noise of a shared machine falls on all alike. Before each
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
use rustix::fs::{self as rfs, Mode, OFlags};
use std::collections::VecDeque;
use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

type Res<T> = Result<T, Box<dyn Error>>;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Backups kept by `with` and by `copy`.
const KEEP: usize = 5;
/// The goal: `with / without` at most this at `GOAL_SIZE`.
const GOAL: f64 = 1.1;
const GOAL_SIZE: usize = 64 * MIB;
const NAME: &str = "state.bin";

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
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
            "--quick" => o.quick = true,
            "--rounds" => o.rounds = Some(value("--rounds")?.parse()?),
            "--warmup" => o.warmup = value("--warmup")?.parse()?,
            "--sizes" => {
                o.sizes = value("--sizes")?
                    .split(',')
                    .map(parse_size)
                    .collect::<Res<_>>()?
            }
            "--no-settle" => o.settle = false,
            "--other-files" => o.other_files = value("--other-files")?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'\n{USAGE}").into()),
        }
    }
    o.dir = dir.ok_or_else(|| format!("--dir is required\n{USAGE}"))?;
    if o.rounds == Some(0) || o.sizes.is_empty() {
        return Err(format!("nothing to measure\n{USAGE}").into());
    }
    Ok(o)
}

fn parse_size(s: &str) -> Res<usize> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], KIB),
        Some((i, 'M' | 'm')) => (&s[..i], MIB),
        Some((i, 'G' | 'g')) => (&s[..i], 1024 * MIB),
        _ => (s, 1),
    };
    Ok(num
        .parse::<usize>()
        .map_err(|e| format!("bad size '{s}': {e}"))?
        * mul)
}

fn size_label(n: usize) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} B")
    }
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
// Statistics.

/// xorshift64*: reproducible data and bootstrap resamples, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// 95% bootstrap interval of median(a) / median(b), resampling rounds (pairs kept together).
fn ratio_ci(a: &[f64], b: &[f64], rng: &mut Rng) -> Option<(f64, f64)> {
    let n = a.len().min(b.len());
    if n < 5 {
        return None;
    }
    let mut ratios = Vec::with_capacity(2000);
    let (mut ra, mut rb) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..2000 {
        for i in 0..n {
            let j = rng.below(n);
            ra[i] = a[j];
            rb[i] = b[j];
        }
        ratios.push(median(&ra) / median(&rb));
    }
    Some((percentile(&ratios, 0.025), percentile(&ratios, 0.975)))
}

fn fmt_ns(ns: f64) -> String {
    if ns < 10_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e6 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn make_data(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(size);
    v
}

// ---------------------------------------------------------------------------------------------
// The machine and the file system, for the header.

// `f_type` is i64 on x86_64 but narrower on some other targets.
#[allow(clippy::unnecessary_cast)]
fn fs_description(dir: &Path) -> String {
    let kind = match rfs::statfs(dir).map(|s| s.f_type as i64) {
        Ok(0xEF53) => "ext2/3/4".to_string(),
        Ok(0x5846_5342) => "xfs".into(),
        Ok(0x9123_683E) => "btrfs".into(),
        Ok(0x0102_1994) => "tmpfs".into(),
        Ok(other) => format!("magic {other:#x}"),
        Err(e) => format!("statfs failed: {e}"),
    };
    // The mount's options, from the longest mount point that is a prefix of the directory.
    let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let best = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && canon.starts_with(f[1])).then(|| (f[1].len(), l.to_string()))
        })
        .max_by_key(|(n, _)| *n);
    match best {
        Some((_, l)) => format!("{kind}; mount: `{l}`"),
        None => kind,
    }
}

/// Load average and I/O pressure: a busy neighbour shows here.
fn machine_noise() -> String {
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    let io = std::fs::read_to_string("/proc/pressure/io").unwrap_or_default();
    let some = io.lines().find(|l| l.starts_with("some")).unwrap_or("");
    let avg = |k: &str| {
        some.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .unwrap_or("?")
            .to_string()
    };
    format!(
        "load average {load}; I/O pressure (some) {}% / {}% (avg10 / avg60)",
        avg("avg10="),
        avg("avg60=")
    )
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
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
            Kind::Without => untorn::write(&self.path, data)?,
            Kind::With => self.with_backups.write(&self.path, data)?,
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

/// Every order of `0..n`, in a fixed sequence (n! of them: 2 for 2 contenders, 6 for 3). Cycling
/// through them, one per round, runs each contender first, middle and last equally often, and puts
/// each right after each other one equally often (within rounds; the seams between rounds add a
/// little imbalance): a fixed rotation would have every contender follow the same one nearly
/// always, and pay for its aftermath (its writeback, discards, evicted caches) more than the
/// others.
fn orders(n: usize) -> Vec<Vec<usize>> {
    if n <= 1 {
        return vec![(0..n).collect()];
    }
    let mut out = Vec::new();
    for o in orders(n - 1) {
        for pos in 0..n {
            let mut v = o.clone();
            v.insert(pos, n - 1);
            out.push(v);
        }
    }
    out
}

struct SizeResult {
    size: usize,
    rounds: usize,
    /// Per contender (in `KINDS` order), per round, nanoseconds.
    times: Vec<Vec<f64>>,
}

/// Flushes everything the file system still owes (journal commits of earlier unlinks and
/// renames), so that the next timed write does not pay for its predecessor.
fn settle(root: &OwnedFd, on: bool) -> Res<()> {
    if on {
        rfs::syncfs(root)?;
    }
    Ok(())
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
    let n = ts.len();
    let orders = orders(n);
    for r in 0..o.warmup {
        for &i in &orders[r % orders.len()] {
            let t = &mut ts[i];
            let data = &bufs[t.writes % 2];
            t.write(data)?;
        }
    }
    let mut times = vec![Vec::with_capacity(rounds); n];
    for r in 0..rounds {
        // Round-robin, in the next of all the orders.
        for &i in &orders[r % orders.len()] {
            let t = &mut ts[i];
            let data = &bufs[t.writes % 2];
            settle(root, o.settle)?;
            let start = Instant::now();
            t.write(data)?;
            times[i].push(start.elapsed().as_nanos() as f64);
        }
        if rounds >= 20 && (r + 1).is_multiple_of(rounds / 4) {
            eprint!(".");
        }
    }
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
        let ci = match ratio_ci(&r.times[wi], &r.times[wo], &mut rng) {
            Some((lo, hi)) => format!("{ratio:.3} ({lo:.3}–{hi:.3})"),
            None => format!("{ratio:.3}"),
        };
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
    std::fs::create_dir_all(&o.dir)?;
    let work = o.dir.join("untorn-backup-bench");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir(&work)?;
    let root = rfs::open(
        &work,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;

    println!("# Durable atomic write with and without a backup\n");
    println!(
        "dir `{}` ({}); Linux {}, {} CPUs; warm-up {} rounds; {} other files in each \
         directory; contenders interleaved (round-robin, cycling through all their orders); \
         {}.\n",
        o.dir.display(),
        fs_description(&o.dir),
        kernel(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.warmup,
        o.other_files,
        if o.settle {
            "untimed syncfs before each timed write"
        } else {
            "no settling between writes (--no-settle)"
        }
    );
    println!("Before: {}\n", machine_noise());
    let _ = std::io::stdout().flush();

    let mut results = Vec::new();
    for &size in &o.sizes {
        eprint!("backup: {} ", size_label(size));
        let started = Instant::now();
        results.push(bench_size(size, &o, &work, &root)?);
        eprintln!(" {:.1} s", started.elapsed().as_secs_f64());
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
