//! A process killed at any moment of a replacement leaves the whole old or the whole new
//! content, and at most a recognisable temp file.
//!
//! The test re-executes its own binary (`--exact child_writer`) with `UNTORN_KILL_CHILD` set: the
//! child streams a large replacement through an [`untorn::AtomicFile`], printing markers
//! (`OPEN`, `COMMITTING`, `DONE`) on stdout, and the parent SIGKILLs it at a random moment:
//! blind, during the write, or just after `COMMITTING` (to land in the fsync, link, rename and
//! unlink of the commit).

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use untorn::{Durability, OpenOptions, TempFile};

const CHILD_ENV: &str = "UNTORN_KILL_CHILD";
const MARK: &str = "@@untorn-kill@@ ";

const OLD_SEED: u64 = 0x01d;
const OLD_LEN: usize = 8 << 20;
const NEW_SEED: u64 = 0x2e3;
/// Not a multiple of any buffer or page size, and different from the old length.
const NEW_LEN: usize = (12 << 20) + 4321;
const MODE: u32 = 0o640;
const TARGET: &str = "data.bin";

/// Deterministic content: the same seed gives the same bytes in parent and child. Each 4 KiB
/// page starts with the seed and its index, then random bytes from a pool of the seed: a page
/// of the other content, or one out of place, shows. (Cheap to make, even unoptimised.)
fn content(seed: u64, len: usize) -> Vec<u8> {
    const PAGE: usize = 4096;
    let mut pool = vec![0u8; 64 * 1024];
    fastrand::Rng::with_seed(seed).fill(&mut pool);
    let mut v = Vec::with_capacity(len + PAGE);
    for i in 0..len.div_ceil(PAGE) {
        v.extend_from_slice(&seed.to_le_bytes());
        v.extend_from_slice(&(i as u64).to_le_bytes());
        let off = (i * 4099) % (pool.len() - PAGE);
        v.extend_from_slice(&pool[off..off + PAGE - 16]);
    }
    v.truncate(len);
    v
}

// ---------------------------------------------------------------------------------------------
// The child
// ---------------------------------------------------------------------------------------------

fn mark(what: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("{MARK}{what}\n").as_bytes()).unwrap();
    out.flush().unwrap();
}

/// The child: a no-op unless `UNTORN_KILL_CHILD` names a target.
#[test]
fn child_writer() {
    let Some(target) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let temp = match std::env::var("UNTORN_KILL_TEMP").unwrap().as_str() {
        "named" => TempFile::Named,
        "auto" => TempFile::Auto,
        t => panic!("temp {t}"),
    };
    let durability = match std::env::var("UNTORN_KILL_DURABILITY").unwrap().as_str() {
        "full" => Durability::Full,
        "file" => Durability::File,
        "none" => Durability::None,
        d => panic!("durability {d}"),
    };
    let chunk: usize = std::env::var("UNTORN_KILL_CHUNK").unwrap().parse().unwrap();
    let new = content(NEW_SEED, NEW_LEN);
    let mut f = OpenOptions::new()
        .temp_file(temp)
        .durability(durability)
        .open(&target)
        .expect("open");
    mark("OPEN");
    for c in new.chunks(chunk) {
        f.write_all(c).expect("write");
    }
    mark("COMMITTING");
    f.commit().expect("commit");
    mark("DONE");
}

// ---------------------------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// No marker seen: before or during `open`.
    Start,
    /// Writing.
    Open,
    /// In `commit`.
    Committing,
    /// `commit` returned.
    Done,
}

fn phase_of(line: &str) -> Option<Phase> {
    // libtest may print "test child_writer ... " before the marker, on the same line.
    match line[line.find(MARK)? + MARK.len()..].trim() {
        "OPEN" => Some(Phase::Open),
        "COMMITTING" => Some(Phase::Committing),
        "DONE" => Some(Phase::Done),
        other => panic!("unknown marker {other}"),
    }
}

struct Running {
    child: Child,
    out: BufReader<ChildStdout>,
    started: Instant,
    phase: Phase,
}

impl Running {
    fn spawn(target: &Path, temp: &str, durability: &str, chunk: usize) -> Running {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, target)
            .env("UNTORN_KILL_TEMP", temp)
            .env("UNTORN_KILL_DURABILITY", durability)
            .env("UNTORN_KILL_CHUNK", chunk.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = child;
        let out = BufReader::new(child.stdout.take().unwrap());
        Running {
            child,
            out,
            started: Instant::now(),
            phase: Phase::Start,
        }
    }

    /// Reads markers until `want` is seen (true) or the child's stdout ends (false).
    fn wait_for(&mut self, want: Phase) -> bool {
        let mut line = String::new();
        while self.phase < want {
            line.clear();
            if self.out.read_line(&mut line).unwrap() == 0 {
                return false;
            }
            if let Some(p) = phase_of(&line) {
                self.phase = p;
            }
        }
        true
    }
}

