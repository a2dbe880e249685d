//! Backups: the previous versions of a file, kept beside it at no cost that grows with its size.
//!
//! # Naming (stable)
//!
//! A backup of `DIR/NAME` is `DIR/NAME.YYYYMMDDTHHMMSS.NNNNNNNNNZ.bak`: the UTC time it was
//! displaced, to the nanosecond, so that names sort by time (`state.json.20261122T031500.123456789Z.bak`).
//! A path through a symlink means the file the link leads to: its backups are named after it
//! and kept beside it, whatever name a write, [`backup`], [`backups`] or [`restore`] is given.
//! Backups live in the file's own directory so that keeping one costs a link inside the
//! directory whose `fsync` the write already pays for: no copy, and no second fsync.
//!
//! # Cost
//!
//! A write with backups on gives the inode about to be displaced a second name, the backup
//! name (`linkat`), just before the atomic replace: O(1) in the file's size, and made durable
//! by the same directory fsync as the write itself. The crash simulator checks that whatever
//! subset of these directory operations a crash keeps, a backup never holds the new content.
//! Backups taken
//! on demand ([`backup`]) share nothing with the live file (which a program could still change
//! in place): they are a reflink (`FICLONE`, O(1) on xfs and btrfs) or else a copy.
//!
//! A backup has the mode and owner of the version it keeps (the same inode, or set to match),
//! so it is never more readable than that version. Where a copy cannot get the original's
//! owner or group (a user backing up a file of another), its mode is narrowed so that nobody
//! gets access they lacked to the original ([`backup`]).
//!
//! # Integrity
//!
//! A backup also keeps the checksum untorn recorded when it wrote that version (an extended
//! attribute of the inode, see [`Integrity`]), so a reader can tell a whole backup from a
//! damaged one. A backup pruned beyond retention can come back after a power cut (the unlink
//! was not fsynced, on purpose: that would cost a flush per write), and on ext4
//! `data=writeback` it can come back over blocks a newer file has since been given. Such a
//! backup is [damaged](Integrity::Damaged): [`restore`] refuses it, and [`read_valid`] and
//! [`recover`](crate::recover()) skip it, saying so. [`Backup::integrity`] reads a backup and
//! judges it; `untorn backups` shows the verdict of each. A backup untorn did not write, or one
//! on a file system without user extended attributes, is [unverified](Integrity::Unverified):
//! judged by the caller's validator alone.

use crate::atomic::{OpenOptions, Symlinks};
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::files::read_all;
use crate::format::Format;
use crate::paths::join;
use crate::sum::Integrity;
use crate::sys::{errnos::*, Fd, FileType, OpenHow, RenameMode, SyncKind, Sys};
pub use crate::versions::{backup_name, parse_backup_name, Backup};
use crate::versions::{
    damaged, file_of, fresh_name, list_in, prune, read_backup_judged, trusted_backups,
};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The backups of the file at `path` (symlinks followed), newest first.
pub fn backups(path: impl AsRef<Path>) -> Result<Vec<Backup>> {
    let path = path.as_ref();
    let ctx = Ctx::real();
    let (dir, dir_path, name) = file_of(&ctx, path)?;
    let mut v = list_in(&*ctx.sys, &dir, &dir_path, &name)?;
    v.reverse();
    Ok(v)
}

