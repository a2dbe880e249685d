"""A handoff JSON bumped by two processes (see run.sh): each bumps the counter 50 times; the
count is exactly 100. untorn.update_json excludes the other process, `untorn edit` and
`flock handoff.json.lock` alike.

What it replaces:
    with filelock.FileLock("handoff.json.lock"):
        data = json.load(open("handoff.json")); data["turn"] += 1
        with atomicwrites.atomic_write("handoff.json", overwrite=True) as f: json.dump(data, f)
"""

import json
import multiprocessing
import os
import tempfile

import untorn


def worker(name: str) -> None:
    for _ in range(50):
        untorn.update_json("handoff.json", lambda s: s.update(turn=s["turn"] + 1, last=name))


def main() -> None:
    os.chdir(tempfile.mkdtemp())
    untorn.write_json("handoff.json", {"turn": 0, "last": None})
    ps = [multiprocessing.Process(target=worker, args=(n,)) for n in ["left", "right"]]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
        assert p.exitcode == 0
    state = untorn.read_json("handoff.json")
    assert state["turn"] == 100, state
    # The lock alone, for a longer critical section (the same lock as `untorn lock`): read
    # the file directly inside it (untorn.read_json would wait for the shared lock, which this
    # very process holds exclusively), and write it with untorn.write_json (which takes none).
    with untorn.lock("handoff.json", timeout=5):
        with open("handoff.json") as f:
            state = json.load(f)
        state["turn"] += 1
        untorn.write_json("handoff.json", state)
    assert untorn.read_json("handoff.json")["turn"] == 101
    print("ok: 2 x 50 bumps = 100, plus one under untorn.lock")


if __name__ == "__main__":
    main()
