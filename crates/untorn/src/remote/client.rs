//! The connection to a store: the async runtime (started on the first remote call, never by a
//! local one), one `object_store` client per bucket, the requests untorn makes, each bounded by
//! the operation's deadline, and what their errors mean.

use super::lineage::{Lineage, LINEAGE_KEY, SUM_KEY};
use super::Url;
use crate::error::{Error, ErrorKind, Op, Result};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, ObjectStore, PutMode, PutOptions,
    PutPayload, PutResult, RetryConfig,
};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The runtime every remote call runs on: one thread (the caller's), started on first use.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread tokio runtime")
    })
}

/// Runs `f` to completion on the runtime.
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// A bucket's client: the store, and the S3 handle for the requests `object_store` has no call
/// for (listing versions).
pub(crate) struct Client {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) s3: Option<AmazonS3>,
    /// For the signed requests, made when first needed.
    http: OnceLock<object_store::client::HttpClient>,
}

fn clients() -> &'static Mutex<HashMap<String, Arc<Client>>> {
    static CLIENTS: OnceLock<Mutex<HashMap<String, Arc<Client>>>> = OnceLock::new();
    CLIENTS.get_or_init(Default::default)
}

/// The client of `url`'s bucket (built once per process, from the environment).
pub(crate) fn client(url: &Url) -> Result<Arc<Client>> {
    let mut map = clients().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = map.get(url.bucket()) {
        return Ok(c.clone());
    }
    let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|k| std::env::var(k).ok());
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(url.bucket())
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        // untorn retries by itself, knowing which requests may have landed (a hidden retry
        // of a conditional PUT would turn its own success into a precondition failure).
        .with_retry(RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        });
    if endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"))
    {
        // Plain HTTP, as asked: and no TLS, so no need to load the system's certificates
        // (tens of milliseconds a process).
        use object_store::aws::AmazonS3ConfigKey;
        use object_store::ClientConfigKey;
        b = b.with_allow_http(true).with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::NoSystemCertificates),
            "true",
        );
    }
    let s3 = b.build().map_err(|e| {
        Error::new(
            Op::Open,
            url.as_path(),
            ErrorKind::InvalidInput,
            format!("cannot set up the S3 client: {}", one_line(&e.to_string())),
        )
    })?;
    let c = Arc::new(Client {
        store: Arc::new(s3.clone()),
        s3: Some(s3),
        http: OnceLock::new(),
    });
    map.insert(url.bucket().to_string(), c.clone());
    Ok(c)
}

/// Puts `store` in place of the S3 client for `bucket` (tests: an in-memory store).
#[cfg(test)]
pub(crate) fn install(bucket: &str, store: Arc<dyn ObjectStore>) {
    clients().lock().unwrap().insert(
        bucket.to_string(),
        Arc::new(Client {
            store,
            s3: None,
            http: OnceLock::new(),
        }),
    );
}

/// When an operation must end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    pub(crate) fn after(d: Duration) -> Deadline {
        Deadline(Instant::now() + d)
    }

    pub(crate) fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    pub(crate) fn passed(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Too little time left to start another attempt of a write that did not land: one that
    /// the deadline cut short might land after all, and turn "nothing written" into "unknown".
    pub(crate) fn nearly_passed(&self) -> bool {
        self.remaining() < Duration::from_millis(250)
    }
}

/// Full-jitter exponential backoff: attempt 0 waits up to 10 ms, doubling to at most 1 s.
pub(crate) async fn backoff(attempt: u32, deadline: &Deadline) {
    let cap = Duration::from_millis(10)
        .saturating_mul(1u32 << attempt.min(7))
        .min(Duration::from_secs(1));
    let d = cap.mul_f64(fastrand::f64()).min(deadline.remaining());
    tokio::time::sleep(d).await;
}

/// Whether a failed read is worth another try.
fn retryable(c: Class) -> bool {
    matches!(c, Class::Transient | Class::Unavailable)
}

/// A version as read: content, identity and untorn's metadata.
#[derive(Clone, Debug)]
pub(crate) struct Got {
    pub(crate) body: Vec<u8>,
    pub(crate) e_tag: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) lineage: Lineage,
    pub(crate) sum: Option<String>,
}

