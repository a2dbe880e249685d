//! Unit tests of backups, restore, validated reads, cleanup and recovery.

use crate::backup::{parse_backup_name, ValidRead};
use crate::recover::check;
use crate::recover::Action;
use crate::sys::errnos::*;
use crate::sys::testing::{Call, Probe};
use crate::sys::Sys;
use crate::tests::{assert_no_leftovers, skip};
use crate::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn with_backups(n: usize) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.backups(n);
    o
}

fn contents(list: &[Backup]) -> Vec<String> {
    list.iter()
        .map(|b| fs::read_to_string(&b.path).unwrap())
        .collect()
}

#[test]
fn retention_keeps_exactly_n_and_the_newest_is_the_previous_version() {
    let d = dir();
    let p = d.path().join("state.json");
    for i in 0..6 {
        with_backups(3).write(&p, format!("v{i}")).unwrap();
    }
    let list = backups(&p).unwrap();
    assert_eq!(contents(&list), ["v4", "v3", "v2"], "newest first");
    for b in &list {
        let (target, t) = parse_backup_name(&b.name).unwrap();
        assert_eq!(target, "state.json");
        assert!(SystemTime::now().duration_since(t).unwrap() < Duration::from_secs(60));
        assert!(b.name.to_string_lossy().ends_with("Z.bak"));
    }
    // Names sort by time.
    let mut names: Vec<_> = list.iter().map(|b| b.name.clone()).collect();
    names.reverse();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // Without the option, writes keep what there is and add nothing.
    write(&p, "v6").unwrap();
    assert_eq!(backups(&p).unwrap().len(), 3);
    assert_no_leftovers(d.path());
}

#[test]
fn backups_are_never_more_readable_than_the_original() {
    let d = dir();
    let p = d.path().join("secret");
    OpenOptions::new().mode(0o600).write(&p, "a").unwrap();
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&p, Some(1234), Some(5678)).unwrap();
    } else {
        skip("backups_are_never_more_readable_than_the_original: owner part needs root");
    }
    with_backups(2).write(&p, "b").unwrap();
    let b = &backups(&p).unwrap()[0];
    let m = fs::metadata(&b.path).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600);
    if rustix::process::geteuid().is_root() {
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
    }
    // An explicit backup (a copy or reflink) too.
    let b2 = backup(&p, 5).unwrap();
    let m = fs::metadata(&b2.path).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600);
    assert_eq!(fs::read_to_string(&b2.path).unwrap(), "b");
}

#[test]
fn a_backup_costs_a_link_not_a_copy_nor_a_second_sync() {
    let d = dir();
    let p = d.path().join("big.bin");
    write(&p, vec![1u8; 1 << 20]).unwrap();
    let probe = Probe::real();
    let mut o = with_backups(2);
    o.sys(Arc::new(probe.clone()) as Arc<dyn Sys>);
    o.write(&p, vec![2u8; 1 << 20]).unwrap();
    let tr = probe.transcript();
    assert_eq!(probe.count(Call::SyncDir), 1, "{tr}");
    assert_eq!(probe.count(Call::Sync), 1, "{tr}");
    assert_eq!(
        probe.count(Call::CopyRange) + probe.count(Call::CloneFile),
        0,
        "{tr}"
    );
    let backup_rename = probe
        .events()
        .iter()
        .position(|e| e.call == Call::Link && e.detail.contains(".bak"))
        .expect(&tr);
    let dsync = probe
        .events()
        .iter()
        .position(|e| e.call == Call::SyncDir)
        .unwrap();
    assert!(
        backup_rename < dsync,
        "the backup is durable with the write:\n{tr}"
    );
    assert_eq!(
        fs::read(&backups(&p).unwrap()[0].path).unwrap(),
        vec![1u8; 1 << 20]
    );
}

