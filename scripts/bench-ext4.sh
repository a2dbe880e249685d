#!/usr/bin/env bash
# Runs the untorn benchmark (crates/untorn-bench) on a fresh, journaled ext4 file system: a
# sparse image with a default mkfs.ext4, loop-mounted at a unique directory, always unmounted
# and detached on exit (success, failure or Ctrl-C).
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

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ $(id -u) -ne 0 ]]; then
    echo "bench-ext4.sh: needs root (mkfs, losetup, mount); run: sudo $0 $*" >&2
    exit 1
fi
for tool in mkfs.ext4 losetup mount umount mountpoint truncate; do
    command -v "$tool" >/dev/null || { echo "bench-ext4.sh: '$tool' not found" >&2; exit 1; }
done

# Build first (as the user who ran sudo, so that target/ does not become root's).
bin=${UNTORN_BENCH_BIN:-}
if [[ -z $bin ]]; then
    if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
        user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        cargo=$(sudo -u "$SUDO_USER" -H bash -lc 'command -v cargo' 2>/dev/null || true)
        if [[ -z $cargo && -x $user_home/.cargo/bin/cargo ]]; then
            cargo=$user_home/.cargo/bin/cargo
        fi
        [[ -n $cargo ]] || { echo "bench-ext4.sh: cargo not found for $SUDO_USER" >&2; exit 1; }
        sudo -u "$SUDO_USER" -H env PATH="$(dirname "$cargo"):$PATH" \
            "$cargo" build --release -p untorn-bench --bin untorn-bench --manifest-path "$repo/Cargo.toml"
    else
        cargo build --release -p untorn-bench --bin untorn-bench --manifest-path "$repo/Cargo.toml"
    fi
    bin=${CARGO_TARGET_DIR:-$repo/target}/release/untorn-bench
fi
[[ -x $bin ]] || { echo "bench-ext4.sh: no benchmark binary at $bin" >&2; exit 1; }

img_dir=${UNTORN_BENCH_IMG_DIR:-/var/tmp}
work=$(mktemp -d "$img_dir/untorn-bench-ext4.XXXXXX")
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

truncate -s "${UNTORN_BENCH_IMG_SIZE:-4G}" "$img"
# Default features (mkfs.ext4 defaults: journal, data=ordered); only the initialisation is done
# now rather than by the background ext4lazyinit thread, which would disturb the first minute
# of measurements.
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img"
mkdir "$mnt"
loopdev=$(losetup --find --show "$img")
mount ${UNTORN_BENCH_MOUNT_OPTS:+-o "$UNTORN_BENCH_MOUNT_OPTS"} "$loopdev" "$mnt"
mkdir "$mnt/bench"
echo "bench-ext4.sh: $img on $loopdev, mounted at $mnt" >&2

"$bin" --dir "$mnt/bench" "$@"
