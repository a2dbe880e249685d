//! Locks: the sidecar `FILE.lock`, locked with `flock(2)`, the same lock as `untorn lock FILE`
//! and `flock FILE.lock`.

use crate::error::to_py;
use crate::wait::{acquire, wait_for};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use untorn::LockOptions;

/// A held lock (see `untorn.lock`); `release()`, leaving the `with` block, or the end of the
/// process releases it.
#[pyclass(module = "untorn._untorn", frozen)]
pub(crate) struct Lock {
    inner: Mutex<Option<untorn::Lock>>,
    path: PathBuf,
    shared: bool,
}

impl Lock {
    fn guard(&self) -> MutexGuard<'_, Option<untorn::Lock>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Takes the lock of `path`: `flock(2)` on the sidecar `path.lock`, the lock that
/// `untorn lock`, `untorn edit` and `flock path.lock` take, so that they exclude each other.
///
/// Exclusive unless `shared=True`. Waits as long as it takes (`timeout=None`; Ctrl-C
/// interrupts the wait), at most `timeout` seconds (then `TimeoutError`), or not at all
/// (`blocking=False`: `BlockingIOError` if another process holds it). The lock is released by
/// `release()`, at the end of a `with` block, and by the kernel when the process dies:
///
///     with untorn.lock("state.json", timeout=5):
///         ...
///
/// Locks belong to the open lock file, not to the process: a second `lock()` of the same file
/// in the same process waits for the first like any other. On NFS, CIFS and FUSE, locking
/// fails (`untorn.UnsupportedError`) unless `allow_shared_fs=True` says that excluding this
/// machine's processes is enough.
#[pyfunction]
#[pyo3(signature = (path, *, shared = false, timeout = None, blocking = true, allow_shared_fs = false))]
pub(crate) fn lock(
    py: Python<'_>,
    path: PathBuf,
    shared: bool,
    timeout: Option<f64>,
    blocking: bool,
    allow_shared_fs: bool,
) -> PyResult<Lock> {
    let wait = wait_for(timeout, blocking)?;
    let mut opts = LockOptions::new();
    opts.shared(shared).allow_shared_fs(allow_shared_fs);
    let l = acquire(py, &path, &opts, wait)?;
    Ok(Lock {
        path: l.path().to_path_buf(),
        inner: Mutex::new(Some(l)),
        shared,
    })
}

/// The sidecar lock file of `path`: `path` with `.lock` appended.
#[pyfunction]
pub(crate) fn lock_path_for(path: PathBuf) -> PathBuf {
    untorn::lock_path_for(path)
}

#[pymethods]
impl Lock {
    /// Releases the lock (again: nothing).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| match self.guard().take() {
            Some(l) => l.unlock(),
            None => Ok(()),
        })
        .map_err(to_py)
    }

    /// The lock file (`FILE.lock`).
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.path.as_path().into_pyobject(py)
    }

    /// Whether this is a shared lock.
    #[getter]
    fn shared(&self) -> bool {
        self.shared
    }

    /// Whether the lock is still held (not released).
    #[getter]
    fn held(&self) -> bool {
        self.guard().is_some()
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<untorn.Lock {} {:?}{}>",
            if self.shared { "shared" } else { "exclusive" },
            self.path,
            if self.held() { "" } else { " released" }
        )
    }
}
