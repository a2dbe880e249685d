//! `s3://bucket/key` on the command line: a command whose FILE (or DIR, or a transaction's
//! change) is a URL comes here, before any local code runs; local paths never do, and never
//! start the async runtime. The operations are `untorn::remote`'s (README: "Object storage").

use crate::args::{Command, Deferred};
use crate::exit;
use crate::Failure;
use std::process::ExitCode;

/// Whether `arg` is a URL (`scheme://...`) rather than a local path (a local path that looks
/// like one can be written `./s3://...`).
fn looks_like_url(arg: &std::ffi::OsStr) -> bool {
    let Some(s) = arg.to_str() else { return false };
    match s.split_once("://") {
        Some((scheme, _)) => {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// The URL a command names, if it names one.
fn url_of(command: &Command) -> Option<String> {
    let path = match command {
        Command::Write(Deferred(a, _)) => a.file.as_os_str(),
        Command::Edit(Deferred(a, _)) => a.file.as_os_str(),
        Command::Read(Deferred(a, _)) => a.file.as_os_str(),
        Command::Check(Deferred(a, _)) => a.file.as_os_str(),
        Command::Append(Deferred(a, _)) => a.file.as_os_str(),
        Command::Tail(Deferred(a, _)) => a.log.file.as_os_str(),
        Command::Repair(Deferred(a, _)) => a.file.as_os_str(),
        Command::Backups(Deferred(a, _)) => a.file.as_os_str(),
        Command::Backup(Deferred(a, _)) => a.file.as_os_str(),
        Command::Restore(Deferred(a, _)) => a.file.as_os_str(),
        Command::Lock(Deferred(a, _)) => a.file.as_os_str(),
        Command::Clean(Deferred(a, _)) => a.dir.as_os_str(),
        Command::Recover(Deferred(a, _)) => a.dir.as_os_str(),
        Command::Txn(Deferred(a, _)) => {
            return a
                .changes
                .iter()
                .find(|c| c.to_str().is_some_and(|s| s.contains("://")))
                .map(|c| c.to_string_lossy().into_owned())
        }
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    looks_like_url(path).then(|| path.to_string_lossy().into_owned())
}

/// A command that names a URL is run here, and its exit code comes back as `Err`; any other
/// comes back as it was, for the local code.
pub fn route(command: Command) -> Result<Command, ExitCode> {
    let Some(url) = url_of(&command) else {
        return Ok(command);
    };
    let result = run(command, &url);
    Err(match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Untorn(e)) => {
            eprintln!("untorn: {e}");
            // A malformed URL is a bad command line.
            let code = if e.op() == untorn::Op::Open && e.kind() == untorn::ErrorKind::InvalidInput
            {
                exit::USAGE
            } else {
                exit::for_kind(e.kind())
            };
            ExitCode::from(code)
        }
        Err(Failure::Other(msg, code)) => {
            eprintln!("untorn: {msg}");
            ExitCode::from(code)
        }
    })
}

/// Without the `remote` feature (the default build: the local `untorn` links no HTTP client,
/// TLS or async runtime, and starts as fast as before), object URLs go to `untorn-remote`
/// beside this binary, if it was installed (built with `--features remote`).
#[cfg(not(feature = "remote"))]
fn run(_command: Command, url: &str) -> Result<u8, Failure> {
    hand_over(url)
}

/// `untorn-remote` (the same program, see Cargo.toml) runs the command; `untorn` hands it
/// over to `untorn-remote` beside itself, with the same arguments (exec: the same process,
/// standard streams and signals). The branch is decided at compile time, so the `untorn`
/// binary links none of the remote code.
#[cfg(feature = "remote")]
fn run(command: Command, url: &str) -> Result<u8, Failure> {
    if env!("CARGO_BIN_NAME") == "untorn-remote" {
        handlers::run(command, url)
    } else {
        hand_over(url)
    }
}

fn hand_over(url: &str) -> Result<u8, Failure> {
    use std::os::unix::process::CommandExt;
    let helper = std::env::current_exe()
        .map(|p| p.with_file_name("untorn-remote"))
        .map_err(|e| Failure::Other(format!("'{url}': {e}"), exit::FAILURE))?;
    let e = std::process::Command::new(&helper)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(Failure::Other(
        format!(
            "'{url}': cannot run '{}', which handles object URLs: {e} (build it with `cargo \
             build --release -p untorn-cli --features remote` and install it beside untorn)",
            helper.display()
        ),
        exit::UNSUPPORTED,
    ))
}

#[cfg(feature = "remote")]
mod handlers {
    use crate::args::{CheckFormat, Command, Deferred, DurabilityArg, SymlinkArg, TempArg};
    use crate::{exit, plain, print_out, torn_reason, Failure};
    use std::io::{self, IsTerminal, Read};
    use untorn::remote::{RemoteOptions, Url};
    use untorn::LogFormat;

    /// A flag that has no meaning on a bucket: refused, not ignored.
    fn not_for_urls(url: &str, flag: &str, why: &str) -> Failure {
        Failure::Other(
            format!("{flag} does not apply to '{url}': {why}"),
            exit::USAGE,
        )
    }

    fn options(timeout: Option<std::time::Duration>) -> RemoteOptions {
        let mut o = RemoteOptions::new();
        if let Some(t) = timeout {
            o.timeout(t);
        }
        o
    }

    fn durability(url: &str, d: DurabilityArg) -> Result<(), Failure> {
        if d == DurabilityArg::Full {
            Ok(())
        } else {
            Err(not_for_urls(
                url,
                "--durability",
                "a version is durable when the store acknowledges it, by the store's own terms",
            ))
        }
    }

    fn no_backup(url: &str, keep: Option<usize>) -> Result<(), Failure> {
        match keep {
            None => Ok(()),
            Some(_) => Err(not_for_urls(
                url,
                "--backup",
                "turn versioning on for the bucket: it keeps every version a write replaces \
                 (`untorn backups URL`, `untorn restore URL`)",
            )),
        }
    }

    fn unsupported(msg: String) -> Failure {
        Failure::Other(msg, exit::UNSUPPORTED)
    }

    pub fn run(command: Command, url: &str) -> Result<u8, Failure> {
        match command {
            Command::Lock(_) => Err(unsupported(format!(
                "cannot lock '{url}': an object store gives compare-and-swap, not locks, and a \
                 lease without a fencing token is unsafe (a paused holder can wake up after its \
                 lease ran out and write anyway); use `untorn edit {url} -- FILTER`, which \
                 re-runs FILTER when another writer got there first"
            ))),
            Command::Backup(_) => Err(unsupported(format!(
                "cannot back up '{url}': the bucket's versioning keeps every version a write \
                 replaces (`untorn backups {url}`)"
            ))),
            Command::Clean(_) | Command::Recover(_) => Err(unsupported(format!(
                "'{url}': nothing to clean or recover: remote writes leave no temps or journals \
                 (every PUT is whole, or did not happen)"
            ))),
            Command::Txn(_) => Err(unsupported(format!(
                "'{url}': transactions over objects are not built yet (the README's Object \
                 storage section says how they would work)"
            ))),
            Command::Repair(_) => {
                eprintln!(
                    "untorn: '{url}' is whole; nothing to repair (a remote log's batches are \
                     written whole)"
                );
                Ok(exit::OK)
            }
            Command::Write(Deferred(a, _)) => {
                if a.mode.is_some() {
                    return Err(not_for_urls(
                        url,
                        "--mode",
                        "objects have no permission bits",
                    ));
                }
                if a.symlink != SymlinkArg::Follow || a.temp != TempArg::Auto {
                    return Err(not_for_urls(
                        url,
                        "--symlink/--temp",
                        "an object is written with one PUT",
                    ));
                }
                durability(url, a.durability)?;
                no_backup(url, a.backup.keep)?;
                let u = Url::parse(url)?;
                if a.exec {
                    return Err(not_for_urls(
                        url,
                        "--exec",
                        "a program cannot write to an object's path",
                    ));
                }
                let mut a = a;
                let data = match crate::write_content(&mut a)? {
                    Some(c) => std::os::unix::ffi::OsStringExt::into_vec(c),
                    None => read_stdin(url, "write", true)?,
                };
                let o = options(a.timeout);
                if a.no_clobber {
                    o.create(&u, &data)?;
                } else {
                    o.write(&u, &data)?;
                }
                Ok(exit::OK)
            }
            Command::Read(Deferred(a, _)) => {
                let u = Url::parse(url)?;
                let content = match (options(a.wait.timeout).read(&u)?, a.default) {
                    (Some(c), _) => c,
                    (None, Some(d)) => d.into_bytes(),
                    (None, None) => {
                        return Err(Failure::Other(
                            format!("cannot read '{url}': no such object"),
                            exit::NOT_FOUND,
                        ))
                    }
                };
                print_out(&content)?;
                Ok(exit::OK)
            }
            Command::Check(Deferred(a, _)) => {
                let u = Url::parse(url)?;
                let validator = CheckFormat::validator(
                    a.format,
                    std::path::Path::new(u.key()),
                    untorn::Validator::Utf8,
                );
                options(None).check(&u, &validator)?;
                Ok(exit::OK)
            }
            Command::Edit(Deferred(a, _)) => edit(a, url),
            Command::Append(Deferred(a, _)) => {
                durability(url, a.durability)?;
                let u = Url::parse(url)?;
                let lines: Vec<Vec<u8>> = if a.lines.is_empty() {
                    read_stdin(url, "append to", false)?
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
                    options(a.wait.timeout).append_all(&u, &lines, log_format(a.jsonl))?;
                }
                Ok(exit::OK)
            }
            Command::Tail(Deferred(a, _)) => {
                let u = Url::parse(url)?;
                let log = options(None).tail(&u, log_format(a.log.jsonl), a.lines)?;
                let mut out = Vec::new();
                for r in log.records {
                    out.extend_from_slice(&r);
                    out.push(b'\n');
                }
                if let Some(t) = log.torn {
                    eprintln!("untorn: note: '{url}': {}", torn_reason(t.reason));
                }
                print_out(&out)?;
                Ok(exit::OK)
            }
            Command::Backups(Deferred(a, _)) => {
                let u = Url::parse(url)?;
                let o = options(None);
                let validator = CheckFormat::validator(
                    a.format,
                    std::path::Path::new(u.key()),
                    untorn::Validator::Exists,
                );
                let mut out = String::new();
                for v in o.versions(&u)? {
                    let (valid, integrity) = match o.read_version(&u, &v.id) {
                        Ok((_, Some(false))) => ("DAMAGED".to_string(), "damaged"),
                        Ok((content, whole)) => {
                            let label = if whole == Some(true) {
                                "whole"
                            } else {
                                "unverified"
                            };
                            match validator.check(&content, std::path::Path::new(url)) {
                                Ok(()) => ("valid".to_string(), label),
                                Err(e) => match e.location() {
                                    Some((l, c)) => {
                                        (format!("INVALID at line {l} column {c}"), label)
                                    }
                                    None => ("INVALID".to_string(), label),
                                },
                            }
                        }
                        Err(_) => ("INVALID".to_string(), "unreadable"),
                    };
                    out.push_str(&format!(
                        "{}\t{}\t{} bytes\t{}\t{}\n",
                        v.id, v.last_modified, v.size, valid, integrity
                    ));
                }
                print_out(out.as_bytes())?;
                Ok(exit::OK)
            }
            Command::Restore(Deferred(a, _)) => {
                let u = Url::parse(url)?;
                let which = match (a.from, a.nth) {
                    (Some(f), _) => untorn::Which::Named(f),
                    (None, Some(k)) => untorn::Which::Nth(k),
                    (None, None) => untorn::Which::Newest,
                };
                let r = options(None).restore(&u, &which)?;
                eprintln!(
                    "untorn: restored '{url}' from version '{}'{}",
                    r.from.id,
                    match &r.displaced {
                        Some(d) =>
                            format!("; the replaced version '{d}' stays in the bucket's history"),
                        None => String::new(),
                    }
                );
                Ok(exit::OK)
            }
            #[allow(unreachable_patterns)]
            _ => Err(unsupported(format!(
                "'{url}': this command does not take object URLs"
            ))),
        }
    }

    fn log_format(jsonl: bool) -> LogFormat {
        if jsonl {
            LogFormat::JsonLines
        } else {
            LogFormat::Lines
        }
    }

    /// All of standard input (refused from a terminal where content is required).
    fn read_stdin(url: &str, verb: &str, refuse_terminal: bool) -> Result<Vec<u8>, Failure> {
        let mut stdin = io::stdin().lock();
        if refuse_terminal && stdin.is_terminal() {
            return Err(Failure::Other(
                format!(
                    "cannot {verb} '{url}': no CONTENT given and standard input is a terminal \
                     (pipe the content in, or give it as an argument)"
                ),
                exit::USAGE,
            ));
        }
        let mut buf = Vec::new();
        stdin.read_to_end(&mut buf).map_err(|e| {
            Failure::Other(
                format!(
                    "cannot {verb} '{url}': reading standard input failed: {}",
                    plain(&e)
                ),
                exit::FAILURE,
            )
        })?;
        Ok(buf)
    }

    fn edit(a: crate::args::EditArgs, url: &str) -> Result<u8, Failure> {
        durability(url, a.durability)?;
        no_backup(url, a.backup.keep)?;
        let u = Url::parse(url)?;
        let mut o = options(a.wait.timeout);
        o.retry_conflicts(!a.wait.nonblock);
        let mut opts = untorn::EditOptions::new();
        if let Some(f) = a.format {
            opts.format(f.into());
        }
        if let Some(d) = &a.default {
            opts.default_content(d.as_bytes());
        }
        opts.allow_empty(a.allow_empty);
        // As the local edit: signals while the filter runs go on to it, and end the edit with
        // the object unchanged.
        let fwd = untorn::ForwardSignals::new();
        for sig in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            let _ =
                signal_hook::flag::register_conditional_default(sig, fwd.default_action.clone());
            let _ = signal_hook::flag::register_usize(sig, fwd.received.clone(), sig as usize);
        }
        opts.forward_signals(fwd.clone());
        let (prog, args) = a.filter.split_first().expect("clap requires a filter");
        let mut cmd = std::process::Command::new(prog);
        cmd.args(args);
        match o.edit(&u, &opts, &mut cmd) {
            Ok((_, outcome)) => {
                tracing::debug!(target: "untorn", url, written = outcome.written, attempts = outcome.attempts, conflicts = outcome.conflicts, lost_answers = outcome.lost_answers, "edited");
                Ok(match fwd.received() {
                    Some(sig) => exit::for_signal(sig),
                    None => exit::OK,
                })
            }
            Err(e) if e.kind() == untorn::ErrorKind::Interrupted => Err(Failure::Other(
                e.to_string(),
                exit::for_signal(fwd.received().unwrap_or(2)),
            )),
            Err(e) => Err(e.into()),
        }
    }
}
