//! The machine and the file system, for the headers: numbers only mean something next to where
//! and under what load they were taken.

use rustix::fs as rfs;
use std::path::Path;

/// The name of a file system type (`statfs`'s `f_type`), for the ones these benchmarks meet;
/// `None` for others, which each benchmark prints as a number in its own way.
pub fn fs_name(magic: i64) -> Option<&'static str> {
    match magic {
        0xEF53 => Some("ext2/3/4"),
        0x5846_5342 => Some("xfs"),
        0x9123_683E => Some("btrfs"),
        0x0102_1994 => Some("tmpfs"),
        0x794C_7630 => Some("overlayfs"),
        _ => None,
    }
}

/// The type (`f_type`) of the file system holding `dir`.
// `f_type` is i64 on x86_64 but narrower on some other targets.
#[allow(clippy::unnecessary_cast)]
pub fn fs_magic(dir: &Path) -> rustix::io::Result<i64> {
    rfs::statfs(dir).map(|s| s.f_type as i64)
}

/// The file system of `dir` and its mount line (device, type, options such as `data=` or
/// `discard`, which change what a `fsync` costs): from the longest mount point that is a prefix
/// of the directory.
pub fn fs_description(dir: &Path) -> String {
    let kind = match fs_magic(dir) {
        Ok(m) => fs_name(m).map_or_else(|| format!("magic {m:#x}"), str::to_string),
        Err(e) => format!("statfs failed: {e}"),
    };
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

/// The three load averages (`1.02 0.80 0.41`), `None` if `/proc/loadavg` cannot be read.
pub fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// One field (`avg10`, `avg60`) of the `some` line of `/proc/pressure/io`: the share of time in
/// percent that some task waited on I/O. A busy neighbour on a shared disk shows here.
pub fn io_pressure(field: &str) -> Option<String> {
    let io = std::fs::read_to_string("/proc/pressure/io").ok()?;
    let some = io.lines().find(|l| l.starts_with("some"))?;
    some.split_whitespace()
        .find_map(|f| f.strip_prefix(field)?.strip_prefix('='))
        .map(str::to_string)
}

/// Load average and I/O pressure in one line (`?` for what cannot be read), printed before and
/// after a run: a busy neighbour shows here.
pub fn machine_noise() -> String {
    let avg = |f: &str| io_pressure(f).unwrap_or_else(|| "?".into());
    format!(
        "load average {}; I/O pressure (some) {}% / {}% (avg10 / avg60)",
        load_average().unwrap_or_else(|| "?".into()),
        avg("avg10"),
        avg("avg60")
    )
}

/// The line under an interleaved benchmark's title: where it ran (directory, file system and
/// mount, kernel, CPUs) and how (warm-up, interleaving, settling), so that its tables are never
/// read without them. `extra` is the benchmark's own setting, ending with `"; "` (or `""`);
/// `op` names one timed operation in the note on settling (`"operation"`, `"write"`).
pub fn interleaved_setup(dir: &Path, warmup: usize, extra: &str, settle: bool, op: &str) -> String {
    let settling = if settle {
        format!("untimed syncfs before each timed {op}")
    } else {
        format!("no settling between {op}s (--no-settle)")
    };
    format!(
        "dir `{}` ({}); Linux {}, {} CPUs; warm-up {warmup} rounds; {extra}contenders \
         interleaved (each round in a fresh random order); {settling}.",
        dir.display(),
        fs_description(dir),
        kernel(),
        cpus(),
    )
}

/// The running kernel's release (`?` if unknown): the file systems' costs change between
/// kernels (e.g. multigrain timestamps since 6.13).
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The CPUs this process may use (0 if unknown): how many contenders can run at once.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// What a ratio must reach.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// At most this (a cost against its floor).
    AtMost(f64),
    /// At least this (a speed-up, a rate against its floor).
    AtLeast(f64),
    /// No goal: printed for information.
    None,
}

impl Goal {
    fn met(self, v: f64) -> Option<bool> {
        match self {
            Goal::AtMost(g) => Some(v <= g),
            Goal::AtLeast(g) => Some(v >= g),
            Goal::None => None,
        }
    }

