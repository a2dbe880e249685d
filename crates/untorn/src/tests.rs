//! Unit tests of the atomic write: every option, the system-call order the protocol relies on
//! (through the recording probe), and a failure injected at each step.

use crate::sys::testing::Probe;
use crate::sys::Sys;
use crate::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

pub(crate) fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Fails if `dir` holds anything recognisable as an untorn temp file.
pub(crate) fn assert_no_leftovers(dir: &Path) {
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| temp_file_target(n).is_some())
        .collect();
    assert!(
        left.is_empty(),
        "temp files left in {}: {left:?}",
        dir.display()
    );
}

pub(crate) fn probe_opts(p: &Probe) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.sys(Arc::new(p.clone()) as Arc<dyn Sys>);
    o
}

pub(crate) fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

pub(crate) const STRATEGIES: [TempFile; 2] = [TempFile::Unnamed, TempFile::Named];

#[test]
fn write_creates_and_replaces() {
    let d = dir();
    let p = d.path().join("a.json");
    write(&p, "one").unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "one");
    write(&p, "two, longer").unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), "two, longer");
    write(&p, "").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"");
    assert_no_leftovers(d.path());
}

#[test]
fn every_strategy_and_durability_writes_the_content() {
    let d = dir();
    for t in [TempFile::Auto, TempFile::Unnamed, TempFile::Named] {
        for du in [Durability::None, Durability::File, Durability::Full] {
            let p = d.path().join(format!("{t:?}-{du:?}"));
            let mut o = OpenOptions::new();
            o.temp_file(t).durability(du);
            o.write(&p, "old").unwrap();
            o.write(&p, b"new content").unwrap();
            assert_eq!(fs::read(&p).unwrap(), b"new content", "{t:?} {du:?}");
        }
    }
    assert_no_leftovers(d.path());
}

#[test]
fn relative_path_and_bare_name() {
    // A bare name resolves against the current directory ("." as the directory).
    let d = dir();
    let p = d.path().join("x");
    write(&p, "x").unwrap();
    assert!(matches!(
        write("", "x").unwrap_err().kind(),
        ErrorKind::InvalidInput
    ));
    let e = write(d.path().join("sub/"), "x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("ends in '/'"), "{e}");
    assert_eq!(
        write(d.path().join(".."), "x").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn streaming_write_commits_whole() {
    let d = dir();
    let p = d.path().join("big.bin");
    write(&p, "old").unwrap();
    for t in STRATEGIES {
        let mut f = OpenOptions::new().temp_file(t).open(&p).unwrap();
        let mut want = Vec::new();
        for i in 0..1000u32 {
            let chunk = format!("{i:06}\n").repeat(i as usize % 50 + 1);
            f.write_all(chunk.as_bytes()).unwrap();
            want.extend_from_slice(chunk.as_bytes());
        }
        // A large write bypasses the buffer.
        let big = vec![7u8; 200_000];
        f.write_all(&big).unwrap();
        want.extend_from_slice(&big);
        assert_eq!(
            fs::read(&p).unwrap(),
            b"old",
            "nothing visible before commit"
        );
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), want);
        write(&p, "old").unwrap();
    }
    assert_no_leftovers(d.path());
}

#[test]
fn discard_and_drop_leave_the_target_and_no_temp() {
    let d = dir();
    let p = d.path().join("f");
    write(&p, "old").unwrap();
    for t in STRATEGIES {
        let mut f = OpenOptions::new().temp_file(t).open(&p).unwrap();
        f.write_all(b"new").unwrap();
        f.flush().unwrap();
        if t == TempFile::Named {
            assert!(f.temp_path().unwrap().exists());
        } else {
            assert!(f.temp_path().is_none());
        }
        f.discard().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_no_leftovers(d.path());

        let mut f = OpenOptions::new().temp_file(t).open(&p).unwrap();
        f.write_all(b"new").unwrap();
        drop(f);
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_no_leftovers(d.path());
    }
}

#[test]
fn new_file_gets_umask_mode_and_replacement_keeps_mode() {
    let d = dir();
    let umask = crate::sys::Real.umask();
    let p = d.path().join("new");
    write(&p, "x").unwrap();
    assert_eq!(mode_of(&p), 0o666 & !umask);

    for m in [0o600, 0o640, 0o755, 0o444] {
        fs::set_permissions(&p, fs::Permissions::from_mode(m)).unwrap();
        for t in STRATEGIES {
            OpenOptions::new().temp_file(t).write(&p, "y").unwrap();
            assert_eq!(mode_of(&p), m, "{t:?} kept {m:o}");
        }
    }
}

#[test]
fn explicit_mode_applies_to_new_and_replaced_files() {
    let d = dir();
    let p = d.path().join("secret");
    OpenOptions::new().mode(0o600).write(&p, "a").unwrap();
    assert_eq!(mode_of(&p), 0o600);
    OpenOptions::new().mode(0o640).write(&p, "b").unwrap();
    assert_eq!(mode_of(&p), 0o640);
    // Not beyond the caller's intent: the umask does not weaken an explicit mode either way.
    OpenOptions::new().mode(0o4755).write(&p, "c").unwrap();
    assert_eq!(mode_of(&p), 0o4755);
}

#[test]
fn owner_and_group_are_kept_when_privileged() {
    if !rustix::process::geteuid().is_root() {
        skip("owner_and_group_are_kept_when_privileged: needs root to chown");
        return;
    }
    let d = dir();
    let p = d.path().join("owned");
    write(&p, "a").unwrap();
    std::os::unix::fs::chown(&p, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o2640)).unwrap();
    for t in STRATEGIES {
        OpenOptions::new().temp_file(t).write(&p, "b").unwrap();
        let m = fs::metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678), "{t:?}");
        assert_eq!(m.mode() & 0o7777, 0o2640, "setgid survives the chown");
    }
    OpenOptions::new().keep_owner(false).write(&p, "c").unwrap();
    assert_eq!(fs::metadata(&p).unwrap().uid(), 0);
}

