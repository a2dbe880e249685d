//! The command line: each flag is defined here and tested right below its definition.
//!
//! Help comes in two lengths, as with `git` and `cargo`: `-h` gives one line per flag (the
//! first paragraph of its doc comment), `--help` the whole text. Each subcommand shows its own
//! examples (`help.rs`); only `untorn --help` shows the exit codes.

use crate::help;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

/// The heading of the flags every command takes.
const GLOBAL: &str = "Global options";

#[derive(Parser, Debug)]
#[command(
    name = "untorn",
    version,
    about = "Keep files whole: atomic, durable replacement of files from the shell.",
    long_about = "Keep files whole: atomic, durable replacement of files from the shell.\n\n\
        Every write is atomic (readers and crashes see the old or the new file, whole) and \
        durable once untorn exits 0. On any error the file is left as it was. Locks are \
        flock(2) locks on FILE.lock, the same as `flock FILE.lock ...`.",
    max_term_width = help::WIDTH,
)]
pub struct Cli {
    /// The options every command takes, given before the command.
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// The options every command takes (-v, the trace's format and file, trusted users, shared
/// file systems), before the command or after it. They are defined on untorn itself and again
/// in each command's deferred arguments, rather than as clap's `global` arguments: clap copies
/// a global argument into every command each run (90 copies, 135 KB of allocations, a third of
/// `untorn --version`'s page faults), while a deferred command's copy is built only for the
/// command used. [`Cli::globals`] merges both.
#[derive(Args, Debug, Default, Clone)]
pub struct GlobalArgs {
    /// Print the trace on stderr: -v one line per operation, -vv more.
    #[arg(short, long, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,

    /// The trace's format: text, or json (json turns the trace on).
    ///
    /// The environment variable UNTORN_LOG_FORMAT does the same (for scripts whose command
    /// lines cannot change). json turns on the one-event-per-operation trace (as -v does) and prints each event as
    /// a JSON object on one line: op, path, bytes, duration_us, wait_us (locks), outcome,
    /// error, and the command line's span (command, pid). Library warnings stay on stderr.
    #[arg(
        long,
        value_enum,
        env = "UNTORN_LOG_FORMAT",
        value_name = "text|json",
        hide_possible_values = true,
        hide_env = true,
        help_heading = GLOBAL
    )]
    pub log_format: Option<LogFormatArg>,

    /// Append the trace to FILE instead of stderr (an audit trail).
    ///
    /// The environment variable UNTORN_LOG_FILE does the same. Each event is one write(2) to FILE opened with O_APPEND, so several untorn processes
    /// can share one audit file; it is not fsynced. Warnings still go to stderr.
    #[arg(
        long,
        env = "UNTORN_LOG_FILE",
        value_name = "FILE",
        hide_env = true,
        help_heading = GLOBAL
    )]
    pub log_file: Option<PathBuf>,

    /// Also act on the state USER leaves (journals, flags, temps, backups).
    ///
    /// As on your own: e.g. root recovering a service's directory. By name or uid;
    /// repeatable. The environment variable UNTORN_TRUST_USERS (comma-separated) does the
    /// same.
    #[arg(long, value_name = "USER", value_parser = parse_user, help_heading = GLOBAL)]
    pub trust_user: Vec<u32>,

    /// Use file systems untorn cannot vouch for (NFS, CIFS, some FUSE).
    ///
    /// Take locks on NFS, CIFS and FUSE (they may exclude only this machine's processes),
    /// and write with durability on a FUSE mount whose daemon is not known to pass fsync
    /// through (bindfs, sshfs, ...), accepting what it gives. Without it, both exit 9 and
    /// create nothing. The environment variable UNTORN_ALLOW_SHARED_FS=1 does the same.
    #[arg(long, help_heading = GLOBAL)]
    pub allow_shared_fs: bool,
}

impl GlobalArgs {
    /// The options as given after a command. A value that came only from the environment is
    /// left to untorn's own copy (which reads the same variable), so that a flag given before
    /// the command is not overridden by it: a flag beats the environment wherever it is given.
    fn after_command(m: &clap::ArgMatches) -> Result<GlobalArgs, clap::Error> {
        use clap::parser::ValueSource;
        let mut g = <GlobalArgs as clap::FromArgMatches>::from_arg_matches(m)?;
        let from_env = |id: &str| m.value_source(id) == Some(ValueSource::EnvVariable);
        if from_env("log_format") {
            g.log_format = None;
        }
        if from_env("log_file") {
            g.log_file = None;
        }
        Ok(g)
    }

