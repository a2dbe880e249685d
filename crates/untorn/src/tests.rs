//! Unit tests of the atomic write: every option, the system-call order the protocol relies on
//! (through the recording probe), and a failure injected at each step.

use crate::sys::errnos::*;
use crate::sys::testing::{Call, Probe};
use crate::sys::Sys;
use crate::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dir() -> tempfile::TempDir {
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

fn probe_opts(p: &Probe) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.sys(Arc::new(p.clone()) as Arc<dyn Sys>);
    o
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

const STRATEGIES: [TempFile; 2] = [TempFile::Unnamed, TempFile::Named];

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

// ---- The order of system calls the guarantees rest on ---------------------------------------

fn calls(p: &Probe) -> Vec<Call> {
    p.events().iter().map(|e| e.call).collect()
}

fn pos(p: &Probe, c: Call) -> Option<usize> {
    calls(p).iter().position(|x| *x == c)
}

#[test]
fn full_durability_syncs_the_file_before_the_rename_and_the_dir_after() {
    let d = dir();
    let path = d.path().join("a.json");
    write(&path, "old").unwrap();
    for t in STRATEGIES {
        let p = Probe::real();
        probe_opts(&p).temp_file(t).write(&path, "new").unwrap();
        let tr = p.transcript();
        let sync = pos(&p, Call::Sync).expect(&tr);
        let rename = pos(&p, Call::Rename).expect(&tr);
        let dsync = pos(&p, Call::SyncDir).expect(&tr);
        let last_write = calls(&p).iter().rposition(|c| *c == Call::Write).unwrap();
        let set_mode = pos(&p, Call::SetMode);
        assert!(last_write < sync, "data written before the fsync:\n{tr}");
        assert!(
            set_mode.is_none_or(|m| m < sync),
            "mode set before the fsync:\n{tr}"
        );
        assert!(sync < rename, "fsync before rename:\n{tr}");
        assert!(rename < dsync, "dir fsync after rename:\n{tr}");
        assert_eq!(p.count(Call::Sync), 1, "one file fsync:\n{tr}");
        assert_eq!(p.count(Call::SyncDir), 1, "one dir fsync:\n{tr}");
        if t == TempFile::Unnamed {
            let link = pos(&p, Call::LinkUnnamed).expect(&tr);
            assert!(sync < link && link < rename, "{tr}");
        }
        // The existing file is swapped, so a failed dir fsync could be undone.
        assert!(tr.contains("(Exchange)"), "{tr}");
        // The old content goes last, after the dir fsync.
        let unlink = calls(&p).iter().rposition(|c| *c == Call::Unlink).unwrap();
        assert!(dsync < unlink, "{tr}");
    }
}

#[test]
fn weaker_durability_levels_skip_exactly_their_syncs() {
    let d = dir();
    let path = d.path().join("a");
    for (du, file_syncs, dir_syncs) in [
        (Durability::None, 0, 0),
        (Durability::File, 1, 0),
        (Durability::Full, 1, 1),
    ] {
        let p = Probe::real();
        probe_opts(&p)
            .durability(du)
            .temp_file(TempFile::Named)
            .write(&path, "x")
            .unwrap();
        assert_eq!(
            p.count(Call::Sync),
            file_syncs,
            "{du:?}\n{}",
            p.transcript()
        );
        assert_eq!(
            p.count(Call::SyncDir),
            dir_syncs,
            "{du:?}\n{}",
            p.transcript()
        );
    }
}

#[test]
fn temp_is_created_owner_only_and_exclusively() {
    let d = dir();
    let path = d.path().join("a");
    write(&path, "x").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let p = Probe::real();
    probe_opts(&p)
        .temp_file(TempFile::Named)
        .write(&path, "secret")
        .unwrap();
    let create = p
        .events()
        .into_iter()
        .find(|e| e.call == Call::CreateTemp)
        .unwrap();
    assert!(create.detail.ends_with("mode 600"), "{}", create.detail);
    // The mode is widened only after all data is written.
    let tr = p.transcript();
    let last_write = calls(&p).iter().rposition(|c| *c == Call::Write).unwrap();
    assert!(pos(&p, Call::SetMode).unwrap() > last_write, "{tr}");
    assert_eq!(mode_of(&path), 0o644);
}

#[test]
fn tmpfile_support_is_learned_per_mount() {
    let d = dir();
    let path = d.path().join("a");
    let p = Probe::real();
    let opts = probe_opts(&p);
    // The file system "lacks" O_TMPFILE once: Auto falls back to a named temp ...
    p.fail_nth(Some(Call::CreateUnnamed), 1, EOPNOTSUPP);
    opts.write(&path, "1").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "1");
    assert_eq!(p.count(Call::CreateTemp), 1, "{}", p.transcript());
    // ... and remembers it for that mount: no second try.
    p.clear();
    opts.write(&path, "2").unwrap();
    assert_eq!(p.count(Call::CreateUnnamed), 0, "{}", p.transcript());
    assert_eq!(p.count(Call::CreateTemp), 1);
    // A fresh context (another process) tries again.
    let p2 = Probe::real();
    probe_opts(&p2).write(&path, "3").unwrap();
    assert_eq!(p2.count(Call::CreateUnnamed), 1);

    // Forcing O_TMPFILE where it is missing is an error, not a silent downgrade.
    let p3 = Probe::real();
    p3.fail_nth(Some(Call::CreateUnnamed), 1, EOPNOTSUPP);
    let e = probe_opts(&p3)
        .temp_file(TempFile::Unnamed)
        .write(&path, "4")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(fs::read_to_string(&path).unwrap(), "3");
    assert_no_leftovers(d.path());
}

