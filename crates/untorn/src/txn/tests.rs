//! Unit tests of multi-file transactions: commit, discard, the journal, crashes at every call.

use crate::sys::testing::{Call, Probe};
use crate::sys::Sys;
use crate::tests::{assert_no_leftovers, skip};
use crate::txn::{is_journal_name, journal_name, recover_dir, Journal};
use crate::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Fails if a journal is left in `dir` or a lock file still carries a mark.
fn assert_settled(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let n = e.file_name();
        assert!(!is_journal_name(&n), "journal left: {n:?}");
        if n.to_string_lossy().ends_with(".lock") {
            assert_eq!(e.metadata().unwrap().len(), 0, "mark left in {n:?}");
        }
    }
    assert_no_leftovers(dir);
}

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok()
}

#[test]
fn commit_applies_writes_removals_and_renames_together() {
    let d = dir();
    let p = |n: &str| d.path().join(n);
    fs::write(p("a.json"), "old a").unwrap();
    fs::write(p("old.txt"), "bye").unwrap();
    fs::write(p("from"), "moving").unwrap();
    let sub = p("sub");
    fs::create_dir(&sub).unwrap();
    let mut tx = Transaction::new();
    tx.write(p("a.json"), "new a").unwrap();
    tx.write(sub.join("b.yaml"), "b: 1\n").unwrap();
    {
        use std::io::Write;
        let s = tx.create(p("big.bin")).unwrap();
        for i in 0..1000u32 {
            s.write_all(&i.to_le_bytes().repeat(100)).unwrap();
        }
    }
    tx.remove(p("old.txt")).unwrap();
    tx.rename(p("from"), p("to")).unwrap();
    // Nothing is visible before the commit.
    assert_eq!(read(&p("a.json")).unwrap(), "old a");
    assert!(!sub.join("b.yaml").exists());
    let c = tx.commit().unwrap();
    assert_eq!(c.written.len(), 3);
    assert_eq!(read(&p("a.json")).unwrap(), "new a");
    assert_eq!(read(&sub.join("b.yaml")).unwrap(), "b: 1\n");
    assert_eq!(fs::metadata(p("big.bin")).unwrap().len(), 400_000);
    assert!(!p("old.txt").exists() && !p("from").exists());
    assert_eq!(read(&p("to")).unwrap(), "moving");
    assert_settled(d.path());
    assert_settled(&sub);
}

#[test]
fn dropping_or_discarding_changes_nothing() {
    let d = dir();
    let a = d.path().join("a");
    fs::write(&a, "old").unwrap();
    let mut tx = Transaction::new();
    tx.write(&a, "new").unwrap();
    tx.write(d.path().join("b"), "new").unwrap();
    drop(tx);
    assert_eq!(read(&a).unwrap(), "old");
    assert!(!d.path().join("b").exists());
    let mut tx = Transaction::new();
    tx.write(&a, "new").unwrap();
    tx.discard().unwrap();
    assert_eq!(read(&a).unwrap(), "old");
    assert_settled(d.path());
}

#[test]
fn bad_transactions_fail_before_anything_changes() {
    let d = dir();
    let a = d.path().join("a");
    fs::write(&a, "old").unwrap();
    let mut tx = Transaction::new();
    tx.write(&a, "x").unwrap();
    assert_eq!(
        tx.write(&a, "y").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        tx.remove(d.path().join("missing")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    drop(tx);
    // Two file systems: an error naming the file, before anything changes.
    let shm = Path::new("/dev/shm");
    let same_fs = fs::metadata(shm).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.dev() == fs::metadata(d.path()).unwrap().dev()
    });
    match same_fs {
        Ok(false) => {
            let other = tempfile::tempdir_in(shm).unwrap();
            let mut tx = Transaction::new();
            tx.write(&a, "new").unwrap();
            let e = tx.write(other.path().join("b"), "new").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::CrossDevice, "{e}");
            drop(tx);
            assert_eq!(read(&a).unwrap(), "old");
            assert!(!other.path().join("b").exists());
            assert_settled(other.path());
        }
        _ => skip(
            "bad_transactions_fail_before_anything_changes: /dev/shm is not another file system",
        ),
    }
    assert_settled(d.path());
}

