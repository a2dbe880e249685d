//! Staging a transaction: the directories it opens once, the temps it writes, and the changes
//! it will make ([`Transaction`], [`Staged`]). Committing is in `commit.rs`.

use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::lockfile::LockOptions;
use crate::paths::Symlinks;
use crate::paths::{join, resolve_in, split, temp_name, DirCache};
use crate::sys::{errnos::*, Fd, FileType, Stat, Sys};
use crate::temp::TempWriter;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A directory of a transaction, opened once; every change in it goes through this descriptor.
pub(crate) struct PartDir {
    pub(crate) fd: Arc<Fd>,
    pub(crate) st: Stat,
    /// As the caller named it (for messages).
    pub(crate) path: PathBuf,
}

/// The directories of a transaction, each once whatever the path it was reached by.
#[derive(Default)]
pub(super) struct Dirs {
    pub(super) list: Vec<PartDir>,
    by_id: HashMap<(u64, u64), usize>,
    by_path: HashMap<PathBuf, usize>,
}

impl Dirs {
    /// Adds the open directory `fd` (named `path`); one file system for all, or an error.
    fn add(&mut self, sys: &dyn Sys, fd: Arc<Fd>, path: &Path) -> Result<usize> {
        // The same open directory again (the files of one directory share its descriptor):
        // known, no fstat.
        if let Some(i) = self.list.iter().position(|d| Arc::ptr_eq(&d.fd, &fd)) {
            return Ok(i);
        }
        let st = sys.stat(&fd).map_err(|e| Error::io(Op::Stat, path, e))?;
        if let Some(&i) = self.by_id.get(&(st.dev, st.ino)) {
            return Ok(i);
        }
        if let Some(first) = self.list.first() {
            if first.st.dev != st.dev {
                return Err(Error::new(
                    Op::Transaction,
                    path,
                    ErrorKind::CrossDevice,
                    "the files of a transaction must all be on one file system".into(),
                ));
            }
        }
        self.list.push(PartDir {
            fd,
            st,
            path: path.to_path_buf(),
        });
        self.by_id.insert((st.dev, st.ino), self.list.len() - 1);
        Ok(self.list.len() - 1)
    }

    /// Opens the directory at `path` (once per path).
    fn open(&mut self, sys: &dyn Sys, path: &Path) -> Result<usize> {
        if let Some(&i) = self.by_path.get(path) {
            return Ok(i);
        }
        let fd = sys
            .open_dir(None, path)
            .map_err(|e| Error::io(Op::OpenDir, path, e))?;
        let i = self.add(sys, Arc::new(fd), path)?;
        self.by_path.insert(path.to_path_buf(), i);
        Ok(i)
    }
}

/// A staged new content: a temp file beside its target. Write into it with `std::io::Write`.
pub struct Staged {
    ctx: Arc<Ctx>,
    pub(super) fd: Fd,
    pub(super) dir: usize,
    pub(super) dir_path: PathBuf,
    pub(super) temp: OsString,
    pub(super) target_name: OsString,
    /// The target as the caller named it (for messages).
    pub(super) path: PathBuf,
    pub(super) existing: Option<Stat>,
    pub(super) final_mode: u32,
    /// The temp's (device, inode), once known.
    pub(super) id: (u64, u64),
    /// The buffer, and the CRC-32 and length of every byte written into the temp so far:
    /// recovery checks them, so that a temp a crash left incomplete never rolls forward.
    pub(super) w: TempWriter,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged").field("path", &self.path).finish()
    }
}

impl Staged {
    pub(super) fn flush_buf(&mut self) -> Result<()> {
        self.w.flush(&*self.ctx.sys, &self.fd, &self.path)
    }
}

impl io::Write for Staged {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.w.write(&*self.ctx.sys, &self.fd, data, &self.path)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf().map_err(Into::into)
    }
}

pub(super) enum Change {
    Put(Box<Staged>),
    Remove {
        path: PathBuf,
        dir: usize,
        name: OsString,
        st: Stat,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
        from_dir: usize,
        from_name: OsString,
        to_dir: usize,
        to_name: OsString,
        st: Stat,
    },
}

