//! Lock files, low level: a lock file opened safely through its directory's descriptor and
//! locked with `flock(2)`, waiting as asked. No policy here (which file, transactions): that is
//! [`crate::lock`] and [`crate::txn`], which both build on this.
//!
//! Safe to use in a directory others can write:
//! - the name is opened with `O_NOFOLLOW | O_NONBLOCK` in a directory the caller opened: a
//!   symlink planted in its place is refused, and a FIFO cannot make the open wait;
//! - what was opened is checked with `fstat` (a regular file), never looked up again by name;
//! - every wait can be bounded ([`Wait::Timeout`]) or cancelled (a flag a signal handler sets),
//!   since anyone who can open a lock file can hold its lock.

use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::paths::join;
use crate::sys::{errnos::*, Fd, FileType, LockKind, OpenHow, Stat, Sys};
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
    pub(crate) how: How,
    /// Whether to settle a crashed transaction the lock file is flagged by (off for the locks a
    /// recovery itself takes).
    pub(crate) recover_txns: bool,
    pub(crate) ctx: Arc<Ctx>,
}

impl fmt::Debug for LockOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockOptions")
            .field("how", &self.how)
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
            how: How::default(),
            recover_txns: true,
            ctx: Ctx::real(),
        }
    }

    /// A shared lock (many holders at once, none while an exclusive lock is held) instead of an
    /// exclusive one.
    pub fn shared(&mut self, yes: bool) -> &mut Self {
        self.how.shared = yes;
        self
    }

    /// How long to wait (default [`Wait::Forever`]).
    pub fn wait(&mut self, w: Wait) -> &mut Self {
        self.how.wait = w;
        self
    }

    /// Waits at most `d`; shorthand for `wait(Wait::Timeout(d))`.
    pub fn timeout(&mut self, d: Duration) -> &mut Self {
        self.how.wait = Wait::Timeout(d);
        self
    }

    /// Does not wait; shorthand for `wait(Wait::No)`.
    pub fn nonblocking(&mut self) -> &mut Self {
        self.how.wait = Wait::No;
        self
    }

    /// Stops waiting, with [`ErrorKind::Interrupted`], once `flag` is set (e.g. by a signal
    /// handler: `signal_hook::flag::register`). Checked at least every 20 ms while waiting.
    pub fn cancel_when(&mut self, flag: Arc<AtomicBool>) -> &mut Self {
        self.how.cancel = Some(flag);
        self
    }

    /// Lock even on a file system shared between machines (NFS, CIFS, FUSE), where the lock may
    /// exclude only the processes of this machine. Off by default: there, locking is an error
    /// (and no lock file is created). [`crate::allow_shared_fs`] and
    /// `UNTORN_ALLOW_SHARED_FS=1` allow it process-wide.
    pub fn allow_shared_fs(&mut self, yes: bool) -> &mut Self {
        self.how.allow_shared_fs = yes;
        self
    }

    #[doc(hidden)]
    pub fn sys(&mut self, sys: Arc<dyn Sys>) -> &mut Self {
        self.ctx = Ctx::new(sys);
        self
    }

    /// Waits for the lock are announced in the lock file (see [`announce_wait`]).
    pub(crate) fn announce_waits(&mut self) -> &mut Self {
        self.how.announce = true;
        self
    }

    pub(crate) fn with_ctx(&mut self, ctx: Arc<Ctx>) -> &mut Self {
        self.ctx = ctx;
        self
    }

    /// These options, for exclusive locks.
    pub(crate) fn how_exclusive(&self) -> How {
        let mut h = self.how.clone();
        h.shared = false;
        h
    }
}

/// How a lock is taken.
#[derive(Clone, Default)]
pub(crate) struct How {
    pub(crate) shared: bool,
    pub(crate) wait: Wait,
    pub(crate) allow_shared_fs: bool,
    /// Stop waiting (with [`ErrorKind::Interrupted`]) once this is set.
    pub(crate) cancel: Option<Arc<AtomicBool>>,
    /// Announce a wait for the lock in the lock file (appenders: see [`announce_wait`]), and
    /// read the lock file's modification time under the lock.
    pub(crate) announce: bool,
}

