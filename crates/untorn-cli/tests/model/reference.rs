//! The reference model of `tests/model.rs`: what the README promises, written from the README
//! (and, where it is silent, the public API docs), not from the code. A pure function from a
//! state and a command to the outcomes it allows.
//!
//! The state is a map from names to what they are (a regular file, as an inode with bytes and a
//! mode; a symlink and its target; a directory; a FIFO) and, per file, its backups (each an
//! inode: a backup a write keeps is the displaced inode itself, README "Backups"). Hard links
//! are two names of one inode, so an append through one is seen through the other, and a write
//! through one gives that name a new inode while the other keeps the old content (README, "What
//! it does not do": "Keep hard links").
//!
//! Where the README leaves a choice open, the model returns every documented alternative as an
//! outcome of its own (the test accepts any of them), each with a comment saying why.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

pub type Ino = u32;

/// The process umask the test sets: a new file gets 0666 & !UMASK.
pub const UMASK: u32 = 0o022;
pub const NEW_MODE: u32 = 0o666 & !UMASK;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File(Ino),
    Link(String),
    Dir,
    Fifo,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub data: Vec<u8>,
    pub mode: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Every name, as a path from the test's root directory ("a.json", "sub", "sub/x.json").
    pub entries: BTreeMap<String, Node>,
    pub inodes: BTreeMap<Ino, Inode>,
    pub next: Ino,
    /// The backups of each file (by the path of the file they are named after), oldest first.
    pub backups: BTreeMap<String, Vec<Ino>>,
}

/// Joins a directory ("" for the root) and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir == "." {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Splits a path into its parent ("" for none) and its last component.
pub fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// Why a path does not lead where it should.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    NotFound,
    /// A component that should be a directory is a file (ENOTDIR).
    NotDir,
    /// More than 40 links.
    Loop,
}

impl Why {
    /// The exit codes the README allows for it: 3 "a file or directory does not exist"; a
    /// file used as a directory is also "a bad name" (8); a link loop is one of those or an
    /// "error not listed" (1).
    pub fn codes(self) -> &'static [u8] {
        match self {
            Why::NotFound => &[3],
            Why::NotDir => &[3, 8],
            Why::Loop => &[1, 3, 8],
        }
    }
}

/// Where a path leads.
#[derive(Clone, Debug)]
pub struct Target {
    /// The directory that holds the entry (canonical: through no symlink), "" for the root.
    pub dir: String,
    pub name: String,
    /// What is there now.
    pub node: Option<Node>,
    /// Whether a final symlink was followed to get here.
    pub via_link: bool,
}

impl Target {
    pub fn path(&self) -> String {
        join(&self.dir, &self.name)
    }
}

/// A file format, by extension (README: `.json`, `.yaml`/`.yml`; anything else is raw).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fmt {
    Json,
    Yaml,
    Raw,
}

pub fn fmt_of(path: &str) -> Fmt {
    let name = split(path).1;
    match name.rsplit_once('.').map(|(_, e)| e) {
        Some("json") => Fmt::Json,
        Some("yaml" | "yml") => Fmt::Yaml,
        _ => Fmt::Raw,
    }
}

/// The contents the generator writes, puts and prints (`printf %s`), and the records it appends.
pub const POOL: &[&str] = &[
    "{\"n\": 1}\n",
    "{\"n\": 2}",
    "[1, 2]\n",
    "{\"a\": \"x\"}\n",
    "null\n",
    "n: 3\n",
    "- a\n- b\n",
    "{\"n\": ",
    "step 1 done",
    "line 1\nline 2\n",
    "{\"e\":1}\n{\"e\":2}\n",
    "{\"e\":3}",
    "",
    "key: [unclosed\n",
    "  \n",
];

/// Whether `data` is valid in `fmt`; `None` where the model does not know (YAML outside the
/// pool: the test then accepts both answers).
pub fn valid(fmt: Fmt, data: &[u8]) -> Option<bool> {
    match fmt {
        Fmt::Raw => Some(true),
        Fmt::Json => Some(is_json(data)),
        Fmt::Yaml => {
            if data.iter().all(u8::is_ascii_whitespace) {
                // README: "empty output is valid YAML and TOML".
                return Some(true);
            }
            if let Some(i) = POOL.iter().position(|p| p.as_bytes() == data) {
                return match i {
                    7 | 13 => Some(false), // an unclosed flow mapping / sequence
                    10 | 11 => None,       // JSON Lines: the model does not decide
                    _ => Some(true),
                };
            }
            // jq's pretty output of one object of numbers: a JSON document, which is YAML.
            let s = std::str::from_utf8(data).ok()?;
            let jq_like = s.starts_with("{\n  \"") && s.ends_with("\n}\n") && s.contains("\": ");
            if jq_like && is_json(data) {
                return Some(true);
            }
            None
        }
    }
}

/// One JSON value (whitespace around it allowed): RFC 8259, as serde_json reads it.
pub fn is_json(data: &[u8]) -> bool {
    serde_json::from_slice::<Value>(data).is_ok()
}

fn blank(data: &[u8]) -> bool {
    data.iter().all(u8::is_ascii_whitespace)
}

/// `--symlink` of `untorn write`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sym {
    Follow,
    Replace,
    Refuse,
}

/// The filters `untorn edit` runs, each one the model can compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    Cat,
    /// `sed s/1/2/`: the first `1` of each line becomes `2`.
    Sed,
    /// `printf %s POOL[i]`: ignores its input.
    Printf(usize),
    /// `false`: exits 1.
    False,
    /// `jq '.n += 1'`.
    Jq,
    /// `jq '.n +='`: a syntax error, exit 3.
    JqBad,
    /// `true`: prints nothing, exits 0.
    Nothing,
}

impl Filter {
    pub fn argv(self) -> Vec<String> {
        let v: &[&str] = match self {
            Filter::Cat => &["cat"],
            Filter::Sed => &["sed", "s/1/2/"],
            Filter::Printf(i) => return vec!["printf".into(), "%s".into(), POOL[i].into()],
            Filter::False => &["false"],
            Filter::Jq => &["jq", ".n += 1"],
            Filter::JqBad => &["jq", ".n +="],
            Filter::Nothing => &["true"],
        };
        v.iter().map(|s| s.to_string()).collect()
    }

    /// What the filter may do: each its output, or `None` if it exits non-zero.
    pub fn run(self, input: &[u8]) -> Vec<Option<Vec<u8>>> {
        match self {
            Filter::Jq => jq_incr(input),
            f => vec![f.run_one(input)],
        }
    }

