//! Logs: record-atomic, durable appends; reads that leave out a torn tail; repair.
//!
//! A log is a file of records, one per line (`\n`-terminated), e.g. JSON Lines. Appending is
//! O(record), not O(file): the record reaches the file in one `write` under `O_APPEND`, then
//! `fdatasync` makes it durable.
//!
//! # What a crash can leave, and what untorn does about it
//!
//! A power cut during an append can leave the last record **torn** (cut short: a last line
//! without its newline) or the file's size grown over **zeros or stale bytes** (the size reached
//! the disk before the data: seen here on ext4). Reads through untorn detect such a tail (a last
//! line without a newline, a line holding NUL bytes, or, in a JSON Lines log, a line that is not
//! JSON) and leave it out; [`repair`] truncates the file back to its last complete record,
//! durably, under the lock; and [`append`] repairs first, so that a new record is never glued
//! to garbage. Records acknowledged before the crash are always kept: a repair only removes
//! what follows the last valid record.
//!
//! # Concurrency
//!
//! Appenders take the exclusive lock of the log (`FILE.lock`) for the tail check, the write and
//! the `fdatasync`, so records of different processes never interleave even when a write is
//! short, and no appender's sync can make another's new size durable before its data (which on
//! ext4 `data=writeback` exposes stale blocks after a power cut). Readers take the shared lock, so they never see a record half-written.

use crate::atomic::Durability;
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::lock::LockOptions;
use crate::paths::split;
use crate::sys::{errnos::*, Fd, FileType, OpenHow, Stat, SyncKind, Sys};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a log's records are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// Lines of any bytes (no NUL).
    #[default]
    Lines,
    /// JSON Lines: each line one JSON value.
    JsonLines,
}

/// Why the tail of a log was judged torn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TornReason {
    /// The last line has no newline: the record was cut short.
    Incomplete,
    /// A trailing line holds NUL bytes: the size grew before the data reached the disk.
    Zeros,
    /// A trailing line is not valid JSON (JSON Lines logs).
    InvalidJson,
}

/// A torn tail: the bytes after the last complete, valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Torn {
    /// Where the valid part of the log ends (the length a repair truncates to).
    pub valid_len: u64,
    /// How many bytes follow it.
    pub junk_len: u64,
    /// Why the first of them was judged torn.
    pub reason: TornReason,
}

/// The records of a log and, if it had one, its torn tail (left out of `records`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    /// The complete records, without their newlines, oldest first.
    pub records: Vec<Vec<u8>>,
    /// The torn tail that was left out, if any.
    pub torn: Option<Torn>,
}

fn line_ok(line: &[u8], format: LogFormat) -> Option<TornReason> {
    if line.contains(&0) {
        return Some(TornReason::Zeros);
    }
    match format {
        LogFormat::Lines => None,
        #[cfg(feature = "json")]
        LogFormat::JsonLines => serde_json::from_slice::<serde::de::IgnoredAny>(line)
            .err()
            .map(|_| TornReason::InvalidJson),
        #[cfg(not(feature = "json"))]
        LogFormat::JsonLines => None,
    }
}

