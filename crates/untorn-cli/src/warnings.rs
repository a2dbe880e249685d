//! The library's warnings on stderr, one line each (`untorn: MESSAGE field=value ...`): the
//! smallest `tracing` subscriber that does it. It is installed on every run of the command, so
//! it costs nothing to set up: no span registry, no layers, no allocation until a warning is
//! printed (the registry and formatting layer it replaces cost ~2% of an `untorn write`).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Prints the `untorn` target's events at WARN and above; everything else is off.
pub(crate) struct Warnings;

impl Warnings {
    fn wanted(meta: &Metadata<'_>) -> bool {
        *meta.level() <= Level::WARN
            && (meta.target() == "untorn" || meta.target().starts_with("untorn::"))
    }
}

impl Subscriber for Warnings {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if Self::wanted(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::WARN)
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        Self::wanted(meta)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let _ = std::io::stderr()
            .lock()
            .write_all(line_of(event).as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// The line printed for `event`, newline included.
fn line_of(event: &Event<'_>) -> String {
    let mut line = Line {
        message: String::new(),
        fields: String::new(),
    };
    event.record(&mut line);
    let mut out = format!("untorn: {}", line.message);
    if !line.fields.is_empty() {
        if !line.message.is_empty() {
            out.push(' ');
        }
        out.push_str(&line.fields);
    }
    out.push('\n');
    out
}

/// One event as text: the message, then the other fields as `name=value` (values in their
/// `Debug` form: strings quoted, `%`-fields as displayed), as `tracing-subscriber`'s default
/// field format writes them.
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let name = field.name().strip_prefix("r#").unwrap_or(field.name());
            let _ = write!(self.fields, "{name}={value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// `Warnings`, printing into `LINES` instead of stderr.
    struct Capture;
    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    impl Subscriber for Capture {
        fn enabled(&self, meta: &Metadata<'_>) -> bool {
            Warnings.enabled(meta)
        }
        fn new_span(&self, a: &Attributes<'_>) -> Id {
            Warnings.new_span(a)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            LINES.lock().unwrap().push(line_of(event));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn warnings_read_as_the_default_field_format_and_nothing_else_shows() {
        tracing::subscriber::with_default(Capture, || {
            let path = std::path::Path::new("events.jsonl");
            tracing::warn!(target: "untorn", path = %path.display(), valid_len = 4u64, reason = ?"Zeros", "cutting a torn tail before appending");
            tracing::warn!(target: "untorn", "reading 'x' without a lock");
            tracing::info!(target: "untorn", "not shown: below WARN");
            tracing::warn!(target: "other", "not shown: another target");
        });
        assert_eq!(
            *LINES.lock().unwrap(),
            [
                "untorn: cutting a torn tail before appending path=events.jsonl valid_len=4 \
                 reason=\"Zeros\"\n",
                "untorn: reading 'x' without a lock\n",
            ]
        );
    }
}
