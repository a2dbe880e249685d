//! Python bindings of untorn: the native module `untorn._untorn`.
//!
//! This crate is a thin layer over the `untorn` library: every write, lock, update, append,
//! backup, restore and transaction is untorn's own code, so Python programs, Rust programs and
//! the `untorn` command exclude each other through the same `FILE.lock` and make the same
//! guarantees. The Pythonic API (`untorn.write_json`, `with untorn.open(...)`, the exception
//! classes) is in `python/untorn/`; build and install it with `pip install ./python`
//! (maturin).
//!
//! - The GIL is released during every file-system call, and while waiting for a lock.
//! - Waits for a lock never block the calling thread, so Ctrl-C interrupts them (see
//!   [`wait`]).
//! - untorn's errors become exceptions of `untorn._errors` that derive from both
//!   `untorn.Error` and the matching builtin (`FileNotFoundError`, `TimeoutError`, ...), with
//!   `.op`, `.path`, `.kind` and `.errno` (see [`error`]).

use pyo3::prelude::*;

mod atomic;
mod backup;
mod error;
mod format;
mod lock;
mod log;
mod output;
mod txn;
mod update;
mod wait;

/// The native half of the `untorn` package; use `import untorn` instead.
#[pymodule]
fn _untorn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<atomic::AtomicFile>()?;
    m.add_class::<lock::Lock>()?;
    m.add_class::<txn::Transaction>()?;
    m.add_class::<output::OutputPath>()?;
    m.add_function(wrap_pyfunction!(output::output_path, m)?)?;
    m.add_function(wrap_pyfunction!(atomic::write, m)?)?;
    m.add_function(wrap_pyfunction!(atomic::open, m)?)?;
    m.add_function(wrap_pyfunction!(lock::lock, m)?)?;
    m.add_function(wrap_pyfunction!(lock::lock_path_for, m)?)?;
    m.add_function(wrap_pyfunction!(update::update, m)?)?;
    m.add_function(wrap_pyfunction!(update::read, m)?)?;
    m.add_function(wrap_pyfunction!(log::append, m)?)?;
    m.add_function(wrap_pyfunction!(log::read_log, m)?)?;
    m.add_function(wrap_pyfunction!(log::repair, m)?)?;
    m.add_function(wrap_pyfunction!(backup::backups, m)?)?;
    m.add_function(wrap_pyfunction!(backup::backup, m)?)?;
    m.add_function(wrap_pyfunction!(backup::restore, m)?)?;
    m.add_function(wrap_pyfunction!(backup::read_valid, m)?)?;
    m.add_function(wrap_pyfunction!(backup::check, m)?)?;
    m.add_function(wrap_pyfunction!(backup::recover, m)?)?;
    m.add_function(wrap_pyfunction!(backup::clean, m)?)?;
    m.add_function(wrap_pyfunction!(format::format_for_path, m)?)?;
    m.add_function(wrap_pyfunction!(format::render, m)?)?;
    m.add_function(wrap_pyfunction!(format::parse, m)?)?;
    m.add_function(wrap_pyfunction!(format::check_format, m)?)?;
    m.add_function(wrap_pyfunction!(temp_file_target, m)?)?;
    m.add_function(wrap_pyfunction!(trust_user, m)?)?;
    Ok(())
}

/// Trusts the state that `user` (a name or a uid) leaves (transaction journals, flags, temps,
/// backups) as the caller's own, for the rest of this process: e.g. root recovering a
/// service's directory. The environment variable UNTORN_TRUST_USERS does the same.
#[pyfunction]
fn trust_user(user: &str) -> PyResult<u32> {
    let uid = untorn::trust::user_id(user).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err(format!("no user '{user}' (a name or a uid)"))
    })?;
    untorn::trust::trust_owner(uid);
    Ok(uid)
}

/// If `name` is the name of an untorn temp file (`.NAME.untorn-XXXXXXXX.tmp`), the name of the
/// file it was for; else None.
#[pyfunction]
fn temp_file_target(name: PathBuf) -> Option<PathBuf> {
    untorn::temp_file_target(name.as_os_str()).map(PathBuf::from)
}

use std::path::PathBuf;
