//! Appending records: one write under the log's lock, then its sync; a torn tail repaired first.

use super::torn::{judge_end, not_a_record, truncate_durably};
use super::{LogFormat, Torn};
use crate::atomic::Durability;
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::lock::LockOptions;
use crate::paths::split;
use crate::sys::{errnos::*, Fd, FileType, OpenHow, Stat, SyncKind, Sys};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Appended {
    /// The bytes of the records appended (each with its newline).
    pub bytes: u64,
    /// The torn tail cut off before appending, if the log had one (a crash during an earlier
    /// append left it). Callers should say so: something was removed.
    pub repaired: Option<Torn>,
    /// The log's last line had no newline and was kept: one was written before the records.
    pub terminated: bool,
    /// The durability achieved: the level asked for, or [`Durability::None`] where the file
    /// system cannot keep it (see [`crate::AtomicFile::durability`]).
    pub durability: Durability,
}

/// Options for appending to a log.
#[derive(Clone, Debug)]
pub struct AppendOptions {
    durability: Durability,
    format: LogFormat,
    lock: LockOptions,
    ctx: Arc<Ctx>,
}

impl Default for AppendOptions {
    fn default() -> Self {
        AppendOptions::new()
    }
}

impl AppendOptions {
    /// Full durability, plain lines, waiting for the lock as long as it takes.
    pub fn new() -> AppendOptions {
        AppendOptions {
            durability: Durability::Full,
            format: LogFormat::Lines,
            lock: LockOptions::new(),
            ctx: Ctx::real(),
        }
    }

    /// [`Durability::Full`] (default) and [`Durability::File`]: `fdatasync` before returning
    /// (`Full` also syncs the directory when the append created the file);
    /// [`Durability::None`]: no sync.
    pub fn durability(&mut self, d: Durability) -> &mut Self {
        self.durability = d;
        self
    }

    /// The log's format: [`LogFormat::JsonLines`] checks each record is JSON and judges a
    /// trailing non-JSON line torn.
    pub fn format(&mut self, f: LogFormat) -> &mut Self {
        self.format = f;
        self
    }

    /// Waits at most `d` for the lock.
    pub fn timeout(&mut self, d: Duration) -> &mut Self {
        self.lock.timeout(d);
        self
    }

    /// Appends even on a file system untorn cannot vouch for: locks on NFS, CIFS and FUSE, and
    /// durability on a FUSE mount whose daemon it does not know (see
    /// [`OpenOptions::allow_shared_fs`](crate::OpenOptions::allow_shared_fs)).
    pub fn allow_shared_fs(&mut self, yes: bool) -> &mut Self {
        self.lock.allow_shared_fs(yes);
        self
    }

    #[doc(hidden)]
    pub fn sys(&mut self, sys: Arc<dyn Sys>) -> &mut Self {
        self.ctx = Ctx::new(sys);
        self.lock.with_ctx(self.ctx.clone());
        self
    }

    /// Appends one record (a newline is added if it lacks one). See [`AppendOptions::append_all`].
    pub fn append(&self, path: impl AsRef<Path>, record: impl AsRef<[u8]>) -> Result<Appended> {
        self.append_all(path, [record])
    }

