//! `cairn verify`: restore a random sample of real files from **each target on its own** and
//! prove them intact.
//!
//! The sample is chosen once (seeded, reproducible) and then checked on every target through a
//! repository opened over that target alone, so a damaged file on one target can never be
//! hidden by a good copy on another. For each sampled file and target:
//! - every chunk is read through rustic_core's decode path and its SHA-256 compared with its
//!   blob id, and the assembled size with the snapshot's;
//! - every whole repository file read (keys, index, snapshot) has its SHA-256 compared with its
//!   name; packs are read chunk by chunk, never whole, so a sample costs what it checks (whole
//!   packs are hashed by `check --read-data`), and the bytes read are counted per target;
//! - if the live source file still has the snapshot's size and mtime, its bytes are compared;
//! - the file is written to disk by rustic_core's restore and its content, mode and mtime checked.
//!
//! Content is streamed chunk by chunk (at most one chunk, ≤ 8 MiB, held per file).
//!
//! Here: the options, choosing the sample, and each target's run. The report types are in
//! [`report`], the hash-checking backend in `witness`, the checks of one file in `file`, the
//! failure hook in [`hook`].

mod file;
pub(crate) mod header;
pub mod hook;
pub mod report;
mod witness;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use rustic_core::{
    Id, LsOptions, ProgressBars, ProgressType,
    repofile::{Node, NodeType, SnapshotFile},
};

use crate::{
    config::{SnapshotSelection, VerifyConfig},
    context::Context,
    error::{Error, Result},
    fanout::{Fanout, Member},
    probe::Probed,
    progress::Silent,
    repo::{KeyCache, open_repository},
    report::TargetState,
    sample::{Candidate, SampleSpec, choose},
    secret::Secret,
    session::Session,
    state,
};

use file::{FileOutcome, SourceCheck, check_file, check_restores};
pub use hook::run_hook;
pub use report::{Cause, Failure, FailureClass, TargetVerify, VerifyReport, causes, write_report};
use witness::{Witness, diagnose_pack, witness_failures};

/// Options of one verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Explicit snapshot ids (or `latest`); empty means `selection`.
    pub snapshots: Vec<String>,
    /// Which snapshots to sample across when none are named.
    pub selection: SnapshotSelection,
    /// Sample size.
    pub spec: SampleSpec,
    /// Seed of the sample; random (and reported) when not given.
    pub seed: Option<u64>,
    /// Targets to verify; empty means all.
    pub targets: Vec<String>,
    /// Keep restored files here (default: a scratch folder, removed afterwards).
    pub restore_to: Option<PathBuf>,
}

const DEFAULT_FILES: usize = 50;

impl VerifyOptions {
    /// The `[verify]` defaults.
    #[must_use]
    pub fn from_config(v: &VerifyConfig) -> Self {
        let files = if v.files.is_none() && v.percent.is_none() {
            Some(DEFAULT_FILES)
        } else {
            v.files
        };
        Self {
            snapshots: Vec::new(),
            selection: v.snapshots.unwrap_or(SnapshotSelection::Latest),
            spec: SampleSpec {
                files,
                percent: v.percent,
                max_bytes: v.max_bytes.map(|b| b.0),
            },
            seed: None,
            targets: v.targets.clone(),
            restore_to: v.restore_to.clone(),
        }
    }
}

