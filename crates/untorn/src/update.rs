//! Locked read-modify-write: [`update`], its typed variants ([`update_json`], ...) and reads
//! under a shared lock ([`read`], [`read_json`], ...).
//!
//! An update takes the exclusive lock of the file (`FILE.lock`, see [`crate::lock`]), reads the
//! file, lets the caller compute the new content, writes it with the atomic, durable replace,
//! and releases the lock. Two processes updating the same file therefore never lose each
//! other's change, and a crash at any point leaves the old or the new content.

use crate::atomic::OpenOptions;
use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::files::{read_entry, read_file};
use crate::lock::{Lock, LockOptions};
use crate::paths::{locate, lock_name, Target};
use crate::sys::{errnos::*, Sys};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Options for [`update`] and [`read`]: how to lock, and how to write.
///
/// ```
/// use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("count.txt");
/// let mut opts = untorn::UpdateOptions::new();
/// opts.timeout(Duration::from_secs(2));
/// opts.update(&path, |old: Option<&[u8]>| {
///     let n: u64 = old.map_or(0, |b| String::from_utf8_lossy(b).trim().parse().unwrap_or(0));
///     Ok::<_, untorn::Error>(Some(format!("{}\n", n + 1).into_bytes()))
/// })?;
/// assert_eq!(std::fs::read_to_string(&path)?, "1\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct UpdateOptions {
    write: OpenOptions,
    lock: LockOptions,
}

impl UpdateOptions {
    /// Exclusive lock without a timeout; the default write options (full durability).
    pub fn new() -> UpdateOptions {
        UpdateOptions::default()
    }

    /// How the new content is written (durability, mode, symlinks, ...).
    pub fn write_options(&mut self, o: OpenOptions) -> &mut Self {
        self.write = o;
        self
    }

    /// How the lock is taken (timeout, shared file systems). `shared` is ignored: updates take
    /// the exclusive lock, reads the shared one.
    pub fn lock_options(&mut self, l: LockOptions) -> &mut Self {
        self.lock = l;
        self
    }

    /// Waits at most `d` for the lock, then fails with [`ErrorKind::TimedOut`].
    pub fn timeout(&mut self, d: Duration) -> &mut Self {
        self.lock.timeout(d);
        self
    }

    #[doc(hidden)]
    pub fn sys(&mut self, sys: Arc<dyn Sys>) -> &mut Self {
        let ctx = Ctx::new(sys);
        self.write.with_ctx(ctx.clone());
        self.lock.with_ctx(ctx);
        self
    }

    /// Under the exclusive lock of `path`: reads it (`None` if it does not exist), calls `f`,
    /// and writes what `f` returns. `Ok(None)` from `f` writes nothing; an error from `f`
    /// leaves the file as it was and is returned. Returns whether the file was written.
    ///
    /// # System calls
    ///
    /// Beyond the protocol's own (lock, read, temp, write, fsync, rename, directory fsync,
    /// unlock), an update of an existing file makes these, each for a reason:
    ///
    /// - `open` of the directory, once, and `statx` of the name (symlinks are followed one
    ///   `statx` per link): the lock file is the sidecar of the file the path leads to, and
    ///   the read, the temp and the rename all go through that one directory descriptor;
    /// - `fstat` of the directory before the lock: what the write would refuse (a directory
    ///   or file marked immutable or append-only, a FUSE mount untorn cannot vouch for) is
    ///   refused before the lock file is created, so that a refused update leaves nothing
    ///   (the write's own `fstat` of the directory, under the lock, is not skipped: the wait
    ///   for the lock may be long, and a directory made append-only meanwhile would strand
    ///   the temp, which could then never be removed);
    /// - `open` of the lock file with `O_CREAT | O_NOFOLLOW | O_NONBLOCK` and `fstat` of it
    ///   (a planted symlink or FIFO is refused; the mount's kind, asked once per mount with
    ///   `fstatfs`, refuses NFS and FUSE, where `flock` may not exclude other machines), and
    ///   `fstat` again under the lock: its size is a crashed transaction's flag, settled first;
    /// - `fstat` of the file read: its type (a FIFO put in its place is refused, never read)
    ///   and size (one `read` of the right size, then the `read` that finds its end); its mode
    ///   and owner are what the new file keeps;
    /// - the write's own, each justified in [`write()`](crate::write): `fstat` of the
    ///   directory (its mount: `O_TMPFILE` support is learned per mount), the temp's `fstat`
    ///   (its size, for the checksum), `futimens` and `fsetxattr` (the checksum every
    ///   version carries), `fchmod` (the temp is made `0600` until complete), `linkat` and
    ///   `renameat2(RENAME_EXCHANGE)` (the old file stays reachable until the directory fsync
    ///   succeeded), then `unlinkat` of the old file, and the `close`s.
    ///
    /// With a symlink policy other than [`Symlinks::Follow`](crate::Symlinks) the write resolves
    /// the path by its own rule, as [`write()`](crate::write) does.
    pub fn update<E, F>(&self, path: impl AsRef<Path>, f: F) -> Result<bool, E>
    where
        F: FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
        E: From<Error>,
    {
        let path = path.as_ref();
        // What the write would refuse (an immutable file, a mount untorn cannot vouch for) is
        // refused before the lock file is created.
        if !self.write.follows_symlinks() {
            crate::atomic::checks::before_lock(&self.write, path)?;
            let _lock = self.exclusive(path)?;
            return self.update_at(None, path, f);
        }
        // One resolution for the lock, the read and the write: the file the path leads to.
        let t = locate(&self.write.ctx, path)?;
        if t.existing
            .is_none_or(|st| st.file_type() == crate::sys::FileType::Regular)
        {
            crate::atomic::checks::before_lock_at(&self.write, &t)?;
        }
        let _lock =
            self.lock
                .clone()
                .shared(false)
                .lock_in(&t.dir, &t.dir_path, &lock_name(&t.name))?;
        self.update_at(Some(t), path, f)
    }

