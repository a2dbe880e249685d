//! Real error conditions, produced by the kernel rather than simulated: a full tmpfs, a
//! read-only mount, a name too long, a FIFO, an unprivileged user, a bind mount over the target.
//!
//! Each test checks what a user relies on: the exit code from the table, one message that names
//! the path and the step that failed, the old content intact, and no temp file left.
//!
//! Most need root (mounts, setpriv). Without it they are skipped with a reason on stderr, unless
//! `UNTORN_REQUIRE_ALL=1` (set in CI), which turns a skip into a failure.

use assert_cmd::Command;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

fn untorn() -> Command {
    let mut c = Command::cargo_bin("untorn").expect("the untorn binary is built");
    c.timeout(Duration::from_secs(30));
    c
}

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("untorn")
}

/// Skips the calling test with `why` (printed past the test harness's capture), or fails it
/// when `UNTORN_REQUIRE_ALL=1`.
fn skip(test: &str, why: &str) {
    if std::env::var("UNTORN_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{test} cannot run: {why} (UNTORN_REQUIRE_ALL=1 forbids skipping)");
    }
    let _ = std::io::stderr().write_all(format!("SKIP {test}: {why}\n").as_bytes());
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    match std::process::Command::new(cmd).args(args).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {cmd}: {e}")),
    }
}

fn assert_no_leftovers(dir: &Path) {
    let temps: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| untorn::temp_file_target(n).is_some())
        .collect();
    assert!(
        temps.is_empty(),
        "temp files left in {}: {temps:?}",
        dir.display()
    );
}

/// A private tmpfs (and any mounts stacked in it), unmounted when dropped, even if the test
/// failed.
struct Tmpfs {
    _dir: tempfile::TempDir,
    /// Where the tests work: the tmpfs, or a plain directory (see [`Tmpfs::or_plain`]).
    root: PathBuf,
    /// Mounts to undo, innermost last.
    mounts: Vec<PathBuf>,
}

impl Tmpfs {
    /// Mounts a tmpfs with `opts` on a fresh directory; `Err` with the reason if it cannot.
    fn mount(opts: &str) -> Result<Tmpfs, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("needs root to mount a tmpfs".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("untorn-real-errors-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        // Reachable by the unprivileged user of the permission test.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        let mut t = Tmpfs {
            _dir: dir,
            root: mnt.clone(),
            mounts: Vec::new(),
        };
        run(
            "mount",
            &["-t", "tmpfs", "-o", opts, "tmpfs", mnt.to_str().unwrap()],
        )?;
        t.mounts.push(mnt);
        Ok(t)
    }

    /// A tmpfs if one can be mounted, else a plain scratch directory: for the errors that do
    /// not depend on a mount (a missing directory, a long name, a FIFO).
    fn or_plain(opts: &str) -> Tmpfs {
        Tmpfs::mount(opts).unwrap_or_else(|_| {
            let dir = tempfile::tempdir().unwrap();
            Tmpfs {
                root: dir.path().to_path_buf(),
                _dir: dir,
                mounts: Vec::new(),
            }
        })
    }

    /// The directory to work in.
    fn path(&self) -> &Path {
        &self.root
    }

    fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path().join(p)
    }

    fn bind(&mut self, from: &Path, onto: &Path) -> Result<(), String> {
        run(
            "mount",
            &["--bind", from.to_str().unwrap(), onto.to_str().unwrap()],
        )?;
        self.mounts.push(onto.to_path_buf());
        Ok(())
    }

    fn remount(&self, opts: &str) -> Result<(), String> {
        run(
            "mount",
            &[
                "-o",
                &format!("remount,{opts}"),
                self.path().to_str().unwrap(),
            ],
        )
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let p = m.to_str().unwrap();
            if run("umount", &[p]).is_err() {
                let _ = run("umount", &["-l", p]);
            }
        }
    }
}

