//! A pack's header, read on its own (its last bytes, not the pack), so that a sampled chunk's
//! place is checked against what the pack itself says, not only against the index.
//!
//! restic's layout: the blobs, then the header sealed with the repository key, then the
//! header's sealed length (4 bytes, little endian). The opened header is one entry per blob:
//! a type byte (0 data, 1 tree, 2 compressed data, 3 compressed tree), the stored length (u32),
//! for a compressed blob its plain length (u32), and its id (32 bytes); blobs follow each other
//! from offset 0 in that order.

use rustic_core::{FileType, Id};

use super::FailureClass;
use crate::{layout::file_path, sealed::Cipher, store::Store};

/// The bytes read from a pack's end for its header: a header of up to about 400 blobs.
const TAIL: u64 = 16 << 10;

/// One blob as the header places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: Id,
    pub(crate) offset: u32,
    pub(crate) length: u32,
}

/// Why a header cannot be used: missing, unreadable (the storage failed), or damaged.
pub(crate) type Unusable = (FailureClass, String);

/// Reads and opens the header of `pack`: its entries (or why they cannot be used), and the
/// bytes read for it.
pub(crate) fn read(
    store: &dyn Store,
    cipher: &Cipher,
    pack: &Id,
) -> (Result<Vec<Entry>, Unusable>, u64) {
    let path = file_path(FileType::Pack, pack);
    let mut read = 0u64;
    let unreadable =
        |e: crate::store::StoreError| (FailureClass::Unreadable, format!("cannot be read: {e}"));
    let damaged = |what: String| (FailureClass::Mismatch, what);
    let result = (|| {
        let size = store
            .stat(&path)
            .map_err(unreadable)?
            .ok_or_else(|| (FailureClass::Missing, "is missing".to_string()))?;
        if size < 4 {
            return Err(damaged(format!(
                "is {size} bytes long, too short for a header"
            )));
        }
        // The header is most often within the last TAIL bytes: one read, not two.
        let span = size.min(TAIL);
        let tail = store
            .read_range(&path, size - span, span)
            .map_err(unreadable)?;
        read += tail.len() as u64;
        let len = tail
            .len()
            .checked_sub(4)
            .and_then(|at| tail.get(at..))
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| damaged("gave a short read".into()))?;
        if u64::from(len) + 4 > size {
            return Err(damaged(format!(
                "has a header length of {len} bytes, more than the pack holds ({size})"
            )));
        }
        // Within the tail's length, a usize.
        #[allow(clippy::cast_possible_truncation)]
        let sealed = if u64::from(len) + 4 <= span {
            tail.slice(tail.len() - 4 - len as usize..tail.len() - 4)
        } else {
            let sealed = store
                .read_range(&path, size - 4 - u64::from(len), u64::from(len))
                .map_err(unreadable)?;
            read += sealed.len() as u64;
            sealed
        };
        let plain = cipher.open_raw(&sealed).ok_or_else(|| {
            damaged("has a header that does not open with the repository key".into())
        })?;
        let entries = parse(&plain).map_err(damaged)?;
        let blobs: u64 = entries.iter().map(|e| u64::from(e.length)).sum();
        if blobs + u64::from(len) + 4 != size {
            return Err(damaged(format!(
                "is {size} bytes, its header accounts for {}",
                blobs + u64::from(len) + 4
            )));
        }
        Ok(entries)
    })();
    (result, read)
}

fn parse(plain: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    let (mut at, mut offset) = (0usize, 0u32);
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(plain.get(i..i + 4)?.try_into().ok()?))
    };
    while at < plain.len() {
        let bad = || format!("has a header entry it cannot read at byte {at}");
        let (length, id_at) = match plain[at] {
            0 | 1 => (u32_at(at + 1).ok_or_else(bad)?, at + 5),
            2 | 3 => (u32_at(at + 1).ok_or_else(bad)?, at + 9),
            _ => return Err(bad()),
        };
        let id: [u8; 32] = plain
            .get(id_at..id_at + 32)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        out.push(Entry {
            id: Id::new(id),
            offset,
            length,
        });
        offset = offset.checked_add(length).ok_or_else(bad)?;
        at = id_at + 32;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header within the pack's last bytes is read with them, in one read; a longer one
    /// (a pack of many small files) is read whole after them.
    #[test]
    fn a_short_header_is_read_with_the_tail_and_a_long_one_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local_for_tests(dir.path());
        let cipher = Cipher::new(&rustic_core::repofile::MasterKey::new()).unwrap();
        for (n, name, reads) in [(3u16, 1u8, 1), (500, 2, 2)] {
            let blobs: Vec<Vec<u8>> = (0..n).map(|i| vec![7; 100 + usize::from(i)]).collect();
            let mut plain = Vec::new();
            let mut want = Vec::new();
            let mut offset = 0u32;
            for (i, b) in blobs.iter().enumerate() {
                let length = u32::try_from(b.len()).unwrap();
                let mut raw = [0u8; 32];
                raw[..8].copy_from_slice(&i.to_le_bytes());
                let id = Id::new(raw);
                plain.push(0);
                plain.extend(length.to_le_bytes());
                plain.extend(raw);
                want.push(Entry { id, offset, length });
                offset += length;
            }
            let sealed = cipher.seal(&plain).unwrap().1;
            let mut pack: Vec<u8> = blobs.concat();
            pack.extend(&sealed);
            pack.extend(u32::try_from(sealed.len()).unwrap().to_le_bytes());
            let id = Id::new([name; 32]);
            store
                .write(&file_path(FileType::Pack, &id), vec![pack.clone().into()])
                .unwrap();
            let (entries, read) = super::read(store.as_ref(), &cipher, &id);
            assert_eq!(entries.unwrap(), want, "{n} blobs");
            let tail = (pack.len() as u64).min(TAIL);
            let expected = if reads == 1 {
                tail
            } else {
                tail + sealed.len() as u64
            };
            assert_eq!(
                read,
                expected,
                "{n} blobs: header of {} bytes",
                sealed.len()
            );
        }
    }

    #[test]
    fn entries_of_both_kinds_follow_each_other() {
        let mut plain = vec![0u8];
        plain.extend(100u32.to_le_bytes());
        plain.extend([7u8; 32]);
        plain.push(2);
        plain.extend(50u32.to_le_bytes());
        plain.extend(80u32.to_le_bytes());
        plain.extend([9u8; 32]);
        let e = parse(&plain).unwrap();
        assert_eq!(
            e,
            vec![
                Entry {
                    id: Id::new([7; 32]),
                    offset: 0,
                    length: 100
                },
                Entry {
                    id: Id::new([9; 32]),
                    offset: 100,
                    length: 50
                },
            ]
        );
        assert!(parse(&plain[..plain.len() - 1]).is_err());
        assert!(parse(&[9]).is_err());
    }
}
