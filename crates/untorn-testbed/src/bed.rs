//! A loop-mounted file-system image whose power can be cut.

use crate::error::{Error, Result};
use crate::fs::FsConfig;
use crate::sys::{run, say, tool_with};
use std::env;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A file-system image, formatted and mounted on a loop device, whose power can be cut.
///
/// Everything lives in a fresh directory `untorn-testbed-PID-N-RANDOM` under the system temp
/// dir ([`std::env::temp_dir`], usually `/tmp`): the image file and the mount point, so beds
/// in parallel tests never collide. Dropping the bed (also while a test panics) unmounts,
/// detaches the loop device and removes the directory.
///
/// ```no_run
/// use untorn_testbed::{Bed, FsConfig};
/// let mut bed = Bed::new(&FsConfig::xfs())?;
/// std::fs::write(bed.path().join("f"), "old")?;
/// bed.sync()?;
/// std::fs::write(bed.path().join("f"), "new")?; // not fsynced
/// bed.cut_power()?;
/// bed.remount()?;
/// // "old", "new", or (xfs) an empty file
/// println!("{:?}", std::fs::read(bed.path().join("f"))?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Bed {
    config: FsConfig,
    root: PathBuf,
    image: PathBuf,
    mnt: PathBuf,
    loopdev: Option<String>,
    mounted: bool,
}

impl Bed {
    /// Creates the image, formats it, attaches it to a loop device and mounts it.
    ///
    /// Needs root; check [`unavailable`](crate::unavailable) first for a clear reason.
    pub fn new(config: &FsConfig) -> Result<Bed> {
        let root = unique_dir()?;
        let mut bed = Bed {
            config: config.clone(),
            image: root.join("image"),
            mnt: root.join("mnt"),
            root,
            loopdev: None,
            mounted: false,
        };
        // From here on, `Drop` cleans up whatever was made.
        let f = File::create(&bed.image).map_err(|e| io_err("create", &bed.image, e))?;
        f.set_len(config.image_mib << 20)
            .map_err(|e| io_err("size", &bed.image, e))?;
        drop(f);
        run(&mut tool_with(
            &format!("mkfs.{}", config.fstype),
            config
                .mkfs_args
                .iter()
                .map(Path::new)
                .chain([bed.image.as_path()]),
        )?)?;
        bed.loopdev = Some(attach(&bed.image)?);
        fs::create_dir(&bed.mnt).map_err(|e| io_err("create", &bed.mnt, e))?;
        bed.mount()?;
        Ok(bed)
    }

    /// The mount point: the root directory of the file system under test.
    pub fn path(&self) -> &Path {
        &self.mnt
    }

    /// The configuration this bed was built with.
    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// Makes everything written so far durable: `sync -f` (syncfs) on the mount.
    pub fn sync(&self) -> Result<()> {
        run(&mut tool_with("sync", [Path::new("-f"), &self.mnt])?).map(drop)
    }

    /// Cuts the power now: [`power_switch`](Bed::power_switch) then
    /// [`PowerSwitch::cut`]. From now on every I/O on the mount fails with EIO, and what had not
    /// reached the journal is gone once it is [remounted](Bed::remount).
    pub fn cut_power(&self) -> Result<()> {
        self.power_switch()?.cut()
    }

