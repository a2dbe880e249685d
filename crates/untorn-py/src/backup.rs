//! Backups (`NAME.<UTC time>.bak` beside the file), restore, validated reads, checks, and
//! recovery after a crash.

use crate::atomic::bytes;
use crate::error::{snake, to_py};
use crate::wait::{until_free, wait_for};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use untorn::recover::{Action, Orphan};
use untorn::{Backup, Format, RecoverOptions, Validator, Which};

/// A backup as `(path, name, time, size)`: `time` in seconds since the epoch.
type BackupTuple = (PathBuf, PathBuf, f64, u64);

fn backup_tuple(b: &Backup) -> BackupTuple {
    let t = b
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    (b.path.clone(), PathBuf::from(&b.name), t, b.size)
}

/// The backups of `path`, newest first.
#[pyfunction]
pub(crate) fn backups(py: Python<'_>, path: PathBuf) -> PyResult<Vec<BackupTuple>> {
    py.detach(|| untorn::backups(&path))
        .map(|v| v.iter().map(backup_tuple).collect())
        .map_err(to_py)
}

/// Takes a backup of `path` now (a reflink where the file system has them, else a copy),
/// keeping at most `keep` backups.
#[pyfunction]
#[pyo3(signature = (path, keep = 5))]
pub(crate) fn backup(py: Python<'_>, path: PathBuf, keep: usize) -> PyResult<BackupTuple> {
    py.detach(|| untorn::backup(&path, keep))
        .map(|b| backup_tuple(&b))
        .map_err(to_py)
}

/// Restores `path` from its `nth` newest backup (1: the newest), or from the backup named
/// `name`. Returns `(restored_from, displaced)`: the version it replaced is kept as a backup.
#[pyfunction]
#[pyo3(signature = (path, nth = 1, *, name = None, timeout = None))]
pub(crate) fn restore(
    py: Python<'_>,
    path: PathBuf,
    nth: usize,
    name: Option<PathBuf>,
    timeout: Option<f64>,
) -> PyResult<(BackupTuple, Option<BackupTuple>)> {
    if nth == 0 {
        return Err(PyValueError::new_err(
            "nth counts from 1 (the newest backup)",
        ));
    }
    let which = match name {
        Some(n) => Which::Named(n),
        None => Which::Nth(nth),
    };
    until_free(py, &path, false, wait_for(timeout, true)?)?;
    let r = py.detach(|| untorn::restore(&path, which)).map_err(to_py)?;
    Ok((
        backup_tuple(&r.from),
        r.displaced.as_ref().map(backup_tuple),
    ))
}

/// A `Validator` from Python: a format name, "exists", "utf8", or a callable taking the bytes
/// and returning True/None (valid) or False, or raising (invalid, the exception's message says
/// why). A `KeyboardInterrupt` or `SystemExit` raised by the callable is kept in `stop` and
/// raised once untorn returns.
fn validator(
    path: &std::path::Path,
    v: Option<&Bound<'_, PyAny>>,
    stop: &Arc<Mutex<Option<PyErr>>>,
) -> PyResult<Validator> {
    let Some(v) = v else {
        return Ok(match Format::from_path(path) {
            Format::Raw => Validator::Exists,
            f => Validator::Format(f),
        });
    };
    if let Ok(name) = v.extract::<String>() {
        return Ok(match name.as_str() {
            "exists" => Validator::Exists,
            "utf8" | "utf-8" => Validator::Utf8,
            other => Validator::Format(crate::format::format_from(other)?),
        });
    }
    if !v.is_callable() {
        return Err(PyTypeError::new_err(
            "validator must be 'json', 'yaml', 'toml', 'utf8', 'exists' or a callable",
        ));
    }
    let func = v.clone().unbind();
    let stop = stop.clone();
    Ok(Validator::custom(move |content: &[u8]| {
        Python::attach(|py| {
            match func.bind(py).call1((bytes(py, content),)) {
                Ok(r) if r.is_none() => Ok(()),
                Ok(r) => match r.is_truthy() {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("rejected by the validator".to_string()),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => {
                    let msg = e.to_string();
                    if !e.is_instance_of::<pyo3::exceptions::PyException>(py) {
                        // KeyboardInterrupt, SystemExit: not a verdict on the content.
                        *stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    }
                    Err(msg)
                }
            }
        })
    }))
}

fn raise_stop(stop: &Arc<Mutex<Option<PyErr>>>) -> PyResult<()> {
    match stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Reads `path` if it is valid, else the newest valid backup. Returns `(content, backup,
/// rejected, restored)`: `backup` is None if the content is the file's own; `rejected` is the
/// exception that says why the file itself was not used.
#[pyfunction]
#[pyo3(signature = (path, validator = None, *, restore = false, timeout = None))]
#[allow(clippy::type_complexity)]
pub(crate) fn read_valid<'py>(
    py: Python<'py>,
    path: PathBuf,
    validator: Option<&Bound<'py, PyAny>>,
    restore: bool,
    timeout: Option<f64>,
) -> PyResult<(
    Bound<'py, PyBytes>,
    Option<BackupTuple>,
    Option<Py<PyAny>>,
    bool,
)> {
    let stop = Arc::new(Mutex::new(None));
    let v = self::validator(&path, validator, &stop)?;
    if restore {
        until_free(py, &path, false, wait_for(timeout, true)?)?;
    }
    let r = py.detach(|| untorn::read_valid(&path, &v, restore));
    raise_stop(&stop)?;
    let r = r.map_err(to_py)?;
    let rejected = r.rejected.map(|e| to_py(e).into_value(py).into_any());
    Ok((
        bytes(py, &r.content),
        r.backup.as_ref().map(backup_tuple),
        rejected,
        r.restored,
    ))
}

/// Checks the file at `path` against `validator` (by default, the format its extension names);
/// raises `untorn.InvalidContentError` (with `.line` and `.column`) if it fails.
#[pyfunction]
#[pyo3(signature = (path, validator = None))]
pub(crate) fn check(
    py: Python<'_>,
    path: PathBuf,
    validator: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let stop = Arc::new(Mutex::new(None));
    let v = self::validator(&path, validator, &stop)?;
    let r = py.detach(|| untorn::check(&path, &v));
    raise_stop(&stop)?;
    r.map_err(to_py)
}

/// An orphaned temp as `(path, target, age, size, in_use)`.
type OrphanTuple = (PathBuf, PathBuf, f64, u64, bool);

fn orphan(o: &Orphan) -> OrphanTuple {
    (
        o.path.clone(),
        PathBuf::from(&o.target),
        o.age.as_secs_f64(),
        o.size,
        o.in_use,
    )
}

fn seconds(s: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| PyValueError::new_err(format!("{what} must be seconds >= 0, not {s}")))
}

