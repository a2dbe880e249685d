//! Exit codes: the one place where untorn's error kinds become numbers.
//!
//! The table is part of untorn's interface: scripts match on these numbers, so a code never
//! changes meaning once released. New codes are only ever added.

use untorn::ErrorKind;

/// Success.
pub const OK: u8 = 0;
/// An error with no more specific code below (an I/O error, ...).
pub const FAILURE: u8 = 1;
/// The command line was wrong (unknown flag, missing argument, bad value).
pub const USAGE: u8 = 2;
/// A file or directory does not exist.
pub const NOT_FOUND: u8 = 3;
/// Permission denied.
pub const PERMISSION: u8 = 4;
/// The file system is read-only.
pub const READ_ONLY: u8 = 5;
/// No space left on the device, or quota exceeded.
pub const NO_SPACE: u8 = 6;
/// The file exists and `--no-clobber` was given.
pub const EXISTS: u8 = 7;
/// The target is not something untorn can replace: a directory, a FIFO or device, a refused
/// symlink, a name too long, an invalid path.
pub const BAD_TARGET: u8 = 8;
/// The file system cannot give the guarantee asked for (no directory fsync, no `O_TMPFILE`
/// when forced, a rename across file systems, durability or locks on a FUSE mount untorn cannot
/// vouch for, no hard links or `RENAME_NOREPLACE` where they are needed, a mode it does not
/// keep).
pub const UNSUPPORTED: u8 = 9;
/// The lock is held by another process and `--nonblock` was given.
pub const LOCKED: u8 = 10;
/// The lock was not free within `--timeout`.
pub const TIMEOUT: u8 = 11;
/// Content is not valid for its format (JSON, YAML, TOML): the filter's output of
/// `untorn edit`, or the file itself.
pub const INVALID: u8 = 12;
/// The filter of `untorn edit` (or the program of `untorn write --exec`) failed: non-zero
/// exit, killed by a signal, not startable (or, for `--exec`, it wrote nothing).
pub const FILTER_FAILED: u8 = 13;
/// Acting would mean trusting state that another user left (a transaction journal or flag, a
/// temp, a backup, a symlink in a sticky directory): refused.
pub const UNTRUSTED: u8 = 14;
/// A change was sent to an object store, its answer was lost, and the store could not tell
/// whether it was applied: applied once or not at all, and not retried (`s3://` URLs).
pub const OUTCOME_UNKNOWN: u8 = 15;
/// `untorn lock`: COMMAND was found but could not be run (the shell's convention).
pub const CANNOT_EXECUTE: u8 = 126;
/// `untorn lock`: COMMAND was not found (the shell's convention).
pub const COMMAND_NOT_FOUND: u8 = 127;
/// Hung up: SIGHUP (128 + 1, the shell's convention), after stopping what was under way.
pub const HANGUP: u8 = 129;
/// Interrupted by SIGINT (128 + 2, the shell's convention).
pub const INTERRUPTED: u8 = 130;
/// Terminated by SIGTERM (128 + 15), after finishing or abandoning what was under way.
pub const TERMINATED: u8 = 143;

/// The rows of the table, for `--help` and the README.
pub const TABLE: &[(u8, &str)] = &[
    (OK, "success"),
    (FAILURE, "an error not listed below (e.g. an I/O error)"),
    (USAGE, "bad command line"),
    (NOT_FOUND, "a file or directory does not exist"),
    (PERMISSION, "permission denied"),
    (READ_ONLY, "read-only file system"),
    (NO_SPACE, "no space left on device (or quota exceeded)"),
    (EXISTS, "the file exists (--no-clobber)"),
    (
        BAD_TARGET,
        "not a file untorn can replace: a directory, FIFO, device, refused symlink, bad or too long name",
    ),
    (
        UNSUPPORTED,
        "the file system cannot give the guarantee (directory fsync, O_TMPFILE, cross-device, \
         durability or locks on a FUSE mount untorn cannot vouch for, no hard links or \
         RENAME_NOREPLACE where they are needed, a --mode it does not keep)",
    ),
    (LOCKED, "the lock is held by another process (--nonblock)"),
    (TIMEOUT, "the lock was not free within --timeout"),
    (
        INVALID,
        "content is not valid JSON, YAML or TOML (edit: the filter's output), or is damaged \
         (does not match the checksum untorn recorded when it wrote it)",
    ),
    (
        FILTER_FAILED,
        "edit: the filter (write --exec: the program) exited non-zero, was killed, or could not \
         start",
    ),
    (
        UNTRUSTED,
        "refused to act on state another user left (see --trust-user)",
    ),
    (
        OUTCOME_UNKNOWN,
        "s3:// URLs: a change was sent and its answer lost, and the store cannot tell whether it \
         was applied (once or not at all; not retried)",
    ),
    (CANNOT_EXECUTE, "lock: the command could not be executed"),
    (COMMAND_NOT_FOUND, "lock: the command was not found"),
    (HANGUP, "hung up (SIGHUP)"),
    (INTERRUPTED, "interrupted (SIGINT)"),
    (TERMINATED, "terminated (SIGTERM)"),
];