/// Timings of an uninterrupted run, to aim the kills.
#[derive(Debug)]
struct Calibration {
    open: Duration,
    committing: Duration,
    done: Duration,
}

/// What a kill left.
#[derive(Default, Debug)]
struct Tally {
    runs: u32,
    kills: u32,
    exited_first: u32,
    old: u32,
    new: u32,
    temps: u32,
    /// Of the temps: a part of the new data, all of it, or the replaced old file.
    temp_kinds: [u32; 3],
    /// Kills by the last marker the child printed: Start, Open, Committing, Done.
    by_phase: [u32; 4],
}

struct Setup {
    dir: PathBuf,
    target: PathBuf,
    old: Vec<u8>,
    new: Vec<u8>,
}

impl Setup {
    fn reset(&self) {
        fs::write(&self.target, &self.old).unwrap();
        fs::set_permissions(&self.target, fs::Permissions::from_mode(MODE)).unwrap();
    }

    /// Checks the directory after the child is gone, removes the temps left, and returns
    /// whether the target has the new content and the temps by kind (see [`Tally::temp_kinds`]).
    fn check(&self, phase: Phase, what: &str) -> (bool, [u32; 3]) {
        let got = fs::read(&self.target).unwrap();
        let is_new = if got == self.old {
            false
        } else if got == self.new {
            true
        } else {
            let first_diff = |want: &[u8]| got.iter().zip(want).position(|(a, b)| a != b);
            panic!(
                "{what}: torn target after a kill in phase {phase:?}: {} bytes (old {}, new {}); \
                 first difference from old at {:?}, from new at {:?}",
                got.len(),
                self.old.len(),
                self.new.len(),
                first_diff(&self.old),
                first_diff(&self.new),
            );
        };
        if phase < Phase::Committing {
            assert!(!is_new, "{what}: new content visible before commit");
        }
        if phase == Phase::Done {
            assert!(
                is_new,
                "{what}: commit returned but the old content is back"
            );
        }
        assert_eq!(
            fs::metadata(&self.target).unwrap().mode() & 0o7777,
            MODE,
            "{what}: the target's mode changed (phase {phase:?})"
        );

        let mut temps = [0; 3];
        for e in fs::read_dir(&self.dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name();
            if name == OsStr::new(TARGET) {
                continue;
            }
            assert_eq!(
                untorn::temp_file_target(&name).as_deref(),
                Some(OsStr::new(TARGET)),
                "{what}: unexpected entry {name:?} after a kill in phase {phase:?}"
            );
            assert!(
                phase != Phase::Done,
                "{what}: temp {name:?} left although commit returned"
            );
            let m = fs::symlink_metadata(e.path()).unwrap();
            assert!(m.file_type().is_file(), "{what}: {name:?} is not a file");
            // The orphan is new data not yet committed (0600, at most the target's mode), or
            // the replaced old file.
            let mode = m.mode() & 0o7777;
            assert!(
                mode == 0o600 || mode == MODE,
                "{what}: orphan mode {mode:o}"
            );
            let data = fs::read(e.path()).unwrap();
            let prefix_of_new = data.len() <= self.new.len() && data[..] == self.new[..data.len()];
            assert!(
                prefix_of_new || (data == self.old && phase >= Phase::Committing),
                "{what}: orphan {name:?} ({} bytes) is neither new data nor the old file",
                data.len()
            );
            fs::remove_file(e.path()).unwrap();
            temps[if data == self.new {
                1
            } else if prefix_of_new {
                0
            } else {
                2
            }] += 1;
        }
        (is_new, temps)
    }
}

fn calibrate(s: &Setup, temp: &str, durability: &str) -> Calibration {
    s.reset();
    let mut r = Running::spawn(&s.target, temp, durability, 256 * 1024);
    assert!(
        r.wait_for(Phase::Open),
        "the child did not open (calibration)"
    );
    let open = r.started.elapsed();
    assert!(r.wait_for(Phase::Committing), "the child died writing");
    let committing = r.started.elapsed();
    assert!(r.wait_for(Phase::Done), "the child died committing");
    let done = r.started.elapsed();
    let status = r.child.wait().unwrap();
    assert!(status.success(), "calibration child failed: {status}");
    let (is_new, temps) = s.check(Phase::Done, "calibration");
    assert!(is_new && temps == [0; 3]);
    Calibration {
        open,
        committing,
        done,
    }
}

fn micros(rng: &mut fastrand::Rng, upto: Duration) -> Duration {
    Duration::from_micros(rng.u64(..=upto.as_micros().max(1) as u64))
}

