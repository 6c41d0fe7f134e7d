//! `cairn prune`: remove the data no snapshot needs, through the fan-out backend, with the
//! removals recorded before any is done ([`crate::deletion`]).
//!
//! Targets that come and go: **a prune goes on without a removable disk that is away**, and
//! without an optional target away for longer than `[retention] prune_wait` (1 day); it waits
//! for a required target, and for any target that is reachable but not level. Going on is
//! decided by data, not timing: the disk left behind may hold a snapshot the others never saw
//! (a backup it got while away) that shares data with snapshots the others have forgotten.
//! It obeys the prune's record only at its catch-up, after the veto has walked every snapshot
//! every target keeps, its own included; a record that would take data one of them needs is
//! voided there, and that data reaches the others with the snapshot (copied from the disk).
//! Nothing is kept on the others for a disk that is away.
//!
//! Order, over the targets taking part: the lock; catch-up (every target level, deletion
//! records obeyed); rustic_core's prune plan over the union; rustic_core's prune writes the
//! repacked packs and the new index to every target, its removals collected instead of done;
//! then one deletion record naming every removal (and the snapshots the data was judged by) is
//! written to every target, and only then are the files removed: index files first, then
//! packs. If a target failed on the way, or the record cannot be written to every target,
//! nothing is removed anywhere (the new packs and index stay; the next prune removes the old files): a
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
    /// A purge's prune: its record removes purged data, which a copy that comes back must
    /// never bring back, so its packs stay in the tombstone for good.
    pub purge: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            max_unused: "5%".into(),
            max_repack: "unlimited".into(),
            dry_run: false,
            purge: false,
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
    /// Targets away that the prune went on without (removable disks; optional targets away
    /// longer than `[retention] prune_wait`): each obeys when it is back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub without: Vec<String>,
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
    /// The files its record removes.
    #[serde(skip)]
    pub removed_files: Vec<String>,
}

