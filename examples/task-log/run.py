"""A task log rewritten by several agents (see run.sh): four processes take tasks from
tasks.json and mark each done. untorn.update_json holds the file's lock (tasks.json.lock, the
one `untorn edit` takes) for each read-modify-write.

What it replaces:
    with open("tasks.json") as f: tasks = json.load(f)
    ...change tasks...
    with open("tasks.json", "w") as f: json.dump(tasks, f)   # lost updates; torn on a crash
"""

import multiprocessing
import os
import tempfile

import untorn


def agent(name: str) -> None:
    while True:
        taken = []

        def take(state):
            for t in state["tasks"]:
                if t["status"] == "todo":
                    t["status"] = f"done by {name}"
                    taken.append(t["id"])
                    return

        untorn.update_json("tasks.json", take)
        if not taken:
            return


def main() -> None:
    os.chdir(tempfile.mkdtemp())
    untorn.write_json("tasks.json", {"tasks": [{"id": i, "status": "todo"} for i in range(1, 13)]})
    agents = [multiprocessing.Process(target=agent, args=(n,)) for n in ["ada", "bob", "cy", "dee"]]
    for a in agents:
        a.start()
    for a in agents:
        a.join()
        assert a.exitcode == 0
    tasks = untorn.read_json("tasks.json")["tasks"]
    assert all(t["status"].startswith("done by ") for t in tasks), tasks
    print("ok: 12 tasks, each done once, by 4 agents")


if __name__ == "__main__":
    main()
