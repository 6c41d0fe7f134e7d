//! The run's report: its steps, its result by one fixed order, and what hooks and pings get.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::{
    error::Result, exit, history, hook::HookResult, notify::PingResult, report::label,
    secret::redact, state,
};

/// The report a run leaves in the state folder.
pub const REPORT_FILE: &str = "last-run.json";

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepResult {
    /// Done, every target.
    Ok,
    /// Done, but a required target was left behind (named), or source files were unread.
    Partial,
    /// Damage found by verification.
    VerifyFailed,
    /// Did not work (the error says why).
    Failed,
    /// Another run or command holds the lock; nothing was done.
    Locked,
    /// Not done: not configured, or an earlier step failed.
    Skipped,
    /// Not due yet (`prune_every`, `[verify] every`).
    NotDue,
}

/// One step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `lock`, `catch-up`, `backup`, `forget`, `prune`, `verify`, `status`.
    pub step: &'static str,
    /// How it ended.
    pub result: StepResult,
    /// The exit code the step alone would have given.
    pub exit_code: i32,
    /// One line.
    pub summary: String,
    /// Targets this step left behind or found damaged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Seconds it took.
    pub seconds: f64,
    /// Its own report (the command's `--json`), when it ran.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub report: Value,
}

/// How the whole run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunResult {
    /// Everything worked.
    Ok,
    /// Partially done.
    Partial,
    /// Verification found damage.
    VerifyFailed,
    /// A step failed.
    Failed,
    /// Another process held the lock.
    Locked,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The repository's name (`[repository] name`, or its `[[repository]]` name).
    pub repository: Option<String>,
    /// This run's id (also on every line of the run log).
    pub run: String,
    /// When it started and finished.
    pub started: String,
    /// When it finished.
    pub finished: String,
    /// Seconds it took.
    pub seconds: f64,
    /// How it ended.
    pub result: RunResult,
    /// Its exit code.
    pub exit_code: i32,
    /// The step that decided the result, when it is not `ok`.
    pub failed_step: Option<&'static str>,
    /// The snapshot this run saved.
    pub snapshot: Option<String>,
    /// Required targets a step left behind or found damaged.
    pub failed_targets: Vec<String>,
    /// Targets that are not level at the end (offline disks included).
    pub lagging_targets: Vec<String>,
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// Warnings met on the way.
    pub warnings: Vec<String>,
    /// The `[notify]` hook that ran.
    pub hook: Option<HookResult>,
    /// The pings sent.
    pub pings: Vec<PingResult>,
    /// Where this report is kept.
    pub report_path: Option<PathBuf>,
    /// The run log.
    pub log_path: Option<PathBuf>,
}

/// The run's result from its steps: a locked step, else the first failed step's code, else
/// damage found, else unread source files, else a target left behind.
pub(super) fn verdict(steps: &[Step]) -> (RunResult, i32, Option<&'static str>) {
    if let Some(s) = steps.iter().find(|s| s.result == StepResult::Locked) {
        return (RunResult::Locked, exit::LOCKED, Some(s.step));
    }
    if let Some(s) = steps.iter().find(|s| s.result == StepResult::Failed) {
        return (
            RunResult::Failed,
            s.exit_code.max(exit::FAILED),
            Some(s.step),
        );
    }
    if let Some(s) = steps.iter().find(|s| s.result == StepResult::VerifyFailed) {
        return (RunResult::VerifyFailed, exit::VERIFY_FAILED, Some(s.step));
    }
    if let Some(s) = steps.iter().find(|s| s.exit_code == exit::INCOMPLETE) {
        return (RunResult::Partial, exit::INCOMPLETE, Some(s.step));
    }
    if let Some(s) = steps.iter().find(|s| s.result == StepResult::Partial) {
        return (RunResult::Partial, exit::PARTIAL, Some(s.step));
    }
    (RunResult::Ok, exit::OK, None)
}

