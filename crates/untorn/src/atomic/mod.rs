//! Atomic, durable replacement of one file: [`write()`] and [`OpenOptions`] here, the streaming
//! [`AtomicFile`] in `file.rs`.

pub(crate) mod checks;
mod file;

pub use file::{AtomicFile, CommitError};

use crate::ctx::Ctx;
use crate::error::Result;
pub use crate::paths::temp_file_target;
pub use crate::paths::Symlinks;
use crate::sys::Sys;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// How much of a write must be on stable storage when the call returns.
///
/// Whatever the level, a reader never sees a half-written file: the replacement is atomic. The
/// level decides what a power cut (or kernel crash) can do to a write that has returned.
///
/// A level is what the file system can give, never just what was asked: [`write()`] returns
/// the level it achieved, [`Durability::None`] on a mount that keeps nothing across a power cut
/// (tmpfs, ramfs, overlayfs mounted `volatile`) or on a FUSE mount untorn cannot vouch for
/// (where asking for more is refused unless allowed, see [`OpenOptions::allow_shared_fs`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// No `fsync` at all. After a power cut the file may be the old content, the new content,
    /// or **empty** (on xfs, ext4 `noauto_da_alloc` and others). For tests and scratch data
    /// only.
    None,
    /// `fsync` of the file, not of its directory. After a power cut the file is the old or the
    /// new content, never empty or mixed, but a write that returned may be undone (the rename
    /// was not yet durable). For bulk work that can redo its last writes.
    File,
    /// `fsync` of the file and of its directory (the default). When the call returns, the new
    /// content survives a power cut.
    #[default]
    Full,
}

/// How the temporary file is made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TempFile {
    /// `O_TMPFILE` where the file system supports it (decided per mount), else a named temp.
    #[default]
    Auto,
    /// Always `O_TMPFILE` (a file with no name until it is complete); fails with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) where the file system lacks it.
    Unnamed,
    /// Always a named temp file, `.NAME.untorn-XXXXXXXX.tmp` beside the target.
    Named,
}

