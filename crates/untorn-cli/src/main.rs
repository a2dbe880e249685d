//! `untorn`: keep files whole from the shell. A thin layer over the `untorn` library: parse the
//! command line, call the library, print errors once, map them to exit codes (`exit.rs`).

mod args;
mod exit;
mod warnings;

use args::{
    AppendArgs, BackupNowArgs, BackupsArgs, CheckArgs, CheckFormat, CleanArgs, Cli, Command,
    EditArgs, LockArgs, LogArgs, ReadArgs, RecoverArgs, RestoreArgs, TailArgs, TxnArgs, WriteArgs,
};
use clap::Parser;
use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;

/// How a command failed: an error of the library, or a plain message with its exit code.
enum Failure {
    Untorn(untorn::Error),
    Other(String, u8),
}

impl From<untorn::Error> for Failure {
    fn from(e: untorn::Error) -> Self {
        Failure::Untorn(e)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
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
    init_tracing(cli.verbose);
    for uid in &cli.trust_user {
        untorn::trust::trust_owner(*uid);
    }
    let result = match cli.command {
        Command::Write(a) => cmd_write(a.0),
        Command::Lock(a) => cmd_lock(a.0),
        Command::Edit(a) => cmd_edit(a.0),
        Command::Read(a) => cmd_read(a.0),
        Command::Append(a) => cmd_append(a.0),
        Command::Repair(a) => cmd_repair(a.0),
        Command::Tail(a) => cmd_tail(a.0),
        Command::Backup(a) => cmd_backup(a.0),
        Command::Backups(a) => cmd_backups(a.0),
        Command::Restore(a) => cmd_restore(a.0),
        Command::Check(a) => cmd_check(a.0),
        Command::Clean(a) => cmd_clean(a.0),
        Command::Recover(a) => cmd_recover(a.0),
        Command::Txn(a) => cmd_txn(a.0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Untorn(e)) => {
            eprintln!("untorn: {e}");
            ExitCode::from(exit::for_kind(e.kind()))
        }
        Err(Failure::Other(msg, code)) => {
            eprintln!("untorn: {msg}");
            ExitCode::from(code)
        }
    }
}

/// Warnings of the library (state it left alone, and why) are always shown on stderr, one
/// line each (`untorn: ...`); `-v` shows untorn's tracing events (one per operation), `-vv`
/// more.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    if verbose == 0 {
        let _ = tracing::subscriber::set_global_default(warnings::Warnings);
        return;
    }
    let level = if verbose == 1 {
        tracing::Level::DEBUG
    } else {
        tracing::Level::TRACE
    };
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(io::stderr().is_terminal())
        .finish()
        .with(tracing_subscriber::filter::Targets::new().with_target("untorn", level))
        .init();
}

fn cmd_write(a: WriteArgs) -> Result<u8, Failure> {
    let opts = a.options();
    // Like sponge: all input is read before FILE is touched, so `jq . f | untorn write f` is
    // safe.
    let data = match a.content {
        Some(c) => std::os::unix::ffi::OsStringExt::into_vec(c),
        None => {
            let mut stdin = io::stdin().lock();
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
            let mut buf = Vec::new();
            stdin.read_to_end(&mut buf).map_err(|e| {
                Failure::Other(
                    format!(
                        "cannot write '{}': reading standard input failed: {}",
                        a.file.display(),
                        plain(&e)
                    ),
                    exit::FAILURE,
                )
            })?;
            buf
        }
    };
    opts.write(&a.file, &data)?;
    Ok(exit::OK)
}

