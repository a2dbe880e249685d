//! Reads, writes and optimistic updates of one object, and the ambiguous commit: what untorn
//! does when the answer to a PUT is lost (see the [module docs](super)).

use super::client::{backoff, block_on, client, matches_sum, Class, Client, Deadline, Failed, Got};
use super::lineage::{landed, new_id, Landed, Lineage};
use super::{RemoteOptions, Url};
use crate::backup::Validator;
use crate::error::{Error, ErrorKind, Op, Result};
use object_store::{PutMode, UpdateVersion};
use std::time::Duration;

/// How long untorn keeps trying to learn whether a write landed once the operation's own time
/// ran out.
pub(crate) const GRACE: Duration = Duration::from_secs(5);

/// What a remote write or update did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// Whether a new version was written (an update whose result equals the input writes
    /// nothing).
    pub written: bool,
    /// How many PUTs were sent.
    pub attempts: u32,
    /// How many times the change was computed again because another writer replaced the
    /// version it was computed from.
    pub conflicts: u32,
    /// How many PUTs went unanswered (connection lost, 5xx, no answer in time) and were
    /// resolved by reading the object.
    pub lost_answers: u32,
    /// The ETag of the version written, if the store gave it.
    pub e_tag: Option<String>,
    /// The store's version id of the version written (versioned buckets).
    pub version: Option<String>,
}

/// An error for a write whose outcome cannot be known.
fn unknown(url: &Url, why: &str) -> Error {
    Error::new(
        Op::Write,
        url.as_path(),
        ErrorKind::OutcomeUnknown,
        format!(
            "the answer to the write was lost and {why}; the change was applied once or not at \
             all, and was not retried: look before running it again"
        ),
    )
}

/// The error when the time ran out while the store would not take a write: unknown if an
/// earlier attempt of it went unanswered (`sent`), else nothing was written.
pub(crate) fn gave_up(op: Op, url: &Url, sent: bool, why: &str) -> Error {
    if sent {
        unknown(url, "the time ran out while it may still land")
    } else {
        Error::new(
            op,
            url.as_path(),
            ErrorKind::TimedOut,
            format!("{why}, until the timeout; nothing was written"),
        )
    }
}

/// The deadline for reading the object after a lost answer: what is left, or [`GRACE`].
fn resolve_deadline(deadline: &Deadline) -> Deadline {
    Deadline::after(deadline.remaining().max(GRACE))
}

/// Whether `a` and `b` are the same version (or both no object).
fn same_version(a: Option<&Got>, b: Option<&Got>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.e_tag.is_some()
                && a.e_tag == b.e_tag
                && (a.version.is_none() || b.version.is_none() || a.version == b.version)
        }
        _ => false,
    }
}

pub(crate) fn read(opts: &RemoteOptions, url: &Url) -> Result<Option<Vec<u8>>> {
    let c = client(url)?;
    let deadline = Deadline::after(opts.timeout);
    block_on(async {
        c.credentials(url, Op::Read, &deadline).await?;
        let got = c
            .get(url, url.key(), None, &deadline)
            .await
            .map_err(|f| f.error(Op::Read, url.as_path()))?;
        Ok(got.map(|g| g.body))
    })
}

pub(crate) fn check(opts: &RemoteOptions, url: &Url, validator: &Validator) -> Result<()> {
    let c = client(url)?;
    let deadline = Deadline::after(opts.timeout);
    let got = block_on(async {
        c.credentials(url, Op::Validate, &deadline).await?;
        c.get(url, url.key(), None, &deadline)
            .await
            .map_err(|f| f.error(Op::Validate, url.as_path()))
    })?;
    let Some(got) = got else {
        return Err(Failed {
            class: Class::NotFound,
            why: "no such object".into(),
        }
        .error(Op::Validate, url.as_path()));
    };
    if matches_sum(&got.body, got.sum.as_deref()) == Some(false) {
        return Err(Error::new(
            Op::Validate,
            url.as_path(),
            ErrorKind::InvalidContent,
            format!(
                "damaged: its content does not match the checksum untorn recorded when it wrote \
                 it ({})",
                got.sum.unwrap_or_default()
            ),
        ));
    }
    validator.check(&got.body, &url.as_path())
}