/// What an error of the store means for untorn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// No such object (404).
    NotFound,
    /// No such bucket.
    NoBucket,
    /// The credentials or the request were refused (401, 403).
    Denied,
    /// A condition failed (412, or 409: a conflicting conditional write).
    Condition,
    /// No answer, or a server error (500, 502, 504, 408): a write may or may not have landed.
    Transient,
    /// The store did not take the request: no connection could be made, or it answered 503
    /// (Slow Down, Service Unavailable) or 429 (throttled), which S3 sends for a request it
    /// did not process. Worth retrying; a write did not land.
    Unavailable,
    /// Any other refusal: nothing was done.
    Fatal,
    /// The deadline passed while waiting.
    Timeout,
}

/// A failed request: its class and a one-line reason.
#[derive(Clone, Debug)]
pub(crate) struct Failed {
    pub(crate) class: Class,
    pub(crate) why: String,
}

impl Failed {
    /// The untorn error for this failure of `op` on `path`.
    pub(crate) fn error(&self, op: Op, path: impl Into<PathBuf>) -> Error {
        let kind = match self.class {
            Class::NotFound | Class::NoBucket => ErrorKind::NotFound,
            Class::Denied => ErrorKind::PermissionDenied,
            Class::Condition => ErrorKind::AlreadyExists,
            Class::Transient | Class::Unavailable => ErrorKind::Io,
            Class::Fatal => ErrorKind::Other,
            Class::Timeout => ErrorKind::TimedOut,
        };
        Error::new(op, path, kind, self.why.clone())
    }
}

/// A message on one line, not too long.
pub(crate) fn one_line(s: &str) -> String {
    let s: String = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect();
    s
}

/// The text between `<tag>` and `</tag>` in an S3 error body.
fn xml_field<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(&body[start..end])
}

/// Classifies an error of `object_store` for `url`. `object_store` keeps the HTTP status to
/// itself, but says it in its messages ("Server returned non-2xx status code: 412 ...").
pub(crate) fn classify(e: &object_store::Error, url: &Url) -> Failed {
    use std::error::Error as _;
    let mut source = e.source();
    let mut status: Option<u16> = None;
    let mut body = String::new();
    let mut innermost = None;
    let mut connect = false;
    while let Some(s) = source {
        let text = s.to_string();
        if let Some(h) = s.downcast_ref::<object_store::client::HttpError>() {
            connect |= matches!(h.kind(), object_store::client::HttpErrorKind::Connect);
        }
        if let Some(rest) = text.strip_prefix("Server returned non-2xx status code: ") {
            status = rest.get(..3).and_then(|d| d.parse().ok());
            body = rest.to_string();
        } else if let Some(rest) = text.strip_prefix("Server returned error response: ") {
            // S3 can answer 200 with an error in the body: a server error.
            status = Some(500);
            body = rest.to_string();
        }
        innermost = Some(text);
        source = s.source();
    }
    let code = xml_field(&body, "Code").unwrap_or_default().to_string();
    let message = xml_field(&body, "Message").unwrap_or_default().to_string();
    let answered = |what: &str| match (status, code.is_empty()) {
        (Some(s), false) if message.is_empty() => format!("{what} (HTTP {s}, {code})"),
        (Some(s), false) => format!("{what} (HTTP {s}, {code}: {})", one_line(&message)),
        (Some(s), true) => format!("{what} (HTTP {s})"),
        (None, _) => what.to_string(),
    };
    use object_store::Error as E;
    let (class, why) = match e {
        E::NotFound { .. } if code == "NoSuchBucket" || body.contains("NoSuchBucket") => (
            Class::NoBucket,
            format!("no such bucket '{}'", url.bucket()),
        ),
        E::NotFound { .. } => (Class::NotFound, "no such object".to_string()),
        E::Precondition { .. } | E::AlreadyExists { .. } | E::NotModified { .. } => (
            Class::Condition,
            answered("the store refused the condition"),
        ),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => (
            Class::Denied,
            answered(
                "permission denied by the store (check the credentials: AWS_ACCESS_KEY_ID, \
                 AWS_SECRET_ACCESS_KEY)",
            ),
        ),
        _ => match status {
            Some(s) if s == 503 || s == 429 => {
                (Class::Unavailable, answered("the store is unavailable"))
            }
            Some(s) if s >= 500 || s == 408 => (Class::Transient, answered("the store failed")),
            Some(_) => (Class::Fatal, answered("the store refused the request")),
            None if connect => (
                Class::Unavailable,
                format!(
                    "cannot connect to the store: {}",
                    one_line(innermost.as_deref().unwrap_or("connection failed"))
                ),
            ),
            None if matches!(e, E::Generic { .. }) => (
                Class::Transient,
                format!(
                    "no answer from the store: {}",
                    one_line(innermost.as_deref().unwrap_or("connection failed"))
                ),
            ),
            None => (Class::Fatal, one_line(&e.to_string())),
        },
    };
    Failed { class, why }
}

