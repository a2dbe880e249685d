//! Paths and names: the bottom layer every feature uses and that uses none of them.
//!
//! Splitting a path into its directory and name, untorn's own file names (temps), and the
//! resolution of a path to the directory entry a write replaces (following symlinks).

use crate::ctx::Ctx;
use crate::error::{Error, ErrorKind, Op, Result};
use crate::sys::{errnos::*, Fd, FileType, Stat};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to do when the target path is a symbolic link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Symlinks {
    /// Replace the file the link points to (through any number of links); the link stays a
    /// link. The default, and what `echo > link` does. A dangling link gets its target created.
    #[default]
    Follow,
    /// Replace the link itself with a regular file.
    Replace,
    /// Fail with [`ErrorKind::Symlink`].
    Refuse,
}

/// Prefix and suffix of named temp files: `.NAME.untorn-XXXXXXXX.tmp`.
const TEMP_MARK: &str = ".untorn-";
const TEMP_SUFFIX: &str = ".tmp";
/// Linux's NAME_MAX: a temp name must fit, so a long target name is shortened in it.
const NAME_MAX: usize = 255;

/// If `name` is the name of an untorn temp file (`.NAME.untorn-XXXXXXXX.tmp`), the name of the
/// file it was meant to replace (possibly shortened, for very long names).
///
/// ```
/// use std::ffi::OsStr;
/// assert_eq!(
///     untorn::temp_file_target(OsStr::new(".a.json.untorn-0123abcd.tmp")),
///     Some(OsStr::new("a.json").to_owned())
/// );
/// assert_eq!(untorn::temp_file_target(OsStr::new("a.json")), None);
/// ```
pub fn temp_file_target(name: &OsStr) -> Option<OsString> {
    let b = name.as_bytes();
    let rest = b.strip_prefix(b".")?.strip_suffix(TEMP_SUFFIX.as_bytes())?;
    if rest.len() < TEMP_MARK.len() + 8 {
        return None;
    }
    let (target, tail) = rest.split_at(rest.len() - TEMP_MARK.len() - 8);
    let hex = tail.strip_prefix(TEMP_MARK.as_bytes())?;
    if target.is_empty() || !hex.iter().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(OsString::from_vec(target.to_vec()))
}

pub(crate) fn temp_name(target: &OsStr) -> OsString {
    let b = target.as_bytes();
    let room = NAME_MAX - 1 - TEMP_MARK.len() - 8 - TEMP_SUFFIX.len();
    let b = &b[..b.len().min(room)];
    let mut v = Vec::with_capacity(NAME_MAX);
    v.push(b'.');
    v.extend_from_slice(b);
    v.extend_from_slice(TEMP_MARK.as_bytes());
    v.extend_from_slice(format!("{:08x}", fastrand::u32(..)).as_bytes());
    v.extend_from_slice(TEMP_SUFFIX.as_bytes());
    OsString::from_vec(v)
}

/// Splits a path into its directory (`.` for a bare name) and its file name; rejects paths
/// that cannot name a file (empty, `/`, `..`, a trailing slash).
pub(crate) fn split(path: &Path) -> Result<(PathBuf, OsString)> {
    let bytes = path.as_os_str().as_bytes();
    let bad = |why: &str| {
        Err(Error::new(
            Op::Resolve,
            path,
            ErrorKind::InvalidInput,
            why.into(),
        ))
    };
    if bytes.is_empty() {
        return bad("the path is empty");
    }
    if bytes.ends_with(b"/") {
        return bad("the path ends in '/', which names a directory");
    }
    let name = match path.file_name() {
        Some(n) if !bytes.ends_with(b"/.") && !bytes.ends_with(b"/..") && bytes != b"." => n,
        _ => return bad("the path does not name a file"),
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_owned()))
}

/// Where a path resolved to: the directory that holds the file to replace, its name, and what
/// is there now.
pub(crate) struct Target {
    pub(crate) dir: Arc<Fd>,
    /// The directory as the user would name it (for messages).
    pub(crate) dir_path: PathBuf,
    pub(crate) name: OsString,
    pub(crate) existing: Option<Stat>,
}

impl Target {
    pub(crate) fn path(&self) -> PathBuf {
        join(&self.dir_path, &self.name)
    }
}

/// The name of the lock file beside the entry `name` (`NAME.lock`).
pub(crate) fn lock_name(name: &OsStr) -> OsString {
    let mut n = name.to_owned();
    n.push(".lock");
    n
}

