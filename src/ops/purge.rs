//! `cairn purge PATTERN...`: one data subject's files out of every backup (GDPR article 17).
//!
//! Order: under the lock, every target brought level, then every snapshot walked; each one
//! holding a path the patterns match (as `restore --include`) is rewritten without those paths
//! through the fan-out (rustic_core's rewrite: a new snapshot with the same time, host, paths
//! and tags, tagged `purged`; a folder that matches goes with all it holds). Then the old
//! snapshots are forgotten through a deletion record ([`super::forget`]), and a prune that keeps
//! no unused byte removes the data only those paths used from every pack on every target taking
//! part ([`super::prune`]); a target that is away obeys both records when it is back. Last, the
//! purged files' chunk ids are looked up in every index file of every reachable target: the
//! report says, per target, whether any is still indexed there, and names the chunks kept
//! because a file that stays holds the same bytes.
//!
//! Run again, a purge finds nothing left to rewrite; one interrupted after the rewrite finds
//! the rewritten snapshot (its `original` is the old one) and only forgets and prunes.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use rustic_core::{
    FileType, Id, IndexedFull, LsOptions, ProgressBars, Repository, RewriteOptions,
    RewriteTreesOptions, repofile::SnapshotFile,
};
use serde::Serialize;

use crate::{
    context::Context,
    erasure::{self, Certificate, Kind, Register},
    error::{Error, Result},
    lock::LockedTargets,
    ops::{forget, prune, sync},
    probe::Probe,
    report::TargetState,
    secret::Secret,
    selection::Patterns,
};

/// The tag a rewritten snapshot carries.
pub const TAG: &str = "purged";

/// What to purge.
#[derive(Debug, Clone, Default)]
pub struct PurgeOptions {
    /// Glob patterns (a pattern without `/` matches a name, one with `/` a whole path).
    pub patterns: Vec<String>,
    /// List what would go, change nothing.
    pub dry_run: bool,
    /// Why, for the certificate.
    pub reason: String,
    /// Consider only these snapshots (ids); `None`: every one.
    pub only: Option<BTreeSet<String>>,
}

/// One snapshot holding purged paths.
#[derive(Debug, Clone, Serialize)]
pub struct PurgedSnapshot {
    /// The snapshot as it was.
    pub id: String,
    /// Its time.
    pub time: String,
    /// The rewritten snapshot (unset in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewritten_as: Option<String>,
    /// The paths removed from it (a folder stands for all it holds).
    pub paths: Vec<String>,
    /// Files among them.
    pub files: usize,
}

/// A purged chunk that stays: a file that is kept holds the same bytes.
#[derive(Debug, Clone, Serialize)]
pub struct KeptChunk {
    /// Chunk id.
    pub chunk: String,
    /// A kept file holding it (`/path`, in snapshot `snapshot`).
    pub kept_by: String,
    /// That snapshot.
    pub snapshot: String,
}

/// One target's index files and pack headers, after the purge.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkCheck {
    /// Target name.
    pub name: String,
    /// Whether its index files and every pack's header could be read.
    pub checked: bool,
    /// Purged chunks (not shared with a kept file) still indexed there.
    pub still_indexed: Vec<String>,
    /// Packs whose header was read.
    pub packs_checked: usize,
    /// Purged chunks (not shared with a kept file) still in a pack there, indexed or not.
    pub still_in_packs: Vec<String>,
    /// Why it was not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a purge found and did.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    /// The patterns.
    pub patterns: Vec<String>,
    /// Nothing was changed on purpose.
    pub dry_run: bool,
    /// Every snapshot that held a matching path.
    pub snapshots: Vec<PurgedSnapshot>,
    /// Distinct chunks of the purged files.
    pub chunks: usize,
    /// Purged chunks that stay because kept files hold the same bytes.
    pub kept_chunks: Vec<KeptChunk>,
    /// The forget of the old snapshots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forget: Option<forget::ForgetReport>,
    /// The prune that removed their data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<prune::PruneReport>,
    /// Per target: whether a purged chunk is still indexed there.
    pub index_check: Vec<ChunkCheck>,
    /// Whether every target holds none of the purged chunks (shared ones aside).
    pub complete: bool,
    /// Whether a required target did not take part, or a step was deferred.
    pub partial: bool,
    /// The erasure certificate (`cairn erasures`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Certificate>,
    /// Every snapshot once the rewrite was done: what this purge has judged.
    #[serde(skip)]
    pub judged: Vec<String>,
}

