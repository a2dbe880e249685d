//! Checksums that travel with the inode: how a reader tells a whole version from a damaged one.
//!
//! Every file untorn writes (a write, an edit, a staged transaction member, an explicit backup)
//! gets an extended attribute, `user.untorn.sum`, set before the file is made durable:
//!
//! ```text
//! crc32=1a2b3c4d size=1234 mtime=1765000000.123456789
//! ```
//!
//! the CRC-32 (IEEE) and size of the content as written, and the file's modification time, set
//! by untorn just after the last byte was written (`futimens`: setting it costs nothing, while
//! reading the one the kernel chose would make the file's next change take a fine-grained
//! timestamp, ~60 µs a write here). The attribute is part of the inode, so it stays with the
//! version wherever the inode goes: under its backup name, through `cp -a`, `rsync -X` or `tar
//! --xattrs`.
//!
//! # Why
//!
//! A backup is the old inode itself under a second name. On ext4 `data=writeback`, the blocks
//! of a file whose last name was just removed (a backup pruned beyond retention) are free for
//! reuse at once, before the unlink is committed (`ext4_mb_clear_bb` keeps freed data blocks
//! back until the commit only in the other modes). A power cut then brings the name and the
//! inode back over blocks that a newer file has since been given and written: a name that
//! looks whole and holds another file's data from some block on. Nothing in the file says so;
//! the checksum does.
//!
//! # What a reader concludes ([`Integrity`])
//!
//! - **whole**: the content matches the checksum (CRC-32 and size);
//! - **damaged**: the file's size and modification time are those recorded, so nothing wrote
//!   to it since untorn did, but the content does not match: its blocks were changed under it.
//!   A damaged backup is never restored nor offered as a fallback;
//! - **unverified**: nothing to check against: no attribute (written by another program, or
//!   before untorn recorded checksums), a file system without user extended attributes
//!   (reported once per mount, then not asked again), or a file changed in place since
//!   untorn wrote it (its size or modification time differ: an append, an editor that saves in
//!   place). Such a file is judged by the caller's validator alone, as before.
//!
//! A file system that keeps modification times to the second only (ext4 with 128-byte
//! inodes) is matched to the second.
//!
//! # Cost
//!
//! Writing: one `futimens` and one `fsetxattr` per write, and the CRC of the content (CRC-32 with
//! the CPU's carry-less multiply, ~20 GB/s on data in the cache). The CRC is computed as the
//! bytes pass, large writes going to the kernel in slices of 512 KiB, each checksummed right
//! after the kernel copied it, while it is still in the CPU's cache (checksumming a cold 16 MiB
//! buffer before or after writing it cost ~14% of the durable write here, in slices ~5%).
//! Buffers of [`PARALLEL_MIN`] bytes or more given whole ([`crate::write`],
//! `OpenOptions::write`) are checksummed on a helper thread while they are written and
//! fsynced (~2.5% at 64 MiB), and the attribute is set right after that fsync, before the
//! rename: made durable by the directory fsync that makes the rename durable (one journal on
//! ext4 and xfs; where a crash could still lose it, the file is unverified, never damaged).
//! Reading: a checksum is verified only where the content is read anyway (`restore`,
//! `read_valid`, `recover --restore-invalid`, `untorn check`, `untorn backups`), for one
//! `fgetxattr` and one `statx` more.

use crate::ctx::{is_unsupported, Ctx, Feature};
use crate::sys::{errnos::*, Fd, Stat, Sys};
use std::fmt;
use std::path::Path;

/// The name of the attribute.
pub(crate) const XATTR: &str = "user.untorn.sum";

/// Buffers at least this large are checksummed on a helper thread, in parallel with their
/// write and fsync (see the module docs).
pub(crate) const PARALLEL_MIN: usize = 32 << 20;

/// What untorn recorded about a version when it wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sum {
    pub(crate) crc: u32,
    pub(crate) size: u64,
    /// Modification time just after the last byte was written, in nanoseconds.
    pub(crate) mtime_ns: i128,
}

const NS: i128 = 1_000_000_000;

impl Sum {
    pub(crate) fn encode(&self) -> Vec<u8> {
        format!(
            "crc32={:08x} size={} mtime={}.{:09}",
            self.crc,
            self.size,
            self.mtime_ns.div_euclid(NS),
            self.mtime_ns.rem_euclid(NS)
        )
        .into_bytes()
    }

