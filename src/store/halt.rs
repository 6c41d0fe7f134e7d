//! Crash tests only (compiled with the `test-hooks` feature, never into a release binary): a
//! store wrapper that stops a writer dead at a chosen point, so the test can SIGKILL it there.
//!
//! With `CAIRN_TEST_HALT_AFTER_WRITES=N`, each target's store parks the writing thread for good
//! once it has written N repository files (lock files do not count, and keep being renewed),
//! and appends a line to the file named by `CAIRN_TEST_HALT_MARKER`: once it holds one line per
//! target, the whole run stands still.

use std::{
    io::Write,
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;

use super::{Store, StoreResult};

/// `store`, halting after the configured number of writes; `store` itself when none is set.
pub(super) fn wrap(store: Box<dyn Store>) -> Box<dyn Store> {
    match std::env::var("CAIRN_TEST_HALT_AFTER_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(limit) => Box::new(Halting {
            inner: store,
            limit,
            written: AtomicU64::new(0),
        }),
        None => store,
    }
}

#[derive(Debug)]
struct Halting {
    inner: Box<dyn Store>,
    limit: u64,
    written: AtomicU64,
}

impl Halting {
    fn park() -> ! {
        loop {
            std::thread::park();
        }
    }
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
        if !crate::layout::is_repository_path(path) {
            return self.inner.write(path, parts);
        }
        if self.written.load(Ordering::SeqCst) >= self.limit {
            Self::park();
        }
        let done = self.inner.write(path, parts);
        if self.written.fetch_add(1, Ordering::SeqCst) + 1 >= self.limit {
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
    fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        self.inner.list(dir)
    }
    fn delete(&self, path: &str) -> StoreResult<()> {
        self.inner.delete(path)
    }
    fn create_dirs(&self, dirs: &[String]) -> StoreResult<()> {
        self.inner.create_dirs(dirs)
    }
}
