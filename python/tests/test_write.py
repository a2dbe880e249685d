"""Atomic writes: write_bytes/text/json/yaml/toml and untorn.open."""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import untorn
from conftest import temps


def test_write_bytes_and_text(tmp_path: Path) -> None:
    p = tmp_path / "a.bin"
    untorn.write_bytes(p, b"\x00\x01hello")
    assert p.read_bytes() == b"\x00\x01hello"
    untorn.write_bytes(str(p), bytearray(b"again"))
    assert p.read_bytes() == b"again"
    untorn.write_bytes(p, memoryview(b"view"))
    assert p.read_bytes() == b"view"
    untorn.write_text(p, "héllo")
    assert p.read_text("utf-8") == "héllo"
    untorn.write_text(p, "héllo", encoding="latin-1")
    assert p.read_bytes() == "héllo".encode("latin-1")
    with pytest.raises(TypeError):
        untorn.write_bytes(p, "str is not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        untorn.write_text(p, b"bytes are not str")  # type: ignore[arg-type]
    assert temps(tmp_path) == []


def test_write_json_format(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    obj = {"b": 1, "a": [1, 2, {"c": None}], "é": "ü", "empty": {}, "list": []}
    untorn.write_json(p, obj)
    text = p.read_text("utf-8")
    assert text == json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    assert text.endswith("}\n")
    assert '  "b": 1' in text  # two-space indentation, key order kept
    # The same bytes as untorn's own renderer (the CLI's and the Rust library's).
    assert p.read_bytes() == untorn._untorn.render("json", json.dumps(obj), str(p))
    assert untorn.read_json(p) == obj


def test_write_json_refuses_nan_and_unserialisable(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    untorn.write_json(p, {"ok": 1})
    with pytest.raises(ValueError):
        untorn.write_json(p, {"x": math.nan})
    with pytest.raises(TypeError):
        untorn.write_json(p, {"x": object()})
    untorn.write_json(p, {"s": {1, 2}}, default=sorted)
    assert untorn.read_json(p) == {"s": [1, 2]}


def test_keeps_mode_and_sets_perm(tmp_path: Path) -> None:
    p = tmp_path / "secret"
    untorn.write_text(p, "a", perm=0o600)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    untorn.write_text(p, "b")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600  # a replaced file keeps its mode
    with pytest.raises(ValueError):
        untorn.write_text(p, "c", perm=0o77777)


def test_no_clobber(tmp_path: Path) -> None:
    p = tmp_path / "run.pid"
    untorn.write_text(p, "1", no_clobber=True)
    with pytest.raises(FileExistsError) as ei:
        untorn.write_text(p, "2", no_clobber=True)
    assert isinstance(ei.value, untorn.AlreadyExistsError)
    assert p.read_text() == "1"
    assert temps(tmp_path) == []


def test_symlink_followed(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    link = tmp_path / "link.json"
    untorn.write_json(target, 1)
    link.symlink_to("real.json")
    untorn.write_json(link, 2)
    assert link.is_symlink()
    assert untorn.read_json(target) == 2
    with pytest.raises(untorn.Error) as ei:
        untorn.write_json(link, 3, symlinks="refuse")
    assert ei.value.kind == "symlink"
    assert untorn.read_json(target) == 2


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        untorn.write_text(tmp_path / "a", "x", durability="sometimes")
    with pytest.raises(ValueError):
        untorn.write_text(tmp_path / "a", "x", symlinks="maybe")
    untorn.write_text(tmp_path / "a", "x", durability="none")
    untorn.write_text(tmp_path / "a", "y", durability="file")
    assert (tmp_path / "a").read_text() == "y"


def test_yaml_and_toml(tmp_path: Path) -> None:
    y = tmp_path / "queue.yaml"
    untorn.write_yaml(y, {"jobs": ["build", "test"], "n": 2})
    assert untorn.read_yaml(y) == {"jobs": ["build", "test"], "n": 2}
    untorn.check(y)  # valid YAML by extension
    t = tmp_path / "conf.toml"
    untorn.write_toml(t, {"title": "x", "owner": {"name": "t", "n": 1}})
    assert untorn.read_toml(t) == {"title": "x", "owner": {"name": "t", "n": 1}}
    t.write_text('when = 1979-05-27T07:32:00Z\n')
    assert untorn.read_toml(t) == {"when": "1979-05-27T07:32:00Z"}
    n = untorn.update_yaml(y, lambda q: q["jobs"].append("deploy"))
    assert n["jobs"] == ["build", "test", "deploy"]
    assert untorn.read_yaml(y)["jobs"][-1] == "deploy"
    y.write_text("jobs: [unclosed\n")
    with pytest.raises(untorn.InvalidContentError) as ei:
        untorn.read_yaml(y)
    assert ei.value.line is not None


# -- untorn.open ------------------------------------------------------------------------------


def test_open_commits_on_clean_exit(tmp_path: Path) -> None:
    p = tmp_path / "report.csv"
    p.write_text("old\n")
    with untorn.open(p, "w") as f:
        f.write("a,b\n")
        print("c,d", file=f)
        f.writelines(["e\n", "f\n"])
        assert p.read_text() == "old\n"  # nothing visible before the commit
    assert f.closed
    assert p.read_text() == "a,b\nc,d\ne\nf\n"
    assert temps(tmp_path) == []


def test_open_binary_and_json_dump(tmp_path: Path) -> None:
    p = tmp_path / "blob"
    with untorn.open(p, "wb") as f:
        assert f.write(b"\x00" * 100_000) == 100_000
        f.write(bytearray(b"end"))
        with pytest.raises(TypeError):
            f.write("text")
    assert p.read_bytes() == b"\x00" * 100_000 + b"end"
    j = tmp_path / "x.json"
    with untorn.open(j) as f:
        json.dump({"a": 1}, f)
    assert json.loads(j.read_text()) == {"a": 1}


def test_open_discards_on_exception(tmp_path: Path) -> None:
    p = tmp_path / "state.txt"
    p.write_text("old\n")
    with pytest.raises(RuntimeError):
        with untorn.open(p, "w", temp="named") as f:
            f.write("new\n")
            assert len(temps(tmp_path)) == 1  # the named temp exists while writing
            raise RuntimeError("boom")
    assert p.read_text() == "old\n"
    assert temps(tmp_path) == []


def test_keyboard_interrupt_in_open_leaves_old_file(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    untorn.write_json(p, {"v": "old"})
    for temp in ("named", "auto"):
        with pytest.raises(KeyboardInterrupt):
            with untorn.open(p, "w", temp=temp) as f:
                f.write('{"v": "new, but only half')
                raise KeyboardInterrupt
        assert untorn.read_json(p) == {"v": "old"}
        assert temps(tmp_path) == []


def test_real_sigint_in_open_leaves_old_file(tmp_path: Path) -> None:
    """A real SIGINT (Python's handler raises KeyboardInterrupt) in another process."""
    p = tmp_path / "state.json"
    untorn.write_json(p, {"v": "old"})
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import _workers; "
        "_workers.interrupted_writer(sys.argv[2])"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(p)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.stdout == "writing\n"
    assert "KeyboardInterrupt" in r.stderr
    assert r.returncode != 0
    assert untorn.read_json(p) == {"v": "old"}
    assert temps(tmp_path) == []


def test_open_exclusive_mode(tmp_path: Path) -> None:
    p = tmp_path / "new.txt"
    with untorn.open(p, "x") as f:
        f.write("first")
    with pytest.raises(FileExistsError):
        with untorn.open(p, "x") as f:
            f.write("second")
    assert p.read_text() == "first"
    assert temps(tmp_path) == []


def test_open_modes_and_encoding(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    for bad in ("r", "a", "w+", "rb", "wtb"):
        with pytest.raises(ValueError):
            untorn.open(p, bad)
    with pytest.raises(ValueError):
        untorn.open(p, "wb", encoding="utf-8")
    with untorn.open(p, "w", newline="\r\n") as f:
        f.write("a\nb\n")
    assert p.read_bytes() == b"a\r\nb\r\n"
    with untorn.open(p, "w", encoding="utf-16") as f:
        f.write("hé")
        f.write("llo")
    assert p.read_bytes().decode("utf-16") == "héllo"  # one BOM, not one per write


def test_close_commits_and_closed_file_refuses_writes(tmp_path: Path) -> None:
    p = tmp_path / "c.txt"
    f = untorn.open(p)
    f.write("x")
    f.close()
    assert p.read_text() == "x"
    with pytest.raises(ValueError):
        f.write("y")
    f.close()  # again: nothing
    g = untorn.open(p)
    g.write("discarded")
    g.discard()
    g.discard()
    assert p.read_text() == "x"


def test_garbage_collected_writer_is_discarded(tmp_path: Path) -> None:
    p = tmp_path / "gc.txt"
    p.write_text("old")
    f = untorn.open(p, temp="named")
    f.write("new")
    assert len(temps(tmp_path)) == 1
    del f
    gc.collect()
    assert p.read_text() == "old"
    assert temps(tmp_path) == []


def test_target_and_temp_paths(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    with untorn.open(p, temp="named") as f:
        assert f.target_path == p
        assert f.temp_path is not None
        assert untorn.temp_file_target(f.temp_path.name) == Path("t.txt")
    assert untorn.temp_file_target("t.txt") is None
    os.remove(p)


def _fstype(path: Path) -> str:
    """The file system type of the mount holding ``path`` (from /proc/self/mountinfo)."""
    best, kind = "", ""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mnt = fields[4]
            fstype = fields[fields.index("-") + 1]
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best):
                best, kind = mnt, fstype
    return kind


def test_writes_return_the_durability_achieved(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    expected = "none" if _fstype(tmp_path) in ("tmpfs", "ramfs") else "full"
    assert untorn.write_bytes(p, b"{}") == expected
    assert untorn.write_json(p, {"a": 1}) == expected
    assert untorn.write_text(p, "{}", durability="none") == "none"
    if expected == "full":
        assert untorn.write(p, "{}", durability="file") == "file"


def test_a_write_on_tmpfs_says_it_will_not_survive_a_power_cut() -> None:
    shm = Path("/dev/shm")
    if _fstype(shm) != "tmpfs" or not os.access(shm, os.W_OK):
        pytest.skip("/dev/shm is not a writable tmpfs here")
    d = Path(tempfile.mkdtemp(dir=shm))
    try:
        assert untorn.write_bytes(d / "f", b"x") == "none"
        assert (d / "f").read_bytes() == b"x"
    finally:
        shutil.rmtree(d)