#[test]
fn group_commit_costs_a_few_flushes_whatever_the_number_of_files() {
    let d = dir();
    let probe = Probe::real();
    let mut tx = Transaction::new();
    tx.sys(Arc::new(probe.clone()) as Arc<dyn Sys>);
    for i in 0..50 {
        tx.write(
            d.path().join(format!("f{i}.json")),
            format!("{{\"i\": {i}}}"),
        )
        .unwrap();
    }
    probe.clear();
    tx.commit().unwrap();
    let tr = probe.transcript();
    // Two flushes for 50 files: one syncfs (temps, flags and journal: the commit point), then
    // one fsync of the directory (the renames).
    assert_eq!(probe.count(Call::SyncFs), 1, "{tr}");
    assert_eq!(probe.count(Call::Sync), 0, "no per-file fsync:\n{tr}");
    assert_eq!(probe.count(Call::SyncDir), 1, "the applied renames:\n{tr}");
    // The commit point comes after the journal is in place and before the first rename.
    let ev = probe.events();
    let first_rename = ev.iter().position(|e| e.call == Call::Rename).unwrap();
    let syncfs = ev.iter().position(|e| e.call == Call::SyncFs).unwrap();
    let journal_link = ev.iter().position(|e| e.call == Call::Link).unwrap();
    let sync_dir = ev.iter().position(|e| e.call == Call::SyncDir).unwrap();
    assert!(journal_link < syncfs && syncfs < first_rename, "{tr}");
    assert!(
        ev.iter().rposition(|e| e.call == Call::Rename).unwrap() < sync_dir,
        "{tr}"
    );
    assert_settled(d.path());
}

fn stage(dir: &Path, version: u32, n: usize) -> Transaction {
    let mut tx = Transaction::new();
    for i in 0..n {
        tx.write(dir.join(format!("f{i}")), format!("v{version}"))
            .unwrap();
    }
    tx
}

/// All of `n` files hold the same version; returns it.
fn same_version(dir: &Path, n: usize) -> String {
    let vs: Vec<_> = (0..n)
        .map(|i| read(&dir.join(format!("f{i}"))).unwrap_or_else(|| "none".into()))
        .collect();
    assert!(vs.iter().all(|v| *v == vs[0]), "a mix: {vs:?}");
    vs[0].clone()
}

#[test]
fn a_crash_at_any_call_leaves_all_old_or_all_new_after_recovery() {
    const N: usize = 4;
    // How many calls a commit makes.
    let d = dir();
    stage(d.path(), 1, N).commit().unwrap();
    let (tx, probe) = probed(&names(d.path(), N), "v2");
    tx.commit().unwrap();
    let total = probe.events().len();
    assert!(total > 20, "{}", probe.transcript());

    let (mut old, mut new) = (0, 0);
    for nth in 1..=total {
        let d = dir();
        stage(d.path(), 1, N).commit().unwrap();
        let (tx, probe) = probed(&names(d.path(), N), "v2");
        probe.die_at(nth);
        let r = tx.commit();
        // Recovery as the next process would run it: any untorn operation on one of the files.
        untorn_op_on(&d.path().join("f0"));
        recover_dir(d.path(), false).unwrap();
        match same_version(d.path(), N).as_str() {
            "v1" => old += 1,
            "v2" => new += 1,
            v => panic!("{v}"),
        }
        if r.is_ok() {
            assert_eq!(same_version(d.path(), N), "v2");
        }
        // What the dead process left: settled by recovery, except orphan temps of a commit that
        // died before its journal was published (for `untorn clean`).
        for e in fs::read_dir(d.path()).unwrap() {
            let n = e.unwrap().file_name();
            assert!(
                !is_journal_name(&n),
                "journal left after recovery at call {nth}"
            );
        }
    }
    assert!(
        old > 0 && new > 0,
        "crashes before and after the commit point: {old} {new}"
    );
}

/// A write to another name in the directory, then a read of `p` under its lock: both run the
/// automatic recovery.
fn untorn_op_on(p: &Path) {
    let _ = crate::read(p);
}

#[test]
fn a_plain_write_finishes_a_crashed_transaction_first() {
    const N: usize = 3;
    let d = dir();
    stage(d.path(), 1, N).commit().unwrap();
    let (tx, probe) = probed(&names(d.path(), N), "v2");
    // Die right after the first rename into place: committed, partly applied.
    probe.die_at_call(Some(Call::Rename), 2);
    assert!(tx.commit().is_err());
    let vs: Vec<_> = (0..N)
        .map(|i| read(&d.path().join(format!("f{i}"))).unwrap())
        .collect();
    assert!(
        vs.contains(&"v1".to_string()) && vs.contains(&"v2".to_string()),
        "a mix: {vs:?}"
    );
    // A plain write to f2 (not locking): the transaction is finished first, then the write.
    write(d.path().join("f2"), "v3").unwrap();
    assert_eq!(read(&d.path().join("f0")).unwrap(), "v2");
    assert_eq!(read(&d.path().join("f1")).unwrap(), "v2");
    assert_eq!(read(&d.path().join("f2")).unwrap(), "v3");
    assert_settled(d.path());
}