impl fmt::Debug for How {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("How")
            .field("shared", &self.shared)
            .field("wait", &self.wait)
            .field("allow_shared_fs", &self.allow_shared_fs)
            .field("cancel", &self.cancel.is_some())
            .field("announce", &self.announce)
            .finish()
    }
}

impl How {
    fn kind(&self) -> LockKind {
        if self.shared {
            LockKind::Shared
        } else {
            LockKind::Exclusive
        }
    }

    /// When waiting must stop, counted from `started`.
    pub(crate) fn deadline(&self, started: Instant) -> Option<Instant> {
        match self.wait {
            Wait::Timeout(d) => Some(started + d),
            Wait::No => Some(started),
            Wait::Forever => None,
        }
    }
}

/// An open lock file, not locked yet.
pub(crate) struct Opened {
    pub(crate) fd: Fd,
    /// Its metadata when opened (device and inode order the locks of a transaction).
    pub(crate) st: Stat,
    pub(crate) path: PathBuf,
}

/// Opens (creating it `0644` less the umask if missing) the lock file `name` of `dir`.
pub(crate) fn open(
    ctx: &Ctx,
    dir: &Fd,
    dir_path: &Path,
    name: &OsStr,
    allow_shared_fs: bool,
) -> Result<Opened> {
    let sys = &*ctx.sys;
    let path = join(dir_path, name);
    // A symlink is refused by O_NOFOLLOW below, a FIFO cannot block an O_NONBLOCK open, and the
    // fstat after it judges what was opened: no window between a check and the use.
    let mut how = OpenHow {
        read: true,
        write: true,
        create: true,
        no_follow: true,
        nonblock: true,
        ..OpenHow::default()
    };
    // 0644 less the umask: readable (so others can take shared locks), never world-writable.
    // Changed only by transactions (its size flags their journal while they commit); a lock file
    // we may only read is still good for locking. An existing one is opened first: a lock the
    // file system refuses (below) then leaves no lock file created for nothing; only a missing
    // one is created, once its directory's file system is judged.
    how.create = false;
    let opened = match sys.open_file(dir, name, how, 0o644) {
        Err(e) if e.raw_os_error() == Some(ENOENT) => {
            let dst = sys
                .stat(dir)
                .map_err(|e| Error::io(Op::Stat, dir_path, e))?;
            refuse_shared(ctx, dst.dev, dir, &path, allow_shared_fs)?;
            how.create = true;
            sys.open_file(dir, name, how, 0o644)
        }
        r => r,
    };
    let fd = match opened {
        Err(e) if matches!(e.raw_os_error(), Some(EACCES | EPERM | EROFS)) => {
            how.write = false;
            how.create = false;
            sys.open_file(dir, name, how, 0o644).map_err(|_| e)
        }
        r => r,
    }
    .map_err(|e| {
        let err = Error::io(Op::Open, &path, e);
        match err.kind() {
            ErrorKind::Symlink => err.with_note(
                "the lock file is a symbolic link; untorn does not follow links for lock files",
            ),
            ErrorKind::IsADirectory => err.with_kind(ErrorKind::NotAFile),
            _ => err,
        }
    })?;
    let st = sys.stat(&fd).map_err(|e| Error::io(Op::Stat, &path, e))?;
    if st.file_type() != FileType::Regular {
        return Err(Error::new(
            Op::Lock,
            &path,
            ErrorKind::NotAFile,
            "the lock file is not a regular file".into(),
        ));
    }
    refuse_shared(ctx, st.dev, &fd, &path, allow_shared_fs)?;
    Ok(Opened { fd, st, path })
}

