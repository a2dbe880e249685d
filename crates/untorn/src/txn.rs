//! Multi-file transactions: several files change together or not at all, even across a crash.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let (a, b, old) = (dir.path().join("a.json"), dir.path().join("b.yaml"), dir.path().join("old.txt"));
//! # std::fs::write(&old, "x")?;
//! let mut tx = untorn::Transaction::new();
//! tx.write(&a, "{\"v\": 2}\n")?;
//! tx.write(&b, "v: 2\n")?;
//! tx.remove(&old)?;
//! tx.commit()?; // all three, durably, or none
//! # assert!(!old.exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Protocol, and what a crash at each point leaves
//!
//! 1. **Stage**: each new content goes to a temp file beside its target
//!    (`.NAME.untorn-XXXXXXXX.tmp`, mode 0600 until its final mode is set); its size and
//!    CRC-32 are kept as it is written.
//!    *Crash: targets untouched; temps are orphans for `untorn clean`.*
//! 2. **Lock** every file involved (`FILE.lock`, the same lock files as single-file updates),
//!    all at once, in one global order (sorted absolute paths), so that two transactions never
//!    deadlock. All files must be on one file system (else an error, before anything changes).
//! 3. **Journal**: written once into a temp, then hard-linked as `.untorn-txn-TTTT.journal`
//!    beside every lock file, under a *tag* `TTTT` (1 to 4095) free in all those directories
//!    (a journal appears whole or not at all). It lists every temp → target with the temp's
//!    inode, size and CRC-32, every removal and rename with its inode, and the lock files; a
//!    CRC-32 closes it.
//! 4. **Flag** each lock file: its size becomes the tag (NUL bytes: a hole, no data block).
//!    A plain write sees it with the one `stat` of the lock file it makes anyway.
//! 5. **One `syncfs`** makes the temps, the journal and the flags durable together. **Its
//!    return is the commit point.**
//!    *Crash before or during it: recovery rolls forward only if the journal decodes, a copy
//!    of it is beside every lock file, every lock file carries the flag, and every temp is whole
//!    (size and CRC as recorded) or already in place; else it rolls back (removes the temps).
//!    Nothing was renamed yet, so either way the files are all old or all new.*
//!    (Group commit: one flush for any number of files, where the journal written after the
//!    temps were synced would cost a second one.)
//! 6. **Apply** the renames and removals in order, then `fsync` each distinct directory.
//!    *Crash: everything of step 5 is durable, so recovery rolls forward. Rolling forward is
//!    idempotent: an entry whose temp (or inode) is gone was applied already.*
//! 7. **Clean up**: remove the journal and clear the flags (not synced: if a crash brings any
//!    of them back, recovery finds every change applied, or a flag or copy missing, and rolls
//!    "back", which changes nothing as no temp is left).
//!
//! Durability assumption: `syncfs(2)` returns only when every earlier change of the file
//! system (data, names, sizes) is durable, and reports a write-back error (Linux ≥ 5.8).
//!
//! Recovery runs by itself: writes look at the target's lock file (one `stat`), and locks see
//! the flag when they take the lock; either finishes (or undoes) the transaction before going
//! on, under all the transaction's locks. `untorn recover DIR` also finds journals directly.

use crate::atomic::Symlinks;
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::lock::{lock_path_for, Lock, LockOptions};
use crate::paths::{join, resolve_in, split, temp_name, DirCache};
use crate::sys::{errnos::*, Fd, FileType, OpenHow, RenameMode, Stat, Sys};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const MAGIC: &[u8; 8] = b"UNTORNTX";
const VERSION: u16 = 2;
const JOURNAL_PREFIX: &str = ".untorn-txn-";
const JOURNAL_SUFFIX: &str = ".journal";
/// Tags run from 1 to this: a flag is a lock file of that many NUL bytes (at most one block,
/// and a hole where the file system has them), and the journal is `.untorn-txn-TTTT.journal`.
const MAX_TAG: u16 = 4095;
/// Bounds a decoder accepts: a corrupt length can never make it allocate much.
const MAX_PATH: usize = 64 * 1024;
const MAX_ENTRIES: usize = 1 << 20;

/// One change of a committed transaction, as the journal records it. Paths are absolute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Rename the temp file (inode `ino` on device `dev`, `size` bytes whose CRC-32 is `crc`)
    /// over `target`.
    Put {
        temp: PathBuf,
        target: PathBuf,
        dev: u64,
        ino: u64,
        size: u64,
        crc: u32,
    },
    /// Remove `target` if it is still the inode it was when staged.
    Remove { target: PathBuf, dev: u64, ino: u64 },
    /// Rename `from` to `to` if `from` is still the inode it was when staged.
    Rename {
        from: PathBuf,
        to: PathBuf,
        dev: u64,
        ino: u64,
    },
}

/// A transaction journal: what a committed transaction does, and the lock files it flagged.
///
/// # Format (version 2), all integers little-endian
///
/// ```text
/// "UNTORNTX"  u16 version=2  u16 flags=0  u32 entries  u32 locks
/// entries × { u8 kind (1 put, 2 remove, 3 rename)  u64 dev  u64 ino
///             u32 len, path A   u32 len, path B (empty for remove)
///             put only: u64 size  u32 CRC-32 of the temp's content }
/// locks   × { u32 len, path }
/// u32 CRC-32 (IEEE) of every byte before it
/// ```
///
/// The journal's tag (which the flags carry) is in its file name, not in its bytes: one
/// journal can be linked under another tag without being written again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    /// The changes, in the order they are applied.
    pub entries: Vec<Entry>,
    /// The lock files flagged with this journal's tag.
    pub locks: Vec<PathBuf>,
}

/// Why a journal could not be decoded: the commit point was not reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self) -> std::result::Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> std::result::Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> std::result::Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> std::result::Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn path(&mut self) -> std::result::Result<PathBuf, DecodeError> {
        let n = self.u32()? as usize;
        if n > MAX_PATH {
            return Err(DecodeError("path too long"));
        }
        Ok(PathBuf::from(OsString::from_vec(self.take(n)?.to_vec())))
    }
}