#[test]
fn a_transaction_over_a_half_cleaned_crash_recovers_it_without_deadlocking() {
    const N: usize = 3;
    let d = dir();
    stage(d.path(), 1, N).commit().unwrap();
    // The state a crash in the clean-up of a committed, applied transaction can leave (its
    // unsynced journal removal and flag clearing partly lost): the journal still there, the
    // flag of f0 (first in the lock order) cleared, those of f1 and f2 not.
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(d.path()).unwrap();
    let j = Journal {
        id: [1; 16],
        dirs: vec![crate::txn::journal::Dir {
            dev: m.dev(),
            ino: m.ino(),
            path: std::fs::canonicalize(d.path()).unwrap(),
        }],
        entries: vec![],
        locks: (0..N)
            .map(|i| crate::txn::journal::Name {
                dir: 0,
                name: format!("f{i}.lock").into(),
            })
            .collect(),
    };
    let name = journal_name(7);
    std::fs::write(d.path().join(&name), j.encode()).unwrap();
    for i in 1..N {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.path().join(format!("f{i}.lock")))
            .unwrap();
        f.set_len(7).unwrap();
    }
    // A new transaction over the same files takes f0's lock, then finds f1 flagged: it must
    // recover with none of its own locks held (else it waits for itself forever).
    let mut t3 = Transaction::new();
    let mut lo = LockOptions::new();
    lo.timeout(Duration::from_secs(5));
    t3.lock_options(lo);
    for i in 0..N {
        t3.write(d.path().join(format!("f{i}")), "v3").unwrap();
    }
    t3.commit().unwrap();
    for i in 0..N {
        assert_eq!(read(&d.path().join(format!("f{i}"))).unwrap(), "v3");
    }
    assert_settled(d.path());
}

