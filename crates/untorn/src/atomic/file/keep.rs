//! Keeping the version a write displaces, as a backup: a link to its inode, or where the file
//! system has no hard links, a copy.

use super::AtomicFile;
use crate::ctx::Feature;
use crate::error::{Error, Op, Result};
use crate::paths::join;
use crate::sys::{errnos::*, Fd, Sys};
use std::ffi::{OsStr, OsString};
use std::io;

impl AtomicFile {
    /// Keeps the version about to be displaced: a second name for its inode, made durable by
    /// the same directory fsync as the write. Whatever subset of these directory operations a
    /// crash keeps, the backup name holds the old version, never the new. Where the file
    /// system has no hard links (exFAT), a copy instead: O(size), fsynced before the replace.
    pub(super) fn keep_backup(&self) -> Result<OsString> {
        let name = &self.target.name;
        if self.ctx.has(self.dev, Feature::Link) != Some(false) {
            let linked = self.new_backup_name(|sys, dir, b| sys.link(dir, name, dir, b));
            let no_links = |e: &Error| {
                // EPERM is the file system's answer only where protected_hardlinks cannot be
                // the reason (root, or the file's owner).
                let euid = self.sys().euid();
                let owner = self.target.existing.map(|s| s.uid);
                let errno = e.os_error().and_then(|e| e.raw_os_error());
                crate::ctx::no_links(errno) && (euid == 0 || owner == Some(euid))
            };
            match linked {
                Err(e) if no_links(&e) => self.ctx.learn(self.dev, Feature::Link, false),
                r => return r,
            }
        }
        tracing::debug!(target: "untorn", path = %self.target.path().display(), "no hard links here: the backup is a copy, O(size)");
        let t = &self.target;
        crate::versions::copy_backup(&self.ctx, &t.dir, &t.dir_path, name, &t.path(), false)
            .map(|b| b.name)
    }

    /// Gives the displaced version a backup name through `op` (a rename or a link), retrying
    /// with a later time if the name is taken.
    fn new_backup_name(
        &self,
        op: impl Fn(&dyn Sys, &Fd, &OsStr) -> io::Result<()>,
    ) -> Result<OsString> {
        let mut bump = 0;
        loop {
            let b = crate::versions::fresh_name(&self.target.name, bump);
            match op(&*self.ctx.sys, &self.target.dir, &b) {
                Ok(()) => return Ok(b),
                Err(e) if e.raw_os_error() == Some(EEXIST) && bump < 1000 => bump += 1,
                Err(e) => {
                    return Err(Error::io(Op::Backup, self.target.path(), e)
                        .with_other(join(&self.target.dir_path, &b)))
                }
            }
        }
    }
}
