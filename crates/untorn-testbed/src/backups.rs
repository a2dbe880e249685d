//! Backups: `untorn write --backup=3 state.json` in a loop.

use crate::json::{identify_json, json_doc, read_opt, untorn_in, untorn_ok};
use crate::ops::{Acks, Ops};
use crate::workload::{leftover_temps, Checked, Workload};
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

const FILE: &str = "state.json";
/// Largest version, about: a third of the versions are up to this size.
const MAX: usize = 256 << 10;

/// The content of version `n` of `state.json` in [`UntornBackups`]: a self-checking JSON
/// document ([`json_doc`]) of up to 256 KiB.
pub fn backup_version(n: u64) -> Vec<u8> {
    json_doc(FILE, n, MAX)
}

/// What [`UntornBackups`] counted over the cycles it checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupStats {
    /// Cycles checked.
    pub cycles: u64,
    /// Backups checked whole, over all cycles.
    pub backups: u64,
    /// Cycles where the file was the write in flight (begun, not acknowledged).
    pub unacked_on_disk: u64,
    /// Cycles where that write's exchange survived but not the rename of the displaced
    /// version to its backup name: the displaced version was found in a leftover temp.
    pub displaced_in_temp: u64,
    /// Cycles with one backup more than the retention (an unsynced prune undone by the cut),
    /// whole.
    pub one_extra: u64,
    /// Cycles where that backup came back over blocks a newer file had been given (ext4
    /// `data=writeback`), and `untorn backups` listed it damaged (and `untorn restore` refused
    /// it).
    pub damaged_flagged: u64,
    /// Temp files left behind, over all cycles.
    pub leftover_temps: u64,
}

impl fmt::Display for BackupStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} backups checked whole, {} cycles with the unacknowledged write on disk ({} with \
             its displaced version still in the temp), {} with one backup beyond retention \
             (whole), {} with it back over reused blocks and flagged damaged, {} leftover temps",
            self.backups,
            self.unacked_on_disk,
            self.displaced_in_temp,
            self.one_extra,
            self.damaged_flagged,
            self.leftover_temps
        )
    }
}

/// `untorn write --backup=3 state.json` in a loop: operation `n` writes
/// [`backup_version(n)`](backup_version) (on stdin; `--temp auto` and `named` alternate).
///
/// Setup writes version 0 with untorn (no backup; so that every version carries the checksum
/// untorn records). The check after the cut, with `a` the last acknowledged write and `k` the
/// version of `state.json`:
///
/// - `state.json` is whole and `a <= k <= last begun`;
/// - every backup of it (`state.json.<time>.bak`) within retention is a whole version, and in
///   name (time) order they are consecutive versions ending below `k`: `untorn backups` lists
///   the same names, each `valid` and `whole` (it matches its checksum);
/// - **a backup beyond retention that the cut brought back** (the prune's unlink is not
///   fsynced, on purpose) is the oldest, there is at most one, and it is either a whole version
///   (consecutive with the others: counted as one extra) or, where the file system reused its
///   blocks before the unlink was durable (ext4 `data=writeback` frees data blocks at once),
///   **not a whole version and flagged**: `untorn backups` lists it `DAMAGED` / `damaged`, and
///   `untorn restore --from` it exits 12 and leaves `state.json` as it was. A backup that is
///   not whole anywhere else, or not flagged, is a violation;
/// - if `k == a >= 1`, the newest backup is version `k - 1`: write `a` returned, so the
///   displaced version's rename to its backup name was made durable by the same directory
///   fsync as the write. A write begun later cannot have left a backup of version `k`: its
///   rename of the displaced inode to a backup name comes after its exchange, so if that rename
///   survived, so did the exchange, and the file would be `k + 1`;
/// - if `k == a + 1` (the write in flight reached the disk, allowed), the newest backup is
///   `k - 1 = a`, **or** the exchange survived without the rename that followed it: then the
///   displaced version `a` is still under the temp name (a leftover temp holding version
///   `a`), and the newest backup is `a - 1`. Either way version `a`, acknowledged, can be
///   found; that write never returned, so it owed no backup;
/// - at most `keep + 1` backups (the prune of old backups is not fsynced: if the cut undoes
///   its unlink, there is one too many, never one too few; the journal orders the prune of
///   write `m` before the backup rename of write `m + 1`, so only one can come back), and at
///   least `keep` once that many versions were displaced.
///
/// Temps are counted; anything else in the directory is a violation.
#[derive(Debug)]
pub struct UntornBackups {
    untorn: PathBuf,
    keep: usize,
    args: Vec<String>,
    stats: Mutex<BackupStats>,
}

