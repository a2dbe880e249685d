"""Shared fixtures of the untorn Python tests."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _skip_or_fail(reason: str) -> None:
    """Skips, as the Rust tests do (`SKIPPED: reason`), unless UNTORN_REQUIRE_ALL=1 (CI), which
    makes every skip a failure."""
    if os.environ.get("UNTORN_REQUIRE_ALL") == "1":
        pytest.fail(f"UNTORN_REQUIRE_ALL=1 but: {reason}")
    print(f"SKIPPED: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture
def untorn_bin() -> str:
    """The `untorn` command: $UNTORN_BIN, else target/debug/untorn (scripts/test-python builds
    it), else target/release/untorn, else `untorn` on PATH."""
    candidates = [
        os.environ.get("UNTORN_BIN"),
        str(ROOT / "target" / "debug" / "untorn"),
        str(ROOT / "target" / "release" / "untorn"),
        shutil.which("untorn"),
    ]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    _skip_or_fail("the untorn CLI is not built (cargo build -p untorn-cli)")
    raise AssertionError("unreachable")


@pytest.fixture
def require_root() -> None:
    if os.geteuid() != 0:
        _skip_or_fail("needs root (to drop privileges to nobody)")


def temps(directory: Path) -> list:
    """untorn temp files (`.NAME.untorn-XXXXXXXX.tmp`) in `directory`."""
    return sorted(n for n in os.listdir(directory) if ".untorn-" in n and n.endswith(".tmp"))
