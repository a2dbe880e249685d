//! Unit tests of the group commit of appends and of [`LogWriter`].

use crate::sys::testing::{Call, Event, Probe};
use crate::sys::Sys;
use crate::*;
use std::fs;
use std::sync::Arc;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn probed(group: GroupCommit) -> (Probe, AppendOptions) {
    let probe = Probe::real();
    let mut o = AppendOptions::new();
    o.sys(Arc::new(probe.clone()) as Arc<dyn Sys>)
        .group_commit(group);
    (probe, o)
}

/// The calls from the record's write on, as kinds (locks with their kind).
fn after_write(events: &[Event]) -> Vec<String> {
    let i = events
        .iter()
        .rposition(|e| e.call == Call::Write)
        .expect("a write");
    events[i..]
        .iter()
        .filter(|e| {
            matches!(
                e.call,
                Call::Write
                    | Call::Lock
                    | Call::RecordLock
                    | Call::Sync
                    | Call::SetXattr
                    | Call::GetXattr
            )
        })
        .map(|e| match e.call {
            Call::Lock if e.detail.contains("Unlock") => "unlock".to_string(),
            Call::Lock => "lock".to_string(),
            // The lead of a sync (see `log::group`).
            Call::RecordLock if e.detail.contains("Unlock") => "drop-lead".to_string(),
            Call::RecordLock if e.detail.contains("Shared") => "follow".to_string(),
            Call::RecordLock if e.failed => "lead-taken".to_string(),
            Call::RecordLock => "lead".to_string(),
            c => format!("{c:?}").to_lowercase(),
        })
        .collect()
}

/// The calls after the write of an appender that leads a group's sync: it takes the lead,
/// lets the lock go while the others write, takes it again, syncs, advances the mark and drops
/// the lead.
const LED: [&str; 10] = [
    "write",
    "getxattr",
    "lead",
    "unlock",
    "lock",
    "getxattr",
    "sync",
    "setxattr",
    "drop-lead",
    "unlock",
];

/// The calls after the write of an appender that syncs alone under the lock it wrote under,
/// and advances the mark there (someone grouped here before).
const ALONE: [&str; 5] = ["write", "getxattr", "sync", "setxattr", "unlock"];

/// Whether the lock file `lock` carries an announcement of a wait for the lock (its
/// modification time has 424 242 ns past the millisecond: see `lockfile::announce_wait`).
fn announced(lock: &std::path::Path) -> bool {
    let t = fs::metadata(lock).unwrap().modified().unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000 == 424_242
}

