//! The versions a file's backups keep: their names (stable: `NAME.YYYYMMDDTHHMMSS.NNNNNNNNNZ.bak`,
//! UTC), listing them (only those the caller trusts; names dated in the future count as the
//! oldest), retention, and reading one back judged by its checksum. The bottom of the backup
//! feature: `atomic` keeps a version here as it replaces a file, and `backup` builds taking,
//! listing and restoring backups on it. See [`crate::backup`] for what is promised.

use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::files::read_all;
use crate::paths::{join, split};
use crate::sum::Integrity;
use crate::sys::{errnos::*, Fd, FileType, OpenHow, SyncKind, Sys};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SUFFIX: &str = ".bak";
/// `YYYYMMDDTHHMMSS.NNNNNNNNNZ`
const STAMP_LEN: usize = 26;

/// Days since 1970-01-01 to a civil (proleptic Gregorian) date: Howard Hinnant's algorithm.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn stamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, mo, da) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}{mo:02}{da:02}T{:02}{:02}{:02}.{:09}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_nanos()
    )
}

fn parse_stamp(s: &[u8]) -> Option<SystemTime> {
    if s.len() != STAMP_LEN || s[8] != b'T' || s[15] != b'.' || s[25] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        std::str::from_utf8(&s[r]).ok()?.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se, ns) = (num(9..11)?, num(11..13)?, num(13..15)?, num(16..25)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as u32, d as u32);
    let secs = days * 86_400 + (h * 3600 + mi * 60 + se) as i64;
    Some(UNIX_EPOCH + Duration::new(u64::try_from(secs).ok()?, ns as u32))
}

/// The backup name of `target` for time `t`: `NAME.YYYYMMDDTHHMMSS.NNNNNNNNNZ.bak`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::new(1_795_317_300, 123_456_789);
/// let name = untorn::backup::backup_name("state.json".as_ref(), t);
/// assert_eq!(name, "state.json.20261122T031500.123456789Z.bak");
/// assert_eq!(untorn::backup::parse_backup_name(&name), Some(("state.json".into(), t)));
/// ```
pub fn backup_name(target: &OsStr, t: SystemTime) -> OsString {
    let mut v = target.as_bytes().to_vec();
    v.push(b'.');
    v.extend_from_slice(stamp(t).as_bytes());
    v.extend_from_slice(SUFFIX.as_bytes());
    OsString::from_vec(v)
}

/// If `name` is a backup name, the name of the file it backs up and the time it was taken.
pub fn parse_backup_name(name: &OsStr) -> Option<(OsString, SystemTime)> {
    let b = name.as_bytes().strip_suffix(SUFFIX.as_bytes())?;
    if b.len() < STAMP_LEN + 2 {
        return None;
    }
    let (target, stamp) = b.split_at(b.len() - STAMP_LEN);
    let target = target.strip_suffix(b".")?;
    let t = parse_stamp(stamp)?;
    Some((OsString::from_vec(target.to_vec()), t))
}

/// One backup of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backup {
    /// Its path.
    pub path: PathBuf,
    /// Its file name.
    pub name: OsString,
    /// When the version it keeps was displaced (or, for [`backup`](crate::backup()), taken).
    pub time: SystemTime,
    /// Its size in bytes.
    pub size: u64,
    /// Its (device, inode) when listed: reading it checks it is still that file.
    pub(crate) id: (u64, u64),
}

impl Backup {
    /// Reads this backup whole and judges it: [whole](Integrity::Whole) (it matches the
    /// checksum recorded when untorn wrote that version), [damaged](Integrity::Damaged) (it
    /// does not, although nothing wrote to it since: never restore it) or
    /// [unverified](Integrity::Unverified) (nothing to check it against). Costs a read of the
    /// backup.
    pub fn integrity(&self) -> Result<Integrity> {
        Ok(self.read_checked()?.1)
    }

