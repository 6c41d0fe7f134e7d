//! Replicas: which repository files each target holds, and copying a file between targets only
//! after its SHA-256 matches its name. Catch-up (`sync`), `check` and `--heal` are built on it;
//! none of it needs the repository password, since every repository file except `config` is
//! named by the hash of its encrypted bytes.

use std::{collections::BTreeMap, sync::Mutex};

use bytes::Bytes;
use rustic_core::Progress;
use serde::Serialize;

use crate::{
    layout::{COPY_ORDER, QUARANTINE_DIR, hash_matches, is_repository_path},
    probe::{Probe, Probed},
    proof::Proof,
    store::{Named, Store, StoreError, StoreErrorKind, StoreResult},
};

/// Concurrent copies per target.
const WORKERS: usize = 4;

/// The repository files of one target.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Path -> size of every repository file (`config` included when present).
    pub files: BTreeMap<String, u64>,
    /// Files inside repository folders that are not repository files (path, size).
    pub stray: Vec<(String, u64)>,
}

/// Lists every repository file on a target.
///
/// # Errors
/// The target could not be listed (an unreachable target is never taken for an empty one).
pub fn inventory(store: &dyn Store) -> StoreResult<Inventory> {
    let mut inv = Inventory::default();
    if let Some(size) = store.stat("config")? {
        inv.files.insert("config".into(), size);
    }
    for dir in &COPY_ORDER[1..] {
        for (rel, size) in store.list(dir)? {
            let path = format!("{dir}/{rel}");
            if is_repository_path(&path) {
                inv.files.insert(path, size);
            } else {
                inv.stray.push((path, size));
            }
        }
    }
    Ok(inv)
}

/// Lists, concurrently, every target that holds the repository (and, with `empty`, every
/// reachable empty one); `None` for the others.
#[must_use]
pub fn inventories(probed: &[Probed], empty: bool) -> Vec<Option<StoreResult<Inventory>>> {
    crate::par::each_caught(probed, |p| {
        let wanted = match p.probe {
            Probe::Ready { .. } => true,
            Probe::Empty => empty,
            _ => false,
        };
        let store = p.store.as_ref().filter(|_| wanted)?;
        Some(inventory(store.as_ref()))
    })
    .into_iter()
    .map(|r| {
        r.unwrap_or_else(|why| {
            Some(Err(StoreError::new(
                StoreErrorKind::Permanent,
                format!("listing {why}"),
            )))
        })
    })
    .collect()
}

/// Removes temporary files an interrupted run left behind (uploads never renamed into place).
/// Call it holding the repository lock, so no other writer is live: an upload of a process of
/// this host that still runs is left alone all the same (its name carries host and pid).
///
/// # Errors
/// The temporary folder cannot be listed.
pub fn clean_tmp(store: &dyn Store) -> StoreResult<usize> {
    let tmp = crate::layout::TMP_DIR;
    let mut removed = 0;
    if store.append_only() {
        return Ok(0);
    }
    for (rel, _) in store.list(tmp)? {
        if crate::layout::tmp_owner_alive(&rel) {
            continue;
        }
        if store.delete(&format!("{tmp}/{rel}")).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// A copy that passed its hash check but could not be proven (see [`crate::proof`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Foreign {
    /// The target holding it.
    pub target: String,
    /// Its repository path.
    pub path: String,
    /// Why it is not proven.
    pub why: String,
    /// Whether it was moved to [`QUARANTINE_DIR`] on its target.
    pub quarantined: bool,
}

/// Foreign copies met so far, from several threads.
#[derive(Debug, Default)]
pub struct ForeignFound(Mutex<Vec<(Foreign, Bytes)>>);

impl ForeignFound {
    fn add(&self, target: &str, path: &str, why: String, bytes: Bytes) {
        if let Ok(mut f) = self.0.lock()
            && !f.iter().any(|(x, _)| x.target == target && x.path == path)
        {
            f.push((
                Foreign {
                    target: target.to_string(),
                    path: path.to_string(),
                    why,
                    quarantined: false,
                },
                bytes,
            ));
        }
    }

    /// Moves every foreign copy aside on its own target (a copy under [`QUARANTINE_DIR`], then
    /// the original removed), and returns what was found. Never deletes without the copy.
    pub fn quarantine<'s>(self, store_of: impl Fn(&str) -> Option<&'s dyn Store>) -> Vec<Foreign> {
        let mut found = self.0.into_inner().unwrap_or_default();
        found.sort_by(|a, b| (&a.0.target, &a.0.path).cmp(&(&b.0.target, &b.0.path)));
        found
            .into_iter()
            .map(|(mut f, bytes)| {
                if let Some(store) = store_of(&f.target) {
                    f.quarantined = quarantine(store, &f.path, bytes).is_ok();
                }
                f
            })
            .collect()
    }

    /// What was found, nothing moved.
    #[must_use]
    pub fn into_list(self) -> Vec<Foreign> {
        self.0
            .into_inner()
            .unwrap_or_default()
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    }
}

/// Moves `path` (whose bytes are `bytes`) under [`QUARANTINE_DIR`] on the same store.
///
/// # Errors
/// The copy could not be written; the original is then left where it is.
pub fn quarantine(store: &dyn Store, path: &str, bytes: Bytes) -> StoreResult<()> {
    if store.append_only() {
        return Err(crate::store::StoreError::new(
            crate::store::StoreErrorKind::Permanent,
            format!("{path}: an append-only target moves nothing aside; left to its owner"),
        ));
    }
    store.write(&format!("{QUARANTINE_DIR}/{path}"), vec![bytes])?;
    store.delete(path)
}

