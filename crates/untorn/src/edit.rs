//! In-place editing of a file by an external filter (jq, yq, sed, ...) under the exclusive lock.

use crate::error::{describe, Error, ErrorKind, Op, Result};
use crate::format::Format;
use crate::sys::errnos::ENOENT;
use crate::update::UpdateOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What an edit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edited {
    /// The file was replaced with the filter's output.
    Written,
    /// The filter's output was the same as the input: nothing was written.
    Unchanged,
}

/// How an edit learns of the signals its caller receives, to pass them on to the filter (see
/// [`EditOptions::forward_signals`]).
///
/// The caller's signal handlers (for SIGINT, SIGTERM, SIGHUP, say) take the signal's default
/// action while [`default_action`](Self::default_action) is true (waiting for the lock: nothing
/// was changed, so dying is harmless), and otherwise store the signal's number in
/// [`received`](Self::received). With `signal-hook`:
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// # let (SIGINT, SIGTERM, SIGHUP) = (2, 15, 1);
/// # mod signal_hook { pub mod flag {
/// #   pub fn register_conditional_default(_: i32, _: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::io::Result<()> { Ok(()) }
/// #   pub fn register_usize(_: i32, _: std::sync::Arc<std::sync::atomic::AtomicUsize>, _: usize) -> std::io::Result<()> { Ok(()) }
/// # } }
/// let fwd = untorn::ForwardSignals::new();
/// for sig in [SIGINT, SIGTERM, SIGHUP] {
///     // In this order: the default action first, while it applies.
///     signal_hook::flag::register_conditional_default(sig, fwd.default_action.clone())?;
///     signal_hook::flag::register_usize(sig, fwd.received.clone(), sig as usize)?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ForwardSignals {
    /// The number of the last signal received (0: none), set by the caller's handler. The edit
    /// takes each one it passes on, and leaves the last there when it returns.
    pub received: Arc<AtomicUsize>,
    /// Whether the caller's handler should take the signal's default action. The edit clears it
    /// from just before it starts the filter until it returns, and sets it again then.
    pub default_action: Arc<AtomicBool>,
}

impl Default for ForwardSignals {
    fn default() -> Self {
        ForwardSignals::new()
    }
}

impl ForwardSignals {
    /// No signal received; default actions on.
    pub fn new() -> ForwardSignals {
        ForwardSignals {
            received: Arc::new(AtomicUsize::new(0)),
            default_action: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The signal received, if any (without taking it).
    pub fn received(&self) -> Option<usize> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }
}

/// Sets `default_action` back when an edit returns, however it returns.
struct Handling<'a>(&'a ForwardSignals);

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.0.default_action.store(true, Ordering::SeqCst);
    }
}

/// Options for [`EditOptions::run`]: lock and write options, the format to check, and the
/// content to start from when the file does not exist.
#[derive(Clone, Debug, Default)]
pub struct EditOptions {
    update: UpdateOptions,
    format: Option<Format>,
    default: Option<Vec<u8>>,
    allow_empty: bool,
    signals: Option<ForwardSignals>,
}

impl EditOptions {
    /// Format from the file's extension; a missing file is an error.
    pub fn new() -> EditOptions {
        EditOptions::default()
    }

    /// Locking and writing (timeout, durability, ...).
    pub fn update_options(&mut self, u: UpdateOptions) -> &mut Self {
        self.update = u;
        self
    }

    /// The format the filter's output must have (default: from the file's extension, see
    /// [`Format::from_path`]; [`Format::Raw`] checks nothing).
    pub fn format(&mut self, f: Format) -> &mut Self {
        self.format = Some(f);
        self
    }

    /// What the filter reads when the file does not exist (default: the edit fails with
    /// [`ErrorKind::NotFound`]).
    pub fn default_content(&mut self, content: impl Into<Vec<u8>>) -> &mut Self {
        self.default = Some(content.into());
        self
    }

    /// Whether an empty output (no bytes, or only whitespace) may replace the file (default:
    /// no). A filter that prints nothing has almost always failed without saying so (a `yq`
    /// expression that selects nothing, a `grep` that matches nothing), and an emptied file is
    /// what untorn exists to prevent; empty output is valid YAML and TOML, so the format check
    /// alone would let it through. Applies to every format (JSON refuses empty output anyway,
    /// as invalid).
    pub fn allow_empty(&mut self, yes: bool) -> &mut Self {
        self.allow_empty = yes;
        self
    }

    /// Passes the signals the caller receives (see [`ForwardSignals`]) on to the filter: it runs
    /// in a process group of its own, and every signal received while it runs is sent to that
    /// group; the edit waits for the filter to end and fails with [`ErrorKind::Interrupted`],
    /// the file unchanged. A signal received after the filter ended but before the write also
    /// stops the edit; one received during the write is left in `received` for the caller (the
    /// write completes: the caller decides, as `untorn edit` does, to exit 128 + the signal).
    ///
    /// Without this, a filter is in the caller's process group, and a signal that kills the
    /// caller leaves the filter running.
    pub fn forward_signals(&mut self, signals: ForwardSignals) -> &mut Self {
        self.signals = Some(signals);
        self
    }

