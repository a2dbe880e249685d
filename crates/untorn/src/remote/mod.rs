//! Object storage: the same guarantees on an S3-compatible bucket (`s3://bucket/key`), for
//! state shared by several machines. Behind the cargo feature `remote` (off by default: a
//! build without it links no HTTP client and no async runtime).
//!
//! A bucket has no rename, no `fsync` and no locks. What it has is a whole-object PUT (a
//! reader sees the old or the new object, never a mix; durable once acknowledged, by the
//! store's own terms) and **conditional writes**: `If-None-Match: *` creates only if the key is
//! absent, `If-Match: ETAG` replaces only the version that was read. untorn builds every
//! operation on those two:
//!
//! | operation | how | concurrent writers |
//! |---|---|---|
//! | [`RemoteOptions::write`] | one PUT | last commit wins, whole |
//! | [`RemoteOptions::create`] (no-clobber) | one PUT `If-None-Match: *` | exactly one creator; the rest fail with [`ErrorKind::AlreadyExists`] |
//! | [`RemoteOptions::update`], [`update_json`], [`RemoteOptions::edit`] | GET (content and ETag), compute, validate, PUT `If-Match: ETAG`; on a precondition failure re-read and re-run, with jittered backoff, within the timeout | never a lost update: each change is computed from the version it replaces |
//! | [`RemoteOptions::append_all`] | one new object per batch, under the key prefix `KEY/`, created with `If-None-Match: *` at the next free place | two writers never take one place; every record once, each writer's in order |
//! | [`RemoteOptions::read_log`] | list `KEY/`, read the batches in order | a consistent prefix of the log |
//! | [`RemoteOptions::versions`], [`RemoteOptions::restore`] | the bucket's own versions (S3 versioning) | a restore is an update: `If-Match` on the version it replaces |
//!
//! There are no locks: [`crate::lock()`] on a URL is refused (`untorn lock s3://...` too). A lease built on compare-and-swap
//! without a fencing token is unsafe (a paused holder wakes up after its lease ran out and
//! writes anyway); an update that re-runs on conflict is what a lock would have been used for.
//!
//! # The ambiguous commit
//!
//! A PUT can succeed on the server while its answer is lost (the connection dropped, a 5xx
//! from a proxy, a timeout). Retrying the *same* conditional PUT is harmless (it carries the
//! same condition, so at most one of the attempts can succeed), but re-running the change on
//! what is there now would apply it twice if the lost one had succeeded (a counter bumped by
//! two). So every version untorn writes carries, in the object's user metadata, a random id and
//! the ids of the versions it descends from (`x-amz-meta-untorn-lineage`, the last
//! [`LINEAGE_LEN`] of them). After a lost answer or a precondition failure that may follow
//! one, untorn reads the object and decides:
//!
//! - its own id is in the lineage: the write succeeded (perhaps, and since overwritten, by a
//!   writer that built on it): reported as success, once, and not repeated;
//! - the object is still the version it read: the same PUT is sent again;
//! - the lineage proves the write cannot have succeeded (the id of the version it read is
//!   there, followed by another writer's): the change is re-run on the new version;
//! - otherwise (another program wrote without untorn's metadata, or more than
//!   [`LINEAGE_LEN`] writes happened in between, or the time ran out while the PUT may still
//!   be on its way): [`ErrorKind::OutcomeUnknown`], with nothing retried. The change was
//!   applied once or not at all, never twice.
//!
//! # Durability
//!
//! A version is durable when the store acknowledges the PUT (S3: stored redundantly across
//! devices in several availability zones before the success answer). untorn adds no cache:
//! every call returns only after the store acknowledged its write.
//!
//! # Credentials and endpoint
//!
//! From the standard environment, as `object_store`'s `AmazonS3Builder::from_env` reads it:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), web identity and container credentials, and
//! instance metadata. An endpoint given as `http://` is used without TLS.

mod client;
mod commit;
mod lineage;
mod log;
mod versions;

pub use commit::Outcome;
pub use lineage::LINEAGE_LEN;
pub use versions::{RemoteRestored, Version};

use crate::edit::{EditOptions, Edited};
use crate::error::{Error, ErrorKind, Op, Result};
#[cfg(any(feature = "json", feature = "yaml", feature = "toml"))]
use crate::format::Format;
use crate::log::{Log, LogFormat};
use std::fmt;
use std::time::Duration;

/// The address of an object: `s3://bucket/key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Url {
    bucket: String,
    key: String,
}

