//! Locked increments: `untorn edit counter.json -- jq '.count += 1'` in a loop.

use crate::json::{describe, lock_is_empty, read_opt, untorn_in};
use crate::ops::{Acks, Ops};
use crate::workload::{leftover_temps, Checked, Workload};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

const FILE: &str = "counter.json";
const LOCK: &str = "counter.json.lock";
const SHELL_FILTER: [&str; 3] = [
    "sh",
    "-c",
    r#"n=$(tr -dc 0-9); printf '{"count": %d}\n' $((n + 1))"#,
];

/// What [`LockedIncrements`] counted over the cycles it checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncrementStats {
    /// Cycles checked.
    pub cycles: u64,
    /// Cycles where the counter was one ahead of the last acknowledged increment (the one in
    /// flight had reached the disk).
    pub ahead: u64,
    /// Temp files left behind, over all cycles.
    pub leftover_temps: u64,
}

impl fmt::Display for IncrementStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cycles with the unacknowledged increment on disk, {} leftover temps",
            self.ahead, self.leftover_temps
        )
    }
}

/// `untorn edit counter.json -- FILTER` in a loop, FILTER adding one to `{"count": N}`;
/// operation `n` increments the counter to `n`.
///
/// By default the filters alternate: `jq '.count += 1'` (the issue's example) for odd `n`, and
/// a shell one-liner ([`shell_filter`](LockedIncrements::shell_filter)) for even `n`: jq 1.6
/// takes about 90 ms to start on these machines, where the whole write takes a few, so with jq
/// alone most cuts would land while jq starts and nothing is being written.
///
/// Setup writes `{"count": 0}`. The check after the cut: `counter.json` exists, is not empty,
/// parses (`untorn check`), and holds a count with `last acked <= count <= last begun` (the
/// loop is sequential, so `last begun <= last acked + 1`: never lower than the last
/// acknowledged increment, never more than one ahead). The lock file, if it survived, is
/// empty; temps are counted; anything else in the directory is a violation.
#[derive(Debug)]
pub struct LockedIncrements {
    untorn: PathBuf,
    args: Vec<String>,
    filters: Vec<Vec<String>>,
    stats: Mutex<IncrementStats>,
}

impl LockedIncrements {
    /// The workload running the `untorn` binary at this path, with `jq '.count += 1'` and the
    /// shell filter alternating.
    pub fn new(untorn: impl Into<PathBuf>) -> Self {
        LockedIncrements {
            untorn: untorn.into(),
            args: Vec::new(),
            filters: vec![
                SHELL_FILTER.iter().map(|s| s.to_string()).collect(),
                vec!["jq".into(), ".count += 1".into()],
            ],
            stats: Mutex::new(IncrementStats::default()),
        }
    }

    /// Only this filter program and arguments (it reads the JSON on stdin and prints the
    /// incremented JSON).
    pub fn filter<I: IntoIterator<Item = S>, S: Into<String>>(mut self, filter: I) -> Self {
        let filter: Vec<String> = filter.into_iter().map(Into::into).collect();
        assert!(!filter.is_empty(), "a filter needs a program");
        self.filters = vec![filter];
        self
    }

    /// Only the filter that needs just `sh` and `tr`: reads the number, prints
    /// `{"count": N+1}`.
    pub fn shell_filter(self) -> Self {
        self.filter(SHELL_FILTER)
    }

    /// Extra arguments of every `untorn edit` (before the file), e.g. `["--durability",
    /// "none"]` to see the bed catch increments that are not durable.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// What the checks counted so far.
    pub fn stats(&self) -> IncrementStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The count of jq's (or the shell filter's) output: `{"count": N}` in any spacing.
fn parse_count(data: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(data).ok()?;
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    compact
        .strip_prefix("{\"count\":")?
        .strip_suffix('}')?
        .parse()
        .ok()
}

impl Workload for LockedIncrements {
    fn name(&self) -> String {
        let mut name = String::from("untorn edit");
        for a in &self.args {
            name.push(' ');
            name.push_str(a);
        }
        name.push_str(" --");
        for (i, f) in self.filters.iter().enumerate() {
            name.push_str(if i == 0 { " " } else { " | " });
            name.push_str(&f[0]);
        }
        name
    }

    fn setup(&self, dir: &Path) -> Result<(), String> {
        std::fs::write(dir.join(FILE), "{\"count\": 0}\n").map_err(|e| e.to_string())
    }

