//! The command line: each flag is defined here and tested right below its definition.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Examples:
  untorn write state.json '{\"count\": 1}'     replace state.json with that text
  untorn edit state.json -- jq '.count += 1'   locked read-modify-write through any filter
  untorn read state.json --default '{}'        print it under a shared lock
  untorn lock state.json -- ./deploy.sh        run a command holding state.json.lock
  jq '.count += 1' state.json | untorn write state.json
                                               safe: all input is read before the file is touched
  untorn write --mode 600 token.txt < new     the replacement gets mode 0600
  untorn write --no-clobber lock.pid \"$$\"      fail (exit 7) if lock.pid exists

Every write is atomic (readers and crashes see the old or the new file, whole) and durable
once untorn exits 0. On any error the file is left as it was. Locks are flock(2) locks on
FILE.lock, the same as `flock FILE.lock ...`.";

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

    /// Also act on the state USER leaves (transaction journals, flags, temps, backups), as on
    /// your own: e.g. root recovering a service's directory. By name or uid; repeatable. The
    /// environment variable UNTORN_TRUST_USERS (comma-separated) does the same.
    #[arg(long, global = true, value_name = "USER", value_parser = parse_user)]
    pub trust_user: Vec<u32>,

    #[command(subcommand)]
    pub command: Command,
}

/// The examples and the exit codes, under `--help` of every command: made once per run, at the
/// first use (every command's definition asks for it, and clap builds them all).
fn long_help() -> &'static str {
    static LONG_HELP: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("{AFTER_HELP}\n\n{}", crate::exit::help_table()));
    &LONG_HELP
}

/// A command's arguments, defined only when the command is used: clap builds the definition of
/// every command on each run, and building all of them cost `untorn write` ~7% of its time
/// (with `--help`, each is still built when shown). Reads as the arguments themselves (`Deref`);
/// `.0` takes them.
#[derive(Debug)]
pub struct Deferred<T>(pub T);

impl<T> std::ops::Deref for Deferred<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for Deferred<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Deferred)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
}

impl<T: Args> Args for Deferred<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(late::<T, false>)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(late::<T, true>)
    }
}

/// `T`'s arguments added to `cmd` when clap builds it, keeping the command's own description
/// (run late, a flattened group's would otherwise replace it).
fn late<T: Args, const UPDATE: bool>(cmd: clap::Command) -> clap::Command {
    let (about, long) = (cmd.get_about().cloned(), cmd.get_long_about().cloned());
    let mut cmd = if UPDATE {
        T::augment_args_for_update(cmd)
    } else {
        T::augment_args(cmd)
    };
    if let Some(a) = about {
        cmd = cmd.about(a);
    }
    if let Some(l) = long {
        cmd = cmd.long_about(l);
    }
    cmd
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Replace FILE with CONTENT, or with all of standard input, atomically and durably.
    #[command(after_help = AFTER_HELP, after_long_help = long_help())]
    Write(Deferred<WriteArgs>),
    /// Run COMMAND while holding the lock of FILE (FILE.lock, as flock(1) would lock it); exit
    /// with COMMAND's exit code.
    #[command(after_long_help = long_help())]
    Lock(Deferred<LockArgs>),
    /// Under the exclusive lock, feed FILE to FILTER; if it exits 0 and its output is valid for
    /// the file's format, replace FILE with the output, atomically and durably.
    #[command(after_long_help = long_help())]
    Edit(Deferred<EditArgs>),
    /// Print FILE under a shared lock.
    #[command(after_long_help = long_help())]
    Read(Deferred<ReadArgs>),
    /// Append LINEs (or the lines of standard input) to the log FILE: all in one write, durable
    /// when untorn exits 0. A torn tail (zeros; with --jsonl a last line that is not JSON and
    /// has no newline) is cut first, with a warning; a last line without newline that may stay
    /// is ended first.
    #[command(after_long_help = long_help())]
    Append(Deferred<AppendArgs>),
    /// Cut a torn tail off the log FILE (a crash can leave a torn record or zeros at its end).
    /// Complete lines are never removed.
    #[command(after_long_help = long_help())]
    Repair(Deferred<LogArgs>),
    /// Print the last complete records of the log FILE (a torn tail is left out).
    #[command(after_long_help = long_help())]
    Tail(Deferred<TailArgs>),
    /// Take a backup of FILE now (a reflink where possible, else a copy).
    #[command(after_long_help = long_help())]
    Backup(Deferred<BackupNowArgs>),
    /// List the backups of FILE, newest first: name, time, size, whether each is valid, and
    /// whether it matches the checksum recorded when untorn wrote it (whole, unverified,
    /// damaged).
    #[command(after_long_help = long_help())]
    Backups(Deferred<BackupsArgs>),
    /// Restore FILE from a backup (default: the newest), atomically; the version it replaces
    /// becomes a backup, so a restore can be undone.
    #[command(after_long_help = long_help())]
    Restore(Deferred<RestoreArgs>),
    /// Check that FILE is valid JSON, YAML, TOML or UTF-8, and matches the checksum untorn
    /// recorded when it wrote it (if any; `--format raw` checks only that): exit 0, or 12 with
    /// the line and column, or why it is damaged.
    #[command(after_long_help = long_help())]
    Check(Deferred<CheckArgs>),
    /// Report, then remove, orphaned temp files in DIR that no live writer can own.
    #[command(after_long_help = long_help())]
    Clean(Deferred<CleanArgs>),
    /// Leave DIR consistent after a crash: remove orphaned temps and, with --restore-invalid,
    /// restore files that fail validation from their newest valid backup.
    #[command(after_long_help = long_help())]
    Recover(Deferred<RecoverArgs>),
    /// Apply several changes atomically: all of them, durably, or none, even across a crash.
    /// Changes: `put TARGET=SOURCE` (SOURCE `-` is standard input), `rm PATH`, `mv FROM=TO`.
    #[command(
        after_long_help = long_help(),
        after_help = "Example:\n  untorn txn put a.json=new_a.json put b.yaml=new_b.yaml rm old.txt"
    )]
    Txn(Deferred<TxnArgs>),
}

