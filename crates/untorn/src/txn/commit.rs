//! Staging and committing a transaction: the steps of the protocol in the module doc of
//! [`crate::txn`], one function each, in order.

use super::journal::{self, Journal};
use super::recover::{settle_flag, Settings, Settled};
use super::{journal_name, tag_of_size, MAX_TAG};
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::lock::{LockOptions, Wait};
use crate::lockfile::{self, Held, Want};
use crate::paths::{join, resolve_in, split, temp_name, DirCache};
use crate::sys::{errnos::*, Fd, FileType, RenameMode, Stat, Sys};
use crate::Symlinks;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A directory of a transaction, opened once; every change in it goes through this descriptor.
pub(crate) struct PartDir {
    pub(crate) fd: Arc<Fd>,
    pub(crate) st: Stat,
    /// As the caller named it (for messages).
    pub(crate) path: PathBuf,
}

/// The directories of a transaction, each once whatever the path it was reached by.
#[derive(Default)]
struct Dirs {
    list: Vec<PartDir>,
    by_id: HashMap<(u64, u64), usize>,
    by_path: HashMap<PathBuf, usize>,
}

impl Dirs {
    /// Adds the open directory `fd` (named `path`); one file system for all, or an error.
    fn add(&mut self, sys: &dyn Sys, fd: Arc<Fd>, path: &Path) -> Result<usize> {
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
    fd: Fd,
    dir: usize,
    dir_path: PathBuf,
    temp: OsString,
    target_name: OsString,
    /// The target as the caller named it (for messages).
    path: PathBuf,
    existing: Option<Stat>,
    final_mode: u32,
    buf: Vec<u8>,
    /// The temp's (device, inode), once known.
    id: (u64, u64),
    /// CRC-32 and length of every byte written into the temp so far: recovery checks them, so
    /// that a temp a crash left incomplete never rolls forward.
    crc: crc32fast::Hasher,
    len: u64,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged").field("path", &self.path).finish()
    }
}

impl Staged {
    fn flush_buf(&mut self) -> Result<()> {
        let mut done = 0;
        while done < self.buf.len() {
            match self.ctx.sys.write(&self.fd, &self.buf[done..]) {
                Ok(0) => {
                    self.buf.drain(..done);
                    return Err(Error::io(
                        Op::Write,
                        &self.path,
                        io::ErrorKind::WriteZero.into(),
                    ));
                }
                Ok(n) => {
                    self.crc.update(&self.buf[done..done + n]);
                    self.len += n as u64;
                    done += n;
                }
                Err(e) => {
                    self.buf.drain(..done);
                    return Err(Error::io(Op::Write, &self.path, e));
                }
            }
        }
        self.buf.clear();
        Ok(())
    }
}

impl io::Write for Staged {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > 64 * 1024 {
            self.flush_buf()?;
        }
        if data.len() >= 64 * 1024 {
            let n = self
                .ctx
                .sys
                .write(&self.fd, data)
                .map_err(|e| io::Error::from(Error::io(Op::Write, &self.path, e)))?;
            self.crc.update(&data[..n]);
            self.len += n as u64;
            return Ok(n);
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf().map_err(Into::into)
    }
}

enum Change {
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
}