/// What a committed transaction changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Committed {
    /// Files written (in the order staged).
    pub written: Vec<PathBuf>,
    /// Files removed.
    pub removed: Vec<PathBuf>,
    /// Files renamed (from, to).
    pub renamed: Vec<(PathBuf, PathBuf)>,
    /// Whether the changes are durable: `false` on a mount that keeps nothing across a power
    /// cut (tmpfs, ramfs, overlayfs mounted `volatile`: they are still all or nothing) or on a
    /// FUSE mount untorn cannot vouch for and was allowed to use.
    pub durable: bool,
}

/// A set of changes to several files that become visible and durable together, or not at all.
/// Dropping it uncommitted discards it (the staged temps are removed); prefer
/// [`discard`](Transaction::discard), which reports errors.
#[must_use = "a transaction does nothing until it is committed"]
pub struct Transaction {
    pub(super) ctx: Arc<Ctx>,
    pub(super) dirs: Dirs,
    pub(super) changes: Vec<Change>,
    /// Every entry a change names, (directory, name), to refuse a second change of one file
    /// whatever path names it.
    touched: HashSet<(usize, OsString)>,
    /// The directories of staged files by path as named (for symlink resolution).
    dir_cache: DirCache,
    pub(super) lock: LockOptions,
    pub(super) finished: bool,
    /// The commit point was reached: from then on the temps belong to the journal (a failure
    /// after it leaves them for the roll-forward, never discards them).
    pub(super) committed: bool,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("changes", &self.changes.len())
            .finish()
    }
}

impl Default for Transaction {
    fn default() -> Self {
        Transaction::new()
    }
}

impl Transaction {
    /// An empty transaction.
    pub fn new() -> Transaction {
        Transaction {
            ctx: Ctx::real(),
            dirs: Dirs::default(),
            changes: Vec::new(),
            touched: Default::default(),
            dir_cache: Default::default(),
            lock: LockOptions::new(),
            finished: false,
            committed: false,
        }
    }

    /// How the locks are taken at commit (a timeout, a cancel flag, ...).
    pub fn lock_options(&mut self, l: LockOptions) -> &mut Self {
        self.lock = l;
        self
    }

    #[doc(hidden)]
    pub fn sys(&mut self, sys: Arc<dyn Sys>) -> &mut Self {
        self.ctx = Ctx::new(sys);
        self.lock.with_ctx(self.ctx.clone());
        self
    }

    fn claim(&mut self, dir: usize, name: &OsStr, path: &Path) -> Result<()> {
        if !self.touched.insert((dir, name.to_os_string())) {
            return Err(Error::new(
                Op::Transaction,
                path,
                ErrorKind::InvalidInput,
                "the transaction already changes this file (perhaps under another name)".into(),
            ));
        }
        Ok(())
    }

    /// Stages a new content for `path` (symlinks followed: the file they lead to is replaced),
    /// to be written into the returned [`Staged`] file.
    pub fn create(&mut self, path: impl AsRef<Path>) -> Result<&mut Staged> {
        let path = path.as_ref();
        let ctx = self.ctx.clone();
        let sys = &*ctx.sys;
        let t = resolve_in(&ctx, path, Symlinks::Follow, Some(&mut self.dir_cache))?;
        let dir = self.dirs.add(sys, t.dir.clone(), &t.dir_path)?;
        refuse_attrs(&self.dirs.list[dir], t.existing.as_ref(), path)?;
        self.claim(dir, &t.name, path)?;
        let final_mode = match t.existing {
            Some(st) if st.file_type() == FileType::Regular => st.permissions(),
            _ => 0o666 & !sys.umask(),
        };
        let mut tries = 0;
        let (temp, fd) = loop {
            let name = temp_name(&t.name);
            match sys.create_temp(&t.dir, &name, 0o600) {
                Ok(fd) => break (name, fd),
                Err(e) if e.raw_os_error() == Some(EEXIST) && tries < 100 => tries += 1,
                Err(e) => {
                    self.touched.remove(&(dir, t.name.clone()));
                    return Err(Error::io(Op::CreateTemp, path, e));
                }
            }
        };
        self.changes.push(Change::Put(Box::new(Staged {
            ctx: self.ctx.clone(),
            fd,
            dir,
            dir_path: t.dir_path,
            temp,
            target_name: t.name,
            path: path.to_path_buf(),
            existing: t.existing,
            final_mode,
            id: (0, 0),
            w: TempWriter::default(),
        })));
        match self.changes.last_mut() {
            Some(Change::Put(s)) => Ok(s),
            _ => unreachable!("just pushed"),
        }
    }

