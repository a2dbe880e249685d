"""untorn keeps files whole.

Scripts, agents and services keep their state in plain files. An interrupted write empties
them, and a power cut can leave half a file. untorn replaces a file **atomically** (every
reader, and the disk after any crash, sees the whole old or the whole new content) and
**durably** (once the call returns, the new content survives a power cut).

This package is the Python face of the untorn Rust library (a native module, not a
re-implementation): Python programs, Rust programs and the ``untorn`` command make the same
guarantees and exclude each other through the same lock files.

::

    import untorn

    untorn.write_json("state.json", {"count": 1})            # atomic, durable
    state = untorn.read_json("state.json", default={})       # under a shared lock

    # Locked read-modify-write: excludes other processes, and `untorn edit state.json`.
    untorn.update_json("state.json", lambda s: s.update(count=s["count"] + 1), default={"count": 0})

    with untorn.open("report.csv", "w") as f:                 # commits on a clean exit,
        f.write("a,b\\n")                                     # discards on an exception

    with untorn.lock("deploy.json", timeout=5):               # FILE.lock, like `untorn lock`
        ...

    untorn.append("progress.log", "step 3 done")              # durable append
    untorn.append_jsonl("events.jsonl", {"event": "start"})

    with untorn.transaction() as tx:                          # several files, all or nothing
        tx.write_json("a.json", a)
        tx.write("b.txt", "new b\\n")
        tx.remove("old.txt")

    untorn.write_json("state.json", state, backups=5)        # keep displaced versions
    untorn.restore("state.json")                             # the newest backup back

Errors are :class:`untorn.Error` instances that also derive from Python's own exceptions
(``FileNotFoundError``, ``PermissionError``, ``TimeoutError``, ...): see :mod:`untorn._errors`.

The GIL is released during file-system work and while waiting for a lock, and Ctrl-C
interrupts a wait for a lock.

Common keyword arguments of the functions that write:

- ``backups``: keep this many displaced versions (``NAME.<UTC time>.bak`` beside the file;
  0, the default, keeps none).
- ``perm``: the permission bits of the written file (default: a replaced file keeps its mode, a
  new file gets 0o666 less the umask).
- ``durability``: ``"full"`` (default: fsync of the file and its directory), ``"file"`` (the
  file only: a power cut may undo the write, never tear it) or ``"none"`` (scratch data only).
- ``symlinks``: ``"follow"`` (default: replace the link's target, keep the link),
  ``"replace"`` (replace the link itself) or ``"refuse"``.
- ``no_clobber``: fail with ``FileExistsError`` instead of replacing an existing file.

Those that lock take ``timeout`` (seconds; ``None``, the default, waits as long as it takes).
"""

from __future__ import annotations

import codecs
import contextlib
import copy
import errno as _errno
import json
import os
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import (
    Any,
    Callable,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
    Union,
    cast,
)

from . import _untorn
from ._errors import (
    AlreadyExistsError,
    CrossDeviceError,
    DirectoryError,
    Error,
    FileSystemError,
    InvalidContentError,
    InvalidInputError,
    LockHeldError,
    LockTimeoutError,
    NoSpaceError,
    NotDirectoryError,
    NotFoundError,
    PermissionDeniedError,
    ReadOnlyError,
    UnsupportedError,
)
from ._untorn import Lock, lock, lock_path_for, temp_file_target, trust_user

__version__: str = _untorn.__version__

__all__ = [
    # writing
    "write",
    "write_bytes",
    "write_text",
    "write_json",
    "write_yaml",
    "write_toml",
    # "open" is left out on purpose: `from untorn import *` must not shadow the builtin.
    "AtomicWriter",
    "output_path",
    # reading
    "read_bytes",
    "read_text",
    "read_json",
    "read_yaml",
    "read_toml",
    # whose state untorn acts on (shared directories)
    "trust_user",
    # locks and read-modify-write
    "lock",
    "Lock",
    "lock_path_for",
    "update",
    "update_json",
    "update_yaml",
    "update_toml",
    # logs
    "append",
    "append_lines",
    "append_jsonl",
    "read_log",
    "read_lines",
    "read_jsonl",
    "tail",
    "repair",
    "Log",
    "Torn",
    "TornTailWarning",
    # transactions
    "transaction",
    "Transaction",
    "Committed",
    # backups, checks, recovery
    "backup",
    "backups",
    "restore",
    "read_valid",
    "check",
    "recover",
    "clean",
    "temp_file_target",
    "Backup",
    "Restored",
    "ValidRead",
    "RecoverAction",
    "Orphan",
    "Cleaned",
    # errors
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

StrPath = Union[str, "os.PathLike[str]"]
"""A path: a ``str`` or an ``os.PathLike`` (``pathlib.Path``)."""


class _Missing:
    def __repr__(self) -> str:
        return "<no default>"


_MISSING: Any = _Missing()


def _bytes(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray)):
        return data  # type: ignore[return-value]
    if isinstance(data, str):
        raise TypeError("a bytes-like object is required, not 'str' (use write_text)")
    return bytes(memoryview(data))


