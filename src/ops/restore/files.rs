//! A restore's regular files, contents and metadata in one pass: each file is created, written,
//! given its owner, mode and times through the one descriptor, and closed. Small files (one
//! read each) are read together, several of one pack to a request, in pack order; larger ones
//! stream blob by blob. Every blob is checked, and what fails is read from the next target
//! ([`Contents`]). rustic_core's pass that follows makes folders, links and special files, and
//! sets the metadata of what this one leaves (hard-linked files, files with extended
//! attributes); the files finished here it never sees.

use std::{
    collections::{BTreeSet, HashMap},
    fs::{File, FileTimes, Permissions},
    io::{Seek, SeekFrom, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::SystemTime,
};

use bytes::Bytes;
use rustic_core::{
    IndexedFull, Progress, Repository,
    repofile::{Node, NodeType},
};

use super::{dest_path, same_as_snapshot};
use crate::{
    error::{Error, Result},
    verified::{Contents, MAX_MANY, Piece, is_zeros},
};

/// Files written at once; each reads its next blobs while it writes.
const WRITERS: usize = 4;
/// Most bytes of other blobs read between two small files read together: a few requests
/// saved are not worth reading much that nobody asked for (a verification's sample is sparse).
const MAX_GAP: u64 = 64 << 10;
/// Files planned and written together: a window of the listing, so that memory stays flat
/// whatever the number of files (the small files of a folder sit together in its packs).
const WINDOW: usize = 8192;

/// One regular file to write: where it goes, its node.
pub(crate) struct Job {
    pub(crate) target: PathBuf,
    pub(crate) node: Node,
}

/// Whether this pass finishes `node` (content and metadata), so rustic_core's must not see it:
/// a regular file with one name and no extended attributes.
pub(super) fn finished_here(node: &Node) -> bool {
    node.node_type == NodeType::File
        && node.meta.links <= 1
        && node.meta.extended_attributes.is_empty()
}

/// Writes every regular file of `entries` into place (see the module documentation), a
/// window at a time; stops at the first file that cannot be restored. With `if_changed`, an
/// existing file whose content is the snapshot's is kept. Returns how many were kept so.
pub(super) fn write_all<S: IndexedFull + Sync>(
    repo: &Repository<S>,
    contents: &Contents,
    entries: impl Iterator<Item = rustic_core::RusticResult<(PathBuf, Node)>>,
    (dest_root, is_file): (&Path, bool),
    total: u64,
    if_changed: bool,
) -> Result<u64> {
    let bar = repo.progress_bytes("restoring");
    bar.set_length(total);
    let writer = Writer::new(repo, contents, if_changed, true);
    let flush = |window: &mut Vec<Job>| -> Result<()> {
        if !is_file {
            // Folders once each, parents first (the way was cleared of links before).
            let dirs: BTreeSet<&Path> = window.iter().filter_map(|j| j.target.parent()).collect();
            for d in dirs {
                std::fs::create_dir_all(d).map_err(|source| Error::Io {
                    path: d.to_path_buf(),
                    source,
                })?;
            }
        }
        let written = writer.write(window, &bar);
        window.clear();
        // The failure itself, not a file left out after it.
        written
            .into_iter()
            .flatten()
            .collect::<Result<Vec<()>>>()
            .map(drop)
    };
    let mut linked = BTreeSet::new();
    let mut window = Vec::with_capacity(WINDOW);
    for entry in entries {
        let (rel, node) = entry?;
        if node.node_type != NodeType::File {
            continue;
        }
        // The second and later names of a hard link are linked by rustic_core's pass.
        if node.meta.links > 1 && !linked.insert((node.meta.device_id, node.meta.inode)) {
            continue;
        }
        let target = dest_path(dest_root, &rel, is_file);
        window.push(Job { target, node });
        if window.len() == WINDOW {
            flush(&mut window)?;
        }
    }
    flush(&mut window)?;
    bar.finish();
    Ok(writer.unchanged.load(Ordering::Relaxed))
}

/// Writes files, contents and metadata, [`WRITERS`] at a time.
pub(crate) struct Writer<'a, S: IndexedFull> {
    repo: &'a Repository<S>,
    contents: &'a Contents,
    if_changed: bool,
    owners: Owners,
    unchanged: AtomicU64,
    /// Set at the first failure when told to stop there: what is left is not attempted.
    stop_at_first: bool,
    stopped: AtomicBool,
}

