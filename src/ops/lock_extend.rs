//! `cairn lock-extend`: on every target whose storage locks what it holds (S3 Object Lock),
//! move the lock of everything the kept snapshots still need (config, keys, index and snapshot
//! files, the packs holding a blob they need, and cairn's deletion, audit, key and erasure
//! records) to its full length from now. A new object gets its lock from the bucket's default
//! retention; this keeps an old one needed today from becoming deletable. Packs only forgotten
//! snapshots need are left to run out (Kopia's maintenance is the model).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use rustic_core::{FileType, Id};
use serde::Serialize;

use crate::{
    context::Context,
    error::Result,
    layout::{self, file_path},
    needs::{needed_blobs, open_over},
    probe::{Probe, probe_all},
    proof::Proof,
    replica::inventory,
    secret::Secret,
    store::Store,
    unlock::unlock,
};

/// One target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetLocks {
    /// Its name.
    pub name: String,
    /// Files whose lock was extended.
    pub extended: u64,
    /// Packs left to run out: no kept snapshot needs them.
    pub left: u64,
    /// The new retain-until date.
    pub until: Option<String>,
    /// Why not all were extended, if not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every target that locks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LockExtendReport {
    /// Targets whose storage locks, in configuration order.
    pub targets: Vec<TargetLocks>,
}

impl LockExtendReport {
    /// Exit code: 3 when a target's locks could not all be extended, else 0.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        if self.targets.iter().any(|t| t.error.is_some()) {
            crate::exit::PARTIAL
        } else {
            crate::exit::OK
        }
    }
}

/// Cairn's record folders whose files a kept repository relies on.
const RECORD_DIRS: [&str; 4] = [
    layout::DELETIONS_DIR,
    layout::AUDIT_DIR,
    layout::KEYS_DIR,
    layout::ERASURES_DIR,
];

/// Extends the locks on every target whose storage locks.
///
/// # Errors
/// Wrong password; no target holds the repository.
pub fn run(ctx: &Context, password: &Secret) -> Result<LockExtendReport> {
    let probed = probe_all(ctx, None)?;
    let locking: Vec<usize> = probed
        .iter()
        .enumerate()
        .filter(|(_, p)| p.cfg.locks())
        .map(|(i, _)| i)
        .collect();
    if locking.is_empty() {
        return Ok(LockExtendReport::default());
    }
    let proof = unlock(ctx, &probed, password)?;
    let targets = locking
        .iter()
        .map(|&i| {
            let p = &probed[i];
            let mut t = TargetLocks {
                name: p.cfg.name.clone(),
                ..TargetLocks::default()
            };
            match (&p.probe, &p.store) {
                (Probe::Ready { .. }, Some(store)) => {
                    if let Err(e) = extend(&p.cfg.name, store, &proof, &mut t) {
                        t.error = Some(e);
                    }
                }
                _ => {
                    t.error = Some(
                        p.unusable()
                            .map_or_else(|| "not reachable".into(), |(_, why)| why),
                    );
                }
            }
            t
        })
        .collect();
    Ok(LockExtendReport { targets })
}

/// The packs holding a blob the kept snapshots on `store` need, read from its own index files.
fn needed_packs(
    name: &str,
    store: &Arc<dyn Store>,
    files: &BTreeMap<String, u64>,
    proof: &Proof,
) -> std::result::Result<BTreeSet<String>, String> {
    let indexes: Vec<&str> = files
        .keys()
        .filter(|p| p.starts_with("index/"))
        .map(String::as_str)
        .collect();
    let snapshots: Vec<&str> = files
        .keys()
        .filter(|p| p.starts_with("snapshots/"))
        .map(String::as_str)
        .collect();
    let holding = [(name, store, files)];
    let repo = open_over(&holding, &indexes, &snapshots, proof)?;
    let needed: BTreeSet<Id> = needed_blobs(&repo)?.into_keys().collect();
    let mut packs = BTreeSet::new();
    for path in &indexes {
        let bytes = store.read(path).map_err(|e| e.to_string())?;
        let index = proof.open_index(path, &bytes)?;
        for pack in index.packs.iter().chain(&index.packs_to_delete) {
            if pack.blobs.iter().any(|b| needed.contains(&*b.id)) {
                packs.insert(file_path(FileType::Pack, &pack.id));
            }
        }
    }
    Ok(packs)
}

fn extend(
    name: &str,
    store: &Arc<dyn Store>,
    proof: &Proof,
    t: &mut TargetLocks,
) -> std::result::Result<(), String> {
    let files = inventory(store.as_ref()).map_err(|e| e.to_string())?.files;
    let packs = needed_packs(name, store, &files, proof)?;
    let mut paths: Vec<String> = Vec::new();
    for path in files.keys() {
        if path.starts_with("data/") && !packs.contains(path) {
            t.left += 1;
        } else {
            paths.push(path.clone());
        }
    }
    for dir in RECORD_DIRS {
        let listed = store.list(dir).map_err(|e| e.to_string())?;
        paths.extend(listed.into_iter().map(|(rel, _)| format!("{dir}/{rel}")));
    }
    // One request each; a few at a time, as the fan-out uploads.
    let results = crate::par::map(&paths, 8, |path| store.extend_lock(path));
    let mut failed = Vec::new();
    for (path, r) in paths.iter().zip(results) {
        match r {
            Some(Ok(until)) => {
                t.extended += 1;
                t.until = Some(until);
            }
            Some(Err(e)) => failed.push(format!("{path}: {e}")),
            None => return Err("its storage locks nothing".into()),
        }
    }
    if let Some(first) = failed.first() {
        return Err(format!(
            "{} lock(s) not extended, e.g. {first}",
            failed.len()
        ));
    }
    Ok(())
}
