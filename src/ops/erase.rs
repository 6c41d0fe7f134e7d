//! `cairn erase --repo NAME`: a whole client's repository off every target it used.
//!
//! Order: under the repository lock, the password is proven (only the key holder decides an
//! erasure) and each target's copy is sized; after the caller's confirmation the decision is
//! saved in the file's erasure register ([`crate::erasure`]), the lock is let go, and every
//! reachable target is wiped: key files first (what is left can no longer be decrypted by
//! anyone), then `config`, snapshots, index, packs and cairn's own folders. Each wiped target
//! receives a sealed copy of the certificate, the only file the client's folder keeps.
//!
//! A target that was away is wiped by the next command of the configuration file that writes
//! anywhere, whatever client it is for ([`resume`]); the same pass erases again a copy that
//! comes back (a rotated disk copied before the erasure), known by its `config` file's hash,
//! and marks purges obeyed on targets that caught up with them. Nothing on a target ever
//! starts an erasure: the register is the only authority.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    config::{Config, TargetConfig},
    context::Context,
    erasure::{self, Applied, Certificate, Kind, Register},
    error::{Error, Result},
    layout::{AUDIT_DIR, DELETIONS_DIR, KEYS_DIR, LOCK_DIR, QUARANTINE_DIR, TMP_DIR},
    lock::LockedTargets,
    secret::Secret,
    store::{Store, StoreResult},
};

/// A repository's folders, in the order they are wiped: keys first, so an interrupted
/// erasure leaves nothing anyone can decrypt; `config` goes right after them.
const FOLDERS: [&str; 11] = [
    "keys",
    KEYS_DIR,
    "snapshots",
    "index",
    "data",
    "locks",
    LOCK_DIR,
    DELETIONS_DIR,
    AUDIT_DIR,
    QUARANTINE_DIR,
    TMP_DIR,
];

/// What to erase.
#[derive(Debug, Clone, Default)]
pub struct EraseOptions {
    /// Why (kept in the certificate): "request of ...", "contract end".
    pub reason: String,
    /// Show what would go; change nothing.
    pub dry_run: bool,
}

/// One target's copy of the repository, and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetErasure {
    /// Target name.
    pub name: String,
    /// `erased`, `pending` (away: erased when next reachable) or `held` (dry run, or before
    /// confirmation).
    pub state: String,
    /// Files of the repository there (before), or removed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Why it is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What an erase found and did.
#[derive(Debug, Clone, Serialize)]
pub struct EraseReport {
    /// The client.
    pub repository: String,
    /// Nothing was changed on purpose.
    pub dry_run: bool,
    /// Whether the erasure was decided (confirmed, or erased before).
    pub decided: bool,
    /// Per target.
    pub targets: Vec<TargetErasure>,
    /// The largest copy's bytes.
    pub bytes: u64,
    /// The certificate, once decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Certificate>,
}

fn at(folder: &str, path: &str) -> String {
    if folder.is_empty() {
        path.to_string()
    } else {
        format!("{folder}/{path}")
    }
}

/// Every file of the repository in `folder` of `root`, in wiping order (paths from the root).
fn holdings(root: &dyn Store, folder: &str) -> StoreResult<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for (i, dir) in FOLDERS.iter().enumerate() {
        let dir = at(folder, dir);
        out.extend(
            root.list(&dir)?
                .into_iter()
                .map(|(rel, size)| (format!("{dir}/{rel}"), size)),
        );
        if i == 1 {
            let config = at(folder, "config");
            if let Some(size) = root.stat(&config)? {
                out.push((config, size));
            }
        }
    }
    Ok(out)
}

/// Removes the repository in `folder`, checks that nothing of it is left, and writes the
/// certificate's copy (with this target's part filled in) beside where it was.
fn wipe(
    root: &dyn Store,
    folder: &str,
    cert: &Certificate,
    target: &str,
    key: &[u8],
) -> std::result::Result<Applied, String> {
    let mut done = Applied {
        target: target.to_string(),
        ..Applied::default()
    };
    for (path, size) in holdings(root, folder).map_err(|e| e.to_string())? {
        root.delete(&path)
            .map_err(|e| format!("removing {path}: {e}"))?;
        done.files += 1;
        done.bytes += size;
    }
    let left = holdings(root, folder).map_err(|e| e.to_string())?;
    if let Some((first, _)) = left.first() {
        return Err(format!(
            "{} file(s) still there after removal, first {first}",
            left.len()
        ));
    }
    done.applied = Some(crate::state::now());
    let mut copy = cert.clone();
    if let Some(a) = copy.target_mut(target) {
        *a = done.clone();
    }
    let (path, bytes) = erasure::seal(&copy, key).map_err(|e| e.to_string())?;
    root.write(&at(folder, &path), vec![bytes])
        .map_err(|e| format!("writing the certificate's copy: {e}"))?;
    Ok(done)
}

