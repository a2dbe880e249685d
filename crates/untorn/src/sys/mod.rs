//! The one module that touches the file system.
//!
//! Every other module of untorn reaches the kernel through the [`Sys`] trait, never through
//! `std::fs` or `rustix` directly. That seam is what lets tests put another implementation in
//! place of the kernel: `testing::Probe` records the sequence of calls and fails the Nth call
//! with a chosen error, and `sim::Sim` keeps a durable and a volatile copy of an in-memory
//! tree to rebuild every state a crash can leave (both only in test builds, or with the
//! `test-support` feature).
//!
//! The seam costs one indirect call per system call (a few nanoseconds next to the microseconds
//! of the call itself, and the milliseconds of an `fsync`).
//!
//! This module is public only so that tests and benchmarks outside the crate can use it; it is
//! not part of untorn's stable API.
#![doc(hidden)]

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::Real;

#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
pub use unsupported::Real;

/// Recording and fault injection (tests only: the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

/// An open file or directory, as the [`Sys`] implementation that opened it knows it.
///
/// The real implementation hands out kernel descriptors; a simulator hands out its own numbers.
/// Closing happens on drop.
pub enum Fd {
    /// A kernel file descriptor.
    Os(OwnedFd),
    /// A handle of a simulated file system (tests only: the `test-support` feature).
    #[cfg(any(test, feature = "test-support"))]
    Sim(u64),
}

impl Fd {
    /// The kernel descriptor, or `EBADF` for a simulated handle given to the real system.
    pub fn os(&self) -> io::Result<BorrowedFd<'_>> {
        match self {
            Fd::Os(fd) => Ok(fd.as_fd()),
            #[cfg(any(test, feature = "test-support"))]
            Fd::Sim(_) => Err(io::Error::from_raw_os_error(
                rustix::io::Errno::BADF.raw_os_error(),
            )),
        }
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fd::Os(fd) => write!(f, "Fd({:?})", fd),
            #[cfg(any(test, feature = "test-support"))]
            Fd::Sim(n) => write!(f, "SimFd({n})"),
        }
    }
}

/// What a file's metadata says, as far as untorn needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    /// Type and permission bits, as in `st_mode`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// Inode flags that make changes fail (`chattr +i`, `+a`), as far as the file system
    /// reports them (statx `stx_attributes`): [`Stat::IMMUTABLE`], [`Stat::APPEND_ONLY`].
    pub attrs: u32,
}

/// The kind of file a [`Stat`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    Other,
}

impl Stat {
    /// `attrs`: the file is immutable (`chattr +i`): no rename, unlink, or change.
    pub const IMMUTABLE: u32 = 1;
    /// `attrs`: append-only (`chattr +a`): a directory so marked refuses unlinks and renames.
    pub const APPEND_ONLY: u32 = 2;

    pub fn file_type(&self) -> FileType {
        match self.mode & 0o170000 {
            0o100000 => FileType::Regular,
            0o040000 => FileType::Directory,
            0o120000 => FileType::Symlink,
            _ => FileType::Other,
        }
    }

    /// The permission bits (including setuid, setgid and sticky).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// How far an `fsync` reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// `fsync`: data and all metadata.
    All,
    /// `fdatasync`: data and the metadata needed to read it back (size).
    Data,
}

/// What a rename may do to an existing target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    /// `renameat`: replace the target if it exists.
    Replace,
    /// `renameat2(RENAME_NOREPLACE)`: fail with `EEXIST` if the target exists.
    NoReplace,
    /// `renameat2(RENAME_EXCHANGE)`: swap the two names; both must exist.
    Exchange,
}

/// A lock request for [`Sys::lock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Shared,
    Exclusive,
    Unlock,
}

/// What a file system is, as far as untorn's protocol cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKind {
    Ext4,
    Xfs,
    Btrfs,
    Tmpfs,
    Overlay,
    Nfs,
    Fuse,
    /// CIFS/SMB, Ceph, 9p, AFS, Lustre, GlusterFS: file systems shared between machines.
    Network,
    Other(i64),
}