/// A lock on a file system shared between machines (NFS, CIFS, FUSE: `flock` may exclude only
/// this machine's processes, or nothing), refused unless allowed (`allow_shared_fs`, or
/// process-wide: [`crate::allow_shared_fs`], `UNTORN_ALLOW_SHARED_FS=1`). The FUSE daemons
/// untorn knows ([`crate::ctx::KNOWN_FUSE`]: fuse-overlayfs, exfat-fuse) serve local storage
/// only, and the kernel's `flock` excludes every process of this machine there: allowed.
fn refuse_shared(ctx: &Ctx, dev: u64, fd: &Fd, path: &Path, allowed: bool) -> Result<()> {
    let kind = ctx.fs_kind(dev, fd);
    let known_local = || ctx.keeps(dev, fd) == (crate::ctx::Keeps::Durable, true);
    if kind.is_shared_between_machines()
        && !crate::ctx::shared_fs_allowed(allowed)
        && !(kind == crate::sys::FsKind::Fuse && known_local())
    {
        return Err(Error::new(
            Op::Lock,
            path,
            ErrorKind::Unsupported,
            format!(
                "it is on a file system shared between machines ({kind:?}), where flock may \
                 exclude only this machine's processes; --allow-shared-fs (or \
                 UNTORN_ALLOW_SHARED_FS=1) allows it if that is enough"
            ),
        ));
    }
    Ok(())
}

