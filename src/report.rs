//! Per-target outcomes and command reports, serialisable for `--json` and later the audit log.

use serde::Serialize;

/// What became of one target in a run, for every command: one set of states, one rule for
/// "partially done" ([`is_partial`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetState {
    /// Took part and received everything.
    Complete,
    /// Was read from (read-only commands).
    Available,
    /// Every sampled file passed every check (`verify`).
    Verified,
    /// Listed, and hashed as asked (`check`).
    Checked,
    /// Holds every file the others hold (`sync`, `status`).
    Level,
    /// Was missing files and now holds everything (`sync`).
    CaughtUp,
    /// Some files could not be copied to it; it is still lagging (`sync`).
    Incomplete,
    /// Dropped during the run after a failure (a backup's: it has no snapshot of this run), or
    /// a check failed on it.
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
    /// Whether a required target in this state makes a run only partially done.
    #[must_use]
    pub fn is_shortfall(self) -> bool {
        !matches!(
            self,
            Self::Complete
                | Self::Available
                | Self::Verified
                | Self::Checked
                | Self::Level
                | Self::CaughtUp
                | Self::NotUsed
        )
    }

    /// For commands that vouch for every target (verify, check): whether this target could not
    /// be vouched for. An unplugged optional disk is expected; any other target that could not
    /// be reached is not.
    #[must_use]
    pub fn is_unvouched(self, required: bool) -> bool {
        self == Self::Unreachable || (self == Self::Offline && required)
    }
}

/// A target's line in any command's report.
pub trait Outcome {
    /// The target's name.
    fn name(&self) -> &str;
    /// Whether it is required.
    fn required(&self) -> bool;
    /// What became of it.
    fn state(&self) -> TargetState;
}

/// Implements [`Outcome`] for a report line with `name`, `required` and `state` fields.
#[macro_export]
#[doc(hidden)]
macro_rules! outcome_fields {
    ($t:ty) => {
        impl $crate::report::Outcome for $t {
            fn name(&self) -> &str {
                &self.name
            }
            fn required(&self) -> bool {
                self.required
            }
            fn state(&self) -> $crate::report::TargetState {
                self.state
            }
        }
    };
}

outcome_fields!(TargetOutcome);

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

/// The one rule for "partially done": some required target fell short.
#[must_use]
pub fn is_partial<T: Outcome>(targets: &[T]) -> bool {
    targets
        .iter()
        .any(|t| t.required() && t.state().is_shortfall())
}

/// The required targets that fell short, by name.
#[must_use]
pub fn shortfalls<T: Outcome>(targets: &[T]) -> Vec<String> {
    targets
        .iter()
        .filter(|t| t.required() && t.state().is_shortfall())
        .map(|t| t.name().to_string())
        .collect()
}

/// How a unit enum is spelled in JSON (`not-initialised`), for text and hook variables.
#[must_use]
pub fn label<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
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
