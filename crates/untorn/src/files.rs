//! Whole-file reads, shared by every feature that reads a file back: the bottom layer.

use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::paths::split;
use crate::sys::{errnos::*, Fd, FileType, OpenHow, Sys};
use std::path::Path;

/// Reads the whole file at `path` (following symlinks); `None` if it does not exist.
pub(crate) fn read_file(ctx: &Ctx, path: &Path) -> Result<Option<Vec<u8>>> {
    match open_regular(ctx, path)? {
        Some(fd) => read_all(&*ctx.sys, &fd, path).map(Some),
        None => Ok(None),
    }
}

/// Opens the regular file at `path` (following symlinks) for reading; `None` if it does not
/// exist. Directories, FIFOs and devices are refused before opening (a FIFO would block).
pub(crate) fn open_regular(ctx: &Ctx, path: &Path) -> Result<Option<crate::sys::Fd>> {
    let sys = &*ctx.sys;
    let (dir_path, name) = split(path)?;
    let dir = match sys.open_dir(None, &dir_path) {
        Ok(d) => d,
        Err(e) => return Err(Error::io(Op::OpenDir, &dir_path, e)),
    };
    // Refuse FIFOs and devices before opening: opening a FIFO would block.
    match sys.stat_at(&dir, &name, true) {
        Err(e) if e.raw_os_error() == Some(ENOENT) => return Ok(None),
        Err(e) => return Err(Error::io(Op::Stat, path, e)),
        Ok(st) if st.file_type() == FileType::Directory => {
            return Err(Error::new(
                Op::Read,
                path,
                ErrorKind::IsADirectory,
                "is a directory".into(),
            ))
        }
        Ok(st) if st.file_type() != FileType::Regular => {
            return Err(Error::new(
                Op::Read,
                path,
                ErrorKind::NotAFile,
                "not a regular file".into(),
            ))
        }
        Ok(_) => {}
    }
    let how = OpenHow {
        read: true,
        ..OpenHow::default()
    };
    let fd = match sys.open_file(&dir, &name, how, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(ENOENT) => return Ok(None),
        Err(e) => return Err(Error::io(Op::Open, path, e)),
    };
    Ok(Some(fd))
}

/// Reads the entry `name` of the open directory `dir` (the file at `path`, for messages),
/// which `seen` said was a regular file or nothing: `None` if it does not exist; the content
/// and the metadata of what was read. Anything but a regular file is refused before it is
/// opened (when `seen` says so) or after (`O_NONBLOCK`: a FIFO put there since cannot block
/// the open).
pub(crate) fn read_entry(
    sys: &dyn Sys,
    dir: &Fd,
    name: &std::ffi::OsStr,
    seen: Option<crate::sys::Stat>,
    path: &Path,
) -> Result<Option<(Vec<u8>, crate::sys::Stat)>> {
    let refuse = |t: FileType| {
        let (kind, what) = match t {
            FileType::Directory => (ErrorKind::IsADirectory, "is a directory"),
            _ => (ErrorKind::NotAFile, "not a regular file"),
        };
        Err(Error::new(Op::Read, path, kind, what.into()))
    };
    if let Some(st) = seen.filter(|st| st.file_type() != FileType::Regular) {
        return refuse(st.file_type());
    }
    let how = OpenHow {
        read: true,
        nonblock: true,
        ..OpenHow::default()
    };
    let fd = match sys.open_file(dir, name, how, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(ENOENT) => return Ok(None),
        Err(e) => return Err(Error::io(Op::Open, path, e)),
    };
    let st = sys.stat(&fd).map_err(|e| Error::io(Op::Stat, path, e))?;
    if st.file_type() != FileType::Regular {
        return refuse(st.file_type());
    }
    read_sized(sys, &fd, st.size, path).map(|data| Some((data, st)))
}

/// Reads all of the open file `fd` (of `path`, for messages). The buffer is sized from `fstat`;
/// EINTR and EAGAIN are transient and retried, a bounded number of times.
pub(crate) fn read_all(sys: &dyn Sys, fd: &Fd, path: &Path) -> Result<Vec<u8>> {
    let size = sys.stat(fd).map_err(|e| Error::io(Op::Stat, path, e))?.size;
    read_sized(sys, fd, size, path)
}

/// [`read_all`] of a file `fstat` said holds `size` bytes (it is read to its end, whatever it
/// holds by then).
fn read_sized(sys: &dyn Sys, fd: &Fd, size: u64, path: &Path) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; (size as usize).saturating_add(1).max(4096)];
    let mut len = 0;
    let mut transient = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match sys.read_at(fd, &mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if matches!(e.raw_os_error(), Some(EINTR | EAGAIN)) && transient < 100 => {
                transient += 1
            }
            Err(e) => return Err(Error::io(Op::Read, path, e)),
        }
    }
    buf.truncate(len);
    Ok(buf)
}