/// Milliseconds since the epoch, as the sync mark's `busy` counts them.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Gives the log `p`'s lock file (made if missing) a sync mark naming `p`, dated `busy`: as a
/// sync that served several appenders at that moment would have left it.
fn set_mark(p: &std::path::Path, busy: u64) {
    use std::os::unix::fs::MetadataExt;
    let lock = lock_path_for(p);
    if !lock.exists() {
        fs::write(&lock, "").unwrap();
    }
    let st = fs::metadata(p).unwrap();
    let mark = format!("dev={} ino={} gen=7 busy={busy}", st.dev(), st.ino());
    rustix::fs::setxattr(
        &lock,
        "user.untorn.synced",
        mark.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

#[test]
fn an_uncontended_append_syncs_under_the_lock_it_wrote_under() {
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    let (probe, o) = probed(GroupCommit::Auto);
    o.append(&p, "new").unwrap();
    // No mark yet: nobody grouped here, so none is made (no metadata written per append).
    assert_eq!(
        after_write(&probe.events()),
        ["write", "getxattr", "sync", "unlock"],
        "{}",
        probe.transcript()
    );
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\nnew\n");
}

#[test]
fn a_grouped_append_syncs_under_the_lock_taken_again_and_advances_the_mark() {
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    let (probe, o) = probed(GroupCommit::Always);
    o.append(&p, "new").unwrap();
    assert_eq!(after_write(&probe.events()), LED, "{}", probe.transcript());
    // Now that there is a mark, an uncontended append advances it too (grouped appenders may be
    // waiting for it).
    probe.clear();
    let (probe2, o2) = probed(GroupCommit::Auto);
    o2.append(&p, "newer").unwrap();
    assert_eq!(
        after_write(&probe2.events()),
        ALONE,
        "{}",
        probe2.transcript()
    );
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\nnew\nnewer\n");
}

/// Between a grouped appender's write and its second lock, another appender appends and syncs:
/// the first one's record is durable by that sync (the mark moved, naming this log), and it
/// does not sync again.
#[test]
fn another_appenders_sync_serves_a_grouped_append() {
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    let (probe, o) = probed(GroupCommit::Always);
    let p2 = p.clone();
    // The lock calls of one grouped append: 1 the first lock, 2 the unlock after the write, 3
    // the second lock. Another process's append runs just before the third.
    probe.before_nth(Call::Lock, 3, move || {
        AppendOptions::new()
            .group_commit(GroupCommit::Always)
            .append(&p2, "other")
            .unwrap();
    });
    o.append(&p, "mine").unwrap();
    let calls = after_write(&probe.events());
    assert_eq!(
        calls,
        [
            "write",
            "getxattr",
            "lead",
            "unlock",
            "lock",
            "getxattr",
            "drop-lead",
            "unlock"
        ],
        "{}",
        probe.transcript()
    );
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\nmine\nother\n");
}

/// Another process leads the coming sync (it holds the lead: the probe makes taking it fail
/// with EAGAIN): this append releases the lock after its write, waits for the leader, and
/// finds its record durable by the leader's sync (the mark moved, naming this log). It never
/// syncs, and never takes the lock again.
#[test]
fn an_append_follows_the_leader_of_a_sync() {
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    let (probe, o) = probed(GroupCommit::Always);
    probe.fail_nth(Some(Call::RecordLock), 1, crate::sys::errnos::EAGAIN);
    let p2 = p.clone();
    // The leader's sync, made while this appender waits for it (before its second record-lock
    // call, the wait).
    probe.before_nth(Call::RecordLock, 2, move || {
        AppendOptions::new()
            .group_commit(GroupCommit::Always)
            .append(&p2, "leader")
            .unwrap();
    });
    o.append(&p, "follower").unwrap();
    assert_eq!(
        after_write(&probe.events()),
        [
            "write",
            "getxattr",
            "lead-taken",
            "unlock",
            "follow",
            "drop-lead",
            "getxattr"
        ],
        "{}",
        probe.transcript()
    );
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\nfollower\nleader\n");
}

/// The leader dropped its lead without a sync of this log (it failed, died, or its record lock
/// was lost when its process closed the lock file): the follower takes the lock again and
/// syncs for itself, under it.
#[test]
fn a_follower_whose_leader_did_not_sync_syncs_itself() {
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    let (probe, o) = probed(GroupCommit::Always);
    probe.fail_nth(Some(Call::RecordLock), 1, crate::sys::errnos::EAGAIN);
    o.append(&p, "follower").unwrap();
    assert_eq!(
        after_write(&probe.events()),
        [
            "write",
            "getxattr",
            "lead-taken",
            "unlock",
            "follow",
            "drop-lead",
            "getxattr",
            "lock",
            "getxattr",
            "sync",
            "setxattr",
            "unlock"
        ],
        "{}",
        probe.transcript()
    );
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\nfollower\n");
}

/// An appender that finds the lock free groups only while the mark says a sync served several
/// appenders a moment ago (others are appending); otherwise it syncs at once, under the lock
/// it wrote under (a lone appender pays nothing for the group commit).
#[test]
fn a_free_lock_groups_only_while_others_were_appending_a_moment_ago() {
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    let now = now_ms();
    for (busy, grouped) in [(now - 20, true), (now - 60_000, false), (0, false)] {
        set_mark(&p, busy);
        let (probe, o) = probed(GroupCommit::Auto);
        o.append(&p, "new").unwrap();
        let calls = after_write(&probe.events());
        let want: &[&str] = if grouped { &LED } else { &ALONE };
        assert_eq!(calls, want, "busy={busy}\n{}", probe.transcript());
    }
}

/// Dates the lock file of the log `p` `ms` milliseconds since the epoch and `ns` more, as an
/// appender announcing a wait for the lock does (see `lockfile::announce_wait`) when `ns` is
/// 424 242.
fn set_lock_mtime(p: &std::path::Path, ms: u64, ns: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ms * 1_000_000 + ns);
    fs::File::options()
        .write(true)
        .open(lock_path_for(p))
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// An appender that finds the lock free and the mark not busy still groups while others
/// announce that they wait for the lock: a process appending in a loop takes the lock again
/// before the waiters it woke run, and would otherwise sync alone every time while they wait
/// (one of 8 `LogWriter` processes made all its 100 appends before the others made any).
#[test]
fn a_free_lock_groups_while_others_announce_they_wait() {
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    set_mark(&p, 0);
    for (ago_ms, ns, grouped) in [
        (0, 424_242, true),
        (60_000, 424_242, false),
        (0, 424_243, false),
        (0, 0, false),
    ] {
        let t = std::time::Instant::now();
        set_lock_mtime(&p, now_ms() - ago_ms, ns);
        let (probe, o) = probed(GroupCommit::Auto);
        o.append(&p, "new").unwrap();
        if grouped && t.elapsed() > std::time::Duration::from_millis(40) {
            // The announcement's 50 ms ran out before the append looked (a loaded machine):
            // this case proves nothing this time.
            eprintln!(
                "SKIPPED one case: {:?} between dating the lock file and the append",
                t.elapsed()
            );
            continue;
        }
        let want: &[&str] = if grouped { &LED } else { &ALONE };
        assert_eq!(
            after_write(&probe.events()),
            want,
            "mtime {ago_ms} ms ago + {ns} ns\n{}",
            probe.transcript()
        );
    }
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\nnew\nnew\nnew\nnew\n");
}

/// An append that finds the lock taken announces its wait in the lock file before it waits.
#[test]
fn an_append_that_waits_for_the_lock_announces_it() {
    use std::time::{Duration, Instant, UNIX_EPOCH};
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    let held = crate::lock(&p).unwrap();
    let lock = lock_path_for(&p);
    assert!(!announced(&lock));
    let p2 = p.clone();
    let appender = std::thread::spawn(move || AppendOptions::new().append(&p2, "new").unwrap());
    let t = Instant::now();
    while !announced(&lock) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no announcement while it waits"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let at = fs::metadata(&lock).unwrap().modified().unwrap();
    let at_ms = at.duration_since(UNIX_EPOCH).unwrap().as_millis();
    assert!(now_ms() as u128 - at_ms < 10_000, "dated now");
    drop(held);
    appender.join().unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\nnew\n");
}

/// An appender that cannot read the mark before it would group syncs for itself: a mark that
/// was there unread would look new when read later, and a follower would return unsynced.
#[test]
fn an_unreadable_mark_rules_out_the_group_commit() {
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    set_mark(&p, now_ms() - 10);
    let (probe, o) = probed(GroupCommit::Always);
    probe.fail_nth(Some(Call::GetXattr), 1, crate::sys::errnos::EIO);
    o.append(&p, "new").unwrap();
    let calls = after_write(&probe.events());
    assert_eq!(
        calls,
        ["write", "getxattr", "sync", "unlock"],
        "{}",
        probe.transcript()
    );
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\nnew\n");
}

/// A lock file with a second link (a file of one's own that someone linked in under a lock
/// file's name) is neither announced in nor has its mark used.
#[test]
fn a_lock_file_with_two_links_is_left_alone() {
    use std::time::Duration;
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    let lock = lock_path_for(&p);
    fs::write(d.path().join("precious"), "").unwrap();
    fs::hard_link(d.path().join("precious"), &lock).unwrap();
    let before = fs::metadata(&lock).unwrap().modified().unwrap();
    let held = crate::lock(&p).unwrap();
    let p2 = p.clone();
    let appender = std::thread::spawn(move || {
        let (probe, o) = probed(GroupCommit::Always);
        o.append(&p2, "new").unwrap();
        after_write(&probe.events())
    });
    std::thread::sleep(Duration::from_millis(200));
    drop(held);
    assert_eq!(
        appender.join().unwrap(),
        ["write", "sync", "unlock"],
        "no mark, no group"
    );
    let after = fs::metadata(&lock).unwrap().modified().unwrap();
    assert_eq!(before, after, "the linked file's time was not touched");
    assert!(!announced(&lock));
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\nnew\n");
}

/// Root waiting for the lock of a log whose lock file another user owns announces nothing: it
/// touches no other user's file (nor may anyone but the owner set its time).
#[test]
fn no_announcement_in_another_users_lock_file() {
    use std::time::Duration;
    if rustix::process::geteuid().as_raw() != 0 {
        crate::tests::skip("needs root (chown)");
        return;
    }
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    let lock = lock_path_for(&p);
    fs::write(&lock, "").unwrap();
    std::os::unix::fs::chown(&lock, Some(65534), Some(65534)).unwrap();
    let before = fs::metadata(&lock).unwrap().modified().unwrap();
    let held = crate::lock(&p).unwrap();
    let p2 = p.clone();
    let appender = std::thread::spawn(move || AppendOptions::new().append(&p2, "new").unwrap());
    // Long enough for the append to try the lock and wait (an announcement comes before the
    // wait); a slow machine only makes the check weaker, never wrong.
    std::thread::sleep(Duration::from_millis(200));
    drop(held);
    appender.join().unwrap();
    let after = fs::metadata(&lock).unwrap().modified().unwrap();
    assert_eq!(before, after, "the other user's lock file was not touched");
    assert!(!announced(&lock));
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\nnew\n");
}

/// A mark that moved but names another inode (the log was replaced, rotated) does not count.
#[test]
fn a_sync_of_another_inode_does_not_serve() {
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    let (probe, o) = probed(GroupCommit::Always);
    let p2 = p.clone();
    probe.before_nth(Call::Lock, 3, move || {
        // Rotated: a new log under the name, appended to and synced.
        fs::rename(&p2, p2.with_extension("log.1")).unwrap();
        AppendOptions::new()
            .group_commit(GroupCommit::Always)
            .append(&p2, "other")
            .unwrap();
    });
    o.append(&p, "mine").unwrap();
    let calls = after_write(&probe.events());
    assert!(
        calls.contains(&"sync".to_string()),
        "{calls:?}\n{}",
        probe.transcript()
    );
    assert_eq!(
        fs::read_to_string(p.with_extension("log.1")).unwrap(),
        "old\nmine\n"
    );
}

/// A mark on a lock file that another (untrusted) user owns is never read or written: that
/// user could otherwise set it to make appends skip their sync.
#[test]
fn an_untrusted_lock_files_mark_is_ignored() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("SKIPPED: needs root (chown)");
        return;
    }
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    let lock = lock_path_for(&p);
    fs::write(&lock, "").unwrap();
    std::os::unix::fs::chown(&lock, Some(65534), Some(65534)).unwrap();
    let (probe, o) = probed(GroupCommit::Always);
    o.append(&p, "new").unwrap();
    assert_eq!(
        after_write(&probe.events()),
        ["write", "sync", "unlock"],
        "{}",
        probe.transcript()
    );
}

