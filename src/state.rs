//! Durable state on this machine: where it lives, and what is known about each target between
//! runs (last complete snapshot, lagging since, last error), shown by `cairn status`.
//!
//! The folder is `$CAIRN_STATE_DIR`, else `$XDG_STATE_HOME/cairn`, else `~/.local/state/cairn`,
//! with one subfolder per configuration file. Files are replaced atomically (write, then
//! rename), so a crash leaves the previous state, never a torn one.

use std::{
    collections::BTreeMap,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    config::Config,
    error::{Error, Result},
    layout::sha256_hex,
    progress::Observer,
    report::{TargetOutcome, TargetState},
};

/// The state folder of this configuration (created on demand).
///
/// # Errors
/// The folder cannot be created.
pub fn dir(cfg: &Config) -> Result<PathBuf> {
    let base = base_of(cfg);
    let config = std::path::absolute(&cfg.path).unwrap_or_else(|_| cfg.path.clone());
    let name = cfg.repository.name.as_deref().unwrap_or("repository");
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    // One of several repositories of a file: its name is part of the key too (two names may
    // read alike once made safe). The single repository of a file keeps the folder it had.
    let key = match &cfg.client {
        Some(client) => sha256_hex(format!("{}\n{client}", config.to_string_lossy()).as_bytes()),
        None => sha256_hex(config.to_string_lossy().as_bytes()),
    };
    private_dir(&base.join(format!("{safe}-{}", &key[..12])))
}

/// `dir`, made if need be, for its owner only (it names client files and targets).
///
/// # Errors
/// It cannot be made, or its mode cannot be set.
pub fn private_dir(dir: &Path) -> Result<PathBuf> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let mode = std::fs::metadata(dir).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(dir.to_path_buf())
}

/// The state folder of the configuration *file*, shared by all its repositories (what one
/// client's command must see of another's: the erasure register). Not created here: reading
/// finds nothing there until something is written ([`private_dir`]).
#[must_use]
pub fn file_dir(cfg: &Config) -> PathBuf {
    let config = std::path::absolute(&cfg.path).unwrap_or_else(|_| cfg.path.clone());
    let key = sha256_hex(config.to_string_lossy().as_bytes());
    base_of(cfg).join(format!("file-{}", &key[..12]))
}

/// Holds an exclusive `flock` on `path` (made if need be) until the file is dropped, waiting
/// for another holder.
///
/// # Errors
/// It cannot be opened or locked.
pub fn lock_file(path: &Path) -> Result<std::fs::File> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.lock().map_err(io)?;
    Ok(f)
}

/// The state base folder `cfg` uses: [`base`], except in unit tests, which keep their state
/// beside their configuration, in their own scratch folder.
#[must_use]
pub fn base_of(cfg: &Config) -> PathBuf {
    if cfg!(test) {
        cfg.path.with_extension("state")
    } else {
        base()
    }
}

/// The folder holding every configuration's state folder, as this process sees it.
#[must_use]
pub fn base() -> PathBuf {
    std::env::var_os("CAIRN_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("cairn")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/cairn")))
        .unwrap_or_else(|| PathBuf::from("/var/lib/cairn"))
}

/// Writes `bytes` to `path` readable by its owner only (state, reports: they name client files).
///
/// # Errors
/// The file cannot be written.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    // An existing file keeps its mode on open.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    f.write_all(bytes).map_err(io)
}

/// Replaces `path` with `bytes` atomically (a temporary file beside it, then a rename), readable
/// by its owner only: a crash leaves the old file or the new one, never a torn one.
///
/// # Errors
/// The file cannot be written.
pub fn replace_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Updates the durable target state. A failure to do so is a warning, never a failed run.
pub fn update(cfg: &Config, observer: &Arc<dyn Observer>, f: impl FnOnce(&mut State)) {
    let done = dir(cfg).and_then(|dir| {
        let mut s = State::load(&dir)?;
        f(&mut s);
        s.save(&dir)
    });
    if let Err(e) = done {
        observer.warn(&format!("target state not recorded: {e}"));
    }
}

