//! `cairn run`: the nightly job. Lock -> backup (probe and catch-up first) -> forget by
//! `[retention]` -> prune when due -> sample verify when due -> status -> metrics, report,
//! hooks, ping. Every step leaves one line and its own report; a step that fails never hides
//! what the steps before it did. A failed backup ends the job there: retention never removes
//! snapshots on a night that made none, and the rest would fail the same way.

use std::{
    fs::File,
    sync::{Arc, Mutex},
    time::Instant,
};

use rustic_core::ProgressBars;
use serde_json::{Value, json};

use crate::{
    config::Config,
    context::Context,
    error::{Error, Result},
    exit, metrics,
    notify::{self, Ping, PingResult},
    ops::{backup, forget, prune, status, verify},
    progress::Observer,
    report::{TargetState, label, shortfalls},
    retention::Within,
    runlog::RunLog,
    secret::{Secret, redact},
    state::{self, State},
};

mod report;

pub use report::{REPORT_FILE, RunReport, RunResult, Step, StepResult};
use report::{hook_vars, summary_text, to_value, verdict};

/// The lock that keeps two runs of one configuration apart.
const LOCK_FILE: &str = "run.lock";

/// Warnings go to the caller, the run log and the report.
#[derive(Debug)]
struct RunObserver {
    inner: Arc<dyn Observer>,
    log: Option<RunLog>,
    warnings: Mutex<Vec<String>>,
}