    /// Its content and its [`Integrity`], in one read (of the file listed: not through a
    /// symlink, and not if another file took its name since).
    pub fn read_checked(&self) -> Result<(Vec<u8>, Integrity)> {
        let ctx = Ctx::real();
        let (dir_path, _) = split(&self.path)?;
        let dir = ctx
            .sys
            .open_dir(None, &dir_path)
            .map_err(|e| Error::io(Op::OpenDir, &dir_path, e))?;
        read_backup_judged(&*ctx.sys, &dir, self)
    }
}

/// The error for a damaged backup that was asked for.
pub(crate) fn damaged(path: &Path, b: &Backup, why: &str) -> Error {
    Error::new(
        Op::Restore,
        path,
        ErrorKind::InvalidContent,
        format!(
            "its backup '{}' is damaged ({why}); not restored: choose another backup",
            b.name.to_string_lossy()
        ),
    )
}

/// How far in the future a backup's time may be before it counts as misdated: a clock that
/// once ran ahead, or a name planted to look newest.
const FUTURE_SLACK: Duration = Duration::from_secs(60);

/// What a directory holds for the backups of one file.
struct Scan {
    /// The backups the caller trusts, oldest first; names dated in the future count as the
    /// oldest of all (so retention removes them first, and none is ever "the newest").
    trusted: Vec<Backup>,
    /// Backup names that are the live file itself (a crash between the link that keeps the
    /// old version and the replace leaves one).
    stale: Vec<OsString>,
    /// Backup names another user owns: left alone, never listed, pruned or restored.
    untrusted: Vec<(PathBuf, u32)>,
}

/// The backups of `name` in the open directory `dir`.
///
/// A backup is trusted if its owner is the caller, root, a user the caller trusts, or the owner
/// of the file itself (a backup is the displaced inode, so it keeps its owner): anything else
/// was planted ([`crate::trust`]). Only regular files count.
fn scan(sys: &dyn Sys, dir: &Fd, dir_path: &Path, name: &OsStr) -> Result<Scan> {
    let names = sys
        .list_dir(dir)
        .map_err(|e| Error::io(Op::ListDir, dir_path, e))?;
    let live = sys.stat_at(dir, name, false).ok();
    let euid = sys.euid();
    let future = SystemTime::now() + FUTURE_SLACK;
    let mut out = Scan {
        trusted: Vec::new(),
        stale: Vec::new(),
        untrusted: Vec::new(),
    };
    for n in names {
        let Some((target, time)) = parse_backup_name(&n) else {
            continue;
        };
        if target != name {
            continue;
        }
        let st = match sys.stat_at(dir, &n, false) {
            Ok(st) if st.file_type() == FileType::Regular => st,
            _ => continue,
        };
        if !crate::trust::trusts(euid, st.uid) && live.is_none_or(|l| l.uid != st.uid) {
            out.untrusted.push((join(dir_path, &n), st.uid));
            continue;
        }
        if live.is_some_and(|l| (l.dev, l.ino) == (st.dev, st.ino)) {
            out.stale.push(n);
            continue;
        }
        out.trusted.push(Backup {
            path: join(dir_path, &n),
            name: n,
            time,
            size: st.size,
            id: (st.dev, st.ino),
        });
    }
    out.trusted
        .sort_by(|a, b| (a.time <= future, &a.name).cmp(&(b.time <= future, &b.name)));
    for (p, uid) in &out.untrusted {
        tracing::warn!(target: "untorn", "ignoring '{}': named like a backup of '{}', but it belongs to {}", p.display(), join(dir_path, name).display(), crate::trust::user_name(*uid));
    }
    Ok(out)
}

/// The backups of `name` in the open directory `dir`, oldest first (see [`scan`]).
pub(crate) fn list_in(
    sys: &dyn Sys,
    dir: &Fd,
    dir_path: &Path,
    name: &OsStr,
) -> Result<Vec<Backup>> {
    Ok(scan(sys, dir, dir_path, name)?.trusted)
}

