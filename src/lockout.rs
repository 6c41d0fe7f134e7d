//! Lockout after repeated wrong passwords: [`Policy::attempts`] wrong passwords in a row for a
//! repository (or wrong passphrases for a vault) refuse every further attempt, right or wrong,
//! for [`Policy::lock_for`]. A right password once the lock has expired resets the count.
//!
//! The counts live in one file in the state folder ([`crate::state::base`]), so they survive
//! restarts and are shared by every configuration of this machine that names the same
//! repository. Each attempt is written to the audit log by the caller.

use std::{collections::BTreeMap, path::PathBuf, sync::Mutex};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `[security]`: how many wrong passwords in a row lock, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Wrong passwords in a row that lock (default 5).
    pub attempts: u32,
    /// How long a lock lasts (default 15 minutes).
    pub lock_for: SignedDuration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            attempts: 5,
            lock_for: SignedDuration::from_mins(15),
        }
    }
}

static POLICY: Mutex<Option<Policy>> = Mutex::new(None);
/// One process updates the file at a time; processes race only in the last write.
static FILE: Mutex<()> = Mutex::new(());

/// Sets the policy of this process (from the configuration).
pub fn configure(policy: Policy) {
    if let Ok(mut p) = POLICY.lock() {
        *p = Some(policy);
    }
}

fn policy() -> Policy {
    POLICY.lock().ok().and_then(|p| *p).unwrap_or_default()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Count {
    failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locked_at: Option<Timestamp>,
}

fn path() -> PathBuf {
    crate::state::base().join("lockout.json")
}

fn load() -> BTreeMap<String, Count> {
    std::fs::read(path())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(counts: &BTreeMap<String, Count>) -> Result<()> {
    let dir = crate::state::base();
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let bytes = serde_json::to_vec_pretty(counts).unwrap_or_default();
    crate::state::replace_private(&path(), &bytes)
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
        return now.checked_add(SignedDuration::from_secs(s)).unwrap_or(now);
    }
    now
}

/// Refuses an attempt on `what` while it is locked.
///
/// # Errors
/// [`Error::LockedOut`] naming when the lock ends.
pub fn check(what: &str) -> Result<()> {
    let Some(count) = load().remove(what) else {
        return Ok(());
    };
    let Some(at) = count.locked_at else {
        return Ok(());
    };
    let until = at.checked_add(policy().lock_for).unwrap_or(at);
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
pub fn failed(what: &str) -> Result<(u32, bool)> {
    let _one = FILE.lock();
    let mut counts = load();
    let count = counts.entry(what.to_string()).or_default();
    count.failures += 1;
    let locks = count.failures >= policy().attempts;
    if locks {
        count.locked_at = Some(now());
    }
    let failures = count.failures;
    save(&counts)?;
    Ok((failures, locks))
}

/// A right password: the count of `what` starts again.
pub fn succeeded(what: &str) {
    let _one = FILE.lock();
    let mut counts = load();
    if counts.remove(what).is_some() {
        let _ = save(&counts);
    }
}