pub(crate) fn join(dir: &Path, name: &OsStr) -> PathBuf {
    if dir == Path::new(".") {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

/// Resolves `path` according to the symlink policy: at most 40 links, like the kernel. The
/// result is a regular file (or a link, for [`Symlinks::Replace`]) or nothing yet.
///
/// Resolution looks at nothing but the path: whether an interrupted transaction covers the file
/// is the caller's question (`txn::settle_before_change`).
pub(crate) fn resolve(ctx: &Arc<Ctx>, path: &Path, policy: Symlinks) -> Result<Target> {
    resolve_in(ctx, path, policy, None)
}

/// Directories a caller keeps open across many [`resolve_in`] calls, by path as named.
pub(crate) type DirCache = std::collections::HashMap<PathBuf, Arc<Fd>>;

/// [`resolve`], opening the directory through `cache` if given.
pub(crate) fn resolve_in(
    ctx: &Arc<Ctx>,
    path: &Path,
    policy: Symlinks,
    cache: Option<&mut DirCache>,
) -> Result<Target> {
    walk(ctx, path, policy, cache, true)
}

/// Where `path` leads, following symbolic links (at most 40), whatever is there at the end (a
/// directory, a FIFO, nothing): the entry whose sidecar lock file [`crate::lock`] takes.
pub(crate) fn locate(ctx: &Arc<Ctx>, path: &Path) -> Result<Target> {
    walk(ctx, path, Symlinks::Follow, None, false)
}

fn walk(
    ctx: &Arc<Ctx>,
    path: &Path,
    policy: Symlinks,
    cache: Option<&mut DirCache>,
    strict: bool,
) -> Result<Target> {
    let sys = &*ctx.sys;
    let (mut dir_path, mut name) = split(path)?;
    let open = |p: &Path| {
        sys.open_dir(None, p)
            .map(Arc::new)
            .map_err(|e| Error::io(Op::OpenDir, p, e))
    };
    let mut dir = match cache {
        Some(c) => match c.get(&dir_path) {
            Some(d) => d.clone(),
            None => {
                let d = open(&dir_path)?;
                c.insert(dir_path.clone(), d.clone());
                d
            }
        },
        None => open(&dir_path)?,
    };
    for _ in 0..40 {
        let here = join(&dir_path, &name);
        let st = match sys.stat_at(&dir, &name, false) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(ENOENT) => {
                return Ok(Target {
                    dir,
                    dir_path,
                    name,
                    existing: None,
                })
            }
            Err(e) => return Err(Error::io(Op::Stat, here, e)),
        };
        let found = |dir, dir_path, name| {
            Ok(Target {
                dir,
                dir_path,
                name,
                existing: Some(st),
            })
        };
        match (st.file_type(), policy) {
            (FileType::Regular, _) | (FileType::Symlink, Symlinks::Replace) => {
                return found(dir, dir_path, name)
            }
            (FileType::Directory | FileType::Other, _) if !strict => {
                return found(dir, dir_path, name)
            }
            (FileType::Directory, _) => {
                return Err(Error::new(
                    Op::Resolve,
                    here,
                    ErrorKind::IsADirectory,
                    "is a directory".into(),
                ))
            }
            (FileType::Other, _) => return Err(Error::new(
                Op::Resolve,
                here,
                ErrorKind::NotAFile,
                "not a regular file (a FIFO, socket or device); untorn replaces only regular files"
                    .into(),
            )),
            (FileType::Symlink, Symlinks::Refuse) => {
                return Err(Error::new(
                    Op::Resolve,
                    here,
                    ErrorKind::Symlink,
                    "is a symbolic link, and the symlink policy is 'refuse'".into(),
                ))
            }
            (FileType::Symlink, Symlinks::Follow) => {
                refuse_planted_link(ctx, &dir, &here, &st)?;
                let link = sys
                    .read_link(&dir, &name)
                    .map_err(|e| Error::io(Op::ReadLink, &here, e))?;
                let (ldir, lname) = split(&link).map_err(|e| {
                    e.with_note(format!("the symlink '{}' points there", here.display()))
                })?;
                let link_has_dir = link.parent().is_some_and(|p| !p.as_os_str().is_empty());
                if link.is_absolute() {
                    dir = open(&ldir)?;
                    dir_path = ldir;
                } else if link_has_dir {
                    let shown = dir_path.join(&ldir);
                    dir = Arc::new(
                        sys.open_dir(Some(&dir), &ldir)
                            .map_err(|e| Error::io(Op::OpenDir, &shown, e))?,
                    );
                    dir_path = shown;
                }
                name = lname;
            }
        }
    }
    Err(Error::new(
        Op::Resolve,
        path,
        ErrorKind::Symlink,
        "too many levels of symbolic links".into(),
    ))
}

/// The rule of Linux's `fs.protected_symlinks`, kept whether or not the system has it on: in a
/// sticky directory that others may write (`/tmp`), a symbolic link is followed only if it
/// belongs to the follower or to the directory's owner. Otherwise another user could point a
/// name they planted at any file the caller may write.
fn refuse_planted_link(ctx: &Arc<Ctx>, dir: &Fd, here: &Path, link: &Stat) -> Result<()> {
    let sys = &*ctx.sys;
    let euid = sys.euid();
    if link.uid == euid {
        return Ok(());
    }
    let d = sys.stat(dir).map_err(|e| Error::io(Op::Stat, here, e))?;
    let perms = d.permissions();
    if perms & 0o1000 == 0 || perms & 0o002 == 0 || link.uid == d.uid {
        return Ok(());
    }
    Err(Error::new(
        Op::Resolve,
        here,
        ErrorKind::Untrusted,
        format!(
            "is a symbolic link that {} owns in a sticky directory others can write; untorn \
             does not follow it (as Linux's fs.protected_symlinks would not)",
            crate::trust::user_name(link.uid)
        ),
    ))
}

#[cfg(test)]
pub(crate) fn temp_name_for_tests(target: &str) -> OsString {
    temp_name(OsStr::new(target))
}
