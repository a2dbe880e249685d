//! Appending records: one write under the log's lock, then its sync; a torn tail repaired first.

use super::group::{self, Lead};
use super::torn::{judge_end, not_a_record, truncate_durably, End};
use super::{LogFormat, Torn};
use crate::atomic::Durability;
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::lock::{Lock, LockOptions};
use crate::lockfile::Wait;
use crate::lockfile::{self, Opened};
use crate::paths::{locate, lock_name};
use crate::sys::{errnos::*, Fd, FileType, OpenHow, Stat, SyncKind, Sys};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
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

/// Whether appenders share their syncs (see the [module docs](crate::log#concurrency)).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupCommit {
    /// An appender that finds the lock taken, or a mark saying others appended a moment ago,
    /// leads a sync for several appenders or follows the one coming (default; see
    /// [`group`](super::group)).
    #[default]
    Auto,
    /// Every appender syncs for itself, under the lock it wrote under.
    Off,
    /// Every appender leads or follows a group, even without contention (tests, benchmarks).
    Always,
}

/// Options for appending to a log.
#[derive(Clone, Debug)]
pub struct AppendOptions {
    pub(super) durability: Durability,
    pub(super) format: LogFormat,
    pub(super) lock: LockOptions,
    pub(super) group: GroupCommit,
    pub(super) ctx: Arc<Ctx>,
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
            lock: {
                let mut l = LockOptions::new();
                l.announce_waits();
                l
            },
            group: GroupCommit::Auto,
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

    /// Waits at most `d` for the lock. Such an append never takes part in a group commit (it
    /// syncs under the lock it wrote under): a group commit takes the lock again after the
    /// write, where a timeout could fail an append whose records are already written.
    pub fn timeout(&mut self, d: Duration) -> &mut Self {
        self.lock.timeout(d);
        self
    }

