//! `untorn`: keep files whole from the shell. A thin layer over the `untorn` library: parse the
//! command line, call the library, print errors once, map them to exit codes (`exit.rs`).

mod args;
mod exit;
mod generate;
mod help;
mod remote;
mod report;
mod wait;
mod warnings;

use args::{
    AppendArgs, BackupNowArgs, Cli, Command, EditArgs, LockArgs, LogArgs, LogFormatArg, ReadArgs,
    RestoreArgs, WriteArgs,
};
use std::ffi::OsString;
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::ExitCode;

/// How a command failed: an error of the library, or a plain message with its exit code.
pub enum Failure {
    Untorn(untorn::Error),
    Other(String, u8),
}

impl From<untorn::Error> for Failure {
    fn from(e: untorn::Error) -> Self {
        Failure::Untorn(e)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::parse_args() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors exit with USAGE.
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let g = cli.globals();
    if let Err(msg) = init_tracing(g.verbose, g.log_format, g.log_file.as_deref()) {
        eprintln!("untorn: {msg}");
        return ExitCode::from(exit::FAILURE);
    }
    for uid in &g.trust_user {
        untorn::trust::trust_owner(*uid);
    }
    if g.allow_shared_fs {
        untorn::allow_shared_fs(true);
    }
    let name = command_name(&cli.command);
    // Every event of this run carries the command and the pid (the audit trail's span).
    let span =
        tracing::info_span!(target: "untorn", "untorn", command = name, pid = std::process::id());
    let _entered = span.enter();
    let started = std::time::Instant::now();
    // s3:// URLs are handled in remote.rs; local paths go on as before.
    let command = match remote::route(cli.command) {
        Ok(local) => local,
        Err(code) => return code,
    };
    let result = match command {
        Command::Write(a) => cmd_write(a.0),
        Command::Lock(a) => cmd_lock(a.0),
        Command::Edit(a) => cmd_edit(a.0),
        Command::Read(a) => cmd_read(a.0),
        Command::Append(a) => cmd_append(a.0),
        Command::Repair(a) => cmd_repair(a.0),
        Command::Tail(a) => report::cmd_tail(a.0),
        Command::Backup(a) => cmd_backup(a.0),
        Command::Backups(a) => report::cmd_backups(a.0),
        Command::Restore(a) => cmd_restore(a.0),
        Command::Check(a) => report::cmd_check(a.0),
        Command::Clean(a) => report::cmd_clean(a.0),
        Command::Recover(a) => report::cmd_recover(a.0),
        Command::Txn(a) => report::cmd_txn(a.0),
        Command::Generate(a) => {
            let mut out = Vec::new();
            match generate::run(a.what, a.dir.as_deref(), &mut out) {
                Ok(()) => print_out(&out).map(|()| exit::OK),
                Err(e) => Err(Failure::Other(
                    format!("cannot generate: {}", plain(&e)),
                    exit::for_io(&e),
                )),
            }
        }
    };
    let duration_us = started.elapsed().as_micros() as u64;
    let code = match result {
        Ok(code) => {
            tracing::debug!(target: "untorn", op = "command", outcome = "ok", exit = code, duration_us);
            code
        }
        Err(Failure::Untorn(e)) => {
            let code = exit::for_kind(e.kind());
            tracing::debug!(target: "untorn", op = "command", outcome = "failed", exit = code,
                error_kind = exit::kind_name(e.kind()), error = %e, duration_us);
            eprintln!("untorn: {e}");
            code
        }
        Err(Failure::Other(msg, code)) => {
            tracing::debug!(target: "untorn", op = "command", outcome = "failed", exit = code,
                error = %msg, duration_us);
            eprintln!("untorn: {msg}");
            code
        }
    };
    ExitCode::from(code)
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Write(_) => "write",
        Command::Lock(_) => "lock",
        Command::Edit(_) => "edit",
        Command::Read(_) => "read",
        Command::Append(_) => "append",
        Command::Repair(_) => "repair",
        Command::Tail(_) => "tail",
        Command::Backup(_) => "backup",
        Command::Backups(_) => "backups",
        Command::Restore(_) => "restore",
        Command::Check(_) => "check",
        Command::Clean(_) => "clean",
        Command::Recover(_) => "recover",
        Command::Txn(_) => "txn",
        Command::Generate(_) => "generate",
    }
}

