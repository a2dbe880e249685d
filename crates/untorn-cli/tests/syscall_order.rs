//! The order of the real system calls of the `untorn` binary, seen with strace.
//!
//! Each test runs one operation under
//! `strace -f -y -xx -s 4096 --seccomp-bpf -e signal=none -e trace=<files, descriptors, syncs,
//! renames, links, unlinks, flock>`, parses the trace, and checks the order the protocol needs:
//! data written to the temp before its fsync, the fsync before the rename that puts the temp at
//! FILE, the directory fsynced after; a transaction's temps, journal links and lock-file flags
//! made durable by one syncfs before its first rename, and cleaned up only after the renames are;
//! an edit holding FILE.lock from before the read until after the rename is durable; a
//! no-clobber create published by a call that cannot replace a file; a restore that is an atomic
//! replace keeping the replaced version as a backup; a recovery that makes a committed
//! transaction's temps durable (syncfs) before renaming them, and drops its journal and flags only
//! once the renames are durable.
//!
//! The checker follows inodes, not names: a small model of the directory (names → objects, and
//! each process's descriptors → objects) replays the trace, so that an `O_TMPFILE` descriptor,
//! its `linkat` name and the `renameat2` that moves that name onto FILE are known to be one file.
//! `-y` prints each descriptor's path, which is how a directory's fsync is recognised.
//!
//! Every test then mutates its own real trace (moves the temp's fsync after the rename, drops the
//! directory fsync, ...) and checks that the checker rejects it: the assertions are shown to be
//! able to fail, on every run.
//!
//! Without strace the tests print `SKIPPED: <reason>` on stderr and pass, unless
//! `UNTORN_REQUIRE_ALL=1` (CI), which turns the skip into a failure.

mod strace;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use strace::*;

// ---------------------------------------------------------------------------------------------
// The checks

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn is_sync(e: &Ev) -> bool {
    e.ok && matches!(e.name.as_str(), "fsync" | "fdatasync")
}

fn is_write(e: &Ev) -> bool {
    e.ok && !e.data.is_empty() && e.name.contains("write")
}

fn is_read(e: &Ev) -> bool {
    e.ok && matches!(
        e.name.as_str(),
        "read" | "pread64" | "readv" | "preadv" | "preadv2"
    )
}

/// An fsync of the directory `dir` (a descriptor whose path is the directory).
fn is_dir_sync(e: &Ev, dir: &str) -> bool {
    is_sync(e) && e.fd_path.as_deref() == Some(dir)
}

/// The one successful rename or link that gives `file` its new content.
fn put_at<'a>(evs: &'a [Ev], file: &str) -> Result<&'a Ev, String> {
    let puts: Vec<&Ev> = evs
        .iter()
        .filter(|e| e.ok && e.moved.is_some() && e.paths.len() == 2 && e.paths[1] == file)
        .filter(|e| e.name.starts_with("rename") || e.name.starts_with("link"))
        .collect();
    ensure!(
        puts.len() == 1,
        "expected one rename (or link) onto {file}, found {}",
        puts.len()
    );
    Ok(puts[0])
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Durability {
    Full,
    File,
    None,
}

/// Where the steps of one atomic replace are in the trace.
#[derive(Debug)]
struct Replace {
    /// The writes of the new content to the temp.
    writes: Vec<usize>,
    /// The fsync of the temp (after its last write, before the rename).
    sync: Option<usize>,
    /// The rename (or link) that puts the temp at FILE.
    put: usize,
    /// The fsync of the directory after the rename.
    dir_sync: Option<usize>,
    /// The file that was at FILE before (None for a new file).
    displaced: Option<Obj>,
}

/// An atomic replace of `file` with `content`: the whole content written to a temp in the same
/// directory, the temp fsynced after its last write and before the rename that puts it at
/// FILE, the directory fsynced after that rename (durability full); no directory fsync at all
/// (file); no sync of any kind (none).
fn check_replace(
    evs: &[Ev],
    file: &str,
    content: &[u8],
    durability: Durability,
) -> Result<Replace, String> {
    let dir = parent(file);
    let put = put_at(evs, file)?;
    let temp = put.moved.unwrap();
    if put.name.starts_with("rename") {
        ensure!(
            parent(&put.paths[0]) == dir,
            "the temp {} is not in the directory of {file}",
            put.paths[0]
        );
    }
    let writes: Vec<&Ev> = evs
        .iter()
        .filter(|e| is_write(e) && e.obj == Some(temp))
        .collect();
    ensure!(
        !writes.is_empty(),
        "no write to the temp that becomes {file}"
    );
    let written: Vec<u8> = writes.iter().flat_map(|e| e.data.clone()).collect();
    ensure!(
        written == content,
        "the temp got {:?}, not the new content {:?}",
        String::from_utf8_lossy(&written),
        String::from_utf8_lossy(content)
    );
    let last_write = writes.last().unwrap().i;
    ensure!(
        last_write < put.i,
        "the temp is written (call {last_write}) after the rename onto {file} (call {})",
        put.i
    );
    let sync = evs
        .iter()
        .find(|e| is_sync(e) && e.obj == Some(temp) && e.i > last_write && e.i < put.i)
        .map(|e| e.i);
    let dir_syncs: Vec<usize> = evs
        .iter()
        .filter(|e| is_dir_sync(e, &dir))
        .map(|e| e.i)
        .collect();
    let dir_sync = dir_syncs.iter().copied().find(|&i| i > put.i);
    match durability {
        Durability::Full | Durability::File => {
            ensure!(
                sync.is_some(),
                "the temp is not fsynced between its last write (call {last_write}) and the \
                 rename onto {file} (call {})",
                put.i
            );
        }
        Durability::None => {}
    }
    match durability {
        Durability::Full => ensure!(
            dir_sync.is_some(),
            "no fsync of {dir} after the rename onto {file} (call {})",
            put.i
        ),
        Durability::File => ensure!(
            dir_syncs.is_empty(),
            "--durability file fsyncs the directory (calls {dir_syncs:?})"
        ),
        Durability::None => {
            let syncs: Vec<usize> = evs.iter().filter(|e| is_any_sync(e)).map(|e| e.i).collect();
            ensure!(
                syncs.is_empty(),
                "--durability none syncs (calls {syncs:?})"
            );
        }
    }
    Ok(Replace {
        writes: writes.iter().map(|e| e.i).collect(),
        sync,
        put: put.i,
        dir_sync,
        displaced: put.displaced,
    })
}

/// `untorn write --backup`: the displaced version gets its `.bak` name (a link or a rename of
/// the old inode) before the single directory fsync that makes the write durable.
fn check_backup(evs: &[Ev], file: &str, content: &[u8]) -> Result<(Replace, usize), String> {
    let r = check_replace(evs, file, content, Durability::Full)?;
    let old = r
        .displaced
        .ok_or_else(|| format!("nothing was displaced at {file}"))?;
    let prefix = format!("{file}.");
    let bak = evs
        .iter()
        .find(|e| {
            e.ok && (e.name.starts_with("link") || e.name.starts_with("rename"))
                && e.paths.len() == 2
                && e.paths[1].starts_with(&prefix)
                && e.paths[1].ends_with(".bak")
        })
        .ok_or_else(|| format!("no link or rename to a backup name {prefix}*.bak"))?;
    ensure!(
        bak.moved == Some(old),
        "the backup name {} is given to another file than the old version",
        bak.paths[1]
    );
    let dir = parent(file);
    let dir_syncs: Vec<usize> = evs
        .iter()
        .filter(|e| is_dir_sync(e, &dir))
        .map(|e| e.i)
        .collect();
    ensure!(
        dir_syncs.len() == 1,
        "expected a single fsync of {dir}, found calls {dir_syncs:?}"
    );
    ensure!(
        bak.i < dir_syncs[0],
        "the backup name (call {}) comes after the directory fsync (call {})",
        bak.i,
        dir_syncs[0]
    );
    Ok((r, bak.i))
}

/// Where the steps of an append are.
struct Append {
    lock: usize,
    write: usize,
    unlock: usize,
    sync: usize,
}