    /// Stops waiting for the lock, with [`ErrorKind::Interrupted`](crate::ErrorKind), once
    /// `flag` is set (e.g. by a signal handler); see [`LockOptions::cancel_when`]. An interrupted
    /// append appended nothing. Such an append never takes part in a group commit (it syncs
    /// under the lock it wrote under), for the reason [`timeout`](Self::timeout) gives, and
    /// because a follower's wait for the leader's sync cannot be cancelled.
    pub fn cancel_when(&mut self, flag: Arc<AtomicBool>) -> &mut Self {
        self.lock.cancel_when(flag);
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

    /// Whether concurrent appenders share their syncs (default [`GroupCommit::Auto`]).
    #[doc(hidden)]
    pub fn group_commit(&mut self, g: GroupCommit) -> &mut Self {
        self.group = g;
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
        let buf = self.records(path, records)?;
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

    /// The records as one buffer, each checked (one line, a record of the format) and ended
    /// with its newline.
    pub(super) fn records<I, R>(&self, path: &Path, records: I) -> Result<Vec<u8>>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[u8]>,
    {
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
        Ok(buf)
    }

    fn append_bytes(&self, path: &Path, buf: Vec<u8>) -> Result<Appended> {
        let sys = &*self.ctx.sys;
        // The entry the path leads to (symlinks followed): its directory holds the log and the
        // lock file side by side, one descriptor for both, and one lock whatever name a writer
        // uses.
        let t = locate(&self.ctx, path)?;
        // What the append would refuse (an immutable log, a mount untorn cannot vouch for) is
        // refused before the lock file is created.
        let allowed = self.lock.how.allow_shared_fs;
        let (achieved, dev) =
            crate::atomic::checks::before_append(&self.ctx, &t, path, self.durability, allowed)?;
        let lock = self
            .lock_options()
            .lock_in(&t.dir, &t.dir_path, &lock_name(&t.name))?;
        let (fd, created) = open_log_at(sys, &t.dir, &t.name, t.existing, path, true)?;
        let r = fstat_regular(sys, &fd, path).and_then(|st| {
            let at = At {
                dir: &t.dir,
                fd: &fd,
                st,
                created,
                path,
                achieved,
            };
            self.append_locked(lock, &at, None, buf).0
        });
        if r.is_ok() && self.durability == Durability::Full {
            self.ctx.warn_if_volatile(dev, &t.dir, path);
        }
        match r {
            // An append that fails leaves no log it created (an empty file is not "nothing
            // changed").
            Err(e) if created => Err(self.remove_created(&t.dir, &t.name, &fd, path, e)),
            r => r.map(|(a, _)| a),
        }
    }

    /// The options of the exclusive lock appenders take.
    pub(super) fn lock_options(&self) -> LockOptions {
        let mut l = self.lock.clone();
        l.shared(false);
        l
    }

    /// Appends `buf` to the open log `at`, under `lock` (held; released before returning):
    /// judges the log's end (unless `known` says it is as the last append through a handle left
    /// it), cuts a torn tail, writes, and makes the records durable, alone or in a group commit
    /// (see [`group`](super::group)). Returns the outcome (with what the log's end is known to
    /// be after it) and the lock file, unlocked, for the next append.
    pub(super) fn append_locked(
        &self,
        lock: Lock,
        at: &At<'_>,
        known: Option<Known>,
        mut buf: Vec<u8>,
    ) -> (Result<(Appended, Known)>, Option<Opened>) {
        let sys = &*self.ctx.sys;
        let path = at.path;
        let mut appended = Appended {
            bytes: buf.len() as u64,
            repaired: None,
            terminated: false,
            durability: at.achieved,
        };
        let mut held = lock.into_held();
        let mut size = at.st.size;
        // As this handle left it (nobody appended since): its end need not be read again, and
        // nor need the sync mark if there was none (nobody was grouping here).
        let known = known.filter(|k| k.end == size);
        let end = match known {
            Some(k) => Ok(End {
                torn: None,
                unterminated: k.unterminated,
            }),
            None => judge_end(sys, at.fd, size, self.format, path, Op::Append),
        };
        let end = match end {
            Ok(e) => e,
            Err(e) => return (Err(e), held.unlock_keep_open().ok()),
        };
        if let Some(t) = end.torn {
            tracing::warn!(target: "untorn", path = %path.display(), valid_len = t.valid_len, junk_len = t.junk_len, reason = ?t.reason, "cutting a torn tail before appending");
            if let Err(e) = truncate_durably(sys, at.fd, t.valid_len, path) {
                return (Err(e), held.unlock_keep_open().ok());
            }
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
            let e = match sys.write(at.fd, &buf[done..]) {
                Ok(0) => std::io::ErrorKind::WriteZero.into(),
                Ok(n) => {
                    done += n;
                    continue;
                }
                Err(e) => e,
            };
            return (
                Err(self.undo(at.fd, size, path, e)),
                held.unlock_keep_open().ok(),
            );
        }
        let mut known_after = Known {
            end: size + buf.len() as u64,
            unterminated: false,
            unmarked: false,
        };
        if self.durability == Durability::None {
            let known = known_after;
            return (Ok((appended, known)), held.unlock_keep_open().ok());
        }
        let not_durable = |e: Error| e.with_note("the record was appended but may not be durable");
        let usable = group::usable(&self.ctx, &held.st);
        let contended = held.contended;
        // Others announced they wait for the lock, which this appender found free: it took the
        // lock again before they ran (see `lockfile::announce_wait`).
        let waiting = usable && lockfile::waited_within(&held.st, group::WAITING);
        // The sync mark, read under the lock after the write (see `group`). A handle that found
        // none last time does not look again while the lock is free and the log as it left it.
        // An appender that could not read it syncs for itself (`unreadable`).
        let mut unreadable = false;
        let first = if usable
            && (contended
                || waiting
                || self.group == GroupCommit::Always
                || !known.is_some_and(|k| k.unmarked))
        {
            let m = group::read_before(sys, held.fd()).unwrap_or_else(|()| {
                unreadable = true;
                None
            });
            known_after.unmarked = m.is_none();
            m
        } else {
            known_after.unmarked = true;
            None
        };
        // Others are appending: the lock was taken, or a sync served several appenders a
        // moment ago.
        let busy = contended || waiting || first.is_some_and(|m| m.busy());
        let how = self.lock.how_exclusive();
        // A grouped appender takes the lock again after its write, and must not fail to: its
        // records are written, and an error would make a caller that retries (a timeout, a
        // cancelled wait: a Python signal handler may raise anything) append them twice; and a
        // follower's wait for the leader cannot be cancelled. So only an appender that may wait
        // for ever (the default) groups; one with a timeout or a cancel flag syncs under the
        // lock it wrote under, as every appender did before the group commit.
        let grouped = usable
            && !unreadable
            && !at.created
            && how.wait == Wait::Forever
            && how.cancel.is_none()
            && match self.group {
                GroupCommit::Off => false,
                GroupCommit::Auto => busy,
                GroupCommit::Always => true,
            };
        // Whether this appender leads the coming sync (see `group`), or follows another's.
        let may_lead = grouped && group::lead_usable(&self.ctx, &held.st, held.fd());
        let lead = if may_lead {
            group::take_lead(sys, held.fd())
        } else {
            Lead::None
        };
        let follower = lead == Lead::Taken;
        let lead = lead == Lead::Got;
        // Whether the sync serves others' records too (its mark is then dated busy).
        let mut several = contended || follower;
        // What the others wrote while this leader let the lock go (kept in the mark).
        let mut grew = None;
        let mark = if grouped {
            // On the error paths below the lock file is closed, which drops the lead with it (a
            // record lock does not outlive the process's close of the file).
            let opened = match held.unlock_keep_open() {
                Ok(o) => o,
                Err(e) => return (Err(not_durable(e)), None),
            };
            if follower {
                // Someone leads the coming sync, which starts after this write (it runs under
                // the lock this appender held): wait for it, then read the mark.
                group::follow(sys, &opened.fd);
                if group::covered(first, group::read(sys, &opened.fd), &at.st) {
                    tracing::trace!(target: "untorn", path = %path.display(), "made durable by the leader's sync");
                    return (Ok((appended, known_after)), Some(opened));
                }
            } else {
                // Let the appenders waiting for the lock write first: the more records are
                // written before the next sync, the more that one sync serves.
                let expect = first.map_or(0, |m| m.grew);
                grew = Some(group::gather(sys, at.fd, known_after.end, expect));
            }
            held = match lockfile::lock_opened(&self.ctx, opened, &how, Instant::now()) {
                Ok(h) => h,
                Err(e) => return (Err(not_durable(e)), None),
            };
            let now = group::read(sys, held.fd());
            if group::covered(first, now, &at.st) {
                tracing::trace!(target: "untorn", path = %path.display(), "made durable by another appender's sync");
                if lead {
                    group::drop_lead(sys, held.fd());
                }
                return (Ok((appended, known_after)), held.unlock_keep_open().ok());
            }
            // Others wrote while this leader let the lock go: this sync serves them too.
            several |= grew.is_some_and(|g| g > 0);
            now
        } else {
            first
        };
        // The lock is held until the records are durable. Released earlier, another appender's
        // fdatasync could commit their new size before their data: on ext4 data=writeback a
        // power cut then shows the block's stale content (another file's old data) as if it
        // were records. The power-cut test bed caught exactly that.
        let synced = sys
            .sync(at.fd, SyncKind::Data)
            .map_err(|e| Error::io(Op::Sync, path, e))
            .and_then(|()| {
                if at.created && self.durability == Durability::Full {
                    // A new file's directory entry is durable only once its directory is.
                    sys.sync_dir(at.dir)
                        .map_err(|e| Error::io(Op::SyncDir, path, e))
                } else {
                    Ok(())
                }
            });
        // Appenders waiting to learn whether their records are durable: they are now.
        if synced.is_ok() && (grouped || mark.is_some()) {
            group::advance(&self.ctx, held.fd(), &held.st, mark, &at.st, several, grew);
        }
        // The mark is set before the lead is dropped: the followers read it once it is.
        if lead {
            group::drop_lead(sys, held.fd());
        }
        let r = synced
            .map(|()| (appended, known_after))
            .map_err(not_durable);
        (r, held.unlock_keep_open().ok())
    }

    /// After a failed append that created the log: removes it (if its name is still this
    /// file), so that the failure leaves nothing behind, and says so in the error.
    fn remove_created(&self, dir: &Fd, name: &OsStr, fd: &Fd, path: &Path, err: Error) -> Error {
        let sys = &*self.ctx.sys;
        let ours = match (sys.stat(fd), sys.stat_at(dir, name, false)) {
            (Ok(a), Ok(b)) => (a.dev, a.ino) == (b.dev, b.ino),
            _ => false,
        };
        if ours && sys.unlink(dir, name).is_ok() {
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

/// Opens the entry `name` of `dir` (the log at `path`, as `existing` saw it there: nothing but
/// a regular file is opened) for appending, creating it if `create`. Returns the file and
/// whether this call created it.
pub(super) fn open_log_at(
    sys: &dyn Sys,
    dir: &Fd,
    name: &OsStr,
    existing: Option<Stat>,
    path: &Path,
    create: bool,
) -> Result<(Fd, bool)> {
    if let Some(st) = existing.filter(|st| st.file_type() != FileType::Regular) {
        return Err(not_regular(path, st));
    }
    // `name` is the entry the path leads to, its symbolic links already followed (by
    // `paths::locate`, which refuses a link planted in a sticky directory): a link put in its
    // place since is not followed (ELOOP), and a FIFO does not block the open (the caller's
    // fstat refuses it).
    let mut how = OpenHow {
        read: true,
        append: true,
        no_follow: true,
        nonblock: true,
        ..OpenHow::default()
    };
    match sys.open_file(dir, name, how, 0) {
        Ok(fd) => return Ok((fd, false)),
        Err(e) if e.raw_os_error() == Some(ENOENT) && create => {}
        Err(e) => return Err(Error::io(Op::Open, path, e)),
    }
    how.create = true;
    how.exclusive = true;
    match sys.open_file(dir, name, how, 0o666) {
        Ok(fd) => Ok((fd, true)),
        // Another process created it in between.
        Err(e) if e.raw_os_error() == Some(EEXIST) => {
            how.create = false;
            how.exclusive = false;
            let fd = sys
                .open_file(dir, name, how, 0)
                .map_err(|e| Error::io(Op::Open, path, e))?;
            Ok((fd, false))
        }
        Err(e) => Err(Error::io(Op::Create, path, e)),
    }
}

/// The open log one append writes, as it is under the lock.
pub(super) struct At<'a> {
    /// Its directory.
    pub(super) dir: &'a Fd,
    pub(super) fd: &'a Fd,
    /// Its metadata, under the lock (the size is where the records go).
    pub(super) st: Stat,
    /// Whether the log was created for this append (its entry is not durable yet).
    pub(super) created: bool,
    /// The path as the caller named it (for messages).
    pub(super) path: &'a Path,
    /// The durability the append achieves on the log's mount (see
    /// [`before_append`](crate::atomic::checks::before_append)).
    pub(super) achieved: Durability,
}

/// How a log ended after an append through a handle: the next append need not read its end
/// again if the log is still that size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Known {
    pub(super) end: u64,
    pub(super) unterminated: bool,
    /// The lock file had no sync mark (nobody grouped appends here): while the log stays as
    /// this handle left it and the lock is free when asked for, it is not looked for again.
    pub(super) unmarked: bool,
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
