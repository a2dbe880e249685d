//! Several processes working on one file at once, started together: how the contended
//! benchmarks (`counter`, the scaling part of `append`) run their writers.
//!
//! Every child starts (interpreter, imports, opening files), prints `ready` and waits; when all
//! are ready the parent releases them at once, and the wall time runs from that start signal to
//! the last child's `done`: process start-up is not counted. The children are this benchmark
//! re-executed with a hidden subcommand (or a script), using [`wait_for_go`] and [`done`].

use crate::Res;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

/// Spawned children, killed and reaped if a run is abandoned.
struct Kids(Vec<(Child, Option<ChildStdin>, BufReader<ChildStdout>)>);

impl Drop for Kids {
    fn drop(&mut self) {
        for (c, _, _) in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Reads one line from a child and checks that it is `want`.
fn expect_line(r: &mut BufReader<ChildStdout>, want: &str, what: &str) -> Res<()> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.trim_end() != want {
        return Err(format!("{what}: expected {want:?} from a child, got {line:?}").into());
    }
    Ok(())
}

/// How long a crowd took.
#[derive(Clone, Copy, Debug)]
pub struct Timed {
    /// From the start signal to the last child's `done`.
    pub secs: f64,
    /// From the first spawn to the last exit (start-up included).
    pub secs_with_start: f64,
}

/// Runs `commands` at once (see the module docs); `what` names the run in errors. Fails if a
/// child does not follow the protocol or exits unsuccessfully.
pub fn run(commands: Vec<Command>, what: &str) -> Res<Timed> {
    let spawned = Instant::now();
    let mut kids = Kids(Vec::with_capacity(commands.len()));
    for mut c in commands {
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut c = c
            .spawn()
            .map_err(|e| format!("{what}: cannot start a child: {e}"))?;
        let stdin = c.stdin.take();
        let stdout = BufReader::new(c.stdout.take().expect("piped"));
        kids.0.push((c, stdin, stdout));
    }
    for (_, _, out) in &mut kids.0 {
        expect_line(out, "ready", what)?;
    }
    let start = Instant::now();
    for (_, stdin, _) in &mut kids.0 {
        let mut s = stdin.take().expect("piped");
        s.write_all(b"go\n")?;
    }
    for (_, _, out) in &mut kids.0 {
        expect_line(out, "done", what)?;
    }
    let secs = start.elapsed().as_secs_f64();
    for (c, _, _) in &mut kids.0 {
        let st = c.wait()?;
        if !st.success() {
            return Err(format!("{what}: a child failed: {st}").into());
        }
    }
    Ok(Timed {
        secs,
        secs_with_start: spawned.elapsed().as_secs_f64(),
    })
}

/// In a child: says `ready` and waits for the start signal.
pub fn wait_for_go() -> Res<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(())
}

/// In a child: says `done`.
pub fn done() -> Res<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "done")?;
    out.flush()?;
    Ok(())
}
