//! The first workload: `untorn write` in a loop, every version self-checking.

use crate::ops::{Acks, Ops};
use crate::workload::{leftover_temps, Checked, Workload};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

const FILE: &str = "file";
const MAGIC: &str = "untorn-testbed write v=";

/// The content of version `n` of the file [`UntornWrite`] writes: a header line
/// `untorn-testbed write v=<n> len=<total length>` then a body of pseudo-random bytes seeded
/// by `n`. Sizes vary with `n`: a third under 64 bytes, a third up to 64 KiB, a third up to
/// 1 MiB. Every byte depends on `n`, so a file mixed from two versions, cut short, extended
/// with zeros or empty is told apart from a whole version by [`identify`].
pub fn content(n: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5eed);
    let body = match rng.u8(..3) {
        0 => rng.usize(..64),
        1 => rng.usize(64..64 << 10),
        _ => rng.usize(64 << 10..=1 << 20),
    };
    // The header's length includes itself, whose length depends on the digits of the total.
    let mut total = body;
    let header = loop {
        let header = format!("{MAGIC}{n} len={total}\n");
        if header.len() + body == total {
            break header;
        }
        total = header.len() + body;
    };
    let mut data = header.into_bytes();
    let start = data.len();
    data.resize(total, 0);
    rng.fill(&mut data[start..]);
    data
}

/// Which version `n` of [`content`] `data` is, or why it is none: empty, a header that does
/// not parse, the wrong length, or bytes that differ from version `n` (the first differing
/// offset is given, and whether the rest is zeros).
pub fn identify(data: &[u8]) -> Result<u64, String> {
    if data.is_empty() {
        return Err("the file is empty (0 bytes)".into());
    }
    let zeros = data.iter().filter(|&&b| b == 0).count();
    let garbage = || {
        let head = String::from_utf8_lossy(&data[..data.len().min(48)]).into_owned();
        format!(
            "not any version: {} bytes ({zeros} zero bytes), starting {head:?}",
            data.len()
        )
    };
    let line_end = data.iter().take(100).position(|&b| b == b'\n');
    let Some(line) = line_end.and_then(|e| std::str::from_utf8(&data[..e]).ok()) else {
        return Err(garbage());
    };
    let mut fields = line.strip_prefix(MAGIC).unwrap_or("").split(" len=");
    let (Some(Ok(n)), Some(Ok(len)), None) = (
        fields.next().map(str::parse::<u64>),
        fields.next().map(str::parse::<usize>),
        fields.next(),
    ) else {
        return Err(garbage());
    };
    let expected = content(n);
    if len != expected.len() {
        return Err(garbage());
    }
    if data.len() != len {
        return Err(format!(
            "torn version {n}: {} bytes, should be {len}",
            data.len()
        ));
    }
    if let Some(at) = data.iter().zip(&expected).position(|(a, b)| a != b) {
        let rest_zero = data[at..].iter().all(|&b| b == 0);
        return Err(format!(
            "torn version {n} ({len} bytes): differs from offset {at}{}",
            if rest_zero {
                ", all zeros from there"
            } else {
                ""
            }
        ));
    }
    Ok(n)
}

/// `untorn write` in a loop: operation `n` replaces `file` with [`content(n)`](content) (fed
/// on stdin, up to 1 MiB), alternating the temp-file kinds (`--temp auto`, i.e. `O_TMPFILE`
/// on ext4 and xfs, and `--temp named`).
///
/// Setup writes version 0. The check after the cut: `file` exists and is exactly one version
/// `k` (not empty, torn, mixed or zero-filled), with `last acked <= k <= last begun`: every
/// write that returned is there, and at most the one in flight beyond it. Leftover temps are
/// counted, anything else in the directory is a violation.
#[derive(Clone, Debug)]
pub struct UntornWrite {
    untorn: PathBuf,
    args: Vec<String>,
    temps: Vec<String>,
}

impl UntornWrite {
    /// The workload running the `untorn` binary at this path (from a test of the `untorn-cli`
    /// package: `env!("CARGO_BIN_EXE_untorn")`).
    pub fn new(untorn: impl Into<PathBuf>) -> Self {
        UntornWrite {
            untorn: untorn.into(),
            args: Vec::new(),
            temps: vec!["auto".into(), "named".into()],
        }
    }

    /// Passes these extra arguments to every `untorn write`, e.g. `["--durability", "none"]`
    /// to see the bed catch a write that is not durable.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The `--temp` values to cycle through, one per operation (default `auto`, `named`).
    pub fn temps<I: IntoIterator<Item = S>, S: Into<String>>(mut self, temps: I) -> Self {
        self.temps = temps.into_iter().map(Into::into).collect();
        assert!(!self.temps.is_empty(), "at least one --temp value");
        self
    }
}

impl Workload for UntornWrite {
    fn name(&self) -> String {
        let mut name = String::from("untorn write");
        for a in &self.args {
            name.push(' ');
            name.push_str(a);
        }
        name
    }

    fn setup(&self, dir: &Path) -> Result<(), String> {
        fs::write(dir.join(FILE), content(0)).map_err(|e| e.to_string())
    }

