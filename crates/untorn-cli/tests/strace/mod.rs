//! Running a command under strace and reading its trace back: a lossless trace of the files,
//! descriptors, syncs, renames, links and locks of `untorn`, parsed (unfinished/resumed calls
//! joined, `-xx` escapes decoded), then replayed over a small model of the directory so that each
//! call is known by the inode it touched (an `O_TMPFILE` descriptor, its `linkat` name and the
//! rename that moves it are one file). Shared by the tests that check the order of system calls.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub const UNTORN: &str = env!("CARGO_BIN_EXE_untorn");

/// The calls traced: everything on files and descriptors, every kind of sync, renames, links,
/// unlinks and flock.
pub const TRACE_SET: &str =
    "%file,%desc,fsync,fdatasync,syncfs,sync_file_range,sync,rename,renameat,\
                         renameat2,link,linkat,unlink,unlinkat,flock";

// ---------------------------------------------------------------------------------------------
// Running strace

/// strace's path and whether it supports `--seccomp-bpf`, or why it cannot be used.
pub fn strace() -> Result<(PathBuf, bool), String> {
    static FOUND: OnceLock<Result<(PathBuf, bool), String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let path = std::env::var_os("PATH")
                .and_then(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("strace"))
                        .find(|p| p.is_file())
                })
                .ok_or_else(|| {
                    "strace is not installed (./scripts/test installs it)".to_string()
                })?;
            let works = |extra: &[&str]| {
                Command::new(&path)
                    .args(extra)
                    .args(["-f", "-e", "trace=fsync", "-o", "/dev/null", "true"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if works(&["--seccomp-bpf"]) {
                Ok((path, true))
            } else if works(&[]) {
                Ok((path, false))
            } else {
                Err(format!(
                    "{} cannot trace here (ptrace not allowed?)",
                    path.display()
                ))
            }
        })
        .clone()
}

/// Prints why a test is skipped, or fails it when `UNTORN_REQUIRE_ALL=1`.
pub fn skip(test: &str, why: &str) {
    if std::env::var("UNTORN_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{test} cannot run: {why} (UNTORN_REQUIRE_ALL=1 forbids skipping)");
    }
    let msg = format!("SKIPPED: {test}: {why}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
}

/// One traced run of `untorn ARGS` in `dir`.
pub struct Run {
    pub dir: String,
    pub calls: Vec<Call>,
    pub evs: Vec<Ev>,
}

impl Run {
    pub fn path(&self, name: &str) -> String {
        norm(&format!("{}/{name}", self.dir))
    }
}

/// Runs `untorn ARGS` in `dir` under strace, which must succeed; None if the test must be
/// skipped.
pub fn traced(test: &str, dir: &Path, args: &[&str]) -> Option<Run> {
    let (run, output) = traced_output(test, dir, args)?;
    assert!(
        output.status.success(),
        "untorn {args:?} failed: {:?}\nstderr: {}\ntrace:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        dump(&run.evs)
    );
    Some(run)
}

/// Runs `untorn ARGS` in `dir` under strace, whatever its exit status; None if the test must be
/// skipped.
pub fn traced_output(test: &str, dir: &Path, args: &[&str]) -> Option<(Run, std::process::Output)> {
    let (strace, seccomp) = match strace() {
        Ok(s) => s,
        Err(why) => {
            skip(test, &why);
            return None;
        }
    };
    let dir = dir.canonicalize().expect("canonical test dir");
    let out = tempfile::Builder::new()
        .prefix("untorn-trace-")
        .tempfile()
        .expect("a trace file");
    let mut cmd = Command::new(strace);
    cmd.args(["-f", "-y", "-xx", "-s", "4096"]);
    if seccomp {
        cmd.arg("--seccomp-bpf");
    }
    cmd.args(["-e", "signal=none", "-e"])
        .arg(format!("trace={TRACE_SET}"))
        .arg("-o")
        .arg(out.path())
        .arg(UNTORN)
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null());
    let output = cmd.output().expect("run strace");
    let text = std::fs::read_to_string(out.path()).expect("read the trace");
    let calls = parse_trace(&text);
    let evs = analyze(&calls);
    let run = Run {
        dir: dir.to_str().expect("UTF-8 test dir").to_string(),
        calls,
        evs,
    };
    Some((run, output))
}

// ---------------------------------------------------------------------------------------------
// Parsing strace's output

/// One completed system call, as strace printed it (unfinished/resumed pairs joined).
#[derive(Clone, Debug)]
pub struct Call {
    pub pid: u32,
    pub name: String,
    pub args: Vec<String>,
    /// The return value; None for `?`.
    pub ret: Option<i64>,
    /// The path of a returned descriptor (`= 3</dir>`).
    pub ret_path: Option<String>,
    /// The line, with its strings decoded, for messages.
    pub text: String,
}

