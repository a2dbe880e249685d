//! Crash states of the operations beyond writes and transactions: taking a backup, restoring,
//! `read_valid` with restore, `recover --restore-invalid`, `clean` and `repair`, each driven
//! through its public entry point on the simulator (`untorn::with_sys`), every crash
//! point and every allowed combination of lost effects, then the invariant of what the
//! operation promises.

use crate::sum::Integrity;
use crate::sys::sim::Sim;
use crate::sys::Sys;
use crate::tests_crash::{assert_clean, explore, judged, put_by_untorn};
use crate::with_sys;
use crate::*;
use std::path::Path;
use std::sync::Arc;

fn sys(sim: &Sim) -> Arc<dyn Sys> {
    Arc::new(sim.clone())
}

/// A JSON version whose size differs from the others', so that a mix shows.
fn jv(n: usize) -> Vec<u8> {
    format!("{{\"v\": {n}, \"pad\": \"{}\"}}\n", "x".repeat(n * 13 % 40)).into_bytes()
}

fn jv_of(data: &[u8]) -> Option<usize> {
    (0..4).find(|&n| data == jv(n))
}

fn read(s: &Sim, p: &str) -> Option<Vec<u8>> {
    s.volatile().read(Path::new(p))
}

/// The backups of `/d/NAME` in a crash state, each judged: a backup that is not one of the
/// versions must be judged damaged (never offered). Returns the versions of the whole ones.
fn whole_backups(s: &Sim, name: &str) -> Result<Vec<usize>, String> {
    let list =
        with_sys(sys(s), || backups(Path::new("/d").join(name))).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for b in list {
        let (data, integrity) = judged(s, &b.path)?;
        match (jv_of(&data), integrity) {
            (Some(v), Integrity::Whole) => out.push(v),
            (None, Integrity::Damaged(_)) => {}
            (v, i) => return Err(format!("backup {:?}: version {v:?}, judged {i}", b.name)),
        }
    }
    Ok(out)
}

/// Sets `/d/f.json` up as version 0 then version 1 through untorn with backups (so version 0 is
/// a backup), then overwrites it in place with something that is not JSON (another program,
/// cut short): what `read_valid` and `recover --restore-invalid` repair.
fn corrupted(s: &Sim) {
    put_by_untorn(s, "/d/f.json", &jv(0));
    let mut o = OpenOptions::new();
    o.sys(sys(s)).backups(3);
    o.write("/d/f.json", jv(1)).unwrap();
    let root = s.open_dir(None, Path::new("/")).unwrap();
    s.sync_fs(&root).unwrap();
    s.put(Path::new("/d/f.json"), b"{\"v\": 1, trunc");
}

/// After a crash during a repair by `restore`: the file is the corrupt content or the backup's,
/// whole, and once the call returned, the backup's.
fn check_repaired(s: &Sim, acked: usize) -> Result<(), String> {
    let data = read(s, "/d/f.json").ok_or("f.json is missing")?;
    match (jv_of(&data), acked) {
        (Some(0), _) => Ok(()),
        (None, 0) if data == b"{\"v\": 1, trunc" => Ok(()),
        (v, _) => Err(format!(
            "f.json is {v:?} ({} bytes) after {acked} acknowledged repairs",
            data.len()
        )),
    }
}

#[test]
fn an_explicit_backup_is_whole_and_durable_once_it_returns() {
    let r = explore(
        "backup-now",
        |s| put_by_untorn(s, "/d/f", &jv(1)),
        |s| {
            with_sys(sys(s), || backup("/d/f", 3)).unwrap();
            s.ack();
        },
        |s, acked| {
            if read(s, "/d/f") != Some(jv(1)) {
                return Err("the file changed".into());
            }
            let whole = whole_backups(s, "f")?;
            if whole.iter().any(|&v| v != 1) {
                return Err(format!("a backup holds {whole:?}, not the file's version"));
            }
            if acked == 1 && whole.is_empty() {
                return Err("backup() returned, but no whole backup survived".into());
            }
            Ok(())
        },
    );
    assert_clean(&r);
}

