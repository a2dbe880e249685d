//! A simulated file system that can crash: the [`Sys`](crate::sys::Sys) that proves untorn's protocols.
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

mod calls;
mod tree;

use crate::sys::errnos::{EBADF, ENOENT, ENOTDIR};
pub use tree::Tree;
use tree::*;

use crate::sys::{Fd, Stat};
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

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
