//! A restore's regular files, contents and metadata in one pass: each file is created, written,
//! given its owner, mode and times through the one descriptor, and closed. Small files (one
//! read each) are read together, several of one pack to a request, in pack order; larger ones
//! stream blob by blob. Every blob is checked, and what fails is read from the next target
//! ([`Contents`]). rustic_core's pass that follows makes folders, links and special files, and
//! sets the metadata of what this one leaves (hard-linked files, files with extended
//! attributes); the files finished here it never sees.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fs::{File, FileTimes, Permissions},
    io::{Seek, SeekFrom, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
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

/// What the pass did.
pub(super) struct Written {
    /// Existing files found identical (with `if-changed`): only their metadata was set.
    pub unchanged: u64,
    /// The snapshot paths of the files finished here, metadata and all.
    pub done: HashSet<PathBuf>,
}

struct Job {
    rel: PathBuf,
    target: PathBuf,
    node: Node,
}

/// Writes every regular file of `entries` into place (see the module documentation). With
/// `if_changed`, an existing file whose content is the snapshot's is kept.
pub(super) fn write_all<S: IndexedFull + Sync>(
    repo: &Repository<S>,
    contents: &Contents,
    entries: impl Iterator<Item = rustic_core::RusticResult<(PathBuf, Node)>>,
    (dest_root, is_file): (&Path, bool),
    total: u64,
    if_changed: bool,
) -> Result<Written> {
    let mut linked = BTreeSet::new();
    let mut jobs = Vec::new();
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
        jobs.push(Job { rel, target, node });
    }
    // Folders once each, parents first (the way was cleared of links before).
    if !is_file {
        let dirs: BTreeSet<&Path> = jobs.iter().filter_map(|j| j.target.parent()).collect();
        for d in dirs {
            std::fs::create_dir_all(d).map_err(|source| Error::Io {
                path: d.to_path_buf(),
                source,
            })?;
        }
    }
    let not_restored = |j: &Job, why: String| {
        Error::Input(format!(
            "{} could not be restored: {why}",
            j.target.display()
        ))
    };
    let mut small: Vec<(usize, Piece)> = Vec::new();
    let mut other = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        match Contents::one_read(repo, &j.node).map_err(|why| not_restored(j, why))? {
            Some(p) => small.push((i, p)),
            None => other.push(i),
        }
    }
    // Pack order: neighbours in a pack are read together.
    small.sort_by_key(|(_, p)| (p.pack(), p.offset()));
    let mut batches: Vec<Vec<(usize, &Piece)>> = Vec::new();
    for (i, p) in &small {
        if let Some(b) = batches.last_mut()
            && let Some((_, first)) = b.first()
            && first.pack() == p.pack()
            && p.end().saturating_sub(first.offset()) <= MAX_MANY
        {
            b.push((*i, p));
            continue;
        }
        batches.push(vec![(*i, p)]);
    }

    let bar = repo.progress_bytes("restoring");
    bar.set_length(total);
    let pass = Pass {
        repo,
        contents,
        if_changed,
        bar: &bar,
        owners: Owners::default(),
        unchanged: AtomicU64::new(0),
    };
    let read_together = crate::par::map(&batches, WRITERS, |batch| {
        let pieces: Vec<&Piece> = batch.iter().map(|(_, p)| *p).collect();
        for ((i, _), got) in batch.iter().zip(contents.fetch_many(&pieces)) {
            let j = &jobs[*i];
            let blobs = got.map_err(|why| not_restored(j, why))?;
            pass.file(j, Some(&blobs))?;
        }
        Ok(())
    });
    read_together.into_iter().collect::<Result<Vec<()>>>()?;
    let streamed = crate::par::map(&other, WRITERS, |i| pass.file(&jobs[*i], None));
    streamed.into_iter().collect::<Result<Vec<()>>>()?;
    bar.finish();
    Ok(Written {
        unchanged: pass.unchanged.into_inner(),
        done: jobs
            .into_iter()
            .filter(|j| j.node.meta.links <= 1 && j.node.meta.extended_attributes.is_empty())
            .map(|j| j.rel)
            .collect(),
    })
}

struct Pass<'a, S: IndexedFull> {
    repo: &'a Repository<S>,
    contents: &'a Contents,
    if_changed: bool,
    bar: &'a Progress,
    owners: Owners,
    unchanged: AtomicU64,
}

impl<S: IndexedFull + Sync> Pass<'_, S> {
    /// One file: written from `blobs` (its whole content) or streamed, then its metadata.
    fn file(&self, j: &Job, blobs: Option<&[Bytes]>) -> Result<()> {
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
            self.bar.inc(j.node.meta.size);
            open(false)?
        } else {
            let mut file = open(true)?;
            match blobs {
                Some(blobs) => {
                    put(&mut file, blobs).map_err(io)?;
                    self.bar.inc(j.node.meta.size);
                }
                None => {
                    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
                    let length = self
                        .contents
                        .write(self.repo, &j.node, &mut out, |n| self.bar.inc(n))
                        .map_err(|why| {
                            Error::Input(format!(
                                "{} could not be restored: {why}",
                                j.target.display()
                            ))
                        })?;
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
