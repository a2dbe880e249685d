//! Group commit: one `fdatasync` for the records of several appenders, without letting any
//! appender's sync commit another's new size before its data.
//!
//! # The hole it must keep closed
//!
//! On ext4 `data=writeback,nodelalloc` a `write` that extends a file allocates its blocks and
//! grows its on-disk size in the running journal transaction at once, while the data stays in
//! the page cache. Any `fsync` that commits that transaction before the data reaches the disk
//! makes the new size durable over the blocks' *previous* content (another file's stale data,
//! which can look like records). An `fdatasync` of the log first writes out every dirty page of
//! the file, so the only appends it can commit without their data are those written **while it
//! runs**. The power-cut test bed caught exactly that when appenders released the lock before
//! their `fdatasync`. So: no append may be written while an `fdatasync` of the log runs, and
//! every sync runs under the log's exclusive lock.
//!
//! # The protocol
//!
//! An appender that finds the lock taken, or finds it free but the lock file's **sync mark**
//! busy (a sync served several appenders less than 200 ms ago), knows others are appending. It
//! does not sync under the lock it writes under. It writes its records and reads the mark,
//! still under the lock. Then it either **leads** the next sync or **follows** the one already
//! coming:
//!
//! - The first appender to write after a sync finds nobody leading: it takes the **lead**, a
//!   POSIX record lock (`fcntl F_SETLK`, exclusive, never waited for) on the lock file, which
//!   on the local file systems is independent of the `flock` that excludes writers. It
//!   releases the `flock`, lets the appenders waiting for it write ([`gather`]: it sleeps while
//!   the log grows, until the others have written what they wrote for the last leader), takes
//!   the lock again, syncs under it, advances the mark, drops the lead, and unlocks.
//! - An appender that writes while someone leads **follows**: it releases the `flock` and
//!   waits for the lead to be dropped (a shared record lock, waited for), then reads the mark,
//!   without the `flock`. If the mark has changed and names this log's inode, its records are
//!   durable. Otherwise (the leader failed or died, or the hint was lost: a record lock is
//!   the process's, and any close of the file by that process drops it) it takes the lock
//!   again and syncs for itself, as every appender without a leader does.
//!
//! A follower takes the lock once per record instead of twice, and a sync serves everyone who
//! wrote while the previous one ran. Every sync still runs under the exclusive `flock`, with
//! no write during it: the hole stays closed. The lead is only a hint: whether an appender
//! returns early depends on the mark alone, and the mark changes only under the lock, after a
//! successful `fdatasync` begun under it. An appender that finds the lock free and the mark not
//! busy (alone, as far as it can tell) syncs at once under it, as before (one lock, no waiting
//! for others, no record lock), and advances the mark only where one exists (someone grouped
//! here before). A sync that served others' records dates the mark busy; a lone appender's
//! does not, so a burst of appenders leaves at most 200 ms of grouping behind it.
//!
//! "Alone, as far as it can tell" needs one more signal: `flock` does not hand the lock to a
//! waiter, it wakes the waiters and lets them race, and a process appending in a loop through a
//! [`LogWriter`](super::LogWriter) takes the lock again before they run. It finds the lock free
//! every time, and before any group has dated a mark busy it would sync alone under the lock again
//! and again while the others wait (measured in the append benchmark: one of 8 such processes made
//! its 100 appends, 99 of them alone under the lock, before the others made any). So an appender
//! whose first try for the lock fails *announces* its wait in the lock file's modification time
//! before it waits (`lockfile::announce_wait`: the time with 424 242 ns past the millisecond,
//! renewed at most every 10 ms, only in one's own lock file with a single link), and one that finds
//! the lock free groups while a wait was announced in the last [`WAITING`] (reading the mark first,
//! as every grouped appender does).
//!
//! Why a changed mark proves the sync: the appender read `before` under the lock, after its
//! write; a mark set later was set in a later hold of the lock, after an `fdatasync` begun in
//! that hold, so after the write, of the inode the mark names. Reading it without the lock
//! changes nothing in that argument (the leader sets it before dropping the lead).
//!
//! The lead is used only where `flock` is the kernel's own and record locks do not meet it
//! (ext4, xfs, btrfs, tmpfs: on NFS a `flock` *is* a record lock, and the lead would replace
//! the lock), and only where the mark is ([`usable`]). Nobody can hold the lead against an
//! appender for long: taking it exclusively needs the lock file open for writing (its owner,
//! trusted, and nobody else: [`usable`]), a follower waits for it only while a leader syncs,
//! and a leader never waits for it.
//!
//! Only an appender that may wait for the lock for ever groups (leads, follows, or locks again
//! after its write): with a timeout or a cancel flag, that second lock could fail after the
//! records were written, and a caller that retries would append them twice (a Python signal
//! handler may raise a timeout of its own); and a follower's wait for the lead is not
//! cancellable. Such an appender syncs under the lock it wrote under.
//!
//! What it buys depends on how long a flush takes against how fast the lock passes between
//! processes (see the append benchmark's part 3 for the records per flush). Threads of one
//! process sharing a [`LogWriter`](super::LogWriter) batch better still: their records queue
//! in memory while a batch syncs, and the next batch takes them all.
//!
//! The mark is the extended attribute `user.untorn.synced` of the lock file (`dev=D ino=I gen=G
//! busy=MS grew=B`: the log's device and inode, a counter every sync advances, when a sync last
//! served several appenders, and what the others wrote for the last leader). It lives in the lock
//! file's inode, shared by every process, written only after a durable sync; whether it survives a
//! crash does not matter (it is read and compared within one run of appends). It is used only where
//! the lock file belongs to this user, root or a trusted user and nobody else may write it (a mark
//! someone else could set would let them make an append skip its sync), and where the file system
//! has user extended attributes; elsewhere every appender syncs for itself.

