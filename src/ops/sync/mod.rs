//! `cairn sync`: bring lagging targets level by copying the repository files they lack from the
//! others, without reading the sources again and without the password.
//!
//! The files every target should hold are the union of what the targets holding the repository
//! have, less what cannot be proven: a target is storage, not a witness, so each missing file is
//! read from a target holding it and copied only once [`Proof`] shows an honest cairn wrote it
//! (its SHA-256 matches its name and it decrypts with the repository key; a pack must be
//! referenced by such an index file). A copy that fails the proof is *foreign*: it is never
//! copied, and is moved aside on its own target (quarantined) and reported. Without the
//! password nothing can be proven, so nothing is copied and the files held back are reported.
//! A copy is written, then its size checked. Files are copied in dependency order (config and
//! keys, then packs, then index files, then snapshots) and a stage starts only when the
//! previous one is complete on that target, so an interrupted or failing catch-up never leaves
//! a target with an index or snapshot whose data it lacks. A target that was never initialised
//! is filled the same way, `config` first.
//!
//! Deletions ([`crate::deletion`]): a file a proven deletion record names is never copied; each
//! target receives the records it lacks and its missing files, then removes the files the
//! records delete; records every target has obeyed long enough are compacted. A target holding
//! snapshots that a prune it missed never judged (a backup it got while away) takes part like
//! any other: before anything is obeyed, the veto walks those snapshots too, so a record that
//! would take data they need is voided, and they reach the others with that data (copied from
//! it). Not handled here: files that exist but are damaged (`cairn check --heal`).

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use rustic_core::{ProgressBars, ProgressType};
use serde::Serialize;

mod records;

use records::{compact, void_breaking};

use crate::{
    context::Context,
    deletion::{self, veto::Holding},
    error::Result,
    layout::{COPY_ORDER, repository_dirs, stage},
    lock::LockedTargets,
    probe::{Probe, Probed, one_repository, unusable_by},
    progress::Observer,
    proof::Proof,
    replica::{Foreign, ForeignFound, Inventory, NotCopied, copy_many, inventories, read_proven},
    report::{TargetState, is_partial},
    retention::Within,
    secret::Secret,
    store::{Named, Store},
};

/// One target's catch-up.
#[derive(Debug, Clone, Serialize)]
pub struct SyncTarget {
    /// Target name.
    pub name: String,
    /// Whether it is required.
    pub required: bool,
    /// What became of it.
    pub state: TargetState,
    /// Files it lacked before.
    pub missing: usize,
    /// Files copied to it.
    pub files_copied: u64,
    /// Files it lacks that were not copied because no copy could be proven.
    pub held_back: usize,
    /// Bytes copied to it.
    pub bytes_copied: u64,
    /// Deletion records copied to it (it missed a forget or prune).
    pub records_copied: usize,
    /// Files removed from it because a deletion record deletes them.
    pub deletions_applied: usize,
    /// Files a deletion record deletes that it still holds.
    pub deletions_pending: usize,
    /// Seconds spent on it.
    pub seconds: f64,
    /// Why it is not level, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl SyncTarget {
    fn new(p: &Probed) -> Self {
        Self {
            name: p.cfg.name.clone(),
            required: p.cfg.required,
            state: TargetState::Level,
            missing: 0,
            files_copied: 0,
            held_back: 0,
            bytes_copied: 0,
            records_copied: 0,
            deletions_applied: 0,
            deletions_pending: 0,
            seconds: 0.0,
            detail: None,
        }
    }
}

crate::outcome_fields!(SyncTarget);

/// What a sync did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// Every target, in configuration order.
    pub targets: Vec<SyncTarget>,
    /// Copies found foreign (not proven) and what became of them.
    pub foreign: Vec<Foreign>,
    /// Deletion records removed everywhere: every target obeyed them long enough ago.
    pub records_compacted: usize,
    /// Whether some required target is not level.
    pub partial: bool,
}

