//! Running the system tools, and deciding whether the bed can work on this machine.

use crate::error::{Error, Result};
use crate::fs::FsConfig;
use std::env;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the tools live besides `$PATH` (which often lacks the `sbin` directories for users).
const EXTRA_PATH: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The path of an executable named `name`, searched in `$PATH` then the usual directories.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(EXTRA_PATH.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A command running the tool `name`, or an error naming the missing tool.
pub(crate) fn tool(name: &str) -> Result<Command> {
    find_tool(name)
        .map(Command::new)
        .ok_or_else(|| Error::new(format!("`{name}` not found in $PATH or {EXTRA_PATH:?}")))
}

/// Runs `cmd` to completion; its stdout (trimmed) if it succeeded, else an error quoting the
/// command and its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let shown = show(cmd);
    let out = cmd
        .output()
        .map_err(|e| Error::new(format!("cannot run `{shown}`: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(Error::new(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A `Command` for `tool` with these arguments.
pub(crate) fn tool_with<I, S>(name: &str, args: I) -> Result<Command>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = tool(name)?;
    c.args(args);
    Ok(c)
}

/// The effective capabilities of this process, from `/proc/self/status`.
fn effective_caps() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

const CAP_SYS_ADMIN: u32 = 21;

/// Why a bed of `config` cannot be built on this machine, or `None` if it can: not root, no
/// `CAP_SYS_ADMIN` (an unprivileged container), no loop devices, the kernel lacks the file
/// system, or a tool is missing (with the Debian package that has it).
pub fn unavailable(config: &FsConfig) -> Option<String> {
    let euid = rustix::process::geteuid();
    if !euid.is_root() {
        return Some(format!(
            "not root (effective uid {}): loop devices and mounts need root",
            euid.as_raw()
        ));
    }
    if let Some(caps) = effective_caps() {
        if caps & (1 << CAP_SYS_ADMIN) == 0 {
            return Some("no CAP_SYS_ADMIN (an unprivileged container?): cannot mount".into());
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no loop device support (/dev/loop-control is missing)".into());
    }
    if let Ok(list) = fs::read_to_string("/proc/filesystems") {
        if !list.split_whitespace().any(|f| f == config.fstype) {
            return Some(format!(
                "the kernel does not support {} (not in /proc/filesystems)",
                config.fstype
            ));
        }
    }
    for (name, package) in config.tools() {
        if find_tool(&name).is_none() {
            return Some(format!(
                "`{name}` is not installed (Debian package {package}: apt-get install -y {package})"
            ));
        }
    }
    None
}

/// Writes `msg` and a newline straight to stderr, which the test harness does not capture (it
/// captures `eprintln!`), so summaries and skip reasons are seen in `cargo test` output.
pub fn say(msg: &str) {
    let mut line = msg.to_owned();
    line.push('\n');
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Whether the test `test` can run its power-cut cycles on `config` here.
///
/// If it cannot ([`unavailable`]), prints `SKIP <test> on <fs>: <reason>` with [`say`] and
/// returns `false`, never silently. With the environment variable `UNTORN_REQUIRE_ALL=1` (set
/// in CI) a skip is not allowed: it panics with the reason instead.
pub fn should_run(test: &str, config: &FsConfig) -> bool {
    let Some(reason) = unavailable(config) else {
        return true;
    };
    let msg = format!("SKIP {test} on {}: {reason}", config.name);
    if env::var("UNTORN_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("{msg} (UNTORN_REQUIRE_ALL=1 forbids skipping)");
    }
    say(&msg);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tools_and_explains_what_is_missing() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("no-such-tool-untorn").is_none());
        let bogus = FsConfig {
            name: "bogus",
            fstype: "no-such-fs",
            ..FsConfig::xfs()
        };
        let why = unavailable(&bogus).expect("a bed of an unknown fs cannot be built");
        assert!(
            why.contains("not root") || why.contains("no-such-fs") || why.contains("loop"),
            "{why}"
        );
    }
}