    fn run_one(self, input: &[u8]) -> Option<Vec<u8>> {
        match self {
            Filter::Cat => Some(input.to_vec()),
            Filter::Sed => {
                let mut out = Vec::with_capacity(input.len());
                for line in input.split_inclusive(|&b| b == b'\n') {
                    let mut done = false;
                    for &b in line {
                        if b == b'1' && !done {
                            out.push(b'2');
                            done = true;
                        } else {
                            out.push(b);
                        }
                    }
                }
                Some(out)
            }
            Filter::Printf(i) => Some(POOL[i].as_bytes().to_vec()),
            Filter::False | Filter::JqBad => None,
            Filter::Nothing => Some(Vec::new()),
            Filter::Jq => unreachable!("run"),
        }
    }
}

/// `jq '.n += 1'` on a stream of JSON values: each must be null or an object whose `n` is
/// missing, null or an integer; each result printed pretty (2 spaces) with a newline. An input
/// that does not parse makes jq exit non-zero; a value of another kind prints an error and
/// nothing for it, and jq exits non-zero if it was the last value, and if an earlier one, it
/// may not (jq 1.6 reports only the last input's status).
fn jq_incr(input: &[u8]) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let (mut failed, mut last_failed) = (false, false);
    for v in serde_json::Deserializer::from_slice(input).into_iter::<Value>() {
        let Ok(v) = v else {
            return vec![None];
        };
        let mut m = match v {
            Value::Null => serde_json::Map::new(),
            Value::Object(m) => m,
            _ => {
                (failed, last_failed) = (true, true);
                continue;
            }
        };
        let n = match m.get("n") {
            None | Some(Value::Null) => 1,
            Some(Value::Number(k)) if k.is_i64() => k.as_i64().expect("i64") + 1,
            Some(_) => {
                (failed, last_failed) = (true, true);
                continue;
            }
        };
        last_failed = false;
        m.insert("n".into(), Value::from(n));
        let text = serde_json::to_string_pretty(&Value::Object(m)).expect("a map");
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
    match (failed, last_failed) {
        (_, true) => vec![None],
        (true, false) => vec![None, Some(out)],
        (false, false) => vec![Some(out)],
    }
}

/// One change of `untorn txn`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `put TARGET=../src/sI` (POOL[I]); `None`: a source that does not exist.
    Put(String, Option<usize>),
    Rm(String),
    Mv(String, String),
}

/// One untorn command, run in the test's root directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Write {
        name: String,
        data: Vec<u8>,
        /// Give the content on standard input instead of as an argument.
        stdin: bool,
        no_clobber: bool,
        backup: Option<usize>,
        symlink: Option<Sym>,
        mode: Option<u32>,
        /// `--temp named` and `--durability none|file` (the same outcome: they change how, not
        /// what).
        flags: Vec<&'static str>,
    },
    Edit {
        name: String,
        filter: Filter,
        default: Option<usize>,
        backup: Option<usize>,
        allow_empty: bool,
        raw: bool,
    },
    Append {
        name: String,
        records: Vec<String>,
        jsonl: bool,
        /// Give the records as lines of standard input (this text) instead of as arguments.
        stdin: Option<String>,
    },
    Tail {
        name: String,
        n: usize,
        jsonl: bool,
    },
    Repair {
        name: String,
        jsonl: bool,
    },
    Txn(Vec<Change>),
    Backup {
        name: String,
        keep: Option<usize>,
    },
    Backups {
        name: String,
    },
    Restore {
        name: String,
        nth: Option<usize>,
    },
    Recover {
        dir: String,
        restore_invalid: bool,
        dry_run: bool,
    },
    Clean {
        dir: String,
    },
    Read {
        name: String,
        default: Option<usize>,
    },
    Check {
        name: String,
        json: bool,
    },
}

impl Op {
    /// The command's arguments (after `untorn`) and its standard input.
    pub fn argv(&self) -> (Vec<String>, Vec<u8>) {
        let s = |x: &str| x.to_string();
        let mut a: Vec<String> = Vec::new();
        let mut input = Vec::new();
        match self {
            Op::Write {
                name,
                data,
                stdin,
                no_clobber,
                backup,
                symlink,
                mode,
                flags,
            } => {
                a.push(s("write"));
                a.extend(flags.iter().map(|f| s(f)));
                if *no_clobber {
                    a.push(s("--no-clobber"));
                }
                if let Some(n) = backup {
                    a.push(format!("--backup={n}"));
                }
                if let Some(p) = symlink {
                    a.push(s("--symlink"));
                    a.push(s(match p {
                        Sym::Follow => "follow",
                        Sym::Replace => "replace",
                        Sym::Refuse => "refuse",
                    }));
                }
                if let Some(m) = mode {
                    a.push(s("--mode"));
                    a.push(format!("{m:o}"));
                }
                a.push(name.clone());
                if *stdin {
                    input = data.clone();
                } else {
                    if data.starts_with(b"-") {
                        // A content that looks like a flag ("- a" of a YAML list) comes after
                        // `--`, as with any command-line tool.
                        a.push(s("--"));
                    }
                    a.push(String::from_utf8(data.clone()).expect("pool is UTF-8"));
                }
            }
            Op::Edit {
                name,
                filter,
                default,
                backup,
                allow_empty,
                raw,
            } => {
                a.push(s("edit"));
                if let Some(d) = default {
                    a.push(format!("--default={}", POOL[*d]));
                }
                if let Some(n) = backup {
                    a.push(format!("--backup={n}"));
                }
                if *allow_empty {
                    a.push(s("--allow-empty"));
                }
                if *raw {
                    a.push(s("--format"));
                    a.push(s("raw"));
                }
                a.push(name.clone());
                a.push(s("--"));
                a.extend(filter.argv());
            }
            Op::Append {
                name,
                records,
                jsonl,
                stdin,
            } => {
                a.push(s("append"));
                if *jsonl {
                    a.push(s("--jsonl"));
                }
                a.push(name.clone());
                match stdin {
                    Some(t) => input = t.clone().into_bytes(),
                    None => a.extend(records.iter().cloned()),
                }
            }
            Op::Tail { name, n, jsonl } => {
                a.extend([s("tail"), s("-n"), n.to_string()]);
                if *jsonl {
                    a.push(s("--jsonl"));
                }
                a.push(name.clone());
            }
            Op::Repair { name, jsonl } => {
                a.push(s("repair"));
                if *jsonl {
                    a.push(s("--jsonl"));
                }
                a.push(name.clone());
            }
            Op::Txn(changes) => {
                a.push(s("txn"));
                for c in changes {
                    match c {
                        Change::Put(t, src) => {
                            a.push(s("put"));
                            let src = match src {
                                Some(i) => format!("../src/s{i}"),
                                None => s("../src/missing"),
                            };
                            a.push(format!("{t}={src}"));
                        }
                        Change::Rm(p) => a.extend([s("rm"), p.clone()]),
                        Change::Mv(f, t) => a.extend([s("mv"), format!("{f}={t}")]),
                    }
                }
            }
            Op::Backup { name, keep } => {
                a.extend([s("backup"), name.clone()]);
                if let Some(k) = keep {
                    a.extend([s("--keep"), k.to_string()]);
                }
            }
            Op::Backups { name } => a.extend([s("backups"), name.clone()]),
            Op::Restore { name, nth } => {
                a.extend([s("restore"), name.clone()]);
                if let Some(k) = nth {
                    a.extend([s("--nth"), k.to_string()]);
                }
            }
            Op::Recover {
                dir,
                restore_invalid,
                dry_run,
            } => {
                a.extend([s("recover"), dir.clone()]);
                if *dry_run {
                    a.push(s("--dry-run"));
                }
                if *restore_invalid {
                    a.extend([s("--restore-invalid"), s("--format"), s("json")]);
                }
            }
            Op::Clean { dir } => a.extend([s("clean"), dir.clone(), s("--older-than"), s("0s")]),
            Op::Read { name, default } => {
                a.extend([s("read"), name.clone()]);
                if let Some(d) = default {
                    a.push(format!("--default={}", POOL[*d]));
                }
            }
            Op::Check { name, json } => {
                a.extend([s("check"), name.clone()]);
                if *json {
                    a.extend([s("--format"), s("json")]);
                }
            }
        }
        (a, input)
    }

