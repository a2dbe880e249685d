//! Which [`Sys`] an operation goes through, and what untorn has learned about each mounted file
//! system: O_TMPFILE, RENAME_EXCHANGE and RENAME_NOREPLACE support (learned while using it),
//! and what it keeps across a power cut (judged from its type and options, see [`Keeps`]).

use crate::error::{Error, ErrorKind, Op, Result};
use crate::sys::{self, FsKind, MountInfo, Sys};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

/// A feature a file system may or may not have; learned on first use, per mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Feature {
    /// `open(O_TMPFILE)`.
    Tmpfile,
    /// `renameat2(RENAME_EXCHANGE)`.
    Exchange,
    /// `renameat2(RENAME_NOREPLACE)`.
    NoReplace,
    /// User extended attributes (`user.untorn.sum`, see `crate::sum`).
    Xattr,
    /// `linkat`: hard links (exFAT has none).
    Link,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Mount {
    pub(crate) kind: Option<FsKind>,
    tmpfile: Option<bool>,
    exchange: Option<bool>,
    noreplace: Option<bool>,
    xattr: Option<bool>,
    link: Option<bool>,
    /// What it keeps across a power cut, and whether it is FUSE (judged once).
    keeps: Option<(Keeps, bool)>,
    /// The warning that it cannot be durable was given (once per mount and process).
    warned: bool,
}

/// What a mount keeps across a power cut, as far as untorn can tell from `/proc/self/mountinfo`
/// (its type, a FUSE mount's subtype, its options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Keeps {
    /// `fsync` reaches stable storage: ext4, xfs, btrfs, overlayfs, NFS, and the FUSE daemons
    /// known to pass `fsync` of files and directories through ([`KNOWN_FUSE`]).
    Durable,
    /// Nothing survives a power cut (tmpfs, ramfs), or `fsync` is a no-op (overlayfs mounted
    /// `volatile`): a change is atomic, never durable. The string names the mount.
    Volatile(String),
    /// A FUSE mount whose daemon untorn does not know: the kernel may report an `fsync` the
    /// daemon never made (one that does not implement it gets success), so durability cannot
    /// be verified. The string names the mount.
    Unverified(String),
}

/// FUSE daemons that pass `fsync` of files **and** directories through to stable storage,
/// each checked with `strace -f -p DAEMON` during `untorn write` (2026-12-06, Debian 12
/// packages): fuse-overlayfs 1.10 calls `fsync` on the upper file, then on the upper directory
/// after the rename; exfat-fuse 1.3.0 calls `fsync` on the block device for both (its mountinfo
/// type is plain `fuseblk`: it is recognised by the exFAT boot sector of the mount's device).
/// bindfs 1.14.7, for one, passes the file's `fsync` but not the directory's: it is not here.
pub(crate) const KNOWN_FUSE: &[&str] = &["fuse-overlayfs", "exfat"];

/// Judges what a mount keeps, from its `kind` (the magic number) and its mountinfo entry `m`.
/// Returns the verdict and whether the mount is FUSE (whose `syncfs` reaches no daemon).
pub(crate) fn judge(kind: FsKind, m: Option<&MountInfo>) -> (Keeps, bool) {
    let Some(m) = m else {
        return match kind {
            FsKind::Tmpfs => (Keeps::Volatile("tmpfs (memory only)".into()), false),
            FsKind::Fuse => (
                Keeps::Unverified("a FUSE mount of an unknown daemon".into()),
                true,
            ),
            _ => (Keeps::Durable, false),
        };
    };
    let (base, subtype) = match m.fs_type.split_once('.') {
        Some((b, s)) => (b, Some(s)),
        None => (m.fs_type.as_str(), None),
    };
    let at = m.mount_point.display();
    match base {
        "tmpfs" | "ramfs" => (
            Keeps::Volatile(format!("{base} at {at} (memory only)")),
            false,
        ),
        "overlay" if m.has_option("volatile") || m.has_option("fsync=volatile") => (
            Keeps::Volatile(format!(
                "overlayfs mounted volatile at {at} (fsync is a no-op)"
            )),
            false,
        ),
        "fuse" | "fuseblk" => {
            let exfat = m.device_fs.as_deref() == Some("EXFAT");
            let name = subtype.or(exfat.then_some("exfat"));
            match name {
                Some(n) if KNOWN_FUSE.contains(&n) => (Keeps::Durable, true),
                _ => (
                    Keeps::Unverified(format!(
                        "a FUSE mount at {at} ({} of '{}'), whose daemon untorn does not know to \
                         pass fsync through",
                        m.fs_type, m.source
                    )),
                    true,
                ),
            }
        }
        _ => (Keeps::Durable, kind == FsKind::Fuse),
    }
}

