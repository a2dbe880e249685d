//! The `untorn write` command run as a user runs it: through the built binary, in a scratch
//! directory, checking what a user relies on (content, mode, owner, symlinks, exit codes,
//! messages) and that no temp file is ever left behind.

use assert_cmd::Command;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn untorn() -> Command {
    let mut c = Command::cargo_bin("untorn").expect("the untorn binary is built");
    c.timeout(Duration::from_secs(30));
    c
}

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("untorn")
}

/// Fails if any entry under `dir` (recursively, without following symlinks) is an untorn temp
/// file.
fn assert_no_leftovers(dir: &Path) {
    let mut temps = Vec::new();
    collect_temps(dir, &mut temps);
    assert!(temps.is_empty(), "temp files left behind: {temps:?}");
}

fn collect_temps(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
        let e = e.unwrap();
        if untorn::temp_file_target(&e.file_name()).is_some() {
            out.push(e.path());
        }
        if e.file_type().unwrap().is_dir() {
            collect_temps(&e.path(), out);
        }
    }
}

/// A scratch directory that checks, when the test ends without a panic, that no temp file was
/// left in it. Every test below works in one.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Creates `name` with `content` and `mode` (the mode set explicitly, whatever the umask).
    fn file(&self, name: impl AsRef<Path>, content: &[u8], mode: u32) -> PathBuf {
        let p = self.join(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_no_leftovers(self.dir.path());
        }
    }
}

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// Reads a file whatever its mode (a non-root user cannot read a mode-000 file): widens the
/// mode first.
fn read_any_mode(p: &Path) -> Vec<u8> {
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
    fs::read(p).unwrap()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An error is printed once, as one `untorn: ...` line.
fn assert_one_error_line(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {stderr:?}");
    assert!(lines[0].starts_with("untorn: "), "{stderr:?}");
}

// ---------------------------------------------------------------------------------------------
// Content: argument, standard input, binary, empty, the sponge property
// ---------------------------------------------------------------------------------------------

#[test]
fn content_argument_creates_and_replaces() {
    let s = Scratch::new();
    let f = s.join("a.json");
    untorn()
        .arg("write")
        .arg(&f)
        .arg("{\"count\": 1}\n")
        .assert()
        .success()
        .stdout("")
        .stderr("");
    assert_eq!(fs::read(&f).unwrap(), b"{\"count\": 1}\n");
    untorn()
        .arg("write")
        .arg(&f)
        .arg("{\"count\": 2}")
        .assert()
        .success();
    assert_eq!(
        fs::read(&f).unwrap(),
        b"{\"count\": 2}",
        "no newline is added"
    );
}

#[test]
fn relative_path_in_current_directory() {
    let s = Scratch::new();
    s.file("state", b"old", 0o644);
    untorn()
        .current_dir(s.path())
        .args(["write", "state", "new"])
        .assert()
        .success();
    assert_eq!(fs::read(s.join("state")).unwrap(), b"new");
    untorn()
        .current_dir(s.path())
        .args(["write", "./fresh", "x"])
        .assert()
        .success();
    assert_eq!(fs::read(s.join("fresh")).unwrap(), b"x");
}

#[test]
fn unusual_file_names() {
    let s = Scratch::new();
    for name in [
        "with space",
        "ünïcödé.txt",
        "-dash",
        "new\nline",
        ".hidden",
        "a.tmp",
    ] {
        let f = s.join(name);
        untorn()
            .arg("write")
            .arg("--")
            .arg(&f)
            .arg(name)
            .assert()
            .success();
        assert_eq!(fs::read(&f).unwrap(), name.as_bytes(), "{name:?}");
    }
    let names = fs::read_dir(s.path()).unwrap().count();
    assert_eq!(names, 6);
}

#[test]
fn content_from_stdin() {
    let s = Scratch::new();
    let f = s.file("f", b"old content", 0o644);
    untorn()
        .arg("write")
        .arg(&f)
        .write_stdin("from stdin\n")
        .assert()
        .success()
        .stderr("");
    assert_eq!(fs::read(&f).unwrap(), b"from stdin\n");
}

#[test]
fn binary_content_from_stdin_is_exact() {
    let s = Scratch::new();
    let f = s.file("bin", b"old", 0o644);
    // Every byte value (NUL, invalid UTF-8, CR/LF), then 3 MiB of random bytes: more than any
    // buffer, not a multiple of a page.
    let mut data: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut big = vec![0u8; 3 * 1024 * 1024 + 123];
    rng.fill(&mut big);
    data.extend_from_slice(&big);
    untorn()
        .arg("write")
        .arg(&f)
        .write_stdin(data.clone())
        .assert()
        .success();
    assert!(fs::read(&f).unwrap() == data, "binary content altered");
}

#[test]
fn non_utf8_argument_is_written_exactly() {
    // CONTENT is any bytes: never refused, never a lossy conversion.
    let s = Scratch::new();
    let f = s.file("f", b"old", 0o644);
    let out = untorn()
        .arg("write")
        .arg(&f)
        .arg(OsStr::from_bytes(b"\xff\xfe binary"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(fs::read(&f).unwrap(), b"\xff\xfe binary");
}

#[test]
fn empty_content_argument_and_empty_stdin() {
    let s = Scratch::new();
    let f = s.file("f", b"something", 0o640);
    untorn().arg("write").arg(&f).arg("").assert().success();
    assert_eq!(fs::read(&f).unwrap(), b"");
    assert_eq!(mode_of(&f), 0o640);

    let g = s.file("g", b"something", 0o644);
    untorn()
        .arg("write")
        .arg(&g)
        .write_stdin("")
        .assert()
        .success();
    assert_eq!(fs::read(&g).unwrap(), b"");

    // A new empty file.
    let h = s.join("h");
    untorn().arg("write").arg(&h).assert().success();
    assert_eq!(fs::metadata(&h).unwrap().len(), 0);
}

/// `tr a-z A-Z < f | untorn write f`: all of standard input is read before the file is touched,
/// so the pipeline reads the old content whole, however large, and writes the transformation.
#[test]
fn sponge_reads_all_input_before_touching_the_file() {
    let s = Scratch::new();
    let line = b"the quick brown fox jumps over the lazy dog\n";
    let old: Vec<u8> = line
        .iter()
        .copied()
        .cycle()
        .take(line.len() * 50_000)
        .collect(); // ~2 MiB
    let f = s.file("f.txt", &old, 0o640);
    Command::new("sh")
        .arg("-c")
        .arg(r#"tr a-z A-Z < "$F" | "$U" write "$F""#)
        .env("U", bin())
        .env("F", &f)
        .timeout(Duration::from_secs(30))
        .assert()
        .success();
    let want: Vec<u8> = old.to_ascii_uppercase();
    let got = fs::read(&f).unwrap();
    assert_eq!(got.len(), want.len(), "input was not read whole first");
    assert!(got == want);
    assert_eq!(mode_of(&f), 0o640);

    // `cat f | untorn write f` keeps the file as it is.
    Command::new("sh")
        .arg("-c")
        .arg(r#"cat "$F" | "$U" write "$F""#)
        .env("U", bin())
        .env("F", &f)
        .timeout(Duration::from_secs(30))
        .assert()
        .success();
    assert!(fs::read(&f).unwrap() == want);

    // A producer that reads the file slowly, after untorn has started: still the old content.
    Command::new("sh")
        .arg("-c")
        .arg(r#"{ head -c 1000 "$F"; sleep 0.2; tail -c +1001 "$F"; } | sed 's/FOX/cat/' | "$U" write "$F""#)
        .env("U", bin())
        .env("F", &f)
        .timeout(Duration::from_secs(30))
        .assert()
        .success();
    let want2 = String::from_utf8(want)
        .unwrap()
        .replace("FOX", "cat")
        .into_bytes();
    assert!(fs::read(&f).unwrap() == want2);
}

// ---------------------------------------------------------------------------------------------
// Modes and owners
// ---------------------------------------------------------------------------------------------

#[test]
fn mode_flag_on_a_new_file() {
    let s = Scratch::new();
    for (flag, want) in [("600", 0o600), ("0640", 0o640), ("0o755", 0o755), ("0", 0)] {
        let f = s.join(format!("new-{flag}"));
        untorn()
            .args(["write", "--mode", flag])
            .arg(&f)
            .arg("x")
            .assert()
            .success();
        assert_eq!(mode_of(&f), want, "--mode {flag}");
        assert_eq!(read_any_mode(&f), b"x");
    }
}

#[test]
fn mode_flag_ignores_the_umask() {
    let s = Scratch::new();
    let f = s.join("f");
    Command::new("sh")
        .arg("-c")
        .arg(r#"umask 077; exec "$U" write --mode 664 "$F" x"#)
        .env("U", bin())
        .env("F", &f)
        .assert()
        .success();
    assert_eq!(mode_of(&f), 0o664);
}

#[test]
fn mode_flag_on_an_existing_file() {
    let s = Scratch::new();
    let f = s.file("f", b"old", 0o644);
    untorn()
        .args(["write", "--mode", "600"])
        .arg(&f)
        .arg("new")
        .assert()
        .success();
    assert_eq!(mode_of(&f), 0o600);
    assert_eq!(fs::read(&f).unwrap(), b"new");
    // And back to a wider mode.
    untorn()
        .args(["write", "--mode", "0755"])
        .arg(&f)
        .arg("newer")
        .assert()
        .success();
    assert_eq!(mode_of(&f), 0o755);
}

#[test]
fn mode_flag_with_special_bits() {
    let s = Scratch::new();
    let f = s.file("tool", b"#!/bin/sh\n", 0o755);
    untorn()
        .args(["write", "--mode", "2755"])
        .arg(&f)
        .arg("#!/bin/sh\necho hi\n")
        .assert()
        .success();
    assert_eq!(mode_of(&f), 0o2755);
    // A replaced file keeps its special bits too.
    untorn().arg("write").arg(&f).arg("v2").assert().success();
    assert_eq!(mode_of(&f), 0o2755);
}

#[test]
fn replaced_file_keeps_its_mode() {
    let s = Scratch::new();
    for mode in [0o600, 0o640, 0o644, 0o755, 0o400, 0o000] {
        let f = s.file(format!("f{mode:o}"), b"old", mode);
        // A strict umask must not narrow a replaced file's mode.
        Command::new("sh")
            .arg("-c")
            .arg(r#"umask 077; exec "$U" write "$F" new"#)
            .env("U", bin())
            .env("F", &f)
            .assert()
            .success();
        assert_eq!(mode_of(&f), mode, "mode {mode:o} not kept");
        assert_eq!(read_any_mode(&f), b"new");
    }
}

#[test]
fn replaced_file_keeps_its_owner_and_group() {
    if !is_root() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIP replaced_file_keeps_its_owner_and_group: needs root to chown\n",
        );
        assert!(
            std::env::var("UNTORN_REQUIRE_ALL").as_deref() != Ok("1"),
            "not root"
        );
        return;
    }
    let s = Scratch::new();
    for (mode, temp) in [(0o600, "auto"), (0o640, "named"), (0o640, "unnamed")] {
        let f = s.file(format!("owned-{mode:o}-{temp}"), b"old", mode);
        std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
        untorn()
            .args(["write", "--temp", temp])
            .arg(&f)
            .arg("new")
            .assert()
            .success();
        let m = fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678), "owner not kept ({temp})");
        assert_eq!(m.mode() & 0o7777, mode, "mode not kept ({temp})");
        assert_eq!(fs::read(&f).unwrap(), b"new");
    }
    // Setuid survives the chown that keeps the owner (chown clears it; it must be restored).
    let f = s.file("suid", b"old", 0o4755);
    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o4755)).unwrap();
    untorn().arg("write").arg(&f).arg("new").assert().success();
    let m = fs::metadata(&f).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o4755));
}