/// Today's date in UTC (contract ends are days).
#[must_use]
pub fn today() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// A JSON file of this machine's records, or the empty value when there is none yet.
///
/// # Errors
/// The file exists but cannot be read or parsed (never taken for empty).
pub fn load_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
        // A folder on the way that is a file (an unusable state folder) holds nothing either;
        // whatever needs to write there fails and says so.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(T::default())
        }
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Now, as RFC 3339 text.
#[must_use]
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// What is remembered about one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TargetRecord {
    /// The newest snapshot it received in full, and when.
    pub last_complete_snapshot: Option<String>,
    /// When it received it.
    pub last_complete_at: Option<String>,
    /// Since when it has missed snapshots (unset while it is level).
    pub lagging_since: Option<String>,
    /// The last error seen on it, and when.
    pub last_error: Option<String>,
    /// When the last error was seen.
    pub last_error_at: Option<String>,
    /// When it was last part of a run (or skipped by one).
    pub last_seen_at: Option<String>,
    /// How long the backup that last completed on it took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_millis: Option<u64>,
    /// Bytes that backup wrote to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_bytes: Option<u64>,
    /// When a verification last sampled it, and whether every check passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verify_at: Option<String>,
    /// Whether that verification passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verify_ok: Option<bool>,
    /// Files it sampled, and the seed that picks them again (`cairn verify --seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verify_sample: Option<Sample>,
    /// The last `cairn check --read-data(-subset)` of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_read_check: Option<ReadCheck>,
    /// What the last look at it (`status`, the end of `run`) found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
    /// Prunes that went on while it was away: it obeys them when it is back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_without: Option<PrunedWithout>,
    /// Backups it has missed in a row (0 while it is level).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lagging_backups: u32,
    /// When a backup last found it offline (a removable disk unplugged): the offline copy of
    /// the 3-2-1-1-0 rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_offline_at: Option<String>,
    /// When `check --immutability` last looked at the protection it claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutability_checked_at: Option<String>,
    /// Whether its canary survived then: the immutable copy of the 3-2-1-1-0 rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A verification's sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sample {
    /// Files restored and compared.
    pub files: u64,
    /// The seed of the sample.
    pub seed: u64,
}

/// A check that hashed a target's files.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadCheck {
    /// When.
    pub at: String,
    /// `all`, or the share hashed (`5%`).
    pub share: String,
    /// Files hashed.
    pub files: u64,
    /// Problems it found there (0: clean).
    pub problems: u64,
}

/// Prunes made while a target was away, which it obeys at its next catch-up.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PrunedWithout {
    /// The first of them.
    pub since: String,
    /// How many.
    pub prunes: u32,
    /// Bytes they removed from the others: about what it frees when it obeys.
    pub bytes: u64,
}

/// A target as last looked at.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Observed {
    /// When.
    pub at: String,
    /// Whether it could be reached and listed.
    pub reachable: bool,
    /// Snapshots it holds.
    pub snapshots: u64,
    /// Repository files it lacks that another target holds (pending catch-up).
    pub pending_files: u64,
    /// Files it still holds that a deletion record deletes.
    pub pending_deletions: u64,
}

/// The last run of one command.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommandRecord {
    /// When it finished.
    pub at: String,
    /// Its exit code.
    pub exit_code: i32,
    /// How long it took, in milliseconds.
    pub millis: u64,
    /// When it last finished with exit code 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
}

/// Every target's record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// By target name.
    pub targets: BTreeMap<String, TargetRecord>,
    /// Set while prunes remove nothing because a target is away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_deferred: Option<PruneDeferred>,
    /// The last run of each command (`run`, `backup`, `verify`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub commands: BTreeMap<String, CommandRecord>,
    /// The SHA-256 of the repository's `config` file, once a password opened it (or `init`
    /// made it): a target holding another repository is then left out instead of stopping
    /// every command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

/// Prunes waiting for targets to come back.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PruneDeferred {
    /// Since the first prune that removed nothing.
    pub since: String,
    /// The targets the last one waited for, with why.
    pub waiting_for: Vec<String>,
    /// Their names (empty in state written before they were kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Bytes the last one would have removed: kept on every target only for those.
    #[serde(default)]
    pub bytes: u64,
}

const FILE: &str = "targets.json";

impl State {
    /// Reads the state (empty if there is none yet).
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(dir: &Path) -> Result<Self> {
        load_json(&dir.join(FILE))
    }