impl RunObserver {
    fn log(&self, level: &str, event: &str, message: &str, fields: Value) {
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

/// The run lock: an exclusive `flock` on a file in the state folder naming its holder.
struct RunLock(#[allow(dead_code)] File);

impl RunLock {
    fn take(cfg: &Config) -> Result<Self> {
        let path = state::dir(cfg)?.join(LOCK_FILE);
        match crate::lock::flock(&path, &crate::lock::Holder::new("run"))? {
            Ok(f) => Ok(Self(f)),
            Err(holder) => Err(Error::Locked(holder.map_or_else(
                || "another `cairn run` of this configuration is running".into(),
                |h| format!("{} is running", h.describe()),
            ))),
        }
    }
}

/// Options of a run, beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Create the repository first if no target holds one (as `backup --init`).
    pub init: bool,
}

/// The password, resolved once for every step.
pub type Password = std::result::Result<Secret, Error>;

/// Runs the nightly job. Never fails as a whole: every failure is a step's result.
pub fn run<P: ProgressBars + Clone>(
    ctx: &Context,
    opts: &RunOptions,
    password: Password,
    pb: P,
) -> RunReport {
    let cfg = ctx.cfg();
    let observer = ctx.observer().clone();
    let started = Instant::now();
    let started_at = state::now();
    let run_id = format!("{:016x}", rand::random::<u64>());
    let log = match RunLog::open(cfg, &run_id) {
        Ok(l) => Some(l),
        Err(e) => {
            observer.warn(&format!("run log not written: {e}"));
            None
        }
    };
    let log_path = log.as_ref().map(|l| l.path().to_path_buf());
    let obs = Arc::new(RunObserver {
        inner: observer,
        log,
        warnings: Mutex::new(Vec::new()),
    });
    let observer: Arc<dyn Observer> = obs.clone();
    let run_ctx = ctx.observed_by(observer.clone());
    obs.log(
        "INFO",
        "start",
        "cairn run started",
        json!({
            "config": cfg.path.display().to_string(),
            "pid": std::process::id(),
        }),
    );
    let mut pings = Vec::new();
    if let Some(url) = &cfg.notify.ping_url {
        pings.push(send_ping(url, Ping::Start, "cairn run started", cfg, &obs));
    }

    let mut job = Job {
        ctx: &run_ctx,
        obs: &obs,
        steps: Vec::new(),
    };
    let mut snapshot = None;
    let mut lagging = Vec::new();
    let lock = job.step("lock", || match RunLock::take(cfg) {
        Ok(l) => Ok((
            Some(l),
            StepResult::Ok,
            "run lock taken".into(),
            vec![],
            Value::Null,
        )),
        Err(e) => Err(e),
    });
    if let Some(_lock) = lock.flatten() {
        job.steps_after_lock(opts, password, &pb, &mut snapshot, &mut lagging);
    }
    let Job { steps, .. } = job;

    let (result, exit_code, failed_step) = verdict(&steps);
    let mut failed_targets: Vec<String> = steps
        .iter()
        .filter(|s| s.result != StepResult::Ok && s.step != "status")
        .flat_map(|s| s.targets.iter().cloned())
        .collect();
    failed_targets.sort();
    failed_targets.dedup();
    let seconds = started.elapsed().as_secs_f64();
    run_ctx.update_state(|s| {
        s.record_command("run", exit_code, seconds);
    });
    metrics::write_or_warn(cfg, observer.as_ref());
    let report_path = state::dir(cfg).ok().map(|d| d.join(REPORT_FILE));
    let mut report = RunReport {
        run: run_id,
        started: started_at,
        finished: state::now(),
        seconds,
        result,
        exit_code,
        failed_step,
        snapshot,
        failed_targets,
        lagging_targets: lagging,
        steps,
        warnings: Vec::new(),
        hook: None,
        pings,
        report_path: report_path.clone(),
        log_path,
    };
    report.warnings = obs.warnings.lock().map(|w| w.clone()).unwrap_or_default();
    save(&report, &obs);

    if let (Some((name, command)), Some(path)) = (cfg.notify.command_for(exit_code), &report_path) {
        let h = crate::hook::run(
            name,
            command,
            "cairn-run",
            path,
            &hook_vars(&report, path),
            cfg.notify.timeout(),
        );
        if h.ok() {
            obs.log("INFO", "hook", &h.describe(), json!({ "hook": name }));
        } else {
            obs.warn(&h.describe());
        }
        report.hook = Some(h);
    }
    if let Some(url) = &cfg.notify.ping_url {
        let which = if exit_code == exit::OK {
            Ping::Success
        } else {
            Ping::Fail
        };
        let body = summary_text(&report);
        report.pings.push(send_ping(url, which, &body, cfg, &obs));
    }
    report.warnings = obs.warnings.lock().map(|w| w.clone()).unwrap_or_default();
    obs.log(
        if exit_code == exit::OK {
            "INFO"
        } else {
            "ERROR"
        },
        "result",
        &format!("cairn run: {} (exit {exit_code})", label(result)),
        json!({
            "result": result,
            "exit_code": exit_code,
            "failed_step": failed_step,
            "failed_targets": report.failed_targets,
            "lagging_targets": report.lagging_targets,
            "snapshot": report.snapshot,
            "seconds": seconds,
        }),
    );
    save(&report, &obs);
    report
}

/// The steps in flight.
struct Job<'a> {
    ctx: &'a Context,
    obs: &'a Arc<RunObserver>,
    steps: Vec<Step>,
}

/// What a step hands back: a value for the next steps, its result, summary, targets left
/// behind, and its report.
type StepOut<T> = (T, StepResult, String, Vec<String>, Value);

impl Job<'_> {
    /// Runs one step, timing it and recording its line; `None` when it failed.
    fn step<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<StepOut<T>>) -> Option<T> {
        let started = Instant::now();
        let (value, result, exit_code, summary, targets, report) = match f() {
            Ok((v, result, summary, targets, report)) => {
                let code = match result {
                    StepResult::Partial => exit::PARTIAL,
                    StepResult::VerifyFailed => exit::VERIFY_FAILED,
                    StepResult::Failed => exit::FAILED,
                    _ => exit::OK,
                };
                (Some(v), result, code, summary, targets, report)
            }
            Err(e) => {
                let code = exit::for_error(&e);
                let result = if code == exit::LOCKED {
                    StepResult::Locked
                } else {
                    StepResult::Failed
                };
                (
                    None,
                    result,
                    code,
                    redact(&e.to_string()),
                    vec![],
                    Value::Null,
                )
            }
        };
        self.push(Step {
            step: name,
            result,
            exit_code,
            summary,
            targets,
            seconds: started.elapsed().as_secs_f64(),
            report,
        });
        value
    }

    fn push(&mut self, step: Step) {
        announce(self.obs, &step);
        self.steps.push(step);
    }

    fn skip(&mut self, name: &'static str, result: StepResult, why: String) {
        self.push(Step {
            step: name,
            result,
            exit_code: exit::OK,
            summary: why,
            targets: vec![],
            seconds: 0.0,
            report: Value::Null,
        });
    }

    fn steps_after_lock<P: ProgressBars + Clone>(
        &mut self,
        opts: &RunOptions,
        password: Password,
        pb: &P,
        snapshot: &mut Option<String>,
        lagging: &mut Vec<String>,
    ) {
        let ctx = self.ctx;
        let obs = self.obs.clone();
        let pw = match password {
            Ok(pw) => pw,
            Err(e) => {
                self.step("backup", || Err::<StepOut<()>, _>(e));
                return;
            }
        };
        let backed_up = self.step("backup", || {
            let backup_opts = backup::BackupOptions {
                init: opts.init,
                ..Default::default()
            };
            let r = backup::run(ctx, &pw, &backup_opts, pb.clone())?;
            let result = if r.partial || r.incomplete {
                StepResult::Partial
            } else {
                StepResult::Ok
            };
            let mut short: Vec<String> = shortfalls(&r.targets);
            short.extend(shortfalls(&r.caught_up));
            let mut summary = format!(
                "snapshot {} saved: {} new, {} changed, {} unmodified file(s); {} new, {} stored \
                 per target",
                &r.snapshot[..8],
                r.files_new,
                r.files_changed,
                r.files_unmodified,
                crate::report::human_bytes(r.bytes_new),
                crate::report::human_bytes(r.bytes_new_stored),
            );
            let reached = r
                .targets
                .iter()
                .filter(|t| t.state == TargetState::Complete)
                .count();
            summary.push_str(&format!(
                "; written to {reached} of {} target(s)",
                r.targets.len()
            ));
            if !short.is_empty() {
                summary.push_str(&format!("; left behind: {}", short.join(", ")));
            }
            if r.incomplete {
                summary.push_str(&format!("; {} source entr(ies) not read", r.unread.len()));
            }
            // The catch-up ran inside the backup, before it wrote: its line comes first.
            let catch_up = catch_up_step(&r.caught_up, r.foreign.len());
            announce(&obs, &catch_up);
            let id = r.snapshot.clone();
            let incomplete = r.incomplete;
            let report = serde_json::to_value(&r).unwrap_or(Value::Null);
            Ok(((id, catch_up, incomplete), result, summary, short, report))
        });
        let Some((id, catch_up, incomplete)) = backed_up else {
            return;
        };
        *snapshot = Some(id);
        if incomplete && let Some(last) = self.steps.last_mut() {
            last.exit_code = exit::INCOMPLETE;
        }
        let at = self.steps.len() - 1;
        self.steps.insert(at, catch_up);

        self.forget_and_prune(&pw, pb);
        self.verify(&pw, pb);
        if let Some(l) = self.status(&pw) {
            *lagging = l;
        }
    }

    fn forget_and_prune<P: ProgressBars + Clone>(&mut self, pw: &Secret, pb: &P) {
        let ctx = self.ctx;
        let cfg = ctx.cfg();
        let forgot = if cfg.retention.policy().is_empty() {
            self.skip(
                "forget",
                StepResult::Skipped,
                "no [retention] policy: every snapshot is kept".into(),
            );
            true
        } else {
            self.step("forget", || {
                let r = forget::run(ctx, pw, &Default::default())?;
                let short = shortfalls(&r.targets);
                let mut summary = format!("{} snapshot(s) removed", r.removed.len());
                if !short.is_empty() {
                    summary.push_str(&format!(
                        "; not yet on {} (obeyed at their next catch-up)",
                        short.join(", ")
                    ));
                }
                let result = if r.partial {
                    StepResult::Partial
                } else {
                    StepResult::Ok
                };
                Ok(((), result, summary, short, to_value(&r)))
            })
            .is_some()
        };
        let Some(every) = cfg.retention.prune_every else {
            self.skip(
                "prune",
                StepResult::Skipped,
                "not configured ([retention] prune_every)".into(),
            );
            return;
        };
        if !forgot {
            self.skip("prune", StepResult::Skipped, "forget failed".into());
            return;
        }
        if let Some(next) = not_due(cfg, "prune", every) {
            self.skip("prune", StepResult::NotDue, next);
            return;
        }
        let started = Instant::now();
        let pruned = self.step("prune", || {
            let r = prune::run(ctx, pw, &prune::PruneOptions::default(), pb)?;
            let short = shortfalls(&r.targets);
            let summary = match (&r.deferred, &r.record) {
                (Some(why), _) => format!("deferred: {why}"),
                (None, Some(_)) => format!(
                    "{} pack(s) removed, {} repacked ({})",
                    r.plan.packs_unused,
                    r.plan.packs_repack,
                    crate::report::human_bytes(r.plan.bytes_remove)
                ),
                (None, None) => "nothing to remove".into(),
            };
            let result = if r.partial {
                StepResult::Partial
            } else {
                StepResult::Ok
            };
            Ok((result, result, summary, short, to_value(&r)))
        });
        // A prune that waited for a target is still due.
        let code = match pruned {
            Some(StepResult::Ok) => exit::OK,
            Some(_) => exit::PARTIAL,
            None => exit::FAILED,
        };
        let secs = started.elapsed().as_secs_f64();
        ctx.update_state(|s| s.record_command("prune", code, secs));
    }

    fn verify<P: ProgressBars + Clone>(&mut self, pw: &Secret, pb: &P) {
        let ctx = self.ctx;
        let cfg = ctx.cfg();
        let observer = ctx.observer();
        if let Some(every) = cfg.verify.every
            && let Some(next) = not_due(cfg, "verify", every)
        {
            self.skip("verify", StepResult::NotDue, next);
            return;
        }
        let started = Instant::now();
        let code = self
            .step("verify", || {
                let opts = verify::VerifyOptions::from_config(&cfg.verify);
                let mut r = verify::run(ctx, pw, &opts, pb.clone())?;
                let code = r.exit_code();
                let (result, summary, targets) = match code {
                    exit::VERIFY_FAILED => (
                        StepResult::VerifyFailed,
                        format!(
                            "DAMAGE on {}: {} cause(s), {} failed check(s)",
                            r.failed_targets.join(", "),
                            r.causes.len(),
                            r.failures.len()
                        ),
                        r.failed_targets.clone(),
                    ),
                    exit::FAILED => (
                        StepResult::Failed,
                        format!(
                            "nothing was verified: the sample is empty ({} files)",
                            r.candidates
                        ),
                        vec![],
                    ),
                    exit::UNREACHABLE => (
                        StepResult::Partial,
                        format!(
                            "{} file(s) verified; not reached: {}",
                            r.sample.len(),
                            r.unreachable_targets.join(", ")
                        ),
                        r.unreachable_targets.clone(),
                    ),
                    _ => {
                        let n = r
                            .targets
                            .iter()
                            .filter(|t| t.state == TargetState::Verified)
                            .count();
                        (
                            StepResult::Ok,
                            format!("{} file(s) verified on {n} target(s)", r.sample.len()),
                            vec![],
                        )
                    }
                };
                if result != StepResult::Ok
                    && let Some(command) = &cfg.verify.on_failure
                    && let Ok(dir) = state::dir(cfg)
                {
                    let path = dir.join("last-verify.json");
                    if verify::write_report(&r, &path).is_ok() {
                        let h = verify::run_hook(command, &path, &r, cfg.notify.timeout());
                        if !h.ok() {
                            observer.warn(&h.describe());
                        }
                        r.hook = Some(h);
                    }
                }
                Ok((code, result, summary, targets, to_value(&r)))
            })
            .unwrap_or(exit::FAILED);
        let secs = started.elapsed().as_secs_f64();
        ctx.update_state(|s| s.record_command("verify", code, secs));
    }

    /// Looks at every target once more, for the report and the metrics; returns the targets
    /// that are not level.
    fn status(&mut self, pw: &Secret) -> Option<Vec<String>> {
        let ctx = self.ctx;
        self.step("status", || {
            let r = status::run(ctx, Some(pw))?;
            let behind: Vec<String> = r
                .targets
                .iter()
                .filter(|t| t.state.is_shortfall())
                .map(|t| t.name.clone())
                .collect();
            let short = shortfalls(&r.targets);
            let level = r.targets.len() - behind.len();
            let mut summary = format!("{level} of {} target(s) level", r.targets.len());
            for t in r.targets.iter().filter(|t| t.state.is_shortfall()) {
                summary.push_str(&format!(
                    "; `{}` {}{}",
                    t.name,
                    label(t.state),
                    if t.missing_files > 0 {
                        format!(" ({} file(s) pending catch-up)", t.missing_files)
                    } else {
                        String::new()
                    }
                ));
            }
            let result = if short.is_empty() {
                StepResult::Ok
            } else {
                StepResult::Partial
            };
            Ok((behind, result, summary, short, to_value(&r)))
        })
    }
}

