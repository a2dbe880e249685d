//! Model-based test (issue 13, "Nothing lost, ever"): random sequences of untorn commands
//! (write, edit, append, tail, repair, txn put/rm/mv, backup, backups, restore, recover, clean,
//! read, check) over a small pool of names that include symlinks to files and directories,
//! dangling links, hard links, unterminated files, logs that are not JSON, logs ending in
//! zeros, FIFOs and directories where files are expected. Each command runs through the real
//! binary in a fresh directory per sequence, and its outcome (exit code, output, and the whole
//! directory tree) is compared with a reference model of what the README promises
//! (`model/reference.rs`). After every command, whatever the model says:
//!
//! - no untorn temp (`.NAME.untorn-XXXXXXXX.tmp`) and no journal (`.untorn-txn-*.journal`) is
//!   left anywhere;
//! - every lock file is empty (no transaction flag);
//! - every name is what the model says, byte for byte and mode for mode; symlinks point where
//!   they did; names of one inode in the model are one inode on disk, and names of different
//!   inodes are different inodes (a write through a hard link gives a new inode); each file's
//!   backups are the versions the model kept, in order.
//!
//! A failed command is one of the model's failure outcomes, which leave every file as it was.
//!
//! - lock files appear only beside the files the command names (through a symlink, beside the
//!   file it leads to), and a command that locks has its file's lock file once it succeeded.
//!
//! Scale: `UNTORN_MODEL_SEQUENCES` (default 250) sequences of `UNTORN_MODEL_STEPS` (default 20)
//! commands; `UNTORN_MODEL_SEED` fixes the first sequence's seed (sequence i uses seed + i; by
//! default a random one, printed). On a violation the test shrinks the sequence and prints the
//! seed and a bash script that reproduces it (`UNTORN_MODEL_SHRINK=0`: no shrinking;
//! `UNTORN_MODEL_MAX_VIOLATIONS`, default 3, how many to collect before stopping).
//! `scripts/prove --long` runs 5,000 sequences. The summary line is `MODEL sequences=N steps=M
//! violations=V seed=S`; `UNTORN_MODEL_RULES=1` also prints how often each rule of the model
//! decided an outcome. `UNTORN_MODEL_BIN` runs everything against another binary (a deliberately
//! broken wrapper, say); `UNTORN_MODEL_DIR` is where the scratch directories go.
//!
//! Two more tests: `model_catches_broken_binaries` (wrappers that break untorn the ways bugs did
//! must each be caught) and `model_concurrent_names` (processes editing and appending through
//! different names of one file at once).

#[path = "model/reference.rs"]
mod reference;

use reference::{
    join, quote, Change, Filter, Ino, Node, Op, Outcome, State, Stderr, Stdout, Sym, POOL,
};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How one name is made before the sequence starts.
#[derive(Clone, Debug)]
enum Make {
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    Link {
        path: String,
        target: String,
    },
    Hard {
        path: String,
        of: String,
    },
    Dir(String),
    Fifo(String),
}

impl Make {
    fn path(&self) -> &str {
        match self {
            Make::File { path, .. } | Make::Link { path, .. } | Make::Hard { path, .. } => path,
            Make::Dir(p) | Make::Fifo(p) => p,
        }
    }

    /// Applies it to the model; `false` if it cannot be made there (its parent or the file it
    /// links to is gone, after shrinking), in which case it is skipped on disk too.
    fn apply(&self, s: &mut State) -> bool {
        let (parent, _) = reference::split(self.path());
        let parent_ok = parent.is_empty() || s.entries.get(parent) == Some(&Node::Dir);
        if !parent_ok || s.entries.contains_key(self.path()) {
            return false;
        }
        let node = match self {
            Make::File { data, mode, .. } => Node::File(s.new_inode(data.clone(), *mode)),
            Make::Link { target, .. } => Node::Link(target.clone()),
            Make::Hard { of, .. } => match s.entries.get(of) {
                Some(Node::File(i)) => Node::File(*i),
                _ => return false,
            },
            Make::Dir(_) => Node::Dir,
            Make::Fifo(_) => Node::Fifo,
        };
        s.entries.insert(self.path().to_string(), node);
        true
    }

