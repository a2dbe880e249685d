//! Benchmark of untorn against the bare protocol and a peer crate, as ratios measured in one
//! run.
//!
//! ```text
//! cargo run --release -p untorn-bench -- --dir DIR [--quick]
//! sudo scripts/bench-ext4.sh [--quick]        # the same, on a fresh journaled ext4 loop mount
//! ```
//!
//! # What is measured
//!
//! 1. **Latency of one durable atomic replacement** of an existing file in `DIR`, at 1 KiB,
//!    64 KiB, 1 MiB and 64 MiB, for three contenders:
//!    - `untorn::write(path, data)` with the default options (full durability, `O_TMPFILE`
//!      where supported, `RENAME_EXCHANGE`, keep mode and owner);
//!    - **floor**: the bare protocol written by hand with rustix: `open` the directory,
//!      `openat(O_CREAT|O_EXCL)` a named temp beside the target, `write` all, `fsync`,
//!      `renameat` over the target, `fsync` the directory, `close`. Nothing less is both atomic
//!      and durable, so nothing correct can be much faster;
//!    - the `atomic-write-file` crate (`AtomicWriteFile::open`, `write_all`, `commit`).
//!
//!    Each contender replaces its own file of the same size in the same directory. The
//!    contenders are **interleaved**: every round runs each contender once, in a fresh random
//!    order, so that the noise of a shared machine (other tenants, writeback, journal commits of
//!    a neighbour) falls on all of them alike. A few warm-up rounds are not counted, and each
//!    file is read back and checked after them.
//! 2. **Which system calls** one write makes (1 KiB, after a warm-up), counted with `strace`
//!    when it is installed: untorn's protocol makes a few more than the floor (`fstat`s,
//!    `fchmod`, `linkat`, the `unlinkat` of the old content after the exchange).
//! 3. **Peak memory of streaming 1 GiB** through an [`untorn::AtomicFile`] (default
//!    [`untorn::Durability::Full`]) from a generator, in 1 MiB and 8 KiB chunks, never holding
//!    the content. It runs in a child process (this binary, hidden subcommand `stream-1g`);
//!    the peak RSS is the child's `VmHWM`, read by the parent from `/proc/<pid>/status` while
//!    the child waits before exiting, and cross-checked by the child's own reading.
//!
//! # How to read the results
//!
//! Times are **medians** over the rounds. `untorn/floor` is the ratio of the medians: 1.00
//! means untorn costs exactly what the bare system calls cost, 1.05 means 5% more. The goal
//! checked is untorn ≤ 1.05 × floor at every size; a miss prints FAIL but the exit code stays 0
//! (this is a report). Next to the ratio are a 95% bootstrap interval of it (rounds resampled
//! with their pairing kept) and the median of the per-round ratios: if the interval straddles
//! 1.05, the machine is too noisy to decide at that size, so run again with more rounds.
//!
//! At small sizes nearly all of the time is the two journal commits (the temp file's `fsync`
//! and the directory's `fsync`), so the ratios show the cost of the extra system calls and of
//! any extra journal work; at 64 MiB the data write dominates and all contenders converge.
//! Numbers only mean something on a file system like the one users have: run it on a journaled
//! ext4 (`scripts/bench-ext4.sh`); the root fs of the development VMs has no journal and
//! synchronous discard. The load average and I/O pressure printed before and after the run
//! tell whether a neighbour was busy.
//!
//! **A loop-mount artifact.** Since Linux 6.13 (multigrain timestamps), a `stat`/`fstat` that
//! returns an inode's timestamps makes that inode's next change take a fine-grained timestamp,
//! which also advances the kernel-wide timestamp floor. On a loop mount the loop driver's next
//! write to its backing image must then update the image file's mtime on the host file
//! system, and the next flush write that inode too. On these VMs this costs ~30 µs per write
//! to whoever did the `fstat` before changing something (untorn: `fstat` of the temp before
//! its `fchmod`, of the directory before the `linkat`/rename), i.e. ~5% at 1 KiB–64 KiB; it
//! does not show on the root fs, where nothing sits on a file. `--ablation` measures it
//! (`untorn's syscalls by hand` against the same with `statx` asking for no timestamps).
//!
//! # Options
//!
//! `--quick` (few rounds, one stream), `--rounds N` (same count at every size), `--sizes
//! 1K,64K,1M,64M`, `--order random|blocked` (blocked runs all rounds of one contender, then the
//! next: to check that interleaving does not favour anyone), `--variants` (adds untorn with a
//! named temp and with `Durability::File`), `--ablation` (adds the floor written by hand with
//! every combination of untorn's three extra steps: `0600` + `fchmod`, `O_TMPFILE` + `linkat`,
//! `RENAME_EXCHANGE` + `unlinkat` of the old file; then all of them plus untorn's `fstat`s,
//! which is untorn's system calls; then that with `statx` without timestamps; then untorn's
//! exact trace (its `NAME.lock` probe, random temp names, close order); each timed step by
//! step, to show where untorn's extra time goes), `--no-stream`, `--no-syscalls`.
//!
//! Hidden subcommands (used by the above, handy under `perf` or `strace -c`): `stream-1g DIR
//! CHUNK`, `syscalls CONTENDER SIZE DIR`, `repeat CONTENDER SIZE DIR N`.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use atomic_write_file::AtomicWriteFile;
use rustix::fs::{self as rfs, Mode, OFlags};
use untorn::{Durability, OpenOptions, TempFile};
use untorn_bench::cmdline::CmdLine;
use untorn_bench::report::{fs_description, io_pressure, kernel, load_average};
use untorn_bench::run::make_data;
use untorn_bench::stats::{median, percentile, ratio_ci, Rng};
use untorn_bench::units::{fmt_ns, parse_size, size_label, KIB, MIB};
use untorn_bench::Res;

