//! Multi-file transactions: several files change together or not at all, even across a crash.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let (a, b, old) = (dir.path().join("a.json"), dir.path().join("b.yaml"), dir.path().join("old.txt"));
//! # std::fs::write(&old, "x")?;
//! let mut tx = untorn::Transaction::new();
//! tx.write(&a, "{\"v\": 2}\n")?;
//! tx.write(&b, "v: 2\n")?;
//! tx.remove(&old)?;
//! tx.commit()?; // all three, durably, or none
//! # assert!(!old.exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Protocol, and what a crash at each point leaves
//!
//! 1. **Stage**: each new content goes to a temp file beside its target (symlinks followed;
//!    `.NAME.untorn-XXXXXXXX.tmp`, mode 0600 until its final owner and mode are set); its size
//!    and CRC-32 are kept as it is written. Every directory involved is opened once; the
//!    transaction acts only through those descriptors from then on.
//!    *Crash: targets untouched; temps are orphans for `untorn clean`.*
//! 2. **Lock** every file involved (`FILE.lock` beside the file itself, the same lock files as
//!    single-file updates), all at once, in one global order that a script can follow too: by
//!    the lock files' full paths with symlinks resolved (`realpath`), compared byte by byte
//!    (`LC_ALL=C sort`), each file once. All files must be on one file system.
//! 3. **Check** under the locks everything that could make applying fail later: a target that is
//!    now a directory, an immutable or append-only file or directory (`chattr +i`, `+a`), a
//!    sticky directory that would refuse the rename, a removed or renamed file that changed.
//!    *Nothing has changed yet: an error here leaves everything as it was.*
//! 4. **Journal** ([`journal`], version 3): written once into a temp, then hard-linked as
//!    `.untorn-txn-TTTT.journal` into every directory of the transaction, under a *tag* `TTTT`
//!    (1 to 4095) free in all of them (a journal appears whole or not at all). It names the
//!    directories (device, inode, and the path they had) and, in each, plain entries: every
//!    temp → target with the temp's inode, size and CRC-32, every removal and rename with its
//!    inode, and the lock files.
//! 5. **Flag** each lock file: its size becomes the tag (NUL bytes: a hole, no data block).
//!    A plain write sees it with the one `stat` of the lock file it makes anyway.
//! 6. **One `syncfs`** makes the temps, the journal and the flags durable together. **Its
//!    return is the commit point.**
//!    *Crash before or during it: recovery rolls forward only if a copy of the journal is in
//!    every directory, every lock file carries the flag, and every temp is whole (size and CRC
//!    as recorded) or already in place; else it rolls back (removes the temps). Nothing was
//!    renamed yet, so either way the files are all old or all new.*
//! 7. **Apply** the renames and removals in order, then `fsync` each directory.
//!    *Crash: everything of step 6 is durable, so recovery rolls forward. Rolling forward is
//!    idempotent: an entry whose temp (or inode) is gone was applied already.* A step that
//!    fails anyway (the checks of step 3 make it rare) does not stop the others; the journal
//!    stays, recovery retries, and `untorn recover --abandon` gives up what cannot be applied.
//! 8. **Clean up**: remove the journal and clear the flags (not synced: if a crash brings any
//!    of them back, recovery finds every change applied, or a flag or copy missing, and rolls
//!    "back", which changes nothing as no temp is left).
//!
//! Durability assumption: `syncfs(2)` returns only when every earlier change of the file
//! system (data, names, sizes) is durable, and reports a write-back error (Linux ≥ 5.8).
//!
//! # Recovery, and whom it trusts
//!
//! Recovery runs by itself: writes look at the target's lock file (one `stat`), and locks see
//! the flag when they take the lock; either finishes (or undoes) the transaction before going
//! on, under all the transaction's locks, waiting for them a bounded time. `untorn recover
//! DIR` also finds journals directly.
//!
//! A journal is acted on only if its owner is trusted ([`crate::trust`]) and it sits in one of
//! the directories it names; the other directories are found again by their recorded path and
//! must be the same directory (device and inode), else recovery refuses and says where the
//! transaction's files were. Every name a journal gives is one entry of one of those
//! directories, opened without following symlinks, and checked by inode before it is renamed
//! or removed.

mod commit;
#[doc(hidden)]
pub mod journal;
mod manifest;
pub(crate) mod recover;
pub(crate) mod scan;
pub(crate) mod settle;
mod stage;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_journal;

#[doc(hidden)]
pub use journal::{DecodeError, Entry, Journal};
#[doc(hidden)]
pub use manifest::{parse_manifest, parse_ops, ManifestOp};
pub use recover::Recovered;
pub use scan::recover_dir;
pub use stage::{Committed, Staged, Transaction};

use crate::sys::{Fd, FileType, OpenHow, Stat, Sys};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;

