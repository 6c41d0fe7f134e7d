//! Deletion records: every removal (forget, prune, erasure) is written down in the repository
//! itself, on every reachable target, before any file is removed anywhere.
//!
//! A record lives under [`DIR`] (restic never looks there) and names the repository files it
//! deletes. It is sealed with the repository key exactly as restic seals its own files, and
//! named by the SHA-256 of its sealed bytes, so only someone holding the key can write one: a
//! record that does not open is *foreign*, never obeyed, never copied, and quarantined on its
//! own target like any other foreign file. A compromised target can therefore never delete data
//! on the others.
//!
//! What the records give:
//! - catch-up never copies a deleted file back from a target that missed the deletion, and
//!   copies the records themselves to every target first;
//! - a target that returns obeys the records it missed (catch-up removes the files they name);
//! - readers never see a deleted file, even on a target that still holds it;
//! - `status` and `check` show a deleted file still held as *pending deletion*.
//!
//! Records are compacted by catch-up: once every configured target has been listed and holds
//! none of a record's files, and the record is older than `[retention] deletion_records_for`
//! (default 90 days), it is removed everywhere. The age is the margin for a copy of a target
//! that returns much later (a rotated disk): within it, that copy still obeys.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::Serialize;

use crate::{
    proof::Proof,
    replica::{ForeignFound, read_proven},
    store::{Named, Store, StoreResult},
};

pub mod record;
pub mod veto;

use crate::layout::is_record_path;
pub use record::{DIR, Record, TOMBSTONE, VOID};

/// The proven records found on the targets, and which target holds which.
#[derive(Debug, Clone, Default)]
pub struct Deletions {
    /// Record path -> record.
    pub records: BTreeMap<String, Record>,
    /// Record path -> names of the targets holding it.
    pub held_by: BTreeMap<String, Vec<String>>,
    /// Record path -> its proven sealed bytes, as copied to targets that lack it.
    sealed: BTreeMap<String, Bytes>,
    /// Every file some record deletes.
    deleted: BTreeSet<String>,
    /// Records found but void (a void record names them): they delete nothing.
    pub voided: BTreeSet<String>,
}

impl Deletions {
    /// Whether a record deletes `path`.
    #[must_use]
    pub fn deletes(&self, path: &str) -> bool {
        self.deleted.contains(path)
    }

    /// Every deleted path.
    #[must_use]
    pub fn deleted(&self) -> &BTreeSet<String> {
        &self.deleted
    }

    /// Of `held` (a target's files), those a record deletes: its pending deletions.
    pub fn pending<'a>(&self, held: impl IntoIterator<Item = &'a String>) -> Vec<&'a String> {
        held.into_iter().filter(|p| self.deletes(p)).collect()
    }

    fn add(&mut self, path: String, record: Record, sealed: Bytes) {
        self.deleted.extend(record.files.iter().cloned());
        self.sealed.insert(path.clone(), sealed);
        self.records.insert(path, record);
    }

    /// Voids the records at `paths` for the rest of this run: they delete nothing more (the
    /// caller writes the void record that keeps it so).
    pub fn void(&mut self, paths: &BTreeSet<String>) {
        for p in paths {
            if self.records.get(p).is_some_and(|r| !r.is_permanent()) {
                self.records.remove(p);
                self.sealed.remove(p);
                self.held_by.remove(p);
                self.voided.insert(p.clone());
            }
        }
        self.deleted = self
            .records
            .values()
            .flat_map(|r| r.files.iter().cloned())
            .collect();
    }
}

/// The record paths a target holds.
///
/// # Errors
/// The folder cannot be listed.
pub fn list(store: &dyn Store) -> StoreResult<Vec<String>> {
    Ok(store
        .list(DIR)?
        .into_iter()
        .map(|(rel, _)| format!("{DIR}/{rel}"))
        .filter(|p| is_record_path(p))
        .collect())
}

/// Reads every record the `sources` hold, each from the first holder whose copy opens with the
/// key; copies that do not open are added to `foreign`. A source that cannot be listed is
/// skipped (its records reach the others once it is back).
#[must_use]
pub fn load(sources: &[Named<'_>], proof: &Proof, foreign: &ForeignFound) -> Deletions {
    let mut held_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, store) in sources {
        for path in list(*store).unwrap_or_default() {
            held_by.entry(path).or_default().push((*name).to_string());
        }
    }
    let mut found = Vec::new();
    for (path, holders) in &held_by {
        let from: Vec<Named<'_>> = sources
            .iter()
            .filter(|(n, _)| holders.iter().any(|h| h == n))
            .copied()
            .collect();
        if let Ok((bytes, _)) = read_proven(path, &from, Some(proof), foreign)
            && let Some(record) = Record::open(&bytes, proof.cipher())
        {
            found.push((path.clone(), record, bytes));
        }
    }
    // A void record wins wherever the record it voids turns up: a called-off prune captured
    // by one target and put back later never takes effect.
    let voided: BTreeSet<&String> = found.iter().flat_map(|(_, r, _)| &r.voids).collect();
    let mut out = Deletions::default();
    for (path, record, bytes) in &found {
        if voided.contains(path) && !record.is_permanent() {
            out.voided.insert(path.clone());
        } else {
            out.add(path.clone(), record.clone(), bytes.clone());
        }
    }
    out.held_by = held_by
        .into_iter()
        .filter(|(p, _)| out.records.contains_key(p))
        .collect();
    out
}

