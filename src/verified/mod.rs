//! Verified reads for reading commands: nothing a target gives is used before it is proven, and
//! what fails is read from the next target instead.
//!
//! File contents ([`Contents`]) are read blob by blob, each blob checked against its id. What
//! rustic_core reads itself (trees, as byte ranges of a pack it cannot check against anything)
//! comes from a pack read whole from the first target whose copy hashes to its name, kept in a
//! small cache ([`packs::VerifiedPacks`]; tree packs are small, and a restore reads a pack's trees
//! together).

use std::{
    io::{Seek, SeekFrom, Write},
    sync::Arc,
};

use bytes::Bytes;
use rustic_core::{
    FileType, Id, IndexedFull, Repository,
    repofile::{MasterKey, Node},
};
use sha2::{Digest, Sha256};

pub(crate) mod packs;

use crate::{fanout::member::first_sound, layout::file_path, sealed::Cipher, store::Store};

/// Most bytes read in one request: neighbouring blobs of a file are read together, so a file
/// packed in order costs a few requests, not one per blob.
const MAX_READ: u64 = 4 << 20;

/// One blob of a [`Group`]: where in the group's bytes, and what it must open to.
#[derive(Debug)]
struct Blob {
    id: Id,
    at: usize,
    length: usize,
    /// Its plain length when stored compressed.
    plain: Option<usize>,
}

/// Neighbouring blobs of one pack, read in one request.
#[derive(Debug)]
struct Group {
    pack: Id,
    offset: u64,
    length: u64,
    blobs: Vec<Blob>,
}

/// File contents read blob by blob, each blob checked where it is used: it opens with the
/// repository key and its plain bytes hash to its id. A blob that fails is read from the next
/// target, so two copies damaged in different places still give the file back; memory is a
/// few reads per file, whatever the size of the pack or of the restore.
#[derive(Debug, Clone)]
pub(crate) struct Contents {
    fanout: crate::fanout::Fanout,
    cipher: Arc<Cipher>,
    /// Bytes read from the targets.
    read: Arc<std::sync::atomic::AtomicU64>,
    /// Blobs already read and checked (by [`Self::blobs`]): given from here, not read again.
    ready: Option<Arc<std::collections::BTreeMap<Id, Bytes>>>,
}

impl Contents {
    /// Contents read through `fanout`'s active members, in order.
    ///
    /// # Errors
    /// The key's parts have the wrong lengths.
    pub(crate) fn new(fanout: &crate::fanout::Fanout, key: &MasterKey) -> Result<Self, String> {
        Ok(Self {
            fanout: fanout.clone(),
            cipher: Arc::new(Cipher::new(key)?),
            read: Arc::default(),
            ready: None,
        })
    }

    /// These contents, giving the blobs of `ready` without reading them again.
    pub(crate) fn with_ready(&self, ready: std::collections::BTreeMap<Id, Bytes>) -> Self {
        Self {
            ready: Some(Arc::new(ready)),
            ..self.clone()
        }
    }

