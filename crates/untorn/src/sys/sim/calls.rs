//! The system calls of the simulated file system: [`Sys`] for [`Sim`].

use super::tree::*;
use super::{Sim, State};
use crate::sys::errnos::{EEXIST, EINVAL, EISDIR, ENODATA, ENOENT, ENOTDIR, EOPNOTSUPP};
use crate::sys::{Fd, FsKind, LockKind, OpenHow, RenameMode, Stat, SyncKind, Sys};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};

pub(super) fn child(st: &State, dir: u64, name: &OsStr) -> Option<u64> {
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
                return Err(err(crate::sys::errnos::EPERM));
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

    fn record_lock(&self, fd: &Fd, _kind: LockKind, _blocking: bool) -> io::Result<()> {
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
