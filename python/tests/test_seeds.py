"""The seeds' own patterns, as the people who hit these bugs write them in Python."""

from __future__ import annotations

import multiprocessing
import os
import warnings
from pathlib import Path

import pytest

import _workers
import untorn
from conftest import temps

ctx = multiprocessing.get_context("spawn")


def test_write_json_then_read_back_with_default(tmp_path: Path) -> None:
    """A task registry: read with a default on first run, write, read back."""
    p = tmp_path / "tasks.json"
    tasks = untorn.read_json(p, default={"tasks": []})
    assert tasks == {"tasks": []}
    tasks["tasks"].append({"id": 1, "status": "todo"})
    untorn.write_json(p, tasks)
    again = untorn.read_json(p, default={"tasks": []})
    assert again == {"tasks": [{"id": 1, "status": "todo"}]}
    assert p.read_text().endswith("\n")


def test_append_to_progress_log(tmp_path: Path) -> None:
    """A progress log: one durable line per step; a torn tail (a crash mid-append) is left out
    of reads and cut off by the next append, with a warning."""
    p = tmp_path / "progress.log"
    for i in range(3):
        untorn.append(p, f"step {i} done")
    untorn.append(p, b"step 3 done\n")
    assert untorn.read_lines(p) == [f"step {i} done" for i in range(4)]
    with open(p, "ab") as f:  # what a power cut in the middle of an append can leave
        f.write(b"\0" * 9)
    log = untorn.read_log(p)
    assert len(log.records) == 4
    assert log.torn is not None and log.torn.reason == "zeros" and log.torn.junk_len == 9
    with pytest.warns(untorn.TornTailWarning, match="progress.log"):
        untorn.append(p, "step 4 done")
    assert untorn.tail(p, 2) == ["step 3 done", "step 4 done"]
    assert p.read_text().count("step 4") == 1
    assert untorn.append_lines(p, ["a", "b"]) == 4
    with pytest.raises(ValueError):
        untorn.append(p, "two\nlines")


def test_append_keeps_a_last_line_without_newline(tmp_path: Path) -> None:
    """Issue 13: write_text adds no newline; the next append keeps that line and ends it."""
    p = tmp_path / "progress.log"
    untorn.write_text(p, "step 1 done")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is cut, so no warning
        untorn.append(p, "step 2 done")
    assert p.read_text() == "step 1 done\nstep 2 done\n"


def test_append_jsonl_refuses_a_text_file(tmp_path: Path) -> None:
    """Issue 13: a text file appended to as JSON Lines is refused, naming the line; nothing is
    cut or appended."""
    p = tmp_path / "notes.txt"
    text = "".join(f"note {i}\n" for i in range(1, 1001))
    p.write_text(text)
    with pytest.raises(untorn.InvalidContentError, match="line 1000"):
        untorn.append_jsonl(p, {"a": 1})
    with pytest.raises(untorn.InvalidContentError, match="line 1000"):
        untorn.repair(p, jsonl=True)
    with pytest.raises(untorn.InvalidContentError):
        untorn.read_jsonl(p)
    assert p.read_text() == text