/// Whether untorn may use file systems it cannot vouch for, process-wide: locks on NFS, CIFS
/// and FUSE (which may exclude only this machine's processes), and durability on FUSE mounts
/// whose daemon it does not know. From `UNTORN_ALLOW_SHARED_FS=1` (`yes`, `true`), read once,
/// at the first use; or [`allow_shared_fs`].
static ALLOW_SHARED_FS: LazyLock<AtomicBool> = LazyLock::new(|| {
    let v = std::env::var("UNTORN_ALLOW_SHARED_FS").unwrap_or_default();
    AtomicBool::new(matches!(v.trim(), "1" | "yes" | "true"))
});

/// Allows, for the rest of this process, what file systems untorn cannot vouch for give:
/// locks on NFS, CIFS and FUSE (they may exclude only this machine's processes), and writes
/// with durability on FUSE mounts whose daemon untorn does not know to pass `fsync` through
/// (what they give is reported as [`Durability::None`](crate::Durability::None)). The CLI's
/// `--allow-shared-fs` and the environment variable `UNTORN_ALLOW_SHARED_FS=1` do the same;
/// [`LockOptions::allow_shared_fs`](crate::LockOptions::allow_shared_fs) and
/// [`OpenOptions::allow_shared_fs`](crate::OpenOptions::allow_shared_fs) allow it per call.
pub fn allow_shared_fs(yes: bool) {
    ALLOW_SHARED_FS.store(yes, Ordering::SeqCst);
}

/// Whether a call that asked `allowed` (its own option) may use such a file system.
pub(crate) fn shared_fs_allowed(allowed: bool) -> bool {
    allowed || ALLOW_SHARED_FS.load(Ordering::SeqCst)
}

impl Mount {
    fn slot(&mut self, f: Feature) -> &mut Option<bool> {
        match f {
            Feature::Tmpfile => &mut self.tmpfile,
            Feature::Exchange => &mut self.exchange,
            Feature::NoReplace => &mut self.noreplace,
            Feature::Xattr => &mut self.xattr,
            Feature::Link => &mut self.link,
        }
    }
}

/// The system-call implementation plus a cache of per-mount facts, keyed by device number.
///
/// Support for O_TMPFILE and the renameat2 flags is decided per mount (per `st_dev`), never
/// once per process: overlayfs, NFS and FUSE mounts lack some of them while the root file
/// system has all (kopia PR #2402 review; atomic-write-file#3).
pub(crate) struct Ctx {
    pub(crate) sys: Arc<dyn Sys>,
    mounts: Mutex<HashMap<u64, Mount>>,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx").field("sys", &self.sys).finish()
    }
}

static REAL: LazyLock<Arc<Ctx>> = LazyLock::new(|| Ctx::new(Arc::new(sys::Real)));

#[cfg(any(test, feature = "test-support"))]
thread_local! {
    static OVERRIDE: std::cell::RefCell<Option<Arc<Ctx>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with every untorn call on this thread that would reach the real file system going
/// through `sys` instead (tests only: the simulator or the probe behind any public entry point,
/// `backup()`, `restore()`, `recover()` included). Restores the previous one afterwards, even
/// if `f` panics.
#[cfg(any(test, feature = "test-support"))]
pub fn with_sys<R>(sys: Arc<dyn Sys>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<Ctx>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            OVERRIDE.with(|o| *o.borrow_mut() = prev);
        }
    }
    let prev = OVERRIDE.with(|o| o.borrow_mut().replace(Ctx::new(sys)));
    let _restore = Restore(prev);
    f()
}

