//! Whose state untorn acts on: the trust rules for what it finds on disk.
//!
//! untorn leaves state beside the files it changes (transaction journals, flags in lock files,
//! temps, backups) and acts on such state when it finds it: it rolls journals forward, removes
//! temps, restores and prunes backups. Whoever can write a directory can plant any of these
//! names there. So a file found on disk is acted on only if its **owner** is trusted:
//!
//! - the process's effective user,
//! - root (uid 0), who can change anything anyway,
//! - a user trusted explicitly: [`trust_owner`], the `UNTORN_TRUST_USERS` environment variable
//!   (user names or uids, separated by commas), or the CLI's `--trust-user` (in the spirit of
//!   git's `safe.directory`, CVE-2022-24765).
//!
//! A backup is also trusted when its owner is the owner of the file it backs up (that user
//! could write the file itself; a backup is the displaced inode, so it keeps its owner).
//!
//! State that fails the rule is reported (one line naming the file and its owner) and left
//! alone. Where its owner could never have replaced the file it claims to concern (a sticky
//! directory such as `/tmp`, and a file that user does not own), it means nothing and is
//! ignored outright: otherwise planting a name would be enough to block someone else's writes.

use crate::sys::Stat;
use std::sync::{LazyLock, RwLock};

/// Users trusted besides the effective user and root.
static EXTRA: LazyLock<RwLock<Vec<u32>>> = LazyLock::new(|| {
    let mut v = Vec::new();
    if let Some(list) = std::env::var_os("UNTORN_TRUST_USERS") {
        for item in list.to_string_lossy().split(',') {
            if let Some(uid) = user_id(item.trim()) {
                v.push(uid);
            }
        }
    }
    RwLock::new(v)
});

/// Trusts the state that user `uid` leaves (journals, flags, temps, backups), for the rest of
/// this process: e.g. root recovering a service's directory.
pub fn trust_owner(uid: u32) {
    let mut v = EXTRA.write().unwrap_or_else(|e| e.into_inner());
    if !v.contains(&uid) {
        v.push(uid);
    }
}

/// The uid of a user given by name or number (`/etc/passwd`), if there is one.
pub fn user_id(user: &str) -> Option<u32> {
    if user.is_empty() {
        return None;
    }
    if let Ok(n) = user.parse::<u32>() {
        return Some(n);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == user).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// A user's name for messages (`/etc/passwd`), else `uid N`.
pub fn user_name(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
        p.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
    });
    match name {
        Some(n) => format!("{n} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// Whether state owned by `uid` is trusted by a process whose effective user is `euid`.
pub(crate) fn trusts(euid: u32, uid: u32) -> bool {
    uid == euid
        || uid == 0
        || EXTRA
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&uid)
}

/// Whether user `uid` could have replaced (or created) the entry `file` of the directory
/// `dir`: if not, state of theirs that claims to concern that file means nothing. In a sticky
/// directory only the owner of an entry (or of the directory, or root) may rename or remove it;
/// any user may write a directory that is writable by others.
pub(crate) fn could_replace(uid: u32, dir: &Stat, file: Option<&Stat>) -> bool {
    if uid == 0 || uid == dir.uid {
        return true;
    }
    let perms = dir.permissions();
    if perms & 0o022 == 0 {
        // Only its owner (or root) may change entries of this directory.
        return false;
    }
    let sticky = perms & 0o1000 != 0;
    match file {
        Some(f) if sticky => f.uid == uid,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(uid: u32, mode: u32) -> Stat {
        Stat {
            dev: 1,
            ino: 2,
            mode,
            uid,
            gid: 0,
            nlink: 1,
            size: 0,
            mtime_ns: 0,
            attrs: 0,
        }
    }

    #[test]
    fn own_and_root_state_is_trusted_others_is_not() {
        assert!(trusts(1000, 1000));
        assert!(trusts(1000, 0));
        assert!(!trusts(0, 65534));
        assert!(!trusts(1000, 1001));
        trust_owner(4242);
        assert!(trusts(0, 4242));
    }

    #[test]
    fn who_could_replace_a_file() {
        let tmp = st(0, 0o041777);
        let root_file = st(0, 0o100644);
        let their_file = st(65534, 0o100644);
        // Sticky /tmp: nobody can replace root's file, but can create a new name, and replace
        // their own.
        assert!(!could_replace(65534, &tmp, Some(&root_file)));
        assert!(could_replace(65534, &tmp, None));
        assert!(could_replace(65534, &tmp, Some(&their_file)));
        // A world-writable directory without the sticky bit: anyone can replace anything.
        assert!(could_replace(65534, &st(0, 0o040777), Some(&root_file)));
        // A directory only root may write.
        assert!(!could_replace(65534, &st(0, 0o040755), None));
        // The directory's owner can.
        assert!(could_replace(65534, &st(65534, 0o041777), Some(&root_file)));
    }
}