use crate::ctx::{Ctx, Feature};
use crate::sys::{errnos::*, Fd, FsKind, LockKind, Stat, Sys};
use crate::trust::trusts;

/// The extended attribute of the lock file that holds the sync mark.
pub(super) const MARK: &str = "user.untorn.synced";

/// A sync mark: which log's inode was last synced under this lock file, and the counter that
/// every sync advances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) gen: u64,
    /// When a sync last served the records of more than one appender (milliseconds since the
    /// epoch; 0: never): appenders that find the lock free still group while this is recent.
    pub(super) busy: u64,
    /// The bytes the others wrote while the last leader let the lock go ([`gather`]): the next
    /// leader takes the lock back as soon as as much has been written.
    pub(super) grew: u64,
}

/// How long after a sync that served several appenders an appender that finds the lock free
/// still leads a group (lets the lock go before its sync) instead of syncing at once.
const BUSY_FOR_MS: u64 = 200;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Mark {
    fn encode(&self) -> String {
        format!(
            "dev={} ino={} gen={} busy={} grew={}",
            self.dev, self.ino, self.gen, self.busy, self.grew
        )
    }

    /// Whether a sync served several appenders' records a moment ago (others are appending).
    pub(super) fn busy(&self) -> bool {
        let now = now_ms();
        self.busy != 0 && self.busy <= now && now - self.busy < BUSY_FOR_MS
    }

    fn decode(b: &[u8]) -> Option<Mark> {
        let s = std::str::from_utf8(b).ok()?;
        let mut it = s.split(' ');
        let mut field = |name: &str| -> Option<u64> { it.next()?.strip_prefix(name)?.parse().ok() };
        let mut m = Mark {
            dev: field("dev=")?,
            ino: field("ino=")?,
            gen: field("gen=")?,
            busy: 0,
            grew: 0,
        };
        // Marks written before `busy` and `grew` existed have three fields.
        if let Some(b) = it.next() {
            m.busy = b.strip_prefix("busy=")?.parse().ok()?;
            if let Some(g) = it.next() {
                m.grew = g.strip_prefix("grew=")?.parse().ok()?;
            }
        }
        it.next().is_none().then_some(m)
    }
}

