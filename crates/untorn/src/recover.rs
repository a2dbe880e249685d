//! Housekeeping after crashes: orphaned temp files ([`clean`]) and one [`recover`] that leaves
//! a directory consistent.
//!
//! A crash can leave temp files (`.NAME.untorn-XXXXXXXX.tmp`) beside their targets: the new
//! content of a write that never committed, or the old content of one that committed but did
//! not get to remove it. They are never needed to read a file (the target is always whole), but
//! one may be the only copy of some content, so cleanup reports before it deletes, and removes
//! only temps that no live writer can own: older than a threshold, and not open in any process.
//!
//! Both act only on what the caller trusts ([`crate::trust`]): a temp another user owns is
//! reported and left alone, a journal another user owns is reported and left alone, a file
//! that is a symbolic link is never restored through, and every removal goes through the
//! directory's descriptor after checking that the name is still the inode that was judged.

use crate::backup::{restore_from_with, Backup, Validator};
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::files::read_all;
use crate::format::Format;
use crate::lockfile::Wait;
use crate::paths::{join, temp_file_target};
use crate::sum::Integrity;
use crate::sys::{errnos::*, FileType, OpenHow};
use crate::trust::trusts;
use crate::txn::scan::{journaled_temps, recover_dir_with};
use crate::txn::settle::Settings;
use crate::txn::Recovered;
use crate::versions::trusted_backups;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An untorn temp file left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Its owner (uid): a temp of a user the caller does not trust is never removed.
    pub owner: u32,
    /// Its (device, inode), to check before removing that the name still is this file.
    id: (u64, u64),
}

/// What [`clean`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cleaned {
    /// Orphans removed (or, on a dry run, that would be).
    pub removed: Vec<Orphan>,
    /// Temps kept: too young, or open in a process.
    pub kept: Vec<Orphan>,
    /// Temp-like names owned by users the caller does not trust: left alone.
    pub untrusted: Vec<Orphan>,
}

/// Finds untorn temp files in `dir` (not recursively): regular files with a temp's name,
/// whoever owns them (see [`Orphan::owner`]).
pub fn find_orphans(dir: impl AsRef<Path>) -> Result<Vec<Orphan>> {
    find_orphans_with(&Ctx::real(), dir.as_ref())
}

fn find_orphans_with(ctx: &Arc<Ctx>, dir_path: &Path) -> Result<Vec<Orphan>> {
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
    let journaled = journaled_temps(sys, &dir, &names);
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
        temps.push(Orphan {
            path: join(dir_path, &n),
            target,
            age: now.duration_since(mtime).unwrap_or_default(),
            size: st.size,
            in_use: false,
            owner: st.uid,
            id: (st.dev, st.ino),
        });
    }
    if !temps.is_empty() {
        // Only when there is something to judge: scanning /proc is not free.
        let open = sys.open_inodes().unwrap_or_default();
        for o in &mut temps {
            o.in_use = open.contains(&o.id);
        }
    }
    Ok(temps)
}

/// Options for [`CleanOptions::clean`]: which orphaned temps to remove.
///
/// ```
/// use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// let report = untorn::CleanOptions::new()
///     .older_than(Duration::from_secs(3600))
///     .dry_run(true)
///     .clean(dir.path())?;
/// assert!(report.removed.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct CleanOptions {
    older_than: Duration,
    dry_run: bool,
    ctx: Arc<Ctx>,
}

impl Default for CleanOptions {
    fn default() -> Self {
        CleanOptions::new()
    }
}

impl CleanOptions {
    /// Temps at least an hour old, removed (not a dry run).
    pub fn new() -> CleanOptions {
        CleanOptions {
            older_than: Duration::from_secs(3600),
            dry_run: false,
            ctx: Ctx::real(),
        }
    }

    /// Removes only temps at least this old (default 1 hour): a younger one may belong to a
    /// writer that is still running on another machine or in a container whose processes this
    /// one cannot see.
    pub fn older_than(&mut self, d: Duration) -> &mut Self {
        self.older_than = d;
        self
    }

    /// Only reports.
    pub fn dry_run(&mut self, yes: bool) -> &mut Self {
        self.dry_run = yes;
        self
    }

    #[doc(hidden)]
    pub fn sys(&mut self, sys: Arc<dyn crate::sys::Sys>) -> &mut Self {
        self.ctx = Ctx::new(sys);
        self
    }

