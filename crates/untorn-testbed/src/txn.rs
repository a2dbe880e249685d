//! Transactions: `untorn txn put a.txt=SRC put b.txt=SRC put c.json=SRC` in a loop.

use crate::json::{describe, identify_json, json_doc, lock_is_empty, untorn_ok};
use crate::ops::{Acks, Ops};
use crate::workload::{leftover_temps, Checked, Workload};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The files every transaction writes, all at the same version.
pub const TXN_FILES: [&str; 3] = ["a.txt", "b.txt", "c.json"];
const LOCKS: [&str; 3] = ["a.txt.lock", "b.txt.lock", "c.json.lock"];
const MAX: usize = 64 << 10;

/// Version `n` of `file` (one of [`TXN_FILES`]): a self-checking JSON document
/// ([`json_doc`]) tagged with the file's name, up to 64 KiB.
pub fn txn_version(file: &str, n: u64) -> Vec<u8> {
    json_doc(file, n, MAX)
}

/// How [`UntornTxn`] changes the three files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// One `untorn txn` with three `put`s.
    Txn,
    /// Three `untorn write`s, one after the other: not atomic together (the bed must catch
    /// it).
    SeparateWrites,
}

/// What [`UntornTxn`] counted over the cycles it checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnStats {
    /// Cycles checked.
    pub cycles: u64,
    /// Journals `untorn recover` rolled forward (the commit point was reached).
    pub rolled_forward: u64,
    /// Transactions `untorn recover` rolled back (no valid journal: temps and marks removed).
    pub rolled_back: u64,
    /// Cycles whose files were of different versions before `untorn recover` (a committed
    /// transaction cut while applying its renames).
    pub mixed_before_recover: u64,
    /// Cycles with a transaction mark left in a lock file before `untorn recover`.
    pub marked_locks: u64,
    /// Cycles where the transaction in flight (begun, not acknowledged) was in the result.
    pub unacked_on_disk: u64,
    /// Temp files left behind (all removed by `untorn recover`), over all cycles.
    pub leftover_temps: u64,
    /// Lock files still holding only NUL bytes after `untorn recover` (a mark whose size
    /// reached the disk before its data), tolerated with
    /// [`allow_zero_filled_marks`](UntornTxn::allow_zero_filled_marks).
    pub zero_filled_marks: u64,
}

impl fmt::Display for TxnStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recover rolled {} forward and {} back, {} cycles mixed before recover, {} with \
             marked lock files, {} with the unacknowledged transaction in the result, {} \
             leftover temps (removed by recover), {} zero-filled marks left by recover",
            self.rolled_forward,
            self.rolled_back,
            self.mixed_before_recover,
            self.marked_locks,
            self.unacked_on_disk,
            self.leftover_temps,
            self.zero_filled_marks
        )
    }
}

/// `untorn txn put a.txt=SRC_A put b.txt=SRC_B put c.json=SRC_C` in a loop: operation `n`
/// writes version `n` of all three ([`txn_version`]); the sources are written beforehand to a
/// scratch directory outside the mount (so the cut never touches them).
///
/// Setup writes version 0 of all three. The check after the cut:
///
/// - before recovery: each file is whole (a transaction renames fsynced temps), and if they are
///   not all the same version, a transaction journal is there to finish the job (the journal
///   is durable before the first rename, and removed only after the renames are);
/// - `untorn recover DIR` succeeds (its report of rolled-forward and rolled-back transactions
///   and removed temps is counted), after which: all three files are the same version `k`, with
///   `last acked <= k <= last begun`; no journal `.untorn-txn-*.journal` and no temp is left;
///   every lock file is empty; a second `untorn recover` has nothing to do.
///
/// Anything else in the directory is a violation.
///
/// [`separate_writes`](UntornTxn::separate_writes) drives a deliberately broken variant (three
/// `untorn write`s per operation) to prove the check catches mixed versions.
#[derive(Debug)]
pub struct UntornTxn {
    untorn: PathBuf,
    mode: Mode,
    args: Vec<String>,
    allow_zero_filled_marks: bool,
    stats: Mutex<TxnStats>,
}