impl<'a, S: IndexedFull + Sync> Writer<'a, S> {
    /// With `stop_at_first`, the files after a failure are not attempted.
    pub(crate) fn new(
        repo: &'a Repository<S>,
        contents: &'a Contents,
        if_changed: bool,
        stop_at_first: bool,
    ) -> Self {
        Self {
            repo,
            contents,
            if_changed,
            owners: Owners::default(),
            unchanged: AtomicU64::new(0),
            stop_at_first,
            stopped: AtomicBool::new(false),
        }
    }

    /// Writes each of `jobs` (their folders exist); each one's result, in order, `None` for a
    /// file not attempted (after a failure, when told to stop there). Small files are read
    /// together in pack order, the others streamed.
    pub(crate) fn write(&self, jobs: &[Job], bar: &Progress) -> Vec<Option<Result<()>>> {
        let mut results: Vec<Option<Result<()>>> = (0..jobs.len()).map(|_| None).collect();
        let mut small: Vec<(usize, Piece)> = Vec::new();
        let mut other = Vec::new();
        for (i, j) in jobs.iter().enumerate() {
            match Contents::one_read(self.repo, &j.node) {
                Ok(Some(p)) => small.push((i, p)),
                Ok(None) => other.push(i),
                Err(why) => results[i] = Some(Err(not_restored(j, &why))),
            }
        }
        // Pack order: neighbours in a pack are read together.
        small.sort_by_key(|(_, p)| (p.pack(), p.offset()));
        // A piece joins the read before it when it lies in the same pack, at most MAX_GAP
        // after the end of that read, and the read stays within MAX_MANY.
        let mut batches: Vec<(u64, Vec<(usize, &Piece)>)> = Vec::new();
        for (i, p) in &small {
            if let Some((end, b)) = batches.last_mut()
                && let Some((_, first)) = b.first()
                && first.pack() == p.pack()
                && p.offset() <= *end + MAX_GAP
                && p.end().saturating_sub(first.offset()) <= MAX_MANY
            {
                *end = (*end).max(p.end());
                b.push((*i, p));
                continue;
            }
            batches.push((p.end(), vec![(*i, p)]));
        }
        let batches: Vec<Vec<(usize, &Piece)>> = batches.into_iter().map(|(_, b)| b).collect();
        let read_together = crate::par::map(&batches, WRITERS, |batch| {
            if self.stopped.load(Ordering::Relaxed) {
                return Vec::new();
            }
            let pieces: Vec<&Piece> = batch.iter().map(|(_, p)| *p).collect();
            batch
                .iter()
                .zip(self.contents.fetch_many(&pieces))
                .map(|((i, _), got)| {
                    let j = &jobs[*i];
                    let done = got
                        .map_err(|why| not_restored(j, &why))
                        .and_then(|blobs| self.file(j, Some(&blobs), bar));
                    (*i, self.note(done))
                })
                .collect()
        });
        let streamed = crate::par::map(&other, WRITERS, |i| {
            if self.stopped.load(Ordering::Relaxed) {
                return None;
            }
            Some((*i, self.note(self.file(&jobs[*i], None, bar))))
        });
        for (i, r) in read_together
            .into_iter()
            .flatten()
            .chain(streamed.into_iter().flatten())
        {
            results[i] = Some(r);
        }
        results
    }

    fn note(&self, r: Result<()>) -> Result<()> {
        if r.is_err() && self.stop_at_first {
            self.stopped.store(true, Ordering::Relaxed);
        }
        r
    }

