//! untorn run as root in a directory others can write (issue: "trust nothing found on disk").
//!
//! Each test rebuilds one class of attack: the attacker's steps run as an unprivileged user
//! (`setpriv --reuid 65534`, "nobody") in a sticky, world-writable directory, with the kernel's
//! own hardening off (`fs.protected_symlinks`, `_hardlinks`, `_regular`, `_fifos` = 0, restored
//! afterwards), and untorn runs as root, as a user would run it. Each asserts that nothing
//! outside the named files changed (a snapshot of a root-only directory elsewhere), and that
//! untorn said why it refused.
//!
//! The hostile journals are planted in both formats: the current one (3), and the format 2 of
//! earlier versions, whose absolute paths were the hole. `UNTORN_TEST_BIN=/path/to/untorn` runs
//! the same attacks against another binary (e.g. one built before the fix, to see them land).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

fn bin() -> PathBuf {
    std::env::var_os("UNTORN_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| assert_cmd::cargo::cargo_bin("untorn"))
}

/// Whether the tests can run here (root, setpriv); prints why not.
fn can_run(test: &str) -> bool {
    let why = if !rustix::process::geteuid().is_root() {
        Some("not root")
    } else if Command::new("setpriv").arg("--version").output().is_err() {
        Some("setpriv (util-linux) is not installed")
    } else {
        None
    };
    match why {
        None => true,
        Some(w) => {
            eprintln!("SKIPPED: {test}: {w}");
            assert!(
                std::env::var("UNTORN_REQUIRE_ALL").as_deref() != Ok("1"),
                "{test} skipped ({w}) with UNTORN_REQUIRE_ALL=1"
            );
            false
        }
    }
}

/// One attack at a time: the sysctls are global.
static SERIAL: Mutex<()> = Mutex::new(());

/// The kernel's hardening for sticky directories, off while a test runs, then as it was.
struct Sysctls(Vec<(PathBuf, String)>);

impl Sysctls {
    fn off() -> Sysctls {
        let mut saved = Vec::new();
        for k in ["symlinks", "hardlinks", "regular", "fifos"] {
            let p = PathBuf::from(format!("/proc/sys/fs/protected_{k}"));
            if let Ok(v) = fs::read_to_string(&p) {
                if fs::write(&p, "0").is_ok() {
                    saved.push((p, v));
                }
            }
        }
        Sysctls(saved)
    }
}

impl Drop for Sysctls {
    fn drop(&mut self) {
        for (p, v) in &self.0 {
            let _ = fs::write(p, v.trim());
        }
    }
}

/// The scene: a shared sticky directory (like /tmp) where the attacker and root both work,
/// and a root-only directory elsewhere that nothing may touch.
struct Scene {
    _guard: std::sync::MutexGuard<'static, ()>,
    _sysctls: Sysctls,
    shared: tempfile::TempDir,
    outside: tempfile::TempDir,
    /// Where the test hands the attacker files it prepared (readable by all).
    drop_box: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let sysctls = Sysctls::off();
        let mk = |prefix: &str, mode: u32| {
            let d = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir_in("/tmp")
                .unwrap();
            fs::set_permissions(d.path(), fs::Permissions::from_mode(mode)).unwrap();
            d
        };
        let scene = Scene {
            _guard: guard,
            _sysctls: sysctls,
            shared: mk("untorn-shared-", 0o1777),
            outside: mk("untorn-outside-", 0o755),
            drop_box: mk("untorn-dropbox-", 0o755),
        };
        // Root's files elsewhere: what the attacker would like root to delete, overwrite, or
        // create beside.
        let out = scene.outside.path();
        fs::write(out.join("victim.json"), "root's victim: not json").unwrap();
        fs::write(out.join("secret"), "root's secret\n").unwrap();
        fs::set_permissions(out.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(out.join("config.json"), "{\"root\": true}\n").unwrap();
        scene
    }

    fn shared(&self) -> &Path {
        self.shared.path()
    }

    fn outside(&self) -> &Path {
        self.outside.path()
    }

    /// A file the attacker can copy in (so that the copy is theirs).
    fn hand_over(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.drop_box.path().join(name);
        fs::write(&p, bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    /// Runs `script` in `sh` as the attacker, in the shared directory; it must succeed.
    fn attacker(&self, script: &str) {
        let out = self.attacker_cmd(script).output().unwrap();
        assert!(
            out.status.success(),
            "the attacker's script failed: {script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn attacker_cmd(&self, script: &str) -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &NOBODY.to_string(),
            "--regid",
            &NOBODY.to_string(),
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
        ])
        .current_dir(self.shared());
        c
    }

    /// Runs untorn as root in the shared directory.
    fn untorn(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .current_dir(self.shared())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Everything under the outside directory: name, mode, owner, content.
    fn outside_state(&self) -> BTreeMap<PathBuf, (u32, u32, Vec<u8>)> {
        snapshot(self.outside())
    }
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = fs::symlink_metadata(&p).unwrap();
        let content = if m.is_file() {
            fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.insert(p, (m.mode(), m.uid(), content));
    }
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn id(p: &Path) -> (u64, u64) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.dev(), m.ino())
}

/// A journal of format 2 (untorn before the fix): absolute paths. Kinds: 1 put (temp, target,
/// size, crc), 2 remove, 3 rename.
fn legacy_journal(entries: &[(u8, (u64, u64), &Path, &Path)], locks: &[&Path]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"UNTORNTX");
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&(locks.len() as u32).to_le_bytes());
    let path = |out: &mut Vec<u8>, p: &Path| {
        let b = p.as_os_str().as_encoded_bytes();
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    for (kind, (dev, ino), a, b) in entries {
        out.push(*kind);
        out.extend_from_slice(&dev.to_le_bytes());
        out.extend_from_slice(&ino.to_le_bytes());
        path(&mut out, a);
        path(&mut out, b);
        if *kind == 1 {
            out.extend_from_slice(&1u64.to_le_bytes()); // a size that will not match
            out.extend_from_slice(&0u32.to_le_bytes());
        }
    }
    for l in locks {
        path(&mut out, l);
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A journal of the current format naming the outside directory as one of its own.
fn hostile_journal(scene: &Scene, tag_lock: &str) -> Vec<u8> {
    use untorn::txn::journal::{Dir, Entry, Journal, Name};
    let dir = |p: &Path| {
        let (dev, ino) = id(p);
        Dir {
            dev,
            ino,
            path: p.to_path_buf(),
        }
    };
    let (sdev, sino) = id(&scene.outside().join("secret"));
    let (vdev, vino) = id(&scene.shared().join("evil.json"));
    Journal {
        id: [0x66; 16],
        dirs: vec![dir(scene.shared()), dir(scene.outside())],
        entries: vec![
            // Rolled back, this would unlink the outside secret (its inode, a size that does
            // not match).
            Entry::Put {
                dir: 1,
                temp: "secret".into(),
                target: "x".into(),
                dev: sdev,
                ino: sino,
                size: 1,
                crc: 0,
            },
            // Rolled forward, the attacker's file over root's config elsewhere.
            Entry::Rename {
                from_dir: 0,
                from: "evil.json".into(),
                to_dir: 1,
                to: "config.json".into(),
                dev: vdev,
                ino: vino,
            },
        ],
        locks: vec![
            Name {
                dir: 0,
                name: tag_lock.into(),
            },
            Name {
                dir: 1,
                name: "created-by-root.lock".into(),
            },
        ],
    }
    .encode()
}

/// Class 1: hand-made journals in the shared directory that name files elsewhere (to unlink,
/// to overwrite, to create lock files beside) are left alone: `untorn recover` reports them,
/// and nothing outside changes.
#[test]
fn planted_journals_never_reach_outside_their_directory() {
    if !can_run("planted_journals_never_reach_outside_their_directory") {
        return;
    }
    let s = Scene::new();
    let out = s.outside().to_path_buf();
    let sh = s.shared().to_path_buf();
    s.attacker("echo '{\"evil\": true}' > evil.json && : > a.json.lock");
    let before = s.outside_state();
    let legacy = legacy_journal(
        &[
            (
                1,
                id(&out.join("secret")),
                &out.join("secret"),
                &out.join("x"),
            ),
            (
                3,
                id(&sh.join("evil.json")),
                &sh.join("evil.json"),
                &out.join("config.json"),
            ),
        ],
        &[&sh.join("a.json.lock"), &out.join("created-by-root.lock")],
    );
    let current = hostile_journal(&s, "a.json.lock");
    let l = s.hand_over("legacy", &legacy);
    let c = s.hand_over("current", &current);
    s.attacker(&format!(
        "cp {} .untorn-txn-0001.journal && cp {} .untorn-txn-0002.journal",
        l.display(),
        c.display()
    ));
    let o = s.untorn(&["recover", "."]);
    assert_eq!(
        s.outside_state(),
        before,
        "recover changed files elsewhere: {o:?}"
    );
    assert_eq!(o.status.code(), Some(14), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(".untorn-txn-0001.journal") && text.contains("nobody"),
        "no word on the planted journal: {text}"
    );
    // The attacker's files are theirs: left in place.
    assert!(sh.join(".untorn-txn-0001.journal").exists());
    assert!(sh.join("evil.json").exists());
}

/// Class 1, with root's own journal: a crashed transaction of root's elsewhere, its journal
/// hard-linked by the attacker into the shared directory (`fs.protected_hardlinks` off): it is
/// root's, so trusted by owner, but it belongs to other directories and is refused there.
#[test]
fn roots_own_journal_linked_into_another_directory_is_refused_there() {
    if !can_run("roots_own_journal_linked_into_another_directory_is_refused_there") {
        return;
    }
    let s = Scene::new();
    let out = s.outside().to_path_buf();
    // Root's crash state elsewhere: a staged temp, a flag, a journal (never committed: one
    // lock file not flagged).
    fs::write(out.join("victim.json"), "{\"v\": 1}\n").unwrap();
    fs::write(out.join(".victim.json.untorn-0000abcd.tmp"), "{\"v\": 2}\n").unwrap();
    use untorn::txn::journal::{Dir, Entry, Journal, Name};
    let (dev, ino) = id(&out);
    let (tdev, tino) = id(&out.join(".victim.json.untorn-0000abcd.tmp"));
    let j = Journal {
        id: [7; 16],
        dirs: vec![Dir {
            dev,
            ino,
            path: out.clone(),
        }],
        entries: vec![Entry::Put {
            dir: 0,
            temp: ".victim.json.untorn-0000abcd.tmp".into(),
            target: "victim.json".into(),
            dev: tdev,
            ino: tino,
            size: 9,
            crc: crc32(b"{\"v\": 2}\n"),
        }],
        locks: vec![Name {
            dir: 0,
            name: "victim.json.lock".into(),
        }],
    };
    fs::write(out.join(".untorn-txn-0003.journal"), j.encode()).unwrap();
    fs::set_permissions(
        out.join(".untorn-txn-0003.journal"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let before = s.outside_state();
    s.attacker(&format!(
        "ln {} .untorn-txn-0003.journal",
        out.join(".untorn-txn-0003.journal").display()
    ));
    let o = s.untorn(&["recover", "."]);
    assert_eq!(s.outside_state(), before, "{o:?}");
    assert!(
        stdout(&o).contains("belongs to other directories"),
        "{}",
        stdout(&o)
    );
}

/// Class 2: a flag planted beside root's file (a lock file of NUL bytes, and a journal) does
/// not make a plain `untorn write` run that journal. The attacker could never have replaced
/// root's file in a sticky directory, so the flag means nothing: the write goes on at once.
/// Where the attacker owns the file, the write is refused, naming the owner and the way out.
#[test]
fn a_planted_flag_never_runs_a_journal_from_a_write() {
    if !can_run("a_planted_flag_never_runs_a_journal_from_a_write") {
        return;
    }
    let s = Scene::new();
    let sh = s.shared().to_path_buf();
    fs::write(sh.join("v.json"), "{\"v\": 1}\n").unwrap(); // root's
    s.attacker("echo '{\"evil\": true}' > evil.json && echo '{}' > theirs.json");
    let out = s.outside().to_path_buf();
    let legacy = legacy_journal(
        &[(
            1,
            id(&out.join("secret")),
            &out.join("secret"),
            &out.join("x"),
        )],
        &[&sh.join("v.json.lock"), &out.join("created-by-root.lock")],
    );
    let c = s.hand_over("current", &hostile_journal(&s, "v.json.lock"));
    let l = s.hand_over("legacy", &legacy);
    // Tag 1 for root's file (format 2 journal), tag 2 for the attacker's own (format 3).
    s.attacker(&format!(
        "head -c 1 /dev/zero > v.json.lock && cp {} .untorn-txn-0001.journal && \
         head -c 2 /dev/zero > theirs.json.lock && cp {} .untorn-txn-0002.journal",
        l.display(),
        c.display()
    ));
    let before = s.outside_state();
    let o = s.untorn(&["write", "v.json", "{\"v\": 2}\n"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fs::read_to_string(sh.join("v.json")).unwrap(),
        "{\"v\": 2}\n"
    );
    assert_eq!(s.outside_state(), before);
    assert!(
        stderr(&o).contains("ignoring the transaction flag"),
        "{}",
        stderr(&o)
    );
    // The attacker's own file: their transaction could be real; root is told, nothing runs.
    let o = s.untorn(&["write", "theirs.json", "{\"root\": 1}\n"]);
    assert_eq!(o.status.code(), Some(14), "{}", stderr(&o));
    assert!(stderr(&o).contains("nobody"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--trust-user"), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(sh.join("theirs.json")).unwrap(), "{}\n");
    assert_eq!(s.outside_state(), before);
}

/// Class 3: a crashed transaction of root's whose path went through a symlink the attacker
/// owns; the attacker swaps the link between recovery's checks and its renames (here: all the
/// time, while recovery runs). Recovery acts through the directories it identified, never the
/// path again: the transaction completes where it was, and nothing outside changes.
#[test]
fn swapping_a_symlinked_directory_during_recovery_changes_nothing_elsewhere() {
    if !can_run("swapping_a_symlinked_directory_during_recovery_changes_nothing_elsewhere") {
        return;
    }
    let s = Scene::new();
    let sh = s.shared().to_path_buf();
    let d2 = sh.join("d2");
    fs::create_dir(&d2).unwrap(); // root's, 0755
    fs::write(d2.join("config.json"), "{\"v\": 1}\n").unwrap();
    fs::write(sh.join("a.json"), "{\"a\": 1}\n").unwrap();
    s.attacker(&format!("ln -s {} link", d2.display()));
    let before = s.outside_state();
    for round in 0..5 {
        // Root's transaction through the link, crashed just after its commit point: staged by
        // a real `untorn txn`, then the renames undone by hand is not possible; instead, make
        // the crash state as the protocol leaves it.
        let v = round + 2;
        crash_state(
            &[
                (sh.clone(), "a.json", format!("{{\"a\": {v}}}\n")),
                (d2.clone(), "config.json", format!("{{\"v\": {v}}}\n")),
            ],
            0x100 + round as u16,
        );
        // The attacker flips the link between the two directories as fast as it can.
        let mut flipper = s
            .attacker_cmd(&format!(
                "while :; do ln -sfn {} link.new && mv -T link.new link; \
                 ln -sfn {} link.new && mv -T link.new link; done",
                s.outside().display(),
                d2.display()
            ))
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let o = s.untorn(&["recover", "."]);
        flipper.kill().unwrap();
        flipper.wait().unwrap();
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        assert_eq!(s.outside_state(), before, "round {round}: {o:?}");
        assert_eq!(
            fs::read_to_string(d2.join("config.json")).unwrap(),
            format!("{{\"v\": {v}}}\n"),
            "round {round}: rolled forward in its own directory"
        );
        assert_eq!(
            fs::read_to_string(sh.join("a.json")).unwrap(),
            format!("{{\"a\": {v}}}\n")
        );
    }
}

/// The state a crash just after the commit point leaves for `files` (directory, name, new
/// content), built as the protocol does: temps, flags of `tag`, and one journal linked into
/// every directory. The directories' recorded paths are their real ones (symlinks resolved),
/// as `untorn txn` records them.
fn crash_state(files: &[(PathBuf, &str, String)], tag: u16) {
    use untorn::txn::journal::{Dir, Entry, Journal, Name};
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut j = Journal {
        id: [tag as u8; 16],
        ..Journal::default()
    };
    for (d, name, content) in files {
        let canon = d.canonicalize().unwrap();
        let k = match dirs.iter().position(|x| *x == canon) {
            Some(k) => k,
            None => {
                dirs.push(canon.clone());
                let (dev, ino) = id(&canon);
                j.dirs.push(Dir {
                    dev,
                    ino,
                    path: canon.clone(),
                });
                dirs.len() - 1
            }
        } as u32;
        let temp = format!(".{name}.untorn-{tag:08x}.tmp");
        fs::write(d.join(&temp), content).unwrap();
        let (dev, ino) = id(&d.join(&temp));
        j.entries.push(Entry::Put {
            dir: k,
            temp: temp.into(),
            target: (*name).into(),
            dev,
            ino,
            size: content.len() as u64,
            crc: crc32(content.as_bytes()),
        });
        let lock = format!("{name}.lock");
        fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(d.join(&lock))
            .unwrap()
            .set_len(u64::from(tag))
            .unwrap();
        j.locks.push(Name {
            dir: k,
            name: lock.into(),
        });
    }
    let name = format!(".untorn-txn-{tag:04x}.journal");
    fs::write(dirs[0].join(&name), j.encode()).unwrap();
    fs::set_permissions(dirs[0].join(&name), fs::Permissions::from_mode(0o600)).unwrap();
    for d in &dirs[1..] {
        fs::hard_link(dirs[0].join(&name), d.join(&name)).unwrap();
    }
}

/// Class 4: `recover --restore-invalid` never writes through a symlink: a planted link to a
/// root file elsewhere (that fails validation) and a planted "backup" of it that is valid.
#[test]
fn restore_invalid_never_writes_through_a_planted_symlink() {
    if !can_run("restore_invalid_never_writes_through_a_planted_symlink") {
        return;
    }
    let s = Scene::new();
    let out = s.outside().to_path_buf();
    s.attacker(&format!(
        "ln -s {} conf.json && echo '{{\"owned\": \"by nobody\"}}' > \
         conf.json.20261206T000000.000000000Z.bak",
        out.join("victim.json").display()
    ));
    let before = s.outside_state();
    let o = s.untorn(&["recover", ".", "--restore-invalid", "--format", "json"]);
    assert_eq!(s.outside_state(), before, "{o:?}");
    assert!(stdout(&o).contains("symbolic link"), "{}", stdout(&o));
    // And through `restore` of the named link itself: the planted backup is not trusted.
    let o = s.untorn(&["restore", "conf.json"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert_eq!(s.outside_state(), before, "{o:?}");
}

/// Class 5: denial of service. A lock file the attacker owns, flagged and held with `flock`:
/// root's `untorn write` (which takes no lock) does not wait for it. And where the flag is
/// root's own (a real crashed transaction) but the attacker holds the lock file (anyone who
/// can read it can flock it), the write and `recover` wait a bounded time, then say why.
#[test]
fn a_held_lock_file_never_makes_root_wait_without_a_bound() {
    if !can_run("a_held_lock_file_never_makes_root_wait_without_a_bound") {
        return;
    }
    let s = Scene::new();
    let sh = s.shared().to_path_buf();
    fs::write(sh.join("v.json"), "{\"v\": 1}\n").unwrap();
    let c = s.hand_over("current", &hostile_journal_for(&s, "v.json.lock"));
    s.attacker(&format!(
        "head -c 1 /dev/zero > v.json.lock && cp {} .untorn-txn-0001.journal",
        c.display()
    ));
    let mut holder = s
        .attacker_cmd("exec flock -o v.json.lock sleep 60")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let o = s.untorn(&["write", "v.json", "{\"v\": 2}\n"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        t.elapsed()
    );
    holder.kill().unwrap();
    holder.wait().unwrap();

    // Root's own crashed transaction; the attacker holds its lock file (read-only open).
    crash_state(&[(sh.clone(), "w.json", "{\"w\": 2}\n".into())], 0x200);
    fs::set_permissions(sh.join("w.json.lock"), fs::Permissions::from_mode(0o644)).unwrap();
    let mut holder = s
        .attacker_cmd("exec flock -o -s w.json.lock sleep 60")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let o = s.untorn(&["write", "--timeout", "1s", "w.json", "{\"w\": 3}\n"]);
    assert_eq!(o.status.code(), Some(11), "{}", stderr(&o));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        t.elapsed()
    );
    assert!(stderr(&o).contains("w.json.lock"), "{}", stderr(&o));
    let t = Instant::now();
    let o = s.untorn(&["recover", ".", "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(11), "{}{}", stdout(&o), stderr(&o));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        t.elapsed()
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    // Once free, it recovers.
    let o = s.untorn(&["recover", "."]);
    assert_eq!(
        fs::read_to_string(sh.join("w.json")).unwrap(),
        "{\"w\": 2}\n",
        "{o:?}"
    );
}

/// [`hostile_journal`] whose shared-directory lock is `lock`, bound to the shared directory.
fn hostile_journal_for(s: &Scene, lock: &str) -> Vec<u8> {
    fs::write(s.shared().join("evil.json"), "{}").unwrap();
    hostile_journal(s, lock)
}

/// Class 6: backups another user planted (dated far in the future, so that they look newest)
/// are not root's: a write with `--backup=3` does not prune root's real backups in their
/// favour, `restore` does not write their content into root's file, `backups` does not list
/// them. A backup of root's own dated in the future (a clock that once ran ahead) counts as the
/// oldest: it is pruned first and never restored as "the newest".
#[test]
fn planted_future_backups_are_neither_trusted_nor_pruned_for() {
    if !can_run("planted_future_backups_are_neither_trusted_nor_pruned_for") {
        return;
    }
    let s = Scene::new();
    let sh = s.shared().to_path_buf();
    fs::write(sh.join("v.json"), "{\"v\": 0}\n").unwrap();
    s.attacker(
        "for i in 1 2 3; do echo '{\"planted\": '$i'}' > v.json.2099010${i}T000000.000000000Z.bak; done",
    );
    for v in 1..=4 {
        let o = s.untorn(&[
            "write",
            "--backup=3",
            "v.json",
            &format!("{{\"v\": {v}}}\n"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let names: Vec<String> = fs::read_dir(&sh)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bak"))
        .collect();
    let real = names.iter().filter(|n| !n.contains(".2099")).count();
    assert_eq!(real, 3, "root's own backups kept: {names:?}");
    assert_eq!(
        names.len(),
        6,
        "the planted ones are not root's to remove: {names:?}"
    );
    let listed = stdout(&s.untorn(&["backups", "v.json"]));
    assert!(!listed.contains("2099"), "{listed}");
    let o = s.untorn(&["restore", "v.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fs::read_to_string(sh.join("v.json")).unwrap(),
        "{\"v\": 3}\n"
    );
    // Root's own backup from a clock that ran ahead: pruned first, never "the newest".
    fs::write(sh.join("r.json"), "{\"r\": 0}\n").unwrap();
    fs::write(
        sh.join("r.json.20990101T000000.000000000Z.bak"),
        "{\"r\": -1}\n",
    )
    .unwrap();
    for v in 1..=2 {
        s.untorn(&[
            "write",
            "--backup=2",
            "r.json",
            &format!("{{\"r\": {v}}}\n"),
        ]);
    }
    assert!(!sh.join("r.json.20990101T000000.000000000Z.bak").exists());
    s.untorn(&["restore", "r.json"]);
    assert_eq!(
        fs::read_to_string(sh.join("r.json")).unwrap(),
        "{\"r\": 1}\n"
    );
}

/// Class 7: a temp-like name another user owns is not root's to remove: `clean` and `recover`
/// leave it, and say whose it is.
#[test]
fn another_users_temp_is_never_removed() {
    if !can_run("another_users_temp_is_never_removed") {
        return;
    }
    let s = Scene::new();
    let sh = s.shared().to_path_buf();
    s.attacker(
        "echo 'their notes' > .notes.untorn-deadbeef.tmp && touch -d '2 days ago' \
         .notes.untorn-deadbeef.tmp",
    );
    // Root's own orphan beside it goes.
    fs::write(sh.join(".mine.untorn-0badf00d.tmp"), "x").unwrap();
    let o = s.untorn(&["clean", ".", "--older-than", "0s"]);
    assert_eq!(o.status.code(), Some(14), "{}", stdout(&o));
    assert!(stdout(&o).contains("nobody"), "{}", stdout(&o));
    assert!(sh.join(".notes.untorn-deadbeef.tmp").exists());
    assert!(!sh.join(".mine.untorn-0badf00d.tmp").exists());
    let o = s.untorn(&["recover", "."]);
    assert_eq!(o.status.code(), Some(14), "{}", stdout(&o));
    assert!(sh.join(".notes.untorn-deadbeef.tmp").exists());
    assert_eq!(
        fs::read_to_string(sh.join(".notes.untorn-deadbeef.tmp")).unwrap(),
        "their notes\n"
    );
}

/// A symlink the attacker planted in the sticky directory under the name root writes is not
/// followed (the rule of `fs.protected_symlinks`, kept with it off): root's write cannot be
/// steered to a file elsewhere.
#[test]
fn a_write_does_not_follow_another_users_symlink_in_a_sticky_directory() {
    if !can_run("a_write_does_not_follow_another_users_symlink_in_a_sticky_directory") {
        return;
    }
    let s = Scene::new();
    let before = s.outside_state();
    s.attacker(&format!(
        "ln -s {} report.json",
        s.outside().join("config.json").display()
    ));
    let o = s.untorn(&["write", "report.json", "{\"root\": \"report\"}\n"]);
    assert_eq!(o.status.code(), Some(14), "{}", stderr(&o));
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert_eq!(s.outside_state(), before);
    let o = s.untorn(&["edit", "report.json", "--", "cat"]);
    assert!(!o.status.success());
    assert_eq!(s.outside_state(), before);
}