/// A step's line, live and in the run log.
fn announce(obs: &RunObserver, step: &Step) {
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

/// The catch-up's line, from what the backup reported of it.
fn catch_up_step(caught_up: &[crate::ops::sync::SyncTarget], foreign: usize) -> Step {
    let short = shortfalls(caught_up);
    let mut summary = if caught_up.is_empty() {
        "no target needed catching up".to_string()
    } else {
        caught_up
            .iter()
            .map(|t| {
                format!(
                    "`{}` {} ({} file(s) copied, {} deletion(s) applied)",
                    t.name,
                    label(t.state),
                    t.files_copied,
                    t.deletions_applied
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    if foreign > 0 {
        summary.push_str(&format!(
            "; {foreign} foreign file(s) found (see the report)"
        ));
    }
    let result = if short.is_empty() {
        StepResult::Ok
    } else {
        StepResult::Partial
    };
    Step {
        step: "catch-up",
        result,
        exit_code: if short.is_empty() {
            exit::OK
        } else {
            exit::PARTIAL
        },
        summary,
        targets: short,
        seconds: caught_up.iter().map(|t| t.seconds).sum(),
        report: to_value(&caught_up),
    }
}

/// Why a periodic step is not due yet, if it is not: `every` has not passed since its last
/// success. A tenth of `every` (at most 3 h) is forgiven, so that a timer's random delay does
/// not put a weekly prune off by a day.
fn not_due(cfg: &Config, command: &str, every: Within) -> Option<String> {
    let st = State::load(&state::dir(cfg).ok()?).ok()?;
    let last: jiff::Timestamp = st
        .commands
        .get(command)?
        .last_success_at
        .as_deref()?
        .parse()
        .ok()?;
    let now = jiff::Timestamp::now();
    let span = now.as_second()
        - every
            .before(&now.to_zoned(jiff::tz::TimeZone::UTC))
            .as_second();
    let slack = (span / 10).min(3 * 3600);
    let due = last.as_second() + span - slack;
    (now.as_second() < due).then(|| {
        format!(
            "last done {last}; due every {every}, next after {}",
            jiff::Timestamp::from_second(due).map_or_else(|_| "?".into(), |t| t.to_string())
        )
    })
}

fn send_ping(url: &str, which: Ping, body: &str, cfg: &Config, obs: &RunObserver) -> PingResult {
    let p = notify::ping(url, which, body, cfg.notify.timeout());
    if p.ok() {
        obs.log("INFO", "ping", &p.describe(), Value::Null);
    } else {
        obs.warn(&p.describe());
    }
    p
}

/// Writes the report, warning if it cannot be.
fn save(r: &RunReport, obs: &RunObserver) {
    if let Err(e) = report::save(r) {
        obs.warn(&format!("run report not written: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_periodic_step_is_due_once_its_period_less_a_tenth_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::parse(
            "[[target]]\nname = \"a\"\nkind = \"local\"\npath = \"/tmp/x\"\n",
            &dir.path().join("targets.toml"),
        )
        .unwrap();
        let week: Within = "7d".parse().unwrap();
        assert_eq!(not_due(&cfg, "prune", week), None, "never done: due");
        let ago = |hours: i64| {
            let mut st = State::default();
            st.commands.insert(
                "prune".into(),
                state::CommandRecord {
                    last_success_at: Some(
                        (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(hours))
                            .to_string(),
                    ),
                    ..Default::default()
                },
            );
            st.save(&state::dir(&cfg).unwrap()).unwrap();
        };
        ago(6 * 24);
        assert!(not_due(&cfg, "prune", week).is_some(), "six days ago");
        // A nightly timer's random delay: a week less an hour still counts as a week.
        ago(7 * 24 - 1);
        assert_eq!(not_due(&cfg, "prune", week), None);
        ago(7 * 24 - 4);
        assert!(
            not_due(&cfg, "prune", week).is_some(),
            "the slack is at most 3 h"
        );
        let day: Within = "1d".parse().unwrap();
        ago(22);
        assert_eq!(
            not_due(&cfg, "prune", day),
            None,
            "a tenth of a day is 2.4 h"
        );
        ago(21);
        assert!(not_due(&cfg, "prune", day).is_some());
    }
}