#[test]
fn missing_rename_flags_fall_back_safely() {
    let d = dir();
    let path = d.path().join("a");
    write(&path, "old").unwrap();
    // No RENAME_EXCHANGE: a plain rename over the target.
    let p = Probe::real();
    p.fail_nth(Some(Call::Rename), 1, EINVAL);
    probe_opts(&p).write(&path, "new").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "new");
    assert!(p.transcript().contains("(Replace)"), "{}", p.transcript());

    // No RENAME_NOREPLACE: link + unlink keeps no-clobber atomic.
    let fresh = d.path().join("fresh");
    let p = Probe::real();
    p.fail_nth(Some(Call::Rename), 1, EINVAL);
    probe_opts(&p)
        .no_clobber(true)
        .temp_file(TempFile::Named)
        .write(&fresh, "made")
        .unwrap();
    assert_eq!(fs::read_to_string(&fresh).unwrap(), "made");
    assert_eq!(p.count(Call::Link), 1, "{}", p.transcript());
    let p = Probe::real();
    p.fail_nth(Some(Call::Rename), 1, EINVAL);
    let e = probe_opts(&p)
        .no_clobber(true)
        .temp_file(TempFile::Named)
        .write(&fresh, "again")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(fs::read_to_string(&fresh).unwrap(), "made");
    assert_no_leftovers(d.path());
}

// ---- A failure at each step -----------------------------------------------------------------

/// Runs a write of `new` over `old` with the `nth` call failing with `errno`; checks that the
/// result is either a clean failure (target `old`, no temp) or, where the failing call comes
/// after the commit point, success.
fn fail_one(t: TempFile, exists: bool, nth: usize, errno: i32) -> (Option<Error>, String) {
    let d = dir();
    let path = d.path().join("target.json");
    if exists {
        write(&path, "old content").unwrap();
    }
    let p = Probe::real();
    let opts = {
        let mut o = probe_opts(&p);
        o.temp_file(t);
        o
    };
    p.fail_nth(None, nth, errno);
    let r = opts.write(&path, "new content");
    let tr = p.transcript();
    let now = fs::read(&path).ok();
    let after_commit = p
        .events()
        .last()
        .is_some_and(|e| e.failed && e.call == Call::Unlink);
    match &r {
        Ok(()) => {
            assert_eq!(now.as_deref(), Some(&b"new content"[..]), "{tr}");
        }
        Err(_) if after_commit => {}
        Err(e) => {
            let want = exists.then_some(&b"old content"[..]);
            assert_eq!(now.as_deref(), want, "target changed after {e}:\n{tr}");
            let msg = e.to_string();
            assert!(msg.starts_with("cannot "), "{msg}");
            assert!(
                msg.contains("target.json") || msg.contains(&*d.path().to_string_lossy()),
                "the message names the file: {msg}"
            );
        }
    }
    let leftovers: Vec<_> = fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| temp_file_target(n).is_some())
        .collect();
    // The one tolerated leftover: the old content's temp name, when its removal (after the
    // commit point) is what failed. With EIO that is reported (the file system failed: the
    // write may not be durable), with the new content in place.
    let last_unlink_failed = p
        .events()
        .last()
        .is_some_and(|e| e.failed && e.call == Call::Unlink);
    if last_unlink_failed {
        assert_eq!(now.as_deref(), Some(&b"new content"[..]), "{tr}");
        assert_eq!(r.is_err(), errno == EIO, "{tr}");
    } else {
        assert!(leftovers.is_empty(), "leftovers {leftovers:?}:\n{tr}");
    }
    (r.err(), tr)
}