#[test]
fn without_rename_exchange_the_backup_is_a_hard_link() {
    let d = dir();
    let p = d.path().join("f");
    write(&p, "old").unwrap();
    let probe = Probe::real();
    probe.fail_nth(Some(Call::Rename), 1, EINVAL); // no RENAME_EXCHANGE
    let mut o = with_backups(2);
    o.sys(Arc::new(probe.clone()) as Arc<dyn Sys>);
    o.write(&p, "new").unwrap();
    assert_eq!(probe.count(Call::Link), 1, "{}", probe.transcript());
    assert_eq!(contents(&backups(&p).unwrap()), ["old"]);
    assert_eq!(fs::read_to_string(&p).unwrap(), "new");
}

#[test]
fn a_failed_dir_sync_undoes_the_write_and_its_backup() {
    let d = dir();
    let p = d.path().join("f");
    with_backups(3).write(&p, "v1").unwrap();
    with_backups(3).write(&p, "v2").unwrap();
    let probe = Probe::real();
    probe.fail_nth(Some(Call::SyncDir), 1, EIO);
    let mut o = with_backups(3);
    o.sys(Arc::new(probe.clone()) as Arc<dyn Sys>);
    let e = o.write(&p, "v3").unwrap_err();
    assert_eq!(e.op(), Op::SyncDir);
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        "v2",
        "{}",
        probe.transcript()
    );
    assert_eq!(contents(&backups(&p).unwrap()), ["v1"]);
    assert_no_leftovers(d.path());
}

#[test]
fn restore_brings_back_a_version_and_can_be_undone() {
    let d = dir();
    let p = d.path().join("s.json");
    for v in ["1", "2", "3"] {
        with_backups(5).write(&p, v).unwrap();
    }
    let r = restore(&p, Which::Newest).unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "2");
    let displaced = r.displaced.unwrap();
    assert_eq!(fs::read_to_string(&displaced.path).unwrap(), "3");
    // Undo: restore the version the restore displaced.
    restore(&p, Which::Named(displaced.path.clone())).unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "3");
    // Backups now, newest first: 2 (displaced by the undo), 3, 2, 1.
    restore(&p, Which::Nth(4)).unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "1");
    let e = restore(&p, Which::Nth(99)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.to_string().contains("s.json") && e.to_string().contains("only"),
        "{e}"
    );
    let e = restore(d.path().join("none"), Which::Newest).unwrap_err();
    assert!(e.to_string().contains("no backups"), "{e}");
    assert_no_leftovers(d.path());
}

#[test]
fn an_explicit_backup_is_independent_of_the_live_file() {
    let d = dir();
    let p = d.path().join("log.txt");
    fs::write(&p, "a\n").unwrap();
    let b = backup(&p, 3).unwrap();
    // Programs that change the file in place (appends) do not change the backup.
    append(&p, "b").unwrap();
    assert_eq!(fs::read_to_string(&b.path).unwrap(), "a\n");
    assert_ne!(
        fs::metadata(&b.path).unwrap().ino(),
        fs::metadata(&p).unwrap().ino()
    );
    for _ in 0..5 {
        backup(&p, 3).unwrap();
    }
    assert_eq!(backups(&p).unwrap().len(), 3);
}

fn json() -> Validator {
    Validator::Format(Format::Json)
}

#[test]
fn read_valid_falls_back_to_the_newest_valid_backup() {
    let d = dir();
    let p = d.path().join("state.json");
    with_backups(5).write(&p, "{\"v\": 1}").unwrap();
    with_backups(5).write(&p, "{\"v\": 2}").unwrap();
    with_backups(5).write(&p, "{\"v\": 3").unwrap(); // itself invalid; displaced v2
                                                     // The file is invalid: the newest valid backup is v2.
    let r: ValidRead = read_valid(&p, &json(), false).unwrap();
    assert_eq!(r.content, b"{\"v\": 2}");
    assert!(r.backup.is_some() && !r.restored);
    assert_eq!(r.rejected.unwrap().kind(), ErrorKind::InvalidContent);
    // Truncated to nothing, filled with garbage, or missing: the same.
    for bad in [&b""[..], b"\0\0\0\0garbage"] {
        fs::write(&p, bad).unwrap();
        assert_eq!(
            read_valid(&p, &json(), false).unwrap().content,
            b"{\"v\": 2}"
        );
    }
    // Restoring: the file is whole again, and the bad version is kept as a backup.
    let n = backups(&p).unwrap().len();
    let r = read_valid(&p, &json(), true).unwrap();
    assert!(r.restored);
    assert_eq!(fs::read_to_string(&p).unwrap(), "{\"v\": 2}");
    assert_eq!(backups(&p).unwrap().len(), n + 1);
    let r = read_valid(&p, &json(), false).unwrap();
    assert!(r.backup.is_none(), "the file itself is valid now");
    fs::remove_file(&p).unwrap();
    let r = read_valid(&p, &json(), false).unwrap();
    assert_eq!(r.rejected.unwrap().kind(), ErrorKind::NotFound);
    // Custom validators, and a file with no valid version at all.
    let v = Validator::custom(|c| {
        if c.starts_with(b"{") {
            Ok(())
        } else {
            Err("must be an object".into())
        }
    });
    assert!(read_valid(&p, &v, false).is_ok());
    let q = d.path().join("other.json");
    fs::write(&q, "nope").unwrap();
    let e = read_valid(&q, &json(), false).unwrap_err();
    assert!(e.to_string().contains("no backup is valid"), "{e}");
}