/// Chooses the sample and verifies it on every selected target.
///
/// # Errors
/// No target holds the repository; wrong password; no such snapshot; a named target does not
/// exist. Failed checks are not errors: they are in the report.
pub fn run<P: ProgressBars + Clone>(
    ctx: &Context,
    password: &Secret,
    opts: &VerifyOptions,
    pb: P,
) -> Result<VerifyReport> {
    if let Some(to) = &opts.restore_to {
        crate::ops::restore::refuse_target_folder(ctx.cfg(), to, "--restore-to")?;
    }
    let cfg = ctx.cfg();
    for t in &opts.targets {
        cfg.target(t)?;
    }
    let session = Session::open(ctx, None)?;
    let repo = session.repository(password, pb.clone())?.to_indexed()?;

    let mut snaps: Vec<SnapshotFile> = if opts.snapshots.is_empty() {
        let mut all = repo.get_all_snapshots()?;
        all.sort_by(|a, b| b.time.cmp(&a.time));
        match opts.selection {
            SnapshotSelection::Latest => all.truncate(1),
            SnapshotSelection::Newest(n) => all.truncate(n),
            SnapshotSelection::All => {}
        }
        all
    } else {
        let all = repo.get_all_snapshots()?;
        opts.snapshots
            .iter()
            .map(|s| {
                let spec: crate::selection::Spec = s.parse()?;
                Ok(
                    crate::selection::pick(&all, &spec, &crate::selection::Filter::default())?
                        .clone(),
                )
            })
            .collect::<Result<_>>()?
    };
    if snaps.is_empty() {
        return Err(Error::Input(
            "the repository has no snapshot to verify".into(),
        ));
    }
    snaps.sort_by(|a, b| a.time.cmp(&b.time));

    let mut candidates = Vec::new();
    for snap in &snaps {
        let root = repo.node_from_snapshot_and_path(snap, "")?;
        for item in repo.ls(&root, &LsOptions::default().recursive(true))? {
            let (path, node) = item?;
            if node.node_type == NodeType::File {
                candidates.push(Candidate {
                    snapshot: snap.id.to_hex().to_string(),
                    path: path.to_string_lossy().into_owned(),
                    size: node.meta.size,
                });
            }
        }
    }
    let total = candidates.len();
    let seed = opts.seed.unwrap_or_else(rand::random);
    let sample = choose(candidates, &opts.spec, seed);
    drop(repo);

    let scratch = match &opts.restore_to {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("cairn-verify-")
                .tempdir()
                .map_err(|e| Error::Io {
                    path: std::env::temp_dir(),
                    source: e,
                })?,
        ),
    };
    let restore_root = opts.restore_to.clone().unwrap_or_else(|| {
        scratch
            .as_ref()
            .map_or_else(std::env::temp_dir, |d| d.path().to_path_buf())
    });

    let chosen: Vec<&Probed> = session
        .probed
        .iter()
        .filter(|p| opts.targets.is_empty() || opts.targets.contains(&p.cfg.name))
        .collect();
    let results: Vec<(TargetVerify, Vec<Failure>)> = crate::par::each_caught(&chosen, |p| {
        verify_target(
            p,
            password,
            ctx.keys(),
            &sample,
            &restore_root.join(&p.cfg.name),
            pb.clone(),
        )
    })
    .into_iter()
    .zip(&chosen)
    .map(|(r, p)| {
        r.unwrap_or_else(|why| {
            let mut t = blank(p, TargetState::Failed);
            t.detail = Some(format!("verification {why}"));
            (t, Vec::new())
        })
    })
    .collect();

    let mut targets = Vec::new();
    let mut failures = Vec::new();
    for (t, f) in results {
        targets.push(t);
        failures.extend(f);
    }
    let failed_targets = targets
        .iter()
        .filter(|t| t.state == TargetState::Failed)
        .map(|t| t.name.clone())
        .collect();
    let unreachable_targets = targets
        .iter()
        .filter(|t| t.state.is_unvouched(t.required))
        .map(|t| t.name.clone())
        .collect();
    // An empty sample proves nothing: it is not recorded as a verification.
    if !sample.is_empty() {
        let drawn = state::Sample {
            files: sample.len() as u64,
            seed,
        };
        ctx.update_state(|s| {
            for t in &targets {
                match t.state {
                    TargetState::Verified => s.record_verify(&t.name, true, drawn.clone()),
                    TargetState::Failed => s.record_verify(&t.name, false, drawn.clone()),
                    _ => {}
                }
            }
        });
    }
    Ok(VerifyReport {
        seed,
        snapshots: snaps.iter().map(|s| s.id.to_hex().to_string()).collect(),
        candidates: total,
        sample,
        targets,
        causes: causes(&failures),
        failures,
        failed_targets,
        unreachable_targets,
        restored_to: opts.restore_to.clone(),
        hook: None,
    })
}

