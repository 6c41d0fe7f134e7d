//! The steps of the nightly job after its lock: backup (with the catch-up before it), forget,
//! prune and verify when due, status. Each step is timed and leaves one line.

use std::{sync::Arc, time::Instant};

use rustic_core::ProgressBars;
use serde_json::Value;

use super::{
    observer::{RunObserver, announce},
    report::{Step, StepResult, to_value},
};
use crate::{
    config::Config,
    context::Context,
    error::{Error, Result},
    exit,
    ops::{backup, check, erase, forget, lock_extend, prune, purge, status, verify},
    report::{TargetState, label, shortfalls},
    retention::Within,
    secret::{Secret, redact},
    state::{self, State},
};

/// Options of a run, beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Create the repository first if no target holds one (as `backup --init`).
    pub init: bool,
}

/// The password, resolved once for every step.
pub type Password = std::result::Result<Secret, Error>;

/// The steps in flight.
pub(super) struct Job<'a> {
    pub(super) ctx: &'a Context,
    pub(super) obs: &'a Arc<RunObserver>,
    pub(super) steps: Vec<Step>,
}

/// What a step hands back: a value for the next steps, its result, summary, targets left
/// behind, and its report.
type StepOut<T> = (T, StepResult, String, Vec<String>, Value);

impl Job<'_> {
    /// Runs one step, timing it and recording its line; `None` when it failed.
    pub(super) fn step<T>(
        &mut self,
        name: &'static str,
        f: impl FnOnce() -> Result<StepOut<T>>,
    ) -> Option<T> {
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

    /// The client's keeping after its contract has run out: it is erased as `cairn erase`
    /// would (certificate, targets that are away later), and nothing else runs.
    fn erase_at_contract_end(&mut self, pw: &Secret, name: &str, c: crate::config::Contract) {
        let ctx = self.ctx;
        self.step("erase", || {
            let opts = erase::EraseOptions {
                reason: format!(
                    "contract end {} + keep_after_end {} (erase on {})",
                    c.end, c.keep_after, c.erase_on
                ),
                dry_run: false,
            };
            let r = erase::run(ctx, pw, &opts, &mut |_| true)?;
            let pending: Vec<String> = r
                .targets
                .iter()
                .filter(|t| t.state == "pending")
                .map(|t| t.name.clone())
                .collect();
            let id = r.certificate.as_ref().map_or("", |c| c.id.as_str());
            let mut summary = format!(
                "erased `{name}`: its contract ended {} and its backups were kept {} \
                 (certificate {id})",
                c.end, c.keep_after
            );
            if !pending.is_empty() {
                summary.push_str(&format!(
                    "; pending on {} (erased when reachable)",
                    pending.join(", ")
                ));
            }
            let result = if pending.is_empty() {
                StepResult::Ok
            } else {
                StepResult::Partial
            };
            Ok(((), result, summary, pending, to_value(&r)))
        });
    }

    pub(super) fn steps_after_lock<P: ProgressBars + Clone>(
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
        if let Some(c) = ctx.cfg().contract {
            let name = ctx.cfg().client.clone().unwrap_or_default();
            let today = state::today();
            if c.days_left(today) <= 0 {
                self.erase_at_contract_end(&pw, &name, c);
                return;
            }
            if let Some(w) = c.warning(&name, today) {
                ctx.observer().warn(&w);
            }
        }
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

        self.purge_again(&pw, pb);
        self.forget_and_prune(&pw, pb);
        self.verify(&pw, pb);
        self.immutability();
        self.lock_extend(&pw);
        if let Some(l) = self.status(&pw) {
            *lagging = l;
        }
    }

    /// After a purge of this repository: what came back from before it with a target that
    /// was cut off is purged again (nothing to do, and no line, for a repository never purged).
    fn purge_again<P: ProgressBars + Clone>(&mut self, pw: &Secret, pb: &P) {
        let ctx = self.ctx;
        let cfg = ctx.cfg();
        let folder = cfg.client.clone().unwrap_or_default();
        let purged = crate::erasure::Register::load(&crate::erasure::dir(cfg)).is_ok_and(|r| {
            r.certificates
                .iter()
                .any(|c| c.kind == crate::erasure::Kind::Purge && c.folder == folder)
        });
        if !purged {
            return;
        }
        self.step("purge", || {
            let again = purge::again(ctx, pw, pb)?;
            let partial = again.iter().any(|r| r.partial || !r.complete);
            let snapshots: usize = again.iter().map(|r| r.snapshots.len()).sum();
            let summary = if again.is_empty() {
                "nothing from before a purge came back".to_string()
            } else {
                format!(
                    "purged again: {snapshots} snapshot(s) from before a purge came back with a \
                     target that was cut off ({})",
                    again
                        .iter()
                        .filter_map(|r| r.certificate.as_ref().map(|c| c.id.clone()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let result = if partial {
                StepResult::Partial
            } else {
                StepResult::Ok
            };
            Ok(((), result, summary, vec![], to_value(&again)))
        });
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
                    "{} pack(s) removed, {} repacked ({}){}",
                    r.plan.packs_unused,
                    r.plan.packs_repack,
                    crate::report::human_bytes(r.plan.bytes_remove),
                    if r.without.is_empty() {
                        String::new()
                    } else {
                        format!("; without {} (obeys when back)", r.without.join(", "))
                    }
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

    /// Once a day, when a target claims protection (S3 Object Lock, append-only SFTP):
    /// `check --immutability`.
    /// A canary that can be destroyed fails the run as damage does (exit 5, hooks, ping).
    fn immutability(&mut self) {
        let ctx = self.ctx;
        let cfg = ctx.cfg();
        if !cfg
            .targets
            .iter()
            .any(crate::config::TargetConfig::claims_protection)
        {
            return;
        }
        let daily: Within = "1d".parse().expect("a valid period");
        if let Some(next) = not_due(cfg, "immutability", daily) {
            self.skip("immutability", StepResult::NotDue, next);
            return;
        }
        let started = Instant::now();
        let code = self
            .step("immutability", || {
                let r = check::immutability::run(ctx);
                let code = r.exit_code();
                let failed: Vec<String> = r.not_immutable().map(|t| t.name.clone()).collect();
                let unreached: Vec<String> = r
                    .targets
                    .iter()
                    .filter(|t| t.unreachable.is_some())
                    .map(|t| t.name.clone())
                    .collect();
                let proven = r
                    .targets
                    .iter()
                    .filter(|t| t.protection.as_ref().is_some_and(|p| p.immutable))
                    .count();
                let (result, summary, targets) = if !failed.is_empty() {
                    (
                        StepResult::VerifyFailed,
                        format!("NOT immutable: {}", failed.join(", ")),
                        failed,
                    )
                } else if !unreached.is_empty() {
                    (
                        StepResult::Partial,
                        format!(
                            "{proven} target(s) proven immutable; not reached: {}",
                            unreached.join(", ")
                        ),
                        unreached,
                    )
                } else {
                    (
                        StepResult::Ok,
                        format!("{proven} target(s) proven immutable"),
                        vec![],
                    )
                };
                Ok((code, result, summary, targets, to_value(&r)))
            })
            .unwrap_or(exit::FAILED);
        let secs = started.elapsed().as_secs_f64();
        ctx.update_state(|s| s.record_command("immutability", code, secs));
    }

    /// When a target locks what it holds: the locks of what kept snapshots need are moved to
    /// their full length, every third of the shortest lock (at least daily), so that nothing
    /// needed runs out of its lock between runs.
    fn lock_extend(&mut self, pw: &Secret) {
        let ctx = self.ctx;
        let cfg = ctx.cfg();
        let Some(days) = cfg
            .targets
            .iter()
            .filter_map(|t| match &t.kind {
                crate::config::TargetKind::S3 {
                    object_lock: Some(l),
                    ..
                } => Some(l.days),
                _ => None,
            })
            .min()
        else {
            return;
        };
        let every: Within = format!("{}d", (days / 3).max(1))
            .parse()
            .expect("a valid period");
        if let Some(next) = not_due(cfg, "lock-extend", every) {
            self.skip("lock-extend", StepResult::NotDue, next);
            return;
        }
        let started = Instant::now();
        let code = self
            .step("lock-extend", || {
                let r = lock_extend::run(ctx, pw)?;
                let code = r.exit_code();
                let failed: Vec<String> = r
                    .targets
                    .iter()
                    .filter(|t| t.error.is_some())
                    .map(|t| t.name.clone())
                    .collect();
                let extended: u64 = r.targets.iter().map(|t| t.extended).sum();
                let (result, summary) = if failed.is_empty() {
                    (StepResult::Ok, format!("{extended} lock(s) extended"))
                } else {
                    (
                        StepResult::Partial,
                        format!(
                            "{extended} lock(s) extended; not all on {}",
                            failed.join(", ")
                        ),
                    )
                };
                Ok((code, result, summary, failed, to_value(&r)))
            })
            .unwrap_or(exit::FAILED);
        let secs = started.elapsed().as_secs_f64();
        ctx.update_state(|s| s.record_command("lock-extend", code, secs));
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
