//! `--backup`, `untorn backups`, `restore`, `check`, `clean` and `recover`, run as a user would.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn untorn(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_untorn"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(args: &[&str], dir: &Path) -> String {
    let out = untorn(args, dir);
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn backup_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bak"))
        .collect();
    v.sort();
    v
}

#[test]
fn write_with_backup_keeps_exactly_n_with_the_file_mode() {
    let d = tempfile::tempdir().unwrap();
    ok(
        &["write", "--mode", "600", "s.json", "{\"v\": 0}"],
        d.path(),
    );
    for i in 1..=6 {
        ok(
            &["write", "--backup=3", "s.json", &format!("{{\"v\": {i}}}")],
            d.path(),
        );
    }
    let names = backup_names(d.path());
    assert_eq!(names.len(), 3, "{names:?}");
    let newest = d.path().join(names.last().unwrap());
    assert_eq!(fs::read_to_string(&newest).unwrap(), "{\"v\": 5}");
    for n in &names {
        let m = fs::metadata(d.path().join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600, "{n}");
    }
    // --backup alone keeps 5.
    for i in 7..=13 {
        ok(
            &["write", "--backup", "s.json", &format!("{{\"v\": {i}}}")],
            d.path(),
        );
    }
    assert_eq!(backup_names(d.path()).len(), 5);
    let list = ok(&["backups", "s.json"], d.path());
    assert_eq!(list.lines().count(), 5);
    assert!(
        list.lines()
            .all(|l| l.ends_with("\tvalid\twhole") && l.contains(" UTC\t")),
        "{list}"
    );
}

#[test]
fn restore_and_undo() {
    let d = tempfile::tempdir().unwrap();
    for v in ["a", "b", "c"] {
        ok(&["write", "--backup", "f.txt", v], d.path());
    }
    let out = untorn(&["restore", "f.txt"], d.path());
    assert!(out.status.success());
    assert_eq!(fs::read_to_string(d.path().join("f.txt")).unwrap(), "b");
    let err = String::from_utf8_lossy(&out.stderr);
    let kept = err
        .split("kept as '")
        .nth(1)
        .unwrap()
        .trim_end()
        .trim_end_matches('\'');
    ok(&["restore", "f.txt", "--from", kept], d.path());
    assert_eq!(fs::read_to_string(d.path().join("f.txt")).unwrap(), "c");
    let out = untorn(&["restore", "f.txt", "--nth", "99"], d.path());
    assert_eq!(out.status.code(), Some(3));
    let out = untorn(&["restore", "none.txt"], d.path());
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no backups"));
}

#[test]
fn check_reports_line_and_column_with_its_exit_code() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("a.json"), "{\n  \"x\": 1,\n  oops\n}").unwrap();
    let out = untorn(&["check", "a.json"], d.path());
    assert_eq!(out.status.code(), Some(12));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a.json") && err.contains("line 3 column 3"),
        "{err}"
    );
    fs::write(d.path().join("a.yaml"), "a: [1\n").unwrap();
    assert_eq!(
        untorn(&["check", "a.yaml"], d.path()).status.code(),
        Some(12)
    );
    fs::write(d.path().join("a.toml"), "a = 1\n").unwrap();
    ok(&["check", "a.toml"], d.path());
    fs::write(d.path().join("a.txt"), b"ok\xff").unwrap();
    assert_eq!(
        untorn(&["check", "a.txt"], d.path()).status.code(),
        Some(12)
    );
    ok(&["check", "--format", "raw", "a.txt"], d.path());
    assert_eq!(
        untorn(&["check", "missing.json"], d.path()).status.code(),
        Some(3)
    );
}

