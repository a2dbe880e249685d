//! A simulated file system that can crash: the [`Sys`] that proves untorn's protocols.
//!
//! # The persistence model (after ALICE, OSDI 2014, and SQLite's crash VFS)
//!
//! The simulator keeps two copies of an in-memory tree: what every process sees (volatile), and
//! what would survive a power cut (durable), plus the list of operations done since, not yet
//! durable ("pending"). It assumes only what POSIX file systems give after a power cut:
//!
//! - data written but not fsynced may be lost: of a file's pending writes, any prefix survives,
//!   and the last surviving one may have left only its new **size**, with zeros where its data
//!   should be (what ext4 shows);
//! - `fsync(file)` makes that file's data durable, and nothing else;
//! - a create, link, unlink or rename is durable only after an `fsync` of a directory it
//!   touches; until then any subset of them may have survived, in any combination (each one
//!   whole: renames are atomic, as on every journaling file system);
//! - `syncfs` makes everything durable;
//! - what a completed sync made durable stays durable;
//! - a file's extended attributes and modification time are part of its inode: durable with
//!   it (`fsync` of the file, or `syncfs`), as its mode is;
//! - **freed blocks can be reused before the free is durable** (ext4 `data=writeback` does:
//!   `ext4_mb_clear_bb` holds freed data blocks back until the commit only in the other modes):
//!   a file whose last name a lost unlink (or a lost rename over it) removed may come back
//!   holding other bytes from a page boundary on, with its size, mode and attributes intact.
//!
//! A crash state is the durable tree plus one allowed combination of pending operations.
//! [`Sim::crash_states`] enumerates them all, or a random sample past a limit.

use super::{Fd, FsKind, LockKind, OpenHow, RenameMode, Stat, SyncKind, Sys};
use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

const ROOT: u64 = 1;

