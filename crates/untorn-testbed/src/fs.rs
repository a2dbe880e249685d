//! The file-system configurations a workload is run on.

/// One file system and its mount options, as a test bed is built with.
///
/// The constructors are the configurations that expose the classic durability mistakes (see
/// `/work/shared/crash-testing.md`): with a write that skips `fsync` before the rename, xfs and
/// ext4 `noauto_da_alloc` come back with an empty file; on all three a rename whose directory
/// was not `fsync`ed can be lost. Default ext4 (`auto_da_alloc`) hides the first mistake, so
/// it is not among them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsConfig {
    /// Short name for reports, e.g. `ext4-noauto_da_alloc`.
    pub name: &'static str,
    /// The file-system type, as `mount -t` and `mkfs.TYPE` take it: `ext4` or `xfs`.
    pub fstype: &'static str,
    /// Arguments of `mkfs.TYPE` before the image path.
    pub mkfs_args: &'static [&'static str],
    /// Mount options (`mount -o`), empty for none.
    pub mount_options: &'static str,
    /// Size of the image in MiB (the file is sparse).
    pub image_mib: u64,
}

impl FsConfig {
    /// ext4, ordered data mode, without the `auto_da_alloc` heuristic that flushes a file
    /// renamed over another: a rename of an unsynced file leaves it empty after a cut.
    pub fn ext4_noauto_da_alloc() -> Self {
        FsConfig {
            name: "ext4-noauto_da_alloc",
            fstype: "ext4",
            mkfs_args: &["-q", "-F", "-E", "nodiscard"],
            mount_options: "noauto_da_alloc",
            image_mib: 128,
        }
    }

    /// ext4 with `data=writeback,nodelalloc`: metadata is journaled without waiting for the
    /// data, so an unsynced file can come back with its new size and stale or zero blocks.
    pub fn ext4_writeback() -> Self {
        FsConfig {
            name: "ext4-writeback",
            fstype: "ext4",
            mkfs_args: &["-q", "-F", "-E", "nodiscard"],
            mount_options: "data=writeback,nodelalloc",
            image_mib: 128,
        }
    }

    /// xfs with the defaults of `mkfs.xfs` (reflink on). Recent `mkfs.xfs` refuses images of
    /// 300 MB or less, hence 320 MiB (sparse: a few MiB are really used).
    pub fn xfs() -> Self {
        FsConfig {
            name: "xfs",
            fstype: "xfs",
            mkfs_args: &["-q", "-f", "-K"],
            mount_options: "",
            image_mib: 320,
        }
    }

    /// Every configuration a workload should pass on.
    pub fn all() -> Vec<Self> {
        vec![
            Self::ext4_noauto_da_alloc(),
            Self::ext4_writeback(),
            Self::xfs(),
        ]
    }

    /// The programs a bed of this configuration runs, with the Debian package of each.
    pub fn tools(&self) -> Vec<(String, &'static str)> {
        let mkfs_pkg = match self.fstype {
            "xfs" => "xfsprogs",
            "ext4" => "e2fsprogs",
            "btrfs" => "btrfs-progs",
            _ => "?",
        };
        vec![
            (format!("mkfs.{}", self.fstype), mkfs_pkg),
            ("xfs_io".into(), "xfsprogs"),
            ("losetup".into(), "mount"),
            ("mount".into(), "mount"),
            ("umount".into(), "mount"),
            ("sync".into(), "coreutils"),
        ]
    }
}
