//! The commands that report: `backups`, `check`, `clean`, `recover`, `tail` and `txn`, each in
//! text (for people) or, with `--json`, one JSON object per line (for scripts). The JSON field
//! names are part of untorn's interface, like the exit codes: documented in the README
//! ("JSON output"), never renamed or given another meaning; new fields may be added.

use crate::args::{BackupsArgs, CheckArgs, CheckFormat, CleanArgs, RecoverArgs, TailArgs, TxnArgs};
use crate::{exit, plain, print_out, wait, Failure};
use serde_json::{json, Value};
use std::io::{self, Read};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// A path as a JSON string (not UTF-8: lossily).
fn p(path: &Path) -> Value {
    Value::String(path.to_string_lossy().into_owned())
}

/// One JSON object per line.
fn json_lines(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// A time as UTC: `(year, month, day, hour, minute, second, nanosecond)`.
fn utc(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        d.subsec_nanos(),
    )
}

/// `2026-11-22 03:15:00 UTC`, for people.
fn show_time(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = utc(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// `2026-11-22T03:15:00.123456789Z` (RFC 3339), for JSON.
fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ns) = utc(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ns:09}Z")
}

pub fn cmd_tail(a: TailArgs) -> Result<u8, Failure> {
    let mut log = untorn::read_log(&a.log.file, crate::log_format(a.log.jsonl))?;
    if let Some(t) = log.torn {
        eprintln!(
            "untorn: note: '{}' ends in a torn tail ({} bytes after the last complete record: \
             {}), left out; `untorn repair` cuts it",
            a.log.file.display(),
            t.junk_len,
            crate::torn_reason(t.reason)
        );
    }
    let keep = log.records.len().saturating_sub(a.lines);
    let records = log.records.split_off(keep);
    let mut out = Vec::new();
    for r in records {
        if a.json {
            // {"record": ...}: a plain log's line as a string; a JSON Lines record as the
            // value it is.
            let record = if a.log.jsonl {
                serde_json::from_slice(&r)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r).into_owned()))
            } else {
                Value::String(String::from_utf8_lossy(&r).into_owned())
            };
            out.extend_from_slice(json!({ "record": record }).to_string().as_bytes());
        } else {
            out.extend_from_slice(&r);
        }
        out.push(b'\n');
    }
    print_out(&out)?;
    Ok(exit::OK)
}

pub fn cmd_backups(a: BackupsArgs) -> Result<u8, Failure> {
    let validator = CheckFormat::validator(a.format, &a.file, untorn::Validator::Exists);
    let mut text = String::new();
    let mut objects = Vec::new();
    for b in untorn::backups(&a.file)? {
        // One read of each backup: its checksum, then its format.
        let (valid, why, loc, integrity, integrity_why) = match b.read_checked() {
            Ok((_, i)) if i.is_damaged() => {
                let why = match &i {
                    untorn::Integrity::Damaged(w) => w.clone(),
                    _ => String::new(),
                };
                (
                    false,
                    Some(format!("damaged: {why}")),
                    None,
                    i.label(),
                    Some(why),
                )
            }
            Ok((content, i)) => {
                let iwhy = match &i {
                    untorn::Integrity::Unverified(w) => Some(w.clone()),
                    _ => None,
                };
                match validator.check(&content, &b.path) {
                    Ok(()) => (true, None, None, i.label(), iwhy),
                    Err(e) => (false, Some(e.to_string()), e.location(), i.label(), iwhy),
                }
            }
            Err(e) => (false, Some(e.to_string()), None, "unreadable", None),
        };
        if a.json {
            objects.push(json!({
                "name": b.name.to_string_lossy(),
                "path": p(&b.path),
                "time": rfc3339(b.time),
                "size": b.size,
                "valid": valid,
                "reason": why,
                "line": loc.map(|l| l.0),
                "column": loc.map(|l| l.1),
                "integrity": integrity,
                "integrity_reason": integrity_why,
            }));
            continue;
        }
        let shown = if integrity == "damaged" {
            "DAMAGED".to_string()
        } else if valid {
            "valid".to_string()
        } else {
            match loc {
                Some((l, c)) => format!("INVALID at line {l} column {c}"),
                None => "INVALID".to_string(),
            }
        };
        text.push_str(&format!(
            "{}\t{}\t{} bytes\t{}\t{}\n",
            b.name.to_string_lossy(),
            show_time(b.time),
            b.size,
            shown,
            integrity
        ));
    }
    if a.json {
        print_out(&json_lines(&objects))?;
    } else {
        print_out(text.as_bytes())?;
    }
    Ok(exit::OK)
}