/// Prints why a test could not run, past the test harness's capture; fails under
/// `UNTORN_REQUIRE_ALL=1` (CI), where nothing may be skipped.
pub(crate) fn skip(why: &str) {
    let msg = format!("SKIPPED: {why}\n");
    let _ = std::io::stderr().write_all(msg.as_bytes());
    if std::env::var_os("UNTORN_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("{why} (UNTORN_REQUIRE_ALL=1 forbids skipping)");
    }
}

#[test]
fn symlinks_follow_replace_refuse() {
    let d = dir();
    let real_dir = d.path().join("real");
    fs::create_dir(&real_dir).unwrap();
    let target = real_dir.join("t.json");
    write(&target, "old").unwrap();
    let link = d.path().join("link.json");
    std::os::unix::fs::symlink("real/t.json", &link).unwrap();
    let link2 = d.path().join("link2.json");
    std::os::unix::fs::symlink("link.json", &link2).unwrap();

    for t in STRATEGIES {
        // Follow (default), through a chain of two links: the links stay, the target changes.
        OpenOptions::new()
            .temp_file(t)
            .write(&link2, "new")
            .unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(fs::symlink_metadata(&link2)
            .unwrap()
            .file_type()
            .is_symlink());
        write(&target, "old").unwrap();

        // Refuse: an error, nothing changes.
        let e = OpenOptions::new()
            .temp_file(t)
            .symlinks(Symlinks::Refuse)
            .write(&link, "x")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Symlink);
        assert!(e.to_string().contains("link.json"), "{e}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
        assert_no_leftovers(d.path());
        assert_no_leftovers(&real_dir);
    }

    // Replace: the link becomes a regular file; its old target is untouched.
    OpenOptions::new()
        .symlinks(Symlinks::Replace)
        .write(&link, "own")
        .unwrap();
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_file());
    assert_eq!(fs::read_to_string(&link).unwrap(), "own");
    assert_eq!(fs::read_to_string(&target).unwrap(), "old");

    // A dangling link gets its target created, like `echo > link`.
    let dangling = d.path().join("dangling");
    std::os::unix::fs::symlink("real/created.txt", &dangling).unwrap();
    write(&dangling, "made").unwrap();
    assert_eq!(
        fs::read_to_string(real_dir.join("created.txt")).unwrap(),
        "made"
    );
    assert!(fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());

    // An absolute link.
    let abs = d.path().join("abs");
    std::os::unix::fs::symlink(&target, &abs).unwrap();
    write(&abs, "via abs").unwrap();
    assert_eq!(fs::read_to_string(&target).unwrap(), "via abs");

    // A loop is an error, not a hang.
    let l1 = d.path().join("l1");
    let l2 = d.path().join("l2");
    std::os::unix::fs::symlink("l2", &l1).unwrap();
    std::os::unix::fs::symlink("l1", &l2).unwrap();
    assert_eq!(write(&l1, "x").unwrap_err().kind(), ErrorKind::Symlink);
    assert_no_leftovers(d.path());
    assert_no_leftovers(&real_dir);
}

