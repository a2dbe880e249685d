//! Contended-counter benchmark (issues 3 and 18): locked read-modify-write of one JSON counter
//! by P processes at once, untorn against the same protocol written by hand in Rust and in
//! Python.
//!
//! ```text
//! cargo run --release -p untorn-bench --bin counter -- --dir DIR [--quick]
//! sudo scripts/bench-counter.sh [--quick]    # the same, on a fresh journaled ext4 loop mount
//! ```
//!
//! # What is measured
//!
//! A file `DIR/counter-*.json` holding `{"count": 0}` is incremented by P processes at once
//! (P = 1, 2, 4, 8), each making 500 increments (`--quick`: 50). One increment is a complete,
//! durable, locked read-modify-write:
//!
//! - **untorn**: `untorn::update_json(path, Counter::default(), |c| c.count += 1)`: exclusive
//!   `flock(2)` of `PATH.lock`, read and parse, write a temp file, `fsync`, rename over `PATH`,
//!   `fsync` the directory, unlock. The processes are this binary re-executed with the hidden
//!   subcommand `child PATH N`.
//! - **rust by hand**: the floor: the same protocol written by hand with rustix and serde_json,
//!   nothing more: `open(PATH.lock, O_CREAT)`, `flock(LOCK_EX)`, read and parse, `open` of a
//!   named temp (`O_CREAT | O_EXCL`) beside it, `write`, `fsync`, `rename` over `PATH`, `fsync`
//!   of the directory, unlock and close (hidden subcommand `child-hand PATH N`). Lock, read,
//!   temp, write, fsync, rename, directory fsync, unlock: every call beyond these that untorn
//!   makes is what `untorn / rust by hand` prices.
//! - **python filelock**: Python 3 with the `filelock` package (`FileLock(PATH + ".lock")`,
//!   its defaults) around: `json.load`, +1, `tempfile.mkstemp` in the same directory, write,
//!   `os.fsync`, `os.replace`, `os.fsync` of the directory. The script is
//!   `crates/untorn-bench/py/counter.py` (embedded in this binary and written to `DIR` if the
//!   source tree is not there). Without `filelock` the column is skipped, with a message.
//! - **python fcntl**: the same script with a plain `fcntl.flock(LOCK_EX)` on the same sidecar
//!   file instead of `filelock` (`--no-fcntl` leaves it out).
//!
//! Every process first starts (interpreter, imports), prints `ready` and waits; when all P are
//! ready the parent releases them at once, and the **wall time runs from that start signal to
//! the last process's `done`**. Process start-up is therefore not counted (Python's costs
//! tens of milliseconds); a second table gives the rate from spawn to the last exit, start-up
//! included. Increments per second = P × N / wall time.
//!
//! Every run ends by reading the counter: it must be exactly P × N. A wrong count (a lost
//! update) or a failed child is a hard failure: the run is reported and the exit code is 1.
//!
//! The stacks are **interleaved**: every round runs every configuration (stack × P) once, the
//! process counts in a fresh random order and, for each, the stacks back to back in a fresh
//! random order, so that each ratio compares runs close in time (on these machines the rate of
//! one configuration swings several-fold from one minute to the next). There are 3 repeats
//! (`--repeats N`) of 5 rounds (`--rounds N`) of 100 increments per process, after one
//! uncounted warm-up run per stack; each configuration uses a fresh file.
//!
//! **The goal part.** Two runs back to back on these machines differ by about 10% (the shared
//! disk's fsync latency wanders: in 40 rounds of untorn against rust by hand at P = 1, where
//! both make the same two journal commits per increment, the per-round ratios spread from 0.74
//! to 1.27, interquartile 0.92–1.02), so a median over 5 rounds lands anywhere within ±0.1 of
//! the truth, too coarse to judge a goal of 0.95. Each repeat therefore ends
//! with `--goal-rounds N` (default 40; 8 with `--quick`; 0 leaves the part out) more rounds of
//! only the goal's pair, untorn and rust by hand at 8 processes, back to back in a fresh random
//! order. The goal row's ratio in each repeat is the median of the per-round ratios of all its
//! rounds at 8 processes (the main rounds' and these), printed with a 95% bootstrap interval.
//!
//! # How to read the results
//!
//! Rates are the **medians** over all rounds; `untorn / X` is the ratio of the medians (2.0 =
//! untorn makes twice as many increments per second). The goals checked are untorn ≥ 0.95 ×
//! rust by hand and ≥ 2 × python filelock at 8 processes, in **every** repeat, a repeat's
//! ratio being the median of its rounds' ratios (the last table gives each repeat's ratio
//! beside the other side's rate, and the range); a miss prints FAIL
//! but does not change the exit code (this is a report), only a wrong count does. The scaling
//! rows (the rate at P over the rate at 1) report how throughput holds up as processes are
//! added. Each increment is dominated by two journal commits
//! (the temp file's `fsync` and the directory's `fsync`), so on a journaled file system one
//! process cannot go much above ~2000 increments/s whatever the language; the stacks differ in
//! what they add to that and, under contention, in how fast the lock passes from one process
//! to the next (`filelock` polls every 50 ms while the lock is taken; `flock(2)` wakes a
//! waiter at once). Run it on a journaled ext4 (`scripts/bench-counter.sh`): the root fs of
//! the development VMs has no journal and synchronous discard.
//!
//! # Options
//!
//! `--rounds N` (per repeat, default 5), `--goal-rounds N` (per repeat, default 40),
//! `--repeats N` (default 3), `--iters N` (increments per process; default 100, 30 with
//! `--quick`), `--procs 1,2,4,8`, `--python PATH` (default `python3`), `--no-fcntl`,
//! `--no-python`, `--seed N` (of the shuffles).