/// A mark on a lock file that others may write (group- or world-writable: a `user.*`
/// attribute can be set by whoever may write the file) is never read or written either, even
/// when a mark already there names this log and would serve.
#[test]
fn a_lock_file_others_may_write_has_its_mark_ignored() {
    use std::os::unix::fs::PermissionsExt;
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\n").unwrap();
    // A mark made the ordinary way, then the lock file opened to others.
    AppendOptions::new()
        .group_commit(GroupCommit::Always)
        .append(&p, "first")
        .unwrap();
    let lock = lock_path_for(&p);
    for mode in [0o666, 0o664] {
        fs::set_permissions(&lock, fs::Permissions::from_mode(mode)).unwrap();
        let (probe, o) = probed(GroupCommit::Always);
        o.append(&p, "new").unwrap();
        assert_eq!(
            after_write(&probe.events()),
            ["write", "sync", "unlock"],
            "mode {mode:o}\n{}",
            probe.transcript()
        );
    }
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\nfirst\nnew\nnew\n");
}

/// The log's name swapped for a symbolic link after the path was resolved (an attacker in a
/// shared directory, between the `statx` and the open): the append is refused and the file
/// the link points to is untouched; a `LogWriter` that finds its log replaced by a link
/// refuses the same way.
#[test]
fn a_link_swapped_in_for_the_log_is_never_appended_through() {
    let d = dir();
    let p = d.path().join("a.log");
    let victim = d.path().join("victim");
    fs::write(&p, "old\n").unwrap();
    fs::write(&victim, "secret\n").unwrap();
    let (probe, o) = probed(GroupCommit::Auto);
    let (p2, v2) = (p.clone(), victim.clone());
    // The first lock call comes after the path was resolved, before the log is opened.
    probe.before_nth(Call::Lock, 1, move || {
        fs::remove_file(&p2).unwrap();
        std::os::unix::fs::symlink(&v2, &p2).unwrap();
    });
    let e = o.append(&p, "new").unwrap_err();
    assert!(e.to_string().contains("a.log"), "{e}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "secret\n");

    fs::remove_file(&p).unwrap();
    fs::write(&p, "old\n").unwrap();
    let w = AppendOptions::new().open(&p).unwrap();
    fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink(&victim, &p).unwrap();
    assert!(w.append("new").is_err());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "secret\n");
}