#[test]
fn new_file_gets_0666_less_the_umask() {
    let s = Scratch::new();
    for (umask, want, temp) in [
        ("027", 0o640, "auto"),
        ("027", 0o640, "named"),
        ("022", 0o644, "unnamed"),
        ("077", 0o600, "named"),
        ("000", 0o666, "auto"),
        ("000", 0o666, "named"),
    ] {
        let f = s.join(format!("new-{umask}-{temp}"));
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                r#"umask {umask}; exec "$U" write --temp {temp} "$F" x"#
            ))
            .env("U", bin())
            .env("F", &f)
            .assert()
            .success();
        assert_eq!(mode_of(&f), want, "umask {umask}, --temp {temp}");
    }
}

// ---------------------------------------------------------------------------------------------
// --no-clobber
// ---------------------------------------------------------------------------------------------

#[test]
fn no_clobber_refuses_an_existing_file() {
    let s = Scratch::new();
    for temp in ["auto", "named", "unnamed"] {
        let f = s.file(format!("lock-{temp}.pid"), b"123\n", 0o644);
        let out = untorn()
            .args(["write", "--no-clobber", "--temp", temp])
            .arg(&f)
            .arg("456\n")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(7), "{temp}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert_one_error_line(&err);
        assert!(err.contains(&*f.to_string_lossy()), "{err}");
        assert!(err.contains("exists"), "{err}");
        assert_eq!(fs::read(&f).unwrap(), b"123\n", "old content must be kept");
    }
}