/// Options for an atomic write, in the style of [`std::fs::OpenOptions`].
///
/// ```
/// use untorn::{Durability, OpenOptions};
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("secret.json");
/// OpenOptions::new()
///     .mode(0o600)
///     .durability(Durability::Full)
///     .write(&path, b"{\"token\": \"...\"}\n")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct OpenOptions {
    pub(super) durability: Durability,
    pub(super) mode: Option<u32>,
    pub(super) keep_owner: bool,
    pub(super) symlinks: Symlinks,
    pub(super) no_clobber: bool,
    pub(super) temp: TempFile,
    pub(super) backups: usize,
    pub(super) wait: crate::lockfile::Wait,
    pub(super) allow_shared_fs: bool,
    pub(crate) ctx: Arc<Ctx>,
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenOptions")
            .field("durability", &self.durability)
            .field("mode", &self.mode.map(|m| format!("{m:o}")))
            .field("keep_owner", &self.keep_owner)
            .field("symlinks", &self.symlinks)
            .field("no_clobber", &self.no_clobber)
            .field("temp", &self.temp)
            .field("backups", &self.backups)
            .field("wait", &self.wait)
            .field("allow_shared_fs", &self.allow_shared_fs)
            .finish()
    }
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// The defaults: full durability, keep the replaced file's mode and owner, follow
    /// symlinks, replace an existing file, `O_TMPFILE` where available.
    pub fn new() -> OpenOptions {
        OpenOptions {
            durability: Durability::Full,
            mode: None,
            keep_owner: true,
            symlinks: Symlinks::Follow,
            no_clobber: false,
            temp: TempFile::Auto,
            backups: 0,
            wait: crate::lockfile::Wait::Timeout(crate::txn::settle::DEFAULT_WAIT),
            allow_shared_fs: false,
            ctx: Ctx::real(),
        }
    }

    /// How much must be on stable storage when a write returns (default [`Durability::Full`]).
    pub fn durability(&mut self, d: Durability) -> &mut Self {
        self.durability = d;
        self
    }

    /// The permission bits of the written file (e.g. `0o600`), whether it is new or replaces
    /// another. Without it, a replacement keeps the replaced file's mode, and a new file gets
    /// `0o666` less the process's umask, as `open(2)` would give it.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = Some(mode & 0o7777);
        self
    }

    /// Whether a replacement keeps the replaced file's owner and group (default `true`).
    /// Changing the owner needs privilege: without it, untorn keeps what it can (the group, if
    /// the process is a member) and goes on.
    pub fn keep_owner(&mut self, keep: bool) -> &mut Self {
        self.keep_owner = keep;
        self
    }

    /// What to do when the path is a symbolic link (default [`Symlinks::Follow`]).
    pub fn symlinks(&mut self, s: Symlinks) -> &mut Self {
        self.symlinks = s;
        self
    }

    /// Fail with [`ErrorKind::AlreadyExists`](crate::ErrorKind::AlreadyExists) instead of replacing an existing file. The check
    /// and the creation are one atomic step (`renameat2(RENAME_NOREPLACE)`, or `linkat`), so two
    /// racing creators never both succeed.
    pub fn no_clobber(&mut self, yes: bool) -> &mut Self {
        self.no_clobber = yes;
        self
    }

    /// Keep the last `n` versions that writes displace, as backups beside the file
    /// (`NAME.<UTC time>.bak`, see [`crate::backup`](mod@crate::backup)); `0` (the default) keeps none.
    ///
    /// A backup costs O(1) whatever the file's size: the inode about to be displaced gets the
    /// backup name as a second link just before the replace, and the write's own directory
    /// fsync makes it durable. When the write returns, the backup of the version it displaced
    /// is durable (with [`Durability::Full`]).
    ///
    /// Only a regular file's version is kept: a symlink replaced under [`Symlinks::Replace`]
    /// gets no backup (no content is displaced: the file it points to is not changed).
    pub fn backups(&mut self, n: usize) -> &mut Self {
        self.backups = n;
        self
    }

    /// How long a write may wait for the locks of a transaction that crashed with this file in
    /// it, to finish it first (default 10 s; a write takes no lock otherwise). Anyone who can
    /// open a lock file can hold its lock, so this wait is always bounded.
    pub fn timeout(&mut self, d: std::time::Duration) -> &mut Self {
        self.wait = crate::lockfile::Wait::Timeout(d);
        self
    }

    /// Write with durability even on a FUSE mount whose daemon untorn does not know to pass
    /// `fsync` through (bindfs, sshfs, ...), accepting what it gives: the write then reports
    /// [`Durability::None`], the level untorn can vouch for. Off by default: there, a write
    /// that asks for durability fails with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported)
    /// before anything is created. [`crate::allow_shared_fs`] and `UNTORN_ALLOW_SHARED_FS=1`
    /// allow it process-wide.
    pub fn allow_shared_fs(&mut self, yes: bool) -> &mut Self {
        self.allow_shared_fs = yes;
        self
    }

    /// How the temporary file is made (default [`TempFile::Auto`]).
    pub fn temp_file(&mut self, t: TempFile) -> &mut Self {
        self.temp = t;
        self
    }

    /// Routes every system call through `sys` (for tests: recording, fault injection, crash
    /// simulation). Not part of the stable API.
    #[doc(hidden)]
    pub fn sys(&mut self, sys: Arc<dyn Sys>) -> &mut Self {
        self.ctx = Ctx::new(sys);
        self
    }

    pub(crate) fn with_ctx(&mut self, ctx: Arc<Ctx>) -> &mut Self {
        self.ctx = ctx;
        self
    }

    /// Whether a write follows symlinks to the file they lead to (as a lock does).
    pub(crate) fn follows_symlinks(&self) -> bool {
        self.symlinks == Symlinks::Follow
    }

    /// Replaces the file at `path` with `contents`, atomically and (by default) durably.
    /// See [`write()`](crate::write) for the protocol and what a crash leaves behind.
    ///
    /// Returns the durability the write achieved: the level asked for, or
    /// [`Durability::None`] where the file system cannot keep it (see
    /// [`AtomicFile::durability`]).
    pub fn write(&self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<Durability> {
        let f = self.open(path)?;
        let achieved = f.durability();
        Self::write_into(f, contents.as_ref()).map(|()| achieved)
    }

    /// [`OpenOptions::write`] of a path already resolved to `target`, under its lock (see
    /// [`AtomicFile::open_resolved`]): for a locked update, which resolved the path to take
    /// the lock.
    pub(crate) fn write_resolved(
        &self,
        target: crate::paths::Target,
        data: &[u8],
    ) -> Result<Durability> {
        let f = AtomicFile::open_resolved(self, target, Instant::now())?;
        let achieved = f.durability();
        Self::write_into(f, data).map(|()| achieved)
    }

    fn write_into(mut f: AtomicFile, data: &[u8]) -> Result<()> {
        if data.len() < crate::sum::PARALLEL_MIN {
            f.write_all_bytes(data)?;
            return f.commit().map_err(|e| e.error);
        }
        // A large buffer: its checksum is computed on a helper thread while it is written and
        // fsynced (the CPU is otherwise waiting for the disk), and recorded after the fsync.
        std::thread::scope(|s| {
            let hashing = std::thread::Builder::new()
                .name("untorn-sum".into())
                .spawn_scoped(s, || crc32fast::hash(data));
            let Ok(h) = hashing else {
                f.write_all_bytes(data)?;
                return f.commit().map_err(|e| e.error);
            };
            f.w.late_sum = true;
            f.write_all_bytes(data)?;
            let mut h = Some(h);
            let mut sum = || h.take().and_then(|h| h.join().ok());
            f.commit_with(&mut sum).map_err(|e| e.error)
        })
    }

    /// Starts a streaming replacement of the file at `path`: write into the returned
    /// [`AtomicFile`], then [`commit`](AtomicFile::commit) it. Nothing is visible at `path`
    /// until then.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<AtomicFile> {
        let path = path.as_ref();
        let started = Instant::now();
        let r = AtomicFile::open(self, path, started);
        if let Err(e) = &r {
            tracing::debug!(
                target: "untorn",
                op = "write",
                path = %path.display(),
                bytes = 0u64,
                duration_us = started.elapsed().as_micros() as u64,
                outcome = "failed",
                error = %e,
            );
        }
        r
    }
}

