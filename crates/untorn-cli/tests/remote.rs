//! `s3://` URLs against a real S3-compatible server (moto, started by the test): the commands,
//! bad input, and concurrent writers (8 processes × 100 edits of one counter; 8 appenders),
//! each beside a naive client that loses updates, so that the checks are seen to be able to
//! fail. Faults: `remote_faults.rs`.

#![cfg(feature = "remote")]

mod remote_bed;

use remote_bed::{counter, get, have, run, say, untorn, Moto};
use std::process::{Command, Output};
use std::time::Instant;

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The object's ETag and untorn's metadata, straight from the server: they change with
/// every write.
fn etag(m: &Moto, bucket: &str, key: &str) -> Option<String> {
    let h = remote_bed::headers(m.port, &format!("/{bucket}/{key}"))?;
    Some(
        h.lines()
            .filter(|l| l.starts_with("etag:") || l.starts_with("x-amz-meta-untorn"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[test]
fn commands_on_a_bucket() {
    let Some(m) = Moto::start() else { return };
    m.bucket("plain", false);
    m.bucket("kept", true);
    let ep = m.endpoint();
    let url = "s3://plain/state.json";

    // write, read, read --default
    assert_eq!(code(&run(&ep, &["write", url, "{\"n\": 0}"])), 0);
    assert_eq!(get(&ep, url).unwrap(), b"{\"n\": 0}");
    let o = run(&ep, &["read", "s3://plain/none.json", "--default", "{}"]);
    assert_eq!((code(&o), o.stdout.as_slice()), (0, &b"{}"[..]));
    let o = run(&ep, &["read", "s3://plain/none.json"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));

    // --no-clobber: a create-only PUT
    let o = run(&ep, &["write", "--no-clobber", url, "x"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert_eq!(get(&ep, url).unwrap(), b"{\"n\": 0}");
    assert_eq!(
        code(&run(&ep, &["write", "--no-clobber", "s3://plain/new", "y"])),
        0
    );

    // edit; an output identical to the input writes nothing
    if have("jq") {
        let o = run(&ep, &["edit", url, "--", "jq", ".n += 1"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(counter(&ep, url), 1);
        let before = etag(&m, "plain", "state.json");
        let o = run(&ep, &["edit", url, "--", "cat"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(etag(&m, "plain", "state.json"), before, "cat wrote nothing");
        let o = run(
            &ep,
            &[
                "edit",
                "--default",
                "{\"n\": 41}",
                "s3://plain/d.json",
                "--",
                "jq",
                ".n += 1",
            ],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(counter(&ep, "s3://plain/d.json"), 42);
    }

    // check
    assert_eq!(code(&run(&ep, &["check", url])), 0);

    // lock: refused, pointing to edit
    let o = run(&ep, &["lock", url, "--", "true"]);
    assert_eq!(code(&o), 9);
    assert!(stderr(&o).contains("untorn edit"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1);

    // append and tail
    let log = "s3://plain/events.jsonl";
    for i in 0..3 {
        let rec = format!("{{\"i\": {i}}}");
        let o = run(&ep, &["append", "--jsonl", log, &rec, "{\"also\": true}"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let o = run(&ep, &["tail", "--jsonl", "-n", "3", log]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "{\"also\": true}\n{\"i\": 2}\n{\"also\": true}\n"
    );
    let o = run(&ep, &["append", "--jsonl", log, "not json"]);
    assert_eq!(code(&o), 12, "{}", stderr(&o));
    let o = run(&ep, &["tail", "--jsonl", "-n", "100", log]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 6);

    // backups: refused on a bucket without versions; listed and restored on one with them
    let o = run(&ep, &["backups", url]);
    assert_eq!(code(&o), 9, "{}", stderr(&o));
    assert!(stderr(&o).contains("versioning"), "{}", stderr(&o));
    let k = "s3://kept/a.json";
    for n in 1..=3 {
        assert_eq!(
            code(&run(&ep, &["write", k, &format!("{{\"n\": {n}}}")])),
            0
        );
    }
    let o = run(&ep, &["backups", k]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().all(|l| l.contains("valid\twhole")),
        "{lines:?}"
    );
    let o = run(&ep, &["restore", k, "--nth", "2"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(counter(&ep, k), 1);
    // The restore can be undone: the replaced version is the newest backup now.
    let o = run(&ep, &["restore", k]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(counter(&ep, k), 3);

    // Flags that mean nothing on a bucket are refused, not ignored.
    let o = run(&ep, &["write", "--mode", "600", url, "x"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(counter(&ep, url), 1);
}

#[test]
fn bad_input_one_line_each_documented_code_nothing_written() {
    let Some(m) = Moto::start() else { return };
    m.bucket("bucket", false);
    let ep = m.endpoint();
    let one_line = |o: &Output, want: i32, what: &str| {
        let e = stderr(o);
        assert_eq!(code(o), want, "{what}: {e}");
        // One line of untorn's (a filter's own complaint may come before it).
        let ours: Vec<&str> = e.lines().filter(|l| l.starts_with("untorn: ")).collect();
        assert_eq!(ours.len(), 1, "{what}: one line: {e}");
        assert!(e.lines().last() == ours.last().copied(), "{what}: {e}");
        say(&format!("{what}: exit {want}: {}", e.trim_end()));
    };

    // A missing bucket: 3, and nothing created.
    let o = run(&ep, &["write", "s3://no-such-bucket/a.json", "{}"]);
    one_line(&o, 3, "missing bucket (write)");
    assert!(stderr(&o).contains("no such bucket"), "{}", stderr(&o));
    let (st, _) = remote_bed::http(m.port, "HEAD", "/no-such-bucket", b"");
    assert_eq!(st, 404, "the bucket was not created");
    one_line(
        &run(&ep, &["read", "s3://no-such-bucket/a.json"]),
        3,
        "missing bucket (read)",
    );

    // No credentials: 4, nothing written.
    let o = untorn(&ep)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["write", "s3://bucket/c.json", "{}"])
        .output()
        .unwrap();
    one_line(&o, 4, "no credentials");
    assert!(stderr(&o).contains("credentials"), "{}", stderr(&o));
    assert_eq!(get(&ep, "s3://bucket/c.json"), None);

    // Malformed URLs: 2 (a bad command line).
    for bad in [
        "s3://Bad_Bucket/k",
        "s3://bucket",
        "s3://bucket/",
        "s3://bucket/a/../b",
    ] {
        one_line(
            &run(&ep, &["write", bad, "{}"]),
            2,
            &format!("malformed {bad}"),
        );
    }
    // Another scheme: named, refused (9).
    one_line(&run(&ep, &["read", "gs://bucket/k"]), 9, "gs:// URL");

    // An object that is not valid JSON.
    let bad = "s3://bucket/bad.json";
    assert_eq!(code(&run(&ep, &["write", bad, "{\"n\": 1,"])), 0);
    one_line(&run(&ep, &["check", bad]), 12, "check: not JSON");
    if have("jq") {
        one_line(
            &run(&ep, &["edit", bad, "--", "jq", ".n += 1"]),
            13,
            "edit: jq cannot parse it",
        );
        // A filter whose output is not JSON: 12, the object unchanged.
        assert_eq!(
            code(&run(&ep, &["write", "s3://bucket/ok.json", "{\"n\": 1}"])),
            0
        );
        one_line(
            &run(&ep, &["edit", "s3://bucket/ok.json", "--", "echo", "{"]),
            12,
            "edit: output not JSON",
        );
        assert_eq!(counter(&ep, "s3://bucket/ok.json"), 1);
    }
    assert_eq!(get(&ep, bad).unwrap(), b"{\"n\": 1,", "nothing written");
}

/// Runs `script` (sh) in `n` processes at once with `U` (untorn), `URL` and `W` (the
/// process's number) set; all must exit 0.
fn in_parallel(ep: &str, n: usize, url: &str, script: &str) {
    let children: Vec<_> = (0..n)
        .map(|w| {
            let mut c = untorn(ep);
            c.env("U", remote_bed::untorn_bin())
                .env("URL", url)
                .env("W", w.to_string())
                .args(["--version"]);
            // The same environment, for a shell.
            let mut sh = Command::new("sh");
            for (k, v) in c.get_envs() {
                match v {
                    Some(v) => sh.env(k, v),
                    None => sh.env_remove(k),
                };
            }
            sh.args(["-c", script]).spawn().unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a writer failed");
    }
}

#[test]
fn eight_processes_times_100_edits_end_at_800_and_a_naive_loop_loses_updates() {
    if !have("jq") {
        return;
    }
    let Some(m) = Moto::start() else { return };
    m.bucket("ctr", false);
    let ep = m.endpoint();
    let url = "s3://ctr/counter.json";
    assert_eq!(code(&run(&ep, &["write", url, "{\"n\": 0}"])), 0);
    let started = Instant::now();
    in_parallel(
        &ep,
        8,
        url,
        r#"i=0; while [ $i -lt 100 ]; do "$U" edit "$URL" -- jq '.n += 1' >/dev/null || exit 1; i=$((i+1)); done"#,
    );
    let n = counter(&ep, url);
    say(&format!(
        "remote counter: 8 processes x 100 `untorn edit ... jq '.n += 1'`: {n} (want 800), {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    assert_eq!(n, 800);

    // The naive loop: GET, increment, plain PUT. It loses updates.
    let naive = "s3://ctr/naive.json";
    assert_eq!(code(&run(&ep, &["write", naive, "{\"n\": 0}"])), 0);
    in_parallel(
        &ep,
        8,
        naive,
        r#"i=0; while [ $i -lt 25 ]; do v=$("$U" read "$URL" | jq -c '.n += 1') && "$U" write "$URL" "$v" || exit 1; i=$((i+1)); done"#,
    );
    let lost = counter(&ep, naive);
    say(&format!(
        "naive GET+PUT loop, 8 processes x 25: {lost} (of 200: {} updates lost)",
        200 - lost
    ));
    assert!(lost < 200, "the naive loop should lose updates: {lost}");
}

/// Parses `{"w": W, "k": K}` records.
fn records(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["w"].as_u64().unwrap(), v["k"].as_u64().unwrap())
        })
        .collect()
}

/// Every record of 8 writers × `k` exactly once, each writer's in order.
fn every_record_once_in_order(recs: &[(u64, u64)], k: u64) -> Result<(), String> {
    let mut next = [0u64; 8];
    for &(w, i) in recs {
        let w = w as usize;
        if i != next[w] {
            return Err(format!("writer {w}: record {i} where {} was due", next[w]));
        }
        next[w] += 1;
    }
    match next.iter().position(|&n| n != k) {
        Some(w) => Err(format!("writer {w}: {} records of {k}", next[w])),
        None => Ok(()),
    }
}

#[test]
fn eight_appenders_every_record_once_in_order_and_a_naive_log_loses_records() {
    let Some(m) = Moto::start() else { return };
    m.bucket("logs", false);
    let ep = m.endpoint();
    let log = "s3://logs/events.jsonl";
    let k = 40;
    let started = Instant::now();
    in_parallel(
        &ep,
        8,
        log,
        &format!(
            r#"i=0; while [ $i -lt {k} ]; do "$U" append --jsonl "$URL" "{{\"w\": $W, \"k\": $i}}" || exit 1; i=$((i+1)); done"#
        ),
    );
    let o = run(&ep, &["tail", "--jsonl", "-n", "100000", log]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let recs = records(&String::from_utf8_lossy(&o.stdout));
    say(&format!(
        "remote appends: 8 writers x {k}: {} records read back, {:.1} s",
        recs.len(),
        started.elapsed().as_secs_f64()
    ));
    assert_eq!(recs.len() as u64, 8 * k);
    every_record_once_in_order(&recs, k).unwrap();

    // The naive log: read it all, add a line, PUT it back. Records go missing, and the check
    // says so.
    let naive = "s3://logs/naive.jsonl";
    assert_eq!(code(&run(&ep, &["write", naive, ""])), 0);
    in_parallel(
        &ep,
        8,
        naive,
        r#"i=0; while [ $i -lt 20 ]; do old=$("$U" read "$URL") || exit 1; { [ -n "$old" ] && printf '%s\n' "$old"; printf '{"w": %s, "k": %s}\n' "$W" "$i"; } | "$U" write "$URL" || exit 1; i=$((i+1)); done"#,
    );
    let recs = records(&String::from_utf8_lossy(&get(&ep, naive).unwrap()));
    let verdict = every_record_once_in_order(&recs, 20);
    say(&format!(
        "naive read-all+PUT log, 8 writers x 20: {} records of 160 ({verdict:?})",
        recs.len()
    ));
    assert!(verdict.is_err(), "the naive log should lose records");
}