/// What a walk of one snapshot matched.
struct Matched {
    /// Top-most matching paths (relative, no leading `/`).
    paths: Vec<PathBuf>,
    /// Files under them.
    files: usize,
    /// Their chunks.
    chunks: BTreeSet<Id>,
}

/// The paths of `snap` the patterns match, and the chunks of the files they hold.
fn walk<S: IndexedFull>(
    repo: &Repository<S>,
    snap: &SnapshotFile,
    patterns: &Patterns,
) -> Result<Matched> {
    let root = repo.node_from_snapshot_and_path(snap, "")?;
    let mut out = Matched {
        paths: Vec::new(),
        files: 0,
        chunks: BTreeSet::new(),
    };
    for item in repo.ls(&root, &LsOptions::default().recursive(true))? {
        let (path, node) = item?;
        let inside = out.paths.iter().any(|p| path.starts_with(p));
        if !inside && patterns.matches(&Path::new("/").join(&path)) {
            out.paths.push(path.clone());
        } else if !inside {
            continue;
        }
        if let Some(content) = &node.content {
            out.files += 1;
            out.chunks.extend(content.iter().map(|c| **c));
        }
    }
    Ok(out)
}

/// A path as a glob that matches exactly it (anchored at the snapshot's root).
fn exact_glob(path: &Path) -> String {
    let mut g = String::from("!/");
    for c in path.to_string_lossy().chars() {
        // Spaces too: gitignore-style globs drop unescaped trailing spaces.
        if matches!(
            c,
            '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '!' | ' ' | '#'
        ) {
            g.push('\\');
        }
        g.push(c);
    }
    g
}

