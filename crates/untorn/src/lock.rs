//! Advisory locks on a sidecar file: shared or exclusive, blocking, non-blocking or with a
//! timeout; released on drop, and by the kernel when the process dies.
//!
//! # Two choices, and why
//!
//! - **A sidecar file, `FILE.lock` beside `FILE`.** The atomic replace swaps `FILE`'s inode on
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

use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::sys::{errnos::*, Fd, FileType, LockKind, OpenHow, Sys};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long to wait for a lock that another process holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wait {
    /// Until it is free (the default).
    #[default]
    Forever,
    /// Not at all: fail at once with [`ErrorKind::WouldBlock`].
    No,
    /// Up to this long, then fail with [`ErrorKind::TimedOut`].
    Timeout(Duration),
}

/// The sidecar lock file of `path`: `path` with `.lock` appended (`state.json` →
/// `state.json.lock`), beside it.
pub fn lock_path_for(path: impl AsRef<Path>) -> PathBuf {
    let mut s: OsString = path.as_ref().as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Options for taking a lock.
///
/// ```
/// use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("state.json");
/// let guard = untorn::LockOptions::new()
///     .timeout(Duration::from_secs(5))
///     .lock(&path)?; // locks state.json.lock
/// // ... read, change and write state.json ...
/// drop(guard);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct LockOptions {
    shared: bool,
    wait: Wait,
    allow_shared_fs: bool,
    /// Whether to finish a crashed transaction the lock file points to (off for the locks a
    /// recovery itself takes).
    pub(crate) recover_txns: bool,
    ctx: Arc<Ctx>,
}

impl fmt::Debug for LockOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockOptions")
            .field("shared", &self.shared)
            .field("wait", &self.wait)
            .field("allow_shared_fs", &self.allow_shared_fs)
            .finish()
    }
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions::new()
    }
}

impl LockOptions {
    /// An exclusive lock, waiting as long as it takes.
    pub fn new() -> LockOptions {
        LockOptions {
            shared: false,
            wait: Wait::Forever,
            allow_shared_fs: false,
            recover_txns: true,
            ctx: Ctx::real(),
        }
    }

    /// A shared lock (many holders at once, none while an exclusive lock is held) instead of an
    /// exclusive one.
    pub fn shared(&mut self, yes: bool) -> &mut Self {
        self.shared = yes;
        self
    }

    /// How long to wait (default [`Wait::Forever`]).
    pub fn wait(&mut self, w: Wait) -> &mut Self {
        self.wait = w;
        self
    }

    /// Waits at most `d`; shorthand for `wait(Wait::Timeout(d))`.
    pub fn timeout(&mut self, d: Duration) -> &mut Self {
        self.wait = Wait::Timeout(d);
        self
    }

    /// Does not wait; shorthand for `wait(Wait::No)`.
    pub fn nonblocking(&mut self) -> &mut Self {
        self.wait = Wait::No;
        self
    }

    /// Lock even on a file system shared between machines (NFS, CIFS, FUSE), where the lock may
    /// exclude only the processes of this machine. Off by default: there, locking is an error.
    pub fn allow_shared_fs(&mut self, yes: bool) -> &mut Self {
        self.allow_shared_fs = yes;
        self
    }

    #[doc(hidden)]
    pub fn sys(&mut self, sys: Arc<dyn Sys>) -> &mut Self {
        self.ctx = Ctx::new(sys);
        self
    }

    pub(crate) fn with_ctx(&mut self, ctx: Arc<Ctx>) -> &mut Self {
        self.ctx = ctx;
        self
    }

    /// Locks the sidecar of `path` ([`lock_path_for`]: `path.lock`), creating it if needed.
    pub fn lock(&self, path: impl AsRef<Path>) -> Result<Lock> {
        self.lock_file(lock_path_for(path))
    }

    /// Locks the file `lock_file` itself (created if missing; never followed if it is a
    /// symlink). Use this to share a lock file with other tools under another name.
    pub fn lock_file(&self, lock_file: impl AsRef<Path>) -> Result<Lock> {
        self.lock_at(None, lock_file.as_ref())
    }