/// Takes a backup of the file at `path` now, keeping at most `keep` backups of it (the oldest
/// go). The backup is a reflink where the file system can (O(1)), else a copy; it gets the
/// file's owner and group where the process may set them (else its own user, and the file's
/// group if the process is a member of it, else its own group), and the file's mode narrowed so
/// that it is never more readable than the file, by anyone; it is durable when this returns.
pub fn backup(path: impl AsRef<Path>, keep: usize) -> Result<Backup> {
    let path = path.as_ref();
    let ctx = Ctx::real();
    let sys = &*ctx.sys;
    let (dir, dir_path, name) = file_of(&ctx, path)?;
    // O_NONBLOCK: a FIFO would block the open until a writer came; the fstat below refuses it.
    let src = sys
        .open_file(
            &dir,
            &name,
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
    let tmp = crate::paths::temp_name(&name);
    let tmp_path = join(&dir_path, &tmp);
    let dst = sys
        .create_temp(&dir, &tmp, 0o600)
        .map_err(|e| Error::io(Op::CreateTemp, path, e))?;
    let result = (|| -> Result<Backup> {
        copy_into(sys, &src, &dst, st.size, path)?;
        sum_copy(&ctx, &src, &dst, (&dir, &tmp), &tmp_path);
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
        let mut bump = 0;
        let bname = loop {
            let b = fresh_name(&name, bump);
            match sys.rename(&dir, &tmp, &dir, &b, RenameMode::NoReplace) {
                Ok(()) => break b,
                Err(e) if e.raw_os_error() == Some(EEXIST) && bump < 1000 => bump += 1,
                Err(e) => {
                    return Err(Error::io(Op::Rename, &tmp_path, e).with_other(join(&dir_path, &b)))
                }
            }
        };
        sys.sync_dir(&dir)
            .map_err(|e| Error::io(Op::SyncDir, &dir_path, e))?;
        let copy = sys
            .stat(&dst)
            .map_err(|e| Error::io(Op::Stat, &tmp_path, e))?;
        Ok(Backup {
            path: join(&dir_path, &bname),
            time: parse_backup_name(&bname).expect("fresh name parses").1,
            name: bname,
            size: st.size,
            id: (copy.dev, copy.ino),
        })
    })();
    match result {
        Ok(b) => {
            prune(sys, &dir, &dir_path, &name, keep.max(1));
            tracing::debug!(target: "untorn", op = "backup", path = %path.display(), backup = %b.path.display(), bytes = b.size);
            Ok(b)
        }
        Err(e) => {
            let _ = sys.unlink(&dir, &tmp);
            Err(e)
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

/// Which backup to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Which {
    /// The newest.
    Newest,
    /// The `k`-th newest (1 = the newest).
    Nth(usize),
    /// The backup with this file name (or path).
    Named(PathBuf),
}

/// What [`restore`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The backup whose content is now the file's.
    pub from: Backup,
    /// The backup that now keeps the version the restore replaced (`None` if the file did not
    /// exist), so that the restore can be undone by restoring it.
    pub displaced: Option<Backup>,
}

/// Restores the file at `path` from one of its backups, atomically and durably, under the
/// exclusive lock. The version it replaces becomes a backup itself, so a restore can be undone.
pub fn restore(path: impl AsRef<Path>, which: Which) -> Result<Restored> {
    let path = path.as_ref();
    let _lock = crate::lock::lock(path)?;
    let list = backups(path)?;
    let from = pick(&list, &which, path)?.clone();
    restore_from(path, &from)
}

fn pick<'a>(list: &'a [Backup], which: &Which, path: &Path) -> Result<&'a Backup> {
    let found = match which {
        Which::Newest => list.first(),
        Which::Nth(k) => k.checked_sub(1).and_then(|i| list.get(i)),
        Which::Named(n) => {
            let n = n.file_name().unwrap_or(n.as_os_str());
            list.iter().find(|b| b.name == n)
        }
    };
    found.ok_or_else(|| {
        Error::new(
            Op::Restore,
            path,
            ErrorKind::NotFound,
            match which {
                Which::Named(n) => format!("it has no backup named '{}'", n.display()),
                _ if list.is_empty() => "it has no backups".into(),
                _ => format!("it has only {} backups", list.len()),
            },
        )
    })
}

/// Restores `path` from `from` (the lock held by the caller).
pub(crate) fn restore_from(path: &Path, from: &Backup) -> Result<Restored> {
    restore_from_with(&Ctx::real(), path, from, Symlinks::Follow)
}

/// [`restore_from`] through `ctx`, with the symlink policy `symlinks` for `path` (a recovery
/// never writes through a link: [`Symlinks::Refuse`]).
pub(crate) fn restore_from_with(
    ctx: &Arc<Ctx>,
    path: &Path,
    from: &Backup,
    symlinks: Symlinks,
) -> Result<Restored> {
    let sys = &*ctx.sys;
    let (dir, dir_path, name) = file_of(ctx, path)?;
    let (content, integrity) = read_backup_judged(sys, &dir, from)?;
    if let Integrity::Damaged(why) = &integrity {
        return Err(damaged(path, from, why));
    }
    let before = list_in(sys, &dir, &dir_path, &name)?;
    // Keep every backup (the restored one included): only add the displaced version.
    let mut w = OpenOptions::new();
    w.with_ctx(ctx.clone());
    w.backups(usize::MAX)
        .symlinks(symlinks)
        .write(path, &content)?;
    let after = list_in(sys, &dir, &dir_path, &name)?;
    let displaced = after.into_iter().find(|b| !before.contains(b));
    tracing::debug!(target: "untorn", op = "restore", path = %path.display(), from = %from.path.display());
    Ok(Restored {
        from: from.clone(),
        displaced,
    })
}

/// A caller's check of a file's content: `Err(reason)` rejects it.
pub type CheckFn = dyn Fn(&[u8]) -> std::result::Result<(), String> + Send + Sync;