#[test]
fn no_clobber_creates_once() {
    let d = dir();
    for t in STRATEGIES {
        let p = d.path().join(format!("pid-{t:?}"));
        let mut o = OpenOptions::new();
        o.no_clobber(true).temp_file(t);
        o.write(&p, "first").unwrap();
        let e = o.write(&p, "second").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert!(e.to_string().contains(&*p.to_string_lossy()), "{e}");
        assert_eq!(fs::read_to_string(&p).unwrap(), "first");
    }
    assert_no_leftovers(d.path());
}

#[test]
fn no_clobber_race_has_exactly_one_winner() {
    let d = dir();
    let p = d.path().join("race");
    let winners: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let p = p.clone();
                s.spawn(move || {
                    OpenOptions::new()
                        .no_clobber(true)
                        .temp_file(STRATEGIES[i % 2])
                        .write(&p, format!("{i}"))
                        .is_ok() as usize
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(winners, 1);
    assert_no_leftovers(d.path());
}

#[test]
fn targets_that_are_not_files_are_refused() {
    let d = dir();
    let sub = d.path().join("sub");
    fs::create_dir(&sub).unwrap();
    let e = write(&sub, "x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IsADirectory);
    assert_eq!(
        e.to_string(),
        format!("cannot write to '{}': is a directory", sub.display())
    );
    assert!(sub.is_dir());

    let e = write(d.path().join("missing/f"), "x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.op(), Op::OpenDir);
    assert!(e.to_string().contains("missing"), "{e}");

    let long = d.path().join("n".repeat(300));
    assert_eq!(
        write(&long, "x").unwrap_err().kind(),
        ErrorKind::NameTooLong
    );
    assert_no_leftovers(d.path());
}

#[test]
fn a_long_name_still_gets_a_temp_name_that_fits() {
    let d = dir();
    let p = d.path().join("n".repeat(255));
    for t in [TempFile::Named, TempFile::Unnamed] {
        OpenOptions::new().temp_file(t).write(&p, "x").unwrap();
        OpenOptions::new().temp_file(t).write(&p, "y").unwrap();
    }
    assert_eq!(fs::read_to_string(&p).unwrap(), "y");
    assert_no_leftovers(d.path());
}

#[test]
fn temp_names_are_recognisable() {
    let name = crate::paths::temp_name_for_tests("state.json");
    let s = name.to_string_lossy();
    assert!(
        s.starts_with(".state.json.untorn-") && s.ends_with(".tmp"),
        "{s}"
    );
    assert_eq!(temp_file_target(&name).unwrap(), "state.json");
    for not in [
        "state.json",
        ".state.json.tmp",
        ".untorn-12345678.tmp",
        ".a.untorn-1234567g.tmp",
    ] {
        assert_eq!(temp_file_target(std::ffi::OsStr::new(not)), None, "{not}");
    }
}