#[test]
fn no_clobber_creates_a_new_file() {
    let s = Scratch::new();
    for temp in ["auto", "named", "unnamed"] {
        let f = s.join(format!("lock-{temp}.pid"));
        untorn()
            .args(["write", "--no-clobber", "--temp", temp])
            .arg(&f)
            .arg("456\n")
            .assert()
            .success();
        assert_eq!(fs::read(&f).unwrap(), b"456\n");
        // A second creator loses.
        untorn()
            .args(["write", "--no-clobber", "--temp", temp])
            .arg(&f)
            .arg("789\n")
            .assert()
            .code(7);
        assert_eq!(fs::read(&f).unwrap(), b"456\n");
    }
}

#[test]
fn no_clobber_racing_creators_exactly_one_wins() {
    let s = Scratch::new();
    let f = s.join("race");
    let children: Vec<_> = (0..8)
        .map(|i| {
            std::process::Command::new(bin())
                .args(["write", "--no-clobber"])
                .arg(&f)
                .arg(format!("writer {i}"))
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|mut c| c.wait().unwrap().code().unwrap())
        .collect();
    let winners: Vec<usize> = (0..8).filter(|&i| codes[i] == 0).collect();
    assert_eq!(winners.len(), 1, "exit codes {codes:?}");
    assert!(codes.iter().all(|&c| c == 0 || c == 7), "{codes:?}");
    assert_eq!(
        fs::read_to_string(&f).unwrap(),
        format!("writer {}", winners[0])
    );
}

// ---------------------------------------------------------------------------------------------
// --symlink
// ---------------------------------------------------------------------------------------------

fn symlink(target: impl AsRef<Path>, link: impl AsRef<Path>) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[test]
fn symlink_follow_is_the_default_and_keeps_the_link() {
    let s = Scratch::new();
    let target = s.file("real.conf", b"old", 0o640);
    let link = s.join("link.conf");
    symlink("real.conf", &link);
    for args in [&["write"][..], &["write", "--symlink", "follow"][..]] {
        untorn()
            .args(args)
            .arg(&link)
            .arg(format!("{args:?}"))
            .assert()
            .success();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("real.conf"));
        assert_eq!(fs::read(&target).unwrap(), format!("{args:?}").as_bytes());
        assert_eq!(mode_of(&target), 0o640, "the target's mode is kept");
    }
}

