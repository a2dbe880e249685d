"""untorn's errors as Python's own exceptions, with .op, .path, .kind, .errno."""

from __future__ import annotations

import errno
import multiprocessing
import os
import pickle
from pathlib import Path

import pytest

import _workers
import untorn

ctx = multiprocessing.get_context("spawn")


def test_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as ei:
        untorn.write_text(tmp_path / "no-such-dir" / "f.txt", "x")
    e = ei.value
    assert isinstance(e, untorn.NotFoundError) and isinstance(e, untorn.Error)
    assert isinstance(e, OSError)
    assert e.errno == errno.ENOENT and e.kind == "not_found"
    assert e.op == "open_dir" and e.path == str(tmp_path / "no-such-dir")
    assert e.filename == e.path
    assert str(e) == f"cannot open directory '{tmp_path / 'no-such-dir'}': no such file or directory"
    with pytest.raises(FileNotFoundError) as ei:
        untorn.read_json(tmp_path / "missing.json")
    assert ei.value.op == "read" and ei.value.path == str(tmp_path / "missing.json")


def test_permission_denied(tmp_path: Path, require_root: None) -> None:
    """As nobody, in a directory only root may write."""
    d = tmp_path / "rootonly"
    d.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    q = ctx.Queue()
    proc = ctx.Process(target=_workers.write_as_nobody, args=(str(d / "f.txt"), q))
    proc.start()
    got = q.get(timeout=60)
    proc.join(30)
    assert got is not None, "nobody could write into a root-only directory"
    name, is_permission_error, is_untorn_error, op, path = got
    assert name == "PermissionDeniedError"
    assert is_permission_error and is_untorn_error
    assert op and path


def test_already_exists(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_text("1")
    with pytest.raises(FileExistsError) as ei:
        untorn.write_text(p, "2", no_clobber=True)
    assert ei.value.kind == "already_exists" and ei.value.errno == errno.EEXIST


def test_is_a_directory(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(IsADirectoryError) as ei:
        untorn.read_bytes(d)
    assert isinstance(ei.value, untorn.DirectoryError)
    with pytest.raises(untorn.Error) as wi:
        untorn.write_text(d, "x")
    assert wi.value.path is not None
    assert d.is_dir()


def test_not_a_directory(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError) as ei:
        untorn.write_text(f / "child", "x")
    assert isinstance(ei.value, untorn.NotDirectoryError)


def test_invalid_content(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text('{\n  "a": 1,\n  oops\n}')
    with pytest.raises(ValueError) as ei:
        untorn.read_json(p)
    e = ei.value
    assert isinstance(e, untorn.InvalidContentError)
    assert (e.line, e.column) == (3, 3)
    assert e.kind == "invalid_content" and e.op == "parse" and e.path == str(p)
    with pytest.raises(untorn.InvalidContentError):
        untorn.check(p)


def test_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as ei:
        untorn.append(tmp_path / "log", "a\nb")
    assert isinstance(ei.value, untorn.InvalidInputError)
    with pytest.raises(untorn.Error):
        untorn.write_text("", "x")


def test_lock_errors(tmp_path: Path) -> None:
    p = tmp_path / "s"
    # flock locks belong to the open file description: a second lock of the same file from
    # this process is excluded like any other process's.
    with untorn.lock(p):
        with pytest.raises(BlockingIOError) as b:
            untorn.lock(p, blocking=False)
        with pytest.raises(TimeoutError) as t:
            untorn.lock(p, timeout=0)
    assert isinstance(b.value, untorn.LockHeldError) and b.value.kind == "would_block"
    assert isinstance(t.value, untorn.LockTimeoutError) and t.value.kind == "timed_out"
    assert b.value.path == str(p) + ".lock"


def test_pickling_keeps_attributes(tmp_path: Path) -> None:
    try:
        untorn.read_json(tmp_path / "missing.json")
    except untorn.Error as e:
        e2 = pickle.loads(pickle.dumps(e))
        assert type(e2) is type(e)
        assert (str(e2), e2.op, e2.path, e2.errno, e2.kind) == (
            str(e),
            e.op,
            e.path,
            e.errno,
            e.kind,
        )
    else:
        raise AssertionError("no error")


def test_hierarchy() -> None:
    pairs = [
        (untorn.NotFoundError, FileNotFoundError),
        (untorn.PermissionDeniedError, PermissionError),
        (untorn.AlreadyExistsError, FileExistsError),
        (untorn.DirectoryError, IsADirectoryError),
        (untorn.NotDirectoryError, NotADirectoryError),
        (untorn.LockHeldError, BlockingIOError),
        (untorn.LockTimeoutError, TimeoutError),
        (untorn.InvalidContentError, ValueError),
        (untorn.InvalidInputError, ValueError),
        (untorn.NoSpaceError, OSError),
        (untorn.ReadOnlyError, OSError),
        (untorn.CrossDeviceError, OSError),
        (untorn.UnsupportedError, OSError),
        (untorn.FileSystemError, OSError),
    ]
    for cls, builtin in pairs:
        assert issubclass(cls, untorn.Error) and issubclass(cls, builtin), cls
        e = cls("msg", op="x", path="p", errno=5)
        assert str(e) == "msg" and e.op == "x" and e.path == "p"