/// Whether a prune may go on while target `t` is not level: `Ok` with why, or `Err` with why
/// it waits. Only a target that is away (offline, unreachable) may be left behind, and only
/// when it is a removable disk, or optional and away (behind since `since`) for longer than
/// `wait`. Leaving one behind is safe whatever it holds: it obeys the prune's record only
/// after catch-up has walked every snapshot it keeps, and a record that would take data one
/// of them needs is voided ([`crate::deletion::veto`]) and that data copied back from it.
fn goes_on_without(
    t: &crate::config::TargetConfig,
    state: TargetState,
    since: Option<&str>,
    wait: crate::retention::Within,
    now: &jiff::Zoned,
) -> std::result::Result<String, String> {
    if !matches!(state, TargetState::Offline | TargetState::Unreachable) {
        return Err("reachable but not level".into());
    }
    if t.is_removable() {
        return Ok("a removable disk, away".into());
    }
    if t.required {
        return Err("required".into());
    }
    let since_ts = since.and_then(|s| s.parse::<jiff::Timestamp>().ok());
    match since_ts {
        Some(ts) if ts < wait.before(now) => Ok(format!(
            "optional, away since {} (longer than prune_wait {wait})",
            since.unwrap_or_default()
        )),
        Some(_) => Err(format!(
            "optional, away since {}: pruning goes on without it once that is longer than \
             prune_wait {wait}",
            since.unwrap_or_default()
        )),
        None => Err(format!(
            "optional, just found away: pruning goes on without it after prune_wait {wait}"
        )),
    }
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

/// Prunes every target, holding the lock; waits for a target that is away unless it may go
/// on without it ([`goes_on_without`]).
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
    let recorded = crate::state::State::load(&ctx.state_dir()?).unwrap_or_default();
    let now = jiff::Zoned::now();
    let (mut without, mut away) = (Vec::new(), Vec::new());
    for t in synced
        .targets
        .iter()
        .filter(|t| !matches!(t.state, TargetState::Level | TargetState::CaughtUp))
    {
        let since = recorded
            .targets
            .get(&t.name)
            .and_then(|r| r.lagging_since.as_deref());
        let detail = t.detail.as_deref().unwrap_or("not level");
        match goes_on_without(
            cfg.target(&t.name)?,
            t.state,
            since,
            cfg.retention.prune_wait(),
            &now,
        ) {
            Ok(why) => without.push((t.name.clone(), why)),
            Err(why) => away.push((t.name.clone(), format!("`{}` ({detail}; {why})", t.name))),
        }
    }
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
        without: Vec::new(),
        plan: summary,
        record: None,
        caught_up,
        targets: Vec::new(),
        partial: false,
        removed_files: Vec::new(),
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
            away.iter()
                .map(|(_, w)| w.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        observer.warn(&why);
        let kept = report.plan.bytes_remove;
        ctx.update_state(|st| st.record_prune(Some((&away, kept))));
        report.deferred = Some(why);
    } else if !without.is_empty() && !opts.dry_run {
        let names: Vec<String> = without
            .iter()
            .map(|(n, why)| format!("`{n}` ({why})"))
            .collect();
        observer.warn(&format!(
            "pruning without {}: it obeys this prune when it is back, after anything it \
             gained while away has reached the others",
            names.join(", ")
        ));
    }
    report.without = without.iter().map(|(n, _)| n.clone()).collect();
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
    let failed: Vec<(String, String)> = targets
        .iter()
        .filter(|t| t.state != TargetState::Complete && !report.without.contains(&t.name))
        .map(|t| {
            let why = format!("`{}` ({})", t.name, t.detail.as_deref().unwrap_or("failed"));
            (t.name.clone(), why)
        })
        .collect();
    let removals = if failed.is_empty() {
        removals
    } else {
        let why = format!(
            "nothing removed: {} failed during the prune; the new packs and index are on the \
             others, and the next prune with every target removes the old files",
            failed
                .iter()
                .map(|(_, w)| w.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        observer.warn(&why);
        let kept = report.plan.bytes_remove;
        ctx.update_state(|st| st.record_prune(Some((&failed, kept))));
        report.deferred = Some(why);
        Vec::new()
    };
    if !removals.is_empty() {
        let mut record = Record::new("prune", removals);
        record.purge = opts.purge;
        report.removed_files.clone_from(&record.files);
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
                    t.detail = done.left_note();
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
        let removed = targets.iter().map(|t| t.bytes_removed).max().unwrap_or(0);
        let without = &report.without;
        ctx.update_state(|st| {
            st.record_prune(None);
            if report.record.is_some() {
                for name in without {
                    st.record_pruned_without(name, removed);
                }
            }
        });
    }
    if report.record.is_some() {
        for t in targets
            .iter_mut()
            .filter(|t| report.without.contains(&t.name))
        {
            let away = t.detail.take().unwrap_or_else(|| "away".into());
            t.detail = Some(format!("{away}; obeys this prune when it is back"));
        }
    }
    report.partial = report.deferred.is_some() || is_partial(&targets);
    report.targets = targets;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_prune_waits_only_for_what_it_must() {
        let cfg = Config::parse(
            "[backup]\nsources = [\"/srv\"]\n\n\
             [[target]]\nname = \"usb\"\nkind = \"local\"\npath = \"/mnt/usb/cairn\"\n\
             removable = true\nmount_point = \"/mnt/usb\"\n\n\
             [[target]]\nname = \"nas\"\nkind = \"local\"\npath = \"/backup/nas\"\nrequired = false\n\n\
             [[target]]\nname = \"dc\"\nkind = \"local\"\npath = \"/backup/dc\"\n",
            std::path::Path::new("/etc/cairn/targets.toml"),
        )
        .unwrap();
        let t = |name: &str| cfg.target(name).unwrap();
        let now: jiff::Zoned = "2026-12-07T03:00:00Z[UTC]".parse().unwrap();
        let wait = cfg.retention.prune_wait();
        let (long_ago, lately) = (Some("2026-12-05T03:00:00Z"), Some("2026-12-06T22:00:00Z"));
        let on = |name, state, since| goes_on_without(t(name), state, since, wait, &now);
        // A removable disk away is never waited for, however recently it left.
        assert!(on("usb", TargetState::Offline, lately).is_ok());
        assert!(on("usb", TargetState::Offline, None).is_ok());
        // An optional target: only once away for longer than prune_wait (1 day).
        assert!(on("nas", TargetState::Unreachable, long_ago).is_ok());
        assert!(on("nas", TargetState::Unreachable, lately).is_err());
        assert!(on("nas", TargetState::Unreachable, None).is_err());
        // A required target, and any target reachable but not level, always.
        assert!(on("dc", TargetState::Unreachable, long_ago).is_err());
        assert!(on("usb", TargetState::Incomplete, long_ago).is_err());
        assert!(on("nas", TargetState::Foreign, long_ago).is_err());
    }
}