/// Library warnings (state it left alone, and why) are always shown on stderr, one line each
/// (`untorn: ...`). The trace (one event per operation, `-v`; more with `-vv`) is off by
/// default; `-v` prints it on stderr as `trace: op="write" path=... outcome="committed"`,
/// `--log-format json` (or `UNTORN_LOG_FORMAT=json`) as one JSON object per line
/// (tracing-subscriber's JSON formatter, with the command's span: command and pid), and
/// `--log-file FILE` appends it to FILE instead of stderr.
fn init_tracing(
    verbose: u8,
    format: Option<LogFormatArg>,
    file: Option<&std::path::Path>,
) -> Result<(), String> {
    use tracing_subscriber::filter::{filter_fn, FilterExt, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let json = format == Some(LogFormatArg::Json);
    let level = match (verbose, json || file.is_some()) {
        (0, false) => None,
        (0 | 1, _) => Some(tracing::Level::DEBUG),
        _ => Some(tracing::Level::TRACE),
    };
    let Some(level) = level else {
        // The common case (no trace asked for): the smallest subscriber that prints warnings.
        let _ = tracing::subscriber::set_global_default(warnings::Warnings);
        return Ok(());
    };
    let warnings = tracing_subscriber::fmt::layer()
        .with_writer(io::stderr)
        .with_ansi(false)
        .event_format(LineFormat("untorn: "))
        .with_filter(Targets::new().with_target("untorn", tracing::Level::WARN));
    let writer = match file {
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(io::stderr),
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o644)
                .open(path)
                .map_err(|e| {
                    format!(
                        "cannot open the log file '{}': {}",
                        path.display(),
                        plain(&e)
                    )
                })?;
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Arc::new(f))
        }
    };
    // On stderr in text, warnings are printed once, by the warnings layer; a JSON trace or a
    // log file keeps them too (the audit trail is whole).
    let warnings_apart = file.is_none() && !json;
    let targets = Targets::new().with_target("untorn", level);
    let not_warnings =
        filter_fn(move |m| !warnings_apart || m.is_span() || *m.level() > tracing::Level::WARN);
    let trace: Box<dyn Layer<_> + Send + Sync> = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .with_filter(targets)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer)
            .event_format(LineFormat("trace: "))
            .with_filter(targets.and(not_warnings))
            .boxed()
    };
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(warnings).with(trace),
    );
    Ok(())
}

/// Prints an event as PREFIX and its fields on one line: no time, no level (`untorn: MESSAGE`
/// for a warning, `trace: op="write" path=a.json ...` for -v).
struct LineFormat(&'static str);

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LineFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "{}", self.0)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The content argument of `write`: CONTENT, or `None` for standard input.
fn write_content(a: &mut WriteArgs) -> Result<Option<OsString>, Failure> {
    match a.content.len() {
        0 | 1 => Ok(a.content.pop()),
        _ => Err(Failure::Other(
            format!(
                "cannot write '{}': more than one CONTENT (quote it as one argument; a program \
                 to run is `untorn write --exec {} -- PROGRAM ... {{}}`)",
                a.file.display(),
                a.file.display()
            ),
            exit::USAGE,
        )),
    }
}

fn cmd_write(mut a: WriteArgs) -> Result<u8, Failure> {
    if a.exec {
        return cmd_write_exec(a);
    }
    let opts = a.options();
    if let Some(c) = write_content(&mut a)? {
        opts.write(&a.file, c.into_vec())?;
        return Ok(exit::OK);
    }
    let stdin = io::stdin().lock();
    if stdin.is_terminal() {
        return Err(Failure::Other(
            format!(
                "cannot write '{}': no CONTENT given and standard input is a terminal \
                 (pipe the content in, or give it as an argument)",
                a.file.display()
            ),
            exit::USAGE,
        ));
    }
    write_stdin(&opts, &a.file, stdin)
}

