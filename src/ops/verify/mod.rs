//! `cairn verify`: restore a random sample of real files from **each target on its own** and
//! prove them intact.
//!
//! The sample is chosen once (seeded, reproducible) and then checked on every target through a
//! repository opened over that target alone, so a damaged file on one target can never be
//! hidden by a good copy on another. For each sampled file and target:
//! - every chunk is read from that target, opened with the key, and its SHA-256 compared with
//!   its blob id; the assembled size with the snapshot's;
//! - every whole repository file read (keys, index, snapshots) has its SHA-256 compared with
//!   its name; packs are read in the ranges of the sampled chunks and trees (neighbours less
//!   than 64 KiB apart in one request, the bytes between them too), never whole, so a sample
//!   costs what it checks (whole packs are hashed by `check --read-data`); the bytes read are
//!   counted per target;
//! - each sampled chunk must sit where its pack's own header says;
//! - if the live source file still has the snapshot's size and mtime, its bytes are compared;
//! - the file is written to disk as `cairn restore` writes it (contents and metadata in one
//!   pass), from the chunks just checked, and its content, mode and mtime checked.
//!
//! The sample is checked in batches of [`BATCH`] files: the trees on their paths are read a
//! level at a time, then their chunks (at most [`READ_AHEAD`] bytes; a file beyond that is read
//! chunk by chunk), so that a sample spread over many folders and packs costs a request per
//! neighbourhood, not per tree and chunk (one per chunk, on Azure, was most of a remote
//! target's time). A tree or chunk the read-ahead could not have is read alone, and its
//! failure said as before.
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
    let session = Session::open(ctx, None, password)?;
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
        candidates.extend(candidates_of(&repo, snap)?);
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

/// Sampled files checked at once on a target (reading, decrypting and hashing their chunks and
/// the trees above them is CPU work: one core was idle).
const CHECKERS: usize = 2;

/// The files of `snap`, to sample from. Listing them is most of a small sample's time (every
/// tree read and parsed), so the folders below the first few levels are listed on
/// [`CHECKERS`] threads; the order is the same for the same snapshot, so a seed gives the same
/// sample.
fn candidates_of<S: rustic_core::IndexedFull + Sync>(
    repo: &rustic_core::Repository<S>,
    snap: &SnapshotFile,
) -> Result<Vec<Candidate>> {
    let snapshot = snap.id.to_hex().to_string();
    let candidate = |path: &Path, node: &Node| Candidate {
        snapshot: snapshot.clone(),
        path: path.to_string_lossy().into_owned(),
        size: node.meta.size,
    };
    let mut out = Vec::new();
    // Breadth first from the root until there are folders enough to share out.
    let mut frontier = vec![(PathBuf::new(), repo.node_from_snapshot_and_path(snap, "")?)];
    while !frontier.is_empty() && frontier.len() < 4 * CHECKERS {
        let mut next = Vec::new();
        for (path, dir) in frontier {
            let Some(id) = dir.subtree else { continue };
            for node in repo.get_tree(&id)?.nodes {
                let below = path.join(node.name());
                match node.node_type {
                    NodeType::File => out.push(candidate(&below, &node)),
                    NodeType::Dir => next.push((below, node)),
                    _ => {}
                }
            }
        }
        frontier = next;
    }
    let listed = crate::par::map(
        &frontier,
        CHECKERS,
        |(path, dir)| -> Result<Vec<Candidate>> {
            let mut files = Vec::new();
            for item in repo.ls(dir, &LsOptions::default().recursive(true))? {
                let (rel, node) = item?;
                if node.node_type == NodeType::File {
                    files.push(candidate(&path.join(rel), &node));
                }
            }
            Ok(files)
        },
    );
    for files in listed {
        out.extend(files?);
    }
    Ok(out)
}

/// The value behind `m`, even if a checker panicked while holding it (the panic is raised
/// again when the checkers are joined).
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Trees read from the target being verified, each parsed once while kept: the sampled files
/// share the trees above them (a snapshot's root, its top folders). Bounded: emptied when
/// full, so memory does not grow with the sample.
#[derive(Default)]
struct Trees(BTreeMap<rustic_core::TreeId, rustic_core::repofile::Tree>);

impl Trees {
    const MAX: usize = 256;
}

