//! Backups on a bucket: the versions the bucket keeps (S3 versioning), listed with
//! `ListObjectVersions` (a signed request: `object_store` has no call for it), read by version
//! id, and restored as an update of the current version.

use super::client::{block_on, client, matches_sum, Client, Deadline};
use super::commit::Outcome;
use super::{RemoteOptions, Url};
use crate::backup::Which;
use crate::error::{Error, ErrorKind, Op, Result};

/// A version of an object that the bucket keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Version {
    /// The store's version id (`null`: the version written before versioning was turned on).
    pub id: String,
    /// When it was written, as the store says (`2026-11-22T10:00:00.000Z`).
    pub last_modified: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag.
    pub e_tag: Option<String>,
}

/// What [`RemoteOptions::restore`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RemoteRestored {
    /// The version restored.
    pub from: Version,
    /// The version it replaced (still in the bucket's history), if the store named it.
    pub displaced: Option<String>,
    /// The update that made it current (`written` is false if it already was the content).
    pub outcome: Outcome,
}

/// Decodes the five XML entities.
pub(crate) fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

pub(crate) fn field(block: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = block.find(&open)? + open.len();
    let end = block[start..].find(&format!("</{tag}>"))? + start;
    Some(unescape(&block[start..end]))
}

/// The `<Version>` entries of a `ListVersionsResult` for exactly `key`, in the order given
/// (newest first), with whether each is the latest.
pub(crate) fn parse_versions(xml: &str, key: &str) -> Vec<(Version, bool)> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<Version>") {
        let after = &rest[i + "<Version>".len()..];
        let Some(j) = after.find("</Version>") else {
            break;
        };
        let block = &after[..j];
        rest = &after[j..];
        if field(block, "Key").as_deref() != Some(key) {
            continue;
        }
        let Some(id) = field(block, "VersionId") else {
            continue;
        };
        out.push((
            Version {
                id,
                last_modified: field(block, "LastModified").unwrap_or_default(),
                size: field(block, "Size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                e_tag: field(block, "ETag"),
            },
            field(block, "IsLatest").as_deref() == Some("true"),
        ));
    }
    out
}

/// Every version of the object (newest first), with whether each is the latest.
async fn all_versions(c: &Client, url: &Url, deadline: &Deadline) -> Result<Vec<(Version, bool)>> {
    let fail = |kind, why: String| Error::new(Op::ListDir, url.as_path(), kind, why);
    let (status, body) = c
        .signed_get(
            url,
            &[("versions", ""), ("prefix", url.key())],
            Op::ListDir,
            deadline,
        )
        .await?;
    let text = body;
    if !status.is_success() {
        let code = field(&text, "Code").unwrap_or_default();
        let kind = match (status.as_u16(), code.as_str()) {
            (404, "NoSuchBucket") => {
                return Err(fail(
                    ErrorKind::NotFound,
                    format!("no such bucket '{}'", url.bucket()),
                ))
            }
            (404, _) => ErrorKind::NotFound,
            (401 | 403, _) => ErrorKind::PermissionDenied,
            _ => ErrorKind::Other,
        };
        return Err(fail(
            kind,
            format!("the store refused to list the versions ({status}, {code})"),
        ));
    }
    Ok(parse_versions(&text, url.key()))
}

/// The older versions the bucket keeps, newest first.
pub(crate) fn list(opts: &RemoteOptions, url: &Url) -> Result<Vec<Version>> {
    let c = client(url)?;
    let deadline = Deadline::after(opts.timeout);
    let all = block_on(async {
        c.credentials(url, Op::ListDir, &deadline).await?;
        all_versions(&c, url, &deadline).await
    })?;
    older(url, all)
}

/// The versions that are not the latest; an error if the bucket keeps no versions.
fn older(url: &Url, all: Vec<(Version, bool)>) -> Result<Vec<Version>> {
    if all.is_empty() {
        return Err(Error::new(
            Op::ListDir,
            url.as_path(),
            ErrorKind::NotFound,
            "no such object, and no versions of it".into(),
        ));
    }
    if all.iter().all(|(v, _)| v.id == "null") {
        return Err(Error::new(
            Op::Backup,
            url.as_path(),
            ErrorKind::Unsupported,
            format!(
                "the bucket '{}' keeps no versions (turn versioning on for it, e.g. `aws s3api \
                 put-bucket-versioning --bucket {} --versioning-configuration Status=Enabled`: \
                 every version a write replaces is then kept)",
                url.bucket(),
                url.bucket()
            ),
        ));
    }
    Ok(all
        .into_iter()
        .filter(|(_, latest)| !latest)
        .map(|(v, _)| v)
        .collect())
}

