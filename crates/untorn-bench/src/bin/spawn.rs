//! One process per write: `untorn write FILE CONTENT` (1 KiB) started afresh for each write,
//! against the smallest program making the same system calls (`minwrite`), and `untorn
//! --version` against a Rust program that does nothing (`noop`): what the command's start-up
//! costs beside the write itself.
//!
//! ```text
//! cargo build --release -p untorn-cli -p untorn-bench
//! target/release/spawn --dir DIR [--quick]           # DIR on a journaled file system
//! sudo scripts/bench-spawn.sh [--quick]                # the same, on a fresh ext4 loop mount
//! ```
//!
//! # What is measured
//!
//! Each timed operation is one process, from `spawn` to its exit (`std::process::Command`,
//! output discarded), run in `DIR`:
//!
//! - **untorn write**: the release `untorn` binary replacing its own 1 KiB file (default
//!   options: full durability, `O_TMPFILE`, checksum);
//! - **minwrite**: `src/bin/minwrite.rs`, the same calls by hand with rustix (directory open,
//!   the three `statx`, `O_TMPFILE`, write, `statx`, `futimens`, `fsetxattr`, `fchmod`, `fsync`,
//!   `linkat`, `renameat2(RENAME_EXCHANGE)`, directory `fsync`, `unlinkat`) and nothing else:
//!   the floor of a process that writes a file this way;
//! - **untorn --version** and **noop** (`fn main() {}`): start-up alone.
//!
//! The contenders are interleaved, every round in a fresh random order, each timed process
//! preceded by an untimed `syncfs` of `DIR` (nobody pays another's journal work). `--also
//! LABEL=PATH` adds another `untorn` binary (an experiment: a build without something) as one
//! more `write` contender; `--floor-also LABEL=PATH` another `minwrite` (built another way:
//! `scripts/bench-spawn.sh` measures untorn and the floors as `scripts/install` builds them,
//! statically linked, and adds the dynamically linked ones beside them). The whole run is repeated (`--repeats`, default 3); the last table
//! gives each repeat's ratio beside its floor, the range, and PASS only if every repeat meets
//! the goal: `untorn write / minwrite` ≤ 1.10.
//!
//! # Options
//!
//! `--quick`, `--rounds N` (default 201), `--repeats N`, `--warmup N`, `--untorn PATH`
//! (default: `untorn` beside this binary), `--also LABEL=PATH` (repeatable), `--floor-also
//! LABEL=PATH` (repeatable), `--no-settle`,
//! `--seed N`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use untorn_bench::cmdline::CmdLine;
use untorn_bench::report::{interleaved_setup, machine_noise, Goal, Repeats};
use untorn_bench::run::{clock_seed, fresh_work_dir, interleave, phase};
use untorn_bench::stats::{median, percentile, ratio_ci, Rng};
use untorn_bench::units::{fmt_ns, fmt_ratio};
use untorn_bench::Res;

const GOAL: f64 = 1.10;
const SIZE: usize = 1024;
const RESAMPLES: usize = 2000;

const USAGE: &str = "usage: spawn --dir DIR [--quick] [--rounds N] [--repeats N] [--warmup N] \
                     [--untorn PATH] [--also LABEL=PATH]... [--floor-also LABEL=PATH]... [--no-settle] [--seed N]";

struct Opts {
    dir: PathBuf,
    rounds: usize,
    repeats: usize,
    warmup: usize,
    untorn: PathBuf,
    also: Vec<(String, PathBuf)>,
    floor_also: Vec<(String, PathBuf)>,
    settle: bool,
    seed: u64,
}

fn parse_args(args: &[String]) -> Res<Opts> {
    let here = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut o = Opts {
        dir: PathBuf::new(),
        rounds: 201,
        repeats: 3,
        warmup: 5,
        untorn: here.join("untorn"),
        also: Vec::new(),
        floor_also: Vec::new(),
        settle: true,
        seed: clock_seed(),
    };
    let mut dir = None;
    let mut c = CmdLine::new(args, USAGE);
    while let Some(a) = c.next_arg() {
        match a {
            "--dir" => dir = Some(PathBuf::from(c.value(a)?)),
            "--quick" => o.rounds = 31,
            "--rounds" => o.rounds = c.parse(a)?,
            "--repeats" => o.repeats = c.parse(a)?,
            "--warmup" => o.warmup = c.parse(a)?,
            "--untorn" => o.untorn = PathBuf::from(c.value(a)?),
            "--also" => o.also.push(label_path(a, &c.value(a)?)?),
            "--no-settle" => o.settle = false,
            "--seed" => o.seed = c.parse(a)?,
            "--floor-also" => o.floor_also.push(label_path(a, &c.value(a)?)?),
            "-h" | "--help" => c.help(),
            other => return Err(c.unknown(other)),
        }
    }
    o.dir = c.required(dir, "--dir")?;
    if o.rounds == 0 || o.repeats == 0 {
        return Err(format!("nothing to measure\n{USAGE}").into());
    }
    Ok(o)
}

/// The value of `--also` or `--floor-also` (`flag`): `LABEL=PATH`.
fn label_path(flag: &str, v: &str) -> Res<(String, PathBuf)> {
    let (label, path) = v
        .split_once('=')
        .ok_or_else(|| format!("{flag} LABEL=PATH, not {v:?}\n{USAGE}"))?;
    Ok((label.to_string(), PathBuf::from(path)))
}

/// One contender: a program and its arguments, run in the work directory.
struct Contender {
    label: String,
    program: PathBuf,
    args: Vec<String>,
}