impl Ctx {
    pub(crate) fn new(sys: Arc<dyn Sys>) -> Arc<Ctx> {
        Arc::new(Ctx {
            sys,
            mounts: Mutex::new(HashMap::new()),
        })
    }

    /// The context of the real file system, shared by the whole process; in test builds, the
    /// one [`with_sys`] put in place on this thread, if any. Every public entry point gets its
    /// context here (or from its options), so the simulator and the probe can drive them all.
    pub(crate) fn real() -> Arc<Ctx> {
        #[cfg(any(test, feature = "test-support"))]
        if let Some(c) = OVERRIDE.with(|o| o.borrow().clone()) {
            return c;
        }
        REAL.clone()
    }

    /// Whether the mount `dev` has `f`: `None` until it has been tried there.
    pub(crate) fn has(&self, dev: u64, f: Feature) -> Option<bool> {
        let mut m = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(dev).or_default().slot(f)
    }

    /// Records whether the mount `dev` has `f`.
    pub(crate) fn learn(&self, dev: u64, f: Feature, yes: bool) {
        let mut m = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(dev).or_default().slot(f) = Some(yes);
        tracing::trace!(target: "untorn", dev, feature = ?f, supported = yes, "learned mount feature");
    }

    /// The kind of file system mounted at `dev` (asked once per mount).
    pub(crate) fn fs_kind(&self, dev: u64, dir: &sys::Fd) -> FsKind {
        {
            let m = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(k) = m.get(&dev).and_then(|m| m.kind) {
                return k;
            }
        }
        let kind = self.sys.fs_kind(dir).unwrap_or(FsKind::Other(0));
        let mut m = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(dev).or_default().kind = Some(kind);
        kind
    }

    /// What the mount at `dev` (holding `dir`) keeps across a power cut, and whether it is
    /// FUSE (judged once per mount).
    /// Whether the mount `dev` has been judged already (see [`Ctx::keeps`]).
    pub(crate) fn knows_keeps(&self, dev: u64) -> bool {
        let m = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&dev).is_some_and(|m| m.keeps.is_some())
    }

    pub(crate) fn keeps(&self, dev: u64, dir: &sys::Fd) -> (Keeps, bool) {
        {
            let m = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(k) = m.get(&dev).and_then(|m| m.keeps.clone()) {
                return k;
            }
        }
        let kind = self.fs_kind(dev, dir);
        // The magic number decides for the file systems whose options change nothing here;
        // mountinfo (a read of /proc, ~30 µs) only for those whose options or subtype matter.
        let info = match kind {
            FsKind::Overlay | FsKind::Fuse | FsKind::Other(_) => {
                self.sys.mount_info(dir).ok().flatten()
            }
            _ => None,
        };
        let judged = judge(kind, info.as_ref());
        tracing::trace!(target: "untorn", dev, mount = ?info, keeps = ?judged.0, "judged mount");
        let mut m = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(dev).or_default().keeps = Some(judged.clone());
        judged
    }

    /// Before a change at `path` (in `dir`, on the mount `dev`) that asks for durability
    /// (`syncs`: its data synced, `Durability::File` or `Full`): returns whether the change will
    /// be durable as asked. On a mount that keeps nothing it will not (the change is still
    /// atomic; [`Ctx::warn_if_volatile`] says so once it is done). On a FUSE mount of an
    /// unknown daemon it is refused ([`ErrorKind::Unsupported`], before anything changed)
    /// unless `allowed` (or [`allow_shared_fs`]).
    pub(crate) fn check_durability(
        &self,
        dev: u64,
        dir: &sys::Fd,
        path: &Path,
        op: Op,
        syncs: bool,
        allowed: bool,
    ) -> Result<bool> {
        if !syncs {
            return Ok(false);
        }
        match self.keeps(dev, dir).0 {
            Keeps::Durable => Ok(true),
            Keeps::Volatile(_) => Ok(false),
            Keeps::Unverified(_) if shared_fs_allowed(allowed) => Ok(false),
            Keeps::Unverified(why) => Err(Error::new(
                op,
                path,
                ErrorKind::Unsupported,
                format!(
                    "it is on {why}, so durability cannot be verified; --allow-shared-fs (or \
                     UNTORN_ALLOW_SHARED_FS=1) accepts what it gives, --durability none asks for none"
                ),
            )),
        }
    }

    /// After a change at `path` that asked for full durability (the default) succeeded on the
    /// mount `dev` (holding `dir`): if the mount keeps nothing across a power cut, one warning
    /// (a `tracing` event; the CLI prints it) per mount and process. `--durability file` or
    /// `none` ask for less, and are not warned.
    pub(crate) fn warn_if_volatile(&self, dev: u64, dir: &sys::Fd, path: &Path) {
        if let Keeps::Volatile(why) = self.keeps(dev, dir).0 {
            if !self.warn_once(dev) {
                tracing::warn!(target: "untorn", "warning: '{}' is on {why}: the change is atomic but will not survive a power cut (--durability file or none silences this)", path.display());
            }
        }
    }

    /// Whether the mount `dev` was already warned about; marks it warned.
    fn warn_once(&self, dev: u64) -> bool {
        let mut m = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut m.entry(dev).or_default().warned, true)
    }
}