/// Mounts a tmpfs or skips the test (returning `None`).
fn tmpfs(test: &str, opts: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(opts) {
        Ok(t) => Some(t),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The failure a user sees: exit `code`, one `untorn: cannot <op> '<path>...': <reason>` line.
fn assert_failure(out: &Output, code: i32, op: &str, path: &Path, reason: &str) {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one message, printed once: {err:?}");
    let line = lines[0];
    assert!(line.starts_with("untorn: cannot "), "{line}");
    assert!(line.contains(op), "message lacks the step `{op}`: {line}");
    assert!(
        line.contains(&*path.to_string_lossy()),
        "message lacks the path {}: {line}",
        path.display()
    );
    assert!(line.contains(reason), "message lacks `{reason}`: {line}");
}

/// Fills the file system at `dir` until `ENOSPC`, with the file `dir/filler`.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = fs::File::create(&p).unwrap();
    let block = [0xAAu8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    f.sync_all().unwrap();
    p
}

fn free_bytes(dir: &Path) -> u64 {
    let st = rustix::fs::statvfs(dir).unwrap();
    st.f_bavail * st.f_frsize
}

// ---------------------------------------------------------------------------------------------

#[test]
fn enospc_keeps_the_old_content() {
    let Some(t) = tmpfs("enospc_keeps_the_old_content", "size=64k,mode=0755") else {
        return;
    };
    let f = t.join("state.json");
    fs::write(&f, b"{\"old\": true}\n").unwrap();
    let filler = fill(t.path());
    // Leave some room (16 KiB), then write more than that (48 KiB): the write fails part-way.
    let len = fs::metadata(&filler).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len - 16 * 1024)
        .unwrap();
    let left = free_bytes(t.path());
    assert!(left > 0 && left < 48 * 1024, "{left} bytes free");
    let big = vec![b'n'; 48 * 1024];

    for temp in ["auto", "named", "unnamed"] {
        // From the argument and from standard input.
        let out = untorn()
            .args(["write", "--temp", temp])
            .arg(&f)
            .arg(String::from_utf8(big.clone()).unwrap())
            .output()
            .unwrap();
        assert_failure(&out, 6, "cannot write", &f, "no space left on device");
        assert_eq!(fs::read(&f).unwrap(), b"{\"old\": true}\n", "{temp}");
        assert_no_leftovers(t.path());

        let out = untorn()
            .args(["write", "--temp", temp])
            .arg(&f)
            .write_stdin(big.clone())
            .output()
            .unwrap();
        assert_failure(&out, 6, "cannot write", &f, "no space left on device");
        assert_eq!(fs::read(&f).unwrap(), b"{\"old\": true}\n", "{temp}");
        assert_no_leftovers(t.path());
        // All the space the failed write took is given back.
        assert_eq!(free_bytes(t.path()), left, "{temp}: space leaked");
    }

    // A small write still fits, and a new file that does not fit is not created.
    untorn()
        .arg("write")
        .arg(&f)
        .arg("{\"old\": false}\n")
        .assert()
        .success();
    assert_eq!(fs::read(&f).unwrap(), b"{\"old\": false}\n");
    let g = t.join("new.bin");
    let out = untorn()
        .arg("write")
        .arg(&g)
        .write_stdin(big.clone())
        .output()
        .unwrap();
    assert_failure(&out, 6, "cannot write", &g, "no space left on device");
    assert!(!g.exists());
    assert_no_leftovers(t.path());

    // Once space is freed, the same command succeeds.
    fs::remove_file(&filler).unwrap();
    untorn()
        .arg("write")
        .arg(&f)
        .write_stdin(big.clone())
        .assert()
        .success();
    assert!(fs::read(&f).unwrap() == big);
    assert_no_leftovers(t.path());
}

/// Issue 13, item 7: an append that fails with ENOSPC on a log it had to create used to leave
/// an empty log behind. A failed append changes nothing: no log, no temp.
#[test]
fn append_enospc_on_a_missing_log_leaves_no_file() {
    let Some(t) = tmpfs(
        "append_enospc_on_a_missing_log_leaves_no_file",
        "size=64k,mode=0755",
    ) else {
        return;
    };
    let old = t.join("old.log");
    fs::write(&old, b"kept\n").unwrap();
    fill(t.path());
    let log = t.join("progress.log");
    let out = untorn()
        .arg("append")
        .arg(&log)
        .arg("step 1 done")
        .output()
        .unwrap();
    assert_failure(&out, 6, "cannot append to", &log, "no space left on device");
    assert!(
        !log.exists(),
        "a failed append left {} behind ({} bytes)",
        log.display(),
        fs::metadata(&log).map_or(0, |m| m.len())
    );
    // An existing log: unchanged (a record larger than the page its last bytes are in).
    let out = untorn()
        .arg("append")
        .arg(&old)
        .arg("m".repeat(16 * 1024))
        .output()
        .unwrap();
    assert_failure(&out, 6, "cannot append to", &old, "no space left on device");
    assert_eq!(fs::read(&old).unwrap(), b"kept\n");
    assert_no_leftovers(t.path());
}

#[test]
fn no_free_inode_keeps_the_old_content() {
    // tmpfs with 3 inodes: the root directory, the target and the filler. No inode is left for
    // a temp file of either kind.
    let Some(t) = tmpfs(
        "no_free_inode_keeps_the_old_content",
        "size=1m,nr_inodes=3,mode=0755",
    ) else {
        return;
    };
    let f = t.join("f");
    fs::write(&f, b"old").unwrap();
    let mut n = 0;
    while fs::write(t.join(format!("x{n}")), b"").is_ok() {
        n += 1;
        assert!(n < 100, "nr_inodes had no effect");
    }
    for temp in ["auto", "named", "unnamed"] {
        let out = untorn()
            .args(["write", "--temp", temp])
            .arg(&f)
            .arg("new")
            .output()
            .unwrap();
        assert_failure(
            &out,
            6,
            "cannot create a temporary file for",
            &f,
            "no space left on device",
        );
        assert_eq!(fs::read(&f).unwrap(), b"old", "{temp}");
        assert_no_leftovers(t.path());
    }
}

#[test]
fn read_only_file_system_keeps_the_old_content() {
    let Some(t) = tmpfs(
        "read_only_file_system_keeps_the_old_content",
        "size=1m,mode=0755",
    ) else {
        return;
    };
    let f = t.join("config");
    fs::write(&f, b"old").unwrap();
    if let Err(why) = t.remount("ro") {
        skip("read_only_file_system_keeps_the_old_content", &why);
        return;
    }
    for temp in ["auto", "named", "unnamed"] {
        let out = untorn()
            .args(["write", "--temp", temp])
            .arg(&f)
            .arg("new")
            .output()
            .unwrap();
        assert_failure(
            &out,
            5,
            "cannot create a temporary file for",
            &f,
            "read-only file system",
        );
        assert_eq!(fs::read(&f).unwrap(), b"old");
    }
    // A new file, with --no-clobber, from stdin: the same answer.
    let g = t.join("new");
    let out = untorn()
        .args(["write", "--no-clobber"])
        .arg(&g)
        .write_stdin("x")
        .output()
        .unwrap();
    assert_failure(&out, 5, "cannot", &g, "read-only file system");
    assert!(!g.exists());
    assert_no_leftovers(t.path());
}

#[test]
fn name_too_long_is_a_bad_target() {
    let t = Tmpfs::or_plain("size=1m,mode=0755");
    let f = t.join("n".repeat(300));
    for temp in ["auto", "named"] {
        let out = untorn()
            .args(["write", "--temp", temp])
            .arg(&f)
            .arg("x")
            .output()
            .unwrap();
        assert_failure(&out, 8, "cannot", &f, "file name too long");
    }
    assert_eq!(
        fs::read_dir(t.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

#[test]
fn longest_allowed_name_works_with_a_shortened_temp_name() {
    // A 255-byte name is valid; the temp name, `.NAME.untorn-XXXXXXXX.tmp`, must be shortened to
    // fit, and still be recognised.
    let Some(t) = tmpfs(
        "longest_allowed_name_works_with_a_shortened_temp_name",
        "size=1m,mode=0755",
    ) else {
        return;
    };
    for (i, temp) in ["auto", "named", "unnamed"].into_iter().enumerate() {
        let name = format!("{i}{}", "l".repeat(254));
        let f = t.join(&name);
        fs::write(&f, b"old").unwrap();
        untorn()
            .args(["write", "--temp", temp])
            .arg(&f)
            .arg("new")
            .assert()
            .success();
        assert_eq!(fs::read(&f).unwrap(), b"new", "{temp}");
        untorn()
            .args(["write", "--temp", temp, "--no-clobber"])
            .arg(t.join(format!("{i}{}", "m".repeat(254))))
            .arg("created")
            .assert()
            .success();
    }
    assert_no_leftovers(t.path());
}

#[test]
fn missing_directory_is_not_found() {
    let t = Tmpfs::or_plain("size=1m,mode=0755");
    let dir = t.join("gone");
    let f = dir.join("f");
    for args in [
        &["write"][..],
        &["write", "--no-clobber", "--temp", "named"][..],
    ] {
        let out = untorn().args(args).arg(&f).arg("x").output().unwrap();
        assert_failure(
            &out,
            3,
            "cannot open directory",
            &dir,
            "no such file or directory",
        );
    }
    assert!(!dir.exists());
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
}

#[test]
fn directory_target_is_a_bad_target() {
    let t = Tmpfs::or_plain("size=1m,mode=0755");
    let d = t.join("d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("kept"), b"kept").unwrap();
    for temp in ["auto", "named"] {
        let out = untorn()
            .args(["write", "--temp", temp])
            .arg(&d)
            .arg("x")
            .output()
            .unwrap();
        assert_failure(&out, 8, "cannot write to", &d, "is a directory");
    }
    assert!(fs::metadata(&d).unwrap().is_dir());
    assert_eq!(fs::read(d.join("kept")).unwrap(), b"kept");
    assert_no_leftovers(t.path());
    assert_no_leftovers(&d);
}

#[test]
fn fifo_target_is_a_bad_target_and_does_not_hang() {
    let t = Tmpfs::or_plain("size=1m,mode=0755");
    let p = t.join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from(0o644),
        0,
    )
    .unwrap();
    // Through a symlink too: following it must not open the FIFO either.
    std::os::unix::fs::symlink("pipe", t.join("to-pipe")).unwrap();
    for (target, args) in [
        (&p, &["write"][..]),
        (&p, &["write", "--temp", "named"][..]),
        (&t.join("to-pipe"), &["write"][..]),
    ] {
        let started = std::time::Instant::now();
        let out = untorn()
            .args(args)
            .arg(target)
            .arg("x")
            .timeout(Duration::from_secs(10))
            .output()
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "untorn hung on a FIFO"
        );
        assert_failure(&out, 8, "cannot write to", &p, "not a regular file");
        assert!(fs::metadata(&p).unwrap().file_type().is_fifo());
    }
    assert_no_leftovers(t.path());
}

/// Issue 13, item 12: `untorn backup FIFO` blocked forever in `open` (every other command gives
/// exit 8 at once).
#[test]
fn backup_of_a_fifo_is_a_bad_target_and_does_not_hang() {
    let t = Tmpfs::or_plain("size=1m,mode=0755");
    let p = t.join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from(0o644),
        0,
    )
    .unwrap();
    std::os::unix::fs::symlink("pipe", t.join("to-pipe")).unwrap();
    for target in [p.clone(), t.join("to-pipe")] {
        let started = std::time::Instant::now();
        let out = untorn()
            .arg("backup")
            .arg(&target)
            .timeout(Duration::from_secs(10))
            .output()
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "untorn backup hung on a FIFO"
        );
        assert_failure(&out, 8, "cannot back up", &target, "not a regular file");
        assert!(fs::metadata(&p).unwrap().file_type().is_fifo());
    }
    let names: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n == "pipe" || n == "to-pipe"),
        "{names:?}"
    );
}