/// The root of the file's target `name` (where every client has its folder).
fn root_of<'a>(cfg: &'a Config, name: &str) -> Option<&'a TargetConfig> {
    cfg.file_targets.iter().find(|t| t.name == name)
}

/// Erases the client `ctx` is for from every target it uses; `confirm` sees the sizes first
/// and may call it off (nothing is then changed).
///
/// # Errors
/// Not a client of a file of `[[repository]]` sections; wrong password; no repository on any
/// reachable target; the lock is held; the register cannot be written (nothing is removed).
pub fn run(
    ctx: &Context,
    password: &Secret,
    opts: &EraseOptions,
    confirm: &mut dyn FnMut(&EraseReport) -> bool,
) -> Result<EraseReport> {
    let cfg = ctx.cfg();
    let client = cfg.client.clone().ok_or_else(|| {
        Error::Usage(
            "erase works on one client of a file of [[repository]] sections (each in its own \
             folder on the targets); a file of one repository is erased by removing its \
             targets' folders"
                .into(),
        )
    })?;
    let dir = erasure::dir(cfg);
    if let Some(cert) = Register::load(&dir)?.erased(&client).cloned() {
        // Decided before: finish it where it is still pending.
        let _ = resume(ctx);
        let cert = Register::load(&dir)?
            .erased(&client)
            .cloned()
            .unwrap_or(cert);
        return Ok(report_of(&client, &cert));
    }
    let mut locked = LockedTargets::acquire(ctx, "erase")?;
    locked.prove(password)?;
    let proof = locked.proof().ok_or(Error::NoRepository)?;
    let config_sha = erasure::config_hash(proof.config());
    let names: Vec<String> = cfg.targets.iter().map(|t| t.name.clone()).collect();
    let sized = crate::par::each(&names, |name| {
        let sized = root_of(cfg, name)
            .ok_or_else(|| "not configured".to_string())
            .and_then(|t| {
                let root = ctx
                    .open_store(t)
                    .map_err(|e| crate::probe::unusable_by(&e).1)?;
                holdings(root.as_ref(), &client).map_err(|e| crate::probe::unusable_by(&e).1)
            });
        match sized {
            Ok(files) => TargetErasure {
                name: name.clone(),
                state: "held".into(),
                files: files.len() as u64,
                bytes: files.iter().map(|(_, s)| s).sum(),
                detail: None,
            },
            Err(why) => TargetErasure {
                name: name.clone(),
                state: "pending".into(),
                files: 0,
                bytes: 0,
                detail: Some(why),
            },
        }
    });
    let mut report = EraseReport {
        repository: client.clone(),
        dry_run: opts.dry_run,
        decided: false,
        bytes: sized.iter().map(|t| t.bytes).max().unwrap_or(0),
        targets: sized,
        certificate: None,
    };
    if opts.dry_run || !confirm(&report) {
        return Ok(report);
    }
    let mut cert = Certificate::new(
        Kind::Repository,
        &client,
        &opts.reason,
        &ctx.trail().operator(),
        &names,
    );
    cert.folder.clone_from(&client);
    cert.config_sha256 = Some(config_sha);
    cert.bytes = report.bytes;
    Register::update(&dir, |r| r.certificates.push(cert.clone()))?;
    // Its audit records stay in the local log: the targets' copies go with the repository.
    ctx.trail().keep_local();
    drop(locked);
    let _ = resume(ctx);
    let cert = Register::load(&dir)?
        .erased(&client)
        .cloned()
        .unwrap_or(cert);
    report = EraseReport {
        bytes: report.bytes,
        ..report_of(&client, &cert)
    };
    Ok(report)
}

fn report_of(client: &str, cert: &Certificate) -> EraseReport {
    EraseReport {
        repository: client.to_string(),
        dry_run: false,
        decided: true,
        bytes: cert.bytes,
        targets: cert
            .targets
            .iter()
            .map(|a| TargetErasure {
                name: a.target.clone(),
                state: if a.applied.is_some() {
                    "erased"
                } else {
                    "pending"
                }
                .into(),
                files: a.files,
                bytes: a.bytes,
                detail: a.detail.clone(),
            })
            .collect(),
        certificate: Some(cert.clone()),
    }
}

