//! An in-memory [`Store`]: the repository files that cairn must decrypt before trusting them are
//! staged here, so rustic_core's own decryption path reads them (see [`crate::proof`]); unit
//! tests use it as a store without a server.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;

use super::{Store, StoreError, StoreErrorKind, StoreResult};

/// Files a unit test's store refused, as (path, bytes).
#[cfg(test)]
type Refused = Vec<(String, Bytes)>;

/// Files in memory, by repository path.
#[derive(Debug, Default)]
pub struct MemStore {
    files: Mutex<BTreeMap<String, Bytes>>,
    /// Unit tests: repository writes fail while set (a target failing in the middle of a run).
    failing: AtomicBool,
    /// Unit tests: writes below this folder fail, their bytes kept aside (a target that
    /// refuses a file and keeps what was uploaded, as a hostile one would).
    #[cfg(test)]
    refusing: Mutex<Option<(String, Refused)>>,
    /// Unit tests: the next read of this path first runs this (a target slow to answer, held
    /// until something else has happened).
    #[cfg(test)]
    held: Mutex<Option<(String, Hold)>>,
}

/// What a held read waits for.
#[cfg(test)]
struct Hold(Box<dyn FnOnce() + Send>);

#[cfg(test)]
impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hold")
    }
}

impl MemStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes writes of repository files fail (`true`) or work again, for unit tests of a target
    /// that fails during a run.
    #[cfg(test)]
    pub(crate) fn fail_writes(&self, fail: bool) {
        self.failing.store(fail, Ordering::SeqCst);
    }

    /// Makes writes below `dir` fail from now on, keeping their bytes aside.
    #[cfg(test)]
    pub(crate) fn refuse_under(&self, dir: &str) {
        *self.refusing.lock().unwrap() = Some((format!("{dir}/"), Vec::new()));
    }

    /// Writes work again; what was refused meanwhile (path, bytes).
    #[cfg(test)]
    pub(crate) fn refused(&self) -> Vec<(String, Bytes)> {
        self.refusing
            .lock()
            .unwrap()
            .take()
            .map(|(_, kept)| kept)
            .unwrap_or_default()
    }

    /// Holds the next read of `path` until `hold` returns.
    #[cfg(test)]
    pub(crate) fn hold_read(&self, path: &str, hold: impl FnOnce() + Send + 'static) {
        *self.held.lock().unwrap() = Some((path.to_string(), Hold(Box::new(hold))));
    }

    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        // A panic while holding the map leaves it consistent (single inserts and removes).
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for MemStore {
    fn location(&self) -> String {
        "memory".into()
    }
    fn stat(&self, path: &str) -> StoreResult<Option<u64>> {
        Ok(self.files().get(path).map(|b| b.len() as u64))
    }
    fn read(&self, path: &str) -> StoreResult<Bytes> {
        #[cfg(test)]
        {
            let mut held = self.held.lock().unwrap();
            if held.as_ref().is_some_and(|(p, _)| p == path) {
                let hold = held.take().map(|(_, h)| h);
                drop(held);
                if let Some(Hold(hold)) = hold {
                    hold();
                }
            }
        }
        self.files()
            .get(path)
            .cloned()
            .ok_or_else(|| StoreError::new(StoreErrorKind::NotFound, format!("{path} not found")))
    }
    fn read_range(&self, path: &str, offset: u64, length: u64) -> StoreResult<Bytes> {
        let b = self.read(path)?;
        let (start, end) = (offset as usize, (offset + length) as usize);
        if end > b.len() {
            return Err(StoreError::new(
                StoreErrorKind::Permanent,
                format!("{path}: range {start}..{end} beyond {} bytes", b.len()),
            ));
        }
        Ok(b.slice(start..end))
    }
    fn write(&self, path: &str, parts: Vec<Bytes>) -> StoreResult<()> {
        if self.failing.load(Ordering::SeqCst) && crate::layout::is_repository_path(path) {
            return Err(StoreError::new(
                StoreErrorKind::Transient,
                format!("{path}: injected write failure"),
            ));
        }
        let bytes = if parts.len() == 1 {
            parts.into_iter().next().unwrap_or_default()
        } else {
            Bytes::from(parts.concat())
        };
        #[cfg(test)]
        if let Some((dir, kept)) = self.refusing.lock().unwrap().as_mut()
            && path.starts_with(dir.as_str())
        {
            kept.push((path.to_string(), bytes));
            return Err(StoreError::new(
                StoreErrorKind::Permanent,
                format!("{path}: injected refusal"),
            ));
        }
        self.files().insert(path.to_string(), bytes);
        Ok(())
    }
    fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        let prefix = format!("{dir}/");
        Ok(self
            .files()
            .iter()
            .filter_map(|(p, b)| Some((p.strip_prefix(&prefix)?.to_string(), b.len() as u64)))
            .collect())
    }
    fn delete(&self, path: &str) -> StoreResult<()> {
        self.files().remove(path);
        Ok(())
    }
    fn create_dirs(&self, _dirs: &[String]) -> StoreResult<()> {
        Ok(())
    }
}