/// Decodes strace's escapes (`-xx` prints every byte of a string or path as `\xNN`).
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 4);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'x' if i + 3 < b.len() => {
                    if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                    out.push(b'\\');
                    i += 1;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                }
                b't' => {
                    out.push(b'\t');
                    i += 2;
                }
                b'r' => {
                    out.push(b'\r');
                    i += 2;
                }
                c => {
                    out.push(c);
                    i += 2;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// A readable form of a trace line: `\xNN` escapes decoded where printable.
pub fn readable(line: &str) -> String {
    let b = line.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len() / 2);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let (Some(h), Some(l)) = (hex(b[i + 2]), hex(b[i + 3])) {
                let v = (h * 16 + l) as u8;
                if v == b' ' || v.is_ascii_graphic() {
                    out.push(v);
                } else {
                    out.extend_from_slice(format!("\\x{v:02x}").as_bytes());
                }
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `a, b, {c, d}, [e]` at the top-level commas.
pub fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut cur) = (0i32, false, String::new());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                continue;
            }
            '"' => quoted = !quoted,
            '(' | '[' | '{' | '<' if !quoted => depth += 1,
            ')' | ']' | '}' | '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Parses one complete call: `name(args) = ret ...`.
pub fn parse_call(pid: u32, body: &str) -> Option<Call> {
    let open = body.find('(')?;
    let name = body[..open].trim().to_string();
    if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return None;
    }
    // The closing parenthesis of the arguments: strings are hex-escaped, so brackets inside
    // them cannot confuse the count.
    let (mut depth, mut quoted, mut close) = (0i32, false, None);
    let bytes = body.as_bytes();
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
        i += 1;
    }
    let close = close?;
    let args = split_args(&body[open + 1..close]);
    let rest = body[close + 1..].trim_start();
    let ret = rest.strip_prefix('=')?.trim_start();
    let token: String = ret
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let ret_path = fd_arg(ret.split_whitespace().next().unwrap_or("")).map(|(_, p)| p);
    let ret = if let Some(h) = token.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else {
        token.parse().ok()
    };
    Some(Call {
        pid,
        name,
        args,
        ret,
        ret_path,
        text: readable(&format!("{pid} {body}")),
    })
}

