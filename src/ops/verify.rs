//! `cairn verify`: restore a random sample of real files from **each target on its own** and
//! prove them intact.
//!
//! The sample is chosen once (seeded, reproducible) and then checked on every target through a
//! repository opened over that target alone, so a damaged file on one target can never be
//! hidden by a good copy on another. For each sampled file and target:
//! - every chunk is read through rustic_core's decode path and its SHA-256 compared with its
//!   blob id, and the assembled size with the snapshot's;
//! - every repository file read (keys, index, snapshot, data packs) has its SHA-256 compared with
//!   its name;
//! - if the live source file still has the snapshot's size and mtime, its bytes are compared;
//! - the file is written to disk by rustic_core's restore and its content, mode and mtime checked.
//!
//! Content is streamed chunk by chunk (at most one chunk, ≤ 8 MiB, held per file).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    io::Read,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use bytes::Bytes;
use rustic_core::{
    BlobId, BytesList, FileType, Id, LocalDestination, LsOptions, ProgressBars, ProgressType,
    ReadBackend, RestoreOptions, RusticResult, WriteBackend,
    repofile::{BlobType, Node, NodeType, SnapshotFile},
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    report::TargetState,
    config::{Config, SnapshotSelection, VerifyConfig},
    destination,
    error::{Error, Result},
    fanout::{Fanout, Member},
    layout::file_path,
    progress::{Observer, Silent},
    sample::{Candidate, SampleSpec, choose},
    secret::Secret,
    session::{Probed, Session, open_repository},
};

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

/// What kind of failure a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// Bytes differ from what they must be (hash, size, source, restored file).
    Mismatch,
    /// A repository file or blob is not there.
    Missing,
    /// Could not be read or decoded for another reason.
    Unreadable,
}

/// One failed check, attributed to a target and, where it concerns one, a file.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Target name.
    pub target: String,
    /// Snapshot id, when about a sampled file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Path inside the snapshot, when about a sampled file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Class.
    pub class: FailureClass,
    /// What failed, for people.
    pub what: String,
}

/// Per-target figures.
#[derive(Debug, Clone, Serialize)]
pub struct TargetVerify {
    /// Target name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Whether it is required.
    pub required: bool,
    /// Result.
    pub state: TargetState,
    /// Files sampled.
    pub files: u64,
    /// Bytes sampled.
    pub bytes: u64,
    /// Files that passed every check.
    pub ok: u64,
    /// Files with mismatching bytes.
    pub mismatch: u64,
    /// Files with missing repository data.
    pub missing: u64,
    /// Files that could not be read.
    pub unreadable: u64,
    /// Files also compared byte for byte with the live source.
    pub compared_with_source: u64,
    /// Files whose source changed (size or mtime) since the snapshot: not compared.
    pub changed_since_snapshot: u64,
    /// Repository files whose SHA-256 was checked against their name.
    pub repository_files_hashed: u64,
    /// Seconds taken.
    pub seconds: f64,
    /// Why it could not be verified, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The result of the failure hook.
#[derive(Debug, Clone, Serialize)]
pub struct HookResult {
    /// The command as configured.
    pub command: String,
    /// Its exit code (None if it could not be started or was killed).
    pub exit_code: Option<i32>,
    /// Why it could not be started, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The report of one verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Seed of the sample (pass it as `--seed` to check the same files again).
    pub seed: u64,
    /// Snapshots sampled.
    pub snapshots: Vec<String>,
    /// Files in those snapshots.
    pub candidates: usize,
    /// The sample.
    pub sample: Vec<Candidate>,
    /// Per target.
    pub targets: Vec<TargetVerify>,
    /// Every failed check.
    pub failures: Vec<Failure>,
    /// Names of the targets with failures.
    pub failed_targets: Vec<String>,
    /// Names of the targets that could not be reached (or required and offline).
    pub unreachable_targets: Vec<String>,
    /// Where the restored files are kept, if they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_to: Option<PathBuf>,
    /// The failure hook's result, if it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookResult>,
}

impl VerifyReport {
    /// Whether every check passed on every reachable target.
    #[must_use]
    pub fn failed(&self) -> bool {
        !self.failed_targets.is_empty()
    }
}

/// Checks the hashes of every non-config file read through it and remembers the data packs
/// read, whose full hash is checked afterwards.
#[derive(Debug)]
struct Witness {
    inner: Fanout,
    bad: Mutex<Vec<(FileType, Id, String)>>,
    packs: Mutex<BTreeSet<Id>>,
    hashed: Mutex<u64>,
}

impl Witness {
    fn check(&self, tpe: FileType, id: &Id, bytes: &Bytes) {
        if tpe == FileType::Config {
            return;
        }
        if let Ok(mut n) = self.hashed.lock() {
            *n += 1;
        }
        if Id::new(Sha256::digest(bytes).into()) != *id
            && let Ok(mut bad) = self.bad.lock()
        {
            bad.push((
                tpe,
                *id,
                format!("{}: SHA-256 does not match its name", file_path(tpe, id)),
            ));
        }
    }
}

impl ReadBackend for Witness {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }
    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let bytes = self.inner.read_full(tpe, id)?;
        self.check(tpe, id, &bytes);
        Ok(bytes)
    }
    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        if tpe == FileType::Pack
            && let Ok(mut p) = self.packs.lock()
        {
            p.insert(*id);
        }
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }
    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }
}

