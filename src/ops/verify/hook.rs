//! The failure hook: a command run with the report when a verification fails.

use std::path::Path;

use super::{HookResult, VerifyReport};

/// Runs the failure hook: `sh -c COMMAND cairn-verify REPORT`, so `$1` is the report's path;
/// the failing and unreachable targets are in `CAIRN_FAILED_TARGETS` and
/// `CAIRN_UNREACHABLE_TARGETS` (comma-separated).
#[must_use]
pub fn run_hook(command: &str, report_path: &Path, report: &VerifyReport) -> HookResult {
    let status = crate::secret::shell(command)
        .arg("cairn-verify")
        .arg(report_path)
        .env("CAIRN_VERIFY_REPORT", report_path)
        .env("CAIRN_FAILED_TARGETS", report.failed_targets.join(","))
        .env(
            "CAIRN_UNREACHABLE_TARGETS",
            report.unreachable_targets.join(","),
        )
        .env("CAIRN_VERIFY_SEED", report.seed.to_string())
        .status();
    match status {
        Ok(s) => HookResult {
            command: command.to_string(),
            exit_code: s.code(),
            error: None,
        },
        Err(e) => HookResult {
            command: command.to_string(),
            exit_code: None,
            error: Some(e.to_string()),
        },
    }
}