/// How to tell a good version of a file from a bad one.
#[derive(Clone)]
#[non_exhaustive]
pub enum Validator {
    /// It exists and is a readable regular file.
    Exists,
    /// Its content is UTF-8.
    Utf8,
    /// Its content is valid for this format (JSON, YAML, TOML; [`Format::Raw`] accepts all).
    Format(Format),
    /// The caller's check: `Err(reason)` rejects the content.
    Custom(std::sync::Arc<CheckFn>),
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Validator::Exists => f.write_str("Exists"),
            Validator::Utf8 => f.write_str("Utf8"),
            Validator::Format(x) => write!(f, "Format({x:?})"),
            Validator::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl Validator {
    /// A validator from a closure.
    pub fn custom(
        f: impl Fn(&[u8]) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Validator {
        Validator::Custom(std::sync::Arc::new(f))
    }

    /// Checks `content` (read from `path`); the error says why it is not valid, with the line
    /// and column where the format knows them.
    pub fn check(&self, content: &[u8], path: &Path) -> Result<()> {
        match self {
            Validator::Exists => Ok(()),
            Validator::Utf8 => std::str::from_utf8(content).map(drop).map_err(|e| {
                let (l, c) = crate::format::line_col(content, e.valid_up_to());
                Error::new(
                    Op::Validate,
                    path,
                    ErrorKind::InvalidContent,
                    format!("not valid UTF-8 at line {l} column {c}"),
                )
                .with_location(l, c)
            }),
            Validator::Format(f) => f.check(content, path),
            Validator::Custom(f) => f(content)
                .map_err(|why| Error::new(Op::Validate, path, ErrorKind::InvalidContent, why)),
        }
    }
}

/// The content [`read_valid`] found, and where.
#[derive(Debug)]
pub struct ValidRead {
    /// The valid content.
    pub content: Vec<u8>,
    /// `None` if it is the file itself; else the backup it came from.
    pub backup: Option<Backup>,
    /// Why the file itself was not used (missing, or invalid), if it was not.
    pub rejected: Option<Error>,
    /// Whether the file was restored from that backup.
    pub restored: bool,
    /// Newer backups passed over because they are [damaged](Integrity::Damaged).
    pub damaged: Vec<Backup>,
}

/// Reads `path` if it passes `validator`; otherwise returns the newest backup that does, and
/// says which one it used (and why the file was rejected). With `restore`, the file is also
/// restored from that backup (atomically, durably, the bad version kept as a backup).
///
/// ```
/// use untorn::backup::{read_valid, Validator};
/// use untorn::Format;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("state.json");
/// let mut w = untorn::OpenOptions::new();
/// w.backups(5);
/// w.write(&path, "{\"ok\": 1}")?;
/// w.write(&path, "{\"ok\": 2}")?;
/// std::fs::write(&path, "{trunc")?; // some other program corrupts it
/// let r = read_valid(&path, &Validator::Format(Format::Json), false)?;
/// assert_eq!(r.content, b"{\"ok\": 1}");
/// assert!(r.backup.is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_valid(
    path: impl AsRef<Path>,
    validator: &Validator,
    restore: bool,
) -> Result<ValidRead> {
    let path = path.as_ref();
    let _lock = if restore {
        Some(crate::lock::lock(path)?)
    } else {
        None
    };
    let rejected = match crate::files::read_file(&Ctx::real(), path) {
        Ok(Some(c)) => match validator.check(&c, path) {
            Ok(()) => {
                return Ok(ValidRead {
                    content: c,
                    backup: None,
                    rejected: None,
                    restored: false,
                    damaged: Vec::new(),
                })
            }
            Err(e) => e,
        },
        Ok(None) => Error::io(Op::Read, path, crate::sys::os_error(ENOENT)),
        Err(e) => e,
    };
    let mut damaged = Vec::new();
    for (b, content, integrity) in trusted_backups(&Ctx::real(), path)? {
        if let Integrity::Damaged(why) = &integrity {
            tracing::warn!(target: "untorn", path = %path.display(), backup = %b.path.display(), reason = %why, "skipping a damaged backup");
            damaged.push(b);
            continue;
        }
        if validator.check(&content, &b.path).is_err() {
            continue;
        }
        tracing::info!(target: "untorn", path = %path.display(), backup = %b.path.display(), reason = %rejected, "using a backup");
        if restore {
            restore_from(path, &b)?;
        }
        return Ok(ValidRead {
            content,
            backup: Some(b),
            rejected: Some(rejected),
            restored: restore,
            damaged,
        });
    }
    let skipped = match damaged.len() {
        0 => String::new(),
        n => format!(
            " ({n} damaged backup{} skipped)",
            if n == 1 { "" } else { "s" }
        ),
    };
    Err(Error::new(
        Op::Validate,
        path,
        rejected.kind(),
        format!(
            "{}; and no backup is valid either{skipped}",
            rejected.detail()
        ),
    ))
}