#[test]
fn locks_are_held_and_taken_in_one_order() {
    let d = dir();
    let a = d.path().join("a");
    let b = d.path().join("b");
    // Another process holds b's lock: the commit waits, and times out without changing a.
    let held = lock(&b).unwrap();
    let mut tx = Transaction::new();
    let mut lo = LockOptions::new();
    lo.timeout(Duration::from_millis(100));
    tx.lock_options(lo);
    tx.write(&a, "new").unwrap();
    tx.write(&b, "new").unwrap();
    assert_eq!(tx.commit().unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(!a.exists());
    drop(held);
    // Opposite staging orders in two threads, many times: never a deadlock.
    std::thread::scope(|s| {
        for t in 0..2 {
            let (a, b) = (a.clone(), b.clone());
            s.spawn(move || {
                for i in 0..50 {
                    let mut tx = Transaction::new();
                    let (x, y) = if t == 0 { (&a, &b) } else { (&b, &a) };
                    tx.write(x, format!("{t}-{i}")).unwrap();
                    tx.write(y, format!("{t}-{i}")).unwrap();
                    tx.commit().unwrap();
                }
            });
        }
    });
    assert_eq!(read(&a), read(&b), "every transaction was all or nothing");
    assert_settled(d.path());
}

#[test]
fn a_flag_without_a_journal_is_cleared_and_reported_as_such() {
    // What a crash can leave: the flag of a transaction that never published its journal, or
    // whose journal's removal was durable before its flag's clearing.
    let d = dir();
    let (a, lock) = (d.path().join("a.json"), d.path().join("a.json.lock"));
    fs::write(&a, "old").unwrap();
    fs::write(&lock, [0u8; 5]).unwrap();
    let done = recover_dir(d.path(), false).unwrap();
    assert_eq!(done, vec![crate::txn::Recovered::FlagCleared(lock.clone())]);
    assert_eq!(fs::metadata(&lock).unwrap().len(), 0);
    assert_eq!(read(&a).unwrap(), "old");
    assert!(recover_dir(d.path(), false).unwrap().is_empty());
    // A plain write over such a flag clears it first, and goes on.
    fs::write(&lock, [0u8; 9]).unwrap();
    write(&a, "new").unwrap();
    assert_eq!(read(&a).unwrap(), "new");
    assert_settled(d.path());
}

#[test]
fn an_error_at_any_call_changes_all_or_nothing_and_leaves_nothing_behind() {
    const N: usize = 3;
    let count = {
        let d = dir();
        stage(d.path(), 1, N).commit().unwrap();
        let (tx, probe) = probed(&names(d.path(), N), "v2");
        tx.commit().unwrap();
        probe.events().len()
    };
    let (mut failed, mut ok, mut after) = (0, 0, 0);
    for nth in 1..=count {
        let d = dir();
        stage(d.path(), 1, N).commit().unwrap();
        let (tx, probe) = probed(&names(d.path(), N), "v2");
        probe.fail_nth(None, nth, crate::sys::errnos::EIO);
        let r = tx.commit();
        match &r {
            Ok(_) => {
                ok += 1;
                assert_eq!(same_version(d.path(), N), "v2", "call {nth}: committed");
            }
            Err(e) if e.to_string().contains("is committed but") => {
                // After the commit point (the files may be a mix for now): the next untorn
                // operation on any of them completes it.
                after += 1;
                untorn_op_on(&d.path().join("f1"));
                assert_eq!(same_version(d.path(), N), "v2", "call {nth}: {e}");
            }
            Err(e) => {
                failed += 1;
                let v = same_version(d.path(), N);
                assert_eq!(v, "v1", "call {nth}: failed ({e}) but the files changed");
            }
        }
        // Whatever happened, nothing is left once each file has seen an untorn operation (a
        // flag whose clearing failed is cleared by the next one): no journal, no flag, no temp.
        // The exception: when the failed call removed a name (a temp's, or a journal's in the
        // clean-up), that file stays, recognisable, and `untorn recover` removes it.
        if probe.events()[nth - 1].call == Call::Unlink {
            crate::recover::recover(d.path(), &crate::recover::RecoverOptions::default()).unwrap();
        }
        for i in 0..N {
            untorn_op_on(&d.path().join(format!("f{i}")));
        }
        assert_settled(d.path());
    }
    assert!(
        failed > 5 && ok > 0 && after >= N,
        "failed {failed}, failed after the commit point {after}, ok {ok} of {count}"
    );
}

/// `dir/f0` … `dir/f{n-1}`.
fn names(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n).map(|i| dir.join(format!("f{i}"))).collect()
}

/// A transaction staging `content` for each of `files`, through a probe (cleared: it holds
/// what the commit does).
fn probed(files: &[PathBuf], content: &str) -> (Transaction, Probe) {
    let probe = Probe::real();
    let mut tx = Transaction::new();
    tx.sys(Arc::new(probe.clone()) as Arc<dyn Sys>);
    for f in files {
        tx.write(f, content).unwrap();
    }
    probe.clear();
    (tx, probe)
}

/// `dir/f0` … `dir/f{n-1}`, each written with `content`.
fn files_at(dir: &Path, n: usize, content: &str) -> Vec<PathBuf> {
    let files = names(dir, n);
    for f in &files {
        write(f, content).unwrap();
    }
    files
}

/// A transaction over `files` that dies (through the probe) after its commit point, when
/// `renamed` of its files are renamed into place (0: right after its syncfs).
fn crash_mid_apply(files: &[PathBuf], content: &str, renamed: usize) {
    let (tx, probe) = probed(files, content);
    probe.die_at_call(Some(Call::Rename), renamed + 1);
    assert!(tx.commit().is_err());
    assert!(probe.fired());
}

