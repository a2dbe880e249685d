//! Appends: `untorn append --jsonl log.jsonl RECORD` in a loop (or in several loops at once).

#[cfg(test)]
use crate::json::record;
use crate::json::{describe, lock_is_empty, read_opt, record_sized, untorn_in, untorn_ok};
use crate::ops::{Acks, Ops};
use crate::workload::{leftover_temps, Checked, Workload};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;

const LOG: &str = "log.jsonl";
const LOCK: &str = "log.jsonl.lock";
const FRESH: &str = r#"{"fresh":"appended after the repair"}"#;

/// What the raw log held after its last whole record, as [`UntornAppend`] classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Nothing: the log ends with a whole record.
    Clean,
    /// Only zero bytes: the size reached the disk before the data (ext4 `data=writeback`).
    Zeros,
    /// The start of the record in flight, cut short.
    CutShort,
    /// The start of the record in flight, then zeros.
    CutShortThenZeros,
    /// Zeros and pieces of the records in flight (concurrent writers: one record's data
    /// reached the disk, another's did not).
    ZerosAndRecords,
    /// Anything else: bytes that are no record in flight (stale blocks of some earlier file,
    /// say).
    Garbage,
    /// A record in flight, whole but for its newline: not torn. A last line without newline
    /// that is JSON stays: the reader returns it, and the next append ends it.
    Unterminated,
}

/// What [`UntornAppend`] counted over the cycles it checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendStats {
    /// Cycles checked.
    pub cycles: u64,
    /// Cycles whose raw log had a torn tail that readers must leave out, by kind.
    pub zeros: u64,
    /// See [`Tail::CutShort`].
    pub cut_short: u64,
    /// See [`Tail::CutShortThenZeros`].
    pub cut_short_then_zeros: u64,
    /// See [`Tail::ZerosAndRecords`].
    pub zeros_and_records: u64,
    /// See [`Tail::Garbage`].
    pub garbage: u64,
    /// The longest torn tail, in bytes.
    pub max_tail_bytes: u64,
    /// Records beyond the acknowledged ones found on disk (appends in flight), over all
    /// cycles and writers.
    pub unacked_on_disk: u64,
    /// Cycles where the log did not exist yet (cut before the first append was durable).
    pub no_log: u64,
    /// Temp files left behind, over all cycles (an append makes none).
    pub leftover_temps: u64,
    /// Cycles whose log ended in a whole record without its newline (kept, see
    /// [`Tail::Unterminated`]).
    pub unterminated: u64,
    /// Cycles whose garbage tail held a complete line that is not JSON, which untorn refuses to
    /// cut (exit 12, the log unchanged): a complete line is never removed.
    pub refused: u64,
}

impl AppendStats {
    /// Cycles with any torn tail.
    pub fn torn(&self) -> u64 {
        self.zeros
            + self.cut_short
            + self.cut_short_then_zeros
            + self.zeros_and_records
            + self.garbage
    }

    /// Cycles with zeros where data should be (zero-filled, cut short then zeros, or zeros
    /// among records): the size reached the disk before the data.
    pub fn zero_filled(&self) -> u64 {
        self.zeros + self.cut_short_then_zeros + self.zeros_and_records
    }
}

impl fmt::Display for AppendStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} torn tails left out by the reader and repaired ({} with zeros where data should \
             be: {} all zeros, {} cut short then zeros, {} zeros among records in flight; {} cut \
             short; {} garbage; longest {} bytes), {} unacknowledged records on disk ({} whole \
             but for the newline, kept), {} garbage tails refused, {} without a log yet, {} \
             leftover temps",
            self.torn(),
            self.zero_filled(),
            self.zeros,
            self.cut_short_then_zeros,
            self.zeros_and_records,
            self.cut_short,
            self.garbage,
            self.max_tail_bytes,
            self.unacked_on_disk,
            self.unterminated,
            self.refused,
            self.no_log,
            self.leftover_temps
        )
    }
}

