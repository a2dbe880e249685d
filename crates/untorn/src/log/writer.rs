//! A log kept open for many appends: [`LogWriter`].

use super::append::{fstat_regular, open_log_at, At, Known};
use super::{AppendOptions, Appended, Torn};
use crate::atomic::Durability;
use crate::error::{Error, Op, Result};
use crate::lockfile::{self, Opened};
use crate::paths::{locate, lock_name};
use crate::sys::{Fd, FileType, SyncKind};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// A log and its lock file kept open, for a process that appends many records (a logging
/// handler, say): each append is the lock, one `statx`, the `write`, the `fdatasync` (or a
/// share of another appender's, see the [module docs](crate::log#concurrency)) and the unlock,
/// with no path to resolve and nothing to open. Threads sharing one writer share its syncs
/// too: see [`LogWriter::append_all`].
///
/// The log's end is judged (a torn tail cut, as [`AppendOptions::append_all`] does) when the
/// writer opens, and again only when the log changed under it: when its size is not what this
/// writer's last append left (another process appended, or cut it). A log replaced under its
/// name (rotated, removed) is opened again, by the name the writer resolved when it opened
/// (a symbolic link retargeted later is not followed anew).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("events.jsonl");
/// let log = untorn::AppendOptions::new()
///     .format(untorn::LogFormat::JsonLines)
///     .open(&path)?;
/// for i in 0..3 {
///     log.append(format!("{{\"n\": {i}}}"))?; // durable when it returns
/// }
/// assert_eq!(std::fs::read_to_string(&path)?.lines().count(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LogWriter {
    opts: AppendOptions,
    path: PathBuf,
    /// The open files, held by the thread writing a batch.
    state: Mutex<State>,
    /// The records of the threads waiting, and what became of theirs.
    queue: Mutex<Queue>,
    done: Condvar,
}

/// The threads' records waiting for the next batch, and the outcomes of past batches.
#[derive(Default)]
struct Queue {
    /// The records waiting, each caller's together and in the order they came.
    buf: Vec<u8>,
    /// Their callers: ticket and bytes, in `buf`'s order.
    callers: Vec<(u64, u64)>,
    next_ticket: u64,
    /// A thread is writing a batch.
    busy: bool,
    /// Outcomes not yet picked up, by ticket.
    results: HashMap<u64, Result<Appended>>,
}

/// What a writer keeps open between appends.
struct State {
    dir: Arc<Fd>,
    dir_path: PathBuf,
    /// The log's entry in `dir`, and its lock file's.
    name: OsString,
    lock_name: OsString,
    /// The lock file, open and unlocked (`None` after a failure left it in doubt: opened again
    /// at the next append).
    lock: Option<Opened>,
    log: Fd,
    /// The log's device and inode.
    id: (u64, u64),
    /// The log's end as this writer's last append (or its opening) left it.
    known: Option<Known>,
    /// A torn tail cut when the writer opened, reported by the first append.
    repaired: Option<Torn>,
    /// The durability appends achieve on the log's mount (judged when the writer opened).
    achieved: Durability,
}

impl fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogWriter")
            .field("path", &self.path)
            .finish()
    }
}

impl AppendOptions {
    /// Opens the log at `path` for many appends with these options (creating it, durably, if
    /// it is missing), and judges its end under the lock: see [`LogWriter`]. A last complete
    /// line that is not a record of the format fails here, as an append would.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<LogWriter> {
        let path = path.as_ref().to_path_buf();
        let state = self.open_state(&path)?;
        Ok(LogWriter {
            opts: self.clone(),
            path,
            state: Mutex::new(state),
            queue: Mutex::new(Queue::default()),
            done: Condvar::new(),
        })
    }

    fn open_state(&self, path: &Path) -> Result<State> {
        let sys = &*self.ctx.sys;
        let t = locate(&self.ctx, path)?;
        // What an append would refuse is refused before the lock file is created; the
        // durability the mount gives is judged once, for every append through the writer.
        let allowed = self.lock.how.allow_shared_fs;
        let (achieved, dev) =
            crate::atomic::checks::before_append(&self.ctx, &t, path, self.durability, allowed)?;
        let lock_name = lock_name(&t.name);
        let lock = self
            .lock_options()
            .lock_in(&t.dir, &t.dir_path, &lock_name)?;
        let (log, created) = open_log_at(sys, &t.dir, &t.name, t.existing, path, true)?;
        let st = fstat_regular(sys, &log, path)?;
        if created && self.durability != Durability::None {
            // Durable before any append counts on it: the file, then its entry.
            sys.sync(&log, SyncKind::All)
                .map_err(|e| Error::io(Op::Sync, path, e))?;
            if self.durability == Durability::Full {
                sys.sync_dir(&t.dir)
                    .map_err(|e| Error::io(Op::SyncDir, path, e))?;
            }
        }
        let end = super::torn::judge_end(sys, &log, st.size, self.format, path, Op::Append)?;
        let mut size = st.size;
        if let Some(t) = end.torn {
            tracing::warn!(target: "untorn", path = %path.display(), valid_len = t.valid_len, junk_len = t.junk_len, reason = ?t.reason, "cutting a torn tail before appending");
            super::torn::truncate_durably(sys, &log, t.valid_len, path)?;
            size = t.valid_len;
        }
        let lock = lock.into_held().unlock_keep_open()?;
        if self.durability == Durability::Full {
            self.ctx.warn_if_volatile(dev, &t.dir, path);
        }
        Ok(State {
            dir: t.dir,
            dir_path: t.dir_path,
            name: t.name,
            lock_name,
            lock: Some(lock),
            log,
            id: (st.dev, st.ino),
            known: Some(Known {
                end: size,
                unterminated: end.unterminated,
                unmarked: false,
            }),
            repaired: end.torn,
            achieved,
        })
    }
}