#[test]
fn check_names_line_and_column() {
    let d = dir();
    let p = d.path().join("c.json");
    fs::write(&p, "{\n  \"a\": 1,\n}").unwrap();
    let e = recover::check(&p, &json()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidContent);
    assert_eq!(e.location().map(|l| l.0), Some(3));
    fs::write(&p, "{}").unwrap();
    recover::check(&p, &json()).unwrap();
    fs::write(&p, b"\xff").unwrap();
    assert!(recover::check(&p, &Validator::Utf8).is_err());
    assert_eq!(
        recover::check(d.path().join("no"), &json())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

fn orphan(dir: &Path, target: &str, age: Duration) -> std::path::PathBuf {
    let p = dir.join(format!(".{target}.untorn-{:08x}.tmp", fastrand::u32(..)));
    fs::write(&p, "leftover").unwrap();
    let f = fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
    p
}

#[test]
fn clean_removes_only_old_unused_orphans_and_reports_first() {
    let d = dir();
    write(d.path().join("a.json"), "{}").unwrap();
    let old = orphan(d.path(), "a.json", Duration::from_secs(7200));
    let young = orphan(d.path(), "a.json", Duration::from_secs(10));
    let busy = orphan(d.path(), "b.json", Duration::from_secs(7200));
    let _held = fs::File::open(&busy).unwrap(); // a live writer's temp
    let dry = CleanOptions::new().dry_run(true).clean(d.path()).unwrap();
    assert_eq!(dry.removed.len(), 1);
    assert_eq!(dry.removed[0].path, old);
    assert!(old.exists(), "a dry run deletes nothing");
    assert_eq!(dry.kept.len(), 2);
    assert!(dry.kept.iter().any(|o| o.path == busy && o.in_use));
    let done = CleanOptions::new().clean(d.path()).unwrap();
    let paths = |c: &recover::Cleaned| c.removed.iter().map(|o| o.path.clone()).collect::<Vec<_>>();
    assert_eq!(paths(&done), paths(&dry));
    assert!(!old.exists() && young.exists() && busy.exists());
    assert_eq!(done.removed[0].target, "a.json");
}

#[test]
fn recover_removes_orphans_and_restores_invalid_files() {
    let d = dir();
    let good = d.path().join("good.json");
    let bad = d.path().join("bad.json");
    let hopeless = d.path().join("hopeless.json");
    write(&good, "{}").unwrap();
    with_backups(3).write(&bad, "{\"v\": 1}").unwrap();
    with_backups(3).write(&bad, "{\"v\": 2}").unwrap();
    // Another program overwrites it in place (no backup of v2) and is cut short.
    fs::write(&bad, "{\"v\": 3, trunc").unwrap();
    fs::write(&hopeless, "nope").unwrap();
    let o = orphan(d.path(), "good.json", Duration::from_secs(1));
    let mut opts = RecoverOptions::new();
    opts.restore_invalid(Format::Json).dry_run(true);
    let plan = recover(d.path(), &opts).unwrap();
    assert!(plan.contains(&Action::RemovedTemp(find(&plan, &o))));
    assert!(o.exists());
    assert_eq!(fs::read_to_string(&bad).unwrap(), "{\"v\": 3, trunc");
    let done = recover(d.path(), opts.dry_run(false)).unwrap();
    assert!(!o.exists());
    assert_eq!(fs::read_to_string(&bad).unwrap(), "{\"v\": 1}");
    assert!(done
        .iter()
        .any(|a| matches!(a, Action::Restored { path, .. } if *path == bad)));
    assert!(done
        .iter()
        .any(|a| matches!(a, Action::InvalidWithoutBackup { path, .. } if *path == hopeless)));
    assert_eq!(fs::read_to_string(&good).unwrap(), "{}");
    assert_no_leftovers(d.path());
}

fn find(plan: &[Action], p: &Path) -> recover::Orphan {
    plan.iter()
        .find_map(|a| match a {
            Action::RemovedTemp(o) if o.path == p => Some(o.clone()),
            _ => None,
        })
        .expect("the orphan is in the plan")
}

// ---------------------------------------------------------------------------------------------
// Checksums (issue 14): a backup whose blocks changed under it is damaged, never restored.

/// Changes a byte of `path` in place and puts its modification time back: what blocks reused
/// under a file look like (nothing wrote to the file itself).
fn damage(path: &Path, at: usize) {
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    let mut data = fs::read(path).unwrap();
    data[at] ^= 0xff;
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &data[at..=at], at as u64).unwrap();
    f.set_modified(mtime).unwrap();
}

/// Whether the temp dir's file system keeps user extended attributes (else: skip).
fn checksums_here(d: &Path, test: &str) -> bool {
    let p = d.join("probe");
    write(&p, "x").unwrap();
    let yes = integrity(&p).unwrap() == Integrity::Whole;
    fs::remove_file(&p).unwrap();
    if !yes {
        skip(&format!("{test}: no user extended attributes here"));
    }
    yes
}

#[test]
fn a_damaged_backup_is_reported_and_never_restored_nor_offered() {
    let d = dir();
    if !checksums_here(
        d.path(),
        "a_damaged_backup_is_reported_and_never_restored_nor_offered",
    ) {
        return;
    }
    let p = d.path().join("state.json");
    for v in 1..=3 {
        with_backups(5)
            .write(&p, format!("{{\"v\": {v}}}"))
            .unwrap();
    }
    let list = backups(&p).unwrap(); // newest first: v2, v1
    assert!(list.iter().all(|b| b.integrity().unwrap().is_whole()));
    damage(&list[0].path, 2);
    let i = list[0].integrity().unwrap();
    assert!(i.is_damaged(), "{i}");
    assert_eq!(i.label(), "damaged");
    assert!(list[1].integrity().unwrap().is_whole());
    // restore refuses it, and the file is as it was.
    let e = restore(&p, Which::Newest).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidContent);
    assert!(e.to_string().contains("damaged"), "{e}");
    assert_eq!(fs::read_to_string(&p).unwrap(), "{\"v\": 3}");
    assert_eq!(backups(&p).unwrap().len(), 2, "nothing was added");
    // read_valid passes over it (saying so) to the whole one.
    fs::write(&p, "{trunc").unwrap();
    let r = read_valid(&p, &json(), false).unwrap();
    assert_eq!(r.content, b"{\"v\": 1}");
    assert_eq!(r.backup.unwrap().name, list[1].name);
    assert_eq!(r.damaged.len(), 1);
    assert_eq!(r.damaged[0].name, list[0].name);
    // And `check` fails it whatever the validator, `Exists` (raw) included.
    for v in [json(), Validator::Exists] {
        let e = check(&list[0].path, &v).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidContent);
        assert!(e.to_string().contains("damaged"), "{e}");
    }
    // With only damaged backups, nothing is offered.
    damage(&list[1].path, 2);
    let e = read_valid(&p, &json(), false).unwrap_err();
    assert!(e.to_string().contains("2 damaged backups skipped"), "{e}");
}

