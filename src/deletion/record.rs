//! One deletion record as sealed into the repository: what it deletes, who decided it and when.
//!
//! Besides the records of a deletion (`forget`, `prune`, `key remove`), two kinds keep
//! decisions for good: a *void* record names records that must never take effect (a prune
//! called off, or one found to remove data a kept snapshot needs), and a *tombstone* keeps the
//! deleted snapshot, index and key files of compacted records, so that an old copy of one put
//! back on a target is refused however long ago it was deleted.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::sealed::Cipher;

/// Where records live, beside the repository folders.
pub const DIR: &str = crate::layout::DELETIONS_DIR;

/// One decision to delete repository files, as sealed into the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When it was decided (RFC 3339).
    pub time: String,
    /// The command that decided it (`forget`, `prune`).
    pub command: String,
    /// Host that ran it.
    pub host: String,
    /// User that ran it.
    pub user: String,
    /// Repository paths (`snapshots/ID`, `data/ab/ID`, ...).
    pub files: Vec<String>,
    /// For a prune: the snapshots it judged the data by (every snapshot of every target taking
    /// part; a target left behind may hold others, which the veto judges at its catch-up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    /// Records (their paths) that never take effect, wherever they turn up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voids: Vec<String>,
    /// A purge's prune: the packs it removes stay in the tombstone for good.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub purge: bool,
}

/// The command of a record that voids others.
pub const VOID: &str = "void";
/// The command of a record that keeps compacted deletions.
pub const TOMBSTONE: &str = "tombstone";

impl Record {
    /// A record of `command` deleting `files`, now, by this host and user.
    #[must_use]
    pub fn new(command: &str, files: Vec<String>) -> Self {
        Self {
            time: crate::state::now(),
            command: command.to_string(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            user: std::env::var("USER").unwrap_or_default(),
            files,
            snapshots: Vec::new(),
            voids: Vec::new(),
            purge: false,
        }
    }

    /// A record voiding the records at `paths`; `why` names the snapshots they would break
    /// (none: a prune called off).
    #[must_use]
    pub fn void(paths: Vec<String>, why: Vec<String>) -> Self {
        Self {
            voids: paths,
            snapshots: why,
            ..Self::new(VOID, Vec::new())
        }
    }

    /// Whether this record keeps decisions for good (a void or a tombstone): never compacted
    /// away, never voided.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        self.command == VOID || self.command == TOMBSTONE
    }

    /// The record's path and sealed bytes.
    ///
    /// # Errors
    /// Sealing failed.
    pub fn seal(&self, cipher: &Cipher) -> Result<(String, Bytes), String> {
        let json = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        let (name, bytes) = cipher.seal(&json)?;
        Ok((format!("{DIR}/{name}"), bytes))
    }

    /// The record sealed in `bytes`, if they open with the repository key and parse.
    #[must_use]
    pub fn open(bytes: &[u8], cipher: &Cipher) -> Option<Self> {
        serde_json::from_slice(&cipher.open(bytes)?).ok()
    }
}