/// A plain write (`create`: only if there is no object).
pub(crate) fn write(opts: &RemoteOptions, url: &Url, data: &[u8], create: bool) -> Result<Outcome> {
    let c = client(url)?;
    let deadline = Deadline::after(opts.timeout);
    block_on(async {
        c.credentials(url, Op::Write, &deadline).await?;
        let id = new_id();
        let (mode, lineage) = if create {
            (PutMode::Create, Lineage::child(None, &id))
        } else {
            (PutMode::Overwrite, Lineage::fresh(&id))
        };
        let mut outcome = Outcome::default();
        let mut sent = false;
        loop {
            outcome.attempts += 1;
            let fail = match c
                .put_once(url, url.key(), data, mode.clone(), &lineage, &deadline)
                .await
            {
                Ok(r) => {
                    outcome.written = true;
                    outcome.e_tag = r.e_tag;
                    outcome.version = r.version;
                    return Ok(outcome);
                }
                Err(f) => f,
            };
            let exists = || {
                Error::new(
                    Op::Create,
                    url.as_path(),
                    ErrorKind::AlreadyExists,
                    "the object exists (--no-clobber)".into(),
                )
            };
            match fail.class {
                Class::Unavailable if deadline.nearly_passed() => {
                    return Err(gave_up(Op::Write, url, sent, &fail.why))
                }
                Class::Unavailable => {
                    backoff(outcome.attempts, &deadline).await;
                    if deadline.nearly_passed() {
                        return Err(gave_up(Op::Write, url, sent, &fail.why));
                    }
                    continue;
                }
                Class::Condition if !sent => return Err(exists()),
                Class::Condition => {}
                Class::Transient | Class::Timeout => {
                    sent = true;
                    outcome.lost_answers += 1;
                }
                _ if !sent => return Err(fail.error(Op::Write, url.as_path())),
                _ => {}
            }
            tracing::debug!(target: "untorn", url = %url, why = %fail.why, "the answer to a write was lost; reading the object to tell");
            let now = match c
                .get(url, url.key(), None, &resolve_deadline(&deadline))
                .await
            {
                Ok(now) => now,
                Err(f) => {
                    return Err(unknown(
                        url,
                        &format!("the object could not be read to tell ({})", f.why),
                    ))
                }
            };
            let verdict = landed(&id, None, now.as_ref().map(|g| &g.lineage));
            match verdict {
                Landed::Yes => {
                    outcome.written = true;
                    outcome.e_tag = now.as_ref().and_then(|g| g.e_tag.clone());
                    return Ok(outcome);
                }
                Landed::No if create && now.is_some() => return Err(exists()),
                Landed::Unknown if create && now.is_some() => {
                    return Err(unknown(
                        url,
                        "another version is there now, without a record of this write",
                    ))
                }
                // A create whose object is still absent, or a plain write (the last commit
                // wins: sending it again is the same as its arriving later): send it again.
                _ if deadline.passed() => {
                    return Err(unknown(url, "the time ran out while it may still land"))
                }
                _ => backoff(outcome.attempts, &deadline).await,
            }
        }
    })
}

/// The optimistic read-modify-write loop.
pub(crate) fn update<E, F>(opts: &RemoteOptions, url: &Url, mut f: F) -> Result<Outcome, E>
where
    F: FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
    E: From<Error>,
{
    let c = client(url)?;
    let deadline = Deadline::after(opts.timeout);
    // `f` runs outside the runtime (it may block, or make remote calls of its own).
    block_on(c.credentials(url, Op::Write, &deadline))?;
    let mut cur = block_on(c.get(url, url.key(), None, &deadline))
        .map_err(|f| f.error(Op::Read, url.as_path()))?;
    let mut outcome = Outcome::default();
    loop {
        let new = match f(cur.as_ref().map(|g| &g.body[..]))? {
            Some(new) if cur.as_ref().map(|g| &g.body) != Some(&new) => new,
            _ => return Ok(outcome),
        };
        match block_on(put_update(
            &c,
            url,
            cur.as_ref(),
            &new,
            &mut outcome,
            &deadline,
        ))? {
            None => return Ok(outcome),
            Some(next) => {
                outcome.conflicts += 1;
                if !opts.retry_conflicts {
                    return Err(Error::new(
                        Op::Write,
                        url.as_path(),
                        ErrorKind::WouldBlock,
                        "another writer replaced the object first (--nonblock: not retried); \
                         nothing was written"
                            .into(),
                    )
                    .into());
                }
                if deadline.passed() {
                    return Err(Error::new(
                        Op::Write,
                        url.as_path(),
                        ErrorKind::TimedOut,
                        format!(
                            "other writers replaced the object {} times within the timeout; \
                             nothing was written",
                            outcome.conflicts
                        ),
                    )
                    .into());
                }
                block_on(backoff(outcome.conflicts - 1, &deadline));
                cur = next;
            }
        }
    }
}