/// The error of `check` in words: "cannot check 'f': no such file or directory", "'f' is not
/// valid UTF-8 at line 1 column 1", "'f' is damaged: ...", or the parser's own message
/// ("cannot parse 'f' as JSON: ...").
fn check_message(e: &untorn::Error, file: &Path) -> String {
    if e.kind() == untorn::ErrorKind::NotFound {
        return format!(
            "cannot check '{}': no such file or directory",
            file.display()
        );
    }
    let msg = e.to_string();
    let prefix = format!("cannot read a valid version of '{}': ", e.path().display());
    match msg.strip_prefix(&prefix) {
        Some(detail) if detail.starts_with("not valid ") || detail.starts_with("damaged") => {
            format!("'{}' is {detail}", e.path().display())
        }
        Some(detail) => format!("'{}' is not valid: {detail}", e.path().display()),
        None => msg,
    }
}

pub fn cmd_check(a: CheckArgs) -> Result<u8, Failure> {
    let validator = CheckFormat::validator(a.format, &a.file, untorn::Validator::Utf8);
    let r = untorn::recover::check_judged(&a.file, &validator);
    if a.json {
        let v = match &r {
            Ok(i) => json!({
                "path": p(&a.file),
                "format": CheckFormat::name_of(&validator),
                "valid": true,
                "integrity": i.label(),
                "line": null,
                "column": null,
                "message": null,
                "error_kind": null,
            }),
            Err(e) => {
                // Invalid content may still be whole (untorn wrote it so); say which.
                let integrity = match e.kind() {
                    untorn::ErrorKind::InvalidContent => {
                        untorn::integrity(&a.file).ok().map(|i| i.label())
                    }
                    _ => None,
                };
                json!({
                    "path": p(&a.file),
                    "format": CheckFormat::name_of(&validator),
                    "valid": false,
                    "integrity": integrity,
                    "line": e.location().map(|l| l.0),
                    "column": e.location().map(|l| l.1),
                    "message": check_message(e, &a.file),
                    "error_kind": exit::kind_name(e.kind()),
                })
            }
        };
        print_out(&json_lines(&[v]))?;
    }
    match r {
        Ok(_) => Ok(exit::OK),
        Err(e) => Err(Failure::Other(
            check_message(&e, &a.file),
            exit::for_kind(e.kind()),
        )),
    }
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

pub fn cmd_clean(a: CleanArgs) -> Result<u8, Failure> {
    // Report first, then delete: the plan is printed (and flushed) before anything goes.
    let msg = format!("looking for orphaned temps in '{}'", a.dir.display());
    let c = wait::with_spinner(&msg, || {
        untorn::CleanOptions::new()
            .older_than(a.older_than)
            .dry_run(true)
            .clean(&a.dir)
    })?;
    let verb = if a.dry_run {
        "would remove"
    } else {
        "removing"
    };
    let mut out = String::new();
    let mut objects = Vec::new();
    for o in &c.removed {
        out.push_str(&format!(
            "{verb}\t{}\t{} bytes\t{} old\t(temp of '{}')\n",
            o.path.display(),
            o.size,
            human_age(o.age),
            o.target.to_string_lossy()
        ));
        objects.push(json!({
            "path": p(&o.path),
            "target": o.target.to_string_lossy(),
            "size": o.size,
            "age_s": o.age.as_secs(),
            "action": if a.dry_run { "would_remove" } else { "remove" },
            "removed": !a.dry_run,
            "reason": null,
            "owner": untorn::trust::user_name(o.owner),
        }));
    }
    for o in &c.kept {
        let (why, reason) = if o.in_use {
            ("open in a running process".to_string(), "in_use")
        } else {
            (
                format!("younger than {}", human_age(a.older_than)),
                "too_young",
            )
        };
        out.push_str(&format!("kept\t{}\t{why}\n", o.path.display()));
        objects.push(json!({
            "path": p(&o.path),
            "target": o.target.to_string_lossy(),
            "size": o.size,
            "age_s": o.age.as_secs(),
            "action": "keep",
            "removed": false,
            "reason": reason,
            "owner": untorn::trust::user_name(o.owner),
        }));
    }
    for o in &c.untrusted {
        out.push_str(&format!(
            "left alone\t{}\tbelongs to {}\n",
            o.path.display(),
            untorn::trust::user_name(o.owner)
        ));
        objects.push(json!({
            "path": p(&o.path),
            "target": o.target.to_string_lossy(),
            "size": o.size,
            "age_s": o.age.as_secs(),
            "action": "leave_alone",
            "removed": false,
            "reason": "untrusted",
            "owner": untorn::trust::user_name(o.owner),
        }));
    }
    if a.json {
        print_out(&json_lines(&objects))?;
    } else {
        print_out(out.as_bytes())?;
    }
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

pub fn cmd_recover(a: RecoverArgs) -> Result<u8, Failure> {
    let mut opts = untorn::RecoverOptions::new();
    opts.dry_run(a.dry_run)
        .older_than(a.older_than)
        .timeout(a.timeout)
        .abandon(a.abandon);
    if a.restore_invalid {
        use crate::args::CheckFormat as F;
        match a.format {
            Some(F::Json) => opts.restore_invalid(untorn::Format::Json),
            Some(F::Yaml) => opts.restore_invalid(untorn::Format::Yaml),
            Some(F::Toml) => opts.restore_invalid(untorn::Format::Toml),
            Some(F::Raw) => opts.restore_invalid(untorn::Format::Raw),
            Some(F::Utf8) => opts.restore_invalid_utf8(),
            None => &mut opts,
        };
    }
    let msg = format!("recovering '{}'", a.dir.display());
    let actions = wait::with_spinner(&msg, || untorn::recover(&a.dir, &opts))?;
    let would = if a.dry_run { "would " } else { "" };
    let mut out = String::new();
    let mut objects = Vec::new();
    let (mut unresolved, mut untrusted, mut failed) = (false, false, None);
    for act in &actions {
        use untorn::recover::Action;
        let who = |uid: &u32| untorn::trust::user_name(*uid);
        let (line, obj) = match act {
            Action::RemovedTemp(o) => (
                format!(
                    "{would}remove orphaned temp {} ({} bytes)",
                    o.path.display(),
                    o.size
                ),
                json!({"action": "remove_temp", "path": p(&o.path), "size": o.size,
                       "target": o.target.to_string_lossy()}),
            ),
            Action::KeptTempInUse(o) => (
                format!("kept temp {} (open in a running process)", o.path.display()),
                json!({"action": "keep_temp", "path": p(&o.path), "reason": "in_use"}),
            ),
            Action::UntrustedTemp(o) => {
                untrusted = true;
                (
                    format!(
                        "left alone {}: named like a temp, but it belongs to {}",
                        o.path.display(),
                        who(&o.owner)
                    ),
                    json!({"action": "untrusted_temp", "path": p(&o.path), "owner": who(&o.owner)}),
                )
            }
            Action::Restored { path, from, reason } => (
                format!(
                    "{would}restore {} from {} ({reason})",
                    path.display(),
                    from.name.to_string_lossy()
                ),
                json!({"action": "restore", "path": p(path), "from": from.name.to_string_lossy(),
                       "reason": reason}),
            ),
            Action::TxnRolledForward(j) => (
                format!("{would}finish the interrupted transaction {}", j.display()),
                json!({"action": "finish_transaction", "path": p(j)}),
            ),
            Action::TxnRolledBack(j) => (
                format!("{would}undo the interrupted transaction {}", j.display()),
                json!({"action": "undo_transaction", "path": p(j)}),
            ),
            Action::TxnFlagCleared(l) => (
                format!(
                    "{would}clear a stale transaction flag (no journal) from {}",
                    l.display()
                ),
                json!({"action": "clear_flag", "path": p(l)}),
            ),
            Action::SkippedDamagedBackup {
                path,
                backup,
                reason,
            } => (
                format!(
                    "skipped the damaged backup {} of {} ({reason})",
                    backup.name.to_string_lossy(),
                    path.display()
                ),
                json!({"action": "skip_damaged_backup", "path": p(path),
                       "backup": backup.name.to_string_lossy(), "reason": reason}),
            ),
            Action::UntrustedJournal { path, owner } => {
                untrusted = true;
                (
                    format!(
                        "left alone the transaction journal {}: it belongs to {} (recover as \
                         that user, or --trust-user)",
                        path.display(),
                        who(owner)
                    ),
                    json!({"action": "untrusted_journal", "path": p(path), "owner": who(owner)}),
                )
            }
            Action::RefusedJournal { path, why } => {
                untrusted = true;
                (
                    format!(
                        "left alone the transaction journal {}: {why}",
                        path.display()
                    ),
                    json!({"action": "refused_journal", "path": p(path), "reason": why}),
                )
            }
            Action::TxnAbandoned { path, failed } => (
                format!(
                    "finished the interrupted transaction {}, giving up: {}",
                    path.display(),
                    failed.join("; ")
                ),
                json!({"action": "abandon_transaction", "path": p(path), "failed": failed}),
            ),
            Action::InvalidWithoutBackup { path, reason } => {
                unresolved = true;
                (
                    format!("cannot fix {}: no valid backup ({reason})", path.display()),
                    json!({"action": "invalid_without_backup", "path": p(path), "reason": reason}),
                )
            }
            Action::SkippedSymlink(path) => (
                format!(
                    "skipped {}: a symbolic link (recovery never restores through a link)",
                    path.display()
                ),
                json!({"action": "skip_symlink", "path": p(path)}),
            ),
            Action::Failed { path, kind, error } => {
                failed.get_or_insert(*kind);
                (
                    format!("failed: {error}"),
                    json!({"action": "failed", "path": p(path), "error": error,
                           "error_kind": exit::kind_name(*kind), "exit": exit::for_kind(*kind)}),
                )
            }
            other => (
                format!("{other:?}"),
                json!({"action": "other", "detail": format!("{other:?}")}),
            ),
        };
        out.push_str(&line);
        out.push('\n');
        let mut obj = obj;
        obj["dry_run"] = Value::Bool(a.dry_run);
        objects.push(obj);
    }
    if a.json {
        print_out(&json_lines(&objects))?;
    } else {
        if actions.is_empty() {
            out.push_str("nothing to do\n");
        }
        print_out(out.as_bytes())?;
    }
    Ok(match failed {
        Some(k) => exit::for_kind(k),
        None if unresolved => exit::INVALID,
        None if untrusted => exit::UNTRUSTED,
        None => exit::OK,
    })
}

pub fn cmd_txn(a: TxnArgs) -> Result<u8, Failure> {
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
    let mut objects = Vec::new();
    for w in &c.written {
        out.push_str(&format!("wrote\t{}\n", w.display()));
        objects.push(json!({"action": "wrote", "path": p(w)}));
    }
    for r in &c.removed {
        out.push_str(&format!("removed\t{}\n", r.display()));
        objects.push(json!({"action": "removed", "path": p(r)}));
    }
    for (f, t) in &c.renamed {
        out.push_str(&format!("renamed\t{}\t{}\n", f.display(), t.display()));
        objects.push(json!({"action": "renamed", "path": p(f), "to": p(t)}));
    }
    if a.json {
        print_out(&json_lines(&objects))?;
    } else {
        print_out(out.as_bytes())?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_read_as_utc() {
        let t = UNIX_EPOCH + Duration::new(1_795_317_300, 123_456_789);
        assert_eq!(rfc3339(t), "2026-11-22T03:15:00.123456789Z");
        assert_eq!(show_time(t), "2026-11-22 03:15:00 UTC");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(show_time(leap), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn backup_names_and_times_agree() {
        let t = UNIX_EPOCH + Duration::new(1_795_317_300, 5);
        let name = untorn::backup::backup_name("s.json".as_ref(), t);
        let (_, back) = untorn::backup::parse_backup_name(&name).unwrap();
        assert_eq!(rfc3339(back), rfc3339(t));
    }
}