#[derive(Args, Debug)]
pub struct TxnArgs {
    /// Read the changes from FILE, one per line (`put a.json=new.json`); `#` starts a comment.
    #[arg(long, short = 'm', value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// Do not check that new content is valid for its target's format (.json, .yaml, .toml).
    #[arg(long)]
    pub no_check: bool,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// The changes: put TARGET=SOURCE, rm PATH, mv FROM=TO (any number, in order).
    #[arg(
        value_name = "CHANGE",
        allow_hyphen_values = true,
        trailing_var_arg = true
    )]
    pub changes: Vec<std::ffi::OsString>,
}

#[derive(Args, Debug)]
pub struct BackupNowArgs {
    /// The file to back up.
    pub file: PathBuf,
    /// Keep at most N backups of FILE (the oldest go).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub keep: usize,
}

#[derive(Args, Debug)]
pub struct BackupsArgs {
    /// The file whose backups to list.
    pub file: PathBuf,
    /// How to judge validity (default: from FILE's extension; raw: readable).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<CheckFormat>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The file to restore.
    pub file: PathBuf,
    /// Restore from this backup (a name from `untorn backups`).
    #[arg(long, value_name = "NAME", conflicts_with = "nth")]
    pub from: Option<PathBuf>,
    /// Restore from the K-th newest backup (1 = the newest).
    #[arg(long, value_name = "K")]
    pub nth: Option<usize>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The file to check.
    pub file: PathBuf,
    /// What FILE must be (default: from its extension; other extensions: utf8).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<CheckFormat>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Json,
    Yaml,
    Toml,
    Utf8,
    Raw,
}

impl CheckFormat {
    /// The validator for this format, or the one FILE's extension implies.
    pub fn validator(
        f: Option<CheckFormat>,
        file: &std::path::Path,
        raw: untorn::Validator,
    ) -> untorn::Validator {
        use untorn::{Format, Validator};
        match f {
            Some(CheckFormat::Json) => Validator::Format(Format::Json),
            Some(CheckFormat::Yaml) => Validator::Format(Format::Yaml),
            Some(CheckFormat::Toml) => Validator::Format(Format::Toml),
            Some(CheckFormat::Utf8) => Validator::Utf8,
            Some(CheckFormat::Raw) => Validator::Exists,
            None => match Format::from_path(file) {
                Format::Raw => raw,
                other => Validator::Format(other),
            },
        }
    }
}

