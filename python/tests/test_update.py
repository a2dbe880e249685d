"""Locked read-modify-write: update_json, update, read_json."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import _workers
import untorn
from conftest import temps

ctx = multiprocessing.get_context("spawn")


def test_eight_processes_count_exactly(tmp_path: Path) -> None:
    """8 processes, 125 locked increments each: the count is exactly 1000."""
    p = tmp_path / "counter.json"
    procs, n = 8, 125
    with ctx.Pool(procs) as pool:
        done = pool.starmap(_workers.count_up, [(str(p), n)] * procs)
    assert sum(done) == procs * n
    assert untorn.read_json(p) == {"count": procs * n}
    assert temps(tmp_path) == []


def test_threads_count_exactly(tmp_path: Path) -> None:
    """Threads of one process too (each update opens its own lock file description)."""
    p = tmp_path / "counter.json"
    threads = [
        threading.Thread(target=_workers.count_up, args=(str(p), 50)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert untorn.read_json(p) == {"count": 200}


def test_update_json_excludes_cli_edit(tmp_path: Path, untorn_bin: str) -> None:
    """Python update_json and `untorn edit` (the CLI) on the same file never lose an update."""
    p = tmp_path / "state.json"
    untorn.write_json(p, {"count": 0})
    filt = (
        "import json, sys; d = json.load(sys.stdin); d['count'] += 1; "
        "json.dump(d, sys.stdout)"
    )
    cli_n, py_procs, py_n = 15, 3, 40

    def cli() -> None:
        for _ in range(cli_n):
            subprocess.run(
                [untorn_bin, "edit", str(p), "--", sys.executable, "-c", filt],
                check=True,
                timeout=60,
            )

    t = threading.Thread(target=cli)
    t.start()
    with ctx.Pool(py_procs) as pool:
        pool.starmap(_workers.count_up, [(str(p), py_n)] * py_procs)
    t.join()
    assert untorn.read_json(p) == {"count": cli_n + py_procs * py_n}


def test_mutate_or_return(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    assert untorn.update_json(p, lambda s: s.update(n=1), default={}) == {"n": 1}
    assert untorn.update_json(p, lambda s: {"n": s["n"] + 1}) == {"n": 2}
    assert untorn.update_json(p, lambda s: s["n"] * 10) == 20  # a new value (an int)
    assert untorn.read_json(p) == 20


def test_default_is_copied(tmp_path: Path) -> None:
    default = {"items": []}
    untorn.update_json(tmp_path / "a.json", lambda s: s["items"].append(1), default=default)
    assert default == {"items": []}


def test_missing_file_without_default(tmp_path: Path) -> None:
    p = tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError) as ei:
        untorn.update_json(p, lambda s: None)
    assert ei.value.path == str(p)
    assert not p.exists()


def test_callback_error_leaves_file(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    untorn.write_json(p, {"n": 1})
    before = p.read_bytes()

    def bad(s: dict) -> None:
        s["n"] = 999
        raise KeyError("nope")

    with pytest.raises(KeyError):
        untorn.update_json(p, bad)
    assert p.read_bytes() == before
    # And the lock was released.
    with untorn.lock(p, blocking=False):
        pass


def test_invalid_json_is_never_replaced(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text('{"n": 1,')
    with pytest.raises(untorn.InvalidContentError) as ei:
        untorn.update_json(p, lambda s: None, default={"n": 0})
    e = ei.value
    assert isinstance(e, ValueError)
    assert e.op == "parse" and e.path == str(p) and e.line == 1
    assert "JSON" in str(e)
    assert p.read_text() == '{"n": 1,'


def test_unchanged_value_writes_nothing(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    untorn.write_json(p, {"n": 1})
    ino = p.stat().st_ino
    untorn.update_json(p, lambda s: None)
    assert p.stat().st_ino == ino  # not replaced


def test_raw_update(tmp_path: Path) -> None:
    p = tmp_path / "queue.txt"
    assert untorn.update(p, lambda old: (old or b"") + b"job 1\n") is True
    assert untorn.update(p, lambda old: old.decode() + "job 2\n") is True
    assert untorn.update(p, lambda old: None) is False
    assert p.read_text() == "job 1\njob 2\n"


def test_update_with_backups(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    for i in range(4):
        untorn.update_json(p, lambda s: s.update(i=i), default={}, backups=2)
    assert len(untorn.backups(p)) == 2


def test_read_json_default(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    d = {"k": [1]}
    got = untorn.read_json(p, default=d)
    assert got == d and got is not d
    assert untorn.read_json(p, default=None) is None
    assert untorn.read_bytes(p, b"") == b""
    assert untorn.read_text(p, "none") == "none"
    with pytest.raises(FileNotFoundError):
        untorn.read_text(p)
