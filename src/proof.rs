//! Proof that a repository file was written by an honest cairn, before it is copied from one
//! target to another.
//!
//! A target is storage, not a witness: anyone with write access to one target can place a file
//! there named by the SHA-256 of its own junk. Such a file passes the hash check, and once copied
//! everywhere it breaks every target (rustic_core refuses an index it cannot decrypt). So a file
//! only counts as proven when, beyond its hash matching its name:
//! - `config` is byte-identical to the config the repository was opened with;
//! - an index or snapshot file decrypts with the repository's master key and parses;
//! - a key file opens with the repository password and yields the same master key;
//! - a data pack is referenced, with its size, by an index file proven as above (a pack's name
//!   is its hash, so an authenticated reference authenticates its bytes).
//!
//! Decryption goes through rustic_core itself: the file is staged in a [`MemStore`] under a
//! repository opened with the master key, and read back with `get_file`. No crypto is done here.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use rustic_core::{
    Credentials, Id, NoProgressBars, OpenStatus, Repository,
    repofile::{IndexFile, IndexId, MasterKey, SnapshotFile, SnapshotId},
};

use crate::{
    deletion::record::Record,
    error::{Error, Result},
    fanout::{Fanout, Member},
    layout::{DELETIONS_DIR, hash_matches},
    progress::Silent,
    repo::open_repository_with,
    sealed::Cipher,
    secret::Secret,
    store::{MemStore, Named, Store},
};

/// The repository key, and what it has proven so far.
pub struct Proof {
    password: Secret,
    master: MasterKey,
    config: Bytes,
    staging: Arc<MemStore>,
    repo: Repository<OpenStatus>,
    /// One file staged at a time: two threads proving the same path must not remove it under
    /// each other.
    staged: Mutex<()>,
    /// Packs referenced by proven index files, with their sizes.
    packs: Mutex<BTreeMap<Id, u32>>,
    /// Seals and opens cairn's own files (deletion records) with the master key.
    cipher: Cipher,
    /// The key file the password opened.
    key_id: Option<Id>,
    /// Key files (`keys/ID`) endorsed by a record sealed with the repository key.
    endorsed: Mutex<std::collections::BTreeSet<String>>,
}

/// A key file cairn added, vouched for with the repository key: `.cairn-keys/HASH`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Endorsement {
    /// The key file (`keys/ID`).
    pub key: String,
    /// Whose key it is.
    pub operator: String,
    /// Who added it, where and when.
    pub added_by: String,
    /// The host that added it.
    pub host: String,
    /// When (RFC 3339).
    pub time: String,
    /// The key file whose password added it: once that key is removed, what it endorsed is
    /// trusted no more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_key: Option<String>,
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proof").finish_non_exhaustive()
    }
}

pub(crate) fn memory_backend(store: Arc<MemStore>) -> Arc<Fanout> {
    Arc::new(Fanout::new(
        vec![Arc::new(Member::new("memory".into(), true, store))],
        Arc::new(Silent),
    ))
}

