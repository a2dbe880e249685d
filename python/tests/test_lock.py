"""Locks: across processes, with the CLI, timeouts, Ctrl-C, the GIL."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import _workers
import untorn

ctx = multiprocessing.get_context("spawn")


class Holder:
    """A child process holding the lock of `path` until stopped."""

    def __init__(self, path: Path, shared: bool = False) -> None:
        self.ready = ctx.Event()
        self.release = ctx.Event()
        self.proc = ctx.Process(
            target=_workers.hold_lock, args=(str(path), shared, self.ready, self.release)
        )

    def __enter__(self) -> "Holder":
        self.proc.start()
        assert self.ready.wait(30), "the child never took the lock"
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.proc.join(30)


def test_lock_excludes_other_processes(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    with Holder(p):
        with pytest.raises(BlockingIOError) as ei:
            untorn.lock(p, blocking=False)
        e = ei.value
        assert isinstance(e, untorn.LockHeldError) and isinstance(e, untorn.Error)
        assert e.op == "lock" and e.path == str(p) + ".lock" and e.kind == "would_block"
        t0 = time.monotonic()
        with pytest.raises(TimeoutError) as ti:
            untorn.lock(p, timeout=0.3)
        assert 0.25 <= time.monotonic() - t0 < 5
        assert isinstance(ti.value, untorn.LockTimeoutError)
        assert ti.value.kind == "timed_out"
    # Free again once the holder is gone.
    with untorn.lock(p, timeout=5) as lk:
        assert lk.held and not lk.shared
        assert lk.path == Path(str(p) + ".lock")
    assert not lk.held


def test_shared_locks(tmp_path: Path) -> None:
    p = tmp_path / "s"
    with Holder(p, shared=True):
        with untorn.lock(p, shared=True, blocking=False) as lk:
            assert lk.shared
        with pytest.raises(BlockingIOError):
            untorn.lock(p, blocking=False)


def test_wait_returns_when_released(tmp_path: Path) -> None:
    p = tmp_path / "w"
    h = Holder(p)
    with h:
        threading.Timer(0.3, h.release.set).start()
        t0 = time.monotonic()
        with untorn.lock(p, timeout=20):
            waited = time.monotonic() - t0
    assert 0.2 < waited < 10


def test_lock_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        untorn.lock(tmp_path / "x", timeout=-1)
    with pytest.raises(ValueError):
        untorn.lock(tmp_path / "x", timeout=1, blocking=False)


def test_lock_held_by_cli_times_out(tmp_path: Path, untorn_bin: str) -> None:
    """`untorn lock FILE -- ...` in another process makes untorn.lock(FILE, timeout=0.2) raise
    TimeoutError: the same lock file, the same flock."""
    p = tmp_path / "state.json"
    cli = subprocess.Popen(
        [untorn_bin, "lock", str(p), "--", "sh", "-c", "echo locked; exec sleep 2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert cli.stdout is not None and cli.stdout.readline() == "locked\n"
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            untorn.lock(p, timeout=0.2)
        assert time.monotonic() - t0 < 1.5
        with pytest.raises(BlockingIOError):
            untorn.lock(p, blocking=False)
        with pytest.raises(TimeoutError):
            untorn.update_json(p, lambda s: None, default={}, timeout=0.2)
    finally:
        cli.wait(10)
    assert cli.returncode == 0
    with untorn.lock(p, timeout=5):
        pass


def test_cli_is_excluded_by_python_lock(tmp_path: Path, untorn_bin: str) -> None:
    p = tmp_path / "state.json"
    with untorn.lock(p):
        r = subprocess.run([untorn_bin, "lock", "--nonblock", str(p), "--", "true"], timeout=30)
        assert r.returncode == 10  # the lock is held by another process
        r = subprocess.run([untorn_bin, "write", str(p) + ".other", "x"], timeout=30)
        assert r.returncode == 0
    r = subprocess.run([untorn_bin, "lock", "--nonblock", str(p), "--", "true"], timeout=30)
    assert r.returncode == 0


@pytest.mark.parametrize(
    "call",
    [
        "untorn.lock(sys.argv[1])",
        # untorn itself waits (a group commit may lock again after the write), running the
        # signal handlers on this thread every 20 ms.
        "untorn.append(sys.argv[1], 'never')",
    ],
)
def test_ctrl_c_interrupts_a_wait_without_timeout(tmp_path: Path, call: str) -> None:
    """A wait with no timeout still answers Ctrl-C (the GIL is released while it waits)."""
    p = tmp_path / "busy"
    with Holder(p):
        code = (
            "import sys, untorn\n"
            "print('waiting', flush=True)\n"
            "try:\n"
            f"    {call}\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n"
            "    sys.exit(42)\n"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code, str(p)], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdout.readline() == "waiting\n"
        if "append" in call:
            # An append that finds the lock taken announces its wait in the lock file (its
            # time gets 424242 ns past the millisecond) before it waits: Ctrl-C then comes
            # during the wait, not before it.
            lock = Path(str(p) + ".lock")
            deadline = time.monotonic() + 10
            while lock.stat().st_mtime_ns % 1_000_000 != 424_242:
                assert time.monotonic() < deadline, "the append never waited"
                time.sleep(0.005)
        time.sleep(0.3)
        t0 = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=10)
        assert child.returncode == 42, out
        assert out == "interrupted\n"
        assert time.monotonic() - t0 < 3
        # The abandoned wait did not take the lock: the holder still has it, and nobody else
        # will once it lets go.
        with pytest.raises(BlockingIOError):
            untorn.lock(p, blocking=False)
        assert not p.exists(), "an append interrupted in its wait appended nothing"
    with untorn.lock(p, timeout=5):
        pass


def test_gil_released_while_waiting(tmp_path: Path) -> None:
    """Another Python thread keeps running while one waits for a lock."""
    p = tmp_path / "g"
    counter = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal counter
        while not stop.is_set():
            counter += 1

    with Holder(p):
        t = threading.Thread(target=spin)
        t.start()
        try:
            before = counter
            with pytest.raises(TimeoutError):
                untorn.lock(p, timeout=0.5)
            progressed = counter - before
        finally:
            stop.set()
            t.join()
    assert progressed > 1000