const JOURNAL_PREFIX: &str = ".untorn-txn-";
const JOURNAL_SUFFIX: &str = ".journal";
/// Tags run from 1 to this: a flag is a lock file of that many NUL bytes (at most one block,
/// and a hole where the file system has them), and the journal is `.untorn-txn-TTTT.journal`.
pub(crate) const MAX_TAG: u16 = 4095;

/// The journal's file name for `tag`.
pub(crate) fn journal_name(tag: u16) -> OsString {
    OsString::from(format!("{JOURNAL_PREFIX}{tag:04x}{JOURNAL_SUFFIX}"))
}

/// The tag in a journal's file name, if it is one.
pub(crate) fn tag_of(name: &OsStr) -> Option<u16> {
    let b = name.as_bytes();
    let hex = b
        .strip_prefix(JOURNAL_PREFIX.as_bytes())?
        .strip_suffix(JOURNAL_SUFFIX.as_bytes())?;
    if hex.len() != 4 {
        return None;
    }
    let tag = u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
    (1..=MAX_TAG).contains(&tag).then_some(tag)
}

pub(crate) use crate::paths::lock_name;

/// If `name` is a transaction journal's file name.
pub fn is_journal_name(name: &OsStr) -> bool {
    tag_of(name).is_some()
}

/// The tag a lock file of this size may flag: 1 to [`MAX_TAG`] (its content must then be NUL
/// bytes, see [`flag_of`]).
pub(crate) fn tag_of_size(size: u64) -> Option<u16> {
    u16::try_from(size)
        .ok()
        .filter(|n| (1..=MAX_TAG).contains(n))
}

/// The tag a lock file's content flags, if it is a flag: 1 to [`MAX_TAG`] NUL bytes.
pub(crate) fn flag_of(content: &[u8]) -> Option<u16> {
    tag_of_size(content.len() as u64).filter(|_| content.iter().all(|&b| b == 0))
}

/// Renames the entry `from` of `fd` to `to` of `td`, replacing it. If both are already names of
/// one inode (hard links), rename(2) succeeds and does nothing, and `from` would stay: it is
/// removed then, so that a rename always ends with `from` gone and `to` naming the file.
pub(crate) fn rename_entry(
    sys: &dyn Sys,
    fd: &Fd,
    from: &OsStr,
    td: &Fd,
    to: &OsStr,
) -> io::Result<()> {
    sys.rename(fd, from, td, to, crate::sys::RenameMode::Replace)?;
    let (Ok(a), Ok(b)) = (sys.stat_at(fd, from, false), sys.stat_at(td, to, false)) else {
        return Ok(()); // `from` is gone: the usual case
    };
    if (a.dev, a.ino) != (b.dev, b.ino) {
        return Ok(());
    }
    match sys.unlink(fd, from) {
        Err(e) if e.raw_os_error() != Some(crate::sys::errnos::ENOENT) => Err(e),
        _ => Ok(()),
    }
}

/// What is found under a name untorn looks for.
pub(crate) enum Found {
    Missing,
    /// Something that is not a regular file (a directory, a FIFO, a symlink, ...).
    NotRegular,
    /// A regular file, its metadata and (if `read`) its content.
    File(Stat, Vec<u8>),
}

/// Looks at the entry `name` of `dir` without following a symlink and without waiting on a
/// FIFO: `O_NOFOLLOW | O_NONBLOCK`, then `fstat` of what was opened. Reads the content only if
/// `read(stat)` says so (e.g. only when its owner is trusted: a planted file is never read into
/// memory whole).
pub(crate) fn look(
    sys: &dyn Sys,
    dir: &Fd,
    name: &OsStr,
    read: impl FnOnce(&Stat) -> bool,
) -> io::Result<Found> {
    let how = OpenHow {
        read: true,
        no_follow: true,
        nonblock: true,
        ..OpenHow::default()
    };
    let fd = match sys.open_file(dir, name, how, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(crate::sys::errnos::ENOENT) => {
            return Ok(Found::Missing)
        }
        // A symlink (ELOOP) or a directory (EISDIR) in its place.
        Err(e) => {
            return match sys.stat_at(dir, name, false) {
                Ok(st) if st.file_type() != FileType::Regular => Ok(Found::NotRegular),
                Ok(_) => Err(e),
                Err(e2) if e2.raw_os_error() == Some(crate::sys::errnos::ENOENT) => {
                    Ok(Found::Missing)
                }
                Err(_) => Err(e),
            }
        }
    };
    let st = sys.stat(&fd)?;
    if st.file_type() != FileType::Regular {
        return Ok(Found::NotRegular);
    }
    if !read(&st) {
        return Ok(Found::File(st, Vec::new()));
    }
    let mut buf = vec![0u8; st.size.min(1 << 20) as usize];
    let mut off = 0usize;
    loop {
        if off == buf.len() {
            buf.resize(buf.len() * 2 + 4096, 0);
        }
        let n = sys.read_at(&fd, &mut buf[off..], off as u64)?;
        if n == 0 {
            break;
        }
        off += n;
    }
    buf.truncate(off);
    Ok(Found::File(st, buf))
}
