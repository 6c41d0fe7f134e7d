//! One deletion record as sealed into the repository: what it deletes, who decided it and when.

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
    /// For a prune: the snapshots it judged the data by (every snapshot of every target; a
    /// prune runs only when every target is reachable and level).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
}

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
        }
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
