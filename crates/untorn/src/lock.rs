//! Advisory locks on a sidecar file: shared or exclusive, blocking, non-blocking or with a
//! timeout; released on drop, and by the kernel when the process dies.
//!
//! # Two choices, and why
//!
//! - **A sidecar file, `FILE.lock` beside `FILE`** (beside the file itself: a path through a
//!   symbolic link locks the lock file of the file the link leads to, so every name of one file
//!   takes one lock). The atomic replace swaps `FILE`'s inode on
//!   every write, so a lock on `FILE` itself would be a lock on an inode that is gone after the
//!   next write: the next locker would lock the new inode and both would "hold" the lock. The
//!   sidecar is never replaced. `FILE.lock` is also the name shell scripts already use with
//!   `flock(1)`, and untorn locks it with the same `flock(2)`, so `untorn lock FILE` and
//!   `flock FILE.lock` exclude each other.
//! - **Lock files are never deleted.** Deleting one breaks mutual exclusion: a waiter would hold a
//!   lock on the deleted inode while a newcomer locks a fresh file of the same name
//!   (filelock#27, portalocker#115). An empty file per locked file is the price.
//!
//! `flock` locks belong to the open file, die with the process (no stale locks, no PID files),
//! and are advisory: they exclude only processes that also lock.
//!
//! On file systems shared between machines (NFS, CIFS, FUSE such as sshfs), `flock` may be
//! emulated by the server, local to this machine (NFS `nolock`, most FUSE), or absent
//! (`ENOLCK`); untorn cannot tell which, so it refuses to lock there
//! ([`ErrorKind::Unsupported`]) unless [`LockOptions::allow_shared_fs`] says that excluding the
//! processes of this machine is enough.

use crate::error::{Error, ErrorKind, Op, Result};
use crate::lockfile::{self, Held};
pub use crate::lockfile::{LockOptions, Wait};
use crate::paths::{locate, split};
use crate::sys::Fd;
use crate::txn::settle::{settle_flag, Settings, Settled};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The sidecar lock file of `path`: `path` with `.lock` appended (`state.json` →
/// `state.json.lock`), beside it. (When `path` is a symbolic link, [`LockOptions::lock`] locks
/// the sidecar of the file it leads to.)
pub fn lock_path_for(path: impl AsRef<Path>) -> PathBuf {
    let mut s: OsString = path.as_ref().as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

impl LockOptions {
    /// Locks the sidecar of `path` (`NAME.lock` beside it, see [`lock_path_for`]), creating it
    /// if needed. If `path` is a symbolic link, the sidecar of the file it leads to: every name
    /// of one file takes the same lock.
    pub fn lock(&self, path: impl AsRef<Path>) -> Result<Lock> {
        let path = path.as_ref();
        let t = locate(&self.ctx, path)?;
        self.lock_in(&t.dir, &t.dir_path, &crate::paths::lock_name(&t.name))
    }

    /// Locks the file `lock_file` itself (created if missing; never followed if it is a
    /// symlink). Use this to share a lock file with other tools under another name.
    pub fn lock_file(&self, lock_file: impl AsRef<Path>) -> Result<Lock> {
        let path = lock_file.as_ref();
        let (dir_path, name) = split(path)?;
        let dir = self
            .ctx
            .sys
            .open_dir(None, &dir_path)
            .map_err(|e| Error::io(Op::OpenDir, &dir_path, e))?;
        self.lock_in(&dir, &dir_path, &name)
    }

    /// Locks the lock file `name` of the open directory `dir`. A lock file flagged by a
    /// transaction that crashed (a live one would hold this lock) is settled first, so that the
    /// holder of this lock sees the files all old or all new.
    pub(crate) fn lock_in(&self, dir: &Fd, dir_path: &Path, name: &OsStr) -> Result<Lock> {
        let started = Instant::now();
        let r = self.acquire(dir, dir_path, name, started);
        let kind = if self.how.shared {
            "shared"
        } else {
            "exclusive"
        };
        let wait_us = started.elapsed().as_micros() as u64;
        let path = crate::paths::join(dir_path, name);
        match &r {
            Ok(_) => {
                tracing::debug!(target: "untorn", op = "lock", path = %path.display(), kind, wait_us, outcome = "acquired")
            }
            Err(e) => {
                tracing::debug!(target: "untorn", op = "lock", path = %path.display(), kind, wait_us, outcome = "failed", error = %e)
            }
        }
        r
    }

    /// [`LockOptions::lock_in`] of a lock file already open (`opened`, the entry `name` of
    /// `dir`): one `flock` and one `fstat` when it carries no transaction's flag (a flagged one
    /// is settled first, as [`LockOptions::lock_in`] does).
    pub(crate) fn relock_in(
        &self,
        dir: &Fd,
        dir_path: &Path,
        name: &OsStr,
        opened: lockfile::Opened,
    ) -> Result<Lock> {
        let started = Instant::now();
        let held = lockfile::lock_opened(&self.ctx, opened, &self.how, started)?;
        if !self.recover_txns || crate::txn::tag_of_size(held.st.size).is_none() {
            return Ok(Lock { held });
        }
        drop(held);
        self.lock_in(dir, dir_path, name)
    }

    fn acquire(&self, dir: &Fd, dir_path: &Path, name: &OsStr, started: Instant) -> Result<Lock> {
        let mut settings = Settings::from_how(&self.how);
        if let Some(deadline) = self.how.deadline(started) {
            settings.wait = Wait::Timeout(deadline.saturating_duration_since(Instant::now()));
        }
        for _ in 0..8 {
            let held = lockfile::acquire(&self.ctx, dir, dir_path, name, &self.how, started)?;
            if !self.recover_txns || crate::txn::tag_of_size(held.st.size).is_none() {
                return Ok(Lock { held });
            }
            drop(held);
            match settle_flag(&self.ctx, dir, dir_path, name, &settings)? {
                // Not a transaction's (someone else wrote into the lock file), or a planted flag
                // that means nothing: the lock is still a lock.
                Settled::NotAFlag | Settled::Ignored => {
                    let held =
                        lockfile::acquire(&self.ctx, dir, dir_path, name, &self.how, started)?;
                    return Ok(Lock { held });
                }
                Settled::Nothing | Settled::Recovered(_) => {}
            }
        }
        Err(Error::new(
            Op::Lock,
            crate::paths::join(dir_path, name),
            ErrorKind::Other,
            "an interrupted transaction keeps coming back; run `untorn recover` on its directory"
                .into(),
        ))
    }
}

/// A held lock. Dropping it releases the lock (and so does the death of the process).
#[must_use = "the lock is released as soon as this is dropped"]
pub struct Lock {
    held: Held,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.held.fmt(f)
    }
}

impl Lock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.held.path
    }

    /// Whether this is a shared lock.
    pub fn is_shared(&self) -> bool {
        self.held.is_shared()
    }

    /// Releases the lock, reporting an error (dropping it releases too, silently).
    pub fn unlock(mut self) -> Result<()> {
        self.held.release()
    }

    /// The lock file, held: for what a caller does between unlocking and locking it again.
    pub(crate) fn into_held(self) -> Held {
        self.held
    }
}

/// Takes the exclusive lock of `path` (on `path.lock`), waiting as long as it takes.
pub fn lock(path: impl AsRef<Path>) -> Result<Lock> {
    LockOptions::new().lock(path)
}

/// Takes a shared lock of `path` (on `path.lock`), waiting as long as it takes.
pub fn lock_shared(path: impl AsRef<Path>) -> Result<Lock> {
    LockOptions::new().shared(true).lock(path)
}