    /// The command as a line of bash (run in the root directory).
    pub fn shell(&self) -> String {
        let (args, input) = self.argv();
        let mut line = String::from("untorn");
        for a in &args {
            line.push(' ');
            line.push_str(&quote(a));
        }
        let uses_stdin = matches!(
            self,
            Op::Write { stdin: true, .. } | Op::Append { stdin: Some(_), .. }
        );
        if uses_stdin {
            line = format!(
                "printf %s {} | {line}",
                quote(&String::from_utf8_lossy(&input))
            );
        }
        line
    }

    /// A short name of the command, for the statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Write { .. } => "write",
            Op::Edit { .. } => "edit",
            Op::Append { .. } => "append",
            Op::Tail { .. } => "tail",
            Op::Repair { .. } => "repair",
            Op::Txn(_) => "txn",
            Op::Backup { .. } => "backup",
            Op::Backups { .. } => "backups",
            Op::Restore { .. } => "restore",
            Op::Recover { .. } => "recover",
            Op::Clean { .. } => "clean",
            Op::Read { .. } => "read",
            Op::Check { .. } => "check",
        }
    }
}

/// Quotes `s` for bash: '...' if it is printable, else $'...'.
pub fn quote(s: &str) -> String {
    let plain = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./=%,:+@".contains(&b));
    if plain && !s.is_empty() {
        return s.to_string();
    }
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return format!("'{}'", s.replace('\'', "'\\''"));
    }
    let mut out = String::from("$'");
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// What standard output must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stdout {
    Any,
    Exact(Vec<u8>),
    /// `untorn backups`: one line per backup, newest first: the name it must start with, the
    /// size, and whether it is valid (`None`: either).
    Backups(Vec<(String, u64, Option<bool>)>),
}

/// What standard error must say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stderr {
    Any,
    Has(&'static str),
    Lacks(&'static str),
}

/// One outcome the README allows: an exit code, the state after it, and the output.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub code: u8,
    pub state: State,
    pub stdout: Stdout,
    pub stderr: Stderr,
    /// Which rule of the README this outcome comes from (for the report).
    pub why: String,
}

impl Outcome {
    fn ok(state: State, why: impl Into<String>) -> Outcome {
        Outcome {
            code: 0,
            state,
            stdout: Stdout::Any,
            stderr: Stderr::Any,
            why: why.into(),
        }
    }

    fn out(mut self, s: Stdout) -> Outcome {
        self.stdout = s;
        self
    }

    fn err(mut self, s: Stderr) -> Outcome {
        self.stderr = s;
        self
    }
}

/// A failure with any of `codes`, everything left as it was (README: "Nothing lost on error:
/// on any error the target is as it was").
fn fail(state: &State, codes: &[u8], why: &str) -> Vec<Outcome> {
    codes
        .iter()
        .map(|&code| Outcome {
            code,
            state: state.clone(),
            stdout: Stdout::Any,
            stderr: Stderr::Any,
            why: why.to_string(),
        })
        .collect()
}

/// How a log's end is judged (README "Logs: durable appends", and the `untorn::log` docs).
#[derive(Debug)]
struct Judged {
    /// The complete lines kept (each with its `\n`).
    lines: Vec<Vec<u8>>,
    /// An unterminated last line that may stay.
    last: Option<Vec<u8>>,
    /// How many bytes a cut removes (zeros, or a torn JSON Lines record).
    cut: usize,
    /// Indexes of complete lines that are not records (with NUL bytes, or not JSON in JSON
    /// Lines: an empty line included).
    bad: Vec<usize>,
}

fn judge(data: &[u8], jsonl: bool) -> Judged {
    let end = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (complete, rest) = data.split_at(end);
    let lines: Vec<Vec<u8>> = complete
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let bad = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            let l = &l[..l.len() - 1];
            l.contains(&0) || (jsonl && !is_json(l))
        })
        .map(|(i, _)| i)
        .collect();
    let (last, cut) = if rest.is_empty() {
        (None, 0)
    } else if rest.contains(&0) || (jsonl && !is_json(rest)) {
        // Zeros are provably torn; in JSON Lines an unterminated non-JSON line is the torn
        // record of an interrupted append.
        (None, rest.len())
    } else {
        (Some(rest.to_vec()), 0)
    };
    Judged {
        lines,
        last,
        cut,
        bad,
    }
}

impl State {
    pub fn new_inode(&mut self, data: Vec<u8>, mode: u32) -> Ino {
        let i = self.next;
        self.next += 1;
        self.inodes.insert(i, Inode { data, mode });
        i
    }

    pub fn data(&self, i: Ino) -> &[u8] {
        &self.inodes[&i].data
    }

    /// Where `path` leads (following a final symlink if `follow`; intermediate ones always).
    pub fn resolve(&self, path: &str, follow: bool) -> Result<Target, Why> {
        self.resolve_hops(path, follow, &mut 0)
    }

