//! The journal format (version 3): what a committed transaction does, bound to its
//! directories.
//!
//! A journal never holds a path to act on. It lists the transaction's directories (their
//! device and inode, and the absolute path they had, only to find them again), and every
//! change names **entries** of those directories by index and single file name: no `/`, no
//! `..`, no `.`. A copy found in a directory that is not one of its own (same device and inode)
//! is refused, and recovery acts only through descriptors of directories whose identity it
//! checked. So a journal planted or hard-linked anywhere can name nothing outside the
//! transaction's own directories.
//!
//! # Format, all integers little-endian
//!
//! ```text
//! "UNTORNTX"  u16 version=3  u16 flags=0  [u8; 16] transaction id
//! u32 dirs  u32 entries  u32 locks
//! dirs    × { u64 dev  u64 ino  u32 len, absolute path (a hint to find it) }
//! entries × { u8 kind  u64 dev  u64 ino  then by kind:
//!             1 put:    u32 dir, name temp, name target, u64 size, u32 CRC-32 of the temp
//!             2 remove: u32 dir, name
//!             3 rename: u32 dir, name from, u32 dir, name to }
//! locks   × { u32 dir, name }
//! u32 CRC-32 (IEEE) of every byte before it
//! name = u32 len, bytes (1 to 255, no '/', no NUL, not "." or ".."); a put's temp is an
//!        untorn temp name (`.NAME.untorn-XXXXXXXX.tmp`)
//! ```
//!
//! The journal's tag (which the flags carry) is in its file name, not in its bytes: one
//! journal is written once and hard-linked into every directory of the transaction.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

const MAGIC: &[u8; 8] = b"UNTORNTX";
const VERSION: u16 = 3;
/// Bounds a decoder accepts: a corrupt length can never make it allocate much.
const MAX_PATH: usize = 64 * 1024;
const MAX_ENTRIES: usize = 1 << 20;
const NAME_MAX: usize = 255;

/// A directory of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dir {
    /// Its device: what a copy of the journal must be found on, and what a directory found
    /// again by its path must be on.
    pub dev: u64,
    /// Its inode (with `dev`, its identity).
    pub ino: u64,
    /// Its absolute path when the transaction committed: only a hint, to find it again.
    pub path: PathBuf,
}

/// One change of a committed transaction. `dir` fields index [`Journal::dirs`]; names are
/// single entries of that directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Rename the temp file (inode `ino` on device `dev`, `size` bytes whose CRC-32 is `crc`)
    /// over `target`, both in directory `dir`.
    Put {
        /// The directory of both names.
        dir: u32,
        /// The temp's name (an untorn temp name).
        temp: OsString,
        /// The target's name.
        target: OsString,
        /// The temp's device.
        dev: u64,
        /// The temp's inode.
        ino: u64,
        /// The temp's size.
        size: u64,
        /// The CRC-32 of the temp's content.
        crc: u32,
    },
    /// Remove `name` of `dir` if it is still inode `ino`.
    Remove {
        /// The directory.
        dir: u32,
        /// The name to remove.
        name: OsString,
        /// Its device.
        dev: u64,
        /// Its inode.
        ino: u64,
    },
    /// Rename `from` of `from_dir` to `to` of `to_dir` if `from` is still inode `ino`.
    Rename {
        /// The directory it is in.
        from_dir: u32,
        /// Its name there.
        from: OsString,
        /// The directory it goes to.
        to_dir: u32,
        /// Its name there.
        to: OsString,
        /// Its device.
        dev: u64,
        /// Its inode.
        ino: u64,
    },
}

/// An entry of a transaction's directory: a lock file the transaction flagged.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Name {
    /// The directory (an index of [`Journal::dirs`]).
    pub dir: u32,
    /// The entry's name.
    pub name: OsString,
}

/// A transaction journal. Exposed (hidden from the docs) for the fuzz targets only: not a
/// stable API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Journal {
    /// A random identifier: tells this transaction's copies from any other journal's.
    pub id: [u8; 16],
    /// The directories it changes, holds lock files in, and has a copy of the journal in.
    pub dirs: Vec<Dir>,
    /// The changes, in the order they are applied.
    pub entries: Vec<Entry>,
    /// The lock files flagged with this journal's tag.
    pub locks: Vec<Name>,
}

/// Why a journal could not be decoded: the commit point was not reached, or it is not ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DecodeError {}

type R<T> = std::result::Result<T, DecodeError>;

