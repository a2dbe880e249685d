//! The streaming replacement of one file: [`AtomicFile`], a state machine that buffers what is
//! written, then commits it (or rolls back), resuming where a failed commit stopped.

use super::{Durability, OpenOptions, Symlinks, TempFile};
use crate::ctx::{is_unsupported, Ctx, Feature};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::paths::{join, resolve, temp_name, Target};
use crate::sys::{errnos::*, Fd, FileType, FsKind, RenameMode, Stat, SyncKind, Sys};
use crate::temp::TempWriter;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

mod keep;

/// The temporary file of an [`AtomicFile`].
struct Temp {
    fd: Fd,
    /// Its name in the directory, once it has one (always for a named temp; after `linkat` for
    /// an `O_TMPFILE` one).
    name: Option<OsString>,
    unnamed: bool,
}

/// How far a commit has come; a failed commit resumes from here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Progress {
    metadata_set: bool,
    synced: bool,
    /// The new content is at the target's name.
    published: bool,
    /// Publishing swapped names: the temp name now holds the old file.
    exchanged: bool,
    /// The backup name the displaced version got in this commit.
    backup: Option<OsString>,
    /// The checksum given at commit was recorded.
    summed: bool,
    /// Everything is done (committed, or discarded).
    finished: bool,
}

/// A replacement of one file, written as a stream; nothing is visible at the target until
/// [`commit`](AtomicFile::commit).
///
/// Writes are buffered (64 KiB), so small writes (from `serde_json::to_writer`, `write!`) cost
/// no system call each. Dropping an uncommitted `AtomicFile` discards it: the temp file is
/// removed and the target stays as it was. Prefer [`discard`](AtomicFile::discard), which
/// reports errors.
///
/// ```
/// use std::io::Write;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("log.txt");
/// let mut f = untorn::OpenOptions::new().open(&path)?;
/// for i in 0..3 {
///     writeln!(f, "line {i}")?;
/// }
/// f.commit()?;
/// assert_eq!(std::fs::read_to_string(&path)?, "line 0\nline 1\nline 2\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "nothing is written until the file is committed; dropping it discards the write"]
pub struct AtomicFile {
    ctx: Arc<Ctx>,
    opts: OpenOptions,
    target: Target,
    dev: u64,
    fs: FsKind,
    /// The durability this write gets on its mount (see [`AtomicFile::durability`]).
    achieved: Durability,
    temp: Temp,
    final_mode: u32,
    /// The buffer, the checksum and the count of what was written (its `late_sum`: the
    /// checksum of the content comes from the caller at commit, a whole buffer hashed in
    /// parallel).
    pub(super) w: TempWriter,
    /// The temp as it was after the last byte was written (with its modification time).
    written: Option<Stat>,
    progress: Progress,
    started: Instant,
}

impl fmt::Debug for AtomicFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicFile")
            .field("path", &self.target.path())
            .field("temp", &self.temp.name)
            .field("bytes", &self.w.len())
            .field("progress", &self.progress)
            .finish()
    }
}

/// A commit that failed: the error, and the [`AtomicFile`] back, so that the caller can retry
/// ([`commit`](AtomicFile::commit) resumes where it stopped, e.g. after space was freed) or
/// [`discard`](AtomicFile::discard) it. Dropping it discards the write.
#[derive(Debug)]
pub struct CommitError {
    /// What went wrong.
    pub error: Error,
    /// The uncommitted file.
    pub file: AtomicFile,
}

impl CommitError {
    /// Splits it into the error and the file.
    pub fn into_parts(self) -> (Error, AtomicFile) {
        (self.error, self.file)
    }
}

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for CommitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl From<CommitError> for Error {
    fn from(e: CommitError) -> Error {
        e.error
    }
}

impl From<CommitError> for io::Error {
    fn from(e: CommitError) -> io::Error {
        e.error.into()
    }
}