    /// Bytes read from the targets so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.read.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes the content of the file `node` to `w`, reading the next blobs while it writes;
    /// `written` is told every blob's length. A blob of zeros is skipped over, not written, so
    /// a sparse file comes back sparse; the caller sets the file's length to what this returns.
    ///
    /// # Errors
    /// Why a blob could not be had from any target, or why `w` failed.
    pub(crate) fn write<S: IndexedFull>(
        &self,
        repo: &Repository<S>,
        node: &Node,
        w: &mut (impl Write + Seek),
        written: impl Fn(u64),
    ) -> Result<u64, String> {
        let groups = plan(repo, node)?;
        let mut length = 0u64;
        let mut put = |blobs: Vec<Bytes>| -> Result<(), String> {
            for b in blobs {
                let n = b.len() as u64;
                if is_zeros(&b) {
                    let skip = i64::try_from(n).map_err(|e| e.to_string())?;
                    w.seek(SeekFrom::Current(skip))
                        .map_err(|e| format!("cannot write: {e}"))?;
                } else {
                    w.write_all(&b).map_err(|e| format!("cannot write: {e}"))?;
                }
                length += n;
                written(n);
            }
            Ok(())
        };
        if groups.len() < 2 {
            groups.iter().try_for_each(|g| put(self.fetch(g)?))?;
            return Ok(length);
        }
        // One group is read and checked while the one before is written.
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            s.spawn(move || {
                for g in &groups {
                    let got = self.fetch(g);
                    let failed = got.is_err();
                    if tx.send(got).is_err() || failed {
                        break;
                    }
                }
            });
            // Returning early drops `rx`, which stops the reader.
            rx.into_iter().try_for_each(|got| put(got?))
        })?;
        Ok(length)
    }

    /// The content of the file `node` as a reader, one read of neighbouring blobs at a time
    /// (a tar stream pulls what it writes).
    ///
    /// # Errors
    /// A blob of the file is in no index.
    pub(crate) fn reader<S: IndexedFull>(
        &self,
        repo: &Repository<S>,
        node: &Node,
    ) -> Result<ContentReader<'_>, String> {
        Ok(ContentReader {
            contents: self,
            groups: plan(repo, node)?.into_iter(),
            ready: std::collections::VecDeque::new(),
        })
    }

    /// The blobs of `g`, from the first target whose copy of every one is sound.
    fn fetch(&self, g: &Group) -> Result<Vec<Bytes>, String> {
        if let Some(ready) = &self.ready
            && let Some(blobs) = g.blobs.iter().map(|b| ready.get(&b.id).cloned()).collect()
        {
            return Ok(blobs);
        }
        let path = file_path(FileType::Pack, &g.pack);
        let what = format!("reading {path}");
        first_sound(&self.fanout.active(), &self.fanout.fell_back(&what), |m| {
            self.fetch_from(m.store().as_ref(), &path, g)
        })
        .map_err(|errors| crate::error::rustic_words(&self.fanout.none_gave(&what, &errors)))
    }

    fn fetch_from(&self, store: &dyn Store, path: &str, g: &Group) -> Result<Vec<Bytes>, String> {
        let raw = store
            .read_range(path, g.offset, g.length)
            .map_err(|e| e.to_string())?;
        self.read
            .fetch_add(raw.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if raw.len() as u64 != g.length {
            return Err(format!(
                "{path}: gave {} bytes at {}, {} were asked for",
                raw.len(),
                g.offset,
                g.length
            ));
        }
        g.blobs
            .iter()
            .map(|b| {
                let short = &b.id.to_hex()[..8];
                let sealed = &raw[b.at..b.at + b.length];
                let opened = self.cipher.open_raw(sealed).ok_or_else(|| {
                    format!("{path}: blob {short} does not open with the repository key")
                })?;
                let plain = match b.plain {
                    Some(n) => decompress(&opened, n)
                        .filter(|p| p.len() == n)
                        .ok_or_else(|| format!("{path}: blob {short} does not decompress"))?,
                    None => opened,
                };
                if Id::new(Sha256::digest(&plain).into()) != b.id {
                    return Err(format!("{path}: blob {short} does not hash to its id"));
                }
                Ok(Bytes::from(plain))
            })
            .collect()
    }
}

/// A file whose blobs are one read of one pack (a small file), to be read with others of the
/// same pack ([`Contents::fetch_many`]).
#[derive(Debug)]
pub(crate) struct Piece(Group);

impl Piece {
    pub(crate) fn pack(&self) -> Id {
        self.0.pack
    }
    pub(crate) fn offset(&self) -> u64 {
        self.0.offset
    }
    pub(crate) fn end(&self) -> u64 {
        self.0.offset + self.0.length
    }
}

/// Most bytes read for several small files in one request.
pub(crate) const MAX_MANY: u64 = MAX_READ;

impl Contents {
    /// The file's blobs as one [`Piece`] when they are one read (`None`: several reads, or
    /// none for an empty file).
    ///
    /// # Errors
    /// A blob of the file is in no index.
    pub(crate) fn one_read<S: IndexedFull>(
        repo: &Repository<S>,
        node: &Node,
    ) -> Result<Option<Piece>, String> {
        let mut groups = plan(repo, node)?;
        Ok(if groups.len() == 1 {
            groups.pop().map(Piece)
        } else {
            None
        })
    }

