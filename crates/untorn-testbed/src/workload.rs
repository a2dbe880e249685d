//! The interface a power-cut workload implements.

use crate::ops::{Acks, Ops};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

/// A sequence of operations that must survive a power cut, and the check of what survived.
///
/// The driver ([`run`](crate::run)) calls, per cycle, on a fresh empty directory `dir` of the
/// file system under test: [`setup`](Workload::setup), a sync of the whole file system,
/// [`run`](Workload::run) on another thread until the power is cut, a remount (journal
/// recovery), then [`check`](Workload::check) with the [`Acks`] that `run` recorded.
///
/// # Example: a workload driven by a shell loop
///
/// A later issue adds its operations like this (here: `untorn write` of a counter, with the
/// loop in a child process that prints `BEGIN n` / `ACK n`; a Rust loop calling
/// [`Ops::run`] per operation works the same way, see [`UntornWrite`](crate::UntornWrite)).
///
/// ```no_run
/// use std::path::{Path, PathBuf};
/// use std::process::Command;
/// use untorn_testbed::{leftover_temps, Acks, Checked, FsConfig, Ops, Options, Workload};
///
/// struct Counter {
///     untorn: PathBuf,
/// }
///
/// impl Workload for Counter {
///     fn name(&self) -> String {
///         "counter".into()
///     }
///     fn setup(&self, dir: &Path) -> Result<(), String> {
///         std::fs::write(dir.join("n"), "0").map_err(|e| e.to_string())
///     }
///     fn run(&self, dir: &Path, ops: &Ops) -> Result<(), String> {
///         let script = r#"n=0; while :; do n=$((n+1)); echo BEGIN $n
///                         "$0" write n "$n" || exit 1; echo ACK $n; done"#;
///         let mut cmd = Command::new("sh");
///         cmd.current_dir(dir).args(["-c", script]).arg(&self.untorn);
///         let done = ops.run_child(&mut cmd).map_err(|e| e.to_string())?;
///         ops.failed(format_args!("the loop stopped with the power on: {done}"))
///     }
///     fn check(&self, dir: &Path, acks: &Acks) -> Result<Checked, String> {
///         let temps = leftover_temps(dir, &["n"])?;
///         let text = std::fs::read_to_string(dir.join("n")).map_err(|e| e.to_string())?;
///         let k: u64 = text.parse().map_err(|_| format!("not a number: {text:?}"))?;
///         let (lo, hi) = (acks.last_acked().unwrap_or(0), acks.last_begun().unwrap_or(0));
///         if k < lo || k > hi {
///             return Err(format!("found {k}, expected {lo}..={hi}"));
///         }
///         Ok(Checked { leftover_temps: temps, ..Checked::default() })
///     }
/// }
///
/// // In crates/untorn-cli/tests: env!("CARGO_BIN_EXE_untorn").
/// let w = Counter { untorn: "target/debug/untorn".into() };
/// for fs in FsConfig::all() {
///     if untorn_testbed::should_run("counter", &fs) {
///         let report = untorn_testbed::run(&fs, &w, &Options::from_env()).unwrap();
///         untorn_testbed::say(&report.summary());
///         assert!(report.violations.is_empty(), "{report}");
///     }
/// }
/// ```
pub trait Workload: Sync {
    /// A short name for reports.
    fn name(&self) -> String;

    /// Creates the initial state in `dir`, an empty directory on the mounted file system.
    /// Nothing needs `fsync`: the driver syncs the whole file system afterwards, so this state
    /// is durable before [`run`](Workload::run) starts. An `Err` aborts the whole run as a
    /// test-bed error.
    fn setup(&self, dir: &Path) -> Result<(), String>;

    /// Runs operations in a loop, `while ops.running()`, until the power is cut (or the
    /// workload is done). Record each operation with [`Ops::begin`] before it starts and
    /// [`Ops::ack`] once it returned success; run processes with [`Ops::run`] or
    /// [`Ops::run_child`] so they are killed after the cut. When an operation fails, return
    /// [`Ops::failed`]: after the cut that is `Ok`, before it an `Err`, which is recorded as a
    /// violation (the operation should not fail with the power on).
    ///
    /// Called on its own thread; after the cut every I/O on the mount fails with EIO.
    fn run(&self, dir: &Path, ops: &Ops) -> Result<(), String>;

    /// Checks `dir` after the cut and the journal recovery: every acknowledged operation must
    /// be there, and nothing may be torn. `Err` describes a violation; `Ok` may report what is
    /// allowed but worth counting (temp files left behind).
    fn check(&self, dir: &Path, acks: &Acks) -> Result<Checked, String>;
}

/// What a passing [`Workload::check`] found worth reporting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// untorn temp files left behind by the crash (allowed; a cleanup removes them).
    pub leftover_temps: Vec<PathBuf>,
    /// Anything else worth a line in the report.
    pub notes: Vec<String>,
}

/// The untorn temp files (`.NAME.untorn-XXXXXXXX.tmp`, recognised by
/// [`untorn::temp_file_target`]) in `dir` whose target is one of `files`; `Err` if `dir` holds
/// anything else than those temps and `files` (which need not all exist).
pub fn leftover_temps(dir: &Path, files: &[&str]) -> Result<Vec<PathBuf>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut temps = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name();
        let expected = |n: &OsStr| files.iter().any(|f| OsStr::new(f) == n);
        if expected(&name) {
            continue;
        }
        match untorn::temp_file_target(&name) {
            Some(target) if expected(&target) => temps.push(entry.path()),
            _ => {
                return Err(format!(
                    "unexpected entry {:?} in {} (expected only {files:?} and their temps)",
                    name,
                    dir.display()
                ))
            }
        }
    }
    temps.sort();
    Ok(temps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temps_are_listed_and_strangers_rejected() {
        let dir = std::env::temp_dir().join(format!(
            "untorn-testbed-unit-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("f"), "x").unwrap();
        assert_eq!(leftover_temps(&dir, &["f", "g"]), Ok(vec![]));
        let temp = dir.join(".f.untorn-0123abcd.tmp");
        fs::write(&temp, "x").unwrap();
        assert_eq!(leftover_temps(&dir, &["f"]), Ok(vec![temp.clone()]));
        fs::write(dir.join(".g.untorn-0123abcd.tmp"), "x").unwrap();
        let err = leftover_temps(&dir, &["f"]).unwrap_err();
        assert!(err.contains(".g.untorn-0123abcd.tmp"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