#[test]
fn a_writer_judges_the_tail_at_open_and_again_only_when_the_log_changed() {
    let d = dir();
    let p = d.path().join("a.log");
    fs::write(&p, "old\ntorn\0\0").unwrap();
    let probe = Probe::real();
    let mut o = AppendOptions::new();
    o.sys(Arc::new(probe.clone()) as Arc<dyn Sys>);
    let w = o.open(&p).unwrap();
    // The torn tail was cut at open, and the first append reports it.
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\n");
    let a = w.append("one").unwrap();
    assert_eq!(a.repaired.map(|t| t.valid_len), Some(4));
    probe.clear();
    let a = w.append("two").unwrap();
    assert_eq!(a.repaired, None);
    // As the writer left it: nothing read, nothing opened, no path resolved, and no sync mark
    // looked for (there was none, and nobody appended since).
    assert_eq!(probe.count(Call::ReadAt), 0, "{}", probe.transcript());
    assert_eq!(probe.count(Call::GetXattr), 0, "{}", probe.transcript());
    assert_eq!(probe.count(Call::OpenFile), 0, "{}", probe.transcript());
    assert_eq!(probe.count(Call::OpenDir), 0, "{}", probe.transcript());
    assert_eq!(probe.count(Call::Sync), 1, "{}", probe.transcript());

    // Another process leaves an unterminated line: the writer sees the size changed, judges the
    // end again, and ends that line before its record.
    let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
    std::io::Write::write_all(&mut f, b"theirs").unwrap();
    probe.clear();
    let a = w.append("three").unwrap();
    assert!(a.terminated);
    assert!(probe.count(Call::ReadAt) > 0, "{}", probe.transcript());
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        "old\none\ntwo\ntheirs\nthree\n"
    );
}