    /// Under the exclusive lock of `path`: runs `filter` with the file's content on its standard
    /// input; if it exits 0 and its output is valid for the format (and not empty, unless
    /// [`allow_empty`](Self::allow_empty)), replaces the file with the output, atomically and
    /// durably. Otherwise the file stays as it was, and the error says why:
    /// [`ErrorKind::FilterFailed`] (non-zero exit, killed, not startable) or
    /// [`ErrorKind::InvalidContent`] (output empty, or not valid, with line and column).
    ///
    /// The filter's standard error passes through; its standard output is captured.
    ///
    /// ```no_run
    /// use std::process::Command;
    /// let mut jq = Command::new("jq");
    /// jq.arg(".count += 1");
    /// untorn::EditOptions::new().run("state.json", &mut jq)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(&self, path: impl AsRef<Path>, filter: &mut Command) -> Result<Edited> {
        let path = path.as_ref();
        let format = self.format_for(path);
        let _handling = self.signal_guard();
        let written = self
            .update
            .update(path, |old| self.transform(path, format, old, filter))?;
        Ok(if written {
            Edited::Written
        } else {
            Edited::Unchanged
        })
    }

    /// The format the output must have: the one set, or the one `path`'s extension implies.
    pub(crate) fn format_for(&self, path: &Path) -> Format {
        self.format.unwrap_or_else(|| Format::from_path(path))
    }

    /// Sets the signals' default action back when dropped (see [`ForwardSignals`]).
    pub(crate) fn signal_guard(&self) -> Option<impl Drop + '_> {
        self.signals.as_ref().map(Handling)
    }

    /// One run of the filter on `old` (the default content if `None`): its output if it is to
    /// replace `old`, `None` if it is the same, or why it may not (filter failed, output empty
    /// or invalid). The local edit runs it under the lock; the remote one (`crate::remote`)
    /// once per version it tries to replace.
    pub(crate) fn transform(
        &self,
        path: &Path,
        format: Format,
        old: Option<&[u8]>,
        filter: &mut Command,
    ) -> Result<Option<Vec<u8>>> {
        let input = match (old, &self.default) {
            (Some(b), _) => b,
            (None, Some(d)) => &d[..],
            (None, None) => {
                return Err(Error::io(Op::Filter, path, crate::sys::os_error(ENOENT))
                    .with_note("give a default content to start from"))
            }
        };
        let output = match &self.signals {
            None => run_filter(filter, input, path)?,
            Some(fwd) => {
                fwd.default_action.store(false, Ordering::SeqCst);
                run_filter_forwarding(filter, input, path, fwd)?
            }
        };
        let unchanged = old == Some(&output[..]);
        if !self.allow_empty && !unchanged && output.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::new(
                Op::Filter,
                path,
                ErrorKind::InvalidContent,
                format!(
                    "the output of '{}' is empty{}; the file is unchanged (pass \
                     --allow-empty to empty it)",
                    program(filter),
                    if output.is_empty() {
                        ""
                    } else {
                        " (only whitespace)"
                    }
                ),
            ));
        }
        if let Err(e) = format.check(&output, path) {
            let mut err = Error::new(
                Op::Filter,
                path,
                ErrorKind::InvalidContent,
                format!(
                    "the output of '{}' is not valid {format}: {}; the file is unchanged",
                    program(filter),
                    e.detail()
                ),
            );
            if let Some((l, c)) = e.location() {
                err = err.with_location(l, c);
            }
            return Err(err);
        }
        Ok((!unchanged).then_some(output))
    }
}

