//! What every temp file of untorn gets before it is published: the final owner and mode. Shared
//! by single writes ([`crate::AtomicFile`]) and transactions, so both keep the same metadata.

use crate::error::{Error, Op, Result};
use crate::sys::{errnos::*, Fd, FileType, Stat, Sys};
use std::path::Path;

/// Gives the temp `fd` (shown as `shown` in errors) the owner and group of the file it replaces
/// (`old`, if it is a regular file and `keep_owner`), as far as the process may, and the mode
/// `final_mode`.
///
/// Changing the owner needs privilege: without it, the group is kept if the process is a member
/// of it, and the write goes on.
pub(crate) fn set_final_metadata(
    sys: &dyn Sys,
    fd: &Fd,
    shown: &Path,
    old: Option<Stat>,
    keep_owner: bool,
    final_mode: u32,
) -> Result<()> {
    let st = sys.stat(fd).map_err(|e| Error::io(Op::Stat, shown, e))?;
    set_final_metadata_from(sys, fd, shown, &st, old, keep_owner, final_mode)
}

/// [`set_final_metadata`], with the temp's `st` already taken by the caller.
pub(crate) fn set_final_metadata_from(
    sys: &dyn Sys,
    fd: &Fd,
    shown: &Path,
    st: &Stat,
    old: Option<Stat>,
    keep_owner: bool,
    final_mode: u32,
) -> Result<()> {
    if let (true, Some(old)) = (keep_owner, old) {
        if old.file_type() == FileType::Regular && (old.uid != st.uid || old.gid != st.gid) {
            // Owner first: chown clears setuid/setgid bits, which the chmod below restores.
            match sys.set_owner(fd, Some(old.uid), Some(old.gid)) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(EPERM | EACCES)) => {
                    // Not privileged: keep at least the group if we may (a member of it).
                    let _ = sys.set_owner(fd, None, Some(old.gid));
                    tracing::debug!(target: "untorn", path = %shown.display(), "owner not kept: not permitted");
                }
                Err(e) => return Err(Error::io(Op::SetOwner, shown, e)),
            }
        }
    }
    if st.permissions() != final_mode || final_mode & 0o6000 != 0 {
        sys.set_mode(fd, final_mode)
            .map_err(|e| Error::io(Op::SetMode, shown, e))?;
    }
    Ok(())
}