#[test]
fn a_file_untorn_did_not_write_is_unverified_and_judged_by_its_validator() {
    let d = dir();
    if !checksums_here(d.path(), "a_file_untorn_did_not_write_is_unverified") {
        return;
    }
    let p = d.path().join("s.json");
    fs::write(&p, "{}").unwrap();
    let i = integrity(&p).unwrap();
    assert_eq!(i.label(), "unverified");
    assert!(i.to_string().contains("not written by untorn"), "{i}");
    check(&p, &json()).unwrap();
    assert_eq!(
        recover::check_judged(&p, &Validator::Exists)
            .unwrap()
            .label(),
        "unverified"
    );
    // Its backup is unverified too, and restorable.
    with_backups(2).write(&p, "{\"v\": 1}").unwrap();
    let b = &backups(&p).unwrap()[0];
    assert_eq!(b.integrity().unwrap().label(), "unverified");
    restore(&p, Which::Newest).unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "{}");
    assert!(integrity(&p).unwrap().is_whole(), "rewritten by untorn");
    // A file untorn wrote and another program then changed in place: unverified, not damaged.
    fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"\n"))
        .unwrap();
    let i = integrity(&p).unwrap();
    assert!(i.to_string().contains("changed in place"), "{i}");
    // Same size, new content, but a new modification time: changed in place too.
    write(&p, "{\"a\": 1}").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    fs::write(&p, "{\"a\": 2}").unwrap(); // O_TRUNC + write: the same inode
    assert_eq!(integrity(&p).unwrap().label(), "unverified");
}