/// For each target that lacks a prune's record: the snapshots it holds that the prune never
/// judged (written while the target was away, or out of the configuration), by target name.
/// The prune may have removed data those snapshots share with older ones: the veto
/// ([`veto`]) decides, from the data, whether the record may still be obeyed; `status` names
/// them.
#[must_use]
pub fn unjudged<'a>(
    deletions: &Deletions,
    targets: &[(&'a str, &BTreeMap<String, u64>)],
) -> BTreeMap<&'a str, BTreeSet<String>> {
    fn snapshots(files: &BTreeMap<String, u64>) -> impl Iterator<Item = &str> {
        files.keys().filter_map(|f| f.strip_prefix("snapshots/"))
    }
    let mut out: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (path, record) in deletions
        .records
        .iter()
        .filter(|(_, r)| r.command == "prune")
    {
        let holders = deletions.held_by.get(path).map_or(&[][..], Vec::as_slice);
        let holds = |name: &str| holders.iter().any(|h| h == name);
        // Judged: what the prune saw, and what the targets that obeyed it wrote since.
        let mut judged: BTreeSet<&str> = record.snapshots.iter().map(String::as_str).collect();
        for (_, files) in targets.iter().filter(|(n, _)| holds(n)) {
            judged.extend(snapshots(files));
        }
        for (name, files) in targets.iter().filter(|(n, _)| !holds(n)) {
            let alone: BTreeSet<String> = snapshots(files)
                .filter(|id| !judged.contains(id) && !deletions.deletes(&format!("snapshots/{id}")))
                .map(str::to_string)
                .collect();
            if !alone.is_empty() {
                out.entry(*name).or_default().extend(alone);
            }
        }
    }
    out
}

/// What obeying the records did on one target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Obeyed {
    /// Records copied to it.
    pub records_copied: usize,
    /// Files removed because a record deletes them.
    pub files_removed: usize,
    /// Files a record deletes that could not be removed (the first error says why).
    pub files_pending: usize,
    /// Files a record deletes that an append-only target keeps: left to its owner.
    pub files_left: usize,
    /// The first error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Brings the records to `store` (named `name`), then removes the files of `held` that they
/// delete. A record is written before any file it names is removed, so a crash in between
/// leaves the record to finish the job. The records' bytes were proven when loaded.
pub fn obey<'a>(
    name: &str,
    store: &dyn Store,
    held: impl IntoIterator<Item = &'a String>,
    deletions: &Deletions,
) -> Obeyed {
    let mut out = Obeyed::default();
    for (path, holders) in &deletions.held_by {
        if holders.iter().any(|h| h == name) {
            continue;
        }
        let Some(bytes) = deletions.sealed.get(path) else {
            continue;
        };
        match store.write(path, vec![bytes.clone()]) {
            Ok(()) => out.records_copied += 1,
            Err(e) => {
                // Without its records a target must not lose files: stop here.
                out.error = Some(format!("copying {path}: {e}"));
                out.files_pending = deletions.pending(held).len();
                return out;
            }
        }
    }
    // Snapshots first: a snapshot never outlives the data it needs.
    let mut doomed = deletions.pending(held);
    if store.append_only() {
        out.files_left = doomed.len();
        return out;
    }
    doomed.sort_by_key(|p| std::cmp::Reverse(crate::layout::stage(p)));
    for path in doomed {
        match store.delete(path) {
            Ok(()) => out.files_removed += 1,
            Err(e) => {
                out.files_pending += 1;
                out.error
                    .get_or_insert_with(|| format!("removing {path}: {e}"));
            }
        }
    }
    out
}

/// What [`record_and_remove`] removed from one store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// Files removed.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Files an append-only target keeps (it holds the record, so cairn's readers obey it):
    /// left to the storage's owner.
    pub left: usize,
}

impl Removed {
    /// What a report says of the files left on an append-only target, if any.
    #[must_use]
    pub fn left_note(&self) -> Option<String> {
        (self.left > 0).then(|| {
            format!(
                "append-only: {} file(s) left to the storage's owner (the deletion record \
                 hides them from cairn)",
                self.left
            )
        })
    }
}