    fn run(&self, dir: &Path, ops: &Ops) -> Result<(), String> {
        let target = dir.join(FILE);
        let mut n = 0;
        while ops.running() {
            n += 1;
            let data = content(n);
            let temp = &self.temps[n as usize % self.temps.len()];
            let mut cmd = Command::new(&self.untorn);
            cmd.arg("write")
                .args(&self.args)
                .args(["--temp", temp])
                .arg(&target);
            ops.begin(n);
            let done = ops
                .run(&mut cmd, Some(&data))
                .map_err(|e| format!("cannot run {}: {e}", self.untorn.display()))?;
            if !done.success() {
                return ops.failed(format_args!(
                    "untorn write #{n} ({} bytes, --temp {temp}) failed with the power on: {done}",
                    data.len()
                ));
            }
            ops.ack(n);
        }
        Ok(())
    }

    fn check(&self, dir: &Path, acks: &Acks) -> Result<Checked, String> {
        let leftover_temps = leftover_temps(dir, &[FILE])?;
        let data = match fs::read(dir.join(FILE)) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err("the file is gone (ENOENT)".into())
            }
            Err(e) => return Err(format!("cannot read the file: {e}")),
        };
        let k = identify(&data)?;
        let lo = acks.last_acked().unwrap_or(0);
        let hi = acks.last_begun().unwrap_or(0);
        if k < lo {
            return Err(format!(
                "lost acknowledged writes: the file is version {k}, but #{lo} had returned"
            ));
        }
        if k > hi {
            return Err(format!(
                "the file is version {k}, which was never written (last begun #{hi})"
            ));
        }
        let mut notes = Vec::new();
        if let Some(late) = acks.late.iter().copied().max().filter(|&l| l > k) {
            notes.push(format!(
                "write #{late} returned success after the cut began, and is lost (file is #{k})"
            ));
        }
        Ok(Checked {
            leftover_temps,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_identify_themselves() {
        let mut sizes = Vec::new();
        for n in 0..60 {
            let c = content(n);
            assert_eq!(identify(&c), Ok(n));
            assert_eq!(c, content(n), "deterministic");
            sizes.push(c.len());
        }
        assert!(sizes.iter().any(|&s| s < 100), "{sizes:?}");
        assert!(
            sizes.iter().any(|&s| (1000..65536).contains(&s)),
            "{sizes:?}"
        );
        assert!(sizes.iter().any(|&s| s > 512 << 10), "{sizes:?}");
        assert!(sizes.iter().all(|&s| s <= (1 << 20) + 64), "{sizes:?}");
    }

    #[test]
    fn damage_is_detected() {
        // A large version, to damage a page in the middle.
        let n = (0..).find(|&n| content(n).len() > 100_000).unwrap();
        let good = content(n);
        assert!(identify(b"").unwrap_err().contains("empty"));

        let mut zeroed = good.clone();
        zeroed[8192..].fill(0);
        let e = identify(&zeroed).unwrap_err();
        assert!(e.contains("offset 8192, all zeros"), "{e}");

        let mut page = good.clone();
        page[4096..8192].fill(0);
        assert!(identify(&page).unwrap_err().contains("offset 4096"));

        let short = &good[..good.len() - 1];
        assert!(identify(short).unwrap_err().contains("torn"));

        let all_zero = vec![0; good.len()];
        assert!(identify(&all_zero).unwrap_err().contains("not any version"));

        // Another version's body under this header.
        let other = content(n + 1);
        let mut mixed = good.clone();
        let cut = 5000.min(other.len());
        mixed[..cut].copy_from_slice(&other[..cut]);
        assert!(identify(&mixed).is_err());

        // A forged header naming a length that is not the version's.
        assert!(identify(b"untorn-testbed write v=1 len=5\n").is_err());
    }

    #[test]
    fn check_bounds_by_acks() {
        let dir = std::env::temp_dir().join(format!(
            "untorn-testbed-unit-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        fs::create_dir(&dir).unwrap();
        let w = UntornWrite::new("untorn");
        let acks = |acked: Vec<u64>, begun: Vec<u64>| Acks {
            begun,
            acked,
            late: vec![],
        };
        fs::write(dir.join(FILE), content(3)).unwrap();
        assert!(w
            .check(&dir, &acks(vec![1, 2, 3], vec![1, 2, 3, 4]))
            .is_ok());
        assert!(w.check(&dir, &acks(vec![1, 2], vec![1, 2, 3])).is_ok());
        let lost = w
            .check(&dir, &acks(vec![1, 2, 3, 4], vec![1, 2, 3, 4]))
            .unwrap_err();
        assert!(lost.contains("lost acknowledged"), "{lost}");
        let late = Acks {
            begun: vec![1, 2, 3, 4],
            acked: vec![1, 2],
            late: vec![3, 4],
        };
        assert!(
            w.check(&dir, &late).is_ok(),
            "late acks are not held against it"
        );
        let phantom = w.check(&dir, &acks(vec![1], vec![1, 2])).unwrap_err();
        assert!(phantom.contains("never written"), "{phantom}");
        fs::write(dir.join(FILE), "").unwrap();
        assert!(w.check(&dir, &Acks::default()).is_err());
        fs::remove_file(dir.join(FILE)).unwrap();
        assert!(w
            .check(&dir, &Acks::default())
            .unwrap_err()
            .contains("gone"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
