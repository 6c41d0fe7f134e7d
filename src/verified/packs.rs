//! Whole packs read from the first target whose copy hashes to its name, kept in a small cache:
//! what rustic_core reads itself (trees, as byte ranges of a pack it cannot check against
//! anything) comes from here.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use rustic_core::Id;

use crate::{
    fanout::member::{Member, first_sound},
    layout::hash_matches,
};

/// Memory the verified packs may take at once (data packs are 32 MiB and more; a restore reads
/// none of them this way, other commands' rare blob reads may).
const BUDGET: usize = 64 << 20;

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
    first_sound(members, fell_back, |m| match m.store().read(path) {
        Ok(b) if hash_matches(path, &b) => Ok(b),
        Ok(_) => Err("its copy does not match its SHA-256 name".into()),
        Err(e) => Err(e.to_string()),
    })
}