/// Like sponge, FILE is replaced only once all of standard input is read (`jq . f | untorn
/// write f` is safe); the input is streamed into the temp file meanwhile, so memory stays
/// flat. A signal (SIGINT, SIGTERM, SIGHUP) while reading removes the temp, if it has a name,
/// and ends untorn with 128 + the signal, FILE unchanged; during the commit it is held until
/// the commit is done.
fn write_stdin(
    opts: &untorn::OpenOptions,
    file: &std::path::Path,
    mut stdin: io::StdinLock<'_>,
) -> Result<u8, Failure> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    // Registered before the temp exists: until then a signal simply ends untorn. `pending` is
    // set by the handler itself (so a signal is never missed at EOF); the watcher thread acts
    // on one that comes while a read blocks.
    let pending = Arc::new(AtomicUsize::new(0));
    let sigs = [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ];
    for sig in sigs {
        let _ = signal_hook::flag::register_usize(sig, pending.clone(), sig as usize);
    }
    let signals = signal_hook::iterator::Signals::new(sigs).ok();
    let mut f = opts.open(file)?;
    // Some(temp's path) while reading: the watcher may act; None once committing.
    let reading = Arc::new(Mutex::new(Some(f.temp_path())));
    let interrupted = |shown: &std::path::Path| {
        eprintln!(
            "untorn: interrupted while reading standard input; '{}' is unchanged",
            shown.display()
        )
    };
    if let Some(mut signals) = signals {
        let reading = reading.clone();
        let shown = file.to_path_buf();
        std::thread::spawn(move || {
            for sig in signals.forever() {
                let guard = reading.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(temp) = &*guard {
                    if let Some(t) = temp {
                        let _ = std::fs::remove_file(t);
                    }
                    interrupted(&shown);
                    // The mutex stays held: the main thread never gets to commit.
                    std::process::exit(i32::from(exit::for_signal(sig as usize)));
                }
            }
        });
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = f.discard();
                return Err(Failure::Other(
                    format!(
                        "cannot write '{}': reading standard input failed: {}; the file is \
                         unchanged",
                        file.display(),
                        plain(&e)
                    ),
                    exit::FAILURE,
                ));
            }
        };
        if let Err(e) = f.write_all(&buf[..n]) {
            let _ = f.discard();
            return Err(untorn_error(e, file));
        }
    }
    {
        let mut guard = reading.lock().unwrap_or_else(|p| p.into_inner());
        let sig = pending.load(Ordering::SeqCst);
        if sig != 0 {
            drop(f); // discards the temp
            interrupted(file);
            return Ok(exit::for_signal(sig));
        }
        *guard = None;
    }
    f.commit().map_err(|e| e.error)?;
    match pending.load(Ordering::SeqCst) {
        0 => Ok(exit::OK),
        sig => {
            eprintln!(
                "untorn: signal {sig} came during the commit; '{}' is written",
                file.display()
            );
            Ok(exit::for_signal(sig))
        }
    }
}

/// An `io::Error` from the library's `Write` impls: the `untorn::Error` inside it.
fn untorn_error(e: io::Error, file: &std::path::Path) -> Failure {
    if !e.get_ref().is_some_and(|i| i.is::<untorn::Error>()) {
        return Failure::Other(
            format!("cannot write '{}': {}", file.display(), plain(&e)),
            exit::for_io(&e),
        );
    }
    match e.into_inner().map(|i| i.downcast::<untorn::Error>()) {
        Some(Ok(err)) => Failure::Untorn(*err),
        _ => unreachable!("checked above"),
    }
}

