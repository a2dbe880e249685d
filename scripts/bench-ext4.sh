#!/usr/bin/env bash
# Runs the untorn benchmark (crates/untorn-bench) on a fresh, journaled ext4 file system: a
# sparse image with a default mkfs.ext4, loop-mounted at a unique directory, always unmounted
# and detached on exit (success, failure or Ctrl-C): see scripts/lib/loop-ext4.sh.
#
#   sudo scripts/bench-ext4.sh            # full run (~1 minute of benchmarking)
#   sudo scripts/bench-ext4.sh --quick    # a few seconds
#   sudo scripts/bench-ext4.sh --variants --no-stream   # any other untorn-bench options
#
# Why: the root fs of the development VMs is ext4 without a journal, mounted with synchronous
# discard (see /work/shared/crash-testing.md); users' file systems have a journal.
#
# Environment (all optional):
#   UNTORN_BENCH_IMG_DIR     where the image goes (default /var/tmp; avoid tmpfs)
#   UNTORN_BENCH_IMG_SIZE    image size (default 4G; sparse; the 1 GiB stream needs ~2 GiB)
#   UNTORN_BENCH_MOUNT_OPTS  extra mount options, e.g. noauto_da_alloc (default: none)
#   UNTORN_BENCH_BIN         a prebuilt untorn-bench binary (default: cargo build --release)
set -euo pipefail

me=bench-ext4.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/loop-ext4.sh
source "$repo/scripts/lib/loop-ext4.sh"
loop_ext4_require_root "$@"

# Build first (as the user who ran sudo, so that target/ does not become root's).
bin=${UNTORN_BENCH_BIN:-}
if [[ -z $bin ]]; then
    loop_ext4_cargo build --release -p untorn-bench --bin write --manifest-path "$repo/Cargo.toml"
    bin=${CARGO_TARGET_DIR:-$repo/target}/release/write
fi
[[ -x $bin ]] || { echo "$me: no benchmark binary at $bin" >&2; exit 1; }

loop_ext4_mount ext4 4G

"$bin" --dir "$mnt/bench" "$@"
