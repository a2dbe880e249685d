//! File formats untorn can check, parse and render: JSON, YAML and TOML (each behind a cargo
//! feature, all on by default), and raw bytes.

use crate::error::{Error, ErrorKind, Op, Result};
use std::fmt;
use std::path::Path;

/// The format of a file's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// One JSON value. Rendered pretty-printed (two spaces) with a trailing newline.
    Json,
    /// One YAML document.
    Yaml,
    /// A TOML document.
    Toml,
    /// Any bytes: nothing to check.
    Raw,
}

impl Format {
    /// The format's name as messages give it: `JSON`, `YAML`, `TOML`, `raw bytes`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
            Format::Toml => "TOML",
            Format::Raw => "raw bytes",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Format {
    /// The format a file name's extension implies: `.json`, `.yaml`/`.yml`, `.toml`; anything
    /// else is [`Format::Raw`].
    ///
    /// ```
    /// use untorn::Format;
    /// assert_eq!(Format::from_path("state.json"), Format::Json);
    /// assert_eq!(Format::from_path("queue.YML"), Format::Yaml);
    /// assert_eq!(Format::from_path("notes.txt"), Format::Raw);
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Format {
        let ext = path
            .as_ref()
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("json") => Format::Json,
            Some("yaml" | "yml") => Format::Yaml,
            Some("toml") => Format::Toml,
            _ => Format::Raw,
        }
    }

    /// Checks that `bytes` is one valid document of this format. The error names `path`, and
    /// the line and column of the first problem.
    #[cfg_attr(
        not(any(feature = "json", feature = "yaml", feature = "toml")),
        allow(unused_variables)
    )]
    pub fn check(self, bytes: &[u8], path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        match self {
            Format::Raw => Ok(()),
            #[cfg(feature = "json")]
            Format::Json => serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
                .map(drop)
                .map_err(|e| json_error(path, e)),
            #[cfg(feature = "yaml")]
            Format::Yaml => yaml_serde::from_slice::<serde::de::IgnoredAny>(bytes)
                .map(drop)
                .map_err(|e| yaml_error(path, e)),
            #[cfg(feature = "toml")]
            Format::Toml => {
                let text = utf8(self, bytes, path)?;
                toml::from_str::<serde::de::IgnoredAny>(text)
                    .map(drop)
                    .map_err(|e| toml_error(path, text, e))
            }
            #[allow(unreachable_patterns)]
            _ => Err(not_built(self, path)),
        }
    }

    /// Parses `bytes` as a `T`.
    #[cfg(any(feature = "json", feature = "yaml", feature = "toml"))]
    pub fn parse<T: serde::de::DeserializeOwned>(self, bytes: &[u8], path: &Path) -> Result<T> {
        match self {
            #[cfg(feature = "json")]
            Format::Json => serde_json::from_slice(bytes).map_err(|e| json_error(path, e)),
            #[cfg(feature = "yaml")]
            Format::Yaml => yaml_serde::from_slice(bytes).map_err(|e| yaml_error(path, e)),
            #[cfg(feature = "toml")]
            Format::Toml => {
                let text = utf8(self, bytes, path)?;
                toml::from_str(text).map_err(|e| toml_error(path, text, e))
            }
            Format::Raw => Err(Error::new(
                Op::Parse,
                path,
                ErrorKind::InvalidInput,
                "raw bytes have no structure to parse; choose JSON, YAML or TOML".into(),
            )),
            #[allow(unreachable_patterns)]
            _ => Err(not_built(self, path)),
        }
    }

    /// Renders `value` the way people expect to find it in a file: JSON pretty-printed with
    /// two-space indentation and a trailing newline; YAML and TOML as their crates print them
    /// (ending in a newline).
    #[cfg(any(feature = "json", feature = "yaml", feature = "toml"))]
    pub fn render<T: serde::Serialize>(self, value: &T, path: &Path) -> Result<Vec<u8>> {
        let ser = |msg: String| Error::new(Op::Serialize, path, ErrorKind::InvalidInput, msg);
        match self {
            #[cfg(feature = "json")]
            Format::Json => {
                let mut v = serde_json::to_vec_pretty(value).map_err(|e| ser(e.to_string()))?;
                v.push(b'\n');
                Ok(v)
            }
            #[cfg(feature = "yaml")]
            Format::Yaml => yaml_serde::to_string(value)
                .map(String::into_bytes)
                .map_err(|e| ser(e.to_string())),
            #[cfg(feature = "toml")]
            Format::Toml => toml::to_string(value)
                .map(String::into_bytes)
                .map_err(|e| ser(e.to_string())),
            Format::Raw => Err(ser(
                "raw bytes have no structure to render; choose JSON, YAML or TOML".into(),
            )),
            #[allow(unreachable_patterns)]
            _ => Err(not_built(self, path)),
        }
    }
}