#[derive(Args, Debug)]
pub struct CleanArgs {
    /// The directory to clean (not recursive).
    pub dir: PathBuf,
    /// Only temps at least this old (e.g. 1h, 30m, 0s).
    #[arg(long, value_parser = parse_duration, default_value = "1h", value_name = "DURATION")]
    pub older_than: std::time::Duration,
    /// Report what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// The directory to recover (not recursive).
    pub dir: PathBuf,
    /// Restore files of --format that fail validation from their newest valid backup.
    #[arg(long, requires = "format")]
    pub restore_invalid: bool,
    /// The format of the files to validate (by extension: *.json for json, ...).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<FormatArg>,
    /// Only temps at least this old (default 0s: after a crash no writer runs).
    #[arg(long, value_parser = parse_duration, default_value = "0s", value_name = "DURATION")]
    pub older_than: std::time::Duration,
    /// Print what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait at most this long for the locks of an interrupted transaction (another process,
    /// of any user, may hold them); one that stays busy is reported and the rest recovered.
    #[arg(long, value_parser = parse_duration, default_value = "10s", value_name = "DURATION")]
    pub timeout: std::time::Duration,
    /// Give up the changes of a committed transaction that cannot be applied (a target made
    /// immutable, a directory where a file was), keeping the rest: the way out when recovery
    /// cannot finish one.
    #[arg(long)]
    pub abandon: bool,
}

#[derive(Args, Debug)]
pub struct AppendArgs {
    /// The log to append to (created if missing).
    pub file: PathBuf,

    /// The records, one line each. Without them, each line of standard input is a record.
    pub lines: Vec<std::ffi::OsString>,

    /// Each record must be one JSON value (JSON Lines). A last line without newline that is not
    /// JSON counts as torn; a complete line that is not JSON is refused (exit 12).
    #[arg(long)]
    pub jsonl: bool,

    /// What must be on disk when untorn exits: full or file (fdatasync), none.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full, value_name = "LEVEL")]
    pub durability: DurabilityArg,

    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// The log file.
    pub file: PathBuf,

    /// The log is JSON Lines: a last line without newline that is not JSON counts as torn; a
    /// complete line that is not JSON is refused (exit 12).
    #[arg(long)]
    pub jsonl: bool,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub log: LogArgs,

    /// How many records to print.
    #[arg(short = 'n', long, default_value_t = 10, value_name = "N")]
    pub lines: usize,
}

/// How long to wait for a lock.
#[derive(Args, Debug, Clone, Copy)]
pub struct WaitArgs {
    /// Wait at most this long for the lock (e.g. 5s, 200ms, 0.2s, 1m), then exit 11.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<std::time::Duration>,

    /// Do not wait: if another process holds the lock, exit 10 at once.
    #[arg(long, short = 'n', conflicts_with = "timeout")]
    pub nonblock: bool,
}

impl WaitArgs {
    pub fn lock_options(&self) -> untorn::LockOptions {
        let mut l = untorn::LockOptions::new();
        if self.nonblock {
            l.nonblocking();
        } else if let Some(d) = self.timeout {
            l.timeout(d);
        }
        l
    }
}

#[derive(Args, Debug)]
pub struct LockArgs {
    /// The file whose lock to take: the lock file is FILE.lock (see --lock-file).
    pub file: PathBuf,

    /// Take a shared lock (many holders; excludes exclusive holders) instead of an exclusive one.
    #[arg(long, short = 's')]
    pub shared: bool,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// Lock exactly this file instead of FILE.lock.
    #[arg(long, value_name = "PATH")]
    pub lock_file: Option<PathBuf>,

    /// Lock even on NFS, CIFS or FUSE, where the lock may exclude only this machine's processes.
    #[arg(long)]
    pub allow_shared_fs: bool,

    /// Exit with this code (instead of 10 or 11) when the lock cannot be had, like flock -E.
    #[arg(long, short = 'E', value_name = "CODE")]
    pub conflict_exit_code: Option<u8>,

    /// The command to run, and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Args, Debug)]
pub struct EditArgs {
    /// The file to edit.
    pub file: PathBuf,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// The format FILTER's output must have; default: from FILE's extension (.json, .yaml/.yml,
    /// .toml; anything else is raw, which checks nothing).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<FormatArg>,

    /// What FILTER reads when FILE does not exist (default: exit 3).
    #[arg(long, value_name = "TEXT")]
    pub default: Option<String>,

    /// Let an empty output (nothing, or only whitespace) replace FILE. Without it, an empty
    /// output is refused (exit 12) for every format: a filter that prints nothing has almost
    /// always failed.
    #[arg(long)]
    pub allow_empty: bool,

    /// What must be on disk when untorn exits (see `untorn write --help`).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full, value_name = "LEVEL")]
    pub durability: DurabilityArg,

    #[command(flatten)]
    pub backup: BackupArg,