def _not_found(path: StrPath) -> NotFoundError:
    p = os.fsdecode(path)
    return NotFoundError(
        f"cannot read '{p}': no such file or directory",
        op="read",
        path=p,
        kind="not_found",
        errno=_errno.ENOENT,
    )


# -- formats ---------------------------------------------------------------------------------


def _dumps(fmt: str, obj: Any, path: StrPath, default: Optional[Callable[[Any], Any]]) -> bytes:
    """``obj`` rendered as ``fmt``: JSON by Python's json module (two-space indentation, a final
    newline, UTF-8, no NaN); YAML and TOML by untorn's renderers, through JSON."""
    if fmt == "json":
        text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=default)
        return (text + "\n").encode("utf-8")
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=default)
    return _untorn.render(fmt, text, path)


def _loads(fmt: str, data: bytes, path: StrPath) -> Any:
    """``data`` parsed as ``fmt``; InvalidContentError (with line and column) if it does not."""
    if fmt == "json":
        try:
            return json.loads(data)
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            # untorn's own check words the error as `untorn check` does, with line and column.
            _untorn.check_format("json", data, path)
            p = os.fsdecode(path)
            raise InvalidContentError(
                f"cannot parse '{p}' as JSON: {e}",
                op="parse",
                path=p,
                kind="invalid_content",
                line=getattr(e, "lineno", None),
                column=getattr(e, "colno", None),
            ) from e
    return json.loads(_untorn.parse(fmt, data, path))


# -- writing ---------------------------------------------------------------------------------


def write_bytes(
    path: StrPath,
    data: Union[bytes, bytearray, memoryview],
    *,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    no_clobber: bool = False,
    symlinks: str = "follow",
) -> str:
    """Replaces (or creates) the file at ``path`` with ``data``, atomically and durably.

    Readers, and the file after any crash, see the whole old or the whole new content. See the
    module docs for the keyword arguments. Returns the durability achieved: ``durability`` as
    asked, or ``"none"`` where the file system keeps nothing across a power cut (tmpfs, ramfs,
    overlayfs mounted ``volatile``: the write is still atomic, and a warning says so once).
    The other ``write*`` functions return it too.
    """
    return _untorn.write(
        path,
        _bytes(data),
        backups=backups,
        perm=perm,
        durability=durability,
        no_clobber=no_clobber,
        symlinks=symlinks,
    )


def write(
    path: StrPath,
    data: Union[str, bytes, bytearray, memoryview],
    *,
    encoding: str = "utf-8",
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    no_clobber: bool = False,
    symlinks: str = "follow",
) -> str:
    """Replaces (or creates) the file at ``path`` with ``data``, atomically and durably: text
    (``str``, encoded as ``encoding``, UTF-8 by default) or bytes, written exactly as given
    (no newline added). What ``untorn write FILE CONTENT`` does; see the module docs for the
    keyword arguments."""
    raw = data.encode(encoding) if isinstance(data, str) else _bytes(data)
    return _untorn.write(
        path,
        raw,
        backups=backups,
        perm=perm,
        durability=durability,
        no_clobber=no_clobber,
        symlinks=symlinks,
    )