#[test]
fn check_fails_a_file_whose_content_no_longer_matches_its_checksum() {
    let d = dir();
    if !checksums_here(
        d.path(),
        "check_fails_a_file_whose_content_no_longer_matches",
    ) {
        return;
    }
    let p = d.path().join("data.bin");
    write(&p, vec![7u8; 100_000]).unwrap();
    check(&p, &Validator::Exists).unwrap();
    damage(&p, 70_000);
    let e = check(&p, &Validator::Exists).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidContent);
    assert!(e.to_string().contains("does not match the checksum"), "{e}");
    // A large buffer (checksummed in parallel with its write) is checked the same way.
    let big = d.path().join("big.bin");
    write(&big, vec![9u8; 3 << 20]).unwrap();
    assert!(integrity(&big).unwrap().is_whole());
    damage(&big, (3 << 20) - 1);
    assert!(integrity(&big).unwrap().is_damaged());
}

#[test]
fn an_explicit_backup_records_the_checksum_of_what_it_copied() {
    let d = dir();
    if !checksums_here(d.path(), "an_explicit_backup_records_the_checksum") {
        return;
    }
    let p = d.path().join("log.txt");
    write(&p, "a\n").unwrap(); // untorn's: the checksum is copied
    assert!(backup(&p, 5)
        .unwrap_or_else(|e| panic!("{e}"))
        .path
        .exists());
    assert!(backups(&p).unwrap()[0].integrity().unwrap().is_whole());
    fs::write(&p, "b\n").unwrap(); // another program's: computed from the copy
    let b = backup(&p, 5).unwrap();
    let i = b.integrity().unwrap();
    assert!(i.is_whole(), "{i} {:?}", integrity(&p));
    // A damaged source gives a damaged copy (its recorded checksum comes along).
    write(&p, "c\n").unwrap();
    damage(&p, 0);
    let b = backup(&p, 5).unwrap();
    assert!(b.integrity().unwrap().is_damaged());
}