/// Whether `n` may name an entry of a directory: one component, nothing that walks elsewhere.
pub fn is_plain_name(n: &OsStr) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= NAME_MAX
        && b != b"."
        && b != b".."
        && !b.contains(&b'/')
        && !b.contains(&0)
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if self.b.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self, max: usize) -> R<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(DecodeError("length out of bounds"));
        }
        self.take(n)
    }
    fn name(&mut self) -> R<OsString> {
        let n = OsStr::from_bytes(self.bytes(NAME_MAX)?);
        if !is_plain_name(n) {
            return Err(DecodeError("a name that is not one plain directory entry"));
        }
        Ok(n.to_owned())
    }
    fn dir(&mut self, dirs: usize) -> R<u32> {
        let d = self.u32()?;
        if d as usize >= dirs {
            return Err(DecodeError("a directory index out of range"));
        }
        Ok(d)
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

impl Journal {
    /// The journal's bytes, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.id);
        for n in [self.dirs.len(), self.entries.len(), self.locks.len()] {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        for d in &self.dirs {
            out.extend_from_slice(&d.dev.to_le_bytes());
            out.extend_from_slice(&d.ino.to_le_bytes());
            put_bytes(&mut out, d.path.as_os_str().as_bytes());
        }
        for e in &self.entries {
            let (kind, dev, ino) = match e {
                Entry::Put { dev, ino, .. } => (1u8, dev, ino),
                Entry::Remove { dev, ino, .. } => (2, dev, ino),
                Entry::Rename { dev, ino, .. } => (3, dev, ino),
            };
            out.push(kind);
            out.extend_from_slice(&dev.to_le_bytes());
            out.extend_from_slice(&ino.to_le_bytes());
            match e {
                Entry::Put {
                    dir,
                    temp,
                    target,
                    size,
                    crc,
                    ..
                } => {
                    out.extend_from_slice(&dir.to_le_bytes());
                    put_bytes(&mut out, temp.as_bytes());
                    put_bytes(&mut out, target.as_bytes());
                    out.extend_from_slice(&size.to_le_bytes());
                    out.extend_from_slice(&crc.to_le_bytes());
                }
                Entry::Remove { dir, name, .. } => {
                    out.extend_from_slice(&dir.to_le_bytes());
                    put_bytes(&mut out, name.as_bytes());
                }
                Entry::Rename {
                    from_dir,
                    from,
                    to_dir,
                    to,
                    ..
                } => {
                    out.extend_from_slice(&from_dir.to_le_bytes());
                    put_bytes(&mut out, from.as_bytes());
                    out.extend_from_slice(&to_dir.to_le_bytes());
                    put_bytes(&mut out, to.as_bytes());
                }
            }
        }
        for l in &self.locks {
            out.extend_from_slice(&l.dir.to_le_bytes());
            put_bytes(&mut out, l.name.as_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a journal; any damage (truncation, a flipped bit, garbage), a name that is not
    /// one plain entry, a directory index out of range, or directories on several devices is an
    /// error, never a panic and never a partial journal.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Journal, DecodeError> {
        if bytes.len() < MAGIC.len() + 4 + 16 + 12 + 4 {
            return Err(DecodeError("too short"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(DecodeError("checksum mismatch"));
        }
        let mut r = Reader { b: body };
        if r.take(8)? != MAGIC {
            return Err(DecodeError("not a journal"));
        }
        if r.u16()? != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let _flags = r.u16()?;
        let id: [u8; 16] = r.take(16)?.try_into().expect("16 bytes");
        let (nd, ne, nl) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
        if nd == 0 {
            return Err(DecodeError("no directories"));
        }
        if nd > MAX_ENTRIES || ne > MAX_ENTRIES || nl > MAX_ENTRIES {
            return Err(DecodeError("too many entries"));
        }
        let mut dirs = Vec::with_capacity(nd.min(1024));
        for _ in 0..nd {
            let (dev, ino) = (r.u64()?, r.u64()?);
            let p = r.bytes(MAX_PATH)?;
            if !p.starts_with(b"/") || p.contains(&0) {
                return Err(DecodeError("a directory path that is not absolute"));
            }
            dirs.push(Dir {
                dev,
                ino,
                path: PathBuf::from(OsStr::from_bytes(p)),
            });
        }
        if dirs.iter().any(|d| d.dev != dirs[0].dev) {
            return Err(DecodeError("directories on several file systems"));
        }
        let mut entries = Vec::with_capacity(ne.min(1024));
        for _ in 0..ne {
            let kind = r.u8()?;
            let (dev, ino) = (r.u64()?, r.u64()?);
            entries.push(match kind {
                1 => {
                    let (dir, temp, target) = (r.dir(nd)?, r.name()?, r.name()?);
                    // Only a temp of untorn's is ever renamed into place (or removed on a roll
                    // back): whatever a journal says, recovery cannot take another file for one.
                    if crate::paths::temp_file_target(&temp).is_none() {
                        return Err(DecodeError("a put whose temp is not an untorn temp name"));
                    }
                    Entry::Put {
                        dir,
                        temp,
                        target,
                        dev,
                        ino,
                        size: r.u64()?,
                        crc: r.u32()?,
                    }
                }
                2 => Entry::Remove {
                    dir: r.dir(nd)?,
                    name: r.name()?,
                    dev,
                    ino,
                },
                3 => Entry::Rename {
                    from_dir: r.dir(nd)?,
                    from: r.name()?,
                    to_dir: r.dir(nd)?,
                    to: r.name()?,
                    dev,
                    ino,
                },
                _ => return Err(DecodeError("unknown entry kind")),
            });
        }
        let mut locks = Vec::with_capacity(nl.min(1024));
        for _ in 0..nl {
            locks.push(Name {
                dir: r.dir(nd)?,
                name: r.name()?,
            });
        }
        if !r.b.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Journal {
            id,
            dirs,
            entries,
            locks,
        })
    }

    /// The index of the directory `(dev, ino)` among the journal's, if it is one of them.
    pub fn dir_index(&self, dev: u64, ino: u64) -> Option<usize> {
        self.dirs.iter().position(|d| d.dev == dev && d.ino == ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Journal {
        Journal {
            id: [7; 16],
            dirs: vec![
                Dir {
                    dev: 5,
                    ino: 10,
                    path: "/data".into(),
                },
                Dir {
                    dev: 5,
                    ino: 11,
                    path: "/data/sub".into(),
                },
            ],
            entries: vec![
                Entry::Put {
                    dir: 0,
                    temp: ".a.json.untorn-0123abcd.tmp".into(),
                    target: "a.json".into(),
                    dev: 5,
                    ino: 99,
                    size: 12,
                    crc: 0xdead_beef,
                },
                Entry::Remove {
                    dir: 1,
                    name: "old.txt".into(),
                    dev: 5,
                    ino: 98,
                },
                Entry::Rename {
                    from_dir: 1,
                    from: "draft.md".into(),
                    to_dir: 0,
                    to: "final.md".into(),
                    dev: 5,
                    ino: 97,
                },
            ],
            locks: vec![
                Name {
                    dir: 0,
                    name: "a.json.lock".into(),
                },
                Name {
                    dir: 1,
                    name: "old.txt.lock".into(),
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_every_cut_fails() {
        let j = sample();
        let b = j.encode();
        assert_eq!(Journal::decode(&b).unwrap(), j);
        for n in 0..b.len() {
            assert!(Journal::decode(&b[..n]).is_err(), "cut at {n} decoded");
        }
    }

    /// Re-encodes `j` and decodes it: what a hostile (but checksummed) journal gets.
    fn decode_of(j: &Journal) -> std::result::Result<Journal, DecodeError> {
        Journal::decode(&j.encode())
    }

    #[test]
    fn names_that_walk_elsewhere_are_refused() {
        for bad in ["../x", "/etc/passwd", "a/b", "..", ".", ""] {
            let mut j = sample();
            if let Entry::Put { target, .. } = &mut j.entries[0] {
                *target = bad.into();
            }
            assert!(decode_of(&j).is_err(), "{bad:?} decoded");
            let mut j = sample();
            j.locks[0].name = bad.into();
            assert!(decode_of(&j).is_err(), "lock {bad:?} decoded");
        }
        let mut j = sample();
        j.dirs[1].path = "relative/dir".into();
        assert!(decode_of(&j).is_err());
        let mut j = sample();
        j.dirs[1].dev = 6;
        assert!(decode_of(&j).is_err(), "two devices");
        let mut j = sample();
        if let Entry::Rename { to_dir, .. } = &mut j.entries[2] {
            *to_dir = 2;
        }
        assert!(decode_of(&j).is_err(), "index out of range");
    }
}
