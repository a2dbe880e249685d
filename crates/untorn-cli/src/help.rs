//! The text around the flags: each command's examples, the exit codes, the environment. One
//! table each, used by `--help` (here) and by the man pages (`generate.rs`).

use crate::exit;

/// Help is wrapped to this many columns at most (and to the terminal, if narrower).
pub const WIDTH: usize = 100;

/// One example: the command line, and what it does.
pub type Example = (&'static str, &'static str);

/// Examples of `untorn --help` (`None`) and of each command.
pub const EXAMPLES: &[(Option<&str>, &[Example])] = &[
    (
        None,
        &[
            (
                "untorn write state.json '{\"count\": 1}'",
                "replace state.json with that text",
            ),
            (
                "jq '.count += 1' state.json | untorn write state.json",
                "safe: the file is replaced once all input is read",
            ),
            (
                "untorn edit state.json -- jq '.count += 1'",
                "locked read-modify-write through any filter",
            ),
            (
                "untorn read state.json --default '{}'",
                "print it under a shared lock",
            ),
            (
                "untorn lock state.json -- ./deploy.sh",
                "run a command holding state.json.lock",
            ),
            (
                "untorn append --jsonl events.jsonl '{\"event\": \"start\"}'",
                "a durable log record",
            ),
            (
                "untorn txn put a.json=new_a.json rm old.txt",
                "several files, all or nothing",
            ),
            (
                "untorn recover ./data --restore-invalid --format json",
                "after a crash: one command",
            ),
        ],
    ),
    (
        Some("write"),
        &[
            (
                "untorn write state.json '{\"count\": 1}'",
                "replace (or create) state.json with that text",
            ),
            (
                "jq '.count += 1' state.json | untorn write state.json",
                "safe: the file is replaced once all input is read",
            ),
            (
                "untorn write --mode 600 token.txt < new-token",
                "the file gets mode 0600",
            ),
            (
                "untorn write --no-clobber run.pid \"$$\"",
                "exit 7 if run.pid already exists",
            ),
            (
                "untorn write --backup=5 state.json \"$new\"",
                "keep the last 5 replaced versions",
            ),
            (
                "untorn write --exec report.pdf -- pandoc in.md -o {}",
                "a program that can only write to a path",
            ),
            (
                "untorn write --exec db.sqlite -- sqlite3 live.db '.backup {}'",
                "a consistent copy, replaced atomically",
            ),
        ],
    ),
    (
        Some("lock"),
        &[
            (
                "untorn lock state.json -- ./deploy.sh",
                "run a command holding state.json.lock",
            ),
            (
                "untorn lock --timeout 5s state.json -- ./deploy.sh",
                "give up (exit 11) after 5 s",
            ),
            (
                "untorn lock -n cron.lock -- ./job.sh",
                "skip (exit 10) if another run holds it",
            ),
            (
                "untorn lock --shared state.json -- cat state.json",
                "many readers at once, no writer",
            ),
            (
                "flock state.json.lock ./other-script.sh",
                "util-linux flock takes the same lock",
            ),
        ],
    ),
    (
        Some("edit"),
        &[
            (
                "untorn edit state.json -- jq '.count += 1'",
                "locked read-modify-write through jq",
            ),
            (
                "untorn edit --default '{\"count\": 0}' state.json -- jq '.count += 1'",
                "start a missing file",
            ),
            (
                "untorn edit queue.yaml -- yq '.jobs += [\"build\"]'",
                "mikefarah's yq (v4) prints YAML",
            ),
            (
                "untorn edit queue.yaml -- yq -y '.jobs += [\"build\"]'",
                "Debian's yq (a jq wrapper) needs -y for YAML",
            ),
            (
                "untorn edit notes.txt -- sed 's/draft/final/'",
                ".txt: raw, nothing to check",
            ),
            (
                "untorn edit --backup state.json -- jq 'del(.old)'",
                "keep the replaced version as a backup",
            ),
        ],
    ),
    (
        Some("read"),
        &[
            ("untorn read state.json", "print it under a shared lock"),
            (
                "untorn read state.json --default '{}'",
                "print {} if it does not exist",
            ),
            (
                "untorn read --timeout 2s state.json | jq .count",
                "wait at most 2 s for a writer",
            ),
        ],
    ),
    (
        Some("append"),
        &[
            (
                "untorn append progress.log \"step 3 done\"",
                "one line, durable when untorn exits 0",
            ),
            (
                "untorn append --jsonl events.jsonl '{\"event\": \"start\"}'",
                "a record checked as JSON",
            ),
            (
                "some-tool | untorn append --jsonl events.jsonl",
                "each line of standard input a record",
            ),
        ],
    ),
    (
        Some("repair"),
        &[
            (
                "untorn repair --jsonl events.jsonl",
                "cut a torn tail back to the last record",
            ),
            (
                "untorn repair progress.log",
                "a plain log: only zeros at the end are cut",
            ),
        ],
    ),
    (
        Some("tail"),
        &[
            (
                "untorn tail -n 20 --jsonl events.jsonl",
                "the last 20 complete records",
            ),
            (
                "untorn tail --json progress.log | jq -r .record",
                "records as JSON strings",
            ),
        ],
    ),
    (
        Some("backup"),
        &[
            (
                "untorn backup state.json",
                "take a backup now; keep the newest 5",
            ),
            ("untorn backup --keep 20 big.db", "keep the newest 20"),
        ],
    ),
    (
        Some("backups"),
        &[
            (
                "untorn backups state.json",
                "name, time, size, valid?, whole? (newest first)",
            ),
            (
                "untorn backups --json state.json | jq -r 'select(.valid) | .name'",
                "the valid ones",
            ),
        ],
    ),
    (
        Some("restore"),
        &[
            ("untorn restore state.json", "from the newest backup"),
            (
                "untorn restore state.json --nth 2",
                "from the second newest",
            ),
            (
                "untorn restore state.json --from state.json.20261122T031500.123456789Z.bak",
                "from this one",
            ),
        ],
    ),
    (
        Some("check"),
        &[
            (
                "untorn check state.json",
                "exit 0, or 12 with line and column",
            ),
            (
                "untorn check --format yaml queue.txt",
                "judge it as YAML whatever its name",
            ),
            (
                "untorn check --json config.toml | jq .valid",
                "the verdict as JSON",
            ),
        ],
    ),
    (
        Some("clean"),
        &[
            (
                "untorn clean ./data --dry-run",
                "report orphaned temps, remove nothing",
            ),
            (
                "untorn clean ./data --older-than 10m",
                "remove those older than 10 minutes",
            ),
        ],
    ),
    (
        Some("recover"),
        &[
            (
                "untorn recover ./data --dry-run",
                "print the plan; change nothing",
            ),
            (
                "untorn recover ./data --restore-invalid --format json",
                "and restore broken *.json",
            ),
            (
                "untorn recover --json ./data | jq -c 'select(.action == \"restore\")'",
                "as JSON",
            ),
        ],
    ),
    (
        Some("txn"),
        &[
            (
                "untorn txn put a.json=new_a.json put b.yaml=new_b.yaml rm old.txt",
                "all or nothing",
            ),
            (
                "untorn txn mv draft.md=final.md put index.json=- < index.json.new",
                "- is standard input",
            ),
            (
                "untorn txn --manifest changes.txt",
                "one change per line, # comments",
            ),
        ],
    ),
    (
        Some("generate"),
        &[
            ("untorn generate man | man -l -", "read the man page"),
            (
                "untorn generate man ./man1",
                "untorn.1 and a page per command",
            ),
            (
                "untorn generate complete-bash > ~/.local/share/bash-completion/completions/untorn",
                "bash",
            ),
            (
                "untorn generate complete-zsh > ~/.zfunc/_untorn",
                "zsh (with ~/.zfunc in $fpath)",
            ),
            (
                "untorn generate complete-fish > ~/.config/fish/completions/untorn.fish",
                "fish",
            ),
        ],
    ),
];