    /// Writes the state atomically.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        replace_private(&path, &text)
    }

    /// Records a backup's outcome: complete targets got `snapshot` (in `seconds`); the others
    /// are lagging from now on (unless they already were).
    pub fn record_backup(&mut self, snapshot: &str, seconds: f64, targets: &[TargetOutcome]) {
        let now = now();
        for t in targets {
            if t.state == TargetState::NotUsed {
                continue;
            }
            let r = self.targets.entry(t.name.clone()).or_default();
            r.last_seen_at = Some(now.clone());
            if t.state == TargetState::Complete {
                r.last_complete_snapshot = Some(snapshot.to_string());
                r.last_complete_at = Some(now.clone());
                r.lagging_since = None;
                r.pruned_without = None;
                r.last_backup_millis = Some(millis(seconds));
                r.last_backup_bytes = Some(t.bytes_written);
                r.lagging_backups = 0;
            } else {
                r.lagging_since.get_or_insert_with(|| now.clone());
                r.lagging_backups += 1;
            }
            if t.state == TargetState::Offline {
                r.last_offline_at = Some(now.clone());
            }
            if let Some(d) = &t.detail
                && t.state != TargetState::Complete
            {
                r.last_error = Some(d.clone());
                r.last_error_at = Some(now.clone());
            }
        }
    }

    /// Records a prune: deferred while waiting for targets (name, why), keeping `bytes` it
    /// would have removed (`Some`), or done (`None`).
    pub fn record_prune(&mut self, waiting_for: Option<(&[(String, String)], u64)>) {
        self.prune_deferred = waiting_for.map(|(w, bytes)| PruneDeferred {
            since: self.prune_deferred.take().map_or_else(now, |d| d.since),
            waiting_for: w.iter().map(|(_, why)| why.clone()).collect(),
            targets: w.iter().map(|(name, _)| name.clone()).collect(),
            bytes,
        });
    }

    /// Records a prune that removed `bytes` from the others while `target` was away.
    pub fn record_pruned_without(&mut self, target: &str, bytes: u64) {
        let r = self.targets.entry(target.to_string()).or_default();
        let owed = r.pruned_without.get_or_insert_with(|| PrunedWithout {
            since: now(),
            ..PrunedWithout::default()
        });
        owed.prunes += 1;
        owed.bytes += bytes;
    }

    /// Records how a command ended; `code` 0 is a success.
    pub fn record_command(&mut self, command: &str, code: i32, seconds: f64) {
        let now = now();
        let r = self.commands.entry(command.to_string()).or_default();
        r.at.clone_from(&now);
        r.exit_code = code;
        r.millis = millis(seconds);
        if code == 0 {
            r.last_success_at = Some(now);
        }
    }

    /// Records a verification of a target: passed or not, and its sample.
    pub fn record_verify(&mut self, target: &str, ok: bool, sample: Sample) {
        let r = self.targets.entry(target.to_string()).or_default();
        r.last_verify_at = Some(now());
        r.last_verify_ok = Some(ok);
        r.last_verify_sample = Some(sample);
    }

    /// Records what `check --immutability` found of a target's claimed protection.
    pub fn record_immutability(&mut self, target: &str, immutable: bool) {
        let r = self.targets.entry(target.to_string()).or_default();
        r.immutability_checked_at = Some(now());
        r.immutable = Some(immutable);
    }

    /// Records a check that hashed a target's files.
    pub fn record_read_check(&mut self, target: &str, check: ReadCheck) {
        self.targets
            .entry(target.to_string())
            .or_default()
            .last_read_check = Some(check);
    }

    /// Records what a look at a target found.
    pub fn record_observed(&mut self, target: &str, observed: Observed) {
        self.targets.entry(target.to_string()).or_default().observed = Some(observed);
    }

    /// Records that a target is level again (a catch-up completed).
    pub fn record_level(&mut self, target: &str) {
        let r = self.targets.entry(target.to_string()).or_default();
        r.lagging_since = None;
        r.lagging_backups = 0;
        r.pruned_without = None;
        r.last_seen_at = Some(now());
    }

    /// Records an error on a target, and whether it leaves the target behind.
    pub fn record_error(&mut self, target: &str, error: &str, lagging: bool) {
        let now = now();
        let r = self.targets.entry(target.to_string()).or_default();
        if lagging {
            r.lagging_since.get_or_insert_with(|| now.clone());
        }
        r.last_error = Some(error.to_string());
        r.last_error_at = Some(now.clone());
        r.last_seen_at = Some(now);
    }
}

/// Seconds as whole milliseconds.
fn millis(seconds: f64) -> u64 {
    Duration::from_secs_f64(seconds.max(0.0))
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, state: TargetState, detail: Option<&str>) -> TargetOutcome {
        TargetOutcome {
            name: name.into(),
            kind: "local".into(),
            location: String::new(),
            required: true,
            state,
            bytes_written: 0,
            files_written: 0,
            detail: detail.map(Into::into),
        }
    }

    #[test]
    fn lagging_since_is_kept_until_the_target_is_complete_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::load(dir.path()).unwrap();
        s.record_backup(
            "s1",
            1.5,
            &[
                outcome("a", TargetState::Complete, None),
                outcome("usb", TargetState::Offline, Some("not mounted")),
            ],
        );
        s.save(dir.path()).unwrap();
        let first = State::load(dir.path()).unwrap().targets["usb"].clone();
        assert!(first.lagging_since.is_some());
        assert_eq!(first.last_error.as_deref(), Some("not mounted"));
        assert_eq!(first.last_complete_snapshot, None);
        s.record_backup("s2", 1.0, &[outcome("usb", TargetState::Offline, None)]);
        assert_eq!(s.targets["usb"].lagging_since, first.lagging_since);
        s.record_backup("s3", 1.0, &[outcome("usb", TargetState::Complete, None)]);
        assert_eq!(s.targets["usb"].lagging_since, None);
        assert_eq!(
            s.targets["usb"].last_complete_snapshot.as_deref(),
            Some("s3")
        );
        assert_eq!(s.targets["a"].last_complete_snapshot.as_deref(), Some("s1"));
    }
}