    /// [`update`](Self::update) under `lock`: the exclusive lock of `path` (taken with
    /// [`LockOptions::lock`] on the same path), which the caller already holds, having waited
    /// for it its own way (the Python bindings wait interruptibly, and keep the lock they
    /// waited for instead of trying again). Released when this returns. A lock of another file
    /// is an error of kind [`ErrorKind::InvalidInput`], and nothing is read or written.
    #[doc(hidden)]
    pub fn update_locked<E, F>(&self, lock: Lock, path: impl AsRef<Path>, f: F) -> Result<bool, E>
    where
        F: FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
        E: From<Error>,
    {
        let path = path.as_ref();
        let t = locate(&self.write.ctx, path)?;
        let want = crate::paths::join(&t.dir_path, &lock_name(&t.name));
        if lock.is_shared() || lock.path() != want {
            return Err(Error::new(
                Op::Lock,
                path,
                ErrorKind::InvalidInput,
                format!(
                    "an update needs the exclusive lock '{}', not {} lock '{}'",
                    want.display(),
                    if lock.is_shared() {
                        "the shared"
                    } else {
                        "the"
                    },
                    lock.path().display()
                ),
            )
            .into());
        }
        let _lock = lock;
        let t = self.write.follows_symlinks().then_some(t);
        self.update_at(t, path, f)
    }

