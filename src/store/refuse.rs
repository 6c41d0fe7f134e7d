//! Fault tests only (compiled with the `test-hooks` feature, never into a release binary): a
//! target that refuses writes below one folder and keeps what it was sent, as a hostile server
//! would; a real server cannot be made to do this on demand.
//!
//! `CAIRN_TEST_REFUSE=LOCATION_PART|FOLDER|KEEP_DIR`: the target whose location contains
//! `LOCATION_PART` fails every write below `FOLDER`, and saves each refused file's bytes in
//! `KEEP_DIR`, named `N-NAME`: its order (from 0) and the file's last path component.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::{Store, StoreError, StoreErrorKind, StoreResult};

/// `store`, refusing as configured; `store` itself when it is not the target named.
pub(super) fn wrap(store: Box<dyn Store>) -> Box<dyn Store> {
    let Some(spec) = std::env::var("CAIRN_TEST_REFUSE").ok() else {
        return store;
    };
    let mut parts = spec.splitn(3, '|').map(str::to_string);
    let (Some(target), Some(folder), Some(keep)) = (parts.next(), parts.next(), parts.next())
    else {
        return store;
    };
    if !store.location().contains(&target) {
        return store;
    }
    Box::new(Refusing {
        inner: store,
        prefix: format!("{folder}/"),
        keep: keep.into(),
        refused: AtomicUsize::new(0),
    })
}

#[derive(Debug)]
struct Refusing {
    inner: Box<dyn Store>,
    prefix: String,
    keep: std::path::PathBuf,
    refused: AtomicUsize,
}

impl Store for Refusing {
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
        if !path.starts_with(&self.prefix) {
            return self.inner.write(path, parts);
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        let _ = std::fs::create_dir_all(&self.keep);
        let n = self.refused.fetch_add(1, Ordering::SeqCst);
        let _ = std::fs::write(self.keep.join(format!("{n}-{name}")), parts.concat());
        Err(StoreError::new(
            StoreErrorKind::Permanent,
            format!("{path}: refused (injected)"),
        ))
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
    fn protection(&self) -> Option<super::Protection> {
        self.inner.protection()
    }
    fn extend_lock(&self, path: &str) -> Option<super::StoreResult<String>> {
        self.inner.extend_lock(path)
    }
    fn append_only(&self) -> bool {
        self.inner.append_only()
    }
}