    /// Appends records, each one line (a missing final newline is added; a newline inside a
    /// record is an error), in **one** `write`, then makes them durable. On error nothing was
    /// appended: a short write is truncated away, and a log this call created is removed.
    ///
    /// Before appending, it judges the log's end by the rules of the [module docs](crate::log): a
    /// torn tail is cut (and returned in [`Appended::repaired`], with a `tracing` warning), an
    /// unterminated last line that may stay is ended with `\n` (in the same `write`), and a
    /// last complete line that is not a record of the format (a text file appended to as JSON
    /// Lines) fails with [`ErrorKind::InvalidContent`], changing nothing.
    pub fn append_all<I, R>(&self, path: impl AsRef<Path>, records: I) -> Result<Appended>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[u8]>,
    {
        let path = path.as_ref();
        let started = Instant::now();
        let mut buf = Vec::new();
        for r in records {
            let r = r.as_ref();
            let body = r.strip_suffix(b"\n").unwrap_or(r);
            if let Some(i) = body.iter().position(|&b| b == b'\n') {
                return Err(Error::new(
                    Op::Append,
                    path,
                    ErrorKind::InvalidInput,
                    format!("a record is one line, and this one has a newline at byte {i}"),
                ));
            }
            if let Some((_, why)) = not_a_record(body, self.format) {
                let why = if body.contains(&0) {
                    "a record must not contain NUL bytes".to_string()
                } else {
                    format!(
                        "the record {why}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(80)])
                    )
                };
                return Err(Error::new(Op::Append, path, ErrorKind::InvalidContent, why));
            }
            buf.extend_from_slice(body);
            buf.push(b'\n');
        }
        let r = self.append_bytes(path, buf);
        let duration_us = started.elapsed().as_micros() as u64;
        match &r {
            Ok(a) => {
                tracing::debug!(target: "untorn", op = "append", path = %path.display(), bytes = a.bytes, duration_us, outcome = "appended")
            }
            Err(e) => {
                tracing::debug!(target: "untorn", op = "append", path = %path.display(), duration_us, outcome = "failed", error = %e)
            }
        }
        r
    }

    fn append_bytes(&self, path: &Path, buf: Vec<u8>) -> Result<Appended> {
        let sys = &*self.ctx.sys;
        // One directory descriptor for the lock file and the log (they sit side by side).
        let (dir_path, _) = split(path)?;
        let dir = sys
            .open_dir(None, &dir_path)
            .map_err(|e| Error::io(Op::OpenDir, &dir_path, e))?;
        let allowed = self.lock.how.allow_shared_fs;
        let (durability, dev) =
            crate::atomic::checks::before_append(&self.ctx, &dir, path, self.durability, allowed)?;
        let appended = Appended {
            bytes: buf.len() as u64,
            repaired: None,
            terminated: false,
            durability,
        };
        // The lock of the file the path leads to (one lock whatever name a writer uses).
        let lock = self.lock.clone().shared(false).lock(path)?;
        let (fd, created) = open_log_in(sys, &dir, path, true)?;
        let r = self.append_open(&dir, &fd, created, path, buf, appended);
        if r.is_ok() && self.durability == Durability::Full {
            self.ctx.warn_if_volatile(dev, &dir, path);
        }
        let r = match r {
            // An append that fails leaves no log it created (an empty file is not "nothing
            // changed").
            Err(e) if created => Err(self.remove_created(&dir, &fd, path, e)),
            r => r,
        };
        drop(lock);
        r
    }

    /// [`AppendOptions::append_bytes`] once the log is open (and locked).
    fn append_open(
        &self,
        dir: &Fd,
        fd: &Fd,
        created: bool,
        path: &Path,
        mut buf: Vec<u8>,
        mut appended: Appended,
    ) -> Result<Appended> {
        let sys = &*self.ctx.sys;
        let st = fstat_regular(sys, fd, path)?;
        let mut size = st.size;
        let end = judge_end(sys, fd, size, self.format, path, Op::Append)?;
        if let Some(t) = end.torn {
            tracing::warn!(target: "untorn", path = %path.display(), valid_len = t.valid_len, junk_len = t.junk_len, reason = ?t.reason, "cutting a torn tail before appending");
            truncate_durably(sys, fd, t.valid_len, path)?;
            size = t.valid_len;
            appended.repaired = Some(t);
        }
        if end.unterminated {
            // A last line without its newline that stays: end it, in the same write.
            buf.insert(0, b'\n');
            appended.terminated = true;
        }
        let mut done = 0;
        while done < buf.len() {
            match sys.write(fd, &buf[done..]) {
                Ok(0) => {
                    return Err(self.undo(fd, size, path, std::io::ErrorKind::WriteZero.into()))
                }
                Ok(n) => done += n,
                Err(e) => return Err(self.undo(fd, size, path, e)),
            }
        }
        // The lock is held until the record is durable. Released earlier, another appender's
        // fdatasync could commit this record's new size before its data: on ext4
        // data=writeback a power cut then shows the block's stale content (another file's old
        // data) as if it were records. The power-cut test bed caught exactly that.
        if self.durability != Durability::None {
            sys.sync(fd, SyncKind::Data).map_err(|e| {
                Error::io(Op::Sync, path, e)
                    .with_note("the record was appended but may not be durable")
            })?;
        }
        if created && self.durability == Durability::Full {
            // A new file's directory entry is durable only once its directory is.
            sys.sync_dir(dir)
                .map_err(|e| Error::io(Op::SyncDir, path, e))?;
        }
        Ok(appended)
    }

