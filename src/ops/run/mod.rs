//! `cairn run`: the nightly job. Lock -> (a client whose contract ran out: erase, and nothing
//! else) -> backup (probe and catch-up first) -> purge again what came back from before a purge
//! -> forget by `[retention]` -> prune when due -> sample verify when due -> status -> metrics,
//! report, hooks, ping. Every step leaves one line and its own report; a step that fails never hides
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
    progress::Observer,
    report::label,
    runlog::RunLog,
    state::{self},
};

mod job;
mod observer;
mod report;

use job::Job;
pub use job::{Password, RunOptions};
use observer::{RunObserver, remember, save};
pub use report::{REPORT_FILE, RunReport, RunResult, Step, StepResult};
use report::{hook_vars, summary_text, verdict};

/// The lock that keeps two runs of one configuration apart.
const LOCK_FILE: &str = "run.lock";

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
    if let Some(url) = &cfg.ping_url {
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
        repository: cfg.repository.name.clone(),
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
    remember(&report, &obs);

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
    if let Some(url) = &cfg.ping_url {
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

fn send_ping(url: &str, which: Ping, body: &str, cfg: &Config, obs: &RunObserver) -> PingResult {
    let p = notify::ping(url, which, body, cfg.notify.timeout());
    if p.ok() {
        obs.log("INFO", "ping", &p.describe(), Value::Null);
    } else {
        obs.warn(&p.describe());
    }
    p
}
