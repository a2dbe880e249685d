//! Committing a transaction: the steps of the protocol in the module doc of [`crate::txn`],
//! one function each, in order.

use super::journal::{self, Journal};
use super::settle::{settle_flag, Settings, Settled};
use super::stage::{Change, Committed, Transaction};
use super::{journal_name, lock_name, tag_of_size, MAX_TAG};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::lockfile::{self, Held, Want};
use crate::paths::{join, temp_name};
use crate::sys::{errnos::*, FileType, RenameMode, Stat, Sys};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

impl Transaction {
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
            return Ok(Committed {
                durable: true,
                ..Committed::default()
            });
        }
        // A mount that cannot keep the transaction durable: said (tmpfs, overlayfs volatile) or
        // refused (a FUSE daemon untorn does not know), before any lock file is created.
        let first = &self.dirs.list[0];
        let durable = self.ctx.check_durability(
            first.st.dev,
            &first.fd,
            &first.path,
            Op::Transaction,
            true,
            self.lock.how.allow_shared_fs,
        )?;
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
        let mut out = out?;
        out.durable = durable;
        let first = &self.dirs.list[0];
        self.ctx
            .warn_if_volatile(first.st.dev, &first.fd, &first.path);
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
                // The checksum that readers of this version (a backup, later) check it by.
                crate::sum::record(&self.ctx, &s.fd, s.w.crc(), &st, &shown);
                // Its owner and mode as that fstat saw them (the checksum changed neither).
                crate::temp::set_final_metadata_from(
                    sys,
                    &s.fd,
                    &shown,
                    &st,
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
                    size: s.w.len(),
                    crc: s.w.crc(),
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
                    let mut r = sys.link(&first.fd, &tmp, &d.fd, &name);
                    let no_links = matches!(&r, Err(e) if crate::ctx::no_links(e.raw_os_error()));
                    if no_links && self.dirs.list.len() == 1 {
                        // No hard links (exFAT): one directory needs none, the journal can
                        // appear whole by a rename that replaces nothing.
                        r = crate::ctx::rename_new(&self.ctx, first.st.dev, &first.fd, &tmp, &name);
                    }
                    if let Err(e) = r {
                        for d in &self.dirs.list[..i] {
                            let _ = sys.unlink(&d.fd, &name);
                        }
                        if e.raw_os_error() == Some(EEXIST) {
                            continue 'tags;
                        }
                        let err =
                            Error::io(Op::Link, join(&d.path, &name), e).with_other(&tmp_path);
                        return Err(if no_links {
                            err.with_kind(ErrorKind::Unsupported).with_note(
                                "this file system has no hard links, and a transaction across \
                                 directories links its journal into each",
                            )
                        } else {
                            err
                        });
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
        let synced = if self.ctx.keeps(first.st.dev, &first.fd).1 {
            self.sync_each(locks, name)
        } else {
            sys.sync_fs(&first.fd)
        };
        if let Err(e) = synced {
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

    /// Step 6 on FUSE, where `syncfs` reaches no daemon (the kernel sends it only to
    /// virtiofs): each temp, lock file (its flag) and the journal fsynced, then every
    /// directory (their new names): what the one `syncfs` does elsewhere, one file at a time.
    fn sync_each(&self, locks: &[Held], name: &OsStr) -> io::Result<()> {
        use crate::sys::{OpenHow, SyncKind};
        let sys = &*self.ctx.sys;
        for c in &self.changes {
            if let Change::Put(s) = c {
                sys.sync(&s.fd, SyncKind::All)?;
            }
        }
        for l in locks {
            sys.sync(l.fd(), SyncKind::All)?;
        }
        let first = &self.dirs.list[0];
        let how = OpenHow {
            read: true,
            no_follow: true,
            ..OpenHow::default()
        };
        sys.sync(&sys.open_file(&first.fd, name, how, 0)?, SyncKind::All)?;
        for d in &self.dirs.list {
            sys.sync_dir(&d.fd)?;
        }
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
