//! Platforms untorn has not been ported to: every call fails with `Unsupported`, so nothing
//! silently runs with weaker guarantees than the documentation promises.

use super::{Fd, FsKind, LockKind, OpenHow, RenameMode, Stat, SyncKind, Sys};
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

/// The real file system of a platform untorn does not support yet.
#[derive(Debug, Default, Clone, Copy)]
pub struct Real;

fn no<T>() -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "untorn supports only Linux so far",
    ))
}

impl Sys for Real {
    fn open_dir(&self, _: Option<&Fd>, _: &Path) -> io::Result<Fd> {
        no()
    }
    fn create_temp(&self, _: &Fd, _: &OsStr, _: u32) -> io::Result<Fd> {
        no()
    }
    fn create_unnamed(&self, _: &Fd, _: u32) -> io::Result<Fd> {
        no()
    }
    fn open_file(&self, _: &Fd, _: &OsStr, _: OpenHow, _: u32) -> io::Result<Fd> {
        no()
    }
    fn write(&self, _: &Fd, _: &[u8]) -> io::Result<usize> {
        no()
    }
    fn write_at(&self, _: &Fd, _: &[u8], _: u64) -> io::Result<usize> {
        no()
    }
    fn current_dir(&self) -> io::Result<PathBuf> {
        no()
    }
    fn read_at(&self, _: &Fd, _: &mut [u8], _: u64) -> io::Result<usize> {
        no()
    }
    fn set_len(&self, _: &Fd, _: u64) -> io::Result<()> {
        no()
    }
    fn sync(&self, _: &Fd, _: SyncKind) -> io::Result<()> {
        no()
    }
    fn sync_fs(&self, _: &Fd) -> io::Result<()> {
        no()
    }
    fn sync_dir(&self, _: &Fd) -> io::Result<()> {
        no()
    }
    fn rename(&self, _: &Fd, _: &OsStr, _: &Fd, _: &OsStr, _: RenameMode) -> io::Result<()> {
        no()
    }
    fn link(&self, _: &Fd, _: &OsStr, _: &Fd, _: &OsStr) -> io::Result<()> {
        no()
    }
    fn link_unnamed(&self, _: &Fd, _: &Fd, _: &OsStr) -> io::Result<()> {
        no()
    }
    fn unlink(&self, _: &Fd, _: &OsStr) -> io::Result<()> {
        no()
    }
    fn stat_at(&self, _: &Fd, _: &OsStr, _: bool) -> io::Result<Stat> {
        no()
    }
    fn stat(&self, _: &Fd) -> io::Result<Stat> {
        no()
    }
    fn read_link(&self, _: &Fd, _: &OsStr) -> io::Result<PathBuf> {
        no()
    }
    fn set_mode(&self, _: &Fd, _: u32) -> io::Result<()> {
        no()
    }
    fn set_owner(&self, _: &Fd, _: Option<u32>, _: Option<u32>) -> io::Result<()> {
        no()
    }
    fn list_dir(&self, _: &Fd) -> io::Result<Vec<std::ffi::OsString>> {
        no()
    }
    fn clone_file(&self, _: &Fd, _: &Fd) -> io::Result<()> {
        no()
    }
    fn copy_range(&self, _: &Fd, _: &Fd, _: u64, _: usize) -> io::Result<usize> {
        no()
    }
    fn fs_kind(&self, _: &Fd) -> io::Result<FsKind> {
        no()
    }
    fn open_inodes(&self) -> io::Result<std::collections::HashSet<(u64, u64)>> {
        no()
    }
    fn umask(&self) -> u32 {
        0o022
    }
    fn lock(&self, _: &Fd, _: LockKind, _: bool) -> io::Result<()> {
        no()
    }
    fn record_lock(&self, _: &Fd, _: LockKind, _: bool) -> io::Result<()> {
        no()
    }
    fn duplicate(&self, _: &Fd) -> io::Result<Fd> {
        no()
    }
    fn set_mtime(&self, _: &Fd, _: i128) -> io::Result<()> {
        no()
    }
    fn set_xattr(&self, _: &Fd, _: &str, _: &[u8]) -> io::Result<()> {
        no()
    }
    fn get_xattr(&self, _: &Fd, _: &str) -> io::Result<Vec<u8>> {
        no()
    }
    fn euid(&self) -> u32 {
        u32::MAX
    }
    fn fd_path(&self, _: &Fd) -> io::Result<PathBuf> {
        no()
    }
}