/// The exclusive flock of `lock_path` (successful), and its release after `from`: LOCK_UN, or
/// the close of the locked descriptor, or the end of the trace.
fn lock_span(evs: &[Ev], lock_path: &str) -> Result<(usize, usize), String> {
    let lock = evs
        .iter()
        .find(|e| {
            e.ok && e.name == "flock"
                && e.fd_path.as_deref() == Some(lock_path)
                && e.flags.contains("LOCK_EX")
        })
        .ok_or_else(|| format!("no exclusive flock of {lock_path}"))?;
    let unlock = evs[lock.i + 1..]
        .iter()
        .find(|e| {
            e.pid == lock.pid
                && e.fd == lock.fd
                && ((e.name == "flock" && e.flags.contains("LOCK_UN")) || e.name == "close")
        })
        .map_or(evs.len(), |e| e.i);
    Ok((lock.i, unlock))
}

/// `untorn append LOG LINE`: one write of the whole line, through a descriptor opened with
/// O_APPEND, under the exclusive lock of LOG.lock, then an fdatasync (or fsync) of that same
/// descriptor.
fn check_append(evs: &[Ev], log: &str, line: &[u8]) -> Result<Append, String> {
    let writes: Vec<&Ev> = evs
        .iter()
        .filter(|e| is_write(e) && e.fd_path.as_deref() == Some(log))
        .collect();
    ensure!(
        writes.len() == 1,
        "expected one write to {log}, found {}",
        writes.len()
    );
    let w = writes[0];
    let mut record = line.to_vec();
    record.push(b'\n');
    ensure!(
        w.data == record,
        "the write to {log} is {:?}, not the whole record {:?}",
        String::from_utf8_lossy(&w.data),
        String::from_utf8_lossy(&record)
    );
    ensure!(
        w.fd_flags.contains("O_APPEND"),
        "{log} is written through a descriptor without O_APPEND ({:?})",
        w.fd_flags
    );
    let (lock, unlock) = lock_span(evs, &format!("{log}.lock"))?;
    ensure!(
        lock < w.i && w.i < unlock,
        "the write (call {}) is not under the lock (calls {lock}..{unlock})",
        w.i
    );
    let sync = evs[w.i + 1..]
        .iter()
        .find(|e| is_sync(e) && e.pid == w.pid && e.fd == w.fd)
        .ok_or_else(|| format!("no fdatasync of {log}'s descriptor after the write"))?;
    Ok(Append {
        lock,
        write: w.i,
        unlock,
        sync: sync.i,
    })
}

/// CRC-32 (IEEE, as the journal records it), bit by bit: the journal's CRCs are checked against
/// an implementation of the test's own.
/// Issue 14: the checksum attribute of the new content, set once on the temp that became FILE
/// before its fsync (so it is durable with the data), naming the CRC-32 and size of the
/// content. Returns the index of the `fsetxattr`.
fn check_sum(evs: &[Ev], r: &Replace, content: &[u8]) -> Result<usize, String> {
    let sync = r.sync.ok_or("no fsync of the temp")?;
    let temp = evs[sync].obj;
    let sets: Vec<&Ev> = evs
        .iter()
        .filter(|e| e.ok && e.name == "fsetxattr" && e.obj == temp)
        .collect();
    let [e] = sets[..] else {
        return Err(format!(
            "{} fsetxattr calls on the temp, expected 1",
            sets.len()
        ));
    };
    let want = format!("crc32={:08x} size={} mtime=", crc32(content), content.len());
    if e.flags != "user.untorn.sum" || !e.data.starts_with(want.as_bytes()) {
        return Err(format!(
            "the checksum attribute is {}={:?}, expected user.untorn.sum={want}...",
            e.flags,
            String::from_utf8_lossy(&e.data)
        ));
    }
    if e.i > sync {
        return Err(format!(
            "the checksum (call {}) is set after the temp's fsync (call {sync})",
            e.i
        ));
    }
    Ok(e.i)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn file_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The tag of a journal's name `.untorn-txn-TTTT.journal` (4 hex digits, 1 to 4095).
fn journal_tag(p: &str) -> Option<u64> {
    let hex = file_name(p)
        .strip_prefix(".untorn-txn-")?
        .strip_suffix(".journal")?;
    if hex.len() != 4 {
        return None;
    }
    let tag = u64::from_str_radix(hex, 16).ok()?;
    (1..=4095).contains(&tag).then_some(tag)
}

/// Where the steps of one lock file's flag are.
#[derive(Debug)]
struct Flag {
    /// The exclusive flock of the lock file, and its release.
    lock: usize,
    unlock: usize,
    /// `ftruncate(lock, TAG)`, and the `ftruncate(lock, 0)` that clears it.
    set: usize,
    clear: usize,
}

/// For `renames` (call index, directory), the first fsync of each directory after its last
/// rename: what makes the renames durable.
fn dir_syncs_after_renames(evs: &[Ev], renames: &[(usize, String)]) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    let dirs: std::collections::BTreeSet<&String> = renames.iter().map(|r| &r.1).collect();
    for dir in dirs {
        let last = renames
            .iter()
            .filter(|r| &r.1 == dir)
            .map(|r| r.0)
            .max()
            .expect("a rename in this directory");
        let s = evs
            .iter()
            .find(|e| is_dir_sync(e, dir) && e.i > last)
            .ok_or_else(|| format!("no fsync of {dir} after its last rename (call {last})"))?;
        out.push(s.i);
    }
    Ok(out)
}

/// A transaction's flag on `lock_path`, cleared at call `clear`, must stay until the renames
/// are durable (the last directory fsync) and go before the lock is released.
fn cleared_in_time(
    lock_path: &str,
    clear: usize,
    last_dir_sync: usize,
    unlock: usize,
) -> Result<(), String> {
    ensure!(
        clear > last_dir_sync,
        "the flag of {lock_path} is cleared (call {clear}) before the renames are durable (call \
         {last_dir_sync})"
    );
    ensure!(
        clear < unlock,
        "the flag of {lock_path} is cleared (call {clear}) after its lock is released (call \
         {unlock})"
    );
    Ok(())
}

/// Where the steps of a transaction are.
#[derive(Debug)]
struct Txn {
    /// The last write of each temp.
    temp_writes: Vec<usize>,
    /// The writes of the journal into its temp.
    journal_writes: Vec<usize>,
    /// The journal as written.
    journal: untorn::txn::Journal,
    /// The journal's links as `.untorn-txn-TTTT.journal`, one per directory of a lock file.
    links: Vec<usize>,
    /// The unlink of the journal's temp name.
    journal_temp_unlink: usize,
    flags: Vec<Flag>,
    /// The commit point.
    syncfs: usize,
    first_rename: usize,
    dir_syncs_after: Vec<usize>,
    /// The unlinks of the journal's links, in the order of `links`.
    unlinks: Vec<usize>,
}