/// Brings every locked target (or only `only`) level with the proven union of the others,
/// and quarantines foreign copies. Without a proven key nothing is copied.
///
/// # Errors
/// No target holds the repository; two targets hold different repositories.
pub fn run<P: ProgressBars>(
    locked: &LockedTargets,
    only: Option<&str>,
    records_for: Within,
    observer: &Arc<dyn Observer>,
    pb: &P,
) -> Result<SyncReport> {
    let (probed, proof) = (locked.probed(), locked.proof());
    one_repository(probed)?;
    let inventories = inventories(probed, true);
    let foreign = ForeignFound::default();
    let holding: Vec<Named<'_>> = probed
        .iter()
        .zip(&inventories)
        .filter(|(p, inv)| matches!((&p.probe, inv), (Probe::Ready { .. }, Some(Ok(_)))))
        .filter_map(|(p, _)| Some((p.cfg.name.as_str(), p.store.as_deref()?)))
        .collect();
    // What was deleted stays deleted: never part of what a target should hold.
    let mut deletions = proof
        .map(|proof| deletion::load(&holding, proof, &foreign))
        .unwrap_or_default();
    // Every target holding the repository takes part, even one holding snapshots a prune it
    // missed never judged (a backup it got while away): the veto walks those too, so a record
    // that would take data they need is voided, and that data reaches the others with them.
    let taking_part: Vec<Holding<'_>> = probed
        .iter()
        .zip(&inventories)
        .filter_map(|(p, inv)| match (&p.probe, &p.store, inv) {
            (Probe::Ready { .. }, Some(store), Some(Ok(inv))) => {
                Some((p.cfg.name.as_str(), store, &inv.files))
            }
            _ => None,
        })
        .collect();
    if let Some(proof) = proof {
        void_breaking(&taking_part, &mut deletions, proof, observer);
    }
    // The union, from targets holding the repository only.
    let mut union: BTreeMap<&str, u64> = BTreeMap::new();
    for (p, inv) in probed.iter().zip(&inventories) {
        if let (Probe::Ready { .. }, Some(Ok(inv))) = (&p.probe, inv) {
            for (path, size) in &inv.files {
                if !deletions.deletes(path) {
                    union.entry(path.as_str()).or_insert(*size);
                }
            }
        }
    }
    // A snapshot goes only where all it names can follow: never one whose trees or data no
    // target holds (an old one put back after its data was pruned).
    let withheld = match proof {
        Some(proof) => {
            let candidates: Vec<&str> = union
                .keys()
                .copied()
                .filter(|p| p.starts_with("snapshots/"))
                .filter(|p| {
                    taking_part
                        .iter()
                        .any(|(_, _, files)| !files.contains_key(*p))
                })
                .collect();
            crate::needs::incomplete(&taking_part, &union, &candidates, proof)
        }
        None => BTreeMap::new(),
    };
    for (path, why) in &withheld {
        union.remove(path.as_str());
        observer.warn(&format!(
            "{path} is not copied: {why}; it cannot be restored from where it is either \
             (`cairn check` tells more)"
        ));
    }
    let sources_of = |dest: usize| {
        let probed = &probed;
        let inventories = &inventories;
        move |path: &str| {
            probed
                .iter()
                .zip(inventories.iter())
                .enumerate()
                .filter(|(i, (p, inv))| {
                    *i != dest
                        && matches!(p.probe, Probe::Ready { .. })
                        && matches!(inv, Some(Ok(inv)) if inv.files.contains_key(path))
                })
                .filter_map(|(_, (p, _))| {
                    p.store
                        .as_deref()
                        .map(|s| -> Named<'_> { (p.cfg.name.as_str(), s) })
                })
                .collect()
        }
    };

    // Packs are proven by the index files that reference them: learn those first.
    let packs_missing = probed.iter().zip(&inventories).any(|(p, inv)| {
        only.is_none_or(|o| o == p.cfg.name)
            && matches!(inv, Some(Ok(inv)) if union.keys().any(|f| f.starts_with("data/") && !inv.files.contains_key(*f)))
    });
    if let (Some(proof), true) = (proof, packs_missing) {
        let index: Vec<&str> = union
            .keys()
            .copied()
            .filter(|p| p.starts_with("index/"))
            .collect();
        crate::par::map(&index, 4, |path| {
            let sources: Vec<Named<'_>> = sources_of(usize::MAX)(path);
            let _ = read_proven(path, &sources, Some(proof), &foreign);
        });
    }

    let indexed: Vec<(usize, &Probed)> = probed.iter().enumerate().collect();
    let targets: Vec<SyncTarget> = crate::par::each_caught(&indexed, |&(i, p)| {
        let inv = &inventories[i];
        let union = &union;
        let sources = sources_of(i);
        let foreign = &foreign;
        let mut t = SyncTarget::new(p);
        if only.is_some_and(|o| o != p.cfg.name) {
            t.state = TargetState::NotUsed;
            return t;
        }
        let (inv, store) = match (inv, &p.store) {
            (Some(Ok(inv)), Some(store)) => (inv, store),
            (Some(Err(e)), _) => {
                let (state, why) = unusable_by(e);
                t.state = state;
                t.detail = Some(why);
                return t;
            }
            _ => {
                let (state, why) = p
                    .unusable()
                    .unwrap_or((TargetState::Unreachable, "could not be opened".into()));
                t.state = state;
                t.detail = Some(why);
                return t;
            }
        };
        catch_up(
            &mut t,
            inv,
            store.as_ref(),
            union,
            &sources,
            proof,
            foreign,
            pb,
        );
        for (path, why) in withheld.iter().filter(|(p, _)| !inv.files.contains_key(*p)) {
            t.held_back += 1;
            t.detail
                .get_or_insert_with(|| format!("file(s) held back; first: {path}: {why}"));
        }
        // Deletions after the copies: a pruned target first receives the new index and packs,
        // then loses the old ones. Behind after a failed copy, it loses only snapshots. (Without
        // the key no record is proven, and nothing is obeyed.)
        {
            let complete = t.state != TargetState::Incomplete;
            let held = inv
                .files
                .keys()
                .filter(|f| complete || f.starts_with("snapshots/"));
            let obeyed = deletion::obey(&p.cfg.name, store.as_ref(), held, &deletions);
            t.records_copied = obeyed.records_copied;
            t.deletions_applied = obeyed.files_removed;
            t.deletions_pending = deletions
                .pending(inv.files.keys())
                .len()
                .saturating_sub(obeyed.files_removed + obeyed.files_left);
            if obeyed.files_left > 0 {
                t.detail.get_or_insert(format!(
                    "append-only: {} deleted file(s) left to the storage's owner",
                    obeyed.files_left
                ));
            }
            if let Some(e) = obeyed.error {
                t.state = TargetState::Incomplete;
                t.detail.get_or_insert(format!("deletions not obeyed: {e}"));
            } else if obeyed.files_removed + obeyed.records_copied > 0
                && t.state == TargetState::Level
            {
                t.state = TargetState::CaughtUp;
            }
        }
        t
    })
    .into_iter()
    .zip(probed)
    .map(|(r, p)| {
        r.unwrap_or_else(|why| SyncTarget {
            state: TargetState::Incomplete,
            detail: Some(format!("catch-up {why}")),
            ..SyncTarget::new(p)
        })
    })
    .collect();
    let foreign = foreign.quarantine(|name| {
        probed
            .iter()
            .find(|p| p.cfg.name == name)
            .and_then(|p| p.store.as_deref())
    });
    for f in &foreign {
        observer.warn(&format!(
            "`{}`: {} is foreign ({}); {}",
            f.target,
            f.path,
            f.why,
            if f.quarantined {
                "moved to the quarantine folder, not copied"
            } else {
                "could not be moved aside; not copied"
            }
        ));
    }
    let records_compacted = match proof {
        Some(proof) => compact(
            probed,
            &targets,
            only,
            &deletions,
            records_for,
            proof,
            observer,
        ),
        None => 0,
    };
    for t in &targets {
        if t.state == TargetState::Incomplete {
            observer.warn(&format!(
                "catch-up of `{}` incomplete: {}",
                t.name,
                t.detail.as_deref().unwrap_or_default()
            ));
        }
    }
    Ok(summarise(targets, foreign, records_compacted))
}

/// Copies to one target what it lacks of `union`, stage by stage; records the outcome in `t`.
#[allow(clippy::too_many_arguments)]
fn catch_up<'a, P: ProgressBars>(
    t: &mut SyncTarget,
    inv: &Inventory,
    store: &dyn Store,
    union: &BTreeMap<&str, u64>,
    sources: &(dyn Fn(&str) -> Vec<Named<'a>> + Sync),
    proof: Option<&Proof>,
    foreign: &ForeignFound,
    pb: &P,
) {
    let mut missing: Vec<(usize, String, u64)> = union
        .iter()
        .filter(|(path, _)| !inv.files.contains_key(**path))
        .map(|(path, size)| (stage(path), (*path).to_string(), *size))
        .collect();
    missing.sort();
    t.missing = missing.len();
    if missing.is_empty() {
        return;
    }
    let started = Instant::now();
    // A target that never held the repository gets restic's folder layout first.
    if !inv.files.contains_key("config")
        && let Err(e) = store.create_dirs(&repository_dirs())
    {
        t.state = TargetState::Incomplete;
        t.detail = Some(e.to_string());
        return;
    }
    let progress = pb.progress(ProgressType::Bytes, &format!("catching up {}", t.name));
    progress.set_length(missing.iter().map(|m| m.2).sum());
    for (st, folder) in COPY_ORDER.iter().enumerate() {
        let paths: Vec<String> = missing
            .iter()
            .filter(|m| m.0 == st)
            .map(|m| m.1.clone())
            .collect();
        if paths.is_empty() {
            continue;
        }
        // An index file only where every pack it names is (held, or copied in the stage
        // before): never one naming packs no target holds (an old one put back somewhere).
        let packs_held = |path: &str, bytes: &bytes::Bytes| -> Result<(), String> {
            let (Some(proof), true) = (proof, path.starts_with("index/")) else {
                return Ok(());
            };
            let index = proof.open_index(path, bytes)?;
            for pack in index.packs.iter().chain(&index.packs_to_delete) {
                let pack = crate::layout::file_path(rustic_core::FileType::Pack, &pack.id);
                if !inv.files.contains_key(&pack) && !union.contains_key(pack.as_str()) {
                    return Err(format!("it names {pack}, which no target holds"));
                }
            }
            Ok(())
        };
        let results = copy_many(
            &paths,
            sources,
            store,
            proof,
            foreign,
            &packs_held,
            &progress,
        );
        let mut errors = Vec::new();
        let mut held_back = None;
        for (_, r) in results {
            match r {
                Ok(n) => {
                    t.files_copied += 1;
                    t.bytes_copied += n;
                }
                // Nothing proven depends on an unproven file: later stages may go on.
                Err(NotCopied::HeldBack(why)) => {
                    t.held_back += 1;
                    held_back.get_or_insert(why);
                }
                Err(NotCopied::Failed(e)) => errors.push(e),
            }
        }
        if let Some(why) = held_back
            && t.detail.is_none()
        {
            t.detail = Some(format!("file(s) held back; first: {why}"));
        }
        if let Some(e) = errors.first() {
            t.state = TargetState::Incomplete;
            t.detail = Some(format!(
                "{} file(s) could not be copied, so nothing after `{folder}` was \
                 copied; first: {e}",
                errors.len(),
            ));
            break;
        }
    }
    progress.finish();
    if t.state == TargetState::Level {
        // Without the password nothing was copied: the target is as far behind as before.
        t.state = if proof.is_none() && t.held_back > 0 {
            TargetState::Incomplete
        } else {
            TargetState::CaughtUp
        };
    }
    t.seconds = started.elapsed().as_secs_f64();
}

/// Takes the lock, [`run`]s (copying only with `password`, which proves every copy), then
/// records the targets' durable state.
///
/// # Errors
/// As [`run`]; the lock is held elsewhere; a wrong password.
pub fn run_and_record<P: ProgressBars>(
    ctx: &Context,
    password: Option<&Secret>,
    only: Option<&str>,
    pb: &P,
) -> Result<SyncReport> {
    let cfg = ctx.cfg();
    if let Some(name) = only {
        cfg.target(name)?;
    }
    let mut locked = LockedTargets::acquire(ctx, "sync")?;
    if let Some(password) = password {
        locked.prove(password)?;
    }
    let report = run(
        &locked,
        only,
        cfg.retention.records_for(),
        ctx.observer(),
        pb,
    )?;
    ctx.update_state(|state| {
        for t in &report.targets {
            match t.state {
                TargetState::CaughtUp | TargetState::Level => state.record_level(&t.name),
                TargetState::Incomplete | TargetState::Unreachable | TargetState::Offline => {
                    let lagging = t.state == TargetState::Incomplete;
                    let why = t.detail.as_deref().unwrap_or("not level");
                    state.record_error(&t.name, why, lagging);
                }
                _ => {}
            }
        }
    });
    Ok(report)
}

fn summarise(
    targets: Vec<SyncTarget>,
    foreign: Vec<Foreign>,
    records_compacted: usize,
) -> SyncReport {
    let partial = is_partial(&targets);
    SyncReport {
        targets,
        foreign,
        records_compacted,
        partial,
    }
}
