//! `untorn lock`, `untorn edit` and `untorn read`, run as a user would run them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn untorn() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_untorn"))
}

fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = format!("SKIPPED: {tool} is not installed (./scripts/test installs it)\n");
        let _ = std::io::stderr().write_all(msg.as_bytes());
        if std::env::var_os("UNTORN_REQUIRE_ALL").is_some_and(|v| v == "1") {
            panic!("{tool} missing and UNTORN_REQUIRE_ALL=1");
        }
    }
    ok
}

fn assert_no_leftovers(dir: &Path) {
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| untorn::temp_file_target(n).is_some())
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

fn run(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(untorn())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn count(path: &Path) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    v["count"].as_u64().unwrap()
}

/// Starts `untorn lock FILE -- sleep 30` and waits until it holds the lock. The caller kills
/// and waits for it.
#[allow(clippy::zombie_processes)]
fn hold(dir: &Path, file: &str) -> std::process::Child {
    let mut child = Command::new(untorn())
        .args(["lock", file, "--", "sleep", "30"])
        .current_dir(dir)
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        let free = run(&["lock", "-n", file, "--", "true"], dir)
            .status
            .success();
        if !free {
            return child;
        }
        if t.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the holder never got the lock");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

const PROCS: usize = 8;
const EACH: usize = 500;

#[test]
fn edit_with_jq_from_8_processes_is_exact() {
    if !have("jq") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("counter.json"), "{\"count\": 0}\n").unwrap();
    let u = untorn();
    let script = format!(
        "for i in $(seq {EACH}); do '{}' edit counter.json -- jq '.count += 1' || exit 1; done",
        u.display()
    );
    let kids: Vec<_> = (0..PROCS)
        .map(|_| {
            Command::new("sh")
                .args(["-c", &script])
                .current_dir(d.path())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    assert_eq!(count(&d.path().join("counter.json")), (PROCS * EACH) as u64);
    assert_no_leftovers(d.path());
}

#[test]
fn edit_and_flock_1_users_exclude_each_other() {
    if !have("jq") || !have("flock") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("counter.json"), "{\"count\": 0}\n").unwrap();
    let u = untorn();
    let via_untorn = format!(
        "for i in $(seq {EACH}); do '{}' edit counter.json -- jq '.count += 1' || exit 1; done",
        u.display()
    );
    // The seeds' shell convention: flock(1) on FILE.lock around a read-modify-write.
    let via_flock = format!(
        "for i in $(seq {EACH}); do flock counter.json.lock sh -c \
         \"jq '.count += 1' counter.json | '{}' write counter.json\" || exit 1; done",
        u.display()
    );
    let kids: Vec<_> = (0..PROCS)
        .map(|i| {
            let s = if i % 2 == 0 { &via_untorn } else { &via_flock };
            Command::new("sh")
                .args(["-c", s])
                .current_dir(d.path())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    assert_eq!(count(&d.path().join("counter.json")), (PROCS * EACH) as u64);
}

#[test]
fn a_held_lock_times_out_in_about_the_time_asked() {
    let d = tempfile::tempdir().unwrap();
    let mut holder = hold(d.path(), "state.json");
    let t = Instant::now();
    let out = run(
        &["lock", "--timeout", "0.2s", "state.json", "--", "true"],
        d.path(),
    );
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(11), "{out:?}");
    assert!(
        // The upper bound allows for starting a process on a loaded machine (the jq tests of
        // this file run beside it).
        took >= Duration::from_millis(200) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("untorn: cannot lock 'state.json.lock': timed out after 2"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "printed once: {err}");

    let out = run(
        &["edit", "--timeout", "0.2s", "state.json", "--", "cat"],
        d.path(),
    );
    assert_eq!(out.status.code(), Some(11));
    let out = run(&["lock", "-n", "state.json", "--", "true"], d.path());
    assert_eq!(out.status.code(), Some(10));
    let out = run(
        &["lock", "-n", "-E", "42", "state.json", "--", "true"],
        d.path(),
    );
    assert_eq!(out.status.code(), Some(42));
    let out = run(
        &["read", "--nonblock", "state.json", "--default", "x"],
        d.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(10),
        "a read waits for the exclusive holder"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn a_killed_holder_releases_the_lock_at_once() {
    let d = tempfile::tempdir().unwrap();
    let mut holder = hold(d.path(), "state.json");
    holder.kill().unwrap(); // SIGKILL: no cleanup code runs
    holder.wait().unwrap();
    let t = Instant::now();
    let out = run(
        &["lock", "--timeout", "5s", "state.json", "--", "true"],
        d.path(),
    );
    assert!(out.status.success(), "{out:?}");
    // Well under the 5 s timeout: at once, allowing for process start-up on a loaded machine.
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    // The lock file stays (never deleted), and a plain file beside it is all there is.
    assert!(d.path().join("state.json.lock").exists());
}

#[test]
fn lock_passes_the_command_exit_code_through() {
    let d = tempfile::tempdir().unwrap();
    let out = run(&["lock", "f", "--", "sh", "-c", "exit 5"], d.path());
    assert_eq!(out.status.code(), Some(5));
    let out = run(&["lock", "f", "--", "sh", "-c", "kill -TERM $$"], d.path());
    assert_eq!(out.status.code(), Some(128 + 15));
    let out = run(&["lock", "f", "--", "no-such-command-here"], d.path());
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("command not found"));
    let out = run(&["lock", "--shared", "f", "--", "true"], d.path());
    assert!(out.status.success());
    let out = run(
        &["lock", "--lock-file", "custom.lck", "f", "--", "true"],
        d.path(),
    );
    assert!(out.status.success());
    assert!(d.path().join("custom.lck").exists());
    // The command runs while the lock is held.
    let u = untorn();
    let inner = format!("'{}' lock -n f -- true; echo $?", u.display());
    let out = run(&["lock", "f", "--", "sh", "-c", &inner], d.path());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10");
}

#[test]
fn edit_replaces_only_with_valid_output() {
    if !have("jq") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.json");
    fs::write(&p, "{\"count\": 1}\n").unwrap();
    let old = fs::read(&p).unwrap();

    // The headline example.
    let out = run(&["edit", "s.json", "--", "jq", ".count += 1"], d.path());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(count(&p), 2);
    let old2 = fs::read(&p).unwrap();
    assert_ne!(old, old2);

    // Filter fails: exit 13, unchanged.
    let out = run(&["edit", "s.json", "--", "sh", "-c", "exit 3"], d.path());
    assert_eq!(out.status.code(), Some(13));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'sh' exited with status 3") && err.contains("unchanged"),
        "{err}"
    );
    assert_eq!(fs::read(&p).unwrap(), old2);

    // Invalid JSON: exit 12, line and column, unchanged.
    let out = run(
        &["edit", "s.json", "--", "printf", "{\\n  oops\\n}"],
        d.path(),
    );
    assert_eq!(out.status.code(), Some(12));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not valid JSON") && err.contains("line 2 column 3"),
        "{err}"
    );
    assert_eq!(fs::read(&p).unwrap(), old2);

    // Killed by a signal (after printing valid JSON): exit 13, unchanged.
    let out = run(
        &[
            "edit",
            "s.json",
            "--",
            "sh",
            "-c",
            "echo '{}'; kill -KILL $$",
        ],
        d.path(),
    );
    assert_eq!(out.status.code(), Some(13));
    assert!(String::from_utf8_lossy(&out.stderr).contains("killed by signal 9"));
    assert_eq!(fs::read(&p).unwrap(), old2);

    // Cannot start: exit 13.
    let out = run(&["edit", "s.json", "--", "no-such-filter"], d.path());
    assert_eq!(out.status.code(), Some(13));

    // --format raw skips the check; --format json checks a .txt.
    fs::write(d.path().join("n.txt"), "a\n").unwrap();
    let out = run(&["edit", "n.txt", "--", "sed", "s/a/b/"], d.path());
    assert!(out.status.success());
    assert_eq!(fs::read_to_string(d.path().join("n.txt")).unwrap(), "b\n");
    let out = run(
        &["edit", "--format", "json", "n.txt", "--", "cat"],
        d.path(),
    );
    assert_eq!(out.status.code(), Some(12));
    let out = run(
        &["edit", "--format", "raw", "s.json", "--", "echo", "x"],
        d.path(),
    );
    assert!(out.status.success());
    assert_eq!(fs::read_to_string(&p).unwrap(), "x\n");

    // A missing file: exit 3, unless a default is given.
    let out = run(&["edit", "new.json", "--", "jq", ".n = 1"], d.path());
    assert_eq!(out.status.code(), Some(3));
    assert!(!d.path().join("new.json").exists());
    let out = run(
        &["edit", "new.json", "--default", "{}", "--", "jq", ".n = 1"],
        d.path(),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(fs::read_to_string(d.path().join("new.json"))
        .unwrap()
        .contains("\"n\": 1"));

    // YAML is checked too.
    fs::write(d.path().join("q.yaml"), "a: 1\n").unwrap();
    let out = run(&["edit", "q.yaml", "--", "echo", "a: [1"], d.path());
    assert_eq!(out.status.code(), Some(12));
    assert_eq!(
        fs::read_to_string(d.path().join("q.yaml")).unwrap(),
        "a: 1\n"
    );
    assert_no_leftovers(d.path());
}

/// Issue 13, item 6: a filter that prints nothing emptied a YAML or TOML file with exit 0
/// (empty output is valid YAML and TOML). An empty (or whitespace-only) output is refused for
/// every format, exit 12, the file unchanged, unless `--allow-empty`.
#[test]
fn edit_refuses_an_empty_output_unless_allowed() {
    let d = tempfile::tempdir().unwrap();
    let files = [
        ("queue.yaml", "jobs:\n- build\n"),
        ("conf.toml", "name = \"x\"\n"),
        ("notes.txt", "keep me\n"),
        ("state.json", "{\"n\": 1}\n"),
    ];
    for (name, content) in files {
        fs::write(d.path().join(name), content).unwrap();
        for filter in [&["true"][..], &["printf", "\\n  \\n"][..]] {
            let mut args = vec!["edit", name, "--"];
            args.extend_from_slice(filter);
            let out = run(&args, d.path());
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(12), "{name} {filter:?}: {err}");
            assert!(
                err.contains(&format!("'{name}'")) && err.contains("empty"),
                "{name} {filter:?}: {err}"
            );
            assert!(err.contains("--allow-empty"), "{name}: {err}");
            assert_eq!(
                fs::read_to_string(d.path().join(name)).unwrap(),
                content,
                "{name} {filter:?}"
            );
        }
    }
    // Asked for: the file is emptied (JSON still needs valid output, which empty is not).
    for name in ["queue.yaml", "conf.toml", "notes.txt"] {
        let out = run(&["edit", "--allow-empty", name, "--", "true"], d.path());
        assert!(out.status.success(), "{name}: {out:?}");
        assert_eq!(fs::read(d.path().join(name)).unwrap(), b"", "{name}");
    }
    let out = run(
        &["edit", "--allow-empty", "state.json", "--", "true"],
        d.path(),
    );
    assert_eq!(out.status.code(), Some(12));
    // An already empty file that stays empty: nothing to refuse, nothing written.
    let out = run(&["edit", "notes.txt", "--", "true"], d.path());
    assert!(out.status.success(), "{out:?}");
    assert_no_leftovers(d.path());
}

/// Whether process `pid` exists (and is not a zombie waiting for its parent).
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits up to 10 s for `path` to hold a pid.
fn read_pid(path: &Path) -> i32 {
    let t = Instant::now();
    loop {
        if let Some(pid) = fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no pid in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Issue 13, item 10: after SIGTERM to `untorn edit`, its filter kept running. A signal to
/// untorn (SIGINT, SIGTERM, SIGHUP) goes on to the filter's process group; untorn waits for it,
/// leaves the file unchanged and exits 128 + the signal.
#[test]
fn a_signal_to_edit_stops_its_filter() {
    use rustix::process::{kill_process, Pid, Signal};
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.txt");
    fs::write(&p, "old\n").unwrap();
    // The filter is `sleep 30` itself (exec'd by a shell that notes its pid), or a shell that
    // starts `sleep 30` in the background (a process of the filter's group that is not untorn's
    // child) and waits for it. Such a background job ignores SIGINT (POSIX, as after Ctrl-C in
    // a terminal), so SIGINT is tried on the first kind only.
    let exec = "echo $$ > filter.pid; exec sleep 30";
    let background = "sleep 30 & echo $! > filter.pid; wait; echo new";
    for (sig, code, script) in [
        (Signal::TERM, 143, exec),
        (Signal::TERM, 143, background),
        (Signal::INT, 130, exec),
        (Signal::HUP, 129, exec),
        (Signal::HUP, 129, background),
    ] {
        let pidfile = d.path().join("filter.pid");
        let _ = fs::remove_file(&pidfile);
        let child = Command::new(untorn())
            .args(["edit", "s.txt", "--", "sh", "-c"])
            .arg(script)
            .current_dir(d.path())
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let filter = read_pid(&pidfile);
        assert!(alive(filter));
        let started = Instant::now();
        kill_process(Pid::from_raw(child.id() as i32).unwrap(), sig).unwrap();
        let out = child.wait_with_output().unwrap();
        let waited = started.elapsed();
        let gone = !alive(filter);
        if !gone {
            // Do not leave it running for 30 s.
            let _ = kill_process(Pid::from_raw(filter).unwrap(), Signal::KILL);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{sig:?} {script}: {:?} {err}",
            out.status
        );
        assert!(
            gone,
            "{sig:?} {script}: the filter's sleep {filter} still runs"
        );
        assert!(
            waited < Duration::from_secs(10),
            "{sig:?} {script}: took {waited:?}"
        );
        assert!(
            err.contains("'s.txt'") && err.contains("unchanged"),
            "{sig:?}: {err}"
        );
        assert_eq!(fs::read_to_string(&p).unwrap(), "old\n", "{sig:?}");
        assert_no_leftovers(d.path());
    }
    // While it waits for the lock, no filter runs and nothing was changed: a signal acts as
    // usual, at once.
    let guard = untorn::lock(&p).unwrap();
    let mut child = Command::new(untorn())
        .args(["edit", "s.txt", "--", "cat"])
        .current_dir(d.path())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::TERM).unwrap();
    let st = child.wait().unwrap();
    drop(guard);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(15), "{st:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fs::read_to_string(&p).unwrap(), "old\n");
}

#[test]
fn read_prints_defaults_and_survives_a_closed_pipe() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("s.json"), "{\"a\": 1}\n").unwrap();
    let out = run(&["read", "s.json"], d.path());
    assert_eq!(out.stdout, b"{\"a\": 1}\n");
    let out = run(&["read", "missing.json"], d.path());
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
    let out = run(&["read", "missing.json", "--default", "{}"], d.path());
    assert!(out.status.success());
    assert_eq!(out.stdout, b"{}");
    assert!(!d.path().join("missing.json").exists());

    // `untorn read big | head -1`: the closed pipe is not an error.
    let big = "line\n".repeat(200_000);
    fs::write(d.path().join("big"), &big).unwrap();
    let out = Command::new("sh")
        .args([
            "-c",
            &format!(
                "'{}' read big | head -1; echo \"${{PIPESTATUS:-}}\"",
                untorn().display()
            ),
        ])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                "'{}' read big | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}",
                untorn().display()
            ),
        ])
        .current_dir(d.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}
