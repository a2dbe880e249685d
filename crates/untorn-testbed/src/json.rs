//! Self-checking JSON documents and records for the workloads of the later issues, and the
//! helpers their checks share (running `untorn` after the cut, reading a file).

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output};

const PAD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn rng_for(tag: &str, n: u64) -> fastrand::Rng {
    // FNV-1a of the tag, mixed with n: every (tag, n) has its own bytes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in tag.as_bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    fastrand::Rng::with_seed(h ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn pad(rng: &mut fastrand::Rng, len: usize) -> String {
    (0..len)
        .map(|_| PAD[rng.usize(..PAD.len())] as char)
        .collect()
}

/// Version `n` of a JSON document tagged `tag` (the file's name, say), of at most about `max`
/// bytes: `{"tag":"a.txt","v":7,"pad":"..."}` and a newline. The pad is pseudo-random letters
/// and digits seeded by `tag` and `n`, of a length that varies with `n` (a third under 64
/// bytes, a third up to 4 KiB, a third up to `max`), so a document that is cut short, mixed
/// with another version, zero-filled or empty is told apart from a whole one by
/// [`identify_json`]. It is valid JSON (and YAML).
pub fn json_doc(tag: &str, n: u64, max: usize) -> Vec<u8> {
    let mut rng = rng_for(tag, n);
    let len = match rng.u8(..3) {
        0 => rng.usize(..64),
        1 => rng.usize(64..4096),
        _ => rng.usize(64..max.max(65)),
    };
    format!(
        "{{\"tag\":{tag:?},\"v\":{n},\"pad\":\"{}\"}}\n",
        pad(&mut rng, len)
    )
    .into_bytes()
}

/// Which version of [`json_doc(tag, _, max)`](json_doc) `data` is, or why it is none.
pub fn identify_json(tag: &str, data: &[u8], max: usize) -> Result<u64, String> {
    let head = format!("{{\"tag\":{tag:?},\"v\":");
    let n = data
        .strip_prefix(head.as_bytes())
        .and_then(|rest| {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            std::str::from_utf8(&rest[..digits])
                .ok()?
                .parse::<u64>()
                .ok()
        })
        .ok_or_else(|| describe(data, "not any version"))?;
    same(data, &json_doc(tag, n, max), &format!("version {n}"))?;
    Ok(n)
}

/// `Ok` if `data` is exactly `expected`, else what is wrong with it (`what` names the
/// expected content).
pub(crate) fn same(data: &[u8], expected: &[u8], what: &str) -> Result<(), String> {
    if data == expected {
        return Ok(());
    }
    if data.len() != expected.len() {
        return Err(describe(
            data,
            &format!("torn {what} (should be {} bytes)", expected.len()),
        ));
    }
    let at = data
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(0);
    let zeros = if data[at..].iter().all(|&b| b == 0) {
        ", all zeros from there"
    } else {
        ""
    };
    Err(describe(
        data,
        &format!("{what} differs from offset {at}{zeros}"),
    ))
}

/// `what`, with the length, zero count and start of `data`.
pub(crate) fn describe(data: &[u8], what: &str) -> String {
    if data.is_empty() {
        return format!("{what}: empty (0 bytes)");
    }
    let zeros = data.iter().filter(|&&b| b == 0).count();
    let head = String::from_utf8_lossy(&data[..data.len().min(48)]).into_owned();
    format!(
        "{what}: {} bytes ({zeros} zero bytes), starting {head:?}",
        data.len()
    )
}

/// Record `n` of an append log, without its newline: `{"n":7,"pad":"..."}`, or with a writer
/// `w`, `{"w":1,"n":7,"pad":"..."}`; 50 to 2000 bytes (a size that varies with `n`), every
/// byte depending on `w` and `n`.
pub fn record(w: Option<u64>, n: u64) -> Vec<u8> {
    record_sized(w, n, 50..=2000)
}