/// After a crash: finishes or undoes interrupted transactions in `dir`, removes orphaned temps,
/// and (with `restore_invalid`) restores files of that format that fail to parse from their
/// newest valid backup (`"utf8"`: the files of no known format that are not UTF-8 text). Returns what it did (or, with `dry_run`, would do), as dicts.
#[pyfunction]
#[pyo3(signature = (dir, *, restore_invalid = None, dry_run = false, older_than = 0.0))]
pub(crate) fn recover<'py>(
    py: Python<'py>,
    dir: PathBuf,
    restore_invalid: Option<&str>,
    dry_run: bool,
    older_than: f64,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let mut opts = RecoverOptions::new();
    opts.dry_run(dry_run)
        .older_than(seconds(older_than, "older_than")?);
    match restore_invalid {
        Some("utf8") => {
            opts.restore_invalid_utf8();
        }
        Some(f) => {
            opts.restore_invalid(crate::format::format_from(f)?);
        }
        None => {}
    }
    let actions = py.detach(|| untorn::recover(&dir, &opts)).map_err(to_py)?;
    actions
        .iter()
        .map(|a| {
            let d = PyDict::new(py);
            match a {
                Action::RemovedTemp(o) | Action::KeptTempInUse(o) => {
                    d.set_item(
                        "action",
                        if matches!(a, Action::RemovedTemp(_)) {
                            "removed_temp"
                        } else {
                            "kept_temp_in_use"
                        },
                    )?;
                    d.set_item("path", &o.path)?;
                    d.set_item("orphan", orphan(o))?;
                }
                Action::Restored { path, from, reason } => {
                    d.set_item("action", "restored")?;
                    d.set_item("path", path)?;
                    d.set_item("backup", backup_tuple(from))?;
                    d.set_item("reason", reason)?;
                }
                Action::TxnRolledForward(p) => {
                    d.set_item("action", "txn_rolled_forward")?;
                    d.set_item("path", p)?;
                }
                Action::TxnRolledBack(p) => {
                    d.set_item("action", "txn_rolled_back")?;
                    d.set_item("path", p)?;
                }
                Action::TxnFlagCleared(p) => {
                    d.set_item("action", "txn_flag_cleared")?;
                    d.set_item("path", p)?;
                }
                Action::SkippedDamagedBackup {
                    path,
                    backup,
                    reason,
                } => {
                    d.set_item("action", "skipped_damaged_backup")?;
                    d.set_item("path", path)?;
                    d.set_item("backup", backup_tuple(backup))?;
                    d.set_item("reason", reason)?;
                }
                Action::InvalidWithoutBackup { path, reason } => {
                    d.set_item("action", "invalid_without_backup")?;
                    d.set_item("path", path)?;
                    d.set_item("reason", reason)?;
                }
                other => {
                    d.set_item("action", snake_variant(other))?;
                    d.set_item("path", py.None())?;
                    d.set_item("reason", format!("{other:?}"))?;
                }
            }
            Ok(d)
        })
        .collect()
}

/// The variant name of an action this binding does not know yet, in snake_case.
fn snake_variant(a: &Action) -> String {
    let debug = format!("{a:?}");
    let name = debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("other");
    struct Name<'a>(&'a str);
    impl std::fmt::Debug for Name<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    snake(Name(name))
}

/// Removes orphaned temp files in `dir` older than `older_than` seconds and open in no
/// process. Returns `(removed, kept)`, each a list of `(path, target, age, size, in_use)`.
#[pyfunction]
#[pyo3(signature = (dir, *, older_than = 3600.0, dry_run = false))]
pub(crate) fn clean(
    py: Python<'_>,
    dir: PathBuf,
    older_than: f64,
    dry_run: bool,
) -> PyResult<(Vec<OrphanTuple>, Vec<OrphanTuple>)> {
    let d = seconds(older_than, "older_than")?;
    let c = py
        .detach(|| {
            untorn::CleanOptions::new()
                .older_than(d)
                .dry_run(dry_run)
                .clean(&dir)
        })
        .map_err(to_py)?;
    Ok((
        c.removed.iter().map(orphan).collect(),
        c.kept.iter().map(orphan).collect(),
    ))
}