/// Parses a trace written by `strace -f -o FILE`: one call per line, prefixed by the pid.
pub fn parse_trace(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut pending: HashMap<u32, String> = HashMap::new();
    for line in text.lines() {
        let line = line.trim_end();
        let Some((pid, body)) = line.split_once(|c: char| c.is_ascii_whitespace()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let body = body.trim_start();
        if body.starts_with("+++") || body.starts_with("---") {
            continue;
        }
        let body = if let Some(r) = body.strip_prefix("<... ") {
            // `<... name resumed>rest`: the end of a call started on an earlier line.
            let Some((_, rest)) = r.split_once(" resumed>") else {
                continue;
            };
            match pending.remove(&pid) {
                Some(start) => format!("{start}{rest}"),
                None => continue,
            }
        } else if let Some(start) = body.strip_suffix("<unfinished ...>") {
            pending.insert(pid, start.to_string());
            continue;
        } else {
            body.to_string()
        };
        if let Some(c) = parse_call(pid, &body) {
            calls.push(c);
        }
    }
    calls
}

/// The descriptor of an argument printed with `-y`: `3</dir>`, `4</dir/#123>(deleted)`,
/// `AT_FDCWD</cwd>` (fd -100).
pub fn fd_arg(a: &str) -> Option<(i64, String)> {
    let lt = a.find('<')?;
    let gt = a.rfind('>')?;
    if gt < lt {
        return None;
    }
    let fd = match &a[..lt] {
        "AT_FDCWD" => -100,
        n => n.parse().ok()?,
    };
    let path = String::from_utf8_lossy(&unescape(&a[lt + 1..gt])).into_owned();
    Some((fd, path))
}

/// The bytes of a string argument `"..."` (possibly followed by `...` when truncated).
pub fn str_arg(a: &str) -> Option<Vec<u8>> {
    let a = a.strip_prefix('"')?;
    let end = a.rfind('"')?;
    Some(unescape(&a[..end]))
}

/// A path made absolute and lexically normal (no `.`, no `..`, no double slashes).
pub fn norm(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

pub fn parent(p: &str) -> String {
    norm(&format!("{p}/.."))
}

// ---------------------------------------------------------------------------------------------
// Replaying the trace: which file each call touches

/// A file (an inode), as far as the trace shows it.
pub type Obj = usize;

/// A call with what it touched.
#[derive(Clone, Debug, Default)]
pub struct Ev {
    pub i: usize,
    pub pid: u32,
    pub name: String,
    pub ok: bool,
    /// The descriptor of the first argument, its path as `-y` printed it, its file, and the
    /// flags it was opened with (when the open was seen).
    pub fd: Option<i64>,
    pub fd_path: Option<String>,
    pub obj: Option<Obj>,
    pub fd_flags: String,
    /// Resolved absolute path arguments: `[path]` for opens and unlinks, `[from, to]` for
    /// renames and links.
    pub paths: Vec<String>,
    /// Renames and links: the file that got the new name; unlinks: the file that lost it.
    pub moved: Option<Obj>,
    /// Renames: the file that had the destination name before.
    pub displaced: Option<Obj>,
    /// The flags argument (opens, renames, flock), as printed.
    pub flags: String,
    /// Writes: the bytes written.
    pub data: Vec<u8>,
    /// `ftruncate` and `truncate`: the length.
    pub len: Option<u64>,
    pub text: String,
}

#[derive(Default)]
pub struct Model {
    pub names: HashMap<String, Obj>,
    /// (pid, fd) → (file, open flags, path at open).
    pub fds: HashMap<(u32, i64), (Obj, String, String)>,
    pub next: Obj,
    pub cwd: String,
}

impl Model {
    pub fn new_obj(&mut self) -> Obj {
        self.next += 1;
        self.next
    }
    /// The file named `path` (a file the trace has not seen yet existed before it).
    pub fn at(&mut self, path: &str) -> Obj {
        if let Some(&o) = self.names.get(path) {
            return o;
        }
        let o = self.new_obj();
        self.names.insert(path.to_string(), o);
        o
    }
    /// The file of descriptor `fd` of `pid`, and the flags it was opened with. A descriptor
    /// whose open this process was not seen doing (another thread of it opened it) is the one
    /// of the same number and path opened elsewhere, else the file its `-y` path names.
    pub fn fd(&mut self, pid: u32, fd: i64, path: &str) -> (Obj, String) {
        if let Some((o, f, _)) = self.fds.get(&(pid, fd)) {
            return (*o, f.clone());
        }
        let shared = self
            .fds
            .iter()
            .find(|((_, n), (_, _, p))| *n == fd && p == path)
            .map(|(_, (o, f, _))| (*o, f.clone()));
        shared.unwrap_or_else(|| (self.at(path), String::new()))
    }
    /// `dirfd` + `name` as an absolute path.
    pub fn resolve(&self, dir: Option<&str>, name: &[u8]) -> String {
        let name = String::from_utf8_lossy(name);
        if name.starts_with('/') {
            return norm(&name);
        }
        let base = match dir.and_then(fd_arg) {
            Some((_, p)) => p,
            None => self.cwd.clone(),
        };
        norm(&format!("{base}/{name}"))
    }
}

/// Replays the calls: one `Ev` per call, in the same order.
pub fn analyze(calls: &[Call]) -> Vec<Ev> {
    let mut m = Model::default();
    let mut evs = Vec::with_capacity(calls.len());
    for (i, c) in calls.iter().enumerate() {
        let mut e = Ev {
            i,
            pid: c.pid,
            name: c.name.clone(),
            ok: c.ret.is_some_and(|r| r >= 0),
            text: c.text.clone(),
            ..Ev::default()
        };
        for a in &c.args {
            if let Some(p) = a.strip_prefix("AT_FDCWD<").and(fd_arg(a)) {
                m.cwd = p.1;
            }
        }
        let arg = |n: usize| c.args.get(n).map(String::as_str);
        if let Some((fd, path)) = arg(0).and_then(fd_arg) {
            let (obj, flags) = m.fd(c.pid, fd, &path);
            e.fd = Some(fd);
            e.fd_path = Some(path);
            e.obj = Some(obj);
            e.fd_flags = flags;
        }
        let name_at = |n: usize| arg(n).and_then(str_arg).unwrap_or_default();
        match c.name.as_str() {
            "open" | "openat" | "creat" | "openat2" => {
                let (path, flags) = match c.name.as_str() {
                    "open" => (m.resolve(None, &name_at(0)), arg(1).unwrap_or("")),
                    "creat" => (m.resolve(None, &name_at(0)), "O_CREAT|O_WRONLY|O_TRUNC"),
                    _ => (m.resolve(arg(0), &name_at(1)), arg(2).unwrap_or("")),
                };
                e.flags = flags.to_string();
                e.paths = vec![path.clone()];
                if e.ok {
                    let obj = if flags.contains("O_TMPFILE") {
                        m.new_obj()
                    } else if flags.contains("O_CREAT") && flags.contains("O_EXCL") {
                        let o = m.new_obj();
                        m.names.insert(path.clone(), o);
                        o
                    } else {
                        m.at(&path)
                    };
                    let fd_path = c.ret_path.clone().unwrap_or_default();
                    m.fds
                        .insert((c.pid, c.ret.unwrap()), (obj, flags.to_string(), fd_path));
                    e.moved = Some(obj);
                }
            }
            "close" => {
                if let Some(fd) = e.fd {
                    m.fds.remove(&(c.pid, fd));
                }
            }
            "dup" | "dup2" | "dup3" | "fcntl" => {
                let dup = c.name != "fcntl" || arg(1).is_some_and(|f| f.starts_with("F_DUPFD"));
                if let (true, true, Some(obj)) = (dup, e.ok, e.obj) {
                    let v = (
                        obj,
                        e.fd_flags.clone(),
                        e.fd_path.clone().unwrap_or_default(),
                    );
                    m.fds.insert((c.pid, c.ret.unwrap()), v);
                }
            }
            "rename" | "renameat" | "renameat2" | "link" | "linkat" => {
                let (from, to, flags) = if matches!(c.name.as_str(), "rename" | "link") {
                    (
                        m.resolve(None, &name_at(0)),
                        m.resolve(None, &name_at(1)),
                        "",
                    )
                } else {
                    (
                        m.resolve(arg(0), &name_at(1)),
                        m.resolve(arg(2), &name_at(3)),
                        arg(4).unwrap_or(""),
                    )
                };
                e.flags = flags.to_string();
                e.paths = vec![from.clone(), to.clone()];
                if e.ok {
                    let src = if c.name == "linkat" && flags.contains("AT_EMPTY_PATH") {
                        e.obj.expect("linkat AT_EMPTY_PATH has a descriptor")
                    } else {
                        m.at(&from)
                    };
                    e.moved = Some(src);
                    e.displaced = m.names.get(&to).copied();
                    if c.name.starts_with("link") {
                        m.names.insert(to, src);
                    } else if flags.contains("RENAME_EXCHANGE") {
                        let dst = m.at(&to);
                        m.names.insert(from, dst);
                        m.names.insert(to, src);
                    } else {
                        m.names.remove(&from);
                        m.names.insert(to, src);
                    }
                }
            }
            "unlink" | "unlinkat" => {
                let path = if c.name == "unlink" {
                    m.resolve(None, &name_at(0))
                } else {
                    m.resolve(arg(0), &name_at(1))
                };
                e.paths = vec![path.clone()];
                if e.ok {
                    e.moved = m.names.remove(&path);
                }
            }
            "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" if e.ok => {
                // write: the string; writev: every iov_base of the array.
                let mut data = Vec::new();
                let mut rest = arg(1).unwrap_or("");
                while let Some(p) = rest.find('"') {
                    let s = &rest[p..];
                    let end = s[1..].find('"').map_or(s.len(), |e| e + 2);
                    data.extend(str_arg(&s[..end]).unwrap_or_default());
                    rest = &s[end..];
                }
                let n = usize::try_from(c.ret.unwrap()).unwrap_or(0);
                data.truncate(n);
                e.data = data;
            }
            "flock" => e.flags = arg(1).unwrap_or("").to_string(),
            "fsetxattr" => {
                // The attribute's name and value.
                e.flags = String::from_utf8_lossy(&name_at(1)).into_owned();
                e.data = name_at(2);
            }
            "ftruncate" | "truncate" => {
                if c.name == "truncate" {
                    e.paths = vec![m.resolve(None, &name_at(0))];
                }
                e.len = arg(1).and_then(|n| n.parse().ok());
            }
            "newfstatat" | "statx" | "faccessat" | "faccessat2" | "readlinkat" => {
                // A name that exists: a file the trace has not seen created existed before.
                let path = m.resolve(arg(0), &name_at(1));
                if e.ok {
                    m.at(&path);
                }
            }
            "stat" | "lstat" | "access" | "readlink" => {
                let path = m.resolve(None, &name_at(0));
                if e.ok {
                    m.at(&path);
                }
            }
            _ => {}
        }
        evs.push(e);
    }
    evs
}

/// The calls of a trace that touch the test directory, for messages.
pub fn dump(evs: &[Ev]) -> String {
    evs.iter()
        .filter(|e| {
            let ours = |p: &String| p.contains("untorn-strace-");
            let touches_dir = if e.paths.is_empty() {
                e.fd_path.as_ref().is_some_and(ours)
            } else {
                e.paths.iter().any(ours)
            };
            touches_dir || is_any_sync(e) || e.name == "flock"
        })
        .map(|e| format!("  [{}] {}\n", e.i, e.text))
        .collect()
}

/// Any kind of sync: fsync, fdatasync, syncfs, sync_file_range, sync.
pub fn is_any_sync(e: &Ev) -> bool {
    matches!(
        e.name.as_str(),
        "fsync" | "fdatasync" | "syncfs" | "sync_file_range" | "sync"
    )
}
