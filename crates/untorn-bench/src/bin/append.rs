//! Append benchmark: a durable 200-byte append with `untorn::append`, against appending by
//! rewriting the whole file (the seeds' approach), at 1 MiB and 64 MiB, in one run.
//!
//! ```text
//! cargo run --release -p untorn-bench --bin append -- --dir DIR [--quick]
//! sudo scripts/bench-backup-append.sh [--quick]   # this and `backup`, on a journaled ext4
//! ```
//!
//! # What is measured
//!
//! **Part 1, append against rewrite.** For each file size (1 MiB and 64 MiB, `--sizes`), two
//! fresh files of that size, made of 200-byte lines, get one 200-byte line (199 bytes and a
//! newline) per round each (three files):
//!
//! - **append**: `untorn::append(path, line)`: under the exclusive `flock` of `PATH.lock`, a
//!   look at the file's tail (a torn last record would be repaired first), one `O_APPEND`
//!   `write`, then `fdatasync`, then the unlock. O(record).
//! - **floor**: the bare system calls of a durable append, written by hand with std: `open`
//!   with `O_APPEND`, one `write`, `fdatasync`, `close`; no lock, no tail check. Nothing
//!   durable is much cheaper, so `untorn / floor` is what untorn's lock and checks add, and
//!   `rewrite / floor` is the best speed-up any append could show on this machine.
//! - **rewrite** (the seeds' approach): `std::fs::read` of the whole file, the line pushed at
//!   its end, `untorn::write` of the result (temp file, `fsync`, rename, directory `fsync`).
//!   O(file).
//!
//! **Part 2, is append flat in the file size?** Appends alone to a 1 MiB file and to a 64 MiB
//! file (the smallest and largest of `--sizes`), interleaved the same way, with many more
//! rounds (an append is cheap), so that the ratio `append@64MiB / append@1MiB` is measured
//! under the same noise and without the rewrites' aftermath nearby.
//!
//! In both parts the contenders are **interleaved**: every round runs each once, round-robin, the
//! order cycling through all orders of the contenders from round to round (so each one follows each
//! other about equally often). Before each timed operation the file system is **settled** with an
//! untimed `syncfs(2)`, so that nobody pays the deferred journal work of the operation before it
//! (an `fdatasync` that commits the journal would otherwise also commit the block frees of the
//! rewrite's `unlink` of 64 MiB); `--no-settle` turns that off. A few untimed warm-up rounds come
//! first (they also create the `.lock` sidecar). Each file grows by 200 bytes per operation (≤ a
//! few hundred KiB per run); files are made afresh for each size and part, and removed after it.
//! After each, every file is checked: the expected size, and the last line is the appended one.
//!
//! # How to read the results
//!
//! Times are **medians** over the rounds. `untorn / floor` is ~1.0 if untorn's append costs
//! what the bare system calls cost. `rewrite / append` is how many times faster an append
//! is than rewriting the file to add the same line; the goal checked is ≥ 500× at 64 MiB (an
//! append costs about one journal commit; a rewrite of 64 MiB reads 64 MiB and writes and
//! `fsync`s 64 MiB). `append@64MiB / append@1MiB` is ~1.0 if an append costs the same whatever
//! the file's size; it is checked against ≤ 1.1 ("flat"). Both ratios have a 95% bootstrap
//! interval (rounds resampled with their pairing kept). A miss prints FAIL but the exit code
//! stays 0 (this is a report); a failed check of the files' content exits 1.
//!
//! Run it on a journaled file system (`scripts/bench-backup-append.sh` makes a fresh ext4 loop
//! mount). On the root fs of the development VMs (no journal, synchronous discard) an append
//! is cheaper and a rewrite dearer (freeing 64 MiB of blocks is discarded synchronously), so
//! the ratio is larger there.
//!
//! # Options
//!
//! `--quick` (fewer rounds), `--rounds N` (part 1, the same count at every size),
//! `--flat-rounds N` (part 2; 0 skips it), `--warmup N`, `--sizes 1M,64M`, `--no-settle`. The
//! benchmark works in `DIR/untorn-append-bench/`, which it removes at the end.