/// Whether an errno from O_TMPFILE or renameat2 means "this file system does not do that"
/// rather than a real failure.
pub(crate) fn is_unsupported(errno: Option<i32>) -> bool {
    use sys::errnos::*;
    matches!(errno, Some(EOPNOTSUPP | EINVAL | ENOSYS | EISDIR))
}

/// Renames `from` to `to` in `dir` unless `to` exists (`EEXIST`), by the first way the mount
/// `dev` has: `RENAME_NOREPLACE`; where the file system lacks it (bindfs, exfat-fuse), a link
/// and an unlink; where it lacks hard links too (exFAT), a rename to a name checked free just
/// before (for names no other process picks: fresh backup names, random journal tags). What it
/// lacks is learned once per mount.
pub(crate) fn rename_new(
    ctx: &Ctx,
    dev: u64,
    dir: &sys::Fd,
    from: &std::ffi::OsStr,
    to: &std::ffi::OsStr,
) -> std::io::Result<()> {
    let os = &*ctx.sys;
    if ctx.has(dev, Feature::NoReplace) != Some(false) {
        match os.rename(dir, from, dir, to, sys::RenameMode::NoReplace) {
            Ok(()) => {
                ctx.learn(dev, Feature::NoReplace, true);
                return Ok(());
            }
            Err(e) if is_unsupported(e.raw_os_error()) => ctx.learn(dev, Feature::NoReplace, false),
            Err(e) => return Err(e),
        }
    }
    if ctx.has(dev, Feature::Link) != Some(false) {
        match os.link(dir, from, dir, to) {
            Ok(()) => {
                ctx.learn(dev, Feature::Link, true);
                if let Err(e) = os.unlink(dir, from) {
                    tracing::warn!(target: "untorn", error = %e, "could not remove a temp name");
                }
                return Ok(());
            }
            // `from` is this process's own new file: a refusal is the file system's.
            Err(e) if no_links(e.raw_os_error()) => ctx.learn(dev, Feature::Link, false),
            Err(e) => return Err(e),
        }
    }
    match os.stat_at(dir, to, false) {
        Ok(_) => return Err(sys::os_error(sys::errnos::EEXIST)),
        Err(e) if e.raw_os_error() == Some(sys::errnos::ENOENT) => {}
        Err(e) => return Err(e),
    }
    os.rename(dir, from, dir, to, sys::RenameMode::Replace)
}

/// Whether an errno from `link` of a file this process owns means "this file system has no
/// hard links" (exFAT through FUSE answers `EPERM`).
pub(crate) fn no_links(errno: Option<i32>) -> bool {
    errno == Some(sys::errnos::EPERM) || is_unsupported(errno)
}
