//! Append benchmark: a durable 200-byte append with `untorn::append` and through an open
//! [`untorn::LogWriter`], against the bare system calls and against rewriting the whole file
//! (the seeds' approach), at 1 MiB and 64 MiB; then throughput with 1, 2, 4 and 8 appenders at
//! once on one log. Every part is repeated (`--repeats`, default 3) and the ratios of all
//! repeats are printed together, each beside its floor, with their range.
//!
//! ```text
//! cargo run --release -p untorn-bench --bin append -- --dir DIR [--quick]
//! sudo scripts/bench-backup-append.sh [--quick]   # this and `backup`, on a journaled ext4
//! ```
//!
//! # What is measured
//!
//! **Part 1, one append's latency.** For each file size (1 MiB and 64 MiB, `--sizes`), fresh
//! files of that size, made of 200-byte lines, get one 200-byte line (199 bytes and a newline)
//! per round each:
//!
//! - **append**: `untorn::append(path, line)`: under the exclusive `flock` of `PATH.lock`, a
//!   look at the file's tail (a torn last record would be repaired first), one `O_APPEND`
//!   `write`, then `fdatasync`, then the unlock. O(record).
//! - **writer**: `LogWriter::append(line)` on a writer opened once: the log and its lock file
//!   stay open; per append the `flock`, one `statx` of the log's name, the `write`, the
//!   `fdatasync` and the unlock (the tail is judged again only if the log changed under it).
//! - **floor**: the bare system calls of a durable append, written by hand with std: `open`
//!   with `O_APPEND`, one `write`, `fdatasync`, `close`; no lock, no tail check. Nothing
//!   durable is much cheaper, so `untorn / floor` is what untorn's lock and checks add.
//! - **rewrite** (the seeds' approach): `std::fs::read` of the whole file, the line pushed at
//!   its end, `untorn::write` of the result. O(file).
//!
//! **Part 2, is append flat in the file size?** Appends alone to a 1 MiB file and to a 64 MiB
//! file (the smallest and largest of `--sizes`), interleaved the same way, with many more
//! rounds, so that `append@64MiB / append@1MiB` is measured under the same noise.
//!
//! **Part 3, appenders at once.** P processes (P = 1, 2, 4, 8, `--writers`) append 200-byte
//! lines to one log, `--records` each (default 100), started together (the wall time runs from
//! the start signal to the last one's end; see `untorn_bench::crowd`). Methods:
//!
//! - **append**: `untorn::append` per record (a process that appends now and then);
//! - **writer**: one `LogWriter` per process;
//! - **writer, threads**: one process, P threads sharing one `LogWriter` (a logging handler
//!   of a threaded program): its records queue while a batch syncs, and the next batch takes
//!   them all (a group commit within the process, beside the one between processes);
//! - **append, no group commit**: `untorn::append` with `GroupCommit::Off`: every appender
//!   syncs for itself under the lock, the behaviour before the group commit;
//! - **floor: flock + write + fdatasync**: the bare calls of a safe concurrent append by hand
//!   (the lock held through the sync, as it must be on ext4 `data=writeback`).
//!
//! Records per second = P × records / wall time; each method's scaling at P is its rate at P
//! over its rate at one appender **in the same round** (each round runs a method's appender
//! counts back to back, in a fresh random order: on a shared machine the rate of one
//! configuration swings several-fold from one minute to the next), the median over
//! `--crowd-rounds` rounds (default 5). The lock file's sync mark counts the syncs made while
//! it existed: records per flush are printed beside the rates. With the lock held through
//! every sync, P appenders cost P flushes (scaling ≈ 1); untorn's group commit lets one flush
//! serve the records of everyone who wrote meanwhile. The goal checked is ≥ 3× one appender's
//! records/s at 8 appenders. After each run the log must hold exactly P × records whole lines.
//!
//! In parts 1 and 2 the contenders are **interleaved**: every round runs each once, in a fresh
//! random order. Before each timed operation the file system is **settled** with an untimed
//! `syncfs(2)`, so that nobody pays the deferred journal work of the operation before it;
//! `--no-settle` turns that off. In part 3 the configurations (method × P) run in a fresh
//! random order in each repeat. A few untimed warm-up rounds come first. After each part every
//! file is checked: the expected size, and the last line is the appended one.
//!
//! # How to read the results
//!
//! Times are **medians** over the rounds. Goals: `untorn::append / floor` ≤ 1.05 and
//! `LogWriter / floor` ≤ 1.02 at 1 MiB; `rewrite / append` ≥ 500× at 64 MiB (bound by the
//! journal commit every durable append pays: `rewrite / floor` is printed beside it, and no
//! append can beat it); `append@64MiB / append@1MiB` ≤ 1.1; 8 appenders ≥ 3× one. A repeat's
//! ratio carries a 95% bootstrap interval (rounds resampled with their pairing kept) in its own
//! table; the final table gives every repeat's ratio with its floor, the range, and PASS only
//! if every repeat met the goal. A miss prints FAIL but the exit code stays 0 (this is a
//! report); a failed check of the files' content exits 1.
//!
//! Run it on a journaled file system (`scripts/bench-backup-append.sh` makes a fresh ext4 loop
//! mount, attached with direct I/O). On the root fs of the development VMs (no journal,
//! synchronous discard) an append is cheaper and a rewrite dearer.
//!
//! # Options
//!
//! `--quick` (fewer rounds and records), `--repeats N` (default 3), `--rounds N` (part 1, the
//! same count at every size), `--flat-rounds N` (part 2; 0 skips it), `--writers 1,2,4,8`
//! (part 3; `0` skips it), `--records N`, `--crowd-rounds N`, `--warmup N`, `--sizes 1M,64M`,
//! `--no-settle`, `--seed N` (of the shuffles). The benchmark works in
//! `DIR/untorn-append-bench/`, which it removes at the end. Hidden subcommand (part 3's
//! children): `writer METHOD PATH N [THREADS]`.