fn program(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

/// Runs `cmd` with `input` on its stdin and returns its stdout, or an error if it did not exit
/// 0. Input is fed from a thread so that a filter that writes before it has read everything
/// cannot deadlock against us.
fn run_filter(cmd: &mut Command, input: &[u8], path: &Path) -> Result<Vec<u8>> {
    let prog = program(cmd);
    let failed = |why: String| {
        Error::new(
            Op::Filter,
            path,
            ErrorKind::FilterFailed,
            format!("{why}; the file is unchanged"),
        )
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run '{prog}': {}", describe(&e))))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut output = Vec::new();
    let read = std::thread::scope(|s| {
        s.spawn(move || {
            // A filter may exit without reading all of its input (EPIPE): that is its business;
            // its exit status decides.
            let _ = stdin.write_all(input);
        });
        stdout.read_to_end(&mut output)
    });
    let status = child
        .wait()
        .map_err(|e| failed(format!("cannot wait for '{prog}': {}", describe(&e))))?;
    if let Err(e) = read {
        return Err(failed(format!(
            "cannot read the output of '{prog}': {}",
            describe(&e)
        )));
    }
    check_status(status, &prog, failed)?;
    Ok(output)
}

/// What the helper threads of [`run_filter_forwarding`] report.
enum Report {
    Output(std::io::Result<Vec<u8>>),
    Exit(std::io::Result<ExitStatus>),
}

/// [`run_filter`] for an edit that forwards signals: the filter runs in a process group of its
/// own; helper threads feed its input, read its output and wait for it, while this thread passes
/// every signal the caller receives on to the group. Without a signal it is as prompt as
/// [`run_filter`] (the helpers' reports wake it); a signal is passed on within 20 ms.
fn run_filter_forwarding(
    cmd: &mut Command,
    input: &[u8],
    path: &Path,
    fwd: &ForwardSignals,
) -> Result<Vec<u8>> {
    use std::os::unix::process::CommandExt;
    let prog = program(cmd);
    let failed = |why: String| {
        Error::new(
            Op::Filter,
            path,
            ErrorKind::FilterFailed,
            format!("{why}; the file is unchanged"),
        )
    };
    let interrupted = |sig: usize, why: String| {
        Error::new(
            Op::Filter,
            path,
            ErrorKind::Interrupted,
            format!(
                "interrupted by signal {sig} ({}){why}; the file is unchanged",
                signal_name(sig)
            ),
        )
    };
    // A signal that came before the filter could start: do not start it.
    if let Some(sig) = fwd.received() {
        return Err(interrupted(sig, String::new()));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| failed(format!("cannot run '{prog}': {}", describe(&e))))?;
    let group = child.id();
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    // Owned by the helpers, which are not joined if the filter is stopped (a process that left
    // its group may keep its output open).
    let input = input.to_vec();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // A filter may exit without reading all of its input (EPIPE): its exit status decides.
        let _ = stdin.write_all(&input);
    });
    let out_tx = tx.clone();
    std::thread::spawn(move || {
        let mut output = Vec::new();
        let r = stdout.read_to_end(&mut output).map(|_| output);
        let _ = out_tx.send(Report::Output(r));
    });
    std::thread::spawn(move || {
        let _ = tx.send(Report::Exit(child.wait()));
    });
    let mut output = None;
    let mut status = None;
    let mut forwarded = None;
    while status.is_none() || (output.is_none() && forwarded.is_none()) {
        let sig = fwd.received.swap(0, Ordering::SeqCst);
        if sig != 0 {
            forwarded = Some(sig);
            if let Err(e) = crate::sys::signal_process_group(group, sig as i32) {
                tracing::debug!(target: "untorn", path = %path.display(), signal = sig, error = %e, "could not pass a signal on to the filter");
            }
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(Report::Output(r)) => output = Some(r),
            Ok(Report::Exit(r)) => status = Some(r),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // The filter's own process ended; the rest of its group (a pipeline, a job in the
    // background) was passed the signal too: wait until none of it runs any more, so that no
    // part of the filter outlives the edit (bounded: a process that ignores the signal is left,
    // and said).
    let mut left = false;
    if forwarded.is_some() {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while crate::sys::process_group_running(group) {
            if std::time::Instant::now() >= deadline {
                left = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Leave the last signal for the caller to see.
    if let Some(sig) = forwarded.or_else(|| fwd.received()) {
        fwd.received.store(sig, Ordering::SeqCst);
        let mut how = match &status {
            Some(Ok(st)) => format!("; '{prog}' was passed it and ended ({st})"),
            _ => format!("; '{prog}' was passed it"),
        };
        if left {
            how.push_str(&format!(
                ", but a process of its group ({group}) still runs after 5 s"
            ));
        }
        return Err(interrupted(sig, how));
    }
    let status = match status {
        Some(Ok(st)) => st,
        Some(Err(e)) => {
            return Err(failed(format!(
                "cannot wait for '{prog}': {}",
                describe(&e)
            )))
        }
        None => return Err(failed(format!("lost track of '{prog}'"))),
    };
    let output = match output {
        Some(Ok(o)) => o,
        Some(Err(e)) => {
            return Err(failed(format!(
                "cannot read the output of '{prog}': {}",
                describe(&e)
            )))
        }
        None => return Err(failed(format!("lost the output of '{prog}'"))),
    };
    check_status(status, &prog, failed)?;
    Ok(output)
}

/// Fails unless the filter exited 0.
fn check_status(status: ExitStatus, prog: &str, failed: impl Fn(String) -> Error) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    Err(match (status.code(), status.signal()) {
        (Some(c), _) => failed(format!("'{prog}' exited with status {c}")),
        (None, Some(sig)) => failed(format!("'{prog}' was killed by signal {sig}")),
        _ => failed(format!("'{prog}' failed ({status})")),
    })
}

fn signal_name(sig: usize) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}