/// Purges the paths `opts.patterns` match from every snapshot, on every target.
///
/// # Errors
/// No pattern, or one that is not a glob; no repository; wrong password; the lock is held;
/// the rewrite failed (nothing was forgotten then).
pub fn run<P: ProgressBars + Clone>(
    ctx: &Context,
    password: &Secret,
    opts: &PurgeOptions,
    pb: &P,
) -> Result<PurgeReport> {
    if opts.patterns.is_empty() {
        return Err(Error::Usage("purge needs at least one pattern".into()));
    }
    let trimmed: Vec<String> = opts
        .patterns
        .iter()
        .map(|p| match p.trim_end_matches('/') {
            "" => p.clone(),
            t => t.to_string(),
        })
        .collect();
    let patterns = Patterns::new(&trimmed)?;
    let cfg = ctx.cfg();
    let mut report = PurgeReport {
        patterns: opts.patterns.clone(),
        dry_run: opts.dry_run,
        snapshots: Vec::new(),
        chunks: 0,
        kept_chunks: Vec::new(),
        forget: None,
        prune: None,
        index_check: Vec::new(),
        complete: false,
        partial: false,
        certificate: None,
        judged: Vec::new(),
    };
    let mut chunks: BTreeSet<Id> = BTreeSet::new();
    let mut old_ids: Vec<String> = Vec::new();
    {
        let mut locked = LockedTargets::acquire(ctx, "purge")?;
        locked.prove(password)?;
        let observer = ctx.observer().clone();
        sync::run(&locked, None, cfg.retention.records_for(), &observer, pb)?;
        locked.reprobe()?;
        let session = locked.writer(&[])?;
        let proof = locked.proof().ok_or(Error::NoRepository)?;
        let repo = session.repository_with(proof, pb.clone())?.to_indexed()?;
        let snaps = repo.get_all_snapshots()?;
        // Rewritten by an earlier, interrupted purge: the old one need only be forgotten.
        let rewritten: BTreeMap<String, String> = snaps
            .iter()
            .filter(|s| s.tags.contains(TAG))
            .filter_map(|s| {
                let original = s.original?;
                (original != s.id)
                    .then(|| (original.to_hex().to_string(), s.id.to_hex().to_string()))
            })
            .collect();
        let mut to_rewrite = Vec::new();
        let mut excludes = BTreeSet::new();
        for snap in &snaps {
            if opts
                .only
                .as_ref()
                .is_some_and(|only| !only.contains(snap.id.to_hex().as_str()))
            {
                continue;
            }
            let m = walk(&repo, snap, &patterns)?;
            if m.paths.is_empty() {
                continue;
            }
            let id = snap.id.to_hex().to_string();
            chunks.extend(m.chunks);
            excludes.extend(m.paths.iter().map(|p| exact_glob(p)));
            report.snapshots.push(PurgedSnapshot {
                rewritten_as: rewritten.get(&id).cloned(),
                id: id.clone(),
                time: snap.time.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                paths: m
                    .paths
                    .iter()
                    .map(|p| format!("/{}", p.display()))
                    .collect(),
                files: m.files,
            });
            old_ids.push(id.clone());
            if !rewritten.contains_key(&id) {
                to_rewrite.push(snap.clone());
            }
        }
        report.chunks = chunks.len();
        if opts.dry_run || report.snapshots.is_empty() {
            report.complete = report.snapshots.is_empty();
            return Ok(report);
        }
        let mut tree_opts = RewriteTreesOptions::default();
        tree_opts.excludes.globs = excludes.into_iter().collect();
        let tag: rustic_core::StringList = TAG
            .parse()
            .map_err(|e| Error::Input(format!("tag {TAG}: {e:?}")))?;
        let rewrite_opts = RewriteOptions::default()
            .forget(false)
            .tags_rewritten(Some(tag));
        repo.rewrite_snapshots_and_trees(to_rewrite, &rewrite_opts, &tree_opts)?;
        // rustic_core returns the snapshots with their old ids; the new ids are listed again.
        let fresh: BTreeMap<String, String> = repo
            .get_all_snapshots()?
            .iter()
            .filter(|s| s.tags.contains(TAG))
            .filter_map(|s| Some((s.original?.to_hex().to_string(), s.id.to_hex().to_string())))
            .filter(|(o, n)| o != n)
            .collect();
        let failed: Vec<String> = session
            .outcomes()
            .iter()
            .filter(|t| t.state == crate::report::TargetState::Failed)
            .map(|t| format!("`{}`", t.name))
            .collect();
        for s in &mut report.snapshots {
            s.rewritten_as = fresh.get(&s.id).cloned();
        }
        report.judged = repo
            .get_all_snapshots()?
            .iter()
            .map(|s| s.id.to_hex().to_string())
            .collect();
        if report.snapshots.iter().any(|s| s.rewritten_as.is_none()) {
            return Err(Error::Input(format!(
                "the rewrite did not produce a purged snapshot for every one holding the paths; \
                 nothing was forgotten{}",
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(" (failed: {})", failed.join(", "))
                }
            )));
        }
        for id in &old_ids {
            ctx.trail().snapshot(id);
        }
    }
    let forgotten = forget::run(
        ctx,
        password,
        &forget::ForgetOptions {
            ids: old_ids,
            ..forget::ForgetOptions::default()
        },
    )?;
    report.partial |= forgotten.partial;
    report.forget = Some(forgotten);
    let pruned = prune::run(
        ctx,
        password,
        &prune::PruneOptions {
            max_unused: "0".into(),
            max_repack: "unlimited".into(),
            dry_run: false,
            purge: true,
        },
        pb,
    )?;
    report.partial |= pruned.partial;
    report.prune = Some(pruned);
    let (kept, checks) = look_up(ctx, password, &chunks)?;
    report.kept_chunks = kept;
    report.complete = checks
        .iter()
        .all(|c| c.checked && c.still_indexed.is_empty() && c.still_in_packs.is_empty());
    report.index_check = checks;
    report.certificate = Some(certify(ctx, opts, &report)?);
    Ok(report)
}

