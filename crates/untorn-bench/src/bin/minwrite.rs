//! `minwrite FILE CONTENT`: the smallest program that makes the system calls `untorn write FILE
//! CONTENT` makes for an existing file (see the README's "How it works"), with nothing around
//! them: no argument parser, no tracing, no error messages beyond the errno. The `spawn`
//! benchmark compares one `untorn write` per process against one of these per process, so that
//! the ratio is what untorn's start-up and structure cost, not the file system.
//!
//! The calls: open the directory; `statx` of the name (no follow), of `NAME.lock` (a crashed
//! transaction's flag), of the directory (its mount); `O_TMPFILE`; `write`; `statx` of the temp;
//! `futimens` and `fsetxattr(user.untorn.sum)`; `fchmod` to the old file's mode; `fsync`;
//! `linkat` to a temp name; `renameat2(RENAME_EXCHANGE)`; `fsync` of the directory; `unlinkat`
//! of the old content.

use rustix::fs::{self as fs, AtFlags, Mode, OFlags, RenameFlags, StatxFlags, Timestamps};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minwrite: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let [name, content] = &args[..] else {
        return Err("usage: minwrite FILE CONTENT (a file in the current directory)".into());
    };
    let data = content.as_bytes();
    let mask = StatxFlags::TYPE
        | StatxFlags::MODE
        | StatxFlags::NLINK
        | StatxFlags::UID
        | StatxFlags::GID
        | StatxFlags::INO
        | StatxFlags::SIZE;
    let dir = fs::open(
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let old = fs::statx(&dir, name, AtFlags::SYMLINK_NOFOLLOW, mask)?;
    let mut lock = name.clone();
    lock.push(".lock");
    let _ = fs::statx(&dir, &lock, AtFlags::SYMLINK_NOFOLLOW, mask);
    let _ = fs::statx(&dir, "", AtFlags::EMPTY_PATH, mask)?;
    let fd = fs::openat(
        &dir,
        ".",
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut done = 0;
    while done < data.len() {
        done += rustix::io::write(&fd, &data[done..])?;
    }
    let st = fs::statx(&fd, "", AtFlags::EMPTY_PATH, mask)?;
    let now = fs::Timespec {
        tv_sec: 1_765_000_000,
        tv_nsec: 0,
    };
    fs::futimens(
        &fd,
        &Timestamps {
            last_access: fs::Timespec {
                tv_sec: 0,
                tv_nsec: fs::UTIME_OMIT,
            },
            last_modification: now,
        },
    )?;
    let sum = format!(
        "crc32={:08x} size={} mtime={}.000000000",
        crc32fast::hash(data),
        st.stx_size,
        now.tv_sec
    );
    fs::fsetxattr(
        &fd,
        "user.untorn.sum",
        sum.as_bytes(),
        fs::XattrFlags::empty(),
    )?;
    fs::fchmod(&fd, Mode::from_raw_mode(u32::from(old.stx_mode) & 0o7777))?;
    fs::fsync(&fd)?;
    let mut tmp = b".".to_vec();
    tmp.extend_from_slice(name.as_bytes());
    tmp.extend_from_slice(format!(".untorn-{:08x}.tmp", std::process::id()).as_bytes());
    let tmp = OsString::from_vec(tmp);
    fs::linkat(&fd, "", &dir, &tmp, AtFlags::EMPTY_PATH)?;
    fs::renameat_with(&dir, &tmp, &dir, name, RenameFlags::EXCHANGE)?;
    fs::fsync(&dir)?;
    fs::unlinkat(&dir, &tmp, AtFlags::empty())?;
    Ok(())
}
