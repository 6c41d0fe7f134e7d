//! Per-target outcomes and command reports, serialisable for `--json` and later the audit log.

use serde::Serialize;

/// What became of one target in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetState {
    /// Took part and received everything.
    Complete,
    /// Was read from (read-only commands).
    Available,
    /// Dropped during the run after a failure; it has no snapshot of this run.
    Failed,
    /// A removable disk that is not mounted.
    Offline,
    /// Could not be reached or listed.
    Unreachable,
    /// Reachable but holds no repository yet.
    NotInitialised,
    /// Holds the repository but lacks files the others have; not written until it is synced.
    Lagging,
    /// Not used in this run (e.g. `--from` chose another target).
    NotUsed,
}

impl TargetState {
    /// Whether a required target in this state makes a write run only partially done.
    #[must_use]
    pub fn is_shortfall(self) -> bool {
        !matches!(self, Self::Complete | Self::Available | Self::NotUsed)
    }
}

/// One target's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TargetOutcome {
    /// Target name.
    pub name: String,
    /// `local`, `sftp`, `azblob`, `s3`.
    pub kind: String,
    /// Where it is (no secrets).
    pub location: String,
    /// Whether it is required.
    pub required: bool,
    /// What became of it.
    pub state: TargetState,
    /// Bytes written to it in this run.
    pub bytes_written: u64,
    /// Repository files written to it in this run.
    pub files_written: u64,
    /// Why it is not complete, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Whether every required target got what the run meant to give it.
#[must_use]
pub fn is_partial(targets: &[TargetOutcome]) -> bool {
    targets.iter().any(|t| t.required && t.state.is_shortfall())
}

/// Human-readable byte count (binary units: "1.5 KiB").
#[must_use]
pub fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(required: bool, state: TargetState) -> TargetOutcome {
        TargetOutcome {
            name: "x".into(),
            kind: "local".into(),
            location: String::new(),
            required,
            state,
            bytes_written: 0,
            files_written: 0,
            detail: None,
        }
    }

    #[test]
    fn only_required_shortfalls_make_a_run_partial() {
        assert!(!is_partial(&[
            t(true, TargetState::Complete),
            t(false, TargetState::Offline)
        ]));
        assert!(is_partial(&[
            t(true, TargetState::Complete),
            t(true, TargetState::Failed)
        ]));
        assert!(is_partial(&[t(true, TargetState::Lagging)]));
    }

    #[test]
    fn bytes_are_humanised() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