/// `untorn txn put A=SRC put B=SRC`: each temp written beside its target; the journal written
/// once into a temp (it decodes and names every temp → target with the size and CRC-32 of what
/// was written into that temp, and every lock file), then linked as `.untorn-txn-TTTT.journal`
/// beside every lock file, and its temp name removed; each lock file, held with an exclusive
/// flock, flagged (`ftruncate` to TAG); one syncfs of the transaction's file system after all
/// of that and before the first rename (the commit point); each directory fsynced after its
/// renames; only then the journal's links removed and the flags cleared (`ftruncate` to 0),
/// each flag before its lock is released.
fn check_txn(evs: &[Ev], targets: &[(&str, &[u8])]) -> Result<Txn, String> {
    // The journal: the inode linked in under `.untorn-txn-TTTT.journal`.
    let links: Vec<&Ev> = evs
        .iter()
        .filter(|e| e.ok && e.name.starts_with("link") && e.paths.len() == 2)
        .filter(|e| journal_tag(&e.paths[1]).is_some())
        .collect();
    ensure!(
        !links.is_empty(),
        "the journal is never linked in as .untorn-txn-TTTT.journal"
    );
    let journal = links[0].moved.unwrap();
    let jname = file_name(&links[0].paths[1]);
    let tag = journal_tag(jname).unwrap();
    for l in &links {
        ensure!(
            l.moved == Some(journal) && file_name(&l.paths[1]) == jname,
            "the journal links (calls {} and {}) are not one inode under one name",
            links[0].i,
            l.i
        );
    }
    let create = evs
        .iter()
        .find(|e| e.ok && e.name.starts_with("open") && e.moved == Some(journal))
        .ok_or("the journal linked in is not a file this run created")?;
    let jtemp = create.paths[0].clone();
    ensure!(
        create.flags.contains("O_CREAT") && create.flags.contains("O_EXCL"),
        "the journal's temp {jtemp} is not created with O_CREAT|O_EXCL ({})",
        create.flags
    );
    ensure!(
        file_name(&jtemp).starts_with(".untorn-txn-journal.untorn-") && jtemp.ends_with(".tmp"),
        "the journal is not written into a temp, but into {jtemp}"
    );
    let jwrites: Vec<&Ev> = evs
        .iter()
        .filter(|e| is_write(e) && e.obj == Some(journal))
        .collect();
    ensure!(!jwrites.is_empty(), "the journal {jtemp} is never written");
    let last_jwrite = jwrites.last().unwrap().i;
    ensure!(
        last_jwrite < links[0].i,
        "the journal is written (call {last_jwrite}) after it is linked in (call {}): it does \
         not appear whole",
        links[0].i
    );
    let bytes: Vec<u8> = jwrites.iter().flat_map(|e| e.data.clone()).collect();
    let decoded = untorn::txn::Journal::decode(&bytes)
        .map_err(|e| format!("the journal written is not a valid journal: {e}"))?;
    let last_link = links.last().unwrap().i;
    let journal_temp_unlink = evs
        .iter()
        .find(|e| e.ok && e.name.starts_with("unlink") && e.paths.first() == Some(&jtemp))
        .ok_or_else(|| format!("the journal's temp name {jtemp} is left behind"))?;
    ensure!(
        journal_temp_unlink.i > last_link,
        "the journal's temp name is removed (call {}) before its last link (call {last_link})",
        journal_temp_unlink.i
    );

    // Each temp: beside its target, written with the new content, named by the journal with
    // that content's size and CRC-32, renamed onto the target.
    ensure!(
        decoded.entries.len() == targets.len(),
        "the journal has {} entries for {} files",
        decoded.entries.len(),
        targets.len()
    );
    let mut renames = Vec::new();
    let mut temp_writes = Vec::new();
    for (target, content) in targets {
        let put = put_at(evs, target)?;
        ensure!(
            put.name.starts_with("rename"),
            "{target} is not put by a rename"
        );
        let temp_path = &put.paths[0];
        ensure!(
            parent(temp_path) == parent(target),
            "the temp {temp_path} is not beside {target}"
        );
        let temp = put.moved.unwrap();
        let writes: Vec<&Ev> = evs
            .iter()
            .filter(|e| is_write(e) && e.obj == Some(temp))
            .collect();
        ensure!(!writes.is_empty(), "the temp of {target} is never written");
        let last = writes.last().unwrap().i;
        ensure!(
            last < put.i,
            "the temp of {target} is written (call {last}) after its rename (call {})",
            put.i
        );
        let data: Vec<u8> = writes.iter().flat_map(|e| e.data.clone()).collect();
        ensure!(
            data == *content,
            "the temp of {target} got {:?}",
            String::from_utf8_lossy(&data)
        );
        let (size, crc) = decoded
            .entries
            .iter()
            .find_map(|en| match en {
                untorn::txn::Entry::Put {
                    dir,
                    temp: t,
                    target: tg,
                    size,
                    crc,
                    ..
                } if norm(&decoded.dirs[*dir as usize].path.join(t).to_string_lossy())
                    == *temp_path
                    && norm(&decoded.dirs[*dir as usize].path.join(tg).to_string_lossy())
                        == *target =>
                {
                    Some((*size, *crc))
                }
                _ => None,
            })
            .ok_or_else(|| {
                format!("the journal does not name the rename {temp_path} -> {target}")
            })?;
        ensure!(
            size == data.len() as u64,
            "the journal records {size} bytes for the temp of {target}, {} were written",
            data.len()
        );
        ensure!(
            crc == crc32(&data),
            "the journal records the CRC-32 {crc:08x} for the temp of {target}, its content's is \
             {:08x}",
            crc32(&data)
        );
        temp_writes.push(last);
        renames.push((put.i, parent(target)));
    }
    let first_rename = renames.iter().map(|r| r.0).min().unwrap();

    // The lock files: all in the journal, a copy of the journal beside each.
    let lock_paths: std::collections::BTreeSet<String> =
        targets.iter().map(|(t, _)| format!("{t}.lock")).collect();
    let listed: std::collections::BTreeSet<String> = decoded
        .locks
        .iter()
        .map(|l| {
            norm(
                &decoded.dirs[l.dir as usize]
                    .path
                    .join(&l.name)
                    .to_string_lossy(),
            )
        })
        .collect();
    ensure!(
        listed == lock_paths,
        "the journal lists the lock files {listed:?}, not {lock_paths:?}"
    );
    for lock in &lock_paths {
        ensure!(
            links.iter().any(|l| parent(&l.paths[1]) == parent(lock)),
            "no copy of the journal is linked in beside {lock}"
        );
    }

    // The commit point: one syncfs, of the transaction's file system, after the temps, the
    // journal's links and the flags, before the first rename.
    let syncfs = evs[..first_rename]
        .iter()
        .rev()
        .find(|e| e.ok && e.name == "syncfs")
        .ok_or_else(|| format!("no syncfs before the first rename (call {first_rename})"))?;
    let dirs: std::collections::BTreeSet<String> = targets
        .iter()
        .map(|(t, _)| parent(t))
        .chain(lock_paths.iter().map(|l| parent(l)))
        .collect();
    ensure!(
        syncfs.fd_path.as_ref().is_some_and(|p| dirs.contains(p)),
        "the syncfs (call {}) is of {:?}, not of a directory of the transaction",
        syncfs.i,
        syncfs.fd_path
    );
    for ((target, _), &w) in targets.iter().zip(&temp_writes) {
        ensure!(
            w < syncfs.i,
            "the temp of {target} is written (call {w}) after the syncfs (call {})",
            syncfs.i
        );
    }
    for l in &links {
        ensure!(
            l.i < syncfs.i,
            "the journal is linked in as {} (call {}) after the syncfs (call {})",
            l.paths[1],
            l.i,
            syncfs.i
        );
    }

    // The renames made durable: each directory fsynced after its last rename.
    let dir_syncs_after = dir_syncs_after_renames(evs, &renames)?;
    let last_dir_sync = *dir_syncs_after.iter().max().unwrap();

    // The flags: set under the lock before the syncfs, left as they are until the renames are
    // durable, then cleared before the lock is released.
    let mut flags = Vec::new();
    for lock_path in &lock_paths {
        let (lock, unlock) = lock_span(evs, lock_path)?;
        let obj = evs[lock].obj;
        let set = evs
            .iter()
            .find(|e| e.ok && e.name == "ftruncate" && e.obj == obj && e.len == Some(tag))
            .ok_or_else(|| format!("{lock_path} is never flagged (ftruncate to {tag})"))?;
        ensure!(
            lock < set.i,
            "{lock_path} is flagged (call {}) before it is locked (call {lock})",
            set.i
        );
        ensure!(
            set.i < syncfs.i,
            "{lock_path} is flagged (call {}) after the syncfs (call {})",
            set.i,
            syncfs.i
        );
        let clear = evs[set.i + 1..]
            .iter()
            .find(|e| e.ok && e.name == "ftruncate" && e.obj == obj)
            .ok_or_else(|| format!("the flag of {lock_path} is never cleared"))?;
        ensure!(
            clear.len == Some(0),
            "the flag of {lock_path} becomes {:?} (call {}), not 0",
            clear.len,
            clear.i
        );
        cleared_in_time(lock_path, clear.i, last_dir_sync, unlock)?;
        flags.push(Flag {
            lock,
            unlock,
            set: set.i,
            clear: clear.i,
        });
    }

    // The journal's links removed, once the renames are durable.
    let mut unlinks = Vec::new();
    for l in &links {
        let u = evs[l.i + 1..]
            .iter()
            .find(|e| e.ok && e.name.starts_with("unlink") && e.paths.first() == Some(&l.paths[1]))
            .ok_or_else(|| format!("the journal {} is left behind", l.paths[1]))?;
        ensure!(
            u.i > last_dir_sync,
            "the journal {} is removed (call {}) before the renames are durable (call \
             {last_dir_sync})",
            l.paths[1],
            u.i
        );
        unlinks.push(u.i);
    }
    Ok(Txn {
        temp_writes,
        journal_writes: jwrites.iter().map(|e| e.i).collect(),
        journal: decoded,
        links: links.iter().map(|e| e.i).collect(),
        journal_temp_unlink: journal_temp_unlink.i,
        flags,
        syncfs: syncfs.i,
        first_rename,
        dir_syncs_after,
        unlinks,
    })
}