/// A held lock. Dropping it releases the lock (and so does the death of the process).
pub(crate) struct Held {
    ctx: Arc<Ctx>,
    fd: Option<Fd>,
    /// The lock file's metadata when the lock was taken (its size is a transaction's flag).
    pub(crate) st: Stat,
    pub(crate) path: PathBuf,
    kind: LockKind,
    acquired: Instant,
    /// Whether another process held the lock when it was asked for (the first, non-blocking
    /// try failed): others are at work on the same file.
    pub(crate) contended: bool,
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Held {
    pub(crate) fn fd(&self) -> &Fd {
        self.fd.as_ref().expect("held until dropped")
    }

    pub(crate) fn is_shared(&self) -> bool {
        self.kind == LockKind::Shared
    }

    /// Releases the lock but keeps the lock file open, to lock it again with [`lock_opened`].
    pub(crate) fn unlock_keep_open(mut self) -> Result<Opened> {
        let fd = self.fd.take().expect("held until dropped");
        let r = self.ctx.sys.lock(&fd, LockKind::Unlock, false);
        let path = std::mem::take(&mut self.path);
        r.map_err(|e| Error::io(Op::Lock, &path, e))?;
        Ok(Opened {
            fd,
            st: self.st,
            path,
        })
    }

    pub(crate) fn release(&mut self) -> Result<()> {
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

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// Opens and locks the lock file `name` of `dir`.
pub(crate) fn acquire(
    ctx: &Arc<Ctx>,
    dir: &Fd,
    dir_path: &Path,
    name: &OsStr,
    how: &How,
    started: Instant,
) -> Result<Held> {
    let o = open(ctx, dir, dir_path, name, how.allow_shared_fs)?;
    lock_opened(ctx, o, how, started)
}

/// Locks a lock file opened by [`open`], waiting at most until `how`'s deadline from `started`.
pub(crate) fn lock_opened(ctx: &Arc<Ctx>, o: Opened, how: &How, started: Instant) -> Result<Held> {
    let sys = &*ctx.sys;
    let kind = how.kind();
    let path = o.path;
    let lock_err = |e: std::io::Error| {
        let err = Error::io(Op::Lock, &path, e);
        if err.kind() == ErrorKind::Unsupported {
            err.with_note("the file system does not support flock")
        } else {
            err
        }
    };
    // Try without blocking first: the common, uncontended case costs one system call.
    let got = match sys.lock(&o.fd, kind, false) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(EAGAIN) => false,
        Err(e) => return Err(lock_err(e)),
    };
    if !got {
        if how.wait == Wait::No {
            return Err(Error::new(
                Op::Lock,
                &path,
                ErrorKind::WouldBlock,
                "another process holds the lock".into(),
            ));
        }
        // Only in one's own lock file, and only under its one name: root touches no other
        // user's file here, nor one of its own that someone linked in as a lock file.
        if how.announce && o.st.uid == sys.euid() && o.st.nlink == 1 {
            announce_wait(sys, &o.fd);
        }
        match wait(
            ctx,
            &o.fd,
            kind,
            how.deadline(started),
            how.cancel.as_deref(),
        ) {
            Ok(Waited::Acquired) => {}
            Ok(Waited::TimedOut) => {
                return Err(Error::new(
                    Op::Lock,
                    &path,
                    ErrorKind::TimedOut,
                    format!(
                        "timed out after {}: another process holds the lock",
                        human(started.elapsed())
                    ),
                ))
            }
            Ok(Waited::Cancelled) => {
                return Err(Error::new(
                    Op::Lock,
                    &path,
                    ErrorKind::Interrupted,
                    "interrupted while waiting for the lock".into(),
                ))
            }
            Err(e) => return Err(lock_err(e)),
        }
    }
    // The size now, under the lock: a transaction's flag is set and cleared under it. (And for
    // an appender the modification time: whether others announced a wait.)
    let st = if how.announce {
        sys.stat_times(&o.fd)
    } else {
        sys.stat(&o.fd)
    }
    .map_err(|e| Error::io(Op::Stat, &path, e))?;
    Ok(Held {
        ctx: ctx.clone(),
        fd: Some(o.fd),
        st,
        path,
        kind,
        acquired: Instant::now(),
        contended: !got,
    })
}

/// The nanoseconds past the millisecond of a lock file's modification time that says an
/// appender announced a wait for the lock then ([`announce_wait`]). A time the kernel gives the
/// file (its creation, a transaction's flag) ends so once in a million: then an appender that
/// finds the lock free groups its sync for a moment for nothing, which costs it one short sleep.
const WAITING_NS: i128 = 424_242;
/// An announcement is renewed at most this often (each costs an inode update).
const ANNOUNCE_EVERY: Duration = Duration::from_millis(10);

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Says, in the lock file's modification time, that an appender is about to wait for the lock
/// (its first try failed). An appender that finds the lock free reads it ([`waited_within`]):
/// `flock` does not hand the lock to a waiter, it wakes the waiters and lets them race, and a
/// process appending in a loop through a `LogWriter` takes the lock again before they run. It
/// finds the lock free every time and, alone as far as it can tell, syncs under the lock while
/// the others wait (measured: one of 8 such processes made all its 100 appends, each with its
/// own sync, before the others made any). Reading this, it takes part in a group commit, which
/// lets the lock go while it gathers the others' records.
///
/// Made only in the appender's own lock file with a single link (setting a time, not "now",
/// needs the owner; root must not touch another user's file, nor a file of its own that
/// someone linked in under a lock file's name); a file system that keeps whole seconds never
/// shows an announcement (each wait then sets the time again, and nothing groups by it). Read
/// only where the group commit trusts the lock file's mark (its owner is this user, root or a
/// trusted user, and nobody else may write it).
/// Errors are ignored: an announcement is only a hint.
fn announce_wait(sys: &dyn Sys, fd: &Fd) {
    // A recent announcement stands (one dated ahead, after the clock stepped back, does not:
    // the readers would ignore it).
    if sys
        .stat_times(fd)
        .is_ok_and(|st| waited_within(&st, ANNOUNCE_EVERY))
    {
        return;
    }
    let now_ms = now_ns() / 1_000_000;
    let _ = sys.set_mtime(fd, now_ms * 1_000_000 + WAITING_NS);
}

/// Whether the lock file `st` (stat'ed with its times) says an appender announced a wait for
/// the lock within the last `window` ([`announce_wait`]).
pub(crate) fn waited_within(st: &Stat, window: Duration) -> bool {
    let age_ms = now_ns() / 1_000_000 - st.mtime_ns.div_euclid(1_000_000);
    st.mtime_ns.rem_euclid(1_000_000) == WAITING_NS
        && (0..window.as_millis() as i128).contains(&age_ms)
}

/// A duration as people write it: `200ms`, `1.5s`.
pub(crate) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

enum Waited {
    Acquired,
    TimedOut,
    Cancelled,
}

#[derive(Debug)]
enum WaitState {
    Waiting,
    Acquired,
    Failed(std::io::Error),
    Abandoned,
}

/// How often a cancellable wait looks at its flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// Blocks in the kernel (fair and prompt, unlike polling). Without a deadline or a cancel flag
/// it blocks on this thread; otherwise on a helper thread, giving up at the deadline or when the
/// flag is set.
///
/// A helper that is still blocked when the caller gives up stays blocked until the lock is next
/// released, then releases it at once and ends: the caller never holds a lock it gave up on.
fn wait(
    ctx: &Arc<Ctx>,
    fd: &Fd,
    kind: LockKind,
    deadline: Option<Instant>,
    cancel: Option<&AtomicBool>,
) -> std::io::Result<Waited> {
    if deadline.is_none() && cancel.is_none() {
        loop {
            match ctx.sys.lock(fd, kind, true) {
                Ok(()) => return Ok(Waited::Acquired),
                Err(e) if e.raw_os_error() == Some(EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
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
    let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        match std::mem::replace(&mut *st, WaitState::Waiting) {
            WaitState::Acquired => return Ok(Waited::Acquired),
            WaitState::Failed(e) => return Err(e),
            _ => {}
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            *st = WaitState::Abandoned;
            return Ok(Waited::TimedOut);
        }
        if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
            *st = WaitState::Abandoned;
            return Ok(Waited::Cancelled);
        }
        let mut slice = deadline.map_or(CANCEL_POLL, |d| d - now);
        if cancel.is_some() {
            slice = slice.min(CANCEL_POLL);
        }
        st = cv
            .wait_timeout(st, slice)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// One lock file to take: its directory (open), the directory as named (for messages), the
/// lock file's name in it, and its key in the global order.
pub(crate) struct Want<'a> {
    pub(crate) dir: &'a Fd,
    pub(crate) dir_path: &'a Path,
    pub(crate) name: std::ffi::OsString,
    /// The lock file's full path with symlinks resolved: the global lock order compares these
    /// byte by byte, as `LC_ALL=C sort` would a script's `realpath` output.
    pub(crate) key: PathBuf,
}

/// Takes the locks of `wants` all at once, in the one global order (by [`Want::key`]), each lock
/// file once even if several names lead to it (by device and inode: a lock would otherwise wait
/// for itself). Missing lock files are created. Waits at most until `how`'s deadline from
/// `started` in all. Returns the locks held, and for each want the index of its lock.
pub(crate) fn lock_all(
    ctx: &Arc<Ctx>,
    wants: &[Want<'_>],
    how: &How,
    started: Instant,
) -> Result<(Vec<Held>, Vec<usize>)> {
    use std::os::unix::ffi::OsStrExt;
    let mut opened: Vec<(usize, Opened)> = Vec::with_capacity(wants.len());
    for (i, w) in wants.iter().enumerate() {
        opened.push((
            i,
            open(ctx, w.dir, w.dir_path, &w.name, how.allow_shared_fs)?,
        ));
    }
    opened.sort_by(|a, b| {
        wants[a.0]
            .key
            .as_os_str()
            .as_bytes()
            .cmp(wants[b.0].key.as_os_str().as_bytes())
    });
    let mut held: Vec<Held> = Vec::with_capacity(opened.len());
    let mut index = vec![usize::MAX; wants.len()];
    let mut seen: std::collections::HashMap<(u64, u64), usize> = Default::default();
    for (i, o) in opened {
        let id = (o.st.dev, o.st.ino);
        if let Some(&k) = seen.get(&id) {
            index[i] = k;
            continue;
        }
        held.push(lock_opened(ctx, o, how, started)?);
        seen.insert(id, held.len() - 1);
        index[i] = held.len() - 1;
    }
    Ok((held, index))
}
