//! [`Sys`] implementations for tests: a [`Probe`] wraps another implementation (normally the
//! real one), records every call in order, and can fail the Nth call of a chosen kind with a
//! chosen errno, in the spirit of SQLite's fault-injection VFS.

use super::{Fd, FsKind, LockKind, MountInfo, OpenHow, RenameMode, Stat, SyncKind, Sys};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The kinds of call a [`Probe`] tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    OpenDir,
    CreateTemp,
    CreateUnnamed,
    OpenFile,
    Write,
    WriteAt,
    CurrentDir,
    ReadAt,
    SetLen,
    Sync,
    SyncFs,
    SyncDir,
    Rename,
    Link,
    LinkUnnamed,
    Unlink,
    StatAt,
    Stat,
    ReadLink,
    SetMode,
    SetOwner,
    FsKind,
    MountInfo,
    ListDir,
    CloneFile,
    CopyRange,
    OpenInodes,
    Umask,
    Lock,
    RecordLock,
    Duplicate,
    SetXattr,
    GetXattr,
    SetMtime,
    FdPath,
}

/// One recorded call: its kind and a short description naming the files involved, e.g.
/// `rename .a.json.untorn-1a2b3c4d.tmp -> a.json (Exchange)` or `sync a.json.untorn-….tmp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub call: Call,
    pub detail: String,
    /// Whether the probe made this call fail.
    pub failed: bool,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.call, self.detail)?;
        if self.failed {
            write!(f, " [injected failure]")?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Plan {
    call: Option<Call>,
    nth: usize,
    errno: i32,
    seen: usize,
    /// Fail every call from the nth on (a process that died there), not just the nth.
    sticky: bool,
    /// A sticky plan has fired: every later call, of any kind, fails.
    dead: bool,
}

/// Something to run just before the `nth` call of kind `call` reaches the inner
/// implementation (another process's step, say, at a chosen point of this one).
struct Hook {
    call: Call,
    nth: usize,
    seen: usize,
    run: Option<Box<dyn FnOnce() + Send>>,
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hook({:?} #{})", self.call, self.nth)
    }
}

#[derive(Debug, Default)]
struct State {
    events: Vec<Event>,
    plan: Option<Plan>,
    hook: Option<Hook>,
    /// Labels of open descriptors (by raw fd number), so that `write` and `sync` name the file.
    labels: HashMap<i32, String>,
    /// What `fs_kind` answers instead of asking the kernel.
    fs_kind: Option<FsKind>,
    /// What `mount_info` answers instead of asking the kernel (`Some(None)`: no mount known).
    mount: Option<Option<MountInfo>>,
}

/// Records calls and injects failures; wraps another [`Sys`].
#[derive(Debug, Clone)]
pub struct Probe {
    inner: Arc<dyn Sys>,
    state: Arc<Mutex<State>>,
}

impl Default for Probe {
    fn default() -> Self {
        Probe::new(Arc::new(super::Real))
    }
}

impl Probe {
    /// A probe in front of `inner`.
    pub fn new(inner: Arc<dyn Sys>) -> Probe {
        Probe {
            inner,
            state: Arc::default(),
        }
    }

    /// A probe in front of the real file system.
    pub fn real() -> Probe {
        Probe::default()
    }

    /// Makes the `nth` call (counting from 1) of kind `call` (any kind, if `None`) fail with
    /// `errno`, without reaching the inner implementation. Counting starts now.
    pub fn fail_nth(&self, call: Option<Call>, nth: usize, errno: i32) {
        let mut st = self.state.lock().unwrap();
        st.plan = Some(Plan {
            call,
            nth,
            errno,
            seen: 0,
            sticky: false,
            dead: false,
        });
    }

    /// Makes every call from the `nth` on (counting from 1, calls of any kind) fail with `EIO`,
    /// as if the process had died there: nothing it would still do (cleanup included) reaches
    /// the file system.
    pub fn die_at(&self, nth: usize) {
        self.die_at_call(None, nth);
    }

    /// Like [`die_at`](Self::die_at), dying at the `nth` call of kind `call` (any kind, if
    /// `None`): that call and every later one, of any kind, fail with `EIO`.
    pub fn die_at_call(&self, call: Option<Call>, nth: usize) {
        let mut st = self.state.lock().unwrap();
        st.plan = Some(Plan {
            call,
            nth,
            errno: super::errnos::EIO,
            seen: 0,
            sticky: true,
            dead: false,
        });
    }

    /// Runs `f` just before the `nth` call (counting from 1, from now) of kind `call` reaches
    /// the inner implementation: another process's work, at that point of this one's.
    pub fn before_nth(&self, call: Call, nth: usize, f: impl FnOnce() + Send + 'static) {
        self.state.lock().unwrap().hook = Some(Hook {
            call,
            nth,
            seen: 0,
            run: Some(Box::new(f)),
        });
    }

    /// Makes `fs_kind` answer `kind` (e.g. to pretend the files are on NFS).
    pub fn pretend_fs(&self, kind: FsKind) {
        self.state.lock().unwrap().fs_kind = Some(kind);
    }

    /// Makes `mount_info` answer `m` (e.g. a tmpfs, or a FUSE mount of some daemon); with
    /// [`Probe::pretend_fs`] alone it answers `None`, so that the kind decides.
    pub fn pretend_mount(&self, m: Option<MountInfo>) {
        self.state.lock().unwrap().mount = Some(m);
    }

    /// Whether the planned failure has been injected.
    pub fn fired(&self) -> bool {
        let st = self.state.lock().unwrap();
        st.events.iter().any(|e| e.failed)
    }

    /// All calls so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.state.lock().unwrap().events.clone()
    }

    /// The calls so far, one per line, for assertion messages.
    pub fn transcript(&self) -> String {
        let evs = self.events();
        let mut s = String::new();
        for e in evs {
            s.push_str(&e.to_string());
            s.push('\n');
        }
        s
    }

    /// Forgets the calls recorded so far.
    pub fn clear(&self) {
        self.state.lock().unwrap().events.clear();
    }

    /// How many calls of kind `call` were made.
    pub fn count(&self, call: Call) -> usize {
        let st = self.state.lock().unwrap();
        st.events
            .iter()
            .filter(|e| e.call == call && !e.failed)
            .count()
    }

    fn label(&self, fd: &Fd) -> String {
        let st = self.state.lock().unwrap();
        match fd {
            Fd::Os(f) => {
                use std::os::fd::AsRawFd;
                st.labels
                    .get(&f.as_raw_fd())
                    .cloned()
                    .unwrap_or_else(|| format!("fd{}", f.as_raw_fd()))
            }
            Fd::Sim(n) => st
                .labels
                .get(&(-(*n as i32) - 1))
                .cloned()
                .unwrap_or_else(|| format!("sim{n}")),
        }
    }

    fn name(&self, fd: &Fd, label: String) {
        let key = match fd {
            Fd::Os(f) => {
                use std::os::fd::AsRawFd;
                f.as_raw_fd()
            }
            Fd::Sim(n) => -(*n as i32) - 1,
        };
        self.state.lock().unwrap().labels.insert(key, label);
    }

    /// Records the call; returns the injected error if this is the call to fail.
    fn enter(&self, call: Call, detail: impl FnOnce() -> String) -> io::Result<()> {
        let detail = detail();
        let mut st = self.state.lock().unwrap();
        let mut fail = None;
        if let Some(p) = st.plan.as_mut() {
            if p.dead {
                fail = Some(p.errno);
            } else if p.call.is_none_or(|c| c == call) {
                p.seen += 1;
                if p.seen == p.nth {
                    fail = Some(p.errno);
                    p.dead = p.sticky;
                }
            }
        }
        st.events.push(Event {
            call,
            detail,
            failed: fail.is_some(),
        });
        let mut run = None;
        if let Some(h) = st.hook.as_mut().filter(|h| h.call == call) {
            h.seen += 1;
            if h.seen == h.nth {
                run = h.run.take();
            }
        }
        drop(st);
        if let Some(f) = run {
            f();
        }
        match fail {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }
}

fn s(p: &OsStr) -> String {
    p.to_string_lossy().into_owned()
}

impl Sys for Probe {
    fn open_dir(&self, at: Option<&Fd>, path: &Path) -> io::Result<Fd> {
        self.enter(Call::OpenDir, || path.display().to_string())?;
        let fd = self.inner.open_dir(at, path)?;
        self.name(&fd, path.display().to_string());
        Ok(fd)
    }
    fn create_temp(&self, dir: &Fd, name: &OsStr, mode: u32) -> io::Result<Fd> {
        self.enter(Call::CreateTemp, || format!("{} mode {:o}", s(name), mode))?;
        let fd = self.inner.create_temp(dir, name, mode)?;
        self.name(&fd, s(name));
        Ok(fd)
    }
    fn create_unnamed(&self, dir: &Fd, mode: u32) -> io::Result<Fd> {
        self.enter(Call::CreateUnnamed, || {
            format!("in {} mode {:o}", self.label(dir), mode)
        })?;
        let fd = self.inner.create_unnamed(dir, mode)?;
        self.name(&fd, "<unnamed>".into());
        Ok(fd)
    }
    fn open_file(&self, dir: &Fd, name: &OsStr, how: OpenHow, mode: u32) -> io::Result<Fd> {
        self.enter(Call::OpenFile, || format!("{} {:?}", s(name), how))?;
        let fd = self.inner.open_file(dir, name, how, mode)?;
        self.name(&fd, s(name));
        Ok(fd)
    }
    fn write(&self, fd: &Fd, buf: &[u8]) -> io::Result<usize> {
        self.enter(Call::Write, || {
            format!("{} {} bytes", self.label(fd), buf.len())
        })?;
        self.inner.write(fd, buf)
    }
    fn write_at(&self, fd: &Fd, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.enter(Call::WriteAt, || {
            format!("{} {} bytes at {offset}", self.label(fd), buf.len())
        })?;
        self.inner.write_at(fd, buf, offset)
    }
    fn current_dir(&self) -> io::Result<PathBuf> {
        self.enter(Call::CurrentDir, String::new)?;
        self.inner.current_dir()
    }
    fn read_at(&self, fd: &Fd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.enter(Call::ReadAt, || format!("{} at {offset}", self.label(fd)))?;
        self.inner.read_at(fd, buf, offset)
    }
    fn set_len(&self, fd: &Fd, len: u64) -> io::Result<()> {
        self.enter(Call::SetLen, || format!("{} to {len}", self.label(fd)))?;
        self.inner.set_len(fd, len)
    }
    fn sync(&self, fd: &Fd, kind: SyncKind) -> io::Result<()> {
        self.enter(Call::Sync, || format!("{} ({kind:?})", self.label(fd)))?;
        self.inner.sync(fd, kind)
    }
    fn sync_fs(&self, fd: &Fd) -> io::Result<()> {
        self.enter(Call::SyncFs, || self.label(fd))?;
        self.inner.sync_fs(fd)
    }
    fn sync_dir(&self, dir: &Fd) -> io::Result<()> {
        self.enter(Call::SyncDir, || self.label(dir))?;
        self.inner.sync_dir(dir)
    }
    fn rename(
        &self,
        from_dir: &Fd,
        from: &OsStr,
        to_dir: &Fd,
        to: &OsStr,
        mode: RenameMode,
    ) -> io::Result<()> {
        self.enter(Call::Rename, || {
            format!("{} -> {} ({mode:?})", s(from), s(to))
        })?;
        self.inner.rename(from_dir, from, to_dir, to, mode)
    }
    fn link(&self, from_dir: &Fd, from: &OsStr, to_dir: &Fd, to: &OsStr) -> io::Result<()> {
        self.enter(Call::Link, || format!("{} -> {}", s(from), s(to)))?;
        self.inner.link(from_dir, from, to_dir, to)
    }
    fn link_unnamed(&self, fd: &Fd, to_dir: &Fd, to: &OsStr) -> io::Result<()> {
        self.enter(Call::LinkUnnamed, || {
            format!("{} -> {}", self.label(fd), s(to))
        })?;
        self.inner.link_unnamed(fd, to_dir, to)?;
        self.name(fd, s(to));
        Ok(())
    }
    fn unlink(&self, dir: &Fd, name: &OsStr) -> io::Result<()> {
        self.enter(Call::Unlink, || s(name))?;
        self.inner.unlink(dir, name)
    }
    fn stat_at(&self, dir: &Fd, name: &OsStr, follow: bool) -> io::Result<Stat> {
        self.enter(Call::StatAt, || s(name))?;
        self.inner.stat_at(dir, name, follow)
    }
    fn stat_at_times(&self, dir: &Fd, name: &OsStr, follow: bool) -> io::Result<Stat> {
        self.enter(Call::StatAt, || s(name))?;
        self.inner.stat_at_times(dir, name, follow)
    }
    fn stat(&self, fd: &Fd) -> io::Result<Stat> {
        self.enter(Call::Stat, || self.label(fd))?;
        self.inner.stat(fd)
    }
    fn read_link(&self, dir: &Fd, name: &OsStr) -> io::Result<PathBuf> {
        self.enter(Call::ReadLink, || s(name))?;
        self.inner.read_link(dir, name)
    }
    fn set_mode(&self, fd: &Fd, mode: u32) -> io::Result<()> {
        self.enter(Call::SetMode, || format!("{} {mode:o}", self.label(fd)))?;
        self.inner.set_mode(fd, mode)
    }
    fn set_owner(&self, fd: &Fd, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        self.enter(Call::SetOwner, || {
            format!("{} {uid:?}:{gid:?}", self.label(fd))
        })?;
        self.inner.set_owner(fd, uid, gid)
    }
    fn list_dir(&self, dir: &Fd) -> io::Result<Vec<std::ffi::OsString>> {
        self.enter(Call::ListDir, || self.label(dir))?;
        self.inner.list_dir(dir)
    }
    fn clone_file(&self, src: &Fd, dst: &Fd) -> io::Result<()> {
        self.enter(Call::CloneFile, || {
            format!("{} -> {}", self.label(src), self.label(dst))
        })?;
        self.inner.clone_file(src, dst)
    }
    fn copy_range(&self, src: &Fd, dst: &Fd, off: u64, len: usize) -> io::Result<usize> {
        self.enter(Call::CopyRange, || {
            format!("{} -> {} at {off}", self.label(src), self.label(dst))
        })?;
        self.inner.copy_range(src, dst, off, len)
    }
    fn fs_kind(&self, fd: &Fd) -> io::Result<FsKind> {
        self.enter(Call::FsKind, || self.label(fd))?;
        if let Some(k) = self.state.lock().unwrap().fs_kind {
            return Ok(k);
        }
        self.inner.fs_kind(fd)
    }
    fn mount_info(&self, fd: &Fd) -> io::Result<Option<MountInfo>> {
        self.enter(Call::MountInfo, || self.label(fd))?;
        let st = self.state.lock().unwrap();
        if let Some(m) = &st.mount {
            return Ok(m.clone());
        }
        if st.fs_kind.is_some() {
            return Ok(None);
        }
        drop(st);
        self.inner.mount_info(fd)
    }
    fn open_inodes(&self) -> io::Result<std::collections::HashSet<(u64, u64)>> {
        self.enter(Call::OpenInodes, String::new)?;
        self.inner.open_inodes()
    }
    fn umask(&self) -> u32 {
        // Cannot fail; recorded for completeness.
        let _ = self.enter(Call::Umask, String::new);
        self.inner.umask()
    }
    fn lock(&self, fd: &Fd, kind: LockKind, blocking: bool) -> io::Result<()> {
        self.enter(Call::Lock, || {
            format!("{} {kind:?} blocking={blocking}", self.label(fd))
        })?;
        self.inner.lock(fd, kind, blocking)
    }
    fn record_lock(&self, fd: &Fd, kind: LockKind, blocking: bool) -> io::Result<()> {
        self.enter(Call::RecordLock, || {
            format!("{} {kind:?} blocking={blocking}", self.label(fd))
        })?;
        self.inner.record_lock(fd, kind, blocking)
    }
    fn duplicate(&self, fd: &Fd) -> io::Result<Fd> {
        self.enter(Call::Duplicate, || self.label(fd))?;
        let d = self.inner.duplicate(fd)?;
        let l = self.label(fd);
        self.name(&d, l);
        Ok(d)
    }
    fn stat_times(&self, fd: &Fd) -> io::Result<Stat> {
        self.enter(Call::Stat, || format!("{} (with times)", self.label(fd)))?;
        self.inner.stat_times(fd)
    }
    fn set_mtime(&self, fd: &Fd, mtime_ns: i128) -> io::Result<()> {
        self.enter(Call::SetMtime, || format!("{} {mtime_ns}", self.label(fd)))?;
        self.inner.set_mtime(fd, mtime_ns)
    }
    fn set_xattr(&self, fd: &Fd, name: &str, value: &[u8]) -> io::Result<()> {
        self.enter(Call::SetXattr, || {
            format!(
                "{} {name}={}",
                self.label(fd),
                String::from_utf8_lossy(value)
            )
        })?;
        self.inner.set_xattr(fd, name, value)
    }
    fn get_xattr(&self, fd: &Fd, name: &str) -> io::Result<Vec<u8>> {
        self.enter(Call::GetXattr, || format!("{} {name}", self.label(fd)))?;
        self.inner.get_xattr(fd, name)
    }
    fn euid(&self) -> u32 {
        self.inner.euid()
    }
    fn fd_path(&self, fd: &Fd) -> io::Result<PathBuf> {
        self.enter(Call::FdPath, || self.label(fd))?;
        self.inner.fd_path(fd)
    }
}