    /// The blobs of each of `pieces` (of one pack, within [`MAX_MANY`] bytes), read in one
    /// request from the first target whose copy of every one is sound. Where no target gives
    /// them all, each piece is read alone, so that copies damaged in different places still
    /// give every file back.
    pub(crate) fn fetch_many(&self, pieces: &[&Piece]) -> Vec<Result<Vec<Bytes>, String>> {
        let (Some(first), true) = (pieces.first(), pieces.len() > 1) else {
            return pieces.iter().map(|p| self.fetch(&p.0)).collect();
        };
        let start = pieces.iter().map(|p| p.offset()).min().unwrap_or(0);
        let end = pieces.iter().map(|p| p.end()).max().unwrap_or(start);
        let mut blobs = Vec::new();
        for p in pieces {
            // Within MAX_MANY of `start`: fits a usize.
            #[allow(clippy::cast_possible_truncation)]
            let shift = (p.offset() - start) as usize;
            blobs.extend(p.0.blobs.iter().map(|b| Blob {
                id: b.id,
                at: shift + b.at,
                length: b.length,
                plain: b.plain,
            }));
        }
        let all = Group {
            pack: first.pack(),
            offset: start,
            length: end - start,
            blobs,
        };
        match self.fetch(&all) {
            Ok(plain) => {
                let mut plain = plain.into_iter();
                pieces
                    .iter()
                    .map(|p| Ok(plain.by_ref().take(p.0.blobs.len()).collect()))
                    .collect()
            }
            Err(_) => pieces.iter().map(|p| self.fetch(&p.0)).collect(),
        }
    }
}

/// Blobs of one pack less than this apart are read in one request, the bytes between them
/// too: a request costs more than this many bytes on any link (and the sampled paths' trees
/// lie scattered through a tree pack).
const GAP: u64 = 64 << 10;

impl Contents {
    /// The blobs `ids` (trees or data), in that order, each checked as every blob here is.
    /// Those of one pack less than [`GAP`] apart are read together (up to [`MAX_READ`]
    /// bytes), the groups on `workers` threads; a blob in no index, or in a read that failed
    /// on every target, is an error (the caller may read it alone to learn why).
    pub(crate) fn blobs<S: IndexedFull + Sync, T: rustic_core::PackedId + Sync>(
        &self,
        repo: &Repository<S>,
        ids: &[T],
        workers: usize,
    ) -> Vec<Result<Bytes, String>> {
        let mut out: Vec<Result<Bytes, String>> =
            ids.iter().map(|_| Err("not read".to_string())).collect();
        let mut placed: Vec<Placed> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let blob: rustic_core::BlobId = (*id).into();
            match repo.get_index_entry(id) {
                Ok(e) => placed.push((
                    *e.pack,
                    u64::from(e.location.offset),
                    u64::from(e.location.length),
                    e.location.uncompressed_length.map(|n| n.get() as usize),
                    i,
                )),
                Err(_) => out[i] = Err(format!("blob {} is in no index", &blob.to_hex()[..8])),
            }
        }
        let groups = group(placed, |i| ids[i].into());
        let fetched = crate::par::map(&groups, workers, |(g, _)| self.fetch(g));
        for ((_, at), got) in groups.iter().zip(fetched) {
            match got {
                Ok(blobs) => {
                    for (&i, b) in at.iter().zip(blobs) {
                        out[i] = Ok(b);
                    }
                }
                Err(e) => {
                    for &i in at {
                        out[i] = Err(e.clone());
                    }
                }
            }
        }
        out
    }
}

/// A blob to read: its pack, offset, stored length, plain length when compressed, and its
/// place among the blobs asked for.
type Placed = (Id, u64, u64, Option<usize>, usize);

