//! One target taking part in a run: its store, whether it was dropped and why, what it was
//! written; and the one loop every read that may fall back to the next target goes through.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use crate::store::{Store, StoreError};

/// Why a member was dropped from the run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Dropped {
    /// A storage operation failed on it.
    #[error("{what}: {error}")]
    Store {
        /// The operation, e.g. `writing data/ab/ab12…`.
        what: String,
        /// How it failed, with its class.
        #[source]
        error: StoreError,
    },
    /// Another process took over the repository lock on it.
    #[error("its repository lock was taken over by another process")]
    LockLost,
}

/// One target taking part in a run.
#[derive(Debug)]
pub struct Member {
    /// The target's name.
    pub name: String,
    /// Whether the run is only partially done if this target misses something.
    pub required: bool,
    pub(super) store: Arc<dyn Store>,
    failure: Mutex<Option<Dropped>>,
    /// Set by the repository lock once another process has taken it over on this target.
    lock_lost: std::sync::OnceLock<Arc<std::sync::atomic::AtomicBool>>,
    pub(super) bytes_written: AtomicU64,
    pub(super) files_written: AtomicU64,
}

impl Member {
    /// A member over `store`.
    #[must_use]
    pub fn new(name: String, required: bool, store: Arc<dyn Store>) -> Self {
        Self {
            name,
            required,
            store,
            failure: Mutex::new(None),
            lock_lost: std::sync::OnceLock::new(),
            bytes_written: AtomicU64::new(0),
            files_written: AtomicU64::new(0),
        }
    }
    /// The error that dropped this member from the run, if any.
    #[must_use]
    pub fn failure(&self) -> Option<Dropped> {
        self.failure.lock().map_or(None, |f| f.clone())
    }
    /// Bytes written to this target so far in this run.
    #[must_use]
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }
    /// Files written to this target so far in this run.
    #[must_use]
    pub fn files_written(&self) -> u64 {
        self.files_written.load(Ordering::Relaxed)
    }
    /// The target's storage.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    /// Ties this member to the lock held on its target: once that is taken over, it is dropped.
    pub fn watch_lock(&self, lost: Arc<std::sync::atomic::AtomicBool>) {
        let _ = self.lock_lost.set(lost);
    }
    pub(super) fn is_active(&self) -> bool {
        if self
            .lock_lost
            .get()
            .is_some_and(|l| l.load(Ordering::SeqCst))
        {
            self.fail(Dropped::LockLost);
        }
        self.failure.lock().map_or(true, |f| f.is_none())
    }
    pub(super) fn fail(&self, why: Dropped) {
        if let Ok(mut f) = self.failure.lock()
            && f.is_none()
        {
            *f = Some(why);
        }
    }
}

/// What `f` gives for the first of `members` (in order) where it succeeds; `fell_back` is told
/// which were passed over and why. Every read that may fall back goes through here.
///
/// # Errors
/// Each member's failure, named (none when there was no member to try).
pub(crate) fn first_sound<T>(
    members: &[&Arc<Member>],
    fell_back: &impl Fn(&str, &[String]),
    f: impl Fn(&Member) -> Result<T, String>,
) -> Result<T, Vec<String>> {
    let mut errors = Vec::new();
    for m in members {
        match f(m) {
            Ok(v) => {
                if !errors.is_empty() {
                    fell_back(&m.name, &errors);
                }
                return Ok(v);
            }
            Err(e) => errors.push(format!("`{}`: {e}", m.name)),
        }
    }
    Err(errors)
}
