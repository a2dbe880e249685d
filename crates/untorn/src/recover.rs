//! Housekeeping after crashes: orphaned temp files ([`clean`]) and one [`recover`] that leaves
//! a directory consistent.
//!
//! A crash can leave temp files (`.NAME.untorn-XXXXXXXX.tmp`) beside their targets: the new
//! content of a write that never committed, or the old content of one that committed but did
//! not get to remove it. They are never needed to read a file (the target is always whole), but
//! one may be the only copy of some content, so cleanup reports before it deletes, and removes
//! only temps that no live writer can own: older than a threshold, and not open in any process.

use crate::backup::{backups, restore_from, Backup, Validator};
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::format::Format;
use crate::paths::{join, split, temp_file_target};
use crate::sys::{FileType, OpenHow};
use crate::update::read_all;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An untorn temp file left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    /// Its path.
    pub path: PathBuf,
    /// The name of the file it was meant to replace.
    pub target: OsString,
    /// How long ago it was last modified.
    pub age: Duration,
    /// Its size in bytes.
    pub size: u64,
    /// Whether some process has it open (a live writer): never removed.
    pub in_use: bool,
}

/// What [`clean`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Orphans removed (or, on a dry run, that would be).
    pub removed: Vec<Orphan>,
    /// Temps kept: too young, or open in a process.
    pub kept: Vec<Orphan>,
}

/// Finds untorn temp files in `dir` (not recursively).
pub fn find_orphans(dir: impl AsRef<Path>) -> Result<Vec<Orphan>> {
    let dir_path = dir.as_ref();
    let ctx = Ctx::real();
    let sys = &*ctx.sys;
    let dir = sys
        .open_dir(None, dir_path)
        .map_err(|e| Error::io(Op::OpenDir, dir_path, e))?;
    let names = sys
        .list_dir(&dir)
        .map_err(|e| Error::io(Op::ListDir, dir_path, e))?;
    let now = SystemTime::now();
    // The temps of an interrupted transaction are not orphans: its journal (a copy is beside
    // each of them) may still roll them forward. `recover` settles those first.
    let journaled = crate::txn::journaled_temps(sys, &dir, dir_path, &names);
    let mut temps = Vec::new();
    for n in names {
        let Some(target) = temp_file_target(&n) else {
            continue;
        };
        let Ok(st) = sys.stat_at_times(&dir, &n, false) else {
            continue;
        };
        if st.file_type() != FileType::Regular || journaled.contains(&(st.dev, st.ino)) {
            continue;
        }
        let mtime = UNIX_EPOCH + Duration::from_nanos(st.mtime_ns.max(0) as u64);
        temps.push((
            Orphan {
                path: join(dir_path, &n),
                target,
                age: now.duration_since(mtime).unwrap_or_default(),
                size: st.size,
                in_use: false,
            },
            (st.dev, st.ino),
        ));
    }
    if !temps.is_empty() {
        // Only when there is something to judge: scanning /proc is not free.
        let open = sys.open_inodes().unwrap_or_default();
        for (o, id) in &mut temps {
            o.in_use = open.contains(id);
        }
    }
    Ok(temps.into_iter().map(|(o, _)| o).collect())
}

/// Removes the orphaned temp files of `dir` that are at least `older_than` old and open in no
/// process. With `dry_run`, only reports. Removals are not fsynced: if a crash undoes one, the
/// next clean removes it again.
pub fn clean(dir: impl AsRef<Path>, older_than: Duration, dry_run: bool) -> Result<Cleaned> {
    let dir = dir.as_ref();
    let mut out = Cleaned::default();
    for o in find_orphans(dir)? {
        if o.in_use || o.age < older_than {
            out.kept.push(o);
            continue;
        }
        if !dry_run {
            let (d, name) = split(&o.path)?;
            let ctx = Ctx::real();
            let dfd = ctx
                .sys
                .open_dir(None, &d)
                .map_err(|e| Error::io(Op::OpenDir, &d, e))?;
            ctx.sys
                .unlink(&dfd, &name)
                .map_err(|e| Error::io(Op::Clean, &o.path, e))?;
            tracing::debug!(target: "untorn", op = "clean", path = %o.path.display(), bytes = o.size);
        }
        out.removed.push(o);
    }
    Ok(out)
}

/// One thing [`recover`] did (or, on a dry run, would do).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Removed an orphaned temp file.
    RemovedTemp(Orphan),
    /// Kept a temp file that a live process has open.
    KeptTempInUse(Orphan),
    /// Restored a file that failed validation from its newest valid backup.
    Restored {
        /// The file.
        path: PathBuf,
        /// The backup it now holds the content of.
        from: Backup,
        /// Why the file was judged invalid.
        reason: String,
    },
    /// Finished an interrupted transaction (its journal was complete).
    TxnRolledForward(PathBuf),
    /// Undid an interrupted transaction (its commit point was not reached).
    TxnRolledBack(PathBuf),
    /// Cleared a transaction's flag from a lock file with no journal beside it (a transaction
    /// that never reached its journal, or whose clean-up a crash cut short); nothing else
    /// changed.
    TxnFlagCleared(PathBuf),
    /// Found a file that fails validation and has no valid backup: left as it is.
    InvalidWithoutBackup {
        /// The file.
        path: PathBuf,
        /// Why it was judged invalid.
        reason: String,
    },
}

