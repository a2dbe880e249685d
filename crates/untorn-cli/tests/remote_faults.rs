//! Faults between untorn and the store, injected by a proxy in front of moto (see
//! `remote_bed`): connections dropped before the request and after it (the ambiguous commit),
//! 500 and 503 answers, a server slower than `--timeout`, the server dying mid-edit. After each,
//! the counter moved by 0 or 1 (never 2), and the exit code says which. A deliberately naive
//! client, which re-runs its change after a lost answer, moves it by 2 in the same setting: the
//! check can fail.

#![cfg(feature = "remote")]

mod remote_bed;

use remote_bed::{counter, have, say, untorn, Fault, Moto, Proxy};
use std::process::Output;
use std::time::Duration;

const URL: &str = "s3://faults/counter.json";

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// `untorn edit URL -- jq '.n += 1'` through the proxy, with `extra` flags.
fn bump(p: &Proxy, extra: &[&str]) -> Output {
    let mut args = vec!["edit"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[URL, "--", "jq", ".n += 1"]);
    untorn(&p.endpoint()).args(&args).output().unwrap()
}

/// Runs `f`, then checks the exit code and how far the counter moved. Faults `f` did not use
/// up are cleared.
fn case(
    (m, p): (&Moto, &Proxy),
    name: &str,
    want_code: i32,
    want_delta: &[i64],
    f: impl FnOnce() -> Output,
) {
    let before = counter(&m.endpoint(), URL);
    let o = f();
    p.clear();
    let after = counter(&m.endpoint(), URL);
    let err = String::from_utf8_lossy(&o.stderr);
    say(&format!(
        "fault {name}: exit {}, counter {before} -> {after}{}",
        code(&o),
        err.lines()
            .last()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default()
    ));
    assert_eq!(code(&o), want_code, "{name}: {err}");
    assert!(
        want_delta.contains(&(after - before)),
        "{name}: the counter moved by {}",
        after - before
    );
}

