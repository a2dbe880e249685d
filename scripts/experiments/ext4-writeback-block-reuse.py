#!/usr/bin/env python3
"""Evidence for issue 14: on ext4 data=writeback, the data blocks of an unlinked file can be
reused before the unlink commits.

fs/ext4/mballoc.c (ext4_mb_clear_bb) keeps freed blocks from reuse until the freeing
transaction commits only for metadata and for inodes *not* in data=writeback mode ("writeback
mode has weak data consistency guarantees"). So a name whose unlink is not yet committed can
come back after a power cut over blocks that a newer file has been given and written.

Each round, in one process (with nodelalloc, ext4 picks a file's goal block from the writer's
pid: one process, one goal):
  OLD: 256 KiB of 'A', fsync, syncfs             (durable)
  unlink OLD                                      (in the running transaction, not committed)
  NEW: 256 KiB of 'B', sync_file_range(WRITE|WAIT_AFTER)
                                                  (its data on disk; no journal commit)
  shutdown ioctl with NOLOGFLUSH                  (the power cut)
  remount                                         (journal replay)
then looks at OLD: gone, back whole ('A' only), or back holding NEW's bytes.

Usage (root): scripts/experiments/ext4-writeback-block-reuse.py [ROUNDS]
"""
import ctypes
import fcntl
import os
import re
import struct
import subprocess
import sys
import tempfile

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
SIZE = 256 << 10
GOINGDOWN = 0x8004587D  # XFS_IOC_GOINGDOWN == EXT4_IOC_SHUTDOWN
NOLOGFLUSH = 2
libc = ctypes.CDLL(None, use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def sh(*a):
    subprocess.run(a, check=True)


def physical(path):
    out = subprocess.run(["filefrag", "-v", path], capture_output=True, text=True).stdout
    # "logical+length@physical" per extent, in 1 KiB blocks (a 128 MiB ext4 has 1 KiB blocks).
    ext = []
    for line in out.splitlines():
        m = re.match(r"\s*\d+:\s*(\d+)\.\.\s*\d+:\s*(\d+)\.\.\s*\d+:\s*(\d+):", line)
        if m:
            ext.append(f"{m[1]}+{m[3]}@{m[2]}")
    return ext


def overlap(a, b):
    """Whether two extents "logical+len@physical" share a physical block."""
    (la, pa), (lb, pb) = [(int(x.split("@")[0].split("+")[1]), int(x.split("@")[1])) for x in (a, b)]
    return pa < pb + lb and pb < pa + la


def put(path, byte, durable):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, byte * SIZE)
    if durable:
        os.fsync(fd)
    else:
        if libc.sync_file_range(fd, 0, SIZE, 2 | 4) != 0:  # WRITE | WAIT_AFTER
            raise OSError(ctypes.get_errno(), "sync_file_range")
    os.close(fd)


def main():
    work = tempfile.mkdtemp(prefix="untorn-reuse.")
    img, mnt = os.path.join(work, "img"), os.path.join(work, "mnt")
    os.mkdir(mnt)
    try:
        for opts in ["data=writeback,nodelalloc", "data=ordered,noauto_da_alloc,nodelalloc"]:
            with open(img, "wb") as f:
                f.truncate(128 << 20)
            sh("mkfs.ext4", "-q", "-F", "-E", "nodiscard", img)
            sh("mount", "-o", "loop," + opts, img, mnt)
            shared = back = damaged = 0
            for i in range(ROUNDS):
                old, new = os.path.join(mnt, f"old{i}"), os.path.join(mnt, f"new{i}")
                put(old, b"A", durable=True)
                os.sync()
                before = physical(old)
                os.unlink(old)
                put(new, b"B", durable=False)
                after = physical(new)
                shared += bool(set(e.split("@")[1] for e in before) & set(e.split("@")[1] for e in after)) or any(
                    overlap(a, b) for a in before for b in after)
                fd = os.open(mnt, os.O_RDONLY)
                fcntl.ioctl(fd, GOINGDOWN, struct.pack("I", NOLOGFLUSH))
                os.close(fd)
                sh("umount", mnt)
                sh("mount", "-o", "loop," + opts, img, mnt)
                if os.path.exists(old):
                    back += 1
                    data = open(old, "rb").read()
                    if data != b"A" * SIZE:
                        damaged += 1
                        first = next(k for k, c in enumerate(data) if c != ord("A"))
                        print(f"  {opts} round {i}: old{i} is back, {len(data)} bytes, "
                              f"{data.count(b'B')} of them 'B' (NEW's), first at offset {first}; "
                              f"extent before unlink {before}, NEW's extent {after}")
                for p in (old, new):
                    if os.path.exists(p):
                        os.unlink(p)
                os.sync()
            print(f"{opts}: {ROUNDS} rounds: NEW given some of OLD's blocks in {shared}; OLD's name back "
                  f"after the cut in {back}; back holding NEW's data in {damaged}")
            sh("umount", mnt)
    finally:
        subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
        os.remove(img) if os.path.exists(img) else None
        os.rmdir(mnt)
        os.rmdir(work)


main()