impl FsKind {
    /// Whether other machines may use the same files (so a lock taken here may not exclude
    /// them): NFS, FUSE (which can be anything, sshfs included) and the other network kinds.
    pub fn is_shared_between_machines(self) -> bool {
        matches!(self, FsKind::Nfs | FsKind::Fuse | FsKind::Network)
    }
}

/// A mount as `/proc/self/mountinfo` describes it: what untorn judges a file system's
/// durability by (its type, a FUSE mount's subtype, its options), beyond the magic number of
/// [`Sys::fs_kind`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountInfo {
    /// The file system type, with a FUSE mount's subtype: `ext4`, `overlay`, `tmpfs`, `fuse`,
    /// `fuse.fuse-overlayfs`, `fuseblk`.
    pub fs_type: String,
    /// What was mounted (a device, or what a FUSE daemon calls itself).
    pub source: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The options of this mount (`ro`, `nosuid`, ...).
    pub mount_options: String,
    /// The options of the file system (overlayfs `volatile` shows here as `fsync=volatile`).
    pub super_options: String,
    /// A FUSE mount on a block device (`fuseblk`): the name its boot sector gives the file
    /// system on it (`EXFAT`, `NTFS`), if this process may read the device. A FUSE daemon can
    /// call itself anything; the device's own first sector tells what it serves.
    pub device_fs: Option<String>,
}

impl MountInfo {
    /// Parses one line of `/proc/self/mountinfo` (`proc(5)`): the mount's id, its device
    /// (major, minor) and what it is. `None` for a line that does not parse.
    pub fn parse_line(line: &str) -> Option<(u64, (u32, u32), MountInfo)> {
        let (left, right) = line.split_once(" - ")?;
        let mut l = left.split(' ');
        let id = l.next()?.parse().ok()?;
        let _parent = l.next()?;
        let (major, minor) = l.next()?.split_once(':')?;
        let dev = (major.parse().ok()?, minor.parse().ok()?);
        let _root = l.next()?;
        let mount_point = PathBuf::from(unescape(l.next()?));
        let mount_options = l.next()?.to_string();
        let mut r = right.split(' ');
        let fs_type = unescape(r.next()?);
        let source = unescape(r.next()?);
        let super_options = r.next().unwrap_or("").to_string();
        Some((
            id,
            dev,
            MountInfo {
                fs_type,
                source,
                mount_point,
                mount_options,
                super_options,
                device_fs: None,
            },
        ))
    }

    /// Whether `opt` is one of the mount's or the file system's options (`ro`, `volatile`,
    /// `fsync=volatile`).
    pub fn has_option(&self, opt: &str) -> bool {
        self.mount_options
            .split(',')
            .chain(self.super_options.split(','))
            .any(|o| o == opt)
    }
}

/// `\040`-style octal escapes of mountinfo (space, tab, newline, backslash) decoded.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How a regular file is opened by [`Sys::open_file`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenHow {
    pub read: bool,
    pub write: bool,
    pub append: bool,
    /// Create it if it is missing (with the mode given to `open_file`).
    pub create: bool,
    /// Fail with `EEXIST` if it exists (with `create`).
    pub exclusive: bool,
    /// Fail with `ELOOP` if the last component is a symbolic link.
    pub no_follow: bool,
    /// `O_NONBLOCK`: opening a FIFO does not wait for a writer (a FIFO planted under the name
    /// cannot block the caller; an `fstat` then refuses it). No effect on a regular file.
    pub nonblock: bool,
}