#[test]
fn a_writer_follows_its_log_when_it_is_replaced_or_removed() {
    let d = dir();
    let p = d.path().join("a.log");
    let w = LogWriter::open(&p).unwrap();
    assert!(p.exists(), "open creates the log");
    w.append("one").unwrap();
    fs::rename(&p, d.path().join("a.log.1")).unwrap();
    w.append("two").unwrap();
    fs::remove_file(&p).unwrap();
    w.append("three").unwrap();
    assert_eq!(
        fs::read_to_string(d.path().join("a.log.1")).unwrap(),
        "one\n"
    );
    assert_eq!(fs::read_to_string(&p).unwrap(), "three\n");
    fs::remove_file(&p).unwrap();
    fs::create_dir(&p).unwrap();
    assert_eq!(
        w.append("four").unwrap_err().kind(),
        ErrorKind::IsADirectory
    );
}

#[test]
fn a_writer_refuses_a_file_that_is_not_its_format() {
    let d = dir();
    let p = d.path().join("notes.txt");
    fs::write(&p, "just text\n").unwrap();
    let e = AppendOptions::new()
        .format(LogFormat::JsonLines)
        .open(&p)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidContent, "{e}");
    assert_eq!(fs::read_to_string(&p).unwrap(), "just text\n");
}

