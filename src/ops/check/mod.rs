//! `cairn check`: compare the targets' repository files with each other, and optionally hash
//! them, without the password; with it, also run rustic_core's structural check on each target
//! alone. `--heal` replaces a missing or damaged file on a target with a copy from another whose
//! SHA-256 matches its name (never any other), reads it back, and removes stray files from the
//! repository folders.
//!
//! What counts as expected: every repository file any target holds, once a copy of it has been
//! found intact (a file on some targets only is hashed on those before the others are said to
//! miss it, so one target's junk never becomes everybody's problem). Sizes that disagree
//! between targets are settled the same way, by hashing the copies.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use rustic_core::{CheckOptions as RusticCheckOptions, NoProgressBars, ProgressBars};
use serde::Serialize;

mod copies;
mod heal;
pub mod immutability;

use copies::{hash_files, prove_all, settle_disagreements};

use crate::{
    context::Context,
    deletion::Deletions,
    error::Result,
    fanout::{Fanout, Member},
    lock::LockedTargets,
    probe::{Probed, one_repository, probe_all, unusable_by},
    progress::Silent,
    proof::Proof,
    replica::{ForeignFound, Inventory, inventories},
    repo::{KeyCache, open_repository},
    report::TargetState,
    secret::Secret,
    state,
    store::{Named, Store},
    unlock::unlock,
};

/// How much of the data is hashed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    /// Only listings are compared (and disagreeing copies hashed).
    None,
    /// Every file.
    All,
    /// A random share of the files, in percent.
    Percent(f64),
}

/// Options of one check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// What to hash.
    pub read_data: ReadData,
    /// Repair what can be repaired.
    pub heal: bool,
    /// Seed of the `Percent` selection (random when unset; always reported).
    pub seed: Option<u64>,
}

/// What is wrong with one file on one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// Another target holds it (intact); this one does not.
    Missing,
    /// A file in a repository folder that is not a repository file.
    Extra,
    /// Its size differs from the intact copies'.
    SizeMismatch,
    /// Its SHA-256 does not match its name.
    Corrupt,
    /// It could not be read.
    Unreadable,
    /// Its hash matches its name, but it does not decrypt with the repository key (or, for a
    /// pack, no proven index references it): an honest cairn did not write it. `--heal` moves
    /// it to the quarantine folder of its own target; it is never copied.
    Foreign,
    /// A deletion record (forget, prune) deletes it, but this target still holds it: it missed
    /// the deletion. Never counted as missing on the targets that removed it. `--heal` (or the
    /// next catch-up) removes it.
    PendingDeletion,
    /// rustic_core's check of this target alone reported an error.
    Structure,
}

/// One problem.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Target name.
    pub target: String,
    /// Repository path (empty for structural findings).
    pub path: String,
    /// What is wrong.
    pub kind: ProblemKind,
    /// Details.
    pub detail: String,
    /// With `--heal`: whether it was repaired (and re-checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healed: Option<bool>,
}

impl Problem {
    /// What it is to blame on, in words shared by every file with the same cause, and the
    /// file (or, for a structural finding, the id) it concerns.
    fn cause(&self) -> (String, Option<String>) {
        let fixed = |what: &str| (what.to_string(), Some(self.path.clone()));
        match self.kind {
            ProblemKind::Extra => fixed("not a repository file"),
            ProblemKind::SizeMismatch => fixed("its size differs from the intact copies'"),
            ProblemKind::Corrupt => fixed("its SHA-256 does not match its name"),
            ProblemKind::Missing | ProblemKind::PendingDeletion => fixed(&self.detail),
            ProblemKind::Unreadable | ProblemKind::Foreign => (
                self.detail.replace(&self.path, "…"),
                Some(self.path.clone()),
            ),
            ProblemKind::Structure => crate::report::template(&self.detail),
        }
    }

    fn new(target: &str, path: &str, kind: ProblemKind, detail: String) -> Self {
        Self {
            target: target.to_string(),
            path: path.to_string(),
            kind,
            detail,
            healed: None,
        }
    }
}

/// What a check problem is to blame on: problems that share it are one cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckCause {
    /// The target.
    pub target: String,
    /// What is wrong.
    pub kind: ProblemKind,
    /// In words shared by every file it affects.
    pub what: String,
    /// With `--heal`: whether they were repaired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healed: Option<bool>,
}