    /// These options with `later`'s (given after the command) added: counts add up, lists
    /// join, a later value wins.
    fn merge(mut self, later: &GlobalArgs) -> GlobalArgs {
        self.verbose = self.verbose.saturating_add(later.verbose);
        self.log_format = later.log_format.or(self.log_format);
        self.log_file = later.log_file.clone().or(self.log_file);
        self.trust_user.extend_from_slice(&later.trust_user);
        self.allow_shared_fs |= later.allow_shared_fs;
        self
    }
}

impl Cli {
    /// untorn's definition with its own examples, exit codes and environment under its help:
    /// for the man page, and for a run that may show untorn's own help.
    pub fn command_with_help() -> clap::Command {
        use clap::CommandFactory;
        Cli::command()
            .after_help(help::after_help(None))
            .after_long_help(help::after_long_help(None))
    }

    /// Parses the command line. untorn's own examples and tables are made only for a command
    /// line that may show untorn's own help (they were a tenth of a run's allocations).
    pub fn parse_args() -> Result<Cli, clap::Error> {
        let args: Vec<OsString> = std::env::args_os().collect();
        if let Some(c) = fast_write(&args) {
            return Ok(c);
        }
        Cli::parse_with_clap(args)
    }

    /// [`Cli::parse_args`] without the fast path.
    fn parse_with_clap(args: Vec<OsString>) -> Result<Cli, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let mut cmd = if shows_own_help(args.get(1..).unwrap_or_default()) {
            Cli::command_with_help()
        } else {
            Cli::command()
        };
        let mut m = cmd.try_get_matches_from_mut(args)?;
        Cli::from_arg_matches_mut(&mut m).map_err(|e| e.format(&mut cmd))
    }

    /// The options every command takes, wherever they were given.
    pub fn globals(&self) -> GlobalArgs {
        self.global.clone().merge(self.command.globals())
    }
}

/// The commonest command line of a script, `untorn write FILE [CONTENT]` with no option,
/// parsed without building clap's command: what clap makes of it, without its cost (0.12–0.15
/// ms of CPU and 42 of a write's 108 page faults, measured with `perf stat` on the installed
/// binary: about 6% of a whole durable 1 KiB write started from a script). `None` for anything
/// else (an option, a value clap would read as one, a variable clap reads), which clap then
/// parses. The test `the_fast_write_parse_is_what_clap_makes_of_it` compares the two over many
/// command lines: a field added to `WriteArgs` must be added here (this does not compile
/// without it), and a default that differs from clap's fails that test.
fn fast_write(args: &[OsString]) -> Option<Cli> {
    let (file, content) = match args {
        [_, cmd, file] if cmd == "write" => (file, None),
        [_, cmd, file, content] if cmd == "write" => (file, Some(content)),
        _ => return None,
    };
    let plain = |a: &OsString| !a.is_empty() && !a.as_encoded_bytes().starts_with(b"-");
    if !plain(file) || !content.is_none_or(plain) {
        return None;
    }
    // The options clap fills from the environment.
    if ["UNTORN_LOG_FORMAT", "UNTORN_LOG_FILE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    {
        return None;
    }
    let w = WriteArgs {
        file: PathBuf::from(file),
        content: content.cloned().into_iter().collect(),
        mode: None,
        no_clobber: false,
        symlink: SymlinkArg::Follow,
        durability: DurabilityArg::Full,
        temp: TempArg::Auto,
        backup: BackupArg { keep: None },
        timeout: None,
        exec: false,
        placeholder: "{}".into(),
        format: None,
        no_check: false,
    };
    Some(Cli {
        global: GlobalArgs::default(),
        command: Command::Write(Deferred(w, GlobalArgs::default())),
    })
}

