//! Which [`Sys`] an operation goes through, and what untorn has learned about each mounted file
//! system (O_TMPFILE, RENAME_EXCHANGE and RENAME_NOREPLACE support) while using it.

use crate::sys::{self, FsKind, Sys};
use std::collections::HashMap;
use std::fmt;
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
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Mount {
    pub(crate) kind: Option<FsKind>,
    tmpfile: Option<bool>,
    exchange: Option<bool>,
    noreplace: Option<bool>,
    xattr: Option<bool>,
}

impl Mount {
    fn slot(&mut self, f: Feature) -> &mut Option<bool> {
        match f {
            Feature::Tmpfile => &mut self.tmpfile,
            Feature::Exchange => &mut self.exchange,
            Feature::NoReplace => &mut self.noreplace,
            Feature::Xattr => &mut self.xattr,
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
}

/// Whether an errno from O_TMPFILE or renameat2 means "this file system does not do that"
/// rather than a real failure.
pub(crate) fn is_unsupported(errno: Option<i32>) -> bool {
    use sys::errnos::*;
    matches!(errno, Some(EOPNOTSUPP | EINVAL | ENOSYS | EISDIR))
}