/// `untorn write --exec FILE -- PROGRAM ... {}`: PROGRAM writes the new content to a path
/// beside FILE; committed if it exits 0 and the output is valid, discarded otherwise.
fn cmd_write_exec(a: WriteArgs) -> Result<u8, Failure> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let usage = |msg: String| Failure::Other(msg, exit::USAGE);
    let ph = a.placeholder.as_bytes();
    if ph.is_empty() {
        return Err(usage("--placeholder cannot be empty".into()));
    }
    let has = |arg: &OsString| arg.as_bytes().windows(ph.len()).any(|w| w == ph);
    if a.content.is_empty() {
        return Err(usage(format!(
            "--exec needs a command: untorn write --exec {} -- PROGRAM ... {}",
            a.file.display(),
            a.placeholder
        )));
    }
    if !a.content.iter().any(has) {
        return Err(usage(format!(
            "--exec: no argument of the command contains '{}', where the output path goes \
             (e.g. untorn write --exec {} -- pandoc in.md -o {})",
            a.placeholder,
            a.file.display(),
            a.placeholder
        )));
    }
    let validator = if a.no_check {
        untorn::Validator::Exists
    } else {
        match a
            .format
            .map(untorn::Format::from)
            .unwrap_or_else(|| untorn::Format::from_path(&a.file))
        {
            untorn::Format::Raw => untorn::Validator::Exists,
            f => untorn::Validator::Format(f),
        }
    };
    let out = untorn::OutputPath::new(&a.file, &a.options())?;
    let args: Vec<OsString> = a
        .content
        .iter()
        .map(|arg| replace_bytes(arg.as_bytes(), ph, out.path().as_os_str().as_bytes()))
        .collect();
    // The program gets the terminal's signals itself (same process group); untorn outlives
    // them to remove the output, then exits as the signal asked.
    let got = Arc::new(AtomicUsize::new(0));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let _ = signal_hook::flag::register_usize(sig, got.clone(), sig as usize);
    }
    let (prog, rest) = args.split_first().expect("checked above");
    let status = std::process::Command::new(prog)
        .args(rest)
        .spawn()
        .and_then(|mut child| wait_passing_signals(&mut child, &got));
    let signal = got.load(Ordering::SeqCst);
    let unchanged = format!("'{}' is unchanged", a.file.display());
    let shown = prog.to_string_lossy();
    match status {
        Err(e) => {
            return Err(Failure::Other(
                format!("cannot run '{shown}': {}; {unchanged}", plain(&e)),
                exit::FILTER_FAILED,
            ))
        }
        Ok(_) if signal != 0 => {
            drop(out);
            eprintln!("untorn: interrupted; {unchanged}");
            return Ok(exit::for_signal(signal));
        }
        Ok(st) if !st.success() => {
            let how = match (
                st.code(),
                std::os::unix::process::ExitStatusExt::signal(&st),
            ) {
                (Some(c), _) => format!("exited with {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                _ => "failed".into(),
            };
            return Err(Failure::Other(
                format!("'{shown}' {how}; {unchanged}"),
                exit::FILTER_FAILED,
            ));
        }
        Ok(_) => {}
    }
    if let Err(e) = out.check(&validator) {
        if e.kind() == untorn::ErrorKind::InvalidContent {
            return Err(Failure::Other(
                format!("the output of '{shown}' is not valid: {e}; {unchanged}"),
                exit::INVALID,
            ));
        }
        return Err(Failure::Other(
            format!("'{shown}' exited 0, but: {e}; {unchanged}"),
            exit::FILTER_FAILED,
        ));
    }
    out.commit()?;
    Ok(exit::OK)
}

