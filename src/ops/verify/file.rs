//! The checks of one sampled file on one target: its chunks and size, the live source, and a
//! real restore of it.

use std::{fs::File, io::Read, os::unix::fs::PermissionsExt, path::Path};

use rustic_core::{
    BlobId, Id,
    repofile::{BlobType, Node},
};
use sha2::{Digest, Sha256};

use super::FailureClass;
use crate::{
    destination,
    ops::restore::files::{Job, Writer},
    sample::Candidate,
};

/// How one sampled file fared on one target.
#[derive(Clone)]
pub(super) struct FileOutcome {
    pub(super) failure: Option<(FailureClass, String)>,
    pub(super) source: SourceCheck,
    /// The SHA-256 of the whole content, once every chunk passed.
    pub(super) digest: Option<[u8; 32]>,
}

#[derive(Clone, PartialEq, Eq)]
pub(super) enum SourceCheck {
    Compared,
    Changed,
    NotChecked,
}

/// Reads the file chunk by chunk (decrypted, so each chunk's MAC is checked; those in `ready`
/// were read ahead), checking each chunk's SHA-256 against its id, the size, and the live
/// source.
pub(super) fn check_file<S: rustic_core::IndexedFull>(
    repo: &rustic_core::Repository<S>,
    node: &Node,
    c: &Candidate,
    ready: &std::collections::BTreeMap<Id, bytes::Bytes>,
    diagnose: &mut impl FnMut(Id, &rustic_core::RusticError) -> (FailureClass, String),
    placed: &mut impl FnMut(Id, (u32, u32), &Id) -> Option<(FailureClass, String)>,
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
        digest: None,
    };
    let mut digest = Sha256::new();
    for data_id in node.content.iter().flatten() {
        let entry = repo
            .get_index_entry(data_id)
            .map(|ie| (*ie.pack, (ie.location.offset, ie.location.length)));
        let pack = entry.as_ref().map(|(p, _)| *p).map_err(|_| ());
        let read = || match ready.get(&**data_id) {
            Some(b) => Ok(b.clone()),
            None => repo.get_blob_cached(&BlobId::from(**data_id), BlobType::Data),
        };
        let blob = match (pack, read()) {
            (Err(_), _) => {
                return fail(
                    FailureClass::Missing,
                    format!("chunk {} is not in this target's index", short(data_id)),
                    not_compared,
                );
            }
            (Ok(pack), Err(e)) => {
                let (class, what) = diagnose(pack, &e);
                return fail(class, what, not_compared);
            }
            (Ok(_), Ok(blob)) => blob,
        };
        if Id::new(Sha256::digest(&blob).into()) != **data_id {
            return fail(
                FailureClass::Mismatch,
                format!("chunk {}: SHA-256 does not match its id", short(data_id)),
                not_compared,
            );
        }
        if let Ok((pack, at)) = entry
            && let Some((class, what)) = placed(pack, at, data_id)
        {
            return fail(class, what, not_compared);
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
        digest.update(&blob);
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
        digest: Some(digest.finalize().into()),
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

/// A sampled file whose chunks passed: its node, its path in the snapshot, its content's
/// SHA-256.
pub(super) type Restorable = (Node, String, [u8; 32]);

/// Restores the sampled files (node, path in the snapshot, content digest) as `cairn
/// restore` writes files (contents and metadata in one pass, small files read together by
/// pack, every blob checked, from this target alone through `contents`, which gives the
/// chunks just checked without reading them again) and checks each one's content, mode and
/// mtime on disk. A path sampled twice (from two snapshots) is restored in a
/// later round, so each is checked against its own snapshot.
pub(super) fn check_restores<S: rustic_core::IndexedFull + Sync>(
    repo: &rustic_core::Repository<S>,
    contents: &crate::verified::Contents,
    files: &[Restorable],
    restore_root: &Path,
) -> Vec<Result<(), (FailureClass, String)>> {
    let mut results = vec![Ok(()); files.len()];
    let mut remaining: Vec<usize> = (0..files.len()).collect();
    while !remaining.is_empty() {
        let mut seen = std::collections::BTreeSet::new();
        let (mut round, mut later) = (Vec::new(), Vec::new());
        for i in remaining {
            if seen.insert(files[i].1.as_str()) {
                round.push(i);
            } else {
                later.push(i);
            }
        }
        let mut ready = Vec::new();
        for i in round {
            match clear_way(&files[i].0, restore_root, &files[i].1) {
                Ok(()) => ready.push(i),
                Err(e) => results[i] = Err(e),
            }
        }
        let jobs: Vec<Job> = ready
            .iter()
            .map(|&i| Job {
                target: restore_root.join(&files[i].1),
                node: files[i].0.clone(),
            })
            .collect();
        let writer = Writer::new(repo, contents, false, false);
        let written = writer.write(&jobs, &rustic_core::Progress::hidden());
        for (&i, w) in ready.iter().zip(written) {
            let (node, path, digest) = &files[i];
            results[i] = match w {
                Some(Ok(())) => check_written(node, &restore_root.join(path), digest),
                Some(Err(e)) => Err((FailureClass::Unreadable, format!("restore failed: {e}"))),
                // The writer is told to attempt every file.
                None => Err((FailureClass::Unreadable, "not restored".into())),
            };
        }
        remaining = later;
    }
    results
}

/// The way to the file's place in `restore_root` is clear: a relative path, a plain name, no
/// symlink on the way, no file there, its folder made.
fn clear_way(
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
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| unreadable(format!("cannot make {}: {e}", parent.display())))?;
    }
    Ok(())
}

/// The restored file at `dest` holds the node's content, mode and mtime.
fn check_written(
    node: &Node,
    dest: &Path,
    digest: &[u8; 32],
) -> std::result::Result<(), (FailureClass, String)> {
    let unreadable = |what: String| (FailureClass::Unreadable, what);
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
    if written != node.meta.size || hasher.finalize()[..] != digest[..] {
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