impl RemoteOptions {
    /// The content of one version of the object (by its version id), and whether it matches
    /// the checksum untorn recorded when it wrote it (`None`: nothing recorded).
    pub fn read_version(&self, url: &Url, id: &str) -> Result<(Vec<u8>, Option<bool>)> {
        let c = client(url)?;
        let deadline = Deadline::after(self.timeout);
        let got = block_on(async {
            c.credentials(url, Op::Read, &deadline).await?;
            c.get(url, url.key(), Some(id), &deadline)
                .await
                .map_err(|f| f.error(Op::Read, url.as_path()))
        })?;
        let got = got.ok_or_else(|| {
            Error::new(
                Op::Read,
                url.as_path(),
                ErrorKind::NotFound,
                format!("no version '{id}'"),
            )
        })?;
        let whole = matches_sum(&got.body, got.sum.as_deref());
        Ok((got.body, whole))
    }
}

pub(crate) fn restore(opts: &RemoteOptions, url: &Url, which: &Which) -> Result<RemoteRestored> {
    let c = client(url)?;
    let deadline = Deadline::after(opts.timeout);
    let all = block_on(async {
        c.credentials(url, Op::Restore, &deadline).await?;
        all_versions(&c, url, &deadline).await
    })?;
    let displaced = all.iter().find(|(_, l)| *l).map(|(v, _)| v.id.clone());
    let older = older(url, all)?;
    let missing = |why: String| Error::new(Op::Restore, url.as_path(), ErrorKind::NotFound, why);
    let from = match which {
        Which::Newest => older
            .first()
            .cloned()
            .ok_or_else(|| missing("no older version to restore".into()))?,
        Which::Nth(k) => older
            .get(k.saturating_sub(1))
            .cloned()
            .ok_or_else(|| missing(format!("no {k}th older version ({} kept)", older.len())))?,
        Which::Named(name) => {
            let name = name.to_string_lossy();
            older
                .iter()
                .find(|v| v.id == name)
                .cloned()
                .ok_or_else(|| missing(format!("no older version '{name}'")))?
        }
    };
    let (content, whole) = opts.read_version(url, &from.id)?;
    if whole == Some(false) {
        return Err(Error::new(
            Op::Restore,
            url.as_path(),
            ErrorKind::InvalidContent,
            format!(
                "the version '{}' is damaged: its content does not match the checksum untorn \
                 recorded when it wrote it",
                from.id
            ),
        ));
    }
    let outcome = opts.update(url, |_| Ok::<_, Error>(Some(content.clone())))?;
    Ok(RemoteRestored {
        from,
        displaced,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_exactly_the_key_newest_first() {
        let xml = r#"<?xml version="1.0"?><ListVersionsResult>
<Version><Key>a.json</Key><VersionId>v3</VersionId><IsLatest>true</IsLatest><LastModified>2026-01-01T00:00:03.000Z</LastModified><ETag>&quot;e3&quot;</ETag><Size>3</Size></Version>
<DeleteMarker><Key>a.json</Key><VersionId>d1</VersionId></DeleteMarker>
<Version><Key>a.json</Key><VersionId>v2</VersionId><IsLatest>false</IsLatest><LastModified>2026-01-01T00:00:02.000Z</LastModified><Size>2</Size></Version>
<Version><Key>a.json.bak</Key><VersionId>x</VersionId><IsLatest>true</IsLatest><Size>9</Size></Version>
</ListVersionsResult>"#;
        let v = parse_versions(xml, "a.json");
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].0.id.as_str(), v[0].1), ("v3", true));
        assert_eq!(v[0].0.e_tag.as_deref(), Some("\"e3\""));
        assert_eq!((v[1].0.id.as_str(), v[1].0.size, v[1].1), ("v2", 2, false));
        let u = Url::parse("s3://bkt/a.json").unwrap();
        assert_eq!(older(&u, v).unwrap().len(), 1);
        let unversioned = parse_versions(
            "<Version><Key>a.json</Key><VersionId>null</VersionId><IsLatest>true</IsLatest></Version>",
            "a.json",
        );
        assert_eq!(
            older(&u, unversioned).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
    }
}
