#!/usr/bin/env bash
# Runs the transaction benchmark (crates/untorn-bench/src/bin/txn.rs: one transaction of 100
# files against 100 single writes, the no-sync rename floor and the durable floor) on a fresh
# ext4 and then a fresh xfs loop mount (direct I/O, unmounted and detached on exit: see
# scripts/lib/loop-ext4.sh).
#
#   sudo scripts/bench-txn.sh                 # ext4 and xfs, 3 repeats each
#   sudo scripts/bench-txn.sh --quick         # any option of the benchmark
#
# Environment (all optional): UNTORN_BENCH_FSES (default "ext4 xfs"), UNTORN_BENCH_IMG_DIR,
# UNTORN_BENCH_IMG_SIZE (default 1G), UNTORN_BENCH_MOUNT_OPTS, UNTORN_TXN_BIN (a prebuilt
# binary; default: cargo build --release).
set -euo pipefail

me=bench-txn.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/loop-ext4.sh
source "$repo/scripts/lib/loop-ext4.sh"

bin=${UNTORN_TXN_BIN:-}
fses=${UNTORN_BENCH_FSES:-ext4 xfs}
if [[ -z ${UNTORN_BENCH_FS:-} ]]; then
    # One mount per run of this script: each file system in a child run of it.
    for fs in $fses; do
        UNTORN_BENCH_FS=$fs "$0" "$@"
    done
    exit 0
fi
loop_ext4_require_root "$@"
if [[ -z $bin ]]; then
    loop_ext4_cargo build --release -p untorn-bench --bin txn --manifest-path "$repo/Cargo.toml"
    bin=${CARGO_TARGET_DIR:-$repo/target}/release/txn
fi
[[ -x $bin ]] || { echo "$me: no txn binary at $bin" >&2; exit 1; }

loop_ext4_mount "txn-$UNTORN_BENCH_FS" 1G
"$bin" --dir "$mnt/bench" "$@"