impl Client {
    /// A GET of the bucket itself with `query` (a listing `object_store` has no call for),
    /// signed with the client's credentials: the status and the body. `Unsupported` for a
    /// store that is not S3.
    pub(crate) async fn signed_get(
        &self,
        url: &Url,
        query: &[(&str, &str)],
        op: Op,
        deadline: &Deadline,
    ) -> Result<(http::StatusCode, String)> {
        use object_store::client::{
            ClientOptions, HttpConnector, HttpRequestBody, ReqwestConnector,
        };
        use object_store::signer::{SignedUrlOptions, Signer};
        let fail = |kind, why: String| Error::new(op, url.as_path(), kind, why);
        let Some(s3) = &self.s3 else {
            return Err(fail(
                ErrorKind::Unsupported,
                "this store takes no signed listings".into(),
            ));
        };
        let signed = s3
            .signed_url_opts(
                http::Method::GET,
                &ObjectPath::from(""),
                Duration::from_secs(600),
                &SignedUrlOptions::new().with_query(query.iter().copied()),
            )
            .await
            .map_err(|e| fail(ErrorKind::Other, one_line(&e.to_string())))?;
        let http = match self.http.get() {
            Some(h) => h.clone(),
            None => {
                let mut o = ClientOptions::new().with_allow_http(signed.scheme() == "http");
                if signed.scheme() == "http" {
                    o = o.with_config(object_store::ClientConfigKey::NoSystemCertificates, "true");
                }
                let h = ReqwestConnector::default()
                    .connect(&o)
                    .map_err(|e| fail(ErrorKind::Other, one_line(&e.to_string())))?;
                self.http.get_or_init(|| h).clone()
            }
        };
        let request = http::Request::builder()
            .method(http::Method::GET)
            .uri(signed.as_str())
            .body(HttpRequestBody::empty())
            .map_err(|e| fail(ErrorKind::InvalidInput, e.to_string()))?;
        let fut = async {
            let resp = http.execute(request).await?;
            let status = resp.status();
            let body = resp.into_body().bytes().await?;
            Ok::<_, object_store::client::HttpError>((status, body))
        };
        match tokio::time::timeout(deadline.remaining(), fut).await {
            Err(_) => Err(fail(
                ErrorKind::TimedOut,
                "no answer from the store in time".into(),
            )),
            Ok(Err(e)) => Err(fail(
                ErrorKind::Io,
                format!("no answer from the store: {}", one_line(&e.to_string())),
            )),
            Ok(Ok((status, body))) => Ok((status, String::from_utf8_lossy(&body).into_owned())),
        }
    }