/// Whether a command line (without the program's name) may show untorn's own help: `-h`,
/// `--help` or `help` before any command, or no command at all. The values of untorn's own
/// options are skipped, so that `--log-file help` is not taken for the command.
fn shows_own_help(args: &[OsString]) -> bool {
    let mut it = args.iter().map(|a| a.as_encoded_bytes());
    while let Some(a) = it.next() {
        match a {
            b"-h" | b"--help" | b"help" | b"--" => return true,
            b"--log-file" | b"--log-format" | b"--trust-user" => {
                it.next();
            }
            // A cluster of short flags (-vh) may hold -h.
            _ if a.starts_with(b"-") && !a.starts_with(b"--") && a.contains(&b'h') => return true,
            _ if a.starts_with(b"-") => {}
            // The command: its own help is made in its deferred definition.
            _ => return false,
        }
    }
    true
}

/// How trace events are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

/// A command's arguments, defined only when the command is used: clap builds the definition of
/// every command on each run, and building all of them cost `untorn write` ~7% of its time
/// (with `--help`, each is still built when shown). Reads as the arguments themselves (`Deref`);
/// `.0` takes them.
#[derive(Debug)]
pub struct Deferred<T>(pub T, pub GlobalArgs);

impl<T> std::ops::Deref for Deferred<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for Deferred<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(Deferred(
            T::from_arg_matches(m)?,
            GlobalArgs::after_command(m)?,
        ))
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)?;
        self.1 = GlobalArgs::after_command(m)?;
        Ok(())
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
/// (run late, a flattened group's would otherwise replace it), and the command's examples
/// under its help: made here, for the one command used, instead of for all of them on every
/// run (wrapping them was a tenth of `untorn --version`'s time in user space).
fn late<T: Args, const UPDATE: bool>(cmd: clap::Command) -> clap::Command {
    let name = cmd.get_name().to_owned();
    let cmd = cmd
        .after_help(help::after_help(Some(&name)))
        .after_long_help(help::after_long_help(Some(&name)));
    let (about, long) = (cmd.get_about().cloned(), cmd.get_long_about().cloned());
    let mut cmd = if UPDATE {
        GlobalArgs::augment_args_for_update(T::augment_args_for_update(cmd))
    } else {
        GlobalArgs::augment_args(T::augment_args(cmd))
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
#[command(max_term_width = help::WIDTH)]
pub enum Command {
    /// Replace FILE with CONTENT, or with all of standard input, atomically and durably.
    ///
    /// Standard input is streamed into a temp file beside FILE (memory stays flat), and FILE
    /// is replaced only when all of it has arrived: `jq . f | untorn write f` is safe. With
    /// --exec, a program writes the new content to a path untorn gives it.
    #[command(override_usage = "untorn write [OPTIONS] <FILE> [CONTENT]\n       \
                          untorn write [OPTIONS] --exec <FILE> [--] <COMMAND>...")]
    Write(Deferred<WriteArgs>),
    /// Run COMMAND while holding FILE's lock (FILE.lock, as flock(1) locks it).
    ///
    /// untorn exits with COMMAND's exit code (128 + N if signal N killed it).
    Lock(Deferred<LockArgs>),
    /// Locked read-modify-write of FILE through a FILTER (jq, yq, sed, ...).
    ///
    /// Under the exclusive lock, FILE is fed to FILTER; if it exits 0 and its output is valid
    /// for the file's format, FILE is replaced with the output, atomically and durably.
    /// Otherwise FILE stays as it was (exit 12 invalid output, 13 filter failed).
    Edit(Deferred<EditArgs>),
    /// Print FILE under a shared lock.
    ///
    /// Where the lock file cannot be created (a read-only directory), FILE is read without a
    /// lock and a warning says so.
    Read(Deferred<ReadArgs>),
    /// Append records to the log FILE: one write, durable when untorn exits 0.
    ///
    /// Each LINE (or each line of standard input) is one record. A torn tail (zeros; with
    /// --jsonl a last line that is not JSON and has no newline) is cut first, with a warning;
    /// a last line without newline that may stay is ended first.
    Append(Deferred<AppendArgs>),
    /// Cut a torn tail off the log FILE (complete lines are never removed).
    ///
    /// A crash during an append can leave a torn record or zeros at the end of a log.
    Repair(Deferred<LogArgs>),
    /// Print the last complete records of the log FILE (a torn tail is left out).
    Tail(Deferred<TailArgs>),
    /// Take a backup of FILE now, and keep the newest N (--keep, default 5).
    ///
    /// A reflink where the file system has them, else a copy (with a progress bar on a
    /// terminal). Backups beyond --keep are removed, oldest first; `untorn restore` never
    /// removes any.
    Backup(Deferred<BackupNowArgs>),
    /// List the backups of FILE, newest first, and judge each.
    ///
    /// Columns: name, time, size, whether it is valid for FILE's format, and whether it
    /// matches the checksum recorded when untorn wrote it (whole, unverified, damaged).
    Backups(Deferred<BackupsArgs>),
    /// Restore FILE from a backup (default: the newest), atomically.
    ///
    /// The version it replaces becomes a backup, so a restore can be undone. A damaged backup
    /// is refused (exit 12). A restore removes no backup.
    Restore(Deferred<RestoreArgs>),
    /// Check that FILE is valid (JSON, YAML, TOML, UTF-8) and not damaged.
    ///
    /// Damaged: it does not match the checksum untorn recorded when it wrote it (`--format raw`
    /// checks only that). Exit 0, or 12 with the line and column, or why it is damaged.
    Check(Deferred<CheckArgs>),
    /// Report, then remove, orphaned temp files in DIR that no live writer can own.
    Clean(Deferred<CleanArgs>),
    /// Leave DIR consistent after a crash: transactions, temps, invalid files.
    ///
    /// Finishes or undoes interrupted transactions, removes orphaned temps and, with
    /// --restore-invalid, restores files that fail validation from their newest valid backup.
    Recover(Deferred<RecoverArgs>),
    /// Apply several changes all together, durably, or none, even across a crash.
    ///
    /// Changes: `put TARGET=SOURCE` (SOURCE `-` is standard input), `rm PATH`, `mv FROM=TO`.
    /// Lock files stay after rm and mv (a lock file is never deleted: see the README).
    Txn(Deferred<TxnArgs>),
    /// Print the man page or a shell completion script (from this command line's definition).
    Generate(Deferred<GenerateArgs>),
}

impl Command {
    /// The options every command takes, as given after this command.
    pub fn globals(&self) -> &GlobalArgs {
        match self {
            Command::Write(d) => &d.1,
            Command::Lock(d) => &d.1,
            Command::Edit(d) => &d.1,
            Command::Read(d) => &d.1,
            Command::Append(d) => &d.1,
            Command::Repair(d) => &d.1,
            Command::Tail(d) => &d.1,
            Command::Backup(d) => &d.1,
            Command::Backups(d) => &d.1,
            Command::Restore(d) => &d.1,
            Command::Check(d) => &d.1,
            Command::Clean(d) => &d.1,
            Command::Recover(d) => &d.1,
            Command::Txn(d) => &d.1,
            Command::Generate(d) => &d.1,
        }
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// What to print: man, complete-bash, complete-zsh, complete-fish, complete-elvish.
    #[arg(value_enum, value_name = "WHAT", hide_possible_values = true)]
    pub what: GenerateWhat,

    /// man only: write untorn.1 and a page per command (untorn-write.1, ...) into DIR.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GenerateWhat {
    Man,
    CompleteBash,
    CompleteZsh,
    CompleteFish,
    CompleteElvish,
}

#[derive(Args, Debug)]
pub struct TxnArgs {
    /// Read the changes from FILE, one per line; `#` starts a comment.
    #[arg(long, short = 'm', value_name = "FILE")]
    pub manifest: Option<PathBuf>,

    /// Do not check that new content is valid for its target's format.
    ///
    /// By default a put's new content must be valid for its target's extension (.json, .yaml,
    /// .yml, .toml), or nothing changes (exit 12, naming the source).
    #[arg(long)]
    pub no_check: bool,

    /// Print what was done as JSON, one object per line (see the README).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// The changes: put TARGET=SOURCE, rm PATH, mv FROM=TO (any number, in order).
    #[arg(
        value_name = "CHANGE",
        allow_hyphen_values = true,
        trailing_var_arg = true
    )]
    pub changes: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct BackupNowArgs {
    /// The file to back up.
    pub file: PathBuf,
    /// Keep at most N backups of FILE: older ones are removed.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub keep: usize,
}

#[derive(Args, Debug)]
pub struct BackupsArgs {
    /// The file whose backups to list.
    pub file: PathBuf,
    /// How to judge validity: json, yaml, toml, utf8, raw (default: by extension).
    ///
    /// Without it, FILE's extension decides (.json, .yaml/.yml, .toml); anything else is raw:
    /// a backup is valid if it can be read.
    #[arg(long, value_enum, value_name = "FORMAT", hide_possible_values = true)]
    pub format: Option<CheckFormat>,
    /// Print one JSON object per backup (see the README).
    #[arg(long)]
    pub json: bool,
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
    /// What FILE must be: json, yaml, toml, utf8, raw (default: by extension).
    ///
    /// Without it, FILE's extension decides (.json, .yaml/.yml, .toml); anything else must be
    /// UTF-8. raw checks only the checksum.
    #[arg(long, value_enum, value_name = "FORMAT", hide_possible_values = true)]
    pub format: Option<CheckFormat>,
    /// Print the verdict as one JSON object (the exit code is the same).
    #[arg(long)]
    pub json: bool,
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

    /// The name the JSON output gives the validator: `json`, `yaml`, `toml`, `utf8`, `raw`.
    pub fn name_of(v: &untorn::Validator) -> &'static str {
        use untorn::{Format, Validator};
        match v {
            Validator::Format(Format::Json) => "json",
            Validator::Format(Format::Yaml) => "yaml",
            Validator::Format(Format::Toml) => "toml",
            Validator::Utf8 => "utf8",
            _ => "raw",
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
    /// Print one JSON object per temp (see the README).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// The directory to recover (not recursive).
    pub dir: PathBuf,
    /// Restore invalid --format files from their newest valid backup.
    #[arg(long, requires = "format")]
    pub restore_invalid: bool,
    /// What to validate: json, yaml, toml, utf8, raw (by extension).
    ///
    /// --format json validates *.json, yaml *.yaml and *.yml, toml *.toml; utf8 and raw the
    /// files of none of these (not untorn's own: lock files, journals, temps, backups), utf8
    /// as UTF-8 text, raw by their checksum only.
    #[arg(long, value_enum, value_name = "FORMAT", hide_possible_values = true)]
    pub format: Option<CheckFormat>,
    /// Only temps at least this old.
    ///
    /// Default 0s: after a crash, no writer is running.
    #[arg(long, value_parser = parse_duration, default_value = "0s", value_name = "DURATION")]
    pub older_than: std::time::Duration,
    /// Print what would be done; change nothing (not even a lock file).
    #[arg(long)]
    pub dry_run: bool,
    /// Wait this long for a transaction's locks.
    ///
    /// Another process, of any user, may hold them; a transaction whose locks stay busy is
    /// reported and the rest recovered.
    #[arg(long, value_parser = parse_duration, default_value = "10s", value_name = "DURATION")]
    pub timeout: std::time::Duration,
    /// Give up the changes of a committed transaction that cannot be applied.
    ///
    /// A target made immutable, a directory where a file was: the rest is applied and the
    /// journal removed. The way out when recovery cannot finish one.
    #[arg(long)]
    pub abandon: bool,
    /// Print one JSON object per action (see the README).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AppendArgs {
    /// The log to append to (created if missing).
    pub file: PathBuf,

    /// The records, one line each (no newline inside). Default: the lines of standard input.
    pub lines: Vec<OsString>,

    /// Each record must be one JSON value (JSON Lines).
    ///
    /// A last line without newline that is not JSON counts as torn; a complete line that is
    /// not JSON is refused (exit 12).
    #[arg(long)]
    pub jsonl: bool,

    /// What is on disk when untorn exits: full (default), file, none.
    #[arg(
        long,
        value_enum,
        default_value_t = DurabilityArg::Full,
        value_name = "LEVEL",
        hide_possible_values = true,
        hide_default_value = true
    )]
    pub durability: DurabilityArg,

    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// The log file.
    pub file: PathBuf,

    /// The log is JSON Lines (each record one JSON value).
    ///
    /// A last line without newline that is not JSON counts as torn; a complete line that is
    /// not JSON is refused (exit 12).
    #[arg(long)]
    pub jsonl: bool,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub log: LogArgs,

    /// How many records to print (as tail -n).
    ///
    /// -n means --lines here, as in tail(1); in the commands that wait for a lock it means
    /// --nonblock, as in flock(1). tail takes no lock.
    #[arg(short = 'n', long, default_value_t = 10, value_name = "N")]
    pub lines: usize,

    /// Print each record as a JSON object {"record": ...} (with --jsonl: as it is).
    #[arg(long)]
    pub json: bool,
}

/// How long to wait for a lock.
#[derive(Args, Debug, Clone, Copy)]
pub struct WaitArgs {
    /// Give up (exit 11) after waiting this long: 5s, 200ms, 0.2s, 1m.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<std::time::Duration>,

    /// Do not wait (as flock -n): exit 10 if the lock is held.
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

    /// Take a shared lock instead of an exclusive one.
    ///
    /// Many processes can hold it at once; it excludes the holders of the exclusive lock.
    #[arg(long, short = 's')]
    pub shared: bool,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// Lock exactly this file instead of FILE.lock.
    #[arg(long, value_name = "PATH")]
    pub lock_file: Option<PathBuf>,

    /// Exit CODE, not 10 or 11, if the lock cannot be had (as flock -E).
    #[arg(long, short = 'E', value_name = "CODE")]
    pub conflict_exit_code: Option<u8>,

    /// The command to run, and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct EditArgs {
    /// The file to edit.
    pub file: PathBuf,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// FILTER's output must be: json, yaml, toml, raw (default: by name).
    ///
    /// Without it, FILE's extension decides (.json, .yaml/.yml, .toml); anything else is raw,
    /// which checks nothing.
    #[arg(long, value_enum, value_name = "FORMAT", hide_possible_values = true)]
    pub format: Option<FormatArg>,

    /// What FILTER reads when FILE does not exist (without it: exit 3).
    #[arg(long, value_name = "TEXT")]
    pub default: Option<String>,

    /// Let an empty output (nothing, or only whitespace) replace FILE.
    ///
    /// Without it, an empty output is refused (exit 12) for every format: a filter that
    /// prints nothing has almost always failed.
    #[arg(long)]
    pub allow_empty: bool,

    /// What is on disk when untorn exits: full (default), file, none.
    #[arg(
        long,
        value_enum,
        default_value_t = DurabilityArg::Full,
        value_name = "LEVEL",
        hide_possible_values = true,
        hide_default_value = true
    )]
    pub durability: DurabilityArg,

    #[command(flatten)]
    pub backup: BackupArg,

    /// The filter and its arguments: FILE on its stdin, the new content on its stdout.
    #[arg(last = true, required = true, value_name = "FILTER")]
    pub filter: Vec<OsString>,
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

    /// The new content, exactly as given (no newline added). Default: standard input.
    ///
    /// Any bytes. Without it, standard input is streamed into the temp file, and FILE is
    /// replaced only once all of it has been read. With --exec: the program and its
    /// arguments, one of them containing {} (put `--` before the program if any argument
    /// starts with `-`).
    #[arg(value_name = "CONTENT")]
    pub content: Vec<OsString>,

    /// Permission bits of the written file, in octal (e.g. 600, 0644).
    ///
    /// Default: a replaced file keeps its mode, a new file gets 666 less the umask.
    #[arg(long, value_parser = parse_mode, value_name = "OCTAL")]
    pub mode: Option<u32>,

    /// Fail (exit 7) instead of replacing an existing FILE.
    ///
    /// The check and the create are one atomic step.
    #[arg(long)]
    pub no_clobber: bool,

    /// FILE is a symlink: follow it (default), replace the link, refuse.
    ///
    /// follow (the default) replaces the file the link points to and keeps the link; replace
    /// replaces the link itself; refuse fails with exit 8.
    #[arg(
        long,
        value_enum,
        default_value_t = SymlinkArg::Follow,
        value_name = "POLICY",
        hide_possible_values = true,
        hide_default_value = true
    )]
    pub symlink: SymlinkArg,

    /// What is on disk when untorn exits: full (default), file, none.
    ///
    /// full: file and directory fsynced, the new content survives a power cut. file: the file
    /// fsynced; after a power cut, the old or the new content (the write may be undone).
    /// none: no fsync, for scratch data; a power cut may leave an empty file.
    #[arg(
        long,
        value_enum,
        default_value_t = DurabilityArg::Full,
        value_name = "LEVEL",
        hide_possible_values = true,
        hide_default_value = true
    )]
    pub durability: DurabilityArg,

    /// The temp file: auto (default), unnamed (O_TMPFILE only), named.
    ///
    /// auto: O_TMPFILE where the file system has it; unnamed: O_TMPFILE or fail; named:
    /// .FILE.untorn-XXXXXXXX.tmp.
    #[arg(
        long,
        value_enum,
        default_value_t = TempArg::Auto,
        value_name = "HOW",
        hide_possible_values = true,
        hide_default_value = true
    )]
    pub temp: TempArg,

    #[command(flatten)]
    pub backup: BackupArg,

    /// Wait this long for an interrupted transaction's locks (default 10s).
    ///
    /// A write takes no lock; but if a transaction that covers FILE was interrupted, it is
    /// finished (or undone) first, which needs its locks.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<std::time::Duration>,

    /// Run COMMAND, which writes the new content to the path {} stands for.
    ///
    /// The path is FILE's name in a private directory beside FILE (same extension, so tools
    /// that pick a format by extension work). If COMMAND exits 0 and wrote it, and the output
    /// is valid for FILE's format (.json, .yaml/.yml, .toml; see --format, --no-check), FILE
    /// is replaced with it, atomically and durably; otherwise FILE stays as it was (exit 13,
    /// or 12 for invalid output) and the output is removed.
    #[arg(long)]
    pub exec: bool,

    /// With --exec: the text that stands for the path (default {}).
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "{}",
        hide_default_value = true,
        requires = "exec"
    )]
    pub placeholder: String,

    /// With --exec: the output's format: json, yaml, toml, raw.
    ///
    /// Default: by FILE's extension (.json, .yaml/.yml, .toml; anything else: not checked).
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        hide_possible_values = true,
        requires = "exec",
        conflicts_with = "no_check"
    )]
    pub format: Option<FormatArg>,

    /// With --exec: do not check the output's format.
    #[arg(long, requires = "exec")]
    pub no_check: bool,
}