    fn make(&self, root: &Path) {
        let p = root.join(self.path());
        match self {
            Make::File { data, mode, .. } => {
                fs::write(&p, data).unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).unwrap();
            }
            Make::Link { target, .. } => std::os::unix::fs::symlink(target, &p).unwrap(),
            Make::Hard { of, .. } => fs::hard_link(root.join(of), &p).unwrap(),
            Make::Dir(_) => fs::create_dir(&p).unwrap(),
            Make::Fifo(_) => {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &p,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o644),
                    0,
                )
                .unwrap();
            }
        }
    }

    fn shell(&self) -> String {
        match self {
            Make::File { path, data, mode } => format!(
                "printf %s {} > {path}; chmod {mode:o} {path}",
                quote(&String::from_utf8_lossy(data))
            ),
            Make::Link { path, target } => format!("ln -s {target} {path}"),
            Make::Hard { path, of } => format!("ln {of} {path}"),
            Make::Dir(p) => format!("mkdir {p}"),
            Make::Fifo(p) => format!("mkfifo {p}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generation

/// The names a sequence works on, beside `sub/` (a directory) and `ld` (usually a link to it).
const SLOTS: &[&str] = &[
    "a.json", "b.json", "c.yaml", "d.txt", "e.log", "f.jsonl", "g.jsonl", "h.json",
];
/// Names reached through the directory and its link.
const DEEP: &[&str] = &[
    "sub/x.json",
    "ld/x.json",
    "sub/y.log",
    "ld/z.yaml",
    "sub",
    "ld",
];

const RECORDS: &[&str] = &[
    "{\"e\":4}",
    "{\"e\":5}\n",
    "step 2 done",
    "plain text",
    "[1]",
    "null",
    "7",
];

fn pick<'a, T>(rng: &mut fastrand::Rng, v: &'a [T]) -> &'a T {
    &v[rng.usize(..v.len())]
}

/// Chooses by weight: `(weight, value)`.
fn weighted<T: Copy>(rng: &mut fastrand::Rng, v: &[(u32, T)]) -> T {
    let total: u32 = v.iter().map(|x| x.0).sum();
    let mut r = rng.u32(..total);
    for &(w, x) in v {
        if r < w {
            return x;
        }
        r -= w;
    }
    unreachable!()
}

fn gen_setup(rng: &mut fastrand::Rng) -> Vec<Make> {
    let mut v = vec![Make::Dir("sub".into())];
    let json_pool = [0usize, 1, 2, 3, 4];
    if rng.u32(..10) < 7 {
        v.push(Make::File {
            path: "sub/x.json".into(),
            data: POOL[*pick(rng, &json_pool)].into(),
            mode: 0o644,
        });
    }
    if rng.bool() {
        v.push(Make::File {
            path: "sub/y.log".into(),
            data: b"old 1\nold 2".to_vec(),
            mode: 0o644,
        });
    }
    match rng.u32(..10) {
        0 => {}
        1 => v.push(Make::Dir("ld".into())),
        _ => v.push(Make::Link {
            path: "ld".into(),
            target: "sub".into(),
        }),
    }
    let mut files: Vec<&str> = Vec::new();
    for (k, &slot) in SLOTS.iter().enumerate() {
        let path = slot.to_string();
        let file = |data: &[u8], mode: u32| Make::File {
            path: path.clone(),
            data: data.to_vec(),
            mode,
        };
        #[derive(Clone, Copy)]
        enum K {
            Missing,
            Pool,
            Unterminated,
            TextLog,
            JsonLog,
            Zeros,
            LinkFile,
            LinkDeep,
            LinkDir,
            Dangling,
            Hard,
            Dir,
            Fifo,
        }
        let kind = weighted(
            rng,
            &[
                (14, K::Missing),
                (28, K::Pool),
                (8, K::Unterminated),
                (7, K::TextLog),
                (7, K::JsonLog),
                (4, K::Zeros),
                (10, K::LinkFile),
                (3, K::LinkDeep),
                (3, K::LinkDir),
                (4, K::Dangling),
                (6, K::Hard),
                (3, K::Dir),
                (3, K::Fifo),
            ],
        );
        let mode = weighted(rng, &[(8, 0o644), (1, 0o600), (1, 0o640), (1, 0o755)]);
        let m = match kind {
            K::Missing => continue,
            K::Pool => file(POOL[rng.usize(..POOL.len())].as_bytes(), mode),
            K::Unterminated => file(b"step 1 done", mode),
            K::TextLog => file(b"plain text\nmore text\n", mode),
            K::JsonLog => file(b"{\"e\":1}\n{\"e\":2}\n", mode),
            K::Zeros => file(b"{\"e\":1}\nrec 1\n\0\0\0", mode),
            K::LinkFile if k > 0 => Make::Link {
                path,
                target: SLOTS[rng.usize(..k)].into(),
            },
            K::LinkFile | K::LinkDeep => Make::Link {
                path,
                target: "sub/x.json".into(),
            },
            K::LinkDir => Make::Link {
                path,
                target: "sub".into(),
            },
            K::Dangling => Make::Link {
                path,
                target: pick(rng, &["nowhere.json", "sub/nope.log"]).to_string(),
            },
            K::Hard if !files.is_empty() => Make::Hard {
                path,
                of: pick(rng, &files).to_string(),
            },
            K::Hard => file(b"{\"n\": 1}\n", mode),
            K::Dir => Make::Dir(path),
            K::Fifo => Make::Fifo(path),
        };
        if matches!(m, Make::File { .. }) {
            files.push(slot);
        }
        v.push(m);
    }
    v
}

/// A name for a command: half the time one of the sequence's `hot` names (so that commands
/// meet: a write with backups, then a restore of the same file), else any.
fn gen_name(rng: &mut fastrand::Rng, hot: &[&str]) -> String {
    if rng.bool() {
        pick(rng, hot).to_string()
    } else if rng.u32(..4) == 0 {
        pick(rng, DEEP).to_string()
    } else {
        pick(rng, SLOTS).to_string()
    }
}

fn gen_op(rng: &mut fastrand::Rng, hot: &[&str]) -> Op {
    #[derive(Clone, Copy)]
    enum K {
        Write,
        Corrupt,
        Edit,
        Append,
        Tail,
        Repair,
        Txn,
        Backup,
        Backups,
        Restore,
        Recover,
        Clean,
        Read,
        Check,
    }
    let kind = weighted(
        rng,
        &[
            (20, K::Write),
            (3, K::Corrupt),
            (14, K::Edit),
            (16, K::Append),
            (5, K::Tail),
            (4, K::Repair),
            (12, K::Txn),
            (5, K::Backup),
            (4, K::Backups),
            (6, K::Restore),
            (7, K::Recover),
            (2, K::Clean),
            (4, K::Read),
            (3, K::Check),
        ],
    );
    // Backups and restores meet the writes that keep backups on the sequence's hot names.
    let name = match kind {
        K::Backup | K::Backups | K::Restore if rng.u32(..10) < 8 => pick(rng, hot).to_string(),
        _ => gen_name(rng, hot),
    };
    let pool = |rng: &mut fastrand::Rng| rng.usize(..POOL.len());
    // A .json file gets valid JSON more often than not (so that there are valid versions to
    // keep, and invalid ones for recover --restore-invalid to restore).
    let content = |rng: &mut fastrand::Rng, name: &str| {
        if name.ends_with(".json") && rng.u32(..10) < 6 {
            rng.usize(..5)
        } else {
            rng.usize(..POOL.len())
        }
    };
    let maybe = |rng: &mut fastrand::Rng, p: u32| rng.u32(..100) < p;
    match kind {
        K::Write => Op::Write {
            data: POOL[content(rng, &name)].as_bytes().to_vec(),
            name,
            stdin: maybe(rng, 30),
            no_clobber: maybe(rng, 10),
            backup: maybe(rng, 40).then(|| rng.usize(1..=3)),
            symlink: maybe(rng, 30).then(|| *pick(rng, &[Sym::Follow, Sym::Replace, Sym::Refuse])),
            mode: maybe(rng, 10).then(|| *pick(rng, &[0o600, 0o640, 0o755])),
            flags: match rng.u32(..10) {
                0 => vec!["--temp", "named"],
                1 => vec!["--durability", "none"],
                2 => vec!["--durability", "file", "--temp", "named"],
                _ => vec![],
            },
        },
        // A JSON file cut short (by a program that writes in place, say), its last version kept
        // as a backup: what recover --restore-invalid is for.
        K::Corrupt => Op::Write {
            name: match hot.iter().find(|n| n.ends_with(".json")) {
                Some(n) => n.to_string(),
                None => pick(rng, &["a.json", "b.json", "sub/x.json"]).to_string(),
            },
            data: POOL[7].as_bytes().to_vec(),
            stdin: false,
            no_clobber: false,
            backup: Some(rng.usize(1..=3)),
            symlink: None,
            mode: None,
            flags: vec![],
        },
        K::Edit => {
            let printed = content(rng, &name);
            let jq = if have_jq() { 1 } else { 0 };
            Op::Edit {
                name,
                filter: weighted(
                    rng,
                    &[
                        (10, Filter::Cat),
                        (15, Filter::Sed),
                        (25, Filter::Printf(printed)),
                        (5, Filter::False),
                        (25 * jq, Filter::Jq),
                        (5 * jq, Filter::JqBad),
                        (10, Filter::Nothing),
                    ],
                ),
                default: maybe(rng, 25).then(|| *pick(rng, &[0, 3, 4, 5, 8])),
                backup: maybe(rng, 30).then(|| rng.usize(1..=3)),
                allow_empty: maybe(rng, 15),
                raw: maybe(rng, 10),
            }
        }
        K::Append => {
            let jsonl = maybe(rng, if name.ends_with(".jsonl") { 75 } else { 35 });
            let n = rng.usize(1..=3);
            let mut records: Vec<String> = (0..n).map(|_| pick(rng, RECORDS).to_string()).collect();
            if maybe(rng, 3) {
                records.push(pick(rng, &["", "x\ny"]).to_string());
            }
            let stdin = maybe(rng, 25).then(|| {
                let mut t = records
                    .iter()
                    .map(|r| r.trim_end_matches('\n'))
                    .collect::<Vec<_>>()
                    .join("\n");
                if rng.bool() {
                    t.push('\n');
                }
                if maybe(rng, 5) {
                    t.clear();
                }
                t
            });
            Op::Append {
                name,
                records,
                jsonl,
                stdin,
            }
        }
        K::Tail => Op::Tail {
            name,
            n: rng.usize(1..=4),
            jsonl: rng.bool(),
        },
        K::Repair => Op::Repair {
            name,
            jsonl: rng.bool(),
        },
        K::Txn => {
            let n = weighted(rng, &[(4, 1), (4, 2), (2, 3)]);
            let changes = (0..n)
                .map(|_| match rng.u32(..4) {
                    0 | 1 => Change::Put(gen_name(rng, hot), (!maybe(rng, 5)).then(|| pool(rng))),
                    2 => Change::Rm(gen_name(rng, hot)),
                    _ => Change::Mv(gen_name(rng, hot), gen_name(rng, hot)),
                })
                .collect();
            Op::Txn(changes)
        }
        K::Backup => Op::Backup {
            name,
            keep: maybe(rng, 30).then(|| rng.usize(1..=3)),
        },
        K::Backups => Op::Backups { name },
        K::Restore => Op::Restore {
            name,
            nth: maybe(rng, 30).then(|| rng.usize(1..=3)),
        },
        K::Recover => Op::Recover {
            dir: weighted(rng, &[(8, "."), (1, "sub"), (1, "ld")]).to_string(),
            restore_invalid: maybe(rng, 60),
            dry_run: maybe(rng, 15),
        },
        K::Clean => Op::Clean { dir: ".".into() },
        K::Read => Op::Read {
            name,
            default: maybe(rng, 20).then(|| pool(rng)),
        },
        K::Check => Op::Check {
            name,
            json: maybe(rng, 20),
        },
    }
}

fn gen_sequence(seed: u64, steps: usize) -> (Vec<Make>, Vec<Op>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let setup = gen_setup(&mut rng);
    let hot: Vec<&str> = (0..3)
        .map(|_| {
            if rng.u32(..4) == 0 {
                *pick(&mut rng, DEEP)
            } else {
                *pick(&mut rng, SLOTS)
            }
        })
        .collect();
    let ops = (0..steps).map(|_| gen_op(&mut rng, &hot)).collect();
    (setup, ops)
}

// ---------------------------------------------------------------------------------------------
// Observing the directory tree

#[derive(Debug)]
struct ObsFile {
    data: Vec<u8>,
    mode: u32,
    id: (u64, u64),
}

#[derive(Debug)]
enum Obs {
    File(ObsFile),
    Link(String),
    Dir,
    Fifo,
    Other,
}

#[derive(Debug, Default)]
struct Tree {
    entries: BTreeMap<String, Obs>,
    /// Every lock file (`NAME.lock`), by path.
    locks: std::collections::BTreeSet<String>,
    /// Backups by the path of the file they are named after, oldest first.
    backups: BTreeMap<String, Vec<(String, ObsFile)>>,
}

/// `NAME.YYYYMMDDTHHMMSS.NNNNNNNNNZ.bak` → NAME (README "Backups": the format is stable).
fn backup_base(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".bak")?;
    let (base, stamp) = stem.split_at_checked(stem.len().checked_sub(27)?)?;
    let s = stamp.as_bytes();
    let shape = s[0] == b'.'
        && s[9] == b'T'
        && s[16] == b'.'
        && s[26] == b'Z'
        && s.iter()
            .enumerate()
            .all(|(i, b)| matches!(i, 0 | 9 | 16 | 26) || b.is_ascii_digit());
    (shape && !base.is_empty()).then_some(base)
}

