"""Recovering a directory after a crash (see run.sh): untorn.recover() restores an invalid
file from its newest valid backup and removes an orphaned temp; dry_run=True only reports.
untorn.read_valid() reads the newest valid version without changing anything."""

import os
import tempfile

import untorn


def main() -> None:
    os.chdir(tempfile.mkdtemp())
    untorn.write_json("state.json", {"count": 1})
    untorn.write_json("state.json", {"count": 2}, backups=3)
    untorn.write_json("state.json", {"count": 3}, backups=3)
    with open("state.json", "w") as f:  # a program that writes in place, cut short
        f.write('{"cou')
    with open(".state.json.untorn-0badc0de.tmp", "w") as f:
        f.write("partial")

    good = untorn.read_valid("state.json")  # nothing changes
    assert good.json() == {"count": 2} and good.backup is not None and not good.restored

    plan = untorn.recover(".", restore_invalid="json", dry_run=True)
    assert sorted(a.action for a in plan) == ["removed_temp", "restored"], plan
    assert os.path.exists(".state.json.untorn-0badc0de.tmp")

    untorn.recover(".", restore_invalid="json")
    assert untorn.read_json("state.json") == {"count": 2}
    assert not os.path.exists(".state.json.untorn-0badc0de.tmp")
    print("ok: state.json restored from its newest valid backup, the orphaned temp removed")


if __name__ == "__main__":
    main()