/// `placed` in reads: blobs of one pack less than [`GAP`] apart (in offset order) share one
/// read of at most [`MAX_READ`] bytes, or a blob is read alone; each read with the places of
/// its blobs. `id` gives the blob id of a place.
fn group(
    mut placed: Vec<Placed>,
    id: impl Fn(usize) -> rustic_core::BlobId,
) -> Vec<(Group, Vec<usize>)> {
    placed.sort_unstable();
    let mut groups: Vec<(Group, Vec<usize>)> = Vec::new();
    for (pack, offset, length, plain, i) in placed {
        // One blob is at most 4 GiB (the index's u32), a group at most MAX_READ or one blob:
        // offsets within a group fit a usize.
        #[allow(clippy::cast_possible_truncation)]
        let blob = |at: u64| Blob {
            id: *id(i),
            at: at as usize,
            length: length as usize,
            plain,
        };
        if let Some((g, at)) = groups.last_mut()
            && g.pack == pack
            && offset >= g.offset + g.length
            && offset - (g.offset + g.length) < GAP
            && offset + length - g.offset <= MAX_READ
        {
            g.blobs.push(blob(offset - g.offset));
            g.length = offset + length - g.offset;
            at.push(i);
            continue;
        }
        groups.push((
            Group {
                pack,
                offset,
                length,
                blobs: vec![blob(0)],
            },
            vec![i],
        ));
    }
    groups
}

/// zstd's decompression of one blob, through this thread's context (making a context per
/// blob was an eighth of a small-file restore's CPU).
fn decompress(data: &[u8], capacity: usize) -> Option<Vec<u8>> {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Decompressor::new().ok();
        }
        c.as_mut()?.decompress(data, capacity).ok()
    })
}

/// Whether `b` is all zeros (a blob a sparse file skips over).
pub(crate) fn is_zeros(b: &[u8]) -> bool {
    const ZEROS: [u8; 4096] = [0; 4096];
    b.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

/// A file's blobs in order, neighbours in one pack grouped up to [`MAX_READ`] bytes.
fn plan<S: IndexedFull>(repo: &Repository<S>, node: &Node) -> Result<Vec<Group>, String> {
    let mut groups: Vec<Group> = Vec::new();
    for id in node.content.iter().flatten() {
        let e = repo
            .get_index_entry(id)
            .map_err(|_| format!("blob {} is in no index", &id.to_hex()[..8]))?;
        let (offset, length) = (u64::from(e.location.offset), u64::from(e.location.length));
        let blob = |at: u64| Blob {
            id: **id,
            // A group is at most MAX_READ long, or one blob: its offsets fit a usize.
            #[allow(clippy::cast_possible_truncation)]
            at: at as usize,
            length: e.location.length as usize,
            plain: e.location.uncompressed_length.map(|n| n.get() as usize),
        };
        if let Some(g) = groups.last_mut()
            && g.pack == *e.pack
            && g.offset + g.length == offset
            && g.length + length <= MAX_READ
        {
            g.blobs.push(blob(g.length));
            g.length += length;
            continue;
        }
        groups.push(Group {
            pack: *e.pack,
            offset,
            length,
            blobs: vec![blob(0)],
        });
    }
    Ok(groups)
}

/// A file's content, pulled: see [`Contents::reader`].
pub(crate) struct ContentReader<'a> {
    contents: &'a Contents,
    groups: std::vec::IntoIter<Group>,
    ready: std::collections::VecDeque<Bytes>,
}