    fn resolve_hops(&self, path: &str, follow: bool, hops: &mut u32) -> Result<Target, Why> {
        let (parent, name) = split(path);
        let dir = self.dir_of(parent, hops)?;
        if name == "." || name.is_empty() {
            return Ok(Target {
                dir: String::new(),
                name: dir.clone(),
                node: Some(Node::Dir),
                via_link: false,
            });
        }
        match self.entries.get(&join(&dir, name)) {
            Some(Node::Link(t)) if follow => {
                *hops += 1;
                if *hops > 40 {
                    return Err(Why::Loop);
                }
                let mut r = self.resolve_hops(&join(&dir, t), true, hops)?;
                r.via_link = true;
                Ok(r)
            }
            n => Ok(Target {
                dir,
                name: name.to_string(),
                node: n.cloned(),
                via_link: false,
            }),
        }
    }

    fn dir_of(&self, path: &str, hops: &mut u32) -> Result<String, Why> {
        if path.is_empty() || path == "." {
            return Ok(String::new());
        }
        let t = self.resolve_hops(path, true, hops)?;
        match t.node {
            Some(Node::Dir) => Ok(t.path()),
            None => Err(Why::NotFound),
            Some(_) => Err(Why::NotDir),
        }
    }

    /// The directory `path` names, or the codes its failure allows.
    fn dir(&self, path: &str) -> Result<String, &'static [u8]> {
        self.dir_of(path, &mut 0).map_err(Why::codes)
    }

    /// Adds backup `ino` to the backups of `key`, then keeps at most `keep` (the oldest go).
    fn add_backup(&mut self, key: &str, ino: Ino, keep: usize) {
        let list = self.backups.entry(key.to_string()).or_default();
        list.push(ino);
        prune(list, keep);
    }

    fn backups_of(&self, key: &str) -> &[Ino] {
        self.backups.get(key).map_or(&[], Vec::as_slice)
    }

    /// The backups of the file at `t` that hold another version than the file: a backup name
    /// linked to the live file itself (left so by a `txn mv` of a hard link of a backed-up
    /// version, or by a crash between a backup's link and its rename) is "stale": not listed,
    /// not restored from, and removed when backups are next pruned.
    fn versions_of(&self, t: &Target) -> Vec<Ino> {
        let live = match t.node {
            Some(Node::File(i)) => Some(i),
            _ => None,
        };
        self.backups_of(&t.path())
            .iter()
            .copied()
            .filter(|&b| Some(b) != live)
            .collect()
    }

    /// Drops empty backup lists (so that states compare by what is there).
    fn tidy(&mut self) {
        self.backups.retain(|_, v| !v.is_empty());
    }

    /// Every outcome the README allows for `op`.
    pub fn predict(&self, op: &Op) -> Vec<Outcome> {
        let mut v = match op {
            Op::Write {
                name,
                data,
                no_clobber,
                backup,
                symlink,
                mode,
                ..
            } => self.write(
                name,
                data,
                *no_clobber,
                *backup,
                symlink.unwrap_or(Sym::Follow),
                *mode,
            ),
            Op::Edit {
                name,
                filter,
                default,
                backup,
                allow_empty,
                raw,
            } => self.edit(name, *filter, *default, *backup, *allow_empty, *raw),
            Op::Append {
                name,
                records,
                jsonl,
                stdin,
            } => self.append(name, records, *jsonl, stdin.as_deref()),
            Op::Tail { name, n, jsonl } => self.tail(name, *n, *jsonl),
            Op::Repair { name, jsonl } => self.repair(name, *jsonl),
            Op::Txn(changes) => self.txn(changes),
            Op::Backup { name, keep } => self.backup(name, keep.unwrap_or(5)),
            Op::Backups { name } => self.list_backups(name),
            Op::Restore { name, nth } => self.restore(name, nth.unwrap_or(1)),
            Op::Recover {
                dir,
                restore_invalid,
                dry_run,
            } => {
                let v = self.recover(dir, *restore_invalid);
                if !*dry_run {
                    v
                } else {
                    // "--dry-run prints the plan and changes nothing (not even a lock file)".
                    v.into_iter()
                        .map(|o| Outcome {
                            state: self.clone(),
                            why: format!("{} (dry run)", o.why),
                            ..o
                        })
                        .collect()
                }
            }
            Op::Clean { dir } => match self.dir(dir) {
                Err(c) => fail(self, c, "clean: no such directory"),
                Ok(_) => vec![Outcome::ok(self.clone(), "clean: no orphaned temps")],
            },
            Op::Read { name, default } => self.read(name, *default),
            Op::Check { name, json } => self.check(name, *json),
        };
        for o in &mut v {
            o.state.tidy();
        }
        v
    }

    /// The regular file `path` leads to (symlinks followed), for the commands that read a
    /// file: `Ok(None)` if there is none, `Err` with the outcomes of a failure otherwise.
    fn readable(&self, path: &str) -> Result<(Target, Option<Ino>), Vec<Outcome>> {
        let t = self
            .resolve(path, true)
            .map_err(|w| fail(self, w.codes(), "the path leads nowhere"))?;
        match t.node {
            Some(Node::File(i)) => Ok((t, Some(i))),
            None => Ok((t, None)),
            // Exit 8: "not a file untorn can replace: a directory, FIFO".
            Some(Node::Dir) => Err(fail(self, &[8], "a directory")),
            Some(Node::Fifo) => Err(fail(self, &[8], "a FIFO")),
            Some(Node::Link(_)) => unreachable!("a followed link"),
        }
    }

    /// `path`'s entry replaced by a new inode holding `data` (README "Writing", "Backups").
    /// `keep`: backups to keep (the displaced inode becomes one).
    fn replaced(&self, t: &Target, data: &[u8], mode: Option<u32>, keep: Option<usize>) -> State {
        let mut s = self.clone();
        let old = match t.node {
            Some(Node::File(i)) => Some(i),
            _ => None,
        };
        // README: "a replacement keeps the replaced file's mode ...; a new file gets the mode a
        // normal create would give it"; --mode sets it.
        let m = mode.unwrap_or_else(|| old.map_or(NEW_MODE, |i| self.inodes[&i].mode));
        let new = s.new_inode(data.to_vec(), m);
        if let (Some(i), Some(n)) = (old, keep) {
            s.add_backup(&t.path(), i, n);
        }
        s.entries.insert(t.path(), Node::File(new));
        s
    }

    fn write(
        &self,
        name: &str,
        data: &[u8],
        no_clobber: bool,
        backup: Option<usize>,
        sym: Sym,
        mode: Option<u32>,
    ) -> Vec<Outcome> {
        let t = match self.resolve(name, sym == Sym::Follow) {
            Ok(t) => t,
            Err(w) => return fail(self, w.codes(), "write: the path leads nowhere"),
        };
        match &t.node {
            Some(Node::Link(_)) if sym == Sym::Refuse => fail(self, &[8], "--symlink refuse"),
            Some(Node::Link(_)) if no_clobber => fail(self, &[7], "--no-clobber on a link"),
            Some(Node::Link(_)) => {
                // --symlink replace: the link becomes a regular file, a new one (a link has no
                // mode to keep), and keeps no backup (README "Backups").
                let mut s = self.clone();
                let new = s.new_inode(data.to_vec(), mode.unwrap_or(NEW_MODE));
                s.entries.insert(t.path(), Node::File(new));
                vec![Outcome::ok(s, "--symlink replace")]
            }
            // "--no-clobber: fail with exit 7 instead of replacing an existing file"; a
            // directory or FIFO exists, and is also not a file untorn can replace (8).
            Some(Node::Dir | Node::Fifo) if no_clobber => fail(self, &[7, 8], "exists"),
            Some(Node::Dir | Node::Fifo) => fail(self, &[8], "not a regular file"),
            Some(Node::File(_)) if no_clobber => fail(self, &[7], "--no-clobber"),
            Some(Node::File(i)) => {
                let shared = self
                    .entries
                    .values()
                    .filter(|n| **n == Node::File(*i))
                    .count()
                    > 1;
                let why = match (t.via_link, shared, backup.is_some()) {
                    (true, ..) => "replace through a symlink",
                    (_, true, _) => "replace one name of a hard-linked file",
                    (_, _, true) => "replace, keeping a backup",
                    _ => "replace",
                };
                vec![Outcome::ok(self.replaced(&t, data, mode, backup), why)]
            }
            None => {
                let s = self.replaced(&t, data, mode, backup);
                let mut v = vec![Outcome::ok(s.clone(), "create")];
                if let Some(n) = backup {
                    // Retention "removes the oldest beyond N": whether a create (which
                    // displaces nothing) also prunes is not said.
                    let mut p = s;
                    if let Some(l) = p.backups.get_mut(&t.path()) {
                        prune(l, n);
                    }
                    v.push(Outcome::ok(p, "create, pruning old backups"));
                }
                if no_clobber && t.via_link {
                    // A dangling link: the name exists (as a link), so 7 is fair too.
                    v.extend(fail(self, &[7], "--no-clobber through a dangling link"));
                }
                v
            }
        }
    }

    fn edit(
        &self,
        name: &str,
        filter: Filter,
        default: Option<usize>,
        backup: Option<usize>,
        allow_empty: bool,
        raw: bool,
    ) -> Vec<Outcome> {
        let (t, ino) = match self.readable(name) {
            Ok(x) => x,
            Err(v) => return v,
        };
        let input = match (ino, default) {
            (Some(i), _) => self.data(i).to_vec(),
            (None, Some(d)) => POOL[d].as_bytes().to_vec(),
            (None, None) => return fail(self, &[3], "edit of a missing file without --default"),
        };
        filter
            .run(&input)
            .into_iter()
            .flat_map(|r| match r {
                None => fail(self, &[13], "the filter failed"),
                Some(out) => self.edit_output(&t, ino, &input, out, backup, allow_empty, raw, name),
            })
            .collect()
    }

    /// The outcomes of an edit whose filter printed `out` and exited 0.
    #[allow(clippy::too_many_arguments)]
    fn edit_output(
        &self,
        t: &Target,
        ino: Option<Ino>,
        input: &[u8],
        out: Vec<u8>,
        backup: Option<usize>,
        allow_empty: bool,
        raw: bool,
        name: &str,
    ) -> Vec<Outcome> {
        let fmt = if raw { Fmt::Raw } else { fmt_of(name) };
        let write = || Outcome::ok(self.replaced(t, &out, None, backup), "edit: written");
        let mut v = Vec::new();
        if out == input && ino.is_some() {
            // "Output identical to the input writes nothing"; the empty and validity checks
            // may still refuse it (the file is unchanged either way).
            v.push(Outcome::ok(self.clone(), "edit: unchanged"));
            if (blank(&out) && !allow_empty) || valid(fmt, &out) != Some(true) {
                v.extend(fail(self, &[12], "edit: unchanged, but empty or invalid"));
            }
            return v;
        }
        if blank(&out) && !allow_empty {
            return fail(self, &[12], "edit: empty output");
        }
        match valid(fmt, &out) {
            Some(false) => return fail(self, &[12], "edit: invalid output"),
            None => v.extend(fail(self, &[12], "edit: output of unknown validity")),
            Some(true) => {}
        }
        v.push(write());
        if out == input {
            // --default given and the output is the default: whether "identical" means
            // "nothing written" for a file that does not exist is not said.
            v.push(Outcome::ok(self.clone(), "edit: identical to the default"));
        }
        v
    }

    fn append(
        &self,
        name: &str,
        records: &[String],
        jsonl: bool,
        stdin: Option<&str>,
    ) -> Vec<Outcome> {
        // CLI: each line of standard input is a record (empty lines skipped); an argument may
        // end in one newline ("a missing final newline is added; a newline inside a record is
        // an error").
        let mut recs: Vec<Vec<u8>> = Vec::new();
        match stdin {
            Some(text) => recs.extend(
                text.split('\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| l.as_bytes().to_vec()),
            ),
            None => {
                for r in records {
                    let r = r.strip_suffix('\n').unwrap_or(r);
                    if r.contains('\n') {
                        // An invalid record: a bad argument (2, 8) or invalid content (12).
                        return fail(self, &[2, 8, 12], "append: a newline inside a record");
                    }
                    recs.push(r.as_bytes().to_vec());
                }
            }
        }
        if recs.is_empty() {
            // Nothing to append: nothing is said; nothing changing is the only safe answer.
            return vec![Outcome::ok(self.clone(), "append: no records")];
        }
        let bad_record = jsonl && recs.iter().any(|r| !is_json(r));
        let (t, ino) = match self.readable(name) {
            Ok(x) => x,
            Err(mut v) => {
                // Which of two errors is reported is not said: either.
                if bad_record {
                    v.extend(fail(self, &[12], "append --jsonl: a record is not JSON"));
                }
                return v;
            }
        };
        if bad_record {
            return fail(self, &[12], "append --jsonl: a record is not JSON");
        }
        let old = ino.map_or(&[][..], |i| self.data(i));
        let j = judge(old, jsonl);
        if j.bad.last().is_some_and(|&b| b + 1 == j.lines.len()) {
            // README: "Appends ... judge the last complete line": not a record → exit 12.
            return fail(
                self,
                &[12],
                "append: the last complete line is not a record",
            );
        }
        let mut data: Vec<u8> = j.lines.concat();
        if let Some(l) = &j.last {
            // "In a plain log it is kept: ... append ends it with \n before its own records";
            // JSON Lines: "kept (and ended) if it is JSON".
            data.extend_from_slice(l);
            data.push(b'\n');
        }
        for r in &recs {
            data.extend_from_slice(r);
            data.push(b'\n');
        }
        let mut s = self.clone();
        let mut v = Vec::new();
        match ino {
            // In place (O_APPEND): every name of the inode, and a backup that is the inode
            // itself, sees it.
            Some(i) => s.inodes.get_mut(&i).expect("inode").data = data,
            None => {
                let new = s.new_inode(data, NEW_MODE);
                s.entries.insert(t.path(), Node::File(new));
                if t.via_link {
                    // A dangling link: `write` documents that it creates the target ("what
                    // `echo > link` does"); for append ("created if missing") it is not said,
                    // and exit 3 ("does not exist") with nothing changed is fair too.
                    v.extend(fail(self, &[3], "append through a dangling link"));
                }
            }
        }
        // "A cut is reported: append prints untorn: warning: ... ended in a torn tail".
        let err = if j.cut > 0 {
            Stderr::Has("torn tail")
        } else {
            Stderr::Lacks("torn tail")
        };
        let why = match (ino, &j.last, j.cut) {
            (None, ..) => "append to a new log",
            (_, _, c) if c > 0 => "append, cutting a torn tail",
            (_, Some(_), _) => "append, ending an unterminated last line",
            _ => "append",
        };
        v.insert(0, Outcome::ok(s, why).err(err));
        v
    }

    fn tail(&self, name: &str, n: usize, jsonl: bool) -> Vec<Outcome> {
        let ino = match self.readable(name) {
            Ok((_, Some(i))) => i,
            Ok((_, None)) => return fail(self, &[3], "tail of a missing log"),
            Err(v) => return v,
        };
        let j = judge(self.data(ino), jsonl);
        let mut records: Vec<Vec<u8>> = j.lines.clone();
        if let Some(l) = &j.last {
            // "tail prints it"; with --jsonl only if it is JSON (judge() dropped it if not).
            let mut l = l.clone();
            l.push(b'\n');
            records.push(l);
        }
        let first = records.len().saturating_sub(n);
        let out = records[first..].concat();
        let err = if j.cut > 0 {
            Stderr::Has("torn tail")
        } else {
            Stderr::Lacks("torn tail")
        };
        let ok = Outcome::ok(self.clone(), "tail")
            .out(Stdout::Exact(out))
            .err(err);
        if j.bad.iter().any(|&b| b >= first) {
            // "tail judges every line it reads": a bad line among those it prints.
            return fail(self, &[12], "tail: a complete line is not a record");
        }
        if !j.bad.is_empty() {
            // A bad line before the last n: whether tail reads it is not said.
            let mut v = fail(self, &[12], "tail: an earlier line is not a record");
            v.push(ok);
            return v;
        }
        vec![ok]
    }

    fn repair(&self, name: &str, jsonl: bool) -> Vec<Outcome> {
        let ino = match self.readable(name) {
            Ok((_, Some(i))) => i,
            Ok((_, None)) => return fail(self, &[3], "repair of a missing log"),
            Err(v) => return v,
        };
        let old = self.data(ino);
        let j = judge(old, jsonl);
        if j.bad.last().is_some_and(|&b| b + 1 == j.lines.len()) {
            return fail(
                self,
                &[12],
                "repair: the last complete line is not a record",
            );
        }
        if j.cut == 0 {
            return vec![Outcome::ok(self.clone(), "repair: whole").err(Stderr::Has("whole"))];
        }
        // "repair truncates it durably", in place; it says what it removed.
        let mut s = self.clone();
        s.inodes.get_mut(&ino).expect("inode").data = old[..old.len() - j.cut].to_vec();
        vec![Outcome::ok(s, "repair: cut").err(Stderr::Has("repaired"))]
    }

    fn read(&self, name: &str, default: Option<usize>) -> Vec<Outcome> {
        match self.readable(name) {
            Err(v) => v,
            Ok((_, Some(i))) => {
                vec![Outcome::ok(self.clone(), "read").out(Stdout::Exact(self.data(i).to_vec()))]
            }
            Ok((_, None)) => match default {
                Some(d) => vec![Outcome::ok(self.clone(), "read --default")
                    .out(Stdout::Exact(POOL[d].as_bytes().to_vec()))],
                None => fail(self, &[3], "read of a missing file"),
            },
        }
    }

    fn check(&self, name: &str, json: bool) -> Vec<Outcome> {
        let ino = match self.readable(name) {
            Ok((_, Some(i))) => i,
            Ok((_, None)) => return fail(self, &[3], "check of a missing file"),
            Err(v) => return v,
        };
        let data = self.data(ino);
        // "check: exit 0, or 12 with line and column"; other extensions: UTF-8.
        let ok = match if json { Fmt::Json } else { fmt_of(name) } {
            Fmt::Raw => Some(std::str::from_utf8(data).is_ok()),
            f => valid(f, data),
        };
        let mut v = Vec::new();
        if ok != Some(false) {
            v.push(Outcome::ok(self.clone(), "check: valid"));
        }
        if ok != Some(true) {
            v.extend(fail(self, &[12], "check: invalid"));
        }
        v
    }

    /// The file whose backups `name` means: the file it leads to (README: backups are kept
    /// "beside the file"; locks, likewise, belong to "the file a path leads to").
    fn backup_key(&self, name: &str) -> Result<Target, Vec<Outcome>> {
        self.resolve(name, true)
            .map_err(|w| fail(self, w.codes(), "the path leads nowhere"))
    }

    fn backup(&self, name: &str, keep: usize) -> Vec<Outcome> {
        let (t, ino) = match self.readable(name) {
            Ok((t, Some(i))) => (t, i),
            Ok((_, None)) => return fail(self, &[3], "backup of a missing file"),
            Err(v) => return v,
        };
        // "untorn backup FILE # take one now (reflink, else copy)": a copy, with the file's
        // mode (root keeps the owner, so the mode is not narrowed).
        let mut s = self.clone();
        let inode = self.inodes[&ino].clone();
        let copy = s.new_inode(inode.data, inode.mode);
        // Pruning removes the stale names of the live file, and counts only the others.
        if let Some(list) = s.backups.get_mut(&t.path()) {
            list.retain(|&b| b != ino);
        }
        s.add_backup(&t.path(), copy, keep.max(1));
        s.tidy();
        vec![Outcome::ok(s, "backup")]
    }

    fn list_backups(&self, name: &str) -> Vec<Outcome> {
        let t = match self.backup_key(name) {
            Ok(t) => t,
            Err(v) => return v,
        };
        let fmt = fmt_of(name);
        let list = self
            .versions_of(&t)
            .iter()
            .rev()
            .map(|&i| {
                let d = self.data(i);
                (format!("{}.", t.name), d.len() as u64, valid(fmt, d))
            })
            .collect();
        vec![Outcome::ok(self.clone(), "backups").out(Stdout::Backups(list))]
    }

    fn restore(&self, name: &str, nth: usize) -> Vec<Outcome> {
        let t = match self.backup_key(name) {
            Ok(t) => t,
            Err(v) => return v,
        };
        let list = self.versions_of(&t);
        let Some(&from) = nth.checked_sub(1).and_then(|k| list.iter().rev().nth(k)) else {
            return fail(self, &[3], "restore: no such backup");
        };
        self.restore_from(&t, from, "restore")
    }

    /// "restore writes the backup's content back atomically and durably; the version it
    /// replaces becomes a backup" (and every other backup is kept).
    fn restore_from(&self, t: &Target, from: Ino, why: &str) -> Vec<Outcome> {
        match t.node {
            Some(Node::Dir | Node::Fifo) => return fail(self, &[8], "restore onto a non-file"),
            Some(Node::Link(_)) => unreachable!("a followed link"),
            _ => {}
        }
        let data = self.data(from).to_vec();
        let mut v = vec![Outcome::ok(
            self.replaced(t, &data, None, Some(usize::MAX)),
            why,
        )];
        if t.node.is_none() {
            // A new file: the mode a create gives, or the backup's own: not said.
            let m = self.inodes[&from].mode;
            v.push(Outcome::ok(
                self.replaced(t, &data, Some(m), Some(usize::MAX)),
                format!("{why}, with the backup's mode"),
            ));
        }
        v
    }

    fn recover(&self, dir: &str, restore_invalid: bool) -> Vec<Outcome> {
        let d = match self.dir(dir) {
            Ok(d) => d,
            Err(c) => return fail(self, c, "recover: no such directory"),
        };
        if !restore_invalid {
            return vec![Outcome::ok(self.clone(), "recover: nothing to do")];
        }
        // "--restore-invalid --format json restores files of that format that fail to parse
        // from their newest valid backup (exit 12 if one has none)"; "never writes through a
        // symlink".
        let mut s = self.clone();
        let (mut unresolved, mut restored) = (false, 0);
        let names: Vec<(String, Ino)> = self
            .entries
            .iter()
            .filter(|(p, _)| split(p).0 == d && fmt_of(p) == Fmt::Json)
            .filter_map(|(p, n)| match n {
                Node::File(i) => Some((p.clone(), *i)),
                _ => None,
            })
            .collect();
        for (p, i) in names {
            if is_json(s.data(i)) {
                continue;
            }
            let good = s
                .backups_of(&p)
                .iter()
                .rev()
                .copied()
                .filter(|&b| b != i)
                .find(|&b| is_json(s.data(b)));
            match good {
                None => unresolved = true,
                Some(b) => {
                    let t = s.resolve(&p, false).expect("listed");
                    let mut o = s.restore_from(&t, b, "recover");
                    s = o.swap_remove(0).state;
                    restored += 1;
                }
            }
        }
        let code = if unresolved { 12 } else { 0 };
        let why = if restored > 0 {
            "recover --restore-invalid, restoring"
        } else {
            "recover --restore-invalid"
        };
        vec![Outcome {
            code,
            ..Outcome::ok(s, why)
        }]
    }

    fn txn(&self, changes: &[Change]) -> Vec<Outcome> {
        // README "Transactions": all the changes, or none; put checks the new content against
        // its target's format; each change once per file ("two names of one file" refused).
        let mut errors: BTreeSet<u8> = BTreeSet::new();
        let mut maybe: Vec<(u8, &str)> = Vec::new();
        for c in changes {
            if let Change::Put(t, src) = c {
                match src {
                    None => {
                        errors.insert(3);
                    }
                    Some(i) => match valid(fmt_of(t), POOL[*i].as_bytes()) {
                        Some(false) => {
                            errors.insert(12);
                        }
                        None => maybe.push((12, "put of unknown validity")),
                        Some(true) => {}
                    },
                }
            }
        }
        let mut touched = BTreeSet::new();
        // Resolved at staging, applied in order.
        enum Step {
            Put(Target, Vec<u8>),
            Rm(String),
            Mv(String, String),
        }
        let mut steps = Vec::new();
        let mut claim = |p: String, errors: &mut BTreeSet<u8>| {
            if !touched.insert(p) {
                // "the transaction already changes this file": a bad change (2 or 8).
                errors.extend([2, 8]);
            }
        };
        // The entry a rm or mv names (not following a final symlink), which must exist and
        // not be a directory.
        let entry = |p: &str, errors: &mut BTreeSet<u8>, maybe: &mut Vec<(u8, &str)>| match self
            .resolve(p, false)
        {
            Err(w) => {
                errors.extend(w.codes());
                None
            }
            Ok(t) => match t.node {
                None => {
                    errors.insert(3);
                    None
                }
                Some(Node::Dir) => {
                    errors.insert(8);
                    None
                }
                Some(Node::Fifo) => {
                    // Moving or removing a FIFO replaces nothing; refusing it (8) is fair too.
                    maybe.push((8, "rm/mv of a FIFO"));
                    Some(t.path())
                }
                _ => Some(t.path()),
            },
        };
        for c in changes {
            match c {
                Change::Put(p, src) => match self.resolve(p, true) {
                    Err(w) => errors.extend(w.codes()),
                    Ok(t) => match t.node {
                        Some(Node::Dir | Node::Fifo) => {
                            errors.insert(8);
                        }
                        _ => {
                            claim(t.path(), &mut errors);
                            let data = src.map_or(Vec::new(), |i| POOL[i].as_bytes().to_vec());
                            steps.push(Step::Put(t, data));
                        }
                    },
                },
                Change::Rm(p) => {
                    if let Some(e) = entry(p, &mut errors, &mut maybe) {
                        claim(e.clone(), &mut errors);
                        steps.push(Step::Rm(e));
                    }
                }
                Change::Mv(f, to) => {
                    let from = entry(f, &mut errors, &mut maybe);
                    let target = match self.resolve(to, false) {
                        Err(w) => {
                            errors.extend(w.codes());
                            None
                        }
                        Ok(t) => {
                            match &t.node {
                                // "a target that is a directory": refused before the commit.
                                Some(Node::Dir) => {
                                    errors.insert(8);
                                }
                                Some(Node::Fifo) => maybe.push((8, "mv onto a FIFO")),
                                Some(Node::Link(_)) => {
                                    if matches!(
                                        self.resolve(to, true).map(|r| r.node),
                                        Ok(Some(Node::Dir))
                                    ) {
                                        // A link to a directory: rename(2) replaces the link;
                                        // "a target that is a directory" may be read as it.
                                        maybe.push((8, "mv onto a link to a directory"));
                                    }
                                }
                                _ => {}
                            }
                            Some(t.path())
                        }
                    };
                    if let (Some(from), Some(to)) = (from, target) {
                        claim(from.clone(), &mut errors);
                        claim(to.clone(), &mut errors);
                        steps.push(Step::Mv(from, to));
                    }
                }
            }
        }
        if !errors.is_empty() {
            // Which error is reported first is not said: any of them, or of the refusals the
            // model allows.
            errors.extend(maybe.iter().map(|m| m.0));
            let codes: Vec<u8> = errors.into_iter().collect();
            return fail(self, &codes, "txn: refused, nothing changed");
        }
        let mut s = self.clone();
        for st in steps {
            match st {
                Step::Put(t, data) => {
                    // "put" follows symlinks; the new file keeps the mode of the one it
                    // replaces, and a txn keeps no backups.
                    s = s.replaced(&t, &data, None, None);
                }
                Step::Rm(p) => {
                    s.entries.remove(&p);
                }
                Step::Mv(f, t) => {
                    let n = s.entries.remove(&f).expect("staged");
                    s.entries.insert(t, n);
                }
            }
        }
        let mut v = vec![Outcome::ok(s, "txn: committed")];
        for (code, why) in maybe {
            v.extend(fail(self, &[code], why));
        }
        v
    }
}