/// The permission bits `who` (owner 6, group 3, other 0: a shift) of mode `m`.
fn bits(m: u32, who: u32) -> u32 {
    (m >> who) & 7
}

/// Issue 13, item 13 (backups): `untorn backup` (the copy path) run by a user who may not give
/// the copy the original's owner gave it the user's own group with the original's group bits:
/// a `root:secret 0640` file's backup was `nobody:nogroup 0640`, readable by a group that could
/// not read the original. A backup is never more readable than its original: it keeps the
/// group where the user may (a member of it), and otherwise gets no group bits beyond what
/// everyone had.
#[test]
fn a_backup_by_a_user_is_never_more_readable_than_the_original() {
    use std::os::unix::fs::MetadataExt;
    const TEST: &str = "a_backup_by_a_user_is_never_more_readable_than_the_original";
    // A group made for the test: a gid no group file needs to know.
    const SECRET: u32 = 64_123;
    let Some(t) = tmpfs(TEST, "size=1m,mode=0755") else {
        return;
    };
    let as_nobody = |groups: &str, args: &[&std::ffi::OsStr]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534"])
            .arg(format!("--groups={groups}"))
            .arg(bin())
            .args(args)
            .output()
    };
    match as_nobody("65534", &["--version".as_ref()]) {
        Ok(o) if o.status.success() => {}
        Ok(o) => return skip(TEST, &format!("setpriv: {}", stderr_of(&o).trim())),
        Err(e) => return skip(TEST, &format!("cannot run setpriv: {e}")),
    }
    let dir = t.join("shared");
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    // (owner, group, mode, the user's groups): root's file read through the group; the user's
    // own file of a group the user is not in (the user reads it as its owner).
    let cases = [
        (0, SECRET, 0o640, format!("65534,{SECRET}")),
        (65534, SECRET, 0o640, "65534".to_string()),
        (65534, SECRET, 0o664, "65534".to_string()),
        (0, SECRET, 0o644, "65534".to_string()),
    ];
    for (i, (uid, gid, mode, groups)) in cases.iter().enumerate() {
        let f = dir.join(format!("f{i}.txt"));
        fs::write(&f, b"secret data\n").unwrap();
        std::os::unix::fs::chown(&f, Some(*uid), Some(*gid)).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(*mode)).unwrap();
        let out = as_nobody(groups, &["backup".as_ref(), f.as_os_str()]).unwrap();
        assert!(out.status.success(), "case {i}: {}", stderr_of(&out));
        let b = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        assert_eq!(fs::read(&b).unwrap(), b"secret data\n");
        let (o, m) = (fs::metadata(&f).unwrap(), fs::metadata(&b).unwrap());
        let (om, bm) = (o.mode() & 0o7777, m.mode() & 0o7777);
        let what = format!(
            "case {i}: original {}:{} {om:o}, backup {}:{} {bm:o}",
            o.uid(),
            o.gid(),
            m.uid(),
            m.gid()
        );
        // Others: no more than they had.
        assert_eq!(bits(bm, 0) & !bits(om, 0), 0, "{what}");
        // The backup's group: its own bits if it is the original's group, else no more than
        // everyone had.
        let allowed = if m.gid() == o.gid() {
            bits(om, 3)
        } else {
            bits(om, 0)
        };
        assert_eq!(bits(bm, 3) & !allowed, 0, "{what}");
        // The owner is the original's or the user who took it (who could read it).
        assert!(m.uid() == o.uid() || m.uid() == 65534, "{what}");
        assert_eq!(bm & 0o6000, 0, "{what}");
        // The user keeps what a member may keep: the group of case 0.
        if i == 0 {
            assert_eq!(m.gid(), SECRET, "{what}");
        }
    }
    assert_no_leftovers(&dir);
}

