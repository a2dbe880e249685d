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
//! Appenders take the exclusive lock of the log (`FILE.lock`) for the tail check and the write, so
//! records of different processes never interleave even when a write is short. Every `fdatasync` of
//! the log also runs under that lock, with no write during it: released earlier, another appender's
//! sync could make a record's new size durable before its data, which on ext4 `data=writeback`
//! exposes stale blocks after a power cut (the power-cut test bed caught exactly that). An appender
//! alone syncs under the lock it wrote under. When others are appending (the lock was taken,
//! another appender announced it waits for it, or the lock file's sync mark says a sync served
//! several a moment ago) it takes part in a **group commit**: the first to write after a sync
//! *leads* the next one (it lets the lock go while the others write, takes it again and syncs once
//! for all), and the others *follow* it (they release the lock after their write, wait for the
//! leader, and find their records durable when the mark moved). So N appenders at once share their
//! flushes instead of paying N. Appenders with a timeout never group (see `group.rs` for the
//! protocol, why it keeps the hole closed, and why a timeout rules it out); nor do appenders with a
//! cancel flag.
//!
//! A process that appends many records keeps the log and its lock file open with a
//! [`LogWriter`]: no path to resolve per record, and the log's end judged again only when it
//! changed under the writer.
//!
//! Readers take the shared lock, so they never see a record half-written.

mod append;
mod group;
mod torn;
mod writer;

use append::{fstat_regular, open_log_at};
pub use append::{AppendOptions, Appended, GroupCommit};
#[cfg(feature = "remote")]
pub(crate) use torn::not_a_record;
use torn::{judge_end, refusal, truncate_durably};
pub use torn::{valid_prefix, NotARecord};
pub use writer::LogWriter;

use crate::ctx::Ctx;
#[cfg(any(feature = "json", feature = "yaml"))]
use crate::error::{Error, ErrorKind};
use crate::error::{Op, Result};
use crate::lock::LockOptions;
use std::path::Path;

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
    // The file the path leads to (as the lock does), opened without following a link.
    let t = crate::paths::locate(&ctx, path)?;
    let (fd, _) = open_log_at(sys, &t.dir, &t.name, t.existing, path, false)?;
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