/// The goal: untorn at most this many times the floor.
const GOAL: f64 = 1.05;
/// Bootstrap resamples per confidence interval (`append` and `backup` take 2000; this one has
/// always taken 1000: kept, so that its intervals stay comparable with earlier runs).
const RESAMPLES: usize = 1000;
/// The memory budget of a streaming write.
const RSS_BUDGET_MIB: f64 = 16.0;
/// Strace markers: `open`s of paths that do not exist, easy to find in a trace.
const MARK_BEGIN: &str = "/nonexistent-untorn-bench/begin";
const MARK_END: &str = "/nonexistent-untorn-bench/end";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("stream-1g") => stream_child(&args[1..]),
        Some("syscalls") => syscalls_child(&args[1..]),
        Some("repeat") => repeat_child(&args[1..]),
        _ => run(&args),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("untorn-bench: {e}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: untorn-bench --dir DIR [--quick] [--rounds N] [--sizes 1K,64K,1M,64M] \
[--order random|blocked] [--variants] [--ablation] [--no-stream] [--no-syscalls]";

#[derive(Debug)]
struct Args {
    dir: PathBuf,
    quick: bool,
    rounds: Option<usize>,
    sizes: Vec<usize>,
    blocked: bool,
    variants: bool,
    ablation: bool,
    stream: bool,
    syscalls: bool,
}

fn parse_args(args: &[String]) -> Res<Args> {
    let mut a = Args {
        dir: PathBuf::new(),
        quick: false,
        rounds: None,
        sizes: vec![KIB, 64 * KIB, MIB, 64 * MIB],
        blocked: false,
        variants: false,
        ablation: false,
        stream: true,
        syscalls: true,
    };
    let mut dir = None;
    let mut c = CmdLine::new(args, USAGE);
    while let Some(arg) = c.next_arg() {
        match arg {
            "--dir" => dir = Some(PathBuf::from(c.value("--dir")?)),
            "--quick" => a.quick = true,
            "--rounds" => a.rounds = Some(c.parse("--rounds")?),
            "--sizes" => a.sizes = c.sizes("--sizes")?,
            "--order" => match c.value("--order")?.as_str() {
                "random" => a.blocked = false,
                "blocked" => a.blocked = true,
                o => return Err(format!("unknown order '{o}'\n{USAGE}").into()),
            },
            "--variants" => a.variants = true,
            "--ablation" => a.ablation = true,
            "--no-stream" => a.stream = false,
            "--no-syscalls" => a.syscalls = false,
            "-h" | "--help" => c.help(),
            o => return Err(c.unknown(o)),
        }
    }
    a.dir = c.required(dir, "--dir")?;
    if a.rounds == Some(0) {
        return Err("--rounds must be at least 1".into());
    }
    Ok(a)
}

/// Rounds (counted) and warm-up rounds at a size.
fn rounds_for(size: usize, a: &Args) -> (usize, usize) {
    let warm = if size >= 16 * MIB { 2 } else { 5 };
    let n = match (a.rounds, a.quick) {
        (Some(n), _) => n,
        (None, true) if size >= 16 * MIB => 5,
        (None, true) if size >= MIB => 30,
        (None, true) => 50,
        (None, false) if size >= 16 * MIB => 25,
        (None, false) if size >= MIB => 300,
        (None, false) => 1000,
    };
    (n, warm)
}

// ---------------------------------------------------------------------------------------------
// The contenders.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `untorn::write`, default options.
    Untorn,
    /// untorn with chosen options (only with `--variants`).
    UntornWith(TempFile, Durability),
    /// The bare protocol, by hand.
    Floor,
    /// The atomic-write-file crate.
    Awf,
    /// The floor plus some of untorn's extra steps, by hand, timed step by step
    /// (`--ablation`).
    Manual(Steps),
}

