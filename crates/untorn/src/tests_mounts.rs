//! What a mount can keep, and what untorn does there (issue 19): the judgement of mountinfo
//! entries, and each operation on a mount the probe pretends is tmpfs, overlayfs `volatile`, or
//! FUSE of an unknown or a known daemon. The real file systems are in the CLI's file-system
//! matrix (`crates/untorn-cli/tests/fs_matrix.rs`).

use crate::ctx::{judge, Keeps};
use crate::sys::testing::{Call, Probe};
use crate::sys::{FsKind, MountInfo, Sys};
use crate::tests::{assert_no_leftovers, dir, probe_opts};
use crate::*;
use std::fs;
use std::sync::Arc;

fn mount(line: &str) -> MountInfo {
    MountInfo::parse_line(line).expect("parses").2
}

/// Lines as this machine's /proc/self/mountinfo showed them (2026-12-06, Linux 6.18).
const EXT4: &str = "45 27 7:0 / /tmp/fsx/e rw,relatime - ext4 /dev/loop0 rw,noauto_da_alloc";
const OVERLAY: &str = "48 27 0:40 / /tmp/fsx/ov rw,relatime - overlay overlay rw,lowerdir=e/lower,upperdir=e/upper,workdir=e/work,uuid=on";
const VOLATILE: &str = "51 27 0:42 / /tmp/fsx/vov rw,relatime - overlay overlay rw,lowerdir=e/lower,upperdir=e/vupper,workdir=e/vwork,uuid=on,fsync=volatile";
const BINDFS: &str = "52 27 0:44 / /tmp/fsx/bf rw,nosuid,nodev,relatime - fuse /tmp/fsx/e/bsrc rw,user_id=0,group_id=0,default_permissions,allow_other";
const FUSE_OVERLAYFS: &str = "53 27 0:45 / /tmp/fsx/fov rw,nodev,noatime - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0,group_id=0,default_permissions,allow_other";
const TMPFS: &str = "54 27 0:46 / /tmp/fsx/tm rw,relatime - tmpfs tmpfs rw";
const EXFAT_FUSE: &str = "55 27 7:1 / /tmp/fsx/ex rw,nosuid,nodev,relatime - fuseblk /dev/loop1 rw,user_id=0,group_id=0,default_permissions,allow_other,blksize=4096";
const SSHFS: &str = r"60 27 0:50 / /mnt/my\040box rw - fuse.sshfs me@box:/ rw,user_id=0,group_id=0";

#[test]
fn mountinfo_lines_parse() {
    let (id, dev, m) = MountInfo::parse_line(SSHFS).unwrap();
    assert_eq!((id, dev), (60, (0, 50)));
    assert_eq!(m.fs_type, "fuse.sshfs");
    assert_eq!(m.source, "me@box:/");
    assert_eq!(m.mount_point, std::path::Path::new("/mnt/my box"));
    assert!(mount(VOLATILE).has_option("fsync=volatile"));
    assert!(!mount(OVERLAY).has_option("volatile"));
    assert!(MountInfo::parse_line("garbage").is_none());
}

#[test]
fn each_mount_is_judged_by_what_it_keeps() {
    let durable = |k: (Keeps, bool)| k.0 == Keeps::Durable;
    assert!(durable(judge(FsKind::Ext4, Some(&mount(EXT4)))));
    assert!(durable(judge(FsKind::Overlay, Some(&mount(OVERLAY)))));
    assert!(matches!(
        judge(FsKind::Overlay, Some(&mount(VOLATILE))).0,
        Keeps::Volatile(_)
    ));
    assert!(matches!(
        judge(FsKind::Tmpfs, Some(&mount(TMPFS))).0,
        Keeps::Volatile(_)
    ));
    let ramfs = mount("70 27 0:60 / /r rw - ramfs ramfs rw");
    assert!(matches!(
        judge(FsKind::Other(0x8584_58f6), Some(&ramfs)).0,
        Keeps::Volatile(_)
    ));
    // FUSE: only the daemons known to pass fsync of files and directories through.
    assert!(matches!(
        judge(FsKind::Fuse, Some(&mount(BINDFS))),
        (Keeps::Unverified(_), true)
    ));
    assert!(matches!(
        judge(FsKind::Fuse, Some(&mount(SSHFS))),
        (Keeps::Unverified(_), true)
    ));
    assert_eq!(
        judge(FsKind::Fuse, Some(&mount(FUSE_OVERLAYFS))),
        (Keeps::Durable, true)
    );
    // exfat-fuse shows plain `fuseblk`: its device's boot sector names exFAT.
    let mut exfat = mount(EXFAT_FUSE);
    assert!(matches!(
        judge(FsKind::Fuse, Some(&exfat)).0,
        Keeps::Unverified(_)
    ));
    exfat.device_fs = Some("EXFAT".into());
    assert_eq!(judge(FsKind::Fuse, Some(&exfat)), (Keeps::Durable, true));
    exfat.device_fs = Some("NTFS".into());
    assert!(matches!(
        judge(FsKind::Fuse, Some(&exfat)).0,
        Keeps::Unverified(_)
    ));
    // Without mountinfo (no /proc): the magic number alone.
    assert!(matches!(judge(FsKind::Tmpfs, None).0, Keeps::Volatile(_)));
    assert!(matches!(judge(FsKind::Fuse, None).0, Keeps::Unverified(_)));
    assert!(durable(judge(FsKind::Xfs, None)));
}