/// What [`resume`] did on one target for one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct Resumed {
    /// The repository erased or purged.
    pub repository: String,
    /// The target.
    pub target: String,
    /// `erased`, `erased again` (a copy came back), `purge obeyed`, or `pending`.
    pub what: String,
    /// Files and bytes removed.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
    /// Why it is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Finishes the erasures of the configuration file where they are pending, erases again a
/// copy of an erased repository that came back, and marks purges obeyed where a target has
/// caught up. Problems are reported as pending, never as a failure of the command at hand.
#[must_use]
pub fn resume(ctx: &Context) -> Vec<Resumed> {
    let cfg = ctx.cfg();
    let dir = erasure::dir(cfg);
    let register = match Register::load(&dir) {
        Ok(r) => r,
        Err(e) => {
            ctx.observer()
                .warn(&format!("erasure register not read: {e}"));
            return Vec::new();
        }
    };
    // Repository erasures are looked at for good (a copy may come back); purges until final.
    let live: Vec<&Certificate> = register
        .certificates
        .iter()
        .filter(|c| c.kind == Kind::Repository || c.done.is_none())
        .collect();
    if live.is_empty() {
        return Vec::new();
    }
    let key = match erasure::key(&dir) {
        Ok(k) => k,
        Err(e) => {
            ctx.observer().warn(&format!("erasures not resumed: {e}"));
            return Vec::new();
        }
    };
    let mut by_target: BTreeMap<&str, Vec<&Certificate>> = BTreeMap::new();
    for c in &live {
        for a in &c.targets {
            by_target.entry(a.target.as_str()).or_default().push(c);
        }
    }
    let targets: Vec<(&str, Vec<&Certificate>)> = by_target.into_iter().collect();
    let done: Vec<Vec<(String, Resumed, Option<Applied>)>> =
        crate::par::each(&targets, |(name, certs)| on_target(ctx, name, certs, &key));
    let done: Vec<(String, Resumed, Option<Applied>)> = done.into_iter().flatten().collect();
    let changed: Vec<&(String, Resumed, Option<Applied>)> =
        done.iter().filter(|(_, _, a)| a.is_some()).collect();
    if !changed.is_empty() {
        let saved = Register::update(&dir, |r| {
            for (id, _, applied) in &changed {
                let Some(cert) = r.certificates.iter_mut().find(|c| &c.id == id) else {
                    continue;
                };
                if let Some(new) = applied
                    && let Some(a) = cert.target_mut(&new.target)
                {
                    merge(a, new);
                }
                cert.settle();
            }
        });
        if let Err(e) = saved {
            ctx.observer()
                .warn(&format!("erasure register not updated: {e}"));
        }
    }
    done.into_iter().map(|(_, r, _)| r).collect()
}

/// A target's part as found now, over what the register held.
fn merge(into: &mut Applied, new: &Applied) {
    if into.applied.is_none() {
        into.applied.clone_from(&new.applied);
        into.files = new.files;
        into.bytes = new.bytes;
        into.detail = None;
    }
    if new.chunks_left.is_some() {
        into.chunks_left = new.chunks_left;
    }
    for r in &new.returned {
        if !into.returned.contains(r) {
            into.returned.push(r.clone());
        }
    }
}

