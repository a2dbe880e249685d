//! In-place editing of a file by an external filter (jq, yq, sed, ...) under the exclusive lock.

use crate::error::{describe, Error, ErrorKind, Op, Result};
use crate::format::Format;
use crate::sys::errnos::ENOENT;
use crate::update::UpdateOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// What an edit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edited {
    /// The file was replaced with the filter's output.
    Written,
    /// The filter's output was the same as the input: nothing was written.
    Unchanged,
}

/// Options for [`EditOptions::run`]: lock and write options, the format to check, and the
/// content to start from when the file does not exist.
#[derive(Clone, Debug, Default)]
pub struct EditOptions {
    update: UpdateOptions,
    format: Option<Format>,
    default: Option<Vec<u8>>,
    allow_empty: bool,
}

impl EditOptions {
    /// Format from the file's extension; a missing file is an error.
    pub fn new() -> EditOptions {
        EditOptions::default()
    }

    /// Locking and writing (timeout, durability, ...).
    pub fn update_options(&mut self, u: UpdateOptions) -> &mut Self {
        self.update = u;
        self
    }

    /// The format the filter's output must have (default: from the file's extension, see
    /// [`Format::from_path`]; [`Format::Raw`] checks nothing).
    pub fn format(&mut self, f: Format) -> &mut Self {
        self.format = Some(f);
        self
    }

    /// What the filter reads when the file does not exist (default: the edit fails with
    /// [`ErrorKind::NotFound`]).
    pub fn default_content(&mut self, content: impl Into<Vec<u8>>) -> &mut Self {
        self.default = Some(content.into());
        self
    }

    /// Whether an empty output (no bytes, or only whitespace) may replace the file (default:
    /// no). A filter that prints nothing has almost always failed without saying so (a `yq`
    /// expression that selects nothing, a `grep` that matches nothing), and an emptied file is
    /// what untorn exists to prevent; empty output is valid YAML and TOML, so the format check
    /// alone would let it through. Applies to every format (JSON refuses empty output anyway,
    /// as invalid).
    pub fn allow_empty(&mut self, yes: bool) -> &mut Self {
        self.allow_empty = yes;
        self
    }

    /// Under the exclusive lock of `path`: runs `filter` with the file's content on its standard
    /// input; if it exits 0 and its output is valid for the format (and not empty, unless
    /// [`allow_empty`](Self::allow_empty)), replaces the file with the output, atomically and
    /// durably. Otherwise the file stays as it was, and the error says why:
    /// [`ErrorKind::FilterFailed`] (non-zero exit, killed, not startable) or
    /// [`ErrorKind::InvalidContent`] (output empty, or not valid, with line and column).
    ///
    /// The filter's standard error passes through; its standard output is captured.
    ///
    /// ```no_run
    /// use std::process::Command;
    /// let mut jq = Command::new("jq");
    /// jq.arg(".count += 1");
    /// untorn::EditOptions::new().run("state.json", &mut jq)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(&self, path: impl AsRef<Path>, filter: &mut Command) -> Result<Edited> {
        let path = path.as_ref();
        let format = self.format.unwrap_or_else(|| Format::from_path(path));
        let written = self.update.update(path, |old| {
            let input = match (old, &self.default) {
                (Some(b), _) => b,
                (None, Some(d)) => &d[..],
                (None, None) => {
                    return Err(Error::io(Op::Filter, path, crate::sys::os_error(ENOENT))
                        .with_note("give a default content to start from"))
                }
            };
            let output = run_filter(filter, input, path)?;
            let unchanged = old == Some(&output[..]);
            if !self.allow_empty && !unchanged && output.iter().all(u8::is_ascii_whitespace) {
                return Err(Error::new(
                    Op::Filter,
                    path,
                    ErrorKind::InvalidContent,
                    format!(
                        "the output of '{}' is empty{}; the file is unchanged (pass \
                         --allow-empty to empty it)",
                        program(filter),
                        if output.is_empty() {
                            ""
                        } else {
                            " (only whitespace)"
                        }
                    ),
                ));
            }
            if let Err(e) = format.check(&output, path) {
                let mut err = Error::new(
                    Op::Filter,
                    path,
                    ErrorKind::InvalidContent,
                    format!(
                        "the output of '{}' is not valid {format}: {}; the file is unchanged",
                        program(filter),
                        e.detail()
                    ),
                );
                if let Some((l, c)) = e.location() {
                    err = err.with_location(l, c);
                }
                return Err(err);
            }
            Ok((!unchanged).then_some(output))
        })?;
        Ok(if written {
            Edited::Written
        } else {
            Edited::Unchanged
        })
    }
}

fn program(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

/// Runs `cmd` with `input` on its stdin and returns its stdout, or an error if it did not exit
/// 0. Input is fed from a thread so that a filter that writes before it has read everything
/// cannot deadlock against us.
fn run_filter(cmd: &mut Command, input: &[u8], path: &Path) -> Result<Vec<u8>> {
    let prog = program(cmd);
    let failed = |why: String| {
        Error::new(
            Op::Filter,
            path,
            ErrorKind::FilterFailed,
            format!("{why}; the file is unchanged"),
        )
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run '{prog}': {}", describe(&e))))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut output = Vec::new();
    let read = std::thread::scope(|s| {
        s.spawn(move || {
            // A filter may exit without reading all of its input (EPIPE): that is its business;
            // its exit status decides.
            let _ = stdin.write_all(input);
        });
        stdout.read_to_end(&mut output)
    });
    let status = child
        .wait()
        .map_err(|e| failed(format!("cannot wait for '{prog}': {}", describe(&e))))?;
    if let Err(e) = read {
        return Err(failed(format!(
            "cannot read the output of '{prog}': {}",
            describe(&e)
        )));
    }
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        return Err(match (status.code(), status.signal()) {
            (Some(c), _) => failed(format!("'{prog}' exited with status {c}")),
            (None, Some(sig)) => failed(format!("'{prog}' was killed by signal {sig}")),
            _ => failed(format!("'{prog}' failed ({status})")),
        });
    }
    Ok(output)
}
