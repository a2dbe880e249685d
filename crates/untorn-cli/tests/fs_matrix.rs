//! The file-system matrix (issue 19): every file system users keep their files on, mounted
//! once each, and the operations run on it through the binary, each outcome checked against
//! the README's table ("File systems: what untorn gives where"), which this test parses.
//!
//! Rows: ext4, xfs, btrfs, overlayfs over a lower-layer file (copy-up), overlayfs `volatile`,
//! tmpfs, bindfs (a FUSE daemon that drops directory fsyncs), fuse-overlayfs, exFAT through
//! exfat-fuse, a read-only bind mount, and ext4 with `chattr +i` files and a `chattr +a`
//! directory. Columns: write (new, replace), write --backup, edit, append, tail, txn, clean,
//! recover --dry-run, recover. Each row runs every operation twice, in two prepared
//! directories: as is, and allowed to use file systems untorn cannot vouch for
//! (`--allow-shared-fs`, or `UNTORN_ALLOW_SHARED_FS=1` for every other operation).
//!
//! Checked for each: the exit code; the warning that a change will not survive a power cut
//! exactly where the table says so; what a success leaves (the content, the backup, the
//! restored file); that a refusal changes nothing in the directory (no temp, no backup, no
//! lock file); that a dry run changes nothing at all. A second test cuts the power of the
//! backing ext4 under overlayfs, bindfs and fuse-overlayfs.
//!
//! Needs root, loop devices, and the tools `scripts/test` installs (e2fsprogs, xfsprogs,
//! btrfs-progs, bindfs, fuse-overlayfs, exfat-fuse, exfatprogs). A row whose file system
//! cannot be had here is reported as `SKIPPED` (a failure under `UNTORN_REQUIRE_ALL=1`).
//! `UNTORN_FSMATRIX_CYCLES` sets the power cuts per file system (default 6);
//! `UNTORN_FSMATRIX_BIN` another `untorn` binary to judge.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};
use untorn_testbed::{say, unavailable, Bed, FsConfig};

/// The binary under test; `UNTORN_FSMATRIX_BIN` runs the matrix against another build (to see
/// that it catches one without the checks of issue 19).
fn untorn() -> PathBuf {
    std::env::var_os("UNTORN_FSMATRIX_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_untorn")))
}

