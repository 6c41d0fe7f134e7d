//! What snapshots need: their trees walked through rustic_core, read from the targets. The
//! deletion veto ([`crate::deletion::veto`]) asks which blobs the kept snapshots need; catch-up
//! asks whether a snapshot it would copy has every tree and blob it names somewhere.

use std::{collections::BTreeMap, sync::Arc};

use rustic_core::{
    FileType, Id, IndexedIds, NoProgressBars, Repository, TreeId, repofile::SnapshotFile,
};

use crate::{
    fanout::{Fanout, Member},
    progress::Silent,
    proof::Proof,
    repo::open_repository_with,
    store::Store,
};

/// A target taking part: its name, its storage, and the repository files it holds (path ->
/// size).
pub type Holding<'a> = (&'a str, &'a Arc<dyn Store>, &'a BTreeMap<String, u64>);

/// The repository over `targets` that lists exactly the index files `indexes` and the
/// snapshot files `snapshots` (paths some target holds), every file read from a target whose
/// copy hashes to its name.
///
/// # Errors
/// The repository could not be opened, or its index read.
pub fn open_over(
    targets: &[Holding<'_>],
    indexes: &[&str],
    snapshots: &[&str],
    proof: &Proof,
) -> Result<Repository<impl IndexedIds + use<>>, String> {
    let listing = |paths: &[&str]| -> Vec<(Id, u32)> {
        paths
            .iter()
            .filter_map(|p| {
                let id = p.rsplit('/').next()?.parse::<Id>().ok()?;
                let size = targets.iter().find_map(|(_, _, files)| files.get(*p))?;
                Some((id, u32::try_from(*size).ok()?))
            })
            .collect()
    };
    let fanout = Fanout::new(
        targets
            .iter()
            .map(|(name, store, _)| {
                Arc::new(Member::new((*name).to_string(), true, (*store).clone()))
            })
            .collect(),
        Arc::new(Silent),
    )
    .verifying();
    fanout.set_listing(FileType::Index, listing(indexes));
    fanout.set_listing(FileType::Snapshot, listing(snapshots));
    open_repository_with(Arc::new(fanout), &proof.credentials(), NoProgressBars)
        .and_then(|r| Ok(r.to_indexed_ids()?))
        .map_err(|e| e.to_string())
}

/// Whether every tree and data blob `snapshot` names is `findable` (indexed in a pack some
/// target holds), and every tree reads: why not, if not. `memo` remembers trees already judged
/// (snapshots share most of them).
///
/// # Errors
/// The first tree or blob missing, in words.
pub fn complete<S: IndexedIds>(
    repo: &Repository<S>,
    snapshot: &SnapshotFile,
    findable: &dyn Fn(&Id) -> bool,
    memo: &mut BTreeMap<Id, Result<(), String>>,
) -> Result<(), String> {
    tree_complete(repo, snapshot.tree, findable, memo)
}

fn tree_complete<S: IndexedIds>(
    repo: &Repository<S>,
    tree: TreeId,
    findable: &dyn Fn(&Id) -> bool,
    memo: &mut BTreeMap<Id, Result<(), String>>,
) -> Result<(), String> {
    if let Some(r) = memo.get(&*tree) {
        return r.clone();
    }
    let judged = (|| {
        if !findable(&tree) {
            return Err(format!(
                "tree {} is in no pack a target holds",
                short(&tree)
            ));
        }
        let read = repo
            .get_tree(&tree)
            .map_err(|e| format!("tree {}: {e}", short(&tree)))?;
        for node in &read.nodes {
            if let Some(blob) = node.content.iter().flatten().find(|b| !findable(b)) {
                return Err(format!(
                    "data blob {} is in no pack a target holds",
                    short(blob)
                ));
            }
            if let Some(sub) = node.subtree {
                tree_complete(repo, sub, findable, memo)?;
            }
        }
        Ok(())
    })();
    memo.insert(*tree, judged.clone());
    judged
}

fn short(id: &Id) -> String {
    id.to_hex()[..8].to_string()
}

/// Every blob the snapshots `repo` lists need (trees and contents), with the first snapshot
/// found to need it.
///
/// # Errors
/// A tree could not be read.
pub fn needed_blobs<S: IndexedIds>(repo: &Repository<S>) -> Result<BTreeMap<Id, String>, String> {
    let snapshots = repo.get_all_snapshots().map_err(|e| e.to_string())?;
    let mut needed: BTreeMap<Id, String> = BTreeMap::new();
    for snap in snapshots {
        let name = snap.id.to_hex().to_string();
        let mut todo = std::collections::VecDeque::from([snap.tree]);
        while let Some(tree_id) = todo.pop_front() {
            if needed.contains_key(&*tree_id) {
                continue;
            }
            needed.insert(*tree_id, name.clone());
            let tree = repo
                .get_tree(&tree_id)
                .map_err(|e| format!("snapshot {}: {e}", &name[..8]))?;
            for node in tree.nodes {
                for blob in node.content.iter().flatten() {
                    needed.entry(**blob).or_insert_with(|| name.clone());
                }
                if let Some(sub) = node.subtree {
                    todo.push_back(sub);
                }
            }
        }
    }
    Ok(needed)
}

/// The snapshot files among `candidates` (paths in `union`) that name a tree or blob no proven
/// index file of `union` places in a pack of `union`, each with why: copying one would give a
/// target a snapshot it cannot restore (an old snapshot put back after its data was pruned).
/// A candidate that does not open with the key is left to the proof that judges every copy.
/// When the trees cannot be read at all, every candidate is held back with that reason.
pub fn incomplete(
    targets: &[Holding<'_>],
    union: &BTreeMap<&str, u64>,
    candidates: &[&str],
    proof: &Proof,
) -> BTreeMap<String, String> {
    if candidates.is_empty() {
        return BTreeMap::new();
    }
    let indexes: Vec<&str> = union
        .keys()
        .copied()
        .filter(|p| p.starts_with("index/"))
        .collect();
    let opened = crate::par::map(&indexes, 8, |path| {
        targets
            .iter()
            .filter(|(_, _, files)| files.contains_key(*path))
            .find_map(|(_, store, _)| {
                let bytes = store.read(path).ok()?;
                proof.open_index(path, &bytes).ok()
            })
    });
    let mut findable = std::collections::BTreeSet::new();
    let mut proven = Vec::new();
    for (path, index) in indexes.iter().zip(opened) {
        let Some(index) = index else { continue };
        proven.push(*path);
        for pack in &index.packs {
            if union.contains_key(crate::layout::file_path(FileType::Pack, &pack.id).as_str()) {
                findable.extend(pack.blobs.iter().map(|b| *b.id));
            }
        }
    }
    let repo = match open_over(targets, &proven, candidates, proof) {
        Ok(repo) => repo,
        Err(e) => {
            return candidates
                .iter()
                .map(|c| {
                    (
                        (*c).to_string(),
                        format!("its trees could not be read ({e})"),
                    )
                })
                .collect();
        }
    };
    let mut memo = BTreeMap::new();
    let mut out = BTreeMap::new();
    for path in candidates {
        let Some(id) = path.rsplit('/').next() else {
            continue;
        };
        let Ok(snapshot) = repo.get_snapshot_from_str(id, |_| true) else {
            continue;
        };
        if let Err(why) = complete(&repo, &snapshot, &|b| findable.contains(b), &mut memo) {
            out.insert((*path).to_string(), why);
        }
    }
    out
}
