//! Power-cut test bed for untorn: run a workload on a real file system, cut the power at a
//! random moment, recover the journal, and check that everything the workload was told is
//! durable survived, whole.
//!
//! # How a cycle works
//!
//! A [`Bed`] is a small file-system image (in a fresh directory under the system temp dir,
//! never on the mount itself), formatted with `mkfs` and mounted through a loop device with the
//! options of one [`FsConfig`]. [`run`] then repeats, for each cycle:
//!
//! 1. [`Workload::setup`] prepares a fresh, empty directory on the mount; the bed then syncs the
//!    whole file system (`sync -f`), so the initial state is durable.
//! 2. [`Workload::run`] starts on its own thread: a loop of operations (usually `untorn`
//!    processes), recording in [`Ops`] when operation `n` begins and when it returned success
//!    (its *acknowledgement*, like a program printing `ACK n`).
//! 3. After a random delay (sometimes ~0 ms, so the cut lands inside the first, possibly large,
//!    write; sometimes long enough for dozens of operations) the power is cut: the file system
//!    is shut down with the `XFS_IOC_GOINGDOWN`/`EXT4_IOC_SHUTDOWN` ioctl with NOLOGFLUSH
//!    semantics, through an `xfs_io -x MNT` started beforehand ([`Bed::power_switch`]) so the
//!    cut comes within microseconds. From that instant no more I/O reaches the image, and
//!    whatever had not reached the journal is dropped, as if the plug were pulled. The running
//!    processes are then killed. Acknowledgements recorded after the cut began are *late* and
//!    not held against the recovered state (see [`Acks`]: on xfs, `fsync` of a directory
//!    returns success after a shutdown).
//! 4. [`Bed::remount`] unmounts and mounts again, which replays the journal: the same recovery
//!    as after a real power cut.
//! 5. [`Workload::check`] inspects the directory, given every acknowledgement the workload
//!    recorded ([`Acks`]); an `Err` is a [`Violation`].
//!
//! # Persistence model (what a check may assume)
//!
//! The shutdown ioctl gives exactly what a journaling file system guarantees after a power cut,
//! so a check may assume no more than POSIX and these file systems promise (the model of ALICE,
//! OSDI 2014):
//!
//! - data written but not `fsync`ed may be lost, wholly or partly (page granularity); an append
//!   may leave the new size with zeros where the data should be;
//! - `fsync` of a file makes its data and inode durable, and orders nothing else;
//! - a create, rename, link or unlink is durable only once its directory is `fsync`ed; before
//!   that the rename may be lost (old content back);
//! - nothing issued after a completed `fsync` becomes durable before that `fsync`'s effects.
//!
//! So the promise being tested is: an operation that *returned success* before the cut is in
//! the recovered state; an operation that had begun but not returned may or may not be, but
//! never half (no torn, mixed, empty or zero-filled file). Leftover temp files
//! (`.NAME.untorn-XXXXXXXX.tmp`) are allowed after a crash and only counted
//! ([`Checked::leftover_temps`]).
//!
//! Not modelled: a disk that lies about flushes, torn sectors, or reordering below the file
//! system (there is no device-mapper on these machines). Crashes are cut at the file-system
//! level, once per cycle.
//!
//! # File systems
//!
//! [`FsConfig::all`]: ext4 `noauto_da_alloc`, ext4 `data=writeback,nodelalloc` and xfs. Each
//! exposes the classic mistakes (no `fsync` before the rename: empty file; no directory
//! `fsync`: the rename is lost), which default ext4 partly hides. btrfs has no shutdown ioctl
//! and is not included.
//!
//! # Adding a workload
//!
//! Implement [`Workload`]; see its documentation for a complete example. In short:
//!
//! - `setup(dir)`: create the initial files in `dir` (no `fsync` needed; the bed syncs).
//! - `run(dir, ops)`: `while ops.running() { ops.begin(n); ...; ops.ack(n) }`, running each
//!   operation with [`Ops::run`] (a command, optional stdin), or run one long-lived child with
//!   [`Ops::run_child`] that prints `BEGIN <n>` / `ACK <n>` lines on stdout. When an operation
//!   fails, `return ops.failed(message)`: that is expected after the cut and a violation before.
//! - `check(dir, acks)`: after recovery; return `Err(description)` if the state is not one the
//!   acknowledgements allow. [`leftover_temps`] lists the untorn temp files in a directory and
//!   rejects unexpected entries.
//!
//! Then call [`run`] with an [`FsConfig`] and [`Options::from_env`], after
//! [`should_run`] (which skips, loudly, where the bed cannot work). [`UntornWrite`] is the
//! first workload: `untorn write` in a loop, each version self-checking. The workloads of the
//! later issues follow the same pattern: [`LockedIncrements`] (`untorn edit` of a JSON
//! counter), [`UntornBackups`] (`untorn write --backup=3`), [`UntornAppend`] (`untorn append
//! --jsonl`, torn tails counted by kind) and [`UntornTxn`] (`untorn txn` of three files, then
//! `untorn recover`); each keeps counts of what its checks saw (`stats()`).
//!
//! # Requirements
//!
//! Root (or `CAP_SYS_ADMIN`), loop devices, and the programs `mkfs.ext4` (Debian package
//! `e2fsprogs`), `mkfs.xfs` and `xfs_io` (`xfsprogs`), `losetup`, `mount`, `umount` (`mount`,
//! `util-linux`) and `sync` (`coreutils`). [`unavailable`] says what is missing.

mod append;
mod backups;
mod bed;
mod driver;
mod edit;
mod error;
mod fs;
mod json;
mod ops;
mod sys;
mod txn;
mod workload;
mod write;

pub use append::{AppendStats, Tail, UntornAppend};
pub use backups::{backup_version, BackupStats, UntornBackups};
pub use bed::{Bed, PowerSwitch};
pub use driver::{run, Options, Report, Violation, DEFAULT_CYCLES};
pub use edit::{IncrementStats, LockedIncrements};
pub use error::{Error, Result};
pub use fs::FsConfig;
pub use json::{identify_json, json_doc, record};
pub use ops::{Acks, Finished, Ops};
pub use sys::{say, should_run, unavailable};
pub use txn::{txn_version, TxnStats, UntornTxn, TXN_FILES};
pub use workload::{leftover_temps, Checked, Workload};
pub use write::{content, identify, UntornWrite};