    /// Fails unless credentials can be had (from the environment, a role, instance metadata):
    /// a clear error up front instead of a refused request.
    pub(crate) async fn credentials(&self, url: &Url, op: Op, deadline: &Deadline) -> Result<()> {
        let Some(s3) = &self.s3 else { return Ok(()) };
        let limit = deadline.remaining().min(Duration::from_secs(10));
        match tokio::time::timeout(limit, s3.credentials().get_credential()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::new(
                op,
                url.as_path(),
                ErrorKind::PermissionDenied,
                format!(
                    "no credentials for the store (set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, or run where a role provides them): {}",
                    one_line(&e.to_string())
                ),
            )),
            Err(_) => Err(Error::new(
                op,
                url.as_path(),
                ErrorKind::PermissionDenied,
                "no credentials for the store: none in the environment, and none came from \
                 instance metadata in time (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                    .to_string(),
            )),
        }
    }

    /// One GET of `key` (a given `version`, or the current one): `Ok(None)` if there is no such
    /// object. Not retried.
    pub(crate) async fn get_once(
        &self,
        url: &Url,
        key: &str,
        version: Option<&str>,
        deadline: &Deadline,
    ) -> std::result::Result<Option<Got>, Failed> {
        let path = ObjectPath::from(key);
        let opts = GetOptions {
            version: version.map(str::to_string),
            ..GetOptions::default()
        };
        let fut = async {
            let r = self.store.get_opts(&path, opts).await?;
            let meta = r.meta.clone();
            let attrs = r.attributes.clone();
            let body = r.bytes().await?;
            Ok::<_, object_store::Error>((meta, attrs, body))
        };
        match tokio::time::timeout(deadline.remaining(), fut).await {
            Err(_) => Err(Failed {
                class: Class::Timeout,
                why: "no answer from the store in time".into(),
            }),
            Ok(Ok((meta, attrs, body))) => {
                let meta_of = |k: &'static str| {
                    attrs
                        .get(&Attribute::Metadata(k.into()))
                        .map(|v| v.to_string())
                };
                Ok(Some(Got {
                    body: body.to_vec(),
                    e_tag: meta.e_tag,
                    version: meta.version,
                    lineage: Lineage::parse(meta_of(LINEAGE_KEY).as_deref()),
                    sum: meta_of(SUM_KEY),
                }))
            }
            Ok(Err(e)) => {
                let f = classify(&e, url);
                if f.class == Class::NotFound {
                    Ok(None)
                } else {
                    Err(f)
                }
            }
        }
    }

    /// GET, retrying failures that may pass (no answer, 5xx) until the deadline.
    pub(crate) async fn get(
        &self,
        url: &Url,
        key: &str,
        version: Option<&str>,
        deadline: &Deadline,
    ) -> std::result::Result<Option<Got>, Failed> {
        let mut attempt = 0;
        loop {
            match self.get_once(url, key, version, deadline).await {
                Err(f) if retryable(f.class) && !deadline.passed() => {
                    tracing::debug!(target: "untorn", url = %url, why = %f.why, "read failed; retrying");
                    backoff(attempt, deadline).await;
                    attempt += 1;
                }
                Err(f) if retryable(f.class) => {
                    return Err(Failed {
                        class: Class::Timeout,
                        why: format!("the store did not answer in time ({})", f.why),
                    })
                }
                r => return r,
            }
        }
    }

    /// One PUT of `body` at `key` with `mode`, carrying `lineage` and the checksum. Not retried.
    pub(crate) async fn put_once(
        &self,
        url: &Url,
        key: &str,
        body: &[u8],
        mode: PutMode,
        lineage: &Lineage,
        deadline: &Deadline,
    ) -> std::result::Result<PutResult, Failed> {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(LINEAGE_KEY.into()),
            AttributeValue::from(lineage.render()),
        );
        attributes.insert(
            Attribute::Metadata(SUM_KEY.into()),
            AttributeValue::from(sum_of(body)),
        );
        let opts = PutOptions {
            mode,
            attributes,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(body.to_vec());
        let path = ObjectPath::from(key);
        match tokio::time::timeout(
            deadline.remaining(),
            self.store.put_opts(&path, payload, opts),
        )
        .await
        {
            Err(_) => Err(Failed {
                class: Class::Timeout,
                why: "no answer from the store in time".into(),
            }),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(classify(&e, url)),
        }
    }
}

/// The checksum untorn records with every version: `crc32=XXXXXXXX size=N`.
pub(crate) fn sum_of(body: &[u8]) -> String {
    format!("crc32={:08x} size={}", crc32fast::hash(body), body.len())
}

/// Whether `body` matches the checksum `sum` recorded with it (`None`: nothing recorded).
pub(crate) fn matches_sum(body: &[u8], sum: Option<&str>) -> Option<bool> {
    sum.map(|s| s.trim() == sum_of(body))
}