#[allow(dead_code)]
fn not_built(f: Format, path: &Path) -> Error {
    Error::new(
        Op::Parse,
        path,
        ErrorKind::Unsupported,
        format!("untorn was built without {f} support (cargo feature)"),
    )
}

#[allow(dead_code)]
fn utf8<'a>(f: Format, bytes: &'a [u8], path: &Path) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let (line, col) = line_col(bytes, e.valid_up_to());
        Error::new(
            Op::Parse,
            path,
            ErrorKind::InvalidContent,
            format!("not valid UTF-8 at line {line} column {col}, so not {f}"),
        )
        .with_location(line, col)
        .with_format(f.name())
    })
}

/// 1-based line and column of byte `offset` in `bytes`.
pub(crate) fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, col)
}

#[cfg(feature = "json")]
fn json_error(path: &Path, e: serde_json::Error) -> Error {
    let (line, col) = (e.line(), e.column());
    Error::new(Op::Parse, path, ErrorKind::InvalidContent, e.to_string())
        .with_location(line, col)
        .with_format(Format::Json.name())
}

#[cfg(feature = "yaml")]
fn yaml_error(path: &Path, e: yaml_serde::Error) -> Error {
    let loc = e.location();
    let err = Error::new(Op::Parse, path, ErrorKind::InvalidContent, e.to_string())
        .with_format(Format::Yaml.name());
    match loc {
        Some(l) => err.with_location(l.line(), l.column()),
        None => err,
    }
}

#[cfg(feature = "toml")]
fn toml_error(path: &Path, text: &str, e: toml::de::Error) -> Error {
    let msg = e.message().trim_end().to_string();
    let err = Error::new(Op::Parse, path, ErrorKind::InvalidContent, String::new())
        .with_format(Format::Toml.name());
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text.as_bytes(), span.start);
            err.with_location(line, col)
                .with_note(format!("{msg} at line {line} column {col}"))
        }
        None => err.with_note(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col(b"abc", 0), (1, 1));
        assert_eq!(line_col(b"abc", 2), (1, 3));
        assert_eq!(line_col(b"a\nbc", 3), (2, 2));
        assert_eq!(line_col(b"a\n", 2), (2, 1));
    }

    #[test]
    fn invalid_documents_name_file_line_and_column() {
        let p = Path::new("s.json");
        let e = Format::Json
            .check(b"{\n  \"a\": 1,\n  oops\n}", p)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidContent);
        assert_eq!(e.location(), Some((3, 3)));
        let msg = e.to_string();
        assert!(msg.starts_with("cannot parse 's.json' as JSON: "), "{msg}");
        assert!(msg.contains("line 3 column 3"), "{msg}");

        let e = Format::Json.check(b"{} {}", p).unwrap_err();
        assert!(e.to_string().contains("trailing"), "{e}");
        assert!(Format::Json.check(b"", p).is_err());

        let e = Format::Yaml
            .check(b"a: 1\nb: [1, 2\nc: 3\n", Path::new("q.yaml"))
            .unwrap_err();
        assert!(e.location().is_some(), "{e}");
        assert!(
            e.to_string().starts_with("cannot parse 'q.yaml' as YAML: "),
            "{e}"
        );

        let e = Format::Toml
            .check(b"a = 1\nb = = 2\n", Path::new("c.toml"))
            .unwrap_err();
        assert_eq!(e.location().map(|l| l.0), Some(2), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");

        let e = Format::Toml
            .check(b"a = \"\xff\"", Path::new("c.toml"))
            .unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");

        assert!(Format::Raw.check(b"\xff anything", p).is_ok());
        assert!(Format::Yaml.check(b"a: [1, 2]\n", p).is_ok());
        assert!(Format::Toml.check(b"[t]\nx = 1\n", p).is_ok());
    }

    #[test]
    fn json_renders_pretty_with_a_newline() {
        let v: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":[1,2]}"#).unwrap();
        let out = Format::Json.render(&v, Path::new("x")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    2\n  ]\n}\n",
            "key order kept, two-space indent, trailing newline"
        );
    }
}