/// One kill at a random moment; returns the tally's update.
fn kill_once(
    s: &Setup,
    cal: &Calibration,
    temp: &str,
    durability: &str,
    rng: &mut fastrand::Rng,
    t: &mut Tally,
) {
    s.reset();
    // Small chunks go through the 64 KiB buffer, large ones bypass it.
    let chunk = [4096, 65_536, 1 << 20][rng.usize(..3)];
    let mut r = Running::spawn(&s.target, temp, durability, chunk);
    let strategy = rng.u8(..4);
    let reached = match strategy {
        // Blind: anywhere from exec to exit.
        0 => {
            std::thread::sleep(micros(rng, cal.done + cal.done / 4));
            true
        }
        // While writing.
        1 => {
            let ok = r.wait_for(Phase::Open);
            if ok {
                std::thread::sleep(micros(rng, cal.committing - cal.open));
            }
            ok
        }
        // In the commit: fsync, linkat, renameat2, fsync of the directory, unlink.
        2 => {
            let ok = r.wait_for(Phase::Committing);
            if ok {
                std::thread::sleep(micros(rng, (cal.done - cal.committing) * 5 / 4));
            }
            ok
        }
        // Right at the start of the commit.
        _ => r.wait_for(Phase::Committing),
    };
    assert!(reached || r.child.try_wait().unwrap().is_some());
    r.child.kill().unwrap();
    let status = r.child.wait().unwrap();
    // What the child printed before it died.
    r.wait_for(Phase::Done);
    let killed = status.signal() == Some(9);
    t.runs += 1;
    if killed {
        t.kills += 1;
        t.by_phase[r.phase as usize] += 1;
    } else {
        assert!(status.success(), "child failed on its own: {status}");
        assert_eq!(r.phase, Phase::Done);
        t.exited_first += 1;
    }
    let what = format!("temp={temp} durability={durability} chunk={chunk} strategy={strategy}");
    let (is_new, temps) = s.check(r.phase, &what);
    if is_new {
        t.new += 1;
    } else {
        t.old += 1;
    }
    for (kind, n) in t.temp_kinds.iter_mut().zip(temps) {
        *kind += n;
        t.temps += n;
    }
}

#[test]
fn sigkill_at_any_moment_leaves_old_or_new() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let s = Setup {
        dir: dir.path().to_path_buf(),
        target: dir.path().join(TARGET),
        old: content(OLD_SEED, OLD_LEN),
        new: content(NEW_SEED, NEW_LEN),
    };
    let seed = std::env::var("UNTORN_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut report = format!("sigkill test (seed {seed}, UNTORN_KILL_SEED to repeat):\n");
    let mut total = Tally::default();
    for (temp, durability) in [
        ("named", "full"),
        ("auto", "full"),
        ("named", "none"),
        ("auto", "none"),
        ("named", "file"),
        ("auto", "file"),
    ] {
        let cal = calibrate(&s, temp, durability);
        let mut t = Tally::default();
        // 21 kills per configuration by default, 126 in all (UNTORN_KILL_ROUNDS sets the total);
        // children that finish first don't count.
        let per = std::env::var("UNTORN_KILL_ROUNDS")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .map_or(21, |n| n.div_ceil(6).max(1));
        while t.kills < per && t.runs < per * 3 {
            kill_once(&s, &cal, temp, durability, &mut rng, &mut t);
        }
        report += &format!(
            "  temp={temp:5} durability={durability:4} ({:>4} ms a run): {:>3} kills ({} before OPEN, \
             {} writing, {} committing, {} after DONE) -> {} old, {} new; {} temps left \
             ({} partial new, {} whole new, {} old); {} ran to completion\n",
            cal.done.as_millis(),
            t.kills,
            t.by_phase[0],
            t.by_phase[1],
            t.by_phase[2],
            t.by_phase[3],
            t.old,
            t.new,
            t.temps,
            t.temp_kinds[0],
            t.temp_kinds[1],
            t.temp_kinds[2],
            t.exited_first,
        );
        total.runs += t.runs;
        total.kills += t.kills;
        total.exited_first += t.exited_first;
        total.old += t.old;
        total.new += t.new;
        total.temps += t.temps;
        for i in 0..3 {
            total.temp_kinds[i] += t.temp_kinds[i];
        }
        for i in 0..4 {
            total.by_phase[i] += t.by_phase[i];
        }
    }
    report += &format!(
        "  total: {} kills ({} before OPEN, {} writing, {} committing, {} after DONE) -> {} old, \
         {} new; {} temps left ({} partial new, {} whole new, {} old); {} ran to completion; \
         {:.1} s\n",
        total.kills,
        total.by_phase[0],
        total.by_phase[1],
        total.by_phase[2],
        total.by_phase[3],
        total.old,
        total.new,
        total.temps,
        total.temp_kinds[0],
        total.temp_kinds[1],
        total.temp_kinds[2],
        total.exited_first,
        started.elapsed().as_secs_f64(),
    );
    report += &format!("PROOF kill op=write kills={} violations=0\n", total.kills);
    let _ = std::io::stderr().write_all(report.as_bytes());
    assert!(total.kills >= 100, "only {} kills landed", total.kills);
    // The kills must have covered the interesting moments, or the test proves little.
    assert!(total.by_phase[1] >= 10, "too few kills while writing");
    assert!(total.by_phase[2] >= 10, "too few kills while committing");
    assert!(total.old > 0 && total.new > 0, "both outcomes should occur");
}
