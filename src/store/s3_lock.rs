//! S3 Object Lock: a bucket whose default retention keeps every version cairn writes for
//! `days`, so that whoever takes over this machine (and its credentials) cannot destroy the
//! copy there. opendal speaks no bucket configuration, so the few requests this needs are
//! signed here with reqsign (already under opendal).
//!
//! A target that claims a lock and has none is worse than none: [`ObjectLocked`] checks the
//! bucket before its first write and refuses every write when the lock is not in force.
//! Deletions go through as usual: with versioning they only add a delete marker, and the
//! locked versions stay until their retention ends.

use std::sync::OnceLock;

use bytes::Bytes;
use http::{Method, StatusCode};
use reqsign_aws_v4::{RequestSigner, StaticCredentialProvider};
use reqsign_core::{Context, Signer};
use sha2::{Digest, Sha256};

use super::{Protection, Store, StoreError, StoreErrorKind, StoreResult};
use crate::config::ObjectLock;

/// Signed requests to one bucket.
pub(super) struct Bucket {
    /// `http://host:port/bucket` or `https://bucket.host`.
    base: String,
    /// The target's prefix inside the bucket (no slashes around).
    prefix: String,
    signer: Signer<reqsign_aws_v4::Credential>,
    timeout: std::time::Duration,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("base", &self.base).finish()
    }
}

/// One version of an object, as `ListObjectVersions` gives it (newest first per key).
#[derive(Debug, Clone)]
struct Listed {
    key: String,
    version: String,
    modified: jiff::Timestamp,
    size: u64,
    /// A delete marker: the key was deleted then.
    deleted: bool,
}

/// `s` percent-encoded for a query value (all but RFC 3986's unreserved characters).
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `<name>...</name>` elements of `xml`, in order.
fn elements<'a>(xml: &'a str, name: &str) -> Vec<(usize, &'a str)> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = xml[from..].find(&open) {
        let start = from + start + open.len();
        let Some(end) = xml[start..].find(&close) else {
            break;
        };
        out.push((start, &xml[start..start + end]));
        from = start + end + close.len();
    }
    out
}

/// An answer: status, one header's value and the body.
struct Answer {
    status: StatusCode,
    version: Option<String>,
    /// The body as text (S3's XML).
    body: String,
    /// The body as sent.
    raw: Bytes,
}

impl Answer {
    /// `what` failed with this answer: the status and S3's error code (a missing object is
    /// absent, anything else permanent).
    fn error(&self, what: &str) -> StoreError {
        let kind = if self.status == StatusCode::NOT_FOUND {
            StoreErrorKind::Absent
        } else {
            StoreErrorKind::Permanent
        };
        StoreError::new(kind, format!("{what}: {}", self.code()))
    }

    /// S3's error code and status, for a message.
    fn code(&self) -> String {
        format!(
            "HTTP {} {}",
            self.status.as_u16(),
            tag(&self.body, "Code").unwrap_or_default()
        )
    }
}

/// The text of the first `<name>...</name>` in `xml`.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].trim())
}