/// The environment variables untorn reads.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "UNTORN_LOG_FORMAT",
        "text or json: as --log-format (json turns the trace on)",
    ),
    (
        "UNTORN_LOG_FILE",
        "as --log-file: append the trace to this file",
    ),
    (
        "UNTORN_TRUST_USERS",
        "users (names or uids, comma-separated) trusted as with --trust-user",
    ),
];

/// The examples of `cmd` (`None`: untorn itself).
pub fn examples(cmd: Option<&str>) -> &'static [Example] {
    EXAMPLES
        .iter()
        .find(|(c, _)| *c == cmd)
        .map(|(_, e)| *e)
        .unwrap_or(&[])
}

/// Rows of a two-column list, the second column aligned; a first column too wide for that
/// goes on a line of its own, with the second on the next line.
fn columns(rows: &[(String, String)], indent: usize) -> String {
    const MAX_FIRST: usize = 46;
    let col = rows
        .iter()
        .map(|(a, _)| a.chars().count())
        .filter(|&n| n <= MAX_FIRST)
        .max()
        .unwrap_or(0)
        + indent
        + 2;
    let mut s = String::new();
    for (a, b) in rows {
        let pad = " ".repeat(indent);
        let n = a.chars().count() + indent;
        if n + 2 <= col {
            s.push_str(&format!("{pad}{a}{}", " ".repeat(col - n)));
            s.push_str(&wrap(b, col, col));
        } else {
            s.push_str(&format!("{pad}{a}\n{}", " ".repeat(col)));
            s.push_str(&wrap(b, col, col));
        }
        s.push('\n');
    }
    s
}

