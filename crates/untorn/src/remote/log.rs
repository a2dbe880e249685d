//! Logs on a bucket: one object per appended batch, under the prefix `KEY/`.
//!
//! Batch `n` (1, 2, ...) is the object `KEY/` followed by `u64::MAX - n` in 20 digits, so that
//! names sort newest first: the first page of a listing holds the newest batch, and an append
//! finds its place with one request, whatever the log's length. A batch is created with
//! `If-None-Match: *`, so two writers can never take one place: the loser tries the next. Its
//! user metadata carries a random id (the same lineage as an object's, see `lineage.rs`), by
//! which an appender whose answer was lost recognises its own batch instead of appending it
//! twice. A reader lists the prefix and concatenates the batches in order.
//!
//! An appender only moves on to place `n + 1` once place `n` holds another writer's batch, so
//! the log has no holes, and a writer's later batch always lands after its earlier one.

use super::client::{backoff, block_on, client, Class, Deadline};
use super::commit::{Outcome, GRACE};
use super::lineage::{landed, new_id, Landed, Lineage};
use super::{RemoteOptions, Url};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::log::{not_a_record, Log, LogFormat};
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::PutMode;

/// The prefix of the log's batches.
fn prefix(url: &Url) -> String {
    format!("{}/", url.key())
}

/// The key of batch `n`.
fn batch_key(url: &Url, n: u64) -> String {
    format!("{}{:020}", prefix(url), u64::MAX - n)
}

/// The batch number of `key`, if it is a batch of this log.
fn batch_number(url: &Url, key: &str) -> Option<u64> {
    let rest = key.strip_prefix(&prefix(url))?;
    if rest.len() != 20 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse::<u64>().ok().map(|x| u64::MAX - x)
}

/// The records as one batch: each line checked and ended with `\n`.
fn batch<R: AsRef<[u8]>>(url: &Url, records: &[R], format: LogFormat) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    for r in records {
        let r = r.as_ref();
        let body = r.strip_suffix(b"\n").unwrap_or(r);
        if let Some(i) = body.iter().position(|&b| b == b'\n') {
            return Err(Error::new(
                Op::Append,
                url.as_path(),
                ErrorKind::InvalidInput,
                format!("a record is one line, and this one has a newline at byte {i}"),
            ));
        }
        if let Some((_, why)) = not_a_record(body, format) {
            return Err(Error::new(
                Op::Append,
                url.as_path(),
                ErrorKind::InvalidContent,
                format!(
                    "the record {why}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(80)])
                ),
            ));
        }
        buf.extend_from_slice(body);
        buf.push(b'\n');
    }
    Ok(buf)
}

/// The numbers and keys of the log's batches, newest first; with `first_page`, only those of
/// the first page of the listing (the newest, whatever the log's length).
async fn list(
    c: &super::client::Client,
    url: &Url,
    first_page: bool,
    deadline: &Deadline,
) -> Result<Vec<(u64, String)>> {
    let p = ObjectPath::from(prefix(url).trim_end_matches('/'));
    let fut = async {
        let mut stream = c.store.list(Some(&p));
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta?;
            let key = meta.location.to_string();
            match batch_number(url, &key) {
                Some(n) => out.push((n, key)),
                None => {
                    tracing::warn!(target: "untorn", "'{url}': '{key}' under the log's prefix is not one of its batches; left out")
                }
            }
            // The first page holds up to 1,000 names; the first is the newest.
            if first_page && !out.is_empty() {
                break;
            }
        }
        Ok::<_, object_store::Error>(out)
    };
    let mut out = match tokio::time::timeout(deadline.remaining(), fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return Err(super::client::classify(&e, url).error(Op::ListDir, url.as_path()))
        }
        Err(_) => {
            return Err(Error::new(
                Op::ListDir,
                url.as_path(),
                ErrorKind::TimedOut,
                "no answer from the store in time".into(),
            ))
        }
    };
    out.sort_by_key(|b| std::cmp::Reverse(b.0));
    Ok(out)
}