fn put_path(out: &mut Vec<u8>, p: &Path) {
    let b = p.as_os_str().as_bytes();
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

impl Journal {
    /// The journal's bytes, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.locks.len() as u32).to_le_bytes());
        for e in &self.entries {
            let (kind, a, b, dev, ino) = match e {
                Entry::Put {
                    temp,
                    target,
                    dev,
                    ino,
                    ..
                } => (1u8, temp.as_path(), target.as_path(), dev, ino),
                Entry::Remove { target, dev, ino } => {
                    (2, target.as_path(), Path::new(""), dev, ino)
                }
                Entry::Rename { from, to, dev, ino } => (3, from.as_path(), to.as_path(), dev, ino),
            };
            out.push(kind);
            out.extend_from_slice(&dev.to_le_bytes());
            out.extend_from_slice(&ino.to_le_bytes());
            put_path(&mut out, a);
            put_path(&mut out, b);
            if let Entry::Put { size, crc, .. } = e {
                out.extend_from_slice(&size.to_le_bytes());
                out.extend_from_slice(&crc.to_le_bytes());
            }
        }
        for l in &self.locks {
            put_path(&mut out, l);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a journal; any damage (truncation, a flipped bit, garbage) is an error, never a
    /// panic and never a partial journal.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Journal, DecodeError> {
        if bytes.len() < MAGIC.len() + 12 + 4 {
            return Err(DecodeError("too short"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(DecodeError("checksum mismatch"));
        }
        let mut r = Reader { b: body };
        if r.take(8)? != MAGIC {
            return Err(DecodeError("not a journal"));
        }
        if r.u16()? != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let _flags = r.u16()?;
        let (n, nl) = (r.u32()? as usize, r.u32()? as usize);
        if n > MAX_ENTRIES || nl > MAX_ENTRIES {
            return Err(DecodeError("too many entries"));
        }
        let mut entries = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let kind = r.u8()?;
            let (dev, ino) = (r.u64()?, r.u64()?);
            let (a, b) = (r.path()?, r.path()?);
            entries.push(match kind {
                1 => Entry::Put {
                    temp: a,
                    target: b,
                    dev,
                    ino,
                    size: r.u64()?,
                    crc: r.u32()?,
                },
                2 => Entry::Remove {
                    target: a,
                    dev,
                    ino,
                },
                3 => Entry::Rename {
                    from: a,
                    to: b,
                    dev,
                    ino,
                },
                _ => return Err(DecodeError("unknown entry kind")),
            });
        }
        let mut locks = Vec::with_capacity(nl.min(1024));
        for _ in 0..nl {
            locks.push(r.path()?);
        }
        if !r.b.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Journal { entries, locks })
    }
}

/// The absolute form of `p` (lexically: symlinks are not resolved), for journals and for the
/// global lock order.
fn absolute(sys: &dyn Sys, p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = sys
        .current_dir()
        .map_err(|e| Error::io(Op::OpenDir, ".", e))?;
    Ok(cwd.join(p))
}

/// `p` made absolute against `cwd` (lexically).
fn absolute_in(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

/// A staged new content: a temp file beside its target. Write into it with `std::io::Write`.
pub struct Staged {
    ctx: Arc<Ctx>,
    fd: Fd,
    dir: Arc<Fd>,
    dir_path: PathBuf,
    temp: OsString,
    target_name: OsString,
    /// The target as the caller named it (for its lock file and messages).
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
                    return Err(Error::io(
                        Op::Write,
                        &self.path,
                        io::ErrorKind::WriteZero.into(),
                    ))
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
        dir: Fd,
        dir_path: PathBuf,
        name: OsString,
        st: Stat,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
        from_dir: (Fd, PathBuf, OsString),
        to_dir: (Fd, PathBuf, OsString),
        st: Stat,
    },
}

/// What a committed transaction changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Files written (in the order staged).
    pub written: Vec<PathBuf>,
    /// Files removed.
    pub removed: Vec<PathBuf>,
    /// Files renamed (from, to).
    pub renamed: Vec<(PathBuf, PathBuf)>,
}

