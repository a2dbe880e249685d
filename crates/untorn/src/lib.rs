//! untorn keeps files whole.
//!
//! Scripts, agents and services keep their state in plain files. An interrupted write empties
//! them, and a power cut can leave half a file. untorn makes every change to such a file
//! all-or-nothing and durable once it returns.
//!
//! - [`write()`] replaces a file with a buffer: the common case, one call.
//! - [`OpenOptions`] sets durability, permissions, the symlink policy, no-clobber and the temp
//!   strategy, and [`OpenOptions::open`] streams a replacement through an [`AtomicFile`].
//!
//! # What is guaranteed
//!
//! - **Atomic**: every reader, and the file after any crash, sees the whole old content or the
//!   whole new content; never a mix, never an empty or truncated file.
//! - **Durable** (with the default [`Durability::Full`]): once a call returns `Ok`, the new
//!   content survives a power cut.
//! - **Nothing lost on error**: if a call returns an error, the target is as it was and the temp
//!   file is gone. The error names the step and the path ([`Error`]).
//! - **Metadata kept**: a replacement keeps the replaced file's mode, owner and group (owner
//!   and group as far as the process may set them); symlinks are followed.
//! - **Never silently weaker**: a rename across file systems is an error, never a copy; a file
//!   system that cannot fsync a directory gives an error unless the caller chose a weaker
//!   [`Durability`]. Durability is what the mount can give: where nothing survives a power cut
//!   (tmpfs, overlayfs `volatile`) a write returns [`Durability::None`] (and warns through
//!   `tracing`); on a FUSE mount whose daemon untorn does not know to pass `fsync` through, it
//!   is refused unless allowed ([`allow_shared_fs`], [`OpenOptions::allow_shared_fs`]).
//!
//! # What is not
//!
//! - Plain writes are not serialised: the last commit wins, whole. For read-modify-write use
//!   [`update`] (or [`update_json`] ...), which holds the file's lock.
//! - Hard links to the target keep the old content (the target gets a new inode), and extended
//!   attributes, ACLs and SELinux labels of the replaced file are not copied yet.
//! - After a crash, a temp file (`.NAME.untorn-XXXXXXXX.tmp`) may be left beside the target;
//!   [`temp_file_target`] recognises the names.
//!
//! # How it works
//!
//! The exact sequence of system calls of [`write()`] (default options, a file that exists):
//!
//! ```text
//! openat(AT_FDCWD, "dir", O_RDONLY|O_DIRECTORY|O_CLOEXEC)       = dirfd
//! statx(dirfd, "a.json", AT_SYMLINK_NOFOLLOW)                   (mode, owner, symlink?)
//! statx(dirfd, "a.json.lock")                                   (an interrupted transaction?)
//! statx(dirfd, "")                                              (which mount)
//! openat(dirfd, ".", O_WRONLY|O_TMPFILE|O_CLOEXEC, 0600)        = fd   (else a named temp)
//! write(fd, ...)                                                ...
//! statx(fd, "")                                                 (size)
//! futimens(fd, [omit, now]); fsetxattr(fd, "user.untorn.sum", ...)   the checksum ([`Integrity`])
//! fchown(fd, ...) if needed; fchmod(fd, old mode)
//! fsync(fd)                                                     data durable before any name
//! linkat(fd, "", dirfd, ".a.json.untorn-1a2b3c4d.tmp", AT_EMPTY_PATH)
//! renameat2(dirfd, ".a.json.untorn-1a2b3c4d.tmp", dirfd, "a.json", RENAME_EXCHANGE)
//! fsync(dirfd)                                                  the rename durable
//! unlinkat(dirfd, ".a.json.untorn-1a2b3c4d.tmp", 0)             the old content
//! ```
//!
//! [`write()`] documents what a crash at each step leaves behind.
//!
//! Every system call goes through one internal module (`sys`), so that tests can record the
//! calls, fail any one of them, and simulate crashes (`sys::sim`).
//!
//! # More
//!
//! Locks and locked read-modify-write ([`lock()`], [`update`], [`update_json`]), backups
//! ([`backup()`], [`OpenOptions::backups`], [`restore`], [`read_valid`]), checksums that tell
//! a whole version from a damaged one ([`Integrity`], [`integrity()`]), logs ([`append`],
//! [`read_log`], [`repair`]), multi-file transactions ([`Transaction`]) and recovery
//! ([`recover()`]) build on the same protocol; each module documents what a crash leaves.

#![warn(missing_docs)]

mod atomic;
pub mod backup;
mod ctx;
mod edit;
mod error;
mod files;
mod format;
pub mod lock;
mod lockfile;
pub mod log;
mod output_path;
mod paths;
pub mod recover;
#[cfg(feature = "remote")]
pub mod remote;
mod sum;
pub mod sys;
mod temp;
pub mod trust;
pub mod txn;
mod update;
mod versions;

pub use atomic::{
    temp_file_target, write, AtomicFile, CommitError, Durability, OpenOptions, Symlinks, TempFile,
};
pub use backup::{
    backup, backup_name, backups, parse_backup_name, read_valid, restore, Backup, CheckFn,
    Restored, ValidRead, Validator, Which,
};
pub use ctx::allow_shared_fs;
/// Runs `f` with every untorn call on this thread going through another [`sys::Sys`] (tests
/// only: the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub use ctx::with_sys;
pub use edit::{EditOptions, Edited, ForwardSignals};
pub use error::{Error, ErrorKind, Op, Result};
pub use format::Format;
pub use lock::{lock, lock_path_for, lock_shared, Lock, LockOptions, Wait};
#[cfg(feature = "json")]
pub use log::append_jsonl;
#[cfg(feature = "yaml")]
pub use log::append_to_yaml_list;
pub use log::{
    append, read_log, repair, tail, AppendOptions, Appended, GroupCommit, Log, LogFormat,
    LogWriter, NotARecord, Torn, TornReason,
};
pub use output_path::{write_via_path, OutputPath};
#[allow(deprecated)]
pub use recover::clean;
pub use recover::integrity;
pub use recover::{
    check, find_orphans, recover, Action as RecoverAction, CleanOptions, Cleaned, Orphan,
    RecoverOptions,
};
pub use sum::Integrity;
pub use trust::trust_owner;
pub use txn::{recover_dir, Committed, Recovered, Staged, Transaction};
pub use update::{read, update, UpdateOptions};
#[cfg(feature = "json")]
pub use update::{read_json, update_json};
#[cfg(feature = "toml")]
pub use update::{read_toml, update_toml};
#[cfg(feature = "yaml")]
pub use update::{read_yaml, update_yaml};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_backup;
#[cfg(test)]
mod tests_crash;
#[cfg(test)]
mod tests_crash_ops;
#[cfg(test)]
mod tests_lock;
#[cfg(test)]
mod tests_log;
#[cfg(test)]
mod tests_mounts;
#[cfg(test)]
mod tests_order;
#[cfg(test)]
mod tests_writer;