// Verification never writes; rustic_core's repository type asks for a writable backend.
impl WriteBackend for Witness {
    fn write_bytes(&self, tpe: FileType, id: &Id, _: bool, _: BytesList) -> RusticResult<()> {
        Err(rustic_core::RusticError::new(
            rustic_core::ErrorKind::Unsupported,
            format!(
                "verify is read-only (refused to write {})",
                file_path(tpe, id)
            ),
        ))
    }
    fn remove(&self, tpe: FileType, id: &Id, _: bool) -> RusticResult<()> {
        Err(rustic_core::RusticError::new(
            rustic_core::ErrorKind::Unsupported,
            format!(
                "verify is read-only (refused to remove {})",
                file_path(tpe, id)
            ),
        ))
    }
}

/// Chooses the sample and verifies it on every selected target.
///
/// # Errors
/// No target holds the repository; wrong password; no such snapshot; a named target does not
/// exist. Failed checks are not errors: they are in the report.
pub fn run<P: ProgressBars + Clone>(
    cfg: &Config,
    password: &Secret,
    opts: &VerifyOptions,
    observer: Arc<dyn Observer>,
    pb: P,
) -> Result<VerifyReport> {
    for t in &opts.targets {
        cfg.target(t)?;
    }
    let session = Session::open(cfg, None, observer)?;
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
        opts.snapshots
            .iter()
            .map(|s| repo.get_snapshot_from_str(s, |_| true))
            .collect::<RusticResult<_>>()?
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
    Ok(VerifyReport {
        seed,
        snapshots: snaps.iter().map(|s| s.id.to_hex().to_string()).collect(),
        candidates: total,
        sample,
        targets,
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
        seconds: 0.0,
        detail: None,
    }
}

/// How one sampled file fared on one target.
struct FileOutcome {
    failure: Option<(FailureClass, String)>,
    source: SourceCheck,
}

#[derive(PartialEq, Eq)]
enum SourceCheck {
    Compared,
    Changed,
    NotChecked,
}

fn verify_target<P: ProgressBars + Clone>(
    p: &Probed,
    password: &Secret,
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
        packs: Mutex::default(),
        hashed: Mutex::new(0),
    });
    let repo = match open_repository(witness.clone(), password, pb.clone())
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
    let mut pack_hash: BTreeMap<Id, Option<(FailureClass, String)>> = BTreeMap::new();
    let mut pack_users: BTreeMap<Id, Vec<usize>> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(sample.len());
    for (i, c) in sample.iter().enumerate() {
        t.files += 1;
        t.bytes += c.size;
        let snap = snapshots.entry(&c.snapshot).or_insert_with(|| {
            repo.get_snapshot_from_str(&c.snapshot, |_| true)
                .map_err(|e| e.display_log())
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
                        format!("not found in the snapshot's tree: {}", e.display_log()),
                    )),
                    source: SourceCheck::NotChecked,
                },
                Ok(node) => {
                    let mut check_pack = |pack: Id| {
                        pack_users.entry(pack).or_default().push(i);
                        pack_hash
                            .entry(pack)
                            .or_insert_with(|| hash_pack(store.as_ref(), &pack))
                            .clone()
                    };
                    let mut o = check_file(&repo, &node, c, &mut check_pack);
                    if o.failure.is_none() {
                        o.failure = check_restore(&repo, &node, restore_root, &c.path).err();
                    }
                    o
                }
            },
        };
        outcomes.push(outcome);
        progress.inc(1);
    }
    progress.finish();

    // Every pack read must match its name, even where the blobs read from it decoded fine.
    for pack in witness.packs.lock().map(|p| p.clone()).unwrap_or_default() {
        if let Some((class, what)) = pack_hash
            .entry(pack)
            .or_insert_with(|| hash_pack(store.as_ref(), &pack))
            .clone()
        {
            match pack_users.get(&pack) {
                Some(users) => {
                    for &i in users {
                        outcomes[i].failure.get_or_insert((class, what.clone()));
                    }
                }
                // A pack read only for the snapshot's trees: the damage is the target's.
                None => failures.push(target_failure(&name, class, what)),
            }
        }
    }
    t.repository_files_hashed = witness.hashed.lock().map_or(0, |n| *n) + pack_hash.len() as u64;
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

