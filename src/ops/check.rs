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
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Instant,
};

use rand::{SeedableRng, seq::SliceRandom};
use rustic_core::{CheckOptions as RusticCheckOptions, NoProgressBars, ProgressBars, ProgressType};
use serde::Serialize;

use crate::{
    config::Config,
    lock::LockedTargets,
    report::TargetState,
    error::Result,
    fanout::{Fanout, Member},
    layout::{hash_matches, stage},
    progress::{Observer, Silent},
    proof::Proof,
    replica::{
        AfterWrite, ForeignFound, Inventory, NotCopied, Source, copy_proven, inventories,
        quarantine,
    },
    secret::Secret,
    session::{Probed, one_repository, open_repository, probe_all},
    store::Store,
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
    cfg: &Config,
    opts: &CheckOptions,
    password: Option<&Secret>,
    observer: &Arc<dyn Observer>,
    pb: &P,
) -> Result<CheckReport> {
    if opts.heal {
        let mut locked = LockedTargets::acquire(cfg, "check --heal", observer)?;
        if let Some(pw) = password {
            locked.prove(pw, observer)?;
        }
        let key = password.zip(locked.proof());
        return inspect(locked.probed(), opts, key, Some(&locked), observer, pb);
    }
    let probed = probe_all(cfg, None)?;
    let proof = match password {
        Some(pw) => Some(Proof::unlock(&probed, pw)?),
        None => None,
    };
    inspect(&probed, opts, password.zip(proof.as_ref()), None, observer, pb)
}