    /// The update itself, under the lock: reads `path` through `t` (what `locate` made of it,
    /// when the write follows symlinks as the lock does) or by its own resolution, calls `f`,
    /// and writes what it returns.
    fn update_at<E, F>(&self, t: Option<Target>, path: &Path, f: F) -> Result<bool, E>
    where
        F: FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
        E: From<Error>,
    {
        let Some(mut t) = t else {
            let old = read_file(&self.write.ctx, path)?;
            return match f(old.as_deref())? {
                Some(new) if old.as_deref() != Some(&new[..]) => {
                    self.write.write(path, &new)?;
                    Ok(true)
                }
                _ => Ok(false),
            };
        };
        let old = read_entry(&*self.write.ctx.sys, &t.dir, &t.name, t.existing, path)?;
        t.existing = old.as_ref().map(|(_, st)| *st);
        let old = old.map(|(data, _)| data);
        match f(old.as_deref())? {
            Some(new) if old.as_deref() != Some(&new[..]) => {
                self.write.write_resolved(t, &new)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Reads the whole file at `path` under a shared lock (so it never sees a half-done
    /// locked update). A missing file is an error of kind [`ErrorKind::NotFound`], as for
    /// [`read()`](crate::read); [`read_if_exists`](Self::read_if_exists) returns `None` instead.
    ///
    /// Where the lock file cannot be created (a read-only directory or file system, no write
    /// permission), the file is read without a lock, and a warning says so.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Vec<u8>> {
        let path = path.as_ref();
        self.read_if_exists(path)?
            .ok_or_else(|| Error::io(Op::Read, path, crate::sys::os_error(ENOENT)))
    }

    /// [`read`](Self::read), with `None` for a missing file.
    pub fn read_if_exists(&self, path: impl AsRef<Path>) -> Result<Option<Vec<u8>>> {
        let path = path.as_ref();
        let _lock = match self.lock.clone().shared(true).lock(path) {
            Ok(l) => Some(l),
            Err(e)
                if matches!(e.kind(), ErrorKind::ReadOnly | ErrorKind::PermissionDenied)
                    && e.op() == Op::Open =>
            {
                tracing::warn!(target: "untorn", "reading '{}' without a lock: {e}", path.display());
                None
            }
            Err(e) => return Err(e),
        };
        read_file(&self.write.ctx, path)
    }

    fn exclusive(&self, path: &Path) -> Result<Lock> {
        self.lock.clone().shared(false).lock(path)
    }

    /// [`update`](UpdateOptions::update) of a structured file: parses it as `format` (or starts
    /// from `default` if it does not exist), lets `f` change the value, and writes it back if
    /// it changed. A file that fails to parse is an error naming the line and column; it is
    /// never replaced by the default.
    #[cfg(any(feature = "json", feature = "yaml", feature = "toml"))]
    pub fn update_as<T, R, E, F>(
        &self,
        format: crate::Format,
        path: impl AsRef<Path>,
        default: T,
        f: F,
    ) -> Result<R, E>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: FnOnce(&mut T) -> Result<R, E>,
        E: From<Error>,
    {
        let path = path.as_ref();
        let mut out = None;
        self.update(path, |old| -> Result<Option<Vec<u8>>, E> {
            let (mut value, before) = match old {
                Some(bytes) => {
                    let v: T = format.parse(bytes, path)?;
                    let before = format.render(&v, path)?;
                    (v, Some(before))
                }
                None => (default, None),
            };
            out = Some(f(&mut value)?);
            let after = format.render(&value, path)?;
            Ok(if before.as_ref() == Some(&after) {
                None
            } else {
                Some(after)
            })
        })?;
        Ok(out.expect("the closure ran"))
    }

    /// Reads and parses `path` as `format` under a shared lock.
    #[cfg(any(feature = "json", feature = "yaml", feature = "toml"))]
    pub fn read_as<T: serde::de::DeserializeOwned>(
        &self,
        format: crate::Format,
        path: impl AsRef<Path>,
    ) -> Result<T> {
        let path = path.as_ref();
        format.parse(&self.read(path)?, path)
    }
}

/// Under the exclusive lock of `path` (`path.lock`): reads the file (`None` if missing), calls
/// `f` with it, and atomically and durably writes what `f` returns. `Ok(None)` writes nothing;
/// an error from `f` leaves the file as it was. Returns whether the file was written.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("queue.txt");
/// untorn::update(&path, |old: Option<&[u8]>| {
///     let mut v = old.unwrap_or_default().to_vec();
///     v.extend_from_slice(b"job 1\n");
///     Ok::<_, untorn::Error>(Some(v))
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn update<E, F>(path: impl AsRef<Path>, f: F) -> Result<bool, E>
where
    F: FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
    E: From<Error>,
{
    UpdateOptions::new().update(path, f)
}

/// Reads the whole file at `path` under a shared lock. A missing file is an error of kind
/// [`ErrorKind::NotFound`].
pub fn read(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    UpdateOptions::new().read(path)
}

macro_rules! typed {
    ($feature:literal, $fmt:ident, $update:ident, $read:ident, $name:literal) => {
        #[doc = concat!("Locked read-modify-write of a ", $name, " file: parses it (or starts from `default` if it")]
        /// does not exist), lets `f` change the value, and writes it back atomically and
        /// durably if it changed. A file that does not parse is an error that names the line
        /// and column, and is left as it is: never replaced by the default.
        ///
        /// ```
        /// # let dir = tempfile::tempdir()?;
        #[doc = concat!("# let path = dir.path().join(\"state.", stringify!($fmt), "\");")]
        /// use std::collections::BTreeMap;
        #[doc = concat!("let n = untorn::", stringify!($update), "(&path, BTreeMap::new(), |m: &mut BTreeMap<String, u64>| {")]
        ///     let count = m.entry("count".to_string()).or_insert(0);
        ///     *count += 1;
        ///     *count
        /// })?;
        /// assert_eq!(n, 1);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        #[cfg(feature = $feature)]
        pub fn $update<T, R>(path: impl AsRef<Path>, default: T, f: impl FnOnce(&mut T) -> R) -> Result<R>
        where
            T: serde::Serialize + serde::de::DeserializeOwned,
        {
            UpdateOptions::new().update_as(crate::Format::$fmt, path, default, |v| Ok(f(v)))
        }

        #[doc = concat!("Reads and parses a ", $name, " file under a shared lock.")]
        #[cfg(feature = $feature)]
        pub fn $read<T: serde::de::DeserializeOwned>(path: impl AsRef<Path>) -> Result<T> {
            UpdateOptions::new().read_as(crate::Format::$fmt, path)
        }
    };
}

typed!("json", Json, update_json, read_json, "JSON");
typed!("yaml", Yaml, update_yaml, read_yaml, "YAML");
typed!("toml", Toml, update_toml, read_toml, "TOML");