#[test]
fn permission_denied_for_an_unprivileged_user() {
    const TEST: &str = "permission_denied_for_an_unprivileged_user";
    let Some(t) = tmpfs(TEST, "size=1m,mode=0755") else {
        return;
    };
    // Can an unprivileged user run the binary at all (it may live under a private directory)?
    let nobody = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin())
            .args(args)
            .output()
    };
    match nobody(&["--version".as_ref()]) {
        Ok(o) if o.status.success() => {}
        Ok(o) => return skip(TEST, &format!("setpriv: {}", stderr_of(&o).trim())),
        Err(e) => return skip(TEST, &format!("cannot run setpriv: {e}")),
    }
    let f = t.join("root-owned");
    fs::write(&f, b"old").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    // A file the user owns, in a directory the user may not write: still no way to replace it
    // atomically, since the temp file must go in that directory.
    let mine = t.join("nobody-owned");
    fs::write(&mine, b"mine").unwrap();
    std::os::unix::fs::chown(&mine, Some(65534), Some(65534)).unwrap();
    for temp in ["auto", "named", "unnamed"] {
        for (target, old) in [(&f, &b"old"[..]), (&mine, &b"mine"[..])] {
            let out = nobody(&[
                "write".as_ref(),
                "--temp".as_ref(),
                temp.as_ref(),
                target.as_os_str(),
                "new".as_ref(),
            ])
            .unwrap();
            assert_failure(
                &out,
                4,
                "cannot create a temporary file for",
                target,
                "permission denied",
            );
            assert_eq!(fs::read(target).unwrap(), old);
        }
        // A new file in that directory.
        let g = t.join("new");
        let out = nobody(&[
            "write".as_ref(),
            "--temp".as_ref(),
            temp.as_ref(),
            g.as_os_str(),
            "new".as_ref(),
        ])
        .unwrap();
        assert_failure(&out, 4, "cannot", &g, "permission denied");
        assert!(!g.exists());
    }
    // A directory the user cannot even enter.
    let private = t.join("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(private.join("f"), b"old").unwrap();
    let out = nobody(&[
        "write".as_ref(),
        private.join("f").as_os_str(),
        "x".as_ref(),
    ])
    .unwrap();
    assert_failure(&out, 4, "cannot", &private, "permission denied");
    assert_eq!(fs::read(private.join("f")).unwrap(), b"old");
    assert_no_leftovers(t.path());
    assert_no_leftovers(&private);
}