fn witness_failures(target: &str, w: &Witness) -> Vec<Failure> {
    w.bad
        .lock()
        .map(|b| {
            b.iter()
                .map(|(_, _, what)| target_failure(target, FailureClass::Mismatch, what.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a whole data pack from the target's own storage and checks its hash.
fn hash_pack(store: &dyn crate::store::Store, pack: &Id) -> Option<(FailureClass, String)> {
    let path = file_path(FileType::Pack, pack);
    match store.read(&path) {
        Ok(bytes) if Id::new(Sha256::digest(&bytes).into()) == *pack => None,
        Ok(_) => Some((
            FailureClass::Mismatch,
            format!("data pack {path} is corrupt: its SHA-256 does not match its name"),
        )),
        Err(e) if e.is_not_found() => Some((
            FailureClass::Missing,
            format!("data pack {path} is missing"),
        )),
        Err(e) => Some((
            FailureClass::Unreadable,
            format!("data pack {path} cannot be read: {e}"),
        )),
    }
}

/// Reads the file chunk by chunk, checking each chunk's hash, the size, and the live source.
fn check_file<S: rustic_core::IndexedFull>(
    repo: &rustic_core::Repository<S>,
    node: &Node,
    c: &Candidate,
    check_pack: &mut impl FnMut(Id) -> Option<(FailureClass, String)>,
) -> FileOutcome {
    let source_path = Path::new("/").join(&c.path);
    let unchanged = source_unchanged(&source_path, node);
    let mut source = unchanged.then(|| File::open(&source_path).ok()).flatten();
    let mut source_state = if source.is_some() {
        SourceCheck::Compared
    } else {
        SourceCheck::Changed
    };
    // When the repository fails first, the source was not compared, but a changed source is
    // still reported as changed.
    let not_compared = if unchanged {
        SourceCheck::NotChecked
    } else {
        SourceCheck::Changed
    };
    let mut size = 0u64;
    let mut buf = Vec::new();
    let fail = |class, what: String, source: SourceCheck| FileOutcome {
        failure: Some((class, what)),
        source,
    };
    for data_id in node.content.iter().flatten() {
        let pack = repo.get_index_entry(data_id).map(|ie| *ie.pack);
        let blob = match (
            pack,
            repo.get_blob_cached(&BlobId::from(**data_id), BlobType::Data),
        ) {
            (Err(_), _) => {
                return fail(
                    FailureClass::Missing,
                    format!("chunk {} is not in this target's index", short(data_id)),
                    not_compared,
                );
            }
            (Ok(pack), Err(e)) => {
                let (class, what) = check_pack(pack).unwrap_or((
                    FailureClass::Unreadable,
                    format!(
                        "chunk {} cannot be decoded: {}",
                        short(data_id),
                        e.display_log()
                    ),
                ));
                return fail(class, what, not_compared);
            }
            (Ok(pack), Ok(blob)) => {
                // Registers the pack for its whole-file hash check.
                let _ = check_pack(pack);
                blob
            }
        };
        if Id::new(Sha256::digest(&blob).into()) != **data_id {
            return fail(
                FailureClass::Mismatch,
                format!("chunk {}: SHA-256 does not match its id", short(data_id)),
                not_compared,
            );
        }
        if let Some(f) = source.as_mut() {
            buf.resize(blob.len(), 0);
            if f.read_exact(&mut buf).is_err() || buf[..] != blob[..] {
                return fail(
                    FailureClass::Mismatch,
                    format!(
                        "differs from the live source at byte {size}..{}, which has the snapshot's size and mtime",
                        size + blob.len() as u64
                    ),
                    SourceCheck::Compared,
                );
            }
        }
        size += blob.len() as u64;
    }
    if size != node.meta.size {
        return fail(
            FailureClass::Mismatch,
            format!(
                "assembled {size} bytes, the snapshot says {}",
                node.meta.size
            ),
            not_compared,
        );
    }
    if let Some(f) = source.as_mut()
        && f.read(&mut [0u8; 1]).map_or(true, |n| n > 0)
    {
        source_state = SourceCheck::Changed;
    }
    FileOutcome {
        failure: None,
        source: source_state,
    }
}

/// The live file still has the snapshot's size and mtime.
fn source_unchanged(path: &Path, node: &Node) -> bool {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| rustic_core::jiff::Timestamp::try_from(t).ok());
    m.is_file() && m.len() == node.meta.size && mtime.is_some() && mtime == node.meta.mtime
}

/// Restores the file through rustic_core's restore and checks content, mode and mtime on disk.
fn check_restore<S: rustic_core::IndexedFull>(
    repo: &rustic_core::Repository<S>,
    node: &Node,
    restore_root: &Path,
    c_path: &str,
) -> std::result::Result<(), (FailureClass, String)> {
    let dest = &restore_root.join(c_path);
    let unreadable = |what: String| (FailureClass::Unreadable, what);
    // The sampled path comes from the snapshot, the folder may be the user's: the restore must
    // not leave it, through a name or through a symlink.
    let rel = Path::new(&c_path);
    destination::check_relative(rel)
        .and_then(|()| destination::check_name(&node.name()))
        .and_then(|()| destination::clear_way(restore_root, rel, false, true))
        .map_err(|e| unreadable(e.to_string()))?;
    if dest.exists() {
        std::fs::remove_file(dest)
            .map_err(|e| unreadable(format!("cannot replace {}: {e}", dest.display())))?;
    }
    let d = dest.to_string_lossy();
    let local = LocalDestination::new(&d, true, true)
        .map_err(|e| unreadable(format!("restore: {}", e.display_log())))?;
    let ls = LsOptions::default();
    let opts = RestoreOptions::default();
    let restored = repo
        .ls(node, &ls)
        .and_then(|nodes| repo.prepare_restore(&opts, nodes, &local, false))
        .and_then(|plan| repo.restore(plan, &opts, repo.ls(node, &ls)?, &local));
    restored.map_err(|e| unreadable(format!("restore failed: {}", e.display_log())))?;

    let mut f = File::open(dest)
        .map_err(|e| unreadable(format!("restored file {}: {e}", dest.display())))?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| unreadable(format!("restored file: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        written += n as u64;
    }
    let mismatch = |what: String| (FailureClass::Mismatch, format!("restored file: {what}"));
    // The expected content hash: the chunks in order (each already checked against its id).
    let mut expected = Sha256::new();
    for id in node.content.iter().flatten() {
        let blob = repo
            .get_blob_cached(&BlobId::from(**id), BlobType::Data)
            .map_err(|e| unreadable(e.display_log()))?;
        expected.update(&blob);
    }
    if written != node.meta.size || hasher.finalize() != expected.finalize() {
        return Err(mismatch(format!(
            "content differs ({written} bytes written)"
        )));
    }
    let m = f.metadata().map_err(|e| unreadable(e.to_string()))?;
    if let Some(mode) = node.meta.mode
        && m.permissions().mode() & 0o777 != mode & 0o777
    {
        return Err(mismatch(format!(
            "mode {:o}, the snapshot says {:o}",
            m.permissions().mode() & 0o777,
            mode & 0o777
        )));
    }
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| rustic_core::jiff::Timestamp::try_from(t).ok());
    if node.meta.mtime.is_some() && mtime != node.meta.mtime {
        return Err(mismatch(format!(
            "mtime {mtime:?}, the snapshot says {:?}",
            node.meta.mtime
        )));
    }
    Ok(())
}

fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(12).collect()
}

/// Runs the failure hook: `sh -c COMMAND cairn-verify REPORT`, so `$1` is the report's path;
/// the failing and unreachable targets are in `CAIRN_FAILED_TARGETS` and
/// `CAIRN_UNREACHABLE_TARGETS` (comma-separated).
#[must_use]
pub fn run_hook(command: &str, report_path: &Path, report: &VerifyReport) -> HookResult {
    let status = crate::secret::shell(command)
        .arg("cairn-verify")
        .arg(report_path)
        .env("CAIRN_VERIFY_REPORT", report_path)
        .env("CAIRN_FAILED_TARGETS", report.failed_targets.join(","))
        .env(
            "CAIRN_UNREACHABLE_TARGETS",
            report.unreachable_targets.join(","),
        )
        .env("CAIRN_VERIFY_SEED", report.seed.to_string())
        .status();
    match status {
        Ok(s) => HookResult {
            command: command.to_string(),
            exit_code: s.code(),
            error: None,
        },
        Err(e) => HookResult {
            command: command.to_string(),
            exit_code: None,
            error: Some(e.to_string()),
        },
    }
}

/// Writes the report as JSON to `path`.
///
/// # Errors
/// The file cannot be written.
pub fn write_report(report: &VerifyReport, path: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(|e| Error::Input(e.to_string()))?;
    crate::state::write_private(path, &json)
}
