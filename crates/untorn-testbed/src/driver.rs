//! The driver: power-cut cycles of one workload on one file system.

use crate::bed::Bed;
use crate::error::{Error, Result};
use crate::fs::FsConfig;
use crate::ops::Ops;
use crate::workload::Workload;
use std::fmt;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

/// Cycles per file system when `UNTORN_POWERCUT_CYCLES` is not set.
pub const DEFAULT_CYCLES: usize = 25;

/// How many cycles to run, and how to choose when to cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Power cuts per run (one fresh directory each).
    pub cycles: usize,
    /// Seed of the delays; printed in the report so a run can be repeated (the timing of the
    /// processes still varies).
    pub seed: u64,
    /// Ranges of the delay between starting the workload and cutting the power: each cycle
    /// picks one range at random, then a delay uniformly in it.
    pub delays: Vec<(Duration, Duration)>,
}

impl Default for Options {
    /// [`DEFAULT_CYCLES`] cycles, a random seed, and delays from 0 to 400 ms: a quarter under
    /// 3 ms (the cut lands in the first operation, often a large write), half between 3 and
    /// 120 ms (a few operations done, one in flight), a quarter from 100 to 400 ms (dozens
    /// done). An `untorn write` of up to 1 MiB takes 4–20 ms here (debug build, 2 cores).
    fn default() -> Self {
        let ms = Duration::from_millis;
        Options {
            cycles: DEFAULT_CYCLES,
            seed: fastrand::u64(..),
            delays: vec![
                (ms(0), ms(3)),
                (ms(3), ms(40)),
                (ms(20), ms(120)),
                (ms(100), ms(400)),
            ],
        }
    }
}

impl Options {
    /// The defaults, with the number of cycles from `UNTORN_POWERCUT_CYCLES` and the seed from
    /// `UNTORN_POWERCUT_SEED` when they are set.
    ///
    /// # Panics
    /// If either is set but is not a number: a typo must not silently run the default.
    pub fn from_env() -> Self {
        let mut o = Options::default();
        if let Some(c) = env_number("UNTORN_POWERCUT_CYCLES") {
            o.cycles = c as usize;
        }
        if let Some(s) = env_number("UNTORN_POWERCUT_SEED") {
            o.seed = s;
        }
        o
    }

    /// These options with `cycles` cycles.
    pub fn cycles(mut self, cycles: usize) -> Self {
        self.cycles = cycles;
        self
    }

    /// These options with every delay in `from..to`.
    pub fn delay(mut self, from: Duration, to: Duration) -> Self {
        self.delays = vec![(from, to)];
        self
    }
}

fn env_number(var: &str) -> Option<u64> {
    let v = std::env::var(var).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a number")),
    )
}

/// A recovered state the workload's check rejected, or an operation that failed with the
/// power on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which cycle (from 0).
    pub cycle: usize,
    /// The delay before the cut.
    pub delay: Duration,
    /// The highest operation acknowledged before the cut.
    pub last_acked: Option<u64>,
    /// The highest operation begun.
    pub last_begun: Option<u64>,
    /// What was wrong.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |n: Option<u64>| n.map_or("none".to_string(), |n| format!("#{n}"));
        write!(
            f,
            "cycle {} (cut after {:.1?}, last acked {}, last begun {}): {}",
            self.cycle,
            self.delay,
            show(self.last_acked),
            show(self.last_begun),
            self.what
        )
    }
}

/// What a [`run`] did and found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The file-system configuration's name.
    pub fs: String,
    /// The workload's name.
    pub workload: String,
    /// The seed of the delays.
    pub seed: u64,
    /// Power cuts done.
    pub cycles: usize,
    /// Operations acknowledged before the cut, over all cycles: each was checked to survive.
    pub acked: u64,
    /// Operations acknowledged after the cut began (not checked; see [`Acks`]).
    ///
    /// [`Acks`]: crate::Acks
    pub late_acks: u64,
    /// Cycles whose cut came while an operation was in flight (begun, not yet acknowledged).
    pub cuts_mid_op: usize,
    /// Cycles whose cut came before any operation was acknowledged.
    pub cuts_before_first_ack: usize,
    /// Temp files left behind, over all cycles (allowed).
    pub leftover_temps: usize,
    /// Notes of the checks, prefixed with their cycle.
    pub notes: Vec<String>,
    /// Everything that went wrong. Empty: the workload survived every cut.
    pub violations: Vec<Violation>,
    /// Wall time of the run, mkfs and mount included.
    pub elapsed: Duration,
}