/// `untorn edit FILE -- FILTER`: the exclusive flock of FILE.lock is taken before FILE is read
/// and released (LOCK_UN or close) only after the rename onto FILE and the directory fsync.
fn check_edit(
    evs: &[Ev],
    file: &str,
    new: &[u8],
) -> Result<(Replace, usize, usize, usize), String> {
    let r = check_replace(evs, file, new, Durability::Full)?;
    let old = r
        .displaced
        .ok_or_else(|| format!("nothing was displaced at {file}"))?;
    let (lock, unlock) = lock_span(evs, &format!("{file}.lock"))?;
    let first_read = evs
        .iter()
        .find(|e| is_read(e) && e.obj == Some(old))
        .map(|e| e.i)
        .ok_or_else(|| format!("{file} is never read"))?;
    ensure!(
        lock < first_read,
        "{file} is read (call {first_read}) before its lock is taken (call {lock})"
    );
    let dir_sync = r.dir_sync.unwrap();
    ensure!(
        unlock > r.put && unlock > dir_sync,
        "the lock is released (call {unlock}) before the rename (call {}) and the directory \
         fsync (call {dir_sync}) are done",
        r.put
    );
    Ok((r, lock, first_read, unlock))
}

/// `untorn write --no-clobber FILE X` for a new FILE: an atomic replace (durability full) whose
/// publishing call cannot replace a file that appeared at FILE meanwhile: a `linkat` or `link`
/// (of the `O_TMPFILE`, or of the temp's name), or `renameat2` with `RENAME_NOREPLACE`.
fn check_no_clobber(evs: &[Ev], file: &str, content: &[u8]) -> Result<Replace, String> {
    let r = check_replace(evs, file, content, Durability::Full)?;
    let put = &evs[r.put];
    let no_replace = put.name.starts_with("link")
        || (put.name == "renameat2" && put.flags.contains("RENAME_NOREPLACE"));
    ensure!(
        no_replace,
        "{file} is published by a call that replaces an existing file (call {}: {})",
        put.i,
        put.text
    );
    Ok(r)
}

/// `untorn write --no-clobber FILE X` for an existing FILE: no successful call puts anything at
/// FILE, takes its name away, truncates it, opens it for writing or writes to it.
fn check_refused(evs: &[Ev], file: &str) -> Result<(), String> {
    let f = Some(&file.to_string());
    for e in evs.iter().filter(|e| e.ok) {
        let changes = match e.name.as_str() {
            n if n.starts_with("rename") => e.paths.first() == f || e.paths.get(1) == f,
            n if n.starts_with("link") => e.paths.get(1) == f,
            n if n.starts_with("unlink") || n == "truncate" => e.paths.first() == f,
            n if n.starts_with("open") || n == "creat" => {
                e.paths.first() == f
                    && ["O_WRONLY", "O_RDWR", "O_TRUNC", "O_CREAT"]
                        .iter()
                        .any(|m| e.flags.contains(m))
            }
            _ => is_write(e) && e.fd_path.as_deref() == Some(file),
        };
        ensure!(
            !changes,
            "{file} exists, yet call {} changes it: {}",
            e.i,
            e.text
        );
    }
    Ok(())
}

/// Where the steps of a roll-forward are.
#[derive(Debug)]
struct Recover {
    /// The syncfs that makes the temps durable before they are renamed into place.
    syncfs: usize,
    first_rename: usize,
    /// The fsync of each renamed directory after its last rename.
    dir_syncs_after: Vec<usize>,
    /// The unlinks of the journal's copies, in the order of the `journals` argument.
    unlinks: Vec<usize>,
    /// The `ftruncate(lock, 0)` that clears each flag, in the order of the `locks` argument.
    clears: Vec<usize>,
    /// The exclusive flock of each lock file, and its release.
    locks: Vec<(usize, usize)>,
}

/// `untorn recover DIR` over a committed transaction that was not applied (`targets`: each temp
/// and its target, `journals`: the journal's copies, `locks`: its flagged lock files): under the exclusive flock of every lock file, one syncfs of the transaction's file
/// system before the first rename (the committer may have died before its own: the temps may
/// not be durable yet); each temp renamed onto its target; each directory fsynced after its
/// last rename; only then the flags cleared (`ftruncate` to 0) and the journal's copies removed
/// (a crash before the renames are durable must find the journal and the flags, or a recovery
/// would roll back and delete the temps of renames that were lost).
fn check_recover(
    evs: &[Ev],
    targets: &[(&str, &str)],
    journals: &[String],
    locks: &[String],
) -> Result<Recover, String> {
    let mut renames = Vec::new();
    for (temp, target) in targets {
        let put = put_at(evs, target)?;
        ensure!(
            put.name.starts_with("rename") && put.paths[0] == *temp,
            "{target} is not put in place by a rename of its temp {temp} (call {}: {})",
            put.i,
            put.text
        );
        renames.push((put.i, parent(target)));
    }
    let first_rename = renames.iter().map(|r| r.0).min().unwrap();
    let dirs: std::collections::BTreeSet<String> = targets
        .iter()
        .map(|(_, t)| parent(t))
        .chain(locks.iter().map(|l| parent(l)))
        .collect();
    let syncfs = evs[..first_rename]
        .iter()
        .rev()
        .find(|e| e.ok && e.name == "syncfs")
        .ok_or_else(|| format!("no syncfs before the first rename (call {first_rename})"))?;
    ensure!(
        syncfs.fd_path.as_ref().is_some_and(|p| dirs.contains(p)),
        "the syncfs (call {}) is of {:?}, not of a directory of the transaction",
        syncfs.i,
        syncfs.fd_path
    );

    let dir_syncs_after = dir_syncs_after_renames(evs, &renames)?;
    let last_dir_sync = *dir_syncs_after.iter().max().unwrap();

    let mut lock_spans = Vec::new();
    let mut clears = Vec::new();
    for lock_path in locks {
        let (lock, unlock) = lock_span(evs, lock_path)?;
        ensure!(
            lock < first_rename && unlock > last_dir_sync,
            "the renames (calls {first_rename}..{last_dir_sync}) are not under the lock of \
             {lock_path} (calls {lock}..{unlock})"
        );
        let clear = evs
            .iter()
            .find(|e| {
                e.ok && e.name == "ftruncate"
                    && e.fd_path.as_deref() == Some(lock_path.as_str())
                    && e.len == Some(0)
            })
            .ok_or_else(|| format!("the flag of {lock_path} is never cleared"))?;
        cleared_in_time(lock_path, clear.i, last_dir_sync, unlock)?;
        lock_spans.push((lock, unlock));
        clears.push(clear.i);
    }

    let mut unlinks = Vec::new();
    for j in journals {
        let u = evs
            .iter()
            .find(|e| e.ok && e.name.starts_with("unlink") && e.paths.first() == Some(j))
            .ok_or_else(|| format!("the journal {j} is left behind"))?;
        ensure!(
            u.i > last_dir_sync,
            "the journal {j} is removed (call {}) before the renames are durable (call \
             {last_dir_sync})",
            u.i
        );
        unlinks.push(u.i);
    }
    Ok(Recover {
        syncfs: syncfs.i,
        first_rename,
        dir_syncs_after,
        unlinks,
        clears,
        locks: lock_spans,
    })
}

// ---------------------------------------------------------------------------------------------
// Showing that the checks can fail: mutations of a real trace

/// The calls with the call at `from` moved to just after the call (originally) at `after`.
fn moved(calls: &[Call], from: usize, after: usize) -> Vec<Call> {
    let mut v = calls.to_vec();
    let c = v.remove(from);
    let at = if after > from { after } else { after + 1 };
    v.insert(at.min(v.len()), c);
    v
}

/// The calls without the call at `i`.
fn removed(calls: &[Call], i: usize) -> Vec<Call> {
    let mut v = calls.to_vec();
    v.remove(i);
    v
}

/// The calls with the publishing call at `i` (a `linkat`, `link` or `renameat2` onto FILE,
/// successful or not) replaced by a plain rename onto FILE that succeeds. An `O_TMPFILE`
/// published by `linkat(fd, "", dir, FILE, AT_EMPTY_PATH)` is first linked to a temp name.
fn plain_rename(calls: &[Call], i: usize) -> Vec<Call> {
    let mut v = calls.to_vec();
    let mut c = calls[i].clone();
    c.ret = Some(0);
    let mut at = i;
    if matches!(c.name.as_str(), "link" | "rename") {
        c.name = "rename".into();
        c.args.truncate(2);
    } else {
        if c.args.get(4).is_some_and(|f| f.contains("AT_EMPTY_PATH")) {
            let temp = "\".untorn-mutation.tmp\"".to_string();
            let mut link = c.clone();
            link.args[3] = temp.clone();
            link.text = format!("{} linkat({})", c.pid, link.args.join(", "));
            v.insert(i, link);
            at += 1;
            c.args[0] = c.args[2].clone();
            c.args[1] = temp;
        }
        c.name = "renameat".into();
        c.args.truncate(4);
    }
    c.text = format!("{} {}({}) = 0", c.pid, c.name, c.args.join(", "));
    v[at] = c;
    v
}

