"""Type stubs of the native module ``untorn._untorn`` (crates/untorn-py).

Use the ``untorn`` package rather than this module: it adds the Pythonic layer (JSON, text,
context managers, dataclasses). Paths are ``str`` or ``os.PathLike``; paths returned are
``pathlib.Path``. Errors are the classes of ``untorn._errors``.
"""

import os
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, Union

_Path = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
_Bytes = Union[bytes, bytearray]
# (path, name, time in seconds since the epoch, size)
_BackupTuple = Tuple[Path, Path, float, int]
# (path, target name, age in seconds, size, in_use)
_OrphanTuple = Tuple[Path, Path, float, int, bool]
# (valid_len, junk_len, reason)
_TornTuple = Tuple[int, int, str]

__version__: str

def write(
    path: _Path,
    data: _Bytes,
    *,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    no_clobber: bool = False,
    symlinks: str = "follow",
) -> str:
    """Replaces the file at ``path`` with ``data``, atomically and durably; returns the
    durability achieved ("full", "file" or "none")."""

def open(
    path: _Path,
    *,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    no_clobber: bool = False,
    symlinks: str = "follow",
    temp: str = "auto",
) -> AtomicFile:
    """Opens an atomic replacement of ``path``: a temp file beside it."""

def output_path(
    target: _Path,
    *,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    symlinks: str = "follow",
) -> OutputPath:
    """A private directory beside ``target`` and a path in it for a program to write to."""

class OutputPath:
    """A path for a program to write a file's new content to: ``check()``, then ``commit()``
    (or ``discard()``)."""

    @property
    def path(self) -> Path: ...
    def check(self, format: str) -> None: ...
    def commit(self) -> int: ...
    def discard(self) -> None: ...

class AtomicFile:
    """An atomic replacement in progress: write into it, then ``commit()`` (or
    ``discard()``). Dropped uncommitted, it is discarded."""

    def write(self, data: _Bytes) -> int: ...
    def flush(self) -> None: ...
    def commit(self) -> None: ...
    def discard(self) -> None: ...
    @property
    def target_path(self) -> Path: ...
    @property
    def temp_path(self) -> Optional[Path]: ...
    @property
    def finished(self) -> bool: ...

def lock(
    path: _Path,
    *,
    shared: bool = False,
    timeout: Optional[float] = None,
    blocking: bool = True,
    allow_shared_fs: bool = False,
) -> Lock:
    """Takes the lock of ``path``: ``flock(2)`` on the sidecar ``path.lock``, the lock that
    ``untorn lock``, ``untorn edit`` and ``flock path.lock`` take, so they exclude each other.

    Exclusive unless ``shared=True``. Waits as long as it takes (``timeout=None``, interruptible
    by Ctrl-C), at most ``timeout`` seconds (then ``TimeoutError``), or not at all
    (``blocking=False``: ``BlockingIOError`` if another process holds it). The lock is released
    by ``release()``, at the end of a ``with`` block, and by the kernel if the process dies::

        with untorn.lock("state.json", timeout=5):
            ...
    """

class Lock:
    """A held lock (see :func:`lock`)."""

    def release(self) -> None: ...
    @property
    def path(self) -> Path:
        """The lock file (``FILE.lock``)."""
    @property
    def shared(self) -> bool: ...
    @property
    def held(self) -> bool: ...
    def __enter__(self) -> Lock: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

def lock_path_for(path: _Path) -> Path:
    """The sidecar lock file of ``path``: ``path`` with ``.lock`` appended."""

def update(
    path: _Path,
    func: Callable[[Optional[bytes]], Optional[_Bytes]],
    *,
    timeout: Optional[float] = None,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    symlinks: str = "follow",
) -> bool:
    """Under the exclusive lock: reads ``path``, calls ``func(old)``, writes what it returns
    (None: nothing). Returns whether the file was written."""

def read(
    path: _Path, *, missing_ok: bool = False, timeout: Optional[float] = None
) -> Optional[bytes]:
    """Reads ``path`` under the shared lock; None if it does not exist and ``missing_ok``."""

def append(
    path: _Path,
    records: List[bytes],
    *,
    jsonl: bool = False,
    durability: str = "full",
    timeout: Optional[float] = None,
) -> Tuple[int, Optional[_TornTuple]]:
    """Appends ``records`` (one line each) in one write, durably; returns the bytes
    appended, and the torn tail cut off first (if any)."""

def read_log(
    path: _Path, *, jsonl: bool = False, timeout: Optional[float] = None
) -> Tuple[List[bytes], Optional[_TornTuple]]: ...
def repair(
    path: _Path, *, jsonl: bool = False, timeout: Optional[float] = None
) -> Optional[_TornTuple]: ...
def backups(path: _Path) -> List[_BackupTuple]: ...
def backup(path: _Path, keep: int = 5) -> _BackupTuple: ...
def restore(
    path: _Path,
    nth: int = 1,
    *,
    name: Optional[_Path] = None,
    timeout: Optional[float] = None,
) -> Tuple[_BackupTuple, Optional[_BackupTuple]]: ...
def read_valid(
    path: _Path,
    validator: Union[str, Callable[[bytes], Any], None] = None,
    *,
    restore: bool = False,
    timeout: Optional[float] = None,
) -> Tuple[bytes, Optional[_BackupTuple], Optional[BaseException], bool]: ...
def check(path: _Path, validator: Union[str, Callable[[bytes], Any], None] = None) -> None: ...
def recover(
    dir: _Path,
    *,
    restore_invalid: Optional[str] = None,
    dry_run: bool = False,
    older_than: float = 0.0,
) -> List[Dict[str, Any]]: ...
def clean(
    dir: _Path, *, older_than: float = 3600.0, dry_run: bool = False
) -> Tuple[List[_OrphanTuple], List[_OrphanTuple]]: ...
def format_for_path(path: _Path) -> str: ...
def render(format: str, json: str, path: _Path) -> bytes:
    """Renders JSON text as ``format`` ("json", "yaml", "toml") with untorn's renderer."""

def parse(format: str, data: bytes, path: _Path) -> str:
    """Parses ``data`` as ``format`` with untorn's parser; returns compact JSON text."""

def check_format(format: str, data: bytes, path: _Path) -> None: ...
def temp_file_target(name: _Path) -> Optional[Path]:
    """If ``name`` is an untorn temp file name (``.NAME.untorn-XXXXXXXX.tmp``), the name of
    the file it was for; else None."""

def trust_user(user: str) -> int:
    """Trusts the state ``user`` (a name or a uid) leaves (journals, flags, temps, backups) as
    the caller's own, for the rest of this process; returns the uid."""

class Transaction:
    """A multi-file transaction being staged (see ``untorn.transaction``)."""

    def __init__(self, *, timeout: Optional[float] = None) -> None: ...
    def write(self, path: _Path, data: _Bytes) -> None: ...
    def remove(self, path: _Path) -> None: ...
    def rename(self, src: _Path, dst: _Path) -> None: ...
    def commit(self) -> Tuple[List[Path], List[Path], List[Tuple[Path, Path]]]: ...
    def discard(self) -> None: ...
    @property
    def finished(self) -> bool: ...
    def __len__(self) -> int: ...
