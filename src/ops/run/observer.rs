//! What the nightly job tells: each warning to the caller, the run log and the report; each
//! step's line live and in the log.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::report::{self, RunReport, Step, StepResult};
use crate::{progress::Observer, report::label, runlog::RunLog, secret::redact};

/// Warnings go to the caller, the run log and the report.
#[derive(Debug)]
pub(super) struct RunObserver {
    pub(super) inner: Arc<dyn Observer>,
    pub(super) log: Option<RunLog>,
    pub(super) warnings: Mutex<Vec<String>>,
}

impl RunObserver {
    pub(super) fn log(&self, level: &str, event: &str, message: &str, fields: Value) {
        if let Some(l) = &self.log {
            l.line(level, event, message, fields);
        }
    }
}

impl Observer for RunObserver {
    fn target_failed(&self, target: &str, error: &str) {
        self.inner.target_failed(target, error);
        let msg = format!("target `{target}` dropped from this run: {error}");
        self.log("WARN", "target-failed", &msg, json!({ "target": target }));
        if let Ok(mut w) = self.warnings.lock() {
            w.push(redact(&msg));
        }
    }
    fn warn(&self, message: &str) {
        self.inner.warn(message);
        self.log("WARN", "warn", message, Value::Null);
        if let Ok(mut w) = self.warnings.lock() {
            w.push(redact(message));
        }
    }
    fn info(&self, message: &str) {
        self.inner.info(message);
    }
    fn writing_to(&self, members: &[Arc<crate::fanout::Member>]) {
        self.inner.writing_to(members);
    }
    fn writing_done(&self) {
        self.inner.writing_done();
    }
}

/// A step's line, live and in the run log.
pub(super) fn announce(obs: &RunObserver, step: &Step) {
    let line = format!("{}: {} ({})", step.step, step.summary, label(step.result));
    let fields = json!({
        "step": step.step,
        "result": step.result,
        "exit_code": step.exit_code,
        "targets": step.targets,
        "seconds": step.seconds,
    });
    if matches!(
        step.result,
        StepResult::Ok | StepResult::Skipped | StepResult::NotDue
    ) {
        obs.info(&line);
        obs.log("INFO", "step", &line, fields);
    } else {
        obs.inner.warn(&line);
        obs.log("WARN", "step", &line, fields);
    }
}

/// Writes the report, warning if it cannot be.
pub(super) fn save(r: &RunReport, obs: &RunObserver) {
    if let Err(e) = report::save(r) {
        obs.warn(&format!("run report not written: {e}"));
    }
}

/// Adds the run to the history kept beside its report (once per run).
pub(super) fn remember(r: &RunReport, obs: &RunObserver) {
    let Some(dir) = r.report_path.as_deref().and_then(std::path::Path::parent) else {
        return;
    };
    if let Err(e) = crate::history::append(dir, &report::history_entry(r)) {
        obs.warn(&format!("run history not written: {e}"));
    }
}
