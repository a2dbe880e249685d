//! What a running workload tells the driver: which operations began, which were acknowledged,
//! and the processes to kill when the power is cut.

use rustix::process::{kill_process_group, waitid, Pid, Signal, WaitId, WaitIdOptions};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

/// The processes started through [`Ops`] that have not been reaped yet: pid (= process group
/// id) and whether it was killed.
type Groups = HashMap<i32, bool>;

const RUNNING: u8 = 0;
const CUTTING: u8 = 1;
const STOPPED: u8 = 2;

/// The handle a [`Workload::run`](crate::Workload::run) records its progress in, and runs its
/// processes through.
///
/// Protocol: before operation `n` starts, [`begin(n)`](Ops::begin); once it has *returned
/// success* (the caller was told it is done, e.g. `untorn` exited 0),
/// [`ack(n)`](Ops::ack). Loop while [`running`](Ops::running). Run processes with
/// [`run`](Ops::run) or [`run_child`](Ops::run_child), so the driver can kill them after the
/// cut (each in its own process group, killed as a group).
#[derive(Debug)]
pub struct Ops {
    state: AtomicU8,
    begun: Mutex<Vec<u64>>,
    acked: Mutex<Vec<u64>>,
    late: Mutex<Vec<u64>>,
    groups: Mutex<Groups>,
}

/// What [`Ops`] recorded: the operations begun and acknowledged, in order.
///
/// An acknowledgement counts ([`acked`](Acks::acked)) only if it was recorded before the cut
/// began. One recorded after ([`late`](Acks::late)) proves nothing: the shutdown ioctl stops
/// the file system but not the processes, and a system call after it may report success
/// although nothing reached the disk. Seen here: on xfs, `fsync` of a directory returns 0
/// after the shutdown (it only forces the log if the directory is still pinned in it, and the
/// shutdown unpins everything), while the rename it should have made durable is lost. After a
/// real power cut no process is left to be told anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acks {
    /// Every `n` passed to [`Ops::begin`] (or printed as `BEGIN n`), in order.
    pub begun: Vec<u64>,
    /// Every `n` acknowledged ([`Ops::ack`], or printed as `ACK n`) before the cut began, in
    /// order. Each must survive the cut.
    pub acked: Vec<u64>,
    /// Every `n` acknowledged after the cut began: it may or may not have survived.
    pub late: Vec<u64>,
}

impl Acks {
    /// The highest acknowledged operation: it (and, for a sequential workload, every one
    /// before it) must be in the recovered state.
    pub fn last_acked(&self) -> Option<u64> {
        self.acked.iter().copied().max()
    }

    /// The highest operation begun: the recovered state may include it, and nothing later.
    /// When the workload never called [`Ops::begin`], the last acknowledged one (late or not).
    pub fn last_begun(&self) -> Option<u64> {
        let late = self.late.iter().copied().max();
        self.begun
            .iter()
            .copied()
            .max()
            .max(self.last_acked())
            .max(late)
    }
}

/// How a process run by [`Ops::run`] or [`Ops::run_child`] ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// All it wrote to stdout.
    pub stdout: Vec<u8>,
    /// All it wrote to stderr.
    pub stderr: Vec<u8>,
    /// Whether the driver killed it (after the cut).
    pub killed: bool,
}

impl Finished {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl fmt::Display for Finished {
    /// `exit status: 1: <stderr>`, or `killed after the power cut`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.killed {
            return f.write_str("killed after the power cut");
        }
        write!(f, "{}", self.status)?;
        let err = String::from_utf8_lossy(&self.stderr);
        if !err.trim().is_empty() {
            write!(f, ": {}", err.trim())?;
        }
        Ok(())
    }
}

impl Default for Ops {
    fn default() -> Self {
        Self::new()
    }
}

impl Ops {
    /// A fresh record, in the running state. The driver makes one per cycle; make your own
    /// only to try a workload without a bed.
    pub fn new() -> Self {
        Ops {
            state: AtomicU8::new(RUNNING),
            begun: Mutex::new(Vec::new()),
            acked: Mutex::new(Vec::new()),
            late: Mutex::new(Vec::new()),
            groups: Mutex::new(Groups::new()),
        }
    }

    /// Whether the workload should go on: false once the cut has begun. A workload loops
    /// `while ops.running()`.
    pub fn running(&self) -> bool {
        self.state.load(Ordering::SeqCst) == RUNNING
    }

    /// Records that operation `n` is about to start.
    pub fn begin(&self, n: u64) {
        self.begun.lock().unwrap_or_else(|e| e.into_inner()).push(n);
    }

