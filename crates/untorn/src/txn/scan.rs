//! Recovering a whole directory (`untorn recover DIR`): every journal in it, every flagged lock
//! file; a dry run's judgement; and which temps belong to a journal (not orphans for `clean`).

use super::journal::{Entry, Journal};
use super::recover::{open_parts, reached_commit_point, recover_txn, refuse_copy, Home, Recovered};
use super::settle::{settle_flag, Settings, Settled};
use super::{flag_of, look, tag_of, tag_of_size, Found};
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::paths::join;
use crate::sys::{Fd, FileType, Sys};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// The (device, inode) of every temp that a journal in `dir` (among `names`, its entries) names,
/// where that journal is one recovery would act on (its owner trusted): such temps are not
/// orphans, their transaction may still roll them forward.
pub(crate) fn journaled_temps(
    sys: &dyn Sys,
    dir: &Fd,
    names: &[OsString],
) -> std::collections::HashSet<(u64, u64)> {
    let euid = sys.euid();
    let mut out = std::collections::HashSet::new();
    for n in names.iter().filter(|n| tag_of(n).is_some()) {
        let Ok(Found::File(st, bytes)) = look(sys, dir, n, |st| refuse_copy(euid, st).is_none())
        else {
            continue;
        };
        if refuse_copy(euid, &st).is_some() {
            continue;
        }
        if let Ok(j) = Journal::decode(&bytes) {
            for e in &j.entries {
                if let Entry::Put { dev, ino, .. } = e {
                    out.insert((*dev, *ino));
                }
            }
        }
    }
    out
}

/// Recovers every transaction journal in `dir` (and clears stale flags of its lock files).
/// Returns what it did, and the errors of the journals it could not recover (the others are
/// recovered all the same).
pub fn recover_dir(dir: impl AsRef<Path>, dry_run: bool) -> Result<Vec<Recovered>> {
    let (done, errors) =
        recover_dir_with(&Ctx::real(), dir.as_ref(), dry_run, &Settings::default())?;
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// [`recover_dir`] through `ctx`'s [`Sys`], with `s`.
pub(crate) fn recover_dir_with(
    ctx: &Arc<Ctx>,
    dir: &Path,
    dry_run: bool,
    s: &Settings,
) -> Result<(Vec<Recovered>, Vec<Error>)> {
    let sys = &*ctx.sys;
    let dfd = sys
        .open_dir(None, dir)
        .map_err(|e| Error::io(Op::OpenDir, dir, e))?;
    let home = Home::open(sys, &dfd, dir)?;
    let mut names = sys
        .list_dir(&dfd)
        .map_err(|e| Error::io(Op::ListDir, dir, e))?;
    names.sort();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for n in names {
        if tag_of(&n).is_some() {
            let r = if dry_run {
                judge(ctx, &home, &n).map(Some)
            } else {
                recover_txn(ctx, &home, &n, None, s)
            };
            match r {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        } else if n.as_bytes().ends_with(b".lock") && !dry_run {
            match sys.stat_at(&dfd, &n, false) {
                Ok(st) if st.file_type() == FileType::Regular && tag_of_size(st.size).is_some() => {
                    match settle_flag(ctx, &dfd, dir, &n, s) {
                        Ok(Settled::Recovered(r)) if !out.contains(&r) => out.push(r),
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::Untrusted => {
                            // Reported through the journal itself (listed above or below).
                            tracing::debug!(target: "untorn", error = %e, "untrusted flag");
                        }
                        Err(e) => errors.push(e),
                    }
                }
                _ => {}
            }
        }
    }
    // A journal reported untrusted once is enough.
    out.dedup();
    Ok((out, errors))
}

/// What recovery would decide for the journal `jname` of `home`, judged without its locks
/// (a live transaction may be mid-commit) and changing nothing.
fn judge(ctx: &Arc<Ctx>, home: &Home, jname: &OsStr) -> Result<Recovered> {
    let sys = &*ctx.sys;
    let euid = sys.euid();
    let jpath = join(&home.path, jname);
    let tag = tag_of(jname).expect("a journal name");
    let (st, bytes) = match look(sys, &home.fd, jname, |st| refuse_copy(euid, st).is_none())
        .map_err(|e| Error::io(Op::Read, &jpath, e))?
    {
        Found::File(st, b) => (st, b),
        Found::NotRegular => {
            return Ok(Recovered::Refused {
                path: jpath,
                why: "it is not a regular file".into(),
            })
        }
        Found::Missing => return Ok(Recovered::RolledBack(jpath)),
    };
    if let Some(r) = refuse_copy(euid, &st) {
        return Ok(r.into_recovered(jpath));
    }
    let Ok(j) = Journal::decode(&bytes) else {
        return Ok(Recovered::RolledBack(jpath));
    };
    let Some(home_i) = j.dir_index(home.st.dev, home.st.ino) else {
        return Ok(Recovered::Refused {
            path: jpath,
            why: "it belongs to other directories (a copy moved or linked here)".into(),
        });
    };
    let parts = open_parts(sys, &j, home, home_i)?;
    // The flags, read by name: nothing is locked or created on a dry run.
    let by_name = |k: usize| match look(sys, parts.fd(j.locks[k].dir), &j.locks[k].name, |_| true) {
        Ok(Found::File(_, c)) => flag_of(&c),
        _ => None,
    };
    let reached = reached_commit_point(sys, &parts, &j, tag, &bytes, euid, by_name)?;
    Ok(if reached {
        Recovered::RolledForward(jpath)
    } else {
        Recovered::RolledBack(jpath)
    })
}