    pub(crate) fn decode(v: &[u8]) -> Option<Sum> {
        let s = std::str::from_utf8(v).ok()?;
        let mut it = s.split(' ');
        let crc = it.next()?.strip_prefix("crc32=")?;
        let size = it.next()?.strip_prefix("size=")?;
        let (secs, ns) = it.next()?.strip_prefix("mtime=")?.split_once('.')?;
        if it.next().is_some() || crc.len() != 8 || ns.len() != 9 {
            return None;
        }
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
        let secs_digits = secs.strip_prefix('-').unwrap_or(secs);
        if !digits(size) || !digits(secs_digits) || !digits(ns) {
            return None;
        }
        Some(Sum {
            crc: u32::from_str_radix(crc, 16).ok()?,
            size: size.parse().ok()?,
            // Seconds rounded down, and the nanoseconds after them (as encoded).
            mtime_ns: secs.parse::<i128>().ok()? * NS + ns.parse::<i128>().ok()?,
        })
    }

    /// Whether the file, as `st` describes it now, is the one this was recorded for: nothing
    /// wrote to it since (same size, same modification time, to the second where the file
    /// system keeps no more).
    pub(crate) fn describes(&self, st: &Stat) -> bool {
        let same_time = self.mtime_ns == st.mtime_ns
            || (st.mtime_ns.rem_euclid(NS) == 0
                && st.mtime_ns.div_euclid(NS) == self.mtime_ns.div_euclid(NS));
        self.size == st.size && same_time
    }
}

/// Whether a file's content is what untorn wrote, judged by the checksum untorn records with
/// every version it writes (the extended attribute `user.untorn.sum`: CRC-32, size and
/// modification time).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Integrity {
    /// The content matches the checksum untorn recorded when it wrote it.
    Whole,
    /// Nothing to check against (no checksum, a file system without user extended attributes,
    /// or a file changed in place since untorn wrote it): why, in words.
    Unverified(String),
    /// The content does not match the checksum recorded when it was written, although nothing
    /// wrote to the file since: its blocks were changed under it (e.g. reused after a power
    /// cut). What differs, in words.
    Damaged(String),
}

impl Integrity {
    /// Whether it is [`Integrity::Damaged`].
    pub fn is_damaged(&self) -> bool {
        matches!(self, Integrity::Damaged(_))
    }

    /// Whether it is [`Integrity::Whole`].
    pub fn is_whole(&self) -> bool {
        matches!(self, Integrity::Whole)
    }

    /// One word: `whole`, `unverified` or `damaged`.
    pub fn label(&self) -> &'static str {
        match self {
            Integrity::Whole => "whole",
            Integrity::Unverified(_) => "unverified",
            Integrity::Damaged(_) => "damaged",
        }
    }
}

impl fmt::Display for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Integrity::Whole => f.write_str("whole (matches its checksum)"),
            Integrity::Unverified(why) => write!(f, "unverified ({why})"),
            Integrity::Damaged(why) => write!(f, "damaged ({why})"),
        }
    }
}