/// Removes the oldest backups of `name` beyond `keep`, and stale backup names of the live file.
/// Only backups the caller trusts are counted or removed. Not fsynced: if a crash undoes a
/// removal, there is one backup too many, never one too few.
pub(crate) fn prune(sys: &dyn Sys, dir: &Fd, dir_path: &Path, name: &OsStr, keep: usize) {
    let Ok(found) = scan(sys, dir, dir_path, name) else {
        return;
    };
    let extra = found.trusted.len().saturating_sub(keep);
    let doomed = found.trusted[..extra]
        .iter()
        .map(|b| &b.name)
        .chain(found.stale.iter());
    for n in doomed {
        if let Err(e) = sys.unlink(dir, n) {
            tracing::warn!(target: "untorn", backup = %join(dir_path, n).display(), error = %e, "could not remove an old backup");
        }
    }
}

/// Reads backup `b` (an entry of `dir`): without following a symlink, and only if it is still
/// the file that was listed.
/// Its content comes with the backup's [`Integrity`] (its checksum checked on the same read).
pub(crate) fn read_backup_judged(
    sys: &dyn Sys,
    dir: &Fd,
    b: &Backup,
) -> Result<(Vec<u8>, Integrity)> {
    let how = OpenHow {
        read: true,
        no_follow: true,
        nonblock: true,
        ..OpenHow::default()
    };
    let fd = sys
        .open_file(dir, &b.name, how, 0)
        .map_err(|e| Error::io(Op::Open, &b.path, e))?;
    // With the modification time: the checksum check needs it.
    let st = sys
        .stat_times(&fd)
        .map_err(|e| Error::io(Op::Stat, &b.path, e))?;
    if (st.dev, st.ino) != b.id {
        return Err(Error::new(
            Op::Restore,
            &b.path,
            ErrorKind::Other,
            "the backup was replaced since it was listed".into(),
        ));
    }
    let content = read_all(sys, &fd, &b.path)?;
    let integrity = crate::sum::judge(sys, &fd, &st, &content);
    Ok((content, integrity))
}

/// The trusted backups of the file at `path`, newest first, each with its content (read one at
/// a time as the caller goes: reading stops where the caller stops).
pub(crate) fn trusted_backups(
    ctx: &Arc<Ctx>,
    path: &Path,
) -> Result<impl Iterator<Item = (Backup, Vec<u8>, Integrity)>> {
    let (dir, dir_path, name) = file_of(ctx, path)?;
    let mut list = list_in(&*ctx.sys, &dir, &dir_path, &name)?;
    list.reverse();
    let ctx = ctx.clone();
    Ok(list.into_iter().filter_map(move |b| {
        let (c, integrity) = read_backup_judged(&*ctx.sys, &dir, &b).ok()?;
        Some((b, c, integrity))
    }))
}

/// A fresh backup name for `name` (now, or later if that name is taken).
pub(crate) fn fresh_name(name: &OsStr, bump: u32) -> OsString {
    backup_name(name, SystemTime::now() + Duration::from_nanos(bump as u64))
}

/// The directory and name of the file `path` leads to (symlinks followed, as for its lock):
/// a file's backups are named after it and kept beside it, whatever name reaches it, so that
/// `backups`, `backup` and `restore` through a link see the backups a write through it keeps.
pub(crate) fn file_of(ctx: &Arc<Ctx>, path: &Path) -> Result<(Arc<Fd>, PathBuf, OsString)> {
    let t = crate::paths::locate(ctx, path)?;
    Ok((t.dir, t.dir_path, t.name))
}