/// The purge's erasure certificate, in the register: per target, applied when it took part in
/// both the forget and the prune, with what the prune removed there and the purged chunks its
/// index still names. A target that was away is marked when it has caught up
/// ([`super::erase::resume`]).
fn certify(ctx: &Context, opts: &PurgeOptions, report: &PurgeReport) -> Result<Certificate> {
    let cfg = ctx.cfg();
    let names: Vec<String> = cfg.targets.iter().map(|t| t.name.clone()).collect();
    let repository = cfg
        .client
        .clone()
        .or_else(|| cfg.repository.name.clone())
        .unwrap_or_else(|| "repository".into());
    let mut cert = Certificate::new(
        Kind::Purge,
        &repository,
        &opts.reason,
        &ctx.trail().operator(),
        &names,
    );
    cert.folder = cfg.client.clone().unwrap_or_default();
    cert.patterns.clone_from(&report.patterns);
    cert.snapshots = report.snapshots.iter().map(|s| s.id.clone()).collect();
    cert.judged.clone_from(&report.judged);
    cert.chunks = report.chunks as u64;
    cert.kept_chunks = report
        .kept_chunks
        .iter()
        .map(|k| format!("{}: {} in {}", k.chunk, k.kept_by, k.snapshot))
        .collect();
    let forgotten = report.forget.as_ref();
    let pruned = report.prune.as_ref();
    cert.files = cert
        .snapshots
        .iter()
        .map(|id| format!("snapshots/{id}"))
        .chain(pruned.iter().flat_map(|p| p.removed_files.iter().cloned()))
        .collect();
    let now = crate::state::now();
    for a in &mut cert.targets {
        let forgot = forgotten.and_then(|f| f.targets.iter().find(|t| t.name == a.target));
        let prune = pruned.and_then(|p| p.targets.iter().find(|t| t.name == a.target));
        let check = report.index_check.iter().find(|c| c.name == a.target);
        let took_part = forgot.is_some_and(|t| t.state == TargetState::Complete)
            && prune.is_some_and(|t| t.state == TargetState::Complete)
            && pruned.is_some_and(|p| p.record.is_some());
        if let Some(c) = check.filter(|c| c.checked) {
            let left: BTreeSet<&String> = c.still_indexed.iter().chain(&c.still_in_packs).collect();
            a.chunks_left = Some(left.len() as u64);
        }
        if took_part {
            a.applied = Some(now.clone());
            a.files = forgot.map_or(0, |t| t.snapshots_removed as u64)
                + prune.map_or(0, |t| t.files_removed as u64);
            a.bytes = prune.map_or(0, |t| t.bytes_removed);
        } else {
            a.detail = prune
                .and_then(|t| t.detail.clone())
                .or_else(|| pruned.and_then(|p| p.deferred.clone()))
                .or_else(|| Some("away: obeys at its next catch-up".into()));
        }
    }
    cert.settle();
    let dir = erasure::dir(cfg);
    Register::update(&dir, |r| r.certificates.push(cert.clone()))?;
    // Each target that took part keeps a sealed copy, beside the repository.
    let key = erasure::key(&dir)?;
    let (path, bytes) = erasure::seal(&cert, &key)?;
    let probed = crate::probe::probe_all(ctx, None)?;
    crate::par::each(&probed, |p| {
        if let Some(store) = &p.store
            && cert
                .target_part(&p.cfg.name)
                .is_some_and(|a| a.applied.is_some())
            && let Err(e) = store.write(&path, vec![bytes.clone()])
        {
            ctx.observer().warn(&format!(
                "`{}`: the purge's certificate was not copied there: {e}",
                p.cfg.name
            ));
        }
    });
    Ok(cert)
}

