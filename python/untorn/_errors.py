"""The exceptions untorn raises.

Every error of an untorn operation is an :class:`untorn.Error`, which says which step failed
(``.op``), on which file (``.path``), and why (``.kind``, ``.errno``, the message). The specific
classes also derive from the matching builtin exception, so ordinary Python code catches them
as it would catch an error of :func:`open`::

    try:
        state = untorn.read_json("state.json")
    except FileNotFoundError:          # untorn.NotFoundError is one
        state = {}

====================== ========================================= =========================
class                  builtin base                              untorn ``kind``
====================== ========================================= =========================
NotFoundError          FileNotFoundError                         not_found
PermissionDeniedError  PermissionError                           permission_denied
AlreadyExistsError     FileExistsError                           already_exists
DirectoryError         IsADirectoryError                         is_a_directory
NotDirectoryError      NotADirectoryError                        not_a_directory
LockHeldError          BlockingIOError (``blocking=False``)      would_block
LockTimeoutError       TimeoutError                              timed_out
InvalidContentError    ValueError (``.line``, ``.column``)       invalid_content
InvalidInputError      ValueError                                invalid_input
NoSpaceError           OSError (via FileSystemError)             no_space
ReadOnlyError          OSError (via FileSystemError)             read_only
CrossDeviceError       OSError (via FileSystemError)             cross_device
UnsupportedError       OSError (via FileSystemError)             unsupported
FileSystemError        OSError                                   io, busy, symlink, ...
====================== ========================================= =========================
"""

from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = [
    "Error",
    "FileSystemError",
    "NotFoundError",
    "PermissionDeniedError",
    "AlreadyExistsError",
    "DirectoryError",
    "NotDirectoryError",
    "LockHeldError",
    "LockTimeoutError",
    "InvalidContentError",
    "InvalidInputError",
    "NoSpaceError",
    "ReadOnlyError",
    "CrossDeviceError",
    "UnsupportedError",
]


def _rebuild(cls: "type[Error]", message: str, attrs: Dict[str, Any]) -> "Error":
    return cls(message, **attrs)


class Error(Exception):
    """An error of an untorn operation.

    Attributes:
        message: the whole message, e.g. ``cannot rename '.a.json.untorn-1a2b3c4d.tmp' over
            'a.json': no space left on device``; also ``str(error)``.
        op: the step that failed, e.g. ``"rename"``, ``"lock"``, ``"parse"``, ``"open_dir"``.
        path: the path that step acted on (a ``str``), also as ``.filename``.
        other_path: the second path of a two-path step (the target of a rename), or None.
        kind: what went wrong, e.g. ``"not_found"``, ``"no_space"``, ``"timed_out"``.
        errno: the OS error number behind it, or None.
        line, column: for content that failed to parse, where (1-based); else None.
    """

    message: str
    op: Optional[str]
    path: Optional[str]
    other_path: Optional[str]
    kind: Optional[str]
    line: Optional[int]
    column: Optional[int]

    def __init__(
        self,
        message: str,
        *,
        op: Optional[str] = None,
        path: Optional[str] = None,
        other_path: Optional[str] = None,
        kind: Optional[str] = None,
        errno: Optional[int] = None,
        line: Optional[int] = None,
        column: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.op = op
        self.path = path
        self.other_path = other_path
        self.kind = kind
        self.errno = errno
        self.filename = path
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return self.message

    def _attrs(self) -> Dict[str, Any]:
        return {
            "op": self.op,
            "path": self.path,
            "other_path": self.other_path,
            "kind": self.kind,
            "errno": self.errno,
            "line": self.line,
            "column": self.column,
        }

    def __reduce__(self) -> Any:
        # Keep the attributes across pickling (multiprocessing): OSError's own reduce would
        # lose errno and filename.
        return (_rebuild, (type(self), self.message, self._attrs()))


class FileSystemError(Error, OSError):
    """The file system failed (an I/O error, a busy or special file, a symlink refused, a name
    too long, ...); the base of the OS-level errors that have no more specific builtin."""


class NotFoundError(Error, FileNotFoundError):
    """The file, or a directory on its path, does not exist."""


class PermissionDeniedError(Error, PermissionError):
    """The process may not do this (``EACCES``, ``EPERM``)."""


class AlreadyExistsError(Error, FileExistsError):
    """The file exists, and the operation must not replace it (``no_clobber``, mode ``"x"``)."""


class DirectoryError(Error, IsADirectoryError):
    """The path is a directory."""


class NotDirectoryError(Error, NotADirectoryError):
    """A component of the path that must be a directory is not."""


class LockHeldError(Error, BlockingIOError):
    """Another process holds the lock, and the call was asked not to wait (``blocking=False``)."""


class LockTimeoutError(Error, TimeoutError):
    """The lock was not free within the timeout."""


class InvalidContentError(Error, ValueError):
    """The content is not valid JSON, YAML or TOML (or fails a validator); ``.line`` and
    ``.column`` say where, when the format knows."""


class InvalidInputError(Error, ValueError):
    """An argument is not acceptable (an empty path, a path ending in ``..``, a transaction
    that changes the same file twice, a record with a newline inside, ...)."""


class NoSpaceError(FileSystemError):
    """No space left on the device, or a quota is exhausted."""


class ReadOnlyError(FileSystemError):
    """The file system is mounted read-only."""


class CrossDeviceError(FileSystemError):
    """The operation would cross file systems; untorn never falls back to a copy."""


class UnsupportedError(FileSystemError):
    """The file system cannot give the guarantee (no directory fsync, no ``flock``, a file
    system shared between machines without ``allow_shared_fs``)."""