impl Report {
    /// One line: `fs / workload: C cycles, A ops acked (+L late), M cut mid-op, ...,
    /// V violations, T leftover temps, time (seed S)`.
    pub fn summary(&self) -> String {
        format!(
            "{} / {}: {} cycles, {} ops acked (+{} late), {} cut mid-op, {} cut before the first \
             ack, {} violations, {} leftover temps, {:.1?} (UNTORN_POWERCUT_SEED={})",
            self.fs,
            self.workload,
            self.cycles,
            self.acked,
            self.late_acks,
            self.cuts_mid_op,
            self.cuts_before_first_ack,
            self.violations.len(),
            self.leftover_temps,
            self.elapsed,
            self.seed
        )
    }
}

impl fmt::Display for Report {
    /// The summary, then one line per violation and per note.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())?;
        for v in &self.violations {
            write!(f, "\n  violation: {v}")?;
        }
        for n in &self.notes {
            write!(f, "\n  note: {n}")?;
        }
        Ok(())
    }
}

/// Sets the state to stopped when dropped, so a panic in the driver does not leave the
/// workload thread looping (the scope would wait for it forever).
struct StopOnDrop<'a>(&'a Ops);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.start_cut();
        self.0.stop();
    }
}

/// Runs `opts.cycles` power-cut cycles of `workload` on a fresh bed of `config`; see the crate
/// documentation for what a cycle does.
///
/// `Err` means the test bed itself failed (mkfs, mount, the shutdown, setup, cleanup) and
/// nothing was proven; violations of the workload are in [`Report::violations`].
pub fn run(config: &FsConfig, workload: &dyn Workload, opts: &Options) -> Result<Report> {
    let start = Instant::now();
    assert!(!opts.delays.is_empty(), "Options::delays is empty");
    let mut bed = Bed::new(config)?;
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    let mut report = Report {
        fs: config.name.to_owned(),
        workload: workload.name(),
        seed: opts.seed,
        cycles: 0,
        acked: 0,
        cuts_mid_op: 0,
        cuts_before_first_ack: 0,
        late_acks: 0,
        leftover_temps: 0,
        notes: Vec::new(),
        violations: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for cycle in 0..opts.cycles {
        let dir = bed.path().join(format!("cycle-{cycle}"));
        fs::create_dir(&dir)
            .map_err(|e| Error::new(format!("cannot create {}: {e}", dir.display())))?;
        workload
            .setup(&dir)
            .map_err(|e| Error::new(format!("setup of {} failed: {e}", workload.name())))?;
        bed.sync()?;

        let (from, to) = opts.delays[rng.usize(..opts.delays.len())];
        let delay = from + (to.saturating_sub(from)).mul_f64(rng.f64());
        let ops = Ops::new();
        let switch = bed.power_switch()?;
        let (ran, cut) = thread::scope(|s| {
            let stop = StopOnDrop(&ops);
            let worker = s.spawn(|| workload.run(&dir, &ops));
            thread::sleep(delay);
            // From here on, acknowledgements are late and failures are the cut's doing.
            ops.start_cut();
            let cut = switch.cut();
            // Now kill what is still running.
            ops.stop();
            let ran = worker.join();
            drop(stop);
            (ran, cut)
        });
        let ran = ran.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        cut?;
        let acks = ops.acks();
        let violation = |what: String| crate::Violation {
            cycle,
            delay,
            last_acked: acks.last_acked(),
            last_begun: acks.last_begun(),
            what,
        };
        report.cycles += 1;
        report.acked += acks.acked.len() as u64;
        report.late_acks += acks.late.len() as u64;
        if acks.last_begun() > acks.last_acked() {
            report.cuts_mid_op += 1;
        }
        if acks.acked.is_empty() {
            report.cuts_before_first_ack += 1;
        }
        if let Err(e) = ran {
            report.violations.push(violation(e));
        }

        bed.remount()?;
        match workload.check(&dir, &acks) {
            Ok(checked) => {
                report.leftover_temps += checked.leftover_temps.len();
                let notes = checked.notes.iter();
                report
                    .notes
                    .extend(notes.map(|n| format!("cycle {cycle}: {n}")));
            }
            Err(e) => report.violations.push(violation(e)),
        }
        fs::remove_dir_all(&dir)
            .map_err(|e| Error::new(format!("cannot remove {}: {e}", dir.display())))?;
    }
    report.elapsed = start.elapsed();
    Ok(report)
}
