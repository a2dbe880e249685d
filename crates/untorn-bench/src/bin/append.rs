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
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use untorn_bench::cmdline::CmdLine;
use untorn_bench::report::{interleaved_setup, machine_noise};
use untorn_bench::run::{fresh_work_dir, interleave, phase};
use untorn_bench::stats::{median, percentile, ratio_ci, Rng};
use untorn_bench::units::{fmt_ns, fmt_ratio, size_label, MIB};
use untorn_bench::Res;

/// The appended line, newline included.
const LINE_LEN: usize = 200;
/// The goal: rewrite at least this many times slower than append at `GOAL_SIZE`.
const GOAL_SPEEDUP: f64 = 500.0;
const GOAL_SIZE: usize = 64 * MIB;
/// Flat: append@largest / append@smallest at most this.
const FLAT: f64 = 1.1;
/// Bootstrap resamples per confidence interval.
const RESAMPLES: usize = 2000;

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
    let mut c = CmdLine::new(args, USAGE);
    while let Some(a) = c.next_arg() {
        match a {
            "--dir" => dir = Some(PathBuf::from(c.value("--dir")?)),
            "--quick" => o.quick = true,
            "--rounds" => o.rounds = Some(c.parse("--rounds")?),
            "--flat-rounds" => o.flat_rounds = Some(c.parse("--flat-rounds")?),
            "--warmup" => o.warmup = c.parse("--warmup")?,
            "--sizes" => o.sizes = c.sizes("--sizes")?,
            "--no-settle" => o.settle = false,
            "-h" | "--help" => c.help(),
            other => return Err(c.unknown(other)),
        }
    }
    o.dir = c.required(dir, "--dir")?;
    if o.rounds == Some(0) || o.sizes.is_empty() {
        return Err(format!("nothing to measure\n{USAGE}").into());
    }
    o.sizes.sort_unstable();
    o.sizes.dedup();
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
            Kind::Append => {
                untorn::append(&self.path, line)?;
            }
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

/// Runs `ts` interleaved (see [`interleave`]), then checks and removes their files. Returns the
/// times per target, per round (nanoseconds).
fn run_targets(
    ts: &mut [Target],
    warmup: usize,
    rounds: usize,
    root: &OwnedFd,
    settle_on: bool,
) -> Res<Vec<Vec<f64>>> {
    let line = line();
    let times = interleave(ts.len(), warmup, rounds, root, settle_on, |i| {
        ts[i].run(&line)
    })?;
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
    let mut times = run_targets(&mut ts, o.warmup, rounds, root, o.settle)?;
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
    let mut times = run_targets(&mut ts, o.warmup, rounds, root, o.settle)?;
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
        let ci = ratio_ci(&r.rewrite, &r.append, &mut rng, RESAMPLES);
        let floor_ci = ratio_ci(&r.append, &r.floor, &mut rng, RESAMPLES);
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
        let ci = ratio_ci(&f.large_t, &f.small_t, &mut rng, RESAMPLES);
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
    let (work, root) = fresh_work_dir(&o.dir, "untorn-append-bench")?;

    println!("# Durable 200-byte append against rewriting the file\n");
    println!(
        "{}\n",
        interleaved_setup(&o.dir, o.warmup, "", o.settle, "operation")
    );
    println!("Before: {}\n", machine_noise());
    let _ = std::io::stdout().flush();

    let mut results = Vec::new();
    for &size in &o.sizes {
        let label = format!("append: part 1, {}", size_label(size));
        results.push(phase(&label, || bench_size(size, &o, &work, &root))?);
    }
    let (small, large) = (o.sizes[0], o.sizes[o.sizes.len() - 1]);
    let flat = if flat_rounds(&o) > 0 && small != large {
        let label = format!(
            "append: part 2, {} and {}",
            size_label(small),
            size_label(large)
        );
        Some(phase(&label, || {
            bench_flat(small, large, &o, &work, &root)
        })?)
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
