//! Multi-file transactions: every staged change becomes visible and durable together, or none
//! does.

use crate::error::to_py;
use crate::wait::{until_free, wait_for};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use untorn::{LockOptions, Wait};

struct State {
    txn: untorn::Transaction,
    /// The paths whose locks the commit takes (to wait for them interruptibly first).
    paths: Vec<PathBuf>,
}

/// A transaction being staged. Changes are staged at once (new contents go to temp files
/// beside their targets); `commit()` applies them all or none; `discard()` (or dropping it)
/// abandons them.
#[pyclass(module = "untorn._untorn", frozen)]
pub(crate) struct Transaction {
    inner: Mutex<Option<State>>,
    wait: Wait,
}

fn finished() -> PyErr {
    PyValueError::new_err("the transaction is already committed or discarded")
}

impl Transaction {
    fn guard(&self) -> MutexGuard<'_, Option<State>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the open transaction, with the GIL released.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut State) -> untorn::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut g = self.guard();
            let st = g.as_mut().ok_or_else(finished)?;
            f(st).map_err(to_py)
        })
    }
}

#[pymethods]
impl Transaction {
    /// A new, empty transaction. `timeout` bounds the wait for each file's lock at commit.
    #[new]
    #[pyo3(signature = (*, timeout = None))]
    fn new(timeout: Option<f64>) -> PyResult<Self> {
        let wait = wait_for(timeout, true)?;
        let mut txn = untorn::Transaction::new();
        let mut l = LockOptions::new();
        l.wait(wait);
        txn.lock_options(l);
        Ok(Transaction {
            inner: Mutex::new(Some(State {
                txn,
                paths: Vec::new(),
            })),
            wait,
        })
    }

    /// Stages `data` as the new content of `path`.
    fn write(&self, py: Python<'_>, path: PathBuf, data: Cow<'_, [u8]>) -> PyResult<()> {
        self.with(py, |st| {
            st.txn.write(&path, &data)?;
            st.paths.push(path);
            Ok(())
        })
    }

    /// Stages the removal of `path` (which must exist).
    fn remove(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.with(py, |st| {
            st.txn.remove(&path)?;
            st.paths.push(path);
            Ok(())
        })
    }

    /// Stages renaming `src` (which must exist) to `dst` (replaced if it exists).
    fn rename(&self, py: Python<'_>, src: PathBuf, dst: PathBuf) -> PyResult<()> {
        self.with(py, |st| {
            st.txn.rename(&src, &dst)?;
            st.paths.push(src);
            st.paths.push(dst);
            Ok(())
        })
    }

    /// Applies every staged change, or none. Returns `(written, removed, renamed)`.
    #[allow(clippy::type_complexity)]
    fn commit(
        &self,
        py: Python<'_>,
    ) -> PyResult<(Vec<PathBuf>, Vec<PathBuf>, Vec<(PathBuf, PathBuf)>)> {
        let paths = match self.guard().as_ref() {
            Some(st) => st.paths.clone(),
            None => return Err(finished()),
        };
        // Wait for the locks here, where Ctrl-C can interrupt; the commit takes them (in its
        // own global order) right after.
        let mut sorted = paths;
        sorted.sort();
        sorted.dedup();
        for p in &sorted {
            until_free(py, p, false, self.wait)?;
        }
        py.detach(|| {
            let st = self.guard().take().ok_or_else(finished)?;
            st.txn
                .commit()
                .map(|c| (c.written, c.removed, c.renamed))
                .map_err(to_py)
        })
    }

    /// Abandons the transaction: the staged temps are removed, nothing changes. Does nothing
    /// if it is already finished.
    fn discard(&self, py: Python<'_>) {
        py.detach(|| {
            if let Some(st) = self.guard().take() {
                let _ = st.txn.discard();
            }
        })
    }

    /// Whether the transaction was committed or discarded.
    #[getter]
    fn finished(&self) -> bool {
        self.guard().is_none()
    }

    /// The number of paths the staged changes touch.
    fn __len__(&self) -> usize {
        self.guard().as_ref().map_or(0, |st| st.paths.len())
    }
}