/// A probe in front of the real file system that pretends the files are on `line`'s mount.
fn on(line: &str, kind: FsKind) -> Probe {
    let p = Probe::real();
    p.pretend_fs(kind);
    p.pretend_mount(Some(mount(line)));
    p
}

#[test]
fn a_write_where_nothing_survives_a_power_cut_is_atomic_and_says_it_is_not_durable() {
    for (line, kind) in [(TMPFS, FsKind::Tmpfs), (VOLATILE, FsKind::Overlay)] {
        let d = dir();
        let f = d.path().join("f");
        let p = on(line, kind);
        assert_eq!(probe_opts(&p).write(&f, "a").unwrap(), Durability::None);
        assert_eq!(fs::read(&f).unwrap(), b"a");
        let mut o = probe_opts(&p);
        o.durability(Durability::File);
        assert_eq!(o.write(&f, "b").unwrap(), Durability::None);
        let mut af = probe_opts(&p).open(&f).unwrap();
        assert_eq!(af.durability(), Durability::None);
        std::io::Write::write_all(&mut af, b"c").unwrap();
        af.commit().unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"c");
    }
    // Where it does: what was asked.
    let d = dir();
    let p = on(EXT4, FsKind::Ext4);
    let f = d.path().join("f");
    assert_eq!(probe_opts(&p).write(&f, "a").unwrap(), Durability::Full);
    let mut o = probe_opts(&p);
    o.durability(Durability::File);
    assert_eq!(o.write(&f, "b").unwrap(), Durability::File);
}

#[test]
fn a_write_on_a_fuse_mount_untorn_cannot_vouch_for_is_refused_before_anything_is_created() {
    let d = dir();
    let f = d.path().join("f");
    for durability in [Durability::Full, Durability::File] {
        let p = on(BINDFS, FsKind::Fuse);
        let mut o = probe_opts(&p);
        o.durability(durability);
        let e = o.write(&f, "a").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("--allow-shared-fs"), "{e}");
        assert!(
            !p.events()
                .iter()
                .any(|e| matches!(e.call, Call::CreateTemp | Call::CreateUnnamed)),
            "{}",
            p.transcript()
        );
    }
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    // Allowed: it writes, and says what it can vouch for.
    let p = on(BINDFS, FsKind::Fuse);
    let mut o = probe_opts(&p);
    o.allow_shared_fs(true);
    assert_eq!(o.write(&f, "a").unwrap(), Durability::None);
    // No durability asked: nothing to vouch for.
    let mut o = probe_opts(&p);
    o.durability(Durability::None);
    assert_eq!(o.write(&f, "b").unwrap(), Durability::None);
    // A known daemon: durable, no opt-in.
    let p = on(FUSE_OVERLAYFS, FsKind::Fuse);
    assert_eq!(probe_opts(&p).write(&f, "c").unwrap(), Durability::Full);
    assert_no_leftovers(d.path());
}

