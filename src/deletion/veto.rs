//! Whether obeying the deletion records would take from a kept snapshot data it needs. A prune
//! decides on the snapshots it saw; a record of it that was called off, or put back by a target
//! that kept a copy, may name packs that snapshots written since rely on. Before any target
//! removes data on a record's word, the kept snapshots' trees are walked and every blob they
//! need must stay findable (in an index file no record deletes, in a pack no record deletes and
//! some target holds); a record that would break one is voided instead of obeyed.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use rustic_core::{FileType, Id, repofile::IndexFile};

use super::Deletions;
pub use crate::needs::Holding;
use crate::{
    layout::file_path,
    needs::{needed_blobs as needed_blobs_of, open_over},
    proof::Proof,
};

/// The records (not permanent ones) whose deletions would leave a kept snapshot without a blob
/// it needs, each with the snapshots it would break. Empty when no target holds data or index
/// files a record deletes: then there is nothing to obey that could break anything.
///
/// # Errors
/// What a kept snapshot needs could not be read (obey no deletion of data then).
pub fn breaking(
    targets: &[Holding<'_>],
    deletions: &Deletions,
    proof: &Proof,
) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let mut holders: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (_, _, files)) in targets.iter().enumerate() {
        for path in files.keys() {
            holders.entry(path.as_str()).or_default().push(i);
        }
    }
    let pending_data = holders
        .keys()
        .any(|p| (p.starts_with("data/") || p.starts_with("index/")) && deletions.deletes(p));
    if !pending_data {
        return Ok(BTreeMap::new());
    }
    let read = |path: &str| -> Option<Bytes> {
        holders
            .get(path)?
            .iter()
            .find_map(|&i| targets[i].1.read(path).ok())
    };

    // Every index file any target holds, deleted or not: where each blob was.
    let mut indexes: BTreeMap<&str, IndexFile> = BTreeMap::new();
    for path in holders.keys().filter(|p| p.starts_with("index/")) {
        if let Some(index) = read(path).and_then(|b| proof.open_index(path, &b).ok()) {
            indexes.insert(path, index);
        }
    }
    // Where a blob can still be found once every record is obeyed.
    let mut findable: BTreeSet<Id> = BTreeSet::new();
    for (path, index) in &indexes {
        if deletions.deletes(path) {
            continue;
        }
        for pack in index.packs.iter().chain(&index.packs_to_delete) {
            let pack_path = file_path(FileType::Pack, &pack.id);
            if holders.contains_key(pack_path.as_str()) && !deletions.deletes(&pack_path) {
                findable.extend(pack.blobs.iter().map(|b| *b.id));
            }
        }
    }

    let needed = needed_blobs(targets, &holders, &indexes, deletions, proof)?;
    let missing: BTreeMap<&Id, &String> = needed
        .iter()
        .filter(|(b, _)| !findable.contains(b))
        .collect();
    if missing.is_empty() {
        return Ok(BTreeMap::new());
    }
    // Which (non-permanent) records delete each path, looked up once per index file and pack.
    let mut deleters: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for (record_path, record) in deletions.records.iter().filter(|(_, r)| !r.is_permanent()) {
        for f in &record.files {
            deleters.entry(f.as_str()).or_default().push(record_path);
        }
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, index) in &indexes {
        for pack in index.packs.iter().chain(&index.packs_to_delete) {
            let pack_path = file_path(FileType::Pack, &pack.id);
            let blamed: Vec<&String> = [path, &pack_path.as_str()]
                .iter()
                .filter_map(|p| deleters.get(*p))
                .flatten()
                .copied()
                .collect();
            if blamed.is_empty() {
                continue;
            }
            for snapshot in pack.blobs.iter().filter_map(|b| missing.get(&*b.id)) {
                for record in &blamed {
                    out.entry((*record).clone())
                        .or_default()
                        .insert((*snapshot).clone());
                }
            }
        }
    }
    Ok(out)
}

/// Every blob (trees and contents) the kept snapshots need, with the first snapshot found to
/// need it. Read through rustic_core from the targets, every index file included.
fn needed_blobs(
    targets: &[Holding<'_>],
    holders: &BTreeMap<&str, Vec<usize>>,
    indexes: &BTreeMap<&str, IndexFile>,
    deletions: &Deletions,
    proof: &Proof,
) -> Result<BTreeMap<Id, String>, String> {
    let kept: Vec<&str> = holders
        .keys()
        .copied()
        .filter(|p| p.starts_with("snapshots/") && !deletions.deletes(p))
        .filter(|p| {
            holders[p].iter().any(|&i| {
                targets[i]
                    .1
                    .read(p)
                    .is_ok_and(|b| proof.check(p, &b).is_ok())
            })
        })
        .collect();
    let indexes: Vec<&str> = indexes.keys().copied().collect();
    let repo = open_over(targets, &indexes, &kept, proof)?;
    needed_blobs_of(&repo)
}