/// Purges again what came back from before a purge: a snapshot a target got while it was cut
/// off from the others (a USB disk backed up alone), older than a purge of this repository and
/// never judged by it, reaches the others at catch-up with its data; here it is rewritten
/// without the purge's paths, forgotten, and the data pruned, as the purge itself did. Each
/// purge's certificate then counts the snapshots as judged. Returns one report per purge that
/// found such snapshots (none: nothing came back).
///
/// # Errors
/// As [`run`]; the register cannot be read.
pub fn again<P: ProgressBars + Clone>(
    ctx: &Context,
    password: &Secret,
    pb: &P,
) -> Result<Vec<PurgeReport>> {
    let cfg = ctx.cfg();
    let dir = erasure::dir(cfg);
    let folder = cfg.client.clone().unwrap_or_default();
    let purges: Vec<Certificate> = Register::load(&dir)?
        .certificates
        .into_iter()
        .filter(|c| c.kind == Kind::Purge && c.folder == folder)
        .collect();
    if purges.is_empty() {
        return Ok(Vec::new());
    }
    let snaps: Vec<(String, jiff::Timestamp)> = {
        let mut locked = LockedTargets::acquire(ctx, "purge")?;
        locked.prove(password)?;
        let proof = locked.proof().ok_or(Error::NoRepository)?;
        let session = crate::session::Session::from_probed(
            ctx,
            locked.probed().to_vec(),
            Vec::new(),
            crate::session::Mode::Read,
            &[],
        )?;
        session
            .reader(proof, rustic_core::NoProgressBars)?
            .get_all_snapshots()?
            .iter()
            .map(|s| (s.id.to_hex().to_string(), s.time.timestamp()))
            .collect()
    };
    let mut out = Vec::new();
    for cert in purges {
        let came_back = came_back(&snaps, &cert);
        if came_back.is_empty() {
            continue;
        }
        let opts = PurgeOptions {
            patterns: cert.patterns.clone(),
            dry_run: false,
            reason: format!(
                "again (purge {}): {} snapshot(s) from before it came back",
                cert.id,
                came_back.len()
            ),
            only: Some(came_back.clone()),
        };
        let r = run(ctx, password, &opts, pb)?;
        let judged: Vec<String> = came_back.into_iter().chain(r.judged.clone()).collect();
        Register::update(&dir, |reg| {
            if let Some(c) = reg.certificates.iter_mut().find(|c| c.id == cert.id) {
                for id in judged {
                    if !c.judged.contains(&id) {
                        c.judged.push(id);
                    }
                }
            }
        })?;
        if !r.snapshots.is_empty() {
            out.push(r);
        }
    }
    Ok(out)
}

/// The snapshots from before `cert`'s purge that it never judged. Its time is kept to the
/// second: a snapshot taken within that second counts as before it (it may hold the paths).
fn came_back(snaps: &[(String, jiff::Timestamp)], cert: &Certificate) -> BTreeSet<String> {
    let Some(next_second) = cert
        .decided
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| t.checked_add(jiff::SignedDuration::from_secs(1)).ok())
    else {
        return BTreeSet::new();
    };
    snaps
        .iter()
        .filter(|(id, time)| *time < next_second && !cert.judged.contains(id))
        .map(|(id, _)| id.clone())
        .collect()
}

