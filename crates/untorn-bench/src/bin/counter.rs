//! Contended-counter benchmark (issue 3): locked read-modify-write of one JSON counter by P
//! processes at once, untorn against the same protocol written by hand in Python.
//!
//! ```text
//! cargo run --release -p untorn-bench --bin counter -- --dir DIR [--quick]
//! sudo scripts/bench-counter.sh [--quick]    # the same, on a fresh journaled ext4 loop mount
//! ```
//!
//! # What is measured
//!
//! A file `DIR/counter-*.json` holding `{"count": 0}` is incremented by P processes at once
//! (P = 1, 2, 8), each making 500 increments (`--quick`: 50). One increment is a complete,
//! durable, locked read-modify-write:
//!
//! - **untorn**: `untorn::update_json(path, Counter::default(), |c| c.count += 1)`: exclusive
//!   `flock(2)` of `PATH.lock`, read and parse, write a temp file, `fsync`, rename over `PATH`,
//!   `fsync` the directory, unlock. The processes are this binary re-executed with the hidden
//!   subcommand `child PATH N`.
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
//! The stacks are **interleaved**: every round runs each P once for every stack, in an order
//! rotated from one configuration to the next, so that the noise of a shared machine falls on
//! all alike. There are 3 rounds (`--rounds N`), after one uncounted warm-up run per stack,
//! and each configuration uses a fresh file.
//!
//! # How to read the results
//!
//! Rates are the **medians** over the rounds; `untorn/python` is the ratio of the medians
//! (2.0 = untorn makes twice as many increments per second). The goal checked is untorn ≥ 2 ×
//! python filelock at 8 processes; a miss prints FAIL but does not change the exit code (this
//! is a report), only a wrong count does. Each increment is dominated by two journal commits
//! (the temp file's `fsync` and the directory's `fsync`), so on a journaled file system one
//! process cannot go much above ~2000 increments/s whatever the language; the stacks differ in
//! what they add to that and, under contention, in how fast the lock passes from one process
//! to the next (`filelock` polls every 50 ms while the lock is taken; `flock(2)` wakes a
//! waiter at once). Run it on a journaled ext4 (`scripts/bench-counter.sh`): the root fs of
//! the development VMs has no journal and synchronous discard.
//!
//! # Options
//!
//! `--rounds N` (default 3), `--iters N` (increments per process; default 500, 50 with
//! `--quick`), `--procs 1,2,8`, `--python PATH` (default `python3`), `--no-fcntl`,
//! `--no-python`.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::Instant;
use untorn_bench::cmdline::CmdLine;
use untorn_bench::report::{cpus, fs_magic, fs_name, io_pressure, load_average};
use untorn_bench::stats::median;
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

/// The goal: untorn at least this many times the Python filelock stack at `GOAL_PROCS`.
const GOAL_RATIO: f64 = 2.0;
const GOAL_PROCS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stack {
    Untorn,
    PyFilelock,
    PyFcntl,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::Untorn => "untorn",
            Stack::PyFilelock => "python filelock",
            Stack::PyFcntl => "python fcntl.flock",
        }
    }

    fn file_tag(self) -> &'static str {
        match self {
            Stack::Untorn => "untorn",
            Stack::PyFilelock => "pyfilelock",
            Stack::PyFcntl => "pyfcntl",
        }
    }
}

struct Opts {
    dir: PathBuf,
    rounds: usize,
    iters: u64,
    procs: Vec<usize>,
    python: String,
    fcntl: bool,
    python_enabled: bool,
}

const USAGE: &str = "usage: counter --dir DIR [--quick] [--rounds N] [--iters N] [--procs 1,2,8] \
                     [--python PATH] [--no-fcntl] [--no-python]";

