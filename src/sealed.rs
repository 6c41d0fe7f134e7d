//! restic's unpacked files (locks) and cairn's deletion records, sealed and opened with the
//! repository key exactly as restic seals its own: AES-256-CTR with Poly1305-AES, through the
//! crate rustic_core itself uses. A file that opens was written by someone holding the key.

use aes256ctr_poly1305aes::{Aes256CtrPoly1305Aes, aead::Aead};
use bytes::Bytes;
use rustic_core::repofile::MasterKey;

use crate::layout::sha256_hex;

/// Seals and opens restic's unpacked files with the repository key (AES-256-CTR with
/// Poly1305-AES, the crate rustic_core itself uses; layout nonce || ciphertext || tag).
pub struct Cipher(Aes256CtrPoly1305Aes);

impl Cipher {
    /// The cipher of a master key.
    ///
    /// # Errors
    /// When the key's parts have the wrong lengths.
    pub fn new(master: &MasterKey) -> Result<Self, String> {
        let parts = [
            (&master.encrypt, 32),
            (&master.mac.k, 16),
            (&master.mac.r, 16),
        ];
        if parts.iter().any(|(p, n)| p.len() != *n) {
            return Err("the master key has parts of the wrong length".into());
        }
        let mut key = aes256ctr_poly1305aes::Key::default();
        key[..32].copy_from_slice(&master.encrypt);
        key[32..48].copy_from_slice(&master.mac.k);
        key[48..].copy_from_slice(&master.mac.r);
        Ok(Self(Aes256CtrPoly1305Aes::new(&key)))
    }

    /// The file restic would write for `plain` (uncompressed, which repository version 2
    /// accepts for JSON), and its name.
    ///
    /// # Errors
    /// When encryption fails.
    pub fn seal(&self, plain: &[u8]) -> Result<(String, Bytes), String> {
        let nonce: [u8; 16] = rand::random();
        let sealed = self
            .0
            .encrypt(&nonce.into(), plain)
            .map_err(|_| "encryption failed".to_string())?;
        let mut file = Vec::with_capacity(16 + sealed.len());
        file.extend_from_slice(&nonce);
        file.extend_from_slice(&sealed);
        Ok((sha256_hex(&file), Bytes::from(file)))
    }

    /// The plain content of a file restic wrote: `None` unless it authenticates with this key.
    #[must_use]
    pub fn open(&self, file: &[u8]) -> Option<Vec<u8>> {
        let plain = self.open_raw(file)?;
        // Repository version 2 compresses unpacked files: a leading 2, then zstd.
        match plain.first() {
            Some(2) => zstd::decode_all(&plain[1..]).ok(),
            _ => Some(plain),
        }
    }
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("Cipher")
    }
}

impl Cipher {
    /// The plain bytes of anything restic sealed (a pack's header, whose first byte is a blob
    /// type, not a compression marker): `None` unless it authenticates with this key.
    #[must_use]
    pub fn open_raw(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 32 {
            return None;
        }
        let (nonce, rest) = sealed.split_at(16);
        self.0.decrypt(nonce.into(), rest).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::new()
    }

    #[test]
    fn sealed_files_open_with_their_key_only_and_are_named_by_their_hash() {
        let key = master();
        let c = Cipher::new(&key).unwrap();
        let (name, file) = c.seal(b"{\"time\":\"x\"}").unwrap();
        assert_eq!(name, sha256_hex(&file));
        assert_eq!(c.open(&file).unwrap(), b"{\"time\":\"x\"}");
        assert!(Cipher::new(&master()).unwrap().open(&file).is_none());
        let mut bent = file.to_vec();
        bent[20] ^= 1;
        assert!(c.open(&bent).is_none());
    }
}
