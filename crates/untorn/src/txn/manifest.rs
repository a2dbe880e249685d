//! The changes of a transaction as words or lines: `put TARGET=SOURCE`, `rm PATH`,
//! `mv FROM=TO`. Used by the CLI (`untorn txn`, `--manifest`) and its fuzz target; hidden from
//! the docs, not a stable API.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// One change named on the command line or in a manifest (see [`parse_ops`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestOp {
    /// `put TARGET=SOURCE`: TARGET gets SOURCE's content (`-`: standard input).
    Put {
        /// The file to write.
        target: PathBuf,
        /// Where its new content comes from.
        source: PathBuf,
    },
    /// `rm PATH`: remove PATH.
    Remove(PathBuf),
    /// `mv FROM=TO`: rename FROM to TO.
    Rename {
        /// The existing file.
        from: PathBuf,
        /// Its new name.
        to: PathBuf,
    },
}

fn pair(word: &OsStr, what: &str) -> std::result::Result<(PathBuf, PathBuf), String> {
    let b = word.as_bytes();
    match b.iter().position(|&c| c == b'=') {
        Some(i) if i > 0 && i + 1 < b.len() => Ok((
            PathBuf::from(OsStr::from_bytes(&b[..i])),
            PathBuf::from(OsStr::from_bytes(&b[i + 1..])),
        )),
        _ => Err(format!(
            "'{}' should be {what} (two non-empty paths joined by '=')",
            word.to_string_lossy()
        )),
    }
}

/// Parses changes given as words: `put TARGET=SOURCE`, `rm PATH`, `mv FROM=TO`, in any number
/// and order. A path may contain `=` only after the first one (the first `=` separates).
///
/// ```
/// use untorn::txn::{parse_ops, ManifestOp};
/// let ops = parse_ops(["put", "a.json=new.json", "rm", "old.txt"].map(Into::into)).unwrap();
/// assert_eq!(ops[1], ManifestOp::Remove("old.txt".into()));
/// assert!(parse_ops(["put", "a.json"].map(Into::into)).is_err());
/// ```
pub fn parse_ops<I>(words: I) -> std::result::Result<Vec<ManifestOp>, String>
where
    I: IntoIterator<Item = OsString>,
{
    let mut it = words.into_iter();
    let mut ops = Vec::new();
    while let Some(verb) = it.next() {
        let mut arg = || {
            it.next()
                .ok_or_else(|| format!("'{}' needs an argument", verb.to_string_lossy()))
        };
        ops.push(match verb.as_bytes() {
            b"put" => {
                let (target, source) = pair(&arg()?, "TARGET=SOURCE")?;
                ManifestOp::Put { target, source }
            }
            b"rm" => ManifestOp::Remove(PathBuf::from(arg()?)),
            b"mv" => {
                let (from, to) = pair(&arg()?, "FROM=TO")?;
                ManifestOp::Rename { from, to }
            }
            _ => {
                return Err(format!(
                    "unknown change '{}' (expected put, rm or mv)",
                    verb.to_string_lossy()
                ))
            }
        });
    }
    Ok(ops)
}

/// Parses a manifest: one change per line, as in [`parse_ops`] (`put a.json=new.json`);
/// blank lines and lines starting with `#` are skipped. Errors name the line.
pub fn parse_manifest(text: &[u8]) -> std::result::Result<Vec<ManifestOp>, String> {
    let mut ops = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() || trimmed.starts_with(b"#") {
            continue;
        }
        let words = trimmed
            .splitn(2, |b| b.is_ascii_whitespace())
            .map(|w| OsString::from_vec(w.trim_ascii().to_vec()))
            .filter(|w| !w.is_empty());
        let parsed = parse_ops(words).map_err(|e| format!("line {}: {e}", i + 1))?;
        if parsed.len() != 1 {
            return Err(format!("line {}: expected one change", i + 1));
        }
        ops.extend(parsed);
    }
    Ok(ops)
}