/// A set of changes to several files that become visible and durable together, or not at all.
/// Dropping it uncommitted discards it (the staged temps are removed).
pub struct Transaction {
    ctx: Arc<Ctx>,
    changes: Vec<Change>,
    /// Every path a change names (as given), to refuse a second change of one file in O(1).
    touched: std::collections::HashSet<PathBuf>,
    /// The directories of the staged files, opened once each.
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
            changes: Vec::new(),
            touched: Default::default(),
            dir_cache: Default::default(),
            lock: LockOptions::new(),
            finished: false,
            committed: false,
        }
    }

    /// How the locks are taken at commit (a timeout, ...).
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

    fn check_new(&self, path: &Path) -> Result<()> {
        if self.touched.contains(path) {
            return Err(Error::new(
                Op::Transaction,
                path,
                ErrorKind::InvalidInput,
                "the transaction already changes this file".into(),
            ));
        }
        Ok(())
    }

    /// Stages a new content for `path`, to be written into the returned [`Staged`] file.
    pub fn create(&mut self, path: impl AsRef<Path>) -> Result<&mut Staged> {
        let path = path.as_ref();
        self.check_new(path)?;
        let t = resolve_in(&self.ctx, path, Symlinks::Follow, Some(&mut self.dir_cache))?;
        let sys = &*self.ctx.sys;
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
                Err(e) => return Err(Error::io(Op::CreateTemp, path, e)),
            }
        };
        self.changes.push(Change::Put(Box::new(Staged {
            ctx: self.ctx.clone(),
            fd,
            dir: t.dir,
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
        self.touched.insert(path.to_path_buf());
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

    fn existing(&self, path: &Path) -> Result<(Fd, PathBuf, OsString, Stat)> {
        let sys = &*self.ctx.sys;
        let (dir_path, name) = split(path)?;
        let dir = sys
            .open_dir(None, &dir_path)
            .map_err(|e| Error::io(Op::OpenDir, &dir_path, e))?;
        let st = sys
            .stat_at(&dir, &name, false)
            .map_err(|e| Error::io(Op::Stat, path, e))?;
        if st.file_type() == FileType::Directory {
            return Err(Error::new(
                Op::Transaction,
                path,
                ErrorKind::IsADirectory,
                "is a directory".into(),
            ));
        }
        Ok((dir, dir_path, name, st))
    }

    /// Stages the removal of `path` (which must exist).
    pub fn remove(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.check_new(path)?;
        let (dir, dir_path, name, st) = self.existing(path)?;
        self.changes.push(Change::Remove {
            path: path.to_path_buf(),
            dir,
            dir_path,
            name,
            st,
        });
        self.touched.insert(path.to_path_buf());
        Ok(())
    }

    /// Stages renaming `from` (which must exist) to `to` (replaced if it exists).
    pub fn rename(&mut self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        self.check_new(from)?;
        self.check_new(to)?;
        let (fd, fdp, fname, st) = self.existing(from)?;
        let sys = &*self.ctx.sys;
        let (tdp, tname) = split(to)?;
        let td = sys
            .open_dir(None, &tdp)
            .map_err(|e| Error::io(Op::OpenDir, &tdp, e))?;
        self.changes.push(Change::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            from_dir: (fd, fdp, fname),
            to_dir: (td, tdp, tname),
            st,
        });
        self.touched.insert(from.to_path_buf());
        self.touched.insert(to.to_path_buf());
        Ok(())
    }

    /// The paths whose locks the commit takes. A target reached through a symbolic link is
    /// locked (and flagged) under both names: a later write to either sees the flag.
    fn paths(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for c in &self.changes {
            match c {
                Change::Put(s) => {
                    v.push(s.path.clone());
                    let resolved = join(&s.dir_path, &s.target_name);
                    if resolved != s.path {
                        v.push(resolved);
                    }
                }
                Change::Remove { path, .. } => v.push(path.clone()),
                Change::Rename { from, to, .. } => {
                    v.push(from.clone());
                    v.push(to.clone());
                }
            }
        }
        v
    }

    /// Makes every staged change visible and durable, or none of them. On error before the
    /// commit point, nothing changed and the temps are gone; an error after it (rare: an I/O
    /// error while renaming) leaves the journal, and the next untorn operation on any of the
    /// files completes the transaction.
    pub fn commit(mut self) -> Result<Committed> {
        let started = Instant::now();
        let r = self.commit_inner();
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
            self.discard_temps();
        }
        r
    }

    fn commit_inner(&mut self) -> Result<Committed> {
        let ctx = self.ctx.clone();
        let sys = &*ctx.sys;
        if self.changes.is_empty() {
            return Ok(Committed::default());
        }
        // 1. Everything written, with its final owner and mode.
        for c in &mut self.changes {
            if let Change::Put(s) = c {
                s.flush_buf()?;
                let st = sys
                    .stat(&s.fd)
                    .map_err(|e| Error::io(Op::Stat, &s.path, e))?;
                s.id = (st.dev, st.ino);
                if let Some(old) = s.existing.filter(|o| o.file_type() == FileType::Regular) {
                    if (old.uid, old.gid) != (st.uid, st.gid) {
                        let _ = sys.set_owner(&s.fd, Some(old.uid), Some(old.gid));
                    }
                }
                if st.permissions() != s.final_mode || s.final_mode & 0o6000 != 0 {
                    sys.set_mode(&s.fd, s.final_mode)
                        .map_err(|e| Error::io(Op::SetMode, &s.path, e))?;
                }
            }
        }
        // 2. One file system, or nothing changes.
        let cwd = sys
            .current_dir()
            .map_err(|e| Error::io(Op::OpenDir, ".", e))?;
        let mut dev = None;
        let mut dirs: BTreeMap<PathBuf, &Fd> = BTreeMap::new();
        let mut dir_ids: BTreeMap<PathBuf, (u64, u64)> = BTreeMap::new();
        // Each file once, whatever the name it was given under (`a`, `./sub/../a`).
        let mut files: std::collections::HashSet<((u64, u64), &OsStr)> = Default::default();
        for c in &self.changes {
            let ds: Vec<(&Fd, &PathBuf, &OsStr, &Path)> = match c {
                Change::Put(s) => vec![(&s.dir, &s.dir_path, &s.target_name, &s.path)],
                Change::Remove {
                    dir,
                    dir_path,
                    name,
                    path,
                    ..
                } => vec![(dir, dir_path, name, path)],
                Change::Rename {
                    from_dir,
                    to_dir,
                    from,
                    to,
                    ..
                } => vec![
                    (&from_dir.0, &from_dir.1, &from_dir.2, from),
                    (&to_dir.0, &to_dir.1, &to_dir.2, to),
                ],
            };
            for (fd, p, name, path) in ds {
                let abs = absolute_in(&cwd, p);
                if let Some(id) = dir_ids.get(&abs) {
                    if !files.insert((*id, name)) {
                        return Err(duplicate(path));
                    }
                    continue;
                }
                let st = sys.stat(fd).map_err(|e| Error::io(Op::Stat, p, e))?;
                if !files.insert(((st.dev, st.ino), name)) {
                    return Err(duplicate(path));
                }
                dir_ids.insert(abs.clone(), (st.dev, st.ino));
                match dev {
                    None => dev = Some(st.dev),
                    Some(d) if d != st.dev => {
                        return Err(Error::new(
                            Op::Transaction,
                            p,
                            ErrorKind::CrossDevice,
                            "the files of a transaction must all be on one file system".into(),
                        ))
                    }
                    _ => {}
                }
                dirs.insert(abs, fd);
            }
        }
        // 3. The locks, all at once, in one global order.
        let mut lock_paths: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        for p in self.paths() {
            let l = lock_path_for(&p);
            lock_paths.insert(absolute_in(&cwd, &l), l);
        }
        let first_dir = dirs
            .keys()
            .next()
            .expect("a change has a directory")
            .clone();
        let journal_dir = *dirs.get(&first_dir).expect("present");
        // Lock files sit beside the paths as given, which a symlink may put elsewhere than the
        // file it names: open those directories too.
        let mut extra_dirs: Vec<(PathBuf, Fd)> = Vec::new();
        for abs in lock_paths.keys() {
            let (d, _) = split(abs)?;
            if !dirs.contains_key(&d) && !extra_dirs.iter().any(|(p, _)| *p == d) {
                let fd = sys
                    .open_dir(None, &d)
                    .map_err(|e| Error::io(Op::OpenDir, &d, e))?;
                // The one flush of the commit covers one file system: the lock files (flags
                // and journal copies) must be on it too.
                let st = sys.stat(&fd).map_err(|e| Error::io(Op::Stat, &d, e))?;
                if Some(st.dev) != dev {
                    return Err(Error::new(
                        Op::Transaction,
                        &d,
                        ErrorKind::CrossDevice,
                        "the lock files of a transaction must be on the file system of its \
                         files (a symbolic link leads elsewhere)"
                            .into(),
                    ));
                }
                extra_dirs.push((d, fd));
            }
        }
        let dir_of = |abs: &Path| -> Result<&Fd> {
            let (d, _) = split(abs)?;
            Ok(match dirs.get(&d) {
                Some(fd) => fd,
                None => &extra_dirs.iter().find(|(p, _)| *p == d).expect("opened").1,
            })
        };
        let mut opts = self.lock.clone();
        opts.shared(false).with_ctx(ctx.clone());
        // Crashed transactions are recovered with none of our locks held (a recovery takes the
        // locks of the transaction it finishes, which may include one we already hold).
        opts.recover_txns = false;
        let mut not_flags: BTreeSet<PathBuf> = BTreeSet::new();
        let mut tries = 0;
        let lock_list: Vec<(&PathBuf, &PathBuf)> = lock_paths.iter().collect();
        let items = lock_list
            .iter()
            .map(|(abs, given)| Ok((given.as_path(), Some(dir_of(abs)?))))
            .collect::<Result<Vec<_>>>()?;
        let locks: Vec<Lock> = loop {
            let mut locks = Vec::with_capacity(lock_paths.len());
            let mut pending = Vec::new();
            for (i, l) in lock_all(&ctx, &opts, &items, false)? {
                let (abs, given) = lock_list[i];
                if l.pending_txn && !not_flags.contains(abs) {
                    pending.push((abs, given));
                }
                locks.push(l);
            }
            if pending.is_empty() {
                break locks;
            }
            drop(locks);
            tries += 1;
            if tries > 8 {
                return Err(Error::new(
                    Op::Lock,
                    pending[0].1,
                    ErrorKind::Other,
                    "an interrupted transaction keeps coming back; run `untorn recover` on its \
                     directory"
                        .into(),
                ));
            }
            for (abs, given) in pending {
                if recover_lock_file(&ctx, given)?.is_none() {
                    not_flags.insert(abs.clone());
                }
            }
        };

        // The journal, in memory.
        let mut journal = Journal::default();
        for c in &self.changes {
            journal.entries.push(match c {
                Change::Put(s) => {
                    let dir = absolute_in(&cwd, &s.dir_path);
                    Entry::Put {
                        temp: dir.join(&s.temp),
                        target: dir.join(&s.target_name),
                        dev: s.id.0,
                        ino: s.id.1,
                        size: s.len,
                        crc: s.crc.clone().finalize(),
                    }
                }
                Change::Remove {
                    dir_path, name, st, ..
                } => Entry::Remove {
                    target: absolute_in(&cwd, dir_path).join(name),
                    dev: st.dev,
                    ino: st.ino,
                },
                Change::Rename {
                    from_dir,
                    to_dir,
                    st,
                    ..
                } => Entry::Rename {
                    from: absolute_in(&cwd, &from_dir.1).join(&from_dir.2),
                    to: absolute_in(&cwd, &to_dir.1).join(&to_dir.2),
                    dev: st.dev,
                    ino: st.ino,
                },
            });
        }
        journal.locks = lock_paths.keys().cloned().collect();

        // 4. Flag every lock file: its size becomes the tag (a hole, no data block to write).
        //    Under our locks nobody looks at the flags until we are done; the tag is chosen
        //    when the journal is linked in (step 5), so flags are set after it.
        let clear_flags = |locks: &[Lock]| {
            for l in locks {
                let _ = sys.set_len(l.fd(), 0);
            }
        };
        // 5. The journal, written once into a temp and linked in under a tag that is free in
        //    every directory of the transaction: a journal appears whole or not at all.
        let bytes = journal.encode();
        // A copy beside every lock file (a flag leads to the copy in its own directory) and
        // beside every temp (so that `untorn clean` there knows the temp is not an orphan).
        let mut dir_list: Vec<(&PathBuf, &Fd)> = dirs.iter().map(|(p, fd)| (p, *fd)).collect();
        dir_list.extend(extra_dirs.iter().map(|(p, fd)| (p, fd)));
        let (tag, journal_name) = publish_journal(sys, &dir_list, &bytes)?;
        let unpublish = || {
            for (_, fd) in &dir_list {
                let _ = sys.unlink(fd, &journal_name);
            }
        };
        for l in &locks {
            let r = if l.size > 0 {
                // Whatever else was in it goes: a flag is NUL bytes only.
                sys.set_len(l.fd(), 0)
                    .and_then(|()| sys.set_len(l.fd(), u64::from(tag)))
            } else {
                sys.set_len(l.fd(), u64::from(tag))
            };
            if let Err(e) = r {
                unpublish();
                clear_flags(&locks);
                return Err(Error::io(Op::Write, l.path(), e)
                    .with_note("a transaction flags each lock file (sets its size)"));
            }
        }
        // 6. One flush makes the temps, the flags and the journal durable together: the
        //    commit point. (A crash inside it: recovery rolls forward only if the journal, every
        //    flag and every temp, checked by size and CRC, made it; else nothing was applied
        //    yet and it rolls back.)
        if let Err(e) = sys.sync_fs(journal_dir) {
            // Part of it may be durable already: make the journal's removal durable too (best
            // effort: the file system just failed), so that no recovery rolls forward a
            // transaction reported as failed.
            unpublish();
            clear_flags(&locks);
            for (_, fd) in &dir_list {
                let _ = sys.sync_dir(fd);
            }
            return Err(Error::io(Op::Sync, &first_dir, e));
        }
        self.committed = true;
        let journal_path = first_dir.join(&journal_name);
        tracing::trace!(target: "untorn", journal = %journal_path.display(), "transaction committed (journal durable)");
        // 7. Apply; then the directories, once each.
        let mut out = Committed::default();
        for c in &self.changes {
            match c {
                Change::Put(s) => {
                    sys.rename(&s.dir, &s.temp, &s.dir, &s.target_name, RenameMode::Replace)
                        .map_err(|e| {
                            after_commit(
                                Error::io(Op::Rename, join(&s.dir_path, &s.temp), e)
                                    .with_other(&s.path),
                            )
                        })?;
                    out.written.push(s.path.clone());
                }
                Change::Remove {
                    path, dir, name, ..
                } => {
                    match sys.unlink(dir, name) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(ENOENT) => {}
                        Err(e) => return Err(after_commit(Error::io(Op::Remove, path, e))),
                    }
                    out.removed.push(path.clone());
                }
                Change::Rename {
                    from,
                    to,
                    from_dir,
                    to_dir,
                    ..
                } => {
                    sys.rename(
                        &from_dir.0,
                        &from_dir.2,
                        &to_dir.0,
                        &to_dir.2,
                        RenameMode::Replace,
                    )
                    .map_err(|e| after_commit(Error::io(Op::Rename, from, e).with_other(to)))?;
                    out.renamed.push((from.clone(), to.clone()));
                }
            }
        }
        for (p, fd) in &dirs {
            sys.sync_dir(fd)
                .map_err(|e| after_commit(Error::io(Op::SyncDir, p, e)))?;
        }
        // 8. Done: the journal and the flags go (not synced: if a crash brings them back, the
        //    recovery finds every change applied, or a flag missing; either way it changes
        //    nothing).
        unpublish();
        clear_flags(&locks);
        for c in &mut self.changes {
            if let Change::Put(s) = c {
                s.temp = OsString::new();
            }
        }
        Ok(out)
    }

    fn discard_temps(&mut self) {
        for c in &self.changes {
            if let Change::Put(s) = c {
                if !s.temp.is_empty() {
                    let _ = self.ctx.sys.unlink(&s.dir, &s.temp);
                }
            }
        }
    }

    /// Abandons the transaction: the staged temps are removed, nothing changes.
    pub fn discard(mut self) {
        self.discard_temps();
        self.finished = true;
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.finished {
            self.discard_temps();
        }
    }
}