/// Keeping the versions a write displaces.
#[derive(Args, Debug, Clone, Copy)]
pub struct BackupArg {
    /// Keep the replaced version as a backup; at most N of them (default 5).
    ///
    /// The backup is FILE.<UTC time>.bak beside FILE: the displaced inode itself, given a
    /// second name (a link) just before the replace; no copy. The oldest beyond N are removed.
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

    /// The fast path parses exactly what clap parses, and only command lines clap parses the
    /// same way; the rest it leaves to clap.
    #[test]
    fn the_fast_write_parse_is_what_clap_makes_of_it() {
        let os = |v: &[&str]| -> Vec<OsString> { v.iter().map(OsString::from).collect() };
        let taken: &[&[&str]] = &[
            &["untorn", "write", "f", "x"],
            &["untorn", "write", "f"],
            &["untorn", "write", "dir/f.json", "{\"a\": 1}\n"],
            &["untorn", "write", "help", "x"],
            &["untorn", "write", "f", "write"],
            &["untorn", "write", "/abs/path with spaces", "multi\nline"],
        ];
        for v in taken {
            let fast = fast_write(&os(v)).unwrap_or_else(|| panic!("not taken: {v:?}"));
            let clap = Cli::parse_with_clap(os(v)).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{clap:?}"), "{v:?}");
        }
        // Not UTF-8: taken, and the same.
        use std::os::unix::ffi::OsStringExt;
        let v = vec![
            OsString::from("untorn"),
            OsString::from("write"),
            OsString::from_vec(b"f\xff".to_vec()),
            OsString::from_vec(b"\xfe\x00".to_vec()),
        ];
        let fast = fast_write(&v).expect("taken");
        assert_eq!(
            format!("{fast:?}"),
            format!("{:?}", Cli::parse_with_clap(v).unwrap())
        );
        let left: &[&[&str]] = &[
            &["untorn", "write"],
            &["untorn", "write", "f", "x", "y"],
            &["untorn", "write", "--no-clobber", "f"],
            &["untorn", "write", "f", "--mode=600"],
            &["untorn", "write", "f", "-"],
            &["untorn", "write", "-", "x"],
            &["untorn", "write", "f", "-x"],
            &["untorn", "write", "", "x"],
            &["untorn", "write", "f", ""],
            &["untorn", "-v", "write", "f"],
            &["untorn", "read", "f"],
            &["untorn", "append", "f", "x"],
        ];
        for v in left {
            assert!(fast_write(&os(v)).is_none(), "taken: {v:?}");
        }
    }