/// Why a file was not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotCopied {
    /// No copy could be proven (foreign everywhere, or no password to prove anything): it is
    /// not expected anywhere, and nothing that is proven depends on it.
    HeldBack(String),
    /// A proven copy exists, but reading or writing failed.
    Failed(String),
}

impl std::fmt::Display for NotCopied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::HeldBack(m) => write!(f, "held back: {m}"),
            Self::Failed(m) => f.write_str(m),
        }
    }
}

/// Reads `path` from the first source whose copy is proven; returns it and the source. Copies
/// that match their hash but are not proven are recorded in `foreign`.
///
/// # Errors
/// No source holds a proven copy; the message says what each one had.
pub fn read_proven(
    path: &str,
    sources: &[Named<'_>],
    proof: Option<&Proof>,
    foreign: &ForeignFound,
) -> Result<(Bytes, String), NotCopied> {
    let Some(proof) = proof else {
        return Err(NotCopied::HeldBack(
            "without the repository password no copy can be proven".into(),
        ));
    };
    let mut why = Vec::new();
    let mut readable = false;
    for (name, store) in sources {
        match store.read(path) {
            Ok(b) if !hash_matches(path, &b) => {
                why.push(format!("`{name}`: its copy does not match its name"));
            }
            Ok(b) => match proof.check(path, &b) {
                Ok(()) => return Ok((b, (*name).to_string())),
                Err(e) => {
                    why.push(format!("`{name}`: {e}"));
                    foreign.add(name, path, e, b);
                }
            },
            Err(e) => {
                readable = true;
                why.push(format!("`{name}`: {e}"));
            }
        }
    }
    if why.is_empty() {
        why.push("no other target holds it".into());
    }
    let msg = format!("no proven copy of {path} ({})", why.join("; "));
    // A source that could not be read may hold the good copy: that is a failure, not a verdict.
    Err(if readable {
        NotCopied::Failed(msg)
    } else {
        NotCopied::HeldBack(msg)
    })
}

/// How thoroughly a copy is checked once written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterWrite {
    /// Its size is checked.
    Size,
    /// It is read back and its hash checked (heal).
    ReadBack,
}

/// What a proven file must also be for `dest` to receive it: the reason when it must not.
pub type Vet<'a> = dyn Fn(&str, &Bytes) -> Result<(), String> + Sync + 'a;

/// No condition beyond the proof.
pub fn any_proven(_: &str, _: &Bytes) -> Result<(), String> {
    Ok(())
}

/// Copies `path` to `dest` from a proven source that `vet` accepts, then checks it there.
///
/// # Errors
/// No proven copy exists, `vet` refused it (held back), or the write or its check failed.
pub fn copy_proven(
    path: &str,
    sources: &[Named<'_>],
    dest: &dyn Store,
    check: AfterWrite,
    proof: Option<&Proof>,
    foreign: &ForeignFound,
    vet: &Vet<'_>,
) -> Result<u64, NotCopied> {
    let (bytes, from) = read_proven(path, sources, proof, foreign)?;
    vet(path, &bytes).map_err(|why| NotCopied::HeldBack(format!("{path} not copied: {why}")))?;
    let len = bytes.len() as u64;
    let failed = |m: String| NotCopied::Failed(m);
    dest.write(path, vec![bytes])
        .map_err(|e| failed(format!("writing {path} (from `{from}`): {e}")))?;
    match check {
        AfterWrite::Size => match dest.stat(path) {
            Ok(Some(n)) if n == len => Ok(len),
            Ok(other) => Err(failed(format!(
                "{path}: {other:?} bytes after writing {len} (from `{from}`)"
            ))),
            Err(e) => Err(failed(format!("{path}: cannot check after writing: {e}"))),
        },
        AfterWrite::ReadBack => match dest.read(path) {
            Ok(b) if b.len() as u64 == len && hash_matches(path, &b) => Ok(len),
            Ok(_) => Err(failed(format!(
                "{path}: still damaged after writing a good copy"
            ))),
            Err(e) => Err(failed(format!(
                "{path}: cannot read back after writing: {e}"
            ))),
        },
    }
}

/// Copies many files with a few workers; each result comes back with its path.
pub fn copy_many<'a>(
    paths: &[String],
    sources_of: &(dyn Fn(&str) -> Vec<Named<'a>> + Sync),
    dest: &dyn Store,
    proof: Option<&Proof>,
    foreign: &ForeignFound,
    vet: &Vet<'_>,
    progress: &Progress,
) -> Vec<(String, Result<u64, NotCopied>)> {
    let mut out = crate::par::map(paths, WORKERS, |path| {
        let r = copy_proven(
            path,
            &sources_of(path),
            dest,
            AfterWrite::Size,
            proof,
            foreign,
            vet,
        );
        if let Ok(n) = &r {
            progress.inc(*n);
        }
        (path.clone(), r)
    });
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_proof_nothing_is_copied_and_nothing_is_called_foreign() {
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let open = |d: &tempfile::TempDir| crate::store::local_for_tests(d.path());
        let (src, dest) = (open(&dirs[0]), open(&dirs[1]));
        let body = b"index bytes";
        let path = format!("index/{}", crate::layout::sha256_hex(body));
        src.write(&path, vec![Bytes::from_static(body)]).unwrap();
        let found = ForeignFound::default();
        let r = copy_proven(
            &path,
            &[("src", src.as_ref())],
            dest.as_ref(),
            AfterWrite::Size,
            None,
            &found,
            &any_proven,
        );
        assert!(matches!(r, Err(NotCopied::HeldBack(_))), "{r:?}");
        assert_eq!(dest.stat(&path).unwrap(), None);
        assert!(found.into_list().is_empty());
    }
}
