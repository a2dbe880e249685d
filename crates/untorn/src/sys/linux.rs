//! The kernel, on Linux, through `rustix` (safe wrappers over the raw system calls: no libc
//! buffering, no `unsafe` here).

use super::{Fd, FsKind, LockKind, MountInfo, OpenHow, RenameMode, Stat, SyncKind, Sys};
use rustix::fs::{self as rfs, AtFlags, FlockOperation, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct Real;

/// Retries a call interrupted by a signal (`EINTR`); anything else is returned as it is.
fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// The whole capacity of `buf` as an initialised buffer for the kernel to fill.
fn spare(buf: &mut Vec<u8>) -> &mut [u8] {
    buf.resize(buf.capacity(), 0);
    &mut buf[..]
}

fn mode(m: u32) -> Mode {
    Mode::from_raw_mode(m)
}

/// What untorn asks `statx` for: no timestamps. Since Linux 6.13, reading a file's timestamps
/// makes its next change take a fine-grained timestamp, and that costs an extra metadata update
/// inside the following fsync (measured: ~30 µs of a 1 ms durable write on a journaled loop
/// mount, which put untorn 4-12% above the bare protocol).
const LITE: rfs::StatxFlags = rfs::StatxFlags::TYPE
    .union(rfs::StatxFlags::MODE)
    .union(rfs::StatxFlags::NLINK)
    .union(rfs::StatxFlags::UID)
    .union(rfs::StatxFlags::GID)
    .union(rfs::StatxFlags::INO)
    .union(rfs::StatxFlags::SIZE);

fn statx_of(x: &rfs::Statx) -> Stat {
    Stat {
        dev: rfs::makedev(x.stx_dev_major, x.stx_dev_minor),
        ino: x.stx_ino,
        mode: x.stx_mode as u32,
        uid: x.stx_uid,
        gid: x.stx_gid,
        nlink: x.stx_nlink as u64,
        size: x.stx_size,
        mtime_ns: 0,
        attrs: attrs_of(x),
    }
}

/// The inode flags untorn checks before it changes anything (statx reports them for free).
fn attrs_of(x: &rfs::Statx) -> u32 {
    let known = x.stx_attributes & x.stx_attributes_mask;
    let mut a = 0;
    if known.contains(rfs::StatxAttributes::IMMUTABLE) {
        a |= Stat::IMMUTABLE;
    }
    if known.contains(rfs::StatxAttributes::APPEND) {
        a |= Stat::APPEND_ONLY;
    }
    a
}

// The field types of `struct stat` differ between architectures.
#[allow(clippy::unnecessary_cast)]
fn stat_of(s: &rfs::Stat) -> Stat {
    Stat {
        dev: s.st_dev as u64,
        ino: s.st_ino as u64,
        mode: s.st_mode as u32,
        uid: s.st_uid as u32,
        gid: s.st_gid as u32,
        nlink: s.st_nlink as u64,
        size: s.st_size as u64,
        mtime_ns: s.st_mtime as i128 * 1_000_000_000 + s.st_mtime_nsec as i128,
        attrs: 0,
    }
}

impl Sys for Real {
    fn open_dir(&self, at: Option<&Fd>, path: &Path) -> io::Result<Fd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = match at {
            Some(d) => {
                let d = d.os()?;
                retry(|| rfs::openat(d, path, flags, Mode::empty()))?
            }
            None => retry(|| rfs::openat(CWD, path, flags, Mode::empty()))?,
        };
        Ok(Fd::Os(fd))
    }

    fn create_temp(&self, dir: &Fd, name: &OsStr, m: u32) -> io::Result<Fd> {
        let d = dir.os()?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(Fd::Os(retry(|| rfs::openat(d, name, flags, mode(m)))?))
    }

    fn create_unnamed(&self, dir: &Fd, m: u32) -> io::Result<Fd> {
        let d = dir.os()?;
        let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
        Ok(Fd::Os(retry(|| rfs::openat(d, ".", flags, mode(m)))?))
    }

    fn open_file(&self, dir: &Fd, name: &OsStr, how: OpenHow, m: u32) -> io::Result<Fd> {
        let d = dir.os()?;
        let mut flags = match (how.read, how.write || how.append) {
            (true, true) => OFlags::RDWR,
            (false, true) => OFlags::WRONLY,
            _ => OFlags::RDONLY,
        } | OFlags::CLOEXEC;
        if how.append {
            flags |= OFlags::APPEND;
        }
        if how.create {
            flags |= OFlags::CREATE;
        }
        if how.exclusive {
            flags |= OFlags::EXCL;
        }
        if how.no_follow {
            flags |= OFlags::NOFOLLOW;
        }
        if how.nonblock {
            flags |= OFlags::NONBLOCK;
        }
        Ok(Fd::Os(retry(|| rfs::openat(d, name, flags, mode(m)))?))
    }

    fn write(&self, fd: &Fd, buf: &[u8]) -> io::Result<usize> {
        let fd = fd.os()?;
        retry(|| rustix::io::write(fd, buf))
    }

    fn write_at(&self, fd: &Fd, buf: &[u8], offset: u64) -> io::Result<usize> {
        let fd = fd.os()?;
        retry(|| rustix::io::pwrite(fd, buf, offset))
    }

    fn current_dir(&self) -> io::Result<PathBuf> {
        let cwd = rustix::process::getcwd(Vec::new())?;
        Ok(PathBuf::from(OsStr::from_bytes(cwd.as_bytes())))
    }

    fn read_at(&self, fd: &Fd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let fd = fd.os()?;
        retry(|| rustix::io::pread(fd, &mut *buf, offset))
    }

    fn set_len(&self, fd: &Fd, len: u64) -> io::Result<()> {
        let fd = fd.os()?;
        retry(|| rfs::ftruncate(fd, len))
    }

    fn sync(&self, fd: &Fd, kind: SyncKind) -> io::Result<()> {
        let fd = fd.os()?;
        match kind {
            SyncKind::All => retry(|| rfs::fsync(fd)),
            SyncKind::Data => retry(|| rfs::fdatasync(fd)),
        }
    }

    fn sync_fs(&self, fd: &Fd) -> io::Result<()> {
        let fd = fd.os()?;
        retry(|| rfs::syncfs(fd))
    }

    fn sync_dir(&self, dir: &Fd) -> io::Result<()> {
        let fd = dir.os()?;
        retry(|| rfs::fsync(fd))
    }

    fn rename(
        &self,
        from_dir: &Fd,
        from: &OsStr,
        to_dir: &Fd,
        to: &OsStr,
        mode: RenameMode,
    ) -> io::Result<()> {
        let (a, b) = (from_dir.os()?, to_dir.os()?);
        let flags = match mode {
            RenameMode::Replace => RenameFlags::empty(),
            RenameMode::NoReplace => RenameFlags::NOREPLACE,
            RenameMode::Exchange => RenameFlags::EXCHANGE,
        };
        retry(|| rfs::renameat_with(a, from, b, to, flags))
    }

    fn link(&self, from_dir: &Fd, from: &OsStr, to_dir: &Fd, to: &OsStr) -> io::Result<()> {
        let (a, b) = (from_dir.os()?, to_dir.os()?);
        retry(|| rfs::linkat(a, from, b, to, AtFlags::empty()))
    }

    fn link_unnamed(&self, fd: &Fd, to_dir: &Fd, to: &OsStr) -> io::Result<()> {
        let (f, d) = (fd.os()?, to_dir.os()?);
        // `AT_EMPTY_PATH` needs CAP_DAC_READ_SEARCH; without it (ENOENT), the documented
        // alternative is to link the descriptor's `/proc/self/fd` entry (open(2), O_TMPFILE).
        match retry(|| rfs::linkat(f, "", d, to, AtFlags::EMPTY_PATH)) {
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                use std::os::fd::AsRawFd;
                let proc = format!("/proc/self/fd/{}", f.as_raw_fd());
                retry(|| rfs::linkat(CWD, proc.as_str(), d, to, AtFlags::SYMLINK_FOLLOW))
            }
            r => r,
        }
    }

    fn unlink(&self, dir: &Fd, name: &OsStr) -> io::Result<()> {
        let d = dir.os()?;
        retry(|| rfs::unlinkat(d, name, AtFlags::empty()))
    }

    fn stat_at(&self, dir: &Fd, name: &OsStr, follow: bool) -> io::Result<Stat> {
        let d = dir.os()?;
        let flags = if follow {
            AtFlags::empty()
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        match retry(|| rfs::statx(d, name, flags, LITE)) {
            Ok(x) => Ok(statx_of(&x)),
            Err(e) if e.raw_os_error() == Some(Errno::NOSYS.raw_os_error()) => {
                Ok(stat_of(&retry(|| rfs::statat(d, name, flags))?))
            }
            Err(e) => Err(e),
        }
    }

    fn stat_at_times(&self, dir: &Fd, name: &OsStr, follow: bool) -> io::Result<Stat> {
        let d = dir.os()?;
        let flags = if follow {
            AtFlags::empty()
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        Ok(stat_of(&retry(|| rfs::statat(d, name, flags))?))
    }

    fn stat_times(&self, fd: &Fd) -> io::Result<Stat> {
        let f = fd.os()?;
        match retry(|| rfs::statx(f, "", AtFlags::EMPTY_PATH, LITE | rfs::StatxFlags::MTIME)) {
            Ok(x) => {
                let mut st = statx_of(&x);
                st.mtime_ns =
                    x.stx_mtime.tv_sec as i128 * 1_000_000_000 + x.stx_mtime.tv_nsec as i128;
                Ok(st)
            }
            Err(e) if e.raw_os_error() == Some(Errno::NOSYS.raw_os_error()) => {
                Ok(stat_of(&retry(|| rfs::fstat(f))?))
            }
            Err(e) => Err(e),
        }
    }

    fn set_mtime(&self, fd: &Fd, mtime_ns: i128) -> io::Result<()> {
        let f = fd.os()?;
        let times = rfs::Timestamps {
            last_access: rfs::Timespec {
                tv_sec: 0,
                tv_nsec: rfs::UTIME_OMIT,
            },
            last_modification: rfs::Timespec {
                tv_sec: mtime_ns.div_euclid(1_000_000_000) as _,
                tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _,
            },
        };
        retry(|| rfs::futimens(f, &times))
    }

    fn set_xattr(&self, fd: &Fd, name: &str, value: &[u8]) -> io::Result<()> {
        let f = fd.os()?;
        retry(|| rfs::fsetxattr(f, name, value, rfs::XattrFlags::empty()))
    }

    fn get_xattr(&self, fd: &Fd, name: &str) -> io::Result<Vec<u8>> {
        let f = fd.os()?;
        // untorn's attributes are small: one call with room for them, else ask for the size.
        let mut buf = Vec::with_capacity(256);
        match retry(|| rfs::fgetxattr(f, name, spare(&mut buf))) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() != Some(Errno::RANGE.raw_os_error()) => return Err(e),
            Err(_) => {}
        }
        let len = retry(|| rfs::fgetxattr_query(f, name))?;
        let mut buf = Vec::with_capacity(len);
        let n = retry(|| rfs::fgetxattr(f, name, spare(&mut buf)))?;
        buf.truncate(n);
        Ok(buf)
    }

    fn stat(&self, fd: &Fd) -> io::Result<Stat> {
        let f = fd.os()?;
        match retry(|| rfs::statx(f, "", AtFlags::EMPTY_PATH, LITE)) {
            Ok(x) => Ok(statx_of(&x)),
            Err(e) if e.raw_os_error() == Some(Errno::NOSYS.raw_os_error()) => {
                Ok(stat_of(&retry(|| rfs::fstat(f))?))
            }
            Err(e) => Err(e),
        }
    }

    fn read_link(&self, dir: &Fd, name: &OsStr) -> io::Result<PathBuf> {
        let d = dir.os()?;
        let target = retry(|| rfs::readlinkat(d, name, Vec::new()))?;
        Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
    }

    fn set_mode(&self, fd: &Fd, m: u32) -> io::Result<()> {
        let f = fd.os()?;
        retry(|| rfs::fchmod(f, mode(m)))
    }

    fn set_owner(&self, fd: &Fd, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        let f = fd.os()?;
        let uid = uid.map(rfs::Uid::from_raw);
        let gid = gid.map(rfs::Gid::from_raw);
        retry(|| rfs::fchown(f, uid, gid))
    }

    fn list_dir(&self, dir: &Fd) -> io::Result<Vec<std::ffi::OsString>> {
        let d = dir.os()?;
        let mut out = Vec::new();
        for entry in rfs::Dir::read_from(d)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                out.push(OsStr::from_bytes(name).to_owned());
            }
        }
        Ok(out)
    }

    fn clone_file(&self, src: &Fd, dst: &Fd) -> io::Result<()> {
        let (s, d) = (src.os()?, dst.os()?);
        retry(|| rfs::ioctl_ficlone(d, s))
    }

    fn copy_range(&self, src: &Fd, dst: &Fd, off: u64, len: usize) -> io::Result<usize> {
        let (s, d) = (src.os()?, dst.os()?);
        retry(|| {
            let (mut a, mut b) = (off, off);
            rfs::copy_file_range(s, Some(&mut a), d, Some(&mut b), len)
        })
    }

    fn fs_kind(&self, fd: &Fd) -> io::Result<FsKind> {
        let f = fd.os()?;
        let st = retry(|| rfs::fstatfs(f))?;
        // Magic numbers from linux/magic.h.
        Ok(match st.f_type as i64 {
            0xEF53 => FsKind::Ext4,
            0x5846_5342 => FsKind::Xfs,
            0x9123_683E => FsKind::Btrfs,
            0x0102_1994 => FsKind::Tmpfs,
            0x794C_7630 => FsKind::Overlay,
            0x6969 => FsKind::Nfs,
            0x6573_5546 => FsKind::Fuse,
            // CIFS, SMB2, Ceph, 9p, AFS (kAFS), Lustre, Coda.
            0xFF53_4D42 | 0xFE53_4D42 | 0x00C3_6400 | 0x0102_1997 | 0x6B41_4653 | 0x0BD0_0BD0
            | 0x7375_7245 => FsKind::Network,
            other => FsKind::Other(other),
        })
    }

    fn mount_info(&self, fd: &Fd) -> io::Result<Option<MountInfo>> {
        let f = fd.os()?;
        let x = match retry(|| rfs::statx(f, "", AtFlags::EMPTY_PATH, rfs::StatxFlags::MNT_ID)) {
            Ok(x) => x,
            Err(e) if e.raw_os_error() == Some(Errno::NOSYS.raw_os_error()) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return Ok(None);
        };
        let dev = (x.stx_dev_major, x.stx_dev_minor);
        let by_id = x.stx_mask & rfs::StatxFlags::MNT_ID.bits() != 0;
        let mut found = None;
        for (id, d, m) in table.lines().filter_map(MountInfo::parse_line) {
            if by_id && id == x.stx_mnt_id {
                found = Some((d, m));
                break;
            }
            // Without a mount id (before Linux 5.8): the last mount of the device, the one on
            // top.
            if !by_id && d == dev {
                found = Some((d, m));
            }
        }
        let Some((d, mut m)) = found else {
            return Ok(None);
        };
        if m.fs_type == "fuseblk" || m.fs_type.starts_with("fuseblk.") {
            m.device_fs = device_fs(&m.source, d);
        }
        Ok(Some(m))
    }

    fn open_inodes(&self) -> io::Result<std::collections::HashSet<(u64, u64)>> {
        use std::os::unix::fs::MetadataExt;
        let mut out = std::collections::HashSet::new();
        for proc_entry in std::fs::read_dir("/proc")? {
            let Ok(proc_entry) = proc_entry else { continue };
            let name = proc_entry.file_name();
            if !name.as_bytes().iter().all(u8::is_ascii_digit) {
                continue;
            }
            // Processes come and go, and some are not ours to look at: skip what we cannot read.
            let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                if let Ok(m) = std::fs::metadata(fd.path()) {
                    out.insert((m.dev(), m.ino()));
                }
            }
        }
        Ok(out)
    }

    fn umask(&self) -> u32 {
        // umask(2) can only be read by setting it, which races with other threads creating
        // files; Linux 4.7+ reports it in /proc/self/status instead.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            .unwrap_or(0o022)
    }

    fn lock(&self, fd: &Fd, kind: LockKind, blocking: bool) -> io::Result<()> {
        let f = fd.os()?;
        let op = lock_operation(kind, blocking);
        // A blocking flock interrupted by a signal returns EINTR; callers that want a timeout
        // rely on that, so it is not retried here.
        rfs::flock(f, op).map_err(io::Error::from)
    }

    fn record_lock(&self, fd: &Fd, kind: LockKind, blocking: bool) -> io::Result<()> {
        let f = fd.os()?;
        let op = lock_operation(kind, blocking);
        // rustix's `fcntl_lock` is F_SETLK/F_SETLKW over the whole file (l_len 0).
        rfs::fcntl_lock(f, op).map_err(io::Error::from)
    }

    fn duplicate(&self, fd: &Fd) -> io::Result<Fd> {
        let f = fd.os()?;
        Ok(Fd::Os(f.try_clone_to_owned()?))
    }

    fn euid(&self) -> u32 {
        rustix::process::geteuid().as_raw()
    }

    fn fd_path(&self, fd: &Fd) -> io::Result<PathBuf> {
        use std::os::fd::AsRawFd;
        let f = fd.os()?;
        let p = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))?;
        Ok(p)
    }
}

