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

/// Every order of `0..n`, in a fixed sequence (n! of them: 2 for 2 contenders, 6 for 3). Cycling
/// through them, one per round, runs each contender first, middle and last equally often, and puts
/// each right after each other one equally often (within rounds; the seams between rounds add a
/// little imbalance): a fixed rotation would have every contender follow the same one nearly
/// always, and pay for its aftermath (its writeback, discards, evicted caches) more than the
/// others.
pub fn orders(n: usize) -> Vec<Vec<usize>> {
    if n <= 1 {
        return vec![(0..n).collect()];
    }
    let mut out = Vec::new();
    for o in orders(n - 1) {
        for pos in 0..n {
            let mut v = o.clone();
            v.insert(pos, n - 1);
            out.push(v);
        }
    }
    out
}

/// Runs `contenders` contenders interleaved, `op(i)` being one operation of contender `i`:
/// `warmup` untimed rounds, then `rounds` timed ones, each round running every contender once in
/// the next of all the [`orders`], each timed operation preceded by an untimed [`settle`] of
/// `root` (if `settle_on`). Prints a dot to stderr every quarter of a long run. Returns the times
/// per contender, per round (nanoseconds).
pub fn interleave(
    contenders: usize,
    warmup: usize,
    rounds: usize,
    root: &OwnedFd,
    settle_on: bool,
    mut op: impl FnMut(usize) -> Res<()>,
) -> Res<Vec<Vec<f64>>> {
    let orders = orders(contenders);
    for r in 0..warmup {
        for &i in &orders[r % orders.len()] {
            op(i)?;
        }
    }
    let mut times = vec![Vec::with_capacity(rounds); contenders];
    for r in 0..rounds {
        // Round-robin, in the next of all the orders.
        for &i in &orders[r % orders.len()] {
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
    fn every_order_once() {
        assert_eq!(orders(1), vec![vec![0]]);
        let o = orders(3);
        assert_eq!(o.len(), 6);
        let mut sorted = o.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 6);
        // Each contender first equally often.
        for c in 0..3 {
            assert_eq!(o.iter().filter(|v| v[0] == c).count(), 2);
        }
    }

    #[test]
    fn data_is_reproducible() {
        assert_eq!(make_data(13, 7), make_data(13, 7));
        assert_eq!(make_data(13, 7).len(), 13);
        assert_ne!(make_data(64, 7), make_data(64, 9));
    }
}