fn duplicate(path: &Path) -> Error {
    Error::new(
        Op::Transaction,
        path,
        ErrorKind::InvalidInput,
        "the transaction already changes this file (under another name)".into(),
    )
}

fn after_commit(e: Error) -> Error {
    e.with_note(
        "the transaction is committed but not fully applied; the next untorn operation on its \
         files (or `untorn recover`) completes it",
    )
}

/// The journal's file name for `tag`.
pub(crate) fn journal_name(tag: u16) -> OsString {
    OsString::from(format!("{JOURNAL_PREFIX}{tag:04x}{JOURNAL_SUFFIX}"))
}

/// The tag in a journal's file name, if it is one.
fn tag_of(name: &OsStr) -> Option<u16> {
    let b = name.as_bytes();
    let hex = b
        .strip_prefix(JOURNAL_PREFIX.as_bytes())?
        .strip_suffix(JOURNAL_SUFFIX.as_bytes())?;
    if hex.len() != 4 {
        return None;
    }
    let tag = u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
    (1..=MAX_TAG).contains(&tag).then_some(tag)
}

/// The tag a lock file's content flags, if it is a flag: 1 to [`MAX_TAG`] NUL bytes.
fn flag_of(content: &[u8]) -> Option<u16> {
    let n = u16::try_from(content.len()).ok()?;
    ((1..=MAX_TAG).contains(&n) && content.iter().all(|&b| b == 0)).then_some(n)
}

