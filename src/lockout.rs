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

    /// Refuses an attempt on `what` while it is locked.
    ///
    /// # Errors
    /// [`Error::LockedOut`] naming when the lock ends.
    pub fn check(&self, what: &str) -> Result<()> {
        let Some(count) = self.load().remove(what) else {
            return Ok(());
        };
        let Some(at) = count.locked_at else {
            return Ok(());
        };
        let until = at.checked_add(self.policy.lock_for).unwrap_or(at);
        if now() < until {
            return Err(Error::LockedOut {
                what: what.to_string(),
                failures: count.failures,
                until: until.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            });
        }
        Ok(())
    }

    /// Counts a wrong password for `what`; returns the count and whether it now locks. A failure
    /// to record is itself refused: an attacker must not gain attempts by filling the disk.
    ///
    /// # Errors
    /// The count could not be written.
    pub fn failed(&self, what: &str) -> Result<(u32, bool)> {
        let _held = self.exclusive()?;
        let mut counts = self.load();
        let count = counts.entry(what.to_string()).or_default();
        count.failures += 1;
        let locks = count.failures >= self.policy.attempts;
        if locks {
            count.locked_at = Some(now());
        }
        let failures = count.failures;
        self.save(&counts)?;
        Ok((failures, locks))
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

impl Gate<'_> {
    /// Refuses (and records) an attempt on `what` while it is locked out.
    ///
    /// # Errors
    /// [`Error::LockedOut`].
    pub fn check(&self, what: &str) -> Result<()> {
        self.lockout.check(what).inspect_err(|e| {
            self.trail.locked_out(&e.to_string());
        })
    }

    /// A wrong password (or one whose key was removed) for `what`: counted and recorded.
    ///
    /// # Errors
    /// The count could not be written.
    pub fn wrong(&self, what: &str) -> Result<()> {
        let (failures, locked) = self.lockout.failed(what)?;
        self.trail.refused(what, failures, locked);
        Ok(())
    }

    /// A right password for `what`.
    pub fn right(&self, what: &str) {
        self.lockout.succeeded(what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_made_in_parallel_are_each_counted() {
        let dir = tempfile::tempdir().unwrap();
        let lockout = Lockout::new(
            LockoutPolicy {
                attempts: 1000,
                lock_for: jiff::SignedDuration::from_mins(1),
            },
            dir.path(),
        );
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| lockout.failed("repository x").unwrap());
            }
        });
        assert_eq!(lockout.load()["repository x"].failures, 12);
    }
}
