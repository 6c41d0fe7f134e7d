//! The index a backup deduplicates against. rustic_core's archiver reuses every blob its index
//! names; one whose pack a target being written lacks would give that target a snapshot it
//! cannot restore (an old index file put back after a prune, a pack catch-up could not copy).
//! So a backup's index holds only index files that open with the repository key and whose every
//! pack each member holds at the size the index says; the others are left out (the blobs they
//! name are written again) and named.

use std::collections::BTreeMap;

use rustic_core::{FileType, Id, ReadBackend, RusticResult};

use crate::{
    fanout::{Fanout, list_type},
    layout::{file_path, hash_matches},
    proof::Proof,
};

/// Index files read at once.
const WORKERS: usize = 8;

/// Sets `fanout`'s index listing to the index files every member can serve in full, handing
/// their checked bytes to rustic_core's read. A member whose packs cannot be listed is dropped
/// (nothing says what it lacks). Returns, by member, the packs it lacks that an index names:
/// holes in its repository that this backup works around but cannot fill.
///
/// # Errors
/// The index files could not be listed.
pub(super) fn keep_sound(
    fanout: &Fanout,
    proof: &Proof,
) -> RusticResult<BTreeMap<String, Vec<String>>> {
    let mut held: Vec<(String, BTreeMap<Id, u32>)> = Vec::new();
    for m in fanout.active() {
        match list_type(m.store().as_ref(), FileType::Pack) {
            Ok(packs) => held.push((m.name.clone(), packs.into_iter().collect())),
            Err(e) => fanout.drop_member(m, "listing data/", e),
        }
    }
    let listed = fanout.list_with_size(FileType::Index)?;
    let active = fanout.active();
    let checked = crate::par::map(&listed, WORKERS, |(id, size)| {
        let path = file_path(FileType::Index, id);
        let mut why = Vec::new();
        for m in &active {
            let bytes = match m.store().read(&path) {
                Ok(b) if hash_matches(&path, &b) => b,
                Ok(_) => {
                    why.push(format!("`{}`: its copy does not match its name", m.name));
                    continue;
                }
                Err(e) => {
                    why.push(format!("`{}`: {e}", m.name));
                    continue;
                }
            };
            let index = proof.open_index(&path, &bytes)?;
            let mut lacking: Vec<(String, String)> = Vec::new();
            for pack in &index.packs {
                let size = pack.pack_size();
                for (name, _) in held.iter().filter(|(_, p)| p.get(&*pack.id) != Some(&size)) {
                    lacking.push((name.clone(), file_path(FileType::Pack, &pack.id)));
                }
            }
            return Ok(((*id, *size), bytes, lacking));
        }
        Err(why.join("; "))
    });
    let mut sound = Vec::new();
    let mut left_out = Vec::new();
    let mut holes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((id, _), r) in listed.iter().zip(checked) {
        let path = file_path(FileType::Index, id);
        match r {
            Ok((entry, bytes, lacking)) if lacking.is_empty() => {
                fanout.preread(path, bytes);
                sound.push(entry);
            }
            Ok((_, _, lacking)) => {
                let (name, pack) = &lacking[0];
                left_out.push(format!(
                    "{path}: it names {pack}, which `{name}` does not hold"
                ));
                for (name, pack) in lacking {
                    holes.entry(name).or_default().push(pack);
                }
            }
            Err(why) => left_out.push(format!("{path}: {why}")),
        }
    }
    if let Some(first) = left_out.first() {
        fanout.observer().warn(&format!(
            "{} index file(s) left out of this backup, so the data they name is written again; \
             `cairn check` tells more; first: {first}",
            left_out.len()
        ));
    }
    for packs in holes.values_mut() {
        packs.sort();
        packs.dedup();
    }
    fanout.set_listing(FileType::Index, sound);
    Ok(holes)
}