/// The variables a `[notify]` hook gets.
pub(super) fn hook_vars(r: &RunReport, path: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("CAIRN_RESULT", label(r.result)),
        ("CAIRN_EXIT_CODE", r.exit_code.to_string()),
        ("CAIRN_REPORT", path.display().to_string()),
        ("CAIRN_FAILED_STEP", r.failed_step.unwrap_or("").to_string()),
        ("CAIRN_FAILED_TARGETS", r.failed_targets.join(",")),
        ("CAIRN_LAGGING_TARGETS", r.lagging_targets.join(",")),
        ("CAIRN_SNAPSHOT", r.snapshot.clone().unwrap_or_default()),
        ("CAIRN_RUN", r.run.clone()),
        ("CAIRN_REPOSITORY", r.repository.clone().unwrap_or_default()),
    ]
}

/// The steps as text, for a ping's body.
pub(super) fn summary_text(r: &RunReport) -> String {
    let of = r
        .repository
        .as_deref()
        .map(|n| format!(" of {n}"))
        .unwrap_or_default();
    let mut s = format!(
        "cairn run{of}: {} (exit {})\n",
        label(r.result),
        r.exit_code
    );
    for step in &r.steps {
        s.push_str(&format!(
            "{}: {} ({})\n",
            step.step,
            step.summary,
            label(step.result)
        ));
    }
    redact(&s)
}

/// Writes the report to the state folder, atomically.
pub(super) fn save(r: &RunReport) -> Result<()> {
    let Some(path) = &r.report_path else {
        return Ok(());
    };
    let text = redact(&serde_json::to_string_pretty(r).unwrap_or_default());
    state::replace_private(path, text.as_bytes())
}

/// The run as one line of the history: what its backup added, what its verification found.
pub(super) fn history_entry(r: &RunReport) -> history::Entry {
    let step = |name: &str| r.steps.iter().find(|s| s.step == name);
    let bytes_added = step("backup")
        .filter(|s| s.result != StepResult::Failed)
        .and_then(|s| s.report["bytes_new_stored"].as_u64());
    let verify = step("verify")
        .filter(|s| matches!(s.result, StepResult::Ok | StepResult::VerifyFailed))
        .and_then(|s| {
            Some(history::Verified {
                files: s.report["sample"].as_array()?.len() as u64,
                ok: s.result == StepResult::Ok,
            })
        });
    history::Entry {
        run: r.run.clone(),
        started: r.started.clone(),
        seconds: r.seconds,
        result: label(r.result),
        exit_code: r.exit_code,
        snapshot: r.snapshot.clone(),
        bytes_added,
        verify,
    }
}

pub(super) fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &'static str, result: StepResult, exit_code: i32) -> Step {
        Step {
            step: name,
            result,
            exit_code,
            summary: String::new(),
            targets: vec![],
            seconds: 0.0,
            report: Value::Null,
        }
    }

    #[test]
    fn the_run_result_follows_the_worst_step_in_a_fixed_order() {
        use StepResult as S;
        let ok = step("backup", S::Ok, 0);
        assert_eq!(verdict(&[ok]), (RunResult::Ok, 0, None));
        let partial = step("backup", S::Partial, 3);
        let damage = step("verify", S::VerifyFailed, 5);
        assert_eq!(
            verdict(&[partial.clone(), damage.clone()]),
            (RunResult::VerifyFailed, 5, Some("verify"))
        );
        let failed = step("forget", S::Failed, 12);
        assert_eq!(
            verdict(&[partial.clone(), failed, damage]),
            (RunResult::Failed, 12, Some("forget"))
        );
        let unread = step("backup", S::Partial, 6);
        assert_eq!(
            verdict(&[unread, partial]),
            (RunResult::Partial, 6, Some("backup"))
        );
        assert_eq!(
            verdict(&[step("lock", S::Locked, 11)]),
            (RunResult::Locked, 11, Some("lock"))
        );
    }
}