    /// After a failed append that created the log: removes it (if its name is still this
    /// file), so that the failure leaves nothing behind, and says so in the error.
    fn remove_created(&self, dir: &Fd, fd: &Fd, path: &Path, err: Error) -> Error {
        let sys = &*self.ctx.sys;
        let Ok((_, name)) = split(path) else {
            return err;
        };
        let ours = match (sys.stat(fd), sys.stat_at(dir, &name, false)) {
            (Ok(a), Ok(b)) => (a.dev, a.ino) == (b.dev, b.ino),
            _ => false,
        };
        if ours && sys.unlink(dir, &name).is_ok() {
            return err.with_note("nothing was appended; the log this append created was removed");
        }
        tracing::warn!(target: "untorn", path = %path.display(), "could not remove the log a failed append created");
        err
    }

    /// Removes a partly appended record after a failed write.
    fn undo(&self, fd: &Fd, size: u64, path: &Path, e: std::io::Error) -> Error {
        let err = Error::io(Op::Append, path, e);
        match self.ctx.sys.set_len(fd, size) {
            Ok(()) => err.with_note("nothing was appended"),
            Err(_) => err.with_note("a partial record may remain; `untorn repair` removes it"),
        }
    }
}

/// Opens the log for appending (creating it if `create`), following symlinks. Returns the
/// directory, the file, and whether this call created it.
pub(super) fn open_log(sys: &dyn Sys, path: &Path, create: bool) -> Result<(Fd, Fd, bool)> {
    let (dir_path, _) = split(path)?;
    let dir = sys
        .open_dir(None, &dir_path)
        .map_err(|e| Error::io(Op::OpenDir, &dir_path, e))?;
    let (fd, created) = open_log_in(sys, &dir, path, create)?;
    Ok((dir, fd, created))
}

/// [`open_log`] in `dir`, the directory of `path`, already open.
pub(super) fn open_log_in(
    sys: &dyn Sys,
    dir: &Fd,
    path: &Path,
    create: bool,
) -> Result<(Fd, bool)> {
    let (_, name) = split(path)?;
    if let Ok(st) = sys.stat_at(dir, &name, true) {
        if st.file_type() != FileType::Regular {
            return Err(not_regular(path, st));
        }
    }
    let mut how = OpenHow {
        read: true,
        append: true,
        ..OpenHow::default()
    };
    match sys.open_file(dir, &name, how, 0) {
        Ok(fd) => return Ok((fd, false)),
        Err(e) if e.raw_os_error() == Some(ENOENT) && create => {}
        Err(e) => return Err(Error::io(Op::Open, path, e)),
    }
    how.create = true;
    how.exclusive = true;
    match sys.open_file(dir, &name, how, 0o666) {
        Ok(fd) => Ok((fd, true)),
        // Another process created it in between.
        Err(e) if e.raw_os_error() == Some(EEXIST) => {
            how.create = false;
            how.exclusive = false;
            let fd = sys
                .open_file(dir, &name, how, 0)
                .map_err(|e| Error::io(Op::Open, path, e))?;
            Ok((fd, false))
        }
        Err(e) => Err(Error::io(Op::Create, path, e)),
    }
}

pub(super) fn not_regular(path: &Path, st: Stat) -> Error {
    let (kind, what) = if st.file_type() == FileType::Directory {
        (ErrorKind::IsADirectory, "is a directory")
    } else {
        (ErrorKind::NotAFile, "not a regular file")
    };
    Error::new(Op::Open, path, kind, what.into())
}

pub(super) fn fstat_regular(sys: &dyn Sys, fd: &Fd, path: &Path) -> Result<Stat> {
    let st = sys.stat(fd).map_err(|e| Error::io(Op::Stat, path, e))?;
    if st.file_type() != FileType::Regular {
        return Err(not_regular(path, st));
    }
    Ok(st)
}
