//! Locked read-modify-write ([`update`]) and reads under the shared lock ([`read`]).

use crate::atomic::{bytes, open_options};
use crate::error::{not_found, Failure};
use crate::wait::{acquire, retrying, wait_for};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::borrow::Cow;
use std::path::PathBuf;
use untorn::{LockOptions, UpdateOptions};

/// Lock options that do not wait: [`retrying`] does the waiting.
fn now(shared: bool) -> LockOptions {
    let mut l = LockOptions::new();
    l.shared(shared).nonblocking();
    l
}

/// Under the exclusive lock of `path`: reads it, calls `func(old)` (`old` is `bytes`, or None
/// if the file does not exist), and writes what it returns (None: write nothing). Returns
/// whether the file was written.
#[pyfunction]
#[pyo3(signature = (path, func, *, timeout = None, backups = 0, perm = None, durability = "full", symlinks = "follow"))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn update(
    py: Python<'_>,
    path: PathBuf,
    func: Py<PyAny>,
    timeout: Option<f64>,
    backups: usize,
    perm: Option<u32>,
    durability: &str,
    symlinks: &str,
) -> PyResult<bool> {
    let wait = wait_for(timeout, true)?;
    let mut opts = UpdateOptions::new();
    opts.write_options(open_options(backups, perm, durability, false, symlinks)?)
        .lock_options(now(false));
    let call = |old: Option<&[u8]>| -> Result<Option<Vec<u8>>, Failure> {
        Python::attach(|py| {
            let arg = match old {
                Some(b) => bytes(py, b).into_any(),
                None => py.None().into_bound(py),
            };
            let new = func.bind(py).call1((arg,))?;
            if new.is_none() {
                return Ok(None);
            }
            let new: Cow<'_, [u8]> = new.extract()?;
            Ok(Some(new.into_owned()))
        })
    };
    // The lock first, waited for interruptibly, then the update under it: a busy lock is waited
    // for once and kept (trying again after the wait would hand the lock to the next process
    // in line, and wait again: every increment paying for a thread and several wake-ups).
    let lock = acquire(py, &path, &now(false), wait)?;
    py.detach(|| opts.update_locked(lock, &path, call))
        .map_err(Into::into)
}

/// Reads `path` under the shared lock: its bytes, or None if it does not exist (or, with
/// `missing_ok=False`, an `untorn.NotFoundError`).
#[pyfunction]
#[pyo3(signature = (path, *, missing_ok = false, timeout = None))]
pub(crate) fn read<'py>(
    py: Python<'py>,
    path: PathBuf,
    missing_ok: bool,
    timeout: Option<f64>,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let wait = wait_for(timeout, true)?;
    let mut opts = UpdateOptions::new();
    opts.lock_options(now(true));
    let data = retrying(py, &path, &now(true), wait, || {
        opts.read_if_exists(&path).map_err(Failure::from)
    })?;
    match data {
        Some(d) => Ok(Some(bytes(py, &d))),
        None if missing_ok => Ok(None),
        None => Err(not_found(py, "read", &path)),
    }
}
