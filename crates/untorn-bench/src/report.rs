//! The machine and the file system, for the headers: numbers only mean something next to where
//! and under what load they were taken.

use rustix::fs as rfs;
use std::path::Path;

/// The name of a file system type (`statfs`'s `f_type`), for the ones these benchmarks meet;
/// `None` for others, which each benchmark prints as a number in its own way.
pub fn fs_name(magic: i64) -> Option<&'static str> {
    match magic {
        0xEF53 => Some("ext2/3/4"),
        0x5846_5342 => Some("xfs"),
        0x9123_683E => Some("btrfs"),
        0x0102_1994 => Some("tmpfs"),
        0x794C_7630 => Some("overlayfs"),
        _ => None,
    }
}

/// The type (`f_type`) of the file system holding `dir`.
// `f_type` is i64 on x86_64 but narrower on some other targets.
#[allow(clippy::unnecessary_cast)]
pub fn fs_magic(dir: &Path) -> rustix::io::Result<i64> {
    rfs::statfs(dir).map(|s| s.f_type as i64)
}

/// The file system of `dir` and its mount line (device, type, options such as `data=` or
/// `discard`, which change what a `fsync` costs): from the longest mount point that is a prefix
/// of the directory.
pub fn fs_description(dir: &Path) -> String {
    let kind = match fs_magic(dir) {
        Ok(m) => fs_name(m).map_or_else(|| format!("magic {m:#x}"), str::to_string),
        Err(e) => format!("statfs failed: {e}"),
    };
    let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let best = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && canon.starts_with(f[1])).then(|| (f[1].len(), l.to_string()))
        })
        .max_by_key(|(n, _)| *n);
    match best {
        Some((_, l)) => format!("{kind}; mount: `{l}`"),
        None => kind,
    }
}

/// The three load averages (`1.02 0.80 0.41`), `None` if `/proc/loadavg` cannot be read.
pub fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// One field (`avg10`, `avg60`) of the `some` line of `/proc/pressure/io`: the share of time in
/// percent that some task waited on I/O. A busy neighbour on a shared disk shows here.
pub fn io_pressure(field: &str) -> Option<String> {
    let io = std::fs::read_to_string("/proc/pressure/io").ok()?;
    let some = io.lines().find(|l| l.starts_with("some"))?;
    some.split_whitespace()
        .find_map(|f| f.strip_prefix(field)?.strip_prefix('='))
        .map(str::to_string)
}

/// Load average and I/O pressure in one line (`?` for what cannot be read), printed before and
/// after a run: a busy neighbour shows here.
pub fn machine_noise() -> String {
    let avg = |f: &str| io_pressure(f).unwrap_or_else(|| "?".into());
    format!(
        "load average {}; I/O pressure (some) {}% / {}% (avg10 / avg60)",
        load_average().unwrap_or_else(|| "?".into()),
        avg("avg10"),
        avg("avg60")
    )
}

/// The line under an interleaved benchmark's title: where it ran (directory, file system and
/// mount, kernel, CPUs) and how (warm-up, interleaving, settling), so that its tables are never
/// read without them. `extra` is the benchmark's own setting, ending with `"; "` (or `""`);
/// `op` names one timed operation in the note on settling (`"operation"`, `"write"`).
pub fn interleaved_setup(dir: &Path, warmup: usize, extra: &str, settle: bool, op: &str) -> String {
    let settling = if settle {
        format!("untimed syncfs before each timed {op}")
    } else {
        format!("no settling between {op}s (--no-settle)")
    };
    format!(
        "dir `{}` ({}); Linux {}, {} CPUs; warm-up {warmup} rounds; {extra}contenders \
         interleaved (round-robin, cycling through all their orders); {settling}.",
        dir.display(),
        fs_description(dir),
        kernel(),
        cpus(),
    )
}

/// The running kernel's release (`?` if unknown): the file systems' costs change between
/// kernels (e.g. multigrain timestamps since 6.13).
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The CPUs this process may use (0 if unknown): how many contenders can run at once.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}