impl Bucket {
    pub(super) fn new(
        endpoint: &str,
        bucket: &str,
        region: &str,
        prefix: &str,
        virtual_host_style: bool,
        (id, key): (&str, &str),
        timeout: std::time::Duration,
    ) -> Self {
        let endpoint = endpoint.trim_end_matches('/');
        let base = if virtual_host_style {
            match endpoint.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
                None => format!("https://{bucket}.{endpoint}"),
            }
        } else {
            format!("{endpoint}/{bucket}")
        };
        Self {
            base,
            prefix: prefix.trim_matches('/').to_string(),
            signer: Signer::new(
                Context::new(),
                StaticCredentialProvider::new(id, key),
                RequestSigner::new("s3", region),
            ),
            timeout,
        }
    }

    /// One signed request; `key` is inside the target's prefix, `query` without `?`.
    fn send(
        &self,
        method: Method,
        key: Option<&str>,
        query: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> StoreResult<Answer> {
        let mut url = self.base.clone();
        if let Some(k) = key {
            url.push('/');
            if !self.prefix.is_empty() {
                url.push_str(&self.prefix);
                url.push('/');
            }
            url.push_str(k);
        } else {
            url.push('/');
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let err = |kind, e: &dyn std::fmt::Display| {
            StoreError::new(kind, format!("{method} {}: {e}", self.base))
        };
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("x-amz-content-sha256", hex::encode(Sha256::digest(&body)));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (mut parts, ()) = req
            .body(())
            .map_err(|e| err(StoreErrorKind::Permanent, &e))?
            .into_parts();
        let rt = super::runtime()?;
        let timeout = self.timeout;
        rt.block_on(async {
            self.signer
                .sign(&mut parts, None)
                .await
                .map_err(|e| err(StoreErrorKind::Permanent, &e))?;
            let req = reqwest::Request::try_from(http::Request::from_parts(parts, body))
                .map_err(|e| err(StoreErrorKind::Permanent, &e))?;
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| err(StoreErrorKind::Permanent, &e))?;
            let resp = client
                .execute(req)
                .await
                .map_err(|e| err(StoreErrorKind::Transient, &e.without_url()))?;
            let status = resp.status();
            let version = resp
                .headers()
                .get("x-amz-version-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let raw = resp
                .bytes()
                .await
                .map_err(|e| err(StoreErrorKind::Transient, &e.without_url()))?;
            Ok(Answer {
                status,
                version,
                body: String::from_utf8_lossy(&raw).into_owned(),
                raw,
            })
        })
    }

    /// Every version and delete marker under the target's prefix, newest first per key
    /// (keys relative to the prefix).
    fn versions(&self) -> StoreResult<Vec<Listed>> {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut q = format!("versions&prefix={}", enc(&prefix));
            if let Some((k, v)) = &marker {
                q.push_str(&format!(
                    "&key-marker={}&version-id-marker={}",
                    enc(k),
                    enc(v)
                ));
            }
            let a = self.get(&q)?;
            if !a.status.is_success() {
                return Err(a.error(&format!("listing versions at {}", self.base)));
            }
            let mut found: Vec<(usize, Listed)> = Vec::new();
            for (name, deleted) in [("Version", false), ("DeleteMarker", true)] {
                for (at, el) in elements(&a.body, name) {
                    let (Some(key), Some(version), Some(modified)) = (
                        tag(el, "Key"),
                        tag(el, "VersionId"),
                        tag(el, "LastModified").and_then(|t| t.parse().ok()),
                    ) else {
                        continue;
                    };
                    found.push((
                        at,
                        Listed {
                            key: key.strip_prefix(&prefix).unwrap_or(key).to_string(),
                            version: version.to_string(),
                            modified,
                            size: tag(el, "Size").and_then(|s| s.parse().ok()).unwrap_or(0),
                            deleted,
                        },
                    ));
                }
            }
            // The answer's own order: newest first within each key.
            found.sort_by_key(|(at, _)| *at);
            out.extend(found.into_iter().map(|(_, l)| l));
            if tag(&a.body, "IsTruncated") != Some("true") {
                return Ok(out);
            }
            match (
                tag(&a.body, "NextKeyMarker"),
                tag(&a.body, "NextVersionIdMarker"),
            ) {
                (Some(k), Some(v)) => marker = Some((k.to_string(), v.to_string())),
                _ => return Ok(out),
            }
        }
    }

    /// One version of `key`, or a byte range of it.
    fn read_version(
        &self,
        key: &str,
        version: &str,
        range: Option<(u64, u64)>,
    ) -> StoreResult<Bytes> {
        let r = range.map(|(o, l)| format!("bytes={o}-{}", o + l.max(1) - 1));
        let headers: Vec<(&str, &str)> = r.iter().map(|r| ("range", r.as_str())).collect();
        let a = self.send(
            Method::GET,
            Some(key),
            &format!("versionId={}", enc(version)),
            &headers,
            Bytes::new(),
        )?;
        if a.status.is_success() {
            return Ok(a.raw);
        }
        Err(a.error(&format!("reading {key} version {version}")))
    }

    fn get(&self, query: &str) -> StoreResult<Answer> {
        self.send(Method::GET, None, query, &[], Bytes::new())
    }

    /// Why the bucket does not enforce `want` on new objects, if it does not.
    pub(super) fn lacks(&self, want: ObjectLock) -> StoreResult<Option<String>> {
        let refused = |what: &str, a: &Answer| {
            a.error(&format!("reading the bucket's {what} at {}", self.base))
        };
        let v = self.get("versioning")?;
        if !v.status.is_success() {
            return Err(refused("versioning", &v));
        }
        if tag(&v.body, "Status") != Some("Enabled") {
            return Ok(Some("versioning is not enabled".into()));
        }
        let l = self.get("object-lock")?;
        if l.status == StatusCode::NOT_FOUND {
            return Ok(Some("Object Lock is not enabled".into()));
        }
        if !l.status.is_success() {
            return Err(refused("Object Lock configuration", &l));
        }
        if tag(&l.body, "ObjectLockEnabled") != Some("Enabled") {
            return Ok(Some("Object Lock is not enabled".into()));
        }
        let Some(rule) = tag(&l.body, "DefaultRetention") else {
            return Ok(Some(
                "Object Lock has no default retention (new objects are not locked)".into(),
            ));
        };
        let mode = tag(rule, "Mode").unwrap_or_default();
        let num = |n: &str| {
            tag(rule, n)
                .and_then(|d| d.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let days = num("Days") + num("Years") * 365;
        if mode != want.mode.s3_name() {
            return Ok(Some(format!(
                "its default retention is {mode}, not {}",
                want.mode.s3_name()
            )));
        }
        if days < u64::from(want.days) {
            return Ok(Some(format!(
                "its default retention is {days} day(s), fewer than {}",
                want.days
            )));
        }
        Ok(None)
    }

    /// Sets the retention of `key`'s current version: `mode` until `until` (RFC 3339).
    pub(super) fn retain(&self, key: &str, mode: &str, until: &str) -> StoreResult<()> {
        let body = Bytes::from(format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{mode}</Mode>\
             <RetainUntilDate>{until}</RetainUntilDate></Retention>"
        ));
        let sum = checksum(&body);
        let a = self.send(
            Method::PUT,
            Some(key),
            "retention",
            &[
                ("x-amz-sdk-checksum-algorithm", "SHA256"),
                ("x-amz-checksum-sha256", sum.as_str()),
                ("content-type", "application/xml"),
            ],
            body,
        )?;
        if a.status.is_success() {
            return Ok(());
        }
        Err(a.error(&format!("extending the lock of {key}")))
    }

    /// Writes a canary and tries to destroy it (its version, bypassing governance retention
    /// as credentials allowed to may): what an attacker holding these credentials would do.
    pub(super) fn canary(&self) -> StoreResult<Result<String, String>> {
        let name = format!(
            "{}/{:016x}",
            crate::layout::CANARY_DIR,
            rand::random::<u64>()
        );
        let body = Bytes::from_static(b"cairn immutability canary\n");
        // Object Lock wants every upload checksummed.
        let sum = checksum(&body);
        let put = self.send(
            Method::PUT,
            Some(&name),
            "",
            &[
                ("x-amz-sdk-checksum-algorithm", "SHA256"),
                ("x-amz-checksum-sha256", sum.as_str()),
            ],
            body,
        )?;
        if !put.status.is_success() {
            return Err(put.error(&format!("writing the canary {name}")));
        }
        let Some(version) = put.version else {
            return Ok(Err(format!(
                "the canary {name} got no version id: the bucket keeps no versions"
            )));
        };
        let del = self.send(
            Method::DELETE,
            Some(&name),
            &format!("versionId={version}"),
            &[("x-amz-bypass-governance-retention", "true")],
            Bytes::new(),
        )?;
        if del.status.is_success() {
            return Ok(Err(format!(
                "the canary {name} (version {version}) was deleted through cairn's own \
                 credentials"
            )));
        }
        Ok(Ok(format!(
            "deleting the canary {name} (version {version}) was refused: {}",
            del.code()
        )))
    }
}

/// The base64 SHA-256 of `body`, as `x-amz-checksum-sha256` wants it.
fn checksum(body: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body))
}