#[test]
fn symlink_follow_relative_link_into_another_directory() {
    let s = Scratch::new();
    fs::create_dir(s.join("etc")).unwrap();
    fs::create_dir(s.join("data")).unwrap();
    let target = s.file("data/app.json", b"{}", 0o600);
    let link = s.join("etc/app.json");
    symlink("../data/app.json", &link);
    // From inside the link's directory, with a relative path, too.
    untorn()
        .current_dir(s.join("etc"))
        .args(["write", "app.json", "{\"v\": 1}"])
        .assert()
        .success();
    assert_eq!(fs::read(&target).unwrap(), b"{\"v\": 1}");
    untorn()
        .arg("write")
        .arg(&link)
        .arg("{\"v\": 2}")
        .assert()
        .success();
    assert_eq!(fs::read(&target).unwrap(), b"{\"v\": 2}");
    assert_eq!(mode_of(&target), 0o600);
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("../data/app.json"));
    assert_eq!(fs::read_dir(s.join("etc")).unwrap().count(), 1);
    assert_eq!(fs::read_dir(s.join("data")).unwrap().count(), 1);
}

#[test]
fn symlink_follow_absolute_link() {
    let s = Scratch::new();
    fs::create_dir(s.join("d")).unwrap();
    let target = s.file("d/t", b"old", 0o644);
    let link = s.join("abs");
    symlink(&target, &link);
    untorn()
        .arg("write")
        .arg(&link)
        .arg("new")
        .assert()
        .success();
    assert_eq!(fs::read(&target).unwrap(), b"new");
    assert_eq!(fs::read_link(&link).unwrap(), target);
}

#[test]
fn symlink_follow_dangling_link_creates_the_target() {
    let s = Scratch::new();
    fs::create_dir(s.join("data")).unwrap();
    let link = s.join("current");
    symlink("data/v1.txt", &link);
    untorn()
        .arg("write")
        .arg(&link)
        .arg("first")
        .assert()
        .success();
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(s.join("data/v1.txt")).unwrap(), b"first");
    // The dangling link's directory does not exist: not found (3), nothing created.
    let link2 = s.join("broken");
    symlink("nowhere/x", &link2);
    untorn().arg("write").arg(&link2).arg("x").assert().code(3);
    assert!(!s.join("nowhere").exists());
}

#[test]
fn symlink_follow_chain_of_links() {
    let s = Scratch::new();
    fs::create_dir(s.join("a")).unwrap();
    fs::create_dir(s.join("b")).unwrap();
    let target = s.file("b/target", b"old", 0o640);
    symlink("../b/l3", s.join("a/l2")); // a/l2 -> b/l3
    symlink("target", s.join("b/l3")); // b/l3 -> b/target
    symlink("a/l2", s.join("l1")); // l1 -> a/l2
    untorn()
        .arg("write")
        .arg(s.join("l1"))
        .arg("new")
        .assert()
        .success();
    assert_eq!(fs::read(&target).unwrap(), b"new");
    assert_eq!(mode_of(&target), 0o640);
    for l in ["l1", "a/l2", "b/l3"] {
        assert!(
            fs::symlink_metadata(s.join(l))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{l} is no longer a link"
        );
    }
}

