"""Functions run in child processes (multiprocessing, spawn start method): importable by name."""

from __future__ import annotations

import os
import signal
import sys
import time

import untorn


def bump(state: dict) -> None:
    state["count"] += 1


def count_up(path: str, n: int) -> int:
    """Adds 1 to state["count"] n times, each a locked read-modify-write."""
    for _ in range(n):
        untorn.update_json(path, bump, default={"count": 0})
    return n


def hold_lock(path: str, shared: bool, ready, release) -> None:
    """Takes the lock, says so, and holds it until told to release."""
    with untorn.lock(path, shared=shared):
        ready.set()
        release.wait(30)


def append_many(path: str, who: int, n: int) -> None:
    for i in range(n):
        untorn.append_jsonl(path, {"who": who, "i": i, "pad": "x" * (i % 50)})


def write_as_nobody(path: str, queue) -> None:
    """Drops privileges to nobody, tries to write, and reports the exception's class names."""
    os.setgid(65534)
    os.setuid(65534)
    try:
        untorn.write_text(path, "x")
        queue.put(None)
    except BaseException as e:  # noqa: BLE001 - report whatever it is
        queue.put((type(e).__name__, isinstance(e, PermissionError), isinstance(e, untorn.Error), e.op, e.path))


def interrupted_writer(path: str) -> None:
    """Writes into an atomic file, then gets SIGINT (a real KeyboardInterrupt) mid-write."""
    with untorn.open(path, "w", temp="named") as f:
        f.write("partial new content\n")
        sys.stdout.write("writing\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        f.write("never\n")