def write_text(
    path: StrPath,
    text: str,
    *,
    encoding: str = "utf-8",
    errors: str = "strict",
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    no_clobber: bool = False,
    symlinks: str = "follow",
) -> str:
    """Replaces (or creates) the file at ``path`` with ``text`` (UTF-8 unless ``encoding``
    says otherwise), atomically and durably. No newline is added."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__} (use write_bytes)")
    return write(
        path,
        text.encode(encoding, errors),
        backups=backups,
        perm=perm,
        durability=durability,
        no_clobber=no_clobber,
        symlinks=symlinks,
    )


def _write_structured(fmt: str, path: StrPath, obj: Any, default: Any, kw: Any) -> str:
    return _untorn.write(path, _dumps(fmt, obj, path, default), **kw)


def write_json(
    path: StrPath,
    obj: Any,
    *,
    default: Optional[Callable[[Any], Any]] = None,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    no_clobber: bool = False,
    symlinks: str = "follow",
) -> str:
    """Replaces (or creates) the file at ``path`` with ``obj`` as JSON, atomically and durably.

    The JSON is what untorn writes everywhere: indented by two spaces, keys in their order,
    UTF-8 (not ``\\u`` escapes), ending in a newline. NaN and infinities are refused
    (``ValueError``): they are not JSON. ``default`` is passed to :func:`json.dumps` (a function
    that turns other objects into JSON-able ones).
    """
    return _write_structured(
        "json",
        path,
        obj,
        default,
        dict(
            backups=backups,
            perm=perm,
            durability=durability,
            no_clobber=no_clobber,
            symlinks=symlinks,
        ),
    )


def write_yaml(
    path: StrPath,
    obj: Any,
    *,
    default: Optional[Callable[[Any], Any]] = None,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    no_clobber: bool = False,
    symlinks: str = "follow",
) -> str:
    """Replaces (or creates) the file at ``path`` with ``obj`` as YAML, atomically and durably.

    Rendered by untorn's YAML renderer (the one ``untorn edit`` checks with), so ``obj`` must
    be JSON-like: dicts with string keys, lists, strings, numbers, booleans, None.
    """
    return _write_structured(
        "yaml",
        path,
        obj,
        default,
        dict(
            backups=backups,
            perm=perm,
            durability=durability,
            no_clobber=no_clobber,
            symlinks=symlinks,
        ),
    )


def write_toml(
    path: StrPath,
    obj: Any,
    *,
    default: Optional[Callable[[Any], Any]] = None,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    no_clobber: bool = False,
    symlinks: str = "follow",
) -> str:
    """Replaces (or creates) the file at ``path`` with ``obj`` (a dict) as TOML, atomically and
    durably. ``obj`` must be JSON-like; dates and times are written as strings (pass
    ``default=str`` for datetime objects)."""
    return _write_structured(
        "toml",
        path,
        obj,
        default,
        dict(
            backups=backups,
            perm=perm,
            durability=durability,
            no_clobber=no_clobber,
            symlinks=symlinks,
        ),
    )


_NEWLINES = (None, "", "\n", "\r", "\r\n")


class AtomicWriter:
    """A file being replaced atomically; made by :func:`untorn.open`.

    Write into it like a file opened for writing. Nothing is visible at ``path`` until
    :meth:`commit` (which :meth:`close` and a clean exit from a ``with`` block call): then the
    whole new content replaces the old one at once, durably. :meth:`discard` (which an
    exception, ``KeyboardInterrupt`` included, leaving the ``with`` block calls) removes the
    temp file and leaves the file as it was. A writer that is garbage-collected without being
    closed is discarded, never committed.
    """

    def __init__(
        self,
        native: _untorn.AtomicFile,
        name: str,
        mode: str,
        encoding: Optional[str],
        errors: Optional[str],
        newline: Optional[str],
    ) -> None:
        self._native = native
        self._binary = "b" in mode
        self._closed = False
        self.name = name
        """The path as given to :func:`untorn.open`."""
        self.mode = mode
        self.encoding = encoding
        self.errors = errors
        self._newline = newline
        self._encoder = (
            None
            if self._binary
            else codecs.getincrementalencoder(encoding or "utf-8")(errors or "strict")
        )

    def _check_open(self) -> None:
        if self._closed or self._native.finished:
            raise ValueError("I/O operation on a committed or discarded file")

    def write(self, data: Any) -> int:
        """Writes ``data`` (``str`` in text mode, bytes-like in binary mode); returns how much
        was written (characters or bytes), which is all of it."""
        self._check_open()
        if self._binary:
            return self._native.write(_bytes(data))
        if not isinstance(data, str):
            raise TypeError(f"write() argument must be str, not {type(data).__name__}")
        s = data
        if self._newline not in (None, "", "\n"):
            s = s.replace("\n", self._newline)
        assert self._encoder is not None
        self._native.write(self._encoder.encode(s))
        return len(data)

    def writelines(self, lines: Iterable[Any]) -> None:
        """Writes each of ``lines`` (no newlines are added)."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Writes buffered data out to the temp file. It makes nothing visible or durable: that
        is :meth:`commit`'s job."""
        if not self.closed:
            self._native.flush()

    def commit(self) -> None:
        """Replaces the file with what was written, atomically and durably. If it fails, the
        file is as it was, and the writer may commit again or be discarded."""
        self._check_open()
        if self._encoder is not None:
            tail = self._encoder.encode("", final=True)
            if tail:
                self._native.write(tail)
        self._native.commit()
        self._closed = True

    def discard(self) -> None:
        """Abandons the replacement: the temp file is removed, the file stays as it was. Does
        nothing if already committed or discarded."""
        self._closed = True
        self._native.discard()

    def close(self) -> None:
        """Commits, unless already committed or discarded (like closing a file finishes
        writing it)."""
        if not self.closed:
            self.commit()

    @property
    def closed(self) -> bool:
        """Whether the writer was committed or discarded."""
        return self._closed or self._native.finished

    @property
    def target_path(self) -> Path:
        """The path this writer replaces (after following symlinks)."""
        return self._native.target_path

    @property
    def temp_path(self) -> Optional[Path]:
        """The temp file's path (``.NAME.untorn-XXXXXXXX.tmp``), or None while it has no name
        (an ``O_TMPFILE``, the default where the file system has them)."""
        return self._native.temp_path

    def writable(self) -> bool:
        return not self.closed

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def isatty(self) -> bool:
        return False

    def __enter__(self) -> "AtomicWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.discard()
            return
        if not self.closed:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<untorn.AtomicWriter name={self.name!r} mode={self.mode!r}{state}>"