/// [`record`] with a size (about: never below its header) drawn from `sizes`.
pub fn record_sized(w: Option<u64>, n: u64, sizes: std::ops::RangeInclusive<usize>) -> Vec<u8> {
    let tag = match w {
        Some(w) => format!("record w={w}"),
        None => "record".to_string(),
    };
    let mut rng = rng_for(&tag, n);
    let head = match w {
        Some(w) => format!("{{\"w\":{w},\"n\":{n},\"pad\":\""),
        None => format!("{{\"n\":{n},\"pad\":\""),
    };
    let total = rng.usize(sizes);
    let len = total.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", pad(&mut rng, len)).into_bytes()
}

/// Reads `dir/name`: `Ok(None)` if it does not exist.
pub(crate) fn read_opt(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, String> {
    match fs::read(dir.join(name)) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {name}: {e}")),
    }
}

/// Runs `untorn ARGS` in `dir` after the cut (not through [`Ops`](crate::Ops): nothing is
/// cut any more) and returns its output; `Err` if it could not start.
pub(crate) fn untorn_in(untorn: &Path, dir: &Path, args: &[&str]) -> Result<Output, String> {
    Command::new(untorn)
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", untorn.display()))
}

/// Runs `untorn ARGS` in `dir`; its stdout if it exited 0, else an `Err` quoting it.
pub(crate) fn untorn_ok(untorn: &Path, dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = untorn_in(untorn, dir, args)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "`untorn {}` failed after recovery ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The lock file `name` in `dir` holds nothing (or does not exist): only a transaction writes
/// into a lock file, and it empties it when done.
pub(crate) fn lock_is_empty(dir: &Path, name: &str) -> Result<(), String> {
    match read_opt(dir, name)? {
        Some(d) if !d.is_empty() => {
            Err(describe(&d, &format!("the lock file {name} is not empty")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_identify_themselves() {
        let mut sizes = Vec::new();
        for n in 0..60 {
            let d = json_doc("a.txt", n, 64 << 10);
            assert_eq!(identify_json("a.txt", &d, 64 << 10), Ok(n));
            assert!(d.ends_with(b"}\n"));
            sizes.push(d.len());
        }
        assert!(sizes.iter().any(|&s| s < 100), "{sizes:?}");
        assert!(sizes.iter().any(|&s| s > 8192), "{sizes:?}");
        let n = (0..)
            .find(|&n| json_doc("a", n, 64 << 10).len() > 9000)
            .unwrap();
        let good = json_doc("a", n, 64 << 10);
        // Another tag, another max, cut short, zeros, empty, mixed: all rejected.
        assert!(identify_json("b", &good, 64 << 10).is_err());
        assert!(identify_json("a", &good, 1 << 20).is_err());
        assert!(identify_json("a", &good[..good.len() - 1], 64 << 10)
            .unwrap_err()
            .contains("torn version"));
        let mut z = good.clone();
        z[4096..].fill(0);
        let e = identify_json("a", &z, 64 << 10).unwrap_err();
        assert!(e.contains("offset 4096, all zeros"), "{e}");
        assert!(identify_json("a", b"", 64 << 10)
            .unwrap_err()
            .contains("empty"));
        assert!(identify_json("a", &vec![0; good.len()], 64 << 10).is_err());
        let other = json_doc("a", n + 1, 64 << 10);
        let mut mixed = good.clone();
        let cut = 20.min(other.len());
        mixed[..cut].copy_from_slice(&other[..cut]);
        assert!(identify_json("a", &mixed, 64 << 10).is_err());
    }

    #[test]
    fn records_vary_in_size_and_are_one_line() {
        let sizes: Vec<usize> = (1..200).map(|n| record(None, n).len()).collect();
        assert!(sizes.iter().all(|&s| (50..=2000).contains(&s)), "{sizes:?}");
        assert!(sizes.iter().any(|&s| s < 200) && sizes.iter().any(|&s| s > 1800));
        for n in 1..50 {
            for w in [None, Some(0), Some(3)] {
                let r = record(w, n);
                assert!(!r.contains(&b'\n'));
                assert_eq!(r, record(w, n));
            }
            assert_ne!(record(Some(0), n), record(Some(1), n));
        }
        assert!(record(None, 7).starts_with(b"{\"n\":7,\"pad\":\""));
    }
}
