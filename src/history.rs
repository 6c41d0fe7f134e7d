//! The run history of one repository: one JSON line per `cairn run`, the last [`KEEP`] kept, in
//! `history.jsonl` in its state folder. The evidence page charts it; `last-run.json` only
//! holds the newest run.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    state,
};

/// Runs kept: a quarter of a year of nightly runs.
pub const KEEP: usize = 90;

const FILE: &str = "history.jsonl";

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Its id (as in the run log).
    pub run: String,
    /// When it started.
    pub started: String,
    /// Seconds it took.
    pub seconds: f64,
    /// `ok`, `partial`, `verify-failed`, `failed`, `locked`.
    pub result: String,
    /// Its exit code.
    pub exit_code: i32,
    /// The snapshot it saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Bytes its backup added to the repository (after deduplication and compression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_added: Option<u64>,
    /// Its sample verification, when one was due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verified>,
}

/// A run's sample verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// Files sampled.
    pub files: u64,
    /// Every check passed on every target reached.
    pub ok: bool,
}

/// What is kept: the runs, oldest first, and how many lines could not be read.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Oldest first.
    pub runs: Vec<Entry>,
    /// Lines that are not a run (a damaged file): counted, never hidden.
    pub unreadable: usize,
}

/// Reads the history in state folder `dir` (empty when there is none).
///
/// # Errors
/// The file exists but cannot be read.
pub fn load(dir: &Path) -> Result<History> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(History::default()),
        Err(source) => return Err(Error::Io { path, source }),
    };
    let mut h = History::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(e) => h.runs.push(e),
            Err(_) => h.unreadable += 1,
        }
    }
    Ok(h)
}

/// Appends `entry`, keeping the last [`KEEP`] runs (unreadable lines are dropped on the way).
///
/// # Errors
/// The file cannot be read or written.
pub fn append(dir: &Path, entry: &Entry) -> Result<()> {
    let path = dir.join(FILE);
    // Two runs of one repository never overlap (the run lock), but a run of another client of
    // the same state folder could: the lock keeps the rewrite whole.
    let _lock = state::lock_file(&dir.join("history.lock"))?;
    let mut runs = load(dir)?.runs;
    runs.push(entry.clone());
    let skip = runs.len().saturating_sub(KEEP);
    let mut text = String::new();
    for e in &runs[skip..] {
        text.push_str(&serde_json::to_string(e).map_err(|e| Error::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?);
        text.push('\n');
    }
    state::replace_private(&path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> Entry {
        Entry {
            run: format!("{i:016x}"),
            started: "2026-12-07T01:00:00Z".into(),
            seconds: 1.0,
            result: "ok".into(),
            exit_code: 0,
            snapshot: None,
            bytes_added: Some(i as u64),
            verify: None,
        }
    }

    #[test]
    fn the_last_ninety_runs_are_kept_and_a_damaged_line_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..KEEP + 5 {
            append(dir.path(), &entry(i)).unwrap();
        }
        let h = load(dir.path()).unwrap();
        assert_eq!(h.runs.len(), KEEP);
        assert_eq!(h.runs[0], entry(5));
        assert_eq!(h.runs[KEEP - 1], entry(KEEP + 4));
        let mut text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        text.push_str("{not json\n");
        std::fs::write(dir.path().join(FILE), text).unwrap();
        let h = load(dir.path()).unwrap();
        assert_eq!((h.runs.len(), h.unreadable), (KEEP, 1));
    }
}