/// An S3 store whose bucket must keep every write under Object Lock: the lock is checked
/// before the first write, and no write goes out while it is not in force.
#[derive(Debug)]
pub(super) struct ObjectLocked {
    inner: Box<dyn Store>,
    bucket: Bucket,
    want: ObjectLock,
    /// The check's outcome, made once per process: `Err` holds why writes are refused.
    checked: OnceLock<Result<(), String>>,
}

impl ObjectLocked {
    pub(super) fn new(inner: Box<dyn Store>, bucket: Bucket, want: ObjectLock) -> Self {
        Self {
            inner,
            bucket,
            want,
            checked: OnceLock::new(),
        }
    }

    fn writable(&self) -> StoreResult<()> {
        let outcome = match self.checked.get() {
            Some(o) => o.clone(),
            None => {
                // A transient failure to ask is not remembered: the next write asks again.
                let found = self.bucket.lacks(self.want)?;
                let o = match found {
                    None => Ok(()),
                    Some(why) => Err(format!(
                        "bucket at {} is configured with object_lock ({} {} days) but {why}: \
                         nothing is written there until it is",
                        self.inner.location(),
                        self.want.mode.s3_name(),
                        self.want.days
                    )),
                };
                self.checked.get_or_init(|| o).clone()
            }
        };
        outcome.map_err(|why| StoreError::new(StoreErrorKind::Permanent, why))
    }
}