    /// One file: written from `blobs` (its whole content) or streamed, then its metadata.
    fn file(&self, j: &Job, blobs: Option<&[Bytes]>, bar: &Progress) -> Result<()> {
        let io = |source| Error::Io {
            path: j.target.clone(),
            source,
        };
        let open = |create: bool| {
            // Never through a link (the way was cleared of them), and the owner's alone until
            // it has its mode.
            let mut o = std::fs::OpenOptions::new();
            o.write(true).custom_flags(libc::O_NOFOLLOW);
            if create {
                o.create(true).truncate(true).mode(0o600);
            }
            o.open(&j.target).map_err(io)
        };
        let file = if self.if_changed && same_as_snapshot(self.repo, &j.node, &j.target).is_ok() {
            self.unchanged.fetch_add(1, Ordering::Relaxed);
            bar.inc(j.node.meta.size);
            open(false)?
        } else {
            let mut file = open(true)?;
            match blobs {
                Some(blobs) => {
                    put(&mut file, blobs).map_err(io)?;
                    bar.inc(j.node.meta.size);
                }
                None => {
                    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
                    let length = self
                        .contents
                        .write(self.repo, &j.node, &mut out, |n| bar.inc(n))
                        .map_err(|why| not_restored(j, &why))?;
                    file = out.into_inner().map_err(|e| io(e.into_error()))?;
                    // Holes (blobs of zeros skipped over) at the end are made by the length.
                    file.set_len(length).map_err(io)?;
                }
            }
            file
        };
        self.owners.set_metadata(&file, &j.node).map_err(io)
    }
}

fn not_restored(j: &Job, why: &str) -> Error {
    Error::Input(format!(
        "{} could not be restored: {why}",
        j.target.display()
    ))
}

/// Writes `blobs` from the start of a new file; a blob of zeros is skipped over, so a sparse
/// file comes back sparse.
fn put(file: &mut File, blobs: &[Bytes]) -> std::io::Result<()> {
    let (mut length, mut hole) = (0u64, false);
    for b in blobs {
        let n = b.len() as u64;
        if is_zeros(b) {
            file.seek(SeekFrom::Current(
                i64::try_from(n).map_err(std::io::Error::other)?,
            ))?;
            hole = true;
        } else {
            file.write_all(b)?;
            hole = false;
        }
        length += n;
    }
    if hole {
        file.set_len(length)?;
    }
    Ok(())
}

/// Owners' names resolved as rustic_core resolves them (a name known here wins over the
/// number saved), each once.
#[derive(Default)]
struct Owners {
    users: Mutex<HashMap<String, Option<u32>>>,
    groups: Mutex<HashMap<String, Option<u32>>>,
}

impl Owners {
    fn uid(&self, name: &str) -> Option<u32> {
        let mut known = self.users.lock().ok()?;
        *known.entry(name.to_string()).or_insert_with(|| {
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
        })
    }

    fn gid(&self, name: &str) -> Option<u32> {
        let mut known = self.groups.lock().ok()?;
        *known.entry(name.to_string()).or_insert_with(|| {
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
        })
    }

    /// What rustic_core's restore sets, in its order (owner, mode, times), on the descriptor.
    fn set_metadata(&self, file: &File, node: &Node) -> std::io::Result<()> {
        let m = &node.meta;
        let uid = m.user.as_deref().and_then(|n| self.uid(n)).or(m.uid);
        let gid = m.group.as_deref().and_then(|n| self.gid(n)).or(m.gid);
        if uid.is_some() || gid.is_some() {
            // As rustic_core: a user not allowed to give a file away restores it as their own.
            let _ = std::os::unix::fs::fchown(file, uid, gid);
        }
        if let Some(mode) = m.mode {
            file.set_permissions(Permissions::from_mode(mode_from_go(mode)))?;
        }
        if let Some(mtime) = m.mtime {
            let atime = m.atime.unwrap_or(mtime);
            file.set_times(
                FileTimes::new()
                    .set_accessed(SystemTime::from(atime))
                    .set_modified(SystemTime::from(mtime)),
            )?;
        }
        Ok(())
    }
}

/// A restic (Go) file mode's permission bits, setuid, setgid and sticky as Unix has them.
fn mode_from_go(go: u32) -> u32 {
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const STICKY: u32 = 1 << 20;
    let mut mode = go & 0o777;
    for (bit, unix) in [(SETUID, 0o4000), (SETGID, 0o2000), (STICKY, 0o1000)] {
        if go & bit != 0 {
            mode |= unix;
        }
    }
    mode
}

#[cfg(test)]
mod tests {
    #[test]
    fn go_modes_keep_permissions_and_special_bits() {
        assert_eq!(super::mode_from_go(0o644), 0o644);
        assert_eq!(super::mode_from_go((1 << 23) | 0o755), 0o4755);
        assert_eq!(super::mode_from_go((1 << 31) | (1 << 20) | 0o777), 0o1777);
    }
}
