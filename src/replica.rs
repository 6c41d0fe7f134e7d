//! Replicas: which repository files each target holds, and copying a file between targets only
//! after its SHA-256 matches its name. Catch-up (`sync`), `check` and `--heal` are built on it;
//! none of it needs the repository password, since every repository file except `config` is
//! named by the hash of its encrypted bytes.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread,
};

use bytes::Bytes;
use rustic_core::Progress;
use sha2::{Digest, Sha256};

use crate::{
    session::{Probe, Probed},
    target::{Store, StoreResult},
};

/// The repository folders, in the order a copy must fill them: a file is never copied before
/// the files it refers to (an index refers to packs, a snapshot to both).
pub const COPY_ORDER: [&str; 5] = ["config", "keys", "data", "index", "snapshots"];

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
pub fn inventories(probed: &[Probed], empty: bool) -> Vec<Option<Result<Inventory, String>>> {
    thread::scope(|s| {
        let handles: Vec<_> = probed
            .iter()
            .map(|p| {
                s.spawn(move || {
                    let wanted = match p.probe {
                        Probe::Ready { .. } => true,
                        Probe::Empty => empty,
                        _ => false,
                    };
                    let store = p.store.as_ref().filter(|_| wanted)?;
                    Some(inventory(store.as_ref()).map_err(|e| e.to_string()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Some(Err("listing panicked".into())))
            })
            .collect()
    })
}

/// Removes temporary files an interrupted run left behind (uploads never renamed into place).
/// Only safe while holding the repository lock: another writer's uploads look the same.
///
/// # Errors
/// The temporary folder cannot be listed.
pub fn clean_tmp(store: &dyn Store) -> StoreResult<usize> {
    let tmp = crate::target::TMP_DIR;
    let mut removed = 0;
    for (rel, _) in store.list(tmp)? {
        if store.delete(&format!("{tmp}/{rel}")).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Which stage of [`COPY_ORDER`] a path belongs to.
#[must_use]
pub fn stage(path: &str) -> usize {
    let top = path.split('/').next().unwrap_or(path);
    COPY_ORDER.iter().position(|d| *d == top).unwrap_or(0)
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `path` is where restic keeps a file of that name (`keys/ID`, `data/ID[..2]/ID`, ...).
#[must_use]
pub fn is_repository_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["config"] => true,
        [dir, name] => ["keys", "index", "snapshots"].contains(dir) && is_id(name),
        ["data", sub, name] => is_id(name) && name.starts_with(sub) && sub.len() == 2,
        _ => false,
    }
}

/// Lower-case hex SHA-256.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Whether `bytes` are what the name of `path` promises (`config` promises nothing).
#[must_use]
pub fn hash_matches(path: &str, bytes: &[u8]) -> bool {
    path == "config" || path.rsplit('/').next() == Some(sha256_hex(bytes).as_str())
}

/// A named store to copy from.
pub type Source<'a> = (&'a str, &'a dyn Store);

/// Reads `path` from the first source whose copy matches its name; returns it and the source.
///
/// # Errors
/// No source holds a good copy; the message says what each one had.
pub fn read_verified(path: &str, sources: &[Source<'_>]) -> Result<(Bytes, String), String> {
    let mut why = Vec::new();
    for (name, store) in sources {
        match store.read(path) {
            Ok(b) if hash_matches(path, &b) => return Ok((b, (*name).to_string())),
            Ok(_) => why.push(format!("`{name}`: its copy does not match its name")),
            Err(e) => why.push(format!("`{name}`: {e}")),
        }
    }
    if why.is_empty() {
        why.push("no other target holds it".into());
    }
    Err(format!("no verified copy of {path} ({})", why.join("; ")))
}

/// How thoroughly a copy is checked once written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterWrite {
    /// Its size is checked.
    Size,
    /// It is read back and its hash checked (heal).
    ReadBack,
}

/// Copies `path` to `dest` from a verified source, then checks it there.
///
/// # Errors
/// No verified copy exists, or the write or its check failed.
pub fn copy_verified(
    path: &str,
    sources: &[Source<'_>],
    dest: &dyn Store,
    check: AfterWrite,
) -> Result<u64, String> {
    let (bytes, from) = read_verified(path, sources)?;
    let len = bytes.len() as u64;
    dest.write(path, vec![bytes])
        .map_err(|e| format!("writing {path} (from `{from}`): {e}"))?;
    match check {
        AfterWrite::Size => match dest.stat(path) {
            Ok(Some(n)) if n == len => Ok(len),
            Ok(other) => Err(format!(
                "{path}: {other:?} bytes after writing {len} (from `{from}`)"
            )),
            Err(e) => Err(format!("{path}: cannot check after writing: {e}")),
        },
        AfterWrite::ReadBack => match dest.read(path) {
            Ok(b) if b.len() as u64 == len && hash_matches(path, &b) => Ok(len),
            Ok(_) => Err(format!("{path}: still damaged after writing a good copy")),
            Err(e) => Err(format!("{path}: cannot read back after writing: {e}")),
        },
    }
}

/// Copies many files with a few workers; each result comes back with its path.
pub fn copy_many<'a>(
    paths: &[String],
    sources_of: &(dyn Fn(&str) -> Vec<Source<'a>> + Sync),
    dest: &dyn Store,
    check: AfterWrite,
    progress: &Progress,
) -> Vec<(String, Result<u64, String>)> {
    let next = AtomicU64::new(0);
    let results = Mutex::new(Vec::with_capacity(paths.len()));
    thread::scope(|s| {
        for _ in 0..WORKERS.min(paths.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(path) = paths.get(i) else { break };
                    let r = copy_verified(path, &sources_of(path), dest, check);
                    if let Ok(n) = &r {
                        progress.inc(*n);
                    }
                    if let Ok(mut all) = results.lock() {
                        all.push((path.clone(), r));
                    }
                }
            });
        }
    });
    let mut out = results.into_inner().unwrap_or_default();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";

    #[test]
    fn repository_paths_are_recognised_and_strays_are_not() {
        assert!(is_repository_path("config"));
        assert!(is_repository_path(&format!("keys/{ID}")));
        assert!(is_repository_path(&format!("data/ab/{ID}")));
        assert!(
            !is_repository_path(&format!("data/cd/{ID}")),
            "wrong subfolder"
        );
        assert!(!is_repository_path("data/ab/notes.txt"));
        assert!(!is_repository_path(&format!("index/{ID}.tmp")));
        assert!(!is_repository_path(&format!("locks/{ID}")));
    }

    #[test]
    fn copy_order_puts_data_before_what_refers_to_it() {
        assert!(stage(&format!("data/ab/{ID}")) < stage(&format!("index/{ID}")));
        assert!(stage(&format!("index/{ID}")) < stage(&format!("snapshots/{ID}")));
        assert_eq!(stage("config"), 0);
    }

    #[test]
    fn only_a_copy_matching_its_name_is_copied() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let open = |d: &tempfile::TempDir| crate::target::local_for_tests(d.path());
        let (bad, good, dest) = (open(&dirs[0]), open(&dirs[1]), open(&dirs[2]));
        let body = b"pack bytes";
        let path = format!("index/{}", sha256_hex(body));
        bad.write(&path, vec![Bytes::from_static(b"pack bytez")])
            .unwrap();
        good.write(&path, vec![Bytes::from_static(body)]).unwrap();
        let sources = [("bad", bad.as_ref()), ("good", good.as_ref())];
        assert_eq!(
            copy_verified(&path, &sources, dest.as_ref(), AfterWrite::ReadBack),
            Ok(body.len() as u64)
        );
        assert_eq!(&dest.read(&path).unwrap()[..], body);
        let e = copy_verified(&path, &sources[..1], dest.as_ref(), AfterWrite::Size).unwrap_err();
        assert!(e.contains("`bad`: its copy does not match"), "{e}");
    }
}