/// Records `crc` as the checksum of the content of the open file `fd`, which `st` describes
/// after its last byte was written (its size and device).
///
/// The modification time recorded is set on the file here (`futimens`, to the current time)
/// rather than read from it: reading a file's timestamps makes its next change take a
/// fine-grained timestamp, which cost ~60 µs a write inside the following fsync here (Linux
/// 6.13+ multigrain timestamps).
///
/// Best effort: where the file system keeps no user attributes (learned once per mount) or
/// setting one fails, the file is simply unverified later; a write never fails for its
/// checksum.
pub(crate) fn record(ctx: &Ctx, fd: &Fd, crc: u32, st: &Stat, path: &Path) {
    if ctx.has(st.dev, Feature::Xattr) == Some(false) {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    if let Err(e) = ctx.sys.set_mtime(fd, now) {
        tracing::debug!(target: "untorn", path = %path.display(), error = %e, "no checksum recorded");
        return;
    }
    let sum = Sum {
        crc,
        size: st.size,
        mtime_ns: now,
    };
    match ctx.sys.set_xattr(fd, XATTR, &sum.encode()) {
        Ok(()) => ctx.learn(st.dev, Feature::Xattr, true),
        Err(e) if is_unsupported(e.raw_os_error()) => ctx.learn(st.dev, Feature::Xattr, false),
        Err(e) => {
            tracing::debug!(target: "untorn", path = %path.display(), error = %e, "no checksum recorded");
        }
    }
}

/// The checksum recorded on the open file `fd`, or why there is none to check against.
pub(crate) fn recorded(sys: &dyn Sys, fd: &Fd) -> std::result::Result<Sum, String> {
    match sys.get_xattr(fd, XATTR) {
        Ok(v) => Sum::decode(&v).ok_or_else(|| {
            format!(
                "its checksum attribute is unreadable: {:?}",
                String::from_utf8_lossy(&v)
            )
        }),
        Err(e) if e.raw_os_error() == Some(ENODATA) => {
            Err("no checksum: not written by untorn".into())
        }
        Err(e) if is_unsupported(e.raw_os_error()) => {
            Err("no checksum: this file system keeps no extended attributes".into())
        }
        Err(e) => Err(format!("cannot read its checksum: {e}")),
    }
}

/// Judges `content`, read from the open file `fd` that `st` (with times) described just before
/// the read.
pub(crate) fn judge(sys: &dyn Sys, fd: &Fd, st: &Stat, content: &[u8]) -> Integrity {
    let sum = match recorded(sys, fd) {
        Ok(s) => s,
        Err(why) => return Integrity::Unverified(why),
    };
    if !sum.describes(st) {
        return Integrity::Unverified(format!(
            "changed in place since untorn wrote it ({} bytes then, {} now{})",
            sum.size,
            st.size,
            if sum.size == st.size {
                ", another modification time"
            } else {
                ""
            }
        ));
    }
    if content.len() as u64 != sum.size {
        // It grew or shrank while we read it.
        return Integrity::Unverified(format!(
            "changed while read ({} bytes recorded, {} read)",
            sum.size,
            content.len()
        ));
    }
    let crc = crc32fast::hash(content);
    if crc != sum.crc {
        return Integrity::Damaged(format!(
            "its content does not match the checksum recorded when untorn wrote it \
             (CRC-32 {:08x}, found {crc:08x}), although nothing wrote to it since",
            sum.crc
        ));
    }
    Integrity::Whole
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes() {
        for s in [
            Sum {
                crc: 0x1a2b3c4d,
                size: 1234,
                mtime_ns: 1_765_000_000_123_456_789,
            },
            Sum {
                crc: 0,
                size: 0,
                mtime_ns: 7,
            },
            Sum {
                crc: u32::MAX,
                size: u64::MAX,
                mtime_ns: -1_500_000_000,
            },
        ] {
            let e = s.encode();
            assert_eq!(Sum::decode(&e), Some(s), "{}", String::from_utf8_lossy(&e));
        }
        assert_eq!(
            Sum::decode(b"crc32=1a2b3c4d size=1234 mtime=1765000000.123456789")
                .unwrap()
                .size,
            1234
        );
        for bad in [
            &b""[..],
            b"crc32=1a2b3c4d size=1234",
            b"crc32=1a2b3c4 size=1234 mtime=1.000000000",
            b"crc32=1a2b3c4d size=12x4 mtime=1.000000000",
            b"crc32=1a2b3c4d size=1234 mtime=1.00000000",
            b"crc32=1a2b3c4d size=1234 mtime=1.000000000 more",
            b"crc32=1a2b3c4d size=+1 mtime=1.000000000",
        ] {
            assert_eq!(Sum::decode(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_time_kept_to_the_second_matches_to_the_second() {
        let s = Sum {
            crc: 1,
            size: 10,
            mtime_ns: 1_765_000_000_123_456_789,
        };
        let st = |size, mtime_ns| Stat {
            dev: 1,
            ino: 1,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            nlink: 1,
            size,
            mtime_ns,
            attrs: 0,
        };
        assert!(s.describes(&st(10, 1_765_000_000_123_456_789)));
        assert!(s.describes(&st(10, 1_765_000_000_000_000_000)));
        assert!(!s.describes(&st(10, 1_765_000_001_000_000_000)));
        assert!(!s.describes(&st(10, 1_765_000_000_123_456_790)));
        assert!(!s.describes(&st(11, 1_765_000_000_123_456_789)));
    }
}