/// [`run`] over probed targets; `heal` with the lock it needs.
fn inspect<P: ProgressBars>(
    probed: &[Probed],
    opts: &CheckOptions,
    key: Option<(&Secret, &Proof)>,
    heal_under: Option<&LockedTargets>,
    observer: &Arc<dyn Observer>,
    pb: &P,
) -> Result<CheckReport> {
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
                summaries[i].state = TargetState::of_error(&e);
                summaries[i].detail = Some(e.to_string());
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
    if let Some(proof) = proof {
        prove_all(proof, &checked, &mut problems);
    }
    if let Some(locked) = heal_under {
        heal(locked, &mut problems, &checked, proof, observer);
    }

    // rustic_core's own check of each target alone, after healing.
    for (i, c) in &checked {
        summaries[*i].structure = match password {
            None => "skipped (no password)".into(),
            Some(pw) => match structure(c.probed, pw) {
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
    Ok(CheckReport {
        targets: summaries,
        problems,
        seed,
        unreachable,
        seconds: started.elapsed().as_secs_f64(),
    })
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

/// Files whose copies disagree (held by some targets only, or of differing sizes): every copy
/// is hashed, then each target judged against the intact ones. Returns which copies were
/// hashed and whether they were intact, by (target index, path).
fn settle_disagreements(
    checked: &[(usize, Checked<'_>)],
    findings: &Findings,
) -> BTreeMap<(usize, String), bool> {
    let all_paths: BTreeSet<&str> = checked
        .iter()
        .flat_map(|(_, c)| c.inv.files.keys().map(String::as_str))
        .collect();
    let mut hashed: BTreeMap<(usize, String), bool> = BTreeMap::new();
    for path in &all_paths {
        let holders: Vec<&(usize, Checked<'_>)> = checked
            .iter()
            .filter(|(_, c)| c.inv.files.contains_key(*path))
            .collect();
        let sizes: BTreeSet<u64> = holders.iter().map(|(_, c)| c.inv.files[*path]).collect();
        if holders.len() == checked.len() && sizes.len() == 1 {
            continue;
        }
        let mut good_size = None;
        for (i, c) in &holders {
            let ok = match c.store.read(path) {
                Ok(b) => {
                    let ok = hash_matches(path, &b);
                    if ok {
                        good_size = Some(b.len() as u64);
                    }
                    ok
                }
                Err(e) => {
                    findings.add(
                        &c.probed.cfg.name,
                        path,
                        ProblemKind::Unreadable,
                        e.to_string(),
                    );
                    hashed.insert((*i, (*path).to_string()), false);
                    continue;
                }
            };
            hashed.insert((*i, (*path).to_string()), ok);
        }
        for (i, c) in checked {
            match (
                c.inv.files.get(*path),
                hashed.get(&(*i, (*path).to_string())),
            ) {
                (None, _) if good_size.is_some() => findings.add(
                    &c.probed.cfg.name,
                    path,
                    ProblemKind::Missing,
                    "another target holds an intact copy".into(),
                ),
                (Some(size), Some(false)) => {
                    let (kind, detail) = match good_size {
                        Some(g) if g != *size => (
                            ProblemKind::SizeMismatch,
                            format!("{size} bytes; intact copies have {g}"),
                        ),
                        _ => (
                            ProblemKind::Corrupt,
                            "its SHA-256 does not match its name".to_string(),
                        ),
                    };
                    findings.add(&c.probed.cfg.name, path, kind, detail);
                }
                _ => {}
            }
        }
    }
    hashed
}

/// Hashes the chosen files of every target (targets concurrently); (files, bytes) each.
fn hash_files<P: ProgressBars>(
    checked: &[(usize, Checked<'_>)],
    read_data: ReadData,
    seed: Option<u64>,
    hashed: &BTreeMap<(usize, String), bool>,
    findings: &Findings,
    pb: &P,
) -> Vec<(u64, u64)> {
    crate::par::each_caught(checked, |(i, c)| {
        let chosen: Vec<(&String, &u64)> = match read_data {
            ReadData::None => Vec::new(),
            ReadData::All => c.inv.files.iter().collect(),
            // Exactly P% of the files, rounded up: a subset is never empty, and
            // the same seed picks the same files.
            ReadData::Percent(p) => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.unwrap_or(0));
                let all: Vec<(&String, &u64)> = c.inv.files.iter().collect();
                let n = (all.len() as f64 * p / 100.0).ceil() as usize;
                all.choose_multiple(&mut rng, n.min(all.len()))
                    .copied()
                    .collect()
            }
        };
        let (mut files, mut bytes) = (0, 0);
        let progress = if chosen.is_empty() {
            rustic_core::Progress::hidden()
        } else {
            pb.progress(
                ProgressType::Bytes,
                &format!("hashing {}", c.probed.cfg.name),
            )
        };
        progress.set_length(chosen.iter().map(|(_, s)| **s).sum());
        for (path, size) in chosen {
            progress.inc(*size);
            if hashed.contains_key(&(*i, path.clone())) {
                continue;
            }
            files += 1;
            bytes += size;
            match c.store.read(path) {
                Ok(b) if hash_matches(path, &b) => {}
                Ok(b) if b.len() as u64 != *size => findings.add(
                    &c.probed.cfg.name,
                    path,
                    ProblemKind::Corrupt,
                    format!("read {} bytes, listed as {size}", b.len()),
                ),
                Ok(_) => findings.add(
                    &c.probed.cfg.name,
                    path,
                    ProblemKind::Corrupt,
                    "its SHA-256 does not match its name".into(),
                ),
                Err(e) => findings.add(
                    &c.probed.cfg.name,
                    path,
                    ProblemKind::Unreadable,
                    e.to_string(),
                ),
            }
        }
        progress.finish();
        (files, bytes)
    })
    .into_iter()
    .map(|r| r.unwrap_or((0, 0)))
    .collect()
}

/// Proves every key, index and snapshot file (one intact copy each: equal names mean equal
/// bytes), then judges packs by the proven index files. A file that fails is foreign on every
/// target holding an intact copy; a file that is not proven is never "missing" anywhere.
fn prove_all(proof: &Proof, checked: &[(usize, Checked<'_>)], problems: &mut Vec<Problem>) {
    let paths: BTreeSet<&str> = checked
        .iter()
        .flat_map(|(_, c)| c.inv.files.keys().map(String::as_str))
        .collect();
    // Index files first: they prove the packs.
    let mut ordered: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| !p.starts_with("data/"))
        .collect();
    ordered.sort_by_key(|p| (!p.starts_with("index/"), *p));
    let verdicts = crate::par::map(&ordered, 4, |path| {
        for (_, c) in checked
            .iter()
            .filter(|(_, c)| c.inv.files.contains_key(*path))
        {
            if let Ok(b) = c.store.read(path)
                && hash_matches(path, &b)
            {
                return proof.check(path, &b).err();
            }
        }
        None
    });
    let mut unproven: BTreeMap<&str, String> = ordered
        .iter()
        .zip(verdicts)
        .filter_map(|(p, v)| Some((*p, v?)))
        .collect();
    for path in paths.iter().filter(|p| p.starts_with("data/")) {
        let known = path
            .rsplit('/')
            .next()
            .and_then(|n| n.parse::<rustic_core::Id>().ok())
            .is_some_and(|id| proof.knows_pack(&id));
        if !known {
            unproven.insert(path, String::new());
        }
    }
    // Unproven files are expected nowhere.
    problems
        .retain(|p| !(p.kind == ProblemKind::Missing && unproven.contains_key(p.path.as_str())));
    for (path, why) in unproven.iter().filter(|(_, why)| !why.is_empty()) {
        for (_, c) in checked
            .iter()
            .filter(|(_, c)| c.inv.files.contains_key(*path))
        {
            // A damaged copy is already reported as such.
            if problems
                .iter()
                .any(|p| p.target == c.probed.cfg.name && p.path == *path)
            {
                continue;
            }
            problems.push(Problem::new(
                &c.probed.cfg.name,
                path,
                ProblemKind::Foreign,
                format!("{why}; an honest cairn did not write it"),
            ));
        }
    }
}

/// Repairs what can be: copies in dependency order, strays removed, foreign files quarantined.
/// It writes: only under the lock.
fn heal(
    _lock: &LockedTargets,
    problems: &mut [Problem],
    checked: &[(usize, Checked<'_>)],
    proof: Option<&Proof>,
    observer: &Arc<dyn Observer>,
) {
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
                let sources: Vec<Source<'_>> = checked
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

/// rustic_core's check of one target alone: its errors.
fn structure(p: &Probed, pw: &Secret) -> Result<Vec<String>> {
    let Some(store) = p.store.clone() else {
        return Ok(Vec::new());
    };
    let fan = Fanout::new(
        vec![Arc::new(Member::new(p.cfg.name.clone(), true, store))],
        Arc::new(Silent),
    );
    let repo = open_repository(Arc::new(fan), pw, NoProgressBars)?;
    let results = repo.check(RusticCheckOptions::default())?;
    // rustic_core does not export the level's type; its own `is_ok` judges each finding.
    Ok(results
        .0
        .into_iter()
        .map(|finding| rustic_core::CheckResults(vec![finding]))
        .filter(|one| one.is_ok().is_err())
        .flat_map(|one| one.0.into_iter().map(|(_, e)| e.to_string()))
        .collect())
}