/// Options for [`recover`].
#[derive(Clone, Debug, Default)]
pub struct RecoverOptions {
    /// Restore files of this format (by extension) that fail validation from their newest valid
    /// backup.
    pub restore_invalid: Option<Format>,
    /// Only report.
    pub dry_run: bool,
    /// Keep temps younger than this (default 0: after a crash, no writer is running).
    pub older_than: Duration,
}

/// Leaves `dir` consistent after a crash: finishes or undoes interrupted transactions, removes
/// orphaned temp files that no process has open, and (with
/// [`RecoverOptions::restore_invalid`]) restores invalid files from their newest valid backup.
/// Returns what it did, in order.
pub fn recover(dir: impl AsRef<Path>, opts: &RecoverOptions) -> Result<Vec<Action>> {
    let dir = dir.as_ref();
    let mut actions = Vec::new();
    // Transactions first: rolling one back removes its temps, rolling forward consumes them.
    for r in crate::txn::recover_dir(dir, opts.dry_run)? {
        actions.push(match r {
            crate::txn::Recovered::RolledForward(p) => Action::TxnRolledForward(p),
            crate::txn::Recovered::RolledBack(p) => Action::TxnRolledBack(p),
            crate::txn::Recovered::FlagCleared(p) => Action::TxnFlagCleared(p),
        });
    }
    let cleaned = clean(dir, opts.older_than, opts.dry_run)?;
    actions.extend(cleaned.removed.into_iter().map(Action::RemovedTemp));
    actions.extend(
        cleaned
            .kept
            .into_iter()
            .filter(|o| o.in_use)
            .map(Action::KeptTempInUse),
    );
    if let Some(format) = opts.restore_invalid {
        let ctx = Ctx::real();
        let sys = &*ctx.sys;
        let dfd = sys
            .open_dir(None, dir)
            .map_err(|e| Error::io(Op::OpenDir, dir, e))?;
        let mut names = sys
            .list_dir(&dfd)
            .map_err(|e| Error::io(Op::ListDir, dir, e))?;
        names.sort();
        let validator = Validator::Format(format);
        for n in names {
            let path = join(dir, &n);
            if Format::from_path(&path) != format
                || temp_file_target(&n).is_some()
                || crate::backup::parse_backup_name(&n).is_some()
            {
                continue;
            }
            let Ok(st) = sys.stat_at(&dfd, &n, true) else {
                continue;
            };
            if st.file_type() != FileType::Regular {
                continue;
            }
            let _lock = crate::lock::lock(&path)?;
            let how = OpenHow {
                read: true,
                ..OpenHow::default()
            };
            let fd = sys
                .open_file(&dfd, &n, how, 0)
                .map_err(|e| Error::io(Op::Open, &path, e))?;
            let content = read_all(sys, &fd, &path)?;
            let Err(why) = validator.check(&content, &path) else {
                continue;
            };
            let reason = why.to_string();
            match newest_valid(&path, &validator)? {
                Some(b) => {
                    if !opts.dry_run {
                        restore_from(&path, &b)?;
                    }
                    actions.push(Action::Restored {
                        path,
                        from: b,
                        reason,
                    });
                }
                None => actions.push(Action::InvalidWithoutBackup { path, reason }),
            }
        }
    }
    Ok(actions)
}

fn newest_valid(path: &Path, validator: &Validator) -> Result<Option<Backup>> {
    let ctx = Ctx::real();
    let sys = &*ctx.sys;
    let (dir_path, _) = split(path)?;
    let dfd = sys
        .open_dir(None, &dir_path)
        .map_err(|e| Error::io(Op::OpenDir, &dir_path, e))?;
    for b in backups(path)? {
        let how = OpenHow {
            read: true,
            ..OpenHow::default()
        };
        let Ok(fd) = sys.open_file(&dfd, &b.name, how, 0) else {
            continue;
        };
        let Ok(c) = read_all(sys, &fd, &b.path) else {
            continue;
        };
        if validator.check(&c, &b.path).is_ok() {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// Checks the file at `path` with `validator`: `Ok` if valid; else an error of kind
/// [`ErrorKind::InvalidContent`] (with line and column where known), or the error that kept
/// it from being read.
pub fn check(path: impl AsRef<Path>, validator: &Validator) -> Result<()> {
    let path = path.as_ref();
    match crate::update::read_file(&Ctx::real(), path)? {
        Some(c) => validator.check(&c, path),
        None => Err(Error::new(
            Op::Validate,
            path,
            ErrorKind::NotFound,
            "no such file or directory".into(),
        )),
    }
}
