"""A YAML work queue that five workers claim from (see run.sh): each worker pops the first
job under the queue's lock (untorn.update_yaml) and records its claim with a durable append.

What it replaces:
    with filelock.FileLock("queue.yaml.lock"):
        q = yaml.safe_load(open("queue.yaml")); job = q.pop(0)
        yaml.safe_dump(q, open("queue.yaml", "w"))     # truncated in place: torn on a crash
"""

import multiprocessing
import os
import tempfile

import untorn


def worker(name: str) -> None:
    while True:
        got = []

        def pop(queue):
            if queue:
                got.append(queue.pop(0))

        untorn.update_yaml("queue.yaml", pop)
        if not got:
            return
        untorn.append("claims.log", f"{name} {got[0]}")


def main() -> None:
    os.chdir(tempfile.mkdtemp())
    untorn.write_yaml("queue.yaml", [f"job-{i:02}" for i in range(1, 21)])
    ps = [multiprocessing.Process(target=worker, args=(f"w{i}",)) for i in range(1, 6)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
        assert p.exitcode == 0
    claimed = sorted(line.split()[1] for line in untorn.read_lines("claims.log"))
    assert claimed == [f"job-{i:02}" for i in range(1, 21)], claimed
    assert untorn.read_yaml("queue.yaml") == []
    print("ok: 20 jobs, each claimed once by one of 5 workers")


if __name__ == "__main__":
    main()