fn parse_args(args: &[String]) -> Res<Opts> {
    let mut dir = None;
    let mut quick = false;
    let mut rounds = 3;
    let mut iters = None;
    let mut procs = vec![1, 2, 8];
    let mut python = "python3".to_string();
    let mut fcntl = true;
    let mut python_enabled = true;
    let mut c = CmdLine::new(args, USAGE);
    while let Some(a) = c.next_arg() {
        match a {
            "--dir" => dir = Some(PathBuf::from(c.value(a)?)),
            "--quick" => quick = true,
            "--rounds" => rounds = c.parse(a)?,
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
            "-h" | "--help" => c.help(),
            // `"--x"`, as this benchmark has always quoted it (the others print `'--x'`).
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    let dir = c.required(dir, "--dir")?;
    if !dir.is_dir() {
        return Err(format!("--dir {}: not a directory", dir.display()).into());
    }
    if rounds == 0 || procs.is_empty() || procs.contains(&0) {
        return Err("--rounds and every --procs value must be at least 1".into());
    }
    Ok(Opts {
        dir,
        rounds,
        iters: iters.unwrap_or(if quick { 50 } else { 500 }),
        procs,
        python,
        fcntl,
        python_enabled,
    })
}

/// Hidden subcommand `child PATH N`: the untorn side of one process.
fn child(path: &Path, n: u64) -> Res<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    for _ in 0..n {
        untorn::update_json(path, Counter::default(), |c: &mut Counter| c.count += 1)?;
    }
    writeln!(out, "done")?;
    out.flush()?;
    Ok(())
}

/// Spawned children, killed and reaped if a run is abandoned.
struct Kids(Vec<(Child, Option<ChildStdin>, BufReader<ChildStdout>)>);

impl Drop for Kids {
    fn drop(&mut self) {
        for (c, _, _) in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Reads one line from a child and checks that it is `want`.
fn expect_line(r: &mut BufReader<ChildStdout>, want: &str, what: &str) -> Res<()> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.trim_end() != want {
        return Err(format!("{what}: expected {want:?} from a child, got {line:?}").into());
    }
    Ok(())
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
            Stack::Untorn => {
                let mut c = Command::new(&self.exe);
                c.arg("child");
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
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
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

    let spawned = Instant::now();
    let mut kids = Kids(Vec::with_capacity(p));
    for _ in 0..p {
        let mut c = env
            .command(stack, &path, n)
            .spawn()
            .map_err(|e| format!("{what}: cannot start a child: {e}"))?;
        let stdin = c.stdin.take();
        let stdout = BufReader::new(c.stdout.take().expect("piped"));
        kids.0.push((c, stdin, stdout));
    }
    for (_, _, out) in &mut kids.0 {
        expect_line(out, "ready", &what)?;
    }
    let start = Instant::now();
    for (_, stdin, _) in &mut kids.0 {
        let mut s = stdin.take().expect("piped");
        s.write_all(b"go\n")?;
    }
    for (_, _, out) in &mut kids.0 {
        expect_line(out, "done", &what)?;
    }
    let secs = start.elapsed().as_secs_f64();
    for (c, _, _) in &mut kids.0 {
        let st = c.wait()?;
        if !st.success() {
            return Err(format!("{what}: a child failed: {st}").into());
        }
    }
    let secs_with_start = spawned.elapsed().as_secs_f64();

    let counter: Counter = untorn::read_json(&path)?;
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&lock);
    Ok(Run {
        secs,
        secs_with_start,
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

    let mut stacks = vec![Stack::Untorn];
    let mut notes = Vec::new();
    if o.python_enabled {
        let (version, filelock) = probe_python(&o.python, &script);
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
    } else {
        notes.push("SKIPPED: the Python columns (--no-python)".into());
    }

    println!("# Contended JSON counter: locked read-modify-write, increments per second");
    println!();
    println!(
        "dir {} ({}), {} CPUs; {} increments per process, {} rounds (medians), processes {:?}",
        o.dir.display(),
        fs_type(&o.dir),
        cpus(),
        o.iters,
        o.rounds,
        o.procs
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

    // results[p index][stack index] = runs
    let mut results: Vec<Vec<Vec<Run>>> = o
        .procs
        .iter()
        .map(|_| stacks.iter().map(|_| Vec::new()).collect())
        .collect();
    for round in 0..o.rounds {
        for (pi, &p) in o.procs.iter().enumerate() {
            let k = stacks.len();
            for j in 0..k {
                let si = (j + round + pi) % k;
                let s = stacks[si];
                let r = run(&env, s, &o.dir, &format!("p{p}-r{round}"), p, o.iters)?;
                check(s, p, &r, &format!("round {}", round + 1));
                results[pi][si].push(r);
            }
        }
    }

    let med = |pi: usize, s: Stack, with_start: bool| -> Option<f64> {
        let si = stacks.iter().position(|&x| x == s)?;
        let v: Vec<f64> = results[pi][si]
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
    // Ratios of the rounds, each round's untorn run against the same round's `s` run: runs close
    // in time share the machine's noise. (median, min, max)
    let paired = |pi: usize, s: Stack| -> Option<(f64, f64, f64)> {
        let ui = stacks.iter().position(|&x| x == Stack::Untorn)?;
        let si = stacks.iter().position(|&x| x == s)?;
        let v: Vec<f64> = results[pi][ui]
            .iter()
            .zip(&results[pi][si])
            .map(|(u, o)| u.rate() / o.rate())
            .collect();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((median(&v), lo, hi))
    };
    let all_exact = |pi: usize| -> String {
        let runs: Vec<&Run> = results[pi].iter().flatten().collect();
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

    let has_fcntl = stacks.contains(&Stack::PyFcntl);
    for with_start in [false, true] {
        println!();
        if with_start {
            println!("Including process start-up (spawn to the last exit), medians, increments/s:");
        } else {
            println!("Medians of {} rounds, increments/s:", o.rounds);
        }
        println!();
        let mut head =
            "| processes | untorn inc/s | python filelock inc/s | ratio untorn/python".to_string();
        let mut rule = "|---|---|---|---".to_string();
        if !with_start {
            head += " | per-round ratios: median (min–max)";
            rule += "|---";
        }
        if has_fcntl {
            head += " | python fcntl.flock inc/s | ratio untorn/fcntl";
            rule += "|---|---";
        }
        if !with_start {
            head += " | final counts exact?";
            rule += "|---";
        }
        println!("{head} |");
        println!("{rule}|");
        for (pi, &p) in o.procs.iter().enumerate() {
            let u = med(pi, Stack::Untorn, with_start);
            let f = med(pi, Stack::PyFilelock, with_start);
            let mut row = format!(
                "| {p} | {} | {} | {}",
                fmt_rate(u),
                fmt_rate(f),
                fmt_ratio(u, f)
            );
            if !with_start {
                row += &match paired(pi, Stack::PyFilelock) {
                    Some((m, lo, hi)) => format!(" | {m:.2} ({lo:.2}–{hi:.2})"),
                    None => " | —".into(),
                };
            }
            if has_fcntl {
                let c = med(pi, Stack::PyFcntl, with_start);
                row += &format!(" | {} | {}", fmt_rate(c), fmt_ratio(u, c));
            }
            if !with_start {
                row += &format!(" | {}", all_exact(pi));
            }
            println!("{row} |");
        }
    }

    println!();
    println!("Machine at the end: {}", machine_noise());
    match o.procs.iter().position(|&p| p == GOAL_PROCS) {
        None => println!("Goal (untorn ≥ {GOAL_RATIO}× python filelock at {GOAL_PROCS} processes): not checked (P={GOAL_PROCS} not run)"),
        Some(pi) => match (med(pi, Stack::Untorn, false), med(pi, Stack::PyFilelock, false)) {
            (Some(u), Some(f)) => println!(
                "Goal untorn ≥ {GOAL_RATIO}× python filelock at {GOAL_PROCS} processes: {} ({u:.0} vs {f:.0} inc/s, {:.2}×)",
                if u >= GOAL_RATIO * f { "PASS" } else { "FAIL" },
                u / f
            ),
            _ => println!("Goal (untorn ≥ {GOAL_RATIO}× python filelock at {GOAL_PROCS} processes): not checked (python filelock skipped)"),
        },
    }
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
    if args.first().map(String::as_str) == Some("child") {
        let r = match (args.get(1), args.get(2).and_then(|n| n.parse().ok())) {
            (Some(path), Some(n)) if args.len() == 3 => child(Path::new(path), n),
            _ => Err("usage: counter child PATH N".into()),
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