use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use untorn_bench::cmdline::CmdLine;
use untorn_bench::crowd;
use untorn_bench::report::{cpus, fs_magic, fs_name, io_pressure, load_average, Goal, Repeats};
use untorn_bench::run::clock_seed;
use untorn_bench::stats::{median, ratio_ci, Rng};
use untorn_bench::Res;

/// The counter file's content.
#[derive(Serialize, Deserialize, Default, Debug)]
struct Counter {
    count: u64,
}

/// The Python side, also kept as a real file beside the crate.
const PY_SCRIPT: &str = include_str!("../../py/counter.py");
/// Where that file is in the source tree the binary was built from.
const PY_SCRIPT_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py/counter.py");

/// The goals at `GOAL_PROCS` processes: untorn at least this many times the Python filelock
/// stack, and this share of the Rust floor.
const GOAL_RATIO: f64 = 2.0;
const GOAL_HAND: f64 = 0.95;
const GOAL_PROCS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stack {
    Untorn,
    RustHand,
    PyFilelock,
    PyFcntl,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::Untorn => "untorn",
            Stack::RustHand => "rust by hand",
            Stack::PyFilelock => "python filelock",
            Stack::PyFcntl => "python fcntl.flock",
        }
    }

    fn file_tag(self) -> &'static str {
        match self {
            Stack::Untorn => "untorn",
            Stack::RustHand => "hand",
            Stack::PyFilelock => "pyfilelock",
            Stack::PyFcntl => "pyfcntl",
        }
    }
}

struct Opts {
    dir: PathBuf,
    rounds: usize,
    goal_rounds: usize,
    repeats: usize,
    iters: u64,
    procs: Vec<usize>,
    python: String,
    fcntl: bool,
    python_enabled: bool,
    seed: u64,
}

const USAGE: &str =
    "usage: counter --dir DIR [--quick] [--rounds N] [--goal-rounds N] [--repeats N] [--iters N] \
                     [--procs 1,2,4,8] [--python PATH] [--no-fcntl] [--no-python] [--seed N]";

