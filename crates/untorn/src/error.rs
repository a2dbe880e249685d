//! The one error type of untorn.

use crate::sys::errnos::*;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The result type of untorn's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
///
/// New kinds may be added: match with a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file or directory does not exist (`ENOENT`).
    NotFound,
    /// The caller may not do this (`EACCES`, `EPERM`).
    PermissionDenied,
    /// The target exists and the operation must not replace it (`EEXIST`, no-clobber).
    AlreadyExists,
    /// The operation would cross file systems (`EXDEV`); untorn never falls back to a copy.
    CrossDevice,
    /// The file system is mounted read-only (`EROFS`).
    ReadOnly,
    /// No space left on the device, or a quota is exhausted (`ENOSPC`, `EDQUOT`).
    NoSpace,
    /// The target is a directory (`EISDIR`).
    IsADirectory,
    /// A component of the path that must be a directory is not (`ENOTDIR`).
    NotADirectory,
    /// The target exists but is not a regular file (a FIFO, socket or device).
    NotAFile,
    /// The target is a symbolic link and the symlink policy refuses it, or links form a loop
    /// (`ELOOP`).
    Symlink,
    /// A file name is longer than the file system allows (`ENAMETOOLONG`).
    NameTooLong,
    /// The path or an argument is not acceptable (empty, `..`, a bad option).
    InvalidInput,
    /// The file system cannot do what the guarantee needs (no `O_TMPFILE`, no directory fsync,
    /// no locks).
    Unsupported,
    /// The operation would block and was asked not to (`EAGAIN`).
    WouldBlock,
    /// A wait ran out of time.
    TimedOut,
    /// The device reported an I/O error (`EIO`): the data may not be what was written.
    Io,
    /// The target is busy (`EBUSY`), e.g. it is a mount point.
    Busy,
    /// The content is not valid for its format (JSON, YAML, TOML); [`Error::location`] says
    /// where.
    InvalidContent,
    /// An external filter (`untorn edit`) failed: it exited non-zero, was killed, or could not
    /// be started.
    FilterFailed,
    /// Acting would mean trusting state that another user left (a transaction journal, a
    /// flag, a temp, a backup): refused. See [`crate::trust`].
    Untrusted,
    /// The caller was interrupted (a signal, passed on to an edit's filter, or a cancel flag
    /// that stopped a wait); nothing was changed.
    Interrupted,
    /// A change was sent to an object store and its answer was lost, and the store could not
    /// tell whether it was applied (see `untorn::remote`): it was applied once or not at
    /// all, and untorn did not retry it. Look before running it again.
    OutcomeUnknown,
    /// Anything else; the source error says what.
    Other,
}

impl ErrorKind {
    /// The kind of an OS error number.
    pub fn from_errno(errno: i32) -> ErrorKind {
        match errno {
            ENOENT => ErrorKind::NotFound,
            EACCES | EPERM => ErrorKind::PermissionDenied,
            EEXIST => ErrorKind::AlreadyExists,
            EXDEV => ErrorKind::CrossDevice,
            EROFS => ErrorKind::ReadOnly,
            ENOSPC | EDQUOT => ErrorKind::NoSpace,
            EISDIR => ErrorKind::IsADirectory,
            ENOTDIR => ErrorKind::NotADirectory,
            ELOOP => ErrorKind::Symlink,
            ENAMETOOLONG => ErrorKind::NameTooLong,
            EINVAL => ErrorKind::InvalidInput,
            EOPNOTSUPP | ENOSYS | ENOLCK => ErrorKind::Unsupported,
            EAGAIN => ErrorKind::WouldBlock,
            ETIMEDOUT => ErrorKind::TimedOut,
            EIO => ErrorKind::Io,
            EBUSY => ErrorKind::Busy,
            _ => ErrorKind::Other,
        }
    }

    fn from_io(e: &io::Error) -> ErrorKind {
        if let Some(n) = e.raw_os_error() {
            return ErrorKind::from_errno(n);
        }
        match e.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
            io::ErrorKind::Unsupported => ErrorKind::Unsupported,
            io::ErrorKind::WouldBlock => ErrorKind::WouldBlock,
            io::ErrorKind::TimedOut => ErrorKind::TimedOut,
            io::ErrorKind::WriteZero => ErrorKind::NoSpace,
            _ => ErrorKind::Other,
        }
    }

    /// The closest `std::io::ErrorKind`.
    pub fn to_io(self) -> io::ErrorKind {
        match self {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
            ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
            ErrorKind::CrossDevice => io::ErrorKind::CrossesDevices,
            ErrorKind::ReadOnly => io::ErrorKind::ReadOnlyFilesystem,
            ErrorKind::NoSpace => io::ErrorKind::StorageFull,
            ErrorKind::IsADirectory => io::ErrorKind::IsADirectory,
            ErrorKind::NotADirectory => io::ErrorKind::NotADirectory,
            ErrorKind::NotAFile => io::ErrorKind::InvalidInput,
            ErrorKind::Symlink => io::ErrorKind::InvalidInput,
            ErrorKind::NameTooLong => io::ErrorKind::InvalidFilename,
            ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            ErrorKind::WouldBlock => io::ErrorKind::WouldBlock,
            ErrorKind::TimedOut => io::ErrorKind::TimedOut,
            ErrorKind::Io | ErrorKind::Other => io::ErrorKind::Other,
            ErrorKind::Busy => io::ErrorKind::ResourceBusy,
            ErrorKind::InvalidContent => io::ErrorKind::InvalidData,
            ErrorKind::FilterFailed => io::ErrorKind::Other,
            ErrorKind::Untrusted => io::ErrorKind::PermissionDenied,
            ErrorKind::Interrupted => io::ErrorKind::Interrupted,
            ErrorKind::OutcomeUnknown => io::ErrorKind::Other,
        }
    }
}

