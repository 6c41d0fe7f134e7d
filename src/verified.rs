//! Verified reads for restores: a repository file is used only once its SHA-256 matches its
//! name, and one that does not is read from the next target instead.
//!
//! rustic_core reads data blobs as byte ranges of a pack, and a blob that fails to decrypt ends
//! the restore; a damaged pack on the first target would stop it even though the next target
//! holds an intact copy. So a pack is read whole from the first target whose copy hashes right,
//! and the ranges are served from that copy, kept in a bounded cache (a restore reads the blobs
//! of a pack together).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use rustic_core::Id;

use crate::{fanout::Member, layout::hash_matches};

/// Memory the verified packs may take at once.
const BUDGET: usize = 256 << 20;

/// The packs read and verified most recently.
#[derive(Debug, Default)]
pub(crate) struct VerifiedPacks {
    held: Mutex<VecDeque<(Id, Bytes)>>,
    /// One reader per pack: readers of a pack being read wait for it instead of reading it too.
    loading: Mutex<std::collections::BTreeMap<Id, Arc<Mutex<()>>>>,
}

impl VerifiedPacks {
    fn get(&self, id: &Id) -> Option<Bytes> {
        let held = self.held.lock().ok()?;
        held.iter().find(|(i, _)| i == id).map(|(_, b)| b.clone())
    }

    fn put(&self, id: Id, bytes: Bytes) {
        if bytes.len() > BUDGET {
            return;
        }
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        if held.iter().any(|(i, _)| *i == id) {
            return;
        }
        let mut total: usize = held.iter().map(|(_, b)| b.len()).sum::<usize>() + bytes.len();
        while total > BUDGET {
            match held.pop_front() {
                Some((_, b)) => total -= b.len(),
                None => break,
            }
        }
        held.push_back((id, bytes));
    }

    /// `length` bytes at `offset` of pack `id` at `path`, from the first member whose copy is
    /// intact; `fell_back` is told which copies were passed over, and why.
    pub(crate) fn range(
        &self,
        members: &[&Arc<Member>],
        id: &Id,
        path: &str,
        offset: u64,
        length: u64,
        fell_back: impl Fn(&str, &[String]),
    ) -> Result<Bytes, Vec<String>> {
        let pack = match self.get(id) {
            Some(b) => b,
            None => {
                let one = self
                    .loading
                    .lock()
                    .map(|mut l| l.entry(*id).or_default().clone())
                    .unwrap_or_default();
                let _reading = one.lock();
                match self.get(id) {
                    Some(b) => b,
                    None => {
                        let b = first_intact(members, path, &fell_back);
                        // Cached before the waiters are let in, so they find it.
                        if let Ok(b) = &b {
                            self.put(*id, b.clone());
                        }
                        if let Ok(mut l) = self.loading.lock() {
                            l.remove(id);
                        }
                        b?
                    }
                }
            }
        };
        let end = offset.saturating_add(length);
        if end > pack.len() as u64 {
            return Err(vec![format!(
                "{path}: range {offset}+{length} lies beyond its {} bytes",
                pack.len()
            )]);
        }
        // Both bounds are within the pack's length, which is a usize.
        #[allow(clippy::cast_possible_truncation)]
        Ok(pack.slice(offset as usize..end as usize))
    }
}

/// The whole file at `path` from the first member whose copy hashes to its name.
///
/// # Errors
/// Why each member's copy was not used.
pub(crate) fn first_intact(
    members: &[&Arc<Member>],
    path: &str,
    fell_back: &impl Fn(&str, &[String]),
) -> Result<Bytes, Vec<String>> {
    let mut errors = Vec::new();
    for m in members {
        match m.store().read(path) {
            Ok(b) if hash_matches(path, &b) => {
                if !errors.is_empty() {
                    fell_back(&m.name, &errors);
                }
                return Ok(b);
            }
            Ok(_) => errors.push(format!(
                "`{}`: its copy does not match its SHA-256 name",
                m.name
            )),
            Err(e) => errors.push(format!("`{}`: {e}", m.name)),
        }
    }
    Err(errors)
}
