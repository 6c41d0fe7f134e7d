//! What catch-up does with the deletion records themselves: voids those that would take data a
//! kept snapshot needs, and compacts those every target has obeyed into the tombstone.

use std::{collections::BTreeSet, sync::Arc};

use super::SyncTarget;
use crate::{
    deletion::{self, Deletions, Record, veto::Holding},
    probe::Probed,
    progress::Observer,
    proof::Proof,
    report::TargetState,
    retention::Within,
};

/// Voids the records whose deletions would take from a kept snapshot data it needs (see
/// [`deletion::veto`]): sealed into a void record on every target that takes it, and dropped
/// from `deletions` for this run. When what the snapshots need cannot be read, no record
/// removes data this time.
pub(super) fn void_breaking(
    targets: &[Holding<'_>],
    deletions: &mut Deletions,
    proof: &Proof,
    observer: &Arc<dyn Observer>,
) {
    let breaking = match deletion::veto::breaking(targets, deletions, proof) {
        Ok(b) if b.is_empty() => return,
        Ok(b) => b,
        Err(e) => {
            observer.warn(&format!(
                "no deletion of data is obeyed this time: what the kept snapshots need could \
                 not be read ({e})"
            ));
            let prunes: BTreeSet<String> = deletions
                .records
                .iter()
                .filter(|(_, r)| r.command == "prune")
                .map(|(p, _)| p.clone())
                .collect();
            deletions.void(&prunes);
            return;
        }
    };
    let records: BTreeSet<String> = breaking.keys().cloned().collect();
    let snapshots: BTreeSet<String> = breaking.into_values().flatten().collect();
    let short = |ids: &BTreeSet<String>, skip: usize| -> String {
        ids.iter()
            .map(|i| i[skip..(skip + 8).min(i.len())].to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let written = Record::void(
        records.iter().cloned().collect(),
        snapshots.iter().cloned().collect(),
    )
    .seal(proof.cipher())
    .map(|(path, bytes)| {
        crate::par::each(targets, |(_, store, _)| {
            store.write(&path, vec![bytes.clone()])
        })
        .iter()
        .filter(|w| w.is_ok())
        .count()
    })
    .unwrap_or(0);
    observer.warn(&format!(
        "deletion record(s) {} would remove data that kept snapshot(s) {} need: voided on {written} \
         target(s), nothing of them is removed (a prune called off, or a record put back by a \
         target that kept a copy)",
        short(&records, deletion::DIR.len() + 1),
        short(&snapshots, 0),
    ));
    deletions.void(&records);
}

/// Removes the deletion records every configured target has obeyed, once older than
/// `records_for`: only when this run reached every target and each now holds every record and
/// none of the files they delete. Returns how many records went.
pub(super) fn compact(
    probed: &[Probed],
    targets: &[SyncTarget],
    only: Option<&str>,
    deletions: &Deletions,
    records_for: Within,
    proof: &Proof,
    observer: &Arc<dyn Observer>,
) -> usize {
    let everywhere = only.is_none()
        && targets.iter().all(|t| {
            matches!(t.state, TargetState::Level | TargetState::CaughtUp)
                && t.deletions_pending == 0
        });
    if !everywhere || deletions.records.is_empty() {
        return 0;
    }
    let cutoff = records_for.before(&jiff::Zoned::now());
    let old = deletion::compactable(deletions, cutoff);
    if old.is_empty() {
        return 0;
    }
    // What they deleted stays refused for good: the snapshot, index and key files of every
    // compacted record go into one tombstone (an old copy of one put back later is deleted
    // again, never copied), written everywhere before any record goes.
    let (tomb_path, tomb, superseded) = match deletion::tombstone(deletions, &old, proof) {
        Ok(t) => t,
        Err(e) => {
            observer.warn(&format!("deletion records not compacted: {e}"));
            return 0;
        }
    };
    let written = crate::par::each(probed, |p| match p.store.as_deref() {
        Some(store) => store
            .write(&tomb_path, vec![tomb.clone()])
            .map_err(|e| format!("`{}`: {e}", p.cfg.name)),
        None => Err(format!("`{}` has no store", p.cfg.name)),
    });
    if let Some(Err(e)) = written.iter().find(|w| w.is_err()) {
        observer.warn(&format!(
            "deletion records not compacted (they are again next time): {e}"
        ));
        return 0;
    }
    let removed = crate::par::each(probed, |p| {
        let Some(store) = p.store.as_deref() else {
            return Err(format!("`{}` has no store", p.cfg.name));
        };
        // An append-only target keeps its records beside the tombstone: they say the same.
        if store.append_only() {
            return Ok(());
        }
        old.iter()
            .chain(&superseded)
            .filter(|r| **r != tomb_path)
            .try_for_each(|r| store.delete(r))
            .map_err(|e| format!("`{}`: {e}", p.cfg.name))
    });
    if let Some(Err(e)) = removed.iter().find(|r| r.is_err()) {
        observer.warn(&format!(
            "deletion records not compacted everywhere (they are again next time): {e}"
        ));
    }
    old.len()
}