impl LogWriter {
    /// [`AppendOptions::open`] with the default options (plain lines, full durability).
    pub fn open(path: impl AsRef<Path>) -> Result<LogWriter> {
        AppendOptions::new().open(path)
    }

    /// The path the writer was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record (a newline is added if it lacks one); durable when it returns (with
    /// the default durability). See [`LogWriter::append_all`].
    pub fn append(&self, record: impl AsRef<[u8]>) -> Result<Appended> {
        self.append_all([record])
    }

    /// Appends records, each one line, in one `write`, and makes them durable: as
    /// [`AppendOptions::append_all`] does, through the open log. On error nothing was appended
    /// (a short write is truncated away).
    ///
    /// Threads appending through one writer at once share a **group commit** within the
    /// process: while one thread writes a batch and syncs it, the records of the others wait
    /// in a queue; the next of them takes the whole queue as the next batch, one `write` and
    /// one sync under the lock, and every thread whose records it held returns with the
    /// batch's outcome. Each caller's records stay together, in the order the calls came.
    pub fn append_all<I, R>(&self, records: I) -> Result<Appended>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[u8]>,
    {
        let started = Instant::now();
        let buf = self.opts.records(&self.path, records)?;
        let r = self.queued(buf);
        let duration_us = started.elapsed().as_micros() as u64;
        match &r {
            Ok(a) => {
                tracing::debug!(target: "untorn", op = "append", path = %self.path.display(), bytes = a.bytes, duration_us, outcome = "appended")
            }
            Err(e) => {
                tracing::debug!(target: "untorn", op = "append", path = %self.path.display(), duration_us, outcome = "failed", error = %e)
            }
        }
        r
    }

    /// Queues `buf` and waits until a batch holding it was written and synced (by this thread,
    /// if no other is writing one).
    fn queued(&self, buf: Vec<u8>) -> Result<Appended> {
        let relock = || self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let mut q = relock();
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.callers.push((ticket, buf.len() as u64));
        q.buf.extend_from_slice(&buf);
        loop {
            if let Some(r) = q.results.remove(&ticket) {
                return r;
            }
            if q.busy {
                q = self.done.wait(q).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // This thread writes the next batch: everything queued so far.
            q.busy = true;
            let batch = std::mem::take(&mut q.buf);
            let callers = std::mem::take(&mut q.callers);
            drop(q);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                self.append_in(&mut state, batch)
            }));
            q = relock();
            let r = match r {
                Ok(r) => r,
                Err(panic) => {
                    // The batch's callers must not wait for ever: they learn it failed.
                    q.busy = false;
                    for &(t, _) in &callers {
                        let e = Error::new(
                            Op::Append,
                            &self.path,
                            crate::error::ErrorKind::Other,
                            "the thread writing this record's batch panicked".into(),
                        );
                        q.results.insert(t, Err(e));
                    }
                    q.results.remove(&ticket);
                    self.done.notify_all();
                    drop(q);
                    std::panic::resume_unwind(panic);
                }
            };
            q.busy = false;
            for (i, &(t, bytes)) in callers.iter().enumerate() {
                let mine = match &r {
                    // What was cut or ended before the batch is told to its first caller.
                    Ok(a) if i == 0 => Ok(Appended { bytes, ..*a }),
                    Ok(a) => Ok(Appended {
                        bytes,
                        repaired: None,
                        terminated: false,
                        durability: a.durability,
                    }),
                    Err(e) => Err(e.duplicate()),
                };
                q.results.insert(t, mine);
            }
            self.done.notify_all();
        }
    }

    fn append_in(&self, s: &mut State, buf: Vec<u8>) -> Result<Appended> {
        let ctx = &self.opts.ctx;
        let sys = &*ctx.sys;
        let path = &self.path;
        let lock_opts = self.opts.lock_options();
        let opened = match s.lock.take() {
            Some(o) => o,
            None => lockfile::open(
                ctx,
                &s.dir,
                &s.dir_path,
                &s.lock_name,
                lock_opts.how.allow_shared_fs,
            )?,
        };
        let lock = lock_opts.relock_in(&s.dir, &s.dir_path, &s.lock_name, opened)?;
        // The log still under its name? One statx gives that and its size.
        let here = match sys.stat_at(&s.dir, &s.name, false) {
            Ok(st) if (st.dev, st.ino) == s.id => Some(st),
            Ok(st) if st.file_type() != FileType::Regular => {
                drop(lock);
                return Err(super::append::not_regular(path, st));
            }
            Ok(_) => None,
            Err(e) if e.raw_os_error() == Some(crate::sys::errnos::ENOENT) => None,
            Err(e) => return Err(Error::io(Op::Stat, path, e)),
        };
        let (st, created) = match here {
            Some(st) => (st, false),
            None => {
                // Replaced or removed under its name: the log is what is there now.
                let (fd, created) = open_log_at(sys, &s.dir, &s.name, None, path, true)?;
                let st = fstat_regular(sys, &fd, path)?;
                s.log = fd;
                s.id = (st.dev, st.ino);
                s.known = None;
                (st, created)
            }
        };
        let at = At {
            dir: &s.dir,
            fd: &s.log,
            st,
            created,
            path,
            achieved: s.achieved,
        };
        let (r, opened) = self.opts.append_locked(lock, &at, s.known.take(), buf);
        s.lock = opened;
        match r {
            Ok((mut a, known)) => {
                s.known = Some(known);
                if a.repaired.is_none() {
                    a.repaired = s.repaired.take();
                }
                Ok(a)
            }
            Err(e) => Err(e),
        }
    }
}