def open(  # noqa: A001 - the point is to read like the builtin
    path: StrPath,
    mode: str = "w",
    *,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    newline: Optional[str] = None,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    symlinks: str = "follow",
    temp: str = "auto",
) -> AtomicWriter:
    """Opens an atomic replacement of ``path``: write into the returned :class:`AtomicWriter`,
    and the file changes, whole and durably, only when the ``with`` block ends without an
    exception (or at :meth:`AtomicWriter.close`)::

        with untorn.open("report.csv", "w") as f:
            for row in rows:
                f.write(f"{row}\\n")

    An exception (``KeyboardInterrupt`` included) in the block leaves the file as it was, with
    no temp file behind.

    ``mode`` is ``"w"`` (text, the default) or ``"wb"`` (binary); ``"x"``/``"xb"`` do not
    replace an existing file (``FileExistsError`` at commit if it exists by then). Text is
    encoded as ``encoding`` (default UTF-8, whatever the locale), with ``errors`` as in
    :func:`open`; ``newline`` (``"\\r\\n"``, ``"\\r"``) translates written ``"\\n"``.
    ``temp`` is ``"auto"`` (an unnamed ``O_TMPFILE`` where the file system has them, else a
    named temp), ``"unnamed"`` or ``"named"`` (``.NAME.untorn-XXXXXXXX.tmp`` beside the file).
    """
    m = mode.replace("t", "")
    if m not in ("w", "wb", "x", "xb") or mode.count("t") > 1 or ("t" in mode and "b" in mode):
        raise ValueError(f"untorn.open writes whole files: mode must be 'w', 'wb', 'x' or 'xb', not {mode!r}")
    binary = "b" in m
    if binary and (encoding is not None or errors is not None or newline is not None):
        raise ValueError("binary mode takes no encoding, errors or newline")
    if newline not in _NEWLINES:
        raise ValueError(f"illegal newline value: {newline!r}")
    native = _untorn.open(
        path,
        backups=backups,
        perm=perm,
        durability=durability,
        no_clobber=m.startswith("x"),
        symlinks=symlinks,
        temp=temp,
    )
    return AtomicWriter(
        native,
        os.fsdecode(path),
        mode,
        None if binary else (encoding or "utf-8"),
        None if binary else (errors or "strict"),
        newline,
    )


@contextlib.contextmanager
def output_path(
    path: StrPath,
    *,
    check: Optional[str] = "auto",
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    symlinks: str = "follow",
) -> Iterator[Path]:
    """A path for a program that can only write to a path (``pandoc -o``, ``sqlite3
    .backup``, ``pg_dump -f``, a compiler's ``-o``); when the ``with`` block ends without an
    exception, what the program wrote there replaces ``path``, atomically and durably::

        with untorn.output_path("report.pdf") as tmp:
            subprocess.run(["pandoc", "in.md", "-o", tmp], check=True)

    The path is ``path``'s own name in a private directory beside it (same file system, same
    extension, so tools that pick a format by the extension work; nobody else can plant a
    file there). An exception in the block (``CalledProcessError`` from ``check=True``,
    ``KeyboardInterrupt``) leaves ``path`` as it was, and the directory is removed either way.
    ``check`` is the format the output must have: ``"auto"`` (by ``path``'s extension:
    ``.json``, ``.yaml``/``.yml``, ``.toml``; anything else is not checked), ``"json"``,
    ``"yaml"``, ``"toml"``, or ``None`` (not checked); output that does not parse raises
    ``InvalidContentError`` and changes nothing. No output at all raises
    ``FileNotFoundError``. The written file gets ``path``'s mode, owner, backups and checksum
    like every write. The same as ``untorn write --exec FILE -- PROGRAM ... {}``.
    """
    if check == "auto":
        fmt = _untorn.format_for_path(path)
    elif check is None:
        fmt = "raw"
    elif check in ("json", "yaml", "toml", "raw"):
        fmt = check
    else:
        raise ValueError(f"check must be 'auto', 'json', 'yaml', 'toml' or None, not {check!r}")
    native = _untorn.output_path(
        path, backups=backups, perm=perm, durability=durability, symlinks=symlinks
    )
    try:
        yield native.path
        native.check(fmt)
        native.commit()
    finally:
        native.discard()


def __dir__() -> List[str]:
    # dir(untorn) lists the API, not the modules this one imports (os, json, Path, ...).
    return sorted(set(__all__) | {"open", "__version__", "StrPath"})


# -- reading ---------------------------------------------------------------------------------


def read_bytes(path: StrPath, default: Any = _MISSING, *, timeout: Optional[float] = None) -> Any:
    """The content of ``path``, read under the shared lock (so never during a locked update).
    If the file does not exist: ``default`` if given, else ``FileNotFoundError``."""
    data = _untorn.read(path, missing_ok=default is not _MISSING, timeout=timeout)
    return default if data is None else data


def read_text(
    path: StrPath,
    default: Any = _MISSING,
    *,
    encoding: str = "utf-8",
    errors: str = "strict",
    timeout: Optional[float] = None,
) -> Any:
    """:func:`read_bytes`, decoded (UTF-8 unless ``encoding`` says otherwise)."""
    data = _untorn.read(path, missing_ok=default is not _MISSING, timeout=timeout)
    return default if data is None else data.decode(encoding, errors)


def _read_structured(fmt: str, path: StrPath, default: Any, timeout: Optional[float]) -> Any:
    data = _untorn.read(path, missing_ok=default is not _MISSING, timeout=timeout)
    if data is None:
        return copy.deepcopy(default)
    return _loads(fmt, data, path)


