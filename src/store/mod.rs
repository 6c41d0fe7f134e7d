//! Targets: one small storage trait ([`Store`]) and one file per kind saying how to open it.
//!
//! A store addresses repository files by their restic path (`config`, `keys/ID`, `data/ab/ID`)
//! relative to the target's own folder or prefix. Errors are classified ([`StoreErrorKind`]) so
//! callers can tell "no such file" from "cannot reach the target"; an empty listing always
//! means empty, never "could not ask". Every kind bounds each attempt with the target's
//! `timeout` and retries only transient errors, `retries` times.

mod azblob;
pub mod error;
#[cfg(feature = "test-hooks")]
mod halt;
mod local;
mod mem;
mod opendal_store;
mod reaper;
#[cfg(feature = "test-hooks")]
mod refuse;
mod s3;
mod s3_lock;
mod sftp;
mod smb;

use std::{
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;

use crate::{
    config::{TargetConfig, TargetKind},
    secret::Vaults,
};

pub use error::{StoreError, StoreErrorKind, StoreResult};
pub use local::{MountState, mount_state};
pub use mem::MemStore;
pub use sftp::append_only_folders;

/// A target's storage with its name, as the replication functions take them.
pub type Named<'a> = (&'a str, &'a dyn Store);

/// One target's storage, addressed by repository-relative paths.
pub trait Store: fmt::Debug + Send + Sync {
    /// Where it is, for messages and reports (no secrets).
    fn location(&self) -> String;
    /// The size of a file, or `None` if it does not exist.
    fn stat(&self, path: &str) -> StoreResult<Option<u64>>;
    /// A whole file.
    fn read(&self, path: &str) -> StoreResult<Bytes>;
    /// `length` bytes from `offset`.
    fn read_range(&self, path: &str, offset: u64, length: u64) -> StoreResult<Bytes>;
    /// Writes a file (replacing it); a reader never sees it half-written.
    fn write(&self, path: &str, parts: Vec<Bytes>) -> StoreResult<()>;
    /// The files below `dir`, at any depth, as (path relative to `dir`, size), e.g.
    /// `("ab/ab12…", 123)` for `data`. A missing folder is empty, but a missing root (the
    /// target's own folder, bucket or container) is [`StoreErrorKind::Absent`].
    fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>>;
    /// Removes a file; one that is already gone is not an error.
    fn delete(&self, path: &str) -> StoreResult<()>;
    /// Creates folders (where the storage has folders).
    fn create_dirs(&self, dirs: &[String]) -> StoreResult<()>;

    /// The protection it claims against deletion by whoever holds its credentials, proven
    /// there and then (a canary written and attacked); `None`: it claims none.
    fn protection(&self) -> Option<Protection> {
        None
    }

    /// Moves the lock of `path`'s current version to its full length from now (never shorter
    /// than it was); the new retain-until date. `None`: the storage locks nothing.
    fn extend_lock(&self, _path: &str) -> Option<StoreResult<String>> {
        None
    }

    /// Whether it only ever adds files (an append-only SFTP account): nothing is removed or
    /// replaced there, so removals are left to the storage's owner and no lock file is kept.
    fn append_only(&self) -> bool {
        false
    }
}

/// A target's protection against its own credentials, as proven by a canary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Protection {
    /// What it claims (`S3 Object Lock, COMPLIANCE 30 day(s)`).
    pub claim: String,
    /// Whether the canary survived (and the storage's settings say what they should).
    pub immutable: bool,
    /// What was found.
    pub detail: String,
}

// A shared store is a store: the fan-out and the memory stores of unit tests hand out `Arc`s.
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn stat(&self, path: &str) -> StoreResult<Option<u64>> {
        (**self).stat(path)
    }
    fn read(&self, path: &str) -> StoreResult<Bytes> {
        (**self).read(path)
    }
    fn read_range(&self, path: &str, offset: u64, length: u64) -> StoreResult<Bytes> {
        (**self).read_range(path, offset, length)
    }
    fn write(&self, path: &str, parts: Vec<Bytes>) -> StoreResult<()> {
        (**self).write(path, parts)
    }
    fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        (**self).list(dir)
    }
    fn delete(&self, path: &str) -> StoreResult<()> {
        (**self).delete(path)
    }
    fn create_dirs(&self, dirs: &[String]) -> StoreResult<()> {
        (**self).create_dirs(dirs)
    }
    fn protection(&self) -> Option<Protection> {
        (**self).protection()
    }
    fn extend_lock(&self, path: &str) -> Option<StoreResult<String>> {
        (**self).extend_lock(path)
    }
    fn append_only(&self) -> bool {
        (**self).append_only()
    }
}