    /// Arms a power switch: starts `xfs_io -x MNT` and waits until it has opened the mount
    /// point, so that [`PowerSwitch::cut`] is a pipe write away from the shutdown ioctl
    /// (instead of the several milliseconds `xfs_io` takes to start).
    pub fn power_switch(&self) -> Result<PowerSwitch> {
        let mut cmd = tool_with("xfs_io", [Path::new("-x"), &self.mnt])?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::new(format!("cannot run xfs_io: {e}")))?;
        let stdin = child.stdin.take();
        let mut switch = PowerSwitch {
            child,
            stdin,
            mnt: self.mnt.clone(),
        };
        switch.wait_ready()?;
        Ok(switch)
    }

    /// Unmounts and mounts again: the journal is replayed, as at boot after a power cut. No
    /// process may still use the mount (kill the workload first).
    pub fn remount(&mut self) -> Result<()> {
        self.unmount()?;
        self.mount()
    }

    fn mount(&mut self) -> Result<()> {
        let dev = self
            .loopdev
            .as_deref()
            .ok_or_else(|| Error::new("no loop device"))?;
        let mut cmd = tool_with("mount", ["-t", self.config.fstype])?;
        if !self.config.mount_options.is_empty() {
            cmd.args(["-o", self.config.mount_options]);
        }
        cmd.arg(dev).arg(&self.mnt);
        run(&mut cmd)?;
        self.mounted = true;
        Ok(())
    }

    fn unmount(&mut self) -> Result<()> {
        // A process just killed may still hold the mount for a moment: retry while busy.
        let mut last = None;
        for _ in 0..50 {
            match run(&mut tool_with("umount", [&self.mnt])?) {
                Ok(_) => {
                    self.mounted = false;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(last.unwrap_or_else(|| Error::new("umount failed")))
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = self.unmount() {
                say(&format!("untorn-testbed: {e}; unmounting lazily"));
                if let Ok(mut c) = tool_with("umount", [Path::new("-l"), &self.mnt]) {
                    let _ = run(&mut c);
                }
            }
        }
        if let Some(dev) = self.loopdev.take() {
            // `losetup -d` of a still busy device only marks it to be freed when released.
            let res = tool_with("losetup", ["-d", &dev]).and_then(|mut c| run(&mut c));
            if let Err(e) = res {
                say(&format!("untorn-testbed: cannot detach {dev}: {e}"));
            }
        }
        let _ = fs::remove_file(&self.image);
        // Never recursive: if the unmount failed, the file system is still below `mnt`.
        let _ = fs::remove_dir(&self.mnt);
        let _ = fs::remove_dir(&self.root);
    }
}

/// A running `xfs_io -x MNT`, ready to shut the file system down; made by
/// [`Bed::power_switch`]. Dropped without [`cut`](PowerSwitch::cut), it just exits.
#[derive(Debug)]
pub struct PowerSwitch {
    child: Child,
    stdin: Option<ChildStdin>,
    mnt: PathBuf,
}

impl PowerSwitch {
    /// Waits (up to 5 s) until `xfs_io` has the mount point open.
    fn wait_ready(&mut self) -> Result<()> {
        let fds = PathBuf::from(format!("/proc/{}/fd", self.child.id()));
        for _ in 0..5000 {
            let open = fs::read_dir(&fds)
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == self.mnt));
            if open {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::new(format!(
                    "xfs_io -x {} exited ({status}) before any command",
                    self.mnt.display()
                )));
            }
            thread::sleep(Duration::from_millis(1));
        }
        Err(Error::new(format!(
            "xfs_io did not open {} within 5 s",
            self.mnt.display()
        )))
    }

    /// Cuts the power: the `shutdown` command of `xfs_io`, i.e. the shutdown ioctl without
    /// flushing the log (NOLOGFLUSH; `shutdown -f` would flush it). Then checks that it worked:
    /// creating a file on the mount must now fail.
    pub fn cut(mut self) -> Result<()> {
        let mut stdin = self
            .stdin
            .take()
            .expect("stdin is only taken here and in drop");
        let sent = stdin.write_all(b"shutdown\nquit\n");
        drop(stdin);
        let mut err = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut err);
        }
        let status = self
            .child
            .wait()
            .map_err(|e| Error::new(format!("waiting for xfs_io: {e}")))?;
        if let Err(e) = sent {
            return Err(Error::new(format!("cannot send shutdown to xfs_io: {e}")));
        }
        if !status.success() || !err.trim().is_empty() {
            return Err(Error::new(format!(
                "xfs_io shutdown of {} failed ({status}): {}",
                self.mnt.display(),
                err.trim()
            )));
        }
        let probe = self.mnt.join(".untorn-testbed-probe");
        match File::create(&probe) {
            Err(_) => Ok(()),
            Ok(_) => {
                let _ = fs::remove_file(&probe);
                Err(Error::new(format!(
                    "the shutdown of {} had no effect: a file could still be created",
                    self.mnt.display()
                )))
            }
        }
    }
}

impl Drop for PowerSwitch {
    fn drop(&mut self) {
        // End of input makes xfs_io exit; reap it so it does not keep the mount busy.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(format!("cannot {what} {}: {e}", path.display()))
}

/// A new directory under the temp dir, named uniquely for this process and bed.
fn unique_dir() -> Result<PathBuf> {
    let base = env::temp_dir();
    loop {
        let dir = base.join(format!(
            "untorn-testbed-{}-{}-{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create", &dir, e)),
        }
    }
}

/// Attaches `image` to a free loop device; retries, since another process may take the device
/// `losetup --find` chose before we bind it.
fn attach(image: &Path) -> Result<String> {
    let mut last = None;
    for _ in 0..10 {
        match run(&mut tool_with(
            "losetup",
            [Path::new("--find"), Path::new("--show"), image],
        )?) {
            Ok(dev) if dev.starts_with("/dev/") => return Ok(dev),
            Ok(other) => last = Some(Error::new(format!("losetup printed {other:?}"))),
            Err(e) => last = Some(e),
        }
        thread::sleep(Duration::from_millis(20 + fastrand::u64(..50)));
    }
    Err(last.unwrap_or_else(|| Error::new("losetup failed")))
}