def read_json(path: StrPath, default: Any = _MISSING, *, timeout: Optional[float] = None) -> Any:
    """The JSON value in ``path``, read under the shared lock.

    If the file does not exist: a copy of ``default`` if given, else ``FileNotFoundError``. A
    file that does not parse raises :class:`InvalidContentError` (a ``ValueError``, with
    ``.line`` and ``.column``): it is never silently replaced by the default.
    """
    return _read_structured("json", path, default, timeout)


def read_yaml(path: StrPath, default: Any = _MISSING, *, timeout: Optional[float] = None) -> Any:
    """:func:`read_json` for a YAML file (parsed by untorn's YAML parser; the document must be
    JSON-like: string keys)."""
    return _read_structured("yaml", path, default, timeout)


def read_toml(path: StrPath, default: Any = _MISSING, *, timeout: Optional[float] = None) -> Any:
    """:func:`read_json` for a TOML file (parsed by untorn's TOML parser; dates and times come
    back as strings)."""
    return _read_structured("toml", path, default, timeout)


# -- locked read-modify-write ----------------------------------------------------------------


def update(
    path: StrPath,
    fn: Callable[[Optional[bytes]], Union[bytes, str, None]],
    *,
    timeout: Optional[float] = None,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    symlinks: str = "follow",
) -> bool:
    """Locked read-modify-write of raw content.

    Under the exclusive lock of ``path`` (``path.lock``, the lock ``untorn edit``, ``untorn
    lock`` and ``flock path.lock`` take): reads the file, calls ``fn(old)`` (``old`` is
    ``bytes``, or None if the file does not exist), and atomically and durably writes what it
    returns (``str`` is written as UTF-8; None writes nothing). If ``fn`` raises, the file is
    left as it was and the exception propagates. Returns whether the file was written.
    """

    def step(old: Optional[bytes]) -> Optional[bytes]:
        new = fn(old)
        if isinstance(new, str):
            return new.encode("utf-8")
        return None if new is None else _bytes(new)

    return _untorn.update(
        path,
        step,
        timeout=timeout,
        backups=backups,
        perm=perm,
        durability=durability,
        symlinks=symlinks,
    )


def _update_structured(
    fmt: str,
    path: StrPath,
    fn: Callable[[Any], Any],
    default: Any,
    json_default: Optional[Callable[[Any], Any]],
    kw: Any,
) -> Any:
    result: List[Any] = []

    def step(old: Optional[bytes]) -> Optional[bytes]:
        if old is None:
            if default is _MISSING:
                raise _not_found(path)
            value = copy.deepcopy(default)
        else:
            value = _loads(fmt, old, path)
        new = fn(value)
        if new is not None:
            value = new
        data = _dumps(fmt, value, path, json_default)
        result.append(value)
        return data

    _untorn.update(path, step, **kw)
    return result[-1]


def update_json(
    path: StrPath,
    fn: Callable[[Any], Any],
    default: Any = _MISSING,
    *,
    timeout: Optional[float] = None,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    symlinks: str = "follow",
    json_default: Optional[Callable[[Any], Any]] = None,
) -> Any:
    """Locked read-modify-write of a JSON file; returns the new value.

    Under the exclusive lock of ``path`` (``path.lock``: it excludes other processes doing the
    same, ``untorn edit path``, ``untorn lock path`` and ``flock path.lock``): parses the file
    (or starts from a copy of ``default`` if it does not exist; without a default, a missing
    file is ``FileNotFoundError``), calls ``fn(value)``, which may change the value in place
    (and return None) or return a new one, and writes the result back, atomically and durably,
    if it changed. If ``fn`` raises, the file is left as it was and the exception propagates. A
    file that does not parse raises :class:`InvalidContentError` and is never replaced::

        def bump(state):
            state["count"] += 1

        untorn.update_json("state.json", bump, default={"count": 0})
    """
    return _update_structured(
        "json",
        path,
        fn,
        default,
        json_default,
        dict(
            timeout=timeout,
            backups=backups,
            perm=perm,
            durability=durability,
            symlinks=symlinks,
        ),
    )


def update_yaml(
    path: StrPath,
    fn: Callable[[Any], Any],
    default: Any = _MISSING,
    *,
    timeout: Optional[float] = None,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    symlinks: str = "follow",
    json_default: Optional[Callable[[Any], Any]] = None,
) -> Any:
    """:func:`update_json` for a YAML file (JSON-like documents: string keys)."""
    return _update_structured(
        "yaml",
        path,
        fn,
        default,
        json_default,
        dict(
            timeout=timeout,
            backups=backups,
            perm=perm,
            durability=durability,
            symlinks=symlinks,
        ),
    )


def update_toml(
    path: StrPath,
    fn: Callable[[Any], Any],
    default: Any = _MISSING,
    *,
    timeout: Optional[float] = None,
    backups: int = 0,
    perm: Optional[int] = None,
    durability: str = "full",
    symlinks: str = "follow",
    json_default: Optional[Callable[[Any], Any]] = None,
) -> Any:
    """:func:`update_json` for a TOML file (dates and times are read and written as
    strings)."""
    return _update_structured(
        "toml",
        path,
        fn,
        default,
        json_default,
        dict(
            timeout=timeout,
            backups=backups,
            perm=perm,
            durability=durability,
            symlinks=symlinks,
        ),
    )