    /// The filter and its arguments; it reads FILE on stdin and writes the new content on stdout.
    #[arg(last = true, required = true, value_name = "FILTER")]
    pub filter: Vec<std::ffi::OsString>,
}

#[derive(Args, Debug)]
pub struct ReadArgs {
    /// The file to print.
    pub file: PathBuf,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// Print this instead of failing when FILE does not exist.
    #[arg(long, value_name = "TEXT")]
    pub default: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Json,
    Yaml,
    Toml,
    Raw,
}

impl From<FormatArg> for untorn::Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Json => untorn::Format::Json,
            FormatArg::Yaml => untorn::Format::Yaml,
            FormatArg::Toml => untorn::Format::Toml,
            FormatArg::Raw => untorn::Format::Raw,
        }
    }
}

/// `5s`, `0.2s`, `200ms`, `1m`, or a plain number of seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("'{s}' is not a duration (e.g. 5s, 200ms, 0.5s, 1m)");
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

#[derive(Args, Debug)]
pub struct WriteArgs {
    /// The file to replace (or create).
    pub file: PathBuf,

    /// The new content, written exactly as given, any bytes (no newline is added). Without it,
    /// all of standard input is read first, then written.
    pub content: Option<std::ffi::OsString>,

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

    #[command(flatten)]
    pub backup: BackupArg,

    /// Wait at most this long for the locks of an interrupted transaction that covers FILE, to
    /// finish it first (a write takes no lock otherwise). Default 10s.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<std::time::Duration>,
}

/// Keeping the versions a write displaces.
#[derive(Args, Debug, Clone, Copy)]
pub struct BackupArg {
    /// Keep the version this replaces as a backup (FILE.<UTC time>.bak beside FILE), and at most
    /// N backups of FILE (default 5). Costs a rename, not a copy.
    #[arg(
        long = "backup",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "5",
        value_name = "N"
    )]
    pub keep: Option<usize>,
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
        if let Some(n) = self.backup.keep {
            o.backups(n);
        }
        if let Some(d) = self.timeout {
            o.timeout(d);
        }
        o
    }
}

