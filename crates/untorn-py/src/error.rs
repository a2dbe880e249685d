//! untorn's errors as Python exceptions.
//!
//! The exception classes live in Python (`untorn/_errors.py`), because each specific one derives
//! from both `untorn.Error` and a builtin (`NotFoundError(Error, FileNotFoundError)`), which a
//! native class cannot. This module picks the class from the [`untorn::ErrorKind`] and fills in
//! the attributes (`op`, `path`, `kind`, `errno`, ...).

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};
use std::path::Path;
use untorn::ErrorKind;

/// The module that defines the exception classes.
const ERRORS_MODULE: &str = "untorn._errors";

/// An error of an operation that may also run Python code (a callback): either untorn's or a
/// Python exception raised by that code, which propagates unchanged.
pub(crate) enum Failure {
    Untorn(untorn::Error),
    Py(PyErr),
}

impl From<untorn::Error> for Failure {
    fn from(e: untorn::Error) -> Self {
        Failure::Untorn(e)
    }
}

impl From<PyErr> for Failure {
    fn from(e: PyErr) -> Self {
        Failure::Py(e)
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        match f {
            Failure::Untorn(e) => to_py(e),
            Failure::Py(e) => e,
        }
    }
}

/// The Python class name for an error kind (defined in `untorn/_errors.py`).
fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "NotFoundError",
        ErrorKind::PermissionDenied => "PermissionDeniedError",
        ErrorKind::AlreadyExists => "AlreadyExistsError",
        ErrorKind::IsADirectory => "DirectoryError",
        ErrorKind::NotADirectory => "NotDirectoryError",
        ErrorKind::WouldBlock => "LockHeldError",
        ErrorKind::TimedOut => "LockTimeoutError",
        ErrorKind::InvalidContent => "InvalidContentError",
        ErrorKind::InvalidInput => "InvalidInputError",
        ErrorKind::NoSpace => "NoSpaceError",
        ErrorKind::ReadOnly => "ReadOnlyError",
        ErrorKind::CrossDevice => "CrossDeviceError",
        ErrorKind::Unsupported => "UnsupportedError",
        ErrorKind::FilterFailed => "Error",
        ErrorKind::Untrusted => "PermissionDeniedError",
        _ => "FileSystemError",
    }
}

/// `CamelCase` (a `Debug` name) as `snake_case`: `NotFound` → `not_found`.
pub(crate) fn snake(debug: impl std::fmt::Debug) -> String {
    let name = format!("{debug:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn errors_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || py.import(ERRORS_MODULE).map(Bound::unbind))
        .map(|m| m.bind(py))
}

/// Builds an exception of class `class` with untorn's attributes.
fn build(py: Python<'_>, class: &str, message: String, attrs: &Bound<'_, PyDict>) -> PyErr {
    let made = errors_module(py)
        .and_then(|m| m.getattr(class))
        .and_then(|cls| cls.call((message.clone(),), Some(attrs)));
    match made {
        Ok(obj) => PyErr::from_value(obj),
        // The package is not importable (the native module used on its own): still an OSError
        // with the message.
        Err(_) => PyOSError::new_err(message),
    }
}

/// The Python exception for an untorn error.
pub(crate) fn to_py(e: untorn::Error) -> PyErr {
    Python::attach(|py| to_py_in(py, &e))
}

fn to_py_in(py: Python<'_>, e: &untorn::Error) -> PyErr {
    let attrs = PyDict::new(py);
    let fill = || -> PyResult<()> {
        attrs.set_item("op", snake(e.op()))?;
        attrs.set_item("path", e.path().as_os_str())?;
        attrs.set_item("other_path", e.other_path().map(Path::as_os_str))?;
        attrs.set_item("kind", snake(e.kind()))?;
        attrs.set_item("errno", e.os_error().and_then(std::io::Error::raw_os_error))?;
        if let Some((line, column)) = e.location() {
            attrs.set_item("line", line)?;
            attrs.set_item("column", column)?;
        }
        Ok(())
    };
    if let Err(err) = fill() {
        return err;
    }
    build(py, class_name(e.kind()), e.to_string(), &attrs)
}

/// A "no such file" error made here (for reads of a missing file without a default), worded as
/// untorn words them.
pub(crate) fn not_found(py: Python<'_>, op: &str, path: &Path) -> PyErr {
    let attrs = PyDict::new(py);
    let fill = || -> PyResult<()> {
        attrs.set_item("op", op)?;
        attrs.set_item("path", path.as_os_str())?;
        attrs.set_item("kind", "not_found")?;
        attrs.set_item("errno", 2)?;
        Ok(())
    };
    if let Err(err) = fill() {
        return err;
    }
    let message = format!(
        "cannot {op} '{}': no such file or directory",
        path.display()
    );
    build(py, "NotFoundError", message, &attrs)
}

/// Whether `e` says only that another process holds the lock (so waiting and trying again may
/// succeed).
pub(crate) fn is_lock_busy(e: &Failure) -> bool {
    matches!(e, Failure::Untorn(e)
        if e.op() == untorn::Op::Lock
            && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}