/// `untorn append --jsonl log.jsonl RECORD` in a loop: operation `n` appends
/// [`record(None, n)`](crate::record) (`{"n":N,"pad":"..."}`, 50 to 2000 bytes). With
/// [`writers(w)`](UntornAppend::writers), `w` loops append at once, writer `i` appending
/// `record(Some(i), 1)`, `record(Some(i), 2)`, ... (operation ids interleave: writer `i`'s
/// record `n` is operation `(n - 1) * w + i + 1`). Concurrent appenders share journal commits
/// (each releases the lock before its `fdatasync`), which is what lets ext4
/// `data=writeback` commit a record's new size before its data: a zero-filled tail.
///
/// Setup makes nothing (unless [`precreated`](UntornAppend::precreated)): the first append
/// creates the log. The check after the cut:
///
/// - the raw log is, from its start, each writer's records `1..=k` in order, each exactly once,
///   with `k >= ` its last acknowledged record (the log may be missing only if no append was
///   acknowledged), then possibly a **torn tail** (counted by kind: [`Tail`]), or the record in
///   flight whole but for its newline ([`Tail::Unterminated`]: a record, kept);
/// - `untorn tail -n 100000 --jsonl` prints exactly those whole records: the tail left out;
/// - `untorn repair --jsonl` leaves exactly those records, and a fresh `untorn append --jsonl`
///   after it lands on a clean line boundary: every line of the log is a whole record;
/// - except for a garbage tail holding a complete line that is not JSON, which untorn cannot
///   prove torn: then `tail` and `repair` must both refuse (exit 12) and leave the log as it
///   was (counted, and noted);
/// - the lock file is empty; temps are counted; anything else in the directory is a violation.
#[derive(Debug)]
pub struct UntornAppend {
    untorn: PathBuf,
    args: Vec<String>,
    writers: u64,
    sizes: RangeInclusive<usize>,
    precreate: bool,
    stats: Mutex<AppendStats>,
}

impl UntornAppend {
    /// The workload running the `untorn` binary at this path, one writer.
    pub fn new(untorn: impl Into<PathBuf>) -> Self {
        UntornAppend {
            untorn: untorn.into(),
            args: Vec::new(),
            writers: 1,
            sizes: 50..=2000,
            precreate: false,
            stats: Mutex::new(AppendStats::default()),
        }
    }

    /// `n` concurrent appending loops (default 1).
    pub fn writers(mut self, n: u64) -> Self {
        assert!(n >= 1, "at least one writer");
        self.writers = n;
        self
    }

    /// Record sizes in bytes (default 50 to 2000). A record goes to `untorn append` as an
    /// argument, or on stdin if it is over 64 KiB.
    pub fn sizes(mut self, sizes: RangeInclusive<usize>) -> Self {
        self.sizes = sizes;
        self
    }

    /// Setup creates the log, empty (by default the first append creates it, and a cut
    /// before that append returned may leave no log).
    pub fn precreated(mut self) -> Self {
        self.precreate = true;
        self
    }

