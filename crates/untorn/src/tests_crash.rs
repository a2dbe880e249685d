//! Crash states, proved rather than sampled: every operation runs on the simulated file system
//! (`sys::sim`), every crash point is taken, and every allowed combination of lost, unsynced
//! effects is rebuilt (up to a bound in `cargo test`; set `UNTORN_CRASH_EXHAUSTIVE=1` for all of
//! them). untorn's own recovery runs on each state, then the invariant is checked: old or new,
//! everything acknowledged is durable, a transaction is all or nothing.

use crate::ctx::Ctx;
use crate::sum::Integrity;
use crate::sys::sim::{Sim, Tree};
use crate::sys::Sys;
use crate::*;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// What one exploration found.
pub(crate) struct Report {
    pub(crate) op: &'static str,
    pub(crate) crash_points: usize,
    pub(crate) states: usize,
    pub(crate) violations: Vec<String>,
}

impl Report {
    pub(crate) fn print(&self) {
        let line = format!(
            "PROOF sim op={} crash_points={} states={} violations={}\n",
            self.op,
            self.crash_points,
            self.states,
            self.violations.len()
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

fn limit() -> usize {
    if std::env::var_os("UNTORN_CRASH_EXHAUSTIVE").is_some_and(|v| v == "1") {
        1 << 20
    } else {
        48
    }
}

pub(crate) fn sys(sim: &Sim) -> Arc<dyn Sys> {
    Arc::new(sim.clone())
}

/// Runs `work` on a fresh simulated tree (after `setup`), then checks `check` on every crash
/// state of every crash point, after untorn's recovery.
pub(crate) fn explore(
    op: &'static str,
    setup: impl Fn(&Sim),
    work: impl Fn(&Sim),
    check: impl Fn(&Sim, usize) -> Result<(), String>,
) -> Report {
    let sim = Sim::default();
    sim.mkdir(Path::new("/d"));
    setup(&sim);
    sim.record();
    work(&sim);
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut report = Report {
        op,
        crash_points: 0,
        states: 0,
        violations: Vec::new(),
    };
    for (i, snap) in sim.snapshots().iter().enumerate() {
        report.crash_points += 1;
        for tree in Sim::crash_states(snap, limit(), &mut rng) {
            report.states += 1;
            let after = Sim::from_tree(tree.clone());
            if let Err(why) = check(&after, snap.acked) {
                if report.violations.len() < 5 {
                    report.violations.push(format!(
                        "crash point {i} (acked {}): {why}\n{tree:#?}",
                        snap.acked
                    ));
                } else {
                    report.violations.push(why);
                }
            }
        }
    }
    report
}

fn version(n: usize) -> Vec<u8> {
    // Sizes differ so that a torn or mixed file shows.
    format!("version {n}\n")
        .repeat(1 + n * 37 % 50)
        .into_bytes()
}

/// Which version `data` is, if it is one whole version.
fn which(data: &[u8], max: usize) -> Option<usize> {
    (0..=max).find(|&n| data == version(n))
}

fn content(sim: &Sim, p: &str) -> Option<Vec<u8>> {
    sim.volatile().read(Path::new(p))
}

/// Writes `data` at `path` through untorn (so it has a checksum), then makes everything
/// durable: for setting up a test.
pub(crate) fn put_by_untorn(s: &Sim, path: &str, data: &[u8]) {
    let mut o = OpenOptions::new();
    o.sys(sys(s)).write(path, data).unwrap();
    let sys_ = sys(s);
    let root = sys_.open_dir(None, Path::new("/")).unwrap();
    sys_.sync_fs(&root).unwrap();
}

/// Reads the file at `path` of the simulated file system and judges it by its checksum.
pub(crate) fn judged(s: &Sim, path: &Path) -> Result<(Vec<u8>, Integrity), String> {
    let sys_ = sys(s);
    let dir = sys_
        .open_dir(None, path.parent().unwrap())
        .map_err(|e| e.to_string())?;
    let how = crate::sys::OpenHow {
        read: true,
        ..Default::default()
    };
    let fd = sys_
        .open_file(&dir, path.file_name().unwrap(), how, 0)
        .map_err(|e| e.to_string())?;
    crate::recover::read_judged(&*sys_, &fd, path).map_err(|e| e.to_string())
}

pub(crate) const N: usize = 3;

fn expect_version(sim: &Sim, path: &str, acked: usize) -> Result<usize, String> {
    let data = content(sim, path).ok_or_else(|| format!("{path} is missing"))?;
    let v = which(&data, N).ok_or_else(|| {
        format!(
            "{path} is not a whole version ({} bytes: {:?}...)",
            data.len(),
            String::from_utf8_lossy(&data[..data.len().min(40)])
        )
    })?;
    if v < acked {
        return Err(format!(
            "{path} is version {v}, but write {acked} had returned"
        ));
    }
    if v > acked + 1 {
        return Err(format!(
            "{path} is version {v}, which was never begun ({acked} acked)"
        ));
    }
    Ok(v)
}

pub(crate) fn assert_clean(r: &Report) {
    r.print();
    assert!(r.states > r.crash_points, "{}: states were explored", r.op);
    assert!(
        r.violations.is_empty(),
        "{}: {} violations, first: {}",
        r.op,
        r.violations.len(),
        r.violations[0]
    );
}

fn write_workload(opts: impl Fn(&Sim) -> OpenOptions) -> impl Fn(&Sim) {
    move |sim: &Sim| {
        for n in 1..=N {
            opts(sim).write("/d/f", version(n)).unwrap();
            sim.ack();
        }
    }
}

#[test]
fn write_is_old_or_new_and_durable_once_acknowledged() {
    for temp in [TempFile::Unnamed, TempFile::Named] {
        let r = explore(
            if temp == TempFile::Named {
                "write(named)"
            } else {
                "write"
            },
            |s| s.put(Path::new("/d/f"), &version(0)),
            write_workload(move |s| {
                let mut o = OpenOptions::new();
                o.sys(sys(s)).temp_file(temp);
                o
            }),
            |s, acked| expect_version(s, "/d/f", acked).map(drop),
        );
        assert_clean(&r);
    }
}

#[test]
fn the_simulator_catches_writes_without_fsync() {
    // Proof that the checks can fail: without fsyncs, some crash state loses an acknowledged
    // write or leaves an empty file.
    let r = explore(
        "write(durability none)",
        |s| s.put(Path::new("/d/f"), &version(0)),
        write_workload(|s| {
            let mut o = OpenOptions::new();
            o.sys(sys(s)).durability(Durability::None);
            o
        }),
        |s, acked| expect_version(s, "/d/f", acked).map(drop),
    );
    r.print();
    assert!(!r.violations.is_empty());
    // And with only the file fsynced, the file is never torn, but a returned write can be
    // lost. On a file system that reuses freed blocks before the free is durable (ext4
    // `data=writeback`), the replaced version can come back damaged too: the unlink of its
    // temp name, not made durable, freed its blocks while the replace was not durable either.
    // Its checksum tells (it was written by untorn).
    let r = explore(
        "write(durability file)",
        |s| put_by_untorn(s, "/d/f", &version(0)),
        write_workload(|s| {
            let mut o = OpenOptions::new();
            o.sys(sys(s)).durability(Durability::File);
            o
        }),
        |s, acked| match expect_version(s, "/d/f", acked) {
            Err(e) if e.contains("not a whole version") => match judged(s, Path::new("/d/f"))?.1 {
                Integrity::Damaged(_) => Err(format!("{e}, flagged damaged")),
                other => Err(format!("{e}, and {other}: NOT flagged")),
            },
            r => r.map(drop),
        },
    );
    r.print();
    assert!(
        r.violations
            .iter()
            .all(|v| v.contains("had returned") || v.contains("flagged damaged")),
        "{:?}",
        r.violations.iter().find(|v| v.contains("NOT flagged"))
    );
    assert!(r.violations.iter().any(|v| v.contains("had returned")));
}

#[test]
fn a_new_file_appears_whole_or_not_at_all() {
    let r = explore(
        "create",
        |_| {},
        |s| {
            let mut o = OpenOptions::new();
            o.sys(sys(s)).no_clobber(true);
            o.write("/d/new", version(1)).unwrap();
            s.ack();
        },
        |s, acked| match content(s, "/d/new") {
            None if acked == 0 => Ok(()),
            None => Err("the created file is gone".into()),
            Some(d) if d == version(1) => Ok(()),
            Some(d) => Err(format!("torn: {} bytes", d.len())),
        },
    );
    assert_clean(&r);
}

fn counter(s: &Sim) -> Result<usize, String> {
    let mut o = UpdateOptions::new();
    o.sys(sys(s));
    o.read_as::<usize>(Format::Json, "/d/n.json")
        .map_err(|e| e.to_string())
}

#[test]
fn locked_updates_lose_no_acknowledged_increment() {
    let r = explore(
        "update",
        |s| s.put(Path::new("/d/n.json"), b"0\n"),
        |s| {
            for _ in 0..N {
                let mut o = UpdateOptions::new();
                o.sys(sys(s));
                o.update_as(Format::Json, "/d/n.json", 0usize, |n: &mut usize| {
                    *n += 1;
                    Ok::<_, Error>(())
                })
                .unwrap();
                s.ack();
            }
        },
        |s, acked| {
            let n = counter(s)?;
            if n < acked || n > acked + 1 {
                return Err(format!("count {n} with {acked} increments acknowledged"));
            }
            Ok(())
        },
    );
    assert_clean(&r);
}

/// Checks the backups of `/d/f` in a crash state, the file being version `v` and `acked`
/// writes having returned: every backup is a whole version and judged whole by its checksum,
/// or it is damaged (a pruned backup brought back over reused blocks) **and judged damaged**;
/// the newest whole backup is never newer than the file, and after an acknowledged write it is
/// the version that write displaced. Returns how many were damaged.
fn check_backups(s: &Sim, v: usize, acked: usize) -> Result<usize, String> {
    let sys_ = sys(s);
    let dir = sys_
        .open_dir(None, Path::new("/d"))
        .map_err(|e| e.to_string())?;
    let backups = crate::versions::list_in(&*sys_, &dir, Path::new("/d"), "f".as_ref())
        .map_err(|e| e.to_string())?;
    let mut versions = Vec::new();
    let mut damaged = 0;
    for b in &backups {
        let (data, integrity) = judged(s, &b.path)?;
        match (which(&data, N), integrity) {
            (Some(bv), Integrity::Whole) => versions.push(bv),
            (Some(bv), other) => {
                return Err(format!(
                    "backup {:?} is version {bv}, whole, but judged {other}",
                    b.name
                ))
            }
            (None, Integrity::Damaged(_)) => damaged += 1,
            (None, other) => {
                return Err(format!(
                    "backup {:?} is not whole ({} bytes) and judged {other}: it would be offered",
                    b.name,
                    data.len()
                ))
            }
        }
    }
    // A crash may keep the backup's link but not the replace: then the backup equals the
    // file. It may never be newer.
    if versions.iter().any(|&b| b > v) {
        return Err(format!("a backup {versions:?} is newer than the file {v}"));
    }
    // The version that the last acknowledged write displaced is kept, whole.
    if v == acked && acked >= 1 && versions.last() != Some(&(v - 1)) {
        return Err(format!(
            "file {v} acknowledged, but whole backups are {versions:?}"
        ));
    }
    Ok(damaged)
}

#[test]
fn backups_are_whole_and_the_newest_is_the_previous_version() {
    // Retention 1 over 4 writes: three prunes, each of which a crash can undo over reused
    // blocks (the simulator's model of ext4 `data=writeback`).
    let damaged = std::sync::atomic::AtomicUsize::new(0);
    let r = explore(
        "backup",
        |s| put_by_untorn(s, "/d/f", &version(0)),
        |s| {
            for n in 1..=N {
                let mut o = OpenOptions::new();
                o.sys(sys(s)).backups(1);
                o.write("/d/f", version(n)).unwrap();
                s.ack();
            }
        },
        |s, acked| {
            let v = expect_version(s, "/d/f", acked)?;
            let d = check_backups(s, v, acked)?;
            damaged.fetch_add(d, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        },
    );
    assert_clean(&r);
    // The model did bring pruned backups back over reused blocks, and each was caught.
    assert!(damaged.into_inner() > 0, "no damaged backup was ever seen");
}

#[test]
fn without_checksums_a_reused_backup_would_be_offered() {
    // Proof that the backup check can fail: version 0 written by another program (no
    // checksum) is pruned, and comes back over reused blocks as unverified, which a reader
    // would offer.
    let r = explore(
        "backup(no checksums)",
        |s| s.put(Path::new("/d/f"), &version(0)),
        |s| {
            for n in 1..=N {
                let mut o = OpenOptions::new();
                o.sys(sys(s)).backups(1);
                o.write("/d/f", version(n)).unwrap();
                s.ack();
            }
        },
        |s, acked| {
            let v = expect_version(s, "/d/f", acked)?;
            check_backups(s, v, acked).map(drop)
        },
    );
    r.print();
    assert!(
        r.violations.iter().any(|v| v.contains("would be offered")),
        "{:?}",
        r.violations.first()
    );
}

/// The records the append workloads append: JSON Lines of varied lengths.
pub(crate) fn log_record(n: usize) -> String {
    format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(n * 13 % 40))
}

/// After a crash of an append workload on `/d/log.jsonl` (record 0 there before it): the log
/// holds records 0, 1, ... in order, at least every acknowledged one, and the next append
/// leaves it whole.
pub(crate) fn check_appended(s: &Sim, acked: usize) -> Result<(), String> {
    let rec = log_record;
    let mut o = UpdateOptions::new();
    o.sys(sys(s));
    let log = crate::log::read_log_with(o, Path::new("/d/log.jsonl"), LogFormat::JsonLines)
        .map_err(|e| e.to_string())?;
    let got: Vec<String> = log
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    let want: Vec<String> = (0..got.len()).map(rec).collect();
    if got != want {
        return Err(format!("records {got:?}"));
    }
    if got.len() < acked + 1 {
        return Err(format!(
            "{} records, {acked} appends acknowledged",
            got.len()
        ));
    }
    // The next append repairs whatever tail the crash left.
    let mut o = AppendOptions::new();
    o.sys(sys(s)).format(LogFormat::JsonLines);
    o.append("/d/log.jsonl", rec(99))
        .map_err(|e| e.to_string())?;
    let data = content(s, "/d/log.jsonl").unwrap();
    let (valid, torn) = crate::log::valid_prefix(&data, LogFormat::JsonLines)
        .map_err(|bad| format!("after the crash and an append: {bad:?}"))?;
    if torn.is_some() || valid != data.len() || !data.ends_with(b"\n") {
        return Err("an append after the crash left a torn log".into());
    }
    Ok(())
}

/// Puts record 0 in `/d/log.jsonl`: the append workloads' setup.
pub(crate) fn put_log(s: &Sim) {
    s.put(
        Path::new("/d/log.jsonl"),
        format!("{}\n", log_record(0)).as_bytes(),
    )
}

#[test]
fn appends_keep_every_acknowledged_record() {
    let r = explore(
        "append",
        put_log,
        |s| {
            for n in 1..=N {
                let mut o = AppendOptions::new();
                o.sys(sys(s)).format(LogFormat::JsonLines);
                o.append("/d/log.jsonl", log_record(n)).unwrap();
                s.ack();
            }
        },
        check_appended,
    );
    assert_clean(&r);
}

#[test]
fn transactions_are_all_or_nothing_after_recovery() {
    let files = ["/d/a", "/d/b", "/d/c"];
    let r = explore(
        "txn",
        |s| {
            for f in files {
                s.put(Path::new(f), &version(0));
            }
        },
        |s| {
            for n in 1..=2 {
                let mut tx = Transaction::new();
                tx.sys(sys(s));
                for f in files {
                    tx.write(f, version(n)).unwrap();
                }
                tx.commit().unwrap();
                s.ack();
            }
        },
        |s, acked| {
            let ctx = Ctx::new(sys(s));
            let (_, errors) = crate::txn::scan::recover_dir_with(
                &ctx,
                Path::new("/d"),
                false,
                &Default::default(),
            )
            .map_err(|e| e.to_string())?;
            if let Some(e) = errors.first() {
                return Err(format!("recovery failed: {e}"));
            }
            let vs: Vec<usize> = files
                .iter()
                .map(|f| expect_version(s, f, acked))
                .collect::<Result<_, _>>()?;
            if vs.iter().any(|&v| v != vs[0]) {
                return Err(format!("a mix after recovery: {vs:?}"));
            }
            let left: Vec<_> = s
                .volatile()
                .names(Path::new("/d"))
                .into_iter()
                .filter(|n| crate::txn::is_journal_name(n))
                .collect();
            if !left.is_empty() {
                return Err(format!("journal left after recovery: {left:?}"));
            }
            Ok(())
        },
    );
    assert_clean(&r);
}

#[test]
fn a_transaction_without_its_journal_would_be_caught() {
    // Proof that the all-or-nothing check can fail: three plain writes in a row are not a
    // transaction, and some crash state shows a mix.
    let files = ["/d/a", "/d/b", "/d/c"];
    let r = explore(
        "three writes (not a txn)",
        |s| {
            for f in files {
                s.put(Path::new(f), &version(0));
            }
        },
        |s| {
            for f in files {
                let mut o = OpenOptions::new();
                o.sys(sys(s));
                o.write(f, version(1)).unwrap();
            }
            s.ack();
        },
        |s, acked| {
            let vs: Vec<usize> = files
                .iter()
                .map(|f| expect_version(s, f, acked))
                .collect::<Result<_, _>>()?;
            if vs.iter().any(|&v| v != vs[0]) {
                return Err(format!("a mix: {vs:?}"));
            }
            Ok(())
        },
    );
    r.print();
    assert!(r.violations.iter().any(|v| v.contains("a mix")));
}

#[test]
fn crash_states_cover_lost_renames_and_zero_filled_tails() {
    // The model itself: a pending rename may or may not survive; a pending append may leave
    // only its size.
    let sim = Sim::default();
    sim.mkdir(Path::new("/d"));
    sim.put(Path::new("/d/f"), b"a\n");
    sim.record();
    let s = sys(&sim);
    let d = s.open_dir(None, Path::new("/d")).unwrap();
    let how = crate::sys::OpenHow {
        write: true,
        append: true,
        ..Default::default()
    };
    let f = s.open_file(&d, "f".as_ref(), how, 0).unwrap();
    s.write(&f, b"bb\n").unwrap();
    s.rename(
        &d,
        "f".as_ref(),
        &d,
        "g".as_ref(),
        crate::sys::RenameMode::Replace,
    )
    .unwrap();
    let snap = sim.snapshots().pop().unwrap();
    let states = Sim::crash_states(&snap, 1000, &mut fastrand::Rng::with_seed(1));
    type Pair = (Option<Vec<u8>>, Option<Vec<u8>>);
    let seen: Vec<Pair> = states
        .iter()
        .map(|t: &Tree| (t.read(Path::new("/d/f")), t.read(Path::new("/d/g"))))
        .collect();
    assert!(
        seen.contains(&(Some(b"a\n".to_vec()), None)),
        "nothing survived"
    );
    assert!(
        seen.contains(&(None, Some(b"a\nbb\n".to_vec()))),
        "everything survived"
    );
    assert!(
        seen.contains(&(Some(b"a\n\0\0\0".to_vec()), None)),
        "zeros after a size update"
    );
    assert!(
        seen.contains(&(None, Some(b"a\n".to_vec()))),
        "the rename without the data"
    );
}

#[test]
fn crash_states_cover_a_lost_unlink_over_reused_blocks() {
    // The model: a file unlinked (its last name), the unlink not durable, may come back intact
    // or holding other bytes (blocks reused before the free was committed), size kept.
    let sim = Sim::default();
    sim.mkdir(Path::new("/d"));
    sim.put(Path::new("/d/old"), &[b'a'; 5000]);
    sim.record();
    let s = sys(&sim);
    let d = s.open_dir(None, Path::new("/d")).unwrap();
    s.unlink(&d, "old".as_ref()).unwrap();
    let snap = sim.snapshots().pop().unwrap();
    let states = Sim::crash_states(&snap, 1000, &mut fastrand::Rng::with_seed(1));
    let seen: Vec<Option<Vec<u8>>> = states.iter().map(|t| t.read(Path::new("/d/old"))).collect();
    assert!(seen.contains(&None), "the unlink survived");
    assert!(seen.contains(&Some(vec![b'a'; 5000])), "back intact");
    let mut reused = vec![b'a'; 4096];
    reused.resize(5000, 0xEE);
    assert!(seen.contains(&Some(reused)), "back over reused blocks");
    assert_eq!(seen.len(), 3, "{seen:?}");
}