impl AtomicFile {
    pub(super) fn open(opts: &OpenOptions, path: &Path, started: Instant) -> Result<AtomicFile> {
        let ctx = opts.ctx.clone();
        let mut target = resolve(&ctx, path, opts.symlinks)?;
        // A transaction that crashed with this file in it is finished (or undone) first, so
        // that this write never lands under one that is later rolled forward over it.
        let settings = crate::txn::settle::Settings {
            wait: opts.wait,
            ..Default::default()
        };
        if crate::txn::settle::settle_before_change(
            &ctx,
            &target.dir,
            &target.dir_path,
            &target.name,
            &settings,
        )? {
            target = resolve(&ctx, path, opts.symlinks)?;
        }
        Self::open_resolved(opts, target, started)
    }

    /// [`AtomicFile::open`] of a path already resolved to `target` (by [`resolve`], or by a
    /// caller that follows symlinks the same way), whose lock file carries no transaction's
    /// flag: the caller holds that lock, taken through [`crate::lock`], which settles flags.
    pub(crate) fn open_resolved(
        opts: &OpenOptions,
        target: Target,
        started: Instant,
    ) -> Result<AtomicFile> {
        let ctx = opts.ctx.clone();
        let sys = &*ctx.sys;
        let dst = sys
            .stat(&target.dir)
            .map_err(|e| Error::io(Op::Stat, &target.dir_path, e))?;
        let dev = dst.dev;
        let fs = ctx.fs_kind(dev, &target.dir);
        // What would make a later step fail, or the result weaker than asked, refused before
        // the first change: nothing is left behind.
        super::checks::attributes(&dst, &target, opts, false)?;
        let achieved = super::checks::durability(&ctx, opts, dev, &target.dir, &target.path())?;

        let final_mode = match (opts.mode, target.existing) {
            (Some(m), _) => m,
            (None, Some(st)) if st.file_type() == FileType::Regular => st.permissions(),
            _ => 0o666 & !sys.umask(),
        };

        // The temp is created 0600 (owner only) whatever the final mode, so that nobody can
        // open it and read the new data before it is complete; the final mode is set at commit.
        let want_unnamed = match opts.temp {
            TempFile::Named => false,
            TempFile::Unnamed => true,
            TempFile::Auto => ctx.has(dev, Feature::Tmpfile) != Some(false),
        };
        let mut temp = None;
        if want_unnamed {
            match sys.create_unnamed(&target.dir, 0o600) {
                Ok(fd) => {
                    ctx.learn(dev, Feature::Tmpfile, true);
                    temp = Some(Temp {
                        fd,
                        name: None,
                        unnamed: true,
                    });
                }
                Err(e) if is_unsupported(e.raw_os_error()) => {
                    ctx.learn(dev, Feature::Tmpfile, false);
                    if opts.temp == TempFile::Unnamed {
                        return Err(Error::io(Op::CreateTemp, target.path(), e)
                            .with_kind(ErrorKind::Unsupported)
                            .with_note("this file system does not support O_TMPFILE"));
                    }
                }
                Err(e) => return Err(Error::io(Op::CreateTemp, target.path(), e)),
            }
        }
        let temp = match temp {
            Some(t) => t,
            None => {
                super::checks::attributes(&dst, &target, opts, true)?;
                let mut tries = 0;
                loop {
                    let name = temp_name(&target.name);
                    match sys.create_temp(&target.dir, &name, 0o600) {
                        Ok(fd) => {
                            break Temp {
                                fd,
                                name: Some(name),
                                unnamed: false,
                            }
                        }
                        Err(e) if e.raw_os_error() == Some(EEXIST) && tries < 100 => tries += 1,
                        Err(e) => return Err(Error::io(Op::CreateTemp, target.path(), e)),
                    }
                }
            }
        };
        Ok(AtomicFile {
            ctx,
            opts: opts.clone(),
            target,
            dev,
            fs,
            achieved,
            temp,
            final_mode,
            w: TempWriter::default(),
            written: None,
            progress: Progress::default(),
            started,
        })
    }