#[test]
fn the_checksum_is_recorded_before_the_temp_is_fsynced_and_never_fails_a_write() {
    let d = dir();
    let p = d.path().join("f");
    let probe = Probe::real();
    let mut o = OpenOptions::new();
    o.sys(Arc::new(probe.clone()) as Arc<dyn Sys>);
    o.write(&p, "small").unwrap();
    let ev = probe.events();
    let at = |c: Call| {
        ev.iter()
            .position(|e| e.call == c)
            .unwrap_or_else(|| panic!("{}", probe.transcript()))
    };
    assert!(
        at(Call::SetMtime) < at(Call::SetXattr),
        "{}",
        probe.transcript()
    );
    assert!(
        at(Call::SetXattr) < at(Call::SetMode).min(at(Call::Sync)),
        "{}",
        probe.transcript()
    );
    // 2 MiB: written in 512 KiB slices (each checksummed while in the cache), the attribute
    // before the fsync as for a small write.
    probe.clear();
    o.write(&p, vec![1u8; 2 << 20]).unwrap();
    assert_eq!(probe.count(Call::Write), 4, "{}", probe.transcript());
    let ev = probe.events();
    let at = |c: Call| ev.iter().position(|e| e.call == c).unwrap();
    assert!(
        at(Call::SetXattr) < at(Call::Sync),
        "{}",
        probe.transcript()
    );
    assert!(integrity(&p).unwrap().is_whole() || !checksums_here(d.path(), "2 MiB"));
    // A very large buffer: checksummed on a helper thread during the write and the fsync, the
    // attribute set after the fsync, before the rename.
    probe.clear();
    o.write(&p, vec![1u8; crate::sum::PARALLEL_MIN]).unwrap();
    let ev = probe.events();
    let at = |c: Call| {
        ev.iter()
            .position(|e| e.call == c)
            .unwrap_or_else(|| panic!("{}", probe.transcript()))
    };
    assert!(
        at(Call::Sync) < at(Call::SetXattr),
        "{}",
        probe.transcript()
    );
    assert!(
        at(Call::SetXattr) < at(Call::Rename),
        "{}",
        probe.transcript()
    );
    // Where the file system keeps no user attributes: the write goes on, and the mount is
    // not asked again.
    probe.clear();
    probe.fail_nth(Some(Call::SetXattr), 1, EOPNOTSUPP);
    o.write(&p, "one").unwrap();
    o.write(&p, "two").unwrap();
    assert_eq!(probe.count(Call::SetXattr), 0, "{}", probe.transcript());
    assert_eq!(fs::read_to_string(&p).unwrap(), "two");
    // Any other failure to record it: the write goes on too (the version is unverified).
    let mut o = OpenOptions::new();
    o.sys(Arc::new(probe.clone()) as Arc<dyn Sys>);
    probe.fail_nth(Some(Call::SetXattr), 1, EIO);
    o.write(&p, "three").unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "three");
    assert_no_leftovers(d.path());
}

/// Issue 13, item 13: the mode of a copy that cannot keep the original's owner or group gives
/// nobody access they lacked.
#[test]
fn a_copy_of_another_owner_or_group_is_never_more_readable() {
    use crate::backup::no_more_readable;
    let st = |uid: u32, gid: u32, mode: u32| crate::sys::Stat {
        dev: 1,
        ino: 1,
        mode: 0o100000 | mode,
        uid,
        gid,
        nlink: 1,
        size: 0,
        mtime_ns: 0,
        attrs: 0,
    };
    // Both kept: the mode as it is, special bits too.
    assert_eq!(no_more_readable(&st(0, 50, 0o4750), 0, 50), 0o4750);
    // root:secret 0640 copied by a user who cannot keep the group: the group bits go.
    assert_eq!(no_more_readable(&st(0, 50, 0o640), 1000, 1000), 0o600);
    // ... who can (a member of it): as it was.
    assert_eq!(no_more_readable(&st(0, 50, 0o640), 1000, 50), 0o640);
    // World-readable stays world-readable; the new group gets what everyone had.
    assert_eq!(no_more_readable(&st(0, 50, 0o664), 1000, 1000), 0o644);
    // Odd modes: the old owner (now among the others or the group) had less than the others.
    assert_eq!(no_more_readable(&st(0, 50, 0o044), 1000, 1000), 0o000);
    assert_eq!(no_more_readable(&st(0, 50, 0o064), 1000, 50), 0o000);
    // Setuid and setgid go with the owner and group they meant.
    assert_eq!(no_more_readable(&st(0, 50, 0o6755), 1000, 50), 0o2755);
    assert_eq!(no_more_readable(&st(0, 50, 0o6755), 0, 1000), 0o4755);
}