impl Contender {
    fn run(&self, work: &Path) -> Res<()> {
        let st = Command::new(&self.program)
            .args(&self.args)
            .current_dir(work)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .map_err(|e| format!("{}: {e}", self.program.display()))?;
        if !st.success() {
            return Err(format!("{} failed: {st}", self.label).into());
        }
        Ok(())
    }
}

fn contenders(o: &Opts, content: &str) -> Res<Vec<Contender>> {
    let here = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let write = |label: &str, program: PathBuf, file: &str| Contender {
        label: label.to_string(),
        program,
        args: vec!["write".into(), file.into(), content.into()],
    };
    let mut cs = vec![
        write("untorn write", o.untorn.clone(), "untorn.json"),
        Contender {
            label: "minwrite".into(),
            program: here.join("minwrite"),
            args: vec!["minwrite.json".into(), content.into()],
        },
        Contender {
            label: "untorn --version".into(),
            program: o.untorn.clone(),
            args: vec!["--version".into()],
        },
        Contender {
            label: "noop".into(),
            program: here.join("noop"),
            args: Vec::new(),
        },
    ];
    for (i, (label, path)) in o.also.iter().enumerate() {
        cs.push(write(label, path.clone(), &format!("also{i}.json")));
    }
    for (i, (label, path)) in o.floor_also.iter().enumerate() {
        cs.push(Contender {
            label: label.clone(),
            program: path.clone(),
            args: vec![format!("floor{i}.json"), content.into()],
        });
    }
    for c in &cs {
        if !c.program.is_file() {
            return Err(format!(
                "{}: no program at {} (cargo build --release -p untorn-cli -p untorn-bench)",
                c.label,
                c.program.display()
            )
            .into());
        }
    }
    Ok(cs)
}

fn run(args: &[String]) -> Res<()> {
    let o = parse_args(args)?;
    let (work, root) = fresh_work_dir(&o.dir, "untorn-spawn-bench")?;
    let content: String = (0..SIZE).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let cs = contenders(&o, &content)?;
    for f in ["untorn.json", "minwrite.json"]
        .into_iter()
        .map(String::from)
        .chain((0..o.also.len()).map(|i| format!("also{i}.json")))
        .chain((0..o.floor_also.len()).map(|i| format!("floor{i}.json")))
    {
        std::fs::write(work.join(f), "{}\n")?;
    }
    let mut rng = Rng(o.seed);

    println!("# One process per write: `untorn write` against the same calls by hand\n");
    println!(
        "{}\n",
        interleaved_setup(
            &o.dir,
            o.warmup,
            &format!("1 KiB; {} repeats; seed {}; ", o.repeats, o.seed),
            o.settle,
            "process"
        )
    );
    println!("Before: {}\n", machine_noise());
    let _ = std::io::stdout().flush();

    let mut table = Repeats::new();
    for k in 1..=o.repeats {
        let times = phase(&format!("spawn: repeat {k}"), || {
            interleave(
                cs.len(),
                o.warmup,
                o.rounds,
                &root,
                o.settle,
                &mut rng,
                |i| cs[i].run(&work),
            )
        })?;
        println!(
            "## Repeat {k} of {}: median per process ({} rounds)\n",
            o.repeats, o.rounds
        );
        println!("| program | median | p10 – p90 |");
        println!("|---|---|---|");
        for (c, t) in cs.iter().zip(&times) {
            println!(
                "| {} | {} | {} – {} |",
                c.label,
                fmt_ns(median(t)),
                fmt_ns(percentile(t, 0.1)),
                fmt_ns(percentile(t, 0.9))
            );
        }
        let m: Vec<f64> = times.iter().map(|t| median(t)).collect();
        let ratio = |a: usize, b: usize, rng: &mut Rng| {
            fmt_ratio(
                m[a] / m[b],
                ratio_ci(&times[a], &times[b], rng, RESAMPLES),
                3,
            )
        };
        println!();
        println!(
            "untorn write / minwrite: {}; untorn --version / noop: {}; minwrite / noop: {}\n",
            ratio(0, 1, &mut rng),
            ratio(2, 3, &mut rng),
            ratio(1, 3, &mut rng)
        );
        let floor = format!("minwrite {}", fmt_ns(m[1]));
        table.add(
            "`untorn write` / minwrite",
            Goal::AtMost(GOAL),
            m[0] / m[1],
            &floor,
        );
        let first_floor = 4 + o.also.len();
        for (i, c) in cs.iter().enumerate().take(first_floor).skip(4) {
            table.add(
                &format!("{} / minwrite", c.label),
                Goal::None,
                m[i] / m[1],
                &floor,
            );
        }
        for (i, c) in cs.iter().enumerate().skip(first_floor) {
            let other = format!("{} {}", c.label, fmt_ns(m[i]));
            table.add(
                &format!("`untorn write` / {}", c.label),
                Goal::None,
                m[0] / m[i],
                &other,
            );
            for (j, a) in cs.iter().enumerate().take(first_floor).skip(4) {
                table.add(
                    &format!("{} / {}", a.label, c.label),
                    Goal::None,
                    m[j] / m[i],
                    &other,
                );
            }
        }
        let noop = format!("noop {}", fmt_ns(m[3]));
        table.add("`untorn --version` / noop", Goal::None, m[2] / m[3], &noop);
        table.add("minwrite / noop", Goal::None, m[1] / m[3], &noop);
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
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spawn: {e}");
            ExitCode::FAILURE
        }
    }
}