/// The step of an operation that failed; it opens the error message ("cannot rename ...").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Opening the directory that holds the target.
    OpenDir,
    /// Looking at the target's metadata.
    Stat,
    /// Reading a symbolic link.
    ReadLink,
    /// Creating the temporary file.
    CreateTemp,
    /// Writing data into the temporary file.
    Write,
    /// Setting the temporary file's permissions.
    SetMode,
    /// Setting the temporary file's owner.
    SetOwner,
    /// `fsync` of the temporary file.
    Sync,
    /// Giving the unnamed temporary file a name.
    Link,
    /// Renaming the temporary file over the target.
    Rename,
    /// Creating the target without replacing anything (no-clobber).
    Create,
    /// `fsync` of the directory.
    SyncDir,
    /// Removing a file.
    Remove,
    /// Checking what the target is (the path itself is unusable).
    Resolve,
    /// Opening a file.
    Open,
    /// Reading a file.
    Read,
    /// Taking a lock.
    Lock,
    /// Parsing content (JSON, YAML, TOML).
    Parse,
    /// Rendering a value as JSON, YAML or TOML.
    Serialize,
    /// Running an external filter.
    Filter,
    /// Appending to a log.
    Append,
    /// Truncating a torn tail off a log.
    Repair,
    /// Listing a directory.
    ListDir,
    /// Keeping a backup.
    Backup,
    /// Restoring from a backup.
    Restore,
    /// Checking content against a validator.
    Validate,
    /// Removing orphaned temp files.
    Clean,
    /// Committing a multi-file transaction.
    Transaction,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::OpenDir => "open directory",
            Op::Stat => "stat",
            Op::ReadLink => "read symlink",
            Op::CreateTemp => "create a temporary file for",
            Op::Write => "write",
            Op::SetMode => "set permissions of",
            Op::SetOwner => "set owner of",
            Op::Sync => "sync",
            Op::Link => "link",
            Op::Rename => "rename",
            Op::Create => "create",
            Op::SyncDir => "sync directory",
            Op::Remove => "remove",
            Op::Resolve => "write to",
            Op::Open => "open",
            Op::Read => "read",
            Op::Lock => "lock",
            Op::Parse => "parse",
            Op::Serialize => "serialize",
            Op::Filter => "edit",
            Op::Append => "append to",
            Op::Repair => "repair",
            Op::ListDir => "list directory",
            Op::Backup => "back up",
            Op::Restore => "restore",
            Op::Validate => "read a valid version of",
            Op::Clean => "clean",
            Op::Transaction => "commit a transaction on",
        }
    }
}

/// An error of an untorn operation: what it was doing ([`Op`]), to which path(s), why
/// ([`ErrorKind`] and the OS error as the source).
///
/// Its message reads like `cannot rename '.a.json.untorn-1a2b3c4d.tmp' over 'a.json': no space
/// left on device`.
pub struct Error {
    kind: ErrorKind,
    op: Op,
    path: PathBuf,
    other: Option<PathBuf>,
    note: Option<String>,
    source: Option<io::Error>,
    /// Line and column (kept small: an `Error` is returned by value everywhere).
    location: Option<(u32, u32)>,
    /// The format the content was parsed as (its name, e.g. `JSON`), for the message.
    format: Option<&'static str>,
}

impl Error {
    pub(crate) fn io(op: Op, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error {
            kind: ErrorKind::from_io(&source),
            op,
            path: path.into(),
            other: None,
            note: None,
            source: Some(source),
            location: None,
            format: None,
        }
    }

    pub(crate) fn new(op: Op, path: impl Into<PathBuf>, kind: ErrorKind, note: String) -> Error {
        Error {
            kind,
            op,
            path: path.into(),
            other: None,
            note: Some(note),
            source: None,
            location: None,
            format: None,
        }
    }

    /// A copy of this error for another caller it also answers (the appenders one batch of a
    /// [`crate::LogWriter`] served): the same kind, step, paths, note and location; the OS
    /// error by its number.
    pub(crate) fn duplicate(&self) -> Error {
        Error {
            kind: self.kind,
            op: self.op,
            path: self.path.clone(),
            other: self.other.clone(),
            note: self.note.clone(),
            source: self.source.as_ref().map(|e| match e.raw_os_error() {
                Some(n) => io::Error::from_raw_os_error(n),
                None => io::Error::new(e.kind(), e.to_string()),
            }),
            location: self.location,
            format: self.format,
        }
    }