/// Reads the whole tree under `root` (symlinks not followed, FIFOs never opened), and checks
/// the invariants that hold whatever the command was: no temp, no journal, no flagged lock.
fn observe(root: &Path) -> Result<Tree, String> {
    let mut tree = Tree::default();
    let mut problems = Vec::new();
    walk(root, "", &mut tree, &mut problems);
    if problems.is_empty() {
        Ok(tree)
    } else {
        Err(problems.join("\n"))
    }
}

fn walk(root: &Path, rel: &str, tree: &mut Tree, problems: &mut Vec<String>) {
    let mut names: Vec<String> = fs::read_dir(root.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names {
        let path = join(rel, &name);
        let full = root.join(&path);
        let md = fs::symlink_metadata(&full).unwrap();
        let ft = md.file_type();
        if name.starts_with('.') && name.contains(".untorn-") && name.ends_with(".tmp") {
            problems.push(format!("invariant: temp left behind: {path}"));
            continue;
        }
        if name.starts_with(".untorn-txn-") && name.ends_with(".journal") {
            problems.push(format!("invariant: journal left behind: {path}"));
            continue;
        }
        if name.ends_with(".lock") && ft.is_file() {
            if md.len() != 0 {
                problems.push(format!(
                    "invariant: lock file {path} carries a flag (size {})",
                    md.len()
                ));
            }
            tree.locks.insert(path);
            continue;
        }
        let file = || ObsFile {
            data: fs::read(&full).unwrap(),
            mode: md.mode() & 0o7777,
            id: (md.dev(), md.ino()),
        };
        if let (Some(base), true) = (backup_base(&name), ft.is_file()) {
            tree.backups
                .entry(join(rel, base))
                .or_default()
                .push((name.clone(), file()));
            continue;
        }
        let o = if ft.is_symlink() {
            Obs::Link(
                fs::read_link(&full)
                    .unwrap()
                    .into_os_string()
                    .into_string()
                    .unwrap(),
            )
        } else if ft.is_file() {
            Obs::File(file())
        } else if ft.is_dir() {
            walk(root, &path, tree, problems);
            Obs::Dir
        } else if ft.is_fifo() {
            Obs::Fifo
        } else {
            Obs::Other
        };
        tree.entries.insert(path, o);
    }
}

fn show(d: &[u8]) -> String {
    let s = String::from_utf8_lossy(d);
    if s.len() > 80 {
        format!("{:?}...", &s[..80])
    } else {
        format!("{s:?}")
    }
}

/// The differences between the tree and the model's state (empty: none).
fn compare(tree: &Tree, s: &State) -> Vec<String> {
    let mut d = Vec::new();
    // model inode -> disk inode, and back: names of one inode are one inode, and only they.
    let mut fwd: BTreeMap<Ino, (u64, u64)> = BTreeMap::new();
    let mut back: BTreeMap<(u64, u64), Ino> = BTreeMap::new();
    let mut same = |what: &str, i: Ino, f: &ObsFile, d: &mut Vec<String>| {
        let inode = &s.inodes[&i];
        if inode.data != f.data {
            d.push(format!(
                "{what}: content {} where the model has {}",
                show(&f.data),
                show(&inode.data)
            ));
        }
        if inode.mode != f.mode {
            d.push(format!(
                "{what}: mode {:o} where the model has {:o}",
                f.mode, inode.mode
            ));
        }
        if *fwd.entry(i).or_insert(f.id) != f.id {
            d.push(format!(
                "{what}: a different inode from the other names of its model inode #{i}"
            ));
        }
        if *back.entry(f.id).or_insert(i) != i {
            d.push(format!(
                "{what}: the same inode as a name the model gives another inode (#{i})"
            ));
        }
    };
    for (p, n) in &s.entries {
        match (n, tree.entries.get(p)) {
            (_, None) => d.push(format!("{p}: missing, the model has {n:?}")),
            (Node::File(i), Some(Obs::File(f))) => same(p, *i, f, &mut d),
            (Node::Link(t), Some(Obs::Link(t2))) if t == t2 => {}
            (Node::Dir, Some(Obs::Dir)) | (Node::Fifo, Some(Obs::Fifo)) => {}
            (n, Some(o)) => d.push(format!("{p}: {} where the model has {n:?}", kind(o))),
        }
    }
    for (p, o) in &tree.entries {
        if !s.entries.contains_key(p) {
            d.push(format!("{p}: {} that the model does not have", kind(o)));
        }
    }
    let empty = Vec::new();
    let keys: std::collections::BTreeSet<&String> =
        s.backups.keys().chain(tree.backups.keys()).collect();
    for k in keys {
        let want = s.backups.get(k).unwrap_or(&empty);
        let got = tree.backups.get(k).map_or(&[][..], Vec::as_slice);
        if want.len() != got.len() {
            d.push(format!(
                "backups of {k}: {} on disk ({}), the model has {} ({})",
                got.len(),
                got.iter()
                    .map(|(_, f)| show(&f.data))
                    .collect::<Vec<_>>()
                    .join(", "),
                want.len(),
                want.iter()
                    .map(|i| show(&s.inodes[i].data))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        }
        for (i, (name, f)) in want.iter().zip(got) {
            same(&format!("backup {k} ({name})"), *i, f, &mut d);
        }
    }
    d
}

fn kind(o: &Obs) -> String {
    match o {
        Obs::File(f) => format!("a file holding {}", show(&f.data)),
        Obs::Link(t) => format!("a link to {t}"),
        Obs::Dir => "a directory".into(),
        Obs::Fifo => "a FIFO".into(),
        Obs::Other => "something else".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Running

struct Ran {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Whether the command's output is what `o` says.
fn output_ok(o: &Outcome, r: &Ran) -> Result<(), String> {
    match &o.stdout {
        Stdout::Any => {}
        Stdout::Exact(want) if *want == r.stdout => {}
        Stdout::Exact(want) => {
            return Err(format!(
                "stdout {} where the model has {}",
                show(&r.stdout),
                show(want)
            ))
        }
        Stdout::Backups(want) => {
            let text = String::from_utf8_lossy(&r.stdout);
            let lines: Vec<&str> = text.lines().collect();
            if lines.len() != want.len() {
                return Err(format!(
                    "{} backups listed where the model has {}",
                    lines.len(),
                    want.len()
                ));
            }
            for (line, (prefix, size, valid)) in lines.iter().zip(want) {
                let f: Vec<&str> = line.split('\t').collect();
                // The fifth column: whether it matches the checksum untorn recorded (issue 14).
                // Nothing here damages blocks under a file: never `damaged`.
                let ok = f.len() == 5
                    && f[0].starts_with(prefix.as_str())
                    && f[2] == format!("{size} bytes")
                    && valid.is_none_or(|v| f[3].starts_with("valid") == v)
                    && matches!(f[4], "whole" | "unverified");
                if !ok {
                    return Err(format!(
                        "backups line {line:?}, where the model has {prefix}*, {size} bytes, valid {valid:?}"
                    ));
                }
            }
        }
    }
    let err = String::from_utf8_lossy(&r.stderr);
    match o.stderr {
        Stderr::Has(s) if !err.contains(s) => Err(format!("stderr lacks {s:?}")),
        Stderr::Lacks(s) if err.contains(s) => Err(format!("stderr says {s:?}")),
        _ => Ok(()),
    }
}

/// What went wrong, at which step.
struct Violation {
    /// Index of the command (`None`: the setup itself did not match the model).
    step: Option<usize>,
    report: String,
}

#[derive(Default)]
struct Stats {
    sequences: usize,
    steps: usize,
    by_op: BTreeMap<(&'static str, i32), usize>,
    /// Commands that matched an outcome other than the model's first choice.
    alternatives: BTreeMap<String, usize>,
    /// Every outcome matched, by the rule it comes from (what the run exercised).
    rules: BTreeMap<String, usize>,
}

struct Harness {
    bin: PathBuf,
    base: PathBuf,
}

/// Where the scratch directories go.
fn scratch_base() -> PathBuf {
    std::env::var_os("UNTORN_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Whether jq is installed (`./scripts/test` installs it). Without it, edits through jq are
/// left out, with a note (`SKIPPED`), or a failure under `UNTORN_REQUIRE_ALL=1`.
fn have_jq() -> bool {
    static HAVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAVE.get_or_init(|| {
        let have = std::process::Command::new("jq")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !have {
            eprintln!(
                "SKIPPED: jq is not installed (./scripts/test installs it): no edits through jq"
            );
            if std::env::var_os("UNTORN_REQUIRE_ALL").is_some_and(|v| v == "1") {
                panic!("jq is not installed (UNTORN_REQUIRE_ALL=1 forbids skipping)");
            }
        }
        have
    })
}

impl Harness {
    fn new(bin: PathBuf) -> Harness {
        Harness {
            bin,
            base: scratch_base(),
        }
    }

    fn exec(&self, root: &Path, op: &Op) -> Ran {
        let (args, input) = op.argv();
        let out = assert_cmd::Command::new(&self.bin)
            .current_dir(root)
            .args(&args)
            .env_remove("UNTORN_TRUST_USERS")
            .write_stdin(input)
            .timeout(Duration::from_secs(30))
            .output()
            .expect("untorn runs");
        Ran {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }

    /// Runs one sequence in a fresh directory; stops at the first violation.
    fn run(
        &self,
        setup: &[Make],
        ops: &[Op],
        mut stats: Option<&mut Stats>,
    ) -> Result<(), Violation> {
        let tmp = tempfile::Builder::new()
            .prefix("untorn-model-")
            .tempdir_in(&self.base)
            .unwrap();
        let root = tmp.path().join("root");
        let src = tmp.path().join("src");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&src).unwrap();
        for (i, p) in POOL.iter().enumerate() {
            fs::write(src.join(format!("s{i}")), p).unwrap();
        }
        let mut state = State::default();
        for m in setup {
            if m.apply(&mut state) {
                m.make(&root);
            }
        }
        let setup_diff = observe(&root).map(|t| compare(&t, &state));
        match setup_diff {
            Ok(d) if d.is_empty() => {}
            Ok(d) => {
                return Err(Violation {
                    step: None,
                    report: format!("the setup does not match the model:\n{}", d.join("\n")),
                })
            }
            Err(e) => {
                return Err(Violation {
                    step: None,
                    report: e,
                })
            }
        }
        let mut locks_before = observe(&root).map(|t| t.locks).unwrap_or_default();
        for (k, op) in ops.iter().enumerate() {
            let outcomes = state.predict(op);
            let locks = state.locks(op);
            let ran = self.exec(&root, op);
            let code = ran.code.unwrap_or(-1);
            if let Some(st) = stats.as_deref_mut() {
                st.steps += 1;
                *st.by_op.entry((op.kind(), code)).or_default() += 1;
            }
            let fail = |what: String| Violation {
                step: Some(k),
                report: format!(
                    "step {}: {}\nexit {}{}\nstderr: {}\nstdout: {}\n{what}",
                    k + 1,
                    op.shell(),
                    code,
                    if ran.code.is_none() {
                        " (killed: hung?)"
                    } else {
                        ""
                    },
                    String::from_utf8_lossy(&ran.stderr).trim_end(),
                    show(&ran.stdout)
                ),
            };
            let tree = observe(&root).map_err(&fail)?;
            let stray: Vec<&String> = tree
                .locks
                .difference(&locks_before)
                .filter(|l| !locks.may.contains(*l))
                .collect();
            if !stray.is_empty() {
                return Err(fail(format!(
                    "lock files created that are not the lock of a file the command names \
                     (the lock belongs to the file a path leads to): {stray:?}; allowed {:?}",
                    locks.may
                )));
            }
            let missing: Vec<&String> = locks.must.difference(&tree.locks).collect();
            if code == 0 && !missing.is_empty() {
                return Err(fail(format!(
                    "the command succeeded without the lock file of the file it locks: {missing:?}"
                )));
            }
            locks_before = tree.locks.clone();
            let mut why_not = Vec::new();
            let mut matched = None;
            for (n, o) in outcomes.iter().enumerate() {
                if i32::from(o.code) != code {
                    why_not.push(format!("  - exit {} ({}): other exit code", o.code, o.why));
                    continue;
                }
                let mut d = compare(&tree, &o.state);
                if let Err(e) = output_ok(o, &ran) {
                    d.push(e);
                }
                if d.is_empty() {
                    matched = Some(n);
                    break;
                }
                why_not.push(format!(
                    "  - exit {} ({}):\n      {}",
                    o.code,
                    o.why,
                    d.join("\n      ")
                ));
            }
            let Some(n) = matched else {
                return Err(fail(format!(
                    "no outcome the model allows matches; the model allows:\n{}",
                    why_not.join("\n")
                )));
            };
            if let Some(st) = stats.as_deref_mut() {
                let rule = format!("{}: {} (exit {code})", op.kind(), outcomes[n].why);
                if n > 0 {
                    *st.alternatives.entry(rule.clone()).or_default() += 1;
                }
                *st.rules.entry(rule).or_default() += 1;
            }
            state = outcomes.into_iter().nth(n).expect("matched").state;
        }
        Ok(())
    }

    /// Removes commands and setup steps while the sequence still fails.
    fn shrink(&self, setup: &[Make], ops: &[Op], step: usize) -> (Vec<Make>, Vec<Op>, Violation) {
        let mut setup = setup.to_vec();
        let mut ops = ops[..=step].to_vec();
        let mut last = self.run(&setup, &ops, None).expect_err("it failed");
        let mut budget = 300;
        loop {
            let mut changed = false;
            let mut i = ops.len();
            while i > 0 && budget > 0 {
                i -= 1;
                let mut o = ops.clone();
                o.remove(i);
                budget -= 1;
                if let Err(v) = self.run(&setup, &o, None) {
                    ops = match v.step {
                        Some(s) => o[..=s].to_vec(),
                        None => Vec::new(),
                    };
                    i = i.min(ops.len());
                    last = v;
                    changed = true;
                }
            }
            let mut i = setup.len();
            while i > 0 && budget > 0 {
                i -= 1;
                let mut s = setup.clone();
                s.remove(i);
                budget -= 1;
                if let Err(v) = self.run(&s, &ops, None) {
                    setup = s;
                    if let Some(st) = v.step {
                        ops.truncate(st + 1);
                    }
                    last = v;
                    changed = true;
                }
            }
            if !changed || budget == 0 {
                return (setup, ops, last);
            }
        }
    }
}

/// A bash script that reproduces a sequence with the built binary.
fn script(bin: &Path, setup: &[Make], ops: &[Op]) -> String {
    let mut s = format!(
        "untorn() {{ {} \"$@\"; echo \"[exit $?]\"; }}\numask 022; cd \"$(mktemp -d)\" && mkdir root src && cd root\n",
        bin.display()
    );
    let mut used = std::collections::BTreeSet::new();
    for op in ops {
        if let Op::Txn(cs) = op {
            for c in cs {
                if let Change::Put(_, Some(i)) = c {
                    used.insert(*i);
                }
            }
        }
    }
    for i in used {
        s += &format!("printf %s {} > ../src/s{i}\n", quote(POOL[i]));
    }
    let mut st = State::default();
    for m in setup {
        if m.apply(&mut st) {
            s += &m.shell();
            s.push('\n');
        }
    }
    for op in ops {
        s += &op.shell();
        s.push('\n');
    }
    s
}

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

/// Runs `sequences` sequences from `seed` on `bin`; returns the statistics and the reports of
/// the violations (each shrunk if `shrink`), stopping after `max_violations`.
fn explore(
    bin: PathBuf,
    seed: u64,
    sequences: u64,
    steps: usize,
    shrink: bool,
    max_violations: usize,
) -> (Stats, Vec<(u64, String)>) {
    let h = Harness::new(bin);
    let mut stats = Stats::default();
    let mut found = Vec::new();
    for n in 0..sequences {
        let s = seed.wrapping_add(n);
        let (setup, ops) = gen_sequence(s, steps);
        stats.sequences += 1;
        if let Err(v) = h.run(&setup, &ops, Some(&mut stats)) {
            let report = if shrink && env_num("UNTORN_MODEL_SHRINK", 1) == 1 {
                let (setup2, ops2, v2) = h.shrink(&setup, &ops, v.step.unwrap_or(0));
                format!(
                    "sequence seed {s} (UNTORN_MODEL_SEED={s} UNTORN_MODEL_SEQUENCES=1 UNTORN_MODEL_STEPS={steps}):\n\
                     {}\n\nshrunk to {} setup steps and {} commands:\n{}\nreproduce:\n{}",
                    v.report,
                    setup2.len(),
                    ops2.len(),
                    v2.report,
                    script(&h.bin, &setup2, &ops2)
                )
            } else {
                format!("sequence seed {s}:\n{}", v.report)
            };
            found.push((s, report));
            if found.len() >= max_violations {
                break;
            }
        }
    }
    (stats, found)
}

/// The binary under test: `UNTORN_MODEL_BIN` (e.g. a deliberately broken wrapper, to check
/// that the model notices), else the built `untorn`.
fn model_bin() -> PathBuf {
    std::env::var_os("UNTORN_MODEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| assert_cmd::cargo::cargo_bin("untorn"))
}

fn set_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(reference::UMASK));
}

/// The model test: `UNTORN_MODEL_SEQUENCES` random sequences against the real binary.
#[test]
fn model_sequences() {
    set_umask();
    let sequences = env_num("UNTORN_MODEL_SEQUENCES", 250);
    let steps = env_num("UNTORN_MODEL_STEPS", 20) as usize;
    let seed = env_num("UNTORN_MODEL_SEED", fastrand::u64(..1 << 48));
    let started = Instant::now();
    let (stats, found) = explore(
        model_bin(),
        seed,
        sequences,
        steps,
        true,
        env_num("UNTORN_MODEL_MAX_VIOLATIONS", 3) as usize,
    );
    let mut per_op: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for ((op, code), n) in &stats.by_op {
        let e = per_op.entry(op).or_default();
        e.0 += n;
        if *code != 0 {
            e.1 += n;
        }
    }
    let ops: Vec<String> = per_op
        .iter()
        .map(|(op, (n, failed))| format!("{op} {n} ({failed} refused)"))
        .collect();
    eprintln!("MODEL commands: {}", ops.join(", "));
    if std::env::var_os("UNTORN_MODEL_RULES").is_some() {
        for (why, n) in &stats.rules {
            eprintln!("MODEL rule {n:>6}x  {why}");
        }
    }
    for (why, n) in &stats.alternatives {
        eprintln!("MODEL alternative taken {n}x: {why}");
    }
    eprintln!(
        "MODEL sequences={} steps={} violations={} seed={seed} seconds={}",
        stats.sequences,
        stats.steps,
        found.len(),
        started.elapsed().as_secs()
    );
    if !found.is_empty() {
        let all: Vec<String> = found.into_iter().map(|(_, r)| r).collect();
        panic!(
            "the model and untorn disagree (seed {seed}):\n\n{}",
            all.join("\n\n----\n\n")
        );
    }
}

/// A model that cannot fail proves nothing: wrappers that break the binary in ways bugs did
/// before must each be caught within a few sequences.
#[test]
fn model_catches_broken_binaries() {
    set_umask();
    let real = assert_cmd::cargo::cargo_bin("untorn");
    let dir = tempfile::tempdir().unwrap();
    let mutants = [
        (
            "write in place (truncate and rewrite: no new inode, a hard link changes too)",
            r#"if [ "$1" = write ] && [ $# -eq 3 ] && [ -f "$2" ]; then printf %s "$3" > "$2"; exit; fi"#,
        ),
        (
            "append glued onto an unterminated last line (issue 13, item 1, before its fix)",
            r#"if [ "$1" = append ] && [ $# -eq 3 ] && [ -f "$2" ]; then printf '%s\n' "$3" >> "$2"; exit; fi"#,
        ),
        (
            "edit without a format check (invalid JSON written)",
            r#"if [ "$1" = edit ] && [ "$3" = -- ] && [ -f "$2" ]; then f=$2; shift 3; "$@" < "$f" > "$f.new" && mv "$f.new" "$f"; exit; fi"#,
        ),
        (
            "a failed transaction applies its first change",
            r#"if [ "$1" = txn ]; then "$REAL" "$@"; c=$?; if [ $c -ne 0 ] && [ "$2" = put ]; then "$REAL" write "${3%%=*}" < "${3#*=}" 2>/dev/null; fi; exit $c; fi"#,
        ),
    ];
    let mut missed = Vec::new();
    for (i, (what, body)) in mutants.iter().enumerate() {
        let bin = dir.path().join(format!("untorn-mutant-{i}"));
        fs::write(
            &bin,
            format!(
                "#!/bin/sh\nREAL='{}'\n{body}\nexec \"$REAL\" \"$@\"\n",
                real.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        let (stats, found) = explore(bin, 1000 + 7919 * i as u64, 60, 20, false, 1);
        match found.first() {
            None => missed.push(format!("'{what}' ({} sequences)", stats.sequences)),
            Some((_, report)) => eprintln!(
                "MODEL mutant caught after {} sequences: {what}\n  {}",
                stats.sequences,
                report
                    .lines()
                    .skip(1)
                    .take(2)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ),
        }
    }
    eprintln!(
        "MODEL mutants={} caught={}",
        mutants.len(),
        mutants.len() - missed.len()
    );
    assert!(
        missed.is_empty(),
        "the model did not catch the mutants {}",
        missed.join(", ")
    );
}

/// The concurrent phase: processes edit one counter and append to one log through different
/// names of each (the real name, a name through a symlinked directory, a symlink to the file),
/// while others read them. The model: "every name of one file takes one lock" (README, Locks),
/// so no increment and no record is lost, every read sees a whole version, and the only lock
/// files are the files' own.
#[test]
fn model_concurrent_names() {
    set_umask();
    if !have_jq() {
        return;
    }
    let bin = model_bin();
    let seed = env_num("UNTORN_MODEL_SEED", fastrand::u64(..1 << 48));
    let rounds = env_num("UNTORN_MODEL_CONCURRENT_ROUNDS", 3);
    let (workers, each) = (4, 8);
    for round in 0..rounds {
        let d = tempfile::Builder::new()
            .prefix("untorn-model-conc-")
            .tempdir_in(scratch_base())
            .unwrap();
        let root = d.path().to_path_buf();
        fs::create_dir(root.join("sub")).unwrap();
        std::os::unix::fs::symlink("sub", root.join("ld")).unwrap();
        fs::write(root.join("sub/x.json"), "{\"n\": 0}\n").unwrap();
        std::os::unix::fs::symlink("sub/x.json", root.join("l.json")).unwrap();
        // Unterminated: the first append must end it, exactly once.
        fs::write(root.join("sub/y.log"), "start").unwrap();
        std::os::unix::fs::symlink("sub/y.log", root.join("ly.log")).unwrap();
        let threads: Vec<_> = (0..workers)
            .map(|w| {
                let (bin, root) = (bin.clone(), root.clone());
                let mut rng = fastrand::Rng::with_seed(seed ^ (round << 8) ^ w);
                std::thread::spawn(move || {
                    let mut done = (0, Vec::new(), Vec::new());
                    for i in 0..each {
                        let run = |args: &[&str]| {
                            let out = assert_cmd::Command::new(&bin)
                                .current_dir(&root)
                                .args(args)
                                .write_stdin(Vec::new())
                                .timeout(Duration::from_secs(60))
                                .output()
                                .unwrap();
                            assert!(out.status.success(), "{args:?}: {out:?}");
                            out.stdout
                        };
                        let counter = *pick(&mut rng, &["sub/x.json", "ld/x.json", "l.json"]);
                        let log = *pick(&mut rng, &["sub/y.log", "ld/y.log", "ly.log"]);
                        match rng.u32(..4) {
                            0 => {
                                run(&["edit", counter, "--", "jq", ".n += 1"]);
                                done.0 += 1;
                            }
                            1 => {
                                let rec = format!("w{w}-{i}");
                                run(&["append", log, &rec]);
                                done.1.push(rec);
                            }
                            2 => done.2.push(run(&["read", counter])),
                            _ => done.2.push(run(&["tail", "-n", "1", log])),
                        }
                    }
                    done
                })
            })
            .collect();
        let (mut edits, mut records) = (0, Vec::new());
        for t in threads {
            let (e, r, reads) = t.join().expect("a worker failed");
            edits += e;
            records.extend(r);
            for out in reads {
                // A read of the counter is one whole version; a tail, one whole record.
                let ok = serde_json::from_slice::<serde_json::Value>(&out).is_ok()
                    || (out.ends_with(b"\n") && out.iter().filter(|&&b| b == b'\n').count() == 1);
                assert!(ok, "a read saw {:?}", String::from_utf8_lossy(&out));
            }
        }
        let counter: serde_json::Value =
            serde_json::from_slice(&fs::read(root.join("sub/x.json")).unwrap()).unwrap();
        assert_eq!(
            counter["n"], edits,
            "increments lost (seed {seed}, round {round})"
        );
        let log = fs::read_to_string(root.join("sub/y.log")).unwrap();
        let mut lines: Vec<&str> = log.lines().collect();
        assert!(log.ends_with('\n') || records.is_empty(), "{log:?}");
        assert_eq!(lines.first(), Some(&"start"), "{log:?}");
        lines.remove(0);
        lines.sort();
        records.sort();
        assert_eq!(lines, records, "records lost or doubled (seed {seed})");
        let tree = observe(&root).unwrap_or_else(|e| panic!("{e}"));
        let want: std::collections::BTreeSet<String> = ["sub/x.json.lock", "sub/y.log.lock"]
            .map(String::from)
            .into();
        assert!(
            tree.locks.is_subset(&want),
            "lock files beside a link: {:?}",
            tree.locks
        );
        for l in ["ld", "l.json", "ly.log"] {
            assert!(matches!(tree.entries.get(l), Some(Obs::Link(_))), "{l}");
        }
    }
    eprintln!(
        "MODEL concurrent rounds={rounds} processes={workers} commands={} seed={seed}",
        rounds * workers * each
    );
}