fn parse_user(s: &str) -> Result<u32, String> {
    untorn::trust::user_id(s).ok_or_else(|| format!("no user '{s}' (give a name or a uid)"))
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
            Command::Write(w) => w.0,
            other => panic!("{other:?}"),
        })
    }

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        let mut v = vec!["untorn"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| c.command)
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.2s"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        for bad in ["", "s", "5x", "-1s", "fast"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lock_flags() {
        let Command::Lock(l) = parse(&["lock", "f", "--", "sh", "-c", "exit 3"]).unwrap() else {
            panic!()
        };
        assert_eq!(l.file, PathBuf::from("f"));
        assert_eq!(l.command, ["sh", "-c", "exit 3"]);
        assert!(!l.shared && !l.wait.nonblock && l.wait.timeout.is_none());
        let Command::Lock(l) = parse(&[
            "lock",
            "--shared",
            "--timeout",
            "0.2s",
            "-E",
            "9",
            "--lock-file",
            "x.lck",
            "--allow-shared-fs",
            "f",
            "--",
            "true",
        ])
        .unwrap() else {
            panic!()
        };
        assert!(l.shared && l.allow_shared_fs);
        assert_eq!(l.wait.timeout, Some(std::time::Duration::from_millis(200)));
        assert_eq!(l.conflict_exit_code, Some(9));
        assert_eq!(l.lock_file, Some(PathBuf::from("x.lck")));
        let Command::Lock(l) = parse(&["lock", "-n", "f", "--", "true"]).unwrap() else {
            panic!()
        };
        assert!(l.wait.nonblock);
        assert!(parse(&["lock", "-n", "--timeout", "1s", "f", "--", "true"]).is_err());
        assert!(parse(&["lock", "f"]).is_err(), "a command is required");
    }

    #[test]
    fn edit_flags() {
        let Command::Edit(e) = parse(&["edit", "s.json", "--", "jq", ".a += 1"]).unwrap() else {
            panic!()
        };
        assert_eq!(e.filter, ["jq", ".a += 1"]);
        assert_eq!(e.format, None);
        assert_eq!(e.durability, DurabilityArg::Full);
        let Command::Edit(e) = parse(&[
            "edit",
            "s",
            "--format",
            "yaml",
            "--default",
            "{}",
            "--timeout",
            "1s",
            "--durability",
            "file",
            "--",
            "yq",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(e.format, Some(FormatArg::Yaml));
        assert_eq!(e.default.as_deref(), Some("{}"));
        assert_eq!(e.durability, DurabilityArg::File);
        assert!(parse(&["edit", "s", "--format", "xml", "--", "cat"]).is_err());
        assert!(parse(&["edit", "s"]).is_err(), "a filter is required");
    }

    #[test]
    fn append_repair_tail_flags() {
        let Command::Append(a) = parse(&["append", "log", "a", "b", "--jsonl"]).unwrap() else {
            panic!()
        };
        assert_eq!(a.lines, ["a", "b"]);
        assert!(a.jsonl);
        assert_eq!(a.durability, DurabilityArg::Full);
        let Command::Append(a) =
            parse(&["append", "log", "--durability", "none", "--timeout", "1s"]).unwrap()
        else {
            panic!()
        };
        assert!(a.lines.is_empty());
        assert_eq!(a.durability, DurabilityArg::None);
        assert!(a.wait.timeout.is_some());
        let Command::Repair(r) = parse(&["repair", "--jsonl", "log"]).unwrap() else {
            panic!()
        };
        assert!(r.jsonl);
        let Command::Tail(t) = parse(&["tail", "log"]).unwrap() else {
            panic!()
        };
        assert_eq!(t.lines, 10);
        let Command::Tail(t) = parse(&["tail", "-n", "3", "--jsonl", "log"]).unwrap() else {
            panic!()
        };
        assert_eq!((t.lines, t.log.jsonl), (3, true));
    }

    #[test]
    fn backup_flag_takes_an_optional_count() {
        assert_eq!(write(&["f", "x"]).unwrap().backup.keep, None);
        assert_eq!(write(&["f", "x", "--backup"]).unwrap().backup.keep, Some(5));
        assert_eq!(
            write(&["f", "x", "--backup=3"]).unwrap().backup.keep,
            Some(3)
        );
        let Command::Edit(e) = parse(&["edit", "--backup=2", "f", "--", "cat"]).unwrap() else {
            panic!()
        };
        assert_eq!(e.backup.keep, Some(2));
    }

    #[test]
    fn backup_restore_check_clean_recover_flags() {
        let Command::Backup(b) = parse(&["backup", "f", "--keep", "9"]).unwrap() else {
            panic!()
        };
        assert_eq!(b.keep, 9);
        let Command::Backups(b) = parse(&["backups", "f", "--format", "json"]).unwrap() else {
            panic!()
        };
        assert_eq!(b.format, Some(CheckFormat::Json));
        let Command::Restore(r) = parse(&["restore", "f", "--nth", "2"]).unwrap() else {
            panic!()
        };
        assert_eq!(r.nth, Some(2));
        assert!(parse(&["restore", "f", "--nth", "2", "--from", "x"]).is_err());
        let Command::Check(c) = parse(&["check", "f", "--format", "utf8"]).unwrap() else {
            panic!()
        };
        assert_eq!(c.format, Some(CheckFormat::Utf8));
        let Command::Clean(c) = parse(&["clean", "d", "--older-than", "30m", "--dry-run"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.older_than, std::time::Duration::from_secs(1800));
        assert!(c.dry_run);
        let Command::Clean(c) = parse(&["clean", "d"]).unwrap() else {
            panic!()
        };
        assert_eq!(c.older_than, std::time::Duration::from_secs(3600));
        let Command::Recover(r) =
            parse(&["recover", "d", "--restore-invalid", "--format", "json"]).unwrap()
        else {
            panic!()
        };
        assert!(r.restore_invalid && r.format == Some(FormatArg::Json));
        assert_eq!(r.older_than, std::time::Duration::ZERO);
        assert!(
            parse(&["recover", "d", "--restore-invalid"]).is_err(),
            "needs --format"
        );
    }

    #[test]
    fn txn_flags() {
        let Command::Txn(t) = parse(&["txn", "put", "a=b", "rm", "c"]).unwrap() else {
            panic!()
        };
        assert_eq!(t.changes, ["put", "a=b", "rm", "c"]);
        assert!(t.manifest.is_none() && !t.no_check);
        let Command::Txn(t) = parse(&[
            "txn",
            "--manifest",
            "m.txt",
            "--no-check",
            "--timeout",
            "1s",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(t.manifest, Some(PathBuf::from("m.txt")));
        assert!(t.no_check && t.wait.timeout.is_some());
        let Command::Txn(t) = parse(&["txn", "put", "a=-"]).unwrap() else {
            panic!()
        };
        assert_eq!(t.changes, ["put", "a=-"]);
    }

    #[test]
    fn read_flags() {
        let Command::Read(r) = parse(&["read", "s", "--default", "{}", "-n"]).unwrap() else {
            panic!()
        };
        assert_eq!(r.default.as_deref(), Some("{}"));
        assert!(r.wait.nonblock);
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
        assert_eq!(w.content.as_deref(), Some(std::ffi::OsStr::new("{}")));
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
