//! `cairn status`: every target as it is now (probed) and as remembered (last complete
//! snapshot, lagging since, last error). Takes no lock. With the password it also reads the
//! deletion records, so a file deleted while a target was away counts as *pending deletion* on
//! that target, not as missing on the others; without it, what is pending cannot be known.

use std::{collections::BTreeSet, sync::Arc};

use rustic_core::{FileType, Id};
use serde::Serialize;

use crate::{
    context::Context,
    deletion::{self, Deletions},
    error::{Error, Result},
    layout::file_path,
    lock::{self, Holder},
    probe::{Probe, probe_all},
    progress::{Observer, Silent},
    replica::ForeignFound,
    report::TargetState,
    secret::Secret,
    state::{self, Observed, State, TargetRecord},
    store::Named,
    unlock::unlock,
};

/// One target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Where it is.
    pub location: String,
    /// Where it is as configured (`region`), for data residency.
    pub region: Option<String>,
    /// Whether it is required.
    pub required: bool,
    /// As probed now.
    pub state: TargetState,
    /// Snapshot files it holds.
    pub snapshots: usize,
    /// Key, index and snapshot files it lacks that another target holds (and no deletion
    /// record deletes).
    pub missing_files: usize,
    /// Key, index and snapshot files it still holds that a deletion record deletes: it missed
    /// a forget or prune and obeys at its next catch-up. `null` without the password.
    pub pending_deletions: Option<usize>,
    /// Why it is not level, when probing says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Bytes kept on it only because prunes wait for targets that are away, and for which.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_for_away: Option<KeptForAway>,
    /// What earlier runs recorded.
    pub recorded: TargetRecord,
}

crate::outcome_fields!(TargetStatus);

/// What a target keeps only for targets that are away: the data the last deferred prune would
/// have removed. A removable disk that is away is never waited for, so this is always about
/// required targets, or optional ones away for less than `[retention] prune_wait`.
#[derive(Debug, Clone, Serialize)]
pub struct KeptForAway {
    /// Bytes.
    pub bytes: u64,
    /// The targets waited for, with why.
    pub targets: Vec<String>,
    /// Since when.
    pub since: String,
}

/// What target `name` keeps only because the deferred prune `d` waits for others: nothing on a
/// target it waits for itself.
fn kept_for_away(d: &state::PruneDeferred, name: &str) -> Option<KeptForAway> {
    // State written before the names were kept: each reason starts with its target's name.
    let waited_for = if d.targets.is_empty() {
        d.waiting_for
            .iter()
            .any(|w| w.starts_with(&format!("`{name}` ")))
    } else {
        d.targets.iter().any(|t| t == name)
    };
    (d.bytes > 0 && !waited_for).then(|| KeptForAway {
        bytes: d.bytes,
        targets: d.waiting_for.clone(),
        since: d.since.clone(),
    })
}

impl TargetStatus {
    /// One line on what is held back on or for this target, if anything: bytes kept for an
    /// away target, or prunes it obeys when back.
    #[must_use]
    pub fn held_back(&self) -> Option<String> {
        if let Some(k) = &self.kept_for_away {
            return Some(format!(
                "keeps {} for {} (prune deferred since {})",
                crate::report::human_bytes(k.bytes),
                k.targets.join(", "),
                k.since
            ));
        }
        self.recorded.pruned_without.as_ref().map(|o| {
            format!(
                "{} prune(s) since {} went on without it: when back it obeys them (about {} \
                 to free); nothing is kept on the others for it",
                o.prunes,
                o.since,
                crate::report::human_bytes(o.bytes)
            )
        })
    }
}

/// Every target.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// In configuration order.
    pub targets: Vec<TargetStatus>,
    /// The cairn process holding the repository lock on this machine, if one does.
    pub locked_by: Option<Holder>,
    /// Prunes remove nothing while a target is away: since when, and for which.
    pub prune_deferred: Option<state::PruneDeferred>,
    /// The 3-2-1-1-0 rule, from what earlier runs recorded.
    pub rule: crate::rule::Rule,
    /// The client's erasure at contract end, once it is due within 30 days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract_warning: Option<String>,
}