/// Opens a target's storage. Nothing is written; a removable disk that is not mounted is
/// [`StoreErrorKind::Offline`].
///
/// Its secrets are resolved with `vaults` for `vault:` references.
///
/// # Errors
/// The target cannot be set up (an unreadable secret, an invalid setting, an unplugged disk).
pub fn open(cfg: &TargetConfig, vaults: &dyn Vaults) -> StoreResult<Box<dyn Store>> {
    open_as_of(cfg, vaults, None)
}

/// [`open`], read as it stood at `as_of` when set: only a bucket that keeps versions (S3 with
/// `object_lock`) can be; the store is then read-only.
///
/// # Errors
/// As [`open`]; a target that keeps no versions cannot be read as of a moment.
pub fn open_as_of(
    cfg: &TargetConfig,
    vaults: &dyn Vaults,
    as_of: Option<jiff::Timestamp>,
) -> StoreResult<Box<dyn Store>> {
    if as_of.is_some() && !matches!(cfg.kind, TargetKind::S3 { .. }) {
        return Err(StoreError::new(
            StoreErrorKind::Permanent,
            format!(
                "`{}`: `--as-of` reads only a bucket that keeps versions (an s3 target with \
                 `object_lock`)",
                cfg.name
            ),
        ));
    }
    let policy = Policy {
        retries: cfg.retries,
        timeout: cfg.timeout,
    };
    let store = match &cfg.kind {
        TargetKind::Local { path, mount_point } => {
            local::open(path, mount_point.as_deref(), policy)
        }
        TargetKind::Sftp { .. } => sftp::open(&cfg.kind, policy),
        TargetKind::Smb { .. } => smb::open(&cfg.kind, policy, vaults),
        TargetKind::Azblob { .. } => azblob::open(&cfg.kind, policy, vaults),
        TargetKind::S3 { .. } => s3::open(&cfg.kind, policy, vaults, as_of),
    }?;
    #[cfg(feature = "test-hooks")]
    let store = refuse::wrap(halt::wrap(store));
    Ok(store)
}

/// `got`, when it is the `length` bytes asked for at `offset` of `path`: a short read is an
/// error, never a silently shorter range.
pub(crate) fn whole_range(
    got: Bytes,
    path: &str,
    location: &str,
    offset: u64,
    length: u64,
) -> StoreResult<Bytes> {
    if got.len() as u64 == length {
        return Ok(got);
    }
    Err(StoreError::new(
        StoreErrorKind::Permanent,
        format!(
            "reading {path} on {location}: got {} of {length} bytes at offset {offset}",
            got.len()
        ),
    ))
}

/// How hard one target tries before an operation fails.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Extra attempts after a transient error.
    pub retries: usize,
    /// Time limit of one attempt.
    pub timeout: Duration,
}

impl Policy {
    pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(200);
    pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);
}

// The async storage clients (opendal, smb2) run on one runtime owned here, so that it can be
// shut down before the process exits: dropping it closes their connections (and ends the SFTP
// sessions' `ssh` processes). Process-wide
// on purpose: it holds no configuration, and every client of every repository shares its
// threads.
static RUNTIME: Mutex<Option<tokio::runtime::Runtime>> = Mutex::new(None);
static SHUT_DOWN: AtomicBool = AtomicBool::new(false);

/// The runtime the storage clients run on, started on first use.
///
/// # Errors
/// The runtime cannot be started, or was shut down.
pub(crate) fn runtime() -> StoreResult<tokio::runtime::Handle> {
    let mut guard = RUNTIME
        .lock()
        .map_err(|_| StoreError::new(StoreErrorKind::Permanent, "storage runtime poisoned"))?;
    if let Some(rt) = guard.as_ref() {
        return Ok(rt.handle().clone());
    }
    if SHUT_DOWN.load(Ordering::SeqCst) {
        return Err(StoreError::new(
            StoreErrorKind::Permanent,
            "storage runtime already shut down",
        ));
    }
    // reqwest is built without a TLS provider of its own (opendal's default pulls aws-lc);
    // ring serves TLS, and opendal's HTTP services use reqwest once it is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reaper::adopt_orphans();
    opendal_http_transport_reqwest::install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_name("cairn-io")
        .enable_all()
        .build()
        .map_err(|e| {
            StoreError::new(
                StoreErrorKind::Permanent,
                format!("cannot start the I/O runtime: {e}"),
            )
        })?;
    let handle = rt.handle().clone();
    *guard = Some(rt);
    Ok(handle)
}