fn cmd_lock(a: LockArgs) -> Result<u8, Failure> {
    let mut opts = a.wait.lock_options();
    opts.shared(a.shared).allow_shared_fs(a.allow_shared_fs);
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
    let mut write = untorn::OpenOptions::new();
    write.durability(a.durability.into());
    if let Some(n) = a.backup.keep {
        write.backups(n);
    }
    let mut update = untorn::UpdateOptions::new();
    update
        .lock_options(a.wait.lock_options())
        .write_options(write);
    let mut opts = untorn::EditOptions::new();
    opts.update_options(update);
    if let Some(f) = a.format {
        opts.format(f.into());
    }
    if let Some(d) = &a.default {
        opts.default_content(d.as_bytes());
    }
    opts.allow_empty(a.allow_empty);
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
        Ok(_) => match fwd.received() {
            // A signal during the write: the write completed; now exit as the signal asked.
            Some(sig) => {
                eprintln!(
                    "untorn: signal {sig} came during the write; the edit of '{}' is complete",
                    a.file.display()
                );
                Ok(exit::for_signal(sig))
            }
            None => Ok(exit::OK),
        },
        Err(e) if e.kind() == untorn::ErrorKind::Interrupted => Err(Failure::Other(
            e.to_string(),
            exit::for_signal(fwd.received().unwrap_or(2)),
        )),
        Err(e) => Err(e.into()),
    }
}

