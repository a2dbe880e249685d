//! untorn as a tool people already know (issue 17): installed with its man pages and
//! completions, machine-readable output (`--json`, parsed here with jq), an audit trail
//! (`--log-format json`), programs that can only write to a path (`write --exec`), and what a
//! person at a terminal sees (who holds a lock, a spinner), plus the friction a new user met.
//!
//! Needs jq, man (man-db), bash-completion and script (util-linux): `./scripts/test` installs
//! them; without them a test says SKIPPED (a failure under UNTORN_REQUIRE_ALL=1).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("untorn")
}

fn untorn(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether `tool` can run here; if not, says SKIPPED (and fails under UNTORN_REQUIRE_ALL=1).
fn have(tool: &str, test: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: {test}: {tool} is not installed (./scripts/test installs it)");
        assert!(
            std::env::var("UNTORN_REQUIRE_ALL").as_deref() != Ok("1"),
            "{test}: {tool} missing with UNTORN_REQUIRE_ALL=1"
        );
    }
    ok
}

/// `jq FILTER` over `input` (which must parse); its output.
fn jq(filter: &str, input: &[u8]) -> String {
    let mut c = Command::new("jq")
        .args(["-c", filter])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "jq {filter:?} on {:?}: {}",
        text(input),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Every line of `out` is one JSON object (as jq reads it).
fn each_line_an_object(out: &[u8]) -> usize {
    let n = text(out).lines().count();
    let types = jq("type", out);
    assert_eq!(types.lines().count(), n, "{}", text(out));
    assert!(types.lines().all(|t| t == "\"object\""), "{types}");
    n
}

// ---------------------------------------------------------------------------------------------
// Install: binary, man pages, completions
// ---------------------------------------------------------------------------------------------

#[test]
fn install_puts_the_binary_man_pages_and_completions_where_a_distribution_would() {
    let test = "install_puts_the_binary_man_pages_and_completions_where_a_distribution_would";
    if !have("man", test) || !have("bash", test) {
        return;
    }
    let completion_lib = Path::new("/usr/share/bash-completion/bash_completion");
    if !completion_lib.exists() {
        have("bash-completion-is-not-installed", test);
        return;
    }
    let prefix = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/install"))
        .arg("--prefix")
        .arg(prefix.path())
        .arg("--binary")
        .arg(bin())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let p = prefix.path();
    let installed = p.join("bin/untorn");
    let v = Command::new(&installed).arg("--version").output().unwrap();
    assert!(text(&v.stdout).starts_with("untorn "));

    // The man page renders, with the commands, the exit codes and examples.
    let page = p.join("share/man/man1/untorn.1");
    let man = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert!(man.status.success(), "man -l: {}", text(&man.stderr));
    let shown = text(&man.stdout);
    for want in [
        "SYNOPSIS",
        "COMMANDS",
        "untorn write",
        "untorn recover",
        "EXAMPLES",
        "EXIT STATUS",
        "no space left on device",
        "ENVIRONMENT",
        "UNTORN_LOG_FORMAT",
        "FILES",
    ] {
        assert!(shown.contains(want), "man untorn lacks {want:?}");
    }
    assert!(
        !text(&man.stderr).contains("warning"),
        "{}",
        text(&man.stderr)
    );
    // A page per command, found by man through MANPATH.
    let sub = Command::new("man")
        .arg("untorn-edit")
        .env("MANPATH", p.join("share/man"))
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    assert!(
        sub.status.success(),
        "man untorn-edit: {}",
        text(&sub.stderr)
    );
    assert!(text(&sub.stdout).contains("--default"));
    assert!(text(&sub.stdout).contains("EXAMPLES"));

    // The bash completion: found by bash-completion's loader in PREFIX/share (as it finds a
    // distribution's in /usr/share), and it completes commands and flags.
    let script = r#"
        source /usr/share/bash-completion/bash_completion
        __load_completion untorn 2>/dev/null || _comp_load untorn
        complete -p untorn >/dev/null || exit 3
        COMP_WORDS=(untorn rec); COMP_CWORD=1; COMP_LINE="untorn rec"; COMP_POINT=${#COMP_LINE}
        _untorn untorn rec untorn; echo "commands: ${COMPREPLY[*]}"
        COMP_WORDS=(untorn backups --js); COMP_CWORD=2; COMP_LINE="untorn backups --js"
        COMP_POINT=${#COMP_LINE}
        _untorn untorn --js backups; echo "flags: ${COMPREPLY[*]}"
    "#;
    let bash = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", script])
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", p.join("bin").display()))
        .env("HOME", p)
        .env("XDG_DATA_DIRS", p.join("share"))
        .output()
        .unwrap();
    let said = text(&bash.stdout);
    assert!(bash.status.success(), "{said} {}", text(&bash.stderr));
    assert!(said.contains("commands: recover"), "{said}");
    assert!(said.contains("flags: --json"), "{said}");
    // zsh and fish files are what those shells load.
    let zsh = fs::read_to_string(p.join("share/zsh/site-functions/_untorn")).unwrap();
    assert!(zsh.starts_with("#compdef untorn"), "{}", &zsh[..40]);
    let fish = fs::read_to_string(p.join("share/fish/vendor_completions.d/untorn.fish")).unwrap();
    assert!(fish.contains("complete -c untorn"));

    // And --uninstall removes what it put there.
    let un = Command::new(root.join("scripts/install"))
        .arg("--prefix")
        .arg(p)
        .arg("--uninstall")
        .output()
        .unwrap();
    assert!(un.status.success());
    assert!(!installed.exists() && !page.exists());
}

#[test]
fn generate_prints_a_man_page_and_completions() {
    let d = tempfile::tempdir().unwrap();
    let man = untorn(d.path(), &["generate", "man"]);
    assert!(man.status.success());
    let page = text(&man.stdout);
    assert!(
        page.starts_with(".ie") || page.starts_with(".TH"),
        "{}",
        &page[..60]
    );
    assert!(page.contains(".SH \"EXIT STATUS\"") || page.contains(".SH EXIT STATUS"));
    for (what, want) in [
        ("complete-bash", "_untorn()"),
        ("complete-zsh", "#compdef untorn"),
        ("complete-fish", "complete -c untorn"),
        ("complete-elvish", "untorn"),
    ] {
        let out = untorn(d.path(), &["generate", what]);
        assert!(out.status.success(), "{what}");
        assert!(text(&out.stdout).contains(want), "{what}");
    }
    let out = untorn(d.path(), &["generate", "man", "pages"]);
    assert!(out.status.success());
    assert!(d.path().join("pages/untorn.1").exists());
    assert!(d.path().join("pages/untorn-txn.1").exists());
    assert_eq!(
        untorn(d.path(), &["generate", "troff"]).status.code(),
        Some(2)
    );
}

// ---------------------------------------------------------------------------------------------
// --json
// ---------------------------------------------------------------------------------------------

#[test]
fn backups_json_has_the_documented_fields() {
    if !have("jq", "backups_json_has_the_documented_fields") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    for v in ["{\"v\": 1}", "{\"v\": 2}", "{\"v\": 3}"] {
        assert!(untorn(dir, &["write", "--backup", "s.json", v])
            .status
            .success());
    }
    // A backup that is not valid JSON (written over by another program).
    let names: Vec<String> = {
        let out = untorn(dir, &["backups", "--json", "s.json"]);
        assert!(out.status.success());
        assert_eq!(each_line_an_object(&out.stdout), 2);
        jq(".name", &out.stdout)
            .lines()
            .map(|l| l.trim_matches('"').to_string())
            .collect()
    };
    fs::write(dir.join(&names[1]), "{broken").unwrap();
    let out = untorn(dir, &["backups", "--json", "s.json"]);
    let o = &out.stdout;
    assert_eq!(
        jq("[.name, .valid, .integrity]", o)
            .lines()
            .collect::<Vec<_>>(),
        [
            format!("[\"{}\",true,\"whole\"]", names[0]),
            format!("[\"{}\",false,\"unverified\"]", names[1]),
        ]
    );
    // Every documented field, of the documented type.
    let types = jq(
        "[.name, .path, .time, .size, .valid, .reason, .line, .column, .integrity, \
         .integrity_reason] | map(type) | join(\",\")",
        o,
    );
    let rows: Vec<&str> = types.lines().collect();
    assert_eq!(
        rows[0],
        "\"string,string,string,number,boolean,null,null,null,string,null\""
    );
    assert_eq!(
        rows[1],
        "\"string,string,string,number,boolean,string,number,number,string,string\""
    );
    let time = jq(".time", o);
    let first = time.lines().next().unwrap();
    assert!(
        first.len() == 32 && first.ends_with("Z\"") && first.contains('T'),
        "{first}"
    );
}

#[test]
fn check_json_gives_the_verdict_and_keeps_the_exit_code() {
    if !have("jq", "check_json_gives_the_verdict_and_keeps_the_exit_code") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    assert!(untorn(dir, &["write", "ok.json", "{\"a\": 1}"])
        .status
        .success());
    fs::write(dir.join("bad.json"), "{\"a\":\n  oops}").unwrap();
    let out = untorn(dir, &["check", "--json", "ok.json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        jq(
            "[.path, .format, .valid, .integrity, .error_kind]",
            &out.stdout
        )
        .trim(),
        "[\"ok.json\",\"json\",true,\"whole\",null]"
    );
    let out = untorn(dir, &["check", "--json", "bad.json"]);
    assert_eq!(out.status.code(), Some(12));
    assert_eq!(
        jq(
            "[.valid, .line, .column, .error_kind, .integrity]",
            &out.stdout
        )
        .trim(),
        "[false,2,3,\"invalid_content\",\"unverified\"]"
    );
    assert!(jq(".message", &out.stdout).contains("bad.json"));
    let out = untorn(dir, &["check", "--json", "missing.json"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        jq("[.valid, .error_kind]", &out.stdout).trim(),
        "[false,\"not_found\"]"
    );
}

#[test]
fn clean_and_recover_json_list_each_temp_and_action() {
    if !have("jq", "clean_and_recover_json_list_each_temp_and_action") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("a.json"), "{}").unwrap();
    fs::write(dir.join(".a.json.untorn-0123abcd.tmp"), "left by a crash").unwrap();
    let out = untorn(
        dir,
        &["clean", "--json", "--older-than", "0s", "--dry-run", "."],
    );
    assert!(out.status.success());
    assert_eq!(each_line_an_object(&out.stdout), 1);
    assert_eq!(
        jq(
            "[.action, .removed, .target, .size, (.age_s | type)]",
            &out.stdout
        )
        .trim(),
        "[\"would_remove\",false,\"a.json\",15,\"number\"]"
    );
    let out = untorn(dir, &["clean", "--json", "--older-than", "1h", "."]);
    assert_eq!(
        jq("[.action, .removed, .reason]", &out.stdout).trim(),
        "[\"keep\",false,\"too_young\"]"
    );
    // recover: --dry-run says what it would do, and does nothing.
    let out = untorn(dir, &["recover", "--json", "--dry-run", "."]);
    assert!(out.status.success());
    assert_eq!(
        jq("[.action, .path, .dry_run]", &out.stdout).trim(),
        "[\"remove_temp\",\".a.json.untorn-0123abcd.tmp\",true]"
    );
    assert!(dir.join(".a.json.untorn-0123abcd.tmp").exists());
    let out = untorn(dir, &["recover", "--json", "."]);
    assert_eq!(jq(".dry_run", &out.stdout).trim(), "false");
    assert!(!dir.join(".a.json.untorn-0123abcd.tmp").exists());
    // Nothing to do: no line at all.
    let out = untorn(dir, &["recover", "--json", "."]);
    assert!(out.status.success() && out.stdout.is_empty());
    // A file with no valid backup: the action, and exit 12 as without --json.
    fs::write(dir.join("b.json"), "{").unwrap();
    let out = untorn(
        dir,
        &[
            "recover",
            "--json",
            "--restore-invalid",
            "--format",
            "json",
            ".",
        ],
    );
    assert_eq!(out.status.code(), Some(12));
    assert_eq!(
        jq(".action", &out.stdout).trim(),
        "\"invalid_without_backup\""
    );
}

#[test]
fn tail_json_wraps_each_record() {
    if !have("jq", "tail_json_wraps_each_record") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    assert!(untorn(dir, &["append", "p.log", "step \"1\"", "step 2"])
        .status
        .success());
    let out = untorn(dir, &["tail", "--json", "p.log"]);
    assert_eq!(each_line_an_object(&out.stdout), 2);
    assert_eq!(
        jq(".record", &out.stdout),
        "\"step \\\"1\\\"\"\n\"step 2\"\n"
    );
    assert!(untorn(dir, &["append", "--jsonl", "e.jsonl", "{\"n\": 1}"])
        .status
        .success());
    let out = untorn(dir, &["tail", "--json", "--jsonl", "e.jsonl"]);
    assert_eq!(jq(".record.n", &out.stdout).trim(), "1");
}

#[test]
fn txn_json_lists_what_changed() {
    if !have("jq", "txn_json_lists_what_changed") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("new.json"), "{\"v\": 2}").unwrap();
    fs::write(dir.join("old.txt"), "x").unwrap();
    fs::write(dir.join("draft.md"), "x").unwrap();
    let out = untorn(
        dir,
        &[
            "txn",
            "--json",
            "put",
            "a.json=new.json",
            "rm",
            "old.txt",
            "mv",
            "draft.md=final.md",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        jq("[.action, .path, .to]", &out.stdout),
        "[\"wrote\",\"a.json\",null]\n[\"removed\",\"old.txt\",null]\n\
         [\"renamed\",\"draft.md\",\"final.md\"]\n"
    );
}

// ---------------------------------------------------------------------------------------------
// The audit trail
// ---------------------------------------------------------------------------------------------

/// A flag beats its environment variable, whether given before the command or after it; the
/// variable alone still turns the trace on.
#[test]
fn a_log_flag_beats_its_environment_variable() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let run = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .current_dir(dir)
            .env("UNTORN_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for args in [
        &["--log-format", "text", "write", "f", "x"][..],
        &["write", "--log-format", "text", "f", "x"],
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            out.stderr.is_empty(),
            "{args:?}: the flag asked for no trace, the environment's json won: {}",
            text(&out.stderr)
        );
    }
    let out = run(&["write", "f", "x"]);
    assert!(text(&out.stderr).starts_with('{'), "{}", text(&out.stderr));
}

#[test]
fn log_format_json_is_an_audit_trail() {
    if !have("jq", "log_format_json_is_an_audit_trail") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // --log-format json: one JSON object per event on stderr, with the command and the pid.
    let out = untorn(
        dir,
        &["--log-format", "json", "write", "s.json", "{\"n\": 1}"],
    );
    assert!(out.status.success());
    let err = out.stderr;
    each_line_an_object(&err);
    let write = jq(
        "select(.op == \"write\") | [.path, .bytes, .outcome, .span.command]",
        &err,
    );
    assert_eq!(write.trim(), "[\"s.json\",8,\"committed\",\"write\"]");
    assert!(jq("select(.op == \"write\") | .duration_us | type", &err).contains("number"));
    assert!(jq("select(.op == \"command\") | .span.pid | type", &err).contains("number"));
    // UNTORN_LOG_FORMAT and UNTORN_LOG_FILE, for scripts that cannot change their command
    // lines: events of several commands appended to one file; a lock's wait; a failure's
    // error kind and exit code.
    let log = dir.join("audit.jsonl");
    let run = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .current_dir(dir)
            .env("UNTORN_LOG_FORMAT", "json")
            .env("UNTORN_LOG_FILE", &log)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["edit", "s.json", "--", "jq", ".n += 1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "the trace went to the file");
    let out = run(&["write", "--no-clobber", "s.json", "x"]);
    assert_eq!(out.status.code(), Some(7));
    // The plainest command line (the one parsed without clap) reads the variables too.
    let out = run(&["write", "t.json", "{}"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "the trace went to the file");
    let all = fs::read(&log).unwrap();
    each_line_an_object(&all);
    assert!(jq("select(.op == \"lock\") | .wait_us | type", &all).contains("number"));
    assert_eq!(
        jq(
            "select(.op == \"command\") | [.span.command, .outcome, .exit, .error_kind]",
            &all
        ),
        "[\"edit\",\"ok\",0,null]\n[\"write\",\"failed\",7,\"already_exists\"]\n\
         [\"write\",\"ok\",0,null]\n"
    );
    let pids = jq("select(.op == \"command\") | .span.pid", &all);
    let pids: Vec<&str> = pids.lines().collect();
    assert_ne!(pids[0], pids[1]);
}

#[test]
fn verbose_lines_have_no_level_or_timestamp() {
    let d = tempfile::tempdir().unwrap();
    let out = untorn(d.path(), &["-v", "write", "f", "x"]);
    let err = text(&out.stderr);
    assert!(err.lines().all(|l| l.starts_with("trace: ")), "{err}");
    assert!(!err.contains("DEBUG") && !err.contains(" INFO "), "{err}");
    assert!(
        !err.contains("T1") && !err.contains("Z "),
        "a timestamp? {err}"
    );
}

// ---------------------------------------------------------------------------------------------
// write --exec
// ---------------------------------------------------------------------------------------------

#[test]
fn exec_commits_what_the_program_wrote_or_nothing() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("r.json"), "{\"old\": true}").unwrap();
    // The program writes to the path; it has the target's name (same extension).
    let out = untorn(
        dir,
        &[
            "write",
            "--exec",
            "r.json",
            "--",
            "sh",
            "-c",
            "case \"$1\" in */r.json) echo '{\"new\": true}' > \"$1\";; esac",
            "sh",
            "{}",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        fs::read_to_string(dir.join("r.json")).unwrap(),
        "{\"new\": true}\n"
    );
    // A program that fails: exit 13, the file unchanged, nothing left.
    let out = untorn(
        dir,
        &[
            "write",
            "--exec",
            "r.json",
            "--",
            "sh",
            "-c",
            "echo x > \"$1\"; exit 4",
            "sh",
            "{}",
        ],
    );
    assert_eq!(out.status.code(), Some(13));
    assert!(
        text(&out.stderr).contains("exited with 4"),
        "{}",
        text(&out.stderr)
    );
    // Invalid output: exit 12. Nothing written at all: 13. An option in another argument.
    let out = untorn(
        dir,
        &["write", "--exec", "r.json", "--", "cp", "/dev/null", "{}"],
    );
    assert_eq!(out.status.code(), Some(12), "{}", text(&out.stderr));
    let out = untorn(dir, &["write", "--exec", "r.json", "--", "true", "{}"]);
    assert_eq!(out.status.code(), Some(13), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("did not write"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(dir.join("r.json")).unwrap(),
        "{\"new\": true}\n"
    );
    // --no-check, and a placeholder inside an argument.
    let out = untorn(
        dir,
        &[
            "write",
            "--exec",
            "--no-check",
            "r.json",
            "--",
            "sh",
            "-c",
            "echo raw > \"${1#--out=}\"",
            "sh",
            "--out={}",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(dir.join("r.json")).unwrap(), "raw\n");
    // No {} in the command: a usage error.
    assert_eq!(
        untorn(dir, &["write", "--exec", "r.json", "--", "true"])
            .status
            .code(),
        Some(2)
    );
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["r.json"], "only the file, no temp and no directory");
}

#[test]
fn exec_passes_a_signal_on_and_changes_nothing() {
    // SIGTERM to untorn alone (not to its process group): the program gets it too, untorn
    // exits 143 as soon as it ends, the file is unchanged and the private directory gone.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("out.txt"), "old").unwrap();
    let child = Command::new(bin())
        .args([
            "write",
            "--exec",
            "out.txt",
            "--",
            "sh",
            "-c",
            "echo new > \"$1\"; exec sleep 30",
            "sh",
            "{}",
        ])
        .current_dir(dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the program has written its output (it then sleeps).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let written = fs::read_dir(dir).unwrap().filter_map(|e| e.ok()).any(|e| {
            e.path().is_dir() && fs::read(e.path().join("out.txt")).is_ok_and(|c| c == b"new\n")
        });
        if written {
            break;
        }
        assert!(Instant::now() < deadline, "the program never wrote");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        text(&out.stderr).contains("unchanged"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fs::read_to_string(dir.join("out.txt")).unwrap(), "old");
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["out.txt"]);
}

#[test]
fn exec_keeps_mode_and_backups_like_every_write() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("t.txt"), "v1").unwrap();
    fs::set_permissions(dir.join("t.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    let out = untorn(
        dir,
        &[
            "write",
            "--exec",
            "--backup=2",
            "t.txt",
            "--",
            "sh",
            "-c",
            "printf v2 > \"$1\"",
            "sh",
            "{}",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(dir.join("t.txt")).unwrap(), "v2");
    let mode = fs::metadata(dir.join("t.txt"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640);
    let backups = untorn(dir, &["backups", "t.txt"]);
    assert_eq!(text(&backups.stdout).lines().count(), 1);
    // And the checksum: check says whole.
    let out = untorn(dir, &["check", "--format", "raw", "t.txt"]);
    assert!(out.status.success());
}

// ---------------------------------------------------------------------------------------------
// At a terminal: who holds the lock; a spinner
// ---------------------------------------------------------------------------------------------

/// Runs `cmd` (a shell command line) under `script`, on a pseudo-terminal; its output.
fn on_a_terminal(cmd: &str, dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut c = Command::new("script");
    c.args(["-qefc", cmd, "/dev/null"])
        .current_dir(dir)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (out.status.code(), text(&out.stdout))
}

#[test]
fn a_wait_for_a_held_lock_says_who_holds_it_on_a_terminal() {
    let test = "a_wait_for_a_held_lock_says_who_holds_it_on_a_terminal";
    if !have("script", test) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("f.json"), "{}").unwrap();
    let b = bin();
    let b = b.to_str().unwrap();
    // `untorn lock f -- untorn edit f`: the inner edit waits on its own parent's lock. It
    // says so (within a second or so), and gives up at its --timeout.
    let started = Instant::now();
    let (code, said) = on_a_terminal(
        &format!("{b} lock f.json -- {b} edit --timeout 3s f.json -- cat"),
        dir,
        &[],
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(code, Some(11), "{said}");
    assert!(said.contains("waiting for the lock"), "{said}");
    assert!(said.contains("held by pid"), "{said}");
    assert!(
        said.contains("lock f.json"),
        "the holder's command line: {said}"
    );
    assert!(said.contains("started this untorn"), "{said}");
    assert!(said.contains("Ctrl-C"), "{said}");
    // Without a terminal, nothing more than before.
    let out = Command::new(b)
        .args([
            "lock",
            "f.json",
            "--",
            b,
            "edit",
            "--timeout",
            "1500ms",
            "f.json",
            "--",
            "cat",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11));
    assert!(
        !text(&out.stderr).contains("waiting for"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_slow_backup_shows_a_spinner_on_a_terminal_only() {
    let test = "a_slow_backup_shows_a_spinner_on_a_terminal_only";
    if !have("script", test) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("big.img"), vec![7u8; 4 << 20]).unwrap();
    let b = bin();
    let b = b.to_str().unwrap();
    let (code, said) = on_a_terminal(
        &format!("{b} backup big.img"),
        dir,
        &[("UNTORN_PROGRESS_DELAY_MS", "0")],
    );
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("backing up 'big.img' (4.0 MiB)"), "{said:?}");
    let out = Command::new(b)
        .args(["backup", "big.img"])
        .current_dir(dir)
        .env("UNTORN_PROGRESS_DELAY_MS", "0")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

// ---------------------------------------------------------------------------------------------
// Friction a new user met
// ---------------------------------------------------------------------------------------------

#[test]
fn recover_dry_run_creates_nothing() {
    // An orphaned temp and an invalid file with a valid backup: `recover --dry-run` reports and
    // leaves the directory byte for byte as it was (not even a lock file). (With a crashed
    // transaction: txn_safety.rs.)
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("bad.json"), "{}").unwrap();
    let out = untorn(dir, &["write", "--backup", "bad.json", "{\"v\": 2}"]);
    assert!(out.status.success());
    fs::write(dir.join("bad.json"), "{").unwrap();
    fs::write(dir.join(".bad.json.untorn-00000001.tmp"), "x").unwrap();
    let before = listing(dir);
    for args in [
        &["recover", "--dry-run", "."][..],
        &[
            "recover",
            "--dry-run",
            "--json",
            "--restore-invalid",
            "--format",
            "json",
            ".",
        ][..],
    ] {
        let out = untorn(dir, args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(listing(dir), before, "{args:?} changed the directory");
    }
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn messages_name_the_flag_or_the_source() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // edit of a missing file names --default.
    let out = untorn(dir, &["edit", "x.json", "--", "cat"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("--default"),
        "{}",
        text(&out.stderr)
    );
    // check of a missing file, and of bad UTF-8, say so plainly.
    let out = untorn(dir, &["check", "nope.txt"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        text(&out.stderr),
        "untorn: cannot check 'nope.txt': no such file or directory\n"
    );
    fs::write(dir.join("bad.txt"), b"ok\n\xff").unwrap();
    let out = untorn(dir, &["check", "bad.txt"]);
    assert_eq!(out.status.code(), Some(12));
    assert_eq!(
        text(&out.stderr),
        "untorn: 'bad.txt' is not valid UTF-8 at line 2 column 1\n"
    );
    // txn with invalid new content names the source (and the target).
    fs::write(dir.join("src.json"), "{oops").unwrap();
    let out = untorn(dir, &["txn", "put", "a.json=src.json"]);
    assert_eq!(out.status.code(), Some(12));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot parse 'src.json' as JSON")
            && err.contains("the new content of 'a.json'"),
        "{err}"
    );
    assert!(!dir.join("a.json").exists());
    // append of a record with a newline inside: a usage error that says what to do.
    let out = untorn(dir, &["append", "log", "one\ntwo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("own"), "{}", text(&out.stderr));
    assert!(!dir.join("log").exists());
    // ... but a record may end in its newline.
    assert!(untorn(dir, &["append", "log", "one\n"]).status.success());
    assert_eq!(fs::read_to_string(dir.join("log")).unwrap(), "one\n");
}

#[test]
fn read_without_a_lock_says_so() {
    // A directory where the lock file cannot be created: read works, with a warning.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("s.json"), "{}").unwrap();
    let ro = dir.join("ro");
    fs::create_dir(&ro).unwrap();
    fs::write(ro.join("s.json"), "{\"ro\": 1}").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    // As root, a mode does not stop us: run as nobody via setpriv where we are root.
    let root = rustix::process::geteuid().is_root();
    let mut c = if root {
        if !have("setpriv", "read_without_a_lock_says_so") {
            return;
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin());
        c
    } else {
        Command::new(bin())
    };
    let out = c
        .args(["read", "ro/s.json"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "{\"ro\": 1}");
    assert!(
        text(&out.stderr).contains("without a lock"),
        "{}",
        text(&out.stderr)
    );
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn edit_warns_when_yaml_turns_into_json() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("q.yaml"), "jobs:\n  - test\n").unwrap();
    // What Debian's yq (a jq wrapper) prints without -y: JSON, which is valid YAML.
    let out = untorn(
        dir,
        &[
            "edit",
            "q.yaml",
            "--",
            "sh",
            "-c",
            "echo '{\"jobs\": [\"test\", \"build\"]}'",
        ],
    );
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("warning") && err.contains("-y"), "{err}");
    // YAML in, YAML out: no warning.
    let out = untorn(
        dir,
        &[
            "edit",
            "q.yaml",
            "--",
            "sh",
            "-c",
            "printf 'jobs:\\n  - a\\n'",
        ],
    );
    assert!(out.status.success());
    let out = untorn(dir, &["edit", "q.yaml", "--", "sed", "s/a/b/"]);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn backup_keeps_the_newest_n_and_restore_prunes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("f"), "x").unwrap();
    for _ in 0..4 {
        assert!(untorn(dir, &["backup", "--keep", "3", "f"])
            .status
            .success());
    }
    let count = || text(&untorn(dir, &["backups", "f"]).stdout).lines().count();
    assert_eq!(count(), 3);
    for _ in 0..3 {
        assert!(untorn(dir, &["restore", "f"]).status.success());
    }
    assert_eq!(
        count(),
        6,
        "each restore keeps the version it replaced, and prunes nothing"
    );
    let help = text(&untorn(dir, &["backup", "-h"]).stdout);
    assert!(help.contains("keep the newest N"), "{help}");
}