# -- logs ------------------------------------------------------------------------------------


def _record(line: Union[str, bytes]) -> bytes:
    return line.encode("utf-8") if isinstance(line, str) else _bytes(line)


class TornTailWarning(UserWarning):
    """An append cut a torn tail off the log (the rest of a record that a crash interrupted,
    or zeros where its data should have been) before writing. Complete lines are never cut."""


def _append(
    path: StrPath,
    records: List[bytes],
    jsonl: bool,
    durability: str,
    timeout: Optional[float],
) -> int:
    n, torn = _untorn.append(
        path, records, jsonl=jsonl, durability=durability, timeout=timeout
    )
    if torn is not None:
        t = Torn(*torn)
        warnings.warn(
            f"untorn: {os.fspath(path)!r} ended in a torn tail ({t.junk_len} bytes after the "
            f"last complete record: {t.reason}); cut it before appending",
            TornTailWarning,
            stacklevel=3,
        )
    return n


def append(
    path: StrPath,
    line: Union[str, bytes],
    *,
    durability: str = "full",
    timeout: Optional[float] = None,
) -> None:
    """Appends ``line`` (one line: a newline is added if it lacks one; a newline inside is an
    :class:`InvalidInputError`) to the log at ``path``, durably: when it returns, the line
    survives a power cut. O(line), not O(file).

    Records of concurrent appenders never interleave. A last line without a newline (as
    :func:`write_text` leaves it) is kept and ended first. A torn tail left by a crash (zeros)
    is cut off before the new record is written, with a :class:`TornTailWarning`.
    """
    _append(path, [_record(line)], False, durability, timeout)


def append_lines(
    path: StrPath,
    lines: Iterable[Union[str, bytes]],
    *,
    durability: str = "full",
    timeout: Optional[float] = None,
) -> int:
    """Appends several lines in one write (all or none), durably; returns the bytes
    appended."""
    return _append(path, [_record(x) for x in lines], False, durability, timeout)


def append_jsonl(
    path: StrPath,
    obj: Any,
    *,
    default: Optional[Callable[[Any], Any]] = None,
    durability: str = "full",
    timeout: Optional[float] = None,
) -> None:
    """Appends ``obj`` as one compact JSON line to the JSON Lines log at ``path``, durably.

    A last line that is not JSON and has no newline is the torn record of an interrupted
    append: it is cut first, with a :class:`TornTailWarning`. A complete line that is not JSON
    means the file is not JSON Lines: :class:`InvalidContentError`, and nothing changes."""
    line = json.dumps(
        obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=default
    )
    _append(path, [line.encode("utf-8")], True, durability, timeout)


@dataclass(frozen=True)
class Torn:
    """A torn tail of a log (left by a crash during an append), not part of its records."""

    valid_len: int
    """The length of the log's complete records, in bytes."""
    junk_len: int
    """The length of the torn tail, in bytes."""
    reason: str
    """``"incomplete"`` (a last line without newline that is not a record: JSON Lines only)
    or ``"zeros"``."""


@dataclass(frozen=True)
class Log:
    """The complete records of a log, and its torn tail if it has one."""

    records: List[bytes]
    torn: Optional[Torn]


def _torn(t: Optional[Tuple[int, int, str]]) -> Optional[Torn]:
    return None if t is None else Torn(*t)


def read_log(path: StrPath, *, jsonl: bool = False, timeout: Optional[float] = None) -> Log:
    """The complete records of the log at ``path`` (without their newlines), read under the
    shared lock, and its torn tail, if any (left out of the records)."""
    records, torn = _untorn.read_log(path, jsonl=jsonl, timeout=timeout)
    return Log(records, _torn(torn))


def read_lines(
    path: StrPath, default: Any = _MISSING, *, timeout: Optional[float] = None
) -> Any:
    """The lines of the log at ``path``, as ``str`` without newlines (a last line without a
    newline included; a torn tail of zeros left out). If the file does not exist: ``default``
    if given, else ``FileNotFoundError``."""
    try:
        log = read_log(path, timeout=timeout)
    except NotFoundError:
        if default is _MISSING:
            raise
        return copy.deepcopy(default)
    return [r.decode("utf-8", "replace") for r in log.records]


def read_jsonl(
    path: StrPath, default: Any = _MISSING, *, timeout: Optional[float] = None
) -> Any:
    """The records of the JSON Lines log at ``path``, parsed (a torn last record left out; a
    complete line that is not JSON is an :class:`InvalidContentError`). If the file does not
    exist: ``default`` if given, else ``FileNotFoundError``."""
    try:
        log = read_log(path, jsonl=True, timeout=timeout)
    except NotFoundError:
        if default is _MISSING:
            raise
        return copy.deepcopy(default)
    return [json.loads(r) for r in log.records]


def tail(path: StrPath, n: int = 10, *, timeout: Optional[float] = None) -> List[str]:
    """The last ``n`` complete lines of the log at ``path``, as ``str``."""
    if n <= 0:
        return []
    lines: List[str] = read_lines(path, timeout=timeout)
    return lines[-n:]


