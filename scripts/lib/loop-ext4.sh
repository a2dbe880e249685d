# shellcheck shell=bash
# Sourced by the scripts/bench-*.sh scripts: what they share to run a benchmark as root on a
# fresh, journaled ext4 (or xfs) file system (a sparse image with a default mkfs, loop-mounted at
# a unique directory, always unmounted, detached and removed on exit: success, failure or
# Ctrl-C). One copy, so that a fix to the set-up or the clean-up reaches every benchmark.
#
# The loop device is attached with direct I/O (`losetup --direct-io=on`): its reads and writes
# go to the image without passing through the host's page cache, and a flush is a flush of the
# image. Without it, the image's pages sit in the host's cache beside everything else the
# machine writes, and the cost of a durable 1 KiB write here swung from 0.96 to 5.5 ms across
# three runs of one benchmark.
#
# Why: the root fs of the development VMs is ext4 without a journal, mounted with synchronous
# discard (see /work/shared/crash-testing.md); users' file systems have a journal.
#
# Use (with `set -euo pipefail`, after setting `me` to the script's name for messages):
#   source "$repo/scripts/lib/loop-ext4.sh"
#   loop_ext4_require_root "$@"            # root and the tools, or exit 1
#   loop_ext4_cargo "$repo" build ...       # cargo as the user who ran sudo
#   loop_ext4_mount NAME DEFAULT_SIZE       # sets $mnt; the benchmark works in "$mnt/bench"
#
# Environment (all optional), read by loop_ext4_mount:
#   UNTORN_BENCH_IMG_DIR     where the image goes (default /var/tmp; avoid tmpfs)
#   UNTORN_BENCH_IMG_SIZE    image size (default: the script's DEFAULT_SIZE; sparse)
#   UNTORN_BENCH_MOUNT_OPTS  extra mount options, e.g. noauto_da_alloc (default: none)
#   UNTORN_BENCH_FS          ext4 (default) or xfs (needs mkfs.xfs, from xfsprogs)

# Exits 1 unless running as root with every tool the loop mount needs: better now than after
# a build. The arguments are the script's, for the suggested command line.
loop_ext4_require_root() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "$me: needs root (mkfs, losetup, mount); run: sudo $0 $*" >&2
        exit 1
    fi
    local tool
    for tool in "mkfs.${UNTORN_BENCH_FS:-ext4}" losetup mount umount mountpoint truncate; do
        command -v "$tool" >/dev/null || { echo "$me: '$tool' not found" >&2; exit 1; }
    done
}

# Runs `cargo ARGS...` as the user who ran sudo (with their cargo, found through a login shell
# or in ~/.cargo/bin), so that target/ does not become root's; as root itself without sudo.
loop_ext4_cargo() {
    if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
        local user_home cargo
        user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        cargo=$(sudo -u "$SUDO_USER" -H bash -lc 'command -v cargo' 2>/dev/null || true)
        if [[ -z $cargo && -x $user_home/.cargo/bin/cargo ]]; then
            cargo=$user_home/.cargo/bin/cargo
        fi
        [[ -n $cargo ]] || { echo "$me: cargo not found for $SUDO_USER" >&2; exit 1; }
        sudo -u "$SUDO_USER" -H env PATH="$(dirname "$cargo"):$PATH" "$cargo" "$@"
    else
        cargo "$@"
    fi
}

# The EXIT trap: unmounts (retrying, then lazily: a writeback may still hold it), detaches the
# loop device, removes the image and the directories, and exits with the script's status.
loop_ext4_cleanup() {
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

# Makes a fresh ext4 (or, with `UNTORN_BENCH_FS=xfs`, xfs) image in a new directory
# `$UNTORN_BENCH_IMG_DIR/untorn-bench-NAME.XXXXXX` (`UNTORN_BENCH_IMG_SIZE`, default SIZE),
# attaches it with direct I/O and loop-mounts it at `$mnt` with an empty `$mnt/bench`,
# and installs the traps that undo all of it on exit, Ctrl-C, TERM or HUP. Sets the globals
# work, img, mnt and loopdev (the cleanup needs them after the function has returned).
loop_ext4_mount() {
    local name=$1 size=$2
    local fs=${UNTORN_BENCH_FS:-ext4}
    local img_dir=${UNTORN_BENCH_IMG_DIR:-/var/tmp}
    case $fs in
        ext4 | xfs) ;;
        *) echo "$me: UNTORN_BENCH_FS must be ext4 or xfs, not '$fs'" >&2; exit 1 ;;
    esac
    work=$(mktemp -d "$img_dir/untorn-bench-$name.XXXXXX")
    img=$work/$fs.img
    mnt=$work/mnt
    loopdev=

    trap loop_ext4_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP

    truncate -s "${UNTORN_BENCH_IMG_SIZE:-$size}" "$img"
    # Default features (mkfs.ext4 defaults: journal, data=ordered; mkfs.xfs defaults); for ext4
    # the initialisation is done now rather than by the background ext4lazyinit thread, which
    # would disturb the measurements.
    if [[ $fs == xfs ]]; then
        mkfs.xfs -q -f "$img"
    else
        mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img"
    fi
    mkdir "$mnt"
    loopdev=$(losetup --find --show --direct-io=on "$img")
    # losetup falls back to buffered I/O where the image's file system refuses O_DIRECT (tmpfs
    # before Linux 6.6): say so, since the numbers then mean less.
    if [[ $(losetup --noheadings --output DIO "$loopdev" | tr -d ' ') != 1 ]]; then
        echo "$me: WARNING: $loopdev did not get direct I/O (image on $(stat -f -c %T "$img"))" >&2
    fi
    mount ${UNTORN_BENCH_MOUNT_OPTS:+-o "$UNTORN_BENCH_MOUNT_OPTS"} "$loopdev" "$mnt"
    mkdir "$mnt/bench"
    echo "$me: $fs image $img on $loopdev (direct I/O), mounted at $mnt" >&2
}