/// The rustix operation of a lock request (`flock` and record locks take the same ones).
fn lock_operation(kind: LockKind, blocking: bool) -> FlockOperation {
    match (kind, blocking) {
        (LockKind::Shared, true) => FlockOperation::LockShared,
        (LockKind::Shared, false) => FlockOperation::NonBlockingLockShared,
        (LockKind::Exclusive, true) => FlockOperation::LockExclusive,
        (LockKind::Exclusive, false) => FlockOperation::NonBlockingLockExclusive,
        (LockKind::Unlock, _) => FlockOperation::Unlock,
    }
}

/// The file system name in the boot sector of the block device `source` (bytes 3..11: `EXFAT`,
/// `NTFS`, `MSDOS5.0`), if `source` is the block device `dev` and this process may read it. A
/// FUSE daemon names its source as it likes: only a block device whose number is the mount's
/// own is read, without waiting (`O_NONBLOCK`: a FIFO named there cannot block).
fn device_fs(source: &str, dev: (u32, u32)) -> Option<String> {
    if !source.starts_with('/') {
        return None;
    }
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = retry(|| rfs::open(source, flags, Mode::empty())).ok()?;
    let st = retry(|| rfs::fstat(&fd)).ok()?;
    let is_block = rfs::FileType::from_raw_mode(st.st_mode as _) == rfs::FileType::BlockDevice;
    if !is_block || st.st_rdev != rfs::makedev(dev.0, dev.1) {
        return None;
    }
    let mut sector = [0u8; 512];
    let n = retry(|| rustix::io::pread(&fd, &mut sector, 0)).ok()?;
    let name = sector.get(3..11.min(n))?;
    let name = std::str::from_utf8(name)
        .ok()?
        .trim_end_matches([' ', '\0']);
    (!name.is_empty() && name.bytes().all(|c| c.is_ascii_graphic())).then(|| name.to_string())
}
