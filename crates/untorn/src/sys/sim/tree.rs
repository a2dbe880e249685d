//! The simulator's trees (what every process sees, what would survive a power cut) and the
//! operations not yet durable.

use crate::sys::RenameMode;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};

pub(super) const ROOT: u64 = 1;

pub(super) fn err(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Node {
    File {
        data: Vec<u8>,
        mode: u32,
        /// Extended attributes, by name.
        xattrs: BTreeMap<String, Vec<u8>>,
        /// Modification time: a logical clock, advanced by every write and truncate, or what
        /// `set_mtime` set.
        mtime: i128,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
    },
}

impl Node {
    pub(super) fn file(data: Vec<u8>, mode: u32, mtime: i128) -> Node {
        Node::File {
            data,
            mode,
            xattrs: BTreeMap::new(),
            mtime,
        }
    }
}

/// Bytes that a reused block holds in a crash state (another file's data, as far as the
/// file that comes back over it is concerned).
pub(super) const REUSED: u8 = 0xEE;
/// Block size of the model: reused blocks start at a multiple of it.
pub(super) const PAGE: usize = 4096;

/// One copy of the tree: inodes by number; directories hold their entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    pub(super) nodes: BTreeMap<u64, Node>,
    /// Owners other than root (uid 0), by inode: for the trust checks.
    pub(super) owners: BTreeMap<u64, u32>,
    /// Directory modes other than 0755, by inode (a sticky, world-writable one: 0o1777).
    pub(super) dir_modes: BTreeMap<u64, u32>,
}

impl Default for Tree {
    fn default() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            ROOT,
            Node::Dir {
                entries: BTreeMap::new(),
            },
        );
        Tree {
            nodes,
            owners: BTreeMap::new(),
            dir_modes: BTreeMap::new(),
        }
    }
}

impl Tree {
    pub(super) fn entries(&self, dir: u64) -> Option<&BTreeMap<OsString, u64>> {
        match self.nodes.get(&dir) {
            Some(Node::Dir { entries }) => Some(entries),
            _ => None,
        }
    }

    pub(super) fn entries_mut(&mut self, dir: u64) -> Option<&mut BTreeMap<OsString, u64>> {
        match self.nodes.get_mut(&dir) {
            Some(Node::Dir { entries }) => Some(entries),
            _ => None,
        }
    }

    pub(super) fn lookup(&self, dir: u64, name: &OsStr) -> Option<u64> {
        self.entries(dir)?.get(name).copied()
    }

    /// The inode a path names (absolute, or relative to `ROOT`).
    pub fn resolve(&self, path: &Path) -> Option<u64> {
        let mut stack = vec![ROOT];
        for c in path.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                }
                Component::Normal(n) => {
                    let next = self.lookup(*stack.last()?, n)?;
                    stack.push(next);
                }
                Component::Prefix(_) => return None,
            }
        }
        stack.last().copied()
    }

    /// The content of the regular file at `path`.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        match self.nodes.get(&self.resolve(path)?) {
            Some(Node::File { data, .. }) => Some(data.clone()),
            _ => None,
        }
    }

    /// The owner of the inode at `path` (0 if unknown).
    pub fn owner(&self, path: &Path) -> u32 {
        self.resolve(path)
            .and_then(|i| self.owners.get(&i).copied())
            .unwrap_or(0)
    }

    /// A path of inode `ino` (the first found, walking from the root), if it has one.
    pub(super) fn path_of(&self, ino: u64) -> Option<PathBuf> {
        let mut todo = vec![(ROOT, PathBuf::from("/"))];
        while let Some((d, p)) = todo.pop() {
            if d == ino {
                return Some(p);
            }
            for (n, &i) in self.entries(d).into_iter().flatten() {
                if matches!(self.nodes.get(&i), Some(Node::Dir { .. })) {
                    todo.push((i, p.join(n)));
                }
            }
        }
        None
    }

    /// The names in the directory at `path`.
    pub fn names(&self, path: &Path) -> Vec<OsString> {
        self.resolve(path)
            .and_then(|d| self.entries(d))
            .map(|e| e.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How many directory entries name `ino`.
    pub(super) fn links(&self, ino: u64) -> usize {
        self.nodes
            .values()
            .map(|n| match n {
                Node::Dir { entries } => entries.values().filter(|&&i| i == ino).count(),
                Node::File { .. } => 0,
            })
            .sum()
    }

    /// The extended attribute `name` of the file at `path`.
    pub fn xattr(&self, path: &Path, name: &str) -> Option<Vec<u8>> {
        match self.nodes.get(&self.resolve(path)?) {
            Some(Node::File { xattrs, .. }) => xattrs.get(name).cloned(),
            _ => None,
        }
    }

    /// Overwrites the bytes of the file at `path` from `off` on, as a reused block would, without
    /// touching its size, modification time or attributes: for tests of damage detection.
    pub fn clobber(&mut self, path: &Path, off: usize) {
        if let Some(ino) = self.resolve(path) {
            Self::clobber_ino(self, ino, off);
        }
    }

    pub(super) fn clobber_ino(&mut self, ino: u64, off: usize) {
        if let Some(Node::File { data, .. }) = self.nodes.get_mut(&ino) {
            let off = off.min(data.len());
            data[off..].fill(REUSED);
        }
    }

    /// Copies the inode metadata (mode, attributes, mtime) of `ino` from `from` (the volatile
    /// tree) into this one: what an `fsync` of the file makes durable besides its data.
    pub(super) fn take_inode_meta(&mut self, from: &Tree, ino: u64) {
        let Some(Node::File {
            mode,
            xattrs,
            mtime,
            ..
        }) = from.nodes.get(&ino).cloned()
        else {
            return;
        };
        self.file_mut(ino);
        if let Some(Node::File {
            mode: m,
            xattrs: x,
            mtime: t,
            ..
        }) = self.nodes.get_mut(&ino)
        {
            (*m, *x, *t) = (mode, xattrs, mtime);
        }
    }

    pub(super) fn file_mut(&mut self, ino: u64) -> &mut Vec<u8> {
        let n = self
            .nodes
            .entry(ino)
            .or_insert_with(|| Node::file(Vec::new(), 0o600, 0));
        match n {
            Node::File { data, .. } => data,
            Node::Dir { .. } => panic!("inode {ino} is a directory"),
        }
    }
}

/// An operation not yet durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Pending {
    Write {
        ino: u64,
        off: u64,
        bytes: Vec<u8>,
    },
    Truncate {
        ino: u64,
        len: u64,
    },
    Link {
        dir: u64,
        name: OsString,
        ino: u64,
        /// The owner, should this link be what creates the inode in a crash state.
        uid: u32,
    },
    Unlink {
        dir: u64,
        name: OsString,
        /// The inode, if this removed its last name (its blocks are free from now on).
        freed: Option<u64>,
    },
    Rename {
        from: (u64, OsString),
        to: (u64, OsString),
        mode: RenameMode,
        /// The inode replaced at `to`, if this removed its last name.
        freed: Option<u64>,
    },
}

