//! `untorn`: keep files whole from the shell. A thin layer over the `untorn` library: parse the
//! command line, call the library, print errors once, map them to exit codes (`exit.rs`).

mod args;
mod exit;

use args::{Cli, Command, WriteArgs};
use clap::Parser;
use std::io::{self, IsTerminal, Read};
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
    let result = match cli.command {
        Command::Write(a) => cmd_write(a),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
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

/// `-v` shows untorn's tracing events on stderr (one per operation); `-vv` shows more.
fn init_tracing(verbose: u8) {
    if verbose == 0 {
        return;
    }
    let level = if verbose == 1 {
        "untorn=debug"
    } else {
        "untorn=trace"
    };
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_target(false)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

fn cmd_write(a: WriteArgs) -> Result<(), Failure> {
    let opts = a.options();
    // Like sponge: all input is read before FILE is touched, so `jq . f | untorn write f` is
    // safe.
    let data = match a.content {
        Some(c) => c.into_bytes(),
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
                        "cannot write '{}': reading standard input failed: {e}",
                        a.file.display()
                    ),
                    exit::FAILURE,
                )
            })?;
            buf
        }
    };
    opts.write(&a.file, &data)?;
    Ok(())
}