use rustix::fd::OwnedFd;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use untorn::{AppendOptions, GroupCommit, LogWriter};
use untorn_bench::cmdline::CmdLine;
use untorn_bench::crowd;
use untorn_bench::report::{interleaved_setup, machine_noise, Goal, Repeats};
use untorn_bench::run::{clock_seed, fresh_work_dir, interleave, phase};
use untorn_bench::stats::{median, percentile, ratio_ci, Rng};
use untorn_bench::units::{fmt_ns, fmt_ratio, size_label, MIB};
use untorn_bench::Res;

/// The appended line, newline included.
const LINE_LEN: usize = 200;
/// The goal: rewrite at least this many times slower than append at `GOAL_SIZE`.
const GOAL_SPEEDUP: f64 = 500.0;
const GOAL_SIZE: usize = 64 * MIB;
/// untorn's append, and through a writer, at most this many times the floor (at the smallest
/// size).
const GOAL_APPEND: f64 = 1.05;
const GOAL_WRITER: f64 = 1.02;
/// Flat: append@largest / append@smallest at most this.
const FLAT: f64 = 1.1;
/// Part 3: records/s at `GOAL_WRITERS` appenders at least this many times one appender's.
const GOAL_SCALING: f64 = 3.0;
const GOAL_WRITERS: usize = 8;
/// Bootstrap resamples per confidence interval.
const RESAMPLES: usize = 2000;

const USAGE: &str = "usage: append --dir DIR [--quick] [--repeats N] [--rounds N] \
                     [--flat-rounds N] [--writers 1,2,4,8] [--records N] [--crowd-rounds N] [--warmup N] \
                     [--sizes 1M,64M] [--no-settle] [--seed N]";

struct Opts {
    dir: PathBuf,
    quick: bool,
    repeats: usize,
    rounds: Option<usize>,
    flat_rounds: Option<usize>,
    writers: Vec<usize>,
    records: Option<u64>,
    crowd_rounds: Option<usize>,
    warmup: usize,
    sizes: Vec<usize>,
    settle: bool,
    seed: u64,
}

