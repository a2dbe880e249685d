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
use crate::format::Format;
use crate::sum::Integrity;
use crate::sys::{errnos::*, Stat};
#[cfg(test)]
pub(crate) use crate::versions::no_more_readable;
pub use crate::versions::{backup_name, parse_backup_name, Backup};
use crate::versions::{
    copy_backup, damaged, file_of, list_in, prune, read_backup_judged, trusted_backups,
};
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
///
/// It gets its name without replacing anything: `RENAME_NOREPLACE`, or where the file system
/// lacks it (bindfs, exfat-fuse), a link and an unlink, or where it lacks hard links too
/// (exFAT), a rename to a name checked free just before (see [the module docs](mod@crate::backup)).
pub fn backup(path: impl AsRef<Path>, keep: usize) -> Result<Backup> {
    let path = path.as_ref();
    let ctx = Ctx::real();
    let (dir, dir_path, name) = file_of(&ctx, path)?;
    // Durable when this returns, or said (tmpfs), or refused (a FUSE mount untorn cannot
    // vouch for), before the copy is made.
    let dst = ctx
        .sys
        .stat(&dir)
        .map_err(|e| Error::io(Op::Stat, &dir_path, e))?;
    if dst.attrs & (Stat::IMMUTABLE | Stat::APPEND_ONLY) != 0 {
        // The copy could be made but never renamed, nor removed again.
        return Err(Error::new(
            Op::Backup,
            path,
            ErrorKind::PermissionDenied,
            format!(
                "its directory '{}' is immutable or append-only (chattr +i/+a): nothing in it \
                 can be renamed or removed (checked before anything was created)",
                dir_path.display()
            ),
        ));
    }
    ctx.check_durability(dst.dev, &dir, path, Op::Backup, true, false)?;
    let b = copy_backup(&ctx, &dir, &dir_path, &name, path, true)?;
    ctx.warn_if_volatile(dst.dev, &dir, path);
    prune(&*ctx.sys, &dir, &dir_path, &name, keep.max(1));
    tracing::debug!(target: "untorn", op = "backup", path = %path.display(), backup = %b.path.display(), bytes = b.size);
    Ok(b)
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
