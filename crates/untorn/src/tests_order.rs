//! The order of the system calls a write's guarantees rest on, and a failure at each step of
//! it, through the probe.

use crate::sys::errnos::*;
use crate::sys::testing::{Call, Probe};
use crate::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use crate::tests::{assert_no_leftovers, dir, mode_of, probe_opts, STRATEGIES};

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
        Ok(_) => {
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
