"""The cookbook (examples/): every recipe's shell and Python form runs and ends with `ok:`.

The shell forms need `untorn` (the CLI this suite uses) and `jq`, `flock`, `setsid` on PATH;
the Python forms run with this interpreter (the installed package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, _skip_or_fail

EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())


def test_every_recipe_has_both_forms() -> None:
    assert len(EXAMPLES) >= 6
    for d in EXAMPLES:
        assert (d / "run.sh").is_file() and os.access(d / "run.sh", os.X_OK), d
        assert (d / "run.py").is_file(), d
        assert f"]({d.name}/)" in (ROOT / "examples" / "README.md").read_text(), d


@pytest.mark.parametrize("recipe", EXAMPLES, ids=lambda p: p.name)
def test_shell(recipe: Path, untorn_bin: str) -> None:
    for tool in ["jq", "flock", "setsid"]:
        if shutil.which(tool) is None:
            _skip_or_fail(f"{tool} is not installed (./scripts/test installs it)")
    env = dict(os.environ, PATH=f"{Path(untorn_bin).parent}:{os.environ['PATH']}")
    out = subprocess.run(
        ["bash", str(recipe / "run.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().splitlines()[-1].startswith("ok: "), out.stdout


@pytest.mark.parametrize("recipe", EXAMPLES, ids=lambda p: p.name)
def test_python(recipe: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(recipe / "run.py")], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().splitlines()[-1].startswith("ok: "), out.stdout