/// Finds the torn tail of `data`, which starts at a record boundary: the length of the part up
/// to the end of the last complete, valid record, and why the rest (if any) is junk. Only
/// trailing records are judged; a bad record followed by a good one is not a torn tail.
///
/// ```
/// use untorn::log::{valid_prefix, LogFormat, TornReason};
/// assert_eq!(valid_prefix(b"a\nb\n", LogFormat::Lines), (4, None));
/// assert_eq!(valid_prefix(b"a\nb", LogFormat::Lines), (2, Some(TornReason::Incomplete)));
/// assert_eq!(valid_prefix(b"a\n\0\0\0", LogFormat::Lines), (2, Some(TornReason::Incomplete)));
/// assert_eq!(valid_prefix(b"{}\n{\"a\n", LogFormat::JsonLines).0, 3);
/// ```
pub fn valid_prefix(data: &[u8], format: LogFormat) -> (usize, Option<TornReason>) {
    let mut reason = None;
    let mut end = match data.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    if end < data.len() {
        reason = Some(TornReason::Incomplete);
    }
    while end > 0 {
        let start = data[..end - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        match line_ok(&data[start..end - 1], format) {
            None => break,
            Some(r) => {
                reason = Some(r);
                end = start;
            }
        }
    }
    (end, reason)
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

    #[doc(hidden)]
    pub fn sys(&mut self, sys: Arc<dyn Sys>) -> &mut Self {
        self.ctx = Ctx::new(sys);
        self.lock.with_ctx(self.ctx.clone());
        self
    }

    /// Appends one record (a newline is added if it lacks one). See [`AppendOptions::append_all`].
    pub fn append(&self, path: impl AsRef<Path>, record: impl AsRef<[u8]>) -> Result<()> {
        self.append_all(path, [record]).map(drop)
    }

    /// Appends records, each one line (a missing final newline is added; a newline inside a
    /// record is an error), in **one** `write`, then makes them durable. Returns how many
    /// bytes were appended. On error nothing was appended: a short write is truncated away.
    pub fn append_all<I, R>(&self, path: impl AsRef<Path>, records: I) -> Result<u64>
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
            if let Some(reason) = line_ok(body, self.format) {
                let why = match reason {
                    TornReason::Zeros => "a record must not contain NUL bytes".to_string(),
                    _ => format!(
                        "the record is not valid JSON: {}",
                        String::from_utf8_lossy(&body[..body.len().min(80)])
                    ),
                };
                return Err(Error::new(Op::Append, path, ErrorKind::InvalidContent, why));
            }
            buf.extend_from_slice(body);
            buf.push(b'\n');
        }
        let r = self.append_bytes(path, &buf);
        let duration_us = started.elapsed().as_micros() as u64;
        match &r {
            Ok(_) => {
                tracing::debug!(target: "untorn", op = "append", path = %path.display(), bytes = buf.len(), duration_us, outcome = "appended")
            }
            Err(e) => {
                tracing::debug!(target: "untorn", op = "append", path = %path.display(), bytes = buf.len(), duration_us, outcome = "failed", error = %e)
            }
        }
        r
    }

    fn append_bytes(&self, path: &Path, buf: &[u8]) -> Result<u64> {
        let sys = &*self.ctx.sys;
        // One directory descriptor for the lock file and the log (they sit side by side).
        let (dir_path, _) = split(path)?;
        let dir = sys
            .open_dir(None, &dir_path)
            .map_err(|e| Error::io(Op::OpenDir, &dir_path, e))?;
        // The lock of the file the path leads to (one lock whatever name a writer uses).
        let lock = self.lock.clone().shared(false).lock(path)?;
        let (fd, created) = open_log_in(sys, &dir, path, true)?;
        let st = fstat_regular(sys, &fd, path)?;
        let mut size = st.size;
        if let Some(t) = torn_tail(sys, &fd, size, self.format, path)? {
            tracing::warn!(target: "untorn", path = %path.display(), valid_len = t.valid_len, junk_len = t.junk_len, reason = ?t.reason, "repairing a torn tail before appending");
            truncate_durably(sys, &fd, t.valid_len, path)?;
            size = t.valid_len;
        }
        let mut done = 0;
        while done < buf.len() {
            match sys.write(&fd, &buf[done..]) {
                Ok(0) => {
                    return Err(self.undo(&fd, size, path, std::io::ErrorKind::WriteZero.into()))
                }
                Ok(n) => done += n,
                Err(e) => return Err(self.undo(&fd, size, path, e)),
            }
        }
        // The lock is held until the record is durable. Released earlier, another appender's
        // fdatasync could commit this record's new size before its data: on ext4
        // data=writeback a power cut then shows the block's stale content (another file's old
        // data) as if it were records. The power-cut test bed caught exactly that.
        if self.durability != Durability::None {
            sys.sync(&fd, SyncKind::Data).map_err(|e| {
                Error::io(Op::Sync, path, e)
                    .with_note("the record was appended but may not be durable")
            })?;
        }
        if created && self.durability == Durability::Full {
            // A new file's directory entry is durable only once its directory is.
            sys.sync_dir(&dir)
                .map_err(|e| Error::io(Op::SyncDir, path, e))?;
        }
        drop(lock);
        Ok(buf.len() as u64)
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
fn open_log(sys: &dyn Sys, path: &Path, create: bool) -> Result<(Fd, Fd, bool)> {
    let (dir_path, _) = split(path)?;
    let dir = sys
        .open_dir(None, &dir_path)
        .map_err(|e| Error::io(Op::OpenDir, &dir_path, e))?;
    let (fd, created) = open_log_in(sys, &dir, path, create)?;
    Ok((dir, fd, created))
}

/// [`open_log`] in `dir`, the directory of `path`, already open.
fn open_log_in(sys: &dyn Sys, dir: &Fd, path: &Path, create: bool) -> Result<(Fd, bool)> {
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

fn not_regular(path: &Path, st: Stat) -> Error {
    let (kind, what) = if st.file_type() == FileType::Directory {
        (ErrorKind::IsADirectory, "is a directory")
    } else {
        (ErrorKind::NotAFile, "not a regular file")
    };
    Error::new(Op::Open, path, kind, what.into())
}

fn fstat_regular(sys: &dyn Sys, fd: &Fd, path: &Path) -> Result<Stat> {
    let st = sys.stat(fd).map_err(|e| Error::io(Op::Stat, path, e))?;
    if st.file_type() != FileType::Regular {
        return Err(not_regular(path, st));
    }
    Ok(st)
}

fn read_range(sys: &dyn Sys, fd: &Fd, start: u64, len: usize, path: &Path) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match sys.read_at(fd, &mut buf[got..], start + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.raw_os_error() == Some(EINTR) => {}
            Err(e) => return Err(Error::io(Op::Read, path, e)),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// The torn tail of the open log of `size` bytes, reading only as much of its end as needed.
fn torn_tail(
    sys: &dyn Sys,
    fd: &Fd,
    size: u64,
    format: LogFormat,
    path: &Path,
) -> Result<Option<Torn>> {
    if size == 0 {
        return Ok(None);
    }
    // Most records are short: look at the last 4 KiB first, and further back only if needed.
    let mut window: u64 = 4 * 1024;
    loop {
        let start = size.saturating_sub(window);
        let data = read_range(sys, fd, start, (size - start) as usize, path)?;
        // Unless the window starts at the file's start, its first line may be partial: judge
        // only from the first record boundary in it.
        let skip = if start == 0 {
            0
        } else {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => {
                    window *= 4;
                    continue;
                }
            }
        };
        let (valid, reason) = valid_prefix(&data[skip..], format);
        if valid == 0 && start > 0 && reason.is_some() {
            // Everything in the window is junk: the last good record is further back.
            window *= 4;
            continue;
        }
        let valid_len = start + (skip + valid) as u64;
        return Ok(reason.map(|reason| Torn {
            valid_len,
            junk_len: size - valid_len,
            reason,
        }));
    }
}

fn truncate_durably(sys: &dyn Sys, fd: &Fd, len: u64, path: &Path) -> Result<()> {
    sys.set_len(fd, len)
        .map_err(|e| Error::io(Op::Repair, path, e))?;
    sys.sync(fd, SyncKind::Data)
        .map_err(|e| Error::io(Op::Sync, path, e))
}

/// Reads a log under the shared lock, leaving a torn tail out (and reporting it).
pub fn read_log(path: impl AsRef<Path>, format: LogFormat) -> Result<Log> {
    read_log_with(crate::update::UpdateOptions::new(), path.as_ref(), format)
}

/// [`read_log`] through the given options (and so their [`Sys`]).
pub(crate) fn read_log_with(
    opts: crate::update::UpdateOptions,
    path: &Path,
    format: LogFormat,
) -> Result<Log> {
    let data = match opts.read(path)? {
        Some(d) => d,
        None => return Err(Error::io(Op::Read, path, crate::sys::os_error(ENOENT))),
    };
    let (valid, reason) = valid_prefix(&data, format);
    let torn = reason.map(|reason| Torn {
        valid_len: valid as u64,
        junk_len: (data.len() - valid) as u64,
        reason,
    });
    let mut records = data[..valid]
        .split(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect::<Vec<_>>();
    records.pop(); // the empty piece after the last newline
    Ok(Log { records, torn })
}

/// The last `n` complete records of a log (a torn tail left out).
pub fn tail(path: impl AsRef<Path>, n: usize, format: LogFormat) -> Result<Vec<Vec<u8>>> {
    let mut log = read_log(path, format)?;
    let keep = log.records.len().saturating_sub(n);
    Ok(log.records.split_off(keep))
}

/// Truncates a log with a torn tail back to its last complete record, durably, under the
/// exclusive lock. Returns what was removed (`None`: the log was whole).
pub fn repair(path: impl AsRef<Path>, format: LogFormat) -> Result<Option<Torn>> {
    let path = path.as_ref();
    let ctx = Ctx::real();
    let sys = &*ctx.sys;
    let _lock = LockOptions::new().lock(path)?;
    let (_dir, fd, _) = open_log(sys, path, false)?;
    let st = fstat_regular(sys, &fd, path)?;
    let torn = torn_tail(sys, &fd, st.size, format, path)?;
    if let Some(t) = torn {
        truncate_durably(sys, &fd, t.valid_len, path)?;
        tracing::debug!(target: "untorn", op = "repair", path = %path.display(), valid_len = t.valid_len, junk_len = t.junk_len, reason = ?t.reason);
    }
    Ok(torn)
}

/// Appends one record (one line; a newline is added) to the log at `path`, durably: see
/// [`AppendOptions`].
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("progress.log");
/// untorn::append(&path, "step 1 done")?;
/// untorn::append(&path, "step 2 done\n")?;
/// assert_eq!(std::fs::read_to_string(&path)?, "step 1 done\nstep 2 done\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn append(path: impl AsRef<Path>, record: impl AsRef<[u8]>) -> Result<()> {
    AppendOptions::new().append(path, record)
}

/// Appends `value` as one compact JSON line to a JSON Lines log.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("events.jsonl");
/// untorn::append_jsonl(&path, &serde_json::json!({"event": "start", "n": 1}))?;
/// assert_eq!(std::fs::read_to_string(&path)?, "{\"event\":\"start\",\"n\":1}\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "json")]
pub fn append_jsonl<T: serde::Serialize>(path: impl AsRef<Path>, value: &T) -> Result<()> {
    let path = path.as_ref();
    let line = serde_json::to_vec(value)
        .map_err(|e| Error::new(Op::Serialize, path, ErrorKind::InvalidInput, e.to_string()))?;
    AppendOptions::new()
        .format(LogFormat::JsonLines)
        .append(path, line)
}

/// Appends `item` to a YAML list, through the locked read-modify-write (atomic and durable,
/// but O(file): for logs, prefer JSON Lines and [`append_jsonl`]). With `key`, the list is the
/// value of that key of a top-level mapping (created if missing); without, the document itself
/// is the list. A missing file starts empty.
#[cfg(feature = "yaml")]
pub fn append_to_yaml_list<T: serde::Serialize>(
    path: impl AsRef<Path>,
    key: Option<&str>,
    item: &T,
) -> Result<()> {
    use yaml_serde::Value;
    let path = path.as_ref();
    let item = yaml_serde::to_value(item)
        .map_err(|e| Error::new(Op::Serialize, path, ErrorKind::InvalidInput, e.to_string()))?;
    let not_a_list = |what: &str| {
        Error::new(
            Op::Append,
            path,
            ErrorKind::InvalidContent,
            format!("{what} is not a YAML list"),
        )
    };
    crate::update::UpdateOptions::new().update_as(
        crate::Format::Yaml,
        path,
        Value::Null,
        |doc: &mut Value| {
            let list = match key {
                None => doc,
                Some(k) => {
                    if doc.is_null() {
                        *doc = Value::Mapping(Default::default());
                    }
                    let Value::Mapping(m) = doc else {
                        return Err(not_a_list("the document"));
                    };
                    m.entry(Value::String(k.into())).or_insert(Value::Null)
                }
            };
            if list.is_null() {
                *list = Value::Sequence(Vec::new());
            }
            match list {
                Value::Sequence(s) => {
                    s.push(item);
                    Ok(())
                }
                _ => Err(not_a_list(
                    key.map_or("the document", |_| "the key's value"),
                )),
            }
        },
    )
}