#[test]
fn symlink_loop_is_a_bad_target() {
    let s = Scratch::new();
    symlink("loop2", s.join("loop1"));
    symlink("loop1", s.join("loop2"));
    let out = untorn()
        .arg("write")
        .arg(s.join("loop1"))
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", stderr_of(&out));
    assert_one_error_line(&stderr_of(&out));
    assert!(
        stderr_of(&out).contains("symbolic link"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(fs::read_link(s.join("loop1")).unwrap(), Path::new("loop2"));
    assert_eq!(fs::read_link(s.join("loop2")).unwrap(), Path::new("loop1"));
}

#[test]
fn symlink_replace_turns_the_link_into_a_file() {
    let s = Scratch::new();
    let target = s.file("real", b"untouched", 0o644);
    for temp in ["auto", "named"] {
        let link = s.join(format!("link-{temp}"));
        symlink("real", &link);
        untorn()
            .args(["write", "--symlink", "replace", "--temp", temp])
            .arg(&link)
            .arg("now a file")
            .assert()
            .success();
        let m = fs::symlink_metadata(&link).unwrap();
        assert!(m.file_type().is_file(), "{temp}: still a link");
        assert_eq!(fs::read(&link).unwrap(), b"now a file");
        assert_eq!(fs::read(&target).unwrap(), b"untouched");
    }
}

#[test]
fn symlink_refuse_fails_and_changes_nothing() {
    let s = Scratch::new();
    let target = s.file("real", b"untouched", 0o644);
    let link = s.join("link");
    symlink("real", &link);
    let out = untorn()
        .args(["write", "--symlink", "refuse"])
        .arg(&link)
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert_one_error_line(&err);
    assert!(err.contains(&*link.to_string_lossy()), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("real"));
    assert_eq!(fs::read(&target).unwrap(), b"untouched");
    // A regular file is written as usual under --symlink refuse.
    untorn()
        .args(["write", "--symlink", "refuse"])
        .arg(&target)
        .arg("ok")
        .assert()
        .success();
    assert_eq!(fs::read(&target).unwrap(), b"ok");
}

// ---------------------------------------------------------------------------------------------
// --durability and --temp
// ---------------------------------------------------------------------------------------------

#[test]
fn every_durability_and_temp_strategy_writes_the_content() {
    let s = Scratch::new();
    let mut rng = fastrand::Rng::with_seed(42);
    for durability in ["none", "file", "full"] {
        for temp in ["auto", "unnamed", "named"] {
            let name = format!("{durability}-{temp}");
            // New file, from the argument.
            let f = s.join(&name);
            untorn()
                .args(["write", "--durability", durability, "--temp", temp])
                .arg(&f)
                .arg(&name)
                .assert()
                .success();
            assert_eq!(fs::read(&f).unwrap(), name.as_bytes());
            // Replacement, from stdin, larger than a buffer; the mode is kept.
            fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
            let mut data = vec![0u8; 200_000 + rng.usize(..100_000)];
            rng.fill(&mut data);
            untorn()
                .args(["write", "--durability", durability, "--temp", temp])
                .arg(&f)
                .write_stdin(data.clone())
                .assert()
                .success();
            assert!(fs::read(&f).unwrap() == data, "{name}: wrong content");
            assert_eq!(mode_of(&f), 0o640, "{name}");
            assert_no_leftovers(s.path());
        }
    }
}

#[test]
fn replacement_is_a_new_inode_and_readers_of_the_old_one_are_unaffected() {
    // What makes the replace atomic for readers: an open reader keeps the whole old file.
    let s = Scratch::new();
    let f = s.file("f", b"old content", 0o644);
    let before = fs::metadata(&f).unwrap().ino();
    let reader = fs::File::open(&f).unwrap();
    for temp in ["auto", "named"] {
        untorn()
            .args(["write", "--temp", temp])
            .arg(&f)
            .arg(format!("new via {temp}"))
            .assert()
            .success();
    }
    assert_ne!(fs::metadata(&f).unwrap().ino(), before);
    let mut old = String::new();
    std::io::Read::read_to_string(&mut &reader, &mut old).unwrap();
    assert_eq!(old, "old content");
    assert_eq!(fs::read(&f).unwrap(), b"new via named");
}

// ---------------------------------------------------------------------------------------------
// -v, --help, usage errors, a terminal on stdin
// ---------------------------------------------------------------------------------------------

#[test]
fn verbose_prints_a_trace_line_with_the_path_and_outcome() {
    let s = Scratch::new();
    let f = s.file("traced.json", b"old", 0o644);
    for args in [&["-v", "write"][..], &["write", "-v"][..]] {
        let out = untorn().args(args).arg(&f).arg("new").output().unwrap();
        assert!(out.status.success());
        assert!(out.stdout.is_empty(), "tracing goes to stderr only");
        let err = stderr_of(&out);
        let line = err
            .lines()
            .find(|l| l.contains("committed"))
            .unwrap_or_else(|| panic!("no 'committed' line in {err:?}"));
        assert!(line.contains(&*f.to_string_lossy()), "{line}");
        assert!(line.contains("bytes=3"), "{line}");
        assert!(
            !err.contains('\u{1b}'),
            "no colour codes when stderr is not a terminal"
        );
    }
    // Without -v, a success is silent.
    untorn()
        .arg("write")
        .arg(&f)
        .arg("quiet")
        .assert()
        .success()
        .stderr("")
        .stdout("");
    // With -v, a failure shows the error once as `untorn: ...` (and the trace line).
    let out = untorn()
        .args(["-v", "write", "--no-clobber"])
        .arg(&f)
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let err = stderr_of(&out);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("untorn: ")).count(),
        1,
        "{err}"
    );
}