    /// Extra arguments of every `untorn append`, e.g. `["--durability", "none"]`.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// What the checks counted so far.
    pub fn stats(&self) -> AppendStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, w: u64, n: u64) -> Vec<u8> {
        record_sized((self.writers > 1).then_some(w), n, self.sizes.clone())
    }

    fn op_id(&self, w: u64, n: u64) -> u64 {
        (n - 1) * self.writers + w + 1
    }

    /// (writer, record number) of an operation id.
    fn of_id(&self, id: u64) -> (u64, u64) {
        ((id - 1) % self.writers, (id - 1) / self.writers + 1)
    }

    fn writer_loop(&self, dir: &Path, ops: &Ops, w: u64) -> Result<(), String> {
        let mut n = 0;
        while ops.running() {
            n += 1;
            let rec = self.record(w, n);
            let mut cmd = Command::new(&self.untorn);
            cmd.current_dir(dir)
                .args(["append", "--jsonl"])
                .args(&self.args)
                .arg(LOG);
            // The record as an argument, as a user would; a large one on stdin.
            let stdin = if rec.len() <= 64 << 10 {
                cmd.arg(std::str::from_utf8(&rec).expect("records are ASCII"));
                None
            } else {
                Some(rec.as_slice())
            };
            let id = self.op_id(w, n);
            ops.begin(id);
            let done = ops
                .run(&mut cmd, stdin)
                .map_err(|e| format!("cannot run {}: {e}", self.untorn.display()))?;
            if !done.success() {
                return ops.failed(format_args!(
                    "untorn append (writer {w}, record #{n}, {} bytes) failed with the power \
                     on: {done}",
                    rec.len()
                ));
            }
            ops.ack(id);
        }
        Ok(())
    }

    /// For a line the reader accepted beyond the whole records (at file offset `at`): which
    /// record in flight it starts like, and where (file offset, offset in a file-system block)
    /// it stops being that record.
    fn explain(&self, dir: &Path, extra: &[u8], at: usize, next: &[u64]) -> String {
        let block = rustix::fs::statvfs(dir).map_or(4096, |s| s.f_bsize.max(1) as usize);
        let line = extra.split(|&b| b == b'\n').next().unwrap_or_default();
        let best = next
            .iter()
            .enumerate()
            .map(|(w, &n)| {
                let r = self.record(w as u64, n);
                let same = r.iter().zip(line).take_while(|(a, b)| a == b).count();
                (same, w, n, r.len())
            })
            .max();
        match best {
            Some((same, w, n, len)) if same > 0 => {
                let off = at + same;
                format!(
                    " (its first line, {} bytes, is writer {w}'s record #{n} ({len} bytes) for \
                     {same} bytes, then other bytes from file offset {off}, offset {} in a \
                     {block}-byte block of the file system: a record that was never written, \
                     yet valid JSON)",
                    line.len(),
                    off % block
                )
            }
            _ => String::new(),
        }
    }

    /// Classifies the bytes after the last whole record.
    fn classify(&self, junk: &[u8], next: &[u64]) -> Tail {
        if junk.is_empty() {
            return Tail::Clean;
        }
        if junk.iter().all(|&b| b == 0) {
            return Tail::Zeros;
        }
        let data_len = junk.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        for (w, &n) in next.iter().enumerate() {
            let mut rec = self.record(w as u64, n);
            rec.push(b'\n');
            if junk.len() <= rec.len() && rec.starts_with(&junk[..data_len]) {
                return if data_len == junk.len() {
                    Tail::CutShort
                } else {
                    Tail::CutShortThenZeros
                };
            }
        }
        // Every run of non-zero bytes a piece of some writer's record in flight?
        let recs: Vec<Vec<u8>> = next
            .iter()
            .enumerate()
            .map(|(w, &n)| {
                let mut r = self.record(w as u64, n);
                r.push(b'\n');
                r
            })
            .collect();
        let from_records = junk
            .split(|&b| b == 0)
            .filter(|run| !run.is_empty())
            .all(|run| recs.iter().any(|r| contains(r, run)));
        if from_records {
            Tail::ZerosAndRecords
        } else {
            Tail::Garbage
        }
    }
}

/// Saves the raw log outside the mount (it is removed with the cycle's directory) for a
/// closer look; says where.
fn keep_evidence(raw: &[u8]) -> String {
    let dir = std::env::temp_dir().join("untorn-testbed-evidence");
    let path = dir.join(format!(
        "log-{}-{:08x}.jsonl",
        std::process::id(),
        fastrand::u32(..)
    ));
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, raw)) {
        Ok(()) => format!(" (the raw log is kept in {})", path.display()),
        Err(_) => String::new(),
    }
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

impl Workload for UntornAppend {
    fn name(&self) -> String {
        let mut name = String::from("untorn append --jsonl");
        for a in &self.args {
            name.push(' ');
            name.push_str(a);
        }
        if self.writers > 1 {
            name.push_str(&format!(" ({} writers)", self.writers));
        }
        name
    }