#[test]
fn a_restore_is_old_or_new_and_keeps_the_version_it_replaced() {
    let r = explore(
        "restore",
        |s| {
            put_by_untorn(s, "/d/f", &jv(0));
            let mut o = OpenOptions::new();
            o.sys(sys(s)).backups(3);
            o.write("/d/f", jv(1)).unwrap();
            let root = s.open_dir(None, Path::new("/")).unwrap();
            s.sync_fs(&root).unwrap();
        },
        |s| {
            with_sys(sys(s), || restore("/d/f", Which::Newest)).unwrap();
            s.ack();
        },
        |s, acked| {
            let v = read(s, "/d/f")
                .and_then(|d| jv_of(&d))
                .ok_or("the file is not a whole version")?;
            let whole = whole_backups(s, "f")?;
            match (v, acked) {
                (0, 1) if whole.contains(&1) => Ok(()),
                (0, 1) => Err(format!(
                    "restored, but the replaced version is not kept: {whole:?}"
                )),
                (1, 0) | (0, 0) => Ok(()),
                _ => Err(format!("the file is version {v} after {acked} restores")),
            }
        },
    );
    assert_clean(&r);
}

#[test]
fn read_valid_with_restore_repairs_whole_and_durably() {
    let r = explore(
        "read-valid",
        corrupted,
        |s| {
            let got = with_sys(sys(s), || {
                read_valid("/d/f.json", &Validator::Format(Format::Json), true)
            })
            .unwrap();
            assert_eq!(got.content, jv(0));
            s.ack();
        },
        check_repaired,
    );
    assert_clean(&r);
}

#[test]
fn recover_restore_invalid_repairs_whole_and_durably() {
    let r = explore(
        "recover-restore",
        corrupted,
        |s| {
            let mut o = RecoverOptions::new();
            o.restore_invalid(Format::Json).sys(sys(s));
            let actions = recover("/d", &o).unwrap();
            assert!(
                actions
                    .iter()
                    .any(|a| matches!(a, RecoverAction::Restored { .. })),
                "{actions:?}"
            );
            s.ack();
        },
        check_repaired,
    );
    assert_clean(&r);
}

#[test]
fn clean_never_touches_anything_but_orphans() {
    let r = explore(
        "clean",
        |s| {
            put_by_untorn(s, "/d/f", &jv(2));
            s.put(Path::new("/d/.f.untorn-0badf00d.tmp"), b"an orphan");
        },
        |s| {
            let mut o = CleanOptions::new();
            o.older_than(std::time::Duration::ZERO).sys(sys(s));
            let c = o.clean("/d").unwrap();
            assert_eq!(c.removed.len(), 1, "{c:?}");
            s.ack();
        },
        |s, _| {
            if read(s, "/d/f") != Some(jv(2)) {
                return Err("clean changed the file".into());
            }
            Ok(())
        },
    );
    assert_clean(&r);
}

#[test]
fn repair_keeps_every_complete_record_and_is_durable_once_it_returns() {
    let r = explore(
        "repair",
        |s| s.put(Path::new("/d/log"), b"one\ntwo\n\0\0\0\0"),
        |s| {
            let torn = with_sys(sys(s), || repair("/d/log", LogFormat::Lines)).unwrap();
            assert!(torn.is_some());
            s.ack();
        },
        |s, acked| {
            let data = read(s, "/d/log").ok_or("the log is missing")?;
            if !data.starts_with(b"one\ntwo\n") {
                return Err(format!("a complete record was lost: {data:?}"));
            }
            if acked == 1 && data != b"one\ntwo\n" {
                return Err(format!(
                    "repair returned, but the torn tail is back: {data:?}"
                ));
            }
            Ok(())
        },
    );
    assert_clean(&r);
}

/// The group commit's path (an appender that unlocks after its write and syncs, or finds its
/// records synced, under the lock taken again), forced without contention, and appends
/// through an open `LogWriter`: every crash point keeps every acknowledged record, and the next
/// append leaves the log whole.
#[test]
fn grouped_appends_and_writers_keep_every_acknowledged_record() {
    use crate::tests_crash::{check_appended, log_record, put_log, N};
    let r = explore(
        "append (group commit's path)",
        put_log,
        |s| {
            for n in 1..=N {
                let mut o = AppendOptions::new();
                o.sys(sys(s))
                    .format(LogFormat::JsonLines)
                    .group_commit(GroupCommit::Always);
                o.append("/d/log.jsonl", log_record(n)).unwrap();
                s.ack();
            }
        },
        check_appended,
    );
    assert_clean(&r);
    let r = explore(
        "append (LogWriter)",
        put_log,
        |s| {
            let mut o = AppendOptions::new();
            o.sys(sys(s))
                .format(LogFormat::JsonLines)
                .group_commit(GroupCommit::Always);
            let w = o.open("/d/log.jsonl").unwrap();
            for n in 1..=N {
                w.append(log_record(n)).unwrap();
                s.ack();
            }
        },
        check_appended,
    );
    assert_clean(&r);
}