/// Sends `new` as the successor of `cur` (`None`: create), again as long as that is safe.
/// `Ok(None)`: it landed (`outcome` says how); `Ok(Some(next))`: another writer's version
/// `next` replaced `cur` first, and this write did not land and never will: compute again.
async fn put_update(
    c: &Client,
    url: &Url,
    cur: Option<&Got>,
    new: &[u8],
    outcome: &mut Outcome,
    deadline: &Deadline,
) -> Result<Option<Option<Got>>> {
    let id = new_id();
    let base = cur.and_then(|g| g.lineage.own_id(g.e_tag.as_deref()));
    let lineage = Lineage::child(cur.map(|g| (&g.lineage, g.e_tag.as_deref())), &id);
    let mode = match cur {
        None => PutMode::Create,
        Some(g) => PutMode::Update(UpdateVersion {
            e_tag: g.e_tag.clone(),
            version: g.version.clone(),
        }),
    };
    let mut sent = false;
    let mut retries = 0;
    loop {
        outcome.attempts += 1;
        let fail = match c
            .put_once(url, url.key(), new, mode.clone(), &lineage, deadline)
            .await
        {
            Ok(r) => {
                outcome.written = true;
                outcome.e_tag = r.e_tag;
                outcome.version = r.version;
                return Ok(None);
            }
            Err(f) => f,
        };
        match fail.class {
            Class::Unavailable if deadline.nearly_passed() => {
                return Err(gave_up(Op::Write, url, sent, &fail.why))
            }
            Class::Unavailable => {
                backoff(retries, deadline).await;
                retries += 1;
                if deadline.nearly_passed() {
                    return Err(gave_up(Op::Write, url, sent, &fail.why));
                }
                continue;
            }
            Class::Condition => {}
            Class::Transient | Class::Timeout => {
                sent = true;
                outcome.lost_answers += 1;
            }
            _ if !sent => return Err(fail.error(Op::Write, url.as_path())),
            _ => {}
        }
        let now = match c
            .get(url, url.key(), None, &resolve_deadline(deadline))
            .await
        {
            Ok(now) => now,
            Err(f) if sent => {
                return Err(unknown(
                    url,
                    &format!("the object could not be read to tell ({})", f.why),
                ))
            }
            Err(f) => return Err(f.error(Op::Read, url.as_path())),
        };
        // Only an attempt whose answer was lost may have landed; a refused first attempt did
        // not.
        let verdict = if sent {
            landed(&id, base.as_deref(), now.as_ref().map(|g| &g.lineage))
        } else {
            Landed::No
        };
        tracing::debug!(target: "untorn", url = %url, why = %fail.why, ?verdict, "write not acknowledged");
        match verdict {
            Landed::Yes => {
                outcome.written = true;
                outcome.e_tag = now.as_ref().and_then(|g| g.e_tag.clone());
                outcome.version = now.as_ref().and_then(|g| g.version.clone());
                return Ok(None);
            }
            // The version this was computed from is still there: the same conditional PUT again
            // (at most one of its attempts can land).
            _ if same_version(cur, now.as_ref()) => {
                if deadline.passed() {
                    return Err(if sent {
                        unknown(url, "the time ran out while it may still land")
                    } else {
                        Failed {
                            class: Class::Timeout,
                            why: fail.why,
                        }
                        .error(Op::Write, url.as_path())
                    });
                }
                backoff(retries, deadline).await;
                retries += 1;
            }
            Landed::No => return Ok(Some(now)),
            Landed::Unknown => {
                return Err(unknown(
                    url,
                    "the object has changed since, and its history does not tell whether this \
                     write came first (another program wrote it, or more than 24 writes came \
                     in between)",
                ))
            }
        }
    }
}