/// The system calls untorn makes. One implementation talks to the kernel ([`Real`]); tests put
/// others in its place.
///
/// Every method is one system call (or, where noted, a fixed short sequence), returns the OS
/// error unchanged, and retries nothing except `EINTR`.
pub trait Sys: Send + Sync + fmt::Debug {
    /// `openat(at, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)`; `at = None` means the current
    /// directory.
    fn open_dir(&self, at: Option<&Fd>, path: &Path) -> io::Result<Fd>;
    /// `openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)`: a new,
    /// named temporary file. Never follows a symlink, never opens an existing file.
    fn create_temp(&self, dir: &Fd, name: &OsStr, mode: u32) -> io::Result<Fd>;
    /// `openat(dir, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode)`: a file without a name.
    fn create_unnamed(&self, dir: &Fd, mode: u32) -> io::Result<Fd>;
    /// `openat(dir, name, flags, mode)` for a regular file, with `O_CLOEXEC`.
    fn open_file(&self, dir: &Fd, name: &OsStr, how: OpenHow, mode: u32) -> io::Result<Fd>;
    /// `write(fd, buf)`: may write less than `buf`.
    fn write(&self, fd: &Fd, buf: &[u8]) -> io::Result<usize>;
    /// `pwrite(fd, buf, offset)`.
    fn write_at(&self, fd: &Fd, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// `getcwd()`.
    fn current_dir(&self) -> io::Result<PathBuf>;
    /// `pread(fd, buf, offset)`.
    fn read_at(&self, fd: &Fd, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// `ftruncate(fd, len)`.
    fn set_len(&self, fd: &Fd, len: u64) -> io::Result<()>;
    /// `fsync(fd)` or `fdatasync(fd)` of a file.
    fn sync(&self, fd: &Fd, kind: SyncKind) -> io::Result<()>;
    /// `syncfs(fd)`: makes everything written to the file system that holds `fd` durable at once
    /// (one journal commit for many files).
    fn sync_fs(&self, fd: &Fd) -> io::Result<()>;
    /// `fsync(dir)`: makes the directory's entries (creates, renames, links, unlinks) durable.
    fn sync_dir(&self, dir: &Fd) -> io::Result<()>;
    /// `renameat2(from_dir, from, to_dir, to, flags)`.
    fn rename(
        &self,
        from_dir: &Fd,
        from: &OsStr,
        to_dir: &Fd,
        to: &OsStr,
        mode: RenameMode,
    ) -> io::Result<()>;
    /// `linkat(from_dir, from, to_dir, to, 0)`: a second name; fails with `EEXIST`.
    fn link(&self, from_dir: &Fd, from: &OsStr, to_dir: &Fd, to: &OsStr) -> io::Result<()>;
    /// Gives a name to a file opened with [`Sys::create_unnamed`]: `linkat(fd, "", dir, to,
    /// AT_EMPTY_PATH)`, or through `/proc/self/fd` where that needs a privilege the process
    /// lacks. Fails with `EEXIST` if `to` exists.
    fn link_unnamed(&self, fd: &Fd, to_dir: &Fd, to: &OsStr) -> io::Result<()>;
    /// `unlinkat(dir, name, 0)`.
    fn unlink(&self, dir: &Fd, name: &OsStr) -> io::Result<()>;
    /// `fstatat(dir, name)`, following a final symlink or not.
    fn stat_at(&self, dir: &Fd, name: &OsStr, follow: bool) -> io::Result<Stat>;
    /// `fstat(fd)`.
    fn stat(&self, fd: &Fd) -> io::Result<Stat>;
    /// `fstatat(dir, name)` with the modification time (`stat_at` may leave `mtime_ns` 0: asking
    /// for timestamps has a cost, see the real implementation).
    fn stat_at_times(&self, dir: &Fd, name: &OsStr, follow: bool) -> io::Result<Stat> {
        self.stat_at(dir, name, follow)
    }
    /// `readlinkat(dir, name)`.
    fn read_link(&self, dir: &Fd, name: &OsStr) -> io::Result<PathBuf>;
    /// `fchmod(fd, mode)`.
    fn set_mode(&self, fd: &Fd, mode: u32) -> io::Result<()>;
    /// `fchown(fd, uid, gid)`; `None` leaves that id as it is.
    fn set_owner(&self, fd: &Fd, uid: Option<u32>, gid: Option<u32>) -> io::Result<()>;
    /// The names in a directory (`getdents64`), without `.` and `..`.
    fn list_dir(&self, dir: &Fd) -> io::Result<Vec<std::ffi::OsString>>;
    /// `ioctl(dst, FICLONE, src)`: makes `dst` share `src`'s data blocks (copy-on-write), in
    /// O(1); fails with `EOPNOTSUPP`/`EXDEV`/`EINVAL` where the file system cannot.
    fn clone_file(&self, src: &Fd, dst: &Fd) -> io::Result<()>;
    /// `copy_file_range(src, &mut src_off, dst, &mut dst_off, len)` from offset `off` of both;
    /// may copy less than asked.
    fn copy_range(&self, src: &Fd, dst: &Fd, off: u64, len: usize) -> io::Result<usize>;
    /// `fstatfs(fd)`, reduced to the kinds untorn cares about.
    fn fs_kind(&self, fd: &Fd) -> io::Result<FsKind>;
    /// The mount that holds `fd`, from `/proc/self/mountinfo` (found by the mount id `statx`
    /// reports, else by device number); `None` where that cannot be known (no `/proc`, or an
    /// implementation without mounts: the simulator).
    fn mount_info(&self, _fd: &Fd) -> io::Result<Option<MountInfo>> {
        Ok(None)
    }
    /// The (device, inode) of every file some process on this machine has open, as far as this
    /// process may see (`/proc/*/fd`): how cleanup tells a live writer's temp file from an orphan.
    fn open_inodes(&self) -> io::Result<std::collections::HashSet<(u64, u64)>>;
    /// The process's umask, read without changing it (`/proc/self/status`).
    fn umask(&self) -> u32;
    /// `flock(fd, op)`, blocking or not (`LOCK_NB`). A blocking call interrupted by a signal
    /// returns `EINTR`.
    fn lock(&self, fd: &Fd, kind: LockKind, blocking: bool) -> io::Result<()>;
    /// `fcntl(fd, F_SETLK[W])` on the whole file: a POSIX record lock, blocking or not. It
    /// belongs to the process (any close of the file by the process drops it; its threads share
    /// it), and on the local file systems it is independent of `flock`. Used only as a hint
    /// (the group commit's "a sync is coming", see `log::group`), never to exclude.
    fn record_lock(&self, fd: &Fd, kind: LockKind, blocking: bool) -> io::Result<()>;
    /// `fcntl(fd, F_DUPFD_CLOEXEC)`: a second descriptor of the same open file (and so of the
    /// same flock lock).
    fn duplicate(&self, fd: &Fd) -> io::Result<Fd>;
    /// `fstat(fd)` with the modification time (`stat` may leave `mtime_ns` 0: asking for
    /// timestamps has a cost, see the real implementation).
    fn stat_times(&self, fd: &Fd) -> io::Result<Stat> {
        self.stat(fd)
    }
    /// `futimens(fd, [UTIME_OMIT, mtime])`: sets the modification time (nanoseconds since the
    /// epoch), leaving the access time. Setting it, rather than reading the one the kernel
    /// chose, keeps the file's timestamps coarse-grained (see `stat_times`).
    fn set_mtime(&self, fd: &Fd, mtime_ns: i128) -> io::Result<()>;
    /// `fsetxattr(fd, name, value, 0)`: sets an extended attribute (e.g. `user.untorn.sum`),
    /// which is part of the inode: durable with it (an `fsync` of the file). `EOPNOTSUPP` where
    /// the file system keeps no user attributes.
    fn set_xattr(&self, fd: &Fd, name: &str, value: &[u8]) -> io::Result<()>;
    /// `fgetxattr(fd, name)`: the attribute's value; `ENODATA` if the file has none of that
    /// name, `EOPNOTSUPP` where the file system keeps none.
    fn get_xattr(&self, fd: &Fd, name: &str) -> io::Result<Vec<u8>>;
    /// `geteuid()`: whose state untorn trusts (see the `trust` module).
    fn euid(&self) -> u32;
    /// The absolute path the kernel has for an open directory (`readlink /proc/self/fd/N`):
    /// symlinks resolved, as `realpath` prints it. Used only to order locks the way a script can.
    fn fd_path(&self, fd: &Fd) -> io::Result<PathBuf>;
}

/// The errno of an `io::Error`, if it has one.
pub fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
}

/// Errno values the rest of the crate matches on, named once here.
pub mod errnos {
    use rustix::io::Errno;
    pub const EEXIST: i32 = Errno::EXIST.raw_os_error();
    pub const ENOENT: i32 = Errno::NOENT.raw_os_error();
    pub const EINVAL: i32 = Errno::INVAL.raw_os_error();
    pub const EISDIR: i32 = Errno::ISDIR.raw_os_error();
    pub const ENOTDIR: i32 = Errno::NOTDIR.raw_os_error();
    pub const EOPNOTSUPP: i32 = Errno::OPNOTSUPP.raw_os_error();
    pub const ENOSYS: i32 = Errno::NOSYS.raw_os_error();
    pub const EPERM: i32 = Errno::PERM.raw_os_error();
    pub const EACCES: i32 = Errno::ACCESS.raw_os_error();
    pub const ELOOP: i32 = Errno::LOOP.raw_os_error();
    pub const EXDEV: i32 = Errno::XDEV.raw_os_error();
    pub const EROFS: i32 = Errno::ROFS.raw_os_error();
    pub const ENOSPC: i32 = Errno::NOSPC.raw_os_error();
    pub const EDQUOT: i32 = Errno::DQUOT.raw_os_error();
    pub const ENAMETOOLONG: i32 = Errno::NAMETOOLONG.raw_os_error();
    pub const EAGAIN: i32 = Errno::AGAIN.raw_os_error();
    pub const EINTR: i32 = Errno::INTR.raw_os_error();
    pub const EIO: i32 = Errno::IO.raw_os_error();
    pub const EBUSY: i32 = Errno::BUSY.raw_os_error();
    pub const ENOLCK: i32 = Errno::NOLCK.raw_os_error();
    pub const ETIMEDOUT: i32 = Errno::TIMEDOUT.raw_os_error();
    pub const EBADF: i32 = Errno::BADF.raw_os_error();
    pub const ENODATA: i32 = Errno::NODATA.raw_os_error();
    pub const ERANGE: i32 = Errno::RANGE.raw_os_error();
    pub const E2BIG: i32 = Errno::TOOBIG.raw_os_error();
}

/// An `io::Error` from a raw errno.
pub fn os_error(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// `kill(-pgid, sig)`: sends signal `sig` to every process of the process group `pgid` (an
/// edit's filter, started in a group of its own). Not a file-system call, so not a [`Sys`]
/// method: no test replaces it.
pub fn signal_process_group(pgid: u32, sig: i32) -> io::Result<()> {
    use rustix::process::{kill_process_group, Pid, Signal};
    let pid = i32::try_from(pgid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| os_error(errnos::EINVAL))?;
    let sig = Signal::from_named_raw(sig).ok_or_else(|| os_error(errnos::EINVAL))?;
    Ok(kill_process_group(pid, sig)?)
}
/// Whether a process of the process group `pgid` is still running (a zombie, which has ended
/// and only waits to be reaped, does not count): from `/proc/*/stat`, as far as this process
/// may see.
pub fn process_group_running(pgid: u32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|e| {
        let name = e.file_name();
        if !name.as_bytes().iter().all(u8::is_ascii_digit) {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let mut fields = stat.rsplit(')').next().unwrap_or("").split_whitespace();
        let state = fields.next().unwrap_or("");
        let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
        pgrp == Some(pgid) && !matches!(state, "Z" | "X" | "x")
    })
}

/// The crash simulator (tests only: the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
pub mod sim;