    /// The second path of a two-path step (the target of a rename or link).
    pub(crate) fn with_other(mut self, other: impl Into<PathBuf>) -> Error {
        self.other = Some(other.into());
        self
    }

    /// Adds an explanation after the OS error.
    /// Adds a note: the message's explanation, or, after one that is there, in parentheses.
    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Error {
        let note = note.into();
        self.note = Some(match self.note.take() {
            Some(old) => format!("{old} ({note})"),
            None => note,
        });
        self
    }

    pub(crate) fn with_location(mut self, line: usize, column: usize) -> Error {
        self.location = Some((line as u32, column as u32));
        self
    }

    pub(crate) fn with_format(mut self, format_name: &'static str) -> Error {
        self.format = Some(format_name);
        self
    }

    /// The reason alone, without "cannot <op> '<path>'".
    pub(crate) fn detail(&self) -> String {
        match (&self.source, &self.note) {
            (Some(e), Some(n)) => format!("{} ({n})", describe(e)),
            (Some(e), None) => describe(e),
            (None, Some(n)) => n.clone(),
            (None, None) => String::new(),
        }
    }

    /// For content that failed to parse: the 1-based line and column of the first problem.
    pub fn location(&self) -> Option<(usize, usize)> {
        self.location.map(|(l, c)| (l as usize, c as usize))
    }

    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Error {
        self.kind = kind;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The step that failed.
    pub fn op(&self) -> Op {
        self.op
    }

    /// The path the failed step acted on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The second path of the failed step (the destination of a rename), if it had one.
    pub fn other_path(&self) -> Option<&Path> {
        self.other.as_deref()
    }

    /// The OS error behind this one, if any.
    pub fn os_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }
}

/// An OS error's message without Rust's " (os error N)" suffix, starting in lower case, as
/// `strerror` reads in the middle of a sentence.
pub(crate) fn describe(e: &io::Error) -> String {
    let mut s = e.to_string();
    if let Some(i) = s.find(" (os error ") {
        s.truncate(i);
    }
    let mut c = s.chars();
    match c.next() {
        Some(first) if c.clone().next().is_some_and(|n| n.is_lowercase()) => {
            first.to_lowercase().collect::<String>() + c.as_str()
        }
        _ => s,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {} '{}'", self.op.verb(), self.path.display())?;
        if let Some(fmt) = self.format {
            write!(f, " as {fmt}")?;
        }
        if let Some(o) = &self.other {
            let joiner = match self.op {
                Op::Rename => "over",
                _ => "to",
            };
            write!(f, " {joiner} '{}'", o.display())?;
        }
        match (&self.source, &self.note) {
            (Some(e), Some(n)) => write!(f, ": {} ({n})", describe(e)),
            (Some(e), None) => write!(f, ": {}", describe(e)),
            (None, Some(n)) => write!(f, ": {n}"),
            (None, None) => Ok(()),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("op", &self.op)
            .field("path", &self.path)
            .field("other", &self.other)
            .field("source", &self.source)
            .field("message", &self.to_string())
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    /// Keeps the kind: `NotFound` stays `NotFound`, `NoSpace` becomes `StorageFull`, and the
    /// message still names the operation and the path.
    fn from(e: Error) -> io::Error {
        io::Error::new(e.kind.to_io(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_operation_paths_and_reason() {
        let e = Error::io(
            Op::Rename,
            ".a.json.tmp",
            io::Error::from_raw_os_error(ENOSPC),
        )
        .with_other("a.json");
        assert_eq!(
            e.to_string(),
            "cannot rename '.a.json.tmp' over 'a.json': no space left on device"
        );
        assert_eq!(e.kind(), ErrorKind::NoSpace);
    }

    #[test]
    fn io_error_keeps_the_kind_and_the_message() {
        let e = Error::io(Op::OpenDir, "/nope", io::Error::from_raw_os_error(ENOENT));
        let msg = e.to_string();
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
        assert_eq!(io.to_string(), msg);
        let ro: io::Error = Error::io(Op::Write, "f", io::Error::from_raw_os_error(EROFS)).into();
        assert_eq!(ro.kind(), io::ErrorKind::ReadOnlyFilesystem);
        let xd: io::Error = Error::io(Op::Rename, "f", io::Error::from_raw_os_error(EXDEV)).into();
        assert_eq!(xd.kind(), io::ErrorKind::CrossesDevices);
    }

    #[test]
    fn source_is_the_os_error() {
        use std::error::Error as _;
        let e = Error::io(Op::Sync, "f", io::Error::from_raw_os_error(EIO));
        let src = e.source().unwrap().downcast_ref::<io::Error>().unwrap();
        assert_eq!(src.raw_os_error(), Some(EIO));
    }
}
