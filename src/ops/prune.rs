//! `cairn prune`: remove the data no snapshot needs, through the fan-out backend, with the
//! removals recorded before any is done ([`crate::deletion`]).
//!
//! The rule that makes it safe with targets that come and go: **data is judged unused only
//! when every configured target is reachable and level.** A target that is away (the USB disk
//! in a drawer) may hold a snapshot the others never saw, made while it was cut off, that
//! shares data with snapshots the others have forgotten; judged without it, that data would
//! look unused and be removed. So with any target away, prune removes nothing: it says which
//! target it waits for (output, `status`) and runs in full once all are back.
//!
//! Order, with every target present: the lock; catch-up (every target level, deletion records
//! obeyed); rustic_core's prune plan over the union; rustic_core's prune writes the repacked
//! packs and the new index to every target, its removals collected instead of done; then one
//! deletion record naming every removal (and the snapshots the data was judged by) is written
//! to every target, and only then are the files removed: index files first, then packs. If a
//! target failed on the way, or the record cannot be written to every target, nothing is
//! removed anywhere (the new packs and index stay; the next prune removes the old files): a
//! target that missed the deletion could, cut off from the others, write a backup relying on
//! the old data.
//!
//! rustic_core's two-phase delete (packs first *marked* in the index's `packs_to_delete`, and
//! removed by a later prune once `keep_delete` has passed) protects packs that a concurrent
//! writer may still reference. cairn holds an exclusive lock on every target (its own and
//! restic's) for the whole run, so no writer is concurrent: prune runs with `instant_delete`,
//! which also removes what earlier runs marked. That keeps every target a repository stock
//! restic checks clean (restic knows no marked packs), and makes erasure take effect now.

use rustic_core::{LimitOption, ProgressBars, PruneOptions as RusticPruneOptions};
use serde::Serialize;

use crate::{
    context::Context,
    deletion::{self, Record, Recorded},
    error::{Error, Result},
    lock::LockedTargets,
    ops::sync::{self, SyncTarget},
    report::{TargetState, is_partial},
    secret::Secret,
    store::Named,
};

/// Options of one prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Unused data tolerated after pruning: `5%` (restic's default), a size, or `unlimited`.
    pub max_unused: String,
    /// Data repacked at most: a size, a percentage, or `unlimited` (restic's default).
    pub max_repack: String,
    /// Plan and report, change nothing.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            max_unused: "5%".into(),
            max_repack: "unlimited".into(),
            dry_run: false,
        }
    }
}

/// What the plan says (the same for every target: they hold the same repository).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanSummary {
    /// Packs no snapshot needs: removed.
    pub packs_unused: u64,
    /// Packs partly used: repacked (their used blobs written to new packs), then removed.
    pub packs_repack: u64,
    /// Packs kept as they are.
    pub packs_keep: u64,
    /// Packs in no index file (left by an interrupted run): removed.
    pub packs_unindexed: u64,
    /// Bytes of blobs removed.
    pub bytes_remove: u64,
    /// Bytes of used blobs repacked.
    pub bytes_repack: u64,
    /// Bytes of unused blobs kept (below `max_unused`).
    pub bytes_unused_kept: u64,
}

/// One target's part.
#[derive(Debug, Clone, Serialize)]
pub struct PruneTarget {
    /// Target name.
    pub name: String,
    /// Whether it is required.
    pub required: bool,
    /// `complete`: it holds the record and lost the files.
    pub state: TargetState,
    /// Files removed (packs and index files).
    pub files_removed: usize,
    /// Their bytes.
    pub bytes_removed: u64,
    /// Bytes written to it (repacked packs, index files).
    pub bytes_written: u64,
    /// Why not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

crate::outcome_fields!(PruneTarget);

/// What a prune did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Nothing was changed on purpose.
    pub dry_run: bool,
    /// Why nothing was removed although the plan would: the targets it waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<String>,
    /// The plan.
    pub plan: PlanSummary,
    /// The deletion record written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Targets brought level first.
    pub caught_up: Vec<SyncTarget>,
    /// Every target.
    pub targets: Vec<PruneTarget>,
    /// Whether a required target did not take part, or prune was deferred.
    pub partial: bool,
}

/// A limit as given (`--max-unused`, `--max-repack`); a percentage must lie below `below`.
fn limit(what: &str, s: &str, below: f64) -> Result<LimitOption> {
    let bad = |why: &str| Error::Usage(format!("{what} {s:?}: {why}"));
    let percent = s.trim().strip_suffix('%').map(|p| p.trim().parse::<f64>());
    match percent {
        Some(Ok(p)) if !(p >= 0.0 && p < below) => {
            return Err(bad(&format!(
                "a percentage must be at least 0% and below {below}% (as restic)"
            )));
        }
        Some(Err(_)) => return Err(bad("expected a percentage such as `5%`")),
        _ => {}
    }
    s.parse()
        .map_err(|_| bad("expected a percentage (`5%`), a size (`2GiB`) or `unlimited`"))
}