    /// Stages `contents` as the new content of `path`.
    pub fn write(&mut self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<()> {
        let s = self.create(path)?;
        let sys = s.ctx.sys.clone();
        s.w.write_all(&*sys, &s.fd, contents.as_ref(), &s.path)?;
        Ok(())
    }

    /// The directory entry `path` names (not following a final symlink: a removal or rename
    /// acts on the entry itself), which must exist and not be a directory.
    fn existing(&mut self, path: &Path) -> Result<(usize, OsString, Stat)> {
        let sys = &*self.ctx.sys;
        let (dir_path, name) = split(path)?;
        let dir = self.dirs.open(sys, &dir_path)?;
        let st = sys
            .stat_at(&self.dirs.list[dir].fd, &name, false)
            .map_err(|e| Error::io(Op::Stat, path, e))?;
        if st.file_type() == FileType::Directory {
            return Err(Error::new(
                Op::Transaction,
                path,
                ErrorKind::IsADirectory,
                "is a directory".into(),
            ));
        }
        Ok((dir, name, st))
    }

    /// Stages the removal of `path` (which must exist).
    pub fn remove(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (dir, name, st) = self.existing(path)?;
        refuse_attrs(&self.dirs.list[dir], Some(&st), path)?;
        self.claim(dir, &name, path)?;
        self.changes.push(Change::Remove {
            path: path.to_path_buf(),
            dir,
            name,
            st,
        });
        Ok(())
    }

    /// Stages renaming `from` (which must exist) to `to` (replaced if it exists).
    pub fn rename(&mut self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        let (from_dir, from_name, st) = self.existing(from)?;
        let (to_path, to_name) = split(to)?;
        let to_dir = self.dirs.open(&*self.ctx.sys, &to_path)?;
        refuse_attrs(&self.dirs.list[from_dir], Some(&st), from)?;
        let dst = self.dirs.list[to_dir].fd.clone();
        let to_st = self.ctx.sys.stat_at(&dst, &to_name, false).ok();
        refuse_attrs(&self.dirs.list[to_dir], to_st.as_ref(), to)?;
        self.claim(from_dir, &from_name, from)?;
        if let Err(e) = self.claim(to_dir, &to_name, to) {
            self.touched.remove(&(from_dir, from_name));
            return Err(e);
        }
        self.changes.push(Change::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            from_dir,
            from_name,
            to_dir,
            to_name,
            st,
        });
        Ok(())
    }

    pub(super) fn discard_temps(&mut self) -> Result<()> {
        let mut first_err = None;
        for c in &self.changes {
            if let Change::Put(s) = c {
                if !s.temp.is_empty() {
                    if let Err(e) = self.ctx.sys.unlink(&self.dirs.list[s.dir].fd, &s.temp) {
                        if e.raw_os_error() != Some(ENOENT) && first_err.is_none() {
                            first_err = Some(Error::io(Op::Remove, join(&s.dir_path, &s.temp), e));
                        }
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Abandons the transaction: the staged temps are removed, nothing changes. An error says
    /// which temp could not be removed (it is then an orphan for `untorn clean`).
    pub fn discard(mut self) -> Result<()> {
        self.finished = true;
        self.discard_temps()
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.discard_temps();
        }
    }
}

/// Refuses to stage a change that a file attribute would make fail at commit, after the temps
/// and lock files were made: a directory marked immutable or append-only (`chattr +i`/`+a`:
/// nothing in it can be renamed or removed, so neither a staged temp nor the change could be
/// undone or applied), or an `entry` so marked. The commit checks again under the locks.
fn refuse_attrs(dir: &PartDir, entry: Option<&Stat>, path: &Path) -> Result<()> {
    let marked = Stat::IMMUTABLE | Stat::APPEND_ONLY;
    let why = if dir.st.attrs & marked != 0 {
        format!(
            "its directory '{}' is immutable or append-only (chattr +i/+a): nothing in it can be \
             renamed or removed",
            dir.path.display()
        )
    } else if entry.is_some_and(|st| st.attrs & marked != 0) {
        "the file is immutable or append-only (chattr +i/+a)".to_string()
    } else {
        return Ok(());
    };
    Err(Error::new(
        Op::Transaction,
        path,
        ErrorKind::PermissionDenied,
        format!("{why} (checked before anything was staged)"),
    ))
}