#[test]
fn a_refused_lock_update_or_append_creates_no_lock_file() {
    let d = dir();
    let f = d.path().join("f");
    fs::write(&f, "1").unwrap();
    let p = on(BINDFS, FsKind::Fuse);
    let sys = || Arc::new(p.clone()) as Arc<dyn Sys>;
    let e = LockOptions::new().sys(sys()).lock(&f).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    // The lock allowed, the write not: refused before the lock file is made.
    let mut u = UpdateOptions::new();
    u.sys(sys());
    let mut l = LockOptions::new();
    l.sys(sys()).allow_shared_fs(true);
    u.lock_options(l);
    let e = u
        .update(&f, |_| Ok::<_, Error>(Some(b"2".to_vec())))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let e = AppendOptions::new().sys(sys()).append(&f, "x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let names: Vec<_> = fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["f"], "a refused operation left files behind");
    assert_eq!(fs::read(&f).unwrap(), b"1");
    // A known local daemon: its locks exclude every process here, no opt-in needed.
    let p = on(FUSE_OVERLAYFS, FsKind::Fuse);
    drop(
        LockOptions::new()
            .sys(Arc::new(p.clone()) as Arc<dyn Sys>)
            .lock(&f)
            .unwrap(),
    );
    let a = AppendOptions::new()
        .sys(Arc::new(p) as Arc<dyn Sys>)
        .append(d.path().join("log"), "x")
        .unwrap();
    assert_eq!(a.durability, Durability::Full);
}

#[test]
fn a_transaction_on_fuse_syncs_each_file_since_syncfs_reaches_no_daemon() {
    let d = dir();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let run = |p: &Probe| {
        let mut tx = Transaction::new();
        tx.sys(Arc::new(p.clone()) as Arc<dyn Sys>);
        tx.write(&a, "new a").unwrap();
        tx.write(&b, "new b").unwrap();
        let c = tx.commit().unwrap();
        let syncs = p.events().iter().filter(|e| e.call == Call::Sync).count();
        (c.durable, syncs)
    };
    let (durable, syncs) = run(&on(EXT4, FsKind::Ext4));
    assert!(durable);
    assert_eq!(syncs, 0, "one syncfs, no file fsync");
    let (durable, syncs) = run(&on(FUSE_OVERLAYFS, FsKind::Fuse));
    assert!(durable);
    // Two temps, two lock files, the journal.
    assert_eq!(syncs, 5);
    let (durable, _) = run(&on(TMPFS, FsKind::Tmpfs));
    assert!(!durable, "tmpfs keeps nothing");
    let p = on(BINDFS, FsKind::Fuse);
    let mut tx = Transaction::new();
    tx.sys(Arc::new(p.clone()) as Arc<dyn Sys>);
    tx.write(&a, "x").unwrap();
    assert_eq!(tx.commit().unwrap_err().kind(), ErrorKind::Unsupported);
    assert!(!p
        .events()
        .iter()
        .any(|e| e.call == Call::OpenFile && e.detail.contains(".lock")));
    assert_eq!(fs::read(&a).unwrap(), b"new a");
    assert_no_leftovers(d.path());
}

/// `EPERM` from `link` of this process's own file: what exFAT through FUSE answers.
const NO_LINKS: i32 = crate::sys::errnos::EPERM;

fn names(d: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn without_hard_links_a_write_keeps_its_backup_by_copy() {
    let d = dir();
    let f = d.path().join("f");
    fs::write(&f, "old").unwrap();
    let p = Probe::real();
    p.fail_nth(Some(Call::Link), 1, NO_LINKS);
    let mut o = probe_opts(&p);
    o.backups(2);
    o.write(&f, "new").unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"new");
    let b = backups(&f).unwrap();
    assert_eq!(b.len(), 1, "{:?}", names(d.path()));
    assert_eq!(fs::read(&b[0].path).unwrap(), b"old");
    assert!(p
        .events()
        .iter()
        .any(|e| e.call == Call::CopyRange || e.call == Call::CloneFile));
    assert_no_leftovers(d.path());
}

#[test]
fn without_hard_links_or_noreplace_no_clobber_is_refused_naming_both() {
    let d = dir();
    let p = Probe::real();
    let mut o = probe_opts(&p);
    o.no_clobber(true).temp_file(TempFile::Named);
    // No RENAME_NOREPLACE (learned once per mount): the create falls back to link + unlink.
    p.fail_nth(Some(Call::Rename), 1, crate::sys::errnos::EINVAL);
    o.write(d.path().join("first"), "1").unwrap();
    // No hard links either (exFAT): no atomic create is left.
    p.fail_nth(Some(Call::Link), 1, NO_LINKS);
    let f = d.path().join("f");
    let e = o.write(&f, "1").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(
        e.to_string()
            .contains("neither RENAME_NOREPLACE nor hard links"),
        "{e}"
    );
    assert!(!f.exists());
    assert_no_leftovers(d.path());
}

#[test]
fn a_backup_names_its_copy_without_noreplace_or_links() {
    let d = dir();
    let f = d.path().join("f");
    fs::write(&f, "v1").unwrap();
    let p = Probe::real();
    let sys = Arc::new(p.clone()) as Arc<dyn Sys>;
    let (b1, b2) = with_sys(sys, || {
        // No RENAME_NOREPLACE (bindfs, exfat-fuse): link + unlink; learned for the mount.
        p.fail_nth(Some(Call::Rename), 1, crate::sys::errnos::EINVAL);
        let b1 = backup(&f, 5).unwrap();
        // No hard links either (exFAT): a rename to a name checked free.
        p.fail_nth(Some(Call::Link), 1, NO_LINKS);
        let b2 = backup(&f, 5).unwrap();
        (b1, b2)
    });
    assert_ne!(b1.name, b2.name);
    for b in [&b1, &b2] {
        assert_eq!(fs::read(&b.path).unwrap(), b"v1");
    }
    assert_eq!(backups(&f).unwrap().len(), 2);
    assert_no_leftovers(d.path());
}

#[test]
fn without_hard_links_a_one_directory_transaction_renames_its_journal_in() {
    let d = dir();
    let a = d.path().join("a");
    let p = Probe::real();
    let mut tx = Transaction::new();
    tx.sys(Arc::new(p.clone()) as Arc<dyn Sys>);
    tx.write(&a, "new").unwrap();
    p.fail_nth(Some(Call::Link), 1, NO_LINKS);
    tx.commit().unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"new");
    assert_eq!(names(d.path()), ["a", "a.lock"]);
}
