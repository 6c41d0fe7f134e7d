//! One loaded configuration and everything commands derive from it: the vault it names, its
//! lockout, its audit trail, its state folder, the master keys derived so far, and who observes
//! the work. Commands take a [`Context`]; nothing of a configuration lives in a `static`, so two
//! configurations (two clients' repositories) can be at work in one process without seeing each
//! other's vault, counts or records.

use std::{path::PathBuf, sync::Arc};

use crate::{
    audit::Trail,
    config::{Config, TargetConfig},
    error::{Error, Result},
    lockout::{Gate, Lockout},
    progress::Observer,
    repo::KeyCache,
    secret::{Secret, SecretRef, Vaults},
    store::{Store, StoreResult},
    vault::Opener,
};

/// A target as opened: its name, its settings (a client's view of a target is another folder
/// under the same name), and the moment it is read as of.
type StoreKey = (String, String, Option<jiff::Timestamp>);

/// What every command of one configuration shares.
#[derive(Debug)]
struct Shared {
    cfg: Config,
    vault: Opener,
    lockout: Lockout,
    trail: Trail,
    keys: KeyCache,
    /// Targets' storages opened so far (by name, settings and `--as-of`): each command's
    /// phases (probe, catch-up, backup, retention) reuse one, and with it its connections; an
    /// SFTP or SMB session costs a log-in each time.
    stores: std::sync::Mutex<std::collections::BTreeMap<StoreKey, Arc<dyn Store>>>,
    /// Unit tests run the commands over memory stores: a target named here opens as that store,
    /// whatever its kind says.
    #[cfg(test)]
    memory: std::sync::Mutex<std::collections::BTreeMap<String, Arc<crate::store::MemStore>>>,
}

/// A loaded configuration at work: cheap to clone (clones share the vault, counts and trail).
#[derive(Debug, Clone)]
pub struct Context {
    shared: Arc<Shared>,
    observer: Arc<dyn Observer>,
    /// Targets are read as they stood then (`--as-of`): only versioned buckets can be.
    as_of: Option<jiff::Timestamp>,
}

impl Context {
    /// The context of `cfg`, reporting to `observer`. Nothing is opened or read yet; the `env:`
    /// secrets it names are kept from every command cairn runs from now on.
    #[must_use]
    pub fn new(cfg: Config, observer: Arc<dyn Observer>) -> Self {
        for secret in cfg.secrets() {
            secret.register();
        }
        let lockout = Lockout::new(cfg.lockout, &crate::state::base_of(&cfg));
        Self {
            shared: Arc::new(Shared {
                vault: Opener::new(cfg.vault.clone()),
                lockout,
                trail: Trail::default(),
                keys: KeyCache::default(),
                stores: std::sync::Mutex::default(),
                #[cfg(test)]
                memory: std::sync::Mutex::default(),
                cfg,
            }),
            observer,
            as_of: None,
        }
    }

    /// The same context, reading every target as it stood at `at` (read-only).
    #[must_use]
    pub fn reading_as_of(&self, at: jiff::Timestamp) -> Self {
        Self {
            as_of: Some(at),
            ..self.clone()
        }
    }

    /// The same context, reading every target as it is now.
    #[must_use]
    pub fn reading_now(&self) -> Self {
        Self {
            as_of: None,
            ..self.clone()
        }
    }

    /// The same context, observed by `observer` (a job wraps its caller's observer).
    #[must_use]
    pub fn observed_by(&self, observer: Arc<dyn Observer>) -> Self {
        Self {
            shared: self.shared.clone(),
            observer,
            as_of: self.as_of,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn cfg(&self) -> &Config {
        &self.shared.cfg
    }

    /// Who is told of warnings, dropped targets and progress.
    #[must_use]
    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.observer
    }

    /// The audit trail of the command under way.
    #[must_use]
    pub fn trail(&self) -> &Trail {
        &self.shared.trail
    }

    /// Where passwords are tried: this configuration's lockout and audit trail.
    #[must_use]
    pub fn gate(&self) -> Gate<'_> {
        Gate {
            lockout: &self.shared.lockout,
            trail: &self.shared.trail,
        }
    }

    /// Master keys derived so far.
    #[must_use]
    pub fn keys(&self) -> &KeyCache {
        &self.shared.keys
    }

    /// The configuration's state folder (created on demand).
    ///
    /// # Errors
    /// It cannot be created.
    pub fn state_dir(&self) -> Result<PathBuf> {
        crate::state::dir(self.cfg())
    }

    /// Updates the durable target state; a failure is a warning.
    pub fn update_state(&self, f: impl FnOnce(&mut crate::state::State)) {
        // What was read of the past (`--as-of`) says nothing of the targets now.
        if self.as_of.is_none() {
            crate::state::update(self.cfg(), &self.observer, f);
        }
    }

    /// Opens a target's storage, its secrets looked up in this configuration's vault.
    ///
    /// # Errors
    /// As [`crate::store::open`].
    pub fn open_store(&self, target: &TargetConfig) -> StoreResult<Box<dyn Store>> {
        #[cfg(test)]
        if let Some(store) = self
            .shared
            .memory
            .lock()
            .ok()
            .and_then(|m| m.get(&target.name).cloned())
        {
            return Ok(Box::new(store));
        }
        let settings = format!("{:?} {} {:?}", target.kind, target.retries, target.timeout);
        let key = (target.name.clone(), settings, self.as_of);
        let opened = self
            .shared
            .stores
            .lock()
            .ok()
            .and_then(|s| s.get(&key).cloned());
        if let Some(store) = opened {
            return Ok(Box::new(store));
        }
        let store: Arc<dyn Store> = Arc::from(crate::store::open_as_of(target, self, self.as_of)?);
        if let Ok(mut s) = self.shared.stores.lock() {
            s.insert(key, store.clone());
        }
        Ok(Box::new(store))
    }

    /// A unit test's memory store for the target `name`.
    #[cfg(test)]
    pub(crate) fn use_memory(&self, name: &str, store: Arc<crate::store::MemStore>) {
        if let Ok(mut m) = self.shared.memory.lock() {
            m.insert(name.to_string(), store);
        }
    }

    /// Reads a secret of this configuration.
    ///
    /// # Errors
    /// As [`SecretRef::resolve`].
    pub fn resolve(&self, secret: &SecretRef, what: &str) -> Result<Secret> {
        secret.resolve(what, self)
    }

    /// The repository password: `[repository] password`, else `CAIRN_PASSWORD`.
    ///
    /// # Errors
    /// Neither is set, or the reference cannot be resolved.
    pub fn password(&self) -> Result<Secret> {
        if let Some(r) = &self.cfg().repository.password {
            return self.resolve(r, "repository.password");
        }
        self.resolve(
            &SecretRef::Env("CAIRN_PASSWORD".into()),
            "repository password",
        )
        .map_err(|_| {
            Error::Usage(
                "no repository password: set CAIRN_PASSWORD or `password = \"env:NAME\"` \
                 (or file:/command:) under [repository]"
                    .into(),
            )
        })
    }
}

impl Vaults for Context {
    fn lookup(&self, name: &str, what: &str) -> Result<Secret> {
        self.shared.vault.lookup(name, what, self.gate())
    }
}
