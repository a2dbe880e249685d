#!/usr/bin/env bash
# Runs the one-process-per-write benchmark (crates/untorn-bench/src/bin/spawn.rs: `untorn write`
# of 1 KiB against `minwrite`, the same system calls by hand, and `untorn --version` against a
# no-op Rust program) on a fresh ext4 loop mount (direct I/O; see scripts/lib/loop-ext4.sh).
#
#   sudo scripts/bench-spawn.sh            # 3 repeats of 201 rounds
#   sudo scripts/bench-spawn.sh --quick    # any option of the benchmark
#
# Environment (all optional): UNTORN_BENCH_IMG_DIR, UNTORN_BENCH_IMG_SIZE (default 1G),
# UNTORN_BENCH_MOUNT_OPTS, UNTORN_BENCH_FS, UNTORN_BENCH_BIN_DIR (a directory holding prebuilt
# `spawn`, `minwrite`, `noop` and `untorn`; default: scripts/build-release, as installed).
set -euo pipefail

me=bench-spawn.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/loop-ext4.sh
source "$repo/scripts/lib/loop-ext4.sh"
loop_ext4_require_root "$@"

bin_dir=${UNTORN_BENCH_BIN_DIR:-}
also=()
if [[ -z $bin_dir ]]; then
    # untorn as scripts/install ships it (scripts/build-release: static-pie on Linux with
    # glibc), and the floors built the same way, so that the ratio is untorn's own work; the
    # dynamically linked untorn (a plain `cargo build --release`, `cargo install`) and minwrite
    # run beside them, to show what static linking buys either.
    built=$("$repo/scripts/build-release" -p untorn-cli -p untorn-bench untorn spawn minwrite noop)
    bin_dir=$(dirname "$(head -n1 <<<"$built")")
    loop_ext4_cargo build --release --locked -p untorn-cli -p untorn-bench --bin untorn \
        --bin minwrite --manifest-path "$repo/Cargo.toml"
    dyn=${CARGO_TARGET_DIR:-$repo/target}/release
    also=(--also "untorn (dynamic)=$dyn/untorn" --floor-also "minwrite (dynamic)=$dyn/minwrite")
fi
for b in spawn minwrite noop untorn; do
    [[ -x $bin_dir/$b ]] || { echo "$me: no '$b' binary in $bin_dir" >&2; exit 1; }
done

loop_ext4_mount spawn 1G
"$bin_dir/spawn" --dir "$mnt/bench" --untorn "$bin_dir/untorn" "${also[@]}" "$@"
