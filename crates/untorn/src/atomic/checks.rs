//! What a write checks so that the file system's limits are never found half-way: before the
//! first change (file attributes, what the mount can keep across a power cut), and after the
//! temp got its mode (that the file system keeps it).

use super::{Durability, OpenOptions};
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::paths::{resolve, Target};
use crate::sys::{Fd, Stat, Sys};
use std::path::Path;

/// Refuses, before anything is created, a write that a file attribute would make fail after
/// other steps succeeded: a directory marked immutable or append-only (`chattr +i`/`+a`: the
/// temp could be created, or linked as a backup, but never renamed or removed again), or a
/// target so marked (it cannot be replaced). `dir` is the target's directory. One write works
/// in an append-only directory, and is let through: a no-clobber create through an unnamed
/// temp (`O_TMPFILE`, linked once, straight to the new name); `named_temp` refuses it again
/// where the file system has no `O_TMPFILE`.
pub(super) fn attributes(
    dir: &Stat,
    target: &Target,
    opts: &OpenOptions,
    named_temp: bool,
) -> Result<()> {
    let creates_by_link = opts.no_clobber
        && target.existing.is_none()
        && opts.temp != super::TempFile::Named
        && !named_temp;
    if dir.attrs & Stat::APPEND_ONLY != 0 && dir.attrs & Stat::IMMUTABLE == 0 && creates_by_link {
        return Ok(());
    }
    if dir.attrs & Stat::IMMUTABLE != 0 {
        return Err(Error::new(
            Op::Resolve,
            target.path(),
            ErrorKind::PermissionDenied,
            format!(
                "its directory '{}' is immutable (chattr +i): nothing in it can be created, \
                 renamed or removed",
                target.dir_path.display()
            ),
        ));
    }
    if dir.attrs & Stat::APPEND_ONLY != 0 {
        return Err(Error::new(
            Op::Resolve,
            target.path(),
            ErrorKind::PermissionDenied,
            format!(
                "its directory '{}' is append-only (chattr +a): names can be added there but \
                 never renamed or removed, so no file in it can be replaced atomically (checked \
                 before anything was created)",
                target.dir_path.display()
            ),
        ));
    }
    if let Some(st) = &target.existing {
        if st.attrs & (Stat::IMMUTABLE | Stat::APPEND_ONLY) != 0 {
            let what = if st.attrs & Stat::IMMUTABLE != 0 {
                "immutable (chattr +i)"
            } else {
                "append-only (chattr +a)"
            };
            return Err(Error::new(
                Op::Resolve,
                target.path(),
                ErrorKind::PermissionDenied,
                format!("the file is {what}: it cannot be replaced"),
            ));
        }
    }
    Ok(())
}

/// Judges, before anything is created, what durability a write with `opts` gets on the mount
/// `dev` of `target`'s directory: the level asked for, or [`Durability::None`] on a mount that
/// keeps nothing across a power cut (said once the write is done, see
/// [`Ctx::warn_if_volatile`]) or on a FUSE mount untorn cannot vouch for (refused unless
/// allowed).
pub(super) fn durability(
    ctx: &Ctx,
    opts: &OpenOptions,
    dev: u64,
    dir: &Fd,
    path: &Path,
) -> Result<Durability> {
    let asked = opts.durability;
    let durable = ctx.check_durability(
        dev,
        dir,
        path,
        Op::Resolve,
        asked != Durability::None,
        opts.allow_shared_fs,
    )?;
    Ok(if durable { asked } else { Durability::None })
}

/// After the temp `fd` (shown as `shown`) got its final mode: an explicit `asked` mode that the
/// file system did not keep (exFAT through FUSE answers `fchmod` with success and keeps 0777)
/// is an error, before the rename: a secret written "0600" must never be world-readable
/// without a word. A mode untorn chose itself (the replaced file's, or the umask's) is what the
/// file system gives, as for any new file there.
pub(super) fn mode_kept(sys: &dyn Sys, fd: &Fd, shown: &Path, asked: Option<u32>) -> Result<()> {
    let Some(asked) = asked else {
        return Ok(());
    };
    let st = sys.stat(fd).map_err(|e| Error::io(Op::Stat, shown, e))?;
    if st.permissions() != asked {
        return Err(Error::new(
            Op::SetMode,
            shown,
            ErrorKind::Unsupported,
            format!(
                "the file system does not keep mode {asked:04o} (the file would be {:04o}); \
                 nothing was replaced",
                st.permissions()
            ),
        ));
    }
    Ok(())
}

/// What [`OpenOptions::open`] would refuse before creating anything, checked without creating
/// anything: a caller that takes a lock first (an update, an edit) asks this before, so that a
/// refusal leaves no lock file behind either.
pub(crate) fn before_lock(opts: &OpenOptions, path: &Path) -> Result<()> {
    match resolve(&opts.ctx, path, opts.symlinks) {
        Ok(t) => before_lock_at(opts, &t),
        // What the write itself will report, the same way.
        Err(_) => Ok(()),
    }
}

/// [`before_lock`] of a path already resolved to `target`.
pub(crate) fn before_lock_at(opts: &OpenOptions, target: &Target) -> Result<()> {
    let ctx = &opts.ctx;
    let dst = ctx
        .sys
        .stat(&target.dir)
        .map_err(|e| Error::io(Op::Stat, &target.dir_path, e))?;
    attributes(&dst, target, opts, false)?;
    durability(ctx, opts, dst.dev, &target.dir, &target.path()).map(|_| ())
}

/// Before an append to the log `path`, found at `t` (nothing created yet, not even its lock
/// file): refuses a log marked immutable (`chattr +i`: the open would fail after the lock file
/// was made) and judges the durability `asked` on its mount as for a write (see
/// [`durability`]). Returns the durability the append achieves, and the mount's device.
pub(crate) fn before_append(
    ctx: &Ctx,
    t: &Target,
    path: &Path,
    asked: Durability,
    allowed: bool,
) -> Result<(Durability, u64)> {
    if let Some(st) = &t.existing {
        if st.attrs & Stat::IMMUTABLE != 0 {
            return Err(Error::new(
                Op::Append,
                path,
                ErrorKind::PermissionDenied,
                "the file is immutable (chattr +i): nothing can be appended".into(),
            ));
        }
    }
    // The mount the log is on. Its verdict is cached by device: once the log's device has
    // one (judged through this directory on an earlier append: the common case, a log in a
    // directory of its mount) no call is needed; otherwise the directory's device, whose
    // verdict the directory's descriptor can judge (a log bind-mounted alone is judged by its
    // directory's mount).
    let dev = match &t.existing {
        Some(st) if ctx.knows_keeps(st.dev) => st.dev,
        _ => {
            ctx.sys
                .stat(&t.dir)
                .map_err(|e| Error::io(Op::Stat, path, e))?
                .dev
        }
    };
    let durable = ctx.check_durability(
        dev,
        &t.dir,
        path,
        Op::Append,
        asked != Durability::None,
        allowed,
    )?;
    Ok((if durable { asked } else { Durability::None }, dev))
}