impl Pending {
    pub(super) fn data_ino(&self) -> Option<u64> {
        match self {
            Pending::Write { ino, .. } | Pending::Truncate { ino, .. } => Some(*ino),
            _ => None,
        }
    }

    /// The inode whose last name this operation removed.
    pub(super) fn freed(&self) -> Option<u64> {
        match self {
            Pending::Unlink { freed, .. } | Pending::Rename { freed, .. } => *freed,
            _ => None,
        }
    }

    pub(super) fn touches_dir(&self, d: u64) -> bool {
        match self {
            Pending::Link { dir, .. } | Pending::Unlink { dir, .. } => *dir == d,
            Pending::Rename { from, to, .. } => from.0 == d || to.0 == d,
            _ => false,
        }
    }

    /// Applies it to `t`; an operation whose preconditions do not hold there (in a crash state
    /// that lost an earlier one) is skipped, as the kernel would have failed it.
    pub(super) fn apply(&self, t: &mut Tree, torn: bool) {
        match self {
            Pending::Write { ino, off, bytes } => {
                let data = t.file_mut(*ino);
                let end = *off as usize + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                if !torn {
                    data[*off as usize..end].copy_from_slice(bytes);
                }
            }
            Pending::Truncate { ino, len } => t.file_mut(*ino).resize(*len as usize, 0),
            Pending::Link {
                dir,
                name,
                ino,
                uid,
            } => {
                if !t.nodes.contains_key(ino) {
                    t.nodes.insert(*ino, Node::file(Vec::new(), 0o600, 0));
                    if *uid != 0 {
                        t.owners.insert(*ino, *uid);
                    }
                }
                if let Some(e) = t.entries_mut(*dir) {
                    e.entry(name.clone()).or_insert(*ino);
                }
            }
            Pending::Unlink { dir, name, .. } => {
                if let Some(e) = t.entries_mut(*dir) {
                    e.remove(name);
                }
            }
            Pending::Rename { from, to, mode, .. } => {
                let Some(src) = t.lookup(from.0, &from.1) else {
                    return;
                };
                let dst = t.lookup(to.0, &to.1);
                match mode {
                    RenameMode::Exchange => {
                        let Some(dst) = dst else { return };
                        t.entries_mut(from.0)
                            .expect("dir")
                            .insert(from.1.clone(), dst);
                        t.entries_mut(to.0).expect("dir").insert(to.1.clone(), src);
                    }
                    RenameMode::NoReplace if dst.is_some() => {}
                    _ => {
                        t.entries_mut(from.0).expect("dir").remove(&from.1);
                        t.entries_mut(to.0).expect("dir").insert(to.1.clone(), src);
                    }
                }
            }
        }
    }
}
