//! Programs that can only write to a path: [`OutputPath`], over `untorn::OutputPath` (a path
//! in a private directory beside the target, committed to it atomically, or discarded).
//! `untorn.output_path()` (python/untorn) makes it a context manager.

use crate::atomic::open_options;
use crate::error::to_py;
use crate::format::format_from;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Mutex;

/// A path for a program to write a file's new content to.
#[pyclass(module = "untorn._untorn", frozen)]
pub(crate) struct OutputPath {
    inner: Mutex<Option<untorn::OutputPath>>,
    path: PathBuf,
}

fn finished() -> PyErr {
    PyValueError::new_err("the output path was already committed or discarded")
}

/// Makes a private directory beside `target` and a path in it (the target's own name) for a
/// program to write to.
#[pyfunction]
#[pyo3(signature = (target, *, backups = 0, perm = None, durability = "full", symlinks = "follow"))]
pub(crate) fn output_path(
    py: Python<'_>,
    target: PathBuf,
    backups: usize,
    perm: Option<u32>,
    durability: &str,
    symlinks: &str,
) -> PyResult<OutputPath> {
    let o = open_options(backups, perm, durability, false, symlinks)?;
    let out = py
        .detach(|| untorn::OutputPath::new(&target, &o))
        .map_err(to_py)?;
    Ok(OutputPath {
        path: out.path().to_path_buf(),
        inner: Mutex::new(Some(out)),
    })
}

#[pymethods]
impl OutputPath {
    /// The path to give the program.
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.path.as_path().into_pyobject(py)
    }

    /// Checks what the program wrote: "json", "yaml", "toml" (it must parse), or "raw" (it
    /// must exist). Raises `InvalidContentError` or `FileNotFoundError`.
    fn check(&self, py: Python<'_>, format: &str) -> PyResult<()> {
        let v = match format_from(format)? {
            untorn::Format::Raw => untorn::Validator::Exists,
            f => untorn::Validator::Format(f),
        };
        py.detach(|| {
            let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.as_ref().ok_or_else(finished)?.check(&v).map_err(to_py)
        })
    }

    /// Replaces the target with what the program wrote, atomically and durably; returns the
    /// size written. The private directory is removed.
    fn commit(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| {
            let out = self
                .inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or_else(finished)?;
            out.commit().map_err(to_py)
        })
    }

    /// Removes the private directory and what is in it; the target is not touched. Does
    /// nothing if already committed or discarded.
    fn discard(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let out = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
            match out {
                Some(o) => o.discard().map_err(to_py),
                None => Ok(()),
            }
        })
    }

    fn __repr__(&self) -> String {
        format!("<untorn._untorn.OutputPath {:?}>", self.path)
    }
}