    /// [`lock_file`](Self::lock_file) with the directory of `path` already open as `dir` (a
    /// transaction locks many files of one directory).
    pub(crate) fn lock_at(&self, dir: Option<&Fd>, path: &Path) -> Result<Lock> {
        let started = Instant::now();
        let r = self.acquire(dir, path, started);
        let kind = if self.shared { "shared" } else { "exclusive" };
        let wait_us = started.elapsed().as_micros() as u64;
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

    fn acquire(&self, dir: Option<&Fd>, path: &Path, started: Instant) -> Result<Lock> {
        // A lock file flagged by a transaction (its size is the tag of a journal) belongs to one that crashed
        // while committing (a live one would hold this lock): finish or undo it first, so that
        // the holder of this lock sees the files all old or all new.
        for _ in 0..8 {
            let lock = self.acquire_once(dir, path, started)?;
            if !lock.pending_txn || !self.recover_txns {
                return Ok(lock);
            }
            drop(lock);
            if crate::txn::recover_lock_file(&self.ctx, path)?.is_none() {
                // Not a transaction flag (someone else wrote into the lock file): nothing to
                // recover; the lock is still a lock.
                let mut lock = self.acquire_once(dir, path, started)?;
                lock.pending_txn = false;
                return Ok(lock);
            }
        }
        Err(Error::new(
            Op::Lock,
            path,
            ErrorKind::Other,
            "an interrupted transaction keeps coming back; run `untorn recover` on its directory"
                .into(),
        ))
    }

    fn acquire_once(&self, dir: Option<&Fd>, path: &Path, started: Instant) -> Result<Lock> {
        let sys = &*self.ctx.sys;
        let fd = open_lock_file(&self.ctx, dir, path, self.allow_shared_fs)?;
        let kind = if self.shared {
            LockKind::Shared
        } else {
            LockKind::Exclusive
        };
        let lock_err = |e: std::io::Error| {
            let err = Error::io(Op::Lock, path, e);
            if err.kind() == ErrorKind::Unsupported {
                err.with_note("the file system does not support flock")
            } else {
                err
            }
        };
        // Try without blocking first: the common, uncontended case costs one system call.
        match sys.lock(&fd, kind, false) {
            Ok(()) => return Ok(Lock::new(self, fd, path, kind)),
            Err(e) if e.raw_os_error() == Some(EAGAIN) => {}
            Err(e) => return Err(lock_err(e)),
        }
        match self.wait {
            Wait::No => Err(Error::new(
                Op::Lock,
                path,
                ErrorKind::WouldBlock,
                "another process holds the lock".into(),
            )),
            Wait::Forever => loop {
                match sys.lock(&fd, kind, true) {
                    Ok(()) => return Ok(Lock::new(self, fd, path, kind)),
                    Err(e) if e.raw_os_error() == Some(EINTR) => continue,
                    Err(e) => return Err(lock_err(e)),
                }
            },
            Wait::Timeout(d) => match wait_with_timeout(&self.ctx, &fd, kind, d) {
                Ok(true) => Ok(Lock::new(self, fd, path, kind)),
                Ok(false) => Err(Error::new(
                    Op::Lock,
                    path,
                    ErrorKind::TimedOut,
                    format!(
                        "timed out after {}: another process holds the lock",
                        human(started.elapsed())
                    ),
                )),
                Err(e) => Err(lock_err(e)),
            },
        }
    }
}

/// A duration as people write it: `200ms`, `1.5s`.
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Opens (creating if needed) the lock file `path` for locking (in `dir`, its directory, if
/// that is open already).
fn open_lock_file(ctx: &Ctx, dir: Option<&Fd>, path: &Path, allow_shared_fs: bool) -> Result<Fd> {
    let sys = &*ctx.sys;
    let (dir_path, name) = crate::paths::split(path)?;
    let opened;
    let dir = match dir {
        Some(d) => d,
        None => {
            opened = sys
                .open_dir(None, &dir_path)
                .map_err(|e| Error::io(Op::OpenDir, &dir_path, e))?;
            &opened
        }
    };
    // A FIFO planted in its place would block the open: look first. (A symlink is refused by
    // O_NOFOLLOW below, whatever is there by then.)
    match sys.stat_at(dir, &name, false) {
        Ok(st) if st.file_type() == FileType::Symlink => {
            return Err(Error::new(
                Op::Lock,
                path,
                ErrorKind::Symlink,
                "the lock file is a symbolic link; untorn does not follow links for lock files"
                    .into(),
            ))
        }
        Ok(st) if st.file_type() != FileType::Regular => {
            return Err(Error::new(
                Op::Lock,
                path,
                ErrorKind::NotAFile,
                "the lock file is not a regular file".into(),
            ))
        }
        _ => {}
    }
    let mut how = OpenHow {
        read: true,
        write: true,
        create: true,
        no_follow: true,
        ..OpenHow::default()
    };
    // 0644 less the umask: readable (so others can take shared locks), never world-writable.
    // Changed only by transactions (its size flags their journal while they commit); a lock file
    // we may only read is still good for locking.
    let fd = match sys.open_file(dir, &name, how, 0o644) {
        Err(e) if matches!(e.raw_os_error(), Some(EACCES | EPERM | EROFS)) => {
            how.write = false;
            how.create = false;
            sys.open_file(dir, &name, how, 0o644).map_err(|_| e)
        }
        r => r,
    }
    .map_err(|e| {
        let err = Error::io(Op::Open, path, e);
        if err.kind() == ErrorKind::Symlink {
            err.with_note("the lock file is a symbolic link")
        } else {
            err
        }
    })?;
    let st = sys.stat(&fd).map_err(|e| Error::io(Op::Stat, path, e))?;
    let kind = ctx.fs_kind(st.dev, &fd);
    if kind.is_shared_between_machines() && !allow_shared_fs {
        return Err(Error::new(
            Op::Lock,
            path,
            ErrorKind::Unsupported,
            format!(
                "it is on a file system shared between machines ({kind:?}), where flock may \
                 exclude only this machine's processes; allow it explicitly if that is enough"
            ),
        ));
    }
    Ok(fd)
}

#[derive(Debug)]
enum WaitState {
    Waiting,
    Acquired,
    Failed(std::io::Error),
    Abandoned,
}

/// Blocks in the kernel (fair and prompt, unlike polling) on a helper thread, and gives up
/// after `d`. Returns whether the lock was taken.
///
/// A helper that is still blocked when the caller gives up stays blocked until the lock is next
/// released, then releases it at once and ends: the caller never holds a lock it gave up on.
fn wait_with_timeout(
    ctx: &Arc<Ctx>,
    fd: &Fd,
    kind: LockKind,
    d: Duration,
) -> std::io::Result<bool> {
    let dup = ctx.sys.duplicate(fd)?;
    let shared = Arc::new((Mutex::new(WaitState::Waiting), Condvar::new()));
    let (ctx2, shared2) = (ctx.clone(), shared.clone());
    std::thread::Builder::new()
        .name("untorn-lock-wait".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let r = loop {
                match ctx2.sys.lock(&dup, kind, true) {
                    Err(e) if e.raw_os_error() == Some(EINTR) => continue,
                    r => break r,
                }
            };
            let (m, cv) = &*shared2;
            let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
            match (r, &*st) {
                (Ok(()), WaitState::Abandoned) => {
                    let _ = ctx2.sys.lock(&dup, LockKind::Unlock, false);
                }
                (Ok(()), _) => *st = WaitState::Acquired,
                (Err(_), WaitState::Abandoned) => {}
                (Err(e), _) => *st = WaitState::Failed(e),
            }
            cv.notify_all();
        })?;
    let (m, cv) = &*shared;
    let deadline = Instant::now() + d;
    let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        match std::mem::replace(&mut *st, WaitState::Waiting) {
            WaitState::Acquired => return Ok(true),
            WaitState::Failed(e) => return Err(e),
            _ => {}
        }
        let now = Instant::now();
        if now >= deadline {
            *st = WaitState::Abandoned;
            return Ok(false);
        }
        st = cv
            .wait_timeout(st, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// A held lock. Dropping it releases the lock (and so does the death of the process).
pub struct Lock {
    ctx: Arc<Ctx>,
    fd: Option<Fd>,
    /// The lock file was not empty: it points to a crashed transaction's journal.
    pub(crate) pending_txn: bool,
    /// The lock file's size when the lock was taken.
    pub(crate) size: u64,
    path: PathBuf,
    kind: LockKind,
    acquired: Instant,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Lock {
    fn new(opts: &LockOptions, fd: Fd, path: &Path, kind: LockKind) -> Lock {
        let size = opts.ctx.sys.stat(&fd).map_or(0, |st| st.size);
        let pending_txn = size > 0;
        Lock {
            ctx: opts.ctx.clone(),
            fd: Some(fd),
            pending_txn,
            size,
            path: path.to_path_buf(),
            kind,
            acquired: Instant::now(),
        }
    }

    /// The open lock file (for a transaction's flag).
    pub(crate) fn fd(&self) -> &Fd {
        self.fd.as_ref().expect("held until dropped")
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is a shared lock.
    pub fn is_shared(&self) -> bool {
        self.kind == LockKind::Shared
    }

    /// Releases the lock, reporting an error (dropping it releases too, silently).
    pub fn unlock(mut self) -> Result<()> {
        self.release()
    }

    fn release(&mut self) -> Result<()> {
        let Some(fd) = self.fd.take() else {
            return Ok(());
        };
        let r = self
            .ctx
            .sys
            .lock(&fd, LockKind::Unlock, false)
            .map_err(|e| Error::io(Op::Lock, &self.path, e));
        tracing::debug!(
            target: "untorn",
            op = "unlock",
            path = %self.path.display(),
            held_us = self.acquired.elapsed().as_micros() as u64,
        );
        r
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.release();
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
