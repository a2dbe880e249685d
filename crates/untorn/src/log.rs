//! Logs: record-atomic, durable appends; reads that leave out a torn tail; repair.
//!
//! A log is a file of records, one per line (`\n`-terminated), e.g. JSON Lines. Appending is
//! O(record), not O(file): the record reaches the file in one `write` under `O_APPEND`, then
//! `fdatasync` makes it durable.
//!
//! # What a crash can leave, and what untorn does about it
//!
//! A power cut during an append can leave the last record **torn** (cut short: a last line
//! without its newline) or the file's size grown over **zeros** (the size reached the disk
//! before the data: seen here on ext4). untorn removes only what is provably such a tail, and
//! never a complete line:
//!
//! - A **complete line** is one followed by `\n` that holds no NUL byte. It is never removed,
//!   by a read, a [`repair`] or an append. If it is not a record of the log's format (in a
//!   JSON Lines log: not JSON, an empty line included), the file is not the kind of log the
//!   caller said it is, and the operation refuses with [`ErrorKind::InvalidContent`], naming
//!   the line, and changes nothing. Appends and [`repair`] judge the last complete line (an
//!   append stays O(record)); reads ([`read_log`], [`tail`]) judge every line.
//! - **Zeros** are provably torn: no record holds a NUL byte ([`AppendOptions::append_all`]
//!   refuses them), so trailing lines holding NUL bytes are junk left by a crash, even when
//!   the last of them ends in the `\n` of a record whose start never reached the disk (and so
//!   is what follows them, if it cannot stay by itself: see below). A line with NUL bytes
//!   followed by a line that may stay is not a provably torn tail: it is refused, like any
//!   line that is not a record.
//! - What follows the last `\n` (and holds no NUL) is either a torn record or a legitimate last
//!   line that was never terminated (`untorn write log "text"` adds no newline). In a log of
//!   lines it is kept: reads return it, and an append ends it with `\n` before its own records.
//!   In a JSON Lines log it is kept the same way if it is JSON; if it is not, it is the torn
//!   record of an interrupted append, and it is cut.
//!
//! Every cut is loud: [`repair`] and [`AppendOptions::append_all`] return what they removed
//! ([`Torn`]) and emit a `tracing` warning; reads return it in [`Log::torn`].
//!
//! Records acknowledged before the crash are always kept: a repair only removes what follows
//! the last complete record.
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
    /// The last line has no newline and is not a record (JSON Lines: not JSON): a record cut
    /// short.
    Incomplete,
    /// The tail holds NUL bytes: the size grew before the data reached the disk.
    Zeros,
}

/// A torn tail: the bytes after the last complete record (and the kept unterminated last line,
/// if any) that a crash left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Torn {
    /// Where the valid part of the log ends (the length a repair truncates to).
    pub valid_len: u64,
    /// How many bytes follow it.
    pub junk_len: u64,
    /// Why they were judged torn.
    pub reason: TornReason,
}

/// The records of a log and, if it had one, its torn tail (left out of `records`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    /// The records, without their newlines, oldest first; the last may be a line that had no
    /// newline (see the [module docs](self)).
    pub records: Vec<Vec<u8>>,
    /// The torn tail that was left out, if any.
    pub torn: Option<Torn>,
}

/// A complete line that is not a record of the log's format: the file is not that kind of log,
/// and nothing may be removed from it. See [`valid_prefix`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotARecord {
    /// Where the line starts, as an offset into the data judged.
    pub offset: usize,
    /// The column (1-based, in bytes) of the problem within the line.
    pub column: usize,
    /// Why it is not a record ("not JSON: ...", "holds NUL bytes").
    pub why: String,
}