    fn run(&self, dir: &Path, ops: &Ops) -> Result<(), String> {
        let mut n = 0;
        while ops.running() {
            n += 1;
            let mut cmd = Command::new(&self.untorn);
            cmd.current_dir(dir)
                .arg("edit")
                .args(&self.args)
                .arg(FILE)
                .arg("--")
                .args(&self.filters[n as usize % self.filters.len()]);
            ops.begin(n);
            let done = ops
                .run(&mut cmd, None)
                .map_err(|e| format!("cannot run {}: {e}", self.untorn.display()))?;
            if !done.success() {
                return ops.failed(format_args!(
                    "untorn edit #{n} failed with the power on: {done}"
                ));
            }
            ops.ack(n);
        }
        Ok(())
    }

    fn check(&self, dir: &Path, acks: &Acks) -> Result<Checked, String> {
        let temps = leftover_temps(dir, &[FILE, LOCK])?;
        let data = read_opt(dir, FILE)?.ok_or("counter.json is gone (ENOENT)")?;
        if data.is_empty() {
            return Err("counter.json is empty (0 bytes)".into());
        }
        let parsed = untorn_in(&self.untorn, dir, &["check", FILE])?;
        if !parsed.status.success() {
            return Err(describe(
                &data,
                &format!(
                    "counter.json does not parse ({})",
                    String::from_utf8_lossy(&parsed.stderr).trim()
                ),
            ));
        }
        let count =
            parse_count(&data).ok_or_else(|| describe(&data, "counter.json is not a counter"))?;
        let lo = acks.last_acked().unwrap_or(0);
        let hi = acks.last_begun().unwrap_or(0);
        if count < lo {
            return Err(format!(
                "lost acknowledged increments: the count is {count}, but increment #{lo} had returned"
            ));
        }
        if count > hi || count > lo + 1 {
            return Err(format!(
                "the count is {count}, more than one ahead of the last acknowledged increment \
                 #{lo} (last begun #{hi})"
            ));
        }
        lock_is_empty(dir, LOCK)?;
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.cycles += 1;
        s.ahead += u64::from(count > lo);
        s.leftover_temps += temps.len() as u64;
        Ok(Checked {
            leftover_temps: temps,
            notes: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_in_any_spacing() {
        assert_eq!(parse_count(b"{\n  \"count\": 12\n}\n"), Some(12));
        assert_eq!(parse_count(b"{\"count\": 0}\n"), Some(0));
        assert_eq!(parse_count(b"{\"count\": 1"), None);
        assert_eq!(parse_count(b""), None);
        assert_eq!(parse_count(b"{\"count\": -1}"), None);
        assert_eq!(parse_count(b"{\"count\": 1, \"x\": 2}"), None);
    }

    #[test]
    fn check_bounds_by_acks() {
        let dir = std::env::temp_dir().join(format!(
            "untorn-testbed-unit-edit-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir(&dir).unwrap();
        // `untorn check` is not at hand in a unit test: `true` stands in for it.
        let w = LockedIncrements::new("true");
        let acks = |acked: Vec<u64>, begun: Vec<u64>| Acks {
            begun,
            acked,
            late: vec![],
        };
        std::fs::write(dir.join(FILE), "{\n  \"count\": 3\n}\n").unwrap();
        assert!(w
            .check(&dir, &acks(vec![1, 2, 3], vec![1, 2, 3, 4]))
            .is_ok());
        assert!(w.check(&dir, &acks(vec![1, 2], vec![1, 2, 3])).is_ok());
        assert_eq!(w.stats().ahead, 1);
        let lost = w.check(&dir, &acks(vec![1, 2, 3, 4], vec![1, 2, 3, 4]));
        assert!(lost.unwrap_err().contains("lost acknowledged"));
        let ahead = w.check(&dir, &acks(vec![1], vec![1, 2]));
        assert!(ahead.unwrap_err().contains("ahead"));
        std::fs::write(dir.join(LOCK), "x").unwrap();
        let lock = w.check(&dir, &acks(vec![1, 2, 3], vec![1, 2, 3]));
        assert!(lock.unwrap_err().contains("lock file"));
        std::fs::write(dir.join(LOCK), "").unwrap();
        std::fs::write(dir.join(FILE), "").unwrap();
        assert!(w
            .check(&dir, &Acks::default())
            .unwrap_err()
            .contains("empty"));
        std::fs::write(dir.join("stranger"), "").unwrap();
        assert!(w.check(&dir, &Acks::default()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