#[test]
fn recover_restores_corrupt_files_and_removes_orphans() {
    let d = tempfile::tempdir().unwrap();
    ok(&["write", "--backup", "s.json", "{\"v\": 1}"], d.path());
    ok(&["write", "--backup", "s.json", "{\"v\": 2}"], d.path());
    // A crash of some other writer: truncated file, and an orphaned temp.
    fs::write(d.path().join("s.json"), "").unwrap();
    fs::write(d.path().join(".s.json.untorn-0123abcd.tmp"), "{\"v\": 3}").unwrap();
    let plan = ok(
        &[
            "recover",
            ".",
            "--restore-invalid",
            "--format",
            "json",
            "--dry-run",
        ],
        d.path(),
    );
    assert!(
        plan.contains("would remove orphaned temp") && plan.contains("would restore"),
        "{plan}"
    );
    assert_eq!(fs::read_to_string(d.path().join("s.json")).unwrap(), "");
    let done = ok(
        &["recover", ".", "--restore-invalid", "--format", "json"],
        d.path(),
    );
    assert!(done.contains("restore s.json from s.json."), "{done}");
    assert_eq!(
        fs::read_to_string(d.path().join("s.json")).unwrap(),
        "{\"v\": 1}"
    );
    assert!(!d.path().join(".s.json.untorn-0123abcd.tmp").exists());
    assert_eq!(ok(&["recover", "."], d.path()).trim(), "nothing to do");
    // A corrupt file without any valid backup: reported, exit 12.
    fs::write(d.path().join("lost.json"), "{").unwrap();
    let out = untorn(
        &["recover", ".", "--restore-invalid", "--format", "json"],
        d.path(),
    );
    assert_eq!(out.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot fix lost.json"));
}

/// `recover --restore-invalid --format utf8`: text files (no JSON, YAML or TOML extension)
/// that are no longer UTF-8 come back from their newest valid backup; files of a known format
/// and untorn's own lock files are left to their own checks.
#[test]
fn recover_format_utf8_restores_text_files_that_are_not_utf8() {
    let d = tempfile::tempdir().unwrap();
    ok(&["write", "--backup", "notes.txt", "line one\n"], d.path());
    ok(&["write", "--backup", "notes.txt", "line two\n"], d.path());
    ok(&["lock", "notes.txt", "--", "true"], d.path());
    // Garbage where the text was (another tool's crash), and a broken JSON file beside it.
    fs::write(d.path().join("notes.txt"), b"\xff\xfe\x00garbage").unwrap();
    fs::write(d.path().join("other.json"), "{").unwrap();
    let plan = ok(
        &[
            "recover",
            ".",
            "--restore-invalid",
            "--format",
            "utf8",
            "--dry-run",
        ],
        d.path(),
    );
    assert!(plan.contains("would restore notes.txt"), "{plan}");
    assert!(
        !plan.contains("other.json") && !plan.contains(".lock"),
        "{plan}"
    );
    let done = ok(
        &["recover", ".", "--restore-invalid", "--format", "utf8"],
        d.path(),
    );
    assert!(done.contains("restore notes.txt from notes.txt."), "{done}");
    assert_eq!(
        fs::read_to_string(d.path().join("notes.txt")).unwrap(),
        "line one\n"
    );
    assert_eq!(
        fs::read_to_string(d.path().join("other.json")).unwrap(),
        "{"
    );
    // A text file that is not UTF-8 and has no backup: reported, exit 12, left as it was.
    fs::write(d.path().join("lost.txt"), b"\xff").unwrap();
    let out = untorn(
        &["recover", ".", "--restore-invalid", "--format", "utf8"],
        d.path(),
    );
    assert_eq!(out.status.code(), Some(12));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cannot fix lost.txt"));
    assert_eq!(fs::read(d.path().join("lost.txt")).unwrap(), b"\xff");
}

/// `recover --restore-invalid` waits for a file's lock no longer than `--timeout`: another
/// process (of any user) may hold it. The file is reported and left as it was.
#[test]
fn recover_restore_invalid_waits_for_a_held_lock_no_longer_than_its_timeout() {
    let d = tempfile::tempdir().unwrap();
    ok(&["write", "--backup", "s.json", "{\"v\": 1}"], d.path());
    ok(&["write", "--backup", "s.json", "{\"v\": 2}"], d.path());
    fs::write(d.path().join("s.json"), "{").unwrap();
    let mut holder = std::process::Command::new(env!("CARGO_BIN_EXE_untorn"))
        .args(["lock", "s.json", "--", "sleep", "30"])
        .current_dir(d.path())
        .spawn()
        .unwrap();
    // Until the holder has the lock.
    let lock = d.path().join("s.json.lock");
    for _ in 0..200 {
        if lock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let out = untorn(
        &[
            "recover",
            ".",
            "--restore-invalid",
            "--format",
            "json",
            "--timeout",
            "0.3s",
        ],
        d.path(),
    );
    let took = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(took < std::time::Duration::from_secs(10), "waited {took:?}");
    assert_ne!(out.status.code(), Some(0));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("s.json"), "{said}");
    assert_eq!(fs::read_to_string(d.path().join("s.json")).unwrap(), "{");
}

#[test]
fn clean_reports_then_removes_old_orphans_only() {
    let d = tempfile::tempdir().unwrap();
    let old = d.path().join(".a.untorn-0000abcd.tmp");
    let young = d.path().join(".a.untorn-1111abcd.tmp");
    fs::write(&old, "x").unwrap();
    fs::write(&young, "y").unwrap();
    let f = fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    drop(f);
    let dry = ok(&["clean", ".", "--dry-run"], d.path());
    assert!(
        dry.contains("would remove\t.a.untorn-0000abcd.tmp"),
        "{dry}"
    );
    assert!(dry.contains("kept\t.a.untorn-1111abcd.tmp"), "{dry}");
    assert!(old.exists());
    ok(&["clean", "."], d.path());
    assert!(!old.exists() && young.exists());
    ok(&["clean", ".", "--older-than", "0s"], d.path());
    assert!(!young.exists());
}

/// Changes bytes of `path` in place and puts its modification time back: what blocks reused
/// under a file look like (nothing wrote to the file itself).
fn damage(path: &Path, at: usize) {
    let mtime = fs::metadata(path).unwrap().modified().unwrap();
    let mut data = fs::read(path).unwrap();
    data[at] ^= 0xff;
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &data[at..=at], at as u64).unwrap();
    f.set_modified(mtime).unwrap();
}

