//! Waiting for a lock without making the Python program deaf to Ctrl-C.
//!
//! untorn waits for a lock in the kernel (`flock`), and retries when a signal interrupts the
//! wait. From Python, a wait without a timeout would then ignore Ctrl-C until the lock is free.
//! So the bindings never block in the calling thread:
//!
//! - [`acquire`] tries without waiting first (the common, uncontended case: one system call);
//!   if another process holds the lock, a helper thread waits for it with untorn's own
//!   [`LockOptions`] while the calling thread, the GIL released, checks for Python signals
//!   every 50 ms. If a signal handler raises (`KeyboardInterrupt`), the wait is abandoned: the
//!   helper releases the lock the moment it gets it.
//! - [`retrying`] runs an operation that takes the lock itself ([`untorn::update`], a read, an
//!   append) with a lock option that does not wait; when the lock is busy it waits with
//!   [`acquire`] until it is free, releases it, and tries again.

use crate::error::{is_lock_busy, to_py, Failure};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use untorn::{Lock, LockOptions, Wait};

/// How often a waiting call looks for Python signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// The [`Wait`] for Python's `timeout` (seconds; `None`: as long as it takes) and `blocking`.
pub(crate) fn wait_for(timeout: Option<f64>, blocking: bool) -> PyResult<Wait> {
    match (timeout, blocking) {
        (Some(_), false) => Err(PyValueError::new_err(
            "a timeout makes no sense with blocking=False",
        )),
        (None, false) => Ok(Wait::No),
        (None, true) => Ok(Wait::Forever),
        (Some(t), true) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(format!(
            "timeout must be a number of seconds >= 0 or None, not {t}"
        ))),
        (Some(t), true) => Ok(Duration::try_from_secs_f64(t).map_or(Wait::Forever, Wait::Timeout)),
    }
}

/// What is left of `wait` after `started`.
fn remaining(wait: Wait, started: Instant) -> Wait {
    match wait {
        Wait::Timeout(d) => Wait::Timeout(d.saturating_sub(started.elapsed())),
        w => w,
    }
}

/// Takes the lock of `path` (`path.lock`) with `opts` (shared or not), waiting as `wait` says,
/// and interruptible by Python signals while it waits.
pub(crate) fn acquire(
    py: Python<'_>,
    path: &Path,
    opts: &LockOptions,
    wait: Wait,
) -> PyResult<Lock> {
    let mut now = opts.clone();
    now.wait(Wait::No);
    match py.detach(|| now.lock(path)) {
        Ok(lock) => return Ok(lock),
        Err(e) if e.kind() == untorn::ErrorKind::WouldBlock && wait != Wait::No => {}
        Err(e) => return Err(to_py(e)),
    }
    let mut later = opts.clone();
    later.wait(wait);
    let path = path.to_path_buf();
    // Capacity 1: the helper never blocks on sending. If this side has gone (interrupted), the
    // send fails and the lock it carries is dropped, that is, released; a lock sent just
    // before this side went is dropped with the channel.
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("untorn-py-lock".into())
        .stack_size(512 * 1024)
        .spawn(move || {
            let _ = tx.send(later.lock(&path));
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread to wait: {e}")))?;
    let mut rx = rx;
    loop {
        // The receiver moves into the detached closure and back (it is Send, not Sync).
        let (r, back) = py.detach(move || (rx.recv_timeout(SIGNAL_CHECK), rx));
        rx = back;
        match r {
            Ok(r) => return r.map_err(to_py),
            Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err(
                    "the thread waiting for the lock ended without an answer",
                ))
            }
        }
    }
}

/// Runs `attempt` (which takes the lock of `path` itself, without waiting) with the GIL
/// released; while it fails only because another process holds the lock, waits for the lock
/// ([`acquire`], shared or exclusive as `opts` says) until it is free, then tries again.
/// `wait` bounds the whole call.
pub(crate) fn retrying<T, F>(
    py: Python<'_>,
    path: &Path,
    opts: &LockOptions,
    wait: Wait,
    mut attempt: F,
) -> Result<T, Failure>
where
    T: Send,
    F: FnMut() -> Result<T, Failure> + Send,
{
    let started = Instant::now();
    loop {
        match py.detach(&mut attempt) {
            Err(e) if wait != Wait::No && is_lock_busy(&e) => {
                let lock = acquire(py, path, opts, remaining(wait, started))?;
                drop(lock);
            }
            r => return r,
        }
    }
}

/// Waits (interruptibly) until the lock of `path` is free, for operations whose own wait
/// cannot be bounded or interrupted from here (restore, repair): the window in which another
/// process can take the lock before them is then tiny.
pub(crate) fn until_free(py: Python<'_>, path: &Path, shared: bool, wait: Wait) -> PyResult<()> {
    let mut opts = LockOptions::new();
    opts.shared(shared);
    drop(acquire(py, path, &opts, wait)?);
    Ok(())
}