/// Replaces the file at `path` with `contents`: atomically (a reader sees the whole old or the
/// whole new content, never a mix) and durably (when it returns, the new content survives a
/// power cut).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("state.json");
/// untorn::write(&path, "{\"count\": 1}\n")?;
/// assert_eq!(std::fs::read_to_string(&path)?, "{\"count\": 1}\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Protocol, and what a crash at each step leaves
///
/// 1. Open the target's directory; follow symlinks to the file they name.
///    *Crash: nothing has changed.*
/// 2. Create a temp file in that same directory (never `$TMPDIR`: a rename cannot cross file
///    systems), `O_TMPFILE` where supported, else `.NAME.untorn-XXXXXXXX.tmp` created with
///    `O_CREAT | O_EXCL | O_NOFOLLOW`, mode `0600` so that nobody else can read the new data.
///    *Crash: the target is untouched; a named temp may be left (recognisable by its name,
///    removed by `untorn clean`); an unnamed one vanishes.*
/// 3. Write all the data; set the final owner and mode (the replaced file's, by default).
/// 4. `fsync` the temp file: its data must be on disk before any name points at it, or a power
///    cut after the rename leaves an **empty** file (rust-atomicwrites#36, seen here on xfs
///    and ext4 `noauto_da_alloc`).
/// 5. For `O_TMPFILE`: `linkat` it to a temp name (on btrfs followed by another `fdatasync`,
///    since an fsync of a nameless file may be a no-op there: atomic-write-file#6).
/// 6. Publish it: `renameat2(RENAME_EXCHANGE)` over an existing target (the old file stays
///    reachable under the temp name until step 7, so a failed directory fsync can be undone),
///    plain `rename` for a new file, `RENAME_NOREPLACE` for no-clobber.
///    *Crash before step 7 completes: the old or the new content, whole.*
/// 7. `fsync` the directory: the rename is durable only after it (atomic-write-file#8); a
///    failure here swaps the old file back and returns the error.
///    *Crash after: the new content.*
/// 8. Unlink the temp name, which now holds the old content. *Crash before that is durable:
///    the new content, and possibly the old one under a temp name.*
///
/// On any error the target is left as it was and the temp file is removed.
///
/// # Where the file system cannot keep it
///
/// Returns the durability achieved: [`Durability::Full`] where the file system keeps what is
/// synced, [`Durability::None`] on a mount that keeps nothing across a power cut (tmpfs, ramfs,
/// overlayfs mounted `volatile`: the write is still atomic, and a `tracing` warning says so
/// once per mount) or on a FUSE mount whose daemon untorn does not know, where the write is
/// refused with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) unless allowed
/// ([`OpenOptions::allow_shared_fs`]).
pub fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result<Durability> {
    OpenOptions::new().write(path, contents)
}
