//! The test bed of the remote tests: a real S3-compatible server (`moto_server`, from PyPI,
//! which `scripts/test` installs) started on a free port of 127.0.0.1 and stopped when the test
//! ends, a fault-injecting HTTP proxy between untorn and it, and `untorn` commands set up to
//! reach either through the standard environment.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writes straight to stderr (the harness does not capture it): skips and reports are seen.
pub fn say(msg: &str) {
    let _ = std::io::stderr().write_all(format!("{msg}\n").as_bytes());
}

pub fn untorn_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_untorn"))
}

/// Whether `tool` is installed; if not, says SKIPPED (or fails under UNTORN_REQUIRE_ALL=1).
pub fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        say(&format!(
            "SKIPPED: {tool} is not installed (./scripts/test installs it)"
        ));
        if std::env::var_os("UNTORN_REQUIRE_ALL").is_some_and(|v| v == "1") {
            panic!("{tool} missing and UNTORN_REQUIRE_ALL=1");
        }
    }
    ok
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A raw HTTP/1.1 request to 127.0.0.1:`port`: the status and the body.
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let (st, _, b) = http_full(port, method, path, body);
    (st, b)
}

/// The headers of the object at `path` (`bucket/key`), lowercased, if it exists.
pub fn headers(port: u16, path: &str) -> Option<String> {
    let (st, h, _) = http_full(port, "HEAD", path, b"");
    (st == 200).then(|| h.to_ascii_lowercase())
}

/// A raw HTTP/1.1 request: the status, the head and the body.
pub fn http_full(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
         Content-Type: application/xml\r\nAuthorization: AWS4-HMAC-SHA256 \
         Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let status = std::str::from_utf8(&resp[..resp.len().min(12)])
        .ok()
        .and_then(|l| l.get(9..12))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body_at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&resp[..body_at]).into_owned();
    (status, head, resp[body_at..].to_vec())
}

/// moto's S3 application served one request at a time. `moto_server` serves each request on a
/// thread of its own, and moto checks a PUT's `If-Match` / `If-None-Match` and then stores the
/// object without a lock between the two (`moto/s3/responses.py`), so two conditional PUTs can
/// both pass their check: seen here as an append lost among 320. S3 makes a conditional PUT
/// atomic; serving requests one at a time gives the test server the same property.
const MOTO_SERIAL: &str = r#"
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=False, use_reloader=False)
"#;