#[test]
fn bind_mounted_target_is_busy_and_unchanged() {
    const TEST: &str = "bind_mounted_target_is_busy_and_unchanged";
    let Some(mut t) = tmpfs(TEST, "size=1m,mode=0755") else {
        return;
    };
    let target = t.join("target");
    let other = t.join("other");
    fs::write(&target, b"target content").unwrap();
    fs::write(&other, b"bind-mounted content").unwrap();
    if let Err(why) = t.bind(&other, &target) {
        return skip(TEST, &why);
    }
    for temp in ["auto", "named", "unnamed"] {
        let out = untorn()
            .args(["write", "--temp", temp])
            .arg(&target)
            .arg("new")
            .output()
            .unwrap();
        assert_failure(&out, 8, "cannot rename", &target, "device or resource busy");
        assert_eq!(fs::read(&target).unwrap(), b"bind-mounted content");
        assert_eq!(fs::read(&other).unwrap(), b"bind-mounted content");
        assert_no_leftovers(t.path());
    }
    // The file under the mount is untouched too.
    let inner = t.mounts.pop().unwrap();
    run("umount", &[inner.to_str().unwrap()]).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"target content");
}

#[test]
fn symlink_to_another_file_system_writes_there() {
    // The temp goes beside the file the link points to, so following a link onto another mount
    // never crosses devices (no EXDEV, no copy fallback).
    const TEST: &str = "symlink_to_another_file_system_writes_there";
    let Some(a) = tmpfs(TEST, "size=1m,mode=0755") else {
        return;
    };
    let Some(b) = tmpfs(TEST, "size=1m,mode=0755") else {
        return;
    };
    let target = b.join("data.json");
    fs::write(&target, b"old").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    let link = a.join("data.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for temp in ["auto", "named", "unnamed"] {
        untorn()
            .args(["write", "--temp", temp])
            .arg(&link)
            .arg(temp)
            .assert()
            .success();
        assert_eq!(fs::read(&target).unwrap(), temp.as_bytes());
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o600);
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
    assert_no_leftovers(a.path());
    assert_no_leftovers(b.path());
}
