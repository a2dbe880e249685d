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
//! An appender that finds the lock taken (others are appending) does not sync under the lock
//! it writes under. It writes its records, reads the lock file's **sync mark**, releases the
//! lock, and takes it again: by then the holders in between may have synced. If the mark has
//! changed and names this log's inode, a sync of this log started after this append's write
//! (marks change only under the lock, after a successful `fdatasync` begun under it), so the
//! records are durable; otherwise it syncs, under the lock, and advances the mark. Every sync
//! still runs under the exclusive lock, with no write during it: the hole stays closed. An
//! appender that finds the lock free syncs at once under it, as before (one lock, no waiting
//! for others), and advances the mark only where one exists (someone grouped here before).
//! Between its unlock and its second lock a grouped appender yields the processor, so that the
//! appenders the unlock woke write first and the next sync serves more records.
//!
//! Why a changed mark proves the sync: the appender read `before` under the lock, after its
//! write; a mark set later was set in a later hold of the lock, after an `fdatasync` begun in
//! that hold, so after the write, of the inode the mark names.
//!
//! What it buys depends on how long a flush takes against how fast the lock passes between
//! processes: with 8 appenders on these 2-core VMs, 1.2–2 records per flush (counted by the
//! mark) when a flush costs 0.3–3 ms. Threads of one process sharing a
//! [`LogWriter`](super::LogWriter) batch far better: their records queue in memory while a
//! batch syncs, and the next batch takes them all.
//!
//! The mark is the extended attribute `user.untorn.synced` of the lock file (`dev=D ino=I
//! gen=G`: the log's device and inode, and a counter every sync advances). It lives in the lock
//! file's inode, shared by every process, written only after a durable sync; whether it
//! survives a crash does not matter (it is read and compared within one run of appends). It is
//! used only where the lock file belongs to this user, root or a trusted user and nobody else
//! may write it (a mark someone else could set would let them make an append skip its sync),
//! and where the file system has user extended attributes; elsewhere every appender syncs for
//! itself.

use crate::ctx::{Ctx, Feature};
use crate::sys::{errnos::*, Fd, Stat, Sys};
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
}

impl Mark {
    fn encode(&self) -> String {
        format!("dev={} ino={} gen={}", self.dev, self.ino, self.gen)
    }

    fn decode(b: &[u8]) -> Option<Mark> {
        let s = std::str::from_utf8(b).ok()?;
        let mut it = s.split(' ');
        let mut field = |name: &str| -> Option<u64> { it.next()?.strip_prefix(name)?.parse().ok() };
        let m = Mark {
            dev: field("dev=")?,
            ino: field("ino=")?,
            gen: field("gen=")?,
        };
        it.next().is_none().then_some(m)
    }
}

/// Whether this lock file's mark may be used: the file system keeps user extended attributes
/// (as far as known), the lock file's owner is trusted, and nobody but its owner may write it
/// (a `user.*` attribute can be set by whoever may write the file: a group- or world-writable
/// lock file would let them set a mark that makes an append skip its sync).
pub(super) fn usable(ctx: &Ctx, lock: &Stat) -> bool {
    // Root's lock files are trusted by everyone: no need to ask who we are.
    ctx.has(lock.dev, Feature::Xattr) != Some(false)
        && lock.mode & 0o022 == 0
        && (lock.uid == 0 || trusts(ctx.sys.euid(), lock.uid))
}

/// The lock file's mark, `None` if it has none (or one that is not a mark).
pub(super) fn read(sys: &dyn Sys, lock: &Fd) -> Option<Mark> {
    sys.get_xattr(lock, MARK)
        .ok()
        .and_then(|v| Mark::decode(&v))
}

/// Whether the records written before `before` was read (under the lock, after the write) are
/// durable: the mark has changed since, and the last sync was of this log's inode `log`.
pub(super) fn covered(before: Option<Mark>, now: Option<Mark>, log: &Stat) -> bool {
    now.is_some_and(|m| (m.dev, m.ino) == (log.dev, log.ino) && Some(m) != before)
}

/// Advances the mark after a successful sync of the log `log`, made under the lock: `prev` is
/// the mark read under this same hold. A failure only costs later appenders their own sync
/// (and a file system without user extended attributes is not asked again).
pub(super) fn advance(ctx: &Ctx, lock: &Fd, lock_st: &Stat, prev: Option<Mark>, log: &Stat) {
    let m = Mark {
        dev: log.dev,
        ino: log.ino,
        gen: prev.map_or(1, |p| p.gen.wrapping_add(1)),
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
        };
        assert_eq!(Mark::decode(m.encode().as_bytes()), Some(m));
        for junk in [
            &b""[..],
            b"dev=1 ino=2",
            b"dev=1 ino=2 gen=x",
            b"dev=1 ino=2 gen=3 x",
        ] {
            assert_eq!(Mark::decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn covered_only_by_a_later_sync_of_this_inode() {
        let log = st(1, 7);
        let m = |ino, gen| Some(Mark { dev: 1, ino, gen });
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
                gen: 4
            }),
            &log
        ));
    }
}