    /// Records that operation `n` has returned success: the workload was told it is durable.
    /// Call it right after the operation returned: if the cut has begun meanwhile, the
    /// acknowledgement is [late](Acks::late) and not held against the recovered state.
    pub fn ack(&self, n: u64) {
        // SeqCst: if this load sees RUNNING, the operation returned before the driver's store
        // of CUTTING, which comes before the shutdown.
        let list = if self.running() {
            &self.acked
        } else {
            &self.late
        };
        list.lock().unwrap_or_else(|e| e.into_inner()).push(n);
    }

    /// What a workload returns when an operation failed: `Ok(())` once the cut has begun (the
    /// failure is the cut's doing: EIO, or killed), else `Err(what)`, which the driver records
    /// as a violation (an operation failed with the power on).
    pub fn failed(&self, what: impl fmt::Display) -> Result<(), String> {
        if self.running() {
            Err(what.to_string())
        } else {
            Ok(())
        }
    }

    /// What has been recorded so far.
    pub fn acks(&self) -> Acks {
        Acks {
            begun: self.begun.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            acked: self.acked.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            late: self.late.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    pub(crate) fn start_cut(&self) {
        self.state.store(CUTTING, Ordering::SeqCst);
    }

    /// Enters the stopped state and kills every process group started through `self` that is
    /// still running; any started from now on is killed at once.
    pub(crate) fn stop(&self) {
        self.state.store(STOPPED, Ordering::SeqCst);
        let mut groups = self.lock_groups();
        for (&pid, killed) in groups.iter_mut() {
            kill_group(pid);
            *killed = true;
        }
    }

    fn lock_groups(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `cmd` to its end, feeding it `stdin` (or `/dev/null` if `None`), collecting its
    /// stdout and stderr. If the power is cut meanwhile, the process (and its process group) is
    /// killed right after the cut.
    ///
    /// The command's stdin, stdout, stderr and process group are set here.
    pub fn run(&self, cmd: &mut Command, stdin: Option<&[u8]>) -> io::Result<Finished> {
        self.spawn_wait(cmd, stdin, false)
    }

    /// Runs `cmd`, a child that loops over operations by itself, and records what it prints
    /// on stdout: a line `BEGIN <n>` as [`begin(n)`](Ops::begin), `ACK <n>` as
    /// [`ack(n)`](Ops::ack); other lines are kept in [`Finished::stdout`]. A line is recorded
    /// when it is read, so one printed just before the cut may count as late (the safe side).
    /// The child is killed with its process group after the cut; it must not leave background
    /// processes holding its stdout when it exits.
    ///
    /// ```no_run
    /// # use untorn_testbed::Ops;
    /// # use std::process::Command;
    /// # fn run(ops: &Ops) -> Result<(), String> {
    /// let script = r#"n=0; while :; do n=$((n+1)); echo BEGIN $n
    ///                 untorn write f "$n" || exit 1; echo ACK $n; done"#;
    /// let done = ops
    ///     .run_child(Command::new("sh").args(["-c", script]))
    ///     .map_err(|e| e.to_string())?;
    /// ops.failed(format_args!("the loop stopped: {done}"))
    /// # }
    /// ```
    pub fn run_child(&self, cmd: &mut Command) -> io::Result<Finished> {
        self.spawn_wait(cmd, None, true)
    }

    fn spawn_wait(
        &self,
        cmd: &mut Command,
        stdin: Option<&[u8]>,
        protocol: bool,
    ) -> io::Result<Finished> {
        cmd.process_group(0)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn(cmd)?;
        let pid = Pid::from_child(&child);
        {
            // `stop` stores STOPPED before it takes the lock: either it sees this group, or
            // this sees STOPPED.
            let mut groups = self.lock_groups();
            let stopped = self.state.load(Ordering::SeqCst) == STOPPED;
            if stopped {
                kill_group(pid.as_raw_pid());
            }
            groups.insert(pid.as_raw_pid(), stopped);
        }
        let child_in = child.stdin.take();
        let child_out = child.stdout.take();
        let child_err = child.stderr.take();
        thread::scope(|s| {
            if let (Some(mut pipe), Some(data)) = (child_in, stdin) {
                // An error (EPIPE: the child died) shows in its exit status.
                s.spawn(move || drop(pipe.write_all(data)));
            }
            let out = s.spawn(move || {
                let mut kept = Vec::new();
                if let Some(pipe) = child_out {
                    if protocol {
                        self.read_protocol(pipe, &mut kept);
                    } else {
                        let _ = BufReader::new(pipe).read_to_end(&mut kept);
                    }
                }
                kept
            });
            let err = s.spawn(move || {
                let mut kept = Vec::new();
                if let Some(mut pipe) = child_err {
                    let _ = pipe.read_to_end(&mut kept);
                }
                kept
            });
            // Wait for the exit without reaping (WNOWAIT), take the group out of the set, then
            // reap: the leader is never reaped while `stop` may kill its group, so the group id
            // cannot have been reused by an unrelated process.
            let exited = loop {
                match waitid(
                    WaitId::Pid(pid),
                    WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                ) {
                    Err(rustix::io::Errno::INTR) => continue,
                    other => break other,
                }
            };
            let killed = self
                .lock_groups()
                .remove(&pid.as_raw_pid())
                .unwrap_or(false);
            exited?;
            let status = child.wait()?;
            Ok(Finished {
                status,
                stdout: out.join().unwrap_or_default(),
                stderr: err.join().unwrap_or_default(),
                killed,
            })
        })
    }

    fn read_protocol(&self, pipe: impl Read, kept: &mut Vec<u8>) {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            let number = |prefix: &str| text.strip_prefix(prefix)?.trim().parse::<u64>().ok();
            if let Some(n) = number("ACK ") {
                self.ack(n);
            } else if let Some(n) = number("BEGIN ") {
                self.begin(n);
            } else {
                kept.extend_from_slice(&line);
            }
        }
    }
}

fn kill_group(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = kill_process_group(pid, Signal::KILL);
    }
}

/// Spawns `cmd`, retrying for about a second while its program is missing or being written
/// (ENOENT, ETXTBSY): `cargo build` in the same target directory replaces the binary under
/// test while a long run is going on.
fn spawn(cmd: &mut Command) -> io::Result<std::process::Child> {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e)
                if tries < 40
                    && (e.kind() == io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(ETXTBSY)) =>
            {
                tries += 1;
                thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_collects_output_and_status() {
        let ops = Ops::new();
        let done = ops
            .run(
                Command::new("sh").args(["-c", "cat; echo oops >&2; exit 3"]),
                Some(b"hello"),
            )
            .unwrap();
        assert_eq!(done.stdout, b"hello");
        assert_eq!(done.stderr, b"oops\n");
        assert_eq!(done.status.code(), Some(3));
        assert!(!done.killed);
        assert_eq!(done.to_string(), "exit status: 3: oops");
    }

    #[test]
    fn child_protocol_records_begin_and_ack() {
        let ops = Ops::new();
        let done = ops
            .run_child(Command::new("sh").args([
                "-c",
                "echo BEGIN 1; echo ACK 1; echo hi; echo BEGIN 2; echo ACK x",
            ]))
            .unwrap();
        assert!(done.success());
        assert_eq!(done.stdout, b"hi\nACK x\n");
        let acks = ops.acks();
        assert_eq!(acks.begun, [1, 2]);
        assert_eq!(acks.acked, [1]);
        assert_eq!(acks.last_acked(), Some(1));
        assert_eq!(acks.last_begun(), Some(2));
    }

    #[test]
    fn stop_kills_the_process_group() {
        let ops = Ops::new();
        let t0 = std::time::Instant::now();
        thread::scope(|s| {
            let h = s.spawn(|| {
                ops.run_child(Command::new("sh").args(["-c", "echo ACK 7; sleep 60; echo ACK 8"]))
            });
            thread::sleep(Duration::from_millis(100));
            assert!(ops.failed("x").is_err());
            ops.start_cut();
            assert!(!ops.running());
            assert_eq!(ops.failed("x"), Ok(()));
            ops.stop();
            let done = h.join().unwrap().unwrap();
            assert!(done.killed);
            assert_eq!(done.to_string(), "killed after the power cut");
        });
        // The grandchild `sleep` was killed too, or reading its stdout would block for 60 s.
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert_eq!(ops.acks().acked, [7]);
        assert!(ops.acks().late.is_empty());
    }

    #[test]
    fn last_begun_is_at_least_last_acked() {
        let acks = Acks {
            begun: vec![],
            acked: vec![1, 2],
            late: vec![],
        };
        assert_eq!(acks.last_begun(), Some(2));
        let acks = Acks {
            begun: vec![1, 2],
            acked: vec![1],
            late: vec![3],
        };
        assert_eq!(acks.last_begun(), Some(3));
        assert_eq!(acks.last_acked(), Some(1));
        assert_eq!(Acks::default().last_acked(), None);
    }
}