#[test]
fn help_lists_the_exit_codes() {
    // The whole table in `untorn --help`; a command's help points to it instead of repeating
    // it (and repeats no other command's examples).
    let out = untorn().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Exit codes"), "{text}");
    for (code, what) in [
        (3, "does not exist"),
        (4, "permission denied"),
        (5, "read-only"),
        (6, "no space"),
        (7, "exists"),
        (8, "directory"),
        (9, "cross-device"),
        (14, "another user"),
        (129, "SIGHUP"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} ")) && l.contains(what)),
            "no row for exit code {code} ({what}) in\n{text}"
        );
    }
    for args in [
        &["write", "--help"][..],
        &["help", "write"][..],
        &["edit", "-h"][..],
    ] {
        let out = untorn().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            !text.contains("no space left"),
            "{args:?} repeats the table: {text}"
        );
        assert!(text.contains("untorn --help"), "{args:?}: {text}");
        assert!(text.contains("Examples:"), "{args:?}: {text}");
        assert!(
            !text.contains("untorn lock state.json -- ./deploy.sh"),
            "{args:?}: {text}"
        );
    }
    // -h gives the short help, which still explains the command.
    let out = untorn().args(["write", "-h"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--no-clobber"));
    // --backup is a link, not a rename or a copy (as the README says).
    let out = untorn().args(["write", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("rename, not a copy"), "{text}");
    assert!(text.contains("(a link)"), "{text}");
}

/// Every command's names: untorn's own and each subcommand's.
fn commands() -> Vec<Vec<&'static str>> {
    let mut v = vec![vec![]];
    for c in [
        "write", "lock", "edit", "read", "append", "repair", "tail", "backup", "backups",
        "restore", "check", "clean", "recover", "txn", "generate",
    ] {
        v.push(vec![c]);
    }
    v
}

#[test]
fn short_help_is_one_line_per_flag_and_every_command_has_examples() {
    for cmd in commands() {
        for flag in ["-h", "--help"] {
            let out = untorn().args(&cmd).arg(flag).output().unwrap();
            assert!(out.status.success(), "{cmd:?} {flag}");
            let text = String::from_utf8(out.stdout).unwrap();
            for l in text.lines() {
                assert!(
                    l.chars().count() <= 100,
                    "{cmd:?} {flag}: {} columns: {l}",
                    l.len()
                );
            }
            assert!(
                text.contains("Examples:\n  "),
                "{cmd:?} {flag}: no examples"
            );
            if flag == "--help" {
                continue;
            }
            // In -h, a flag's line is never continued: after a line `  -x, --flag  help`
            // comes another flag, a heading or a blank line.
            let lines: Vec<&str> = text.lines().collect();
            let mut in_options = false;
            for w in lines.windows(2) {
                if w[0].ends_with("options:") || w[0] == "Options:" || w[0] == "Arguments:" {
                    in_options = true;
                } else if w[0].is_empty() {
                    in_options = false;
                }
                if in_options && !w[0].ends_with(':') {
                    let cont = w[1].starts_with("          ") && !w[1].trim().is_empty();
                    assert!(
                        !cont,
                        "{cmd:?} -h: a flag's help runs onto a second line:\n{}\n{}",
                        w[0], w[1]
                    );
                }
            }
        }
    }
}

#[test]
fn examples_are_aligned() {
    // The description column of each command's examples is one column (a command line too
    // long for it has its description on the next line, in that column).
    for cmd in commands() {
        let out = untorn().args(&cmd).arg("-h").output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let ex: Vec<&str> = text
            .split("Examples:\n")
            .nth(1)
            .unwrap()
            .lines()
            .take_while(|l| !l.is_empty())
            .collect();
        let mut cols = std::collections::BTreeSet::new();
        for l in &ex {
            let indent = l.len() - l.trim_start().len();
            if indent > 2 {
                cols.insert(indent); // a description on a line of its own
            } else if let Some(i) = l.rfind("  ").filter(|&i| i > 0) {
                cols.insert(i + 2);
            }
        }
        assert!(
            cols.len() <= 1,
            "{cmd:?}: descriptions at columns {cols:?}:\n{}",
            ex.join("\n")
        );
    }
}

#[test]
fn an_unknown_flag_or_command_suggests_the_nearest() {
    for (args, want) in [
        (&["write", "--no-clober", "f", "x"][..], "--no-clobber"),
        (&["tail", "--jsnl", "f"][..], "--jsonl"),
        (&["writ", "f", "x"][..], "'write'"),
        (&["backups", "--jsn", "f"][..], "--json"),
    ] {
        let out = untorn().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr_of(&out);
        assert!(
            err.contains("similar") && err.contains(want),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn version_prints_and_succeeds() {
    let out = untorn().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("untorn "));
}

#[test]
fn bad_usage_exits_2_and_touches_nothing() {
    let s = Scratch::new();
    let f = s.file("f", b"old", 0o644);
    let fs_ = f.to_str().unwrap();
    let g = s.join("g");
    let gs = g.to_str().unwrap();
    for args in [
        vec![],
        vec!["write"],
        vec!["frobnicate", fs_],
        vec!["write", "--bogus", fs_, "x"],
        vec!["write", "--mode", "999", fs_, "x"],
        vec!["write", "--mode", "rw-r--r--", gs, "x"],
        vec!["write", "--mode", "17777", gs, "x"],
        vec!["write", "--symlink", "maybe", fs_, "x"],
        vec!["write", "--durability", "some", fs_, "x"],
        vec!["write", "--temp", "elsewhere", gs, "x"],
        vec!["write", fs_, "x", "extra"],
        vec!["write", "", "x"],
    ] {
        let out = untorn().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
        assert_eq!(fs::read(&f).unwrap(), b"old", "{args:?}");
        assert!(!g.exists(), "{args:?}");
    }
}

#[test]
fn path_that_cannot_name_a_file_is_a_bad_target() {
    let s = Scratch::new();
    for p in [
        format!("{}/", s.path().display()),
        format!("{}/..", s.path().display()),
    ] {
        let out = untorn().args(["write", &p, "x"]).output().unwrap();
        assert_eq!(out.status.code(), Some(8), "{p}: {}", stderr_of(&out));
        assert_one_error_line(&stderr_of(&out));
    }
}

#[test]
fn stdin_terminal_is_refused() {
    // Simulate an interactive shell: `script` runs untorn with a pseudo-terminal as stdin.
    let have_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_script {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIP stdin_terminal_is_refused: the `script` command is not available\n",
        );
        assert!(
            std::env::var("UNTORN_REQUIRE_ALL").as_deref() != Ok("1"),
            "`script` missing"
        );
        return;
    }
    let s = Scratch::new();
    let f = s.file("f", b"keep me", 0o644);
    let out = std::process::Command::new("timeout")
        .args(["20", "script", "-q", "-e", "-c"])
        .arg(format!("'{}' write '{}'", bin().display(), f.display()))
        .arg("/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    // `script` merges the child's stdout and stderr into its own stdout.
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("terminal"), "{text}");
    assert_eq!(fs::read(&f).unwrap(), b"keep me");
}

// ---------------------------------------------------------------------------------------------
// Errors that need no privilege
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_directory_is_not_found() {
    let s = Scratch::new();
    let f = s.join("no/such/dir/f");
    let out = untorn().arg("write").arg(&f).arg("x").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = stderr_of(&out);
    assert_one_error_line(&err);
    assert!(
        err.contains(&*s.join("no/such/dir").to_string_lossy()),
        "{err}"
    );
    assert!(err.contains("no such file or directory"), "{err}");
}

#[test]
fn directory_target_is_a_bad_target() {
    let s = Scratch::new();
    fs::create_dir(s.join("d")).unwrap();
    fs::write(s.join("d/inside"), "kept").unwrap();
    let out = untorn()
        .arg("write")
        .arg(s.join("d"))
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8));
    let err = stderr_of(&out);
    assert_one_error_line(&err);
    assert!(err.contains("is a directory"), "{err}");
    assert_eq!(fs::read(s.join("d/inside")).unwrap(), b"kept");
}