/// The number of the newest batch (0: none yet): one listing of at most one name (S3's
/// `max-keys=1`; on another store, the first page of an ordinary listing).
async fn newest(c: &super::client::Client, url: &Url, deadline: &Deadline) -> Result<u64> {
    if c.s3.is_none() {
        return Ok(list(c, url, true, deadline)
            .await?
            .first()
            .map_or(0, |b| b.0));
    }
    let p = prefix(url);
    let (status, body) = c
        .signed_get(
            url,
            &[("list-type", "2"), ("prefix", &p), ("max-keys", "1")],
            Op::ListDir,
            deadline,
        )
        .await?;
    if !status.is_success() {
        let code = super::versions::field(&body, "Code").unwrap_or_default();
        let (kind, why) = match (status.as_u16(), code.as_str()) {
            (404, "NoSuchBucket") => (
                ErrorKind::NotFound,
                format!("no such bucket '{}'", url.bucket()),
            ),
            (401 | 403, _) => (
                ErrorKind::PermissionDenied,
                format!("permission denied by the store (HTTP {status}, {code})"),
            ),
            (s, _) if s >= 500 || s == 429 => (
                ErrorKind::Io,
                format!("the store failed (HTTP {status}, {code})"),
            ),
            _ => (
                ErrorKind::Other,
                format!("the store refused the listing (HTTP {status}, {code})"),
            ),
        };
        return Err(Error::new(Op::ListDir, url.as_path(), kind, why));
    }
    // The first <Contents> holds the first name: the newest batch.
    let first = body
        .split("<Contents>")
        .nth(1)
        .and_then(|c| super::versions::field(c, "Key"));
    Ok(first.and_then(|k| batch_number(url, &k)).unwrap_or(0))
}

pub(crate) fn append<R: AsRef<[u8]>>(
    opts: &RemoteOptions,
    url: &Url,
    records: &[R],
    format: LogFormat,
) -> Result<Outcome> {
    let body = batch(url, records, format)?;
    let c = client(url)?;
    let deadline = Deadline::after(opts.timeout);
    block_on(async {
        c.credentials(url, Op::Append, &deadline).await?;
        let id = new_id();
        let lineage = Lineage::child(None, &id);
        let mut outcome = Outcome::default();
        let mut n = newest(&c, url, &deadline).await? + 1;
        let mut taken_in_a_row = 0;
        let mut sent = false;
        loop {
            let key = batch_key(url, n);
            outcome.attempts += 1;
            let fail = match c
                .put_once(url, &key, &body, PutMode::Create, &lineage, &deadline)
                .await
            {
                Ok(r) => {
                    outcome.written = true;
                    outcome.e_tag = r.e_tag;
                    return Ok(outcome);
                }
                Err(f) => f,
            };
            match fail.class {
                Class::Unavailable if deadline.nearly_passed() => {
                    return Err(super::commit::gave_up(Op::Append, url, sent, &fail.why))
                }
                Class::Unavailable => {
                    backoff(outcome.attempts.min(8), &deadline).await;
                    if deadline.nearly_passed() {
                        return Err(super::commit::gave_up(Op::Append, url, sent, &fail.why));
                    }
                    continue;
                }
                Class::Condition if !sent => {
                    // Another writer's batch is there: the next place (after a run of them,
                    // look up the newest again rather than walk).
                    taken_in_a_row += 1;
                    outcome.conflicts += 1;
                    n = if taken_in_a_row % 16 == 0 {
                        (newest(&c, url, &deadline).await? + 1).max(n + 1)
                    } else {
                        n + 1
                    };
                    if deadline.passed() {
                        return Err(Error::new(
                            Op::Append,
                            url.as_path(),
                            ErrorKind::TimedOut,
                            "other writers kept taking the next place within the timeout; \
                             nothing was appended"
                                .into(),
                        ));
                    }
                    continue;
                }
                Class::Condition => {}
                Class::Transient | Class::Timeout => {
                    sent = true;
                    outcome.lost_answers += 1;
                }
                _ if !sent => return Err(fail.error(Op::Append, url.as_path())),
                _ => {}
            }
            // An attempt at place n may have landed: look at what is there.
            let rd = Deadline::after(deadline.remaining().max(GRACE));
            let there = match c.get(url, &key, None, &rd).await {
                Ok(t) => t,
                Err(f) => {
                    return Err(Error::new(
                        Op::Append,
                        url.as_path(),
                        ErrorKind::OutcomeUnknown,
                        format!(
                            "the answer to the append was lost and the log could not be read \
                             to tell ({}); the records were appended once or not at all, and \
                             were not retried: look before appending them again",
                            f.why
                        ),
                    ))
                }
            };
            match landed(&id, None, there.as_ref().map(|g| &g.lineage)) {
                Landed::Yes => {
                    outcome.written = true;
                    return Ok(outcome);
                }
                _ if there.is_some() => {
                    // Another writer's batch: ours can never land there.
                    sent = false;
                    outcome.conflicts += 1;
                    n += 1;
                }
                _ if deadline.passed() => {
                    return Err(Error::new(
                        Op::Append,
                        url.as_path(),
                        ErrorKind::OutcomeUnknown,
                        "the answer to the append was lost and the time ran out while it may \
                         still land; the records were appended once or not at all: look \
                         before appending them again"
                            .into(),
                    ))
                }
                // The place is still free: the same create again (at most one lands).
                _ => backoff(outcome.attempts.min(8), &deadline).await,
            }
        }
    })
}