/// Waits for `child`, passing on to it each signal untorn receives meanwhile (a SIGTERM or
/// SIGHUP sent to untorn alone; a terminal's Ctrl-C reaches both already).
fn wait_passing_signals(
    child: &mut std::process::Child,
    got: &std::sync::atomic::AtomicUsize,
) -> io::Result<std::process::ExitStatus> {
    let mut passed = 0;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        let sig = got.load(std::sync::atomic::Ordering::SeqCst);
        if sig != 0 && sig != passed {
            let pid = rustix::process::Pid::from_raw(child.id() as i32);
            let s = rustix::process::Signal::from_named_raw(sig as i32);
            if let (Some(pid), Some(s)) = (pid, s) {
                let _ = rustix::process::kill_process(pid, s);
            }
            passed = sig;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `s` with every `from` replaced by `to`.
fn replace_bytes(s: &[u8], from: &[u8], to: &[u8]) -> OsString {
    let mut v = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(from) {
            v.extend_from_slice(to);
            i += from.len();
        } else {
            v.push(s[i]);
            i += 1;
        }
    }
    OsString::from_vec(v)
}

fn cmd_lock(a: LockArgs) -> Result<u8, Failure> {
    let wait = match &a.lock_file {
        Some(f) => wait::note_if_busy(wait::Sidecar::Exactly(f), a.shared, a.wait),
        None => wait::note_if_busy(wait::Sidecar::Of(&a.file), a.shared, a.wait),
    };
    let mut opts = wait.lock_options();
    opts.shared(a.shared);
    let lock = match &a.lock_file {
        Some(f) => opts.lock_file(f),
        None => opts.lock(&a.file),
    };
    let lock = match (lock, a.conflict_exit_code) {
        (Ok(l), _) => l,
        (Err(e), Some(code))
            if matches!(
                e.kind(),
                untorn::ErrorKind::WouldBlock | untorn::ErrorKind::TimedOut
            ) =>
        {
            return Err(Failure::Other(e.to_string(), code))
        }
        (Err(e), _) => return Err(e.into()),
    };
    let (prog, args) = a.command.split_first().expect("clap requires a command");
    let status = std::process::Command::new(prog).args(args).status();
    drop(lock);
    match status {
        Ok(st) => Ok(exit::for_status(st)),
        Err(e) => {
            let code = if e.kind() == io::ErrorKind::NotFound {
                exit::COMMAND_NOT_FOUND
            } else {
                exit::CANNOT_EXECUTE
            };
            let why = if code == exit::COMMAND_NOT_FOUND {
                "command not found"
            } else {
                "cannot execute it"
            };
            Err(Failure::Other(
                format!("cannot run '{}': {why}", prog.to_string_lossy()),
                code,
            ))
        }
    }
}

fn cmd_edit(a: EditArgs) -> Result<u8, Failure> {
    let wait = wait::note_if_busy(wait::Sidecar::Of(&a.file), false, a.wait);
    let mut write = untorn::OpenOptions::new();
    write.durability(a.durability.into());
    if let Some(n) = a.backup.keep {
        write.backups(n);
    }
    let mut update = untorn::UpdateOptions::new();
    update
        .lock_options(wait.lock_options())
        .write_options(write);
    let mut opts = untorn::EditOptions::new();
    opts.update_options(update);
    let format = a
        .format
        .map(untorn::Format::from)
        .unwrap_or_else(|| untorn::Format::from_path(&a.file));
    if let Some(f) = a.format {
        opts.format(f.into());
    }
    if let Some(d) = &a.default {
        opts.default_content(d.as_bytes());
    }
    opts.allow_empty(a.allow_empty);
    // For the warning below: was the YAML file in block style before?
    let block_yaml_before = format == untorn::Format::Yaml
        && read_regular(&a.file).is_some_and(|b| !looks_like_json(&b));
    // SIGINT, SIGTERM and SIGHUP while the filter runs go on to it (its process group); untorn
    // waits for it and exits 128 + the signal, the file unchanged. While waiting for the lock
    // they act as usual (nothing was changed yet).
    let fwd = untorn::ForwardSignals::new();
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let _ = signal_hook::flag::register_conditional_default(sig, fwd.default_action.clone());
        let _ = signal_hook::flag::register_usize(sig, fwd.received.clone(), sig as usize);
    }
    opts.forward_signals(fwd.clone());
    let (prog, args) = a.filter.split_first().expect("clap requires a filter");
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args);
    match opts.run(&a.file, &mut cmd) {
        Ok(done) => {
            if block_yaml_before
                && done == untorn::Edited::Written
                && read_regular(&a.file).is_some_and(|b| looks_like_json(&b))
            {
                eprintln!(
                    "untorn: warning: '{}' was YAML in block style and the filter's output is \
                     JSON (valid YAML, so it was written): Debian's yq, a jq wrapper, prints \
                     JSON unless given -y (mikefarah's yq prints YAML)",
                    a.file.display()
                );
            }
            match fwd.received() {
                // A signal during the write: the write completed; now exit as the signal asked.
                Some(sig) => {
                    eprintln!(
                        "untorn: signal {sig} came during the write; the edit of '{}' is complete",
                        a.file.display()
                    );
                    Ok(exit::for_signal(sig))
                }
                None => Ok(exit::OK),
            }
        }
        Err(e) if e.kind() == untorn::ErrorKind::Interrupted => Err(Failure::Other(
            e.to_string(),
            exit::for_signal(fwd.received().unwrap_or(2)),
        )),
        Err(e)
            if e.kind() == untorn::ErrorKind::NotFound
                && a.default.is_none()
                && e.path() == a.file =>
        {
            Err(Failure::Other(
                format!(
                    "cannot edit '{}': no such file or directory (--default TEXT starts a \
                     missing file from TEXT, e.g. --default '{{}}')",
                    a.file.display()
                ),
                exit::NOT_FOUND,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The content of `path` if it is a regular file (never blocks on a FIFO or device).
fn read_regular(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut v = Vec::new();
    (&f).read_to_end(&mut v).ok()?;
    Some(v)
}

/// Whether `b` starts (after white space) like a JSON object or array: YAML in flow style.
fn looks_like_json(b: &[u8]) -> bool {
    matches!(
        b.iter().find(|c| !c.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

fn cmd_read(a: ReadArgs) -> Result<u8, Failure> {
    let wait = wait::note_if_busy(wait::Sidecar::Of(&a.file), true, a.wait);
    let mut opts = untorn::UpdateOptions::new();
    opts.lock_options(wait.lock_options());
    let content = match (opts.read_if_exists(&a.file)?, a.default) {
        (Some(c), _) => c,
        (None, Some(d)) => d.into_bytes(),
        (None, None) => {
            return Err(Failure::Other(
                format!(
                    "cannot read '{}': no such file or directory",
                    a.file.display()
                ),
                exit::NOT_FOUND,
            ))
        }
    };
    print_out(&content)?;
    Ok(exit::OK)
}

pub fn log_format(jsonl: bool) -> untorn::LogFormat {
    if jsonl {
        untorn::LogFormat::JsonLines
    } else {
        untorn::LogFormat::Lines
    }
}

fn cmd_append(a: AppendArgs) -> Result<u8, Failure> {
    let lines: Vec<Vec<u8>> = if a.lines.is_empty() {
        let mut input = Vec::new();
        io::stdin().lock().read_to_end(&mut input).map_err(|e| {
            Failure::Other(
                format!(
                    "cannot append to '{}': reading standard input failed: {}",
                    a.file.display(),
                    plain(&e)
                ),
                exit::FAILURE,
            )
        })?;
        input
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    } else {
        a.lines.into_iter().map(OsStringExt::into_vec).collect()
    };
    // A record may end in one newline (the library ends it anyway); one inside is refused.
    let inner_newline = |l: &Vec<u8>| l.strip_suffix(b"\n").unwrap_or(l).contains(&b'\n');
    if let Some(i) = lines.iter().position(inner_newline) {
        return Err(Failure::Other(
            format!(
                "cannot append to '{}': record {} contains a newline, and a record is one \
                 line: give each line as an argument of its own, or pipe them in (each line \
                 of standard input is a record)",
                a.file.display(),
                i + 1
            ),
            exit::USAGE,
        ));
    }
    if lines.is_empty() {
        return Ok(exit::OK);
    }
    let wait = wait::note_if_busy(wait::Sidecar::Of(&a.file), false, a.wait);
    let mut opts = untorn::AppendOptions::new();
    opts.durability(a.durability.into())
        .format(log_format(a.jsonl));
    if let Some(d) = wait.timeout {
        opts.timeout(d);
    }
    let done = opts.append_all(&a.file, &lines)?;
    if let Some(t) = done.repaired {
        // Something was removed: never silently.
        eprintln!(
            "untorn: warning: '{}' ended in a torn tail ({} bytes after the last complete \
             record: {}); cut it before appending",
            a.file.display(),
            t.junk_len,
            torn_reason(t.reason)
        );
    }
    Ok(exit::OK)
}

/// What a torn tail was, in words.
pub fn torn_reason(r: untorn::TornReason) -> &'static str {
    match r {
        untorn::TornReason::Incomplete => "a record cut short",
        untorn::TornReason::Zeros => "zeros where data should be",
        _ => "torn",
    }
}

fn cmd_repair(a: LogArgs) -> Result<u8, Failure> {
    match untorn::repair(&a.file, log_format(a.jsonl))? {
        None => eprintln!("untorn: '{}' is whole; nothing to repair", a.file.display()),
        Some(t) => eprintln!(
            "untorn: repaired '{}': removed {} bytes after the last complete record ({})",
            a.file.display(),
            t.junk_len,
            torn_reason(t.reason)
        ),
    }
    Ok(exit::OK)
}

fn cmd_backup(a: BackupNowArgs) -> Result<u8, Failure> {
    let size = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
    let msg = format!(
        "backing up '{}' ({})",
        a.file.display(),
        wait::human_size(size)
    );
    let b = wait::with_spinner(&msg, || untorn::backup(&a.file, a.keep))?;
    print_out(format!("{}\n", b.path.display()).as_bytes())?;
    Ok(exit::OK)
}

fn cmd_restore(a: RestoreArgs) -> Result<u8, Failure> {
    let which = match (a.from, a.nth) {
        (Some(f), _) => untorn::Which::Named(f),
        (None, Some(k)) => untorn::Which::Nth(k),
        (None, None) => untorn::Which::Newest,
    };
    let r = untorn::restore(&a.file, which)?;
    eprintln!(
        "untorn: restored '{}' from '{}'{}",
        a.file.display(),
        r.from.name.to_string_lossy(),
        match &r.displaced {
            Some(d) => format!(
                "; the replaced version is kept as '{}'",
                d.name.to_string_lossy()
            ),
            None => String::new(),
        }
    );
    Ok(exit::OK)
}

/// An OS error's message as the library's errors give it (`untorn::Error`'s): without Rust's
/// " (os error N)", starting in lower case as in the middle of a sentence ("no such file or
/// directory", but "EOF while ..." stays). The CLI's one helper for `io::Error`s it reports
/// itself.
pub fn plain(e: &io::Error) -> String {
    let mut s = e.to_string();
    if let Some(i) = s.find(" (os error ") {
        s.truncate(i);
    }
    let mut c = s.chars();
    match c.next() {
        Some(first) if c.clone().next().is_some_and(|n| n.is_lowercase()) => {
            first.to_lowercase().collect::<String>() + c.as_str()
        }
        _ => s,
    }
}

/// Writes to stdout; a closed pipe (`untorn read f | head -1`) is not an error.
pub fn print_out(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Other(
            format!("cannot write to standard output: {}", plain(&e)),
            exit::FAILURE,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_reads_like_the_library() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(plain(&e), "no such file or directory");
        let e = io::Error::other("EOF while parsing");
        assert_eq!(plain(&e), "EOF while parsing");
    }

    #[test]
    fn placeholder_replaced_everywhere() {
        assert_eq!(replace_bytes(b"-o{}", b"{}", b"/t/x"), "-o/t/x");
        assert_eq!(replace_bytes(b"{}{}", b"{}", b"a"), "aa");
        assert_eq!(replace_bytes(b"none", b"{}", b"a"), "none");
    }

    #[test]
    fn json_style_yaml_is_recognised() {
        assert!(looks_like_json(b"  {\"a\": 1}"));
        assert!(looks_like_json(b"\n[1]"));
        assert!(!looks_like_json(b"a: 1\n"));
        assert!(!looks_like_json(b"- 1\n"));
    }
}