#[test]
fn a_failure_at_any_call_leaves_old_or_new_and_no_temp() {
    for t in STRATEGIES {
        for exists in [true, false] {
            // How many calls a successful write makes.
            let p = Probe::real();
            let d = dir();
            let path = d.path().join("target.json");
            if exists {
                write(&path, "old content").unwrap();
            }
            probe_opts(&p)
                .temp_file(t)
                .write(&path, "new content")
                .unwrap();
            let total = p.events().len();
            assert!(total >= 6, "{}", p.transcript());
            let mut failures = 0;
            for nth in 1..=total {
                for errno in [EIO, ENOSPC] {
                    if fail_one(t, exists, nth, errno).0.is_some() {
                        failures += 1;
                    }
                }
            }
            assert!(
                failures >= total,
                "{t:?}: most injected failures are reported"
            );
        }
    }
}

/// Fails the first call of kind `call` and returns the error.
fn fail_step(t: TempFile, call: Call, errno: i32) -> Error {
    let d = dir();
    let path = d.path().join("target.json");
    write(&path, "old content").unwrap();
    let p = Probe::real();
    let mut o = probe_opts(&p);
    o.temp_file(t);
    p.fail_nth(Some(call), 1, errno);
    let e = o.write(&path, "new content").unwrap_err();
    assert!(p.fired(), "{call:?} was called:\n{}", p.transcript());
    assert_eq!(fs::read(&path).unwrap(), b"old content", "{call:?}");
    assert_no_leftovers(d.path());
    e
}

#[test]
fn each_step_fails_with_the_right_error() {
    for t in STRATEGIES {
        let create = if t == TempFile::Named {
            Call::CreateTemp
        } else {
            Call::CreateUnnamed
        };
        let e = fail_step(t, create, EACCES);
        assert_eq!(
            (e.op(), e.kind()),
            (Op::CreateTemp, ErrorKind::PermissionDenied)
        );

        let e = fail_step(t, Call::Write, ENOSPC);
        assert_eq!((e.op(), e.kind()), (Op::Write, ErrorKind::NoSpace));
        assert!(
            e.to_string()
                .ends_with("target.json': no space left on device"),
            "{e}"
        );

        let e = fail_step(t, Call::Sync, EIO);
        assert_eq!((e.op(), e.kind()), (Op::Sync, ErrorKind::Io));

        let e = fail_step(t, Call::SetMode, EPERM);
        assert_eq!(
            (e.op(), e.kind()),
            (Op::SetMode, ErrorKind::PermissionDenied)
        );

        let e = fail_step(t, Call::Rename, ENOSPC);
        assert_eq!((e.op(), e.kind()), (Op::Rename, ErrorKind::NoSpace));
        let msg = e.to_string();
        let tail = format!(
            "over '{}': no space left on device",
            e.other_path().unwrap().display()
        );
        assert!(
            msg.starts_with("cannot rename '") && msg.contains(".untorn-") && msg.ends_with(&tail),
            "{msg}"
        );

        // Never silently non-atomic: a cross-device rename is an error, never a copy.
        let e = fail_step(t, Call::Rename, EXDEV);
        assert_eq!((e.op(), e.kind()), (Op::Rename, ErrorKind::CrossDevice));

        let e = fail_step(t, Call::SyncDir, EIO);
        assert_eq!((e.op(), e.kind()), (Op::SyncDir, ErrorKind::Io));
        assert!(e.to_string().contains("left as it was"), "{e}");

        // A file system that cannot fsync a directory (some FUSE and network mounts).
        let e = fail_step(t, Call::SyncDir, EINVAL);
        assert_eq!(e.op(), Op::SyncDir);
    }
    let e = fail_step(TempFile::Unnamed, Call::LinkUnnamed, ENOSPC);
    assert_eq!((e.op(), e.kind()), (Op::Link, ErrorKind::NoSpace));
}

