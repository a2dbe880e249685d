//! The command line: each flag is defined here and tested right below its definition.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Examples:
  untorn write state.json '{\"count\": 1}'     replace state.json with that text
  jq '.count += 1' state.json | untorn write state.json
                                               safe: all input is read before the file is touched
  untorn write --mode 600 token.txt < new     the replacement gets mode 0600
  untorn write --no-clobber lock.pid \"$$\"      fail (exit 7) if lock.pid exists

Every write is atomic (readers and crashes see the old or the new file, whole) and durable
once untorn exits 0. On any error the file is left as it was.";

#[derive(Parser, Debug)]
#[command(
    name = "untorn",
    version,
    about = "Keep files whole: atomic, durable replacement of files from the shell.",
    after_help = AFTER_HELP,
    after_long_help = long_help(),
)]
pub struct Cli {
    /// Show what untorn does on stderr: -v one line per operation, -vv more.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

fn long_help() -> String {
    format!("{AFTER_HELP}\n\n{}", crate::exit::help_table())
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Replace FILE with CONTENT, or with all of standard input, atomically and durably.
    #[command(after_help = AFTER_HELP, after_long_help = long_help())]
    Write(WriteArgs),
}

#[derive(Args, Debug)]
pub struct WriteArgs {
    /// The file to replace (or create).
    pub file: PathBuf,

    /// The new content, written exactly as given (no newline is added). Without it, all of
    /// standard input is read first, then written.
    pub content: Option<String>,

    /// Permission bits of the written file, in octal (e.g. 600, 0644). Default: a replaced file
    /// keeps its mode, a new file gets 666 less the umask.
    #[arg(long, value_parser = parse_mode, value_name = "OCTAL")]
    pub mode: Option<u32>,

    /// Fail (exit 7) instead of replacing an existing FILE; the check and the create are one
    /// atomic step.
    #[arg(long)]
    pub no_clobber: bool,

    /// When FILE is a symbolic link: follow it and replace its target (the link stays), replace
    /// the link itself, or refuse (exit 8).
    #[arg(long, value_enum, default_value_t = SymlinkArg::Follow, value_name = "POLICY")]
    pub symlink: SymlinkArg,

    /// What must be on disk when untorn exits: full (file and directory fsynced: survives a
    /// power cut), file (file fsynced: old or new after a power cut, the write may be undone),
    /// none (no fsync: for scratch data; a power cut may leave an empty file).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full, value_name = "LEVEL")]
    pub durability: DurabilityArg,

    /// How the temporary file is made: auto (O_TMPFILE where the file system has it), unnamed
    /// (O_TMPFILE or fail), named (.FILE.untorn-XXXXXXXX.tmp).
    #[arg(long, value_enum, default_value_t = TempArg::Auto, value_name = "HOW")]
    pub temp: TempArg,
}

impl WriteArgs {
    /// The library options these flags ask for.
    pub fn options(&self) -> untorn::OpenOptions {
        let mut o = untorn::OpenOptions::new();
        o.durability(self.durability.into())
            .symlinks(self.symlink.into())
            .no_clobber(self.no_clobber)
            .temp_file(self.temp.into());
        if let Some(m) = self.mode {
            o.mode(m);
        }
        o
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(m),
        _ => Err(format!(
            "'{s}' is not an octal mode between 0 and 7777 (e.g. 644)"
        )),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SymlinkArg {
    Follow,
    Replace,
    Refuse,
}

impl From<SymlinkArg> for untorn::Symlinks {
    fn from(s: SymlinkArg) -> Self {
        match s {
            SymlinkArg::Follow => untorn::Symlinks::Follow,
            SymlinkArg::Replace => untorn::Symlinks::Replace,
            SymlinkArg::Refuse => untorn::Symlinks::Refuse,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    None,
    File,
    Full,
}

impl From<DurabilityArg> for untorn::Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::None => untorn::Durability::None,
            DurabilityArg::File => untorn::Durability::File,
            DurabilityArg::Full => untorn::Durability::Full,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TempArg {
    Auto,
    Unnamed,
    Named,
}

impl From<TempArg> for untorn::TempFile {
    fn from(t: TempArg) -> Self {
        match t {
            TempArg::Auto => untorn::TempFile::Auto,
            TempArg::Unnamed => untorn::TempFile::Unnamed,
            TempArg::Named => untorn::TempFile::Named,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(args: &[&str]) -> Result<WriteArgs, clap::Error> {
        let mut v = vec!["untorn", "write"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| match c.command {
            Command::Write(w) => w,
        })
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn file_and_optional_content() {
        let w = write(&["f.json", "{}"]).unwrap();
        assert_eq!(w.file, PathBuf::from("f.json"));
        assert_eq!(w.content.as_deref(), Some("{}"));
        assert_eq!(write(&["f.json"]).unwrap().content, None);
        assert!(write(&[]).is_err());
    }

    #[test]
    fn mode_is_octal() {
        assert_eq!(write(&["f", "--mode", "600"]).unwrap().mode, Some(0o600));
        assert_eq!(write(&["f", "--mode", "0644"]).unwrap().mode, Some(0o644));
        assert_eq!(write(&["f", "--mode", "0o755"]).unwrap().mode, Some(0o755));
        assert!(write(&["f", "--mode", "999"]).is_err());
        assert!(write(&["f", "--mode", "17777"]).is_err());
        assert!(write(&["f", "--mode", ""]).is_err());
        assert_eq!(write(&["f"]).unwrap().mode, None);
    }

    #[test]
    fn no_clobber_flag() {
        assert!(write(&["f", "--no-clobber"]).unwrap().no_clobber);
        assert!(!write(&["f"]).unwrap().no_clobber);
    }

    #[test]
    fn symlink_policy() {
        assert_eq!(write(&["f"]).unwrap().symlink, SymlinkArg::Follow);
        for (s, want) in [
            ("follow", SymlinkArg::Follow),
            ("replace", SymlinkArg::Replace),
            ("refuse", SymlinkArg::Refuse),
        ] {
            assert_eq!(write(&["f", "--symlink", s]).unwrap().symlink, want);
        }
        assert!(write(&["f", "--symlink", "maybe"]).is_err());
    }

    #[test]
    fn durability_levels() {
        assert_eq!(write(&["f"]).unwrap().durability, DurabilityArg::Full);
        for (s, want) in [
            ("none", DurabilityArg::None),
            ("file", DurabilityArg::File),
            ("full", DurabilityArg::Full),
        ] {
            assert_eq!(write(&["f", "--durability", s]).unwrap().durability, want);
        }
        assert!(write(&["f", "--durability", "some"]).is_err());
    }

    #[test]
    fn temp_strategy() {
        assert_eq!(write(&["f"]).unwrap().temp, TempArg::Auto);
        assert_eq!(
            write(&["f", "--temp", "named"]).unwrap().temp,
            TempArg::Named
        );
        assert_eq!(
            write(&["f", "--temp", "unnamed"]).unwrap().temp,
            TempArg::Unnamed
        );
    }

    #[test]
    fn verbose_counts_and_is_global() {
        let c = Cli::try_parse_from(["untorn", "-vv", "write", "f", "x"]).unwrap();
        assert_eq!(c.verbose, 2);
        let c = Cli::try_parse_from(["untorn", "write", "f", "x", "-v"]).unwrap();
        assert_eq!(c.verbose, 1);
    }
}
