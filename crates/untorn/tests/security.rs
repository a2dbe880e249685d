//! Nobody else can read new data before it is committed: a named temp file is created 0600
//! whatever the final mode, an unnamed (`O_TMPFILE`) one has no name at all, and a replaced
//! private file stays private.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use untorn::{OpenOptions, TempFile};

/// Enough to leave the 64 KiB buffer and reach the temp file.
fn secret() -> Vec<u8> {
    b"token=hunter2\n".repeat(20_000)
}

fn names(dir: &Path) -> Vec<OsString> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    v.sort();
    v
}

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn named_temp_is_0600_while_it_holds_data() {
    let dir = tempfile::tempdir().unwrap();
    // A new file with a wide final mode, an existing world-readable file, and an existing file
    // with an explicit mode.
    let cases: [(&str, Option<u32>, Option<u32>, u32); 3] = [
        ("new.txt", None, Some(0o666), 0o666),
        ("public.txt", Some(0o644), None, 0o644),
        ("shared.txt", Some(0o664), Some(0o755), 0o755),
    ];
    for (name, existing, mode, final_mode) in cases {
        let target = dir.path().join(name);
        if let Some(m) = existing {
            fs::write(&target, b"old").unwrap();
            fs::set_permissions(&target, fs::Permissions::from_mode(m)).unwrap();
        }
        let mut opts = OpenOptions::new();
        opts.temp_file(TempFile::Named);
        if let Some(m) = mode {
            opts.mode(m);
        }
        let mut f = opts.open(&target).unwrap();
        let temp = f.temp_path().expect("a named temp has a path");
        assert_eq!(temp.parent(), Some(dir.path()), "temp beside the target");
        assert_eq!(
            untorn::temp_file_target(temp.file_name().unwrap()).as_deref(),
            Some(std::ffi::OsStr::new(name))
        );
        f.write_all(&secret()).unwrap();
        f.flush().unwrap();
        let m = fs::symlink_metadata(&temp).unwrap();
        assert!(m.len() >= secret().len() as u64, "data reached the temp");
        assert_eq!(m.mode() & 0o7777, 0o600, "{name}: temp readable by others");
        assert_eq!(m.uid(), rustix::process::geteuid().as_raw());
        if existing.is_some() {
            assert_eq!(fs::read(&target).unwrap(), b"old", "nothing visible yet");
        } else {
            assert!(!target.exists(), "nothing visible yet");
        }
        f.commit().unwrap();
        assert_eq!(mode_of(&target), final_mode, "{name}: final mode");
        assert!(fs::read(&target).unwrap() == secret());
        assert!(!temp.exists());
    }
}

/// Runs in a child process (the umask is per process, and the tests run as threads of one).
#[test]
fn umask_child() {
    let Some(dir) = std::env::var_os("UNTORN_UMASK_CHILD") else {
        return;
    };
    rustix::process::umask(rustix::fs::Mode::empty());
    let target = Path::new(&dir).join("f");
    let mut f = OpenOptions::new()
        .temp_file(TempFile::Named)
        .open(&target)
        .unwrap();
    f.write_all(&secret()).unwrap();
    f.flush().unwrap();
    assert_eq!(
        mode_of(&f.temp_path().unwrap()),
        0o600,
        "umask 000 widened the temp"
    );
    f.commit().unwrap();
    assert_eq!(
        mode_of(&target),
        0o666,
        "a new file gets 0666 less the umask (000)"
    );
}

#[test]
fn named_temp_is_0600_under_a_permissive_umask() {
    if std::env::var_os("UNTORN_UMASK_CHILD").is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "umask_child", "--test-threads=1"])
        .env("UNTORN_UMASK_CHILD", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The child really ran (and was not filtered out).
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
    assert_eq!(names(dir.path()), [OsString::from("f")]);
}

#[test]
fn unnamed_temp_has_no_directory_entry_while_writing() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("existing.json");
    fs::write(&existing, b"old").unwrap();
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o644)).unwrap();
    let before = names(dir.path());

    for (target, temp) in [
        (dir.path().join("existing.json"), TempFile::Unnamed),
        (dir.path().join("new.json"), TempFile::Unnamed),
        (dir.path().join("existing.json"), TempFile::Auto),
    ] {
        let mut f = match OpenOptions::new().temp_file(temp).open(&target) {
            Ok(f) => f,
            Err(e) if e.kind() == untorn::ErrorKind::Unsupported => {
                let _ = std::io::stderr().write_all(
                    format!("SKIP unnamed temp: no O_TMPFILE on the test directory: {e}\n")
                        .as_bytes(),
                );
                assert!(std::env::var("UNTORN_REQUIRE_ALL").as_deref() != Ok("1"));
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(f.temp_path(), None, "{temp:?}: an unnamed temp has no path");
        f.write_all(&secret()).unwrap();
        f.flush().unwrap();
        assert_eq!(
            names(dir.path()),
            before,
            "{temp:?}: a directory entry appeared while writing"
        );
        f.commit().unwrap();
        assert!(fs::read(&target).unwrap() == secret());
        if target.ends_with("new.json") {
            fs::remove_file(&target).unwrap();
        } else {
            assert_eq!(mode_of(&target), 0o644);
        }
        assert_eq!(names(dir.path()), before, "{temp:?}: after commit");
    }
}

#[test]
fn replaced_private_file_stays_0600() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("id_token");
    fs::write(&target, b"old secret").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    for temp in [TempFile::Auto, TempFile::Named, TempFile::Unnamed] {
        OpenOptions::new()
            .temp_file(temp)
            .write(&target, b"new secret")
            .unwrap();
        assert_eq!(mode_of(&target), 0o600, "{temp:?}");
        assert_eq!(fs::read(&target).unwrap(), b"new secret");
        untorn::write(&target, b"newer secret").unwrap();
        assert_eq!(mode_of(&target), 0o600, "{temp:?}: untorn::write");
    }
    assert_eq!(names(dir.path()), [OsString::from("id_token")]);
}
