//! Crash tests only (compiled with the `test-hooks` feature, never into a release binary): a
//! store wrapper that stops a writer dead at a chosen point, so the test can SIGKILL it there.
//!
//! With `CAIRN_TEST_HALT_AFTER_WRITES=N`, each target's store parks the writing thread for good
//! once it has written N repository files, deletion records or erasure certificates (also in a
//! client's folder, as an erasure addresses them from the root; lock files do not count, and
//! keep being renewed), and appends a line to the file named by `CAIRN_TEST_HALT_MARKER`: once
//! it holds one line per target, the whole run stands still. `CAIRN_TEST_HALT_AFTER_DELETES=N`
//! does the same after N removals of repository files.

use std::{
    io::Write,
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;

use super::{Store, StoreResult};

/// `store`, halting after the configured number of writes; `store` itself when none is set.
pub(super) fn wrap(store: Box<dyn Store>) -> Box<dyn Store> {
    let limit = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    let (writes, deletes) = (
        limit("CAIRN_TEST_HALT_AFTER_WRITES"),
        limit("CAIRN_TEST_HALT_AFTER_DELETES"),
    );
    if writes.is_none() && deletes.is_none() {
        return store;
    }
    Box::new(Halting {
        inner: store,
        writes: writes.unwrap_or(u64::MAX),
        deletes: deletes.unwrap_or(u64::MAX),
        written: AtomicU64::new(0),
        deleted: AtomicU64::new(0),
    })
}

#[derive(Debug)]
struct Halting {
    inner: Box<dyn Store>,
    writes: u64,
    deletes: u64,
    written: AtomicU64,
    deleted: AtomicU64,
}

impl Halting {
    fn park() -> ! {
        loop {
            std::thread::park();
        }
    }

    /// Counts one step; parks for good once `limit` is reached (after `done`, which is the
    /// step itself, so the step is complete when the run stands still). Steps taken at once
    /// (packs are uploaded concurrently) are counted before they are done, so that exactly
    /// `limit` are done and the marker gets one line.
    fn step<T>(&self, count: &AtomicU64, limit: u64, done: impl FnOnce() -> T) -> T {
        let nth = count.fetch_add(1, Ordering::SeqCst) + 1;
        if nth > limit {
            Self::park();
        }
        let done = done();
        if nth == limit {
            if let Some(marker) = std::env::var_os("CAIRN_TEST_HALT_MARKER")
                && let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(marker)
            {
                let _ = writeln!(f, "{}", self.inner.location());
            }
            Self::park();
        }
        done
    }
}

fn counted(path: &str) -> bool {
    crate::layout::is_repository_path(path)
        || crate::layout::is_record_path(path)
        || in_client_folder(path)
        || is_certificate(path)
}

/// A repository file or certificate copy in a client's folder, as an erasure addresses them
/// from the target's root (`acme/keys/ID`).
fn in_client_folder(path: &str) -> bool {
    path.split_once('/')
        .is_some_and(|(_, rest)| crate::layout::is_repository_path(rest) || is_certificate(rest))
}

fn is_certificate(path: &str) -> bool {
    path.starts_with(&format!("{}/", crate::layout::ERASURES_DIR))
}

impl Store for Halting {
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
        if !counted(path) {
            return self.inner.write(path, parts);
        }
        self.step(&self.written, self.writes, || self.inner.write(path, parts))
    }
    fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        self.inner.list(dir)
    }
    fn delete(&self, path: &str) -> StoreResult<()> {
        if !crate::layout::is_repository_path(path) && !in_client_folder(path) {
            return self.inner.delete(path);
        }
        self.step(&self.deleted, self.deletes, || self.inner.delete(path))
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
