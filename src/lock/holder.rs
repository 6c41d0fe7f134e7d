//! Who holds a lock, how this machine judges another host's lock stale, and the lock of this
//! machine (an `flock` in the state folder).

use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read, Seek, Write},
    os::unix::fs::OpenOptionsExt,
};

use serde::{Deserialize, Serialize};

use super::{LOCK_DIR, STALE_AFTER};
use crate::{
    config::Config,
    error::{Error, Result},
    state,
};

/// Where sightings of other hosts' locks are kept between runs.
const SIGHTINGS: &str = "lock-sightings.json";

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    /// Random, unique per acquisition; also the lock file's name.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// User running it.
    pub user: String,
    /// The command, e.g. `backup`.
    pub command: String,
    /// When it was taken (RFC 3339).
    pub started: String,
    /// Last refresh, seconds since the epoch, by the holder's clock (shown, never compared).
    pub refreshed: i64,
    /// Incremented at every refresh: what other hosts judge staleness by.
    #[serde(default)]
    pub seq: u64,
}

impl Holder {
    /// This process, running `command`.
    #[must_use]
    pub fn new(command: &str) -> Self {
        Self {
            id: format!("{:032x}", rand::random::<u128>()),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            user: user(),
            command: command.to_string(),
            started: state::now(),
            refreshed: jiff::Timestamp::now().as_second(),
            seq: 0,
        }
    }

    /// `cairn backup` (pid 42, user root on host nas, since ...).
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "`cairn {}` (pid {}, user {} on host {}, since {})",
            self.command, self.pid, self.user, self.host, self.started
        )
    }

    pub(super) fn file(&self) -> String {
        format!("{LOCK_DIR}/{}", self.id)
    }
}

/// Sightings loaded, and those made by this acquisition.
pub(super) type SightingsNow = std::sync::Mutex<(Sightings, BTreeMap<String, (u64, i64)>)>;

/// When this machine first saw each other-host lock at its current sequence number.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Sightings(pub(super) BTreeMap<String, (u64, i64)>);

impl Sightings {
    pub(super) fn load(cfg: &Config) -> Self {
        state::dir(cfg)
            .ok()
            .and_then(|d| std::fs::read(d.join(SIGHTINGS)).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }
    pub(super) fn save(&self, cfg: &Config) {
        if let Ok(d) = state::dir(cfg) {
            let _ = state::replace_private(
                &d.join(SIGHTINGS),
                &serde_json::to_vec(self).unwrap_or_default(),
            );
        }
    }
    /// Why `h`, found on `target`, no longer counts, if it does not; records the sighting.
    pub(super) fn stale(
        &mut self,
        target: &str,
        h: &Holder,
        seen: &mut BTreeMap<String, (u64, i64)>,
    ) -> Option<String> {
        let here = gethostname::gethostname().to_string_lossy().into_owned();
        if h.host == here {
            return (!alive(h.pid)).then(|| format!("process {} no longer runs", h.pid));
        }
        let key = format!("{target}/{}", h.id);
        let now = jiff::Timestamp::now().as_second();
        let first = match self.0.get(&key) {
            Some(&(seq, first)) if seq == h.seq => first,
            _ => now,
        };
        seen.insert(key, (h.seq, first));
        let unchanged = now - first;
        (unchanged > STALE_AFTER.as_secs().cast_signed()).then(|| {
            format!(
                "its refresh count has not moved for {} min by this machine's clock",
                unchanged / 60
            )
        })
    }
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|u| u.split_whitespace().next().map(|u| format!("uid {u}")))
                })
                .unwrap_or_else(|| "unknown".into())
        })
}

/// An exclusive `flock` on `path` (a file in the state folder) naming `holder` in it: the kernel
/// drops it when the process dies. `Ok(Err(..))` when another process holds it, with the holder
/// it named.
///
/// # Errors
/// The file cannot be opened, locked or written.
pub(crate) fn flock(
    path: &std::path::Path,
    holder: &Holder,
) -> Result<std::result::Result<File, Option<Holder>>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Ok(Err(serde_json::from_str::<Holder>(&text).ok()));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(&serde_json::to_vec(holder).unwrap_or_default())
        .map_err(io)?;
    Ok(Ok(file))
}

/// Who holds this configuration's lock on this machine right now, if anyone. Reads the holder
/// the lock file names without touching the lock itself, so asking never gets in a run's way.
#[must_use]
pub fn local_holder(cfg: &Config) -> Option<Holder> {
    let text = std::fs::read_to_string(state::dir(cfg).ok()?.join("lock")).ok()?;
    let holder: Holder = serde_json::from_str(&text).ok()?;
    alive(holder.pid).then_some(holder)
}

/// Whether a process of this machine runs.
pub(super) fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