/// Which of untorn's extra steps a hand-written protocol adds to the floor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Steps {
    /// `newfstatat` of the target and `fstat` of the directory before, `fstat` of the temp
    /// after writing (as untorn does), or the same with `statx` asking for no timestamps.
    stat: Stat,
    /// Create the temp 0600, `fchmod` it to the final 0644 before the fsync.
    fchmod: bool,
    /// `O_TMPFILE`, then `linkat(AT_EMPTY_PATH)` to a temp name after the fsync.
    tmpfile: bool,
    /// `renameat2(RENAME_EXCHANGE)`, then `unlinkat` of the old content after the dir fsync.
    exchange: bool,
    /// What else untorn's trace shows: a `newfstatat` of `NAME.lock` (absent), a new random
    /// temp name each write, the directory closed before the file.
    exact: bool,
}

/// How the hand-written protocol looks at the target, the directory and the temp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Stat {
    /// Not at all (the floor).
    #[default]
    No,
    /// `newfstatat` / `fstat`: they return the timestamps, which (since Linux 6.13's multigrain
    /// timestamps) flags the inode's ctime as queried, so that its next change takes a
    /// fine-grained timestamp.
    Fstat,
    /// `statx` with a mask of type, mode, owner, inode and links only: no timestamps queried.
    StatxNoTimes,
}

/// `statx` of `path` under `dir` (or of `dir` itself for an empty path), without timestamps.
fn statx_no_times(dir: impl std::os::fd::AsFd, path: &OsStr) -> rustix::io::Result<()> {
    let mask = rfs::StatxFlags::TYPE
        | rfs::StatxFlags::MODE
        | rfs::StatxFlags::UID
        | rfs::StatxFlags::GID
        | rfs::StatxFlags::INO
        | rfs::StatxFlags::NLINK;
    let flags = if path.is_empty() {
        rfs::AtFlags::EMPTY_PATH
    } else {
        rfs::AtFlags::SYMLINK_NOFOLLOW
    };
    rfs::statx(dir, path, flags, mask).map(drop)
}