impl std::io::Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.ready.front_mut() {
                Some(b) if b.is_empty() => {
                    self.ready.pop_front();
                }
                Some(b) => {
                    let n = buf.len().min(b.len());
                    buf[..n].copy_from_slice(&b[..n]);
                    *b = b.slice(n..);
                    return Ok(n);
                }
                None => {
                    let Some(g) = self.groups.next() else {
                        return Ok(0);
                    };
                    self.ready = self
                        .contents
                        .fetch(&g)
                        .map_err(std::io::Error::other)?
                        .into();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{fanout::Fanout, store::local_for_tests as local};

    /// Read ahead, blobs of one pack a little apart share a read (the bytes between read
    /// too); far apart, in another pack, or past [`MAX_READ`], they do not.
    #[test]
    fn blobs_of_a_pack_less_than_a_gap_apart_share_one_read() {
        let (p, q) = (Id::new([1; 32]), Id::new([2; 32]));
        let id = |i: usize| rustic_core::BlobId::from(Id::new([u8::try_from(i).unwrap(); 32]));
        let a = 1_000 + GAP - 1; // GAP - 1 after the first blob's end
        let b = a + 500 + GAP; // GAP after the second's
        let placed = vec![
            (p, a, 500, None, 0),
            (p, 0, 1_000, Some(2_000), 1),
            (q, 1_000, 100, None, 2),
            (p, 0, 1_000, Some(2_000), 3),
            (p, b, 100, None, 4),
            (p, b + 110, MAX_READ, None, 5),
        ];
        // A read: pack, offset, length, the places of its blobs, their offsets in it.
        type Read = (Id, u64, u64, Vec<usize>, Vec<usize>);
        let reads: Vec<Read> = group(placed, id)
            .into_iter()
            .map(|(g, at)| {
                let offsets = g.blobs.iter().map(|b| b.at).collect();
                (g.pack, g.offset, g.length, at, offsets)
            })
            .collect();
        let a_at = usize::try_from(a).unwrap();
        assert_eq!(
            reads,
            vec![
                (p, 0, 1_000, vec![1], vec![0]),
                // The same blob asked for twice is read twice, never overlapped.
                (p, 0, a + 500, vec![3, 0], vec![0, a_at]),
                (p, b, 100, vec![4], vec![0]),
                (p, b + 110, MAX_READ, vec![5], vec![0]),
                (q, 1_000, 100, vec![2], vec![0]),
            ]
        );
    }

    /// A blob is checked by its id, not only by its MAC: one that opens with the key but is
    /// another blob (moved, or an old one put in its place) is not used, nor one that does not
    /// open; the next target's copy is.
    #[test]
    fn a_blob_is_used_only_if_it_opens_and_hashes_to_its_id_else_the_next_copy() {
        let key = MasterKey::new();
        let cipher = Cipher::new(&key).unwrap();
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b): (Arc<dyn Store>, Arc<dyn Store>) =
            (Arc::from(local(da.path())), Arc::from(local(db.path())));
        let member = |n: &str, s: &Arc<dyn Store>| {
            Arc::new(crate::fanout::Member::new(n.into(), true, s.clone()))
        };
        let fanout = Fanout::new(
            vec![member("a", &a), member("b", &b)],
            Arc::new(crate::progress::Silent),
        );
        let contents = Contents::new(&fanout, &key).unwrap();
        // `seal` wraps bytes in a nonce and a tag exactly as restic seals a blob.
        let seal = |plain: &[u8]| cipher.seal(plain).unwrap().1;
        let (want, other) = (b"w".repeat(300), b"o".repeat(300));
        let pack = Id::random();
        let path = file_path(FileType::Pack, &pack);
        let group = |length: usize, plain: Option<usize>| Group {
            pack,
            offset: 0,
            length: length as u64,
            blobs: vec![Blob {
                id: Id::new(Sha256::digest(&want).into()),
                at: 0,
                length,
                plain,
            }],
        };
        let g = group(332, None);
        b.write(&path, vec![seal(&want)]).unwrap();

        a.write(&path, vec![seal(&other)]).unwrap();
        let on_a = contents.fetch_from(a.as_ref(), &path, &g);
        assert!(
            on_a.as_ref()
                .is_err_and(|e| e.contains("does not hash to its id")),
            "{on_a:?}"
        );
        assert_eq!(contents.fetch(&g).unwrap(), vec![Bytes::from(want.clone())]);

        let mut bent = seal(&want).to_vec();
        bent[20] ^= 1;
        a.write(&path, vec![Bytes::from(bent)]).unwrap();
        let on_a = contents.fetch_from(a.as_ref(), &path, &g);
        assert!(
            on_a.as_ref()
                .is_err_and(|e| e.contains("does not open with the repository key")),
            "{on_a:?}"
        );
        assert_eq!(contents.fetch(&g).unwrap(), vec![Bytes::from(want.clone())]);

        // Compressed, as repository version 2 stores blobs.
        let squeezed = seal(&zstd::encode_all(&want[..], 3).unwrap());
        a.write(&path, vec![squeezed.clone()]).unwrap();
        let g = group(squeezed.len(), Some(want.len()));
        assert_eq!(
            contents.fetch_from(a.as_ref(), &path, &g).unwrap(),
            vec![Bytes::from(want)]
        );
    }
}
