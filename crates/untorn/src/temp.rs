//! What every temp file of untorn gets before it is published: the final owner and mode. Shared
//! by single writes ([`crate::AtomicFile`]) and transactions, so both keep the same metadata.

use crate::error::{Error, Op, Result};
use crate::sys::{errnos::*, Fd, FileType, Stat, Sys};
use std::io;
use std::path::Path;

/// Gives the temp `fd` (shown as `shown` in errors; `st`, its metadata as the caller took it)
/// the owner and group of the file it replaces (`old`, if it is a regular file and
/// `keep_owner`), as far as the process may, and the mode `final_mode`.
///
/// Changing the owner needs privilege: without it, the group is kept if the process is a member
/// of it, and the write goes on.
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

/// Size of the write buffer of a temp.
const BUF_CAP: usize = 64 * 1024;
/// Large writes go to the kernel in slices of this size, each checksummed while it is still in
/// the CPU's cache (checksumming a cold 16 MiB buffer whole cost ~14% of a durable write here;
/// in slices, ~5%).
const HASH_SLICE: usize = 512 * 1024;

/// What is written into a temp: a 64 KiB buffer (small writes from `write!` or a serializer cost
/// no system call each), the CRC-32 of every byte that reached the file (what the checksum
/// attribute and a transaction's journal record), and how many. One writer for single writes
/// ([`crate::AtomicFile`]) and transactions.
#[derive(Default)]
pub(crate) struct TempWriter {
    buf: Vec<u8>,
    hasher: crc32fast::Hasher,
    /// The checksum comes from elsewhere (a whole buffer hashed on a helper thread): the
    /// writer does not hash.
    pub(crate) late_sum: bool,
    len: u64,
}

impl TempWriter {
    /// How many bytes reached the file.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The CRC-32 of the bytes that reached the file.
    pub(crate) fn crc(&self) -> u32 {
        self.hasher.clone().finalize()
    }

    fn wrote(&mut self, data: &[u8]) {
        if !self.late_sum {
            self.hasher.update(data);
        }
        self.len += data.len() as u64;
    }

    /// Writes out the buffer to `fd` (shown as `shown` in errors); on error, what was not
    /// written stays buffered.
    pub(crate) fn flush(&mut self, sys: &dyn Sys, fd: &Fd, shown: &Path) -> Result<()> {
        let mut done = 0;
        let mut result = Ok(());
        while done < self.buf.len() {
            match sys.write(fd, &self.buf[done..]) {
                Ok(0) => {
                    result = Err(Error::io(Op::Write, shown, io::ErrorKind::WriteZero.into()));
                    break;
                }
                Ok(n) => {
                    if !self.late_sum {
                        self.hasher.update(&self.buf[done..done + n]);
                    }
                    self.len += n as u64;
                    done += n;
                }
                Err(e) => {
                    result = Err(Error::io(Op::Write, shown, e));
                    break;
                }
            }
        }
        self.buf.drain(..done);
        result
    }

    /// Writes all of `data` to `fd` past the buffer (which must be empty), retrying short
    /// writes: in slices that fit the CPU's cache, each checksummed right after the kernel has
    /// copied it (the CRC then reads it from the cache, not from memory again).
    fn write_through(
        &mut self,
        sys: &dyn Sys,
        fd: &Fd,
        mut data: &[u8],
        shown: &Path,
    ) -> Result<()> {
        while !data.is_empty() {
            let slice = if self.late_sum {
                data
            } else {
                &data[..data.len().min(HASH_SLICE)]
            };
            match sys.write(fd, slice) {
                Ok(0) => return Err(Error::io(Op::Write, shown, io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.wrote(&data[..n]);
                    data = &data[n..];
                }
                Err(e) => return Err(Error::io(Op::Write, shown, e)),
            }
        }
        Ok(())
    }

    /// A whole buffer: kept in the buffer if it fits, else written through (no copy).
    pub(crate) fn write_all(
        &mut self,
        sys: &dyn Sys,
        fd: &Fd,
        data: &[u8],
        shown: &Path,
    ) -> Result<()> {
        if self.buf.len() + data.len() <= BUF_CAP {
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        self.flush(sys, fd, shown)?;
        self.write_through(sys, fd, data, shown)
    }

    /// `io::Write::write`: buffered, or for large data one system call (possibly short).
    pub(crate) fn write(
        &mut self,
        sys: &dyn Sys,
        fd: &Fd,
        data: &[u8],
        shown: &Path,
    ) -> io::Result<usize> {
        if self.buf.len() + data.len() > BUF_CAP {
            self.flush(sys, fd, shown)?;
        }
        if data.len() >= BUF_CAP {
            let slice = &data[..data.len().min(HASH_SLICE)];
            return match sys.write(fd, slice) {
                Ok(n) => {
                    self.wrote(&data[..n]);
                    Ok(n)
                }
                Err(e) => Err(Error::io(Op::Write, shown, e).into()),
            };
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve(BUF_CAP);
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
}