def repair(path: StrPath, *, jsonl: bool = False, timeout: Optional[float] = None) -> Optional[Torn]:
    """Cuts a torn tail off the log at ``path`` (durably, under the exclusive lock); returns
    what was cut, or None if the log was whole. Appends do this by themselves."""
    return _torn(_untorn.repair(path, jsonl=jsonl, timeout=timeout))


# -- transactions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Committed:
    """What a committed transaction changed."""

    written: List[Path]
    removed: List[Path]
    renamed: List[Tuple[Path, Path]]


class Transaction:
    """Changes to several files that become visible and durable together, or not at all;
    made by :func:`transaction`.

    Each change is staged at once (new content goes to a temp file beside its target, so a
    path in a missing directory fails right there); :meth:`commit` applies them all, under the
    files' locks, with one journal as the commit point: after a crash the files are all old or
    all new (the next untorn operation on any of them, or :func:`recover`, finishes the job).
    """

    def __init__(self, *, timeout: Optional[float] = None) -> None:
        self._native = _untorn.Transaction(timeout=timeout)
        self.committed: Optional[Committed] = None
        """What :meth:`commit` changed, once it has."""

    def write(self, path: StrPath, data: Union[str, bytes]) -> None:
        """Stages ``data`` (``str``: as UTF-8) as the new content of ``path``."""
        self._native.write(path, _record(data))

    def write_json(
        self, path: StrPath, obj: Any, *, default: Optional[Callable[[Any], Any]] = None
    ) -> None:
        """Stages ``obj`` as JSON (as :func:`write_json` writes it) for ``path``."""
        self._native.write(path, _dumps("json", obj, path, default))

    def write_yaml(
        self, path: StrPath, obj: Any, *, default: Optional[Callable[[Any], Any]] = None
    ) -> None:
        """Stages ``obj`` as YAML for ``path``."""
        self._native.write(path, _dumps("yaml", obj, path, default))

    def write_toml(
        self, path: StrPath, obj: Any, *, default: Optional[Callable[[Any], Any]] = None
    ) -> None:
        """Stages ``obj`` as TOML for ``path``."""
        self._native.write(path, _dumps("toml", obj, path, default))

    def remove(self, path: StrPath) -> None:
        """Stages the removal of ``path`` (which must exist)."""
        self._native.remove(path)

    def rename(self, src: StrPath, dst: StrPath) -> None:
        """Stages renaming ``src`` (which must exist) to ``dst`` (replaced if it exists)."""
        self._native.rename(src, dst)

    def commit(self) -> Committed:
        """Applies every staged change, or none."""
        written, removed, renamed = self._native.commit()
        self.committed = Committed(written, removed, renamed)
        return self.committed

    def discard(self) -> None:
        """Abandons the transaction: the staged temp files are removed, nothing changes."""
        self._native.discard()

    @property
    def finished(self) -> bool:
        """Whether the transaction was committed or discarded."""
        return self._native.finished

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.discard()
        elif not self.finished:
            self.commit()

    def __repr__(self) -> str:
        state = " finished" if self.finished else f" {len(self._native)} changes"
        return f"<untorn.Transaction{state}>"


def transaction(*, timeout: Optional[float] = None) -> Transaction:
    """A multi-file transaction; as a context manager, it commits on a clean exit and discards
    on an exception::

        with untorn.transaction() as tx:
            tx.write_json("a.json", a)
            tx.write("b.txt", "new b\\n")
            tx.remove("old.txt")
            tx.rename("draft.md", "final.md")

    ``timeout`` bounds the wait for each file's lock at commit.
    """
    return Transaction(timeout=timeout)


# -- backups, checks, recovery ---------------------------------------------------------------


@dataclass(frozen=True)
class Backup:
    """One backup of a file: ``NAME.YYYYMMDDTHHMMSS.NNNNNNNNNZ.bak`` beside it."""

    path: Path
    name: str
    time: datetime
    """When the version it keeps was displaced (or the backup taken), in UTC."""
    size: int


def _backup(t: Optional[Tuple[Path, Path, float, int]]) -> Optional[Backup]:
    if t is None:
        return None
    path, name, time, size = t
    return Backup(path, os.fspath(name), datetime.fromtimestamp(time, timezone.utc), size)


def backups(path: StrPath) -> List[Backup]:
    """The backups of ``path``, newest first."""
    return [_backup(t) for t in _untorn.backups(path)]  # type: ignore[misc]


def backup(path: StrPath, keep: int = 5) -> Backup:
    """Takes a backup of ``path`` now (a reflink where the file system has them, else a copy),
    keeping at most ``keep`` backups."""
    return _backup(_untorn.backup(path, keep))  # type: ignore[return-value]


@dataclass(frozen=True)
class Restored:
    """What :func:`restore` did."""

    source: Backup
    """The backup whose content is now the file's."""
    displaced: Optional[Backup]
    """The backup that now keeps the version the restore replaced (None if the file did not
    exist): restore from it to undo the restore."""