/// A copy of the file `name` of `dir` (named `path` in errors) as a new backup of it: a
/// reflink where the file system can, else a copy (O(size)), with the original's owner and
/// group where the process may set them and a mode never more readable than the original,
/// fsynced, and given a fresh backup name without replacing anything ([`publish_backup`]).
/// Its directory is fsynced if `sync_dir` (a write that keeps it before its own replace leaves
/// that to its own directory fsync). On error the copy is removed.
pub(crate) fn copy_backup(
    ctx: &Ctx,
    dir: &Fd,
    dir_path: &Path,
    name: &OsStr,
    path: &Path,
    sync_dir: bool,
) -> Result<Backup> {
    let sys = &*ctx.sys;
    // O_NONBLOCK: a FIFO would block the open until a writer came; the fstat below refuses it.
    let src = sys
        .open_file(
            dir,
            name,
            OpenHow {
                read: true,
                nonblock: true,
                ..OpenHow::default()
            },
            0,
        )
        .map_err(|e| Error::io(Op::Open, path, e))?;
    let st = sys.stat(&src).map_err(|e| Error::io(Op::Stat, path, e))?;
    if st.file_type() != FileType::Regular {
        return Err(Error::new(
            Op::Backup,
            path,
            ErrorKind::NotAFile,
            "not a regular file".into(),
        ));
    }
    let tmp = crate::paths::temp_name(name);
    let tmp_path = join(dir_path, &tmp);
    let dst = sys
        .create_temp(dir, &tmp, 0o600)
        .map_err(|e| Error::io(Op::CreateTemp, path, e))?;
    let result = (|| -> Result<Backup> {
        copy_into(sys, &src, &dst, st.size, path)?;
        sum_copy(ctx, &src, &dst, (dir, &tmp), &tmp_path);
        // Same owner and group as the original where the process may set them (a member of
        // the group may keep at least the group); then a mode that gives nobody access they
        // did not have to the original, whoever the copy belongs to.
        if sys.set_owner(&dst, Some(st.uid), Some(st.gid)).is_err() {
            let _ = sys.set_owner(&dst, None, Some(st.gid));
        }
        let copy = sys
            .stat(&dst)
            .map_err(|e| Error::io(Op::Stat, &tmp_path, e))?;
        sys.set_mode(&dst, no_more_readable(&st, copy.uid, copy.gid))
            .map_err(|e| Error::io(Op::SetMode, &tmp_path, e))?;
        sys.sync(&dst, SyncKind::All)
            .map_err(|e| Error::io(Op::Sync, &tmp_path, e))?;
        let bname = publish_backup(ctx, st.dev, dir, dir_path, &tmp, name)?;
        if sync_dir {
            sys.sync_dir(dir)
                .map_err(|e| Error::io(Op::SyncDir, dir_path, e))?;
        }
        let copy = sys
            .stat(&dst)
            .map_err(|e| Error::io(Op::Stat, &tmp_path, e))?;
        Ok(Backup {
            path: join(dir_path, &bname),
            time: parse_backup_name(&bname).expect("fresh name parses").1,
            name: bname,
            size: st.size,
            id: (copy.dev, copy.ino),
        })
    })();
    if result.is_err() {
        let _ = sys.unlink(dir, &tmp);
    }
    result
}

/// Gives the finished copy `tmp` of `dir` a fresh backup name of `name` without replacing
/// anything there: `RENAME_NOREPLACE`; where the file system lacks it (bindfs, exfat-fuse), a
/// link and an unlink; where it lacks hard links too (exFAT), a rename to a name checked free
/// just before (backup names carry the time to the nanosecond: only another backup of the
/// same file taken in the same nanosecond could take it in between). Returns the name.
pub(crate) fn publish_backup(
    ctx: &Ctx,
    dev: u64,
    dir: &Fd,
    dir_path: &Path,
    tmp: &OsStr,
    name: &OsStr,
) -> Result<OsString> {
    let mut bump = 0;
    loop {
        let b = fresh_name(name, bump);
        match crate::ctx::rename_new(ctx, dev, dir, tmp, &b) {
            Ok(()) => return Ok(b),
            Err(e) if e.raw_os_error() == Some(EEXIST) && bump < 1000 => bump += 1,
            Err(e) => {
                return Err(
                    Error::io(Op::Rename, join(dir_path, tmp), e).with_other(join(dir_path, &b))
                )
            }
        }
    }
}