impl Proof {
    /// Reads the endorsements of key files cairn added ([`crate::ops::key`]): a key of
    /// another password is proven by one that opens with the repository key.
    pub(crate) fn load_endorsements(&self, sources: &[Named<'_>], removed: &dyn Fn(&str) -> bool) {
        let mut keys = Vec::new();
        for (_, store) in sources {
            for (name, _) in store.list(crate::layout::KEYS_DIR).unwrap_or_default() {
                let Ok(bytes) = store.read(&format!("{}/{name}", crate::layout::KEYS_DIR)) else {
                    continue;
                };
                if let Some(e) = self
                    .cipher
                    .open(&bytes)
                    .and_then(|p| serde_json::from_slice::<Endorsement>(&p).ok())
                    && !removed(&e.key)
                    && !e.by_key.as_deref().is_some_and(removed)
                {
                    keys.push(e.key);
                }
            }
        }
        if let Ok(mut e) = self.endorsed.lock() {
            e.extend(keys);
        }
    }

    /// A new key file for `password` (restic's format, made by rustic_core), its path and bytes;
    /// nothing is written to any target.
    ///
    /// # Errors
    /// rustic_core could not make it.
    pub fn make_key(
        &self,
        password: &Secret,
        opts: &rustic_core::KeyOptions,
    ) -> Result<(String, Bytes)> {
        let _one = self
            .staged
            .lock()
            .map_err(|_| Error::Input("poisoned".into()))?;
        let id = self.repo.add_key(password.expose(), opts)?;
        let path = crate::layout::file_path(rustic_core::FileType::Key, &id);
        let bytes = self.staging.read(&path).map_err(|source| Error::Target {
            target: "memory".into(),
            source,
        })?;
        let _ = self.staging.delete(&path);
        Ok((path, bytes))
    }

    /// The key file this proof was opened with (`keys/ID`).
    #[must_use]
    pub fn key_path(&self) -> Option<String> {
        Some(crate::layout::file_path(
            rustic_core::FileType::Key,
            &self.key_id?,
        ))
    }

    /// The proof of the key `password` opened (from the key file `key_id`) for the repository
    /// whose `config` file is given.
    ///
    /// # Errors
    /// The key does not open the repository's config.
    pub(crate) fn new(
        password: Secret,
        master: MasterKey,
        config: Bytes,
        key_id: Option<Id>,
    ) -> Result<Self> {
        let staging = Arc::new(MemStore::new());
        staging
            .write("config", vec![config.clone()])
            .map_err(|source| Error::Target {
                target: "memory".into(),
                source,
            })?;
        let repo = open_repository_with(
            memory_backend(staging.clone()),
            &Credentials::Masterkey(master.clone()),
            NoProgressBars,
        )?;
        let cipher = Cipher::new(&master).map_err(|e| {
            Error::Rustic(rustic_core::RusticError::new(
                rustic_core::ErrorKind::Cryptography,
                e,
            ))
        })?;
        Ok(Self {
            cipher,
            password,
            master,
            config,
            staging,
            repo,
            staged: Mutex::new(()),
            packs: Mutex::new(BTreeMap::new()),
            key_id,
            endorsed: Mutex::new(std::collections::BTreeSet::new()),
        })
    }

    /// Credentials that open the repository without deriving the key from the password again.
    #[must_use]
    pub fn credentials(&self) -> Credentials {
        Credentials::Masterkey(self.master.clone())
    }

    /// The repository's master key, for files rustic_core has no type for (restic's locks).
    #[must_use]
    pub fn master_key(&self) -> &MasterKey {
        &self.master
    }

    /// The cipher of the repository key, for cairn's own sealed files.
    #[must_use]
    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// The repository's `config` file as it was opened.
    #[must_use]
    pub fn config(&self) -> &Bytes {
        &self.config
    }

    /// Whether `bytes` are a file an honest cairn wrote at `path`; why not, if not. A proven
    /// index file also proves the packs it references.
    ///
    /// # Errors
    /// The reason the file is not proven, in words for a report.
    pub fn check(&self, path: &str, bytes: &Bytes) -> std::result::Result<(), String> {
        if !hash_matches(path, bytes) {
            return Err("its SHA-256 does not match its name".into());
        }
        let (dir, name) = path.split_once('/').unwrap_or((path, ""));
        let id = name.rsplit('/').next().and_then(|n| n.parse::<Id>().ok());
        match (dir, id) {
            ("config", _) if bytes == &self.config => Ok(()),
            ("config", _) => Err("differs from the repository's config".into()),
            ("keys", Some(_)) => self.check_key(path, bytes),
            (DELETIONS_DIR, Some(_)) => {
                Record::open(bytes, &self.cipher)
                    .map(|_| ())
                    .ok_or_else(|| {
                        "a deletion record that does not open with the repository key".into()
                    })
            }
            ("index", Some(id)) => {
                let index: IndexFile =
                    self.decrypt(path, bytes, |r| r.get_file::<IndexFile>(&IndexId::from(id)))?;
                let mut packs = self.packs.lock().map_err(|_| "poisoned".to_string())?;
                for p in index.packs.iter().chain(&index.packs_to_delete) {
                    packs.insert(*p.id, p.pack_size());
                }
                Ok(())
            }
            ("snapshots", Some(id)) => self
                .decrypt(path, bytes, |r| {
                    r.get_file::<SnapshotFile>(&SnapshotId::from(id))
                })
                .map(|_| ()),
            ("data", Some(id)) => {
                let packs = self.packs.lock().map_err(|_| "poisoned".to_string())?;
                match packs.get(&id) {
                    Some(&size) if u64::from(size) == bytes.len() as u64 => Ok(()),
                    Some(size) => Err(format!(
                        "{} bytes, but the index that references it says {size}",
                        bytes.len()
                    )),
                    None => Err(
                        "no index file that decrypts with the repository key references it".into(),
                    ),
                }
            }
            _ => Err("not a repository file".into()),
        }
    }

    /// Whether a pack is referenced by an index file proven so far.
    #[must_use]
    pub fn knows_pack(&self, id: &Id) -> bool {
        self.packs.lock().is_ok_and(|p| p.contains_key(id))
    }

    /// The index file `bytes` at `path`, once it hashes to its name and decrypts with the
    /// repository key (its packs are then proven too).
    ///
    /// # Errors
    /// Why it is not proven.
    pub fn open_index(&self, path: &str, bytes: &Bytes) -> std::result::Result<IndexFile, String> {
        self.check(path, bytes)?;
        let id = path
            .rsplit('/')
            .next()
            .and_then(|n| n.parse::<Id>().ok())
            .ok_or_else(|| format!("{path} is not an index file"))?;
        self.decrypt(path, bytes, |r| r.get_file::<IndexFile>(&IndexId::from(id)))
    }

    fn decrypt<T>(
        &self,
        path: &str,
        bytes: &Bytes,
        read: impl FnOnce(&Repository<OpenStatus>) -> rustic_core::RusticResult<T>,
    ) -> std::result::Result<T, String> {
        let _one = self.staged.lock().map_err(|_| "poisoned".to_string())?;
        self.staging
            .write(path, vec![bytes.clone()])
            .map_err(|e| e.to_string())?;
        let result = read(&self.repo);
        let _ = self.staging.delete(path);
        result.map_err(|_| "does not decrypt with the repository key".to_string())
    }

    /// A key file proves itself by opening with the repository password to the same master key;
    /// a key of another password by an endorsement sealed with the repository key (its name is
    /// its hash, so the endorsement authenticates its bytes).
    fn check_key(&self, path: &str, bytes: &Bytes) -> std::result::Result<(), String> {
        // The key the password opened is proven (its bytes hash to its name, checked first),
        // without deriving the key from the password again.
        if self.key_path().as_deref() == Some(path)
            || self.endorsed.lock().is_ok_and(|e| e.contains(path))
        {
            return Ok(());
        }
        let alone = Arc::new(MemStore::new());
        let staged = alone
            .write("config", vec![self.config.clone()])
            .and_then(|()| alone.write(path, vec![bytes.clone()]));
        staged.map_err(|e| e.to_string())?;
        let opened = open_repository_with(
            memory_backend(alone),
            &Credentials::password(self.password.expose()),
            NoProgressBars,
        )
        .map_err(|_| "does not open with the repository password".to_string())?;
        let same = serde_json::to_vec(&opened.key()).ok() == serde_json::to_vec(&self.master).ok();
        if same {
            Ok(())
        } else {
            Err("opens a different master key".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use rustic_core::{
        BackupOptions, ConfigOptions, Credentials, KeyOptions, PathList, Repository,
        RepositoryBackends, RepositoryOptions, SnapshotOptions,
    };

    use super::{Proof, memory_backend};
    use crate::{
        layout::{is_repository_path, sha256_hex},
        secret::Secret,
        store::{MemStore, Store},
    };

    const PW: &str = "test password";

    /// A real repository with one snapshot, in memory, and its proof.
    fn repository() -> (Arc<MemStore>, Proof) {
        let store = Arc::new(MemStore::new());
        let creds = Credentials::password(PW);
        let repo = Repository::new(
            &RepositoryOptions::default().no_cache(true),
            &RepositoryBackends::new(memory_backend(store.clone()), None),
        )
        .unwrap()
        .init(
            &creds,
            &KeyOptions::default(),
            &ConfigOptions::default().set_version(2u32),
        )
        .unwrap()
        .to_indexed_ids()
        .unwrap();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("f"), b"some content").unwrap();
        let paths = PathList::from_iter([src.path()]).sanitize().unwrap();
        let snap = SnapshotOptions::default().to_snapshot().unwrap();
        repo.backup(&BackupOptions::default(), &paths, snap)
            .unwrap();
        let config = store.read("config").unwrap();
        let proof = Proof::new(Secret::new(PW.into()), repo.key().clone(), config, None).unwrap();
        (store, proof)
    }

    fn files(store: &MemStore, dir: &str) -> Vec<(String, Bytes)> {
        store
            .list(dir)
            .unwrap()
            .into_iter()
            .map(|(rel, _)| {
                let p = format!("{dir}/{rel}");
                let b = store.read(&p).unwrap();
                (p, b)
            })
            .collect()
    }

    #[test]
    fn every_file_cairn_wrote_is_proven_and_packs_only_after_their_index() {
        let (store, proof) = repository();
        let packs = files(&store, "data");
        assert!(!packs.is_empty());
        for (p, b) in &packs {
            assert!(proof.check(p, b).is_err(), "{p} proven before its index");
        }
        for dir in ["keys", "index", "snapshots"] {
            for (p, b) in files(&store, dir) {
                assert!(is_repository_path(&p));
                assert_eq!(proof.check(&p, &b), Ok(()), "{p}");
            }
        }
        for (p, b) in &packs {
            assert_eq!(proof.check(p, b), Ok(()), "{p}");
        }
        assert_eq!(
            proof.check("config", &store.read("config").unwrap()),
            Ok(())
        );
    }

    #[test]
    fn junk_named_by_its_own_hash_is_not_proven() {
        let (_, proof) = repository();
        let junk = Bytes::from_static(b"junk that an attacker placed on one target");
        for dir in ["index", "snapshots", "keys"] {
            let path = format!("{dir}/{}", sha256_hex(&junk));
            assert!(proof.check(&path, &junk).is_err(), "{path} proven");
        }
        let pack = format!("data/{0}/{1}", &sha256_hex(&junk)[..2], sha256_hex(&junk));
        let e = proof.check(&pack, &junk).unwrap_err();
        assert!(e.contains("no index"), "{e}");
        assert!(proof.check("config", &junk).is_err());
        // And a copy whose bytes do not match its name fails before anything is decrypted.
        let e = proof.check("index/00", &junk).unwrap_err();
        assert!(e.contains("SHA-256"), "{e}");
    }

    #[test]
    fn a_key_of_another_repository_is_not_proven() {
        let (_, proof) = repository();
        let (other, _) = repository();
        for (p, b) in files(&other, "keys") {
            assert!(proof.check(&p, &b).is_err(), "{p}");
        }
    }
}
