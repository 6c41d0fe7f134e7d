//! What a verification found: per-target figures, each failure with its class, the report.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{
    error::{Error, Result},
    report::TargetState,
    sample::Candidate,
};

/// What kind of failure a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// Bytes differ from what they must be (hash, size, source, restored file).
    Mismatch,
    /// A repository file or blob is not there.
    Missing,
    /// Could not be read or decoded for another reason.
    Unreadable,
}

/// One failed check, attributed to a target and, where it concerns one, a file.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Target name.
    pub target: String,
    /// Snapshot id, when about a sampled file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Path inside the snapshot, when about a sampled file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Class.
    pub class: FailureClass,
    /// What failed, for people.
    pub what: String,
}

/// Per-target figures.
#[derive(Debug, Clone, Serialize)]
pub struct TargetVerify {
    /// Target name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Whether it is required.
    pub required: bool,
    /// Result.
    pub state: TargetState,
    /// Files sampled.
    pub files: u64,
    /// Bytes sampled.
    pub bytes: u64,
    /// Files that passed every check.
    pub ok: u64,
    /// Files with mismatching bytes.
    pub mismatch: u64,
    /// Files with missing repository data.
    pub missing: u64,
    /// Files that could not be read.
    pub unreadable: u64,
    /// Files also compared byte for byte with the live source.
    pub compared_with_source: u64,
    /// Files whose source changed (size or mtime) since the snapshot: not compared.
    pub changed_since_snapshot: u64,
    /// Repository files whose SHA-256 was checked against their name.
    pub repository_files_hashed: u64,
    /// Bytes read from the target (repository files, chunks, the restore's reads).
    pub bytes_read: u64,
    /// Seconds taken.
    pub seconds: f64,
    /// Why it could not be verified, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a verify failure is to blame on: failures that share it are one cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyCause {
    /// The target.
    pub target: String,
    /// What kind of failure.
    pub class: FailureClass,
    /// What went wrong (names the repository file where one is to blame).
    pub what: String,
}

/// Failures that share a cause; `files` counts the sampled files it affects.
pub type Cause = crate::report::Cause<VerifyCause>;

/// Groups `failures` by target, class and message, keeping the order they were first met.
#[must_use]
pub fn causes(failures: &[Failure]) -> Vec<Cause> {
    crate::report::causes(failures.iter().map(|f| {
        let key = VerifyCause {
            target: f.target.clone(),
            class: f.class,
            what: f.what.clone(),
        };
        (key, f.path.as_ref().map(|p| format!("/{p}")))
    }))
}

/// The report of one verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Seed of the sample (pass it as `--seed` to check the same files again).
    pub seed: u64,
    /// Snapshots sampled.
    pub snapshots: Vec<String>,
    /// Files in those snapshots.
    pub candidates: usize,
    /// The sample.
    pub sample: Vec<Candidate>,
    /// Per target.
    pub targets: Vec<TargetVerify>,
    /// Every failed check.
    pub failures: Vec<Failure>,
    /// The failures grouped by cause: one per target, class and what went wrong (a damaged
    /// pack shared by a hundred sampled files is one cause), in the order first met.
    pub causes: Vec<Cause>,
    /// Names of the targets with failures.
    pub failed_targets: Vec<String>,
    /// Names of the targets that could not be reached (or required and offline).
    pub unreachable_targets: Vec<String>,
    /// Where the restored files are kept, if they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_to: Option<PathBuf>,
    /// The failure hook's result, if it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<crate::hook::HookResult>,
}

impl VerifyReport {
    /// Whether every check passed on every reachable target.
    #[must_use]
    pub fn failed(&self) -> bool {
        !self.failed_targets.is_empty()
    }

    /// Its exit code: damage found 5; an empty sample 1 (it proves nothing); a target not
    /// reached 4; else 0.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        if self.failed() {
            crate::exit::VERIFY_FAILED
        } else if self.sample.is_empty() {
            crate::exit::FAILED
        } else if !self.unreachable_targets.is_empty() {
            crate::exit::UNREACHABLE
        } else {
            crate::exit::OK
        }
    }
}

/// Writes the report as JSON to `path`.
///
/// # Errors
/// The file cannot be written.
pub fn write_report(report: &VerifyReport, path: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| Error::Input(e.to_string()))?;
    crate::state::write_private(path, &json)
}