/// Whether this lock file's mark may be used: the file system keeps user extended attributes
/// (as far as known), the lock file's owner is trusted, and nobody but its owner may write it
/// (a `user.*` attribute can be set by whoever may write the file: a group- or world-writable
/// lock file would let them set a mark that makes an append skip its sync).
pub(super) fn usable(ctx: &Ctx, lock: &Stat) -> bool {
    ctx.has(lock.dev, Feature::Xattr) != Some(false)
        // One link: a file of the user's own (or root's) that someone else linked in under
        // the lock file's name is not one (its attribute would be set through a planted name).
        && lock.nlink == 1
        && lock.mode & 0o022 == 0
        // Root's lock files are trusted by everyone: no need to ask who we are.
        && (lock.uid == 0 || trusts(ctx.sys.euid(), lock.uid))
}

/// Whether the lead (a record lock on the lock file `fd`) may be used: a local file system
/// whose `flock` is the kernel's own, independent of record locks.
pub(super) fn lead_usable(ctx: &Ctx, lock: &Stat, fd: &Fd) -> bool {
    matches!(
        ctx.fs_kind(lock.dev, fd),
        FsKind::Ext4 | FsKind::Xfs | FsKind::Btrfs | FsKind::Tmpfs
    )
}

/// How long after an appender announced it waits for the lock (see
/// `lockfile::announce_wait`) an appender that finds the lock free still groups.
pub(super) const WAITING: std::time::Duration = std::time::Duration::from_millis(50);

/// How long the leader of a sync lets the lock go for at a time, so that the appenders waiting
/// for it write first; and how many times at most, while the log keeps growing.
const GATHER: std::time::Duration = std::time::Duration::from_micros(50);
const GATHER_MAX: u32 = 8;

/// Lets the appenders waiting for the lock write before the leader syncs: sleeps while the log
/// `log` (whose end was `end` after this appender's write) keeps growing, [`GATHER_MAX`] times
/// at most, and stops early once the others have written `expect` bytes (what they wrote for
/// the last leader: no sleep more to find that nobody else is coming). Returns the bytes the
/// others wrote. (A yield alone served 2–3 records per flush at 8 appenders on 2 cores; a
/// sleep lets the waiters run: 6–7.)
pub(super) fn gather(sys: &dyn Sys, log: &Fd, end: u64, expect: u64) -> u64 {
    let mut last = end;
    for _ in 0..GATHER_MAX {
        std::thread::sleep(GATHER);
        let size = sys.stat(log).map_or(last, |s| s.size);
        if size == last {
            break;
        }
        last = size;
        if expect > 0 && last.saturating_sub(end) >= expect {
            break;
        }
    }
    last.saturating_sub(end)
}

/// Whether this appender got the lead of the next sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lead {
    /// It leads: others follow it.
    Got,
    /// Another process leads (or holds a record lock on the lock file): follow it.
    Taken,
    /// No lead here (the lock file is open read-only, or the file system refuses record
    /// locks): sync without one.
    None,
}

/// Takes the lead of the next sync if nobody has it (never waits).
pub(super) fn take_lead(sys: &dyn Sys, lock: &Fd) -> Lead {
    match sys.record_lock(lock, LockKind::Exclusive, false) {
        Ok(()) => Lead::Got,
        Err(e) if matches!(e.raw_os_error(), Some(EAGAIN | EACCES)) => Lead::Taken,
        Err(_) => Lead::None,
    }
}

/// Drops the lead (or a follower's shared hold of it).
pub(super) fn drop_lead(sys: &dyn Sys, lock: &Fd) {
    if let Err(e) = sys.record_lock(lock, LockKind::Unlock, false) {
        tracing::trace!(target: "untorn", error = %e, "could not drop the group commit's lead");
    }
}

/// Waits until the leader of the coming sync has dropped the lead (a signal or an error ends
/// the wait early: the caller then reads the mark and syncs for itself if it must).
pub(super) fn follow(sys: &dyn Sys, lock: &Fd) {
    if sys.record_lock(lock, LockKind::Shared, true).is_ok() {
        drop_lead(sys, lock);
    }
}

/// The lock file's mark, `None` if it has none (or one that is not a mark).
pub(super) fn read(sys: &dyn Sys, lock: &Fd) -> Option<Mark> {
    read_before(sys, lock).ok().flatten()
}

