//! A backend wrapper that checks the hash of every whole repository file read through it, so a
//! verification notices a damaged file even where rustic_core would not look, and counts what
//! was read.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use rustic_core::{BytesList, FileType, Id, ReadBackend, RusticResult, WriteBackend};
use sha2::{Digest, Sha256};

use super::{Failure, FailureClass, target_failure};
use crate::{fanout::Fanout, layout::file_path};

/// Checks the hashes of every whole file read through it (keys, index, snapshots) and counts
/// the bytes read; chunks read from packs are checked by the caller against their ids.
#[derive(Debug)]
pub(super) struct Witness {
    pub(super) inner: Fanout,
    pub(super) bad: Mutex<Vec<(FileType, Id, String)>>,
    pub(super) hashed: AtomicU64,
    /// Bytes read from the target, whatever for.
    pub(super) read: AtomicU64,
}

impl Witness {
    fn check(&self, tpe: FileType, id: &Id, bytes: &Bytes) {
        if tpe == FileType::Config {
            return;
        }
        self.hashed.fetch_add(1, Ordering::Relaxed);
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
        self.read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
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
        let bytes = self
            .inner
            .read_partial(tpe, id, cacheable, offset, length)?;
        self.read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
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

pub(super) fn witness_failures(target: &str, w: &Witness) -> Vec<Failure> {
    w.bad
        .lock()
        .map(|b| {
            b.iter()
                .map(|(_, _, what)| target_failure(target, FailureClass::Mismatch, what.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Why a chunk of `pack` could not be read: the pack is gone, or what reading it said (a
/// chunk that fails its MAC or lies past the end of the file is damage). Whole packs are not
/// read: that is `check --read-data`'s work, and a sample must cost what it checks.
pub(super) fn diagnose_pack(
    store: &dyn crate::store::Store,
    pack: &Id,
    err: &rustic_core::RusticError,
) -> (FailureClass, String) {
    let path = file_path(FileType::Pack, pack);
    if let Ok(None) = store.stat(&path) {
        return (FailureClass::Missing, format!("pack {path} is missing"));
    }
    let why = crate::error::rustic_words(err);
    let damaged = ["MAC", "decrypt", "shorter", "decompress", "length"]
        .iter()
        .any(|w| why.contains(w));
    if damaged {
        (
            FailureClass::Mismatch,
            format!("pack {path} is damaged: {why}"),
        )
    } else {
        (
            FailureClass::Unreadable,
            format!("pack {path} cannot be read: {why}"),
        )
    }
}
