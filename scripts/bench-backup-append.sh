#!/usr/bin/env bash
# Runs the backup and append benchmarks (crates/untorn-bench/src/bin/backup.rs: a durable write
# with backups(5) against one without, and the seeds' copy-then-write; bin/append.rs: a durable
# 200-byte untorn::append against read-all + rewrite, at 1 MiB and 64 MiB) on a fresh, journaled
# ext4 file system: a sparse image with a default mkfs.ext4, loop-mounted at a unique
# directory, always unmounted and detached on exit (success, failure or Ctrl-C): see
# scripts/lib/loop-ext4.sh.
#
#   sudo scripts/bench-backup-append.sh            # full run (~1 minute of benchmarking)
#   sudo scripts/bench-backup-append.sh --quick    # a few seconds
#   sudo scripts/bench-backup-append.sh --rounds 21   # any option both benchmarks accept
#
# Why: the root fs of the development VMs is ext4 without a journal, mounted with synchronous
# discard (see /work/shared/crash-testing.md); users' file systems have a journal.
#
# Environment (all optional):
#   UNTORN_BENCH_IMG_DIR     where the image goes (default /var/tmp; avoid tmpfs)
#   UNTORN_BENCH_IMG_SIZE    image size (default 2G; sparse; the backup run at 64 MiB keeps
#                            ~1 GiB of files at once)
#   UNTORN_BENCH_MOUNT_OPTS  extra mount options, e.g. noauto_da_alloc (default: none)
#   UNTORN_BENCH_ONLY        backup or append: run only that one (default: both)
#   UNTORN_BENCH_BIN_DIR     a directory holding prebuilt `backup` and `append` binaries
#                            (default: cargo build --release)
set -euo pipefail

me=bench-backup-append.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/loop-ext4.sh
source "$repo/scripts/lib/loop-ext4.sh"
loop_ext4_require_root "$@"

benches=(backup append)
case ${UNTORN_BENCH_ONLY:-} in
    '') ;;
    backup | append) benches=("$UNTORN_BENCH_ONLY") ;;
    *) echo "$me: UNTORN_BENCH_ONLY must be backup or append" >&2; exit 1 ;;
esac

# Build first (as the user who ran sudo, so that target/ does not become root's).
bin_dir=${UNTORN_BENCH_BIN_DIR:-}
if [[ -z $bin_dir ]]; then
    build=(build --release -p untorn-bench --manifest-path "$repo/Cargo.toml")
    for b in "${benches[@]}"; do build+=(--bin "$b"); done
    loop_ext4_cargo "${build[@]}"
    bin_dir=${CARGO_TARGET_DIR:-$repo/target}/release
fi
for b in "${benches[@]}"; do
    [[ -x $bin_dir/$b ]] || { echo "$me: no '$b' binary in $bin_dir" >&2; exit 1; }
done

loop_ext4_mount backup-append 2G

for b in "${benches[@]}"; do
    "$bin_dir/$b" --dir "$mnt/bench" "$@"
    echo
done