/// The purged chunks that kept files hold (each with one such file), and per target the
/// others still indexed there: read from each target's own index files, not from the plan.
fn look_up(
    ctx: &Context,
    password: &Secret,
    chunks: &BTreeSet<Id>,
) -> Result<(Vec<KeptChunk>, Vec<ChunkCheck>)> {
    let mut locked = LockedTargets::acquire(ctx, "purge")?;
    locked.prove(password)?;
    let proof = locked.proof().ok_or(Error::NoRepository)?;
    let session = crate::session::Session::from_probed(
        ctx,
        locked.probed().to_vec(),
        Vec::new(),
        crate::session::Mode::Read,
        &[],
    )?;
    let repo = session
        .reader(proof, rustic_core::NoProgressBars)?
        .to_indexed()?;
    let mut kept: BTreeMap<Id, KeptChunk> = BTreeMap::new();
    for snap in repo.get_all_snapshots()? {
        let root = repo.node_from_snapshot_and_path(&snap, "")?;
        for item in repo.ls(&root, &LsOptions::default().recursive(true))? {
            let (path, node) = item?;
            for c in node.content.iter().flatten() {
                if chunks.contains(&**c) && !kept.contains_key(&**c) {
                    kept.insert(
                        **c,
                        KeptChunk {
                            chunk: c.to_hex().to_string(),
                            kept_by: format!("/{}", path.display()),
                            snapshot: snap.id.to_hex().to_string(),
                        },
                    );
                }
            }
        }
    }
    let gone: BTreeSet<&Id> = chunks.iter().filter(|c| !kept.contains_key(c)).collect();
    let checks = crate::par::each(locked.probed(), |p| {
        let mut check = ChunkCheck {
            name: p.cfg.name.clone(),
            checked: false,
            still_indexed: Vec::new(),
            packs_checked: 0,
            still_in_packs: Vec::new(),
            detail: None,
        };
        let (Probe::Ready { index, .. }, Some(store)) = (&p.probe, p.store.as_deref()) else {
            check.detail = Some(
                p.unusable()
                    .map_or_else(|| "not reachable".into(), |(_, why)| why),
            );
            return check;
        };
        let mut found = BTreeSet::new();
        for id in index {
            let path = crate::layout::file_path(FileType::Index, id);
            let opened = store
                .read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| proof.open_index(&path, &b));
            match opened {
                Ok(ix) => {
                    for pack in ix.packs.iter().chain(&ix.packs_to_delete) {
                        found.extend(
                            pack.blobs
                                .iter()
                                .filter(|b| gone.contains(&*b.id))
                                .map(|b| b.id.to_hex().to_string()),
                        );
                    }
                }
                Err(e) => {
                    check.detail = Some(format!("{path}: {e}"));
                    return check;
                }
            }
        }
        check.still_indexed = found.into_iter().collect();
        // Every pack, by its own header: an unindexed pack left behind still holds bytes.
        let packs = match store.list("data") {
            Ok(p) => p,
            Err(e) => {
                check.detail = Some(format!("data/: {e}"));
                return check;
            }
        };
        let mut in_packs = BTreeSet::new();
        for (rel, _) in packs {
            let Some(id) = rel.rsplit('/').next().and_then(|h| h.parse::<Id>().ok()) else {
                continue;
            };
            match super::verify::header::read(store, proof.cipher(), &id).0 {
                Ok(entries) => {
                    in_packs.extend(
                        entries
                            .iter()
                            .filter(|e| gone.contains(&e.id))
                            .map(|e| e.id.to_hex().to_string()),
                    );
                    check.packs_checked += 1;
                }
                Err((_, why)) => {
                    check.detail = Some(format!("data/{rel} {why}"));
                    return check;
                }
            }
        }
        check.still_in_packs = in_packs.into_iter().collect();
        check.checked = true;
        check
    });
    Ok((kept.into_values().collect(), checks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_taken_in_the_second_a_purge_was_decided_came_back_if_never_judged() {
        let mut cert = Certificate::new(Kind::Purge, "acme", "art. 17", "op", &[]);
        cert.decided = "2026-12-08T01:26:14Z".into();
        cert.judged = vec!["judged".into()];
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let snaps = vec![
            ("before".to_string(), at("2026-12-08T01:26:13.9Z")),
            ("same-second".to_string(), at("2026-12-08T01:26:14.6Z")),
            ("judged".to_string(), at("2026-12-08T01:26:10Z")),
            ("after".to_string(), at("2026-12-08T01:26:15Z")),
        ];
        let back: Vec<String> = came_back(&snaps, &cert).into_iter().collect();
        assert_eq!(back, ["before", "same-second"]);
    }

    #[test]
    fn an_exact_glob_removes_exactly_its_path_whatever_the_name() {
        let names = [
            "srv/hr/j.jansen",
            "srv/hr/a*b?[c]{d}",
            "srv/hr/trailing space ",
            "srv/hr/!bang #hash",
            "srv/hr/back\\slash",
        ];
        let mut opts = RewriteTreesOptions::default();
        opts.excludes.globs = names.iter().map(|n| exact_glob(Path::new(n))).collect();
        let over = opts.excludes.as_override().unwrap();
        for n in names {
            assert!(over.matched(n, true).is_ignore(), "{n:?} is excluded");
            assert!(over.matched(n, false).is_ignore(), "{n:?} is excluded");
        }
        for other in [
            "srv/hr/j.jansen2",
            "srv/hr/axxb?[c]{d}",
            "srv/hr/trailing space",
            "srv/hr",
            "other/srv/hr/j.jansen",
        ] {
            assert!(!over.matched(other, true).is_ignore(), "{other:?} is kept");
        }
    }
}
