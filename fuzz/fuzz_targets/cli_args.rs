//! The `untorn` command line: the CLI's own clap definitions (compiled here from
//! crates/untorn-cli/src/args.rs, help.rs and exit.rs, unchanged) on arbitrary argument vectors. The
//! input is split at NUL bytes into arguments (not necessarily UTF-8). Parsing must never
//! panic (clap's debug assertions are on in fuzz builds, so a malformed definition shows up
//! too), and every error must render.
#![no_main]
#![allow(dead_code)]

#[path = "../../crates/untorn-cli/src/args.rs"]
mod args;
#[path = "../../crates/untorn-cli/src/exit.rs"]
mod exit;
#[path = "../../crates/untorn-cli/src/help.rs"]
mod help;

use clap::{CommandFactory, FromArgMatches};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

thread_local! {
    /// The command, built once: building it runs clap's (slow) debug checks of the whole
    /// definition, which need to pass only once. Parsing then does what `Cli::try_parse_from`
    /// does: match the arguments, then fill in `Cli`.
    static COMMAND: RefCell<clap::Command> = RefCell::new({
        let mut c = args::Cli::command();
        c.build();
        c
    });
}

fuzz_target!(|data: &[u8]| {
    let argv = std::iter::once(OsString::from("untorn")).chain(
        data.split(|&b| b == 0)
            .map(|a| OsString::from_vec(a.to_vec())),
    );
    let parsed = COMMAND.with_borrow_mut(|c| {
        c.try_get_matches_from_mut(argv)
            .and_then(|mut m| args::Cli::from_arg_matches_mut(&mut m))
    });
    match parsed {
        Ok(cli) => {
            let _ = format!("{cli:?}");
        }
        Err(e) => {
            let _ = e.render().to_string();
        }
    }
});
