//! Settling a flag: what a write, a lock or a transaction does when the lock file of a file it
//! is about to change carries a transaction's flag (finish or undo that transaction first,
//! waiting a bounded time, or refuse when the flag is another user's).

use super::recover::{recover_txn, Home, Recovered};
use super::{flag_of, journal_name, lock_name, look, tag_of_size, Found};
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::lockfile::Wait;
use crate::lockfile::{self, How};
use crate::paths::join;
use crate::sys::{errnos::*, Fd, FileType};
use crate::trust::{could_replace, trusts, user_name};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// How a recovery waits, and what it may give up.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// How long to wait for the transaction's locks, which another user may hold.
    pub(crate) wait: Wait,
    pub(crate) cancel: Option<Arc<AtomicBool>>,
    pub(crate) allow_shared_fs: bool,
    /// Give up the changes that cannot be applied (`untorn recover --abandon`).
    pub(crate) abandon: bool,
}

/// The bound on a recovery's wait when the caller set none: a write, which promises to take no
/// lock, never waits longer than this on a lock another process holds.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(10);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            wait: Wait::Timeout(DEFAULT_WAIT),
            cancel: None,
            allow_shared_fs: false,
            abandon: false,
        }
    }
}

impl Settings {
    pub(super) fn how(&self) -> How {
        How {
            shared: false,
            wait: match self.wait {
                // Recovery must wait for a live committer; "forever" is bounded here.
                Wait::Forever | Wait::No => Wait::Timeout(DEFAULT_WAIT),
                w => w,
            },
            allow_shared_fs: self.allow_shared_fs,
            cancel: self.cancel.clone(),
            announce: false,
        }
    }
}

impl Settings {
    /// Recovery settings matching a lock request: the same wait and cancel flag.
    pub(crate) fn from_how(how: &lockfile::How) -> Settings {
        Settings {
            wait: match how.wait {
                Wait::No => Wait::No,
                w => w,
            },
            cancel: how.cancel.clone(),
            allow_shared_fs: how.allow_shared_fs,
            abandon: false,
        }
    }
}

/// What settling a lock file's flag came to.
#[derive(Debug)]
pub(crate) enum Settled {
    /// The lock file carries no flag (any more).
    Nothing,
    /// Its size is a flag's but its content is something else: not ours to interpret.
    NotAFlag,
    /// A flag whose journal belongs to a user who could never have replaced the file: it means
    /// nothing, and was ignored.
    Ignored,
    /// A transaction was finished, undone, or its stale flag cleared.
    Recovered(Recovered),
}

/// The lock file `lock` (an entry of `dir`) may carry a transaction's flag: finish or undo that
/// transaction (taking its locks, waiting as `s` says), clear a stale flag, or judge the flag
/// not ours to act on.
///
/// A flag whose journal another user owns is an error of kind [`ErrorKind::Untrusted`] (the
/// caller must not go on as if no transaction were there: its roll-forward could later undo
/// the caller's change), unless that user could never have replaced the file the lock file is
/// for (a sticky directory, a file they do not own): then it means nothing.
pub(crate) fn settle_flag(
    ctx: &Arc<Ctx>,
    dir: &Fd,
    dir_path: &Path,
    lock: &OsStr,
    s: &Settings,
) -> Result<Settled> {
    let sys = &*ctx.sys;
    let lock_path = join(dir_path, lock);
    let lst = match sys.stat_at(dir, lock, false) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(ENOENT) => return Ok(Settled::Nothing),
        Err(e) => return Err(Error::io(Op::Stat, &lock_path, e)),
    };
    let Some(tag) = tag_of_size(lst.size).filter(|_| lst.file_type() == FileType::Regular) else {
        return Ok(Settled::Nothing);
    };
    match look(sys, dir, lock, |_| true).map_err(|e| Error::io(Op::Read, &lock_path, e))? {
        Found::File(_, content) if flag_of(&content) == Some(tag) => {}
        Found::File(_, content) if content.is_empty() => return Ok(Settled::Nothing),
        _ => {
            tracing::debug!(target: "untorn", lock = %lock_path.display(), "lock file holds something other than a transaction flag");
            return Ok(Settled::NotAFlag);
        }
    }
    let jname = journal_name(tag);
    let jpath = join(dir_path, &jname);
    let jst = match sys.stat_at(dir, &jname, false) {
        Ok(st) => Some(st),
        Err(e) if e.raw_os_error() == Some(ENOENT) => None,
        Err(e) => return Err(Error::io(Op::Stat, &jpath, e)),
    };
    let euid = sys.euid();
    if let Some(jst) = jst.filter(|j| !trusts(euid, j.uid)) {
        // Someone else's journal. Could they have changed the file at all?
        let dst = sys
            .stat(dir)
            .map_err(|e| Error::io(Op::Stat, dir_path, e))?;
        let target = lock
            .as_bytes()
            .strip_suffix(b".lock")
            .map(OsStr::from_bytes)
            .and_then(|t| sys.stat_at(dir, t, false).ok());
        if !could_replace(jst.uid, &dst, target.as_ref()) {
            tracing::warn!(target: "untorn", "ignoring the transaction flag in '{}': its journal '{}' belongs to {}, who could not have changed the file", lock_path.display(), jpath.display(), user_name(jst.uid));
            return Ok(Settled::Ignored);
        }
        return Err(untrusted_flag(&lock_path, &jpath, dir_path, jst.uid));
    }
    let home = Home::open(sys, dir, dir_path)?;
    Ok(match recover_txn(ctx, &home, &jname, Some(lock), s)? {
        Some(Recovered::Untrusted { owner, .. }) => {
            return Err(untrusted_flag(&lock_path, &jpath, dir_path, owner))
        }
        Some(Recovered::Refused { path, why }) => {
            tracing::warn!(target: "untorn", "ignoring the transaction flag in '{}': its journal '{}' is not one untorn acts on ({why})", lock_path.display(), path.display());
            Settled::Ignored
        }
        Some(r) => Settled::Recovered(r),
        None => Settled::Nothing,
    })
}

fn untrusted_flag(lock_path: &Path, jpath: &Path, dir_path: &Path, owner: u32) -> Error {
    let who = user_name(owner);
    Error::new(
        Op::Transaction,
        lock_path,
        ErrorKind::Untrusted,
        format!(
            "it carries the flag of an interrupted transaction whose journal '{}' belongs to \
             {who}; untorn does not act on another user's journal. Run `untorn recover {}` as \
             that user, or trust them (--trust-user, UNTORN_TRUST_USERS)",
            jpath.display(),
            dir_path.display()
        ),
    )
}

/// Before a change of the entry `name` of `dir` (a write, an edit): if its lock file carries a
/// transaction's flag, settle that transaction first, so that a change never lands under a
/// transaction that is later rolled forward. Costs one `stat` when there is nothing to do.
/// Returns whether a transaction was recovered (the entry may have changed).
pub(crate) fn settle_before_change(
    ctx: &Arc<Ctx>,
    dir: &Fd,
    dir_path: &Path,
    name: &OsStr,
    s: &Settings,
) -> Result<bool> {
    let lock = lock_name(name);
    match ctx.sys.stat_at(dir, &lock, false) {
        Ok(st) if st.file_type() == FileType::Regular && tag_of_size(st.size).is_some() => {
            Ok(matches!(
                settle_flag(ctx, dir, dir_path, &lock, s)?,
                Settled::Recovered(_)
            ))
        }
        _ => Ok(false),
    }
}