/// Writes `bytes` into a temp in the first directory and links it, as
/// `.untorn-txn-TTTT.journal`, into every directory of `dirs` (hard links of one inode), under
/// a tag whose name is free in all of them. Returns the tag and the name. Nothing is synced.
fn publish_journal(
    sys: &dyn Sys,
    dirs: &[(&PathBuf, &Fd)],
    bytes: &[u8],
) -> Result<(u16, OsString)> {
    let (first_path, first) = dirs[0];
    let mut tries = 0;
    let (tmp, fd) = loop {
        let tmp = temp_name(OsStr::new(".untorn-txn.journal"));
        match sys.create_temp(first, &tmp, 0o600) {
            Ok(fd) => break (tmp, fd),
            Err(e) if e.raw_os_error() == Some(EEXIST) && tries < 100 => tries += 1,
            Err(e) => return Err(Error::io(Op::CreateTemp, first_path.join(&tmp), e)),
        }
    };
    let tmp_path = first_path.join(&tmp);
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
            for (i, (p, d)) in dirs.iter().enumerate() {
                match sys.link(first, &tmp, d, &name) {
                    Ok(()) => {}
                    Err(e) => {
                        for (_, d) in &dirs[..i] {
                            let _ = sys.unlink(d, &name);
                        }
                        if e.raw_os_error() == Some(EEXIST) {
                            continue 'tags;
                        }
                        return Err(Error::io(Op::Link, p.join(&name), e).with_other(&tmp_path));
                    }
                }
            }
            return Ok((tag, name));
        }
        Err(Error::new(
            Op::Transaction,
            first_path,
            ErrorKind::Other,
            "no free transaction journal name (too many journals in the directory); run \
             `untorn recover` on it"
                .into(),
        ))
    })();
    let _ = sys.unlink(first, &tmp);
    r
}

/// The (device, inode) of every temp that a decodable journal among `names` (the entries of
/// `dir`, at `dir_path`) names.
pub(crate) fn journaled_temps(
    sys: &dyn Sys,
    dir: &Fd,
    dir_path: &Path,
    names: &[OsString],
) -> std::collections::HashSet<(u64, u64)> {
    let mut out = std::collections::HashSet::new();
    for n in names.iter().filter(|n| is_journal_name(n)) {
        let how = OpenHow {
            read: true,
            no_follow: true,
            ..OpenHow::default()
        };
        let Ok(fd) = sys.open_file(dir, n, how, 0) else {
            continue;
        };
        let Ok(bytes) = crate::update::read_all(sys, &fd, &join(dir_path, n)) else {
            continue;
        };
        if let Ok(j) = Journal::decode(&bytes) {
            for e in &j.entries {
                if let Entry::Put { dev, ino, .. } = e {
                    out.insert((*dev, *ino));
                }
            }
        }
    }
    out
}

/// If `name` is a transaction journal's file name.
pub fn is_journal_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.starts_with(JOURNAL_PREFIX.as_bytes()) && b.ends_with(JOURNAL_SUFFIX.as_bytes())
}

fn read_path(sys: &dyn Sys, path: &Path) -> Result<Option<Vec<u8>>> {
    let (dir_path, name) = split(path)?;
    let dir = match sys.open_dir(None, &dir_path) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(ENOENT) => return Ok(None),
        Err(e) => return Err(Error::io(Op::OpenDir, &dir_path, e)),
    };
    let how = OpenHow {
        read: true,
        no_follow: true,
        ..OpenHow::default()
    };
    let fd = match sys.open_file(&dir, &name, how, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(ENOENT) => return Ok(None),
        Err(e) => return Err(Error::io(Op::Open, path, e)),
    };
    crate::update::read_all(sys, &fd, path).map(Some)
}

/// What a recovery did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovered {
    /// The journal was complete: its changes were applied (again, where needed).
    RolledForward(PathBuf),
    /// The commit point was not reached: the temps were removed, nothing changed.
    RolledBack(PathBuf),
    /// A lock file (this one) carried a transaction's flag but no journal was beside it: a
    /// transaction that never published one, or whose clean-up a crash cut short. The flag was
    /// cleared; nothing else changed.
    FlagCleared(PathBuf),
}

/// Finishes or undoes the transaction that flagged the lock file `lock_path`, if any.
pub(crate) fn recover_lock_file(ctx: &Arc<Ctx>, lock_path: &Path) -> Result<Option<Recovered>> {
    let sys = &*ctx.sys;
    let Some(content) = read_path(sys, lock_path)? else {
        return Ok(None);
    };
    if content.is_empty() {
        return Ok(None);
    }
    let Some(tag) = flag_of(&content) else {
        // Not ours to interpret: someone else wrote into the lock file. Leave it.
        tracing::warn!(target: "untorn", lock = %lock_path.display(), "lock file holds something other than a transaction flag");
        return Ok(None);
    };
    let lock_path = absolute(sys, lock_path)?;
    let (dir, _) = split(&lock_path)?;
    recover_journal(ctx, &dir.join(journal_name(tag)), Some(&lock_path))
}

/// Whether `dir` is one of `dirs` (by path, or as the same directory reached by another path).
fn same_dir_among(sys: &dyn Sys, dir: &Path, dirs: &BTreeSet<PathBuf>) -> bool {
    if dirs.contains(dir) {
        return true;
    }
    let id = |p: &Path| {
        sys.open_dir(None, p)
            .and_then(|fd| sys.stat(&fd))
            .map(|st| (st.dev, st.ino))
            .ok()
    };
    let Some(mine) = id(dir) else {
        return false;
    };
    dirs.iter().any(|d| id(d) == Some(mine))
}