/// Prunes every target, holding the lock; removes nothing while any target is away.
///
/// # Errors
/// Bad limits; no repository; wrong password; the lock is held; rustic_core's prune failed
/// (nothing was removed then).
pub fn run<P: ProgressBars + Clone>(
    ctx: &Context,
    password: &Secret,
    opts: &PruneOptions,
    pb: &P,
) -> Result<PruneReport> {
    let cfg = ctx.cfg();
    let observer = ctx.observer().clone();
    let rustic_opts = RusticPruneOptions::default()
        .max_unused(limit("max-unused", &opts.max_unused, 100.0)?)
        .max_repack(limit("max-repack", &opts.max_repack, f64::INFINITY)?)
        .keep_pack(jiff::Span::new())
        .keep_delete(jiff::Span::new())
        .instant_delete(true)
        .repack_cacheable_only(Some(false));
    let mut locked = LockedTargets::acquire(ctx, "prune")?;
    locked.prove(password)?;
    if locked.proof().is_none() {
        return Err(Error::NoRepository);
    }
    let synced = sync::run(&locked, None, cfg.retention.records_for(), &observer, pb)?;
    let away: Vec<String> = synced
        .targets
        .iter()
        .filter(|t| !matches!(t.state, TargetState::Level | TargetState::CaughtUp))
        .map(|t| {
            format!(
                "`{}` ({})",
                t.name,
                t.detail.as_deref().unwrap_or("not level")
            )
        })
        .collect();
    let caught_up: Vec<SyncTarget> = synced
        .targets
        .into_iter()
        .filter(|t| t.state != TargetState::Level)
        .collect();
    locked.reprobe()?;
    let session = locked.writer(&[])?;
    let proof = locked.proof().ok_or(Error::NoRepository)?;
    let repo = session.repository_with(proof, pb.clone())?;
    let plan = repo.prune_plan(&rustic_opts)?;
    let s = &plan.stats;
    let size = s.size_sum();
    let summary = PlanSummary {
        packs_unused: s.packs.unused,
        packs_repack: s.packs.repack,
        packs_keep: s.packs.keep,
        packs_unindexed: s.packs_unref,
        bytes_remove: size.remove + size.repackrm,
        bytes_repack: size.repack - size.repackrm,
        bytes_unused_kept: size.unused_after_prune(),
    };
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        deferred: None,
        plan: summary,
        record: None,
        caught_up,
        targets: Vec::new(),
        partial: false,
    };
    let outcomes = session.outcomes();
    let as_target = |t: &crate::report::TargetOutcome| PruneTarget {
        name: t.name.clone(),
        required: t.required,
        state: t.state,
        files_removed: 0,
        bytes_removed: 0,
        bytes_written: t.bytes_written,
        detail: t.detail.clone(),
    };
    if !away.is_empty() {
        let why = format!(
            "nothing removed: waiting for {} (a snapshot only a target that is away holds \
             may need data the others no longer reference); prune runs once every target \
             is reachable",
            away.join(", ")
        );
        observer.warn(&why);
        ctx.update_state(|st| st.record_prune(Some(&away)));
        report.deferred = Some(why);
    }
    if opts.dry_run || report.deferred.is_some() {
        report.targets = outcomes.iter().map(as_target).collect();
        report.partial = report.deferred.is_some() || is_partial(&report.targets);
        return Ok(report);
    }

    session.fanout.defer_removals();
    let pruned = repo.prune(&rustic_opts, plan);
    let removals = session.fanout.take_removals();
    pruned?;
    let outcomes = session.outcomes();
    let mut targets: Vec<PruneTarget> = outcomes.iter().map(as_target).collect();
    // A target that failed on the way lacks the new index: removing the old files elsewhere
    // now would let it, cut off, write a backup relying on data the others no longer hold.
    let failed: Vec<String> = targets
        .iter()
        .filter(|t| t.state != TargetState::Complete)
        .map(|t| format!("`{}` ({})", t.name, t.detail.as_deref().unwrap_or("failed")))
        .collect();
    let removals = if failed.is_empty() {
        removals
    } else {
        let why = format!(
            "nothing removed: {} failed during the prune; the new packs and index are on the \
             others, and the next prune with every target removes the old files",
            failed.join(", ")
        );
        observer.warn(&why);
        ctx.update_state(|st| st.record_prune(Some(&failed)));
        report.deferred = Some(why);
        Vec::new()
    };
    if !removals.is_empty() {
        let mut record = Record::new("prune", removals);
        record.snapshots = repo
            .get_all_snapshots()?
            .iter()
            .map(|s| s.id.to_hex().to_string())
            .collect();
        // Only targets that received every new pack and index file may lose the old ones.
        let stores: Vec<(usize, Named<'_>)> = session
            .fanout
            .members()
            .iter()
            .filter(|m| m.failure().is_none())
            .filter_map(|m| {
                let i = targets.iter().position(|t| t.name == m.name)?;
                Some((i, (m.name.as_str(), m.store().as_ref())))
            })
            .collect();
        let sources: Vec<Named<'_>> = stores.iter().map(|(_, s)| *s).collect();
        let (path, results) =
            match deletion::record_and_remove(&sources, &record, proof, Recorded::All) {
                Ok(done) => done,
                // Called off: partly done (the new packs and index are written), nothing removed.
                Err(why) => {
                    observer.warn(&why);
                    report.deferred = Some(why);
                    report.partial = true;
                    report.targets = targets;
                    return Ok(report);
                }
            };
        for ((i, _), r) in stores.iter().zip(results) {
            let t = &mut targets[*i];
            match r {
                Ok(done) => {
                    t.files_removed = done.files;
                    t.bytes_removed = done.bytes;
                }
                Err(e) => {
                    observer.target_failed(&t.name, &e);
                    t.state = TargetState::Failed;
                    t.detail = Some(format!("{e}; obeys the deletion at its next catch-up"));
                }
            }
        }
        report.record = Some(path);
    }
    if report.deferred.is_none() {
        ctx.update_state(|st| st.record_prune(None));
    }
    report.partial = report.deferred.is_some() || is_partial(&targets);
    report.targets = targets;
    Ok(report)
}