    #[test]
    fn every_command_accepts_allow_shared_fs() {
        let cases: &[&[&str]] = &[
            &["write", "f", "x"],
            &["lock", "f", "--", "true"],
            &["edit", "f", "--", "cat"],
            &["read", "f"],
            &["append", "f", "x"],
            &["repair", "f"],
            &["tail", "f"],
            &["backup", "f"],
            &["backups", "f"],
            &["restore", "f"],
            &["check", "f"],
            &["clean", "d"],
            &["recover", "d"],
            &["txn", "rm", "f"],
        ];
        for args in cases {
            for at in [0, 1] {
                let mut v = vec!["untorn"];
                v.extend_from_slice(&args[..at]);
                v.push("--allow-shared-fs");
                v.extend_from_slice(&args[at..]);
                let cli = Cli::try_parse_from(&v).unwrap_or_else(|e| panic!("{v:?}: {e}"));
                assert!(cli.globals().allow_shared_fs, "{v:?}");
            }
        }
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
        assert!(l.shared);
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
        assert!(r.restore_invalid && r.format == Some(CheckFormat::Json));
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
        assert_eq!(w.content, ["{}"]);
        assert!(write(&["f.json"]).unwrap().content.is_empty());
        let w = write(&["--", "-f", "-x"]).unwrap();
        assert_eq!(
            (w.file, w.content),
            (PathBuf::from("-f"), vec!["-x".into()])
        );
        let w = write(&["--exec", "o.pdf", "--", "pandoc", "-o", "{}"]).unwrap();
        assert!(w.exec);
        assert_eq!(w.content, ["pandoc", "-o", "{}"]);
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
        assert_eq!(c.globals().verbose, 2);
        let c = Cli::try_parse_from(["untorn", "write", "f", "x", "-v"]).unwrap();
        assert_eq!(c.globals().verbose, 1);
        let c = Cli::try_parse_from(["untorn", "-v", "write", "-v", "f", "x"]).unwrap();
        assert_eq!(c.globals().verbose, 2);
    }