/// Takes the exclusive locks of `items` (lock file, and its directory if open) in the one
/// global order: by (device, inode) of the lock file, so that paths that alias one file (a
/// symbolic link to a directory, `a` and `sub/../a`) neither lock it twice (a lock would wait
/// for its own holder) nor order it differently from another transaction's (a deadlock).
/// Missing lock files are created first, to have an inode. Returns each lock with its index in
/// `items`; with `tolerate_missing`, a lock file whose directory is gone is left out.
fn lock_all(
    ctx: &Arc<Ctx>,
    opts: &LockOptions,
    items: &[(&Path, Option<&Fd>)],
    tolerate_missing: bool,
) -> Result<Vec<(usize, Lock)>> {
    let sys = &*ctx.sys;
    let mut keyed: Vec<((u64, u64), usize)> = Vec::with_capacity(items.len());
    for (i, (path, dir)) in items.iter().enumerate() {
        let (dp, name) = split(path)?;
        let opened;
        let dir = match dir {
            Some(d) => *d,
            None => match sys.open_dir(None, &dp) {
                Ok(d) => {
                    opened = d;
                    &opened
                }
                Err(e) if e.raw_os_error() == Some(ENOENT) && tolerate_missing => continue,
                Err(e) => return Err(Error::io(Op::OpenDir, &dp, e)),
            },
        };
        // Whatever cannot be looked at or created is ordered last: locking it reports why.
        let last = (u64::MAX, i as u64);
        let id = match sys.stat_at(dir, &name, false) {
            Ok(st) => (st.dev, st.ino),
            Err(e) if e.raw_os_error() == Some(ENOENT) => {
                let how = OpenHow {
                    read: true,
                    write: true,
                    create: true,
                    no_follow: true,
                    ..OpenHow::default()
                };
                sys.open_file(dir, &name, how, 0o644)
                    .and_then(|fd| sys.stat(&fd))
                    .map_or(last, |st| (st.dev, st.ino))
            }
            Err(_) => last,
        };
        keyed.push((id, i));
    }
    keyed.sort();
    keyed.dedup_by_key(|k| k.0);
    let mut locks = Vec::with_capacity(keyed.len());
    for (_, i) in keyed {
        let (path, dir) = items[i];
        match opts.lock_at(dir, path) {
            Ok(l) => locks.push((i, l)),
            Err(e) if tolerate_missing && e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(locks)
}

/// Every directory that holds a copy of journal `j`: those of its lock files and of the files
/// it changes.
fn journal_dirs(j: &Journal) -> Result<BTreeSet<PathBuf>> {
    let mut dirs = BTreeSet::new();
    for l in &j.locks {
        dirs.insert(split(l)?.0);
    }
    for e in &j.entries {
        let (a, b): (&Path, Option<&Path>) = match e {
            Entry::Put { temp, target, .. } => (temp, Some(target)),
            Entry::Remove { target, .. } => (target, None),
            Entry::Rename { from, to, .. } => (from, Some(to)),
        };
        dirs.insert(split(a)?.0);
        if let Some(b) = b {
            dirs.insert(split(b)?.0);
        }
    }
    Ok(dirs)
}

/// Whether the transaction of journal `j` (tagged `tag`) reached its commit point: every lock
/// file it names carries its flag, a copy of it is beside each of them, and every temp is
/// whole (its size and CRC as recorded) or already in place. Called under all its locks.
fn reached_commit_point(sys: &dyn Sys, j: &Journal, tag: u16, bytes: &[u8]) -> Result<bool> {
    let name = journal_name(tag);
    for l in &j.locks {
        if read_path(sys, l)?.as_deref().and_then(flag_of) != Some(tag) {
            tracing::debug!(target: "untorn", lock = %l.display(), "not flagged: the commit point was not reached");
            return Ok(false);
        }
    }
    for d in journal_dirs(j)? {
        if read_path(sys, &d.join(&name))?.as_deref() != Some(bytes) {
            tracing::debug!(target: "untorn", dir = %d.display(), "a journal copy is missing: the commit point was not reached");
            return Ok(false);
        }
    }
    for e in &j.entries {
        let Entry::Put {
            temp,
            target,
            dev,
            ino,
            size,
            crc,
        } = e
        else {
            continue;
        };
        let (td, tn) = split(target)?;
        let dir = sys
            .open_dir(None, &td)
            .map_err(|e| Error::io(Op::OpenDir, &td, e))?;
        if sys
            .stat_at(&dir, &tn, false)
            .is_ok_and(|st| (st.dev, st.ino) == (*dev, *ino))
        {
            continue; // renamed into place already
        }
        let (pd, pn) = split(temp)?;
        let Ok(dir) = sys.open_dir(None, &pd) else {
            return Ok(false);
        };
        let how = OpenHow {
            read: true,
            no_follow: true,
            ..OpenHow::default()
        };
        let Ok(fd) = sys.open_file(&dir, &pn, how, 0) else {
            return Ok(false);
        };
        let st = sys.stat(&fd).map_err(|e| Error::io(Op::Stat, temp, e))?;
        if (st.dev, st.ino) != (*dev, *ino) || st.size != *size {
            return Ok(false);
        }
        if crc32fast::hash(&crate::update::read_all(sys, &fd, temp)?) != *crc {
            tracing::debug!(target: "untorn", temp = %temp.display(), "temp incomplete: the commit point was not reached");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Clears the flags `tag` of the lock files `locks` (held), and removes every copy of the
/// journal (`bytes`) at `journal_path` and beside those lock files, syncing their directories.
/// A file under the journal's name with other content is left alone: it is another
/// transaction's, which took the name where this one's copy was missing.
fn retire(
    sys: &dyn Sys,
    journal_path: &Path,
    locks: &[Lock],
    tag: Option<u16>,
    bytes: Option<&[u8]>,
    more_dirs: BTreeSet<PathBuf>,
) -> Result<()> {
    let (jd, name) = split(journal_path)?;
    let mut dirs = more_dirs;
    dirs.insert(jd);
    // Flags first, while the copies are still there to tell whose a flag is: the tag may be
    // another transaction's, whose journal (another content) sits beside that lock file.
    for l in locks {
        if tag.is_some() && read_path(sys, l.path())?.as_deref().and_then(flag_of) == tag {
            let (ld, _) = split(l.path())?;
            let copy = read_path(sys, &ld.join(&name))?;
            if copy.is_none() || copy.as_deref() == bytes {
                let _ = sys.set_len(l.fd(), 0);
            }
        }
        dirs.insert(split(l.path())?.0);
    }
    let Some(bytes) = bytes else {
        return Ok(());
    };
    for d in &dirs {
        if read_path(sys, &d.join(&name))?.as_deref() != Some(bytes) {
            continue;
        }
        if let Ok(dir) = sys.open_dir(None, d) {
            match sys.unlink(&dir, &name) {
                Ok(()) => sys
                    .sync_dir(&dir)
                    .map_err(|e| Error::io(Op::SyncDir, d, e))?,
                Err(e) if e.raw_os_error() == Some(ENOENT) => {}
                Err(e) => return Err(Error::io(Op::Remove, d.join(&name), e)),
            }
        }
    }
    Ok(())
}

/// Recovers one journal: rolls it forward if its transaction reached the commit point, else
/// rolls back (removes the temps it names). Takes the locks the journal names. `None`: the
/// journal was gone once its locks were held (its transaction finished meanwhile) and no flag
/// led here.
pub(crate) fn recover_journal(
    ctx: &Arc<Ctx>,
    journal_path: &Path,
    found_via: Option<&Path>,
) -> Result<Option<Recovered>> {
    let sys = &*ctx.sys;
    let journal_path = absolute(sys, journal_path)?;
    let tag = tag_of(&split(&journal_path)?.1);
    let mut opts = LockOptions::new();
    opts.with_ctx(ctx.clone());
    opts.recover_txns = false;
    for _ in 0..8 {
        let bytes = read_path(sys, &journal_path)?;
        // Lock what the journal covers (and the lock file that led here), in the global order,
        // holding nothing else.
        let mut lock_set: BTreeSet<PathBuf> = BTreeSet::new();
        if let Some(Ok(j)) = bytes.as_deref().map(Journal::decode) {
            lock_set.extend(j.locks.iter().cloned());
        }
        if let Some(l) = found_via {
            lock_set.insert(absolute(sys, l)?);
        }
        let items: Vec<(&Path, Option<&Fd>)> =
            lock_set.iter().map(|l| (l.as_path(), None)).collect();
        let locks: Vec<Lock> = lock_all(ctx, &opts, &items, true)?
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        // Under the locks, look again: another process may have recovered it meanwhile, or a
        // new transaction may have taken the name.
        let bytes = read_path(sys, &journal_path)?;
        match (bytes.as_deref().map(Journal::decode), tag) {
            (Some(Ok(j)), Some(tag)) => {
                // Journals name files by absolute path. Found under a path it does not name,
                // the directory was moved or mounted elsewhere since the crash: judged there,
                // every flag would look missing, and a committed transaction would be "rolled
                // back" into a mix. Refuse; from the original path it recovers.
                let (found_in, _) = split(&journal_path)?;
                if !same_dir_among(sys, &found_in, &journal_dirs(&j)?) {
                    return Err(Error::new(
                        Op::Transaction,
                        &journal_path,
                        ErrorKind::Other,
                        format!(
                            "this transaction journal names its files under other paths (e.g. \
                             '{}'): its directory was moved or is mounted elsewhere since the \
                             transaction was interrupted; run `untorn recover` on the original \
                             path",
                            j.locks
                                .first()
                                .map_or_else(String::new, |l| l.display().to_string())
                        ),
                    ));
                }
                if !j.locks.iter().all(|l| lock_set.contains(l)) {
                    continue;
                }
                let bytes = bytes.as_deref().expect("decoded");
                if reached_commit_point(sys, &j, tag, bytes)? {
                    // The temps may never have been flushed (the committer died before its
                    // sync): make them durable before any of them is renamed into place.
                    let (jd, _) = split(&journal_path)?;
                    let dir = sys
                        .open_dir(None, &jd)
                        .map_err(|e| Error::io(Op::OpenDir, &jd, e))?;
                    sys.sync_fs(&dir).map_err(|e| Error::io(Op::Sync, &jd, e))?;
                    roll_forward(sys, &j)?;
                    retire(
                        sys,
                        &journal_path,
                        &locks,
                        Some(tag),
                        Some(bytes),
                        journal_dirs(&j)?,
                    )?;
                    tracing::info!(target: "untorn", journal = %journal_path.display(), "rolled an interrupted transaction forward");
                    return Ok(Some(Recovered::RolledForward(journal_path)));
                }
                roll_back(sys, &j)?;
                retire(
                    sys,
                    &journal_path,
                    &locks,
                    Some(tag),
                    Some(bytes),
                    journal_dirs(&j)?,
                )?;
                tracing::info!(target: "untorn", journal = %journal_path.display(), "rolled back a transaction that had not reached its commit point");
                return Ok(Some(Recovered::RolledBack(journal_path)));
            }
            (None, _) => {
                // No journal: a flag left by a transaction that never published one, or whose
                // clean-up a crash cut short. Nothing to apply; clear the flag.
                retire(sys, &journal_path, &locks, tag, None, BTreeSet::new())?;
                return match found_via {
                    Some(l) => Ok(Some(Recovered::FlagCleared(absolute(sys, l)?))),
                    None => Ok(None),
                };
            }
            (Some(r), _) => {
                // A damaged journal (or not one of ours): the commit point was not reached. Its
                // temps, if any, are left for `untorn clean` (their names say what they are).
                if let Err(e) = r {
                    tracing::info!(target: "untorn", journal = %journal_path.display(), reason = %e, "discarding an incomplete transaction journal");
                }
                retire(
                    sys,
                    &journal_path,
                    &locks,
                    tag,
                    bytes.as_deref(),
                    BTreeSet::new(),
                )?;
                return Ok(Some(Recovered::RolledBack(journal_path)));
            }
        }
    }
    Err(Error::new(
        Op::Transaction,
        &journal_path,
        ErrorKind::Other,
        "the journal keeps changing under recovery; run `untorn recover` on its directory".into(),
    ))
}

/// Removes the temps of a journal that never reached its commit point (each only if it is
/// still the inode the journal recorded).
fn roll_back(sys: &dyn Sys, j: &Journal) -> Result<()> {
    for e in &j.entries {
        if let Entry::Put { temp, dev, ino, .. } = e {
            let (d, n) = split(temp)?;
            if let Ok(dir) = sys.open_dir(None, &d) {
                if sys
                    .stat_at(&dir, &n, false)
                    .is_ok_and(|st| (st.dev, st.ino) == (*dev, *ino))
                {
                    let _ = sys.unlink(&dir, &n);
                }
            }
        }
    }
    Ok(())
}

/// Applies a committed journal again; every step checks that it is still due (idempotent).
fn roll_forward(sys: &dyn Sys, j: &Journal) -> Result<()> {
    // Every directory involved, opened once.
    let mut dirs: BTreeMap<PathBuf, Fd> = BTreeMap::new();
    for e in &j.entries {
        let paths: [&Path; 2] = match e {
            Entry::Put { temp, target, .. } => [temp, target],
            Entry::Remove { target, .. } => [target, target],
            Entry::Rename { from, to, .. } => [from, to],
        };
        for p in paths {
            let (d, _) = split(p)?;
            if let std::collections::btree_map::Entry::Vacant(v) = dirs.entry(d) {
                let fd = sys
                    .open_dir(None, v.key())
                    .map_err(|e| Error::io(Op::OpenDir, v.key(), e))?;
                v.insert(fd);
            }
        }
    }
    let at = |p: &Path| -> Result<(&Fd, OsString)> {
        let (d, n) = split(p)?;
        Ok((&dirs[&d], n))
    };
    let is = |dir: &Fd, name: &OsStr, dev: u64, ino: u64| {
        sys.stat_at(dir, name, false)
            .is_ok_and(|st| st.dev == dev && st.ino == ino)
    };
    for e in &j.entries {
        match e {
            Entry::Put {
                temp,
                target,
                dev,
                ino,
                ..
            } => {
                let ((td, tn), (gd, gn)) = (at(temp)?, at(target)?);
                if is(td, &tn, *dev, *ino) {
                    sys.rename(td, &tn, gd, &gn, RenameMode::Replace)
                        .map_err(|e| Error::io(Op::Rename, temp, e).with_other(target))?;
                }
            }
            Entry::Remove { target, dev, ino } => {
                let (gd, gn) = at(target)?;
                if is(gd, &gn, *dev, *ino) {
                    sys.unlink(gd, &gn)
                        .map_err(|e| Error::io(Op::Remove, target, e))?;
                }
            }
            Entry::Rename { from, to, dev, ino } => {
                let ((fd_, fnm), (td, tn)) = (at(from)?, at(to)?);
                if is(fd_, &fnm, *dev, *ino) {
                    sys.rename(fd_, &fnm, td, &tn, RenameMode::Replace)
                        .map_err(|e| Error::io(Op::Rename, from, e).with_other(to))?;
                }
            }
        }
    }
    for (p, fd) in &dirs {
        sys.sync_dir(fd).map_err(|e| Error::io(Op::SyncDir, p, e))?;
    }
    Ok(())
}

/// Before a write to `name` in `dir`: if its lock file carries a transaction flag, recover
/// that transaction first. Costs one `stat` when there is nothing to do.
pub(crate) fn recover_before_write(
    ctx: &Arc<Ctx>,
    dir: &Fd,
    dir_path: &Path,
    name: &OsStr,
) -> Result<()> {
    let mut lock_name = name.to_os_string();
    lock_name.push(".lock");
    match ctx.sys.stat_at(dir, &lock_name, false) {
        Ok(st) if st.size > 0 && st.file_type() == FileType::Regular => {
            recover_lock_file(ctx, &join(dir_path, &lock_name)).map(drop)
        }
        _ => Ok(()),
    }
}

/// Recovers every transaction journal in `dir`. Returns what it did.
pub fn recover_dir(dir: impl AsRef<Path>, dry_run: bool) -> Result<Vec<Recovered>> {
    recover_dir_with(&Ctx::real(), dir.as_ref(), dry_run)
}

/// [`recover_dir`] through `ctx`'s [`Sys`].
pub(crate) fn recover_dir_with(
    ctx: &Arc<Ctx>,
    dir: &Path,
    dry_run: bool,
) -> Result<Vec<Recovered>> {
    let sys = &*ctx.sys;
    let dfd = sys
        .open_dir(None, dir)
        .map_err(|e| Error::io(Op::OpenDir, dir, e))?;
    let mut names = sys
        .list_dir(&dfd)
        .map_err(|e| Error::io(Op::ListDir, dir, e))?;
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let p = absolute(sys, &join(dir, &n))?;
        if is_journal_name(&n) {
            if dry_run {
                // What recovery would decide, judged without its locks (a live transaction
                // may be mid-commit).
                let bytes = read_path(sys, &p)?;
                let valid = match (bytes.as_deref().map(Journal::decode), tag_of(&n)) {
                    (Some(Ok(j)), Some(tag)) => {
                        reached_commit_point(sys, &j, tag, bytes.as_deref().expect("read"))?
                    }
                    _ => false,
                };
                out.push(if valid {
                    Recovered::RolledForward(p)
                } else {
                    Recovered::RolledBack(p)
                });
            } else {
                out.extend(recover_journal(ctx, &p, None)?);
            }
        } else if n.as_bytes().ends_with(b".lock") && !dry_run {
            if let Ok(st) = sys.stat_at(&dfd, &n, false) {
                if st.size > 0 && st.file_type() == FileType::Regular {
                    if let Some(r) = recover_lock_file(ctx, &p)? {
                        if !out.contains(&r) {
                            out.push(r);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// One change named on the command line or in a manifest (see [`parse_ops`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestOp {
    /// `put TARGET=SOURCE`: TARGET gets SOURCE's content (`-`: standard input).
    Put {
        /// The file to write.
        target: PathBuf,
        /// Where its new content comes from.
        source: PathBuf,
    },
    /// `rm PATH`: remove PATH.
    Remove(PathBuf),
    /// `mv FROM=TO`: rename FROM to TO.
    Rename {
        /// The existing file.
        from: PathBuf,
        /// Its new name.
        to: PathBuf,
    },
}

fn pair(word: &OsStr, what: &str) -> std::result::Result<(PathBuf, PathBuf), String> {
    let b = word.as_bytes();
    match b.iter().position(|&c| c == b'=') {
        Some(i) if i > 0 && i + 1 < b.len() => Ok((
            PathBuf::from(OsStr::from_bytes(&b[..i])),
            PathBuf::from(OsStr::from_bytes(&b[i + 1..])),
        )),
        _ => Err(format!(
            "'{}' should be {what} (two non-empty paths joined by '=')",
            word.to_string_lossy()
        )),
    }
}

/// Parses changes given as words: `put TARGET=SOURCE`, `rm PATH`, `mv FROM=TO`, in any number
/// and order. A path may contain `=` only after the first one (the first `=` separates).
///
/// ```
/// use untorn::txn::{parse_ops, ManifestOp};
/// let ops = parse_ops(["put", "a.json=new.json", "rm", "old.txt"].map(Into::into)).unwrap();
/// assert_eq!(ops[1], ManifestOp::Remove("old.txt".into()));
/// assert!(parse_ops(["put", "a.json"].map(Into::into)).is_err());
/// ```
pub fn parse_ops<I>(words: I) -> std::result::Result<Vec<ManifestOp>, String>
where
    I: IntoIterator<Item = OsString>,
{
    let mut it = words.into_iter();
    let mut ops = Vec::new();
    while let Some(verb) = it.next() {
        let mut arg = || {
            it.next()
                .ok_or_else(|| format!("'{}' needs an argument", verb.to_string_lossy()))
        };
        ops.push(match verb.as_bytes() {
            b"put" => {
                let (target, source) = pair(&arg()?, "TARGET=SOURCE")?;
                ManifestOp::Put { target, source }
            }
            b"rm" => ManifestOp::Remove(PathBuf::from(arg()?)),
            b"mv" => {
                let (from, to) = pair(&arg()?, "FROM=TO")?;
                ManifestOp::Rename { from, to }
            }
            _ => {
                return Err(format!(
                    "unknown change '{}' (expected put, rm or mv)",
                    verb.to_string_lossy()
                ))
            }
        });
    }
    Ok(ops)
}

/// Parses a manifest: one change per line, as in [`parse_ops`] (`put a.json=new.json`);
/// blank lines and lines starting with `#` are skipped. Errors name the line.
pub fn parse_manifest(text: &[u8]) -> std::result::Result<Vec<ManifestOp>, String> {
    let mut ops = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() || trimmed.starts_with(b"#") {
            continue;
        }
        let words = trimmed
            .splitn(2, |b| b.is_ascii_whitespace())
            .map(|w| OsString::from_vec(w.trim_ascii().to_vec()))
            .filter(|w| !w.is_empty());
        let parsed = parse_ops(words).map_err(|e| format!("line {}: {e}", i + 1))?;
        if parsed.len() != 1 {
            return Err(format!("line {}: expected one change", i + 1));
        }
        ops.extend(parsed);
    }
    Ok(ops)
}