impl Store for ObjectLocked {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn stat(&self, path: &str) -> StoreResult<Option<u64>> {
        self.inner.stat(path)
    }
    fn read(&self, path: &str) -> StoreResult<Bytes> {
        self.inner.read(path)
    }
    fn read_range(&self, path: &str, offset: u64, length: u64) -> StoreResult<Bytes> {
        self.inner.read_range(path, offset, length)
    }
    fn write(&self, path: &str, parts: Vec<Bytes>) -> StoreResult<()> {
        self.writable()?;
        self.inner.write(path, parts)
    }
    fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        self.inner.list(dir)
    }
    fn delete(&self, path: &str) -> StoreResult<()> {
        self.inner.delete(path)
    }
    fn create_dirs(&self, dirs: &[String]) -> StoreResult<()> {
        self.inner.create_dirs(dirs)
    }
    fn extend_lock(&self, path: &str) -> Option<StoreResult<String>> {
        // Rounded up to the second: a lock is never set shorter than the bucket's default
        // gave a version written a moment ago (compliance refuses that).
        let until = jiff::Timestamp::now()
            + jiff::SignedDuration::from_hours(24 * i64::from(self.want.days))
            + jiff::SignedDuration::from_secs(1);
        let until = until.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        Some(
            self.bucket
                .retain(path, self.want.mode.s3_name(), &until)
                .map(|()| until),
        )
    }
    fn protection(&self) -> Option<Protection> {
        let claim = format!(
            "S3 Object Lock, {} {} day(s)",
            self.want.mode.s3_name(),
            self.want.days
        );
        let (immutable, detail) = match self.bucket.lacks(self.want) {
            Err(e) => (false, format!("could not be checked: {e}")),
            Ok(Some(why)) => (false, why),
            Ok(None) => match self.bucket.canary() {
                Err(e) => (false, format!("could not be checked: {e}")),
                Ok(Ok(refused)) => (true, refused),
                Ok(Err(destroyed)) => (false, destroyed),
            },
        };
        Some(Protection {
            claim,
            immutable,
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::tag;

    #[test]
    fn tags_are_read_from_s3_answers() {
        let xml = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>\
                   <Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Days>30</Days>\
                   </DefaultRetention></Rule></ObjectLockConfiguration>";
        let rule = tag(xml, "DefaultRetention").unwrap();
        assert_eq!(tag(rule, "Mode"), Some("COMPLIANCE"));
        assert_eq!(tag(rule, "Days"), Some("30"));
        assert_eq!(tag(rule, "Years"), None);
        assert_eq!(tag(xml, "ObjectLockEnabled"), Some("Enabled"));
    }
}

/// A locked bucket as it stood at a moment: for each key, the newest version written at or
/// before it, ignoring later versions and delete markers. Read-only: what an attacker deleted
/// or overwrote since is read as it was.
#[derive(Debug)]
pub(super) struct AsOf {
    bucket: Bucket,
    at: jiff::Timestamp,
    location: String,
    /// Key -> (version, size).
    files: std::collections::BTreeMap<String, (String, u64)>,
}

impl AsOf {
    pub(super) fn new(bucket: Bucket, at: jiff::Timestamp, location: String) -> StoreResult<Self> {
        let mut files = std::collections::BTreeMap::new();
        let mut judged = std::collections::BTreeSet::new();
        for v in bucket.versions()? {
            if v.modified > at || judged.contains(&v.key) {
                continue;
            }
            judged.insert(v.key.clone());
            if !v.deleted {
                files.insert(v.key, (v.version, v.size));
            }
        }
        Ok(Self {
            bucket,
            at,
            location: format!("{location} as of {at}"),
            files,
        })
    }

    fn version(&self, path: &str) -> StoreResult<&(String, u64)> {
        self.files.get(path).ok_or_else(|| {
            StoreError::new(
                StoreErrorKind::Absent,
                format!("{path}: not in {} at {}", self.location, self.at),
            )
        })
    }

    fn read_only(&self) -> StoreError {
        StoreError::new(
            StoreErrorKind::Permanent,
            format!(
                "{} is read as of a past moment: nothing is written there",
                self.location
            ),
        )
    }
}

impl Store for AsOf {
    fn location(&self) -> String {
        self.location.clone()
    }
    fn stat(&self, path: &str) -> StoreResult<Option<u64>> {
        Ok(self.files.get(path).map(|(_, size)| *size))
    }
    fn read(&self, path: &str) -> StoreResult<Bytes> {
        let (v, _) = self.version(path)?;
        self.bucket.read_version(path, v, None)
    }
    fn read_range(&self, path: &str, offset: u64, length: u64) -> StoreResult<Bytes> {
        let (v, _) = self.version(path)?;
        self.bucket.read_version(path, v, Some((offset, length)))
    }
    fn write(&self, _path: &str, _parts: Vec<Bytes>) -> StoreResult<()> {
        Err(self.read_only())
    }
    fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        Ok(self
            .files
            .iter()
            .filter_map(|(k, (_, size))| Some((k.strip_prefix(&prefix)?.to_string(), *size)))
            .collect())
    }
    fn delete(&self, _path: &str) -> StoreResult<()> {
        Err(self.read_only())
    }
    fn create_dirs(&self, _dirs: &[String]) -> StoreResult<()> {
        Err(self.read_only())
    }
}