fn parse_args(args: &[String]) -> Res<Opts> {
    let mut dir = None;
    let mut quick = false;
    let mut rounds = 5;
    let mut goal_rounds = None;
    let mut repeats = 3;
    let mut iters = None;
    let mut procs = vec![1, 2, 4, 8];
    let mut python = "python3".to_string();
    let mut fcntl = true;
    let mut python_enabled = true;
    let mut seed = clock_seed();
    let mut c = CmdLine::new(args, USAGE);
    while let Some(a) = c.next_arg() {
        match a {
            "--dir" => dir = Some(PathBuf::from(c.value(a)?)),
            "--quick" => quick = true,
            "--rounds" => rounds = c.parse(a)?,
            "--goal-rounds" => goal_rounds = Some(c.parse(a)?),
            "--repeats" => repeats = c.parse(a)?,
            "--iters" => iters = Some(c.parse(a)?),
            "--procs" => {
                procs = c
                    .value(a)?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--python" => python = c.value(a)?,
            "--no-fcntl" => fcntl = false,
            "--no-python" => python_enabled = false,
            "--seed" => seed = c.parse(a)?,
            "-h" | "--help" => c.help(),
            // `"--x"`, as this benchmark has always quoted it (the others print `'--x'`).
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    let dir = c.required(dir, "--dir")?;
    if !dir.is_dir() {
        return Err(format!("--dir {}: not a directory", dir.display()).into());
    }
    if rounds == 0 || repeats == 0 || procs.is_empty() || procs.contains(&0) {
        return Err("--rounds, --repeats and every --procs value must be at least 1".into());
    }
    procs.sort_unstable();
    procs.dedup();
    Ok(Opts {
        dir,
        rounds,
        goal_rounds: goal_rounds.unwrap_or(if quick { 8 } else { 40 }),
        repeats,
        iters: iters.unwrap_or(if quick { 30 } else { 100 }),
        procs,
        python,
        fcntl,
        python_enabled,
        seed,
    })
}

/// Hidden subcommand `child PATH N`: the untorn side of one process.
fn child(path: &Path, n: u64) -> Res<()> {
    crowd::wait_for_go()?;
    for _ in 0..n {
        untorn::update_json(path, Counter::default(), |c: &mut Counter| c.count += 1)?;
    }
    crowd::done()
}

/// Hidden subcommand `child-hand PATH N`: the floor, the protocol by hand (lock, read, temp,
/// write, fsync, rename, directory fsync, unlock) and nothing more.
fn child_hand(path: &Path, n: u64) -> Res<()> {
    let dir_path = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or("no file name")?.to_owned();
    let mut lock_name = name.clone();
    lock_name.push(".lock");
    let mut tmp = OsString::from(".");
    tmp.push(&name);
    tmp.push(format!(".{}.tmp", std::process::id()));
    crowd::wait_for_go()?;
    for _ in 0..n {
        let dir = rfs::open(
            &dir_path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let lock = rfs::openat(
            &dir,
            &lock_name,
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        rfs::flock(&lock, FlockOperation::LockExclusive)?;
        let old = std::fs::read(path)?;
        let mut c: Counter = serde_json::from_slice(&old)?;
        c.count += 1;
        let mut new = serde_json::to_vec_pretty(&c)?;
        new.push(b'\n');
        let t = rfs::openat(
            &dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        let mut done = 0;
        while done < new.len() {
            done += rustix::io::write(&t, &new[done..])?;
        }
        rfs::fsync(&t)?;
        drop(t);
        rfs::renameat(&dir, &tmp, &dir, &name)?;
        rfs::fsync(&dir)?;
        rfs::flock(&lock, FlockOperation::Unlock)?;
    }
    crowd::done()
}

struct Run {
    /// Start signal to the last `done`.
    secs: f64,
    /// Spawn of the first child to the exit of the last.
    secs_with_start: f64,
    count: u64,
    expected: u64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.expected as f64 / self.secs
    }
    fn rate_with_start(&self) -> f64 {
        self.expected as f64 / self.secs_with_start
    }
    fn exact(&self) -> bool {
        self.count == self.expected
    }
}

struct Env {
    exe: PathBuf,
    python: String,
    script: PathBuf,
}

impl Env {
    fn command(&self, stack: Stack, path: &Path, n: u64) -> Command {
        let mut c = match stack {
            Stack::Untorn | Stack::RustHand => {
                let mut c = Command::new(&self.exe);
                c.arg(if stack == Stack::Untorn {
                    "child"
                } else {
                    "child-hand"
                });
                c
            }
            Stack::PyFilelock | Stack::PyFcntl => {
                let mut c = Command::new(&self.python);
                c.arg(&self.script).arg(match stack {
                    Stack::PyFilelock => "filelock",
                    _ => "fcntl",
                });
                c
            }
        };
        c.arg(path).arg(n.to_string());
        c
    }
}

/// One configuration: P processes of `stack`, N increments each, on a fresh counter file.
fn run(env: &Env, stack: Stack, dir: &Path, tag: &str, p: usize, n: u64) -> Res<Run> {
    let path = dir.join(format!("counter-{}-{tag}.json", stack.file_tag()));
    let lock = untorn::lock_path_for(&path);
    let _ = std::fs::remove_file(&lock);
    untorn::write(&path, b"{\"count\": 0}\n")?;
    let what = format!("{} P={p}", stack.name());
    let commands = (0..p).map(|_| env.command(stack, &path, n)).collect();
    let t = crowd::run(commands, &what)?;
    let counter: Counter = untorn::read_json(&path)?;
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&lock);
    Ok(Run {
        secs: t.secs,
        secs_with_start: t.secs_with_start,
        count: counter.count,
        expected: p as u64 * n,
    })
}

/// The file system type of `dir`, for the header (no mount line: this one's header is short).
fn fs_type(dir: &Path) -> String {
    match fs_magic(dir) {
        Ok(t) => fs_name(t).map_or_else(|| format!("type 0x{t:x}"), str::to_string),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Whether `python` runs, and whether it can import filelock (its version if so).
fn probe_python(python: &str, script: &Path) -> (Option<String>, Result<String, String>) {
    let version = Command::new(python)
        .args(["-c", "import sys; print(sys.version.split()[0])"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if version.is_none() {
        return (None, Err(format!("{python} does not run")));
    }
    let fl = Command::new(python)
        .arg(script)
        .args(["check", "filelock"])
        .stderr(Stdio::null())
        .output();
    let fl = match fl {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        _ => Err("not importable".to_string()),
    };
    (version, fl)
}

/// Load average and I/O pressure of the machine: other tenants' work shows here, and makes
/// every `fsync` (so every increment) slower.
fn machine_noise() -> String {
    let io = match (io_pressure("avg10"), io_pressure("avg60")) {
        (Some(a10), Some(a60)) => format!("{a10}% / {a60}% (avg10 / avg60)"),
        _ => "?".into(),
    };
    format!(
        "load average {}; I/O pressure, some: {io}",
        load_average().unwrap_or_else(|| "?".into())
    )
}

fn fmt_rate(r: Option<f64>) -> String {
    r.map_or("skipped".into(), |r| format!("{r:.0}"))
}

fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a / b),
        _ => "—".into(),
    }
}

/// The stacks to run, and the notes on those skipped.
fn stacks(o: &Opts, script: &Path) -> (Vec<Stack>, Vec<String>) {
    let mut stacks = vec![Stack::Untorn, Stack::RustHand];
    let mut notes = Vec::new();
    if !o.python_enabled {
        notes.push("SKIPPED: the Python columns (--no-python)".into());
        return (stacks, notes);
    }
    let (version, filelock) = probe_python(&o.python, script);
    match (&version, &filelock) {
        (None, _) => notes.push(format!(
            "SKIPPED: the Python columns: `{}` does not run (install Python 3, or pass \
             --python PATH)",
            o.python
        )),
        (Some(_), Err(_)) => {
            let msg = format!(
                "SKIPPED: the python filelock column: the Python package 'filelock' is not \
                 importable by `{}`; install it with `pip install filelock` (or `{} -m pip \
                 install filelock`)",
                o.python, o.python
            );
            eprintln!("{msg}");
            notes.push(msg);
        }
        (Some(_), Ok(_)) => stacks.push(Stack::PyFilelock),
    }
    if version.is_some() && o.fcntl {
        stacks.push(Stack::PyFcntl);
    }
    if let (Some(v), Ok(fl)) = (&version, &filelock) {
        notes.push(format!("Python {v}, filelock {fl} (`{}`)", o.python));
    }
    (stacks, notes)
}

fn main_inner(args: &[String]) -> Res<bool> {
    let o = parse_args(args)?;
    let exe = std::env::current_exe()?;
    let script = if Path::new(PY_SCRIPT_PATH).is_file() {
        PathBuf::from(PY_SCRIPT_PATH)
    } else {
        let p = o.dir.join(".untorn-bench-counter.py");
        std::fs::write(&p, PY_SCRIPT)?;
        p
    };
    let (stacks, notes) = stacks(&o, &script);

    println!("# Contended JSON counter: locked read-modify-write, increments per second");
    println!();
    println!(
        "dir {} ({}), {} CPUs; {} increments per process, {} repeats of {} rounds, processes \
         {:?}; every configuration once per round, each process count's stacks back to back, \
         in a fresh random order (seed {}); then, per repeat, {} goal rounds of untorn and rust \
         by hand at {GOAL_PROCS} processes",
        o.dir.display(),
        fs_type(&o.dir),
        cpus(),
        o.iters,
        o.repeats,
        o.rounds,
        o.procs,
        o.seed,
        o.goal_rounds,
    );
    for n in &notes {
        println!("{n}");
    }
    println!("Machine at the start: {}", machine_noise());
    println!();

    let env = Env {
        exe,
        python: o.python.clone(),
        script,
    };
    let mut wrong = Vec::new();
    let mut check = |stack: Stack, p: usize, r: &Run, label: &str| {
        let ok = if r.exact() { "exact" } else { "WRONG" };
        println!(
            "  {label:<8} P={p} {:<19} {:>6} increments in {:>7.3} s = {:>6.0} inc/s \
             ({:>6.0} with start-up); count {} {ok}",
            stack.name(),
            r.expected,
            r.secs,
            r.rate(),
            r.rate_with_start(),
            r.count,
        );
        if !r.exact() {
            wrong.push(format!(
                "{} P={p} {label}: count {} instead of {}",
                stack.name(),
                r.count,
                r.expected
            ));
        }
    };

    // Warm-up: page cache, binaries, Python's imports; checked, not counted.
    println!("Runs (wall time from the start signal to the last process's end):");
    for &s in &stacks {
        let r = run(&env, s, &o.dir, "warmup", 1, o.iters.min(20))?;
        check(s, 1, &r, "warm-up");
    }

    // results[p index][stack index] = runs, one per round
    let mut results: Vec<Vec<Vec<Run>>> = o
        .procs
        .iter()
        .map(|_| stacks.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut rng = Rng(o.seed);
    let mut ps: Vec<usize> = (0..o.procs.len()).collect();
    let mut ss: Vec<usize> = (0..stacks.len()).collect();
    // goal_runs[repeat] = (untorn, rust by hand) runs at GOAL_PROCS, one pair per goal round
    let mut goal_runs: Vec<Vec<(Run, Run)>> = Vec::new();
    for k in 0..o.repeats {
        for r in 0..o.rounds {
            let round = k * o.rounds + r;
            // Each process count's stacks back to back: the ratios compare runs close in time.
            rng.shuffle(&mut ps);
            for &pi in &ps {
                rng.shuffle(&mut ss);
                for &si in &ss {
                    let (p, s) = (o.procs[pi], stacks[si]);
                    let r = run(&env, s, &o.dir, &format!("p{p}-r{round}"), p, o.iters)?;
                    check(s, p, &r, &format!("round {}", round + 1));
                    results[pi][si].push(r);
                }
            }
        }
        let mut pairs = Vec::new();
        // Only where the goal's row is printed (the process counts include it).
        let goal_rounds = if o.procs.contains(&GOAL_PROCS) {
            o.goal_rounds
        } else {
            0
        };
        for g in 0..goal_rounds {
            let p = GOAL_PROCS;
            let mut pair = [Stack::Untorn, Stack::RustHand];
            rng.shuffle(&mut pair);
            let mut got = Vec::new();
            for s in pair {
                let r = run(&env, s, &o.dir, &format!("goal{k}-{g}"), p, o.iters)?;
                check(s, p, &r, &format!("goal {}.{}", k + 1, g + 1));
                got.push((s, r));
            }
            let (a, b) = (got.remove(0), got.remove(0));
            pairs.push(if a.0 == Stack::Untorn {
                (a.1, b.1)
            } else {
                (b.1, a.1)
            });
        }
        goal_runs.push(pairs);
    }

    let idx = |s: Stack| stacks.iter().position(|&x| x == s);
    let med = |pi: usize, s: Stack, with_start: bool| -> Option<f64> {
        let v: Vec<f64> = results[pi][idx(s)?]
            .iter()
            .map(|r| {
                if with_start {
                    r.rate_with_start()
                } else {
                    r.rate()
                }
            })
            .collect();
        Some(median(&v))
    };
    let all_exact = |pi: usize| -> String {
        let mut runs: Vec<&Run> = results[pi].iter().flatten().collect();
        if o.procs[pi] == GOAL_PROCS {
            runs.extend(goal_runs.iter().flatten().flat_map(|(u, h)| [u, h]));
        }
        let expected = runs.first().map_or(0, |r| r.expected);
        if runs.iter().all(|r| r.exact()) {
            format!("yes: {n} of {n} runs = {expected}", n = runs.len())
        } else {
            let bad: Vec<String> = runs
                .iter()
                .filter(|r| !r.exact())
                .map(|r| r.count.to_string())
                .collect();
            format!("**NO**: {} instead of {expected}", bad.join(", "))
        }
    };

    for with_start in [false, true] {
        println!();
        if with_start {
            println!("Including process start-up (spawn to the last exit), medians, increments/s:");
        } else {
            println!("Medians of {} rounds, increments/s:", o.rounds * o.repeats);
        }
        println!();
        let mut head = "| processes |".to_string();
        let mut rule = "|---|".to_string();
        for s in &stacks {
            head += &format!(" {} inc/s |", s.name());
            rule += "---|";
        }
        for s in stacks.iter().skip(1) {
            head += &format!(" untorn / {} |", s.name());
            rule += "---|";
        }
        if !with_start {
            head += " final counts exact? |";
            rule += "---|";
        }
        println!("{head}");
        println!("{rule}");
        for (pi, &p) in o.procs.iter().enumerate() {
            let mut row = format!("| {p} |");
            for &s in &stacks {
                row += &format!(" {} |", fmt_rate(med(pi, s, with_start)));
            }
            let u = med(pi, Stack::Untorn, with_start);
            for &s in stacks.iter().skip(1) {
                row += &format!(" {} |", fmt_ratio(u, med(pi, s, with_start)));
            }
            if !with_start {
                row += &format!(" {} |", all_exact(pi));
            }
            println!("{row}");
        }
    }

    // Each repeat's ratios: the median over its rounds of each round's ratio, untorn against
    // the same round's run of the other stack (run right before or after it: they share the
    // machine's noise), and each stack's scaling within the round.
    let mut table = Repeats::new();
    let mut goal_lines = Vec::new();
    let one = o.procs.iter().position(|&p| p == 1);
    for (k, goal_k) in goal_runs.iter().enumerate() {
        let block = k * o.rounds..(k + 1) * o.rounds;
        let med_of = |f: &dyn Fn(usize) -> f64| median(&block.clone().map(f).collect::<Vec<_>>());
        for (pi, &p) in o.procs.iter().enumerate() {
            let ui = idx(Stack::Untorn).expect("untorn always runs");
            for (s, goal) in [
                (Stack::RustHand, GOAL_HAND),
                (Stack::PyFilelock, GOAL_RATIO),
            ] {
                let Some(si) = idx(s) else { continue };
                let g = if p == GOAL_PROCS {
                    Goal::AtLeast(goal)
                } else {
                    Goal::None
                };
                let mut ratio = med_of(&|r| results[pi][ui][r].rate() / results[pi][si][r].rate());
                let mut floor = med_of(&|r| results[pi][si][r].rate());
                if p == GOAL_PROCS && s == Stack::RustHand && !goal_k.is_empty() {
                    // The goal part's rounds join the main rounds' at this process count.
                    let main = block
                        .clone()
                        .map(|r| (&results[pi][ui][r], &results[pi][si][r]));
                    let all: Vec<(&Run, &Run)> = main
                        .chain(goal_runs[k].iter().map(|(u, h)| (u, h)))
                        .collect();
                    let ratios: Vec<f64> = all.iter().map(|(u, h)| u.rate() / h.rate()).collect();
                    ratio = median(&ratios);
                    floor = median(&all.iter().map(|(_, h)| h.rate()).collect::<Vec<_>>());
                    let ci = ratio_ci(&ratios, &vec![1.0; ratios.len()], &mut rng, 2000);
                    goal_lines.push(format!(
                        "  repeat {}: {} rounds at {p} processes, untorn / rust by hand: median \
                         {ratio:.3}{}; per-round ratios {:.2}–{:.2}",
                        k + 1,
                        ratios.len(),
                        ci.map_or(String::new(), |(lo, hi)| format!(
                            " (95% bootstrap interval {lo:.3}–{hi:.3})"
                        )),
                        ratios.iter().copied().fold(f64::INFINITY, f64::min),
                        ratios.iter().copied().fold(0.0, f64::max),
                    ));
                }
                table.add(
                    &format!("untorn / {} inc/s, {p} processes", s.name()),
                    g,
                    ratio,
                    format!("{floor:.0}/s"),
                );
            }
        }
        if let Some(one) = one {
            for s in [Stack::Untorn, Stack::RustHand] {
                let si = idx(s).expect("always runs");
                for (pi, &p) in o.procs.iter().enumerate().filter(|(_, &p)| p > 1) {
                    let ratio = med_of(&|r| results[pi][si][r].rate() / results[one][si][r].rate());
                    let base = med_of(&|r| results[one][si][r].rate());
                    table.add(
                        &format!("{} inc/s, {p} processes / 1", s.name()),
                        Goal::None,
                        ratio,
                        format!("{base:.0}/s"),
                    );
                }
            }
        }
    }
    if !goal_lines.is_empty() {
        println!();
        println!(
            "The goal's pair at {GOAL_PROCS} processes, each repeat's {} main and {} goal rounds:",
            o.rounds, o.goal_rounds
        );
        for l in &goal_lines {
            println!("{l}");
        }
    }
    println!();
    table.print(
        &format!(
            "Every repeat (the median of its {} rounds; at {GOAL_PROCS} processes, untorn / rust \
             by hand: of its {} rounds with the goal part's): ratio (the other side's rate), \
             range, goal ({} repeats)",
            o.rounds,
            o.rounds + o.goal_rounds,
            o.repeats
        ),
        2,
    );

    println!("Machine at the end: {}", machine_noise());
    if wrong.is_empty() {
        println!("Final counts: all exact.");
        Ok(true)
    } else {
        println!("Final counts: WRONG (lost or extra increments):");
        for w in &wrong {
            println!("  {w}");
        }
        Ok(false)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sub = args.first().map(String::as_str);
    if matches!(sub, Some("child" | "child-hand")) {
        let r = match (args.get(1), args.get(2).and_then(|n| n.parse().ok())) {
            (Some(path), Some(n)) if args.len() == 3 => {
                if sub == Some("child") {
                    child(Path::new(path), n)
                } else {
                    child_hand(Path::new(path), n)
                }
            }
            _ => Err("usage: counter child|child-hand PATH N".into()),
        };
        return match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("counter child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match main_inner(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("counter: {e}");
            ExitCode::FAILURE
        }
    }
}