/// Durations of the steps of one write, in nanoseconds, for the hand-written contenders.
type Laps = Vec<(&'static str, f64)>;

struct Contender {
    label: String,
    kind: Kind,
    dir: PathBuf,
    target: PathBuf,
    name: OsString,
    /// The floor's temp name.
    temp: OsString,
    /// State of the random temp names (`Steps::exact`).
    seed: std::cell::Cell<u64>,
}

impl Contender {
    fn new(label: impl Into<String>, key: &str, kind: Kind, dir: &Path) -> Contender {
        let name = OsString::from(format!("untorn-bench-{key}.dat"));
        let temp = OsString::from(format!(".untorn-bench-{key}.dat.floor-tmp"));
        Contender {
            label: label.into(),
            kind,
            dir: dir.to_path_buf(),
            target: dir.join(&name),
            name,
            temp,
            seed: std::cell::Cell::new(0x2545_F491_4F6C_DD1D),
        }
    }

    fn write(&self, data: &[u8], laps: &mut Laps) -> Res<()> {
        match self.kind {
            Kind::Untorn => {
                untorn::write(&self.target, data)?;
            }
            Kind::UntornWith(t, d) => {
                OpenOptions::new()
                    .temp_file(t)
                    .durability(d)
                    .write(&self.target, data)?;
            }
            Kind::Floor => floor_write(&self.dir, &self.temp, &self.name, data)?,
            Kind::Manual(steps) if steps.exact => {
                let mut rng = Rng(self.seed.get());
                let x = rng.next_u64() as u32;
                self.seed.set(rng.0);
                let temp = format!(".{}.untorn-{x:08x}.tmp", self.name.to_string_lossy());
                manual_write(&self.dir, temp.as_ref(), &self.name, data, steps, laps)?
            }
            Kind::Manual(steps) => {
                manual_write(&self.dir, &self.temp, &self.name, data, steps, laps)?
            }
            Kind::Awf => {
                let mut f = AtomicWriteFile::open(&self.target)?;
                f.write_all(data)?;
                f.commit()?;
            }
        }
        Ok(())
    }

    fn cleanup(&self) {
        let _ = std::fs::remove_file(&self.target);
        let _ = std::fs::remove_file(self.dir.join(&self.temp));
    }
}

/// The directory the hand-written protocols work in: opened afresh by each write, as its first
/// system call.
fn open_dir(dir: &Path) -> rustix::io::Result<rustix::fd::OwnedFd> {
    rfs::openat(
        rfs::CWD,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `write`s until all of `data` is written (a `write` may be short, or interrupted).
fn write_all(fd: impl std::os::fd::AsFd, data: &[u8]) -> rustix::io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        match rustix::io::write(&fd, rest) {
            Ok(n) => rest = &rest[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The floor: the least a durable atomic replacement can do, with the raw system calls.
fn floor_write(dir: &Path, temp: &OsStr, name: &OsStr, data: &[u8]) -> rustix::io::Result<()> {
    let dirfd = open_dir(dir)?;
    let fd = rfs::openat(
        &dirfd,
        temp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    write_all(&fd, data)?;
    rfs::fsync(&fd)?;
    drop(fd);
    rfs::renameat(&dirfd, temp, &dirfd, name)?;
    rfs::fsync(&dirfd)
}

/// The floor with some of untorn's extra steps added, each step timed.
fn manual_write(
    dir: &Path,
    temp: &OsStr,
    name: &OsStr,
    data: &[u8],
    steps: Steps,
    laps: &mut Laps,
) -> rustix::io::Result<()> {
    let mut t = Instant::now();
    let mut lap = |step: &'static str| {
        let now = Instant::now();
        laps.push((step, (now - t).as_nanos() as f64));
        t = now;
    };
    let dirfd = open_dir(dir)?;
    lap("open dir");
    match steps.stat {
        Stat::No => {}
        Stat::Fstat => {
            if steps.exact {
                let mut lock = name.to_os_string();
                lock.push(".lock");
                let _ = rfs::statat(&dirfd, &lock, rfs::AtFlags::SYMLINK_NOFOLLOW);
            }
            rfs::statat(&dirfd, name, rfs::AtFlags::SYMLINK_NOFOLLOW)?;
            rfs::fstat(&dirfd)?;
            lap("stat target, fstat dir");
        }
        Stat::StatxNoTimes => {
            statx_no_times(&dirfd, name)?;
            statx_no_times(&dirfd, OsStr::new(""))?;
            lap("statx target, dir (no times)");
        }
    }
    let mode = Mode::from_raw_mode(if steps.fchmod { 0o600 } else { 0o644 });
    let fd = if steps.tmpfile {
        rfs::openat(
            &dirfd,
            ".",
            OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
            mode,
        )?
    } else {
        rfs::openat(
            &dirfd,
            temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            mode,
        )?
    };
    lap(if steps.tmpfile {
        "create (O_TMPFILE)"
    } else {
        "create (named)"
    });
    write_all(&fd, data)?;
    lap("write");
    match steps.stat {
        Stat::No => {}
        Stat::Fstat => drop(rfs::fstat(&fd)?),
        Stat::StatxNoTimes => statx_no_times(&fd, OsStr::new(""))?,
    }
    if steps.fchmod {
        rfs::fchmod(&fd, Mode::from_raw_mode(0o644))?;
    }
    if steps.stat != Stat::No || steps.fchmod {
        lap("(f)stat / fchmod temp");
    }
    rfs::fsync(&fd)?;
    lap("fsync temp");
    if steps.tmpfile {
        rfs::linkat(&fd, "", &dirfd, temp, rfs::AtFlags::EMPTY_PATH)?;
        lap("linkat");
    }
    if steps.exchange {
        rfs::renameat_with(&dirfd, temp, &dirfd, name, rfs::RenameFlags::EXCHANGE)?;
        lap("renameat2 (EXCHANGE)");
    } else {
        rfs::renameat(&dirfd, temp, &dirfd, name)?;
        lap("renameat");
    }
    rfs::fsync(&dirfd)?;
    lap("fsync dir");
    if steps.exchange {
        rfs::unlinkat(&dirfd, temp, rfs::AtFlags::empty())?;
        lap("unlink old");
    }
    if steps.exact {
        drop(dirfd);
        drop(fd);
    } else {
        drop(fd);
        drop(dirfd);
    }
    lap("close");
    Ok(())
}

fn contenders(dir: &Path, variants: bool, ablation: bool) -> Vec<Contender> {
    let mut v = vec![
        Contender::new("untorn::write", "untorn", Kind::Untorn, dir),
        Contender::new("floor (rustix)", "floor", Kind::Floor, dir),
        Contender::new("atomic-write-file", "awf", Kind::Awf, dir),
    ];
    if variants {
        v.push(Contender::new(
            "untorn, named temp",
            "untorn-named",
            Kind::UntornWith(TempFile::Named, Durability::Full),
            dir,
        ));
        v.push(Contender::new(
            "untorn, Durability::File",
            "untorn-file",
            Kind::UntornWith(TempFile::Auto, Durability::File),
            dir,
        ));
    }
    if ablation {
        // Every combination of the three extra steps, then all three plus the fstats: exactly
        // untorn's system calls; then the same with statx calls that do not ask for timestamps.
        for bits in 0..11u8 {
            let b = bits & 7 | if bits >= 8 { 7 } else { 0 };
            let steps = Steps {
                fchmod: b & 1 != 0,
                tmpfile: b & 2 != 0,
                exchange: b & 4 != 0,
                exact: bits == 10,
                stat: match bits {
                    8 | 10 => Stat::Fstat,
                    9 => Stat::StatxNoTimes,
                    _ => Stat::No,
                },
            };
            let label = match bits {
                0 => "floor, timed by step".to_string(),
                8 => "untorn's syscalls by hand".to_string(),
                9 => "untorn's syscalls by hand, statx without times".to_string(),
                10 => {
                    "untorn's syscalls by hand, exact (lock probe, random temp names)".to_string()
                }
                _ => {
                    let mut l = "floor".to_string();
                    for (on, what) in [
                        (steps.fchmod, " + fchmod"),
                        (steps.tmpfile, " + O_TMPFILE"),
                        (steps.exchange, " + EXCHANGE"),
                    ] {
                        if on {
                            l.push_str(what);
                        }
                    }
                    l
                }
            };
            let key = match bits {
                8 => "m-all".to_string(),
                9 => "m-all-statx".to_string(),
                10 => "m-exact".to_string(),
                _ => format!("m-{}{}{}", b & 1, b >> 1 & 1, b >> 2 & 1),
            };
            v.push(Contender::new(label, &key, Kind::Manual(steps), dir));
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// The latency benchmark.

struct SizeResult {
    size: usize,
    rounds: usize,
    /// Per contender, per round, nanoseconds.
    times: Vec<Vec<f64>>,
    /// Per contender, its steps (for the hand-written ones): name and per-round durations.
    steps: Vec<Vec<(&'static str, Vec<f64>)>>,
}

fn bench_size(cs: &[Contender], size: usize, a: &Args, rng: &mut Rng) -> Res<SizeResult> {
    let (rounds, warm) = rounds_for(size, a);
    let data = make_data(size, size as u64 ^ 0x5eed);
    for c in cs {
        c.cleanup();
        // An existing file of the same size, with the usual mode, to be replaced.
        std::fs::write(&c.target, &data)?;
    }
    let mut order: Vec<usize> = (0..cs.len()).collect();
    let mut laps = Laps::new();
    for _ in 0..warm {
        rng.shuffle(&mut order);
        for &i in &order {
            cs[i].write(&data, &mut laps)?;
        }
    }
    for c in cs {
        let back = std::fs::read(&c.target)?;
        if back != data {
            return Err(format!("{}: read back differs from what was written", c.label).into());
        }
    }
    let mut times = vec![Vec::with_capacity(rounds); cs.len()];
    let mut steps: Vec<Vec<(&'static str, Vec<f64>)>> = vec![Vec::new(); cs.len()];
    let mut timed = |i: usize| -> Res<()> {
        laps.clear();
        let t = Instant::now();
        cs[i].write(&data, &mut laps)?;
        times[i].push(t.elapsed().as_nanos() as f64);
        for (k, &(name, ns)) in laps.iter().enumerate() {
            match steps[i].get_mut(k) {
                Some(s) => s.1.push(ns),
                None => steps[i].push((name, vec![ns])),
            }
        }
        Ok(())
    };
    if a.blocked {
        for i in 0..cs.len() {
            for _ in 0..rounds {
                timed(i)?;
            }
        }
    } else {
        for _ in 0..rounds {
            rng.shuffle(&mut order);
            for &i in &order {
                timed(i)?;
            }
        }
    }
    for c in cs {
        if std::fs::metadata(&c.target)?.len() != size as u64 {
            return Err(format!("{}: the file has the wrong size after the run", c.label).into());
        }
        c.cleanup();
    }
    Ok(SizeResult {
        size,
        rounds,
        times,
        steps,
    })
}

fn print_latency(cs: &[Contender], results: &[SizeResult], rng: &mut Rng) {
    let (u, f, w) = (0, 1, 2);
    println!("## Median latency of one durable atomic replacement\n");
    print!("| size | rounds |");
    for c in &cs[..3] {
        print!(" {} |", c.label);
    }
    println!(" untorn/floor | awf/floor | untorn ≤ {GOAL:.2}× floor |");
    print!("|---|---:|");
    for _ in &cs[..3] {
        print!("---:|");
    }
    println!("---:|---:|---|");
    for r in results {
        let med: Vec<f64> = r.times[..3].iter().map(|t| median(t)).collect();
        let ru = med[u] / med[f];
        print!("| {} | {} |", size_label(r.size), r.rounds);
        for m in &med {
            print!(" {} |", fmt_ns(*m));
        }
        println!(
            " {:.3} | {:.3} | {} |",
            ru,
            med[w] / med[f],
            if ru <= GOAL { "PASS" } else { "FAIL" }
        );
    }

    println!("\n## Spread (is the ratio decided?)\n");
    println!(
        "| size | untorn/floor 95% CI | untorn/floor, median of per-round ratios | \
         awf/floor 95% CI | floor p10–p90 | untorn p10–p90 |"
    );
    println!("|---|---|---:|---|---|---|");
    for r in results {
        let nan = (f64::NAN, f64::NAN);
        let (lo, hi) = ratio_ci(&r.times[u], &r.times[f], rng, RESAMPLES).unwrap_or(nan);
        let (alo, ahi) = ratio_ci(&r.times[w], &r.times[f], rng, RESAMPLES).unwrap_or(nan);
        let paired: Vec<f64> = r.times[u]
            .iter()
            .zip(&r.times[f])
            .map(|(a, b)| a / b)
            .collect();
        let decided = if hi <= GOAL {
            " (below goal)"
        } else if lo > GOAL {
            " (above goal)"
        } else {
            " (straddles goal)"
        };
        println!(
            "| {} | {:.3}–{:.3}{} | {:.3} | {:.3}–{:.3} | {}–{} | {}–{} |",
            size_label(r.size),
            lo,
            hi,
            if lo.is_nan() { "" } else { decided },
            median(&paired),
            alo,
            ahi,
            fmt_ns(percentile(&r.times[f], 0.1)),
            fmt_ns(percentile(&r.times[f], 0.9)),
            fmt_ns(percentile(&r.times[u], 0.1)),
            fmt_ns(percentile(&r.times[u], 0.9)),
        );
    }
    if cs.len() > 3 {
        println!("\n## Other contenders: median (ratio to the floor's median)\n");
        print!("| size |");
        for c in &cs[3..] {
            print!(" {} |", c.label);
        }
        println!();
        print!("|---|");
        for _ in &cs[3..] {
            print!("---:|");
        }
        println!();
        for r in results {
            print!("| {} |", size_label(r.size));
            for t in &r.times[3..] {
                let m = median(t);
                print!(" {} ({:.3}) |", fmt_ns(m), m / median(&r.times[f]));
            }
            println!();
        }
    }
    print_steps(cs, results);
}

/// Per-step medians of the hand-written contenders (`--ablation`).
fn print_steps(cs: &[Contender], results: &[SizeResult]) {
    let manual: Vec<usize> = (0..cs.len())
        .filter(|&i| matches!(cs[i].kind, Kind::Manual(_)))
        .collect();
    if manual.is_empty() {
        return;
    }
    for r in results {
        println!(
            "\n## Median of each step, {} (hand-written contenders)\n",
            size_label(r.size)
        );
        print!("| step |");
        for &i in &manual {
            print!(" {} |", cs[i].label);
        }
        println!();
        print!("|---|");
        for _ in &manual {
            print!("---:|");
        }
        println!();
        let mut names: Vec<&'static str> = Vec::new();
        for &i in &manual {
            for (n, _) in &r.steps[i] {
                if !names.contains(n) {
                    names.push(n);
                }
            }
        }
        for n in names {
            print!("| {n} |");
            for &i in &manual {
                match r.steps[i].iter().find(|(m, _)| *m == n) {
                    Some((_, v)) => print!(" {} |", fmt_ns(median(v))),
                    None => print!(" |"),
                }
            }
            println!();
        }
        print!("| **sum of step medians** |");
        for &i in &manual {
            let sum: f64 = r.steps[i].iter().map(|(_, v)| median(v)).sum();
            print!(" {} |", fmt_ns(sum));
        }
        println!();
        print!("| **median of the total** |");
        for &i in &manual {
            print!(" {} |", fmt_ns(median(&r.times[i])));
        }
        println!();
    }
}

// ---------------------------------------------------------------------------------------------
// System calls per write, with strace.

/// For the hidden subcommands: the contender `which` names (`untorn`, `floor`, `awf`, and with
/// `all`, the `--variants` and `--ablation` ones: `m-all`, ...), its file in `dir` made afresh
/// with `size` (as `--sizes` takes it) bytes, and those bytes.
fn child_contender(which: &str, size: &str, dir: &Path, all: bool) -> Res<(Contender, Vec<u8>)> {
    let c = contenders(dir, all, all)
        .into_iter()
        .find(|c| c.name.as_bytes() == format!("untorn-bench-{which}.dat").as_bytes())
        .ok_or_else(|| format!("unknown contender '{which}'"))?;
    let data = make_data(parse_size(size)?, 1);
    c.cleanup();
    std::fs::write(&c.target, &data)?;
    Ok((c, data))
}

/// Hidden subcommand: `syscalls CONTENDER SIZE DIR`: two warm-up writes, then one write between
/// two marker `open`s, for strace.
fn syscalls_child(args: &[String]) -> Res<()> {
    let [which, size, dir] = args else {
        return Err("usage: untorn-bench syscalls untorn|floor|awf SIZE DIR".into());
    };
    let (c, data) = child_contender(which, size, Path::new(dir), false)?;
    let mut laps = Laps::new();
    c.write(&data, &mut laps)?;
    c.write(&data, &mut laps)?;
    let _ = rfs::open(MARK_BEGIN, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty());
    c.write(&data, &mut laps)?;
    let _ = rfs::open(MARK_END, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty());
    c.cleanup();
    Ok(())
}

/// Hidden subcommand: `repeat CONTENDER SIZE DIR N`: N writes by one contender, for
/// `perf` and `strace -c` (contenders: untorn, floor, awf, m-floor, m-all, ...).
fn repeat_child(args: &[String]) -> Res<()> {
    let [which, size, dir, n] = args else {
        return Err("usage: untorn-bench repeat CONTENDER SIZE DIR N".into());
    };
    let (c, data) = child_contender(which, size, Path::new(dir), true)?;
    let mut laps = Laps::new();
    let n: usize = n.parse()?;
    let t = Instant::now();
    for _ in 0..n {
        c.write(&data, &mut laps)?;
    }
    eprintln!(
        "{}: {} writes, mean {}",
        c.label,
        n,
        fmt_ns(t.elapsed().as_nanos() as f64 / n as f64)
    );
    c.cleanup();
    Ok(())
}

fn have_strace() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The system calls of one write by `which`, in order, from an strace of the child.
fn trace_one(exe: &Path, which: &str, size: usize, dir: &Path) -> Res<Vec<String>> {
    let out = dir.join(format!("untorn-bench-strace-{which}.txt"));
    let status = Command::new("strace")
        .args(["-qq", "-e", "signal=none", "-o"])
        .arg(&out)
        .arg(exe)
        .args(["syscalls", which, &size.to_string()])
        .arg(dir)
        .status()?;
    let text = std::fs::read_to_string(&out);
    let _ = std::fs::remove_file(&out);
    if !status.success() {
        return Err(format!("strace of '{which}' failed: {status}").into());
    }
    let mut inside = false;
    let mut calls = Vec::new();
    for line in text?.lines() {
        if line.contains(MARK_BEGIN) {
            inside = true;
        } else if line.contains(MARK_END) {
            break;
        } else if inside {
            if let Some(name) = line.split('(').next().filter(|n| {
                !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            }) {
                calls.push(name.to_string());
            }
        }
    }
    Ok(calls)
}

fn print_syscalls(exe: &Path, dir: &Path) -> Res<()> {
    println!("\n## System calls of one 1 KiB write (strace, after warm-up)\n");
    println!("| contender | calls | sequence |");
    println!("|---|---:|---|");
    for (label, which) in [
        ("untorn::write", "untorn"),
        ("floor (rustix)", "floor"),
        ("atomic-write-file", "awf"),
    ] {
        let calls = trace_one(exe, which, KIB, dir)?;
        println!("| {label} | {} | {} |", calls.len(), calls.join(", "));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Peak memory of a 1 GiB streaming write.

/// Reads a `kB` field (`VmHWM`, `VmRSS`) of a `/proc/<pid>/status` file, in KiB.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// Hidden subcommand: `stream-1g DIR CHUNK`: streams 1 GiB from a generator through an
/// `AtomicFile` (default options: full durability), commits, prints its own peak RSS, then
/// waits for its standard input to close so that the parent can read `/proc/<pid>/status`.
fn stream_child(args: &[String]) -> Res<()> {
    let [dir, chunk] = args else {
        return Err("usage: untorn-bench stream-1g DIR CHUNK".into());
    };
    const TOTAL: u64 = 1 << 30;
    let chunk = parse_size(chunk)?;
    let target = Path::new(dir).join("untorn-bench-stream-1g.dat");
    let _ = std::fs::remove_file(&target);
    let hwm_before = status_kib(&std::fs::read_to_string("/proc/self/status")?, "VmHWM");
    let t = Instant::now();
    let mut f = OpenOptions::new().open(&target)?;
    let mut buf = vec![0u8; chunk];
    let mut rng = Rng(0x1234_5678);
    let mut left = TOTAL;
    while left > 0 {
        let n = (left as usize).min(chunk);
        for w in buf[..n].chunks_mut(8) {
            let x = rng.next_u64().to_le_bytes();
            w.copy_from_slice(&x[..w.len()]);
        }
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.commit()?;
    let secs = t.elapsed().as_secs_f64();
    let len = std::fs::metadata(&target)?.len();
    std::fs::remove_file(&target)?;
    if len != TOTAL {
        return Err(format!("streamed file has {len} bytes, not {TOTAL}").into());
    }
    let hwm = status_kib(&std::fs::read_to_string("/proc/self/status")?, "VmHWM");
    println!(
        "bytes={len} secs={secs:.3} self_vmhwm_kib={} start_vmhwm_kib={}",
        hwm.unwrap_or(0),
        hwm_before.unwrap_or(0)
    );
    std::io::stdout().flush()?;
    // Wait for the parent to have read our status.
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    Ok(())
}

struct StreamResult {
    chunk: usize,
    secs: f64,
    parent_kib: u64,
    self_kib: u64,
    start_kib: u64,
}

fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

fn run_stream(exe: &Path, dir: &Path, chunk: usize) -> Res<StreamResult> {
    let mut child = Command::new(exe)
        .arg("stream-1g")
        .arg(dir)
        .arg(chunk.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    // The child is alive, blocked on its stdin: its peak RSS is in its status.
    let parent_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| status_kib(&s, "VmHWM"));
    drop(child.stdin.take());
    let status = child.wait()?;
    if !status.success() || line.is_empty() {
        return Err(format!("the streaming child failed ({status})").into());
    }
    let num = |k: &str| -> Res<f64> {
        Ok(field(&line, k)
            .ok_or_else(|| format!("child output lacks {k}: {line}"))?
            .parse()?)
    };
    Ok(StreamResult {
        chunk,
        secs: num("secs")?,
        parent_kib: parent_kib.ok_or("could not read the child's VmHWM")?,
        self_kib: num("self_vmhwm_kib")? as u64,
        start_kib: num("start_vmhwm_kib")? as u64,
    })
}

fn print_stream(results: &[StreamResult]) {
    println!(
        "\n## Peak memory streaming 1 GiB through AtomicFile (Durability::Full, child process)\n"
    );
    println!(
        "| chunk | time (write + commit) | peak RSS (VmHWM, read by parent) | \
         child's own VmHWM at end | VmHWM at child start | ≤ {RSS_BUDGET_MIB:.0} MiB |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    for r in results {
        let mib = r.parent_kib as f64 / 1024.0;
        println!(
            "| {} | {:.2} s ({:.0} MiB/s) | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} |",
            size_label(r.chunk),
            r.secs,
            1024.0 / r.secs,
            mib,
            r.self_kib as f64 / 1024.0,
            r.start_kib as f64 / 1024.0,
            if mib <= RSS_BUDGET_MIB {
                "PASS"
            } else {
                "FAIL"
            }
        );
    }
}

// ---------------------------------------------------------------------------------------------

/// The load average and the I/O pressure (share of time some task waited on I/O, last 60 s):
/// a busy neighbour shows here.
fn pressure() -> String {
    format!(
        "load average {}; I/O pressure (some, avg60) {}%",
        load_average().unwrap_or_default(),
        io_pressure("avg60").as_deref().unwrap_or("?")
    )
}

fn run(args: &[String]) -> Res<()> {
    let a = parse_args(args)?;
    std::fs::create_dir_all(&a.dir)?;
    let exe = std::env::current_exe()?;
    let cs = contenders(&a.dir, a.variants, a.ablation);

    println!("# untorn-bench\n");
    println!("- directory: `{}`", a.dir.display());
    println!("- file system: {}", fs_description(&a.dir));
    println!(
        "- mode: {}, order: {}",
        if a.quick { "quick" } else { "full" },
        if a.blocked {
            "blocked (all rounds of one contender, then the next)"
        } else {
            "interleaved, random order each round"
        }
    );
    println!("- machine at start: {}", pressure());
    println!("- kernel: {}", kernel());
    println!();

    // Memory first: nothing else has run in a child yet, and the page cache is calm.
    let mut streams = Vec::new();
    if a.stream {
        let chunks: &[usize] = if a.quick { &[MIB] } else { &[MIB, 8 * KIB] };
        for &chunk in chunks {
            eprintln!("streaming 1 GiB in {} chunks...", size_label(chunk));
            streams.push(run_stream(&exe, &a.dir, chunk)?);
        }
    }

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut results = Vec::new();
    for &size in &a.sizes {
        eprintln!("benchmarking {}...", size_label(size));
        results.push(bench_size(&cs, size, &a, &mut rng)?);
    }
    print_latency(&cs, &results, &mut rng);
    println!("\n- machine during the run: {}", pressure());

    if a.syscalls {
        if have_strace() {
            print_syscalls(&exe, &a.dir)?;
        } else {
            println!("\n(strace not installed: system calls not counted)");
        }
    }
    if !streams.is_empty() {
        print_stream(&streams);
    }
    Ok(())
}