/// A moto S3 server on a free port, stopped when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// Starts one, or says SKIPPED and returns `None` if moto is not installed.
    pub fn start() -> Option<Moto> {
        let ok = Command::new("python3")
            .args(["-c", "import moto.server, werkzeug"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            say("SKIPPED: moto[server] is not installed for python3 (./scripts/test installs it)");
            if std::env::var_os("UNTORN_REQUIRE_ALL").is_some_and(|v| v == "1") {
                panic!("moto missing and UNTORN_REQUIRE_ALL=1");
            }
            return None;
        }
        let port = free_port();
        let child = Command::new("python3")
            .args(["-c", MOTO_SERIAL, &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let m = Moto { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(m)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (with versioning on, if asked).
    pub fn bucket(&self, name: &str, versioned: bool) {
        let (st, body) = http(self.port, "PUT", &format!("/{name}"), b"");
        assert_eq!(st, 200, "create bucket: {}", String::from_utf8_lossy(&body));
        if versioned {
            let (st, body) = http(
                self.port,
                "PUT",
                &format!("/{name}?versioning"),
                b"<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                  <Status>Enabled</Status></VersioningConfiguration>",
            );
            assert_eq!(st, 200, "versioning: {}", String::from_utf8_lossy(&body));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `untorn` set up to reach the store at `endpoint` through the standard environment (and
/// nothing else: no instance metadata, no other AWS settings of the caller).
pub fn untorn(endpoint: &str) -> Command {
    let mut c = Command::new(untorn_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        // Never the link-local instance-metadata address: a closed local port instead.
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9")
        .stdin(Stdio::null());
    c
}

/// Runs `untorn ARGS` against `endpoint`.
pub fn run(endpoint: &str, args: &[&str]) -> Output {
    untorn(endpoint).args(args).output().unwrap()
}

/// The object's content through untorn (`None`: no object).
pub fn get(endpoint: &str, url: &str) -> Option<Vec<u8>> {
    let o = run(endpoint, &["read", url]);
    match o.status.code() {
        Some(0) => Some(o.stdout),
        Some(3) => None,
        c => panic!(
            "read {url}: exit {c:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

/// The counter `n` of a JSON object.
pub fn counter(endpoint: &str, url: &str) -> i64 {
    let body = get(endpoint, url).expect("the counter exists");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["n"].as_i64().unwrap()
}

/// What the proxy does to a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Close the connection without forwarding the request: the server never sees it.
    DropBeforeRequest,
    /// Forward the request, let the server answer, then close the connection without passing
    /// the answer on: the ambiguous commit.
    DropAfterRequest,
    /// Answer this status without forwarding.
    StatusBefore(u16),
    /// Forward the request (the server applies it), then answer this status instead of the
    /// server's answer.
    StatusAfter(u16),
    /// Hold the request this long before forwarding it (even if the client has gone).
    SlowRequest(Duration),
    /// Forward at once, hold the answer this long.
    SlowAnswer(Duration),
    /// Forward the request, then stop the proxy (it refuses connections) before answering:
    /// the server dies mid-request, as far as the client can tell.
    DieAfterRequest,
}

struct Rule {
    method: &'static str,
    fault: Fault,
    times: u32,
}

/// A fault-injecting HTTP proxy on 127.0.0.1, in front of a server: one request per
/// connection, forwarded with `Connection: close`, unless a rule says otherwise.
pub struct Proxy {
    pub port: u16,
    upstream: u16,
    rules: Arc<Mutex<VecDeque<Rule>>>,
    running: Arc<AtomicBool>,
    generation: Arc<AtomicU32>,
    /// Requests seen, as "METHOD path".
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let port = free_port();
        let p = Proxy {
            port,
            upstream,
            rules: Default::default(),
            running: Arc::new(AtomicBool::new(false)),
            generation: Arc::new(AtomicU32::new(0)),
            seen: Default::default(),
        };
        p.listen();
        p
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next `times` requests with `method` (`PUT`, `GET`, ...) get `fault`.
    pub fn on(&self, method: &'static str, fault: Fault, times: u32) {
        self.rules.lock().unwrap().push_back(Rule {
            method,
            fault,
            times,
        });
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// Stops listening: connections are refused, as by a dead server.
    pub fn kill(&self) {
        self.running.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        // Wake the accept loop so that it drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "proxy did not stop"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Listens again on the same port (after [`kill`](Self::kill)).
    pub fn restart(&self) {
        self.listen();
    }

    fn listen(&self) {
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        self.running.store(true, Ordering::SeqCst);
        let gen = self.generation.load(Ordering::SeqCst);
        let (rules, running, generation, seen, upstream) = (
            self.rules.clone(),
            self.running.clone(),
            self.generation.clone(),
            self.seen.clone(),
            self.upstream,
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if !running.load(Ordering::SeqCst) || generation.load(Ordering::SeqCst) != gen {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (rules, running, generation, seen) = (
                    rules.clone(),
                    running.clone(),
                    generation.clone(),
                    seen.clone(),
                );
                let port = conn.local_addr().map(|a| a.port()).unwrap_or(0);
                std::thread::spawn(move || {
                    serve(conn, upstream, port, &rules, &running, &generation, &seen)
                });
            }
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one HTTP request (head and a Content-Length body).
fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    // Forwarded with Connection: close (the server then ends its answer by closing).
    let mut lines: Vec<&str> = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    let mut req = lines.join("\r\n").into_bytes();
    req.extend_from_slice(b"\r\n\r\n");
    req.extend_from_slice(&buf[head_end..head_end + len]);
    Some((head, req))
}

fn forward(upstream: u16, req: &[u8]) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    up.write_all(req).ok()?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).ok()?;
    Some(resp)
}

fn status_answer(code: u16) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>injected by \
         the test proxy</Message></Error>",
        if code == 503 {
            "SlowDown"
        } else {
            "InternalError"
        }
    );
    format!(
        "HTTP/1.1 {code} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn serve(
    mut conn: TcpStream,
    upstream: u16,
    port: u16,
    rules: &Mutex<VecDeque<Rule>>,
    running: &AtomicBool,
    generation: &AtomicU32,
    seen: &Mutex<Vec<String>>,
) {
    let gen = generation.load(Ordering::SeqCst);
    let Some((head, req)) = read_request(&mut conn) else {
        return;
    };
    let first = head.lines().next().unwrap_or_default().to_string();
    let method = first.split(' ').next().unwrap_or_default().to_string();
    seen.lock().unwrap().push(
        first
            .rsplit_once(' ')
            .map_or(first.clone(), |(a, _)| a.to_string()),
    );
    if !running.load(Ordering::SeqCst) || generation.load(Ordering::SeqCst) != gen {
        return;
    }
    let fault = {
        let mut r = rules.lock().unwrap();
        match r.iter_mut().position(|x| x.method == method) {
            Some(i) => {
                let f = r[i].fault.clone();
                r[i].times -= 1;
                if r[i].times == 0 {
                    r.remove(i);
                }
                Some(f)
            }
            None => None,
        }
    };
    let dead = || !running.load(Ordering::SeqCst) || generation.load(Ordering::SeqCst) != gen;
    let answer = match fault {
        None => forward(upstream, &req),
        Some(Fault::DropBeforeRequest) => None,
        Some(Fault::DropAfterRequest) => {
            let _ = forward(upstream, &req);
            None
        }
        Some(Fault::StatusBefore(code)) => Some(status_answer(code)),
        Some(Fault::StatusAfter(code)) => {
            let _ = forward(upstream, &req);
            Some(status_answer(code))
        }
        Some(Fault::SlowRequest(d)) => {
            std::thread::sleep(d);
            forward(upstream, &req)
        }
        Some(Fault::SlowAnswer(d)) => {
            let a = forward(upstream, &req);
            std::thread::sleep(d);
            a
        }
        Some(Fault::DieAfterRequest) => {
            let _ = forward(upstream, &req);
            running.store(false, Ordering::SeqCst);
            generation.fetch_add(1, Ordering::SeqCst);
            // Wake the accept loop, which then drops the listener: connections are refused.
            let _ = TcpStream::connect(("127.0.0.1", port));
            None
        }
    };
    match answer {
        Some(a) if !dead() => {
            let _ = conn.write_all(&a);
        }
        _ => {}
    }
    let _ = conn.shutdown(Shutdown::Both);
}