def restore(
    path: StrPath,
    nth: int = 1,
    *,
    name: Optional[StrPath] = None,
    timeout: Optional[float] = None,
) -> Restored:
    """Restores ``path`` from its ``nth`` newest backup (1: the newest), or from the backup
    named ``name``, atomically and durably, under the exclusive lock. The version it replaces
    becomes a backup, so a restore can be undone."""
    source, displaced = _untorn.restore(path, nth, name=name, timeout=timeout)
    return Restored(_backup(source), _backup(displaced))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ValidRead:
    """What :func:`read_valid` found, and where."""

    content: bytes
    backup: Optional[Backup]
    """None if the content is the file's own; else the backup it came from."""
    rejected: Optional[Error]
    """Why the file itself was not used (missing, or invalid), if it was not."""
    restored: bool
    """Whether the file was restored from that backup."""

    def text(self, encoding: str = "utf-8") -> str:
        return self.content.decode(encoding)

    def json(self) -> Any:
        return json.loads(self.content)


Validator = Union[str, Callable[[bytes], Any], None]


def read_valid(
    path: StrPath,
    validator: Validator = None,
    *,
    restore: bool = False,
    timeout: Optional[float] = None,
) -> ValidRead:
    """Reads ``path`` if it is valid; otherwise the newest backup that is, saying which (and
    why the file was rejected). With ``restore=True``, the file is also restored from it.

    ``validator``: ``"json"``, ``"yaml"``, ``"toml"``, ``"utf8"``, ``"exists"``, or a function
    of the content (``bytes``) that returns False or raises to reject it. By default, the
    format the file's extension names (``.json``, ``.yaml``, ``.toml``), else ``"exists"``.
    If neither the file nor any backup is valid, raises the file's error.
    """
    content, b, rejected, restored = _untorn.read_valid(
        path, validator, restore=restore, timeout=timeout
    )
    return ValidRead(content, _backup(b), cast(Optional[Error], rejected), restored)


def check(path: StrPath, validator: Validator = None) -> None:
    """Raises :class:`InvalidContentError` (with ``.line`` and ``.column``) if ``path`` fails
    ``validator`` (see :func:`read_valid`; by default, the format of its extension)."""
    _untorn.check(path, validator)


@dataclass(frozen=True)
class Orphan:
    """An untorn temp file left behind (by a crash)."""

    path: Path
    target: str
    """The name of the file it was for."""
    age: float
    """Seconds since it was last modified."""
    size: int
    in_use: bool
    """Whether a live process has it open (such temps are never removed)."""


def _orphan(t: Tuple[Path, Path, float, int, bool]) -> Orphan:
    path, target, age, size, in_use = t
    return Orphan(path, os.fspath(target), age, size, in_use)


@dataclass(frozen=True)
class RecoverAction:
    """One thing :func:`recover` did (or, on a dry run, would do)."""

    action: str
    """``"txn_rolled_forward"``, ``"txn_rolled_back"``, ``"txn_flag_cleared"``,
    ``"removed_temp"``, ``"kept_temp_in_use"``, ``"restored"``, ``"skipped_damaged_backup"``
    or ``"invalid_without_backup"``."""
    path: Optional[Path]
    reason: Optional[str] = None
    """For ``restored`` and ``invalid_without_backup``: why the file was judged invalid; for
    ``skipped_damaged_backup``: why the backup is damaged (its content does not match the
    checksum untorn recorded when it wrote that version)."""
    backup: Optional[Backup] = None
    """For ``restored``: the backup it now holds the content of; for
    ``skipped_damaged_backup``: the damaged backup, passed over."""
    orphan: Optional[Orphan] = None
    """For ``removed_temp`` and ``kept_temp_in_use``: the temp file."""


def recover(
    dir: StrPath,
    *,
    restore_invalid: Optional[str] = None,
    dry_run: bool = False,
    older_than: float = 0.0,
) -> List[RecoverAction]:
    """Leaves ``dir`` consistent after a crash: finishes or undoes interrupted transactions,
    removes orphaned temp files that no process has open (older than ``older_than`` seconds),
    and with ``restore_invalid="json"`` (or ``"yaml"``, ``"toml"``) restores the files of that
    format that fail to parse from their newest valid backup (``"utf8"``: the files of no known
    format that are not UTF-8 text). Returns what it did, in order;
    ``dry_run=True`` only reports."""
    out = []
    for d in _untorn.recover(
        dir, restore_invalid=restore_invalid, dry_run=dry_run, older_than=older_than
    ):
        out.append(
            RecoverAction(
                action=d["action"],
                path=d.get("path"),
                reason=d.get("reason"),
                backup=_backup(d.get("backup")),
                orphan=_orphan(d["orphan"]) if "orphan" in d else None,
            )
        )
    return out


@dataclass(frozen=True)
class Cleaned:
    """What :func:`clean` removed, and the orphans it kept (too young, or in use)."""

    removed: List[Orphan]
    kept: List[Orphan]


def clean(dir: StrPath, *, older_than: float = 3600.0, dry_run: bool = False) -> Cleaned:
    """Removes orphaned untorn temp files in ``dir`` that are older than ``older_than`` seconds
    and open in no process."""
    removed, kept = _untorn.clean(dir, older_than=older_than, dry_run=dry_run)
    return Cleaned([_orphan(o) for o in removed], [_orphan(o) for o in kept])