    /// The path this file will replace (after following symlinks).
    pub fn target_path(&self) -> PathBuf {
        self.target.path()
    }

    /// The durability a successful [`commit`](Self::commit) gives: the level asked for where
    /// the file system keeps what is synced, else [`Durability::None`] (tmpfs, ramfs, overlayfs
    /// mounted `volatile`, a FUSE mount untorn cannot vouch for and was allowed to use). The
    /// replacement is atomic either way.
    pub fn durability(&self) -> Durability {
        self.achieved
    }

    /// The temp file's path, if it has a name (a named temp, or an `O_TMPFILE` being
    /// committed); `None` while it is an unnamed `O_TMPFILE`.
    pub fn temp_path(&self) -> Option<PathBuf> {
        self.temp
            .name
            .as_ref()
            .map(|n| join(&self.target.dir_path, n))
    }

    fn sys(&self) -> &dyn Sys {
        &*self.ctx.sys
    }

    fn temp_display(&self) -> PathBuf {
        self.temp_path().unwrap_or_else(|| self.target.path())
    }

    /// Writes out the buffer; on error, what was not written stays buffered.
    fn flush_buf(&mut self) -> Result<()> {
        let shown = self.target.path();
        self.w.flush(&*self.ctx.sys, &self.temp.fd, &shown)
    }

    /// Whole-buffer write used by [`write()`](crate::write): no copy through the buffer for
    /// large data.
    pub(super) fn write_all_bytes(&mut self, data: &[u8]) -> Result<()> {
        let shown = self.target.path();
        self.w
            .write_all(&*self.ctx.sys, &self.temp.fd, data, &shown)
    }

    /// Makes the new content visible at the target and, by default, durable. On success the
    /// target holds exactly what was written; on error it holds what it held before, and the
    /// [`AtomicFile`] comes back in the [`CommitError`] to retry or discard.
    // The error hands the whole file back (like `tempfile::PersistError`); it is returned once
    // per write, next to several system calls, so its size costs nothing measurable.
    #[allow(clippy::result_large_err)]
    pub fn commit(self) -> Result<(), CommitError> {
        self.commit_with(&mut || None)
    }

    /// [`commit`](Self::commit), with the checksum of the content from `late_sum` (called once,
    /// after the temp's fsync) when `self.w.late_sum` is set.
    #[allow(clippy::result_large_err)]
    pub(super) fn commit_with(
        mut self,
        late_sum: &mut dyn FnMut() -> Option<u32>,
    ) -> Result<(), CommitError> {
        match self.commit_steps(late_sum) {
            Ok(()) => {
                self.progress.finished = true;
                if self.opts.durability == Durability::Full {
                    self.ctx
                        .warn_if_volatile(self.dev, &self.target.dir, &self.target.path());
                }
                self.trace("committed", None);
                Ok(())
            }
            Err(error) => {
                self.trace("failed", Some(&error));
                Err(CommitError { error, file: self })
            }
        }
    }

