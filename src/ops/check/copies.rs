//! Judging the copies: files some targets lack or hold at other sizes are settled by hashing
//! every copy; `--read-data` hashes the chosen files; with the key, every file is proven.

use std::collections::{BTreeMap, BTreeSet};

use rand::{SeedableRng, seq::SliceRandom};
use rustic_core::{ProgressBars, ProgressType};

use super::{Checked, Findings, Problem, ProblemKind, ReadData};
use crate::{layout::hash_matches, proof::Proof};

/// Files whose copies disagree (held by some targets only, or of differing sizes): every copy
/// is hashed, then each target judged against the intact ones. Returns which copies were
/// hashed and whether they were intact, by (target index, path).
pub(super) fn settle_disagreements(
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
pub(super) fn hash_files<P: ProgressBars>(
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
pub(super) fn prove_all(
    proof: &Proof,
    checked: &[(usize, Checked<'_>)],
    problems: &mut Vec<Problem>,
) {
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