/// `text` wrapped to [`WIDTH`], the first line starting at column `first`, the others indented
/// by `indent`.
pub fn wrap(text: &str, first: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut col = first;
    let mut empty = true;
    for word in text.split_whitespace() {
        let w = word.chars().count();
        if !empty && col + 1 + w > WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
            empty = true;
        }
        if !empty {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += w;
        empty = false;
    }
    out
}

fn examples_text(cmd: Option<&str>) -> String {
    let rows: Vec<(String, String)> = examples(cmd)
        .iter()
        .map(|(c, w)| (c.to_string(), w.to_string()))
        .collect();
    format!("Examples:\n{}", columns(&rows, 2))
}

/// `-h`: the examples of `cmd`.
pub fn after_help(cmd: Option<&str>) -> String {
    let mut s = examples_text(cmd);
    match cmd {
        None => s.push_str(
            "\n`untorn COMMAND --help` shows a command's flags and examples; `untorn --help`\n\
             the exit codes; `man untorn` all of it.",
        ),
        Some(_) => s.push_str("\nExit codes: see `untorn --help` or `man untorn`."),
    }
    s
}

/// `--help`: the examples of `cmd`, and for untorn itself the exit codes and environment.
pub fn after_long_help(cmd: Option<&str>) -> String {
    let mut s = examples_text(cmd);
    match cmd {
        None => {
            s.push('\n');
            s.push_str(&exit_codes_text());
            s.push_str("\nEnvironment:\n");
            let rows: Vec<(String, String)> = ENVIRONMENT
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            s.push_str(&columns(&rows, 2));
        }
        Some(_) => s.push_str(
            "\nExit codes: 0 on success; the others are listed by `untorn --help` and\n\
             `man untorn` (they are the same for every command).",
        ),
    }
    s.trim_end().to_string()
}

/// The exit-code table, wrapped.
pub fn exit_codes_text() -> String {
    let rows: Vec<(String, String)> = exit::TABLE
        .iter()
        .map(|(c, w)| (format!("{c:>3}"), w.to_string()))
        .collect();
    format!("Exit codes:\n{}", columns(&rows, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_examples_and_each_names_untorn() {
        use clap::CommandFactory;
        let cli = crate::args::Cli::command();
        for sub in cli.get_subcommands() {
            let ex = examples(Some(sub.get_name()));
            assert!(!ex.is_empty(), "no examples for {}", sub.get_name());
        }
        for (cmd, ex) in EXAMPLES {
            for (line, what) in *ex {
                assert!(
                    line.contains("untorn") || line.starts_with("flock"),
                    "{line}"
                );
                assert!(!what.is_empty());
                if let Some(c) = cmd {
                    assert!(
                        line.contains(&format!("untorn {c}")) || line.starts_with("flock"),
                        "an example of {c} that does not run it: {line}"
                    );
                }
            }
        }
    }

    #[test]
    fn columns_align_and_wrap() {
        let rows = vec![
            ("short".to_string(), "a".to_string()),
            ("x".repeat(60), "b".to_string()),
        ];
        let s = columns(&rows, 2);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "  short  a");
        assert_eq!(lines[1], format!("  {}", "x".repeat(60)));
        assert_eq!(lines[2], "         b");
        let long = "word ".repeat(40);
        for l in wrap(long.trim(), 10, 10).lines() {
            assert!(l.len() <= WIDTH);
        }
    }
}