fn has_checksums(dir: &Path) -> bool {
    let p = dir.join("probe.txt");
    ok(&["write", "probe.txt", "x"], dir);
    let whole = ok(&["check", "--format", "raw", "probe.txt"], dir).is_empty()
        && untorn::integrity(&p).unwrap() == untorn::Integrity::Whole;
    fs::remove_file(p).unwrap();
    whole
}

#[test]
fn a_damaged_backup_is_listed_refused_and_skipped() {
    let d = tempfile::tempdir().unwrap();
    if !has_checksums(d.path()) {
        eprintln!("SKIPPED: a_damaged_backup_is_listed_refused_and_skipped: no user xattrs on the temp dir's file system");
        return;
    }
    for v in 1..=3 {
        ok(
            &["write", "--backup", "s.json", &format!("{{\"v\": {v}}}")],
            d.path(),
        );
    }
    let names = backup_names(d.path()); // oldest first: v1, v2
    damage(&d.path().join(&names[1]), 3);
    let list = ok(&["backups", "s.json"], d.path());
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].starts_with(&names[1]) && lines[0].ends_with("\tDAMAGED\tdamaged"),
        "{list}"
    );
    assert!(lines[1].ends_with("\tvalid\twhole"), "{list}");
    // restore refuses it (12), and says so; the file is as it was.
    let out = untorn(&["restore", "s.json"], d.path());
    assert_eq!(out.status.code(), Some(12), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("damaged") && err.contains(&names[1]), "{err}");
    assert_eq!(
        fs::read_to_string(d.path().join("s.json")).unwrap(),
        "{\"v\": 3}"
    );
    // check: exit 12 whatever the format, raw included.
    for f in [
        &["check", &names[1]][..],
        &["check", "--format", "raw", &names[1]],
    ] {
        let out = untorn(f, d.path());
        assert_eq!(out.status.code(), Some(12), "{f:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("damaged"),
            "{out:?}"
        );
    }
    // recover --restore-invalid passes over it to the older, whole one, and says so.
    fs::write(d.path().join("s.json"), "{trunc").unwrap();
    let out = ok(
        &["recover", ".", "--restore-invalid", "--format", "json"],
        d.path(),
    );
    assert!(
        out.contains(&format!("skipped the damaged backup {}", names[1])),
        "{out}"
    );
    assert_eq!(
        fs::read_to_string(d.path().join("s.json")).unwrap(),
        "{\"v\": 1}"
    );
}

#[test]
fn files_untorn_did_not_write_or_changed_in_place_are_unverified() {
    let d = tempfile::tempdir().unwrap();
    if !has_checksums(d.path()) {
        eprintln!("SKIPPED: files_untorn_did_not_write_or_changed_in_place_are_unverified: no user xattrs on the temp dir's file system");
        return;
    }
    // Written by another program: no checksum.
    fs::write(d.path().join("s.json"), "{\"v\": 0}").unwrap();
    ok(&["write", "--backup", "s.json", "{\"v\": 1}"], d.path());
    // Written by untorn, then appended to in place by another program.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(d.path().join("s.json"))
        .unwrap();
    std::io::Write::write_all(&mut f, b" ").unwrap();
    drop(f);
    ok(&["check", "s.json"], d.path());
    ok(&["write", "--backup", "s.json", "{\"v\": 2}"], d.path());
    let list = ok(&["backups", "s.json"], d.path());
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines.iter().all(|l| l.ends_with("\tvalid\tunverified")),
        "{list}"
    );
    // Both can be restored: nothing says they are damaged.
    ok(&["restore", "s.json", "--nth", "2"], d.path());
    assert_eq!(
        fs::read_to_string(d.path().join("s.json")).unwrap(),
        "{\"v\": 0}"
    );
    // And the restored file is untorn's now: whole.
    assert_eq!(
        untorn::integrity(d.path().join("s.json")).unwrap(),
        untorn::Integrity::Whole
    );
}

