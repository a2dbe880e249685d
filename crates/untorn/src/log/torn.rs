//! Telling a log's torn tail from its records: what may be cut after a crash, and what must
//! never be (a complete line).

use super::{LogFormat, Torn, TornReason};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::sys::{errnos::*, Fd, SyncKind, Sys};
use std::path::Path;

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
pub(crate) fn not_a_record(line: &[u8], format: LogFormat) -> Option<(usize, String)> {
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
pub(super) fn line_start(data: &[u8], end: usize) -> usize {
    data[..end - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

/// Judges `data`, which starts at a line boundary, by the rules of the [module docs](crate::log):
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
#[doc(hidden)]
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
pub(super) fn check_line(
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
pub(super) fn split_end(data: &[u8], format: LogFormat) -> (usize, Option<TornReason>, usize) {
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

pub(super) fn read_range(
    sys: &dyn Sys,
    fd: &Fd,
    start: u64,
    len: usize,
    path: &Path,
) -> Result<Vec<u8>> {
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

/// How a log ends, judged by the rules of the [module docs](crate::log).
pub(super) struct End {
    /// The torn tail to cut, if any.
    pub(super) torn: Option<Torn>,
    /// What stays ends in a line without its newline.
    pub(super) unterminated: bool,
}

/// Judges the end of the open log of `size` bytes, reading only as much of it as needed (the
/// last complete line that stays, what follows it, and the trailing lines that hold zeros).
/// If that last complete line is not a record, the error is one of `op`.
pub(super) fn judge_end(
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
pub(super) fn count_lines(sys: &dyn Sys, fd: &Fd, end: u64, path: &Path) -> Result<usize> {
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
pub(super) fn refusal(
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

pub(super) fn truncate_durably(sys: &dyn Sys, fd: &Fd, len: u64, path: &Path) -> Result<()> {
    sys.set_len(fd, len)
        .map_err(|e| Error::io(Op::Repair, path, e))?;
    sys.sync(fd, SyncKind::Data)
        .map_err(|e| Error::io(Op::Sync, path, e))
}