def test_jsonl_events_from_many_processes(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    with ctx.Pool(4) as pool:
        pool.starmap(_workers.append_many, [(str(p), w, 50) for w in range(4)])
    events = untorn.read_jsonl(p)
    assert len(events) == 200
    for w in range(4):
        assert [e["i"] for e in events if e["who"] == w] == list(range(50))
    with open(p, "ab") as f:
        f.write(b'{"who": 9, "i"')
    assert len(untorn.read_jsonl(p)) == 200
    torn = untorn.repair(p, jsonl=True)
    assert torn is not None and torn.junk_len > 0
    assert untorn.repair(p, jsonl=True) is None
    assert untorn.read_jsonl(tmp_path / "none.jsonl", default=[]) == []


def test_back_up_then_restore(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    untorn.write_json(p, {"version": 1}, backups=5)
    untorn.write_json(p, {"version": 2}, backups=5)
    untorn.write_json(p, {"version": 3}, backups=5)
    bs = untorn.backups(p)
    assert [untorn.read_json(b.path)["version"] for b in bs] == [2, 1]  # newest first
    assert bs[0].time >= bs[1].time and bs[0].size > 0
    r = untorn.restore(p)
    assert untorn.read_json(p) == {"version": 2}
    assert r.source == bs[0]
    assert r.displaced is not None and untorn.read_json(r.displaced.path) == {"version": 3}
    untorn.restore(p, name=r.displaced.name)  # undo the restore
    assert untorn.read_json(p) == {"version": 3}
    untorn.restore(p, nth=len(untorn.backups(p)))  # the oldest
    assert untorn.read_json(p) == {"version": 1}
    with pytest.raises(FileNotFoundError):
        untorn.restore(tmp_path / "nobackups.json")
    b = untorn.backup(p, keep=10)
    assert b.path.read_bytes() == p.read_bytes()


def test_corrupted_file_falls_back_to_backup(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    untorn.write_json(p, {"ok": 1}, backups=3)
    untorn.write_json(p, {"ok": 2}, backups=3)
    p.write_text('{"ok": 3, "trunc')  # another program corrupts it
    r = untorn.read_valid(p)
    assert r.json() == {"ok": 1} and r.backup is not None and not r.restored
    assert isinstance(r.rejected, untorn.InvalidContentError)
    with pytest.raises(untorn.InvalidContentError):
        untorn.check(p)
    r = untorn.read_valid(p, "json", restore=True)
    assert r.restored and untorn.read_json(p) == {"ok": 1}
    untorn.check(p)
    # A custom validator: a function of the bytes.
    r = untorn.read_valid(p, lambda b: b"ok" in b)
    assert r.backup is None
    with pytest.raises(untorn.InvalidContentError):  # every version rejected
        untorn.read_valid(p, lambda b: False)
    with pytest.raises(FileNotFoundError):
        untorn.read_valid(tmp_path / "missing.json")


def test_batch_of_three_all_change(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.json", tmp_path / "b.txt", tmp_path / "c.txt"
    untorn.write_json(a, {"v": 1})
    untorn.write_text(b, "b1\n")
    untorn.write_text(c, "c1\n")
    with untorn.transaction() as tx:
        tx.write_json(a, {"v": 2})
        tx.write(b, "b2\n")
        tx.remove(c)
    assert untorn.read_json(a) == {"v": 2}
    assert b.read_text() == "b2\n"
    assert not c.exists()
    assert tx.committed is not None and tx.committed.removed == [c]
    with untorn.transaction() as tx:
        tx.rename(b, c)
    assert c.read_text() == "b2\n" and not b.exists()
    assert temps(tmp_path) == []


def test_batch_of_three_none_change_when_the_third_fails(tmp_path: Path) -> None:
    """Three files that all change or none does: the third is in a missing directory."""
    a, b = tmp_path / "a.json", tmp_path / "b.txt"
    untorn.write_json(a, {"v": 1})
    untorn.write_text(b, "b1\n")
    before = (a.read_bytes(), b.read_bytes())
    with pytest.raises(FileNotFoundError):
        with untorn.transaction() as tx:
            tx.write_json(a, {"v": 2})
            tx.write(b, "b2\n")
            tx.write(tmp_path / "missing-dir" / "c.txt", "c2\n")
    assert tx.finished
    assert (a.read_bytes(), b.read_bytes()) == before
    assert temps(tmp_path) == []
    assert not (tmp_path / "missing-dir").exists()


def test_batch_discarded_on_any_exception(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    untorn.write_text(a, "old")
    with pytest.raises(KeyboardInterrupt):
        with untorn.transaction() as tx:
            tx.write(a, "new")
            raise KeyboardInterrupt
    assert a.read_text() == "old"
    assert temps(tmp_path) == []
    tx2 = untorn.transaction()
    tx2.write(a, "x")
    tx2.write(a.with_name("b.txt"), "y")
    with pytest.raises(ValueError):
        tx2.write(a, "twice")  # the same file twice in one transaction
    tx2.discard()
    with pytest.raises(ValueError):
        tx2.commit()
    assert a.read_text() == "old"


def test_recover_restores_text_that_is_no_longer_utf8(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    untorn.write_bytes(p, b"first\n", backups=2)
    untorn.write_bytes(p, b"second\n", backups=2)
    p.write_bytes(b"\xff\xfe garbage")
    (tmp_path / "other.json").write_text("{")
    done = untorn.recover(tmp_path, restore_invalid="utf8")
    assert [(a.action, a.path) for a in done] == [("restored", p)]
    assert p.read_bytes() == b"first\n"
    assert (tmp_path / "other.json").read_text() == "{"


def test_recover_cleans_orphans_and_restores_invalid(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    untorn.write_json(p, {"good": True}, backups=2)
    untorn.write_json(p, {"good": "also"}, backups=2)
    orphan = tmp_path / ".state.json.untorn-1a2b3c4d.tmp"
    orphan.write_text("half")
    os.utime(orphan, (1, 1))
    p.write_text("{broken")
    plan = untorn.recover(tmp_path, restore_invalid="json", dry_run=True)
    assert {a.action for a in plan} == {"removed_temp", "restored"}
    assert orphan.exists() and p.read_text() == "{broken"
    done = untorn.recover(tmp_path, restore_invalid="json")
    assert [a.action for a in done] == ["removed_temp", "restored"]
    restored = done[1]
    assert restored.path == p and restored.backup is not None and restored.reason
    assert not orphan.exists()
    assert untorn.read_json(p) == {"good": True}
    cleaned = untorn.clean(tmp_path)
    assert cleaned.removed == []