/// Where a record must be before anything is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Each store that holds the record loses its files (forget: a store without the record
    /// keeps its snapshot files until it obeys; snapshots never carry data for others).
    Each,
    /// Every store, or none loses anything (prune: a store that missed the record could write
    /// a backup relying on the old data before it learns of the deletion).
    All,
}

/// Records `record` on every store, and only then removes its files from those that hold the
/// record (as `recorded` says). Snapshots go first, then index files, then packs, so no file
/// ever refers to a removed one. Returns the record's path and, per store, what was removed or
/// why nothing was.
///
/// # Errors
/// The record could not be sealed; with [`Recorded::All`], it could not be written to every
/// store (it is then taken back where it was written, and nothing is removed).
pub fn record_and_remove(
    stores: &[Named<'_>],
    record: &Record,
    proof: &Proof,
    recorded: Recorded,
) -> Result<(String, Vec<Result<Removed, String>>), String> {
    let (path, bytes) = record.seal(proof.cipher())?;
    let written = crate::par::each(stores, |(_, s)| s.write(&path, vec![bytes.clone()]));
    if recorded == Recorded::All
        && let Some(((name, _), Err(e))) = stores.iter().zip(&written).find(|(_, w)| w.is_err())
    {
        // Called off. The store that refused may still hold the bytes and put them in place
        // later: a void record, wherever it can be written, keeps the record from ever taking
        // effect (catch-up carries it to the others).
        let (void_path, void) =
            Record::void(vec![path.clone()], Vec::new()).seal(proof.cipher())?;
        let voided = crate::par::each(stores, |(_, s)| s.write(&void_path, vec![void.clone()]));
        for ((_, s), w) in stores.iter().zip(&written) {
            if w.is_ok() {
                let _ = s.delete(&path);
            }
        }
        let void_note = if voided.iter().any(Result::is_ok) {
            ""
        } else {
            "; it could not be voided on any target either"
        };
        return Err(format!(
            "the deletion could not be recorded on `{name}` ({e}), so nothing was removed \
             anywhere{void_note}"
        ));
    }
    let mut files: Vec<&String> = record.files.iter().collect();
    files.sort_by_key(|p| std::cmp::Reverse(crate::layout::stage(p)));
    let removed = crate::par::each(
        &stores.iter().zip(written).collect::<Vec<_>>(),
        |((_, s), w)| {
            w.as_ref()
                .map_err(|e| format!("recording the deletion: {e}"))?;
            let mut out = Removed::default();
            for f in &files {
                if let Some(size) = s.stat(f).map_err(|e| e.to_string())? {
                    if s.append_only() {
                        out.left += 1;
                        continue;
                    }
                    s.delete(f).map_err(|e| format!("removing {f}: {e}"))?;
                    out.files += 1;
                    out.bytes += size;
                }
            }
            Ok(out)
        },
    );
    Ok((path, removed))
}

/// The tombstone that replaces the records at `compacted`: the snapshot, index and key files
/// they and every tombstone so far delete (packs are left out, except a purge's: without an
/// index naming it, an old pack put back is unreferenced data, never read). Returns its path, its sealed bytes, and
/// the tombstones it supersedes.
///
/// # Errors
/// It could not be sealed.
pub fn tombstone(
    deletions: &Deletions,
    compacted: &[String],
    proof: &Proof,
) -> Result<(String, Bytes, Vec<String>), String> {
    let superseded: Vec<String> = deletions
        .records
        .iter()
        .filter(|(_, r)| r.command == TOMBSTONE)
        .map(|(p, _)| p.clone())
        .collect();
    // A purge's packs stay (a copy that comes back must not keep purged bytes, even
    // unreferenced), and so does every pack an earlier tombstone kept for the same reason.
    let files: BTreeSet<String> = superseded
        .iter()
        .chain(compacted)
        .filter_map(|p| deletions.records.get(p))
        .flat_map(|r| {
            let keep_packs = r.purge || r.command == TOMBSTONE;
            r.files
                .iter()
                .filter(move |f| keep_packs || !f.starts_with("data/"))
        })
        .cloned()
        .collect();
    let (path, bytes) = Record::new(TOMBSTONE, files.into_iter().collect()).seal(proof.cipher())?;
    Ok((path, bytes, superseded))
}

/// The records decided before `older_than`. The caller removes them only once every target
/// has obeyed them.
#[must_use]
pub fn compactable(deletions: &Deletions, older_than: jiff::Timestamp) -> Vec<String> {
    deletions
        .records
        .iter()
        .filter(|(_, r)| {
            !r.is_permanent()
                && r.time
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|t| t < older_than)
        })
        .map(|(p, _)| p.clone())
        .collect()
}