/// Lock files (README "Locks"): "The lock is FILE.lock, a sidecar beside FILE (beside the file
/// itself: through a symlink, beside the file the link leads to, so every name of one file takes
/// one lock)".
pub struct Locks {
    /// The lock files the command may create (paths from the root).
    pub may: BTreeSet<String>,
    /// The lock files that must exist once the command succeeded (it took those locks).
    pub must: BTreeSet<String>,
}

impl State {
    /// The lock file of the file `path` leads to, if it leads somewhere.
    fn lock_of(&self, path: &str, follow: bool) -> Option<String> {
        self.resolve(path, follow)
            .ok()
            .map(|t| format!("{}.lock", t.path()))
    }

    /// Which lock files `op` may create, and which it must have taken if it succeeds.
    pub fn locks(&self, op: &Op) -> Locks {
        let mut may = BTreeSet::new();
        let mut must = BTreeSet::new();
        let exists = |p: &str| {
            matches!(
                self.resolve(p, true).map(|t| t.node),
                Ok(Some(Node::File(_)))
            )
        };
        match op {
            // A write takes no lock ("a write looks at the lock file, one stat"); may is
            // lenient. A replaced link: its own name.
            Op::Write { name, symlink, .. } => {
                may.extend(self.lock_of(name, true));
                if *symlink == Some(Sym::Replace) {
                    may.extend(self.lock_of(name, false));
                }
            }
            // Locked read-modify-write, appends, repairs, reads ("print it under a shared
            // lock") and restores ("under the exclusive lock").
            Op::Append {
                name,
                stdin: Some(t),
                ..
            } if t.split('\n').all(str::is_empty) => {
                // No records: nothing to lock (whether it locks anyway is not said).
                may.extend(self.lock_of(name, true));
            }
            Op::Edit { name, .. }
            | Op::Append { name, .. }
            | Op::Repair { name, .. }
            | Op::Restore { name, .. } => {
                may.extend(self.lock_of(name, true));
                must.extend(self.lock_of(name, true));
            }
            Op::Read { name, .. } | Op::Tail { name, .. } => {
                may.extend(self.lock_of(name, true));
                if exists(name) {
                    must.extend(self.lock_of(name, true));
                }
            }
            Op::Check { name, .. } | Op::Backup { name, .. } | Op::Backups { name } => {
                may.extend(self.lock_of(name, true));
            }
            Op::Txn(changes) => {
                // "the files' lock files (the same FILE.lock) are taken": every file involved.
                for c in changes {
                    match c {
                        Change::Put(t, _) => {
                            may.extend(self.lock_of(t, true));
                            must.extend(self.lock_of(t, true));
                        }
                        Change::Rm(p) => {
                            may.extend(self.lock_of(p, true));
                            may.extend(self.lock_of(p, false));
                        }
                        Change::Mv(f, t) => {
                            for p in [f, t] {
                                may.extend(self.lock_of(p, true));
                                may.extend(self.lock_of(p, false));
                            }
                        }
                    }
                }
            }
            Op::Recover {
                dir,
                restore_invalid: true,
                dry_run: false,
            } => {
                if let Ok(d) = self.dir(dir) {
                    for p in self.entries.keys() {
                        if split(p).0 == d && fmt_of(p) == Fmt::Json {
                            may.insert(format!("{p}.lock"));
                        }
                    }
                }
            }
            Op::Recover { .. } | Op::Clean { .. } => {}
        }
        if must.iter().any(|m| !may.contains(m)) {
            unreachable!("must ⊆ may");
        }
        Locks { may, must }
    }
}

