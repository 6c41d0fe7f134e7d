//! [`Store`] over an opendal service (local folders, Azure Blob, S3).
//!
//! Layer order, set here once: a timeout on each attempt, inside a retry of transient errors
//! with jittered backoff. Writes are whole where used: object stores put a whole object at once,
//! a local folder writes through opendal's atomic write folder.

use bytes::Bytes;
use opendal::{
    Buffer, ErrorKind, Operator,
    layers::{RetryLayer, TimeoutLayer},
    options::{ListOptions, ReadOptions},
};

use super::{Policy, Store, StoreError, StoreErrorKind, StoreResult, redact, runtime};

/// A blocking opendal operator with cairn's layers and error classification.
pub(crate) struct OpendalStore {
    op: opendal::blocking::Operator,
    location: String,
    /// Values to scrub from error messages (tokens that may appear in URLs).
    secrets: Vec<String>,
    has_dirs: bool,
}

// By hand: the secrets to scrub are secrets, and the operator holds the credentials.
impl std::fmt::Debug for OpendalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpendalStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl OpendalStore {
    /// Builds the operator with the target's timeout and retry policy.
    pub(crate) fn new(
        builder: impl opendal::Builder,
        policy: Policy,
        location: String,
        secrets: Vec<String>,
        has_dirs: bool,
    ) -> StoreResult<Self> {
        let handle = runtime()?;
        let _entered = handle.enter();
        let setup = |e: opendal::Error| {
            StoreError::new(
                StoreErrorKind::Permanent,
                redact(&format!("{location}: cannot set up: {e}"), &secrets),
            )
        };
        let op = Operator::new(builder)
            .map_err(setup)?
            .layer(
                TimeoutLayer::new()
                    .with_timeout(policy.timeout)
                    .with_io_timeout(policy.timeout),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(policy.retries)
                    .with_min_delay(Policy::MIN_BACKOFF)
                    .with_max_delay(Policy::MAX_BACKOFF)
                    .with_jitter(),
            );
        let op = opendal::blocking::Operator::new(op).map_err(setup)?;
        Ok(Self {
            op,
            location,
            secrets,
            has_dirs,
        })
    }

    fn error(&self, what: &str, path: &str, e: &opendal::Error) -> StoreError {
        let kind = if e.kind() == ErrorKind::NotFound {
            StoreErrorKind::NotFound
        } else if super::error::says_full(&format!("{e:?}")) {
            StoreErrorKind::Full
        } else if e.is_temporary() {
            StoreErrorKind::Transient
        } else {
            StoreErrorKind::Permanent
        };
        StoreError::new(
            kind,
            redact(
                &format!("{what} {path} on {}: {}", self.location, brief(e)),
                &self.secrets,
            ),
        )
    }
}

/// opendal's kind in words, its message and cause, without the request contexts its display
/// appends.
fn brief(e: &opendal::Error) -> String {
    let mut s = match e.kind() {
        ErrorKind::NotFound => "not found".to_string(),
        ErrorKind::PermissionDenied => "permission denied".to_string(),
        ErrorKind::RangeNotSatisfied => "the file is shorter than the part read".to_string(),
        ErrorKind::AlreadyExists => "already exists".to_string(),
        ErrorKind::IsADirectory => "is a folder".to_string(),
        ErrorKind::NotADirectory => "is not a folder".to_string(),
        ErrorKind::RateLimited => "rate limited by the server".to_string(),
        ErrorKind::ConfigInvalid => "invalid setting".to_string(),
        ErrorKind::Unsupported => "not supported by this storage".to_string(),
        other => other.to_string(),
    };
    if !e.message().is_empty() {
        s = format!("{s}: {}", e.message());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{s}: {cause}"),
        None => s,
    }
}

impl Store for OpendalStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn stat(&self, path: &str) -> StoreResult<Option<u64>> {
        match self.op.stat(path) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("checking", path, &e)),
        }
    }

    fn read(&self, path: &str) -> StoreResult<Bytes> {
        self.op
            .read(path)
            .map(|b| b.to_bytes())
            .map_err(|e| self.error("reading", path, &e))
    }

    fn read_range(&self, path: &str, offset: u64, length: u64) -> StoreResult<Bytes> {
        let opts = ReadOptions {
            range: (offset..offset + length).into(),
            ..ReadOptions::default()
        };
        let bytes = self
            .op
            .read_options(path, opts)
            .map(|b| b.to_bytes())
            .map_err(|e| self.error("reading", path, &e))?;
        super::whole_range(bytes, path, &self.location, offset, length)
    }

    fn write(&self, path: &str, parts: Vec<Bytes>) -> StoreResult<()> {
        self.op
            .write(path, Buffer::from(parts))
            .map(|_| ())
            .map_err(|e| self.error("writing", path, &e))
    }

    fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        let opts = ListOptions {
            recursive: true,
            ..ListOptions::default()
        };
        let entries = match self.op.list_options(&format!("{dir}/"), opts) {
            Ok(entries) => entries,
            // An object store answers an empty list for a missing prefix: a 404 means the
            // bucket or container (or the endpoint path) is wrong.
            // opendal folds S3's NoSuchBucket into ConfigInvalid and keeps S3's error code only
            // in its message (`S3Error { code: "NoSuchBucket", .. }`): the one mark there is.
            Err(e)
                if !self.has_dirs
                    && (e.kind() == ErrorKind::NotFound
                        || (e.kind() == ErrorKind::ConfigInvalid
                            && e.message().contains("\"NoSuchBucket\""))) =>
            {
                return Err(StoreError::new(
                    StoreErrorKind::Absent,
                    redact(
                        &format!(
                            "{}: the bucket or container does not exist, or the endpoint path is wrong ({})",
                            self.location,
                            brief(&e)
                        ),
                        &self.secrets,
                    ),
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return match self.op.stat("/") {
                    Ok(_) => Ok(Vec::new()),
                    Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::new(
                        StoreErrorKind::Absent,
                        format!("{}: the target's folder does not exist", self.location),
                    )),
                    Err(e) => Err(self.error("checking", "/", &e)),
                };
            }
            Err(e) => return Err(self.error("listing", dir, &e)),
        };
        let prefix = format!("{dir}/");
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| {
                let rel = e.path().strip_prefix(&prefix).unwrap_or(e.path());
                (rel.to_string(), e.metadata().content_length())
            })
            .collect())
    }

    fn delete(&self, path: &str) -> StoreResult<()> {
        match self.op.delete(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error("deleting", path, &e)),
        }
    }

    fn create_dirs(&self, dirs: &[String]) -> StoreResult<()> {
        if !self.has_dirs {
            return Ok(());
        }
        for d in dirs {
            self.op
                .create_dir(&format!("{d}/"))
                .map_err(|e| self.error("creating folder", d, &e))?;
        }
        Ok(())
    }
}