/// The calls with the backup name of an atomic replace (the link at `bak`) given only after the
/// directory fsync at `dir_sync`. After a `RENAME_EXCHANGE` at `put` the replaced version is
/// under the temp's name until it is unlinked, so the late link is made from that name: it
/// still names the replaced version, only too late.
fn late_backup(calls: &[Call], evs: &[Ev], bak: usize, put: usize, dir_sync: usize) -> Vec<Call> {
    let mut v = moved(calls, bak, dir_sync);
    if bak < put && evs[put].flags.contains("RENAME_EXCHANGE") && calls[bak].name == "linkat" {
        // bak < dir_sync: the link is now at `dir_sync`, just after the directory fsync.
        v[dir_sync].args[1] = calls[put].args[1].clone();
        let c = &v[dir_sync];
        v[dir_sync].text = format!("{} linkat({}) = 0", c.pid, c.args.join(", "));
    }
    v
}

/// The calls with the journal's writes replaced by one write of `journal`, encoded.
fn journal_rewritten(
    calls: &[Call],
    writes: &[usize],
    journal: &untorn::txn::Journal,
) -> Vec<Call> {
    let bytes = journal.encode();
    let hex: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
    let mut v = calls.to_vec();
    let w = &mut v[writes[0]];
    w.args = vec![
        w.args[0].clone(),
        format!("\"{hex}\""),
        bytes.len().to_string(),
    ];
    w.ret = Some(bytes.len() as i64);
    for &i in writes[1..].iter().rev() {
        v.remove(i);
    }
    v
}

/// Asserts that `check` rejects the mutated trace.
fn must_fail<T>(what: &str, calls: Vec<Call>, check: impl Fn(&[Ev]) -> Result<T, String>) {
    let evs = analyze(&calls);
    assert!(
        check(&evs).is_err(),
        "the check accepted a trace where {what}:\n{}",
        dump(&evs)
    );
}

fn ok<T>(what: &str, r: Result<T, String>, run: &Run) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}\ntrace:\n{}", dump(&run.evs)))
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("untorn-strace-")
        .tempdir()
        .expect("tempdir")
}

// ---------------------------------------------------------------------------------------------
// The tests

/// `untorn write FILE X`, default durability: write → fsync(temp) → rename onto FILE →
/// fsync(dir); for an existing and a new file, with `--temp named` and the default temp.
#[test]
fn write_full() {
    for existing in [true, false] {
        for named in [false, true] {
            let d = scratch();
            if existing {
                std::fs::write(d.path().join("a.json"), "{\"old\": 1}\n").unwrap();
            }
            let content = "{\"new\": 2}\n";
            let mut args = vec!["write"];
            if named {
                args.extend(["--temp", "named"]);
            }
            args.extend(["a.json", content]);
            let Some(run) = traced("write_full", d.path(), &args) else {
                return;
            };
            let file = run.path("a.json");
            let what = format!("untorn {args:?} (existing: {existing})");
            let check =
                |evs: &[Ev]| check_replace(evs, &file, content.as_bytes(), Durability::Full);
            let r = ok(&what, check(&run.evs), &run);
            assert_eq!(
                std::fs::read_to_string(d.path().join("a.json")).unwrap(),
                content
            );
            assert_eq!(
                existing,
                r.displaced.is_some(),
                "{what}: displaced {:?}",
                r.displaced
            );

            // The checksum: set on the temp before its fsync (where the file system keeps user
            // extended attributes: the scratch directory's does, or no call is seen at all).
            let sum = check_sum(&run.evs, &r, content.as_bytes());
            let probe = d.path().join("xattr-probe");
            std::fs::write(&probe, "").unwrap();
            let has_xattrs =
                rustix::fs::setxattr(&probe, "user.t", b"1", rustix::fs::XattrFlags::empty())
                    .is_ok();
            std::fs::remove_file(&probe).unwrap();
            if has_xattrs {
                let sum = ok(&what, sum, &run);
                let sync = r.sync.unwrap();
                let sum_check = |evs: &[Ev]| {
                    let r = check_replace(evs, &file, content.as_bytes(), Durability::Full)?;
                    check_sum(evs, &r, content.as_bytes())
                };
                must_fail(
                    "the checksum is set after the fsync",
                    moved(&run.calls, sum, sync),
                    sum_check,
                );
                must_fail("no checksum is set", removed(&run.calls, sum), sum_check);
            }

            // The same checks reject the classic mistakes.
            let sync = r.sync.unwrap();
            let dir_sync = r.dir_sync.unwrap();
            must_fail(
                "the temp's fsync comes after the rename",
                moved(&run.calls, sync, r.put),
                check,
            );
            must_fail(
                "the temp is never fsynced",
                removed(&run.calls, sync),
                check,
            );
            must_fail(
                "the data is written after the fsync",
                moved(&run.calls, r.writes[0], sync),
                check,
            );
            must_fail(
                "the directory is not fsynced",
                removed(&run.calls, dir_sync),
                check,
            );
            must_fail(
                "the directory is fsynced before the rename",
                moved(&run.calls, dir_sync, r.put - 1),
                check,
            );
        }
    }
}

/// `--durability file`: the temp fsynced before the rename, no directory fsync;
/// `--durability none`: no sync of any kind.
#[test]
fn write_weaker_durability() {
    for named in [false, true] {
        for (level, durability) in [("file", Durability::File), ("none", Durability::None)] {
            let d = scratch();
            std::fs::write(d.path().join("a.txt"), "old").unwrap();
            let mut args = vec!["write", "--durability", level];
            if named {
                args.extend(["--temp", "named"]);
            }
            args.extend(["a.txt", "new"]);
            let Some(run) = traced("write_weaker_durability", d.path(), &args) else {
                return;
            };
            let file = run.path("a.txt");
            let what = format!("untorn {args:?}");
            let check = |evs: &[Ev]| check_replace(evs, &file, b"new", durability);
            let r = ok(&what, check(&run.evs), &run);
            assert_eq!(std::fs::read(d.path().join("a.txt")).unwrap(), b"new");
            // Stronger expectations fail on this trace.
            assert!(
                check_replace(&run.evs, &file, b"new", Durability::Full).is_err(),
                "{what}: the trace passes as durability full"
            );
            if durability == Durability::File {
                must_fail(
                    "the temp's fsync comes after the rename",
                    moved(&run.calls, r.sync.unwrap(), r.put),
                    check,
                );
            } else {
                assert!(r.sync.is_none(), "{what}: a sync with durability none");
            }
        }
    }
    // And a full-durability trace is rejected as file and none.
    let d = scratch();
    std::fs::write(d.path().join("a.txt"), "old").unwrap();
    let Some(run) = traced(
        "write_weaker_durability",
        d.path(),
        &["write", "a.txt", "new"],
    ) else {
        return;
    };
    let file = run.path("a.txt");
    for durability in [Durability::File, Durability::None] {
        assert!(
            check_replace(&run.evs, &file, b"new", durability).is_err(),
            "a full trace passes as {durability:?}"
        );
    }
}

/// `untorn write --backup FILE X`: the old version gets its `.bak` name before the single
/// directory fsync.
#[test]
fn write_backup() {
    let d = scratch();
    std::fs::write(d.path().join("s.json"), "{\"v\": 1}\n").unwrap();
    let args = ["write", "--backup", "s.json", "{\"v\": 2}\n"];
    let Some(run) = traced("write_backup", d.path(), &args) else {
        return;
    };
    let file = run.path("s.json");
    let check = |evs: &[Ev]| check_backup(evs, &file, b"{\"v\": 2}\n");
    let (r, bak) = ok("untorn write --backup", check(&run.evs), &run);
    let dir_sync = r.dir_sync.unwrap();
    must_fail(
        "the backup name comes after the directory fsync",
        late_backup(&run.calls, &run.evs, bak, r.put, dir_sync),
        check,
    );
    must_fail("there is no backup", removed(&run.calls, bak), check);
    must_fail(
        "the directory is not fsynced",
        removed(&run.calls, dir_sync),
        check,
    );
    let backups: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bak"))
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read(backups[0].path()).unwrap(), b"{\"v\": 1}\n");
}