/// One target, every live certificate naming it: (certificate id, what was done, the part to
/// record when something changed).
fn on_target(
    ctx: &Context,
    name: &str,
    certs: &[&Certificate],
    key: &[u8],
) -> Vec<(String, Resumed, Option<Applied>)> {
    let cfg = ctx.cfg();
    let resumed = |c: &Certificate, what: &str, detail: Option<String>| Resumed {
        repository: c.repository.clone(),
        target: name.to_string(),
        what: what.into(),
        files: 0,
        bytes: 0,
        detail,
    };
    let root = root_of(cfg, name)
        .ok_or_else(|| format!("target `{name}` is no longer configured"))
        .and_then(|t| {
            ctx.open_store(t)
                .map_err(|e| crate::probe::unusable_by(&e).1)
        });
    let root = match root {
        Ok(r) => r,
        Err(why) => {
            return certs
                .iter()
                .filter(|c| c.target_part(name).is_some_and(|a| a.applied.is_none()))
                .map(|c| (c.id.clone(), resumed(c, "pending", Some(why.clone())), None))
                .collect();
        }
    };
    let mut out = Vec::new();
    for c in certs {
        let Some(part) = c.target_part(name) else {
            continue;
        };
        let folder = c.folder.as_str();
        match c.kind {
            Kind::Repository => {
                let returned = part.applied.is_some();
                if returned {
                    // Known by its `config`: a new repository of that name is not ours.
                    let back = root
                        .read(&at(folder, "config"))
                        .ok()
                        .is_some_and(|b| Some(erasure::config_hash(&b)) == c.config_sha256);
                    if !back {
                        continue;
                    }
                }
                match wipe(root.as_ref(), folder, c, name, key) {
                    Ok(mut a) => {
                        let what = if returned {
                            a.returned.push(a.applied.clone().unwrap_or_default());
                            "erased again"
                        } else {
                            "erased"
                        };
                        let mut r = resumed(c, what, None);
                        (r.files, r.bytes) = (a.files, a.bytes);
                        out.push((c.id.clone(), r, Some(a)));
                    }
                    Err(why) => out.push((c.id.clone(), resumed(c, "pending", Some(why)), None)),
                }
            }
            Kind::Purge => {
                if part.applied.is_some() {
                    continue;
                }
                match obeyed(root.as_ref(), folder, &c.files) {
                    Ok(true) => {
                        let a = Applied {
                            target: name.to_string(),
                            applied: Some(crate::state::now()),
                            detail: Some("obeyed at a later catch-up".into()),
                            ..Applied::default()
                        };
                        out.push((c.id.clone(), resumed(c, "purge obeyed", None), Some(a)));
                    }
                    Ok(false) => out.push((
                        c.id.clone(),
                        resumed(
                            c,
                            "pending",
                            Some(
                                "still holds files the purge removes (obeyed at its next \
                                  catch-up)"
                                    .into(),
                            ),
                        ),
                        None,
                    )),
                    Err(e) => out.push((c.id.clone(), resumed(c, "pending", Some(e)), None)),
                }
            }
        }
    }
    out
}

/// Whether the repository in `folder` holds none of `files` any more.
fn obeyed(root: &dyn Store, folder: &str, files: &[String]) -> std::result::Result<bool, String> {
    let mut held = std::collections::BTreeSet::new();
    for dir in ["snapshots", "index", "data"] {
        for (rel, _) in root.list(&at(folder, dir)).map_err(|e| e.to_string())? {
            held.insert(format!("{dir}/{rel}"));
        }
    }
    Ok(!files.iter().any(|f| held.contains(f)))
}

/// One certificate copy found on a target.
#[derive(Debug, Clone, Serialize)]
pub struct CopyCheck {
    /// Target name.
    pub target: String,
    /// Its path from the target's root.
    pub path: String,
    /// `sealed` (verifies, and the register holds it), `unknown` (verifies, but the register
    /// does not hold it: another machine's state?) or `not proven` (planted or damaged).
    pub verdict: String,
    /// The certificate it names, when it verifies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why it is not proven.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Reads every certificate copy in `folders` on every target of the file and checks its seal.
/// A target that cannot be reached is named with verdict `unreachable`.
///
/// # Errors
/// The register or its key cannot be read.
pub fn copies(ctx: &Context, folders: &[String]) -> Result<Vec<CopyCheck>> {
    let cfg = ctx.cfg();
    let dir = erasure::dir(cfg);
    let register = Register::load(&dir)?;
    let key = erasure::key(&dir)?;
    let found = crate::par::each(&cfg.file_targets, |t| {
        let mut out = Vec::new();
        let root = match ctx.open_store(t) {
            Ok(r) => r,
            Err(e) => {
                out.push(CopyCheck {
                    target: t.name.clone(),
                    path: String::new(),
                    verdict: "unreachable".into(),
                    id: None,
                    detail: Some(crate::probe::unusable_by(&e).1),
                });
                return out;
            }
        };
        for folder in folders {
            let dir = at(folder, erasure::DIR);
            for (rel, _) in root.list(&dir).unwrap_or_default() {
                let path = format!("{dir}/{rel}");
                let opened = root
                    .read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| erasure::open(&b, &key));
                let (verdict, id, detail) = match opened {
                    Ok(c) if register.certificates.iter().any(|r| r.id == c.id) => {
                        ("sealed", Some(c.id), None)
                    }
                    Ok(c) => ("unknown", Some(c.id), None),
                    Err(why) => ("not proven", None, Some(why)),
                };
                out.push(CopyCheck {
                    target: t.name.clone(),
                    path,
                    verdict: verdict.into(),
                    id,
                    detail,
                });
            }
        }
        out
    });
    Ok(found.into_iter().flatten().collect())
}
