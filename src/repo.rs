//! Opening a restic repository through rustic_core over any backend (the fan-out, one target
//! alone, a memory store), and the master keys already derived from a password.

use std::sync::{Arc, Mutex};

use rustic_core::{
    Credentials, FileType, OpenStatus, ProgressBars, Repository, RepositoryBackends,
    RepositoryOptions,
    repofile::{KeyId, MasterKey},
};

use crate::{error::Result, secret::Secret};

/// Master keys derived from passwords by one context: the SHA-256 of their password and the key
/// file that gave each. Kept no longer than the context, as the password itself is.
#[derive(Debug, Default)]
pub struct KeyCache {
    derived: Mutex<Vec<(String, KeyId, MasterKey)>>,
    /// Unit tests: told when a key is derived.
    #[cfg(test)]
    told: std::sync::Condvar,
    /// Unit tests: how many keys were derived from a password.
    #[cfg(test)]
    derivations: std::sync::atomic::AtomicUsize,
}

#[cfg(test)]
impl KeyCache {
    /// How many keys were derived from a password.
    pub(crate) fn derivations(&self) -> usize {
        self.derivations.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits up to `timeout` for a key to be derived; whether one was.
    pub(crate) fn wait_for_a_key(&self, timeout: std::time::Duration) -> bool {
        let d = self.derived.lock().unwrap();
        !self
            .told
            .wait_timeout_while(d, timeout, |d| d.is_empty())
            .unwrap()
            .0
            .is_empty()
    }
}

impl KeyCache {
    /// Keeps the master key a new key file `id` holds for `password` (made by `init`): the
    /// commands that go on to open it need not derive it again.
    pub(crate) fn remember(&self, password: &Secret, id: KeyId, key: MasterKey) {
        let tag = crate::layout::sha256_hex(password.expose().as_bytes());
        if let Ok(mut d) = self.derived.lock() {
            d.push((tag, id, key));
            #[cfg(test)]
            self.told.notify_all();
        }
    }
}

/// Opens a repository over any backend (the fan-out, or one target alone).
///
/// # Errors
/// [`crate::error::Error::WrongPassword`], or the repository could not be read.
pub fn open_repository<P: ProgressBars>(
    be: Arc<dyn rustic_core::WriteBackend>,
    password: &Secret,
    keys: &KeyCache,
    pb: P,
) -> Result<Repository<OpenStatus>> {
    // The key derivation (scrypt) costs about 0.4 s and 130 MiB each time; a run opens the
    // repository many times (each step, each target verified alone). A master key this process
    // derived from this password is reused only where the backend holds the very key file it
    // came from, byte for byte (key files are named by their hash): the password opens that
    // file there too, so a target whose key files are gone still fails as stock restic would.
    let tag = crate::layout::sha256_hex(password.expose().as_bytes());
    let known: Vec<(KeyId, MasterKey)> = keys
        .derived
        .lock()
        .map(|d| {
            d.iter()
                .filter(|(t, _, _)| *t == tag)
                .map(|(_, id, k)| (*id, k.clone()))
                .collect()
        })
        .unwrap_or_default();
    let holds = |id: &KeyId| {
        let id = **id;
        be.read_full(FileType::Key, &id)
            .is_ok_and(|bytes| crate::layout::sha256_hex(&bytes) == id.to_hex().to_string())
    };
    for (id, key) in known {
        if holds(&id) {
            return open_repository_with(be, &Credentials::Masterkey(key), pb);
        }
    }
    #[cfg(test)]
    keys.derivations
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let repo = open_repository_with(be, &Credentials::password(password.expose()), pb)?;
    if let (Some(id), Ok(mut d)) = (*repo.key_id(), keys.derived.lock()) {
        d.push((tag, id, repo.key().clone()));
        #[cfg(test)]
        keys.told.notify_all();
    }
    Ok(repo)
}

/// [`open_repository`] with any credentials (the master key of a [`crate::proof::Proof`]).
///
/// # Errors
/// [`crate::error::Error::WrongPassword`], or the repository could not be read.
pub fn open_repository_with<P: ProgressBars>(
    be: Arc<dyn rustic_core::WriteBackend>,
    credentials: &Credentials,
    pb: P,
) -> Result<Repository<OpenStatus>> {
    // No cache: all targets share one repository id, and a shared cache would hide a target's
    // missing index or snapshot files.
    let opts = RepositoryOptions::default().no_cache(true);
    let repo = Repository::new_with_progress(&opts, &RepositoryBackends::new(be, None), pb)?;
    Ok(repo.open(credentials)?)
}