/// Threads sharing one writer (one lock file descriptor: flock cannot tell them apart) are
/// taken one at a time: no record is lost or split.
#[test]
fn threads_share_a_writer() {
    let d = dir();
    let p = d.path().join("a.log");
    let w = Arc::new(LogWriter::open(&p).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    w.append(format!("thread {t} record {i:03} {}", "x".repeat(300)))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let text = fs::read_to_string(&p).unwrap();
    assert_eq!(text.lines().count(), 100);
    assert!(text
        .lines()
        .all(|l| l.starts_with("thread ") && l.len() > 300));
}

/// Threads appending through one writer at once share its syncs: while the first batch syncs
/// (slowly, here), the others' records queue, and the next batch writes and syncs them all.
#[test]
fn threads_sharing_a_writer_share_its_syncs() {
    let d = dir();
    let p = d.path().join("a.log");
    let probe = Probe::real();
    let mut o = AppendOptions::new();
    o.sys(Arc::new(probe.clone()) as Arc<dyn Sys>);
    let w = Arc::new(o.open(&p).unwrap());
    probe.clear();
    probe.before_nth(Call::Sync, 1, || {
        std::thread::sleep(std::time::Duration::from_millis(200))
    });
    let first = {
        let w = w.clone();
        std::thread::spawn(move || w.append("first").unwrap())
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    let others: Vec<_> = (0..7)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || w.append(format!("thread {t}")).unwrap())
        })
        .collect();
    assert_eq!(first.join().unwrap().bytes, 6);
    for (t, h) in others.into_iter().enumerate() {
        let a = h.join().unwrap();
        assert_eq!(a.bytes, format!("thread {t}\n").len() as u64);
    }
    let text = fs::read_to_string(&p).unwrap();
    assert_eq!(text.lines().count(), 8);
    assert!(text.starts_with("first\n"), "{text}");
    assert_eq!(probe.count(Call::Sync), 2, "{}", probe.transcript());
    assert_eq!(probe.count(Call::Write), 2, "{}", probe.transcript());
}

/// An append with a timeout (the Python binding's zero timeout and retry, `untorn append
/// --timeout`) or a cancel flag never takes the lock a second time after its write, even when
/// the group commit is forced: had another process taken the lock meanwhile, the records would
/// be written but the call would fail ("lock busy", "interrupted"), and a caller that retries
/// would append them twice (the Python test of 4 processes × 50 records once read 201; a Python
/// signal handler may raise a timeout of its own). It syncs under the lock it wrote under.
#[test]
fn an_append_with_a_timeout_or_a_cancel_flag_never_locks_again_after_its_write() {
    for cancellable in [false, true] {
        let d = dir();
        let p = d.path().join("a.log");
        fs::write(&p, "old\n").unwrap();
        set_mark(&p, now_ms() - 10);
        let lock = lock_path_for(&p);
        let (probe, mut o) = probed(GroupCommit::Always);
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if cancellable {
            o.cancel_when(cancel.clone());
        } else {
            o.timeout(std::time::Duration::ZERO);
        }
        // Another process takes the lock as soon as this append lets it go: before a third
        // call of `flock` (a second lock after the unlock), if there were one; and Ctrl-C
        // comes then.
        let other: Arc<std::sync::Mutex<Option<fs::File>>> = Arc::default();
        let hold = other.clone();
        let l2 = lock.clone();
        probe.before_nth(Call::Lock, 3, move || {
            let f = fs::File::open(&l2).unwrap();
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
            *hold.lock().unwrap() = Some(f);
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        o.append(&p, "once")
            .expect("appended, and no error after the write");
        assert!(
            other.lock().unwrap().is_none(),
            "the lock was let go after the write (cancellable: {cancellable})"
        );
        assert_eq!(
            after_write(&probe.events()),
            ALONE,
            "cancellable: {cancellable}\n{}",
            probe.transcript()
        );
        assert_eq!(fs::read_to_string(&p).unwrap(), "old\nonce\n");
    }
}