impl Url {
    /// Parses `s3://bucket/key`. The bucket name follows S3's rules (3 to 63 lowercase letters,
    /// digits, `.` and `-`); the key is not empty and has no empty, `.` or `..` segment.
    ///
    /// ```
    /// let u = untorn::remote::Url::parse("s3://my-bucket/state/a.json")?;
    /// assert_eq!((u.bucket(), u.key()), ("my-bucket", "state/a.json"));
    /// assert!(untorn::remote::Url::parse("s3://my-bucket/").is_err());
    /// # Ok::<(), untorn::Error>(())
    /// ```
    pub fn parse(s: &str) -> Result<Url> {
        let bad = |why: &str| {
            Error::new(
                Op::Open,
                s,
                ErrorKind::InvalidInput,
                format!("not an object URL: {why} (expected s3://BUCKET/KEY)"),
            )
        };
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(bad("no scheme"));
        };
        if scheme != "s3" {
            return Err(Error::new(
                Op::Open,
                s,
                ErrorKind::Unsupported,
                format!(
                    "'{scheme}://' URLs are not supported; untorn speaks s3:// (any S3-compatible \
                     store: set AWS_ENDPOINT_URL)"
                ),
            ));
        }
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && bucket
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(bad(&format!(
                "'{bucket}' is not a bucket name (3 to 63 lowercase letters, digits, '.', '-')"
            )));
        }
        if key.is_empty() {
            return Err(bad("no key after the bucket"));
        }
        if key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(bad(&format!(
                "the key '{key}' has an empty, '.' or '..' segment"
            )));
        }
        if key.len() > 1024 || key.chars().any(char::is_control) {
            return Err(bad("the key is too long or holds control characters"));
        }
        Ok(Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key of the object in its bucket.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The URL as a path, for errors (`cannot write 's3://b/k': ...`).
    pub(crate) fn as_path(&self) -> std::path::PathBuf {
        self.to_string().into()
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Whether `arg` looks like a URL (`scheme://...`) rather than a local path: the command line
/// sends these to this module (where schemes other than `s3` are refused, by name), and never
/// to the file system.
pub fn is_url(arg: impl AsRef<std::ffi::OsStr>) -> bool {
    let Some(s) = arg.as_ref().to_str() else {
        return false;
    };
    match s.split_once("://") {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// The default bound on a remote operation, retries included: one minute.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of remote operations: the bound on each (retries included) and whether a conflict
/// is retried.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    timeout: Duration,
    retry_conflicts: bool,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            timeout: DEFAULT_TIMEOUT,
            retry_conflicts: true,
        }
    }
}

impl RemoteOptions {
    /// Bounded by [`DEFAULT_TIMEOUT`], conflicts retried.
    pub fn new() -> RemoteOptions {
        RemoteOptions::default()
    }

    /// The bound on the whole operation: requests, backoff and re-runs. When it runs out before
    /// anything was sent, the error is [`ErrorKind::TimedOut`] and nothing was written; when a
    /// write was sent and its answer did not come in time, untorn reads the object once more to
    /// tell, and otherwise reports [`ErrorKind::OutcomeUnknown`].
    pub fn timeout(&mut self, d: Duration) -> &mut Self {
        self.timeout = d;
        self
    }

    /// Whether an update whose version was replaced meanwhile is re-run on the new one (the
    /// default), or fails at once with [`ErrorKind::WouldBlock`] (`untorn edit --nonblock`).
    pub fn retry_conflicts(&mut self, yes: bool) -> &mut Self {
        self.retry_conflicts = yes;
        self
    }

    /// The object's content, or `None` if it does not exist.
    pub fn read(&self, url: &Url) -> Result<Option<Vec<u8>>> {
        commit::read(self, url)
    }

    /// Replaces (or creates) the object with `data`: one PUT, atomic and durable once it
    /// returns. Not serialised with other writers: the last commit wins, whole.
    pub fn write(&self, url: &Url, data: &[u8]) -> Result<Outcome> {
        commit::write(self, url, data, false)
    }

    /// Creates the object with `data` only if it does not exist (`If-None-Match: *`);
    /// [`ErrorKind::AlreadyExists`] otherwise.
    pub fn create(&self, url: &Url, data: &[u8]) -> Result<Outcome> {
        commit::write(self, url, data, true)
    }

    /// Optimistic read-modify-write: `f` gets the content (`None`: no object) and returns the
    /// new content, or `None` to write nothing; output identical to the input writes nothing.
    /// If another writer replaced the object meanwhile, `f` runs again on the new version (so
    /// it may run several times: keep side effects out of it). See the module docs for the
    /// ambiguous commit.
    pub fn update<E, F>(&self, url: &Url, f: F) -> Result<Outcome, E>
    where
        F: FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
        E: From<Error>,
    {
        commit::update(self, url, f)
    }

    /// [`update`](Self::update) of a JSON, YAML or TOML object as a `T` (starting from
    /// `default` when there is none); returns what `f` returned on the run that committed.
    #[cfg(any(feature = "json", feature = "yaml", feature = "toml"))]
    pub fn update_as<T, R>(
        &self,
        format: Format,
        url: &Url,
        default: T,
        mut f: impl FnMut(&mut T) -> R,
    ) -> Result<R>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Clone,
    {
        let path = url.as_path();
        let mut out = None;
        self.update(url, |old| -> Result<Option<Vec<u8>>> {
            let (mut value, before) = match old {
                Some(bytes) => {
                    let v: T = format.parse(bytes, &path)?;
                    let before = format.render(&v, &path)?;
                    (v, Some(before))
                }
                None => (default.clone(), None),
            };
            out = Some(f(&mut value));
            let after = format.render(&value, &path)?;
            Ok((before.as_ref() != Some(&after)).then_some(after))
        })?;
        Ok(out.expect("the closure ran"))
    }

    /// `untorn edit URL -- FILTER`: [`update`](Self::update) through an external filter, with
    /// [`EditOptions`]' checks (format, empty output, default content, signals). The filter
    /// runs again if the object changed meanwhile.
    pub fn edit(
        &self,
        url: &Url,
        edit: &EditOptions,
        filter: &mut std::process::Command,
    ) -> Result<(Edited, Outcome)> {
        let path = url.as_path();
        let format = edit.format_for(&path);
        let _handling = edit.signal_guard();
        let outcome = self.update(url, |old| edit.transform(&path, format, old, filter))?;
        let edited = if outcome.written {
            Edited::Written
        } else {
            Edited::Unchanged
        };
        Ok((edited, outcome))
    }

    /// Appends `records` (one line each, no newline inside; with [`LogFormat::JsonLines`] each
    /// one JSON value) to the log at `url`, as one new object under the prefix `KEY/`: one PUT
    /// of the batch, O(batch) whatever the log's length. Durable when it returns.
    pub fn append_all<R: AsRef<[u8]>>(
        &self,
        url: &Url,
        records: &[R],
        format: LogFormat,
    ) -> Result<Outcome> {
        log::append(self, url, records, format)
    }

    /// The log at `url`, oldest record first (an empty log if nothing was appended yet).
    pub fn read_log(&self, url: &Url, format: LogFormat) -> Result<Log> {
        log::read(self, url, format, None)
    }

    /// The last `n` records of the log at `url`: reads only the newest batches.
    pub fn tail(&self, url: &Url, format: LogFormat, n: usize) -> Result<Log> {
        log::read(self, url, format, Some(n))
    }

    /// The older versions of the object that the bucket keeps (S3 versioning), newest first.
    /// A bucket without versioning: [`ErrorKind::Unsupported`].
    pub fn versions(&self, url: &Url) -> Result<Vec<Version>> {
        versions::list(self, url)
    }

    /// Makes an older version current again (`which`: the newest older version, the k-th, or
    /// one by its version id), as an update (`If-Match` on the version it replaces, which
    /// stays in the bucket's history: a restore can be undone). A version whose content does
    /// not match the checksum untorn recorded is refused ([`ErrorKind::InvalidContent`]).
    pub fn restore(&self, url: &Url, which: &crate::backup::Which) -> Result<RemoteRestored> {
        versions::restore(self, url, which)
    }

    /// Checks the object: it exists, matches the checksum untorn recorded when it wrote it
    /// (if any), and passes `validator`.
    pub fn check(&self, url: &Url, validator: &crate::backup::Validator) -> Result<()> {
        commit::check(self, url, validator)
    }
}

/// [`RemoteOptions::read`] with the default options; `url` is parsed first.
pub fn read(url: &str) -> Result<Option<Vec<u8>>> {
    RemoteOptions::new().read(&Url::parse(url)?)
}

/// [`RemoteOptions::write`] with the default options.
pub fn write(url: &str, data: impl AsRef<[u8]>) -> Result<Outcome> {
    RemoteOptions::new().write(&Url::parse(url)?, data.as_ref())
}

/// [`RemoteOptions::update`] with the default options.
pub fn update<E, F>(url: &str, f: F) -> Result<Outcome, E>
where
    F: FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
    E: From<Error>,
{
    RemoteOptions::new().update(&Url::parse(url)?, f)
}

macro_rules! typed {
    ($feature:literal, $fmt:ident, $update:ident, $name:literal) => {
        #[doc = concat!("Optimistic read-modify-write of a ", $name, " object as a `T` (`default` when it does")]
        #[doc = "not exist): [`RemoteOptions::update_as`] with the default options. `f` may run"]
        #[doc = "more than once (once per conflict); its result on the run that committed is returned."]
        #[cfg(feature = $feature)]
        pub fn $update<T, R>(url: &str, default: T, f: impl FnMut(&mut T) -> R) -> Result<R>
        where
            T: serde::Serialize + serde::de::DeserializeOwned + Clone,
        {
            RemoteOptions::new().update_as(Format::$fmt, &Url::parse(url)?, default, f)
        }
    };
}

typed!("json", Json, update_json, "JSON");
typed!("yaml", Yaml, update_yaml, "YAML");
typed!("toml", Toml, update_toml, "TOML");

#[cfg(test)]
mod tests;
