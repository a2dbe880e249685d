//! `untorn generate`: the man pages and the shell completions, made from the one clap
//! definition of the command line (`args.rs`) and the tables of `help.rs` and `exit.rs`, the
//! way ripgrep does (`rg --generate`).

use crate::args::{Cli, GenerateWhat};
use crate::help;
use roff::{bold, italic, roman, Roff};
use std::io::{self, Write};
use std::path::Path;

/// The command line's definition, built (bin names of the subcommands set), without the
/// `help` subcommand.
fn command() -> clap::Command {
    let mut cmd = Cli::command_with_help().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Prints (or, for `man DIR`, writes) what `what` asks for.
pub fn run(what: GenerateWhat, dir: Option<&Path>, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = command();
    let shell = match what {
        GenerateWhat::Man => {
            return match dir {
                None => out.write_all(main_page(&cmd).as_bytes()),
                Some(d) => write_pages(&cmd, d, out),
            }
        }
        GenerateWhat::CompleteBash => clap_complete::Shell::Bash,
        GenerateWhat::CompleteZsh => clap_complete::Shell::Zsh,
        GenerateWhat::CompleteFish => clap_complete::Shell::Fish,
        GenerateWhat::CompleteElvish => clap_complete::Shell::Elvish,
    };
    if dir.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "DIR is for `generate man` only; completions are printed",
        ));
    }
    clap_complete::generate(shell, &mut cmd, "untorn", out);
    Ok(())
}

/// Writes untorn.1 and untorn-COMMAND.1 for each command into `dir` (created if missing), and
/// prints each file's path.
fn write_pages(cmd: &clap::Command, dir: &Path, out: &mut dyn Write) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut pages = vec![(dir.join("untorn.1"), main_page(cmd))];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push((
            dir.join(format!("untorn-{}.1", sub.get_name())),
            command_page(sub),
        ));
    }
    for (path, text) in pages {
        // Each page atomically: an install over a man page being read never shows half of one.
        untorn::write(&path, text.as_bytes()).map_err(io::Error::from)?;
        writeln!(out, "{}", path.display())?;
    }
    Ok(())
}

fn version() -> String {
    format!("untorn {}", env!("CARGO_PKG_VERSION"))
}

