"""The package's surface (issue 17): untorn.write, dir(untorn), the documented API, and
untorn.output_path for programs that can only write to a path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import untorn
from conftest import ROOT, temps


def test_write_takes_text_or_bytes(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    untorn.write(p, '{"count": 1}')
    assert p.read_text() == '{"count": 1}'
    untorn.write(p, b"\x00raw")
    assert p.read_bytes() == b"\x00raw"
    untorn.write(p, "é", encoding="latin-1")
    assert p.read_bytes() == b"\xe9"
    untorn.write(p, "new", backups=2)
    assert len(untorn.backups(p)) == 1
    with pytest.raises(FileExistsError):
        untorn.write(p, "x", no_clobber=True)
    assert temps(tmp_path) == []


def test_dir_lists_the_api_not_the_imports() -> None:
    names = dir(untorn)
    for leaked in ["os", "json", "Path", "codecs", "copy", "warnings", "annotations", "Any"]:
        assert leaked not in names, leaked
    for name in ["write", "write_json", "open", "lock", "transaction", "output_path", "Error"]:
        assert name in names, name
    assert set(untorn.__all__) <= set(names)
    for name in untorn.__all__:
        assert hasattr(untorn, name), name


def test_the_readme_documents_every_public_name() -> None:
    readme = (ROOT / "python" / "README.md").read_text()
    documented = set(re.findall(r"`untorn\.([A-Za-z_]+)", readme))
    documented |= set(re.findall(r"^#+ .*?`([A-Za-z_]+)", readme, re.M))
    missing = sorted((set(untorn.__all__) | {"open"}) - documented)
    assert not missing, f"python/README.md does not document: {missing}"
    assert len(readme.splitlines()) > 150, "the whole API, not an overview"


def test_output_path_commits_what_the_program_wrote(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text('{"old": true}')
    os.chmod(target, 0o640)
    with untorn.output_path(target, backups=1) as out:
        assert out.name == "report.json" and out.parent.parent == tmp_path
        assert out.parent.name.startswith(".report.json.untorn-")
        subprocess.run(
            ["sh", "-c", 'echo \'{"new": true}\' > "$1"', "sh", str(out)], check=True
        )
        assert target.read_text() == '{"old": true}', "not before the block ends"
    assert target.read_text() == '{"new": true}\n'
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert len(untorn.backups(target)) == 1
    left = sorted(os.listdir(tmp_path))
    assert len(left) == 2 and left[0] == "report.json", left  # and its backup


def test_output_path_changes_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.yaml"
    target.write_text("a: 1\n")
    # The program fails: CalledProcessError, nothing changed, nothing left.
    with pytest.raises(subprocess.CalledProcessError):
        with untorn.output_path(target) as out:
            subprocess.run(["sh", "-c", 'echo "b: 2" > "$1"; exit 3', "sh", str(out)], check=True)
    # Invalid output for the target's format.
    with pytest.raises(untorn.InvalidContentError):
        with untorn.output_path(target) as out:
            out.write_text("a: [unclosed\n")
    # No output at all.
    with pytest.raises(FileNotFoundError):
        with untorn.output_path(target):
            pass
    # An interrupt.
    with pytest.raises(KeyboardInterrupt):
        with untorn.output_path(target) as out:
            out.write_text("b: 2\n")
            raise KeyboardInterrupt
    assert target.read_text() == "a: 1\n"
    assert os.listdir(tmp_path) == ["out.yaml"]
    with pytest.raises(ValueError):
        with untorn.output_path(target, check="xml"):
            pass
    # check=None takes anything.
    with untorn.output_path(target, check=None) as out:
        out.write_text("not: [yaml")
    assert target.read_text() == "not: [yaml"


def test_module_help_mentions_no_private_module() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import untorn; print(sorted(dir(untorn)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "'os'" not in out.stdout