    /// Removes the orphaned temp files of `dir` that are old enough, open in no process, and
    /// owned by a user the caller trusts; reports each. Removals are not fsynced: if a crash
    /// undoes one, the next clean removes it again. A temp that its own writer removes
    /// meanwhile is simply gone, not an error.
    pub fn clean(&self, dir: impl AsRef<Path>) -> Result<Cleaned> {
        clean_with(&self.ctx, dir.as_ref(), self.older_than, self.dry_run)
    }
}

/// Removes the orphaned temp files of `dir` that are at least `older_than` old (see
/// [`CleanOptions::clean`]). With `dry_run`, only reports.
#[deprecated(note = "use CleanOptions::new().older_than(d).dry_run(b).clean(dir)")]
pub fn clean(dir: impl AsRef<Path>, older_than: Duration, dry_run: bool) -> Result<Cleaned> {
    CleanOptions::new()
        .older_than(older_than)
        .dry_run(dry_run)
        .clean(dir)
}

fn clean_with(ctx: &Arc<Ctx>, dir: &Path, older_than: Duration, dry_run: bool) -> Result<Cleaned> {
    let sys = &*ctx.sys;
    let euid = sys.euid();
    let mut out = Cleaned::default();
    let orphans = find_orphans_with(ctx, dir)?;
    if orphans.is_empty() {
        return Ok(out);
    }
    let dfd = sys
        .open_dir(None, dir)
        .map_err(|e| Error::io(Op::OpenDir, dir, e))?;
    for o in orphans {
        if !trusts(euid, o.owner) {
            tracing::debug!(target: "untorn", path = %o.path.display(), owner = o.owner, "a temp-like name of another user: left alone");
            out.untrusted.push(o);
            continue;
        }
        if o.in_use || o.age < older_than {
            out.kept.push(o);
            continue;
        }
        if !dry_run {
            let name = o.path.file_name().expect("a temp has a name").to_owned();
            // Still the file judged (a name can be replaced in between)?
            match sys.stat_at(&dfd, &name, false) {
                Ok(st) if (st.dev, st.ino) == o.id => {}
                _ => continue,
            }
            match sys.unlink(&dfd, &name) {
                Ok(()) => {}
                // Its writer (or another clean) removed it meanwhile.
                Err(e) if e.raw_os_error() == Some(ENOENT) => continue,
                Err(e) => return Err(Error::io(Op::Clean, &o.path, e)),
            }
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
    /// Left alone a temp-like file that a user the caller does not trust owns.
    UntrustedTemp(Orphan),
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
    /// Passed over a damaged backup (its content does not match the checksum recorded when
    /// untorn wrote it) while looking for a file's newest valid backup.
    SkippedDamagedBackup {
        /// The file.
        path: PathBuf,
        /// The damaged backup.
        backup: Backup,
        /// What does not match.
        reason: String,
    },
    /// Left alone a transaction journal that a user the caller does not trust owns.
    UntrustedJournal {
        /// The journal.
        path: PathBuf,
        /// Its owner (uid).
        owner: u32,
    },
    /// Left alone a transaction journal that recovery does not act on, and why.
    RefusedJournal {
        /// The journal.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Gave up the changes of a committed transaction that could not be applied
    /// ([`RecoverOptions::abandon`]).
    TxnAbandoned {
        /// The journal.
        path: PathBuf,
        /// Each change given up, and why.
        failed: Vec<String>,
    },
    /// Found a file that fails validation and has no valid backup: left as it is.
    InvalidWithoutBackup {
        /// The file.
        path: PathBuf,
        /// Why it was judged invalid.
        reason: String,
    },
    /// Skipped a file that is a symbolic link: recovery never restores through a link.
    SkippedSymlink(PathBuf),
    /// Could not recover something (the rest was recovered all the same).
    Failed {
        /// What it was.
        path: PathBuf,
        /// The error's kind (for the exit code).
        kind: ErrorKind,
        /// The error's message.
        error: String,
    },
}

impl From<Recovered> for Action {
    fn from(r: Recovered) -> Action {
        match r {
            Recovered::RolledForward(p) => Action::TxnRolledForward(p),
            Recovered::RolledBack(p) => Action::TxnRolledBack(p),
            Recovered::FlagCleared(p) => Action::TxnFlagCleared(p),
            Recovered::Untrusted { path, owner } => Action::UntrustedJournal { path, owner },
            Recovered::Refused { path, why } => Action::RefusedJournal { path, why },
            Recovered::Abandoned { path, failed } => Action::TxnAbandoned { path, failed },
        }
    }
}

/// Which files [`RecoverOptions`] restores when they fail validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Restore {
    /// The files of this format (by extension), checked as it.
    Format(Format),
    /// The files of no known format (by extension), checked as UTF-8 text.
    Utf8,
}

/// Options for [`recover`].
///
/// ```
/// use std::time::Duration;
/// use untorn::{Format, RecoverOptions};
/// let mut opts = RecoverOptions::new();
/// opts.restore_invalid(Format::Json).timeout(Duration::from_secs(5));
/// ```
#[derive(Clone, Debug)]
pub struct RecoverOptions {
    restore_invalid: Option<Restore>,
    dry_run: bool,
    older_than: Duration,
    wait: Wait,
    abandon: bool,
    ctx: Arc<Ctx>,
}

impl Default for RecoverOptions {
    fn default() -> Self {
        RecoverOptions::new()
    }
}

impl RecoverOptions {
    /// The defaults: no restoring, temps of any age, a bounded wait (10 s) for a
    /// transaction's locks, nothing abandoned.
    pub fn new() -> RecoverOptions {
        RecoverOptions {
            restore_invalid: None,
            dry_run: false,
            older_than: Duration::ZERO,
            wait: Wait::Timeout(crate::txn::settle::DEFAULT_WAIT),
            abandon: false,
            ctx: Ctx::real(),
        }
    }

    /// Restores files of this format (by extension) that fail validation from their newest valid
    /// backup.
    pub fn restore_invalid(&mut self, f: Format) -> &mut Self {
        self.restore_invalid = Some(Restore::Format(f));
        self
    }

    /// Restores text files that fail validation from their newest valid backup: the files
    /// whose extension names no format (not JSON, YAML or TOML: what
    /// [`restore_invalid`](Self::restore_invalid)`(Format::Raw)` selects) that are not UTF-8,
    /// or whose checksum says they are damaged. untorn's own files (temps, backups, lock files,
    /// journals) are never touched. Replaces [`restore_invalid`](Self::restore_invalid).
    pub fn restore_invalid_utf8(&mut self) -> &mut Self {
        self.restore_invalid = Some(Restore::Utf8);
        self
    }

    /// Only reports what it would do; changes nothing (not even a lock file is created).
    pub fn dry_run(&mut self, yes: bool) -> &mut Self {
        self.dry_run = yes;
        self
    }

    /// Keeps temps younger than this (default 0: after a crash, no writer is running).
    pub fn older_than(&mut self, d: Duration) -> &mut Self {
        self.older_than = d;
        self
    }

    /// Waits at most `d` for the locks of an interrupted transaction, and for the lock of each
    /// file [`restore_invalid`](Self::restore_invalid) restores (default 10 s): another
    /// process, of any user, may hold them. What stays busy is reported ([`Action::Failed`],
    /// of kind [`ErrorKind::TimedOut`]) and the rest recovered.
    pub fn timeout(&mut self, d: Duration) -> &mut Self {
        self.wait = Wait::Timeout(d);
        self
    }

    /// Gives up the changes of a committed transaction that cannot be applied (a target made
    /// immutable, a directory where a file was), applying the rest and removing its journal:
    /// the way out of a transaction that recovery cannot finish. Off by default.
    pub fn abandon(&mut self, yes: bool) -> &mut Self {
        self.abandon = yes;
        self
    }

    #[doc(hidden)]
    pub fn sys(&mut self, sys: Arc<dyn crate::sys::Sys>) -> &mut Self {
        self.ctx = Ctx::new(sys);
        self
    }
}

/// Leaves `dir` consistent after a crash: finishes or undoes interrupted transactions, removes
/// orphaned temp files that no process has open, and (with
/// [`RecoverOptions::restore_invalid`]) restores invalid files from their newest valid backup.
/// Returns what it did, in order. What it cannot do for one file ([`Action::Failed`]) does not
/// stop it doing the rest.
///
/// Run as root in a directory others can write, it changes nothing outside the journals' own
/// directories, and acts only on state whose owner it trusts ([`crate::trust`]).
pub fn recover(dir: impl AsRef<Path>, opts: &RecoverOptions) -> Result<Vec<Action>> {
    let dir = dir.as_ref();
    let ctx = &opts.ctx;
    let mut actions = Vec::new();
    let settings = Settings {
        wait: opts.wait,
        abandon: opts.abandon,
        ..Settings::default()
    };
    // Transactions first: rolling one back removes its temps, rolling forward consumes them.
    let (done, errors) = recover_dir_with(ctx, dir, opts.dry_run, &settings)?;
    actions.extend(done.into_iter().map(Action::from));
    actions.extend(errors.into_iter().map(|e| Action::Failed {
        path: e.path().to_path_buf(),
        kind: e.kind(),
        error: e.to_string(),
    }));
    let cleaned = clean_with(ctx, dir, opts.older_than, opts.dry_run)?;
    actions.extend(cleaned.removed.into_iter().map(Action::RemovedTemp));
    actions.extend(
        cleaned
            .kept
            .into_iter()
            .filter(|o| o.in_use)
            .map(Action::KeptTempInUse),
    );
    actions.extend(cleaned.untrusted.into_iter().map(Action::UntrustedTemp));
    if let Some(what) = opts.restore_invalid {
        restore_invalid(ctx, dir, what, opts.dry_run, opts.wait, &mut actions)?;
    }
    Ok(actions)
}

/// Restores the files `what` selects in `dir` that fail validation from their newest valid
/// backup. Only regular files: a symbolic link is reported and never written through.
fn restore_invalid(
    ctx: &Arc<Ctx>,
    dir: &Path,
    what: Restore,
    dry_run: bool,
    wait: Wait,
    actions: &mut Vec<Action>,
) -> Result<()> {
    let sys = &*ctx.sys;
    let dfd = sys
        .open_dir(None, dir)
        .map_err(|e| Error::io(Op::OpenDir, dir, e))?;
    let mut names = sys
        .list_dir(&dfd)
        .map_err(|e| Error::io(Op::ListDir, dir, e))?;
    names.sort();
    let (format, validator) = match what {
        Restore::Format(f) => (f, Validator::Format(f)),
        Restore::Utf8 => (Format::Raw, Validator::Utf8),
    };
    for n in names {
        let path = join(dir, &n);
        if Format::from_path(&path) != format
            || temp_file_target(&n).is_some()
            || crate::backup::parse_backup_name(&n).is_some()
            || (format == Format::Raw && is_own_file(&n))
        {
            continue;
        }
        let Ok(st) = sys.stat_at(&dfd, &n, false) else {
            continue;
        };
        match st.file_type() {
            FileType::Regular => {}
            FileType::Symlink => {
                actions.push(Action::SkippedSymlink(path));
                continue;
            }
            _ => continue,
        }
        let r = (|| -> Result<Vec<Action>> {
            // Bounded like every wait of recovery: another user may hold this lock.
            let mut lock = crate::LockOptions::new();
            lock.with_ctx(ctx.clone()).wait(wait);
            let _lock = if dry_run {
                None
            } else {
                Some(lock.lock_in(&dfd, dir, &crate::txn::lock_name(&n))?)
            };
            let how = OpenHow {
                read: true,
                no_follow: true,
                nonblock: true,
                ..OpenHow::default()
            };
            let fd = match sys.open_file(&dfd, &n, how, 0) {
                Ok(fd) => fd,
                // Replaced by a link (or removed) since it was listed: not ours to restore.
                Err(e) if matches!(e.raw_os_error(), Some(ELOOP | ENOENT)) => return Ok(vec![]),
                Err(e) => return Err(Error::io(Op::Open, &path, e)),
            };
            let now = sys.stat(&fd).map_err(|e| Error::io(Op::Stat, &path, e))?;
            if now.file_type() != FileType::Regular {
                return Ok(vec![]);
            }
            let content = read_all(sys, &fd, &path)?;
            let Err(why) = validator.check(&content, &path) else {
                return Ok(vec![]);
            };
            let reason = why.to_string();
            let (found, skipped) = newest_valid(ctx, &path, &validator)?;
            let mut done: Vec<Action> = skipped
                .into_iter()
                .map(|(backup, reason)| Action::SkippedDamagedBackup {
                    path: path.clone(),
                    backup,
                    reason,
                })
                .collect();
            done.push(match found {
                Some(b) => {
                    if !dry_run {
                        restore_from_with(ctx, &path, &b, crate::Symlinks::Refuse)?;
                    }
                    Action::Restored {
                        path: path.clone(),
                        from: b,
                        reason,
                    }
                }
                None => Action::InvalidWithoutBackup {
                    path: path.clone(),
                    reason,
                },
            });
            Ok(done)
        })();
        match r {
            Ok(done) => actions.extend(done),
            Err(e) => actions.push(Action::Failed {
                path: path.clone(),
                kind: e.kind(),
                error: e.to_string(),
            }),
        }
    }
    Ok(())
}

/// Whether `name` is a lock file or a transaction's journal: untorn's own files, which a
/// restore of files of no known format must never treat as the user's.
fn is_own_file(name: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().ends_with(b".lock") || crate::txn::is_journal_name(name)
}

/// The newest backup of `path` (among those the caller trusts) that passes `validator` and is
/// not damaged, and the damaged ones passed over (with why).
type Found = (Option<Backup>, Vec<(Backup, String)>);

fn newest_valid(ctx: &Arc<Ctx>, path: &Path, validator: &Validator) -> Result<Found> {
    let mut skipped = Vec::new();
    for (b, content, integrity) in trusted_backups(ctx, path)? {
        if let Integrity::Damaged(why) = integrity {
            skipped.push((b, why));
            continue;
        }
        if validator.check(&content, &b.path).is_ok() {
            return Ok((Some(b), skipped));
        }
    }
    Ok((None, skipped))
}

/// Reads the open file `fd` whole and judges it.
pub(crate) fn read_judged(
    sys: &dyn crate::sys::Sys,
    fd: &crate::sys::Fd,
    path: &Path,
) -> Result<(Vec<u8>, Integrity)> {
    let st = sys
        .stat_times(fd)
        .map_err(|e| Error::io(Op::Stat, path, e))?;
    let content = read_all(sys, fd, path)?;
    let integrity = crate::sum::judge(sys, fd, &st, &content);
    Ok((content, integrity))
}

/// Reads the file at `path` (following symlinks) and judges it: the content, and whether it is
/// whole, unverified or damaged. `Ok(None)` if it does not exist.
pub(crate) fn read_checked(path: impl AsRef<Path>) -> Result<Option<(Vec<u8>, Integrity)>> {
    let path = path.as_ref();
    let ctx = Ctx::real();
    match crate::files::open_regular(&ctx, path)? {
        Some(fd) => read_judged(&*ctx.sys, &fd, path).map(Some),
        None => Ok(None),
    }
}

/// The integrity of the file at `path` (reads it whole). See [`Integrity`].
///
/// ```
/// use untorn::Integrity;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("state.json");
/// untorn::write(&path, "{}")?;
/// # if untorn::integrity(&path)? == Integrity::Whole { // (a file system without user xattrs: unverified)
/// assert_eq!(untorn::integrity(&path)?, Integrity::Whole);
/// # }
/// std::fs::write(&path, "{\"by\": \"another program\"}")?; // changed in place: nothing to check
/// assert_eq!(untorn::integrity(&path)?.label(), "unverified");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn integrity(path: impl AsRef<Path>) -> Result<Integrity> {
    let path = path.as_ref();
    match read_checked(path)? {
        Some((_, i)) => Ok(i),
        None => Err(Error::io(Op::Read, path, crate::sys::os_error(ENOENT))),
    }
}

/// Checks the file at `path`: its checksum, if untorn recorded one when it wrote the file
/// (see [`Integrity`]: a [damaged](Integrity::Damaged) file fails whatever its format), then
/// `validator`. `Ok` if both pass; else an error of kind [`ErrorKind::InvalidContent`] (with
/// line and column where known), or the error that kept it from being read.
///
/// With [`Validator::Exists`] (`untorn check --format raw`), only the checksum is checked: a
/// way to verify a file that untorn wrote and that has no format.
pub fn check(path: impl AsRef<Path>, validator: &Validator) -> Result<()> {
    check_judged(path, validator).map(drop)
}

/// [`check`], and the file's [`Integrity`] when it passes.
pub fn check_judged(path: impl AsRef<Path>, validator: &Validator) -> Result<Integrity> {
    let path = path.as_ref();
    match read_checked(path)? {
        Some((_, Integrity::Damaged(why))) => Err(Error::new(
            Op::Validate,
            path,
            ErrorKind::InvalidContent,
            format!("damaged: {why}"),
        )),
        Some((c, integrity)) => validator.check(&c, path).map(|()| integrity),
        None => Err(Error::new(
            Op::Validate,
            path,
            ErrorKind::NotFound,
            "no such file or directory".into(),
        )),
    }
}