fn cmd_read(a: ReadArgs) -> Result<u8, Failure> {
    let mut opts = untorn::UpdateOptions::new();
    opts.lock_options(a.wait.lock_options());
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

fn log_format(jsonl: bool) -> untorn::LogFormat {
    if jsonl {
        untorn::LogFormat::JsonLines
    } else {
        untorn::LogFormat::Lines
    }
}

fn cmd_append(a: AppendArgs) -> Result<u8, Failure> {
    let mut opts = untorn::AppendOptions::new();
    opts.durability(a.durability.into())
        .format(log_format(a.jsonl));
    if let Some(d) = a.wait.timeout {
        opts.timeout(d);
    }
    let lines: Vec<Vec<u8>> = if a.lines.is_empty() {
        let mut input = Vec::new();
        io::stdin().lock().read_to_end(&mut input).map_err(|e| {
            Failure::Other(
                format!(
                    "cannot append to '{}': reading standard input failed: {e}",
                    a.file.display()
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
        a.lines
            .into_iter()
            .map(std::os::unix::ffi::OsStringExt::into_vec)
            .collect()
    };
    if !lines.is_empty() {
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
    }
    Ok(exit::OK)
}

/// What a torn tail was, in words.
fn torn_reason(r: untorn::TornReason) -> &'static str {
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

fn cmd_tail(a: TailArgs) -> Result<u8, Failure> {
    let mut log = untorn::read_log(&a.log.file, log_format(a.log.jsonl))?;
    if let Some(t) = log.torn {
        eprintln!(
            "untorn: note: '{}' ends in a torn tail ({} bytes after the last complete record: \
             {}), left out; `untorn repair` cuts it",
            a.log.file.display(),
            t.junk_len,
            torn_reason(t.reason)
        );
    }
    let keep = log.records.len().saturating_sub(a.lines);
    let records = log.records.split_off(keep);
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&r);
        out.push(b'\n');
    }
    print_out(&out)?;
    Ok(exit::OK)
}

fn cmd_backup(a: BackupNowArgs) -> Result<u8, Failure> {
    let b = untorn::backup(&a.file, a.keep)?;
    print_out(format!("{}\n", b.path.display()).as_bytes())?;
    Ok(exit::OK)
}

/// A time as `YYYY-MM-DD HH:MM:SS UTC`, read back from the backup's name.
fn show_time(b: &untorn::Backup) -> String {
    let name = b.name.to_string_lossy();
    let stamp = name.trim_end_matches(".bak");
    let s = &stamp[stamp.len().saturating_sub(26)..];
    if s.len() == 26 {
        format!(
            "{}-{}-{} {}:{}:{} UTC",
            &s[0..4],
            &s[4..6],
            &s[6..8],
            &s[9..11],
            &s[11..13],
            &s[13..15]
        )
    } else {
        String::from("?")
    }
}

fn cmd_backups(a: BackupsArgs) -> Result<u8, Failure> {
    let validator = CheckFormat::validator(a.format, &a.file, untorn::Validator::Exists);
    let mut out = String::new();
    for b in untorn::backups(&a.file)? {
        // One read of each backup: its checksum, then its format.
        let (valid, integrity) = match b.read_checked() {
            Ok((_, i)) if i.is_damaged() => ("DAMAGED".to_string(), i.label()),
            Ok((content, i)) => match validator.check(&content, &b.path) {
                Ok(()) => ("valid".to_string(), i.label()),
                Err(e) => match e.location() {
                    Some((l, c)) => (format!("INVALID at line {l} column {c}"), i.label()),
                    None => ("INVALID".to_string(), i.label()),
                },
            },
            Err(_) => ("INVALID".to_string(), "unreadable"),
        };
        out.push_str(&format!(
            "{}\t{}\t{} bytes\t{}\t{}\n",
            b.name.to_string_lossy(),
            show_time(&b),
            b.size,
            valid,
            integrity
        ));
    }
    print_out(out.as_bytes())?;
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

fn cmd_check(a: CheckArgs) -> Result<u8, Failure> {
    let validator = CheckFormat::validator(a.format, &a.file, untorn::Validator::Utf8);
    untorn::check(&a.file, &validator)?;
    Ok(exit::OK)
}

fn human_age(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn cmd_clean(a: CleanArgs) -> Result<u8, Failure> {
    // Report first, then delete: the plan is printed (and flushed) before anything goes.
    let c = untorn::CleanOptions::new()
        .older_than(a.older_than)
        .dry_run(true)
        .clean(&a.dir)?;
    let verb = if a.dry_run {
        "would remove"
    } else {
        "removing"
    };
    let mut out = String::new();
    for o in &c.removed {
        out.push_str(&format!(
            "{verb}\t{}\t{} bytes\t{} old\t(temp of '{}')\n",
            o.path.display(),
            o.size,
            human_age(o.age),
            o.target.to_string_lossy()
        ));
    }
    for o in &c.kept {
        let why = if o.in_use {
            "open in a running process".to_string()
        } else {
            format!("younger than {}", human_age(a.older_than))
        };
        out.push_str(&format!("kept\t{}\t{why}\n", o.path.display()));
    }
    for o in &c.untrusted {
        out.push_str(&format!(
            "left alone\t{}\tbelongs to {}\n",
            o.path.display(),
            untorn::trust::user_name(o.owner)
        ));
    }
    print_out(out.as_bytes())?;
    if !a.dry_run && !c.removed.is_empty() {
        untorn::CleanOptions::new()
            .older_than(a.older_than)
            .clean(&a.dir)?;
    }
    Ok(if c.untrusted.is_empty() {
        exit::OK
    } else {
        exit::UNTRUSTED
    })
}

fn cmd_recover(a: RecoverArgs) -> Result<u8, Failure> {
    let mut opts = untorn::RecoverOptions::new();
    opts.dry_run(a.dry_run)
        .older_than(a.older_than)
        .timeout(a.timeout)
        .abandon(a.abandon);
    if a.restore_invalid {
        if let Some(f) = a.format {
            opts.restore_invalid(f.into());
        }
    }
    let actions = untorn::recover(&a.dir, &opts)?;
    let would = if a.dry_run { "would " } else { "" };
    let mut out = String::new();
    let (mut unresolved, mut untrusted, mut failed) = (false, false, None);
    for act in &actions {
        use untorn::recover::Action;
        let who = |uid: &u32| untorn::trust::user_name(*uid);
        let line = match act {
            Action::RemovedTemp(o) => format!(
                "{would}remove orphaned temp {} ({} bytes)",
                o.path.display(),
                o.size
            ),
            Action::KeptTempInUse(o) => {
                format!("kept temp {} (open in a running process)", o.path.display())
            }
            Action::UntrustedTemp(o) => {
                untrusted = true;
                format!(
                    "left alone {}: named like a temp, but it belongs to {}",
                    o.path.display(),
                    who(&o.owner)
                )
            }
            Action::Restored { path, from, reason } => format!(
                "{would}restore {} from {} ({reason})",
                path.display(),
                from.name.to_string_lossy()
            ),
            Action::TxnRolledForward(j) => {
                format!("{would}finish the interrupted transaction {}", j.display())
            }
            Action::TxnRolledBack(j) => {
                format!("{would}undo the interrupted transaction {}", j.display())
            }
            Action::TxnFlagCleared(l) => {
                format!(
                    "{would}clear a stale transaction flag (no journal) from {}",
                    l.display()
                )
            }
            Action::SkippedDamagedBackup {
                path,
                backup,
                reason,
            } => format!(
                "skipped the damaged backup {} of {} ({reason})",
                backup.name.to_string_lossy(),
                path.display()
            ),
            Action::UntrustedJournal { path, owner } => {
                untrusted = true;
                format!(
                    "left alone the transaction journal {}: it belongs to {} (recover as that \
                     user, or --trust-user)",
                    path.display(),
                    who(owner)
                )
            }
            Action::RefusedJournal { path, why } => {
                untrusted = true;
                format!(
                    "left alone the transaction journal {}: {why}",
                    path.display()
                )
            }
            Action::TxnAbandoned { path, failed } => format!(
                "finished the interrupted transaction {}, giving up: {}",
                path.display(),
                failed.join("; ")
            ),
            Action::InvalidWithoutBackup { path, reason } => {
                unresolved = true;
                format!("cannot fix {}: no valid backup ({reason})", path.display())
            }
            Action::SkippedSymlink(p) => format!(
                "skipped {}: a symbolic link (recovery never restores through a link)",
                p.display()
            ),
            Action::Failed { kind, error, .. } => {
                failed.get_or_insert(*kind);
                format!("failed: {error}")
            }
            _ => format!("{act:?}"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    if actions.is_empty() {
        out.push_str("nothing to do\n");
    }
    print_out(out.as_bytes())?;
    Ok(match failed {
        Some(k) => exit::for_kind(k),
        None if unresolved => exit::INVALID,
        None if untrusted => exit::UNTRUSTED,
        None => exit::OK,
    })
}

fn cmd_txn(a: TxnArgs) -> Result<u8, Failure> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use untorn::txn::ManifestOp;
    let usage = |msg: String| Failure::Other(format!("txn: {msg}"), exit::USAGE);
    let mut ops = untorn::txn::parse_ops(a.changes.iter().cloned()).map_err(usage)?;
    if let Some(m) = &a.manifest {
        let text = std::fs::read(m).map_err(|e| {
            Failure::Other(
                format!("cannot read manifest '{}': {}", m.display(), plain(&e)),
                exit::for_io(&e),
            )
        })?;
        let more = untorn::txn::parse_manifest(&text)
            .map_err(|e| usage(format!("manifest '{}': {e}", m.display())))?;
        ops.extend(more);
    }
    if ops.is_empty() {
        return Err(usage(
            "no changes given (put TARGET=SOURCE, rm PATH, mv FROM=TO)".into(),
        ));
    }
    // SIGINT and SIGTERM must not cut a commit in half: note them. Before the commit point they
    // abandon the transaction at once (a wait for its locks stops too); during the commit it
    // is finished first. Then exit with the signal's code.
    let int = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGINT, &int),
        (signal_hook::consts::SIGTERM, &term),
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGTERM, &stop),
    ] {
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    let interrupted = || {
        if int.load(Ordering::SeqCst) {
            Some(exit::INTERRUPTED)
        } else if term.load(Ordering::SeqCst) {
            Some(exit::TERMINATED)
        } else {
            None
        }
    };
    // Every new content is read (and checked) before anything is staged, on a helper thread:
    // a read of a slow FIFO or of standard input blocks in the kernel, and a signal must still
    // end untorn at once (nothing is staged yet, so nothing is left behind).
    let (sent, got) = std::sync::mpsc::channel();
    let puts = ops.clone();
    let no_check = a.no_check;
    std::thread::spawn(move || {
        let _ = sent.send(read_sources(&puts, no_check));
    });
    let contents = loop {
        match got.recv_timeout(std::time::Duration::from_millis(20)) {
            Ok(r) => break r?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(code) = interrupted() {
                    eprintln!("untorn: interrupted before the commit; nothing was changed");
                    return Ok(code);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Failure::Other(
                    "txn: reading the new contents failed".into(),
                    exit::FAILURE,
                ))
            }
        }
    };
    let abandon = |tx: untorn::Transaction, code: u8| {
        if let Err(e) = tx.discard() {
            eprintln!("untorn: {e}");
        }
        eprintln!("untorn: interrupted before the commit; nothing was changed");
        Ok(code)
    };
    let mut tx = untorn::Transaction::new();
    let mut lock = a.wait.lock_options();
    lock.cancel_when(stop.clone());
    tx.lock_options(lock);
    for (op, content) in ops.iter().zip(contents) {
        if let Some(code) = interrupted() {
            return abandon(tx, code);
        }
        match op {
            ManifestOp::Put { target, .. } => tx.write(target, content.expect("read above"))?,
            ManifestOp::Remove(p) => tx.remove(p)?,
            ManifestOp::Rename { from, to } => tx.rename(from, to)?,
            _ => return Err(usage(format!("unsupported change {op:?}"))),
        }
    }
    if let Some(code) = interrupted() {
        return abandon(tx, code);
    }
    let c = match tx.commit() {
        Err(e) if e.kind() == untorn::ErrorKind::Interrupted => {
            eprintln!("untorn: interrupted while waiting for the locks; nothing was changed");
            return Ok(interrupted().unwrap_or(exit::INTERRUPTED));
        }
        r => r?,
    };
    let mut out = String::new();
    for p in &c.written {
        out.push_str(&format!("wrote\t{}\n", p.display()));
    }
    for p in &c.removed {
        out.push_str(&format!("removed\t{}\n", p.display()));
    }
    for (f, t) in &c.renamed {
        out.push_str(&format!("renamed\t{}\t{}\n", f.display(), t.display()));
    }
    print_out(out.as_bytes())?;
    // A signal during the commit: it finished; now exit as the signal asked.
    Ok(interrupted().unwrap_or(exit::OK))
}

/// The new content of each `put` of `ops` (`None` for the other changes), read from its source
/// (`-`: standard input, for one put only) and, unless `no_check`, checked for its target's
/// format; an error names the source.
fn read_sources(
    ops: &[untorn::txn::ManifestOp],
    no_check: bool,
) -> Result<Vec<Option<Vec<u8>>>, Failure> {
    use untorn::txn::ManifestOp;
    let usage = |msg: String| Failure::Other(format!("txn: {msg}"), exit::USAGE);
    let mut contents = Vec::with_capacity(ops.len());
    let mut stdin_used = false;
    for op in ops {
        if let ManifestOp::Put { target, source } = op {
            let content = if source.as_os_str() == "-" {
                if stdin_used {
                    return Err(usage(
                        "standard input ('-') can be the source of one put only".into(),
                    ));
                }
                stdin_used = true;
                let mut v = Vec::new();
                io::stdin().lock().read_to_end(&mut v).map_err(|e| {
                    Failure::Other(
                        format!(
                            "cannot read standard input for '{}': {}",
                            target.display(),
                            plain(&e)
                        ),
                        exit::FAILURE,
                    )
                })?;
                v
            } else {
                std::fs::read(source).map_err(|e| {
                    Failure::Other(
                        format!(
                            "cannot read '{}' (the new content of '{}'): {}",
                            source.display(),
                            target.display(),
                            plain(&e)
                        ),
                        exit::for_io(&e),
                    )
                })?
            };
            if !no_check {
                untorn::Format::from_path(target)
                    .check(&content, source)
                    .map_err(|e| {
                        Failure::Other(
                            format!("{e} (the new content of '{}')", target.display()),
                            exit::for_kind(e.kind()),
                        )
                    })?;
            }
            contents.push(Some(content));
        } else {
            contents.push(None);
        }
    }
    Ok(contents)
}

/// An I/O error's message without Rust's "(os error N)".
fn plain(e: &io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error ").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

/// Writes to stdout; a closed pipe (`untorn read f | head -1`) is not an error.
fn print_out(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Other(
            format!("cannot write to standard output: {e}"),
            exit::FAILURE,
        )),
    }
}
