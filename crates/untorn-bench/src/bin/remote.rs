//! Remote (`s3://`) latency and contention, against an S3-compatible server: a report, not a
//! timed test.
//!
//! - `untorn::remote` write and update latency as a ratio to the bare `object_store` calls
//!   (one PUT; GET + PUT `If-Match`) against the same server, interleaved in one run
//!   (goal ≤ 1.1×);
//! - update throughput at 1, 2, 4, 8 writer processes on one object, with the conflict rate.
//!
//! ```text
//! cargo run --release -p untorn-bench --bin remote [-- --endpoint http://127.0.0.1:PORT] [--n 200]
//! ```
//! Without `--endpoint` it starts moto (PyPI `moto[server]`, served one request at a time,
//! as the tests do) on a free local port and stops it at the end.

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use untorn::remote::{RemoteOptions, Url};
use untorn_bench::stats::{median, ratio_ci, Rng};

const MOTO_SERIAL: &str = r#"
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
run_simple("127.0.0.1", int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False)
"#;

const BUCKET: &str = "untorn-bench";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn start_moto() -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args(["-c", MOTO_SERIAL, &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with moto[server] (pip install 'moto[server]')");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, format!("http://127.0.0.1:{port}"))
}

fn env(endpoint: &str) {
    std::env::set_var("AWS_ENDPOINT_URL", endpoint);
    std::env::set_var("AWS_ACCESS_KEY_ID", "bench");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9");
}

/// A worker process: `n` updates of the counter; prints "attempts conflicts".
fn worker(endpoint: &str, n: usize) {
    env(endpoint);
    let url = Url::parse(&format!("s3://{BUCKET}/contended.json")).unwrap();
    let o = RemoteOptions::new();
    let (mut attempts, mut conflicts) = (0, 0);
    for _ in 0..n {
        let out = o
            .update(&url, |old| {
                let v: serde_json::Value = serde_json::from_slice(old.unwrap()).unwrap();
                let n = v["n"].as_i64().unwrap() + 1;
                Ok::<_, untorn::Error>(Some(format!("{{\"n\": {n}}}").into_bytes()))
            })
            .unwrap();
        attempts += out.attempts;
        conflicts += out.conflicts;
    }
    println!("{attempts} {conflicts}");
}

fn main() {
    if let Some(ep) = arg("--worker") {
        let n = arg("--updates").and_then(|s| s.parse().ok()).unwrap_or(50);
        return worker(&ep, n);
    }
    let n: usize = arg("--n").and_then(|s| s.parse().ok()).unwrap_or(200);
    let (moto, endpoint) = match arg("--endpoint") {
        Some(e) => (None, e),
        None => {
            let (c, e) = start_moto();
            (Some(c), e)
        }
    };
    env(&endpoint);
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    // The bucket (moto checks no signature).
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "PUT /{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let _ = s.read_to_end(&mut Vec::new());

    let bare = AmazonS3Builder::from_env()
        .with_bucket_name(BUCKET)
        .with_allow_http(true)
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
    let o = RemoteOptions::new();
    let body = vec![b'x'; 1024];
    let (bare_key, url_w) = (
        Path::from("bare-write"),
        Url::parse(&format!("s3://{BUCKET}/untorn-write")).unwrap(),
    );
    let (edit_key, url_e) = (
        Path::from("bare-edit.json"),
        Url::parse(&format!("s3://{BUCKET}/untorn-edit.json")).unwrap(),
    );
    let counter = |b: &[u8]| -> Vec<u8> {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        format!("{{\"n\": {}}}", v["n"].as_i64().unwrap() + 1).into_bytes()
    };
    rt.block_on(bare.put_opts(
        &edit_key,
        PutPayload::from(b"{\"n\": 0}".to_vec()),
        PutOptions::default(),
    ))
    .unwrap();
    o.write(&url_e, b"{\"n\": 0}").unwrap();
    let (mut bw, mut uw, mut be, mut ue) = (vec![], vec![], vec![], vec![]);
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e6
    };
    for i in 0..n + 20 {
        let (a, b) = (
            time(&mut || {
                rt.block_on(bare.put_opts(
                    &bare_key,
                    PutPayload::from(body.clone()),
                    PutOptions::default(),
                ))
                .unwrap();
            }),
            time(&mut || {
                o.write(&url_w, &body).unwrap();
            }),
        );
        let (c, d) = (
            time(&mut || {
                rt.block_on(async {
                    let g = bare.get_opts(&edit_key, Default::default()).await.unwrap();
                    let e_tag = g.meta.e_tag.clone();
                    let b = g.bytes().await.unwrap();
                    bare.put_opts(
                        &edit_key,
                        PutPayload::from(counter(&b)),
                        PutOptions {
                            mode: PutMode::Update(UpdateVersion {
                                e_tag,
                                version: None,
                            }),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                });
            }),
            time(&mut || {
                o.update(&url_e, |old| {
                    Ok::<_, untorn::Error>(Some(counter(old.unwrap())))
                })
                .unwrap();
            }),
        );
        if i >= 20 {
            bw.push(a);
            uw.push(b);
            be.push(c);
            ue.push(d);
        }
    }
    let mut rng = Rng(16);
    let show = |what: &str, u: &[f64], b: &[f64], rng: &mut Rng| {
        let r = median(u) / median(b);
        let ci = ratio_ci(u, b, rng, 2000)
            .map(|(lo, hi)| format!(" (95% CI {lo:.3}-{hi:.3})"))
            .unwrap_or_default();
        println!(
            "{what}: untorn {:.0} us, bare object_store {:.0} us, ratio {r:.3}{ci} {}",
            median(u),
            median(b),
            if r <= 1.1 {
                "PASS (goal <= 1.1)"
            } else {
                "FAIL (goal <= 1.1)"
            }
        );
    };
    println!("remote latency against {endpoint}, {n} interleaved rounds (medians):");
    show("write 1 KiB (one PUT)", &uw, &bw, &mut rng);
    show(
        "edit of a JSON counter (GET + PUT If-Match)",
        &ue,
        &be,
        &mut rng,
    );

    // Contention: writer processes on one object.
    let me = std::env::current_exe().unwrap();
    let url_c = Url::parse(&format!("s3://{BUCKET}/contended.json")).unwrap();
    let per = arg("--updates")
        .and_then(|s| s.parse().ok())
        .unwrap_or(50usize);
    println!("update throughput on one object, {per} updates per writer:");
    for writers in [1, 2, 4, 8] {
        o.write(&url_c, b"{\"n\": 0}").unwrap();
        let t = Instant::now();
        let kids: Vec<_> = (0..writers)
            .map(|_| {
                Command::new(&me)
                    .args(["--worker", &endpoint, "--updates", &per.to_string()])
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let (mut attempts, mut conflicts) = (0u64, 0u64);
        for k in kids {
            let out = k.wait_with_output().unwrap();
            let s = String::from_utf8_lossy(&out.stdout);
            let mut it = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
            attempts += it.next().unwrap_or(0);
            conflicts += it.next().unwrap_or(0);
        }
        let secs = t.elapsed().as_secs_f64();
        let done = (writers * per) as f64;
        let v: serde_json::Value =
            serde_json::from_slice(&o.read(&url_c).unwrap().unwrap()).unwrap();
        println!(
            "  {writers} writer(s): {:.0} updates/s, {conflicts} conflicts for {done} updates ({:.2} re-runs per update, {:.0}% of {attempts} PUTs refused), final n = {} (want {done})",
            done / secs,
            conflicts as f64 / done,
            100.0 * conflicts as f64 / attempts.max(1) as f64,
            v["n"]
        );
    }
    if let Some(mut m) = moto {
        let _ = m.kill();
        let _ = m.wait();
    }
}