/// Why `line` is not a record of `format`, if it is not.
fn not_a_record(line: &[u8], format: LogFormat) -> Option<(usize, String)> {
    if let Some(i) = line.iter().position(|&b| b == 0) {
        return Some((i + 1, "holds NUL bytes".into()));
    }
    match format {
        LogFormat::Lines => None,
        #[cfg(feature = "json")]
        LogFormat::JsonLines => serde_json::from_slice::<serde::de::IgnoredAny>(line)
            .err()
            .map(|e| {
                // serde's message ends in " at line 1 column N": say only the column.
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg);
                let column = e.column().max(1);
                (column, format!("is not JSON ({msg} at column {column})"))
            }),
        #[cfg(not(feature = "json"))]
        LogFormat::JsonLines => None,
    }
}

/// Where the line that ends just before `end` (its `\n` at `end - 1`) starts.
fn line_start(data: &[u8], end: usize) -> usize {
    data[..end - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

/// Judges `data`, which starts at a line boundary, by the rules of the [module docs](self):
/// returns how much of it is kept (its complete lines, and an unterminated last line that may
/// stay) and, if the rest is a torn tail, why; or, if a complete line is not a record of
/// `format`, the last such line (nothing may be removed from such a file).
///
/// The kept part is empty, ends after a `\n`, or ends in an unterminated last line that an
/// append must end with `\n` first.
///
/// ```
/// use untorn::log::{valid_prefix, LogFormat, TornReason};
/// let (l, j) = (LogFormat::Lines, LogFormat::JsonLines);
/// assert_eq!(valid_prefix(b"a\nb\n", l), Ok((4, None)));
/// assert_eq!(valid_prefix(b"a\nb", l), Ok((3, None))); // kept: a line without its newline
/// assert_eq!(valid_prefix(b"a\n\0\0\0", l), Ok((2, Some(TornReason::Zeros))));
/// assert_eq!(valid_prefix(b"{}\n{\"a", j), Ok((3, Some(TornReason::Incomplete))));
/// assert_eq!(valid_prefix(b"{}\n[1]", j), Ok((6, None))); // JSON: kept
/// assert_eq!(valid_prefix(b"{}\nnotes\n{}\n", j).unwrap_err().offset, 3);
/// ```
pub fn valid_prefix(
    data: &[u8],
    format: LogFormat,
) -> std::result::Result<(usize, Option<TornReason>), NotARecord> {
    let (kept, reason, lines_end) = split_end(data, format);
    // Every complete line kept must be a record. The last one that is not is reported: the
    // same line whatever part of a log's end is judged, if that part holds a bad line.
    let mut line_end = lines_end;
    while line_end > 0 {
        let start = line_start(data, line_end);
        check_line(data, start, line_end, format)?;
        line_end = start;
    }
    Ok((kept, reason))
}

/// The line `data[start..end]` (`\n` at `end - 1`) as a record, or why it is not one.
fn check_line(
    data: &[u8],
    start: usize,
    end: usize,
    format: LogFormat,
) -> std::result::Result<(), NotARecord> {
    match not_a_record(&data[start..end - 1], format) {
        None => Ok(()),
        Some((column, why)) => Err(NotARecord {
            offset: start,
            column,
            why,
        }),
    }
}

/// [`valid_prefix`] without judging the complete lines that stay: how much stays, why the rest
/// is torn, and where the complete lines that stay end.
fn split_end(data: &[u8], format: LogFormat) -> (usize, Option<TornReason>, usize) {
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let last = &data[complete..];
    let mut reason = if last.is_empty() {
        None
    } else if last.contains(&0) {
        Some(TornReason::Zeros)
    } else if not_a_record(last, format).is_some() {
        Some(TornReason::Incomplete)
    } else {
        // A last line without newline that may stay; the lines before it are judged as
        // complete lines (one with NUL bytes before it is refused, not cut).
        return (data.len(), None, complete);
    };
    // Trailing complete lines that hold NUL bytes: zeros where data should have been.
    let mut end = complete;
    while end > 0 {
        let start = line_start(data, end);
        if !data[start..end - 1].contains(&0) {
            break;
        }
        end = start;
        reason = Some(TornReason::Zeros);
    }
    (end, reason, end)
}

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
    pub fn append(&self, path: impl AsRef<Path>, record: impl AsRef<[u8]>) -> Result<Appended> {
        self.append_all(path, [record])
    }

    /// Appends records, each one line (a missing final newline is added; a newline inside a
    /// record is an error), in **one** `write`, then makes them durable. On error nothing was
    /// appended: a short write is truncated away, and a log this call created is removed.
    ///
    /// Before appending, it judges the log's end by the rules of the [module docs](self): a
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
        let appended = Appended {
            bytes: buf.len() as u64,
            repaired: None,
            terminated: false,
        };
        // One directory descriptor for the lock file and the log (they sit side by side).
        let (dir_path, _) = split(path)?;
        let dir = sys
            .open_dir(None, &dir_path)
            .map_err(|e| Error::io(Op::OpenDir, &dir_path, e))?;
        // The lock of the file the path leads to (one lock whatever name a writer uses).
        let lock = self.lock.clone().shared(false).lock(path)?;
        let (fd, created) = open_log_in(sys, &dir, path, true)?;
        let r = self.append_open(&dir, &fd, created, path, buf, appended);
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

/// How a log ends, judged by the rules of the [module docs](self).
struct End {
    /// The torn tail to cut, if any.
    torn: Option<Torn>,
    /// What stays ends in a line without its newline.
    unterminated: bool,
}

/// Judges the end of the open log of `size` bytes, reading only as much of it as needed (the
/// last complete line that stays, what follows it, and the trailing lines that hold zeros).
/// If that last complete line is not a record, the error is one of `op`.
fn judge_end(
    sys: &dyn Sys,
    fd: &Fd,
    size: u64,
    format: LogFormat,
    path: &Path,
    op: Op,
) -> Result<End> {
    if size == 0 {
        return Ok(End {
            torn: None,
            unterminated: false,
        });
    }
    // Most records are short: look at the last 4 KiB first, and further back only if needed.
    let mut window: u64 = 4 * 1024;
    loop {
        let start = size.saturating_sub(window);
        let data = read_range(sys, fd, start, (size - start) as usize, path)?;
        // Unless the window starts at the file's start, its first line may be partial: judge
        // only from the first line boundary in it.
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
        let judged = &data[skip..];
        let (kept, reason, lines_end) = split_end(judged, format);
        // The window must hold the last complete line that stays, whole: if it has none, that
        // line (or the walk back over zeros) goes on before the window.
        if start > 0 && lines_end == 0 {
            window *= 4;
            continue;
        }
        // That line must be a record (a log's earlier lines are for reads to judge: an append
        // is O(record)).
        if lines_end > 0 {
            let line = line_start(judged, lines_end);
            if let Err(bad) = check_line(judged, line, lines_end, format) {
                let at = start + (skip + bad.offset) as u64;
                let n = count_lines(sys, fd, at, path)? + 1;
                return Err(refusal(op, path, format, n, &bad, &judged[bad.offset..]));
            }
        }
        let valid_len = start + (skip + kept) as u64;
        let data_len = start + data.len() as u64;
        return Ok(End {
            torn: reason.map(|reason| Torn {
                valid_len,
                junk_len: data_len - valid_len,
                reason,
            }),
            unterminated: kept > 0 && judged[kept - 1] != b'\n',
        });
    }
}

/// How many `\n` the open file holds before offset `end` (read in 1 MiB pieces: only when a
/// line is refused, to name it).
fn count_lines(sys: &dyn Sys, fd: &Fd, end: u64, path: &Path) -> Result<usize> {
    let mut n = 0;
    let mut at = 0;
    while at < end {
        let piece = read_range(sys, fd, at, (end - at).min(1 << 20) as usize, path)?;
        if piece.is_empty() {
            break;
        }
        n += piece.iter().filter(|&&b| b == b'\n').count();
        at += piece.len() as u64;
    }
    Ok(n)
}

/// The error for a complete line (number `line`, starting with `text`) that is not a record:
/// the file is not the kind of log `format` says, and nothing was removed from it.
fn refusal(
    op: Op,
    path: &Path,
    format: LogFormat,
    line: usize,
    bad: &NotARecord,
    text: &[u8],
) -> Error {
    let text = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let shown = String::from_utf8_lossy(&text[..text.len().min(60)]).replace('\0', "\\0");
    let more = if text.len() > 60 { "..." } else { "" };
    let what = match format {
        LogFormat::Lines => "the file is not a log of text lines",
        LogFormat::JsonLines => "the file is not JSON Lines",
    };
    let changed = if op == Op::Read {
        ""
    } else {
        "; nothing was changed"
    };
    Error::new(
        op,
        path,
        ErrorKind::InvalidContent,
        format!(
            "line {line} {}: \"{shown}{more}\"; {what}{changed}",
            bad.why
        ),
    )
    .with_location(line, bad.column)
}

fn truncate_durably(sys: &dyn Sys, fd: &Fd, len: u64, path: &Path) -> Result<()> {
    sys.set_len(fd, len)
        .map_err(|e| Error::io(Op::Repair, path, e))?;
    sys.sync(fd, SyncKind::Data)
        .map_err(|e| Error::io(Op::Sync, path, e))
}

/// Reads a log under the shared lock, leaving a torn tail out (and reporting it). A complete
/// line that is not a record of `format` (anywhere in the log) is an
/// [`ErrorKind::InvalidContent`] error naming the last such line.
pub fn read_log(path: impl AsRef<Path>, format: LogFormat) -> Result<Log> {
    read_log_with(crate::update::UpdateOptions::new(), path.as_ref(), format)
}

/// [`read_log`] through the given options (and so their [`Sys`]).
pub(crate) fn read_log_with(
    opts: crate::update::UpdateOptions,
    path: &Path,
    format: LogFormat,
) -> Result<Log> {
    let data = opts.read(path)?;
    let (valid, reason) = valid_prefix(&data, format).map_err(|bad| {
        let line = data[..bad.offset].iter().filter(|&&b| b == b'\n').count() + 1;
        refusal(Op::Read, path, format, line, &bad, &data[bad.offset..])
    })?;
    let torn = reason.map(|reason| Torn {
        valid_len: valid as u64,
        junk_len: (data.len() - valid) as u64,
        reason,
    });
    let kept = &data[..valid];
    let mut records = kept
        .split(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect::<Vec<_>>();
    if kept.is_empty() || kept.ends_with(b"\n") {
        records.pop(); // the empty piece after the last newline
    }
    Ok(Log { records, torn })
}

/// The last `n` records of a log (a torn tail left out; see [`read_log`]).
pub fn tail(path: impl AsRef<Path>, n: usize, format: LogFormat) -> Result<Vec<Vec<u8>>> {
    let mut log = read_log(path, format)?;
    let keep = log.records.len().saturating_sub(n);
    Ok(log.records.split_off(keep))
}

/// Cuts a torn tail off a log (see the [module docs](self) for what is one), durably, under
/// the exclusive lock. Returns what was removed (`None`: there was nothing to cut). A complete
/// line that is not a record of `format` is an [`ErrorKind::InvalidContent`] error, and the
/// file is left as it was.
pub fn repair(path: impl AsRef<Path>, format: LogFormat) -> Result<Option<Torn>> {
    let path = path.as_ref();
    let ctx = Ctx::real();
    let sys = &*ctx.sys;
    let _lock = LockOptions::new().lock(path)?;
    let (_dir, fd, _) = open_log(sys, path, false)?;
    let st = fstat_regular(sys, &fd, path)?;
    let torn = judge_end(sys, &fd, st.size, format, path, Op::Repair)?.torn;
    if let Some(t) = torn {
        truncate_durably(sys, &fd, t.valid_len, path)?;
        tracing::warn!(target: "untorn", op = "repair", path = %path.display(), valid_len = t.valid_len, junk_len = t.junk_len, reason = ?t.reason, "cut a torn tail");
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
pub fn append(path: impl AsRef<Path>, record: impl AsRef<[u8]>) -> Result<Appended> {
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
pub fn append_jsonl<T: serde::Serialize>(path: impl AsRef<Path>, value: &T) -> Result<Appended> {
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