#[test]
fn parent_that_is_a_file_is_a_bad_target() {
    let s = Scratch::new();
    s.file("plain", b"kept", 0o644);
    let out = untorn()
        .arg("write")
        .arg(s.join("plain/f"))
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("not a directory"));
    assert_eq!(fs::read(s.join("plain")).unwrap(), b"kept");
}

#[test]
fn stdin_read_error_leaves_the_file_alone() {
    // Standard input is a directory: reading fails, and nothing may be written.
    let s = Scratch::new();
    let f = s.file("f", b"keep", 0o644);
    let out = std::process::Command::new(bin())
        .arg("write")
        .arg(&f)
        .stdin(fs::File::open(s.path()).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert_one_error_line(&err);
    assert!(err.contains("standard input"), "{err}");
    assert!(err.contains(&*f.to_string_lossy()), "{err}");
    assert_eq!(fs::read(&f).unwrap(), b"keep");
}

#[test]
fn interrupt_while_reading_stdin_leaves_the_file_alone() {
    // Until standard input ends, untorn must not touch FILE: an interrupt at any moment before
    // then (here: whenever the signal lands) leaves the old content and no temp file.
    use rustix::process::{kill_process, Pid, Signal};
    use std::io::Write as _;
    let s = Scratch::new();
    let f = s.file("f", b"old", 0o644);
    for (i, sig) in [Signal::INT, Signal::TERM, Signal::INT, Signal::TERM]
        .into_iter()
        .enumerate()
    {
        let mut child = std::process::Command::new(bin())
            .arg("write")
            .arg(&f)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if i >= 2 {
            // Part of the new content is already in the pipe.
            stdin.write_all(&vec![b'n'; 100_000]).unwrap_or(());
        }
        kill_process(Pid::from_child(&child), sig).unwrap();
        // The signal is pending once kill returns: the process runs no more code, even though
        // its input ends now.
        drop(stdin);
        let status = child.wait().unwrap();
        assert!(!status.success(), "{sig:?}: {status}");
        assert_eq!(fs::read(&f).unwrap(), b"old", "{sig:?}");
        assert_no_leftovers(s.path());
    }
    // The same command, left to finish, does write.
    untorn()
        .arg("write")
        .arg(&f)
        .write_stdin("new")
        .assert()
        .success();
    assert_eq!(fs::read(&f).unwrap(), b"new");
}

#[test]
fn nothing_is_replaced_until_stdin_ends() {
    // Standard input is streamed into the temp file (memory stays flat), but the file itself
    // is not touched before EOF: once a 1 MiB write into the pipe returns, untorn has read
    // most of it, and the file is still the old one (same inode, same content); the only
    // other name there can be is the named temp.
    use std::io::Write as _;
    let s = Scratch::new();
    let f = s.file("f", b"old", 0o644);
    for temp in ["named", "auto"] {
        let ino = fs::metadata(&f).unwrap().ino();
        let mut child = std::process::Command::new(bin())
            .args(["write", "--temp", temp])
            .arg(&f)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = vec![b'x'; 1 << 20];
        stdin.write_all(&data).unwrap();
        for e in fs::read_dir(s.path()).unwrap() {
            let n = e.unwrap().file_name();
            assert!(
                n == "f" || (temp == "named" && untorn::temp_file_target(&n).is_some()),
                "{temp}: {n:?} before EOF"
            );
        }
        assert_eq!(fs::read(&f).unwrap(), b"old");
        assert_eq!(fs::metadata(&f).unwrap().ino(), ino);
        drop(stdin);
        assert!(child.wait().unwrap().success());
        assert!(fs::read(&f).unwrap() == data);
        fs::write(&f, b"old").unwrap();
    }
}

#[test]
fn a_signal_while_reading_stdin_leaves_the_file_and_no_temp() {
    // With a named temp (a file system without O_TMPFILE), SIGINT, SIGTERM or SIGHUP while
    // standard input is still open remove the temp: nothing is left, the file is unchanged.
    use std::io::Write as _;
    let s = Scratch::new();
    let f = s.file("f", b"old", 0o644);
    for (sig, code) in [
        (rustix::process::Signal::TERM, 143),
        (rustix::process::Signal::INT, 130),
        (rustix::process::Signal::HUP, 129),
    ] {
        let mut child = std::process::Command::new(bin())
            .args(["write", "--temp", "named"])
            .arg(&f)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&vec![b'x'; 1 << 20]).unwrap();
        // The temp exists once its first bytes are in.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !fs::read_dir(s.path())
            .unwrap()
            .any(|e| untorn::temp_file_target(&e.unwrap().file_name()).is_some())
        {
            assert!(std::time::Instant::now() < deadline, "no temp appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        assert_eq!(out.status.code(), Some(code), "{sig:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("unchanged"),
            "{:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(fs::read(&f).unwrap(), b"old");
        assert_no_leftovers(s.path());
    }
}

#[test]
fn write_streams_stdin_in_flat_memory() {
    // 256 MiB through `untorn write` on standard input: the peak resident size stays far
    // below the input (it was all held in memory before). `scripts/bench-write-memory` shows
    // the peak for 1 GiB.
    let s = Scratch::new();
    let f = s.join("big");
    let mut child = std::process::Command::new(bin())
        .arg("write")
        .arg(&f)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    let mut stdin = child.stdin.take().unwrap();
    let chunk = vec![b'z'; 1 << 20];
    for _ in 0..256 {
        stdin.write_all(&chunk).unwrap();
    }
    // All but the pipe's last bytes are read; untorn waits for more: its peak so far.
    std::thread::sleep(Duration::from_millis(100));
    let peak_kib = peak_rss_kib(child.id());
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(fs::metadata(&f).unwrap().len(), 256 << 20);
    assert!(
        peak_kib < 64 * 1024,
        "peak resident size {peak_kib} KiB for 256 MiB of input"
    );
}

/// The peak resident size (VmHWM, KiB) of the running process `pid`.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