use rustix::fd::OwnedFd;
use rustix::fs::{self as rfs, Mode, OFlags};
use std::error::Error;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

type Res<T> = Result<T, Box<dyn Error>>;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// The appended line, newline included.
const LINE_LEN: usize = 200;
/// The goal: rewrite at least this many times slower than append at `GOAL_SIZE`.
const GOAL_SPEEDUP: f64 = 500.0;
const GOAL_SIZE: usize = 64 * MIB;
/// Flat: append@largest / append@smallest at most this.
const FLAT: f64 = 1.1;

const USAGE: &str = "usage: append --dir DIR [--quick] [--rounds N] [--flat-rounds N] \
                     [--warmup N] [--sizes 1M,64M] [--no-settle]";

struct Opts {
    dir: PathBuf,
    quick: bool,
    rounds: Option<usize>,
    flat_rounds: Option<usize>,
    warmup: usize,
    sizes: Vec<usize>,
    settle: bool,
}

fn parse_args(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        dir: PathBuf::new(),
        quick: false,
        rounds: None,
        flat_rounds: None,
        warmup: 3,
        sizes: vec![MIB, 64 * MIB],
        settle: true,
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
            "--flat-rounds" => o.flat_rounds = Some(value("--flat-rounds")?.parse()?),
            "--warmup" => o.warmup = value("--warmup")?.parse()?,
            "--sizes" => {
                o.sizes = value("--sizes")?
                    .split(',')
                    .map(parse_size)
                    .collect::<Res<_>>()?
            }
            "--no-settle" => o.settle = false,
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
    o.sizes.sort_unstable();
    o.sizes.dedup();
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

/// Rounds of part 1 at `size`: a rewrite of 64 MiB takes ~100 ms, of 1 MiB ~2 ms.
fn rounds_for(size: usize, o: &Opts) -> usize {
    if let Some(r) = o.rounds {
        return r;
    }
    match (size >= 16 * MIB, o.quick) {
        (true, false) => 61,
        (true, true) => 9,
        (false, false) => 301,
        (false, true) => 31,
    }
}

fn flat_rounds(o: &Opts) -> usize {
    o.flat_rounds.unwrap_or(if o.quick { 101 } else { 1001 })
}

// ---------------------------------------------------------------------------------------------
// Statistics.

/// xorshift64*: reproducible bootstrap resamples, no dependency.
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

fn fmt_ratio(r: f64, ci: Option<(f64, f64)>, digits: usize) -> String {
    match ci {
        Some((lo, hi)) => format!("{r:.digits$} ({lo:.digits$}–{hi:.digits$})"),
        None => format!("{r:.digits$}"),
    }
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
// The files and the contenders.

/// The appended line: 199 printable bytes and a newline.
fn line() -> Vec<u8> {
    let mut v: Vec<u8> = b"{\"event\":\"appended\",\"pad\":\"".to_vec();
    while v.len() < LINE_LEN - 3 {
        v.push(b'a' + (v.len() % 26) as u8);
    }
    v.extend_from_slice(b"\"}\n");
    debug_assert_eq!(v.len(), LINE_LEN);
    v
}

/// `size` bytes of 200-byte lines (the last one shorter), ending with a newline.
fn initial_content(size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    let mut i = 0u64;
    while v.len() < size {
        let mut l = format!("{{\"n\":{i:09},\"pad\":\"").into_bytes();
        while l.len() < LINE_LEN - 3 {
            l.push(b'0' + (l.len() % 10) as u8);
        }
        l.extend_from_slice(b"\"}\n");
        let room = size - v.len();
        if room < LINE_LEN {
            l.truncate(room - 1);
            l.push(b'\n');
        }
        v.extend_from_slice(&l);
        i += 1;
    }
    v
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Append,
    Floor,
    Rewrite,
}

/// One contender's file.
struct Target {
    kind: Kind,
    path: PathBuf,
    initial: u64,
    ops: u64,
}

impl Target {
    fn new(kind: Kind, path: PathBuf, content: &[u8]) -> Res<Target> {
        std::fs::write(&path, content)?;
        std::fs::File::open(&path)?.sync_all()?;
        Ok(Target {
            kind,
            path,
            initial: content.len() as u64,
            ops: 0,
        })
    }

    fn run(&mut self, line: &[u8]) -> Res<()> {
        match self.kind {
            Kind::Append => untorn::append(&self.path, line)?,
            Kind::Floor => {
                let mut f = std::fs::OpenOptions::new().append(true).open(&self.path)?;
                f.write_all(line)?;
                f.sync_data()?;
            }
            Kind::Rewrite => {
                let mut all = std::fs::read(&self.path)?;
                all.extend_from_slice(line);
                untorn::write(&self.path, &all)?;
            }
        }
        self.ops += 1;
        Ok(())
    }

    /// The file has grown by one line per operation, and ends with the line.
    fn check(&self, line: &[u8]) -> Res<()> {
        let f = std::fs::File::open(&self.path)?;
        let len = f.metadata()?.len();
        let want = self.initial + self.ops * LINE_LEN as u64;
        if len != want {
            let p = self.path.display();
            return Err(format!("{p}: {len} bytes after the run, expected {want}").into());
        }
        let mut tail = vec![0u8; LINE_LEN];
        f.read_exact_at(&mut tail, len - LINE_LEN as u64)?;
        if self.ops > 0 && tail != line {
            let p = self.path.display();
            return Err(format!("{p}: the last line is not the appended one").into());
        }
        Ok(())
    }

    fn remove(&self) -> Res<()> {
        std::fs::remove_file(&self.path)?;
        let lock = untorn::lock_path_for(&self.path);
        if lock.exists() {
            std::fs::remove_file(lock)?;
        }
        Ok(())
    }
}

/// Flushes everything the file system still owes (journal commits of earlier unlinks and
/// renames), so that the next timed operation does not pay for its predecessor.
fn settle(root: &OwnedFd, on: bool) -> Res<()> {
    if on {
        rfs::syncfs(root)?;
    }
    Ok(())
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

/// Runs `ts` interleaved: `warmup` untimed rounds, then `rounds` timed ones. Returns the times
/// per target, per round (nanoseconds).
fn interleave(
    ts: &mut [Target],
    warmup: usize,
    rounds: usize,
    root: &OwnedFd,
    settle_on: bool,
) -> Res<Vec<Vec<f64>>> {
    let line = line();
    let orders = orders(ts.len());
    for r in 0..warmup {
        for &i in &orders[r % orders.len()] {
            ts[i].run(&line)?;
        }
    }
    let mut times = vec![Vec::with_capacity(rounds); ts.len()];
    for r in 0..rounds {
        // Round-robin, in the next of all the orders.
        for &i in &orders[r % orders.len()] {
            settle(root, settle_on)?;
            let start = Instant::now();
            ts[i].run(&line)?;
            times[i].push(start.elapsed().as_nanos() as f64);
        }
        if rounds >= 20 && (r + 1).is_multiple_of(rounds / 4) {
            eprint!(".");
        }
    }
    for t in ts.iter() {
        t.check(&line)?;
        t.remove()?;
    }
    Ok(times)
}

struct SizeResult {
    size: usize,
    rounds: usize,
    append: Vec<f64>,
    floor: Vec<f64>,
    rewrite: Vec<f64>,
}

fn bench_size(size: usize, o: &Opts, work: &Path, root: &OwnedFd) -> Res<SizeResult> {
    let rounds = rounds_for(size, o);
    let content = initial_content(size);
    let tag = size_label(size).replace(' ', "");
    let mut ts = vec![
        Target::new(
            Kind::Append,
            work.join(format!("append-{tag}.log")),
            &content,
        )?,
        Target::new(Kind::Floor, work.join(format!("floor-{tag}.log")), &content)?,
        Target::new(
            Kind::Rewrite,
            work.join(format!("rewrite-{tag}.log")),
            &content,
        )?,
    ];
    let mut times = interleave(&mut ts, o.warmup, rounds, root, o.settle)?;
    let rewrite = times.pop().expect("three");
    let floor = times.pop().expect("three");
    let append = times.pop().expect("three");
    Ok(SizeResult {
        size,
        rounds,
        append,
        floor,
        rewrite,
    })
}

struct FlatResult {
    small: usize,
    large: usize,
    rounds: usize,
    small_t: Vec<f64>,
    large_t: Vec<f64>,
}

fn bench_flat(
    small: usize,
    large: usize,
    o: &Opts,
    work: &Path,
    root: &OwnedFd,
) -> Res<FlatResult> {
    let rounds = flat_rounds(o);
    let mut ts = Vec::new();
    for size in [small, large] {
        let tag = size_label(size).replace(' ', "");
        let path = work.join(format!("flat-{tag}.log"));
        ts.push(Target::new(Kind::Append, path, &initial_content(size))?);
    }
    let mut times = interleave(&mut ts, o.warmup, rounds, root, o.settle)?;
    let large_t = times.pop().expect("two");
    let small_t = times.pop().expect("two");
    Ok(FlatResult {
        small,
        large,
        rounds,
        small_t,
        large_t,
    })
}

/// Prints the tables; returns the verdicts (speed-up goal, flatness goal) where checked.
fn print_results(
    results: &[SizeResult],
    flat: Option<&FlatResult>,
) -> (Option<bool>, Option<bool>) {
    let mut rng = Rng(0x1234_5678);
    println!("## Part 1: median latency of adding one 200-byte line, durably\n");
    println!(
        "| file size | rounds | `untorn::append` | floor: O_APPEND write + fdatasync | read all + \
         append + `untorn::write` (seeds) | untorn / floor (95% CI) | rewrite / floor | rewrite / \
         append (95% CI) | goal |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut speed = None;
    for r in results {
        let (a, f, w) = (median(&r.append), median(&r.floor), median(&r.rewrite));
        let ratio = w / a;
        let ci = ratio_ci(&r.rewrite, &r.append, &mut rng);
        let floor_ci = ratio_ci(&r.append, &r.floor, &mut rng);
        let goal = if r.size == GOAL_SIZE {
            let pass = ratio >= GOAL_SPEEDUP;
            speed = Some(pass);
            format!(
                "≥ {GOAL_SPEEDUP:.0}×: {}",
                if pass { "PASS" } else { "FAIL" }
            )
        } else {
            "—".into()
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0}× | {}× | {goal} |",
            size_label(r.size),
            r.rounds,
            fmt_ns(a),
            fmt_ns(f),
            fmt_ns(w),
            fmt_ratio(a / f, floor_ci, 2),
            w / f,
            fmt_ratio(ratio, ci, 0)
        );
    }
    println!();
    println!("Spread (p10 – p90):\n");
    println!("| file size | append | floor | rewrite |");
    println!("|---|---|---|---|");
    for r in results {
        let s = |t: &[f64]| {
            format!(
                "{} – {}",
                fmt_ns(percentile(t, 0.1)),
                fmt_ns(percentile(t, 0.9))
            )
        };
        println!(
            "| {} | {} | {} | {} |",
            size_label(r.size),
            s(&r.append),
            s(&r.floor),
            s(&r.rewrite)
        );
    }
    println!();
    if let (Some(first), Some(last)) = (results.first(), results.last()) {
        if results.len() > 1 {
            println!(
                "From part 1 (each size in its own phase): append@{} / append@{} = {:.2}\n",
                size_label(last.size).replace(' ', ""),
                size_label(first.size).replace(' ', ""),
                median(&last.append) / median(&first.append)
            );
        }
    }
    let mut flat_verdict = None;
    if let Some(f) = flat {
        let (s, l) = (median(&f.small_t), median(&f.large_t));
        let ratio = l / s;
        let ci = ratio_ci(&f.large_t, &f.small_t, &mut rng);
        let pass = ratio <= FLAT;
        flat_verdict = Some(pass);
        println!("## Part 2: is an append flat in the file size? (appends only, interleaved)\n");
        println!(
            "| rounds | append @ {} | append @ {} | append@{} / append@{} (95% CI) | goal |",
            size_label(f.small),
            size_label(f.large),
            size_label(f.large).replace(' ', ""),
            size_label(f.small).replace(' ', "")
        );
        println!("|---|---|---|---|---|");
        println!(
            "| {} | {} | {} | {} | ≤ {FLAT}: {} |",
            f.rounds,
            fmt_ns(s),
            fmt_ns(l),
            fmt_ratio(ratio, ci, 3),
            if pass { "PASS (flat)" } else { "FAIL" }
        );
        println!();
        println!(
            "Spread (p10 – p90): {} – {} at {}, {} – {} at {}.\n",
            fmt_ns(percentile(&f.small_t, 0.1)),
            fmt_ns(percentile(&f.small_t, 0.9)),
            size_label(f.small),
            fmt_ns(percentile(&f.large_t, 0.1)),
            fmt_ns(percentile(&f.large_t, 0.9)),
            size_label(f.large)
        );
    }
    (speed, flat_verdict)
}

fn run(args: &[String]) -> Res<()> {
    let o = parse_args(args)?;
    std::fs::create_dir_all(&o.dir)?;
    let work = o.dir.join("untorn-append-bench");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir(&work)?;
    let root = rfs::open(
        &work,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;

    println!("# Durable 200-byte append against rewriting the file\n");
    println!(
        "dir `{}` ({}); Linux {}, {} CPUs; warm-up {} rounds; contenders interleaved \
         (round-robin, cycling through all their orders); {}.\n",
        o.dir.display(),
        fs_description(&o.dir),
        kernel(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.warmup,
        if o.settle {
            "untimed syncfs before each timed operation"
        } else {
            "no settling between operations (--no-settle)"
        }
    );
    println!("Before: {}\n", machine_noise());
    let _ = std::io::stdout().flush();

    let mut results = Vec::new();
    for &size in &o.sizes {
        eprint!("append: part 1, {} ", size_label(size));
        let started = Instant::now();
        results.push(bench_size(size, &o, &work, &root)?);
        eprintln!(" {:.1} s", started.elapsed().as_secs_f64());
    }
    let (small, large) = (o.sizes[0], o.sizes[o.sizes.len() - 1]);
    let flat = if flat_rounds(&o) > 0 && small != large {
        eprint!(
            "append: part 2, {} and {} ",
            size_label(small),
            size_label(large)
        );
        let started = Instant::now();
        let f = bench_flat(small, large, &o, &work, &root)?;
        eprintln!(" {:.1} s", started.elapsed().as_secs_f64());
        Some(f)
    } else {
        None
    };
    drop(root);
    std::fs::remove_dir_all(&work)?;

    println!("After: {}\n", machine_noise());
    let (speed, flat_ok) = print_results(&results, flat.as_ref());
    let verdict = |v: Option<bool>| match v {
        Some(true) => "**PASS**",
        Some(false) => "**FAIL**",
        None => "not checked (size not measured)",
    };
    println!(
        "Goal: append ≥ {GOAL_SPEEDUP:.0}× faster than rewrite at {}: {}",
        size_label(GOAL_SIZE),
        verdict(speed)
    );
    println!(
        "Goal: append latency flat in the file size (part 2 ratio ≤ {FLAT}): {}",
        verdict(flat_ok)
    );
    println!(
        "All checks passed: every file grew by exactly one line per operation, ending with it."
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("append: {e}");
            ExitCode::FAILURE
        }
    }
}