    fn label(self) -> String {
        match self {
            Goal::AtMost(g) => format!("≤ {g}"),
            Goal::AtLeast(g) => format!("≥ {g}"),
            Goal::None => "—".into(),
        }
    }
}

/// One row of a [`Repeats`] table: a ratio measured once per repeat, each beside its floor.
struct RepeatRow {
    name: String,
    goal: Goal,
    values: Vec<f64>,
    floors: Vec<String>,
}

/// The ratios of a benchmark run several times over (each repeat a whole measurement, its
/// ratios within that repeat), printed as one table: each repeat's ratio with the floor it was
/// measured against beside it, the range over the repeats, and the verdict (PASS only when every
/// repeat meets the goal). On a shared machine one run proves little; the range over repeats
/// says how far a ratio can be trusted.
#[derive(Default)]
pub struct Repeats {
    rows: Vec<RepeatRow>,
}

impl Repeats {
    /// An empty table.
    pub fn new() -> Repeats {
        Repeats::default()
    }

    /// Records one repeat's `value` of the row `name` (created at its first value, with `goal`),
    /// measured against `floor` (what the ratio divides by, as it should be printed: `770 µs`,
    /// `1850 inc/s`).
    pub fn add(&mut self, name: &str, goal: Goal, value: f64, floor: impl Into<String>) {
        let i = match self.rows.iter().position(|r| r.name == name) {
            Some(i) => i,
            None => {
                self.rows.push(RepeatRow {
                    name: name.to_string(),
                    goal,
                    values: Vec::new(),
                    floors: Vec::new(),
                });
                self.rows.len() - 1
            }
        };
        self.rows[i].values.push(value);
        self.rows[i].floors.push(floor.into());
    }

    /// Whether every row with a goal met it in every repeat (`None`: no row has a goal).
    pub fn all_met(&self) -> Option<bool> {
        let v: Vec<bool> = self
            .rows
            .iter()
            .flat_map(|r| r.values.iter().filter_map(|&v| r.goal.met(v)))
            .collect();
        (!v.is_empty()).then(|| v.iter().all(|&b| b))
    }

    /// Prints the table (markdown) under `title`, ratios with `digits` decimals.
    pub fn print(&self, title: &str, digits: usize) {
        let n = self.rows.iter().map(|r| r.values.len()).max().unwrap_or(0);
        println!("## {title}\n");
        let mut head = "| ratio |".to_string();
        let mut rule = "|---|".to_string();
        for k in 1..=n {
            head += &format!(" repeat {k} (floor) |");
            rule += "---|";
        }
        println!("{head} range over repeats | goal | verdict |");
        println!("{rule}---|---|---|");
        for r in &self.rows {
            let mut line = format!("| {} |", r.name);
            for k in 0..n {
                match (r.values.get(k), r.floors.get(k)) {
                    (Some(v), Some(f)) => line += &format!(" {v:.digits$} ({f}) |"),
                    _ => line += " — |",
                }
            }
            let lo = r.values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = r.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let verdict = match r.goal {
                Goal::None => "—",
                g if r.values.iter().all(|&v| g.met(v) == Some(true)) => "PASS",
                _ => "FAIL",
            };
            println!(
                "{line} {lo:.digits$}–{hi:.digits$} | {} | {verdict} |",
                r.goal.label()
            );
        }
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_judge_every_repeat() {
        let mut t = Repeats::new();
        t.add("a / floor", Goal::AtMost(1.05), 1.01, "1 ms");
        t.add("a / floor", Goal::AtMost(1.05), 1.07, "1 ms");
        assert_eq!(t.all_met(), Some(false));
        let mut t = Repeats::new();
        t.add("rate / one", Goal::AtLeast(3.0), 3.2, "100/s");
        t.add("info", Goal::None, 9.0, "x");
        assert_eq!(t.all_met(), Some(true));
        assert_eq!(Repeats::new().all_met(), None);
    }
}
