//! Atomic, durable writes: [`write`] and the streaming [`AtomicFile`].

use crate::error::to_py;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::borrow::Cow;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use untorn::{Durability, OpenOptions, Symlinks, TempFile};

/// The write options shared by every function that writes a file.
pub(crate) fn open_options(
    backups: usize,
    perm: Option<u32>,
    durability: &str,
    no_clobber: bool,
    symlinks: &str,
) -> PyResult<OpenOptions> {
    let mut o = OpenOptions::new();
    o.backups(backups)
        .durability(durability_from(durability)?)
        .no_clobber(no_clobber)
        .symlinks(match symlinks {
            "follow" => Symlinks::Follow,
            "replace" => Symlinks::Replace,
            "refuse" => Symlinks::Refuse,
            other => {
                return Err(PyValueError::new_err(format!(
                    "symlinks must be 'follow', 'replace' or 'refuse', not {other:?}"
                )))
            }
        });
    if let Some(m) = perm {
        if m > 0o7777 {
            return Err(PyValueError::new_err(format!(
                "perm must be permission bits (at most 0o7777), not {m:#o}"
            )));
        }
        o.mode(m);
    }
    Ok(o)
}

pub(crate) fn durability_from(s: &str) -> PyResult<Durability> {
    match s {
        "full" => Ok(Durability::Full),
        "file" => Ok(Durability::File),
        "none" => Ok(Durability::None),
        other => Err(PyValueError::new_err(format!(
            "durability must be 'full', 'file' or 'none', not {other:?}"
        ))),
    }
}

/// untorn's error inside an `io::Error` from `AtomicFile`'s `io::Write`, as a Python exception.
fn io_to_py(e: std::io::Error) -> PyErr {
    match e.into_inner() {
        Some(inner) => match inner.downcast::<untorn::Error>() {
            Ok(u) => to_py(*u),
            Err(other) => pyo3::exceptions::PyOSError::new_err(other.to_string()),
        },
        None => pyo3::exceptions::PyOSError::new_err("write failed"),
    }
}

/// Replaces the file at `path` with `data`, atomically and durably. Returns the durability
/// achieved: the level asked for, or "none" where the file system keeps nothing across a power
/// cut (tmpfs, ramfs, overlayfs mounted volatile) or cannot be vouched for (allowed).
#[pyfunction]
#[pyo3(signature = (path, data, *, backups = 0, perm = None, durability = "full", no_clobber = false, symlinks = "follow"))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn write(
    py: Python<'_>,
    path: PathBuf,
    data: Cow<'_, [u8]>,
    backups: usize,
    perm: Option<u32>,
    durability: &str,
    no_clobber: bool,
    symlinks: &str,
) -> PyResult<&'static str> {
    let o = open_options(backups, perm, durability, no_clobber, symlinks)?;
    py.detach(|| o.write(&path, &data))
        .map(durability_name)
        .map_err(to_py)
}

/// A durability as the Python API spells it (the names `durability=` takes).
pub(crate) fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::Full => "full",
        Durability::File => "file",
        Durability::None => "none",
    }
}

/// An atomic replacement in progress: write into it, then `commit()` (or `discard()`).
/// Dropped uncommitted, it is discarded.
#[pyclass(module = "untorn._untorn", frozen)]
pub(crate) struct AtomicFile {
    inner: Mutex<Option<untorn::AtomicFile>>,
    target: PathBuf,
}

fn closed() -> PyErr {
    PyValueError::new_err("I/O operation on a committed or discarded file")
}

fn guard(m: &Mutex<Option<untorn::AtomicFile>>) -> MutexGuard<'_, Option<untorn::AtomicFile>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens an atomic replacement of `path`: a temp file beside it. `temp` is "auto" (an
/// `O_TMPFILE` where the file system has them, else a named temp), "unnamed" or "named"
/// (`.NAME.untorn-XXXXXXXX.tmp`).
#[pyfunction]
#[pyo3(signature = (path, *, backups = 0, perm = None, durability = "full", no_clobber = false, symlinks = "follow", temp = "auto"))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn open(
    py: Python<'_>,
    path: PathBuf,
    backups: usize,
    perm: Option<u32>,
    durability: &str,
    no_clobber: bool,
    symlinks: &str,
    temp: &str,
) -> PyResult<AtomicFile> {
    let mut o = open_options(backups, perm, durability, no_clobber, symlinks)?;
    o.temp_file(match temp {
        "auto" => TempFile::Auto,
        "unnamed" => TempFile::Unnamed,
        "named" => TempFile::Named,
        other => {
            return Err(PyValueError::new_err(format!(
                "temp must be 'auto', 'unnamed' or 'named', not {other:?}"
            )))
        }
    });
    let f = py.detach(|| o.open(&path)).map_err(to_py)?;
    Ok(AtomicFile {
        target: f.target_path(),
        inner: Mutex::new(Some(f)),
    })
}

#[pymethods]
impl AtomicFile {
    /// Writes `data` (all of it) into the temp file; returns its length.
    fn write(&self, py: Python<'_>, data: Cow<'_, [u8]>) -> PyResult<usize> {
        py.detach(|| {
            let mut g = guard(&self.inner);
            let f = g.as_mut().ok_or_else(closed)?;
            f.write_all(&data).map_err(io_to_py)?;
            Ok(data.len())
        })
    }

    /// Writes buffered data out to the temp file (it makes nothing visible or durable: that is
    /// `commit()`'s job).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let mut g = guard(&self.inner);
            match g.as_mut() {
                Some(f) => f.flush().map_err(io_to_py),
                None => Ok(()),
            }
        })
    }

    /// Makes the new content the file's, atomically and durably. If it fails, the file is as
    /// it was, and this object can commit again (after freeing space, say) or discard.
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let mut g = guard(&self.inner);
            let f = g.take().ok_or_else(closed)?;
            f.commit().map_err(|e| {
                let (error, file) = e.into_parts();
                *g = Some(file);
                to_py(error)
            })
        })
    }

    /// Abandons the replacement: the temp file is removed, the file stays as it was. Does
    /// nothing if already committed or discarded.
    fn discard(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let f = guard(&self.inner).take();
            match f {
                Some(f) => f.discard().map_err(to_py),
                None => Ok(()),
            }
        })
    }

    /// The path this file replaces (after following symlinks).
    #[getter]
    fn target_path<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.target.as_path().into_pyobject(py)
    }

    /// The temp file's path, or None while it has no name (an `O_TMPFILE`) or is finished.
    #[getter]
    fn temp_path<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let p = guard(&self.inner)
            .as_ref()
            .and_then(untorn::AtomicFile::temp_path);
        p.as_deref().map(|p: &Path| p.into_pyobject(py)).transpose()
    }

    /// Whether the file was committed or discarded.
    #[getter]
    fn finished(&self) -> bool {
        guard(&self.inner).is_none()
    }

    fn __repr__(&self) -> String {
        format!(
            "<untorn._untorn.AtomicFile {:?}{}>",
            self.target,
            if self.finished() { " finished" } else { "" }
        )
    }
}

/// `data` as Python `bytes`.
pub(crate) fn bytes<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, data)
}