    fn commit_steps(&mut self, late_sum: &mut dyn FnMut() -> Option<u32>) -> Result<()> {
        if self.progress.finished {
            return Err(Error::new(
                Op::Rename,
                self.temp_display(),
                ErrorKind::InvalidInput,
                "this write was already finished".into(),
            )
            .with_other(self.target.path()));
        }
        self.flush_buf()?;
        if !self.progress.metadata_set {
            self.set_metadata()?;
            self.progress.metadata_set = true;
        }
        let durable = self.opts.durability != Durability::None;
        if durable && !self.progress.synced {
            // The data (and the mode and owner just set) must be on disk before any name points
            // at this inode; otherwise a power cut after the rename leaves an empty file.
            self.sys()
                .sync(&self.temp.fd, SyncKind::All)
                .map_err(|e| Error::io(Op::Sync, self.temp_display(), e))?;
            self.progress.synced = true;
        }
        if self.w.late_sum && !self.progress.summed {
            // Recorded before the rename: the directory fsync that makes the rename durable
            // commits it too on ext4 and xfs (one journal). Where a crash could lose it, the
            // version is unverified, never damaged: its data was fsynced first.
            self.progress.summed = true;
            let st = self.written.filter(|st| st.size == self.w.len());
            if let (Some(crc), Some(st)) = (late_sum(), st) {
                crate::sum::record(&self.ctx, &self.temp.fd, crc, &st, &self.temp_display());
            }
        }
        if self.temp.name.is_none() {
            self.link_unnamed()?;
        }
        if !self.progress.published {
            self.publish()?;
        }
        if self.opts.durability == Durability::Full {
            // A rename is durable only once its directory is: without this fsync a power cut
            // can bring the old content back after the write "succeeded" (atomic-write-file#8).
            if let Err(e) = self.sys().sync_dir(&self.target.dir) {
                let err = Error::io(Op::SyncDir, &self.target.dir_path, e);
                return Err(self.unpublish(err));
            }
        }
        if self.progress.exchanged {
            // The temp name now holds the old content. Removing it need not be durable: if a
            // crash brings it back, it is a recognisable orphan for `untorn clean`.
            if let Some(name) = self.temp.name.take() {
                match self.sys().unlink(&self.target.dir, &name) {
                    Ok(()) => {}
                    // EIO right after the directory fsync means the file system has failed
                    // (xfs, once shut down, even reports success for that fsync while the
                    // rename is lost): do not claim the write is durable.
                    Err(e) if e.raw_os_error() == Some(EIO) => {
                        self.progress.finished = true;
                        return Err(Error::io(Op::Remove, join(&self.target.dir_path, &name), e)
                            .with_note(
                            "the file system failed just after the write: the new content is in \
                             place but may not be durable",
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(target: "untorn", temp = %join(&self.target.dir_path, &name).display(), error = %e, "could not remove the replaced file's temp name");
                    }
                }
            }
        }
        self.temp.name = None;
        if self.progress.backup.is_some() {
            crate::versions::prune(
                &*self.ctx.sys,
                &self.target.dir,
                &self.target.dir_path,
                &self.target.name,
                self.opts.backups,
            );
        }
        Ok(())
    }

    fn set_metadata(&mut self) -> Result<()> {
        let sys = &*self.ctx.sys;
        let st = sys
            .stat(&self.temp.fd)
            .map_err(|e| Error::io(Op::Stat, self.temp_display(), e))?;
        self.written = Some(st);
        if !self.w.late_sum && st.size == self.w.len() {
            // Before the owner and mode change (a read-only mode would forbid it), and before
            // the fsync, which makes it durable with the data.
            let crc = self.w.crc();
            crate::sum::record(&self.ctx, &self.temp.fd, crc, &st, &self.temp_display());
        }
        crate::temp::set_final_metadata_from(
            sys,
            &self.temp.fd,
            &self.temp_display(),
            &st,
            self.target.existing,
            self.opts.keep_owner,
            self.final_mode,
        )?;
        super::checks::mode_kept(sys, &self.temp.fd, &self.temp_display(), self.opts.mode)
    }

    /// Gives an `O_TMPFILE` temp a name: the target itself for no-clobber, else a temp name.
    fn link_unnamed(&mut self) -> Result<()> {
        let sys = &*self.ctx.sys;
        if self.opts.no_clobber {
            // linkat fails with EEXIST if the target exists: an atomic no-clobber create.
            match sys.link_unnamed(&self.temp.fd, &self.target.dir, &self.target.name) {
                Ok(()) => {
                    self.temp.name = Some(self.target.name.clone());
                    self.progress.published = true;
                }
                Err(e) => {
                    let err = Error::io(Op::Create, self.target.path(), e);
                    return Err(if err.kind() == ErrorKind::AlreadyExists {
                        err.with_note("no-clobber: it exists")
                    } else {
                        err
                    });
                }
            }
        } else {
            let mut tries = 0;
            loop {
                let name = temp_name(&self.target.name);
                match sys.link_unnamed(&self.temp.fd, &self.target.dir, &name) {
                    Ok(()) => {
                        self.temp.name = Some(name);
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(EEXIST) && tries < 100 => tries += 1,
                    Err(e) => {
                        return Err(Error::io(Op::Link, self.target.path(), e)
                            .with_other(join(&self.target.dir_path, &name)))
                    }
                }
            }
        }
        if self.fs == FsKind::Btrfs && self.opts.durability != Durability::None {
            // btrfs may skip the data of an fsync'd O_TMPFILE until it has a name
            // (atomic-write-file#6): sync again now that it has one.
            sys.sync(&self.temp.fd, SyncKind::Data)
                .map_err(|e| Error::io(Op::Sync, self.temp_display(), e))?;
        }
        Ok(())
    }

    /// Puts the temp at the target's name.
    fn publish(&mut self) -> Result<()> {
        let sys = &*self.ctx.sys;
        let dir = &self.target.dir;
        let tname = self.temp.name.clone().expect("a named temp");
        let tpath = join(&self.target.dir_path, &tname);
        let name = &self.target.name;
        let rename_err =
            |e: io::Error| Error::io(Op::Rename, &tpath, e).with_other(self.target.path());

        if self.opts.no_clobber {
            if self.ctx.has(self.dev, Feature::NoReplace) != Some(false) {
                match sys.rename(dir, &tname, dir, name, RenameMode::NoReplace) {
                    Ok(()) => {
                        self.ctx.learn(self.dev, Feature::NoReplace, true);
                        self.progress.published = true;
                        return Ok(());
                    }
                    Err(e) if is_unsupported(e.raw_os_error()) => {
                        self.ctx.learn(self.dev, Feature::NoReplace, false)
                    }
                    Err(e) if e.raw_os_error() == Some(EEXIST) => {
                        return Err(Error::io(Op::Create, self.target.path(), e)
                            .with_note("no-clobber: it exists"))
                    }
                    Err(e) => return Err(rename_err(e)),
                }
            }
            // No RENAME_NOREPLACE here: link (fails if the target exists), then drop the temp
            // name. Without hard links either (exFAT), no create is atomic: refused.
            sys.link(dir, &tname, dir, name).map_err(|e| {
                let no_links = crate::ctx::no_links(e.raw_os_error());
                let err = Error::io(Op::Create, self.target.path(), e);
                if err.kind() == ErrorKind::AlreadyExists {
                    err.with_note("no-clobber: it exists")
                } else if no_links {
                    err.with_kind(ErrorKind::Unsupported).with_note(
                        "this file system has neither RENAME_NOREPLACE nor hard links, so \
                         no-clobber cannot be atomic here",
                    )
                } else {
                    err
                }
            })?;
            self.progress.published = true;
            if let Err(e) = sys.unlink(dir, &tname) {
                tracing::warn!(target: "untorn", temp = %tpath.display(), error = %e, "could not remove temp name");
            }
            self.temp.name = Some(name.clone());
            return Ok(());
        }

        let existed = self.target.existing.is_some_and(|s| {
            s.file_type() == FileType::Regular || self.opts.symlinks == Symlinks::Replace
        });
        // Only a regular file's version is kept: a symlink replaced under `Symlinks::Replace`
        // displaces no content (the file it points to is not changed), and a link named like a
        // backup would be no backup (not listed, restored or pruned).
        let regular = self
            .target
            .existing
            .is_some_and(|s| s.file_type() == FileType::Regular);
        if regular && self.opts.backups > 0 && self.progress.backup.is_none() {
            match self.keep_backup() {
                Ok(b) => self.progress.backup = Some(b),
                // The target went away since we looked: nothing to keep.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if existed && self.ctx.has(self.dev, Feature::Exchange) != Some(false) {
            match sys.rename(dir, &tname, dir, name, RenameMode::Exchange) {
                Ok(()) => {
                    self.ctx.learn(self.dev, Feature::Exchange, true);
                    self.progress.published = true;
                    self.progress.exchanged = true;
                    return Ok(());
                }
                Err(e) if is_unsupported(e.raw_os_error()) => {
                    self.ctx.learn(self.dev, Feature::Exchange, false)
                }
                // The target went away since we looked: a plain rename below.
                Err(e) if e.raw_os_error() == Some(ENOENT) => {}
                Err(e) => return Err(rename_err(e)),
            }
        }
        if let Err(e) = sys.rename(dir, &tname, dir, name, RenameMode::Replace) {
            if let Some(b) = self.progress.backup.take() {
                let _ = sys.unlink(dir, &b);
            }
            return Err(rename_err(e));
        }
        self.progress.published = true;
        Ok(())
    }

    /// Undoes the publication after the directory fsync failed, so that the target is as it
    /// was and the temp holds the new content again (ready for a retry or a discard).
    fn unpublish(&mut self, err: Error) -> Error {
        let sys = &*self.ctx.sys;
        let dir = &self.target.dir;
        let name = &self.target.name;
        let undone = if self.progress.exchanged {
            let t = self.temp.name.clone().expect("exchanged under a temp name");
            let ok = sys.rename(dir, &t, dir, name, RenameMode::Exchange).is_ok();
            if ok {
                // The backup of this write goes too: the old version is the file again.
                if let Some(b) = self.progress.backup.take() {
                    let _ = sys.unlink(dir, &b);
                }
            }
            ok
        } else if self.opts.no_clobber || self.target.existing.is_none() {
            // A new file: move it back to a temp name.
            let t = temp_name(name);
            let ok = sys
                .rename(dir, name, dir, &t, RenameMode::NoReplace)
                .is_ok();
            if ok {
                self.temp.name = Some(t);
            }
            ok
        } else {
            false
        };
        if undone {
            self.progress.published = false;
            self.progress.exchanged = false;
            err.with_note("the target was left as it was")
        } else {
            self.progress.finished = true;
            self.temp.name = None;
            err.with_note(
                "the new content is in place but may not survive a power cut; \
                 --durability file accepts this file system's limits",
            )
        }
    }

    /// Abandons the write: removes the temp file; the target stays as it was.
    pub fn discard(mut self) -> Result<()> {
        let r = self.remove_temp();
        self.progress.finished = true;
        self.trace("discarded", r.as_ref().err());
        r
    }

    fn remove_temp(&mut self) -> Result<()> {
        if self.progress.finished || self.progress.published {
            return Ok(());
        }
        if let Some(name) = self.temp.name.take() {
            self.ctx
                .sys
                .unlink(&self.target.dir, &name)
                .map_err(|e| Error::io(Op::Remove, join(&self.target.dir_path, &name), e))?;
        }
        Ok(())
    }

    fn trace(&self, outcome: &'static str, err: Option<&Error>) {
        let path = self.target.path();
        let duration_us = self.started.elapsed().as_micros() as u64;
        match err {
            None => tracing::debug!(
                target: "untorn",
                op = "write",
                path = %path.display(),
                bytes = self.w.len(),
                duration_us,
                outcome,
                temp = if self.temp.unnamed { "unnamed" } else { "named" },
                durability = ?self.achieved,
            ),
            Some(e) => tracing::debug!(
                target: "untorn",
                op = "write",
                path = %path.display(),
                bytes = self.w.len(),
                duration_us,
                outcome,
                error = %e,
            ),
        }
    }
}

impl io::Write for AtomicFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let shown = self.target.path();
        self.w.write(&*self.ctx.sys, &self.temp.fd, data, &shown)
    }

    /// Writes out the buffer to the temp file. It does not make anything visible or durable:
    /// that is [`commit`](AtomicFile::commit)'s job.
    fn flush(&mut self) -> io::Result<()> {
        self.flush_buf().map_err(Into::into)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.progress.finished {
            let r = self.remove_temp();
            self.trace("discarded", r.as_ref().err());
        }
    }
}