crate::outcome_fields!(TargetVerify);

fn blank(p: &Probed, state: TargetState) -> TargetVerify {
    TargetVerify {
        name: p.cfg.name.clone(),
        kind: p.cfg.kind.name().to_string(),
        required: p.cfg.required,
        state,
        files: 0,
        bytes: 0,
        ok: 0,
        mismatch: 0,
        missing: 0,
        unreadable: 0,
        compared_with_source: 0,
        changed_since_snapshot: 0,
        repository_files_hashed: 0,
        bytes_read: 0,
        seconds: 0.0,
        detail: None,
    }
}

/// How a sampled file's failure begins when the trees above it could not be read.
const TREE_UNREADABLE: &str = "the snapshot's tree cannot be read down to it";

fn verify_target<P: ProgressBars + Clone>(
    p: &Probed,
    password: &Secret,
    keys: &KeyCache,
    sample: &[Candidate],
    restore_root: &Path,
    pb: P,
) -> (TargetVerify, Vec<Failure>) {
    let started = Instant::now();
    let name = p.cfg.name.clone();
    let (store, state) = match (p.unusable(), &p.store) {
        (None, Some(s)) => (s.clone(), TargetState::Verified),
        // A target that should hold the repository and holds none failed verification.
        (Some((TargetState::NotInitialised, _)), _) => {
            let f = target_failure(&name, FailureClass::Missing, "holds no repository".into());
            return (
                with_detail(blank(p, TargetState::Failed), "holds no repository"),
                vec![f],
            );
        }
        (Some((state, why)), _) => return (with_detail(blank(p, state), &why), Vec::new()),
        (None, None) => unreachable!("a ready target has a store"),
    };
    let mut t = blank(p, state);
    let mut failures = Vec::new();
    // This target alone: no fallback can hide its damage.
    let witness = Arc::new(Witness {
        inner: Fanout::new(
            vec![Arc::new(Member::new(
                name.clone(),
                p.cfg.required,
                store.clone(),
            ))],
            Arc::new(Silent),
        ),
        bad: Mutex::default(),
        hashed: AtomicU64::new(0),
        read: AtomicU64::new(0),
    });
    let repo = match open_repository(witness.clone(), password, keys, pb.clone())
        .and_then(|r| Ok(r.to_indexed()?))
    {
        Ok(r) => r,
        Err(e) => {
            failures.push(target_failure(
                &name,
                FailureClass::Unreadable,
                format!("cannot open the repository: {e}"),
            ));
            failures.extend(witness_failures(&name, &witness));
            t.state = TargetState::Failed;
            t.seconds = started.elapsed().as_secs_f64();
            return (t, failures);
        }
    };
    let progress = pb.progress(ProgressType::Counter, &format!("verify {name}"));
    progress.set_length(sample.len() as u64);

    let mut snapshots: BTreeMap<&str, std::result::Result<SnapshotFile, String>> = BTreeMap::new();
    // The first failure met in a pack speaks for it: the files it affects are one cause.
    let mut diagnosed: BTreeMap<Id, (FailureClass, String)> = BTreeMap::new();
    // Each pack's header, read once: a sampled chunk must sit where its pack says.
    let cipher = crate::sealed::Cipher::new(&repo.key()).ok();
    let mut headers: BTreeMap<Id, std::result::Result<Vec<header::Entry>, header::Unusable>> =
        BTreeMap::new();
    let mut outcomes = Vec::with_capacity(sample.len());
    // Files whose chunks passed, restored together afterwards: (outcome, node, path).
    let mut to_restore: Vec<(usize, Node, String)> = Vec::new();
    for c in sample {
        t.files += 1;
        t.bytes += c.size;
        let snap = snapshots.entry(&c.snapshot).or_insert_with(|| {
            repo.get_snapshot_from_str(&c.snapshot, |_| true)
                .map_err(|e| crate::error::rustic_words(&e))
        });
        let outcome = match snap {
            Err(e) => FileOutcome {
                failure: Some((
                    FailureClass::Missing,
                    format!("snapshot {} cannot be read: {e}", &c.snapshot[..8]),
                )),
                source: SourceCheck::NotChecked,
            },
            Ok(snap) => match repo.node_from_snapshot_and_path(snap, &c.path) {
                Err(e) => FileOutcome {
                    failure: Some((
                        FailureClass::Missing,
                        format!("{TREE_UNREADABLE}: {}", crate::error::rustic_words(&e)),
                    )),
                    source: SourceCheck::NotChecked,
                },
                Ok(node) => {
                    let mut diagnose = |pack: Id, e: &rustic_core::RusticError| {
                        diagnosed
                            .entry(pack)
                            .or_insert_with(|| diagnose_pack(store.as_ref(), &pack, e))
                            .clone()
                    };
                    let mut placed = |pack: Id, (offset, length): (u32, u32), id: &Id| {
                        let cipher = cipher.as_ref()?;
                        let entries = headers.entry(pack).or_insert_with(|| {
                            let (entries, read) = header::read(store.as_ref(), cipher, &pack);
                            witness.read.fetch_add(read, Ordering::Relaxed);
                            entries
                        });
                        let path = crate::layout::file_path(rustic_core::FileType::Pack, &pack);
                        let why = match entries {
                            Err((class, why)) => {
                                return Some((*class, format!("pack {path} {why}")));
                            }
                            Ok(entries) => match entries.iter().find(|e| e.id == *id) {
                                None => format!(
                                    "pack {path}: its header does not list chunk {}",
                                    &id.to_hex()[..8]
                                ),
                                Some(e) if e.offset == offset && e.length == length => {
                                    return None;
                                }
                                Some(e) => format!(
                                    "pack {path}: its header puts chunk {} at {}+{}, the \
                                     index at {}+{}",
                                    &id.to_hex()[..8],
                                    e.offset,
                                    e.length,
                                    offset,
                                    length
                                ),
                            },
                        };
                        Some((FailureClass::Mismatch, why))
                    };
                    let o = check_file(&repo, &node, c, &mut diagnose, &mut placed);
                    if o.failure.is_none() {
                        to_restore.push((outcomes.len(), node, c.path.clone()));
                    }
                    o
                }
            },
        };
        outcomes.push(outcome);
        progress.inc(1);
    }
    let (at, files): (Vec<usize>, Vec<(Node, String)>) =
        to_restore.into_iter().map(|(i, n, p)| (i, (n, p))).unzip();
    for (i, result) in at
        .into_iter()
        .zip(check_restores(&repo, &files, restore_root))
    {
        outcomes[i].failure = result.err();
    }
    progress.finish();

    t.bytes_read = witness.read.load(Ordering::Relaxed);
    t.repository_files_hashed = witness.hashed.load(Ordering::Relaxed);
    for (c, o) in sample.iter().zip(&outcomes) {
        match o.source {
            SourceCheck::Compared => t.compared_with_source += 1,
            SourceCheck::Changed => t.changed_since_snapshot += 1,
            SourceCheck::NotChecked => {}
        }
        match &o.failure {
            None => t.ok += 1,
            Some((class, what)) => {
                match class {
                    FailureClass::Mismatch => t.mismatch += 1,
                    FailureClass::Missing => t.missing += 1,
                    FailureClass::Unreadable => t.unreadable += 1,
                }
                failures.push(Failure {
                    target: name.clone(),
                    snapshot: Some(c.snapshot.clone()),
                    path: Some(c.path.clone()),
                    class: *class,
                    what: what.clone(),
                });
            }
        }
    }
    failures.extend(witness_failures(&name, &witness));
    if !failures.is_empty() {
        t.state = TargetState::Failed;
    }
    t.seconds = started.elapsed().as_secs_f64();
    (t, failures)
}

fn with_detail(mut t: TargetVerify, d: &str) -> TargetVerify {
    t.detail = Some(d.to_string());
    t
}

fn target_failure(target: &str, class: FailureClass, what: String) -> Failure {
    Failure {
        target: target.to_string(),
        snapshot: None,
        path: None,
        class,
        what,
    }
}