    fn setup(&self, dir: &Path) -> Result<(), String> {
        if self.precreate {
            std::fs::write(dir.join(LOG), "").map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn run(&self, dir: &Path, ops: &Ops) -> Result<(), String> {
        if self.writers == 1 {
            return self.writer_loop(dir, ops, 0);
        }
        thread::scope(|s| {
            let loops: Vec<_> = (0..self.writers)
                .map(|w| s.spawn(move || self.writer_loop(dir, ops, w)))
                .collect();
            let mut result = Ok(());
            for l in loops {
                let r = l.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })
    }

    fn check(&self, dir: &Path, acks: &Acks) -> Result<Checked, String> {
        let temps = leftover_temps(dir, &[LOG, LOCK])?;
        let writers = self.writers as usize;
        // Per writer: the last acknowledged record (0: none), and the last begun.
        let mut lo = vec![0u64; writers];
        let mut hi = vec![0u64; writers];
        for &id in &acks.acked {
            let (w, n) = self.of_id(id);
            lo[w as usize] = lo[w as usize].max(n);
        }
        for &id in acks.begun.iter().chain(&acks.acked).chain(&acks.late) {
            let (w, n) = self.of_id(id);
            hi[w as usize] = hi[w as usize].max(n);
        }
        let mut stats = AppendStats {
            cycles: 1,
            leftover_temps: temps.len() as u64,
            ..AppendStats::default()
        };
        let Some(raw) = read_opt(dir, LOG)? else {
            if self.precreate {
                return Err("log.jsonl, created before the cycle, is gone".into());
            }
            if let Some(w) = (0..writers).find(|&w| lo[w] > 0) {
                return Err(format!(
                    "log.jsonl is gone, but writer {w}'s record #{} had been acknowledged",
                    lo[w]
                ));
            }
            stats.no_log = 1;
            self.add(&stats);
            return Ok(Checked {
                leftover_temps: temps,
                notes: Vec::new(),
            });
        };
        lock_is_empty(dir, LOCK)?;

        // The whole records from the start, each writer's in order.
        let mut next = vec![1u64; writers];
        let mut good = 0;
        while let Some(nl) = raw[good..].iter().position(|&b| b == b'\n') {
            let line = &raw[good..good + nl];
            let Some(w) = (0..writers).find(|&w| line == self.record(w as u64, next[w])) else {
                break;
            };
            next[w] += 1;
            good += nl + 1;
        }
        let junk = &raw[good..];
        // The record in flight, whole but for its newline (its page reached the disk, the
        // next did not): it stays, as a record.
        let unterminated =
            (0..writers).find(|&w| !junk.is_empty() && junk == &self.record(w as u64, next[w])[..]);
        if let Some(w) = unterminated {
            next[w] += 1;
        }
        let tail = match unterminated {
            Some(_) => Tail::Unterminated,
            None => self.classify(junk, &next),
        };
        // What the reader returns, and a repair leaves: the whole records.
        let kept = if unterminated.is_some() {
            &raw[..]
        } else {
            &raw[..good]
        };
        let mut kept_lines = kept.to_vec();
        if unterminated.is_some() {
            kept_lines.push(b'\n');
        }
        let state = || {
            let ks: Vec<u64> = next.iter().map(|n| n - 1).collect();
            format!(
                "log.jsonl ({} bytes) holds whole records up to {ks:?} (per writer), then {}",
                raw.len(),
                if junk.is_empty() {
                    "nothing".to_string()
                } else {
                    describe(junk, &format!("a {tail:?} tail"))
                }
            )
        };
        for w in 0..writers {
            let k = next[w] - 1;
            if k < lo[w] {
                return Err(format!(
                    "lost acknowledged records: writer {w}'s record #{} had returned; {}",
                    lo[w],
                    state()
                ));
            }
            if k > hi[w] {
                return Err(format!(
                    "writer {w}'s record #{k} was never appended; {}",
                    state()
                ));
            }
            stats.unacked_on_disk += u64::from(k > lo[w]);
        }
        if tail == Tail::Garbage && junk.len() > self.sizes.end() * writers + 8192 {
            // More than the records in flight and a page: this is not a torn tail.
            return Err(format!("bytes in the middle of the log: {}", state()));
        }

        // A garbage tail that holds a complete line which is not JSON: untorn cannot prove it
        // torn, so every command refuses it (exit 12) and changes nothing.
        if tail == Tail::Garbage && junk.contains(&b'\n') {
            let t = untorn_in(&self.untorn, dir, &["tail", "-n", "100000", "--jsonl", LOG])?;
            let r = untorn_in(&self.untorn, dir, &["repair", "--jsonl", LOG])?;
            if t.status.code() == Some(12) && r.status.code() == Some(12) {
                if read_opt(dir, LOG)?.unwrap_or_default() != raw {
                    return Err(format!("a refused repair changed the log; {}", state()));
                }
                stats.refused = 1;
                self.add(&stats);
                return Ok(Checked {
                    leftover_temps: temps,
                    notes: vec![format!("garbage tail refused (exit 12): {}", state())],
                });
            }
        }

        // The reader leaves the torn tail out, and nothing else.
        let tailed = untorn_ok(&self.untorn, dir, &["tail", "-n", "100000", "--jsonl", LOG])?;
        if tailed != kept_lines {
            let extra = tailed.get(good..).unwrap_or_default();
            let what = if extra.is_empty() {
                String::new()
            } else {
                format!(
                    "{}{}",
                    describe(extra, ": beyond them"),
                    self.explain(dir, extra, good, &next)
                )
            };
            return Err(format!(
                "`untorn tail` printed {} bytes, not the {} bytes of whole records{what}; \
                 {}{}",
                tailed.len(),
                kept_lines.len(),
                state(),
                keep_evidence(&raw)
            ));
        }
        // Repair cuts the tail off; a fresh append after it starts a clean line.
        let repaired = untorn_in(&self.untorn, dir, &["repair", "--jsonl", LOG])?;
        if !repaired.status.success() {
            return Err(format!(
                "`untorn repair` failed ({}): {}; {}",
                repaired.status,
                String::from_utf8_lossy(&repaired.stderr).trim(),
                state()
            ));
        }
        let after = read_opt(dir, LOG)?.unwrap_or_default();
        if after != kept {
            return Err(format!(
                "after `untorn repair` the log is {} bytes, not the {} bytes of whole \
                 records; {}",
                after.len(),
                kept.len(),
                state()
            ));
        }
        untorn_ok(&self.untorn, dir, &["append", "--jsonl", LOG, FRESH])?;
        let mut expected = kept_lines.clone();
        expected.extend_from_slice(FRESH.as_bytes());
        expected.push(b'\n');
        let fresh = read_opt(dir, LOG)?.unwrap_or_default();
        if fresh != expected {
            return Err(describe(
                &fresh[good.min(fresh.len())..],
                "after repair and a fresh append, the log does not end with the fresh record",
            ));
        }

        let mut notes = Vec::new();
        match tail {
            Tail::Clean => {}
            Tail::Zeros => stats.zeros = 1,
            Tail::CutShort => stats.cut_short = 1,
            Tail::CutShortThenZeros => stats.cut_short_then_zeros = 1,
            Tail::ZerosAndRecords => stats.zeros_and_records = 1,
            Tail::Garbage => {
                stats.garbage = 1;
                notes.push(format!("garbage tail left out: {}", state()));
            }
            Tail::Unterminated => stats.unterminated = 1,
        }
        stats.max_tail_bytes = if unterminated.is_some() {
            0
        } else {
            junk.len() as u64
        };
        self.add(&stats);
        Ok(Checked {
            leftover_temps: temps,
            notes,
        })
    }
}

impl UntornAppend {
    fn add(&self, c: &AppendStats) {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.cycles += c.cycles;
        s.zeros += c.zeros;
        s.cut_short += c.cut_short;
        s.cut_short_then_zeros += c.cut_short_then_zeros;
        s.zeros_and_records += c.zeros_and_records;
        s.garbage += c.garbage;
        s.max_tail_bytes = s.max_tail_bytes.max(c.max_tail_bytes);
        s.unacked_on_disk += c.unacked_on_disk;
        s.no_log += c.no_log;
        s.leftover_temps += c.leftover_temps;
        s.unterminated += c.unterminated;
        s.refused += c.refused;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_tails_are_classified() {
        let w = UntornAppend::new("untorn").writers(3);
        for writer in 0..3 {
            for n in 1..10 {
                assert_eq!(w.of_id(w.op_id(writer, n)), (writer, n));
            }
        }
        let one = UntornAppend::new("untorn");
        assert_eq!(one.op_id(0, 7), 7);
        let next = [5];
        let rec = record(None, 5);
        assert_eq!(one.classify(b"", &next), Tail::Clean);
        assert_eq!(one.classify(&[0; 100], &next), Tail::Zeros);
        assert_eq!(one.classify(&rec[..30], &next), Tail::CutShort);
        let mut z = rec[..30].to_vec();
        z.extend_from_slice(&[0; 50]);
        assert_eq!(one.classify(&z, &next), Tail::CutShortThenZeros);
        assert_eq!(
            one.classify(b"{\"n\":1,\"pad\":\"x\"}\n", &next),
            Tail::Garbage
        );
        assert_eq!(one.classify(&record(None, 4)[..30], &next), Tail::Garbage);
        let two = UntornAppend::new("untorn").writers(2);
        let (a, b) = (record(Some(0), 3), record(Some(1), 8));
        let mut mixed = vec![0; a.len() + 1];
        mixed.extend_from_slice(&b[..b.len() / 2]);
        mixed.extend_from_slice(&[0; 10]);
        assert_eq!(two.classify(&mixed, &[3, 8]), Tail::ZerosAndRecords);
        mixed.push(0xff);
        assert_eq!(two.classify(&mixed, &[3, 8]), Tail::Garbage);
    }
}