/// The log's records, oldest first; with `last`, only the last `last` (reading only the newest
/// batches).
pub(crate) fn read(
    opts: &RemoteOptions,
    url: &Url,
    format: LogFormat,
    last: Option<usize>,
) -> Result<Log> {
    let c = client(url)?;
    let deadline = Deadline::after(opts.timeout);
    block_on(async {
        c.credentials(url, Op::Read, &deadline).await?;
        let batches = list(&c, url, false, &deadline).await?;
        let mut records: Vec<Vec<u8>> = Vec::new();
        let mut newest_first: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut have = 0;
        // Newest first, 16 at a time, until enough records are in.
        for chunk in batches.chunks(16) {
            let bodies: Vec<_> = futures_util::stream::iter(chunk)
                .map(|(n, key)| {
                    let c = &c;
                    async move {
                        match c.get(url, key, None, &deadline).await {
                            Ok(Some(g)) => Ok((*n, key.clone(), g.body)),
                            // Listed, then gone: it was removed meanwhile.
                            Ok(None) => Ok((*n, key.clone(), Vec::new())),
                            Err(f) => {
                                Err(f.error(Op::Read, format!("s3://{}/{key}", url.bucket())))
                            }
                        }
                    }
                })
                .buffered(16)
                .try_collect()
                .await?;
            for (_, key, body) in bodies {
                let lines = split_batch(url, &key, &body, format)?;
                have += lines.len();
                newest_first.push(lines);
            }
            if last.is_some_and(|k| have >= k) {
                break;
            }
        }
        for lines in newest_first.into_iter().rev() {
            records.extend(lines);
        }
        if let Some(k) = last {
            let cut = records.len().saturating_sub(k);
            records.drain(..cut);
        }
        Ok(Log {
            records,
            torn: None,
        })
    })
}

/// The records of one batch; a line that is not a record of `format` is refused, naming it.
fn split_batch(url: &Url, key: &str, body: &[u8], format: LogFormat) -> Result<Vec<Vec<u8>>> {
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if let Some((_, why)) = not_a_record(line, format) {
            return Err(Error::new(
                Op::Read,
                url.as_path(),
                ErrorKind::InvalidContent,
                format!(
                    "line {} of the batch 's3://{}/{key}' {why}: the log is not {}",
                    i + 1,
                    url.bucket(),
                    match format {
                        LogFormat::JsonLines => "JSON Lines",
                        LogFormat::Lines => "a log of lines",
                    }
                ),
            ));
        }
        out.push(line.to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_names_sort_newest_first_and_parse_back() {
        let u = Url::parse("s3://bkt/logs/e.jsonl").unwrap();
        let (a, b) = (batch_key(&u, 1), batch_key(&u, 2));
        assert!(b < a, "{b} sorts before {a}");
        assert_eq!(a, "logs/e.jsonl/18446744073709551614");
        assert_eq!(batch_number(&u, &a), Some(1));
        assert_eq!(batch_number(&u, &b), Some(2));
        assert_eq!(batch_number(&u, "logs/e.jsonl/x"), None);
        assert_eq!(batch_number(&u, "logs/other/18446744073709551614"), None);
    }

    #[test]
    fn a_batch_checks_its_records() {
        let u = Url::parse("s3://bkt/e.jsonl").unwrap();
        assert_eq!(
            batch(&u, &["a", "b\n"], LogFormat::Lines).unwrap(),
            b"a\nb\n"
        );
        assert!(batch(&u, &["a\nb"], LogFormat::Lines).is_err());
        #[cfg(feature = "json")]
        assert_eq!(
            batch(&u, &["{", "1"], LogFormat::JsonLines)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidContent
        );
    }
}
