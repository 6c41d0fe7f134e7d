//! The failure hook: a command run with the report when a verification fails.

use std::{path::Path, time::Duration};

use super::VerifyReport;
use crate::hook::HookResult;

/// Runs the failure hook: `sh -c COMMAND cairn-verify REPORT`, so `$1` is the report's path;
/// the failing and unreachable targets are in `CAIRN_FAILED_TARGETS` and
/// `CAIRN_UNREACHABLE_TARGETS` (comma-separated). Killed after `timeout`.
#[must_use]
pub fn run_hook(
    command: &str,
    report_path: &Path,
    report: &VerifyReport,
    timeout: Duration,
) -> HookResult {
    crate::hook::run(
        "on_failure",
        command,
        "cairn-verify",
        report_path,
        &[
            ("CAIRN_VERIFY_REPORT", report_path.display().to_string()),
            ("CAIRN_FAILED_TARGETS", report.failed_targets.join(",")),
            (
                "CAIRN_UNREACHABLE_TARGETS",
                report.unreachable_targets.join(","),
            ),
            ("CAIRN_VERIFY_SEED", report.seed.to_string()),
        ],
        timeout,
    )
}
