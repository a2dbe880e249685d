#!/usr/bin/env bash
# Runs the contended-counter benchmark (crates/untorn-bench/src/bin/counter.rs: P processes
# making locked read-modify-write increments of one JSON counter, untorn against Python with
# filelock) on a fresh, journaled ext4 file system: a sparse image with a default mkfs.ext4,
# loop-mounted at a unique directory, always unmounted and detached on exit (success, failure
# or Ctrl-C).
#
#   sudo scripts/bench-counter.sh            # full run (3 rounds × P=1,2,8 × 500 increments)
#   sudo scripts/bench-counter.sh --quick    # 50 increments per process
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

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ $(id -u) -ne 0 ]]; then
    echo "bench-counter.sh: needs root (mkfs, losetup, mount); run: sudo $0 $*" >&2
    exit 1
fi
for tool in mkfs.ext4 losetup mount umount mountpoint truncate; do
    command -v "$tool" >/dev/null || { echo "bench-counter.sh: '$tool' not found" >&2; exit 1; }
done

# Build first (as the user who ran sudo, so that target/ does not become root's).
bin=${UNTORN_COUNTER_BIN:-}
if [[ -z $bin ]]; then
    build=(build --release -p untorn-bench --bin counter --manifest-path "$repo/Cargo.toml")
    if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
        user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        cargo=$(sudo -u "$SUDO_USER" -H bash -lc 'command -v cargo' 2>/dev/null || true)
        if [[ -z $cargo && -x $user_home/.cargo/bin/cargo ]]; then
            cargo=$user_home/.cargo/bin/cargo
        fi
        [[ -n $cargo ]] || { echo "bench-counter.sh: cargo not found for $SUDO_USER" >&2; exit 1; }
        sudo -u "$SUDO_USER" -H env PATH="$(dirname "$cargo"):$PATH" "$cargo" "${build[@]}"
    else
        cargo "${build[@]}"
    fi
    bin=${CARGO_TARGET_DIR:-$repo/target}/release/counter
fi
[[ -x $bin ]] || { echo "bench-counter.sh: no counter binary at $bin" >&2; exit 1; }

# The Python side needs the filelock package.
python=${UNTORN_BENCH_PYTHON:-python3}
if command -v "$python" >/dev/null; then
    if ! "$python" -c 'import filelock' 2>/dev/null; then
        echo "bench-counter.sh: installing the Python package filelock (pip install -q filelock)" >&2
        "$python" -m pip install -q filelock \
            || echo "bench-counter.sh: could not install filelock; its column will be skipped" >&2
    fi
else
    echo "bench-counter.sh: '$python' not found; the Python columns will be skipped" >&2
fi

img_dir=${UNTORN_BENCH_IMG_DIR:-/var/tmp}
work=$(mktemp -d "$img_dir/untorn-bench-counter.XXXXXX")
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

truncate -s "${UNTORN_BENCH_IMG_SIZE:-1G}" "$img"
# Default features (mkfs.ext4 defaults: journal, data=ordered); only the initialisation is done
# now rather than by the background ext4lazyinit thread, which would disturb the measurements.
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img"
mkdir "$mnt"
loopdev=$(losetup --find --show "$img")
mount ${UNTORN_BENCH_MOUNT_OPTS:+-o "$UNTORN_BENCH_MOUNT_OPTS"} "$loopdev" "$mnt"
mkdir "$mnt/bench"
echo "bench-counter.sh: $img on $loopdev, mounted at $mnt" >&2

"$bin" --dir "$mnt/bench" --python "$python" "$@"