impl UntornBackups {
    /// The workload running the `untorn` binary at this path, keeping 3 backups.
    pub fn new(untorn: impl Into<PathBuf>) -> Self {
        UntornBackups {
            untorn: untorn.into(),
            keep: 3,
            args: Vec::new(),
            stats: Mutex::new(BackupStats::default()),
        }
    }

    /// Extra arguments of every `untorn write`, e.g. `["--durability", "none"]`.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// What the checks counted so far.
    pub fn stats(&self) -> BackupStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Workload for UntornBackups {
    fn name(&self) -> String {
        let mut name = format!("untorn write --backup={}", self.keep);
        for a in &self.args {
            name.push(' ');
            name.push_str(a);
        }
        name
    }

    fn setup(&self, dir: &Path) -> Result<(), String> {
        untorn::write(dir.join(FILE), backup_version(0))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn run(&self, dir: &Path, ops: &Ops) -> Result<(), String> {
        let mut n = 0;
        while ops.running() {
            n += 1;
            let data = backup_version(n);
            let temp = if n % 2 == 0 { "auto" } else { "named" };
            let mut cmd = Command::new(&self.untorn);
            cmd.current_dir(dir)
                .arg("write")
                .arg(format!("--backup={}", self.keep))
                .args(["--temp", temp])
                .args(&self.args)
                .arg(FILE);
            ops.begin(n);
            let done = ops
                .run(&mut cmd, Some(&data))
                .map_err(|e| format!("cannot run {}: {e}", self.untorn.display()))?;
            if !done.success() {
                return ops.failed(format_args!(
                    "untorn write --backup #{n} ({} bytes) failed with the power on: {done}",
                    data.len()
                ));
            }
            ops.ack(n);
        }
        Ok(())
    }

    fn check(&self, dir: &Path, acks: &Acks) -> Result<Checked, String> {
        // The backups of state.json, oldest first (names sort by time).
        let mut backups = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| format!("cannot list the directory: {e}"))? {
            let name = entry.map_err(|e| e.to_string())?.file_name();
            if let Some((target, _)) = untorn::backup::parse_backup_name(&name) {
                if target == OsStr::new(FILE) {
                    backups.push(name.to_string_lossy().into_owned());
                }
            }
        }
        backups.sort();
        let mut expected: Vec<&str> = vec![FILE];
        expected.extend(backups.iter().map(String::as_str));
        let temps = leftover_temps(dir, &expected)?;

        let data = read_opt(dir, FILE)?.ok_or("state.json is gone (ENOENT)")?;
        let k = identify_json(FILE, &data, MAX).map_err(|e| format!("state.json: {e}"))?;
        let lo = acks.last_acked().unwrap_or(0);
        let hi = acks.last_begun().unwrap_or(0);
        if k < lo {
            return Err(format!(
                "lost acknowledged writes: state.json is version {k}, but #{lo} had returned"
            ));
        }
        if k > hi {
            return Err(format!(
                "state.json is version {k}, which was never written (last begun #{hi})"
            ));
        }

        // Each backup: its version, or why it is not a whole one.
        let read: Vec<Result<u64, String>> = backups
            .iter()
            .map(|b| {
                let d = fs::read(dir.join(b)).map_err(|e| format!("cannot read {b}: {e}"))?;
                identify_json(FILE, &d, MAX).map_err(|e| format!("backup {b} is not whole: {e}"))
            })
            .collect();
        // Only the oldest of keep + 1 may be damaged: a pruned backup the cut brought back.
        let beyond = read.len() > self.keep && read[0].is_err();
        let mut damaged = Vec::new();
        let mut versions = Vec::new();
        for (i, (b, r)) in backups.iter().zip(&read).enumerate() {
            match r {
                Ok(v) => versions.push(*v),
                Err(e) if i == 0 && beyond => damaged.push((b.as_str(), e.clone())),
                Err(e) => return Err(e.clone()),
            }
        }
        if damaged.len() + versions.len() > self.keep + 1 {
            return Err(format!(
                "{} backups: more than {} + 1 (retention {})",
                backups.len(),
                self.keep,
                self.keep
            ));
        }
        let shown = || format!("backups (oldest first) hold versions {versions:?}");
        if versions.windows(2).any(|w| w[1] != w[0] + 1) {
            return Err(format!("{}: not consecutive versions", shown()));
        }
        if versions.last().is_some_and(|&v| v >= k) {
            return Err(format!("{}, but state.json is version {k}", shown()));
        }
        let mut displaced_in_temp = false;
        let newest = versions.last().copied();
        if k >= 1 && newest != Some(k - 1) {
            // Allowed only for the write in flight: its displaced version must be in a temp.
            let in_temp = k > lo
                && newest == k.checked_sub(2)
                && temps
                    .iter()
                    .any(|t| fs::read(t).is_ok_and(|d| identify_json(FILE, &d, MAX) == Ok(k - 1)));
            if !in_temp {
                let why = if k > lo {
                    format!("or be in a leftover temp (write #{k} had not returned)")
                } else {
                    format!("and write #{k} had returned")
                };
                return Err(format!(
                    "{}: the newest should be version {} (the one write #{k} displaced), {why}",
                    shown(),
                    k - 1,
                ));
            }
            displaced_in_temp = true;
        }
        if versions.len() > self.keep + 1 {
            return Err(format!(
                "{}: more than {} + 1 backups (retention {})",
                shown(),
                self.keep,
                self.keep
            ));
        }
        if let Some(newest) = newest {
            let displaced = newest as usize + 1;
            if versions.len() < self.keep.min(displaced) {
                return Err(format!(
                    "{}: fewer than the {} kept (retention removed too many)",
                    shown(),
                    self.keep
                ));
            }
        }

        // `untorn backups` sees the same backups, newest first: each whole one valid JSON that
        // matches its checksum, the damaged one (if any) flagged.
        let listed = untorn_ok(&self.untorn, dir, &["backups", FILE])?;
        let listed = String::from_utf8_lossy(&listed);
        let lines: Vec<&str> = listed.lines().collect();
        let names: Vec<&str> = lines
            .iter()
            .map(|l| l.split('\t').next().unwrap_or(""))
            .collect();
        let mine: Vec<&str> = backups.iter().rev().map(String::as_str).collect();
        let flagged_as = |l: &str| {
            let name = l.split('\t').next().unwrap_or("");
            if damaged.iter().any(|(d, _)| *d == name) {
                l.ends_with("\tDAMAGED\tdamaged")
            } else {
                l.ends_with("\tvalid\twhole")
            }
        };
        if names != mine || !lines.iter().all(|l| flagged_as(l)) {
            return Err(format!(
                "`untorn backups` lists {lines:?}, expected {mine:?}, each `valid` and `whole`{}",
                match damaged.first() {
                    Some((d, why)) => format!(" but {d} `DAMAGED` and `damaged` ({why})"),
                    None => String::new(),
                }
            ));
        }
        // A damaged backup is never restored.
        for (d, why) in &damaged {
            let before = fs::read(dir.join(FILE)).map_err(|e| e.to_string())?;
            let out = untorn_in(&self.untorn, dir, &["restore", FILE, "--from", d])?;
            let after = fs::read(dir.join(FILE)).map_err(|e| e.to_string())?;
            if out.status.code() != Some(12) || after != before {
                return Err(format!(
                    "`untorn restore --from {d}` of a damaged backup ({why}) exited {} (expected \
                     12) and {} state.json",
                    out.status,
                    if after == before { "left" } else { "CHANGED" }
                ));
            }
        }

        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.cycles += 1;
        s.backups += versions.len() as u64;
        s.unacked_on_disk += u64::from(k > lo);
        s.displaced_in_temp += u64::from(displaced_in_temp);
        s.one_extra += u64::from(versions.len() > self.keep);
        s.damaged_flagged += damaged.len() as u64;
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
    use std::time::{Duration, UNIX_EPOCH};

    fn put_backup(dir: &Path, secs: u64, v: u64) {
        let name = untorn::backup::backup_name(
            OsStr::new(FILE),
            UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs),
        );
        fs::write(dir.join(name), backup_version(v)).unwrap();
    }

    /// The structural rules (`untorn backups` is not at hand: `Err` from it is fine here).
    #[test]
    fn check_rules() {
        let dir = std::env::temp_dir().join(format!(
            "untorn-testbed-unit-backups-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let w = UntornBackups::new("/nonexistent/untorn");
        let acks = |a: u64, b: u64| Acks {
            begun: (1..=b).collect(),
            acked: (1..=a).collect(),
            late: vec![],
        };
        let case = |file: u64, baks: &[u64], temp: Option<u64>, a: u64, b: u64| {
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join(FILE), backup_version(file)).unwrap();
            for (i, &v) in baks.iter().enumerate() {
                put_backup(&dir, i as u64, v);
            }
            if let Some(t) = temp {
                fs::write(
                    dir.join(".state.json.untorn-0123abcd.tmp"),
                    backup_version(t),
                )
                .unwrap();
            }
            match w.check(&dir, &acks(a, b)) {
                Err(e) if e.contains("untorn backups") || e.contains("cannot run") => Ok(()),
                other => other.map(drop),
            }
        };
        assert_eq!(case(5, &[2, 3, 4], None, 5, 6), Ok(()));
        assert_eq!(case(5, &[1, 2, 3, 4], None, 5, 6), Ok(()), "one extra");
        assert_eq!(case(6, &[3, 4, 5], None, 5, 6), Ok(()), "unacked landed");
        assert_eq!(
            case(6, &[2, 3, 4], Some(5), 5, 6),
            Ok(()),
            "displaced in temp"
        );
        assert_eq!(case(1, &[], Some(0), 0, 1), Ok(()));
        assert_eq!(case(0, &[], None, 0, 1), Ok(()));
        assert_eq!(case(2, &[0, 1], None, 2, 2), Ok(()));
        let err = |r: Result<(), String>, what: &str| {
            let e = r.unwrap_err();
            assert!(e.contains(what), "{e}");
        };
        err(case(6, &[2, 3, 4], Some(5), 6, 7), "had returned");
        err(case(6, &[2, 3, 4], None, 5, 6), "newest should be");
        err(case(5, &[2, 4], None, 5, 5), "consecutive");
        err(case(5, &[0, 1, 2, 3, 4], None, 5, 5), "more than");
        err(case(5, &[3, 4], None, 5, 5), "fewer");
        err(
            case(4, &[2, 3, 4], None, 4, 5),
            "but state.json is version 4",
        );
        err(case(4, &[], None, 5, 5), "lost acknowledged");
        err(case(0, &[0], None, 0, 1), "but state.json is version 0");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(FILE), backup_version(2)).unwrap();
        put_backup(&dir, 0, 0);
        let mut torn = backup_version(1);
        torn.truncate(torn.len() / 2);
        fs::write(
            dir.join(untorn::backup::backup_name(
                OsStr::new(FILE),
                UNIX_EPOCH + Duration::from_secs(1_800_000_001),
            )),
            torn,
        )
        .unwrap();
        err(w.check(&dir, &acks(2, 2)).map(drop), "not whole");
        // A damaged backup is allowed only as the oldest of keep + 1 (a pruned one the cut
        // brought back); that `untorn backups` flags it is checked with the binary.
        let torn_at = |dir: &Path, secs: u64, v: u64| {
            let mut torn = backup_version(v);
            let half = torn.len() / 2;
            torn[half..].fill(b'#');
            fs::write(
                dir.join(untorn::backup::backup_name(
                    OsStr::new(FILE),
                    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs),
                )),
                torn,
            )
            .unwrap();
        };
        let with_torn = |file: u64, baks: &[Option<u64>]| {
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join(FILE), backup_version(file)).unwrap();
            for (i, v) in baks.iter().enumerate() {
                match v {
                    Some(v) => put_backup(&dir, i as u64, *v),
                    None => torn_at(&dir, i as u64, 1),
                }
            }
            match w.check(&dir, &acks(file, file)) {
                Err(e) if e.contains("untorn backups") || e.contains("cannot run") => Ok(()),
                other => other.map(drop),
            }
        };
        assert_eq!(with_torn(5, &[None, Some(2), Some(3), Some(4)]), Ok(()));
        err(with_torn(5, &[None, Some(3), Some(4)]), "not whole");
        err(with_torn(5, &[Some(2), None, Some(4)]), "not whole");
        err(
            with_torn(5, &[Some(1), None, Some(3), Some(4)]),
            "not whole",
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