fn parse_args(args: &[String]) -> Res<Opts> {
    let mut o = Opts {
        dir: PathBuf::new(),
        quick: false,
        repeats: 3,
        rounds: None,
        flat_rounds: None,
        writers: vec![1, 2, 4, 8],
        records: None,
        crowd_rounds: None,
        warmup: 3,
        sizes: vec![MIB, 64 * MIB],
        settle: true,
        seed: clock_seed(),
    };
    let mut dir = None;
    let mut c = CmdLine::new(args, USAGE);
    while let Some(a) = c.next_arg() {
        match a {
            "--dir" => dir = Some(PathBuf::from(c.value("--dir")?)),
            "--quick" => o.quick = true,
            "--repeats" => o.repeats = c.parse("--repeats")?,
            "--rounds" => o.rounds = Some(c.parse("--rounds")?),
            "--flat-rounds" => o.flat_rounds = Some(c.parse("--flat-rounds")?),
            "--writers" => {
                o.writers = c
                    .value(a)?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?;
                o.writers.retain(|&w| w > 0);
            }
            "--records" => o.records = Some(c.parse("--records")?),
            "--crowd-rounds" => o.crowd_rounds = Some(c.parse("--crowd-rounds")?),
            "--warmup" => o.warmup = c.parse("--warmup")?,
            "--sizes" => o.sizes = c.sizes("--sizes")?,
            "--no-settle" => o.settle = false,
            "--seed" => o.seed = c.parse("--seed")?,
            "-h" | "--help" => c.help(),
            other => return Err(c.unknown(other)),
        }
    }
    o.dir = c.required(dir, "--dir")?;
    if o.rounds == Some(0) || o.sizes.is_empty() || o.repeats == 0 {
        return Err(format!("nothing to measure\n{USAGE}").into());
    }
    o.sizes.sort_unstable();
    o.sizes.dedup();
    o.writers.sort_unstable();
    o.writers.dedup();
    Ok(o)
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

fn records(o: &Opts) -> u64 {
    o.records.unwrap_or(if o.quick { 30 } else { 100 })
}

/// Part 3's rounds per repeat.
fn crowd_rounds(o: &Opts) -> usize {
    o.crowd_rounds.unwrap_or(if o.quick { 2 } else { 5 })
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
    Writer,
    Floor,
    Rewrite,
}

/// One contender's file.
struct Target {
    kind: Kind,
    path: PathBuf,
    writer: Option<LogWriter>,
    initial: u64,
    ops: u64,
}

impl Target {
    fn new(kind: Kind, path: PathBuf, content: &[u8]) -> Res<Target> {
        std::fs::write(&path, content)?;
        std::fs::File::open(&path)?.sync_all()?;
        let writer = match kind {
            Kind::Writer => Some(LogWriter::open(&path)?),
            _ => None,
        };
        Ok(Target {
            kind,
            path,
            writer,
            initial: content.len() as u64,
            ops: 0,
        })
    }

    fn run(&mut self, line: &[u8]) -> Res<()> {
        match self.kind {
            Kind::Append => {
                untorn::append(&self.path, line)?;
            }
            Kind::Writer => {
                self.writer.as_ref().expect("opened").append(line)?;
            }
            Kind::Floor => floor_append(&self.path, line)?,
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
        check_lines(&self.path, self.initial + self.ops * LINE_LEN as u64, line)
    }

    fn remove(&mut self) -> Res<()> {
        self.writer = None;
        remove_log(&self.path)
    }
}

/// The bare calls of a durable append.
fn floor_append(path: &Path, line: &[u8]) -> Res<()> {
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(line)?;
    f.sync_data()?;
    Ok(())
}

/// `path` holds `want` bytes and ends with `line`.
fn check_lines(path: &Path, want: u64, line: &[u8]) -> Res<()> {
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len != want {
        let p = path.display();
        return Err(format!("{p}: {len} bytes after the run, expected {want}").into());
    }
    let mut tail = vec![0u8; LINE_LEN];
    f.read_exact_at(&mut tail, len - LINE_LEN as u64)?;
    if tail != line {
        let p = path.display();
        return Err(format!("{p}: the last line is not the appended one").into());
    }
    Ok(())
}

fn remove_log(path: &Path) -> Res<()> {
    std::fs::remove_file(path)?;
    let lock = untorn::lock_path_for(path);
    if lock.exists() {
        std::fs::remove_file(lock)?;
    }
    Ok(())
}

/// Runs `ts` interleaved (see [`interleave`]), then checks and removes their files. Returns the
/// times per target, per round (nanoseconds).
fn run_targets(
    ts: &mut [Target],
    o: &Opts,
    rounds: usize,
    root: &OwnedFd,
    rng: &mut Rng,
) -> Res<Vec<Vec<f64>>> {
    let line = line();
    let times = interleave(ts.len(), o.warmup, rounds, root, o.settle, rng, |i| {
        ts[i].run(&line)
    })?;
    for t in ts.iter_mut() {
        t.check(&line)?;
        t.remove()?;
    }
    Ok(times)
}

struct SizeResult {
    size: usize,
    rounds: usize,
    append: Vec<f64>,
    writer: Vec<f64>,
    floor: Vec<f64>,
    rewrite: Vec<f64>,
}

fn bench_size(
    size: usize,
    o: &Opts,
    work: &Path,
    root: &OwnedFd,
    rng: &mut Rng,
) -> Res<SizeResult> {
    let rounds = rounds_for(size, o);
    let content = initial_content(size);
    let tag = size_label(size).replace(' ', "");
    let mut ts = Vec::new();
    for (kind, name) in [
        (Kind::Append, "append"),
        (Kind::Writer, "writer"),
        (Kind::Floor, "floor"),
        (Kind::Rewrite, "rewrite"),
    ] {
        ts.push(Target::new(
            kind,
            work.join(format!("{name}-{tag}.log")),
            &content,
        )?);
    }
    let mut times = run_targets(&mut ts, o, rounds, root, rng)?.into_iter();
    let mut next = || times.next().expect("four");
    Ok(SizeResult {
        size,
        rounds,
        append: next(),
        writer: next(),
        floor: next(),
        rewrite: next(),
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
    (small, large): (usize, usize),
    o: &Opts,
    work: &Path,
    root: &OwnedFd,
    rng: &mut Rng,
) -> Res<FlatResult> {
    let rounds = flat_rounds(o);
    let mut ts = Vec::new();
    for size in [small, large] {
        let tag = size_label(size).replace(' ', "");
        let path = work.join(format!("flat-{tag}.log"));
        ts.push(Target::new(Kind::Append, path, &initial_content(size))?);
    }
    let mut times = run_targets(&mut ts, o, rounds, root, rng)?;
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

// ---------------------------------------------------------------------------------------------
// Part 3: appenders at once.

/// How a part 3 child appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Append,
    Writer,
    Threads,
    NoGroup,
    Floor,
}

const METHODS: [Method; 5] = [
    Method::Append,
    Method::Writer,
    Method::Threads,
    Method::NoGroup,
    Method::Floor,
];

impl Method {
    fn key(self) -> &'static str {
        match self {
            Method::Append => "append",
            Method::Writer => "writer",
            Method::Threads => "threads",
            Method::NoGroup => "nogroup",
            Method::Floor => "floor",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Method::Append => "`untorn::append`",
            Method::Writer => "`LogWriter::append`",
            Method::Threads => "`LogWriter::append`, threads of one process",
            Method::NoGroup => "`untorn::append`, no group commit",
            Method::Floor => "floor: flock + write + fdatasync",
        }
    }

    fn of_key(k: &str) -> Option<Method> {
        METHODS.into_iter().find(|m| m.key() == k)
    }
}

/// Hidden subcommand `writer METHOD PATH N [THREADS]`: one part 3 appender (with `threads`,
/// THREADS threads of this process sharing one `LogWriter`).
fn writer_child(args: &[String]) -> Res<()> {
    let (Some(method), Some(path), Some(n)) = (
        args.first().and_then(|m| Method::of_key(m)),
        args.get(1).map(PathBuf::from),
        args.get(2).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        return Err(
            "usage: append writer append|writer|threads|nogroup|floor PATH N [THREADS]".into(),
        );
    };
    let line = line();
    if method == Method::Threads {
        let threads: usize = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(1);
        let writer = std::sync::Arc::new(LogWriter::open(&path)?);
        crowd::wait_for_go()?;
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (w, line) = (writer.clone(), line.clone());
                std::thread::spawn(move || -> Result<(), String> {
                    for _ in 0..n {
                        w.append(&line).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a thread panicked")??;
        }
        return crowd::done();
    }
    let writer = match method {
        Method::Writer => Some(LogWriter::open(&path)?),
        _ => None,
    };
    let mut nogroup = AppendOptions::new();
    nogroup.group_commit(GroupCommit::Off);
    let lock = untorn::lock_path_for(&path);
    crowd::wait_for_go()?;
    for _ in 0..n {
        match method {
            Method::Append => {
                untorn::append(&path, &line)?;
            }
            Method::Writer | Method::Threads => {
                writer.as_ref().expect("opened").append(&line)?;
            }
            Method::NoGroup => {
                nogroup.append(&path, &line)?;
            }
            Method::Floor => {
                let l = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&lock)?;
                rustix::fs::flock(&l, rustix::fs::FlockOperation::LockExclusive)?;
                floor_append(&path, &line)?;
                rustix::fs::flock(&l, rustix::fs::FlockOperation::Unlock)?;
            }
        }
    }
    crowd::done()
}

/// What one part 3 run measured.
#[derive(Clone, Copy, Default)]
struct Crowd {
    /// Records per second.
    rate: f64,
    /// Records per `fdatasync`, as the lock file's sync mark counted them (`None`: no mark, no
    /// group commit happened).
    per_sync: Option<f64>,
    /// Over the rate at one appender in the same round (medians over rounds; see
    /// `bench_crowds`).
    scaling: Option<f64>,
}

/// The sync count of the lock file `lock`'s mark (`user.untorn.synced`, `gen=N`), if it has
/// one: every sync made while the mark existed advanced it.
fn syncs_counted(lock: &Path) -> Option<u64> {
    let mut buf = [0u8; 128];
    let n = rustix::fs::getxattr(lock, "user.untorn.synced", &mut buf).ok()?;
    let v = std::str::from_utf8(&buf[..n]).ok()?;
    v.split(' ')
        .find_map(|f| f.strip_prefix("gen="))?
        .parse()
        .ok()
}

/// One part 3 run: `p` appenders of `method`, `n` records each.
fn crowd_run(exe: &Path, method: Method, p: usize, n: u64, work: &Path) -> Res<Crowd> {
    let path = work.join(format!("crowd-{}-{p}.log", method.key()));
    std::fs::write(&path, initial_content(64 * 1024))?;
    std::fs::File::open(&path)?.sync_all()?;
    let command = || {
        let mut c = Command::new(exe);
        c.arg("writer")
            .arg(method.key())
            .arg(&path)
            .arg(n.to_string());
        c
    };
    let commands = if method == Method::Threads {
        let mut c = command();
        c.arg(p.to_string());
        vec![c]
    } else {
        (0..p).map(|_| command()).collect()
    };
    let t = crowd::run(commands, &format!("{} P={p}", method.label()))?;
    check_lines(&path, 64 * 1024 + p as u64 * n * LINE_LEN as u64, &line())?;
    let records = p as u64 * n;
    let per_sync = syncs_counted(&untorn::lock_path_for(&path))
        .filter(|&g| g > 0)
        .map(|g| records as f64 / g as f64);
    remove_log(&path)?;
    Ok(Crowd {
        rate: records as f64 / t.secs,
        per_sync,
        scaling: None,
    })
}

/// Part 3's results, per method (in `METHODS` order), per writer count (in `o.writers`
/// order): the median over `crowd_rounds` rounds of each run's rate and records per flush, and
/// in `scaling`, the median of each round's rate over the same round's rate at one appender.
/// Each round runs each method's writer counts back to back (in a fresh random order, the
/// methods too), so that a ratio compares runs close in time: on a shared machine the rate of
/// one configuration swings several-fold from one minute to the next.
fn bench_crowds(o: &Opts, work: &Path, rng: &mut Rng) -> Res<Vec<Vec<Crowd>>> {
    let exe = std::env::current_exe()?;
    let n = records(o);
    let (nm, nw) = (METHODS.len(), o.writers.len());
    let mut runs = vec![vec![Vec::new(); nw]; nm];
    // Warm-up: binaries, page cache.
    crowd_run(&exe, Method::Append, 2, n.min(20), work)?;
    let mut methods: Vec<usize> = (0..nm).collect();
    let mut writers: Vec<usize> = (0..nw).collect();
    for _ in 0..crowd_rounds(o) {
        rng.shuffle(&mut methods);
        for &m in &methods {
            rng.shuffle(&mut writers);
            for &w in &writers {
                runs[m][w].push(crowd_run(&exe, METHODS[m], o.writers[w], n, work)?);
            }
            eprint!(".");
        }
    }
    let one = o.writers.iter().position(|&w| w == 1);
    Ok((0..nm)
        .map(|m| {
            (0..nw)
                .map(|w| {
                    let rs = &runs[m][w];
                    let rates: Vec<f64> = rs.iter().map(|c| c.rate).collect();
                    let per: Vec<f64> = rs.iter().filter_map(|c| c.per_sync).collect();
                    let scaling: Vec<f64> = match one {
                        Some(i) => rs
                            .iter()
                            .zip(&runs[m][i])
                            .map(|(c, base)| c.rate / base.rate)
                            .collect(),
                        None => Vec::new(),
                    };
                    Crowd {
                        rate: median(&rates),
                        per_sync: (!per.is_empty()).then(|| median(&per)),
                        scaling: (!scaling.is_empty()).then(|| median(&scaling)),
                    }
                })
                .collect()
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Reporting.

/// Prints one repeat's tables, and adds its ratios to `table`.
fn print_repeat(
    results: &[SizeResult],
    flat: Option<&FlatResult>,
    crowds: Option<&Vec<Vec<Crowd>>>,
    o: &Opts,
    table: &mut Repeats,
    rng: &mut Rng,
) {
    println!("### Part 1: median latency of adding one 200-byte line, durably\n");
    println!(
        "| file size | rounds | `untorn::append` | `LogWriter::append` | floor: O_APPEND write + \
         fdatasync | read all + append + `untorn::write` (seeds) | append / floor (95% CI) | \
         writer / floor (95% CI) | rewrite / floor | rewrite / append (95% CI) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let (a, h, f, w) = (
            median(&r.append),
            median(&r.writer),
            median(&r.floor),
            median(&r.rewrite),
        );
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0}× | {}× |",
            size_label(r.size),
            r.rounds,
            fmt_ns(a),
            fmt_ns(h),
            fmt_ns(f),
            fmt_ns(w),
            fmt_ratio(a / f, ratio_ci(&r.append, &r.floor, rng, RESAMPLES), 3),
            fmt_ratio(h / f, ratio_ci(&r.writer, &r.floor, rng, RESAMPLES), 3),
            w / f,
            fmt_ratio(w / a, ratio_ci(&r.rewrite, &r.append, rng, RESAMPLES), 0)
        );
        let at = size_label(r.size).replace(' ', "");
        let floor = format!("floor {}", fmt_ns(f));
        let (ga, gw) = if Some(&r.size) == o.sizes.first() {
            (Goal::AtMost(GOAL_APPEND), Goal::AtMost(GOAL_WRITER))
        } else {
            (Goal::None, Goal::None)
        };
        table.add(
            &format!("`untorn::append` / floor @ {at}"),
            ga,
            a / f,
            &floor,
        );
        table.add(
            &format!("`LogWriter::append` / floor @ {at}"),
            gw,
            h / f,
            &floor,
        );
        if r.size == GOAL_SIZE {
            table.add(
                "rewrite / append @ 64MiB (the bound: rewrite / floor, in brackets)",
                Goal::AtLeast(GOAL_SPEEDUP),
                w / a,
                format!("{:.0}×", w / f),
            );
        }
    }
    println!();
    println!("Spread (p10 – p90):\n");
    println!("| file size | append | writer | floor | rewrite |");
    println!("|---|---|---|---|---|");
    let s = |t: &[f64]| {
        format!(
            "{} – {}",
            fmt_ns(percentile(t, 0.1)),
            fmt_ns(percentile(t, 0.9))
        )
    };
    for r in results {
        println!(
            "| {} | {} | {} | {} | {} |",
            size_label(r.size),
            s(&r.append),
            s(&r.writer),
            s(&r.floor),
            s(&r.rewrite)
        );
    }
    println!();
    if let Some(f) = flat {
        let (sm, l) = (median(&f.small_t), median(&f.large_t));
        let ci = ratio_ci(&f.large_t, &f.small_t, rng, RESAMPLES);
        println!("### Part 2: is an append flat in the file size? (appends only, interleaved)\n");
        println!(
            "| rounds | append @ {} | append @ {} | ratio (95% CI) | spread (p10 – p90) |",
            size_label(f.small),
            size_label(f.large),
        );
        println!("|---|---|---|---|---|");
        println!(
            "| {} | {} | {} | {} | {} · {} |\n",
            f.rounds,
            fmt_ns(sm),
            fmt_ns(l),
            fmt_ratio(l / sm, ci, 3),
            s(&f.small_t),
            s(&f.large_t)
        );
        table.add(
            &format!(
                "append @ {} / append @ {}",
                size_label(f.large).replace(' ', ""),
                size_label(f.small).replace(' ', "")
            ),
            Goal::AtMost(FLAT),
            l / sm,
            format!("{} at {}", fmt_ns(sm), size_label(f.small)),
        );
    }
    if let Some(crowds) = crowds {
        println!(
            "### Part 3: appenders at once on one log, records/s ({} records each; records per \
             flush, counted by the lock file's sync mark, in brackets)\n",
            records(o)
        );
        let mut head = "| method |".to_string();
        for w in &o.writers {
            head += &format!(" {w} |");
        }
        println!("{head} scaling at the most appenders |");
        println!("|---|{}---|", "---|".repeat(o.writers.len()));
        for (m, method) in METHODS.iter().enumerate() {
            let mut row = format!("| {} |", method.label());
            for c in &crowds[m] {
                match c.per_sync {
                    Some(k) => row += &format!(" {:.0} ({k:.1}) |", c.rate),
                    None => row += &format!(" {:.0} |", c.rate),
                }
            }
            let one = o
                .writers
                .iter()
                .position(|&w| w == 1)
                .map(|i| crowds[m][i].rate);
            match crowds[m].last().and_then(|c| c.scaling) {
                Some(x) => row += &format!(" {x:.2}× |"),
                None => row += " — |",
            }
            println!("{row}");
            let Some(one) = one else { continue };
            for (i, &w) in o.writers.iter().enumerate().filter(|(_, &w)| w > 1) {
                let goal = match method {
                    Method::Append | Method::Writer | Method::Threads if w == GOAL_WRITERS => {
                        Goal::AtLeast(GOAL_SCALING)
                    }
                    _ => Goal::None,
                };
                table.add(
                    &format!("{} records/s, {w} appenders / 1", method.label()),
                    goal,
                    crowds[m][i].scaling.unwrap_or(f64::NAN),
                    format!("{one:.0}/s"),
                );
            }
            let most = o.writers.last().copied().unwrap_or(0);
            if let Some(k) = crowds[m].last().and_then(|c| c.per_sync) {
                table.add(
                    &format!("{} records per flush, {most} appenders", method.label()),
                    Goal::None,
                    k,
                    "1 without grouping",
                );
            }
        }
        println!();
    }
}

fn run(args: &[String]) -> Res<()> {
    let o = parse_args(args)?;
    let (work, root) = fresh_work_dir(&o.dir, "untorn-append-bench")?;
    let mut rng = Rng(o.seed);

    println!("# Durable 200-byte append: latency against the floor and rewriting, and appenders at once\n");
    println!(
        "{}\n",
        interleaved_setup(
            &o.dir,
            o.warmup,
            &format!("{} repeats; seed {}; ", o.repeats, o.seed),
            o.settle,
            "operation"
        )
    );
    println!("Before: {}\n", machine_noise());
    let _ = std::io::stdout().flush();

    let mut table = Repeats::new();
    for k in 1..=o.repeats {
        let mut results = Vec::new();
        for &size in &o.sizes {
            let label = format!("append: repeat {k}, part 1, {}", size_label(size));
            results.push(phase(&label, || {
                bench_size(size, &o, &work, &root, &mut rng)
            })?);
        }
        let (small, large) = (o.sizes[0], o.sizes[o.sizes.len() - 1]);
        let flat = if flat_rounds(&o) > 0 && small != large {
            let label = format!("append: repeat {k}, part 2");
            Some(phase(&label, || {
                bench_flat((small, large), &o, &work, &root, &mut rng)
            })?)
        } else {
            None
        };
        let crowds = if o.writers.is_empty() {
            None
        } else {
            let label = format!("append: repeat {k}, part 3");
            Some(phase(&label, || bench_crowds(&o, &work, &mut rng))?)
        };
        println!("## Repeat {k} of {}\n", o.repeats);
        print_repeat(
            &results,
            flat.as_ref(),
            crowds.as_ref(),
            &o,
            &mut table,
            &mut rng,
        );
        let _ = std::io::stdout().flush();
    }
    drop(root);
    std::fs::remove_dir_all(&work)?;

    println!("After: {}\n", machine_noise());
    table.print(
        &format!(
            "Every repeat: ratio (floor), range, goal ({} repeats)",
            o.repeats
        ),
        3,
    );
    println!(
        "All checks passed: every file grew by exactly one line per operation, ending with it; \
         every crowd's log holds exactly its records."
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("writer") => writer_child(&args[1..]),
        _ => run(&args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("append: {e}");
            ExitCode::FAILURE
        }
    }
}