/// Probes every target and joins what earlier runs recorded.
///
/// # Errors
/// The state file exists but cannot be read.
pub fn run(ctx: &Context, password: Option<&Secret>) -> Result<StatusReport> {
    let cfg = ctx.cfg();
    let recorded = State::load(&state::dir(cfg)?)?;
    let probed = probe_all(ctx, None)?;
    let deletions: Option<Deletions> = match password.map(|pw| unlock(ctx, &probed, pw)) {
        Some(Ok(proof)) => {
            let sources: Vec<Named<'_>> = probed
                .iter()
                .filter(|p| matches!(p.probe, Probe::Ready { .. }))
                .filter_map(|p| Some((p.cfg.name.as_str(), p.store.as_deref()?)))
                .collect();
            Some(deletion::load(&sources, &proof, &ForeignFound::default()))
        }
        Some(Err(Error::NoRepository)) | None => None,
        Some(Err(e)) => return Err(e),
    };
    let deleted = |f: &(u8, Id)| {
        let tpe = [FileType::Key, FileType::Index, FileType::Snapshot][usize::from(f.0)];
        deletions
            .as_ref()
            .is_some_and(|d| d.deletes(&file_path(tpe, &f.1)))
    };
    let mut union: BTreeSet<(u8, Id)> = BTreeSet::new();
    let sets = |p: &Probe| -> Option<BTreeSet<(u8, Id)>> {
        match p {
            Probe::Ready {
                keys,
                index,
                snapshots,
                ..
            } => Some(
                keys.iter()
                    .map(|i| (0, *i))
                    .chain(index.iter().map(|i| (1, *i)))
                    .chain(snapshots.iter().map(|i| (2, *i)))
                    .collect(),
            ),
            _ => None,
        }
    };
    for p in &probed {
        union.extend(
            sets(&p.probe)
                .unwrap_or_default()
                .into_iter()
                .filter(|f| !deleted(f)),
        );
    }
    // Targets holding snapshots a prune they missed never judged: their next catch-up brings
    // those to the others.
    let snapshot_files: Vec<(&str, std::collections::BTreeMap<String, u64>)> = probed
        .iter()
        .filter_map(|p| match &p.probe {
            Probe::Ready { snapshots, .. } => Some((
                p.cfg.name.as_str(),
                snapshots
                    .iter()
                    .map(|id| (file_path(FileType::Snapshot, id), 0))
                    .collect(),
            )),
            _ => None,
        })
        .collect();
    let listed: Vec<(&str, &std::collections::BTreeMap<String, u64>)> =
        snapshot_files.iter().map(|(n, f)| (*n, f)).collect();
    let unjudged = deletions
        .as_ref()
        .map(|d| deletion::unjudged(d, &listed))
        .unwrap_or_default();
    let targets: Vec<TargetStatus> = probed
        .iter()
        .map(|p| {
            let (state, mut detail, missing, pending, snapshots) = match &p.probe {
                Probe::Ready { .. } => {
                    let have = sets(&p.probe).unwrap_or_default();
                    let missing = union.difference(&have).count();
                    let pending = have.iter().filter(|f| deleted(f)).count();
                    let state = if missing == 0 && pending == 0 {
                        TargetState::Level
                    } else {
                        TargetState::Lagging
                    };
                    let detail = (pending > 0).then(|| {
                        format!(
                            "{pending} deleted file(s) still here (pending deletion; obeyed at \
                             the next catch-up)"
                        )
                    });
                    let snapshots = have.iter().filter(|f| f.0 == 2 && !deleted(f)).count();
                    (state, detail, missing, Some(pending), snapshots)
                }
                Probe::Empty => (TargetState::NotInitialised, None, union.len(), Some(0), 0),
                _ => {
                    let (state, why) = p
                        .unusable()
                        .unwrap_or((TargetState::Unreachable, String::new()));
                    (state, Some(why), 0, None, 0)
                }
            };
            let pending = pending.filter(|_| deletions.is_some());
            let mut state = state;
            if let Some(alone) = unjudged.get(p.cfg.name.as_str()) {
                let ids: Vec<&str> = alone.iter().map(|id| &id[..8.min(id.len())]).collect();
                state = TargetState::Lagging;
                detail = Some(format!(
                    "holds snapshot(s) {} that a prune it missed never judged (a backup it got \
                     while away): its next catch-up copies them to the others with the data \
                     they need, and voids what would remove that data",
                    ids.join(", ")
                ));
            }
            let kept_for_away = recorded
                .prune_deferred
                .as_ref()
                .and_then(|d| kept_for_away(d, &p.cfg.name));
            TargetStatus {
                name: p.cfg.name.clone(),
                kind: p.cfg.kind.name().to_string(),
                location: p.location(),
                region: p.cfg.region.clone(),
                required: p.cfg.required,
                state,
                snapshots,
                missing_files: missing,
                pending_deletions: pending,
                detail,
                kept_for_away,
                recorded: recorded
                    .targets
                    .get(&p.cfg.name)
                    .cloned()
                    .unwrap_or_default(),
            }
        })
        .collect();
    let observer: Arc<dyn Observer> = Arc::new(Silent);
    state::update(cfg, &observer, |s| {
        for t in &targets {
            s.record_observed(
                &t.name,
                Observed {
                    at: state::now(),
                    reachable: !matches!(t.state, TargetState::Unreachable | TargetState::Offline),
                    snapshots: t.snapshots as u64,
                    pending_files: t.missing_files as u64,
                    pending_deletions: t.pending_deletions.unwrap_or(0) as u64,
                },
            );
        }
    });
    Ok(StatusReport {
        targets,
        locked_by: lock::local_holder(cfg),
        prune_deferred: recorded.prune_deferred.clone(),
        rule: crate::rule::judge(cfg, &recorded, jiff::Timestamp::now()),
        contract_warning: cfg.contract.and_then(|c| {
            c.warning(
                cfg.client.as_deref().unwrap_or_default(),
                crate::state::today(),
            )
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_targets_a_prune_does_not_wait_for_keep_bytes_for_the_others() {
        let mut d = state::PruneDeferred {
            since: "2026-12-01T01:00:00Z".into(),
            waiting_for: vec!["`usb` (offline; a required target)".into()],
            targets: vec!["usb".into()],
            bytes: 4096,
        };
        assert!(kept_for_away(&d, "usb").is_none());
        assert_eq!(kept_for_away(&d, "usb2").map(|k| k.bytes), Some(4096));
        assert_eq!(
            kept_for_away(&d, "nas").map(|k| k.targets),
            Some(vec!["`usb` (offline; a required target)".to_string()])
        );
        // State from before the names were kept reads the same.
        d.targets.clear();
        assert!(kept_for_away(&d, "usb").is_none());
        assert!(kept_for_away(&d, "usb2").is_some());
        d.bytes = 0;
        assert!(kept_for_away(&d, "nas").is_none());
    }
}