/// A section of clap_mangen's rendering without its `.SH` line (to put it under a heading of
/// our own).
fn without_heading(rendered: Vec<u8>) -> String {
    String::from_utf8_lossy(&rendered)
        .lines()
        .filter(|l| !l.starts_with(".SH"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn examples(roff: &mut Roff, cmd: Option<&str>) {
    for (line, what) in help::examples(cmd) {
        roff.control("TP", []);
        roff.text([bold(*line)]);
        roff.text([roman(*what)]);
    }
}

fn paragraphs(roff: &mut Roff, text: &str) {
    for (i, para) in text.split("\n\n").enumerate() {
        if i > 0 {
            roff.control("PP", []);
        }
        roff.text([roman(para.split_whitespace().collect::<Vec<_>>().join(" "))]);
    }
}

fn long_about(cmd: &clap::Command) -> String {
    cmd.get_long_about()
        .or_else(|| cmd.get_about())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// A page's title, name, synopsis, description and options, as clap_mangen renders them.
fn page_head(cmd: &clap::Command, title: String) -> String {
    let man = clap_mangen::Man::new(cmd.clone())
        .title(title)
        .section("1")
        .source(version())
        .manual("User Commands");
    let mut page = Vec::new();
    let _ = man.render_title(&mut page);
    let _ = man.render_name_section(&mut page);
    let _ = man.render_synopsis_section(&mut page);
    let _ = man.render_description_section(&mut page);
    let _ = man.render_options_section(&mut page);
    String::from_utf8_lossy(&page).into_owned()
}

/// untorn(1): everything on one page (every command with its flags and examples), plus the
/// exit codes, the environment and the files untorn keeps beside a file.
pub fn main_page(cmd: &clap::Command) -> String {
    let mut text = page_head(cmd, "UNTORN".into());

    let mut r = Roff::new();
    r.control("SH", ["COMMANDS"]);
    r.text([roman(
        "Each command also has a page of its own (untorn-write(1), ...), and its flags and \
         examples are in `untorn COMMAND --help`.",
    )]);
    text.push_str(&r.to_roff());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        text.push_str(&command_section(sub));
    }

    let mut r = Roff::new();
    r.control("SH", ["EXAMPLES"]);
    examples(&mut r, None);
    exit_status(&mut r);
    r.control("SH", ["ENVIRONMENT"]);
    for (var, what) in help::ENVIRONMENT {
        r.control("TP", []);
        r.text([bold(*var)]);
        r.text([roman(*what)]);
    }
    files(&mut r);
    r.control("SH", ["SEE ALSO"]);
    let mut see: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("untorn-{}(1)", s.get_name()))
        .collect();
    see.extend(["flock(1)", "flock(2)", "rename(2)", "fsync(2)", "jq(1)"].map(String::from));
    r.text([roman(see.join(", "))]);
    text.push_str(&r.to_roff());
    text
}

/// A command's section in untorn(1): its synopsis, description, flags and examples.
fn command_section(sub: &clap::Command) -> String {
    let name = sub.get_bin_name().unwrap_or(sub.get_name()).to_string();
    let man = clap_mangen::Man::new(sub.clone());
    let mut r = Roff::new();
    r.control("SS", [name.as_str()]);
    let mut text = r.to_roff();
    let mut syn = Vec::new();
    let _ = man.render_synopsis_section(&mut syn);
    text.push_str(&without_heading(syn));
    let mut r = Roff::new();
    r.control("PP", []);
    paragraphs(&mut r, &long_about(sub));
    text.push_str(&r.to_roff());
    let mut opts = Vec::new();
    let _ = man.render_options_section(&mut opts);
    text.push_str(&without_heading(opts));
    let mut r = Roff::new();
    r.control("PP", []);
    r.text([italic("Examples:")]);
    examples(&mut r, Some(sub.get_name()));
    text.push_str(&r.to_roff());
    text
}

/// untorn-COMMAND(1).
pub fn command_page(sub: &clap::Command) -> String {
    let mut text = page_head(sub, format!("UNTORN-{}", sub.get_name().to_uppercase()));
    let mut r = Roff::new();
    r.control("SH", ["EXAMPLES"]);
    examples(&mut r, Some(sub.get_name()));
    exit_status(&mut r);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman("untorn(1), flock(1)")]);
    text.push_str(&r.to_roff());
    text
}

fn exit_status(r: &mut Roff) {
    r.control("SH", ["EXIT STATUS"]);
    r.text([roman(
        "These numbers are stable: a code never changes meaning; new ones are only added. \
         `untorn lock` exits with its command's exit code; the codes below apply when untorn \
         itself fails.",
    )]);
    for (code, what) in crate::exit::TABLE {
        r.control("TP", []);
        r.text([bold(code.to_string())]);
        r.text([roman(*what)]);
    }
}

fn files(r: &mut Roff) {
    r.control("SH", ["FILES"]);
    for (name, what) in [
        (
            "FILE.lock",
            "The lock of FILE (flock(2)), beside it; the same lock as `flock FILE.lock`. \
             Never deleted (also after `txn rm` or `mv`): deleting a lock file someone waits \
             on lets two processes hold the lock.",
        ),
        (
            "FILE.YYYYMMDDTHHMMSS.NNNNNNNNNZ.bak",
            "A backup of FILE (UTC time; names sort by time).",
        ),
        (
            ".FILE.untorn-XXXXXXXX.tmp",
            "A temp file a crash left beside FILE; `untorn clean` and `untorn recover` remove \
             them.",
        ),
        (
            ".untorn-txn-TTTT.journal",
            "The journal of an interrupted transaction; `untorn recover` finishes or undoes it.",
        ),
    ] {
        r.control("TP", []);
        r.text([bold(name)]);
        r.text([roman(what)]);
    }
}