/// A set of changes to several files that become visible and durable together, or not at all.
/// Dropping it uncommitted discards it (the staged temps are removed); prefer
/// [`discard`](Transaction::discard), which reports errors.
#[must_use = "a transaction does nothing until it is committed"]
pub struct Transaction {
    ctx: Arc<Ctx>,
    dirs: Dirs,
    changes: Vec<Change>,
    /// Every entry a change names, (directory, name), to refuse a second change of one file
    /// whatever path names it.
    touched: HashSet<(usize, OsString)>,
    /// The directories of staged files by path as named (for symlink resolution).
    dir_cache: DirCache,
    lock: LockOptions,
    finished: bool,
    /// The commit point was reached: from then on the temps belong to the journal (a failure
    /// after it leaves them for the roll-forward, never discards them).
    committed: bool,
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
            buf: Vec::new(),
            id: (0, 0),
            crc: crc32fast::Hasher::new(),
            len: 0,
        })));
        match self.changes.last_mut() {
            Some(Change::Put(s)) => Ok(s),
            _ => unreachable!("just pushed"),
        }
    }

    /// Stages `contents` as the new content of `path`.
    pub fn write(&mut self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<()> {
        let s = self.create(path)?;
        s.buf.extend_from_slice(contents.as_ref());
        if s.buf.len() >= 64 * 1024 {
            s.flush_buf()?;
        }
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

    /// Makes every staged change visible and durable, or none of them. On error before the
    /// commit point, nothing changed and the temps are gone; an error after it (rare: the
    /// checks before the commit point catch what they can) leaves the journal, and the next
    /// untorn operation on any of the files (or `untorn recover`) completes the transaction.
    pub fn commit(mut self) -> Result<Committed> {
        let started = Instant::now();
        let r = self.commit_steps(started);
        self.finished = true;
        let n = self.changes.len();
        match &r {
            Ok(_) => {
                tracing::debug!(target: "untorn", op = "txn", files = n, duration_us = started.elapsed().as_micros() as u64, outcome = "committed")
            }
            Err(e) => {
                tracing::debug!(target: "untorn", op = "txn", files = n, duration_us = started.elapsed().as_micros() as u64, outcome = "failed", error = %e)
            }
        }
        if r.is_err() && !self.committed {
            let _ = self.discard_temps();
        }
        r
    }

    fn commit_steps(&mut self, started: Instant) -> Result<Committed> {
        if self.changes.is_empty() {
            return Ok(Committed::default());
        }
        self.finish_temps()?; // end of step 1
        let keys = self.order_keys();
        let locks = self.take_locks(&keys, started)?; // step 2
        self.check_applicable()?; // step 3
        let journal = self.journal(&keys);
        let (tag, name) = self.publish_journal(&journal.encode())?; // step 4
        if let Err(e) = self.flag(&locks, tag) {
            // step 5
            self.unpublish(&name);
            clear_flags(&*self.ctx.sys, &locks);
            return Err(e);
        }
        self.commit_point(&locks, &name)?; // step 6
        let out = self.apply(); // step 7
        self.sync_dirs()?;
        let out = out?;
        self.unpublish(&name); // step 8
        clear_flags(&*self.ctx.sys, &locks);
        for c in &mut self.changes {
            if let Change::Put(s) = c {
                s.temp = OsString::new();
            }
        }
        Ok(out)
    }

    /// Step 1, end: every temp written out, with its final owner and mode.
    fn finish_temps(&mut self) -> Result<()> {
        let sys = &*self.ctx.sys;
        for c in &mut self.changes {
            if let Change::Put(s) = c {
                s.flush_buf()?;
                let shown = join(&s.dir_path, &s.temp);
                let st = sys
                    .stat(&s.fd)
                    .map_err(|e| Error::io(Op::Stat, &shown, e))?;
                s.id = (st.dev, st.ino);
                crate::temp::set_final_metadata(
                    sys,
                    &s.fd,
                    &shown,
                    s.existing,
                    true,
                    s.final_mode,
                )?;
            }
        }
        Ok(())
    }

    /// Each directory's full path with symlinks resolved: the journal's hint to find it again,
    /// and the base of the lock order.
    fn order_keys(&self) -> Vec<PathBuf> {
        let sys = &*self.ctx.sys;
        let cwd = sys.current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        self.dirs
            .list
            .iter()
            .map(|d| sys.fd_path(&d.fd).unwrap_or_else(|_| cwd.join(&d.path)))
            .collect()
    }

    /// Every entry the transaction changes, (directory, name), in the order staged.
    fn entries(&self) -> Vec<(usize, &OsStr)> {
        let mut v = Vec::new();
        for c in &self.changes {
            match c {
                Change::Put(s) => v.push((s.dir, s.target_name.as_os_str())),
                Change::Remove { dir, name, .. } => v.push((*dir, name.as_os_str())),
                Change::Rename {
                    from_dir,
                    from_name,
                    to_dir,
                    to_name,
                    ..
                } => {
                    v.push((*from_dir, from_name.as_os_str()));
                    v.push((*to_dir, to_name.as_os_str()));
                }
            }
        }
        v
    }

    /// Step 2: the lock of every file, all at once, in the global order. A lock file flagged by
    /// a transaction that crashed is settled first, with none of our locks held (its recovery
    /// takes its own locks, which may include ours).
    fn take_locks(&mut self, keys: &[PathBuf], started: Instant) -> Result<Vec<Held>> {
        let ctx = self.ctx.clone();
        let how = self.lock.how_exclusive();
        let settings = Settings::from_how(&how);
        let entries: Vec<(usize, OsString)> = self
            .entries()
            .into_iter()
            .map(|(d, n)| (d, lock_name(n)))
            .collect();
        // Lock files whose flag was judged not ours to act on (a planted one that means
        // nothing): we take them over.
        let mut ignored: HashSet<(u64, u64)> = HashSet::new();
        for _ in 0..8 {
            let wants: Vec<Want> = entries
                .iter()
                .map(|(d, n)| Want {
                    dir: &self.dirs.list[*d].fd,
                    dir_path: &self.dirs.list[*d].path,
                    name: n.clone(),
                    key: keys[*d].join(n),
                })
                .collect();
            let (locks, index) = lockfile::lock_all(&ctx, &wants, &how, started)?;
            let flagged: Vec<usize> = (0..wants.len())
                .filter(|&i| {
                    let st = &locks[index[i]].st;
                    tag_of_size(st.size).is_some() && !ignored.contains(&(st.dev, st.ino))
                })
                .collect();
            if flagged.is_empty() {
                return Ok(locks);
            }
            let ids: Vec<(u64, u64)> = flagged
                .iter()
                .map(|&i| (locks[index[i]].st.dev, locks[index[i]].st.ino))
                .collect();
            drop(locks);
            for (&i, id) in flagged.iter().zip(ids) {
                let (d, n) = &entries[i];
                let dir = &self.dirs.list[*d];
                match settle_flag(&ctx, &dir.fd, &dir.path, n, &settings)? {
                    Settled::Ignored | Settled::NotAFlag => {
                        ignored.insert(id);
                    }
                    Settled::Recovered(_) | Settled::Nothing => {}
                }
            }
        }
        Err(Error::new(
            Op::Lock,
            &self.dirs.list[0].path,
            ErrorKind::Other,
            "an interrupted transaction keeps coming back; run `untorn recover` on its directory"
                .into(),
        ))
    }

    /// Step 3: under the locks, everything that could make a rename or removal fail after the
    /// commit point, checked before it: nothing has changed yet if one fails.
    fn check_applicable(&mut self) -> Result<()> {
        let sys = &*self.ctx.sys;
        let euid = sys.euid();
        // The directories as they are now (their flags may have changed since staging).
        let mut dir_now = Vec::with_capacity(self.dirs.list.len());
        for d in &self.dirs.list {
            dir_now.push(
                sys.stat(&d.fd)
                    .map_err(|e| Error::io(Op::Stat, &d.path, e))?,
            );
        }
        // May this process rename or remove the entry `name` (now `st`, if it exists) of
        // directory `d`?
        let may_change = |d: usize, st: Option<&Stat>, path: &Path| -> Result<()> {
            let dst = &dir_now[d];
            if dst.attrs & (Stat::IMMUTABLE | Stat::APPEND_ONLY) != 0 {
                return refuse(
                    &self.dirs.list[d].path,
                    ErrorKind::PermissionDenied,
                    "the directory is immutable or append-only (chattr +i/+a): its entries \
                     cannot be renamed or removed"
                        .into(),
                );
            }
            if let Some(st) = st {
                if st.attrs & (Stat::IMMUTABLE | Stat::APPEND_ONLY) != 0 {
                    return refuse(
                        path,
                        ErrorKind::PermissionDenied,
                        "the file is immutable or append-only (chattr +i/+a)".into(),
                    );
                }
                let sticky = dst.permissions() & 0o1000 != 0;
                if sticky && euid != 0 && euid != dst.uid && euid != st.uid {
                    return refuse(
                        path,
                        ErrorKind::PermissionDenied,
                        format!(
                            "it belongs to {} in a sticky directory: only its owner may replace \
                             or remove it",
                            crate::trust::user_name(st.uid)
                        ),
                    );
                }
            }
            Ok(())
        };
        let now = |d: usize, name: &OsStr, path: &Path| -> Result<Option<Stat>> {
            match sys.stat_at(&self.dirs.list[d].fd, name, false) {
                Ok(st) => Ok(Some(st)),
                Err(e) if e.raw_os_error() == Some(ENOENT) => Ok(None),
                Err(e) => Err(Error::io(Op::Stat, path, e)),
            }
        };
        let not_a_file = |path: &Path, st: &Stat| -> Result<()> {
            match st.file_type() {
                FileType::Directory => {
                    refuse(path, ErrorKind::IsADirectory, "is a directory".into())
                }
                FileType::Other => refuse(
                    path,
                    ErrorKind::NotAFile,
                    "not a regular file (a FIFO, socket or device)".into(),
                ),
                _ => Ok(()),
            }
        };
        let same = |path: &Path, was: &Stat, st: Option<Stat>| -> Result<Stat> {
            match st {
                Some(st) if (st.dev, st.ino) == (was.dev, was.ino) => Ok(st),
                _ => refuse(
                    path,
                    ErrorKind::Other,
                    "it changed since it was staged (another process replaced or removed it)"
                        .into(),
                ),
            }
        };
        for c in &self.changes {
            match c {
                Change::Put(s) => {
                    let st = now(s.dir, &s.target_name, &s.path)?;
                    if let Some(st) = &st {
                        if st.file_type() == FileType::Symlink {
                            return refuse(
                                &s.path,
                                ErrorKind::Other,
                                "it became a symbolic link since it was staged".into(),
                            );
                        }
                        not_a_file(&s.path, st)?;
                    }
                    may_change(s.dir, st.as_ref(), &s.path)?;
                }
                Change::Remove {
                    path,
                    dir,
                    name,
                    st,
                    ..
                } => {
                    let st = same(path, st, now(*dir, name, path)?)?;
                    not_a_file(path, &st)?;
                    may_change(*dir, Some(&st), path)?;
                }
                Change::Rename {
                    from,
                    to,
                    from_dir,
                    from_name,
                    to_dir,
                    to_name,
                    st,
                } => {
                    let st = same(from, st, now(*from_dir, from_name, from)?)?;
                    may_change(*from_dir, Some(&st), from)?;
                    let dst = now(*to_dir, to_name, to)?;
                    if let Some(d) = &dst {
                        not_a_file(to, d)?;
                    }
                    may_change(*to_dir, dst.as_ref(), to)?;
                }
            }
        }
        Ok(())
    }

    /// The journal of this transaction (step 4, in memory).
    fn journal(&self, keys: &[PathBuf]) -> Journal {
        let mut j = Journal {
            id: random_id(),
            dirs: self
                .dirs
                .list
                .iter()
                .zip(keys)
                .map(|(d, k)| journal::Dir {
                    dev: d.st.dev,
                    ino: d.st.ino,
                    path: k.clone(),
                })
                .collect(),
            ..Journal::default()
        };
        for c in &self.changes {
            j.entries.push(match c {
                Change::Put(s) => journal::Entry::Put {
                    dir: s.dir as u32,
                    temp: s.temp.clone(),
                    target: s.target_name.clone(),
                    dev: s.id.0,
                    ino: s.id.1,
                    size: s.len,
                    crc: s.crc.clone().finalize(),
                },
                Change::Remove { dir, name, st, .. } => journal::Entry::Remove {
                    dir: *dir as u32,
                    name: name.clone(),
                    dev: st.dev,
                    ino: st.ino,
                },
                Change::Rename {
                    from_dir,
                    from_name,
                    to_dir,
                    to_name,
                    st,
                    ..
                } => journal::Entry::Rename {
                    from_dir: *from_dir as u32,
                    from: from_name.clone(),
                    to_dir: *to_dir as u32,
                    to: to_name.clone(),
                    dev: st.dev,
                    ino: st.ino,
                },
            });
        }
        let mut locks: Vec<journal::Name> = self
            .entries()
            .into_iter()
            .map(|(d, n)| journal::Name {
                dir: d as u32,
                name: lock_name(n),
            })
            .collect();
        locks.sort();
        locks.dedup();
        j.locks = locks;
        j
    }

    /// Step 4: the journal, written once into a temp and linked into every directory of the
    /// transaction under a tag whose name is free in all of them: a journal appears whole or
    /// not at all. Nothing is synced yet.
    fn publish_journal(&self, bytes: &[u8]) -> Result<(u16, OsString)> {
        let sys = &*self.ctx.sys;
        let first = &self.dirs.list[0];
        let mut tries = 0;
        let (tmp, fd) = loop {
            let tmp = journal_temp_name();
            match sys.create_temp(&first.fd, &tmp, 0o600) {
                Ok(fd) => break (tmp, fd),
                Err(e) if e.raw_os_error() == Some(EEXIST) && tries < 100 => tries += 1,
                Err(e) => return Err(Error::io(Op::CreateTemp, join(&first.path, &tmp), e)),
            }
        };
        let tmp_path = join(&first.path, &tmp);
        let r = (|| {
            let mut done = 0;
            while done < bytes.len() {
                match sys.write(&fd, &bytes[done..]) {
                    Ok(0) => {
                        return Err(Error::io(
                            Op::Write,
                            &tmp_path,
                            io::ErrorKind::WriteZero.into(),
                        ))
                    }
                    Ok(n) => done += n,
                    Err(e) => return Err(Error::io(Op::Write, &tmp_path, e)),
                }
            }
            'tags: for _ in 0..64 {
                let tag = fastrand::u16(1..=MAX_TAG);
                let name = journal_name(tag);
                for (i, d) in self.dirs.list.iter().enumerate() {
                    if let Err(e) = sys.link(&first.fd, &tmp, &d.fd, &name) {
                        for d in &self.dirs.list[..i] {
                            let _ = sys.unlink(&d.fd, &name);
                        }
                        if e.raw_os_error() == Some(EEXIST) {
                            continue 'tags;
                        }
                        return Err(
                            Error::io(Op::Link, join(&d.path, &name), e).with_other(&tmp_path)
                        );
                    }
                }
                return Ok((tag, name));
            }
            Err(Error::new(
                Op::Transaction,
                &first.path,
                ErrorKind::Other,
                "no free transaction journal name (too many journals in the directory); run \
                 `untorn recover` on it"
                    .into(),
            ))
        })();
        let _ = sys.unlink(&first.fd, &tmp);
        r
    }

    fn unpublish(&self, name: &OsStr) {
        for d in &self.dirs.list {
            let _ = self.ctx.sys.unlink(&d.fd, name);
        }
    }

    /// Step 5: every lock file's size becomes the tag (a hole, no data block to write).
    fn flag(&self, locks: &[Held], tag: u16) -> Result<()> {
        let sys = &*self.ctx.sys;
        for l in locks {
            let r = if l.st.size > 0 {
                // Whatever else was in it goes: a flag is NUL bytes only.
                sys.set_len(l.fd(), 0)
                    .and_then(|()| sys.set_len(l.fd(), u64::from(tag)))
            } else {
                sys.set_len(l.fd(), u64::from(tag))
            };
            r.map_err(|e| {
                Error::io(Op::Write, &l.path, e)
                    .with_note("a transaction flags each lock file (sets its size)")
            })?;
        }
        Ok(())
    }

    /// Step 6: one flush makes the temps, the flags and the journal durable together. Its
    /// return is the commit point.
    fn commit_point(&mut self, locks: &[Held], name: &OsStr) -> Result<()> {
        let sys = &*self.ctx.sys;
        let first = &self.dirs.list[0];
        if let Err(e) = sys.sync_fs(&first.fd) {
            // Part of it may be durable already: make the journal's removal durable too (best
            // effort: the file system just failed), so that no recovery rolls forward a
            // transaction reported as failed.
            self.unpublish(name);
            clear_flags(sys, locks);
            for d in &self.dirs.list {
                let _ = sys.sync_dir(&d.fd);
            }
            return Err(Error::io(Op::Sync, &first.path, e));
        }
        self.committed = true;
        tracing::trace!(target: "untorn", journal = %join(&first.path, name).display(), "transaction committed (journal durable)");
        Ok(())
    }

    /// Step 7: the renames and removals, in order. A failure does not stop the others (each
    /// is independent, and the journal finishes the rest later); the first is returned with
    /// the list of what is left.
    fn apply(&self) -> Result<Committed> {
        let sys = &*self.ctx.sys;
        let fd = |d: usize| &*self.dirs.list[d].fd;
        let mut out = Committed::default();
        let mut failed: Vec<Error> = Vec::new();
        for c in &self.changes {
            match c {
                Change::Put(s) => {
                    match sys.rename(
                        fd(s.dir),
                        &s.temp,
                        fd(s.dir),
                        &s.target_name,
                        RenameMode::Replace,
                    ) {
                        Ok(()) => out.written.push(s.path.clone()),
                        Err(e) => failed.push(
                            Error::io(Op::Rename, join(&s.dir_path, &s.temp), e)
                                .with_other(&s.path),
                        ),
                    }
                }
                Change::Remove {
                    path, dir, name, ..
                } => match sys.unlink(fd(*dir), name) {
                    Ok(()) => out.removed.push(path.clone()),
                    Err(e) if e.raw_os_error() == Some(ENOENT) => out.removed.push(path.clone()),
                    Err(e) => failed.push(Error::io(Op::Remove, path, e)),
                },
                Change::Rename {
                    from,
                    to,
                    from_dir,
                    from_name,
                    to_dir,
                    to_name,
                    ..
                } => match super::rename_entry(sys, fd(*from_dir), from_name, fd(*to_dir), to_name)
                {
                    Ok(()) => out.renamed.push((from.clone(), to.clone())),
                    Err(e) => failed.push(Error::io(Op::Rename, from, e).with_other(to)),
                },
            }
        }
        match failed.into_iter().next() {
            None => Ok(out),
            Some(first) => Err(first.with_note(
                "the transaction is committed but not fully applied: its journal stays, and the \
                 next untorn operation on its files (or `untorn recover`) completes it once the \
                 cause is fixed; `untorn recover --abandon` gives up what cannot be applied",
            )),
        }
    }

    /// Step 7, end: each directory fsynced once, making the renames durable.
    fn sync_dirs(&self) -> Result<()> {
        let sys = &*self.ctx.sys;
        for d in &self.dirs.list {
            sys.sync_dir(&d.fd).map_err(|e| {
                Error::io(Op::SyncDir, &d.path, e).with_note(
                    "the transaction is committed but its renames may not be durable yet; \
                     `untorn recover` completes it",
                )
            })?;
        }
        Ok(())
    }

    fn discard_temps(&mut self) -> Result<()> {
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

/// A change that would fail after the commit point, refused before it.
fn refuse<T>(path: &Path, kind: ErrorKind, why: String) -> Result<T> {
    Err(Error::new(
        Op::Transaction,
        path,
        kind,
        format!("{why} (checked before the commit point: nothing was changed)"),
    ))
}

/// The lock file's name of an entry: `NAME.lock`.
pub(crate) fn lock_name(name: &OsStr) -> OsString {
    let mut l = name.to_os_string();
    l.push(".lock");
    l
}

/// The temp a journal is written into before it is linked in: a temp name of untorn's, so a
/// crash leaves an orphan `untorn clean` knows.
fn journal_temp_name() -> OsString {
    temp_name(OsStr::new("untorn-txn-journal"))
}

fn clear_flags(sys: &dyn Sys, locks: &[Held]) {
    for l in locks {
        let _ = sys.set_len(l.fd(), 0);
    }
}

/// A transaction's random identifier.
fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    id[..8].copy_from_slice(&a.to_le_bytes());
    id[8..].copy_from_slice(&b.to_le_bytes());
    id
}

impl LockOptions {
    /// These options, for exclusive locks.
    pub(crate) fn how_exclusive(&self) -> lockfile::How {
        let mut h = self.how().clone();
        h.shared = false;
        h
    }
}

impl Settings {
    /// Recovery settings matching a lock request: the same wait and cancel flag.
    pub(crate) fn from_how(how: &lockfile::How) -> Settings {
        Settings {
            wait: match how.wait {
                Wait::No => Wait::No,
                w => w,
            },
            cancel: how.cancel.clone(),
            allow_shared_fs: how.allow_shared_fs,
            abandon: false,
        }
    }
}
