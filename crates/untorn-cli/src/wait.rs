//! What a person at a terminal sees while untorn waits: who holds a lock it waits for (and how
//! to give up), and a spinner for work that takes seconds. Nothing of it when stderr is not a
//! terminal (scripts see exactly what they saw before).

use crate::args::WaitArgs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a lock may keep untorn waiting before it says who holds it.
const NOTE_AFTER: Duration = Duration::from_secs(1);

/// Which lock file: the sidecar of a file (FILE.lock, beside the file a symlink leads to), or
/// exactly this one (`lock --lock-file`).
pub enum Sidecar<'a> {
    Of(&'a Path),
    Exactly(&'a Path),
}

/// If stderr is a terminal and the lock stays busy for [`NOTE_AFTER`], says on stderr who
/// holds it and how to give up, then lets the caller wait as it would have. Returns the wait
/// to use from now on (a `--timeout` less the time already waited).
pub fn note_if_busy(lock: Sidecar<'_>, shared: bool, wait: WaitArgs) -> WaitArgs {
    if wait.nonblock || !std::io::stderr().is_terminal() {
        return wait;
    }
    let probe_for = match wait.timeout {
        Some(t) if t <= NOTE_AFTER => return wait,
        _ => NOTE_AFTER,
    };
    let started = Instant::now();
    let mut probe = untorn::LockOptions::new();
    probe.shared(shared).timeout(probe_for);
    let r = match lock {
        Sidecar::Of(f) => probe.lock(f),
        Sidecar::Exactly(f) => probe.lock_file(f),
    };
    match r {
        Ok(l) => {
            drop(l);
            return wait;
        }
        Err(e) if e.kind() == untorn::ErrorKind::TimedOut => {}
        Err(_) => return wait, // the real attempt reports it
    }
    let path = match lock {
        Sidecar::Of(f) => sidecar_path(f),
        Sidecar::Exactly(f) => f.to_path_buf(),
    };
    eprintln!("untorn: {}", busy_note(&path, wait.timeout.is_some()));
    WaitArgs {
        timeout: wait.timeout.map(|t| t.saturating_sub(started.elapsed())),
        nonblock: false,
    }
}

/// FILE.lock beside the file FILE's symlinks lead to.
fn sidecar_path(file: &Path) -> PathBuf {
    let real = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    untorn::lock_path_for(real)
}

/// "waiting for the lock 'f.lock', held by pid N (its command line); ..."
fn busy_note(lock: &Path, has_timeout: bool) -> String {
    let give_up = if has_timeout {
        "Ctrl-C gives up"
    } else {
        "Ctrl-C gives up; --timeout DURATION or --nonblock (-n) do not wait this long"
    };
    match holder(lock) {
        Some(pid) => {
            let cmd = command_line(pid).unwrap_or_else(|| "?".into());
            let ours = if is_ancestor(pid) {
                ", which started this untorn: it will not let go while this waits for it \
                 (a deadlock)"
            } else {
                ""
            };
            format!(
                "waiting for the lock '{}', held by pid {pid} ({cmd}){ours}; {give_up}",
                lock.display()
            )
        }
        None => format!(
            "waiting for the lock '{}', held by another process; {give_up}",
            lock.display()
        ),
    }
}

/// The pid that holds a lock on the file `lock` (from /proc/locks: the process that took it).
pub fn holder(lock: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(lock).ok()?;
    let (major, minor) = (dev_major(md.dev()), dev_minor(md.dev()));
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&locks, major, minor, md.ino())
}

/// A holder of the lock on (major, minor, inode) in the text of /proc/locks (lines like
/// `1: FLOCK  ADVISORY  WRITE 22089 fe:00:5308646 0 EOF`; waiters are `1: -> FLOCK ...`).
fn holder_in(locks: &str, major: u64, minor: u64, ino: u64) -> Option<u32> {
    for line in locks.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] == "->" {
            continue;
        }
        let mut id = f[5].split(':');
        let (Some(ma), Some(mi), Some(i)) = (id.next(), id.next(), id.next()) else {
            continue;
        };
        if u64::from_str_radix(ma, 16).ok() == Some(major)
            && u64::from_str_radix(mi, 16).ok() == Some(minor)
            && i.parse::<u64>().ok() == Some(ino)
        {
            if let Ok(pid) = f[4].parse() {
                return Some(pid);
            }
        }
    }
    None
}

fn dev_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)
}

fn dev_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)
}

fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn is_ancestor(pid: u32) -> bool {
    let mut p = std::process::id();
    for _ in 0..64 {
        match parent_of(p) {
            Some(pp) if pp == pid => return true,
            Some(pp) if pp > 1 => p = pp,
            _ => return false,
        }
    }
    false
}

/// Runs `work`; if it takes longer than a moment and stderr is a terminal, shows a spinner
/// with `msg` and the time so far on stderr meanwhile (cleared when done).
pub fn with_spinner<T>(msg: &str, work: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return work();
    }
    // UNTORN_PROGRESS_DELAY_MS: for the tests, which cannot make work slow on demand.
    let delay = std::env::var("UNTORN_PROGRESS_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_millis(300));
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let msg = msg.to_string();
    let spinner = std::thread::spawn(move || {
        if wait.recv_timeout(delay).is_ok() {
            return;
        }
        // One line on the terminal, redrawn every 100 ms, erased when the work is done.
        const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
        let started = std::time::Instant::now();
        let mut err = std::io::stderr();
        for frame in FRAMES.iter().cycle() {
            let secs = started.elapsed().as_secs() + delay.as_secs();
            let _ = write!(err, "\r\x1b[2K{frame} {msg} {secs}s");
            let _ = err.flush();
            if !matches!(
                wait.recv_timeout(Duration::from_millis(100)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            ) {
                break;
            }
        }
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    });
    let r = work();
    let _ = done.send(());
    let _ = spinner.join();
    r
}

/// 1234567 → "1.2 MiB".
pub fn human_size(n: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_is_read_from_proc_locks() {
        let text = "1: FLOCK  ADVISORY  WRITE 22089 fe:00:5308646 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 30000 fe:00:5308646 0 EOF\n\
                    2: POSIX  ADVISORY  READ 777 08:01:42 0 EOF\n";
        assert_eq!(holder_in(text, 0xfe, 0, 5308646), Some(22089));
        assert_eq!(holder_in(text, 8, 1, 42), Some(777));
        assert_eq!(holder_in(text, 8, 1, 43), None);
    }

    #[test]
    fn the_holder_of_a_real_lock_is_this_process() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        let _l = untorn::lock(&f).unwrap();
        assert_eq!(holder(&untorn::lock_path_for(&f)), Some(std::process::id()));
        assert!(!is_ancestor(std::process::id()));
        let parent = parent_of(std::process::id()).unwrap();
        assert!(is_ancestor(parent));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(12), "12 bytes");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