fn require_all() -> bool {
    std::env::var("UNTORN_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Says why a part cannot run; under `UNTORN_REQUIRE_ALL=1`, fails instead.
fn skip(what: &str, why: &str) {
    let msg = format!("SKIPPED: fs_matrix {what}: {why}");
    assert!(
        !require_all(),
        "{msg} (UNTORN_REQUIRE_ALL=1 forbids skipping)"
    );
    say(&msg);
}

/// `$PATH` with the sbin directories, where mount helpers live.
fn path_env() -> OsString {
    let mut p = std::env::var_os("PATH").unwrap_or_default();
    p.push(":/usr/sbin:/sbin:/usr/bin:/bin");
    p
}

fn have(tool: &str) -> bool {
    std::env::split_paths(&path_env()).any(|d| d.join(tool).is_file())
}

/// Runs a system tool; its stdout, or an error with its stderr.
fn sh(prog: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(prog)
        .args(args)
        .env("PATH", path_env())
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`{prog} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Mounts and loop devices made by the test, undone in reverse order on drop (also when a test
/// fails).
#[derive(Default)]
struct Mounts(Vec<Undo>);

enum Undo {
    Umount(PathBuf),
    Detach(String),
}

impl Mounts {
    fn mount(&mut self, prog: &str, args: &[&str], at: &Path) -> Result<(), String> {
        fs::create_dir_all(at).map_err(|e| e.to_string())?;
        sh(prog, args)?;
        self.0.push(Undo::Umount(at.to_path_buf()));
        Ok(())
    }

    fn umount_top(&mut self) {
        if let Some(u) = self.0.pop() {
            undo(u);
        }
    }
}

fn undo(u: Undo) {
    match u {
        Undo::Umount(p) => {
            for _ in 0..50 {
                if sh("umount", &[s(&p)]).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = sh("umount", &["-l", s(&p)]);
        }
        Undo::Detach(dev) => {
            let _ = sh("losetup", &["-d", &dev]);
        }
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        while let Some(u) = self.0.pop() {
            undo(u);
        }
    }
}

/// What each prepared directory holds before the operations.
const OLD: &str = "{\"v\": 0}\n";
const BAD: &str = "{\"v\": ";
const BACKUP: &str = "bad.json.20260101T000000.000000000Z.bak";
const BACKUP_OF_BAD: &str = "{\"v\": -1}\n";
const STALE: &str = ".stale.json.untorn-0123abcd.tmp";
const LOG: &str = "start\n";

/// Two directories, `plain` and `allowed`, each with a file to replace, an invalid file with a
/// valid backup, a log and a temp two hours old.
fn prepare(dir: &Path) -> Result<(), String> {
    for sub in ["plain", "allowed"] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let w = |name: &str, text: &str| fs::write(d.join(name), text).map_err(|e| e.to_string());
        w("old.json", OLD)?;
        w("bad.json", BAD)?;
        w(BACKUP, BACKUP_OF_BAD)?;
        w("events.log", LOG)?;
        w(STALE, "{}")?;
        // Both times: exfat-fuse ignores a change of the modification time alone.
        let old = SystemTime::now() - Duration::from_secs(7200);
        let times = fs::FileTimes::new().set_accessed(old).set_modified(old);
        fs::File::options()
            .write(true)
            .open(d.join(STALE))
            .and_then(|f| f.set_times(times))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One file system of the matrix: its README row, and the directory the operations run in.
struct Row {
    name: &'static str,
    dir: PathBuf,
}

/// The file systems, mounted. Built in order; a row that cannot be had is skipped, saying why.
struct Matrix {
    rows: Vec<Row>,
    /// Kept for their `Drop`: images, loop devices, mounts.
    _beds: Vec<Bed>,
    mounts: Mounts,
    _tmp: tempfile::TempDir,
}

fn btrfs() -> FsConfig {
    FsConfig {
        name: "btrfs",
        fstype: "btrfs",
        mkfs_args: &["-q", "-f"],
        mount_options: "",
        image_mib: 256,
    }
}

impl Matrix {
    fn build() -> Option<Matrix> {
        let ext4 = FsConfig::ext4_noauto_da_alloc();
        if let Some(why) = unavailable(&ext4) {
            skip("(every file system)", &why);
            return None;
        }
        let mut m = Matrix {
            rows: Vec::new(),
            _beds: Vec::new(),
            mounts: Mounts::default(),
            _tmp: tempfile::tempdir().expect("temp dir"),
        };
        let t = m._tmp.path().to_path_buf();
        // What this kernel cannot mount at all is said, not failed: no tool installs it.
        let kernel = fs::read_to_string("/proc/filesystems").unwrap_or_default();
        for (fs, what) in [
            ("vfat", "FAT (USB sticks, SD cards)"),
            (
                "exfat",
                "the kernel's exFAT (exFAT runs here through exfat-fuse)",
            ),
            ("f2fs", "F2FS"),
        ] {
            if !kernel.split_whitespace().any(|k| k == fs) {
                say(&format!(
                    "fs_matrix: {fs}: {what} cannot be had here (not in /proc/filesystems): not run"
                ));
            }
        }
        let backing = Bed::new(&ext4).expect("the backing ext4");
        let b = backing.path().to_path_buf();
        m._beds.push(backing);
        let add = |m: &mut Matrix, name: &'static str, r: Result<PathBuf, String>| match r {
            Ok(dir) => m.rows.push(Row { name, dir }),
            Err(why) => skip(name, &why),
        };
        let r = m.plain(&b.join("ext4"));
        add(&mut m, "ext4", r);
        for cfg in [FsConfig::xfs(), btrfs()] {
            let name = if cfg.fstype == "xfs" { "xfs" } else { "btrfs" };
            let r = match unavailable(&cfg) {
                Some(why) => Err(why),
                None => Bed::new(&cfg).map_err(|e| e.to_string()).and_then(|bed| {
                    let d = bed.path().join("d");
                    m._beds.push(bed);
                    prepare(&d).map(|()| d)
                }),
            };
            add(&mut m, name, r);
        }
        let r = m.overlay(&b.join("ov"), &t.join("ov"), false);
        add(&mut m, "overlayfs (a lower-layer file: copy-up)", r);
        let r = m.overlay(&b.join("vov"), &t.join("vov"), true);
        add(&mut m, "overlayfs `volatile`", r);
        let r = m.tmpfs(&t.join("tmpfs"));
        add(&mut m, "tmpfs", r);
        let r = m.bindfs(&b.join("bsrc"), &t.join("bindfs"));
        add(&mut m, "bindfs (FUSE)", r);
        let r = m.fuse_overlayfs(&b.join("fov"), &t.join("fov"));
        add(&mut m, "fuse-overlayfs (FUSE)", r);
        let r = m.exfat(&t.join("exfat.img"), &t.join("exfat"));
        add(&mut m, "exFAT (exfat-fuse)", r);
        let r = m.read_only(&b.join("ro"), &t.join("ro"));
        add(&mut m, "read-only bind mount", r);
        let r = m.chattr(&b.join("immutable"), "+i", false);
        add(&mut m, "ext4, files `chattr +i`", r);
        let r = m.chattr(&b.join("append-only"), "+a", true);
        add(&mut m, "ext4, directory `chattr +a`", r);
        Some(m)
    }

    fn plain(&mut self, d: &Path) -> Result<PathBuf, String> {
        prepare(d)?;
        Ok(d.to_path_buf())
    }

    fn overlay(&mut self, base: &Path, at: &Path, volatile: bool) -> Result<PathBuf, String> {
        let (lower, upper, work) = (base.join("lower"), base.join("upper"), base.join("work"));
        for d in [&lower, &upper, &work] {
            fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        // The files are in the lower layer: a replace copies the directory and file up.
        prepare(&lower)?;
        let mut o = format!(
            "lowerdir={},upperdir={},workdir={}",
            s(&lower),
            s(&upper),
            s(&work)
        );
        if volatile {
            o.push_str(",volatile");
        }
        self.mounts
            .mount("mount", &["-t", "overlay", "overlay", "-o", &o, s(at)], at)?;
        Ok(at.to_path_buf())
    }

    fn tmpfs(&mut self, at: &Path) -> Result<PathBuf, String> {
        self.mounts
            .mount("mount", &["-t", "tmpfs", "tmpfs", s(at)], at)?;
        prepare(at)?;
        Ok(at.to_path_buf())
    }

    fn bindfs(&mut self, src: &Path, at: &Path) -> Result<PathBuf, String> {
        if !have("bindfs") {
            return Err("`bindfs` is not installed (apt-get install -y bindfs)".into());
        }
        prepare(src)?;
        self.mounts.mount("bindfs", &[s(src), s(at)], at)?;
        Ok(at.to_path_buf())
    }

    fn fuse_overlayfs(&mut self, base: &Path, at: &Path) -> Result<PathBuf, String> {
        if !have("fuse-overlayfs") {
            return Err(
                "`fuse-overlayfs` is not installed (apt-get install -y fuse-overlayfs)".into(),
            );
        }
        let (lower, upper, work) = (base.join("lower"), base.join("upper"), base.join("work"));
        for d in [&lower, &upper, &work] {
            fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        prepare(&lower)?;
        let o = format!(
            "lowerdir={},upperdir={},workdir={}",
            s(&lower),
            s(&upper),
            s(&work)
        );
        self.mounts
            .mount("fuse-overlayfs", &["-o", &o, s(at)], at)?;
        Ok(at.to_path_buf())
    }

    fn exfat(&mut self, image: &Path, at: &Path) -> Result<PathBuf, String> {
        for (tool, pkg) in [
            ("mkfs.exfat", "exfatprogs"),
            ("mount.exfat-fuse", "exfat-fuse"),
        ] {
            if !have(tool) {
                return Err(format!(
                    "`{tool}` is not installed (apt-get install -y {pkg}); the kernel here has \
                     no exfat of its own"
                ));
            }
        }
        fs::File::create(image)
            .and_then(|f| f.set_len(64 << 20))
            .map_err(|e| e.to_string())?;
        let dev = sh("losetup", &["--find", "--show", s(image)])?;
        self.mounts.0.push(Undo::Detach(dev.clone()));
        sh("mkfs.exfat", &[&dev])?;
        self.mounts.mount("mount.exfat-fuse", &[&dev, s(at)], at)?;
        prepare(at)?;
        Ok(at.to_path_buf())
    }

    fn read_only(&mut self, src: &Path, at: &Path) -> Result<PathBuf, String> {
        prepare(src)?;
        self.mounts.mount("mount", &["--bind", s(src), s(at)], at)?;
        sh("mount", &["-o", "remount,bind,ro", s(at)])?;
        Ok(at.to_path_buf())
    }

    /// `chattr FLAG` on the prepared files (or, with `dir`, on the two directories).
    fn chattr(&mut self, d: &Path, flag: &str, dir: bool) -> Result<PathBuf, String> {
        prepare(d)?;
        for sub in ["plain", "allowed"] {
            let sd = d.join(sub);
            if dir {
                sh("chattr", &[flag, s(&sd)])?;
            } else {
                for f in ["old.json", "bad.json", "events.log"] {
                    sh("chattr", &[flag, s(&sd.join(f))])?;
                }
            }
        }
        Ok(d.to_path_buf())
    }
}

impl Drop for Matrix {
    fn drop(&mut self) {
        // Attributes off, so that the images can go; mounts before the beds below them.
        for r in &self.rows {
            for sub in ["plain", "allowed"] {
                let d = r.dir.join(sub);
                let _ = sh("chattr", &["-a", s(&d)]);
                for f in ["old.json", "bad.json", "events.log"] {
                    let _ = sh("chattr", &["-i", s(&d.join(f))]);
                }
            }
        }
        while !self.mounts.0.is_empty() {
            self.mounts.umount_top();
        }
    }
}

/// The columns, in the README's order.
const OPS: &[&str] = &[
    "write (new)",
    "write (replace)",
    "write --mode 600",
    "write --no-clobber",
    "write --backup",
    "backup",
    "edit",
    "append",
    "tail",
    "txn",
    "clean",
    "recover --dry-run",
    "recover",
];

/// What an operation gave: its exit code, and whether it warned that the change will not
/// survive a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outcome {
    code: i32,
    warned: bool,
}

impl Outcome {
    fn show(self) -> String {
        format!("{}{}", self.code, if self.warned { " warns" } else { "" })
    }
}

/// A cell of the README's table: `0`, `0 warns`, `9`, `9 (0 allowed)`, ...: the outcome as is,
/// and with the opt-in (the same if not given).
fn parse_cell(cell: &str) -> Option<(Outcome, Outcome)> {
    let one = |t: &str| -> Option<Outcome> {
        let t = t.trim();
        let (code, warned) = match t.strip_suffix(" warns") {
            Some(c) => (c, true),
            None => (t, false),
        };
        Some(Outcome {
            code: code.trim().parse().ok()?,
            warned,
        })
    };
    match cell.split_once(" (") {
        Some((plain, rest)) => Some((one(plain)?, one(rest.strip_suffix(" allowed)")?)?)),
        None => {
            let o = one(cell)?;
            Some((o, o))
        }
    }
}

fn show_cell(plain: Outcome, allowed: Outcome) -> String {
    if plain == allowed {
        plain.show()
    } else {
        format!("{} ({} allowed)", plain.show(), allowed.show())
    }
}

/// The README's table: row name -> the expected (as is, allowed) outcome of each operation.
fn expected() -> BTreeMap<String, Vec<(Outcome, Outcome)>> {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
        .expect("README.md");
    let start = readme
        .find("| file system | keeps across a power cut |")
        .expect("the README has the file-system table");
    let mut lines = readme[start..].lines();
    let header: Vec<&str> = cells(lines.next().unwrap());
    let first_op = header
        .iter()
        .position(|h| *h == OPS[0])
        .expect("an operation column");
    assert_eq!(&header[first_op..], OPS, "the README's columns");
    let mut out = BTreeMap::new();
    for line in lines.skip(1) {
        if !line.starts_with('|') {
            break;
        }
        let c = cells(line);
        let row: Vec<_> = c[first_op..]
            .iter()
            .map(|cell| parse_cell(cell).unwrap_or_else(|| panic!("README cell {cell:?}")))
            .collect();
        out.insert(c[0].to_string(), row);
    }
    out
}

fn cells(line: &str) -> Vec<&str> {
    let t = line.trim().trim_start_matches('|').trim_end_matches('|');
    t.split('|').map(str::trim).collect()
}

/// Every name in `dir`, with the content of the regular files.
fn snapshot(dir: &Path) -> BTreeMap<OsString, Option<Vec<u8>>> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let p = e.path();
                    let c = fs::symlink_metadata(&p)
                        .ok()
                        .filter(|m| m.is_file())
                        .and_then(|_| fs::read(&p).ok());
                    (e.file_name(), c)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

/// Runs the operations in `d`, allowed or not; checks what each success leaves and that each
/// refusal changes nothing. Returns the outcomes, and the problems found.
fn run_ops(d: &Path, allowed: bool, src: &Path) -> (Vec<Outcome>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let ds = s(d);
    let f = |n: &str| d.join(n);
    for (i, op) in OPS.iter().enumerate() {
        let (new, old, log) = (f("new.json"), f("old.json"), f("events.log"));
        let (secret, once) = (f("secret"), f("once"));
        let src_arg = format!("{}={}", s(&old), s(src));
        let t_arg = format!("{}={}", s(&f("t.json")), s(src));
        let args: Vec<&str> = match *op {
            "write (new)" => vec!["write", s(&new), "{\"n\": 1}"],
            "write (replace)" => vec!["write", s(&old), "{\"v\": 1}"],
            "write --mode 600" => vec!["write", "--mode", "600", s(&secret), "s"],
            "write --no-clobber" => vec!["write", "--no-clobber", s(&once), "1"],
            "write --backup" => vec!["write", "--backup=2", s(&old), "{\"v\": 2}"],
            "backup" => vec!["backup", s(&old)],
            "edit" => vec!["edit", s(&old), "--", "sed", "s/}/ }/"],
            "append" => vec!["append", s(&log), "line"],
            "tail" => vec!["tail", s(&log)],
            "txn" => vec!["txn", "put", &src_arg, "put", &t_arg],
            "clean" => vec!["clean", ds, "--older-than", "1h"],
            "recover --dry-run" => vec![
                "recover",
                ds,
                "--dry-run",
                "--restore-invalid",
                "--format",
                "json",
            ],
            "recover" => vec!["recover", ds, "--restore-invalid", "--format", "json"],
            _ => unreachable!(),
        };
        let before = snapshot(d);
        let mut cmd = Command::new(untorn());
        cmd.env_remove("UNTORN_ALLOW_SHARED_FS");
        if allowed && i % 2 == 0 {
            cmd.arg("--allow-shared-fs");
        } else if allowed {
            cmd.env("UNTORN_ALLOW_SHARED_FS", "1");
        }
        let o: Output = cmd.args(&args).output().expect("untorn runs");
        let stderr = String::from_utf8_lossy(&o.stderr);
        let stdout = String::from_utf8_lossy(&o.stdout);
        let outcome = Outcome {
            code: o.status.code().unwrap_or(-1),
            warned: stderr.contains("will not survive a power cut"),
        };
        out.push(outcome);
        let after = snapshot(d);
        let mut problem = |what: String| {
            bad.push(format!(
                "{op} in {}: {what}\n  stdout: {stdout}\n  stderr: {stderr}",
                d.display()
            ))
        };
        let changed = before != after;
        if outcome.code != 0 && changed && !op.starts_with("recover") {
            problem("refused, but the directory changed".into());
        }
        if *op == "recover --dry-run" && changed {
            problem("a dry run changed the directory".into());
        }
        if outcome.code == 0 {
            let ok = match *op {
                "write (new)" => read(&new) == "{\"n\": 1}",
                "write (replace)" => read(&old) == "{\"v\": 1}",
                "write --mode 600" => {
                    use std::os::unix::fs::PermissionsExt;
                    read(&secret) == "s"
                        && fs::metadata(&secret)
                            .is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o600)
                }
                "write --no-clobber" => read(&once) == "1",
                "backup" => {
                    let n = |m: &BTreeMap<OsString, Option<Vec<u8>>>| {
                        m.keys()
                            .filter(|k| k.to_string_lossy().starts_with("old.json."))
                            .count()
                    };
                    n(&after) == n(&before) + 1
                }
                "write --backup" => {
                    read(&old) == "{\"v\": 2}"
                        && after.iter().any(|(n, c)| {
                            n.to_string_lossy().starts_with("old.json.")
                                && c.as_deref() == Some(&b"{\"v\": 1}"[..])
                        })
                }
                "edit" => read(&old).ends_with(" }"),
                "append" => read(&log).ends_with("line\n"),
                "tail" => stdout.contains("start"),
                "txn" => read(&old) == "{\"t\": 1}" && read(&f("t.json")) == "{\"t\": 1}",
                "clean" => !f(STALE).exists(),
                "recover --dry-run" => stdout.contains("would restore"),
                "recover" => read(&f("bad.json")) == BACKUP_OF_BAD,
                _ => true,
            };
            if !ok {
                problem("succeeded without doing what it says".into());
            }
        }
    }
    // Whatever failed: never a temp of untorn's left behind (but the one prepared).
    for (n, _) in snapshot(d) {
        if untorn::temp_file_target(&n).is_some() && n != STALE {
            bad.push(format!("{}: a temp is left: {n:?}", d.display()));
        }
    }
    (out, bad)
}

#[test]
fn each_file_system_gives_what_the_readme_says() {
    let expected = expected();
    let Some(m) = Matrix::build() else {
        return;
    };
    let src = m._tmp.path().join("src.json");
    fs::write(&src, "{\"t\": 1}").unwrap();
    let mut problems = Vec::new();
    let mut observed = Vec::new();
    for row in &m.rows {
        let started = Instant::now();
        let (plain, mut bad) = run_ops(&row.dir.join("plain"), false, &src);
        let (allowed, bad2) = run_ops(&row.dir.join("allowed"), true, &src);
        bad.extend(bad2);
        let cells: Vec<String> = plain
            .iter()
            .zip(&allowed)
            .map(|(p, a)| show_cell(*p, *a))
            .collect();
        say(&format!(
            "fs_matrix: {} | {} | ({} ms)",
            row.name,
            cells.join(" | "),
            started.elapsed().as_millis()
        ));
        match expected.get(row.name) {
            None => problems.push(format!("the README has no row {:?}", row.name)),
            Some(want) => {
                for (k, op) in OPS.iter().enumerate() {
                    if want[k] != (plain[k], allowed[k]) {
                        problems.push(format!(
                            "{} / {op}: the README says {}, untorn gave {}",
                            row.name,
                            show_cell(want[k].0, want[k].1),
                            cells[k]
                        ));
                    }
                }
            }
        }
        problems.extend(bad.into_iter().map(|b| format!("{}: {b}", row.name)));
        observed.push((row.name, cells));
    }
    for name in expected.keys() {
        if !m.rows.iter().any(|r| r.name == name) {
            say(&format!(
                "fs_matrix: {name}: not run here (see SKIPPED above)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A file system stacked on the backing ext4 whose power is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    Overlay,
    Bindfs,
    FuseOverlayfs,
}

/// What the cycles of one layer found.
#[derive(Debug, Default)]
struct CutReport {
    cycles: usize,
    acked: usize,
    /// Cycles whose file came back older than the last write acknowledged before the cut.
    lost: usize,
    /// Files that came back neither old nor new: empty, torn, or not a version written.
    torn: usize,
    leftover_temps: usize,
}

/// One cycle: a fresh directory on the bed, the layer mounted over it, `untorn write` of 1, 2,
/// 3, ... into `f` until the power of the bed is cut at a random moment; the layer unmounted,
/// the bed remounted (journal recovery), and `f` judged in the directory below the layer.
fn cut_cycle(bed: &mut Bed, tmp: &Path, layer: Layer, c: usize, r: &mut CutReport) {
    let base = bed.path().join(format!("cycle{c}"));
    let (below, mnt) = match layer {
        Layer::Overlay => (base.join("lower"), tmp.join(format!("ov{c}"))),
        Layer::FuseOverlayfs => (base.join("lower"), tmp.join(format!("fov{c}"))),
        Layer::Bindfs => (base.join("src"), tmp.join(format!("bf{c}"))),
    };
    fs::create_dir_all(&below).unwrap();
    // A lower-layer file: the first write copies it up.
    fs::write(below.join("f"), "0").unwrap();
    let mut mounts = Mounts::default();
    // The overlay layers' options: `below` as the lower layer, an upper and a work directory.
    let layers = || {
        let (u, w) = (base.join("upper"), base.join("work"));
        fs::create_dir_all(&u).unwrap();
        fs::create_dir_all(&w).unwrap();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            s(&below),
            s(&u),
            s(&w)
        )
    };
    match layer {
        Layer::Overlay => {
            let o = layers();
            mounts
                .mount(
                    "mount",
                    &["-t", "overlay", "overlay", "-o", &o, s(&mnt)],
                    &mnt,
                )
                .unwrap();
        }
        Layer::FuseOverlayfs => {
            let o = layers();
            mounts
                .mount("fuse-overlayfs", &["-o", &o, s(&mnt)], &mnt)
                .unwrap();
        }
        Layer::Bindfs => mounts.mount("bindfs", &[s(&below), s(&mnt)], &mnt).unwrap(),
    }
    bed.sync().unwrap();
    let f = mnt.join("f");
    if layer == Layer::Bindfs {
        // Without the opt-in, untorn claims nothing it cannot vouch for: refused.
        let o = Command::new(untorn())
            .env_remove("UNTORN_ALLOW_SHARED_FS")
            .args(["write", s(&f), "refused"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(9), "{o:?}");
    }
    let switch = bed.power_switch().unwrap();
    let writer = {
        let f = f.clone();
        std::thread::spawn(move || {
            let mut acks = Vec::new();
            // The opt-in only where untorn refuses without it; a known daemon is durable as is.
            let allow = if layer == Layer::Bindfs {
                "--allow-shared-fs"
            } else {
                "-v"
            };
            for i in 1u32.. {
                let ok = Command::new(untorn())
                    .args(["write", allow, s(&f), &i.to_string()])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !ok {
                    return (i, acks);
                }
                acks.push((i, Instant::now()));
            }
            unreachable!()
        })
    };
    std::thread::sleep(Duration::from_millis(30 + fastrand::u64(..220)));
    let cut_at = Instant::now();
    switch.cut().unwrap();
    let (started, acks) = writer.join().unwrap();
    drop(mounts);
    let mut tries = 0;
    while let Err(e) = bed.remount() {
        tries += 1;
        assert!(tries < 20, "cannot remount the bed: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let acked = acks
        .iter()
        .filter(|(_, t)| *t < cut_at)
        .map(|(i, _)| *i)
        .max()
        .unwrap_or(0);
    r.cycles += 1;
    r.acked += acks.iter().filter(|(_, t)| *t < cut_at).count();
    // Overlayfs: the upper layer's copy if it was copied up, else the lower file.
    let dirs = match layer {
        Layer::Overlay | Layer::FuseOverlayfs => vec![base.join("upper"), below.clone()],
        Layer::Bindfs => vec![below.clone()],
    };
    let found = dirs.iter().map(|d| d.join("f")).find(|p| p.exists());
    let text = found.map(|p| read(&p)).unwrap_or_default();
    match text.parse::<u32>() {
        Ok(n) if n <= started => {
            if n < acked {
                r.lost += 1;
                say(&format!(
                    "fs_matrix power cut under {layer:?}, cycle {c}: f is {n}, but write {acked} had returned"
                ));
            }
        }
        _ => {
            r.torn += 1;
            say(&format!(
                "fs_matrix power cut under {layer:?}, cycle {c}: f is {text:?} (writes up to {started} begun)"
            ));
        }
    }
    for d in &dirs {
        r.leftover_temps += snapshot(d)
            .keys()
            .filter(|n| untorn::temp_file_target(n).is_some())
            .count();
    }
}

#[test]
fn a_power_cut_of_the_backing_ext4_under_overlayfs_bindfs_and_fuse_overlayfs() {
    let cfg = FsConfig::ext4_noauto_da_alloc();
    if let Some(why) = unavailable(&cfg) {
        skip("power cuts", &why);
        return;
    }
    let cycles: usize = std::env::var("UNTORN_FSMATRIX_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let tmp = tempfile::tempdir().unwrap();
    for layer in [Layer::Overlay, Layer::Bindfs, Layer::FuseOverlayfs] {
        let tool = match layer {
            Layer::Overlay => "mount",
            Layer::Bindfs => "bindfs",
            Layer::FuseOverlayfs => "fuse-overlayfs",
        };
        if !have(tool) {
            skip(
                &format!("power cut under {layer:?}"),
                &format!("`{tool}` is not installed"),
            );
            continue;
        }
        let mut bed = Bed::new(&cfg).unwrap();
        let mut r = CutReport::default();
        for c in 0..cycles {
            cut_cycle(&mut bed, tmp.path(), layer, c, &mut r);
        }
        say(&format!(
            "fs_matrix power cut of the backing ext4 under {layer:?}: {r:?}"
        ));
        assert_eq!(r.torn, 0, "a file came back neither old nor new: {r:?}");
        if layer != Layer::Bindfs {
            // Durable: every write that returned before the cut is there.
            assert_eq!(r.lost, 0, "{r:?}");
        }
        // bindfs: untorn reported no durability there (it refuses it without the opt-in), so
        // a lost write breaks no promise; how often it happens is reported above.
    }
}
