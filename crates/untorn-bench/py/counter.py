#!/usr/bin/env python3
"""The Python side of untorn's contended-counter benchmark (src/bin/counter.rs).

    counter.py filelock|fcntl PATH N
    counter.py check filelock        # exit 0 if the filelock package imports

Prints "ready", waits for one line on stdin (the start signal, so that interpreter start-up is
not timed), makes N locked increments of the JSON counter {"count": N} at PATH, prints "done"
and exits. One increment is what a careful Python script does by hand:

    lock PATH.lock  (filelock.FileLock, or fcntl.flock on the same sidecar file)
      read and parse PATH, add 1
      tempfile.mkstemp(dir=same directory), write, flush, os.fsync
      os.replace(temp, PATH)
      os.fsync of the directory (os.open(dir, O_RDONLY))
    unlock

That is the same protocol untorn runs (temp file, fsync, rename, directory fsync, under an
exclusive flock(2) of PATH.lock), so the two stacks can be compared one to one.
"""

import fcntl
import json
import os
import sys
import tempfile


def write_atomic(path, text, dirname):
    fd, tmp = tempfile.mkstemp(
        dir=dirname, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(dirname, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def increment(path, dirname):
    with open(path) as f:
        value = json.load(f)
    value["count"] += 1
    write_atomic(path, json.dumps(value) + "\n", dirname)


def main(argv):
    if len(argv) == 3 and argv[1] == "check" and argv[2] == "filelock":
        import filelock  # noqa: F401  (ImportError = exit 1 with a traceback)

        print(filelock.__version__)
        return 0
    if len(argv) != 4 or argv[1] not in ("filelock", "fcntl"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, path, n = argv[1], argv[2], int(argv[3])
    dirname = os.path.dirname(os.path.abspath(path))
    lock_path = path + ".lock"

    if mode == "filelock":
        try:
            from filelock import FileLock
        except ImportError:
            print(
                "counter.py: the Python package 'filelock' is not installed: "
                "pip install filelock",
                file=sys.stderr,
            )
            return 3
        # As filelock's documentation shows it: one lock object, `with lock:` around each
        # change. Defaults: wait forever, poll every 50 ms while another process holds it.
        lock = FileLock(lock_path)

        def step():
            with lock:
                increment(path, dirname)

    else:

        def step():
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                increment(path, dirname)
            finally:
                os.close(fd)  # releases the lock

    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(n):
        step()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
