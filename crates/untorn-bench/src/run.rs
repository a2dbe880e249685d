//! How the contenders are run: in a fresh work directory, interleaved round by round in every
//! order, each timed operation after the file system has settled.

use crate::stats::Rng;
use crate::Res;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self as rfs, Mode, OFlags};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Creates `dir` if needed and an empty `dir/name` (removing one left by an interrupted run), and
/// opens it: the descriptor is what [`settle`] syncs. The caller removes the directory at the end.
pub fn fresh_work_dir(dir: &Path, name: &str) -> Res<(PathBuf, OwnedFd)> {
    std::fs::create_dir_all(dir)?;
    let work = dir.join(name);
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir(&work)?;
    let root = rfs::open(
        &work,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok((work, root))
}

/// `size` reproducible pseudo-random bytes (from `seed`): content that no layer can compress or
/// deduplicate, the same in every run.
pub fn make_data(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(size);
    v
}

/// Flushes everything the file system of `root` still owes (journal commits of earlier unlinks
/// and renames), if `on`, so that the next timed operation does not pay for its predecessor.
pub fn settle(root: impl AsFd, on: bool) -> Res<()> {
    if on {
        rfs::syncfs(root)?;
    }
    Ok(())
}

/// The seed of a run's shuffles when the benchmark is given none: the clock, so that repeated
/// runs do not all share one sequence of orders (the benchmarks print it, to replay a run).
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
        | 1
}

/// Runs `contenders` contenders interleaved, `op(i)` being one operation of contender `i`:
/// `warmup` untimed rounds, then `rounds` timed ones, each round running every contender once in
/// a **fresh random order** (drawn from `rng`), each timed operation preceded by an untimed
/// [`settle`] of `root` (if `settle_on`). A fixed rotation would have each contender follow the
/// same neighbour nearly always and pay for its aftermath (its uncommitted journal work,
/// writeback, evicted caches: 2–4% on these machines); shuffled, every contender follows every
/// other equally often in expectation. Prints a dot to stderr every quarter of a long run.
/// Returns the times per contender, per round (nanoseconds).
pub fn interleave(
    contenders: usize,
    warmup: usize,
    rounds: usize,
    root: &OwnedFd,
    settle_on: bool,
    rng: &mut Rng,
    mut op: impl FnMut(usize) -> Res<()>,
) -> Res<Vec<Vec<f64>>> {
    let mut order: Vec<usize> = (0..contenders).collect();
    for _ in 0..warmup {
        rng.shuffle(&mut order);
        for &i in &order {
            op(i)?;
        }
    }
    let mut times = vec![Vec::with_capacity(rounds); contenders];
    for r in 0..rounds {
        rng.shuffle(&mut order);
        for &i in &order {
            settle(root, settle_on)?;
            let start = Instant::now();
            op(i)?;
            times[i].push(start.elapsed().as_nanos() as f64);
        }
        if rounds >= 20 && (r + 1).is_multiple_of(rounds / 4) {
            eprint!(".");
        }
    }
    Ok(times)
}

/// Runs one phase of a benchmark (`f`) under a progress line on stderr: `label`, the dots
/// [`interleave`] prints, then the seconds it took; a long run shows it is alive and where.
pub fn phase<T>(label: &str, f: impl FnOnce() -> Res<T>) -> Res<T> {
    eprint!("{label} ");
    let started = Instant::now();
    let r = f()?;
    eprintln!(" {:.1} s", started.elapsed().as_secs_f64());
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_rounds_run_everyone_once() {
        let dir = std::env::temp_dir().join(format!("untorn-bench-run-{}", std::process::id()));
        let (work, root) = fresh_work_dir(&dir, "t").unwrap();
        let mut seen = vec![Vec::new(); 3];
        let mut k = 0;
        let t = interleave(3, 1, 40, &root, false, &mut Rng(7), |i| {
            seen[i].push(k);
            k += 1;
            Ok(())
        })
        .unwrap();
        assert!(t.iter().all(|v| v.len() == 40));
        assert!(seen.iter().all(|v| v.len() == 41));
        // Not a fixed rotation: contender 0 is not always first.
        let firsts = (0..41).filter(|r| seen[0][*r] % 3 == 0).count();
        assert!(firsts > 3 && firsts < 38, "{firsts}");
        drop(root);
        std::fs::remove_dir_all(&work).unwrap();
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn data_is_reproducible() {
        assert_eq!(make_data(13, 7), make_data(13, 7));
        assert_eq!(make_data(13, 7).len(), 13);
        assert_ne!(make_data(64, 7), make_data(64, 9));
    }
}