/// Issue 13, item 14: `write --symlink replace --backup=2` on a symlink kept the displaced link
/// itself as a "backup": symlinks named like backups that `backups` does not list, `restore`
/// does not see and retention never prunes. Only a regular file's version is a backup: the
/// file the link pointed to is not changed, so replacing the link keeps no backup.
#[test]
fn replacing_a_symlink_keeps_no_symlink_backups() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("target.json"), "{\"v\": 0}").unwrap();
    for i in 1..=4 {
        // Something (a deploy script) points the name at the shared file again each time.
        let _ = fs::remove_file(d.path().join("link.json"));
        std::os::unix::fs::symlink("target.json", d.path().join("link.json")).unwrap();
        ok(
            &[
                "write",
                "--symlink",
                "replace",
                "--backup=2",
                "link.json",
                &format!("{{\"v\": {i}}}"),
            ],
            d.path(),
        );
    }
    // A regular file now; the file the links pointed to is untouched.
    let meta = fs::symlink_metadata(d.path().join("link.json")).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(
        fs::read_to_string(d.path().join("target.json")).unwrap(),
        "{\"v\": 0}"
    );
    let links: Vec<_> = backup_names(d.path())
        .into_iter()
        .filter(|n| {
            fs::symlink_metadata(d.path().join(n))
                .unwrap()
                .file_type()
                .is_symlink()
        })
        .collect();
    assert!(links.is_empty(), "symlinks kept as backups: {links:?}");
    // Every backup is one `backups` lists; none of a link.
    let listed = ok(&["backups", "link.json"], d.path());
    assert_eq!(
        listed.lines().count(),
        backup_names(d.path()).len(),
        "{listed}"
    );
    // A regular file replaced: its version is kept as usual.
    ok(
        &[
            "write",
            "--symlink",
            "replace",
            "--backup=2",
            "link.json",
            "{\"v\": 9}",
        ],
        d.path(),
    );
    let names = backup_names(d.path());
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(
        fs::read_to_string(d.path().join(&names[0])).unwrap(),
        "{\"v\": 4}"
    );
}

/// Through a symlink, `backup`, `backups` and `restore` act on the backups of the file the link
/// leads to, as `write --backup` through it does (and as its lock does): named after the file,
/// beside it. Before, they used the link's own name: `backups LINK` missed the file's backups,
/// `backup LINK` put a copy beside the link, and `restore LINK` wrote the file while keeping
/// only as many of its backups as the link's name had, plus one, deleting the rest. Found by
/// the model test (tests/model.rs).
#[test]
fn backups_through_a_symlink_are_the_files_own() {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir(d.path().join("sub")).unwrap();
    for i in 1..=5 {
        let v = format!("{{\"v\": {i}}}");
        ok(&["write", "--backup=9", "sub/a.json", &v], d.path());
    }
    std::os::unix::fs::symlink("sub/a.json", d.path().join("l.json")).unwrap();
    ok(&["write", "--backup=9", "l.json", "{\"v\": 6}"], d.path());
    let sub = d.path().join("sub");
    assert_eq!(backup_names(&sub).len(), 5);
    // A backup taken through the link: beside the file, named after it.
    let taken = ok(&["backup", "--keep", "9", "l.json"], d.path());
    assert!(
        taken.trim_start_matches("./").starts_with("sub/a.json."),
        "{taken}"
    );
    assert!(
        backup_names(d.path()).is_empty(),
        "a backup beside the link"
    );
    assert_eq!(backup_names(&sub).len(), 6);
    // Listed through the link: all of them.
    assert_eq!(ok(&["backups", "l.json"], d.path()).lines().count(), 6);
    // Restored through the link: the file, and no backup lost (the replaced version added).
    ok(&["restore", "l.json", "--nth", "2"], d.path());
    assert_eq!(
        fs::read_to_string(sub.join("a.json")).unwrap(),
        "{\"v\": 5}"
    );
    let mut kept: Vec<String> = backup_names(&sub)
        .iter()
        .map(|n| fs::read_to_string(sub.join(n)).unwrap())
        .collect();
    kept.sort();
    let mut want: Vec<String> = (1..=6).map(|i| format!("{{\"v\": {i}}}")).collect();
    want.push("{\"v\": 6}".into());
    want.sort();
    assert_eq!(kept, want);
    assert!(fs::symlink_metadata(d.path().join("l.json"))
        .unwrap()
        .file_type()
        .is_symlink());
}
