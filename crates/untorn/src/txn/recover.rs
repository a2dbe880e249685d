//! Recovery: finishing or undoing a transaction that a crash interrupted, found through a flag
//! (a write, a lock) or a journal (`untorn recover DIR`).
//!
//! Everything found on disk is input from whoever can write there (see [`crate::trust`]):
//! - a journal is acted on only if its owner is trusted, it is a regular file nobody else may
//!   write, and it sits in one of the directories it names;
//! - its other directories are found again by the path it recorded and must be the same
//!   directory (device and inode), else recovery refuses and says which;
//! - every name it gives is one entry of one of those directories, reached through the
//!   directory's descriptor, never followed if it is a symlink, and checked by inode before it is
//!   renamed or removed;
//! - every wait for a lock is bounded ([`Settings::wait`]), since others can hold lock files.

use super::journal::{Entry, Journal};
use super::settle::Settings;
use super::{flag_of, journal_name, look, tag_of, tag_of_size, Found};
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::lockfile::{self, Held, Want};
use crate::paths::join;
use crate::sys::{errnos::*, Fd, RenameMode, Stat, Sys};
use crate::trust::trusts;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// What a recovery did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovered {
    /// The journal was complete: its changes were applied (again, where needed).
    RolledForward(PathBuf),
    /// The commit point was not reached: the temps were removed, nothing changed.
    RolledBack(PathBuf),
    /// A lock file (this one) carried a transaction's flag but no journal was beside it: a
    /// transaction that never published one, or whose clean-up a crash cut short. The flag was
    /// cleared; nothing else changed.
    FlagCleared(PathBuf),
    /// A journal (or a lock file's flag) that another user owns: left alone. Its owner (or a
    /// caller who trusts them) can recover it.
    Untrusted {
        /// The journal.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// A journal that recovery will not act on, and why (it is not a regular file, others may
    /// write it, it belongs to another directory): left alone.
    Refused {
        /// The journal.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Rolled forward with `abandon`: the changes that could not be applied were given up (their
    /// new content is left in the temps named), and the journal removed.
    Abandoned {
        /// The journal.
        path: PathBuf,
        /// Each change that could not be applied, and why.
        failed: Vec<String>,
    },
}

/// The directory a journal copy was found in (or a flag led to), opened and identified.
pub(super) struct Home {
    pub(super) fd: Fd,
    pub(super) st: Stat,
    pub(super) path: PathBuf,
}

impl Home {
    pub(super) fn open(sys: &dyn Sys, dir: &Fd, path: &Path) -> Result<Home> {
        // A descriptor of our own for the same directory (not a lookup by path again).
        let fd = sys
            .open_dir(Some(dir), Path::new("."))
            .map_err(|e| Error::io(Op::OpenDir, path, e))?;
        let st = sys.stat(&fd).map_err(|e| Error::io(Op::Stat, path, e))?;
        Ok(Home {
            fd,
            st,
            path: path.to_path_buf(),
        })
    }
}

/// A transaction's directories, each opened and checked to be the one the journal names.
pub(super) struct Parts {
    fds: Vec<Fd>,
    shown: Vec<PathBuf>,
}

impl Parts {
    pub(super) fn fd(&self, i: u32) -> &Fd {
        &self.fds[i as usize]
    }
    fn shown(&self, i: u32, name: &OsStr) -> PathBuf {
        join(&self.shown[i as usize], name)
    }
}

/// Opens the journal's directories: `home` is the one it was found in (index `home_i`); the
/// others are found again by their recorded path and must be the same directory (device and
/// inode), or recovery refuses: it cannot judge the transaction without all of them.
pub(super) fn open_parts(sys: &dyn Sys, j: &Journal, home: &Home, home_i: usize) -> Result<Parts> {
    let mut fds = Vec::with_capacity(j.dirs.len());
    let mut shown = Vec::with_capacity(j.dirs.len());
    for (i, d) in j.dirs.iter().enumerate() {
        let fd = if i == home_i {
            sys.open_dir(Some(&home.fd), Path::new("."))
                .map_err(|e| Error::io(Op::OpenDir, &home.path, e))?
        } else {
            let moved = || {
                Error::new(
                    Op::Transaction,
                    &d.path,
                    ErrorKind::Other,
                    format!(
                        "an interrupted transaction (journal in '{}') also changes files in \
                         '{}', which is not that directory any more (moved, replaced, or \
                         reached through a changed symlink since the crash); put it back and run \
                         `untorn recover` again",
                        home.path.display(),
                        d.path.display()
                    ),
                )
            };
            let fd = sys.open_dir(None, &d.path).map_err(|_| moved())?;
            let st = sys.stat(&fd).map_err(|e| Error::io(Op::Stat, &d.path, e))?;
            if (st.dev, st.ino) != (d.dev, d.ino) {
                return Err(moved());
            }
            fd
        };
        fds.push(fd);
        shown.push(if i == home_i {
            home.path.clone()
        } else {
            d.path.clone()
        });
    }
    Ok(Parts { fds, shown })
}

/// Whether a journal copy found with metadata `st` may be acted on; `Some(why not)` otherwise.
pub(super) fn refuse_copy(euid: u32, st: &Stat) -> Option<Refusal> {
    if !trusts(euid, st.uid) {
        return Some(Refusal::Owner(st.uid));
    }
    if st.permissions() & 0o022 != 0 {
        return Some(Refusal::Why(
            "it may be written by users other than its owner".into(),
        ));
    }
    None
}

pub(super) enum Refusal {
    Owner(u32),
    Why(String),
}

impl Refusal {
    pub(super) fn into_recovered(self, path: PathBuf) -> Recovered {
        match self {
            Refusal::Owner(owner) => Recovered::Untrusted { path, owner },
            Refusal::Why(why) => Recovered::Refused { path, why },
        }
    }
}

/// Recovers the transaction whose journal copy is `jname` in `home` (reached through the flag
/// of lock file `via`, if any). `None`: nothing was there any more.
pub(super) fn recover_txn(
    ctx: &Arc<Ctx>,
    home: &Home,
    jname: &OsStr,
    via: Option<&OsStr>,
    s: &Settings,
) -> Result<Option<Recovered>> {
    let sys = &*ctx.sys;
    let euid = sys.euid();
    let jpath = join(&home.path, jname);
    let Some(tag) = tag_of(jname) else {
        return Ok(None);
    };
    for _ in 0..8 {
        // 1. The copy here, judged before anything is locked or read whole.
        let found = look(sys, &home.fd, jname, |st| refuse_copy(euid, st).is_none())
            .map_err(|e| Error::io(Op::Read, &jpath, e))?;
        let (jst, bytes) = match found {
            Found::Missing => {
                return match via {
                    Some(l) => clear_stale_flag(ctx, home, l, tag, s),
                    None => Ok(None),
                }
            }
            Found::NotRegular => {
                return Ok(Some(Recovered::Refused {
                    path: jpath,
                    why: "it is not a regular file".into(),
                }))
            }
            Found::File(st, bytes) => (st, bytes),
        };
        if let Some(r) = refuse_copy(euid, &jst) {
            return Ok(Some(r.into_recovered(jpath)));
        }
        let j = match Journal::decode(&bytes) {
            Ok(j) => j,
            Err(e) => {
                // Damaged or not a journal of this version: its commit point was not reached
                // (a committed journal is durable whole). Its temps, if any, are left for
                // `untorn clean` (their names say what they are).
                tracing::info!(target: "untorn", journal = %jpath.display(), reason = %e, "discarding an incomplete transaction journal");
                return discard_damaged(ctx, home, jname, &bytes, via, tag, s);
            }
        };
        let Some(home_i) = j.dir_index(home.st.dev, home.st.ino) else {
            return Ok(Some(Recovered::Refused {
                path: jpath,
                why: "it belongs to other directories (a copy moved or linked here)".into(),
            }));
        };
        // 2. Its directories, and which of them hold a copy of it. Recovery changes nothing,
        //    creates no lock file, in a directory without one: a copy is what makes a
        //    directory the transaction's (a journal cannot claim any directory it names).
        let parts = open_parts(sys, &j, home, home_i)?;
        let copies: Vec<bool> = (0..j.dirs.len() as u32)
            .map(|i| i as usize == home_i || has_copy(sys, &parts, i, jname, &bytes, euid))
            .collect();
        // 3. Its locks in those directories (and the lock file that led here), in the global
        //    order, holding nothing else.
        let mut names: Vec<(u32, OsString)> = j
            .locks
            .iter()
            .filter(|l| copies[l.dir as usize])
            .map(|l| (l.dir, l.name.clone()))
            .collect();
        let locked_all = names.len() == j.locks.len();
        if let Some(l) = via {
            names.push((home_i as u32, l.to_os_string()));
        }
        let wants: Vec<Want> = names
            .iter()
            .map(|(d, n)| Want {
                dir: parts.fd(*d),
                dir_path: &parts.shown[*d as usize],
                name: n.clone(),
                key: j.dirs[*d as usize].path.join(n),
            })
            .collect();
        let (locks, index) =
            lockfile::lock_all(ctx, &wants, &s.how(), Instant::now()).map_err(|e| {
                if e.kind() == ErrorKind::TimedOut {
                    e.with_note(format!(
                        "waiting to recover the interrupted transaction '{}'",
                        jpath.display()
                    ))
                } else {
                    e
                }
            })?;
        // 4. Under the locks, look again: another process may have recovered it meanwhile, or
        //    a new transaction may have taken the name.
        match look(sys, &home.fd, jname, |st| refuse_copy(euid, st).is_none())
            .map_err(|e| Error::io(Op::Read, &jpath, e))?
        {
            Found::File(st, b) if b == bytes && st.ino == jst.ino => {}
            _ => continue,
        }
        let lock_of = |k: usize| &locks[index[k]];
        // 5. Judge, then act.
        if locked_all
            && copies.iter().all(|&c| c)
            && reached_commit_point(sys, &parts, &j, tag, &bytes, euid, |k| {
                read_flag(sys, lock_of(k))
            })?
        {
            // The temps may never have been flushed (the committer died before its sync):
            // make them durable before any of them is renamed into place.
            sys.sync_fs(&home.fd)
                .map_err(|e| Error::io(Op::Sync, &home.path, e))?;
            let failed = roll_forward(sys, &parts, &j)?;
            if !failed.is_empty() && !s.abandon {
                return Err(Error::new(
                    Op::Transaction,
                    &jpath,
                    ErrorKind::Other,
                    format!(
                        "this committed transaction cannot be fully applied: {}. Fix the cause \
                         and run `untorn recover` again, or give those changes up with \
                         `untorn recover --abandon` (the rest stays applied)",
                        failed.join("; ")
                    ),
                ));
            }
            retire(sys, &parts, &j, jname, &bytes, &locks, tag)?;
            if failed.is_empty() {
                tracing::info!(target: "untorn", journal = %jpath.display(), "rolled an interrupted transaction forward");
                return Ok(Some(Recovered::RolledForward(jpath)));
            }
            tracing::warn!(target: "untorn", "gave up the changes of '{}' that could not be applied: {}", jpath.display(), failed.join("; "));
            return Ok(Some(Recovered::Abandoned {
                path: jpath,
                failed,
            }));
        }
        roll_back(sys, &parts, &j, &copies);
        retire(sys, &parts, &j, jname, &bytes, &locks, tag)?;
        tracing::info!(target: "untorn", journal = %jpath.display(), "rolled back a transaction that had not reached its commit point");
        return Ok(Some(Recovered::RolledBack(jpath)));
    }
    Err(Error::new(
        Op::Transaction,
        &jpath,
        ErrorKind::Other,
        "the journal keeps changing under recovery; run `untorn recover` on its directory".into(),
    ))
}

/// A flag with no journal beside it: a transaction that never published one, or whose clean-up
/// a crash cut short. Nothing to apply; the flag is cleared under its lock.
fn clear_stale_flag(
    ctx: &Arc<Ctx>,
    home: &Home,
    lock: &OsStr,
    tag: u16,
    s: &Settings,
) -> Result<Option<Recovered>> {
    let held = lockfile::acquire(ctx, &home.fd, &home.path, lock, &s.how(), Instant::now())?;
    let lock_path = join(&home.path, lock);
    let still = matches!(
        look(&*ctx.sys, &home.fd, &journal_name(tag), |_| false),
        Ok(Found::Missing)
    );
    if still && tag_of_size(held.st.size) == Some(tag) && read_flag(&*ctx.sys, &held) == Some(tag) {
        ctx.sys
            .set_len(held.fd(), 0)
            .map_err(|e| Error::io(Op::Write, &lock_path, e))?;
        return Ok(Some(Recovered::FlagCleared(lock_path)));
    }
    Ok(None)
}

/// A damaged journal copy: removed (it is ours: its owner is trusted) if it is still the same
/// under the lock that led here, and that flag cleared.
fn discard_damaged(
    ctx: &Arc<Ctx>,
    home: &Home,
    jname: &OsStr,
    bytes: &[u8],
    via: Option<&OsStr>,
    tag: u16,
    s: &Settings,
) -> Result<Option<Recovered>> {
    let sys = &*ctx.sys;
    let jpath = join(&home.path, jname);
    let held = match via {
        Some(l) => Some(lockfile::acquire(
            ctx,
            &home.fd,
            &home.path,
            l,
            &s.how(),
            Instant::now(),
        )?),
        None => None,
    };
    if let Ok(Found::File(_, b)) = look(sys, &home.fd, jname, |_| true) {
        if b == bytes {
            match sys.unlink(&home.fd, jname) {
                Ok(()) => sys
                    .sync_dir(&home.fd)
                    .map_err(|e| Error::io(Op::SyncDir, &home.path, e))?,
                Err(e) if e.raw_os_error() == Some(ENOENT) => {}
                Err(e) => return Err(Error::io(Op::Remove, &jpath, e)),
            }
        }
    }
    if let Some(h) = &held {
        if read_flag(sys, h) == Some(tag) {
            let _ = sys.set_len(h.fd(), 0);
        }
    }
    Ok(Some(Recovered::RolledBack(jpath)))
}

/// The flag a held lock file carries now, read through its descriptor.
fn read_flag(sys: &dyn Sys, l: &Held) -> Option<u16> {
    let st = sys.stat(l.fd()).ok()?;
    let n = tag_of_size(st.size)? as usize;
    let mut buf = vec![0u8; n];
    let got = sys.read_at(l.fd(), &mut buf, 0).ok()?;
    flag_of(&buf[..got])
}

/// Whether the transaction of journal `j` (tagged `tag`, `bytes`) reached its commit point: a
/// copy of it is in every one of its directories (owned by a trusted user), every lock file it
/// names carries its flag, and every temp is whole (its size and CRC as recorded) or already in
/// place. Called under all its locks; `lock_of(k)` is the lock of `j.locks[k]`.
pub(super) fn reached_commit_point(
    sys: &dyn Sys,
    parts: &Parts,
    j: &Journal,
    tag: u16,
    bytes: &[u8],
    euid: u32,
    flag_of_lock: impl Fn(usize) -> Option<u16>,
) -> Result<bool> {
    let name = journal_name(tag);
    for k in 0..j.locks.len() {
        if flag_of_lock(k) != Some(tag) {
            tracing::debug!(target: "untorn", lock = ?j.locks[k].name, "not flagged: the commit point was not reached");
            return Ok(false);
        }
    }
    for i in 0..j.dirs.len() as u32 {
        let copy = look(sys, parts.fd(i), &name, |st| {
            refuse_copy(euid, st).is_none()
        })
        .map_err(|e| Error::io(Op::Read, parts.shown(i, &name), e))?;
        match copy {
            Found::File(st, b) if refuse_copy(euid, &st).is_none() && b == bytes => {}
            _ => {
                tracing::debug!(target: "untorn", dir = %parts.shown[i as usize].display(), "a journal copy is missing: the commit point was not reached");
                return Ok(false);
            }
        }
    }
    for e in &j.entries {
        let Entry::Put {
            dir,
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
        let d = parts.fd(*dir);
        if sys
            .stat_at(d, target, false)
            .is_ok_and(|st| (st.dev, st.ino) == (*dev, *ino))
        {
            continue; // renamed into place already
        }
        let whole = |st: &Stat| (st.dev, st.ino, st.size) == (*dev, *ino, *size);
        match look(sys, d, temp, whole)
            .map_err(|e| Error::io(Op::Read, parts.shown(*dir, temp), e))?
        {
            Found::File(st, content) if whole(&st) && crc32fast::hash(&content) == *crc => {}
            _ => {
                tracing::debug!(target: "untorn", temp = %parts.shown(*dir, temp).display(), "temp missing or incomplete: the commit point was not reached");
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Whether directory `i` of `parts` holds a copy of the journal (`bytes`, named `name`) that the
/// caller trusts.
fn has_copy(sys: &dyn Sys, parts: &Parts, i: u32, name: &OsStr, bytes: &[u8], euid: u32) -> bool {
    matches!(
        look(sys, parts.fd(i), name, |st| refuse_copy(euid, st).is_none()),
        Ok(Found::File(st, b)) if refuse_copy(euid, &st).is_none() && b == bytes
    )
}

/// Whether the entry `name` of `dir` is inode `(dev, ino)` (not following a symlink).
fn is(sys: &dyn Sys, dir: &Fd, name: &OsStr, dev: u64, ino: u64) -> bool {
    sys.stat_at(dir, name, false)
        .is_ok_and(|st| st.dev == dev && st.ino == ino)
}

/// Applies a committed journal again; every step checks that it is still due (idempotent).
/// Returns the changes that could not be applied, and why; each directory is fsynced.
fn roll_forward(sys: &dyn Sys, parts: &Parts, j: &Journal) -> Result<Vec<String>> {
    let mut failed = Vec::new();
    for e in &j.entries {
        let r = match e {
            Entry::Put {
                dir,
                temp,
                target,
                dev,
                ino,
                ..
            } => {
                let d = parts.fd(*dir);
                if is(sys, d, temp, *dev, *ino) {
                    sys.rename(d, temp, d, target, RenameMode::Replace)
                        .map_err(|e| {
                            Error::io(Op::Rename, parts.shown(*dir, temp), e)
                                .with_other(parts.shown(*dir, target))
                        })
                } else {
                    Ok(())
                }
            }
            Entry::Remove {
                dir,
                name,
                dev,
                ino,
            } => {
                let d = parts.fd(*dir);
                if is(sys, d, name, *dev, *ino) {
                    match sys.unlink(d, name) {
                        Err(e) if e.raw_os_error() != Some(ENOENT) => {
                            Err(Error::io(Op::Remove, parts.shown(*dir, name), e))
                        }
                        _ => Ok(()),
                    }
                } else {
                    Ok(())
                }
            }
            Entry::Rename {
                from_dir,
                from,
                to_dir,
                to,
                dev,
                ino,
            } => {
                let (fd, td) = (parts.fd(*from_dir), parts.fd(*to_dir));
                if is(sys, fd, from, *dev, *ino) {
                    super::rename_entry(sys, fd, from, td, to).map_err(|e| {
                        Error::io(Op::Rename, parts.shown(*from_dir, from), e)
                            .with_other(parts.shown(*to_dir, to))
                    })
                } else {
                    Ok(())
                }
            }
        };
        if let Err(e) = r {
            failed.push(e.to_string());
        }
    }
    for (i, fd) in parts.fds.iter().enumerate() {
        sys.sync_dir(fd)
            .map_err(|e| Error::io(Op::SyncDir, &parts.shown[i], e))?;
    }
    Ok(failed)
}

/// Removes the temps of a journal that never reached its commit point (each only if it is still
/// the inode the journal recorded, and in a directory holding a copy of the journal: `copies`).
/// Temps elsewhere are orphans for `untorn clean`.
fn roll_back(sys: &dyn Sys, parts: &Parts, j: &Journal, copies: &[bool]) {
    for e in &j.entries {
        if let Entry::Put {
            dir,
            temp,
            dev,
            ino,
            ..
        } = e
        {
            if !copies[*dir as usize] {
                continue;
            }
            let d = parts.fd(*dir);
            if is(sys, d, temp, *dev, *ino) {
                let _ = sys.unlink(d, temp);
            }
        }
    }
}

/// Clears the flags `tag` of the held lock files, and removes every copy of the journal
/// (`bytes`), syncing their directories. A file under the journal's name with other content is
/// left alone: it is another transaction's.
fn retire(
    sys: &dyn Sys,
    parts: &Parts,
    j: &Journal,
    name: &OsStr,
    bytes: &[u8],
    locks: &[Held],
    tag: u16,
) -> Result<()> {
    // Flags first: under our locks nobody else sets them, so a flag equal to our tag is ours.
    for l in locks {
        if read_flag(sys, l) == Some(tag) {
            let _ = sys.set_len(l.fd(), 0);
        }
    }
    for i in 0..j.dirs.len() as u32 {
        let d = parts.fd(i);
        let euid = sys.euid();
        match look(sys, d, name, |st| refuse_copy(euid, st).is_none()) {
            Ok(Found::File(_, b)) if b == bytes => {}
            _ => continue,
        }
        match sys.unlink(d, name) {
            Ok(()) => sys
                .sync_dir(d)
                .map_err(|e| Error::io(Op::SyncDir, &parts.shown[i as usize], e))?,
            Err(e) if e.raw_os_error() == Some(ENOENT) => {}
            Err(e) => return Err(Error::io(Op::Remove, parts.shown(i, name), e)),
        }
    }
    Ok(())
}
