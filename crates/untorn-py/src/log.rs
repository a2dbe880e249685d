//! Durable appends to logs (plain lines or JSON Lines), and reading them back without a torn
//! tail.

use crate::atomic::{bytes, durability_from};
use crate::error::{to_py, Failure};
use crate::wait::{retrying, until_free, wait_for};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;
use untorn::{AppendOptions, LockOptions, LogFormat, Torn};

fn format(jsonl: bool) -> LogFormat {
    if jsonl {
        LogFormat::JsonLines
    } else {
        LogFormat::Lines
    }
}

/// A torn tail as `(valid_len, junk_len, reason)`.
type TornTuple = (u64, u64, String);

fn torn(t: Torn) -> TornTuple {
    (t.valid_len, t.junk_len, crate::error::snake(t.reason))
}

/// Appends `records` (each one line; a final newline is added where missing) to the log at
/// `path` in one write, durably. Returns the number of bytes appended, and the torn tail cut
/// off before appending (the Python layer warns about it).
#[pyfunction]
#[pyo3(signature = (path, records, *, jsonl = false, durability = "full", timeout = None))]
pub(crate) fn append(
    py: Python<'_>,
    path: PathBuf,
    records: &Bound<'_, PyAny>,
    jsonl: bool,
    durability: &str,
    timeout: Option<f64>,
) -> PyResult<(u64, Option<TornTuple>)> {
    let wait = wait_for(timeout, true)?;
    let mut recs: Vec<Vec<u8>> = Vec::new();
    for r in records.try_iter()? {
        let r = r?;
        let b: Cow<'_, [u8]> = r.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "a record must be bytes, not {}",
                r.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        recs.push(b.into_owned());
    }
    let mut opts = AppendOptions::new();
    // No wait inside untorn (`retrying` waits, interruptibly): a zero timeout.
    opts.durability(durability_from(durability)?)
        .format(format(jsonl))
        .timeout(Duration::ZERO);
    let done = retrying(py, &path, &LockOptions::new(), wait, || {
        opts.append_all(&path, &recs).map_err(Failure::from)
    })?;
    Ok((done.bytes, done.repaired.map(torn)))
}

/// The complete records of a log, and its torn tail if it has one (left out of the records).
#[pyfunction]
#[pyo3(signature = (path, *, jsonl = false, timeout = None))]
pub(crate) fn read_log<'py>(
    py: Python<'py>,
    path: PathBuf,
    jsonl: bool,
    timeout: Option<f64>,
) -> PyResult<(Bound<'py, PyList>, Option<TornTuple>)> {
    until_free(py, &path, true, wait_for(timeout, true)?)?;
    let log = py
        .detach(|| untorn::read_log(&path, format(jsonl)))
        .map_err(to_py)?;
    let records: Vec<Bound<'py, PyBytes>> = log.records.iter().map(|r| bytes(py, r)).collect();
    Ok((PyList::new(py, records)?, log.torn.map(torn)))
}

/// Truncates a log's torn tail away, durably, under the exclusive lock. Returns what was cut
/// (None: the log was whole).
#[pyfunction]
#[pyo3(signature = (path, *, jsonl = false, timeout = None))]
pub(crate) fn repair(
    py: Python<'_>,
    path: PathBuf,
    jsonl: bool,
    timeout: Option<f64>,
) -> PyResult<Option<TornTuple>> {
    until_free(py, &path, false, wait_for(timeout, true)?)?;
    py.detach(|| untorn::repair(&path, format(jsonl)))
        .map(|t| t.map(torn))
        .map_err(to_py)
}