fn err(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

use super::errnos::{EBADF, EEXIST, EINVAL, EISDIR, ENODATA, ENOENT, ENOTDIR, EOPNOTSUPP};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
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
    fn file(data: Vec<u8>, mode: u32, mtime: i128) -> Node {
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
const REUSED: u8 = 0xEE;
/// Block size of the model: reused blocks start at a multiple of it.
const PAGE: usize = 4096;

/// One copy of the tree: inodes by number; directories hold their entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    nodes: BTreeMap<u64, Node>,
    /// Owners other than root (uid 0), by inode: for the trust checks.
    owners: BTreeMap<u64, u32>,
    /// Directory modes other than 0755, by inode (a sticky, world-writable one: 0o1777).
    dir_modes: BTreeMap<u64, u32>,
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
    fn entries(&self, dir: u64) -> Option<&BTreeMap<OsString, u64>> {
        match self.nodes.get(&dir) {
            Some(Node::Dir { entries }) => Some(entries),
            _ => None,
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Option<&mut BTreeMap<OsString, u64>> {
        match self.nodes.get_mut(&dir) {
            Some(Node::Dir { entries }) => Some(entries),
            _ => None,
        }
    }

    fn lookup(&self, dir: u64, name: &OsStr) -> Option<u64> {
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
    fn path_of(&self, ino: u64) -> Option<PathBuf> {
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
    fn links(&self, ino: u64) -> usize {
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

    fn clobber_ino(&mut self, ino: u64, off: usize) {
        if let Some(Node::File { data, .. }) = self.nodes.get_mut(&ino) {
            let off = off.min(data.len());
            data[off..].fill(REUSED);
        }
    }

    /// Copies the inode metadata (mode, attributes, mtime) of `ino` from `from` (the volatile
    /// tree) into this one: what an `fsync` of the file makes durable besides its data.
    fn take_inode_meta(&mut self, from: &Tree, ino: u64) {
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

    fn file_mut(&mut self, ino: u64) -> &mut Vec<u8> {
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
enum Pending {
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
    fn data_ino(&self) -> Option<u64> {
        match self {
            Pending::Write { ino, .. } | Pending::Truncate { ino, .. } => Some(*ino),
            _ => None,
        }
    }

    /// The inode whose last name this operation removed.
    fn freed(&self) -> Option<u64> {
        match self {
            Pending::Unlink { freed, .. } | Pending::Rename { freed, .. } => *freed,
            _ => None,
        }
    }

    fn touches_dir(&self, d: u64) -> bool {
        match self {
            Pending::Link { dir, .. } | Pending::Unlink { dir, .. } => *dir == d,
            Pending::Rename { from, to, .. } => from.0 == d || to.0 == d,
            _ => false,
        }
    }

    /// Applies it to `t`; an operation whose preconditions do not hold there (in a crash state
    /// that lost an earlier one) is skipped, as the kernel would have failed it.
    fn apply(&self, t: &mut Tree, torn: bool) {
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

#[derive(Clone, Debug)]
struct Handle {
    ino: u64,
    offset: u64,
    append: bool,
}

/// The state of the simulated file system at one moment: what survives for sure, and what may.
#[derive(Clone, Debug)]
pub struct Snapshot {
    durable: Tree,
    pending: Vec<Pending>,
    /// How many operations of the workload had returned when it was taken.
    pub acked: usize,
}

#[derive(Debug)]
struct State {
    volatile: Tree,
    durable: Tree,
    pending: Vec<Pending>,
    handles: BTreeMap<u64, Handle>,
    next_ino: u64,
    next_handle: u64,
    record: bool,
    snapshots: Vec<Snapshot>,
    acked: usize,
    calls: usize,
    /// The clock of modification times.
    clock: i128,
    /// Whose process this is (files it creates get this owner).
    euid: u32,
}

/// The simulated file system. Clones share one state.
#[derive(Debug, Clone)]
pub struct Sim {
    st: Arc<Mutex<State>>,
}

impl Default for Sim {
    fn default() -> Self {
        Sim::from_tree(Tree::default())
    }
}

impl Sim {
    /// A file system whose volatile and durable state are both `t`.
    pub fn from_tree(t: Tree) -> Sim {
        let next_ino = t.nodes.keys().max().copied().unwrap_or(ROOT) + 1;
        Sim {
            st: Arc::new(Mutex::new(State {
                volatile: t.clone(),
                durable: t,
                pending: Vec::new(),
                handles: BTreeMap::new(),
                next_ino,
                next_handle: 1,
                record: false,
                snapshots: Vec::new(),
                acked: 0,
                calls: 0,
                clock: 1,
                euid: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a directory (at once durable): for setting up a test.
    pub fn mkdir(&self, path: &Path) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let (parent, name) = (
            path.parent().expect("not root"),
            path.file_name().expect("name"),
        );
        let ino = st.next_ino;
        st.next_ino += 1;
        for t in [&mut st.volatile, &mut st.durable] {
            let p = t.resolve(parent).expect("parent exists");
            t.nodes.insert(
                ino,
                Node::Dir {
                    entries: BTreeMap::new(),
                },
            );
            t.entries_mut(p).expect("dir").insert(name.to_owned(), ino);
        }
    }

    /// Creates a file with `data` (at once durable): for setting up a test.
    pub fn put(&self, path: &Path, data: &[u8]) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let (parent, name) = (
            path.parent().expect("not root"),
            path.file_name().expect("name"),
        );
        let ino = st.next_ino;
        st.next_ino += 1;
        for t in [&mut st.volatile, &mut st.durable] {
            let p = t.resolve(parent).expect("parent exists");
            t.nodes.insert(ino, Node::file(data.to_vec(), 0o644, 1));
            t.entries_mut(p).expect("dir").insert(name.to_owned(), ino);
        }
    }

    /// Makes `uid` the owner of the file or directory at `path` (at once durable): for setting
    /// up a test.
    pub fn chown(&self, path: &Path, uid: u32) {
        let mut guard = self.lock();
        let st = &mut *guard;
        for t in [&mut st.volatile, &mut st.durable] {
            let i = t.resolve(path).expect("exists");
            t.owners.insert(i, uid);
        }
    }

    /// Sets the mode of the directory at `path` (e.g. `0o1777`, sticky and world-writable).
    pub fn chmod_dir(&self, path: &Path, mode: u32) {
        let mut guard = self.lock();
        let st = &mut *guard;
        for t in [&mut st.volatile, &mut st.durable] {
            let i = t.resolve(path).expect("exists");
            t.dir_modes.insert(i, mode & 0o7777);
        }
    }

    /// Acts as user `uid` from now on (the owner of what it creates; what `euid` answers).
    pub fn set_euid(&self, uid: u32) {
        self.lock().euid = uid;
    }

    /// What every process sees now.
    pub fn volatile(&self) -> Tree {
        self.lock().volatile.clone()
    }

    /// Starts taking a snapshot after every system call.
    pub fn record(&self) {
        let mut st = self.lock();
        st.record = true;
        let snap = Snapshot {
            durable: st.durable.clone(),
            pending: st.pending.clone(),
            acked: st.acked,
        };
        st.snapshots.push(snap);
    }

    /// Marks one more operation of the workload as returned (acknowledged to its caller), and
    /// takes a snapshot.
    pub fn ack(&self) {
        let mut st = self.lock();
        st.acked += 1;
        if st.record {
            let snap = Snapshot {
                durable: st.durable.clone(),
                pending: st.pending.clone(),
                acked: st.acked,
            };
            st.snapshots.push(snap);
        }
    }

    /// The snapshots taken so far: the crash points.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.lock().snapshots.clone()
    }

    /// How many system calls were made.
    pub fn calls(&self) -> usize {
        self.lock().calls
    }

    fn after_call(st: &mut State) {
        st.calls += 1;
        if st.record {
            let snap = Snapshot {
                durable: st.durable.clone(),
                pending: st.pending.clone(),
                acked: st.acked,
            };
            // Calls that changed nothing durable or pending add no new crash state.
            if st.snapshots.last().is_none_or(|s| {
                s.pending != snap.pending || s.durable != snap.durable || s.acked != snap.acked
            }) {
                st.snapshots.push(snap);
            }
        }
    }

    fn new_handle(st: &mut State, ino: u64, append: bool) -> Fd {
        let h = st.next_handle;
        st.next_handle += 1;
        st.handles.insert(
            h,
            Handle {
                ino,
                offset: 0,
                append,
            },
        );
        Fd::Sim(h)
    }

    fn handle(st: &State, fd: &Fd) -> io::Result<Handle> {
        match fd {
            Fd::Sim(h) => st.handles.get(h).cloned().ok_or_else(|| err(EBADF)),
            Fd::Os(_) => Err(err(EBADF)),
        }
    }

    fn dir_of(st: &State, fd: &Fd) -> io::Result<u64> {
        let h = Self::handle(st, fd)?;
        match st.volatile.nodes.get(&h.ino) {
            Some(Node::Dir { .. }) => Ok(h.ino),
            _ => Err(err(ENOTDIR)),
        }
    }

    fn mutate(&self, f: impl FnOnce(&mut State) -> io::Result<Pending>) -> io::Result<()> {
        let mut st = self.lock();
        let r = f(&mut st);
        if let Ok(p) = &r {
            p.apply(&mut st.volatile, false);
            if let Some(ino) = p.data_ino() {
                Self::touch(&mut st, ino);
            }
            st.pending.push(p.clone());
        }
        Self::after_call(&mut st);
        r.map(drop)
    }

    /// Advances the modification time of `ino` (volatile): its data changed.
    fn touch(st: &mut State, ino: u64) {
        st.clock += 1;
        let now = st.clock;
        if let Some(Node::File { mtime, .. }) = st.volatile.nodes.get_mut(&ino) {
            *mtime = now;
        }
    }

    fn stat_ino(t: &Tree, ino: u64) -> io::Result<Stat> {
        let links = t.links(ino) as u64;
        match t.nodes.get(&ino) {
            Some(Node::File {
                data, mode, mtime, ..
            }) => Ok(Stat {
                dev: 1,
                ino,
                mode: 0o100000 | mode,
                uid: t.owners.get(&ino).copied().unwrap_or(0),
                gid: 0,
                nlink: links,
                size: data.len() as u64,
                mtime_ns: *mtime,
                attrs: 0,
            }),
            Some(Node::Dir { .. }) => Ok(Stat {
                dev: 1,
                ino,
                mode: 0o040000 | t.dir_modes.get(&ino).copied().unwrap_or(0o755),
                uid: t.owners.get(&ino).copied().unwrap_or(0),
                gid: 0,
                nlink: 2,
                size: 4096,
                mtime_ns: 0,
                attrs: 0,
            }),
            None => Err(err(ENOENT)),
        }
    }

    /// Every crash state of `snap`: the durable tree plus each allowed combination of its
    /// pending operations; all of them when there are at most `limit`, else `limit` of them
    /// drawn at random (always including "nothing more" and "everything").
    pub fn crash_states(snap: &Snapshot, limit: usize, rng: &mut fastrand::Rng) -> Vec<Tree> {
        // Data: per inode, how many of its pending data operations survive, and whether the
        // last survivor left only its size (zeros).
        let mut by_ino: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut meta = Vec::new();
        // Operations that freed an inode (by their bit in `meta`): if a state loses one, the
        // inode may come back over reused blocks.
        let mut freeing = Vec::new();
        for (i, p) in snap.pending.iter().enumerate() {
            match p.data_ino() {
                Some(ino) => by_ino.entry(ino).or_default().push(i),
                None => {
                    if let Some(ino) = p.freed() {
                        freeing.push((meta.len(), ino));
                    }
                    meta.push(i)
                }
            }
        }
        let inos: Vec<_> = by_ino.values().cloned().collect();
        // Choices per inode: 0..=n survivors, plus "the last survivor torn" for n >= 1.
        let radix: Vec<usize> = inos.iter().map(|v| 1 + 2 * v.len()).collect();
        let data_combos: f64 = radix.iter().map(|&r| r as f64).product();
        let total = data_combos * 2f64.powi((meta.len() + freeing.len()) as i32);
        let build = |choice: &[usize], mask: u64, reused: u64| -> Tree {
            let mut keep: BTreeMap<usize, bool> = BTreeMap::new(); // index -> torn
            for (k, ops) in inos.iter().enumerate() {
                let c = choice[k];
                let (n, torn) = if c <= ops.len() {
                    (c, false)
                } else {
                    (c - ops.len(), true)
                };
                for (j, &i) in ops.iter().take(n).enumerate() {
                    keep.insert(i, torn && j + 1 == n);
                }
            }
            for (b, &i) in meta.iter().enumerate() {
                if mask >> b & 1 == 1 {
                    keep.insert(i, false);
                }
            }
            let mut t = snap.durable.clone();
            for (i, torn) in keep {
                snap.pending[i].apply(&mut t, torn);
            }
            for (k, &(bit, ino)) in freeing.iter().enumerate() {
                if reused >> k & 1 == 1 && mask >> bit & 1 == 0 && t.links(ino) > 0 {
                    let len = match t.nodes.get(&ino) {
                        Some(Node::File { data, .. }) => data.len(),
                        _ => 0,
                    };
                    // The first block may stay (another allocation), the rest is reused.
                    t.clobber_ino(ino, if len > PAGE { PAGE } else { 0 });
                }
            }
            t
        };
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut push = |t: Tree, out: &mut Vec<Tree>| {
            let key = format!("{t:?}");
            if seen.insert(key) {
                out.push(t);
            }
        };
        if total <= limit as f64 && meta.len() + freeing.len() < 63 {
            let mut choice = vec![0usize; radix.len()];
            loop {
                for mask in 0..(1u64 << meta.len()) {
                    for reused in 0..(1u64 << freeing.len()) {
                        push(build(&choice, mask, reused), &mut out);
                    }
                }
                // Next choice, as a mixed-radix counter.
                let mut k = 0;
                loop {
                    if k == radix.len() {
                        return out;
                    }
                    choice[k] += 1;
                    if choice[k] < radix[k] {
                        break;
                    }
                    choice[k] = 0;
                    k += 1;
                }
            }
        }
        let none = vec![0usize; radix.len()];
        let all: Vec<usize> = inos.iter().map(|v| v.len()).collect();
        let full_mask = if meta.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << meta.len()) - 1
        };
        push(build(&none, 0, 0), &mut out);
        push(build(&all, full_mask, 0), &mut out);
        for _ in 0..limit {
            let choice: Vec<usize> = radix.iter().map(|&r| rng.usize(..r)).collect();
            let mask = rng.u64(..) & full_mask;
            push(build(&choice, mask, rng.u64(..)), &mut out);
        }
        out
    }
}

fn child(st: &State, dir: u64, name: &OsStr) -> Option<u64> {
    st.volatile.lookup(dir, name)
}

impl Sys for Sim {
    fn open_dir(&self, at: Option<&Fd>, path: &Path) -> io::Result<Fd> {
        let mut st = self.lock();
        let base = match at {
            Some(fd) if !path.is_absolute() => Self::dir_of(&st, fd)?,
            _ => ROOT,
        };
        let mut stack = vec![base];
        for c in path.components() {
            match c {
                Component::RootDir => stack = vec![ROOT],
                Component::CurDir => {}
                Component::ParentDir => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                }
                Component::Normal(n) => {
                    let d = *stack.last().expect("non-empty");
                    let next = child(&st, d, n).ok_or_else(|| err(ENOENT))?;
                    stack.push(next);
                }
                Component::Prefix(_) => return Err(err(EINVAL)),
            }
        }
        let ino = *stack.last().expect("non-empty");
        if !matches!(st.volatile.nodes.get(&ino), Some(Node::Dir { .. })) {
            return Err(err(ENOTDIR));
        }
        let fd = Self::new_handle(&mut st, ino, false);
        Self::after_call(&mut st);
        Ok(fd)
    }

    fn create_temp(&self, dir: &Fd, name: &OsStr, mode: u32) -> io::Result<Fd> {
        self.open_file(
            dir,
            name,
            OpenHow {
                write: true,
                create: true,
                exclusive: true,
                no_follow: true,
                ..OpenHow::default()
            },
            mode,
        )
    }

    fn create_unnamed(&self, dir: &Fd, mode: u32) -> io::Result<Fd> {
        let mut st = self.lock();
        Self::dir_of(&st, dir)?;
        let ino = st.next_ino;
        st.next_ino += 1;
        let now = st.clock;
        st.volatile
            .nodes
            .insert(ino, Node::file(Vec::new(), mode & 0o7777, now));
        if st.euid != 0 {
            let uid = st.euid;
            st.volatile.owners.insert(ino, uid);
        }
        let fd = Self::new_handle(&mut st, ino, false);
        Self::after_call(&mut st);
        Ok(fd)
    }

    fn open_file(&self, dir: &Fd, name: &OsStr, how: OpenHow, mode: u32) -> io::Result<Fd> {
        let mut st = self.lock();
        let d = Self::dir_of(&st, dir)?;
        let r = match child(&st, d, name) {
            Some(_) if how.create && how.exclusive => Err(err(EEXIST)),
            Some(ino) => match st.volatile.nodes.get(&ino) {
                Some(Node::Dir { .. }) => Err(err(EISDIR)),
                _ => Ok(Self::new_handle(&mut st, ino, how.append)),
            },
            None if how.create => {
                let ino = st.next_ino;
                st.next_ino += 1;
                let now = st.clock;
                st.volatile
                    .nodes
                    .insert(ino, Node::file(Vec::new(), mode & 0o7777 & !0o022, now));
                let uid = st.euid;
                if uid != 0 {
                    st.volatile.owners.insert(ino, uid);
                }
                let p = Pending::Link {
                    dir: d,
                    name: name.to_owned(),
                    ino,
                    uid,
                };
                p.apply(&mut st.volatile, false);
                st.pending.push(p);
                Ok(Self::new_handle(&mut st, ino, how.append))
            }
            None => Err(err(ENOENT)),
        };
        Self::after_call(&mut st);
        r
    }

    fn write(&self, fd: &Fd, buf: &[u8]) -> io::Result<usize> {
        let mut st = self.lock();
        let r = (|| {
            let h = Self::handle(&st, fd)?;
            let size = match st.volatile.nodes.get(&h.ino) {
                Some(Node::File { data, .. }) => data.len() as u64,
                _ => return Err(err(EISDIR)),
            };
            let off = if h.append { size } else { h.offset };
            let p = Pending::Write {
                ino: h.ino,
                off,
                bytes: buf.to_vec(),
            };
            p.apply(&mut st.volatile, false);
            st.pending.push(p);
            Self::touch(&mut st, h.ino);
            if let Fd::Sim(k) = fd {
                st.handles.get_mut(k).expect("checked").offset = off + buf.len() as u64;
            }
            Ok(buf.len())
        })();
        Self::after_call(&mut st);
        r
    }

    fn write_at(&self, fd: &Fd, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut st = self.lock();
        let r = (|| {
            let h = Self::handle(&st, fd)?;
            let p = Pending::Write {
                ino: h.ino,
                off: offset,
                bytes: buf.to_vec(),
            };
            p.apply(&mut st.volatile, false);
            st.pending.push(p);
            Self::touch(&mut st, h.ino);
            Ok(buf.len())
        })();
        Self::after_call(&mut st);
        r
    }

    fn current_dir(&self) -> io::Result<PathBuf> {
        Ok(PathBuf::from("/"))
    }

    fn read_at(&self, fd: &Fd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let st = self.lock();
        let h = Self::handle(&st, fd)?;
        match st.volatile.nodes.get(&h.ino) {
            Some(Node::File { data, .. }) => {
                let off = (offset as usize).min(data.len());
                let n = buf.len().min(data.len() - off);
                buf[..n].copy_from_slice(&data[off..off + n]);
                Ok(n)
            }
            _ => Err(err(EISDIR)),
        }
    }

    fn set_len(&self, fd: &Fd, len: u64) -> io::Result<()> {
        self.mutate(|st| {
            let h = Self::handle(st, fd)?;
            Ok(Pending::Truncate { ino: h.ino, len })
        })
    }

    fn sync(&self, fd: &Fd, _kind: SyncKind) -> io::Result<()> {
        let mut st = self.lock();
        let h = Self::handle(&st, fd)?;
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut st.pending)
            .into_iter()
            .partition(|p| p.data_ino() == Some(h.ino));
        st.pending = rest;
        for p in mine {
            p.apply(&mut st.durable, false);
        }
        // The inode itself (size, mode, attributes, mtime, owner) is durable now, named or not.
        let st = &mut *st;
        st.durable.take_inode_meta(&st.volatile, h.ino);
        match st.volatile.owners.get(&h.ino).copied() {
            Some(u) => st.durable.owners.insert(h.ino, u),
            None => st.durable.owners.remove(&h.ino),
        };
        Self::after_call(st);
        Ok(())
    }

    fn sync_fs(&self, _fd: &Fd) -> io::Result<()> {
        let mut st = self.lock();
        for p in std::mem::take(&mut st.pending) {
            p.apply(&mut st.durable, false);
        }
        let st = &mut *st;
        let files: Vec<u64> = st.durable.nodes.keys().copied().collect();
        for ino in files {
            st.durable.take_inode_meta(&st.volatile, ino);
        }
        Self::after_call(st);
        Ok(())
    }

    fn sync_dir(&self, dir: &Fd) -> io::Result<()> {
        let mut st = self.lock();
        let d = Self::dir_of(&st, dir)?;
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut st.pending)
            .into_iter()
            .partition(|p| p.touches_dir(d));
        st.pending = rest;
        for p in mine {
            p.apply(&mut st.durable, false);
        }
        Self::after_call(&mut st);
        Ok(())
    }

    fn rename(
        &self,
        from_dir: &Fd,
        from: &OsStr,
        to_dir: &Fd,
        to: &OsStr,
        mode: RenameMode,
    ) -> io::Result<()> {
        self.mutate(|st| {
            let (fd_, td) = (Self::dir_of(st, from_dir)?, Self::dir_of(st, to_dir)?);
            let src = child(st, fd_, from).ok_or_else(|| err(ENOENT))?;
            let dst = child(st, td, to);
            match (mode, dst) {
                (RenameMode::NoReplace, Some(_)) => return Err(err(EEXIST)),
                (RenameMode::Exchange, None) => return Err(err(ENOENT)),
                _ => {}
            }
            let freed = match (mode, dst) {
                (RenameMode::Replace, Some(d)) if d != src && st.volatile.links(d) == 1 => Some(d),
                _ => None,
            };
            Ok(Pending::Rename {
                from: (fd_, from.to_owned()),
                to: (td, to.to_owned()),
                mode,
                freed,
            })
        })
    }

    fn link(&self, from_dir: &Fd, from: &OsStr, to_dir: &Fd, to: &OsStr) -> io::Result<()> {
        self.mutate(|st| {
            let (fd_, td) = (Self::dir_of(st, from_dir)?, Self::dir_of(st, to_dir)?);
            let ino = child(st, fd_, from).ok_or_else(|| err(ENOENT))?;
            if child(st, td, to).is_some() {
                return Err(err(EEXIST));
            }
            let uid = st.volatile.owners.get(&ino).copied().unwrap_or(0);
            Ok(Pending::Link {
                dir: td,
                name: to.to_owned(),
                ino,
                uid,
            })
        })
    }

    fn link_unnamed(&self, fd: &Fd, to_dir: &Fd, to: &OsStr) -> io::Result<()> {
        self.mutate(|st| {
            let h = Self::handle(st, fd)?;
            let td = Self::dir_of(st, to_dir)?;
            if child(st, td, to).is_some() {
                return Err(err(EEXIST));
            }
            let uid = st.volatile.owners.get(&h.ino).copied().unwrap_or(0);
            Ok(Pending::Link {
                dir: td,
                name: to.to_owned(),
                ino: h.ino,
                uid,
            })
        })
    }

    fn unlink(&self, dir: &Fd, name: &OsStr) -> io::Result<()> {
        self.mutate(|st| {
            let d = Self::dir_of(st, dir)?;
            let ino = child(st, d, name).ok_or_else(|| err(ENOENT))?;
            let last = st.volatile.links(ino) == 1
                && matches!(st.volatile.nodes.get(&ino), Some(Node::File { .. }));
            Ok(Pending::Unlink {
                dir: d,
                name: name.to_owned(),
                freed: last.then_some(ino),
            })
        })
    }

    fn stat_at(&self, dir: &Fd, name: &OsStr, _follow: bool) -> io::Result<Stat> {
        let mut st = self.lock();
        let r = (|| {
            let d = Self::dir_of(&st, dir)?;
            let ino = child(&st, d, name).ok_or_else(|| err(ENOENT))?;
            Self::stat_ino(&st.volatile, ino)
        })();
        Self::after_call(&mut st);
        r
    }

    fn stat(&self, fd: &Fd) -> io::Result<Stat> {
        let st = self.lock();
        let h = Self::handle(&st, fd)?;
        Self::stat_ino(&st.volatile, h.ino)
    }

    fn read_link(&self, _dir: &Fd, _name: &OsStr) -> io::Result<PathBuf> {
        Err(err(EINVAL))
    }

    fn set_mode(&self, fd: &Fd, m: u32) -> io::Result<()> {
        let mut st = self.lock();
        let h = Self::handle(&st, fd)?;
        if let Some(Node::File { mode, .. }) = st.volatile.nodes.get_mut(&h.ino) {
            *mode = m & 0o7777;
        }
        Ok(())
    }

    fn set_owner(&self, fd: &Fd, uid: Option<u32>, _gid: Option<u32>) -> io::Result<()> {
        let mut st = self.lock();
        let h = Self::handle(&st, fd)?;
        if let Some(u) = uid {
            if st.euid != 0 && u != st.euid {
                return Err(err(super::errnos::EPERM));
            }
            st.volatile.owners.insert(h.ino, u);
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Fd) -> io::Result<Vec<OsString>> {
        let st = self.lock();
        let d = Self::dir_of(&st, dir)?;
        Ok(st
            .volatile
            .entries(d)
            .map(|e| e.keys().cloned().collect())
            .unwrap_or_default())
    }

    fn clone_file(&self, _src: &Fd, _dst: &Fd) -> io::Result<()> {
        Err(err(EOPNOTSUPP))
    }

    fn copy_range(&self, _src: &Fd, _dst: &Fd, _off: u64, _len: usize) -> io::Result<usize> {
        Err(err(EOPNOTSUPP))
    }

    fn fs_kind(&self, _fd: &Fd) -> io::Result<FsKind> {
        Ok(FsKind::Ext4)
    }

    fn open_inodes(&self) -> io::Result<std::collections::HashSet<(u64, u64)>> {
        Ok(Default::default())
    }

    fn umask(&self) -> u32 {
        0o022
    }

    fn lock(&self, fd: &Fd, _kind: LockKind, _blocking: bool) -> io::Result<()> {
        // One process: every lock is free.
        let st = self.lock();
        Self::handle(&st, fd).map(drop)
    }

    fn duplicate(&self, fd: &Fd) -> io::Result<Fd> {
        let mut st = self.lock();
        let h = Self::handle(&st, fd)?;
        Ok(Self::new_handle(&mut st, h.ino, h.append))
    }

    fn set_mtime(&self, fd: &Fd, mtime_ns: i128) -> io::Result<()> {
        let mut st = self.lock();
        let r = (|| {
            let h = Self::handle(&st, fd)?;
            match st.volatile.nodes.get_mut(&h.ino) {
                Some(Node::File { mtime, .. }) => {
                    *mtime = mtime_ns;
                    Ok(())
                }
                _ => Err(err(EISDIR)),
            }
        })();
        Self::after_call(&mut st);
        r
    }

    fn set_xattr(&self, fd: &Fd, name: &str, value: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        let r = (|| {
            let h = Self::handle(&st, fd)?;
            match st.volatile.nodes.get_mut(&h.ino) {
                Some(Node::File { xattrs, .. }) => {
                    xattrs.insert(name.to_owned(), value.to_vec());
                    Ok(())
                }
                _ => Err(err(EISDIR)),
            }
        })();
        Self::after_call(&mut st);
        r
    }

    fn get_xattr(&self, fd: &Fd, name: &str) -> io::Result<Vec<u8>> {
        let st = self.lock();
        let h = Self::handle(&st, fd)?;
        match st.volatile.nodes.get(&h.ino) {
            Some(Node::File { xattrs, .. }) => {
                xattrs.get(name).cloned().ok_or_else(|| err(ENODATA))
            }
            _ => Err(err(EISDIR)),
        }
    }

    fn euid(&self) -> u32 {
        self.lock().euid
    }

    fn fd_path(&self, fd: &Fd) -> io::Result<PathBuf> {
        let st = self.lock();
        let d = Self::dir_of(&st, fd)?;
        st.volatile.path_of(d).ok_or_else(|| err(ENOENT))
    }
}