#[test]
fn a_path_through_a_symlinked_directory_recovers_without_waiting_for_itself() {
    let d = dir();
    let real = d.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let files = files_at(&real, 2, "v1");
    crash_mid_apply(&files, "v2", 1);
    // A write through the other name: its recovery locks the journal's lock files (named
    // through `real`) and the one that led it there (through `link`): one file, locked once.
    let (tx, rx) = std::sync::mpsc::channel();
    let target = link.join("f1");
    std::thread::spawn(move || {
        let _ = tx.send(write(&target, "v3").map_err(|e| e.to_string()));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the write waited for its own lock");
    r.unwrap();
    assert_eq!(read(&files[0]).unwrap(), "v2", "rolled forward first");
    assert_eq!(read(&files[1]).unwrap(), "v3");
    assert_settled(&real);
}

#[test]
fn the_same_file_under_two_names_is_one_change() {
    let d = dir();
    fs::create_dir(d.path().join("sub")).unwrap();
    let mut tx = Transaction::new();
    tx.write(d.path().join("a"), "1").unwrap();
    let e = tx.write(d.path().join("sub/../a"), "2").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    drop(tx);
    assert!(!d.path().join("a").exists());
    assert_settled(d.path());
}

#[test]
fn a_write_to_the_file_behind_a_symlinked_target_finishes_the_transaction_first() {
    let d = dir();
    let real = d.path().join("real");
    fs::create_dir(&real).unwrap();
    let r = real.join("r");
    fs::write(&r, "v1").unwrap();
    let l = d.path().join("L");
    std::os::unix::fs::symlink(&r, &l).unwrap();
    let g = d.path().join("g");
    fs::write(&g, "v1").unwrap();
    // Committed (its syncfs returned), nothing renamed yet.
    crash_mid_apply(&[g.clone(), l.clone()], "v2", 0);
    assert_eq!(read(&r).unwrap(), "v1");
    // A write through the real name sees the flag beside it: the transaction is finished
    // first, so this later write is the last word.
    write(&r, "v3").unwrap();
    assert_eq!(read(&g).unwrap(), "v2");
    assert_eq!(read(&r).unwrap(), "v3");
    recover_dir(d.path(), false).unwrap();
    recover_dir(&real, false).unwrap();
    assert_eq!(
        read(&r).unwrap(),
        "v3",
        "a later write lost to a stale roll-forward"
    );
    assert_settled(d.path());
    assert_settled(&real);
}

#[test]
fn clean_leaves_the_temps_of_an_interrupted_transaction_to_recover() {
    const N: usize = 3;
    let d = dir();
    let files = files_at(d.path(), N, "v1");
    crash_mid_apply(&files, "v2", 1);
    let cleaned = CleanOptions::new()
        .older_than(Duration::ZERO)
        .clean(d.path())
        .unwrap();
    assert!(cleaned.removed.is_empty(), "{cleaned:?}");
    recover_dir(d.path(), false).unwrap();
    assert_eq!(same_version(d.path(), N), "v2");
    assert_settled(d.path());
}

#[test]
fn a_transaction_whose_directory_moved_since_the_crash_recovers_where_it_is() {
    // Journals name entries of their own directory, bound by its device and inode, not paths:
    // a directory moved between a crash and its recovery recovers in its new place.
    const N: usize = 3;
    let top = dir();
    let d = top.path().join("d");
    fs::create_dir(&d).unwrap();
    let files = files_at(&d, N, "v1");
    crash_mid_apply(&files, "v2", 1);
    let moved = top.path().join("moved");
    fs::rename(&d, &moved).unwrap();
    let done = recover_dir(&moved, false).unwrap();
    assert!(
        matches!(done.as_slice(), [crate::txn::Recovered::RolledForward(_)]),
        "{done:?}"
    );
    assert_eq!(same_version(&moved, N), "v2");
    assert_settled(&moved);
}

#[test]
fn a_transaction_across_directories_one_of_which_moved_is_refused_not_rolled_back() {
    let top = dir();
    let (d, e) = (top.path().join("d"), top.path().join("e"));
    fs::create_dir(&d).unwrap();
    fs::create_dir(&e).unwrap();
    let files = vec![d.join("a"), e.join("b")];
    for f in &files {
        fs::write(f, "v1").unwrap();
    }
    crash_mid_apply(&files, "v2", 0);
    let moved = top.path().join("moved");
    fs::rename(&e, &moved).unwrap();
    let err = recover_dir(&d, false).unwrap_err();
    assert!(
        err.to_string().contains("not that directory any more"),
        "{err}"
    );
    assert_eq!(
        read(&files[0]).unwrap(),
        "v1",
        "nothing undone, nothing half done"
    );
    // Back in its place, it rolls forward.
    fs::rename(&moved, &e).unwrap();
    recover_dir(&d, false).unwrap();
    assert_eq!(read(&files[0]).unwrap(), "v2");
    assert_eq!(read(&files[1]).unwrap(), "v2");
    assert_settled(&d);
    assert_settled(&e);
}

#[test]
fn a_dry_run_says_what_recovery_would_do() {
    const N: usize = 2;
    let d = dir();
    let files = files_at(d.path(), N, "v1");
    crash_mid_apply(&files, "v2", 0);
    // Committed: would roll forward.
    let plan = recover_dir(d.path(), true).unwrap();
    assert!(
        matches!(plan.as_slice(), [crate::txn::Recovered::RolledForward(_)]),
        "{plan:?}"
    );
    // Without one of its flags, the commit point was not reached: would roll back.
    fs::write(d.path().join("f1.lock"), "").unwrap();
    let plan = recover_dir(d.path(), true).unwrap();
    assert!(
        matches!(plan.as_slice(), [crate::txn::Recovered::RolledBack(_)]),
        "{plan:?}"
    );
    recover_dir(d.path(), false).unwrap();
    assert_eq!(same_version(d.path(), N), "v1");
    assert_settled(d.path());
}

/// Issue "nothing lost", item 4: a transaction on `real/c.json`, committed and then cut short
/// before its renames; a write through a symlink to that file must finish the transaction
/// first (it looks at the lock file of the file it changes, not of the link), so that the
/// next recovery cannot roll the transaction forward over the acknowledged write.
#[test]
fn a_write_through_a_link_to_a_file_of_a_crashed_transaction_is_never_undone() {
    let d = dir();
    let real = d.path().join("real");
    fs::create_dir(&real).unwrap();
    let c = real.join("c.json");
    let other = real.join("other.json");
    fs::write(&c, "v1").unwrap();
    fs::write(&other, "v1").unwrap();
    let link = d.path().join("link.json");
    std::os::unix::fs::symlink(&c, &link).unwrap();
    crash_mid_apply(&[other.clone(), c.clone()], "v2", 0);
    write(&link, "v3").unwrap();
    recover_dir(d.path(), false).unwrap();
    recover_dir(&real, false).unwrap();
    assert_eq!(read(&c).unwrap(), "v3", "the acknowledged write was undone");
    assert_eq!(
        read(&other).unwrap(),
        "v2",
        "the transaction was finished first"
    );
}

/// Issue "nothing lost", item 15: an error about the journal's temp names it plainly, beside
/// the transaction's files (it printed `/dir/./..untorn-txn.journal.untorn-….tmp`).
#[test]
fn a_journal_temp_error_names_a_plain_path() {
    let d = dir();
    let files = files_at(d.path(), 2, "v1");
    let probe = Probe::real();
    let mut tx = Transaction::new();
    tx.sys(Arc::new(probe.clone()) as Arc<dyn Sys>);
    for f in &files {
        tx.write(f, "v2").unwrap();
    }
    // Counting starts now: the next temp created is the journal's.
    probe.fail_nth(Some(Call::CreateTemp), 1, crate::sys::errnos::ENOSPC);
    let e = tx.commit().unwrap_err().to_string();
    assert!(!e.contains("/./") && !e.contains("/.."), "{e}");
    let shown = d.path().join(".untorn-txn-journal.untorn-");
    assert!(e.contains(shown.to_str().unwrap()), "{e}");
    assert_eq!(same_version(d.path(), 2), "v1");
    assert_settled(d.path());
}

/// A rename between two names of one file (hard links): rename(2) succeeds and does nothing
/// there, which left the source name in place although the commit reported it renamed; the
/// source must be gone, by the commit and by a roll-forward after a crash alike. Found by the
/// model test (crates/untorn-cli/tests/model.rs).
#[test]
fn a_rename_between_two_names_of_one_file_removes_the_source() {
    let d = dir();
    let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
    write(&a, "v1").unwrap();
    fs::hard_link(&a, &b).unwrap();
    let mut tx = Transaction::new();
    tx.rename(&a, &b).unwrap();
    tx.commit().unwrap();
    assert!(!a.exists(), "the source name is still there");
    assert_eq!(read(&b).unwrap(), "v1");
    assert_settled(d.path());
    // The same after a crash at the rename (after the commit point): recovery finishes it.
    fs::hard_link(&b, &c).unwrap();
    let probe = Probe::real();
    let mut tx = Transaction::new();
    tx.sys(Arc::new(probe.clone()) as Arc<dyn Sys>);
    tx.rename(&b, &c).unwrap();
    probe.clear();
    probe.die_at_call(Some(Call::Rename), 1);
    assert!(tx.commit().is_err());
    assert!(probe.fired());
    assert!(b.exists(), "the crash came before the rename");
    recover_dir(d.path(), false).unwrap();
    assert!(!b.exists(), "recovery left the source name");
    assert_eq!(read(&c).unwrap(), "v1");
    assert_settled(d.path());
}