/// The node at `path` below the tree `root`, read as [`rustic_core::Repository::node_from_path`]
/// reads it (from this target), through `trees`.
fn node_at<S: rustic_core::IndexedFull>(
    repo: &rustic_core::Repository<S>,
    root: rustic_core::TreeId,
    path: &str,
    trees: &mut Trees,
    read_ahead: &TreeMap,
) -> std::result::Result<Node, String> {
    let mut id = root;
    let mut found: Option<Node> = None;
    for part in std::path::Path::new(path).components() {
        let std::path::Component::Normal(name) = part else {
            continue;
        };
        if let Some(n) = &found {
            id = n
                .subtree
                .ok_or_else(|| format!("`{}` is not a folder", n.name().to_string_lossy()))?;
        }
        if let Some(tree) = read_ahead.get(&id) {
            let node = tree.nodes.iter().find(|n| n.name() == name);
            found = Some(node.cloned().ok_or_else(|| {
                format!("`{}` is not in its folder's tree", name.to_string_lossy())
            })?);
            continue;
        }
        if !trees.0.contains_key(&id) {
            let tree = repo
                .get_tree(&id)
                .map_err(|e| crate::error::rustic_words(&e))?;
            if trees.0.len() >= Trees::MAX {
                trees.0.clear();
            }
            trees.0.insert(id, tree);
        }
        let node = trees.0[&id].nodes.iter().find(|n| n.name() == name);
        found =
            Some(node.cloned().ok_or_else(|| {
                format!("`{}` is not in its folder's tree", name.to_string_lossy())
            })?);
    }
    found.ok_or_else(|| "the path names no file".to_string())
}

/// Trees read ahead for a batch of the sample.
type TreeMap = BTreeMap<rustic_core::TreeId, rustic_core::repofile::Tree>;

/// Chunks read ahead for a batch of the sample, each already checked against its id.
type BlobMap = BTreeMap<Id, bytes::Bytes>;

/// Most bytes of chunks read ahead for one batch (a file beyond it is read chunk by chunk).
const READ_AHEAD: u64 = 32 << 20;

/// The chunks of `nodes` (up to [`READ_AHEAD`] stored bytes, whole files), read from this
/// target with neighbours in a pack together: a sample of small files in one pack costs a
/// request or two, not one per file. A chunk that cannot be had this way is left out;
/// [`check_file`] reads it alone and says why.
fn chunks_of<'a, S: rustic_core::IndexedFull + Sync>(
    repo: &rustic_core::Repository<S>,
    contents: &crate::verified::Contents,
    nodes: impl Iterator<Item = &'a Node>,
) -> BlobMap {
    let mut ids = std::collections::BTreeSet::new();
    let mut bytes = 0u64;
    for node in nodes {
        let chunks: Vec<rustic_core::DataId> = node.content.iter().flatten().copied().collect();
        let size: u64 = chunks
            .iter()
            .filter(|id| !ids.contains(*id))
            .filter_map(|id| repo.get_index_entry(id).ok())
            .map(|e| u64::from(e.location.length))
            .sum();
        if bytes + size > READ_AHEAD {
            continue;
        }
        bytes += size;
        ids.extend(chunks);
    }
    let ids: Vec<rustic_core::DataId> = ids.into_iter().collect();
    ids.iter()
        .zip(contents.blobs(repo, &ids, CHECKERS))
        .filter_map(|(id, got)| Some((**id, got.ok()?)))
        .collect()
}

/// Sampled files whose trees are read ahead together: bounds what is held for a large sample.
const BATCH: usize = 256;

