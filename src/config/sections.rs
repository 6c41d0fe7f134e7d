//! The plain sections of `targets.toml` (everything but the targets): what serde reads, with
//! their defaults.

use std::path::PathBuf;

use serde::Deserialize;

use crate::{
    retention::{GroupBy, Policy, Within},
    secret::SecretRef,
};

/// `[retention]`: restic's `--keep-*` rules, how snapshots are grouped, and how long deletion
/// records outlive their deletions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// The newest N snapshots.
    pub keep_last: Option<u32>,
    /// The newest snapshot of each of the last N hours.
    pub keep_hourly: Option<u32>,
    /// ... days.
    pub keep_daily: Option<u32>,
    /// ... weeks.
    pub keep_weekly: Option<u32>,
    /// ... months.
    pub keep_monthly: Option<u32>,
    /// ... years.
    pub keep_yearly: Option<u32>,
    /// Every snapshot within this duration of the newest (`"3y"`, `"1y6m"`, `"30d"`).
    pub keep_within: Option<Within>,
    /// Every snapshot with all tags of one of these (`"a,b"` means both).
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// Snapshot fields that form a group (default `"host,paths"`, as restic).
    #[serde(default)]
    pub group_by: GroupBy,
    /// How long a deletion record is kept once every target has obeyed it (default `"90d"`):
    /// a copy of a target older than that (a rotated disk) would bring deleted files back.
    pub deletion_records_for: Option<Within>,
    /// How often `cairn run` prunes (e.g. `"7d"`); unset: `run` never prunes.
    pub prune_every: Option<Within>,
    /// How long a prune waits for an optional target that is away before it goes on without
    /// it (default `"1d"`). A removable disk that is away is never waited for; a required
    /// target always is.
    pub prune_wait: Option<Within>,
}

impl RetentionConfig {
    /// The keep rules.
    #[must_use]
    pub fn policy(&self) -> Policy {
        Policy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
            keep_tags: self.keep_tags.clone(),
        }
    }

    /// How long a prune waits for an optional (not removable) target that is away.
    #[must_use]
    pub fn prune_wait(&self) -> Within {
        self.prune_wait.unwrap_or(Within {
            days: 1,
            ..Within::default()
        })
    }

    /// How long applied deletion records are kept.
    #[must_use]
    pub fn records_for(&self) -> Within {
        self.deletion_records_for.unwrap_or(Within {
            days: 90,
            ..Within::default()
        })
    }
}

/// `[verify]`: the defaults the nightly sample restore uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Files to sample (default 50 when neither this nor `percent` is set).
    pub files: Option<usize>,
    /// Percentage of the files to sample.
    pub percent: Option<f64>,
    /// Byte budget of a sample, e.g. `"2GiB"`.
    pub max_bytes: Option<ByteCount>,
    /// `"latest"` (default), `"all"`, or the number of newest snapshots to sample across.
    pub snapshots: Option<SnapshotSelection>,
    /// Targets to verify (default: all).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Shell command run when a verification fails or a target is unreachable; `$1` is the
    /// report's path.
    pub on_failure: Option<String>,
    /// Folder to restore sampled files into (default: a scratch folder, removed afterwards).
    pub restore_to: Option<PathBuf>,
    /// How often `cairn run` verifies a sample (e.g. `"7d"`); unset: at every run.
    pub every: Option<Within>,
}

/// A byte count written as `"2GiB"`, `"500 MB"` or a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteCount(pub u64);

impl std::str::FromStr for ByteCount {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| Self(b.as_u64()))
            .map_err(|_| format!("{s:?} is not a size like \"2GiB\", \"500 MB\" or 1000"))
    }
}

impl<'de> Deserialize<'de> for ByteCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Which snapshots a verification samples across.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSelection {
    /// The newest snapshot.
    Latest,
    /// The N newest.
    Newest(usize),
    /// Every snapshot.
    All,
}

impl std::str::FromStr for SnapshotSelection {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "latest" => Ok(Self::Latest),
            "all" => Ok(Self::All),
            n => match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Self::Newest(n)),
                _ => Err(format!(
                    "{s:?}: expected \"latest\", \"all\" or a number of snapshots"
                )),
            },
        }
    }
}

impl<'de> Deserialize<'de> for SnapshotSelection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string().parse().map_err(serde::de::Error::custom),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `[repository]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A label for messages and reports.
    #[serde(default)]
    pub name: Option<String>,
    /// The repository password; without it, `CAIRN_PASSWORD` is used.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Host name recorded in snapshots (default: this machine's).
    #[serde(default)]
    pub host: Option<String>,
}

/// `[backup]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Files and folders to back up.
    #[serde(default)]
    pub sources: Vec<PathBuf>,
    /// Glob patterns to leave out (gitignore-like, matched against full paths).
    #[serde(default)]
    pub excludes: Vec<String>,
    /// Tags added to every snapshot.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Folders holding a file of one of these names are left out.
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
    /// Do not cross filesystem boundaries.
    #[serde(default)]
    pub one_file_system: bool,
    /// Packs uploaded at once while the backup goes on (default 2): each is held in memory
    /// until every target has it (a data pack is about 16 MiB; 32 MiB in a repository
    /// initialised by an earlier cairn).
    #[serde(default)]
    pub uploads_in_flight: Option<std::num::NonZeroUsize>,
}

/// `[vault]`: where the credentials vault is and how its passphrase is found.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VaultConfig {
    /// The vault file (default `cairn.vault` beside the configuration).
    pub(super) path: Option<PathBuf>,
    /// Its passphrase (`file:`, `credential:`, `env:`, `command:`); default
    /// `CAIRN_VAULT_PASSPHRASE`, else asked on the terminal.
    pub(super) passphrase: Option<SecretRef>,
}

/// `[security]`: lockout after wrong passwords.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecurityConfig {
    /// Wrong passwords in a row that lock (default 5).
    pub(super) lockout_attempts: Option<u32>,
    /// How long a lock lasts, e.g. `"15m"`, `"1h"`, `"30s"` (default 15 minutes).
    pub(super) lockout_for: Option<String>,
}

/// Where the credentials vault is and how its passphrase is found, as configured.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// The vault file.
    pub path: PathBuf,
    /// Its passphrase; without it, `CAIRN_VAULT_PASSPHRASE`, else asked on the terminal.
    pub passphrase: Option<SecretRef>,
}

/// `[security]` as configured: how many wrong passwords in a row lock, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Wrong passwords in a row that lock (default 5).
    pub attempts: u32,
    /// How long a lock lasts (default 15 minutes).
    pub lock_for: jiff::SignedDuration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            lock_for: jiff::SignedDuration::from_mins(15),
        }
    }
}