/// Records the checksum of the copy `dst` of `src`: the source's own, if it has one that still
/// describes it (untorn wrote it and nothing changed it since: O(1), no read, and a copy of a
/// damaged source is damaged too), else the CRC of what `dst` now holds (a read of it).
fn sum_copy(ctx: &Ctx, src: &Fd, dst: &Fd, (dir, name): (&Fd, &OsStr), dst_path: &Path) {
    let sys = &*ctx.sys;
    let Ok(now) = sys.stat(dst) else {
        return;
    };
    let crc = match (crate::sum::recorded(sys, src), sys.stat_times(src)) {
        (Ok(sum), Ok(st)) if sum.size == now.size && sum.describes(&st) => sum.crc,
        _ => {
            // `dst` is open for writing only: read it through its name.
            let how = OpenHow {
                read: true,
                no_follow: true,
                ..OpenHow::default()
            };
            let Ok(r) = sys.open_file(dir, name, how, 0) else {
                return;
            };
            match read_all(sys, &r, dst_path) {
                Ok(c) if c.len() as u64 == now.size => crc32fast::hash(&c),
                _ => return,
            }
        }
    };
    crate::sum::record(ctx, dst, crc, &now, dst_path);
}

/// The mode for a copy of `orig` that belongs to `uid`:`gid`, so that nobody gets access they
/// lacked to the original: each class of the copy gets at most what every user it may hold had
/// on the original. The owner keeps the owner's bits (the copy's owner made it, so could read
/// the original, and may chmod the copy anyway). A group that is not the original's gets no
/// more than everyone had (its members may be anyone), and everyone gets no more than what the
/// original's owner and group had, if those can now fall among everyone. Setuid and setgid
/// go when the owner or group they refer to is not kept.
pub(crate) fn no_more_readable(orig: &crate::sys::Stat, uid: u32, gid: u32) -> u32 {
    let m = orig.permissions();
    let (owner, group, other) = ((m >> 6) & 7, (m >> 3) & 7, m & 7);
    let (uid_kept, gid_kept) = (uid == orig.uid, gid == orig.gid);
    let if_not = |kept: bool, bits: u32| if kept { 7 } else { bits };
    let other2 = other & if_not(uid_kept, owner) & if_not(gid_kept, group);
    let group2 = if gid_kept {
        group & if_not(uid_kept, owner)
    } else {
        other2
    };
    let mut special = m & 0o7000;
    if !uid_kept {
        special &= !0o4000;
    }
    if !gid_kept {
        special &= !0o2000;
    }
    special | owner << 6 | group2 << 3 | other2
}

/// Copies `len` bytes of `src` into the empty `dst`: reflink, else `copy_file_range`, else
/// read and write.
fn copy_into(sys: &dyn Sys, src: &Fd, dst: &Fd, len: u64, path: &Path) -> Result<()> {
    if sys.clone_file(src, dst).is_ok() {
        return Ok(());
    }
    let mut off = 0u64;
    while off < len {
        let want = (len - off).min(1 << 30) as usize;
        match sys.copy_range(src, dst, off, want) {
            Ok(0) => break,
            Ok(n) => off += n as u64,
            Err(e)
                if crate::ctx::is_unsupported(e.raw_os_error())
                    || e.raw_os_error() == Some(EXDEV) =>
            {
                // Plain read and write from where copy_file_range stopped.
                let data = read_all(sys, src, path)?;
                let mut done = off as usize;
                while done < data.len() {
                    let n = sys
                        .write(dst, &data[done..])
                        .map_err(|e| Error::io(Op::Backup, path, e))?;
                    done += n;
                }
                return Ok(());
            }
            Err(e) => return Err(Error::io(Op::Backup, path, e)),
        }
    }
    Ok(())
}
