#!/usr/bin/env python3
"""untorn against python-atomicwrites and filelock, in one run.

1. A 1 KiB durable write: ``untorn.write_bytes`` against ``atomicwrites.atomic_write`` (which
   also fsyncs the file and its directory on Linux), same directory, same data.
2. A contended counter: N processes each add 1 to a JSON counter M times, with
   ``untorn.update_json`` against ``filelock.FileLock`` + ``json`` + ``atomicwrites`` (the
   usual Python recipe). Both must end at exactly N*M.
3. Appenders at once: 1 and ``--appenders`` processes (default 8) each append ``--records``
   200-byte lines to one log, with ``untorn.append`` against the same by hand
   (``fcntl.flock``, an ``O_APPEND`` write, ``os.fdatasync`` under the lock, as ext4
   ``data=writeback`` needs). Printed: records/s, and each method's rate at P processes over its
   rate at one in the same round (untorn's group commit lets one flush serve several
   processes' records; by hand, P processes pay P flushes). Every log must hold exactly the
   records appended.

Prints the per-operation times and the ratios (> 1: untorn is faster). The counter runs
``--repeats`` times (default 3), untorn and filelock in a fresh random order each time; the
last table gives each repeat's ratio beside the floor it is measured against (filelock's
time per update), the range over the repeats, and PASS only if every repeat reaches the goal
(untorn >= 2x filelock + atomicwrites).

    pip install ./python atomicwrites filelock
    python python/bench/bench.py [--dir DIR] [--writes 300] [--procs 4] [--updates 100] [--repeats 3]
                                 [--appenders 8] [--records 100]
    sudo scripts/bench-python.sh              # the same on a fresh ext4 loop mount (direct I/O)

The numbers depend on the disk's fsync latency far more than on either library: run both on the
same file system (``--dir``), on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from typing import Callable, List

import untorn

try:
    import atomicwrites
    import filelock
except ImportError as e:  # pragma: no cover - a usage error
    sys.exit(f"bench.py needs atomicwrites and filelock: pip install atomicwrites filelock ({e})")


PAYLOAD = os.urandom(512).hex().encode()  # 1 KiB
assert len(PAYLOAD) == 1024


def write_untorn(path: str) -> None:
    untorn.write_bytes(path, PAYLOAD)


def write_atomicwrites(path: str) -> None:
    with atomicwrites.atomic_write(path, mode="wb", overwrite=True) as f:
        f.write(PAYLOAD)


def time_writes(fn: Callable[[str], None], path: str, n: int) -> List[float]:
    fn(path)  # warm up (creates the file)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - t)
    return times


# -- the contended counter (functions run in child processes) ----------------------------------


def bump(state: dict) -> None:
    state["count"] += 1


def counter_untorn(path: str, n: int) -> None:
    for _ in range(n):
        untorn.update_json(path, bump, default={"count": 0})


def counter_filelock(path: str, n: int) -> None:
    lock = filelock.FileLock(path + ".flock")
    for _ in range(n):
        with lock:
            try:
                with open(path) as f:
                    state = json.load(f)
            except FileNotFoundError:
                state = {"count": 0}
            state["count"] += 1
            with atomicwrites.atomic_write(path, overwrite=True) as f:
                json.dump(state, f, indent=2)
                f.write("\n")


def flush_floor(d: str, n: int) -> float:
    """Median seconds of the two flushes every durable atomic update makes, and nothing else:
    a tiny temp written and fsynced, renamed over its target, the directory fsynced (no lock,
    no JSON, one process). No update that makes them can be faster: ``filelock time per update
    / this`` bounds the ratio any such update can reach against filelock + atomicwrites."""
    target = os.path.join(d, "floor.json")
    times = []
    dfd = os.open(d, os.O_RDONLY)
    try:
        for i in range(n):
            t = time.perf_counter()
            tmp = target + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, b'{"count": %d}\n' % i)
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, target)
            os.fsync(dfd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(dfd)
    return statistics.median(times)


def run_counter(fn: Callable[[str, int], None], path: str, procs: int, n: int) -> float:
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=fn, args=(path, n)) for _ in range(procs)]
    t = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t
    if any(w.exitcode != 0 for w in workers):
        sys.exit(f"{fn.__name__}: a worker failed")
    with open(path) as f:
        count = json.load(f)["count"]
    if count != procs * n:
        sys.exit(f"{fn.__name__}: lost updates: {count} != {procs * n}")
    return elapsed


# -- appenders at once (functions run in child processes) -------------------------------------

LINE = b"x" * 199 + b"\n"


def append_untorn(path: str, n: int) -> None:
    for _ in range(n):
        untorn.append(path, LINE)


def append_hand(path: str, n: int) -> None:
    for _ in range(n):
        lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, LINE)
                os.fdatasync(fd)
            finally:
                os.close(fd)
        finally:
            os.close(lock)


def _appender(fn: Callable[[str, int], None], path: str, n: int, go) -> None:
    go.wait()
    fn(path, n)


def run_appenders(fn: Callable[[str, int], None], path: str, procs: int, n: int) -> float:
    """Records/s of `procs` processes appending `n` lines each to a fresh log, timed from a
    start signal given once all have started (Python's start-up is not counted)."""
    with open(path, "wb") as f:
        f.write(LINE)
        os.fsync(f.fileno())
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    workers = [ctx.Process(target=_appender, args=(fn, path, n, go)) for _ in range(procs)]
    for w in workers:
        w.start()
    time.sleep(0.1)
    t = time.perf_counter()
    go.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t
    if any(w.exitcode != 0 for w in workers):
        sys.exit(f"{fn.__name__}: a worker failed")
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    if lines[-1] != b"" or len(lines) - 1 != procs * n + 1 or any(x != LINE[:-1] for x in lines[:-1]):
        sys.exit(f"{fn.__name__}: the log does not hold exactly {procs * n + 1} whole lines")
    return procs * n / elapsed


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:8.3f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="where to write (default: a temp dir under the current dir)")
    ap.add_argument("--writes", type=int, default=300, help="durable writes per library")
    ap.add_argument("--procs", type=int, default=4, help="processes in the counter")
    ap.add_argument("--updates", type=int, default=100, help="increments per process")
    ap.add_argument("--repeats", type=int, default=3, help="runs of the counter (each in a random order)")
    ap.add_argument("--appenders", type=int, default=8, help="processes appending at once")
    ap.add_argument("--records", type=int, default=100, help="lines each appender appends")
    args = ap.parse_args()

    parent = args.dir or os.getcwd()
    with tempfile.TemporaryDirectory(prefix="untorn-bench-", dir=parent) as d:
        print(f"# untorn {untorn.__version__}, atomicwrites {atomicwrites.__version__}, "
              f"filelock {filelock.__version__}, Python {sys.version.split()[0]}")
        print(f"# in {d}")

        # 1. Durable 1 KiB writes, interleaved in rounds so that drift hits both alike.
        tu: List[float] = []
        ta: List[float] = []
        rounds = 5
        for _ in range(rounds):
            tu += time_writes(write_untorn, os.path.join(d, "u.bin"), args.writes // rounds)
            ta += time_writes(write_atomicwrites, os.path.join(d, "a.bin"), args.writes // rounds)
        mu, ma = statistics.median(tu), statistics.median(ta)
        print()
        print(f"1 KiB durable write ({len(tu)} each)          median      mean")
        print(f"  untorn.write_bytes                {fmt_ms(mu)}  {fmt_ms(statistics.mean(tu))}")
        print(f"  atomicwrites.atomic_write         {fmt_ms(ma)}  {fmt_ms(statistics.mean(ta))}")
        print(f"  ratio atomicwrites/untorn (median)  {ma / mu:6.2f}x")

        # 2. The contended counter, repeated, the two stacks in a fresh random order each time.
        n = args.procs * args.updates
        goal = 2.0
        ratios = []
        print()
        print(f"contended counter: {args.procs} processes x {args.updates} increments "
              f"(exact count checked), {args.repeats} repeats")
        for k in range(args.repeats):
            order = [("untorn", counter_untorn), ("filelock", counter_filelock)]
            random.shuffle(order)
            took = {}
            for name, fn in order:
                took[name] = run_counter(fn, os.path.join(d, f"{name}-{k}.json"), args.procs,
                                         args.updates)
            cu, cf = took["untorn"], took["filelock"]
            floor = flush_floor(d, 50)
            ratios.append((cf / cu, cf / n, (cf / n) / floor))
            print(f"  repeat {k + 1} ({' then '.join(nm for nm, _ in order)}): "
                  f"untorn.update_json {fmt_ms(cu / n)} per update, "
                  f"filelock + json + atomicwrites {fmt_ms(cf / n)}: ratio {cf / cu:5.2f}x; "
                  f"the two flushes alone {fmt_ms(floor)}, so no durable update can beat "
                  f"filelock by more than {(cf / n) / floor:5.2f}x here")
        print()
        print("| ratio filelock/untorn (update_json) | "
              + " | ".join(f"repeat {k + 1} (floor)" for k in range(len(ratios)))
              + " | range over repeats | goal | verdict |")
        print("|---|" + "---|" * len(ratios) + "---|---|---|")
        lo = min(r for r, _, _ in ratios)
        hi = max(r for r, _, _ in ratios)
        verdict = "PASS" if all(r >= goal for r, _, _ in ratios) else "FAIL"
        print("| untorn.update_json vs filelock + atomicwrites | "
              + " | ".join(f"{r:.2f} (filelock {f * 1e3:.2f} ms)" for r, f, _ in ratios)
              + f" | {lo:.2f}-{hi:.2f} | >= {goal} | {verdict} |")
        blo = min(b for _, _, b in ratios)
        bhi = max(b for _, _, b in ratios)
        print("| the bound: filelock per update / the two flushes alone | "
              + " | ".join(f"{b:.2f}" for _, _, b in ratios)
              + f" | {blo:.2f}-{bhi:.2f} | | {'forbids the goal' if bhi < goal else 'allows it'} |")

        # 3. Appenders at once: each repeat, 5 rounds of every (method, P) in a random order;
        # scaling is a method's rate at P over its rate at 1 in the same round, the median.
        big = args.appenders
        print()
        print(f"appenders at once: 1 and {big} processes x {args.records} lines of 200 bytes "
              f"(exact content checked), {args.repeats} repeats of 5 rounds; records/s, medians")
        methods = [("untorn.append", append_untorn), ("flock + write + fdatasync", append_hand)]
        scal: dict = {name: [] for name, _ in methods}
        for k in range(args.repeats):
            rates: dict = {}
            for r in range(5):
                runs = [(m, p) for m in methods for p in (1, big)]
                random.shuffle(runs)
                for (name, fn), p in runs:
                    path = os.path.join(d, f"log-{k}-{r}-{fn.__name__}-{p}.txt")
                    rates.setdefault((name, p), []).append(run_appenders(fn, path, p, args.records))
            line = []
            for name, _ in methods:
                sc = statistics.median(a / b for a, b in zip(rates[(name, big)], rates[(name, 1)]))
                scal[name].append(sc)
                line.append(f"{name} {statistics.median(rates[(name, 1)]):6.0f} -> "
                            f"{statistics.median(rates[(name, big)]):6.0f}/s ({sc:.2f}x)")
            print(f"  repeat {k + 1}: " + "; ".join(line))
        print()
        print(f"| records/s of {big} appenders / 1 | "
              + " | ".join(f"repeat {k + 1}" for k in range(args.repeats)) + " | range |")
        print("|---|" + "---|" * args.repeats + "---|")
        for name, _ in methods:
            v = scal[name]
            print(f"| {name} | " + " | ".join(f"{x:.2f}" for x in v)
                  + f" | {min(v):.2f}-{max(v):.2f} |")

if __name__ == "__main__":
    main()