#[test]
fn a_failed_commit_hands_the_file_back_for_a_retry() {
    let d = dir();
    let path = d.path().join("f");
    write(&path, "old").unwrap();
    for (call, errno) in [
        (Call::Write, ENOSPC),
        (Call::Sync, EIO),
        (Call::SyncDir, EIO),
    ] {
        for t in STRATEGIES {
            let p = Probe::real();
            let mut f = probe_opts(&p).temp_file(t).open(&path).unwrap();
            f.write_all(b"the new content").unwrap();
            p.fail_nth(Some(call), 1, errno);
            let err = f.commit().unwrap_err();
            assert_eq!(err.error.kind(), ErrorKind::from_errno(errno));
            assert_eq!(fs::read(&path).unwrap(), b"old", "{call:?} {t:?}");
            // Retry: resumes, and the whole content lands.
            err.file.commit().unwrap();
            assert_eq!(
                fs::read(&path).unwrap(),
                b"the new content",
                "{call:?} {t:?}"
            );
            write(&path, "old").unwrap();

            // Or give up: discard leaves the target and no temp.
            let p = Probe::real();
            let mut f = probe_opts(&p).temp_file(t).open(&path).unwrap();
            f.write_all(b"x").unwrap();
            p.fail_nth(Some(call), 1, errno);
            let (_, file) = f.commit().unwrap_err().into_parts();
            file.discard().unwrap();
            assert_eq!(fs::read(&path).unwrap(), b"old");
            assert_no_leftovers(d.path());
        }
    }
}

#[test]
fn dir_fsync_failure_on_a_new_file_removes_it_again() {
    for t in STRATEGIES {
        for no_clobber in [false, true] {
            let d = dir();
            let path: PathBuf = d.path().join("new");
            let p = Probe::real();
            p.fail_nth(Some(Call::SyncDir), 1, EIO);
            let e = probe_opts(&p)
                .temp_file(t)
                .no_clobber(no_clobber)
                .write(&path, "x")
                .unwrap_err();
            assert_eq!(e.op(), Op::SyncDir);
            assert!(!path.exists(), "{t:?} {no_clobber}: {}", p.transcript());
            assert_no_leftovers(d.path());
        }
    }
}

#[test]
fn io_error_conversion_keeps_kind_through_commit_error() {
    let d = dir();
    let path = d.path().join("f");
    let p = Probe::real();
    let mut f = probe_opts(&p).open(&path).unwrap();
    f.write_all(b"x").unwrap();
    p.fail_nth(Some(Call::Sync), 1, ENOSPC);
    let e: std::io::Error = f.commit().unwrap_err().into();
    assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
    assert!(e.to_string().contains("cannot sync"), "{e}");
}

#[test]
fn the_real_stat_agrees_with_std() {
    // statx without timestamps must give the same identity (device, inode) and type, mode,
    // owner and size as std's stat, and the timed variant the same modification time.
    use crate::sys::{Real, Sys};
    let d = dir();
    let p = d.path().join("f");
    fs::write(&p, "12345").unwrap();
    let m = fs::metadata(&p).unwrap();
    let dfd = Real.open_dir(None, d.path()).unwrap();
    let st = Real.stat_at(&dfd, "f".as_ref(), false).unwrap();
    assert_eq!((st.dev, st.ino), (m.dev(), m.ino()));
    assert_eq!(
        (st.mode, st.uid, st.gid, st.size, st.nlink),
        (m.mode(), m.uid(), m.gid(), 5, 1)
    );
    assert_eq!(Real.stat(&dfd).unwrap().dev, m.dev());
    let t = Real.stat_at_times(&dfd, "f".as_ref(), false).unwrap();
    assert_eq!(
        t.mtime_ns,
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
    );
}

/// Issue 13, item 6: a filter's empty output does not empty the file unless asked for.
#[test]
fn edit_refuses_an_empty_output_unless_allowed() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("queue.yaml");
    std::fs::write(&p, "jobs: [build]\n").unwrap();
    let e = EditOptions::new()
        .run(&p, &mut std::process::Command::new("true"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidContent);
    assert!(e.to_string().contains("empty"), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), b"jobs: [build]\n");
    let done = EditOptions::new()
        .allow_empty(true)
        .run(&p, &mut std::process::Command::new("true"))
        .unwrap();
    assert_eq!(done, Edited::Written);
    assert_eq!(std::fs::read(&p).unwrap(), b"");
}