/// A scratch directory outside the mount, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl UntornTxn {
    /// The workload running the `untorn` binary at this path.
    pub fn new(untorn: impl Into<PathBuf>) -> Self {
        UntornTxn {
            untorn: untorn.into(),
            mode: Mode::Txn,
            args: Vec::new(),
            allow_zero_filled_marks: false,
            stats: Mutex::new(TxnStats::default()),
        }
    }

    /// The broken variant: each operation is three separate `untorn write`s (with `args`, e.g.
    /// `["--durability", "none"]`), so a cut between them leaves the files mixed.
    pub fn separate_writes<I: IntoIterator<Item = S>, S: Into<String>>(
        untorn: impl Into<PathBuf>,
        args: I,
    ) -> Self {
        UntornTxn {
            mode: Mode::SeparateWrites,
            args: args.into_iter().map(Into::into).collect(),
            ..UntornTxn::new(untorn)
        }
    }

    /// Counts (instead of reporting as a violation) a lock file that still holds only NUL bytes
    /// after `untorn recover`: a known untorn bug (a mark cut before its `syncfs` completed can
    /// come back zero-filled on ext4 `noauto_da_alloc`; `recover` leaves such a lock file
    /// alone, and every later lock of that file then fails with "an interrupted transaction
    /// keeps coming back"). Anything else in a lock file is still a violation.
    pub fn allow_zero_filled_marks(mut self) -> Self {
        self.allow_zero_filled_marks = true;
        self
    }

    /// What the checks counted so far.
    pub fn stats(&self) -> TxnStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The versions of the three files, or why one is not whole.
    fn versions(dir: &Path) -> Result<Vec<u64>, String> {
        TXN_FILES
            .iter()
            .map(|f| {
                let d = fs::read(dir.join(f)).map_err(|e| format!("cannot read {f}: {e}"))?;
                identify_json(f, &d, MAX).map_err(|e| format!("{f}: {e}"))
            })
            .collect()
    }

    /// The journals and temps in `dir`; `Err` if it holds anything unexpected.
    fn entries(dir: &Path) -> Result<(Vec<String>, Vec<PathBuf>), String> {
        let mut journals = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| format!("cannot list the directory: {e}"))? {
            let name = entry.map_err(|e| e.to_string())?.file_name();
            if untorn::txn::is_journal_name(&name) {
                journals.push(name.to_string_lossy().into_owned());
            }
        }
        journals.sort();
        let mut expected: Vec<&str> = TXN_FILES.iter().chain(&LOCKS).copied().collect();
        expected.extend(journals.iter().map(String::as_str));
        let temps = leftover_temps(dir, &expected)?;
        Ok((journals, temps))
    }
}

impl Workload for UntornTxn {
    fn name(&self) -> String {
        match self.mode {
            Mode::Txn => "untorn txn put ×3".into(),
            Mode::SeparateWrites => {
                let mut name = String::from("3 separate untorn writes (broken)");
                for a in &self.args {
                    name.push(' ');
                    name.push_str(a);
                }
                name
            }
        }
    }

