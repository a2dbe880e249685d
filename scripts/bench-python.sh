#!/usr/bin/env bash
# Runs the Python benchmark (python/bench/bench.py: untorn.write_bytes against atomicwrites,
# and the contended update_json counter against filelock + atomicwrites, repeated) on a fresh
# ext4 loop mount (direct I/O; see scripts/lib/loop-ext4.sh), with the package built into
# target/py-venv by scripts/test-python (run it first). Installs atomicwrites and filelock into
# that venv with pip if they are missing.
#
#   sudo scripts/bench-python.sh                       # defaults of bench.py (3 repeats)
#   sudo scripts/bench-python.sh --procs 8 --updates 200
#
# Environment (all optional): UNTORN_BENCH_IMG_DIR, UNTORN_BENCH_IMG_SIZE (default 1G),
# UNTORN_BENCH_MOUNT_OPTS, UNTORN_BENCH_FS, UNTORN_BENCH_VENV (default target/py-venv).
set -euo pipefail

me=bench-python.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/loop-ext4.sh
source "$repo/scripts/lib/loop-ext4.sh"
loop_ext4_require_root "$@"

venv=${UNTORN_BENCH_VENV:-${CARGO_TARGET_DIR:-$repo/target}/py-venv}
py=$venv/bin/python
if ! "$py" -c 'import untorn' 2>/dev/null; then
    echo "$me: no untorn in $venv: run scripts/test-python first" >&2
    exit 1
fi
if ! "$py" -c 'import atomicwrites, filelock' 2>/dev/null; then
    echo "$me: installing atomicwrites and filelock into $venv" >&2
    "$py" -m pip install --quiet --disable-pip-version-check atomicwrites filelock
fi

loop_ext4_mount python 1G
"$py" "$repo/python/bench/bench.py" --dir "$mnt/bench" "$@"