fn prune(list: &mut Vec<Ino>, keep: usize) {
    if list.len() > keep {
        list.drain(..list.len() - keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_itself() {
        let one = |r: Vec<Option<Vec<u8>>>| {
            assert_eq!(r.len(), 1, "{r:?}");
            r.into_iter().next().unwrap()
        };
        assert_eq!(
            one(Filter::Jq.run(b"{\"n\": 1}")).unwrap(),
            b"{\n  \"n\": 2\n}\n"
        );
        assert_eq!(
            one(Filter::Jq.run(b"{\"a\":\"x\"}\n{\"e\":1}")).unwrap(),
            b"{\n  \"a\": \"x\",\n  \"n\": 1\n}\n{\n  \"e\": 1,\n  \"n\": 1\n}\n"
        );
        assert_eq!(one(Filter::Jq.run(b" \n")).unwrap(), b"");
        assert!(one(Filter::Jq.run(b"[1]")).is_none());
        assert!(one(Filter::Jq.run(b"step 1 done")).is_none());
        assert!(one(Filter::Jq.run(b"{} 1")).is_none());
        assert_eq!(Filter::Jq.run(b"1 {}").len(), 2);
        assert_eq!(one(Filter::Sed.run(b"1 11\n21")).unwrap(), b"2 11\n22");
        let j = judge(b"a\nb", false);
        assert_eq!(
            (j.lines.len(), j.last.as_deref(), j.cut),
            (1, Some(&b"b"[..]), 0)
        );
        let j = judge(b"{}\nnot json", true);
        assert_eq!((j.last, j.cut), (None, 8));
        let j = judge(b"x\n\0\0", false);
        assert_eq!((j.lines.len(), j.cut), (1, 2));
        assert_eq!(judge(b"{}\n\n", true).bad, vec![1]);
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("a\nb"), "$'a\\nb'");
    }
}