/// The mark as an appender reads it before it may group, which [`covered`] compares later
/// marks with: `Err` if it could not be read (not "no mark": a mark that was there unread
/// would look like a new one later, and make a follower return unsynced), `Ok(None)` if the
/// lock file has none (or one that is not a mark).
pub(super) fn read_before(sys: &dyn Sys, lock: &Fd) -> Result<Option<Mark>, ()> {
    match sys.get_xattr(lock, MARK) {
        Ok(v) => Ok(Mark::decode(&v)),
        Err(e) if e.raw_os_error() == Some(ENODATA) => Ok(None),
        Err(_) => Err(()),
    }
}

/// Whether the records written before `before` was read (under the lock, after the write) are
/// durable: the mark has changed since, and the last sync was of this log's inode `log`.
pub(super) fn covered(before: Option<Mark>, now: Option<Mark>, log: &Stat) -> bool {
    now.is_some_and(|m| (m.dev, m.ino) == (log.dev, log.ino) && Some(m) != before)
}

/// Advances the mark after a successful sync of the log `log`, made under the lock: `prev` is
/// the mark read under this same hold; `served_several`: the sync served the records of more
/// than this appender (it is then dated `busy`). A failure only costs later appenders their own
/// sync (and a file system without user extended attributes is not asked again).
pub(super) fn advance(
    ctx: &Ctx,
    lock: &Fd,
    lock_st: &Stat,
    prev: Option<Mark>,
    log: &Stat,
    served_several: bool,
    grew: Option<u64>,
) {
    let m = Mark {
        dev: log.dev,
        ino: log.ino,
        gen: prev.map_or(1, |p| p.gen.wrapping_add(1)),
        busy: if served_several {
            now_ms()
        } else {
            prev.map_or(0, |p| p.busy)
        },
        grew: grew.unwrap_or_else(|| prev.map_or(0, |p| p.grew)),
    };
    if let Err(e) = ctx.sys.set_xattr(lock, MARK, m.encode().as_bytes()) {
        if matches!(e.raw_os_error(), Some(EOPNOTSUPP)) {
            ctx.learn(lock_st.dev, Feature::Xattr, false);
        }
        tracing::trace!(target: "untorn", error = %e, "could not advance the sync mark");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(dev: u64, ino: u64) -> Stat {
        Stat {
            dev,
            ino,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            nlink: 1,
            size: 0,
            mtime_ns: 0,
            attrs: 0,
        }
    }

    #[test]
    fn marks_round_trip_and_junk_is_no_mark() {
        let m = Mark {
            dev: 2049,
            ino: 12,
            gen: u64::MAX,
            busy: 1_765_000_000_000,
            grew: 1400,
        };
        assert_eq!(Mark::decode(m.encode().as_bytes()), Some(m));
        let old = Mark::decode(b"dev=1 ino=2 gen=3").expect("a mark of three fields");
        assert_eq!((old.gen, old.busy, old.grew), (3, 0, 0));
        let four = Mark::decode(b"dev=1 ino=2 gen=3 busy=4").expect("a mark of four fields");
        assert_eq!((four.busy, four.grew), (4, 0));
        for junk in [
            &b""[..],
            b"dev=1 ino=2",
            b"dev=1 ino=2 gen=x",
            b"dev=1 ino=2 gen=3 x",
            b"dev=1 ino=2 gen=3 busy=4 x",
            b"dev=1 ino=2 gen=3 busy=4 grew=5 x",
        ] {
            assert_eq!(Mark::decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn covered_only_by_a_later_sync_of_this_inode() {
        let log = st(1, 7);
        let m = |ino, gen| {
            Some(Mark {
                dev: 1,
                ino,
                gen,
                busy: 0,
                grew: 0,
            })
        };
        assert!(!covered(None, None, &log));
        assert!(!covered(m(7, 3), m(7, 3), &log), "no sync since");
        assert!(covered(m(7, 3), m(7, 4), &log));
        assert!(covered(None, m(7, 1), &log));
        assert!(
            covered(m(9, 3), m(7, 4), &log),
            "the last sync was of this log"
        );
        assert!(
            !covered(m(7, 3), m(9, 4), &log),
            "the last sync was of another inode"
        );
        assert!(!covered(
            m(7, 3),
            Some(Mark {
                dev: 2,
                ino: 7,
                gen: 4,
                busy: 0,
                grew: 0,
            }),
            &log
        ));
    }
}