/// `untorn append LOG LINE`: one O_APPEND write of the whole record under LOG.lock, then an
/// fdatasync of that descriptor; for an existing log and a new one.
#[test]
fn append() {
    for existing in [true, false] {
        let d = scratch();
        if existing {
            std::fs::write(d.path().join("p.log"), "step 1\n").unwrap();
        }
        let Some(run) = traced("append", d.path(), &["append", "p.log", "step 2 done"]) else {
            return;
        };
        let log = run.path("p.log");
        let check = |evs: &[Ev]| check_append(evs, &log, b"step 2 done");
        let a = ok("untorn append", check(&run.evs), &run);
        let want = if existing {
            "step 1\nstep 2 done\n"
        } else {
            "step 2 done\n"
        };
        assert_eq!(
            std::fs::read_to_string(d.path().join("p.log")).unwrap(),
            want
        );
        must_fail(
            "the fdatasync comes before the write",
            moved(&run.calls, a.sync, a.write.saturating_sub(1)),
            check,
        );
        must_fail("there is no fdatasync", removed(&run.calls, a.sync), check);
        must_fail(
            "the write happens after the lock is released",
            moved(&run.calls, a.write, a.unlock),
            check,
        );
        must_fail(
            "the write happens before the lock is taken",
            moved(&run.calls, a.write, a.lock.saturating_sub(1)),
            check,
        );
        // Two writes of half a record each.
        let mut split = run.calls.clone();
        let w = &run.calls[a.write];
        let (first, second) = (w.clone(), w.clone());
        split[a.write] = Call {
            args: vec![w.args[0].clone(), "\"\\x73\\x74\"".into(), "2".into()],
            ret: Some(2),
            ..first
        };
        split.insert(
            a.write + 1,
            Call {
                args: vec![w.args[0].clone(), "\"\\x65\\x70\"".into(), "2".into()],
                ret: Some(2),
                ..second
            },
        );
        must_fail("the record is written in two writes", split, check);
    }
}

/// `untorn txn put a=src put b=src`: the temps, the journal's links beside every lock file and
/// the lock files' flags all before the one syncfs; the renames after it; the directories
/// fsynced after the renames; the journal's links removed and the flags cleared last. In one
/// directory, and across two.
#[test]
fn txn() {
    for two_dirs in [false, true] {
        let d = scratch();
        std::fs::write(d.path().join("src.json"), "{\"n\": 2}\n").unwrap();
        std::fs::write(d.path().join("a.json"), "{\"n\": 1}\n").unwrap();
        let b = if two_dirs { "sub/b.json" } else { "b.json" };
        std::fs::create_dir_all(d.path().join("sub")).unwrap();
        let put_b = format!("{b}=src.json");
        let args = ["txn", "put", "a.json=src.json", "put", &put_b];
        let Some(run) = traced("txn", d.path(), &args) else {
            return;
        };
        let new: &[u8] = b"{\"n\": 2}\n";
        let (fa, fb) = (run.path("a.json"), run.path(b));
        let targets = [(fa.as_str(), new), (fb.as_str(), new)];
        let check = |evs: &[Ev]| check_txn(evs, &targets);
        let what = format!("untorn {args:?}");
        let t = ok(&what, check(&run.evs), &run);
        assert_eq!(std::fs::read(d.path().join("a.json")).unwrap(), new);
        assert_eq!(std::fs::read(d.path().join(b)).unwrap(), new);
        assert_eq!(
            t.links.len(),
            if two_dirs { 2 } else { 1 },
            "{what}: journal links at calls {:?}",
            t.links
        );
        for dir in [d.path().to_path_buf(), d.path().join("sub")] {
            for e in std::fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !name.contains("untorn"),
                    "{what}: {name} is left in {}",
                    dir.display()
                );
                if name.ends_with(".lock") {
                    assert_eq!(e.metadata().unwrap().len(), 0, "{what}: {name} is flagged");
                }
            }
        }

        // The commit point comes too early, or never.
        for &l in &t.links {
            must_fail(
                "the syncfs comes before a journal link",
                moved(&run.calls, t.syncfs, l - 1),
                check,
            );
        }
        for f in &t.flags {
            must_fail(
                "the syncfs comes before a lock file is flagged",
                moved(&run.calls, t.syncfs, f.set - 1),
                check,
            );
        }
        let last_temp_write = *t.temp_writes.iter().max().unwrap();
        must_fail(
            "the syncfs comes before the last write of a temp",
            moved(&run.calls, t.syncfs, last_temp_write - 1),
            check,
        );
        must_fail("there is no syncfs", removed(&run.calls, t.syncfs), check);
        let mut elsewhere = run.calls.clone();
        elsewhere[t.syncfs].args[0] = "99</proc>".into();
        must_fail("the syncfs is of another file system", elsewhere, check);
        must_fail(
            "the first rename comes before the syncfs",
            moved(&run.calls, t.first_rename, t.syncfs - 1),
            check,
        );
        // The renames are never made durable.
        for &s in &t.dir_syncs_after {
            must_fail(
                "a directory is not fsynced after its renames",
                removed(&run.calls, s),
                check,
            );
        }
        // A journal missing, or removed too early, or left behind.
        for (&l, &u) in t.links.iter().zip(&t.unlinks) {
            must_fail(
                "the journal is not linked in beside one of the lock files",
                removed(&run.calls, l),
                check,
            );
            must_fail(
                "a journal link is removed before the renames are durable",
                moved(&run.calls, u, t.first_rename - 1),
                check,
            );
            must_fail(
                "a journal link is left behind",
                removed(&run.calls, u),
                check,
            );
        }
        must_fail(
            "the journal is written after it is linked in",
            moved(&run.calls, *t.journal_writes.last().unwrap(), t.links[0]),
            check,
        );
        must_fail(
            "the journal's temp name is left behind",
            removed(&run.calls, t.journal_temp_unlink),
            check,
        );
        // A flag missing, cleared too early, or left behind.
        for f in &t.flags {
            must_fail(
                "a lock file is never flagged",
                removed(&run.calls, f.set),
                check,
            );
            must_fail(
                "a flag is cleared before the renames are durable",
                moved(&run.calls, f.clear, t.first_rename - 1),
                check,
            );
            must_fail(
                "a flag is never cleared",
                removed(&run.calls, f.clear),
                check,
            );
            must_fail(
                "a flag is cleared after its lock is released",
                moved(&run.calls, f.clear, f.unlock),
                check,
            );
            must_fail(
                "a lock file is flagged before it is locked",
                moved(&run.calls, f.set, f.lock - 1),
                check,
            );
        }
        // A journal cut short (its last write lost) is not a commit point.
        let mut cut = run.calls.clone();
        let lw = *t.journal_writes.last().unwrap();
        cut[lw].ret = Some(cut[lw].ret.unwrap() - 1);
        must_fail("the journal is written without its last byte", cut, check);
        // A journal whose size or CRC of a temp is not that temp's content. (The journal is
        // re-encoded, so it still decodes; re-encoded unchanged, it passes.)
        let rewritten =
            |j: &untorn::txn::Journal| journal_rewritten(&run.calls, &t.journal_writes, j);
        ok(
            &format!("{what}, its journal re-encoded"),
            check(&analyze(&rewritten(&t.journal))),
            &run,
        );
        for field in ["size", "crc"] {
            let mut j = t.journal.clone();
            match &mut j.entries[0] {
                untorn::txn::Entry::Put { size, crc, .. } => {
                    if field == "size" {
                        *size += 1;
                    } else {
                        *crc ^= 1;
                    }
                }
                other => panic!("{what}: the journal's first entry is {other:?}"),
            }
            must_fail(
                &format!("the journal records a wrong {field} for a temp"),
                rewritten(&j),
                check,
            );
        }
    }
}

