//! Programs that can only write to a path (`pandoc -o`, `sqlite3 .backup`, `pg_dump -f`, a
//! compiler's `-o`): [`OutputPath`] gives them one beside the target, and commits what they
//! wrote to the target atomically and durably, or discards it.
//!
//! The path is the target's own name inside a private directory beside it
//! (`.NAME.untorn-XXXXXXXX.tmp/NAME`, mode 0700): the same file system as the target, the same
//! extension (tools that pick a format by the extension work), and nobody else can plant a
//! symlink or a file there. The program may create the file or replace it (as `gcc -o`
//! does); untorn opens it only after the program is done, without following symlinks, and
//! copies it into an [`AtomicFile`](crate::AtomicFile) for the target (so it gets the
//! target's mode, owner, backups and checksum like every write). The directory is removed
//! afterwards, whatever happened. A crash (of the process or the machine) can leave it behind:
//! `untorn clean` does not remove directories, so remove it by hand.
//!
//! This module uses `std::fs` for the private directory (the target's write goes through the
//! library as always).

use crate::atomic::OpenOptions;
use crate::backup::Validator;
use crate::error::{Error, ErrorKind, Op, Result};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A path for a program to write a file's new content to (`pandoc -o`, `sqlite3 .backup`,
/// `pg_dump -f`, a compiler's `-o`), committed to the target atomically and durably, or
/// discarded.
///
/// The path is the target's own name inside a private directory beside it
/// (`.NAME.untorn-XXXXXXXX.tmp/NAME`, mode 0700): the same file system as the target, the same
/// extension (tools that pick a format by the extension work), and nobody else can plant a
/// symlink or a file there. The program may create the file or replace it (as `gcc -o`
/// does); [`commit`](Self::commit) opens it only after the program is done, without following
/// symlinks, and copies it into an [`AtomicFile`](crate::AtomicFile) for the target, so it
/// gets the target's mode, owner, backups and checksum like every write. The directory is
/// removed afterwards, whatever happened (also when the `OutputPath` is dropped). A crash can
/// leave it behind: [`clean`](crate::CleanOptions::clean) removes only files, so remove it by
/// hand. [`write_via_path`] is the scoped form.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let target = dir.path().join("report.txt");
/// let out = untorn::OutputPath::new(&target, &untorn::OpenOptions::new())?;
/// std::fs::write(out.path(), "made by a program\n")?; // e.g. pandoc in.md -o PATH
/// out.commit()?;
/// assert_eq!(std::fs::read_to_string(&target)?, "made by a program\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct OutputPath {
    dir: PathBuf,
    path: PathBuf,
    target: PathBuf,
    opts: OpenOptions,
    done: bool,
}

impl OutputPath {
    /// Makes the private directory beside `target` and returns the path in it. `opts` are the
    /// options of the write that [`commit`](Self::commit) makes.
    pub fn new(target: impl AsRef<Path>, opts: &OpenOptions) -> Result<OutputPath> {
        let target = target.as_ref().to_path_buf();
        let (parent, name) = crate::paths::split(&target)?;
        let mut tries = 0;
        loop {
            let dir = parent.join(dir_name(&name));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    return Ok(OutputPath {
                        path: dir.join(&name),
                        dir,
                        target,
                        opts: opts.clone(),
                        done: false,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 100 => {
                    tries += 1
                }
                Err(e) => return Err(Error::io(Op::CreateTemp, &target, e)),
            }
        }
    }

    /// The path to give the program: the target's name in a private directory beside it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file the program wrote (a regular file, not through a symlink).
    fn open(&self) -> Result<std::fs::File> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_nofollow())
            .open(&self.path)
            .map_err(|e| {
                let missing = e.kind() == std::io::ErrorKind::NotFound;
                let err = Error::io(Op::Read, &self.path, e);
                if missing {
                    err.with_note("the program did not write it")
                } else {
                    err
                }
            })?;
        let md = f
            .metadata()
            .map_err(|e| Error::io(Op::Stat, &self.path, e))?;
        if !md.is_file() {
            return Err(Error::new(
                Op::Read,
                &self.path,
                ErrorKind::NotAFile,
                "the program left something other than a regular file there".into(),
            ));
        }
        Ok(f)
    }

    /// Checks what the program wrote with `validator` (reads it whole; [`Validator::Exists`]
    /// only checks that it is there). The error names the target.
    pub fn check(&self, validator: &Validator) -> Result<()> {
        let mut f = self.open()?;
        if matches!(validator, Validator::Exists) {
            return Ok(());
        }
        let mut content = Vec::new();
        f.read_to_end(&mut content)
            .map_err(|e| Error::io(Op::Read, &self.path, e))?;
        validator.check(&content, &self.target)
    }

    /// Replaces the target with what the program wrote, atomically and durably (as
    /// [`OpenOptions::write`]), and removes the private directory. Returns the size written.
    pub fn commit(mut self) -> Result<u64> {
        let mut from = self.open()?;
        let mut f = self.opts.open(&self.target)?;
        let n = std::io::copy(&mut from, &mut f).map_err(|e| from_io(e, &self.path))?;
        f.commit().map_err(|e| e.error)?;
        self.done = true;
        self.remove()?;
        Ok(n)
    }

    /// Removes the private directory and what is in it; the target is not touched. (Dropping
    /// an `OutputPath` does the same, ignoring errors.)
    pub fn discard(mut self) -> Result<()> {
        self.done = true;
        self.remove()
    }

    fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(Op::Remove, &self.dir, e)),
        }
    }
}

impl Drop for OutputPath {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.remove();
        }
    }
}

/// Runs `f` with a path to write `target`'s new content to, then commits it (as
/// [`OutputPath::commit`]) if `f` returns `Ok`, or discards it if `f` fails. The scoped form of
/// [`OutputPath`].
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let target = dir.path().join("out.txt");
/// untorn::write_via_path(&target, &untorn::OpenOptions::new(), |path| {
///     let st = std::process::Command::new("sh")
///         .args(["-c", "echo made > \"$1\"", "sh"])
///         .arg(path)
///         .status()?;
///     if !st.success() {
///         return Err(std::io::Error::other("the program failed").into());
///     }
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// assert_eq!(std::fs::read_to_string(&target)?, "made\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_via_path<T, E: From<Error>>(
    target: impl AsRef<Path>,
    opts: &OpenOptions,
    f: impl FnOnce(&Path) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let out = OutputPath::new(target, opts)?;
    let value = f(out.path())?;
    out.commit()?;
    Ok(value)
}

/// `.NAME.untorn-XXXXXXXX.tmp`, as a temp's name (short enough for NAME_MAX).
fn dir_name(name: &std::ffi::OsStr) -> OsString {
    let b = name.as_bytes();
    let b = &b[..b.len().min(255 - 1 - 7 - 8 - 4)];
    let mut v = vec![b'.'];
    v.extend_from_slice(b);
    v.extend_from_slice(format!(".untorn-{:08x}.tmp", fastrand::u32(..)).as_bytes());
    OsString::from_vec(v)
}

/// An error of the copy: the write's own (an [`Error`] inside), or a read of the output.
fn from_io(e: std::io::Error, path: &Path) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        if let Some(Ok(err)) = e.into_inner().map(|i| i.downcast::<Error>()) {
            return *err;
        }
        unreachable!("checked above");
    }
    Error::io(Op::Read, path, e)
}

/// `O_NOFOLLOW`, for `std::fs::OpenOptions`.
fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}