    #[test]
    fn own_help_is_made_only_where_it_may_be_shown() {
        let shows = |a: &[&str]| shows_own_help(&a.iter().map(OsString::from).collect::<Vec<_>>());
        for yes in [
            &[][..],
            &["-h"],
            &["--help"],
            &["help"],
            &["help", "write"],
            &["-v", "--help"],
            &["-vh"],
            &["--log-file", "write", "-h"],
            &["--trust-user", "0"],
        ] {
            assert!(shows(yes), "{yes:?}");
        }
        for no in [
            &["write", "f", "x"][..],
            &["write", "-h"],
            &["-v", "append", "f", "--help"],
            &["--log-file", "help", "read", "f"],
            &["--log-format=json", "read", "f"],
        ] {
            assert!(!shows(no), "{no:?}");
        }
        // And untorn's own help has its examples and exit codes in both lengths.
        for flag in ["-h", "--help"] {
            let e = Cli::command_with_help()
                .try_get_matches_from(["untorn", flag])
                .unwrap_err();
            let text = e.render().to_string();
            assert!(text.contains("untorn write"), "{flag}: {text}");
        }
    }

    /// The global options merge from both places: lists join, a value after the command wins.
    #[test]
    fn global_options_before_and_after_the_command_merge() {
        let c = Cli::try_parse_from([
            "untorn",
            "--trust-user",
            "0",
            "--log-format",
            "text",
            "append",
            "--trust-user",
            "1",
            "--log-format",
            "json",
            "--allow-shared-fs",
            "f",
            "x",
        ])
        .unwrap();
        let g = c.globals();
        assert_eq!(g.trust_user, [0, 1]);
        assert_eq!(g.log_format, Some(LogFormatArg::Json));
        assert!(g.allow_shared_fs);
        let c = Cli::try_parse_from(["untorn", "--log-file", "a", "read", "f"]).unwrap();
        assert_eq!(
            c.globals().log_file.as_deref(),
            Some(std::path::Path::new("a"))
        );
    }
}
