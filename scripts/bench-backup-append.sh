#!/usr/bin/env bash
# Runs the backup and append benchmarks (crates/untorn-bench/src/bin/backup.rs: a durable write
# with backups(5) against one without, and the seeds' copy-then-write; bin/append.rs: a durable
# 200-byte untorn::append against read-all + rewrite, at 1 MiB and 64 MiB) on a fresh, journaled
# ext4 file system: a sparse image with a default mkfs.ext4, loop-mounted at a unique
# directory, always unmounted and detached on exit (success, failure or Ctrl-C).
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

if [[ $(id -u) -ne 0 ]]; then
    echo "$me: needs root (mkfs, losetup, mount); run: sudo $0 $*" >&2
    exit 1
fi
for tool in mkfs.ext4 losetup mount umount mountpoint truncate; do
    command -v "$tool" >/dev/null || { echo "$me: '$tool' not found" >&2; exit 1; }
done

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
    if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
        user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        cargo=$(sudo -u "$SUDO_USER" -H bash -lc 'command -v cargo' 2>/dev/null || true)
        if [[ -z $cargo && -x $user_home/.cargo/bin/cargo ]]; then
            cargo=$user_home/.cargo/bin/cargo
        fi
        [[ -n $cargo ]] || { echo "$me: cargo not found for $SUDO_USER" >&2; exit 1; }
        sudo -u "$SUDO_USER" -H env PATH="$(dirname "$cargo"):$PATH" "$cargo" "${build[@]}"
    else
        cargo "${build[@]}"
    fi
    bin_dir=${CARGO_TARGET_DIR:-$repo/target}/release
fi
for b in "${benches[@]}"; do
    [[ -x $bin_dir/$b ]] || { echo "$me: no '$b' binary in $bin_dir" >&2; exit 1; }
done

img_dir=${UNTORN_BENCH_IMG_DIR:-/var/tmp}
work=$(mktemp -d "$img_dir/untorn-bench-backup-append.XXXXXX")
img=$work/ext4.img
mnt=$work/mnt
loopdev=

cleanup() {
    local rc=$?
    set +e
    if mountpoint -q "$mnt" 2>/dev/null; then
        umount "$mnt" || { sleep 1; umount "$mnt"; } || umount -l "$mnt"
    fi
    if [[ -n $loopdev ]]; then
        losetup -d "$loopdev"
    fi
    rm -f "$img"
    rmdir "$mnt" "$work" 2>/dev/null
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

truncate -s "${UNTORN_BENCH_IMG_SIZE:-2G}" "$img"
# Default features (mkfs.ext4 defaults: journal, data=ordered); only the initialisation is done
# now rather than by the background ext4lazyinit thread, which would disturb the measurements.
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img"
mkdir "$mnt"
loopdev=$(losetup --find --show "$img")
mount ${UNTORN_BENCH_MOUNT_OPTS:+-o "$UNTORN_BENCH_MOUNT_OPTS"} "$loopdev" "$mnt"
mkdir "$mnt/bench"
echo "$me: $img on $loopdev, mounted at $mnt" >&2

for b in "${benches[@]}"; do
    "$bin_dir/$b" --dir "$mnt/bench" "$@"
    echo
done
