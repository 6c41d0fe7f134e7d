//! `--heal`: copies in dependency order from a proven copy, strays removed, foreign files
//! quarantined; each repair checked again.

use std::{collections::BTreeMap, sync::Arc};

use super::{Checked, Problem, ProblemKind};
use crate::{
    deletion::{Deletions, obey},
    layout::stage,
    lock::LockedTargets,
    progress::Observer,
    proof::Proof,
    replica::{AfterWrite, ForeignFound, NotCopied, copy_proven, quarantine},
    store::Named,
};

/// Repairs what can be: copies in dependency order, strays removed, foreign files quarantined.
/// It writes: only under the lock.
pub(super) fn heal(
    _lock: &LockedTargets,
    problems: &mut [Problem],
    checked: &[(usize, Checked<'_>)],
    key: Option<(&Proof, &Deletions)>,
    observer: &Arc<dyn Observer>,
) {
    let proof = key.map(|(p, _)| p);
    if let Some((_, deletions)) = key {
        obey_pending(problems, checked, deletions, observer);
    }
    let foreign = ForeignFound::default();
    let mut order: Vec<usize> = (0..problems.len()).collect();
    order.sort_by_key(|&i| stage(&problems[i].path));
    // The first stage that failed on each target: an index copied after its pack failed, or a
    // snapshot after its index, would make the target look whole while it is not.
    let mut failed_at: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for i in order {
        let p = &problems[i];
        let here = stage(&p.path);
        if let Some((at, path)) = failed_at.get(&p.target)
            && *at < here
        {
            let why = format!("skipped: {path} was not healed on this target");
            let p = &mut problems[i];
            p.detail = format!("{}; not healed: {why}", p.detail);
            p.healed = Some(false);
            continue;
        }
        let Some((_, dest)) = checked.iter().find(|(_, c)| c.probed.cfg.name == p.target) else {
            continue;
        };
        let result = match p.kind {
            ProblemKind::Missing
            | ProblemKind::Corrupt
            | ProblemKind::SizeMismatch
            | ProblemKind::Unreadable => {
                let sources: Vec<Named<'_>> = checked
                    .iter()
                    .filter(|(_, c)| {
                        c.probed.cfg.name != p.target && c.inv.files.contains_key(&p.path)
                    })
                    .map(|(_, c)| (c.probed.cfg.name.as_str(), c.store))
                    .collect();
                copy_proven(
                    &p.path,
                    &sources,
                    dest.store,
                    AfterWrite::ReadBack,
                    proof,
                    &foreign,
                    &crate::replica::any_proven,
                )
                .map(|_| ())
                .map_err(|e| match e {
                    NotCopied::HeldBack(m) | NotCopied::Failed(m) => m,
                })
            }
            ProblemKind::Extra => dest.store.delete(&p.path).map_err(|e| e.to_string()),
            ProblemKind::Foreign => dest
                .store
                .read(&p.path)
                .and_then(|b| quarantine(dest.store, &p.path, b))
                .map_err(|e| e.to_string()),
            // Obeyed above, once per target.
            ProblemKind::PendingDeletion => continue,
            ProblemKind::Structure => continue,
        };
        let p = &mut problems[i];
        match result {
            Ok(()) => p.healed = Some(true),
            Err(e) => {
                observer.warn(&format!("`{}`: {} not healed: {e}", p.target, p.path));
                p.detail = format!("{}; not healed: {e}", p.detail);
                p.healed = Some(false);
                failed_at
                    .entry(p.target.clone())
                    .or_insert_with(|| (here, p.path.clone()));
            }
        }
    }
}

/// Applies the pending deletions: each target receives the records it lacks, then removes the
/// files they delete (one pass per target). A deletion that fails blocks nothing else.
fn obey_pending(
    problems: &mut [Problem],
    checked: &[(usize, Checked<'_>)],
    deletions: &Deletions,
    observer: &Arc<dyn Observer>,
) {
    for (_, c) in checked {
        let name = &c.probed.cfg.name;
        let mine = |p: &Problem| p.kind == ProblemKind::PendingDeletion && p.target == *name;
        let held: Vec<String> = problems
            .iter()
            .filter(|p| mine(p))
            .map(|p| p.path.clone())
            .collect();
        if held.is_empty() {
            continue;
        }
        let done = obey(name, c.store, &held, deletions);
        if let Some(e) = &done.error {
            observer.warn(&format!("`{name}`: deletions not applied: {e}"));
        }
        for p in problems.iter_mut().filter(|p| mine(p)) {
            let gone = matches!(c.store.stat(&p.path), Ok(None));
            p.healed = Some(gone);
            if let (false, Some(e)) = (gone, &done.error) {
                p.detail = format!("{}; not removed: {e}", p.detail);
            }
        }
    }
}