    fn setup(&self, dir: &Path) -> Result<(), String> {
        for f in TXN_FILES {
            fs::write(dir.join(f), txn_version(f, 0)).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn run(&self, dir: &Path, ops: &Ops) -> Result<(), String> {
        let scratch = Scratch(std::env::temp_dir().join(format!(
            "untorn-testbed-txn-src-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        )));
        fs::create_dir(&scratch.0)
            .map_err(|e| format!("cannot create {}: {e}", scratch.0.display()))?;
        let mut n = 0;
        while ops.running() {
            n += 1;
            match self.mode {
                Mode::Txn => {
                    let mut cmd = Command::new(&self.untorn);
                    cmd.current_dir(dir).arg("txn");
                    for f in TXN_FILES {
                        let src = scratch.0.join(format!("{f}.src"));
                        fs::write(&src, txn_version(f, n))
                            .map_err(|e| format!("cannot write {}: {e}", src.display()))?;
                        cmd.arg("put").arg(format!("{f}={}", src.display()));
                    }
                    ops.begin(n);
                    let done = ops
                        .run(&mut cmd, None)
                        .map_err(|e| format!("cannot run {}: {e}", self.untorn.display()))?;
                    if !done.success() {
                        return ops.failed(format_args!(
                            "untorn txn #{n} failed with the power on: {done}"
                        ));
                    }
                }
                Mode::SeparateWrites => {
                    ops.begin(n);
                    for f in TXN_FILES {
                        let mut cmd = Command::new(&self.untorn);
                        cmd.current_dir(dir).arg("write").args(&self.args).arg(f);
                        let done = ops
                            .run(&mut cmd, Some(&txn_version(f, n)))
                            .map_err(|e| format!("cannot run {}: {e}", self.untorn.display()))?;
                        if !done.success() {
                            return ops.failed(format_args!(
                                "untorn write {f} #{n} failed with the power on: {done}"
                            ));
                        }
                    }
                }
            }
            ops.ack(n);
        }
        Ok(())
    }

    fn check(&self, dir: &Path, acks: &Acks) -> Result<Checked, String> {
        let (journals, temps) = Self::entries(dir)?;
        let before = Self::versions(dir).map_err(|e| format!("before recover: {e}"))?;
        let mixed = before.iter().any(|&v| v != before[0]);
        if mixed && journals.is_empty() {
            return Err(format!(
                "before recover, the files are versions {before:?} (a.txt, b.txt, c.json), and \
                 no journal is there to finish the transaction"
            ));
        }
        let mut marked = false;
        for l in LOCKS {
            marked |= fs::metadata(dir.join(l)).is_ok_and(|m| m.len() > 0);
        }

        let path = dir.to_string_lossy();
        let out = untorn_ok(&self.untorn, dir, &["recover", &path])?;
        let report = String::from_utf8_lossy(&out);
        let count = |prefix: &str| report.lines().filter(|l| l.starts_with(prefix)).count();
        let forward = count("finish the interrupted transaction");
        let back = count("undo the interrupted transaction");

        let (journals_after, temps_after) = Self::entries(dir)?;
        if !journals_after.is_empty() || !temps_after.is_empty() {
            return Err(format!(
                "after recover, journals {journals_after:?} and temps {temps_after:?} remain \
                 (recover said: {report:?})"
            ));
        }
        let mut zero_filled = 0;
        for l in LOCKS {
            let zeros =
                fs::read(dir.join(l)).is_ok_and(|d| !d.is_empty() && d.iter().all(|&b| b == 0));
            if zeros && self.allow_zero_filled_marks {
                zero_filled += 1;
                continue;
            }
            lock_is_empty(dir, l).map_err(|e| {
                format!(
                    "after recover: {e} (`untorn lock` on it now fails: \"an interrupted \
                     transaction keeps coming back\")"
                )
            })?;
        }
        let after = Self::versions(dir).map_err(|e| format!("after recover: {e}"))?;
        let k = after[0];
        if after.iter().any(|&v| v != k) {
            return Err(format!(
                "after recover, the files are versions {after:?} (a.txt, b.txt, c.json): not all \
                 or nothing (before recover: {before:?}, journals {journals:?}, recover said \
                 {report:?})"
            ));
        }
        let lo = acks.last_acked().unwrap_or(0);
        let hi = acks.last_begun().unwrap_or(0);
        if k < lo {
            return Err(format!(
                "lost acknowledged transactions: the files are version {k}, but #{lo} had \
                 returned (before recover: {before:?})"
            ));
        }
        if k > hi {
            return Err(format!(
                "the files are version {k}, which was never written (last begun #{hi})"
            ));
        }
        let again = untorn_ok(&self.untorn, dir, &["recover", &path])?;
        if again != b"nothing to do\n" {
            return Err(describe(&again, "a second `untorn recover` still had work"));
        }

        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.cycles += 1;
        s.rolled_forward += forward as u64;
        s.rolled_back += back as u64;
        s.mixed_before_recover += u64::from(mixed);
        s.marked_locks += u64::from(marked);
        s.unacked_on_disk += u64::from(k > lo);
        s.leftover_temps += temps.len() as u64;
        s.zero_filled_marks += zero_filled;
        let mut notes = Vec::new();
        if zero_filled > 0 {
            notes.push(format!(
                "KNOWN BUG: {zero_filled} lock file(s) left zero-filled by `untorn recover`"
            ));
        }
        Ok(Checked {
            leftover_temps: temps,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_files_without_a_journal_are_caught() {
        let dir = std::env::temp_dir().join(format!(
            "untorn-testbed-unit-txn-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        fs::create_dir(&dir).unwrap();
        let w = UntornTxn::new("/nonexistent/untorn");
        for (f, v) in TXN_FILES.iter().zip([2, 2, 1]) {
            fs::write(dir.join(f), txn_version(f, v)).unwrap();
        }
        let e = w.check(&dir, &Acks::default()).unwrap_err();
        assert!(e.contains("no journal"), "{e}");
        fs::write(dir.join("c.json"), b"{\"tag\":\"c.json\",\"v\":2").unwrap();
        let e = w.check(&dir, &Acks::default()).unwrap_err();
        assert!(e.contains("c.json: torn version 2"), "{e}");
        fs::write(dir.join("stray"), "").unwrap();
        let e = w.check(&dir, &Acks::default()).unwrap_err();
        assert!(e.contains("unexpected entry"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