/// One target's summary.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    /// Target name.
    pub name: String,
    /// Whether it is required.
    pub required: bool,
    /// Whether it was checked.
    pub state: TargetState,
    /// Repository files it holds.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Files hashed.
    pub hashed_files: u64,
    /// Bytes hashed.
    pub hashed_bytes: u64,
    /// Problems found on it.
    pub problems: usize,
    /// rustic_core's check: `ok`, `errors`, `skipped (...)`.
    pub structure: String,
    /// Why it was not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a check found (and healed).
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Every target, in configuration order.
    pub targets: Vec<TargetCheck>,
    /// Every problem, by target and path.
    pub problems: Vec<Problem>,
    /// The problems grouped by target, kind and cause (a lost folder of packs is one cause).
    pub causes: Vec<crate::report::Cause<CheckCause>>,
    /// The seed of a percentage selection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Whether a target could not be checked.
    pub unreachable: bool,
    /// Seconds the whole check took.
    pub seconds: f64,
}

impl CheckReport {
    /// Problems still standing (not healed).
    #[must_use]
    pub fn open_problems(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.healed != Some(true))
            .count()
    }
}

struct Checked<'a> {
    probed: &'a Probed,
    store: &'a dyn Store,
    inv: Inventory,
}

/// Checks every target holding the repository; with the password, also proves each file and
/// runs rustic_core's check on each target. Healing takes the repository lock, and then only
/// the targets it covers take part.
///
/// # Errors
/// Two targets hold different repositories; no target holds the repository; a wrong
/// password; healing: the lock is held elsewhere.
pub fn run<P: ProgressBars>(
    ctx: &Context,
    opts: &CheckOptions,
    password: Option<&Secret>,
    pb: &P,
) -> Result<CheckReport> {
    if opts.heal {
        let mut locked = LockedTargets::acquire(ctx, "check (heal)")?;
        if let Some(pw) = password {
            locked.prove(pw)?;
        }
        let key = password.zip(locked.proof());
        return inspect(ctx, locked.probed(), opts, key, Some(&locked), pb);
    }
    let probed = probe_all(ctx, None)?;
    let proof = match password {
        Some(pw) => Some(unlock(ctx, &probed, pw)?),
        None => None,
    };
    inspect(ctx, &probed, opts, password.zip(proof.as_ref()), None, pb)
}