/// The exit code of `untorn lock` for its command's exit status: the command's own code, or
/// 128 + N for a command killed by signal N, as in the shell.
pub fn for_status(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => (128 + sig) as u8,
        _ => FAILURE,
    }
}

/// The exit code for an error of kind `kind`.
pub fn for_kind(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::NotFound => NOT_FOUND,
        ErrorKind::PermissionDenied => PERMISSION,
        ErrorKind::ReadOnly => READ_ONLY,
        ErrorKind::NoSpace => NO_SPACE,
        ErrorKind::AlreadyExists => EXISTS,
        ErrorKind::IsADirectory
        | ErrorKind::NotADirectory
        | ErrorKind::NotAFile
        | ErrorKind::Symlink
        | ErrorKind::NameTooLong
        | ErrorKind::InvalidInput
        | ErrorKind::Busy => BAD_TARGET,
        ErrorKind::Unsupported | ErrorKind::CrossDevice => UNSUPPORTED,
        ErrorKind::WouldBlock => LOCKED,
        ErrorKind::TimedOut => TIMEOUT,
        ErrorKind::InvalidContent => INVALID,
        ErrorKind::FilterFailed => FILTER_FAILED,
        ErrorKind::Untrusted => UNTRUSTED,
        ErrorKind::Interrupted => INTERRUPTED,
        ErrorKind::OutcomeUnknown => OUTCOME_UNKNOWN,
        _ => FAILURE,
    }
}

/// The exit code for signal `sig` (SIGHUP, SIGINT, SIGTERM): 128 + its number.
pub fn for_signal(sig: usize) -> u8 {
    match sig {
        1 => HANGUP,
        2 => INTERRUPTED,
        15 => TERMINATED,
        n => (128 + n.min(127)) as u8,
    }
}

/// The exit code for an I/O error outside the library (reading a manifest or a source file).
pub fn for_io(e: &std::io::Error) -> u8 {
    match e.raw_os_error() {
        Some(n) => for_kind(ErrorKind::from_errno(n)),
        None => FAILURE,
    }
}

/// The stable name of an error kind, as JSON output and the audit trail give it:
/// `not_found`, `permission_denied`, `no_space`, `invalid_content`, ... (the kind's name in
/// snake case).
pub fn kind_name(kind: ErrorKind) -> String {
    let mut s = String::new();
    for (i, c) in format!("{kind:?}").chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for (code, _) in TABLE {
            assert!(seen.insert(*code), "code {code} listed twice");
        }
    }

    #[test]
    fn every_kind_maps_to_a_listed_code() {
        use ErrorKind::*;
        for k in [
            NotFound,
            PermissionDenied,
            AlreadyExists,
            CrossDevice,
            ReadOnly,
            NoSpace,
            IsADirectory,
            NotADirectory,
            NotAFile,
            Symlink,
            NameTooLong,
            InvalidInput,
            Unsupported,
            WouldBlock,
            TimedOut,
            Io,
            Busy,
            InvalidContent,
            FilterFailed,
            Untrusted,
            Interrupted,
            OutcomeUnknown,
            Other,
        ] {
            let c = for_kind(k);
            assert!(TABLE.iter().any(|(t, _)| *t == c), "{k:?} -> {c}");
        }
    }

    #[test]
    fn kind_names_are_snake_case() {
        assert_eq!(kind_name(ErrorKind::NotFound), "not_found");
        assert_eq!(kind_name(ErrorKind::InvalidContent), "invalid_content");
        assert_eq!(kind_name(ErrorKind::Io), "io");
    }

    #[test]
    fn readme_lists_the_same_table() {
        let readme = include_str!("../../../README.md");
        for (code, what) in TABLE {
            let row = format!("| {code} | {what} |");
            assert!(readme.contains(&row), "README lacks the row `{row}`");
        }
    }
}