/// The trees on the way to each of `paths` (a snapshot's root tree and a path below it), read
/// from this target a level at a time, neighbours in a pack together, each checked against
/// its id: a sample of files in different folders would otherwise cost one request per tree.
/// A tree that cannot be had this way is left out; [`node_at`] reads it alone and says why.
fn trees_on_paths<S: rustic_core::IndexedFull + Sync>(
    repo: &rustic_core::Repository<S>,
    contents: &crate::verified::Contents,
    paths: &[(rustic_core::TreeId, &str)],
) -> TreeMap {
    let mut known = TreeMap::new();
    let mut walks: Vec<(rustic_core::TreeId, Vec<&std::ffi::OsStr>)> = paths
        .iter()
        .map(|(root, path)| {
            let parts = Path::new(path)
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n),
                    _ => None,
                })
                .collect();
            (*root, parts)
        })
        .collect();
    while !walks.is_empty() {
        let wanted: Vec<rustic_core::TreeId> = walks
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !known.contains_key(id))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for (id, got) in wanted.iter().zip(contents.blobs(repo, &wanted, CHECKERS)) {
            if let Some(tree) = got
                .ok()
                .and_then(|b| serde_json::from_slice::<rustic_core::repofile::Tree>(&b).ok())
            {
                known.insert(*id, tree);
            }
        }
        // On to the folder below, while the path goes on.
        walks = walks
            .into_iter()
            .filter_map(|(id, parts)| {
                let (first, rest) = parts.split_first()?;
                if rest.is_empty() {
                    return None;
                }
                let sub = known
                    .get(&id)?
                    .nodes
                    .iter()
                    .find(|n| n.name() == *first)?
                    .subtree?;
                Some((sub, rest.to_vec()))
            })
            .collect();
    }
    known
}

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

    // Shared by the checkers: each snapshot read once; the first failure met in a pack speaks
    // for it (the files it affects are one cause); each pack's header read once (a sampled
    // chunk must sit where its pack says).
    let snapshots: Mutex<BTreeMap<String, std::result::Result<SnapshotFile, String>>> =
        Mutex::default();
    let diagnosed: Mutex<BTreeMap<Id, (FailureClass, String)>> = Mutex::default();
    let cipher = crate::sealed::Cipher::new(&repo.key()).ok();
    let headers: Mutex<BTreeMap<Id, std::result::Result<Vec<header::Entry>, header::Unusable>>> =
        Mutex::default();
    // Each checker's trees, handed from one file to the next.
    let pool: Mutex<Vec<Trees>> = Mutex::default();
    let snapshot_of = |c: &Candidate| {
        locked(&snapshots)
            .entry(c.snapshot.clone())
            .or_insert_with(|| {
                repo.get_snapshot_from_str(&c.snapshot, |_| true)
                    .map_err(|e| crate::error::rustic_words(&e))
            })
            .clone()
    };
    let contents = crate::verified::Contents::new(&witness.inner, &repo.key());
    // The sampled file's node, or why it cannot be had from this target.
    let resolve = |c: &Candidate, read_ahead: &TreeMap| -> std::result::Result<Node, FileOutcome> {
        let unfound = |what: String| FileOutcome {
            failure: Some((FailureClass::Missing, what)),
            source: SourceCheck::NotChecked,
            digest: None,
        };
        let snap = snapshot_of(c)
            .map_err(|e| unfound(format!("snapshot {} cannot be read: {e}", &c.snapshot[..8])))?;
        let mut trees = locked(&pool).pop().unwrap_or_default();
        let node = node_at(&repo, snap.tree, &c.path, &mut trees, read_ahead)
            .map_err(|e| unfound(format!("{TREE_UNREADABLE}: {e}")));
        locked(&pool).push(trees);
        node
    };
    let check = |c: &Candidate, node: Node, ready: &BlobMap| {
        let mut diagnose = |pack: Id, e: &rustic_core::RusticError| {
            locked(&diagnosed)
                .entry(pack)
                .or_insert_with(|| diagnose_pack(store.as_ref(), &pack, e))
                .clone()
        };
        let mut placed = |pack: Id, (offset, length): (u32, u32), id: &Id| {
            let cipher = cipher.as_ref()?;
            let mut headers = locked(&headers);
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
                        "pack {path}: its header puts chunk {} at {}+{}, the index at {}+{}",
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
        let o = check_file(&repo, &node, c, ready, &mut diagnose, &mut placed);
        let restorable = match (&o.failure, o.digest) {
            (None, Some(digest)) => Some((node, c.path.clone(), digest)),
            _ => None,
        };
        (o, restorable)
    };
    let mut outcomes: Vec<FileOutcome> = Vec::with_capacity(sample.len());
    for batch in sample.chunks(BATCH) {
        let read_ahead = contents.as_ref().map_or_else(
            |_| TreeMap::new(),
            |contents| {
                let paths: Vec<(rustic_core::TreeId, &str)> = batch
                    .iter()
                    .filter_map(|c| Some((snapshot_of(c).ok()?.tree, c.path.as_str())))
                    .collect();
                trees_on_paths(&repo, contents, &paths)
            },
        );
        let nodes = crate::par::map(batch, CHECKERS, |c| resolve(c, &read_ahead));
        drop(read_ahead);
        let ready = contents.as_ref().map_or_else(
            |_| BlobMap::new(),
            |contents| {
                chunks_of(
                    &repo,
                    contents,
                    nodes.iter().filter_map(|n| n.as_ref().ok()),
                )
            },
        );
        let work: Vec<(&Candidate, std::result::Result<Node, FileOutcome>)> =
            batch.iter().zip(nodes).collect();
        let checked = crate::par::map(&work, CHECKERS, |(c, node)| {
            let done = match node {
                Ok(node) => check(c, node.clone(), &ready),
                Err(unfound) => (unfound.clone(), None),
            };
            progress.inc(1);
            done
        });
        // The files whose chunks passed are restored, from the chunks just checked.
        let (mut at, mut files) = (Vec::new(), Vec::new());
        for (o, restorable) in checked {
            if let Some(r) = restorable {
                at.push(outcomes.len());
                files.push(r);
            }
            outcomes.push(o);
        }
        let restored = match &contents {
            Ok(contents) => {
                check_restores(&repo, &contents.with_ready(ready), &files, restore_root)
            }
            Err(why) => vec![Err((FailureClass::Unreadable, why.clone())); files.len()],
        };
        for (i, result) in at.into_iter().zip(restored) {
            outcomes[i].failure = result.err();
        }
    }
    if let Ok(contents) = &contents {
        witness
            .read
            .fetch_add(contents.bytes_read(), Ordering::Relaxed);
    }
    for c in sample {
        t.files += 1;
        t.bytes += c.size;
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