/// [`run`] over probed targets; `heal` with the lock it needs.
fn inspect<P: ProgressBars>(
    ctx: &Context,
    probed: &[Probed],
    opts: &CheckOptions,
    key: Option<(&Secret, &Proof)>,
    heal_under: Option<&LockedTargets>,
    pb: &P,
) -> Result<CheckReport> {
    let observer = ctx.observer();
    one_repository(probed)?;
    let started = Instant::now();
    let mut summaries: Vec<TargetCheck> = probed
        .iter()
        .map(|p| {
            let (state, detail) = match p.unusable() {
                None => (TargetState::Checked, None),
                Some((TargetState::NotInitialised, _)) => (TargetState::NotInitialised, None),
                Some((state, why)) => (state, Some(why)),
            };
            TargetCheck {
                name: p.cfg.name.clone(),
                required: p.cfg.required,
                state,
                files: 0,
                bytes: 0,
                hashed_files: 0,
                hashed_bytes: 0,
                problems: 0,
                structure: "skipped".into(),
                detail,
            }
        })
        .collect();

    let listed = inventories(probed, false);
    let mut checked: Vec<(usize, Checked<'_>)> = Vec::new();
    for (i, (p, l)) in probed.iter().zip(listed).enumerate() {
        match (l, &p.store) {
            (Some(Ok(inv)), Some(store)) => {
                summaries[i].files = inv.files.len();
                summaries[i].bytes = inv.files.values().sum();
                checked.push((
                    i,
                    Checked {
                        probed: p,
                        store: store.as_ref(),
                        inv,
                    },
                ));
            }
            (Some(Err(e)), _) => {
                let (state, why) = unusable_by(&e);
                summaries[i].state = state;
                summaries[i].detail = Some(why);
            }
            _ => {}
        }
    }

    let findings = Findings::default();
    let hashed = settle_disagreements(&checked, &findings);
    for (_, c) in &checked {
        for (path, size) in &c.inv.stray {
            findings.add(
                &c.probed.cfg.name,
                path,
                ProblemKind::Extra,
                format!("{size} bytes; not a repository file"),
            );
        }
    }

    // Hashing (`--read-data`), each target concurrently.
    let seed = match opts.read_data {
        ReadData::Percent(_) => Some(opts.seed.unwrap_or_else(rand::random)),
        _ => None,
    };
    let hash_counts = hash_files(&checked, opts.read_data, seed, &hashed, &findings, pb);
    for ((i, _), (files, bytes)) in checked.iter().zip(hash_counts) {
        summaries[*i].hashed_files = files;
        summaries[*i].hashed_bytes = bytes;
    }

    let mut problems = findings.0.into_inner().unwrap_or_default();
    let password = key.map(|(pw, _)| pw);
    let proof = key.map(|(_, proof)| proof);
    let mut deletions = None;
    if let Some(proof) = proof {
        prove_all(proof, &checked, &mut problems);
        deletions = Some(pending_deletions(proof, &checked, &mut problems));
    }
    if let Some(locked) = heal_under {
        heal::heal(
            locked,
            &mut problems,
            &checked,
            proof.zip(deletions.as_ref()),
            observer,
        );
    }

    // rustic_core's own check of each target alone, after healing.
    for (i, c) in &checked {
        summaries[*i].structure = match password {
            None => "skipped (no password)".into(),
            Some(pw) => match structure(c.probed, pw, ctx.keys()) {
                Ok(findings) if findings.is_empty() => "ok".into(),
                Ok(findings) => {
                    for f in &findings {
                        problems.push(Problem::new(
                            &c.probed.cfg.name,
                            "",
                            ProblemKind::Structure,
                            f.clone(),
                        ));
                    }
                    format!("{} error(s)", findings.len())
                }
                Err(e) => {
                    problems.push(Problem::new(
                        &c.probed.cfg.name,
                        "",
                        ProblemKind::Structure,
                        e.to_string(),
                    ));
                    "failed".into()
                }
            },
        };
    }
    problems.sort_by(|a, b| (&a.target, &a.path).cmp(&(&b.target, &b.path)));
    for s in &mut summaries {
        s.problems = problems.iter().filter(|p| p.target == s.name).count();
    }
    let unreachable = summaries.iter().any(|s| s.state.is_unvouched(s.required));
    let causes = crate::report::causes(problems.iter().map(|p| {
        let (what, example) = p.cause();
        let key = CheckCause {
            target: p.target.clone(),
            kind: p.kind,
            what,
            healed: p.healed,
        };
        (key, example)
    }));
    if opts.read_data != ReadData::None {
        let share = match opts.read_data {
            ReadData::Percent(p) => format!("{p}%"),
            _ => "all".into(),
        };
        ctx.update_state(|st| {
            for s in summaries
                .iter()
                .filter(|s| matches!(s.state, TargetState::Checked | TargetState::Failed))
            {
                st.record_read_check(
                    &s.name,
                    state::ReadCheck {
                        at: state::now(),
                        share: share.clone(),
                        files: s.hashed_files,
                        problems: s.problems as u64,
                    },
                );
            }
        });
    }
    Ok(CheckReport {
        targets: summaries,
        problems,
        causes,
        seed,
        unreachable,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Reads the deletion records (a forged one is foreign) and reports each deleted file a target
/// still holds as pending deletion, instead of whatever else was said of it.
fn pending_deletions(
    proof: &Proof,
    checked: &[(usize, Checked<'_>)],
    problems: &mut Vec<Problem>,
) -> Deletions {
    let sources: Vec<Named<'_>> = checked
        .iter()
        .map(|(_, c)| (c.probed.cfg.name.as_str(), c.store))
        .collect();
    let foreign = ForeignFound::default();
    let deletions = crate::deletion::load(&sources, proof, &foreign);
    for f in foreign.into_list() {
        problems.push(Problem::new(
            &f.target,
            &f.path,
            ProblemKind::Foreign,
            f.why,
        ));
    }
    problems.retain(|p| !deletions.deletes(&p.path));
    // An append-only target keeps what is deleted: left to its owner, not a problem.
    for (_, c) in checked.iter().filter(|(_, c)| !c.store.append_only()) {
        for path in deletions.pending(c.inv.files.keys()) {
            problems.push(Problem::new(
                &c.probed.cfg.name,
                path,
                ProblemKind::PendingDeletion,
                "a deletion record deletes it; this target missed the deletion".into(),
            ));
        }
    }
    deletions
}

/// Problems found so far, from several threads.
#[derive(Default)]
struct Findings(Mutex<Vec<Problem>>);

impl Findings {
    fn add(&self, target: &str, path: &str, kind: ProblemKind, detail: String) {
        if let Ok(mut p) = self.0.lock() {
            p.push(Problem::new(target, path, kind, detail));
        }
    }
}

/// rustic_core's check of one target alone: its errors.
fn structure(p: &Probed, pw: &Secret, keys: &KeyCache) -> Result<Vec<String>> {
    let Some(store) = p.store.clone() else {
        return Ok(Vec::new());
    };
    let fan = Fanout::new(
        vec![Arc::new(Member::new(p.cfg.name.clone(), true, store))],
        Arc::new(Silent),
    );
    let repo = open_repository(Arc::new(fan), pw, keys, NoProgressBars)?;
    let results = repo.check(RusticCheckOptions::default())?;
    // rustic_core does not export the level's type; its own `is_ok` judges each finding.
    Ok(results
        .0
        .into_iter()
        .map(|finding| rustic_core::CheckResults(vec![finding]))
        .filter(|one| one.is_ok().is_err())
        .flat_map(|one| one.0.into_iter().map(|(_, e)| crate::error::words(&e)))
        .collect())
}