/// `untorn edit F -- sed s/a/b/`: flock(F.lock) before the read of F; released after the
/// rename and the directory fsync.
#[test]
fn edit() {
    let d = scratch();
    std::fs::write(d.path().join("f.txt"), "aaa\n").unwrap();
    let Some(run) = traced("edit", d.path(), &["edit", "f.txt", "--", "sed", "s/a/b/"]) else {
        return;
    };
    let file = run.path("f.txt");
    let check = |evs: &[Ev]| check_edit(evs, &file, b"baa\n");
    let (r, lock, read, unlock) = ok("untorn edit", check(&run.evs), &run);
    assert_eq!(std::fs::read(d.path().join("f.txt")).unwrap(), b"baa\n");
    must_fail(
        "the lock is taken after the read",
        moved(&run.calls, lock, read),
        check,
    );
    if unlock < run.calls.len() {
        must_fail(
            "the lock is released before the rename",
            moved(&run.calls, unlock, r.put.saturating_sub(1)),
            check,
        );
        must_fail(
            "the lock is released before the directory fsync",
            moved(&run.calls, unlock, r.dir_sync.unwrap().saturating_sub(1)),
            check,
        );
    }
    must_fail(
        "the temp's fsync comes after the rename",
        moved(&run.calls, r.sync.unwrap(), r.put),
        check,
    );
}

