//! Lockout after repeated wrong passwords: [`LockoutPolicy::attempts`] wrong passwords in a row
//! for a repository (or wrong passphrases for a vault) refuse every further attempt, right or
//! wrong, for [`LockoutPolicy::lock_for`]. A right password once the lock has expired resets the
//! count.
//!
//! The counts live in one file in the state base folder, so they survive restarts and are
//! shared by every configuration of this machine that names the same repository. Every change
//! to it is made under an exclusive `flock` of a file beside it, so attempts made in parallel
//! (by threads or processes) are each counted. Each refusal is written to the audit log
//! ([`Gate`]).

use std::{
    collections::BTreeMap,
    fs::File,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{
    audit::Trail,
    config::LockoutPolicy,
    error::{Error, Result},
};

/// The lockout of one configuration: its policy and the file of counts.
#[derive(Debug, Clone)]
pub struct Lockout {
    policy: LockoutPolicy,
    file: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Count {
    failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locked_at: Option<Timestamp>,
}

/// Now; crash tests (`test-hooks`) move the clock forward with `CAIRN_TEST_CLOCK_OFFSET`
/// (seconds), so that a lock expires without waiting.
fn now() -> Timestamp {
    let now = Timestamp::now();
    #[cfg(feature = "test-hooks")]
    if let Some(s) = std::env::var("CAIRN_TEST_CLOCK_OFFSET")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    {
        return now
            .checked_add(jiff::SignedDuration::from_secs(s))
            .unwrap_or(now);
    }
    now
}

impl Lockout {
    /// The lockout of `policy`, counted in `lockout.json` in `state_base`.
    #[must_use]
    pub fn new(policy: LockoutPolicy, state_base: &Path) -> Self {
        Self {
            policy,
            file: state_base.join("lockout.json"),
        }
    }

    fn load(&self) -> BTreeMap<String, Count> {
        std::fs::read(&self.file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Holds the file of counts for a read-modify-write: an exclusive `flock` of a file beside
    /// it, released when the handle is dropped.
    fn exclusive(&self) -> Result<File> {
        let io = |path: &Path, source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = self.file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let path = self.file.with_extension("lock");
        let file = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        file.lock().map_err(|e| io(&path, e))?;
        Ok(file)
    }

    fn save(&self, counts: &BTreeMap<String, Count>) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(counts).unwrap_or_default();
        crate::state::replace_private(&self.file, &bytes)
    }

    /// Counts an attempt on `what` before it is tried, refusing it while `what` is locked:
    /// attempts made in parallel each take a place in the count under the file lock, so no more
    /// than [`LockoutPolicy::attempts`] are ever tried in a row. Returns the count and whether
    /// it now locks (should this attempt fail). A failure to record is itself a refusal: an
    /// attacker must not gain attempts by filling the disk.
    ///
    /// # Errors
    /// [`Error::LockedOut`] naming when the lock ends; the count could not be written.
    pub fn attempt(&self, what: &str) -> Result<(u32, bool)> {
        let _held = self.exclusive()?;
        let mut counts = self.load();
        let count = counts.entry(what.to_string()).or_default();
        if let Some(at) = count.locked_at {
            let until = at.checked_add(self.policy.lock_for).unwrap_or(at);
            if now() < until {
                return Err(Error::LockedOut {
                    what: what.to_string(),
                    failures: count.failures,
                    until: until.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                });
            }
            // Expired: the count starts again.
            *count = Count::default();
        }
        count.failures += 1;
        let locks = count.failures >= self.policy.attempts;
        if locks {
            count.locked_at = Some(now());
        }
        let failures = count.failures;
        self.save(&counts)?;
        Ok((failures, locks))
    }

    /// Takes back an attempt that never tried a password (no target could be read).
    pub fn undo(&self, what: &str) {
        let Ok(_held) = self.exclusive() else { return };
        let mut counts = self.load();
        let Some(count) = counts.get_mut(what) else {
            return;
        };
        count.failures = count.failures.saturating_sub(1);
        if count.failures < self.policy.attempts {
            count.locked_at = None;
        }
        if count.failures == 0 {
            counts.remove(what);
        }
        let _ = self.save(&counts);
    }

    fn headers_file(&self) -> PathBuf {
        self.file.with_file_name("vault-headers.json")
    }

    /// The header of the vault `what` as last opened on this machine.
    #[must_use]
    pub fn header(&self, what: &str) -> Option<String> {
        let bytes = std::fs::read(self.headers_file()).ok()?;
        let mut known: BTreeMap<String, String> = serde_json::from_slice(&bytes).ok()?;
        known.remove(what)
    }

    /// Remembers the header of the vault `what`.
    pub fn set_header(&self, what: &str, header: &str) {
        let Ok(_held) = self.exclusive() else { return };
        let path = self.headers_file();
        let mut known: BTreeMap<String, String> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if known.get(what).map(String::as_str) != Some(header) {
            known.insert(what.to_string(), header.to_string());
            let _ = crate::state::replace_private(
                &path,
                &serde_json::to_vec_pretty(&known).unwrap_or_default(),
            );
        }
    }

    fn removed_file(&self) -> PathBuf {
        self.file.with_file_name("removed-keys.json")
    }

    fn removed_map(&self) -> BTreeMap<String, std::collections::BTreeSet<String>> {
        std::fs::read(self.removed_file())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The key files of the repository `what` this machine knows were removed.
    #[must_use]
    pub fn removed_keys(&self, what: &str) -> std::collections::BTreeSet<String> {
        self.removed_map().remove(what).unwrap_or_default()
    }

    /// Remembers that the key files `keys` of the repository `what` were removed: their
    /// passwords are refused here even when no target that knows it can be reached.
    pub fn remember_removed(&self, what: &str, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let Ok(_held) = self.exclusive() else { return };
        let mut map = self.removed_map();
        let known = map.entry(what.to_string()).or_default();
        let before = known.len();
        known.extend(keys.iter().cloned());
        if known.len() != before {
            let _ = crate::state::replace_private(
                &self.removed_file(),
                &serde_json::to_vec_pretty(&map).unwrap_or_default(),
            );
        }
    }

    /// A right password: the count of `what` starts again.
    pub fn succeeded(&self, what: &str) {
        // Nothing counted (the usual case): nothing to write, no lock file made.
        if !self.load().contains_key(what) {
            return;
        }
        let Ok(_held) = self.exclusive() else { return };
        let mut counts = self.load();
        if counts.remove(what).is_some() {
            let _ = self.save(&counts);
        }
    }
}

/// Where a password is tried: the lockout that counts the attempts and the audit trail that
/// records each refusal.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    /// The counts.
    pub lockout: &'a Lockout,
    /// Where refusals are recorded.
    pub trail: &'a Trail,
}

/// An attempt counted in advance by [`Gate::attempt`].
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Attempt {
    failures: u32,
    locks: bool,
}

impl Gate<'_> {
    /// Counts an attempt on `what` before the password is tried; refuses (and records) it
    /// while `what` is locked out.
    ///
    /// # Errors
    /// [`Error::LockedOut`]; the count could not be written.
    pub fn attempt(&self, what: &str) -> Result<Attempt> {
        match self.lockout.attempt(what) {
            Ok((failures, locks)) => Ok(Attempt { failures, locks }),
            Err(e) => {
                if matches!(e, Error::LockedOut { .. }) {
                    self.trail.locked_out(&e.to_string());
                }
                Err(e)
            }
        }
    }

    /// The password was wrong (or its key was removed): the attempt stays counted and is
    /// recorded.
    pub fn wrong(&self, what: &str, attempt: Attempt) {
        self.trail.refused(what, attempt.failures, attempt.locks);
    }

    /// The password was right: the count of `what` starts again.
    pub fn right(&self, what: &str) {
        self.lockout.succeeded(what);
    }

    /// No password was tried after all (nothing could be read): the attempt is taken back.
    pub fn untried(&self, what: &str) {
        self.lockout.undo(what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_made_in_parallel_never_exceed_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let lockout = Lockout::new(
            LockoutPolicy {
                attempts: 5,
                lock_for: jiff::SignedDuration::from_mins(1),
            },
            dir.path(),
        );
        let tried = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    if lockout.attempt("repository x").is_ok() {
                        tried.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(tried.into_inner(), 5);
        assert!(matches!(
            lockout.attempt("repository x"),
            Err(Error::LockedOut { .. })
        ));
        // A right password once the lock is over starts the count again; an untried attempt
        // is taken back.
        lockout.succeeded("repository x");
        assert_eq!(lockout.attempt("repository y").unwrap(), (1, false));
        lockout.undo("repository y");
        assert!(!lockout.load().contains_key("repository y"));
    }
}