/// Stops the storage runtime, closing every connection still open. Call once, after every
/// store is dropped, before the process exits.
pub fn shutdown() {
    SHUT_DOWN.store(true, Ordering::SeqCst);
    let rt = RUNTIME.lock().ok().and_then(|mut g| g.take());
    if let Some(rt) = rt {
        rt.shutdown_timeout(Duration::from_secs(5));
    }
    // An SFTP session's ssh still running (its session was not dropped): end it.
    reaper::reap_ssh();
}

/// A local folder's store with no retries, for unit tests.
#[cfg(test)]
pub(crate) fn local_for_tests(dir: &std::path::Path) -> Box<dyn Store> {
    let cfg = TargetConfig {
        name: "t".into(),
        required: true,
        retries: 0,
        timeout: Duration::from_secs(5),
        region: None,
        kind: TargetKind::Local {
            path: dir.to_path_buf(),
            mount_point: None,
        },
    };
    open(&cfg, &crate::secret::NoVault).expect("a local folder opens")
}

/// A real store with one operation failing as told: the faults a real server cannot be made to
/// produce on demand (a disk on fire, a disk pulled between two calls), layered on top of a
/// real store, for unit tests.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Failing {
    inner: Box<dyn Store>,
    op: &'static str,
    error: StoreError,
}

#[cfg(test)]
impl Failing {
    /// `inner`, whose `op` (`"write"`, `"list"`, ...) fails with `error`.
    pub(crate) fn new(inner: Box<dyn Store>, op: &'static str, error: StoreError) -> Self {
        Self { inner, op, error }
    }

    fn fails(&self, op: &str) -> StoreResult<()> {
        if op == self.op {
            Err(self.error.clone())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
impl Store for Failing {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn stat(&self, p: &str) -> StoreResult<Option<u64>> {
        self.fails("stat")?;
        self.inner.stat(p)
    }
    fn read(&self, p: &str) -> StoreResult<Bytes> {
        self.fails("read")?;
        self.inner.read(p)
    }
    fn read_range(&self, p: &str, o: u64, l: u64) -> StoreResult<Bytes> {
        self.fails("read")?;
        self.inner.read_range(p, o, l)
    }
    fn write(&self, p: &str, parts: Vec<Bytes>) -> StoreResult<()> {
        self.fails("write")?;
        self.inner.write(p, parts)
    }
    fn list(&self, d: &str) -> StoreResult<Vec<(String, u64)>> {
        self.fails("list")?;
        self.inner.list(d)
    }
    fn delete(&self, p: &str) -> StoreResult<()> {
        self.fails("delete")?;
        self.inner.delete(p)
    }
    fn create_dirs(&self, d: &[String]) -> StoreResult<()> {
        self.fails("create_dirs")?;
        self.inner.create_dirs(d)
    }
}

/// Replaces each secret in `msg` with `***` (storage libraries may echo a URL or a token).
pub(crate) fn redact(msg: &str, secrets: &[String]) -> String {
    crate::secret::redact_these(msg, secrets.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_store_debug_output_shows_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, value: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, value).unwrap();
            crate::secret::SecretRef::File(p)
        };
        let target = |kind| TargetConfig {
            name: "t".into(),
            required: true,
            retries: 0,
            timeout: Duration::from_secs(5),
            region: None,
            kind,
        };
        let s3 = open(
            &target(TargetKind::S3 {
                endpoint: "https://127.0.0.1:1".into(),
                bucket: "b".into(),
                region: "r".into(),
                path: "p".into(),
                access_key_id: file("id", "AKIDSECRETVALUE"),
                secret_access_key: file("key", "S3SECRETKEYVALUE"),
                virtual_host_style: false,
                object_lock: None,
            }),
            &crate::secret::NoVault,
        )
        .unwrap();
        let az = open(
            &target(TargetKind::Azblob {
                endpoint: "https://127.0.0.1:1".into(),
                account: "a".into(),
                container: "c".into(),
                path: "p".into(),
                key: Some(file("az", "QVpTRUNSRVRLRVlWQUxVRQ==")),
                sas: None,
            }),
            &crate::secret::NoVault,
        )
        .unwrap();
        for shown in [format!("{s3:?}"), format!("{az:?}")] {
            for secret in ["SECRETVALUE", "S3SECRETKEYVALUE", "QVpTRUNSRVRLRVlWQUxVRQ"] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }

    #[test]
    fn redact_hides_every_occurrence_of_each_secret() {
        let m = redact(
            "GET https://a/b?sv=2020&sig=abcd1234 failed: sig=abcd1234",
            &["sig=abcd1234".into(), "x".into()],
        );
        assert_eq!(m, "GET https://a/b?sv=2020&*** failed: ***");
    }
}