/// `untorn ARGS` in `dir`, without strace (to set a test up); it must succeed.
fn untorn_plain(dir: &Path, args: &[&str]) {
    let out = Command::new(UNTORN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run untorn");
    assert!(
        out.status.success(),
        "untorn {args:?} failed: {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `untorn write --no-clobber FILE X`: a new FILE gets its content by an atomic create that
/// cannot replace a file (`linkat` of the `O_TMPFILE`, or `renameat2(RENAME_NOREPLACE)` of the
/// named temp) after the temp's fsync, and the directory is fsynced after it; then, FILE
/// existing, the same command fails with exit 7 and leaves FILE as it was. With the default temp
/// and `--temp named`.
#[test]
fn write_no_clobber() {
    for named in [false, true] {
        let d = scratch();
        let content = "{\"pid\": 42}\n";
        let mut args = vec!["write", "--no-clobber"];
        if named {
            args.extend(["--temp", "named"]);
        }
        let mut new = args.clone();
        new.extend(["p.json", content]);
        let Some(run) = traced("write_no_clobber", d.path(), &new) else {
            return;
        };
        let file = run.path("p.json");
        let what = format!("untorn {new:?}");
        let check = |evs: &[Ev]| check_no_clobber(evs, &file, content.as_bytes());
        let r = ok(&what, check(&run.evs), &run);
        assert_eq!(
            std::fs::read_to_string(d.path().join("p.json")).unwrap(),
            content
        );
        assert_eq!(r.displaced, None, "{what}: something was at p.json before");
        must_fail(
            "the temp's fsync comes after the publishing call",
            moved(&run.calls, r.sync.unwrap(), r.put),
            check,
        );
        must_fail(
            "the directory is not fsynced",
            removed(&run.calls, r.dir_sync.unwrap()),
            check,
        );
        // A plain rename would replace a file that appeared meanwhile. As a trace of an atomic
        // replace it is fine: only the no-replace requirement rejects it.
        let plain = plain_rename(&run.calls, r.put);
        ok(
            &format!("{what}, published by a plain rename, as an atomic replace"),
            check_replace(
                &analyze(&plain),
                &file,
                content.as_bytes(),
                Durability::Full,
            ),
            &run,
        );
        must_fail("p.json is published by a plain rename", plain, check);

        // p.json exists now: refused (exit 7, "exists"), p.json untouched, no temp left.
        let mut again = args.clone();
        again.extend(["p.json", "{\"pid\": 43}\n"]);
        let Some((run, out)) = traced_output("write_no_clobber", d.path(), &again) else {
            return;
        };
        let what = format!("untorn {again:?}");
        assert_eq!(
            out.status.code(),
            Some(7),
            "{what}: stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("p.json")).unwrap(),
            content
        );
        assert_eq!(names_in(d.path()), ["p.json"], "{what}: left behind");
        let refused = |evs: &[Ev]| check_refused(evs, &file);
        ok(&what, refused(&run.evs), &run);
        // The refusal is the no-replace publishing call failing: made a plain rename that
        // succeeds, it replaces p.json.
        let attempt = run
            .evs
            .iter()
            .rfind(|e| {
                !e.ok
                    && (e.name.starts_with("link") || e.name.starts_with("rename"))
                    && e.paths.get(1) == Some(&file)
            })
            .unwrap_or_else(|| {
                panic!(
                    "{what}: no failed publishing call onto {file}\ntrace:\n{}",
                    dump(&run.evs)
                )
            });
        must_fail(
            "the existing p.json is replaced by a plain rename",
            plain_rename(&run.calls, attempt.i),
            refused,
        );
    }
}

/// `untorn restore FILE` (the newest backup, `--nth 2`, `--from NAME`): the backup's content
/// reaches FILE by an atomic replace (a temp written and fsynced before the exchange onto FILE,
/// the directory fsynced after); the version it replaces gets a backup name before that fsync;
/// every backup is kept.
#[test]
fn restore() {
    for pick in 0..3 {
        let d = scratch();
        for v in 1..=4 {
            untorn_plain(
                d.path(),
                &[
                    "write",
                    "--backup=3",
                    "s.json",
                    &format!("{{\"v\": {v}}}\n"),
                ],
            );
        }
        let backups = |d: &Path| -> Vec<(String, String)> {
            names_in(d)
                .into_iter()
                .filter(|n| n.starts_with("s.json.") && n.ends_with(".bak"))
                .map(|n| {
                    let c = std::fs::read_to_string(d.join(&n)).unwrap();
                    (n, c)
                })
                .collect()
        };
        // Oldest first (the names are UTC times).
        let before = backups(d.path());
        let contents: Vec<&str> = before.iter().map(|b| b.1.as_str()).collect();
        assert_eq!(contents, ["{\"v\": 1}\n", "{\"v\": 2}\n", "{\"v\": 3}\n"]);
        let mut args = vec!["restore"];
        let from = match pick {
            0 => &before[2],
            1 => {
                args.extend(["--nth", "2"]);
                &before[1]
            }
            _ => {
                args.extend(["--from", &before[0].0]);
                &before[0]
            }
        };
        args.push("s.json");
        let Some(run) = traced("restore", d.path(), &args) else {
            return;
        };
        let file = run.path("s.json");
        let what = format!("untorn {args:?}");
        let check = |evs: &[Ev]| check_backup(evs, &file, from.1.as_bytes());
        let (r, bak) = ok(&what, check(&run.evs), &run);
        assert_eq!(
            std::fs::read_to_string(d.path().join("s.json")).unwrap(),
            from.1,
            "{what}"
        );
        let after = backups(d.path());
        let added: Vec<&(String, String)> = after.iter().filter(|b| !before.contains(b)).collect();
        assert!(
            before.iter().all(|b| after.contains(b)),
            "{what}: backups before {before:?}, after {after:?}"
        );
        assert_eq!(
            added.len(),
            1,
            "{what}: backups before {before:?}, after {after:?}"
        );
        assert_eq!(added[0].1, "{\"v\": 4}\n", "{what}: the replaced version");
        assert_eq!(
            Some(format!("{}/{}", run.dir, added[0].0)),
            run.evs[bak].paths.get(1).cloned(),
            "{what}: the backup name given in the trace"
        );

        let dir_sync = r.dir_sync.unwrap();
        must_fail(
            "the temp's fsync comes after the rename",
            moved(&run.calls, r.sync.unwrap(), r.put),
            check,
        );
        must_fail(
            "the directory is not fsynced",
            removed(&run.calls, dir_sync),
            check,
        );
        must_fail(
            "the replaced version's backup name comes after the directory fsync",
            late_backup(&run.calls, &run.evs, bak, r.put, dir_sync),
            check,
        );
    }
}

/// `untorn recover DIR` over a transaction stopped by a crash just after its commit point (temps
/// with the new content, the journal beside every lock file, the lock files flagged; nothing
/// renamed yet), made by hand: under every lock, a syncfs before the first rename, each
/// directory fsynced after its renames, and only then the flags cleared and the journal's copies
/// removed. In one directory, and across two.
#[test]
fn recover_txn() {
    use std::os::unix::fs::MetadataExt;
    use untorn::txn::journal::{Dir, Name};
    use untorn::txn::{Entry, Journal};
    for two_dirs in [false, true] {
        let d = scratch();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let b = if two_dirs { "sub/b.json" } else { "b.json" };
        let files = [("a.json", "{\"a\": 2}\n"), (b, "{\"b\": 2}\n")];
        let tag: u16 = 0x2a7;
        let (mut entries, mut temps, mut locks) = (Vec::new(), Vec::new(), Vec::new());
        for (k, (name, new)) in files.iter().enumerate() {
            let target = root.join(name);
            std::fs::write(&target, "{\"old\": 1}\n").unwrap();
            let base = target.file_name().unwrap().to_str().unwrap();
            let temp = target.with_file_name(format!(".{base}.untorn-{:08x}.tmp", 0xc0de + k));
            std::fs::write(&temp, new).unwrap();
            let m = std::fs::metadata(&temp).unwrap();
            let dir = (two_dirs && k == 1) as u32;
            entries.push(Entry::Put {
                dir,
                temp: temp.file_name().unwrap().into(),
                target: target.file_name().unwrap().into(),
                dev: m.dev(),
                ino: m.ino(),
                size: new.len() as u64,
                crc: crc32(new.as_bytes()),
            });
            let lock = target.with_file_name(format!("{base}.lock"));
            // The flag: the tag as the lock file's size, all NUL bytes.
            std::fs::File::create(&lock)
                .unwrap()
                .set_len(u64::from(tag))
                .unwrap();
            temps.push(temp);
            locks.push(lock);
        }
        let dir_of = |p: &PathBuf| {
            let m = std::fs::metadata(p).unwrap();
            Dir {
                dev: m.dev(),
                ino: m.ino(),
                path: p.clone(),
            }
        };
        let mut dirs = vec![dir_of(&root)];
        if two_dirs {
            dirs.push(dir_of(&root.join("sub")));
        }
        let journal = Journal {
            id: [3; 16],
            dirs,
            entries,
            locks: locks
                .iter()
                .enumerate()
                .map(|(k, l)| Name {
                    dir: (two_dirs && k == 1) as u32,
                    name: l.file_name().unwrap().into(),
                })
                .collect(),
        }
        .encode();
        let jdirs: std::collections::BTreeSet<PathBuf> = locks
            .iter()
            .map(|l| l.parent().unwrap().to_path_buf())
            .collect();
        let jpaths: Vec<PathBuf> = jdirs
            .iter()
            .map(|d| d.join(format!(".untorn-txn-{tag:04x}.journal")))
            .collect();
        std::fs::write(&jpaths[0], &journal).unwrap();
        for p in &jpaths[1..] {
            std::fs::hard_link(&jpaths[0], p).unwrap();
        }

        let Some(run) = traced("recover_txn", &root, &["recover", "."]) else {
            return;
        };
        let what = format!("untorn recover (two directories: {two_dirs})");
        let s = |p: &PathBuf| p.to_str().unwrap().to_string();
        let targets: Vec<(String, String)> = temps
            .iter()
            .zip(&files)
            .map(|(t, (n, _))| (s(t), run.path(n)))
            .collect();
        let target_refs: Vec<(&str, &str)> = targets
            .iter()
            .map(|(t, g)| (t.as_str(), g.as_str()))
            .collect();
        let (journals, lock_paths): (Vec<String>, Vec<String>) = (
            jpaths.iter().map(s).collect(),
            locks.iter().map(s).collect(),
        );
        let check = |evs: &[Ev]| check_recover(evs, &target_refs, &journals, &lock_paths);
        let r = ok(&what, check(&run.evs), &run);
        for (name, new) in &files {
            assert_eq!(
                std::fs::read_to_string(root.join(name)).unwrap(),
                *new,
                "{what}: {name}"
            );
        }
        for l in &locks {
            assert_eq!(
                std::fs::metadata(l).unwrap().len(),
                0,
                "{what}: {} is still flagged",
                l.display()
            );
        }
        for dir in [root.clone(), root.join("sub")] {
            for n in names_in(&dir) {
                assert!(
                    !n.contains("untorn"),
                    "{what}: {n} is left in {}",
                    dir.display()
                );
            }
        }

        must_fail(
            "the syncfs comes after the first rename",
            moved(&run.calls, r.syncfs, r.first_rename),
            check,
        );
        // Without it, the first fsync of that directory is the clean-up's, after the flags
        // are cleared: the renames are not durable before the flags go.
        for &s in &r.dir_syncs_after {
            must_fail(
                "a directory is not fsynced after its renames, before the clean-up",
                removed(&run.calls, s),
                check,
            );
        }
        for &u in &r.unlinks {
            must_fail(
                "a copy of the journal is removed before the renames",
                moved(&run.calls, u, r.first_rename - 1),
                check,
            );
        }
        for &c in &r.clears {
            must_fail(
                "a flag is cleared before the renames",
                moved(&run.calls, c, r.first_rename - 1),
                check,
            );
        }
        for &(lock, unlock) in &r.locks {
            must_fail(
                "a lock is taken after the first rename",
                moved(&run.calls, lock, r.first_rename),
                check,
            );
            if unlock < run.calls.len() {
                must_fail(
                    "a lock is released before the renames are durable",
                    moved(&run.calls, unlock, r.first_rename - 1),
                    check,
                );
            }
        }
    }
}

/// The parser on lines as this strace prints them: `-y` paths, `(deleted)`, unfinished and
/// resumed calls of several processes, a failed call.
#[test]
fn parser() {
    let hex = |s: &str| s.bytes().map(|b| format!("\\x{b:02x}")).collect::<String>();
    let d = hex("/d");
    let tmp = hex("/d/#123");
    let text = format!(
        "10 openat(AT_FDCWD<{d}>, \"{dot}\", O_RDONLY|O_DIRECTORY) = 3<{d}>\n\
         10 openat(3<{d}>, \"{dot}\", O_WRONLY|O_TMPFILE, 0600) = 4<{tmp}>(deleted)\n\
         10 write(4<{tmp}>(deleted), \"{data}\", 3 <unfinished ...>\n\
         11 newfstatat(AT_FDCWD<{d}>, \"{x}\", 0x7ffe, 0) = -1 ENOENT (No such file)\n\
         10 <... write resumed>) = 3\n\
         10 fsync(4<{tmp}>(deleted)) = 0\n\
         10 linkat(4<{tmp}>(deleted), \"\", 3<{d}>, \"{t}\", AT_EMPTY_PATH) = 0\n\
         10 renameat2(3<{d}>, \"{t}\", 3<{d}>, \"{f}\", RENAME_EXCHANGE) = 0\n\
         10 fsync(3<{d}>) = 0\n\
         10 fcntl(3<{d}>, F_GETFD) = 0x1 (flags FD_CLOEXEC)\n\
         10 openat(3<{d}>, \"{l}\", O_RDWR|O_CREAT|O_NOFOLLOW, 0644) = 5<{lock}>\n\
         10 ftruncate(5<{lock}>, 2966) = 0\n\
         10 ftruncate(5<{lock}>, 0) = 0\n\
         10 +++ exited with 0 +++\n",
        dot = hex("."),
        data = hex("new"),
        x = hex("x"),
        t = hex(".f.untorn-1.tmp"),
        f = hex("f"),
        l = hex("f.lock"),
        lock = hex("/d/f.lock"),
    );
    let calls = parse_trace(&text);
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "openat",
            "openat",
            "newfstatat",
            "write",
            "fsync",
            "linkat",
            "renameat2",
            "fsync",
            "fcntl",
            "openat",
            "ftruncate",
            "ftruncate"
        ]
    );
    assert_eq!(calls[2].ret, Some(-1));
    assert_eq!(calls[8].ret, Some(1));
    let evs = analyze(&calls);
    assert_eq!(evs[3].data, b"new");
    assert_eq!(evs[6].paths, ["/d/.f.untorn-1.tmp", "/d/f"]);
    assert_eq!(
        evs[6].moved, evs[1].moved,
        "the O_TMPFILE inode is what lands at /d/f"
    );
    let r = check_replace(&evs, "/d/f", b"new", Durability::Full).unwrap();
    assert_eq!((r.sync, r.put, r.dir_sync), (Some(4), 6, Some(7)));
    assert!(check_replace(&evs, "/d/f", b"other", Durability::Full).is_err());
    assert!(check_replace(&evs, "/d/f", b"new", Durability::File).is_err());
    // ftruncate: the length, on the file of the descriptor.
    assert_eq!((evs[10].len, evs[11].len), (Some(2966), Some(0)));
    assert_eq!(evs[10].obj, evs[9].moved);
    assert_eq!(evs[10].fd_path.as_deref(), Some("/d/f.lock"));
    assert_eq!(evs[4].len, None);
    // The test's own CRC-32 (the standard check value).
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    must_fail("the fsync is after the rename", moved(&calls, 4, 6), |e| {
        check_replace(e, "/d/f", b"new", Durability::Full)
    });
}
