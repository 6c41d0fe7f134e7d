//! A backend wrapper that checks the hash of every repository file read through it, so a
//! verification notices a damaged file even where rustic_core would not look.

use std::{collections::BTreeSet, sync::Mutex};

use bytes::Bytes;
use rustic_core::{BytesList, FileType, Id, ReadBackend, RusticResult, WriteBackend};
use sha2::{Digest, Sha256};

use super::{Failure, FailureClass, target_failure};
use crate::{fanout::Fanout, layout::file_path};

/// Checks the hashes of every non-config file read through it and remembers the data packs
/// read, whose full hash is checked afterwards.
#[derive(Debug)]
pub(super) struct Witness {
    pub(super) inner: Fanout,
    pub(super) bad: Mutex<Vec<(FileType, Id, String)>>,
    pub(super) packs: Mutex<BTreeSet<Id>>,
    pub(super) hashed: Mutex<u64>,
}

impl Witness {
    fn check(&self, tpe: FileType, id: &Id, bytes: &Bytes) {
        if tpe == FileType::Config {
            return;
        }
        if let Ok(mut n) = self.hashed.lock() {
            *n += 1;
        }
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
        if tpe == FileType::Pack
            && let Ok(mut p) = self.packs.lock()
        {
            p.insert(*id);
        }
        self.inner.read_partial(tpe, id, cacheable, offset, length)
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

/// Reads a whole data pack from the target's own storage and checks its hash.
pub(super) fn hash_pack(
    store: &dyn crate::store::Store,
    pack: &Id,
) -> Option<(FailureClass, String)> {
    let path = file_path(FileType::Pack, pack);
    match store.read(&path) {
        Ok(bytes) if Id::new(Sha256::digest(&bytes).into()) == *pack => None,
        Ok(_) => Some((
            FailureClass::Mismatch,
            format!("pack {path} is corrupt: its SHA-256 does not match its name"),
        )),
        Err(e) if e.is_not_found() => {
            Some((FailureClass::Missing, format!("pack {path} is missing")))
        }
        Err(e) => Some((
            FailureClass::Unreadable,
            format!("pack {path} cannot be read: {e}"),
        )),
    }
}