#[test]
fn faults_leave_the_old_or_the_new_version_never_both_and_say_which() {
    if !have("jq") {
        return;
    }
    let Some(m) = Moto::start() else { return };
    m.bucket("faults", false);
    let p = Proxy::start(m.port);
    let ep = m.endpoint();
    assert_eq!(
        code(
            &untorn(&ep)
                .args(["write", URL, "{\"n\": 0}"])
                .output()
                .unwrap()
        ),
        0
    );

    p.on("PUT", Fault::DropBeforeRequest, 1);
    case(
        (&m, &p),
        "connection dropped before the request",
        0,
        &[1],
        || bump(&p, &[]),
    );
    p.on("PUT", Fault::DropAfterRequest, 1);
    case(
        (&m, &p),
        "connection dropped after the request (ambiguous)",
        0,
        &[1],
        || bump(&p, &[]),
    );
    p.on("PUT", Fault::DropBeforeRequest, 3);
    case(
        (&m, &p),
        "three dropped connections in a row",
        0,
        &[1],
        || bump(&p, &[]),
    );
    p.on("PUT", Fault::StatusAfter(500), 1);
    case((&m, &p), "500 after the server applied it", 0, &[1], || {
        bump(&p, &[])
    });
    p.on("PUT", Fault::StatusBefore(500), 1);
    case((&m, &p), "500 before the server saw it", 0, &[1], || {
        bump(&p, &[])
    });
    p.on("PUT", Fault::StatusBefore(503), 2);
    case((&m, &p), "503 twice", 0, &[1], || bump(&p, &[]));
    p.on("PUT", Fault::StatusBefore(503), 10_000);
    case((&m, &p), "503 until the timeout", 11, &[0], || {
        bump(&p, &["--timeout", "1s"])
    });
    p.clear();
    p.on("GET", Fault::SlowRequest(Duration::from_secs(3)), 1);
    case((&m, &p), "slow read past --timeout", 11, &[0], || {
        bump(&p, &["--timeout", "1s"])
    });
    p.on("PUT", Fault::SlowAnswer(Duration::from_secs(3)), 1);
    case(
        (&m, &p),
        "slow answer to the write past --timeout (applied)",
        0,
        &[1],
        || bump(&p, &["--timeout", "1s"]),
    );
    // The write is held before the server sees it, past the timeout: untorn cannot know
    // whether it will still land, and says so (15); it lands later, once.
    p.on("PUT", Fault::SlowRequest(Duration::from_secs(3)), 1);
    let before = counter(&ep, URL);
    case(
        (&m, &p),
        "slow write past --timeout (may still land)",
        15,
        &[0, 1],
        || bump(&p, &["--timeout", "1s"]),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(counter(&ep, URL), before + 1, "it landed late, once");

    // The server dies while the filter runs and stays dead: nothing was sent, nothing written.
    let slow_filter = |p: &Proxy, timeout: &str| {
        untorn(&p.endpoint())
            .args([
                "edit",
                "--timeout",
                timeout,
                URL,
                "--",
                "sh",
                "-c",
                "sleep 1; jq '.n += 1'",
            ])
            .spawn()
            .unwrap()
    };
    case(
        (&m, &p),
        "server killed mid-edit, stays dead",
        11,
        &[0],
        || {
            let child = slow_filter(&p, "3s");
            std::thread::sleep(Duration::from_millis(300));
            p.kill();
            let o = child.wait_with_output().unwrap();
            p.restart();
            o
        },
    );
    case(
        (&m, &p),
        "server killed mid-edit, back in time",
        0,
        &[1],
        || {
            let child = slow_filter(&p, "20s");
            std::thread::sleep(Duration::from_millis(300));
            p.kill();
            std::thread::sleep(Duration::from_secs(2));
            p.restart();
            child.wait_with_output().unwrap()
        },
    );
    // The server dies after taking the write, before answering, and stays dead: unknown (15);
    // the write was applied once.
    p.on("PUT", Fault::DieAfterRequest, 1);
    let before = counter(&ep, URL);
    let o = bump(&p, &["--timeout", "1s"]);
    say(&format!(
        "fault server died after taking the write: exit {}, counter {before} -> {}",
        code(&o),
        counter(&ep, URL)
    ));
    assert_eq!(code(&o), 15, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(counter(&ep, URL), before + 1);
    p.restart();

    // Appends: a lost answer does not append the record twice.
    let log = "s3://faults/events.jsonl";
    for i in 0..3 {
        p.on("PUT", Fault::DropAfterRequest, 1);
        let o = untorn(&p.endpoint())
            .args(["append", "--jsonl", log, &format!("{{\"i\": {i}}}")])
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = untorn(&ep)
        .args(["tail", "-n", "100", "--jsonl", log])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "{\"i\": 0}\n{\"i\": 1}\n{\"i\": 2}\n",
        "each record once"
    );
}

/// The broken client: read, change, `PUT If-Match`, and after a lost answer simply do it all
/// again (as a retry loop around a read-modify-write does). Through the same proxy fault, the
/// counter moves by 2: this is what untorn's check prevents.
#[test]
fn a_naive_retry_after_a_lost_answer_applies_the_change_twice() {
    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path;
    use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};
    let Some(m) = Moto::start() else { return };
    m.bucket("faults", false);
    let p = Proxy::start(m.port);
    let store = AmazonS3Builder::new()
        .with_bucket_name("faults")
        .with_endpoint(p.endpoint())
        .with_allow_http(true)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1")
        .with_retry(object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        })
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = Path::from("counter.json");
    let n = |rt: &tokio::runtime::Runtime| -> (i64, Option<String>) {
        rt.block_on(async {
            let g = store.get_opts(&key, Default::default()).await.unwrap();
            let e = g.meta.e_tag.clone();
            let b = g.bytes().await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            (v["n"].as_i64().unwrap(), e)
        })
    };
    rt.block_on(store.put_opts(
        &key,
        PutPayload::from(b"{\"n\": 0}".to_vec()),
        PutOptions::default(),
    ))
    .unwrap();
    p.on("PUT", Fault::DropAfterRequest, 1);
    // The naive increment: up to 3 tries of read, +1, PUT If-Match.
    for _ in 0..3 {
        let (v, e_tag) = n(&rt);
        let body = format!("{{\"n\": {}}}", v + 1);
        let r = rt.block_on(store.put_opts(
            &key,
            PutPayload::from(body.into_bytes()),
            PutOptions {
                mode: PutMode::Update(UpdateVersion {
                    e_tag,
                    version: None,
                }),
                ..Default::default()
            },
        ));
        if r.is_ok() {
            break;
        }
    }
    let (v, _) = n(&rt);
    say(&format!(
        "naive retry after a lost answer: one increment moved the counter 0 -> {v}"
    ));
    assert_eq!(v, 2, "the naive client applies the change twice");

    // And untorn, through the same fault, once.
    let url = "s3://faults/counter.json";
    p.on("PUT", Fault::DropAfterRequest, 1);
    let o = untorn(&p.endpoint())
        .args(["edit", url, "--", "sh", "-c", "sed 's/2/3/'"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(n(&rt).0, 3);
}
