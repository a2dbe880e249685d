"""A progress log that survives a crash (see run.sh): a worker appends one JSON record per
step (untorn.append_jsonl: durable when it returns); it is killed with SIGKILL half way; a new
run resumes after the last complete record. A torn record (made by hand here) is cut before
the next append, with an untorn.TornTailWarning.

What it replaces:
    with open("progress.jsonl", "a") as f: f.write(json.dumps({"step": n}) + "\\n")
"""

import multiprocessing
import os
import signal
import tempfile
import time
import warnings

import untorn


def work() -> None:
    done = untorn.read_jsonl("progress.jsonl", default=[])
    start = done[-1]["step"] + 1 if done else 1
    for n in range(start, 41):
        time.sleep(0.01)  # the step's work
        untorn.append_jsonl("progress.jsonl", {"step": n})


def main() -> None:
    os.chdir(tempfile.mkdtemp())
    p = multiprocessing.Process(target=work)
    p.start()
    while len(untorn.read_jsonl("progress.jsonl", default=[])) < 10:
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    print("killed after", len(untorn.read_jsonl("progress.jsonl", default=[])), "steps")
    with open("progress.jsonl", "a") as f:  # a record torn by a crash
        f.write('{"step": ')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        work()
    assert any(issubclass(w.category, untorn.TornTailWarning) for w in caught)
    steps = [r["step"] for r in untorn.read_jsonl("progress.jsonl")]
    assert steps == list(range(1, 41)), steps
    print("ok: steps 1..40, each once, across a SIGKILL and a torn record")


if __name__ == "__main__":
    main()
