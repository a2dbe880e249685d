#!/usr/bin/env bash
# Runs the contended-counter benchmark (crates/untorn-bench/src/bin/counter.rs: P processes
# making locked read-modify-write increments of one JSON counter, untorn against the same
# protocol by hand in Rust and against Python with filelock) on a fresh, journaled ext4 file
# system: a sparse image with a default mkfs.ext4, loop-mounted (direct I/O) at a unique
# directory, always unmounted and detached on exit (success, failure or Ctrl-C): see
# scripts/lib/loop-ext4.sh.
#
#   sudo scripts/bench-counter.sh            # full run (3 repeats × 5 rounds × P=1,2,4,8 × 100)
#   sudo scripts/bench-counter.sh --quick    # 30 increments per process
#   sudo scripts/bench-counter.sh --rounds 5 --procs 1,8   # any other counter options
#
# Installs the Python package filelock with pip if it is missing (if that fails, the benchmark
# says so and skips only the filelock column). Exits non-zero if a count comes out wrong.
#
# Environment (all optional):
#   UNTORN_BENCH_IMG_DIR     where the image goes (default /var/tmp; avoid tmpfs)
#   UNTORN_BENCH_IMG_SIZE    image size (default 1G; sparse)
#   UNTORN_BENCH_MOUNT_OPTS  extra mount options, e.g. noauto_da_alloc (default: none)
#   UNTORN_BENCH_PYTHON      the Python 3 to compare with (default: python3)
#   UNTORN_COUNTER_BIN       a prebuilt counter binary (default: cargo build --release)
set -euo pipefail

me=bench-counter.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/loop-ext4.sh
source "$repo/scripts/lib/loop-ext4.sh"
loop_ext4_require_root "$@"

# Build first (as the user who ran sudo, so that target/ does not become root's).
bin=${UNTORN_COUNTER_BIN:-}
if [[ -z $bin ]]; then
    loop_ext4_cargo build --release -p untorn-bench --bin counter --manifest-path "$repo/Cargo.toml"
    bin=${CARGO_TARGET_DIR:-$repo/target}/release/counter
fi
[[ -x $bin ]] || { echo "$me: no counter binary at $bin" >&2; exit 1; }

# The Python side needs the filelock package.
python=${UNTORN_BENCH_PYTHON:-python3}
if command -v "$python" >/dev/null; then
    if ! "$python" -c 'import filelock' 2>/dev/null; then
        echo "$me: installing the Python package filelock (pip install -q filelock)" >&2
        "$python" -m pip install -q filelock \
            || echo "$me: could not install filelock; its column will be skipped" >&2
    fi
else
    echo "$me: '$python' not found; the Python columns will be skipped" >&2
fi

loop_ext4_mount counter 1G

"$bin" --dir "$mnt/bench" --python "$python" "$@"
