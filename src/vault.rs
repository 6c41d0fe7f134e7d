//! The credentials vault: one file holding target secrets and repository passwords, encrypted
//! with AES-256-GCM (the `aes-gcm` crate) under a key derived from a passphrase by Argon2id
//! (the `argon2` crate), its parameters stored in the file. The configuration names a secret
//! in it as `vault:NAME`.
//!
//! The file is JSON: the format and KDF parameters (authenticated as associated data), a key
//! check (an empty message sealed under the key, so that a wrong passphrase is told apart
//! from an altered file), the sealed secrets, and a SHA-256 of all of it (so that a damaged
//! file is named as such before any passphrase is tried). Every save seals with fresh nonces.
//! The file is the owner's alone (mode 0600); a vault others can read is refused.

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use aes_gcm::{
    Aes256Gcm, Key, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::{
    config::VaultSettings,
    error::{Error, Result},
    lockout::Gate,
    secret::{NoVault, Secret, SecretRef},
};

const FORMAT: &str = "cairn-vault 1";
/// Argon2id at 64 MiB and 3 passes: about a quarter of a second here, per guess.
const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;
const KEY_CHECK: &[u8] = b"cairn vault key check";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Kdf {
    algorithm: String,
    version: u32,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sealed {
    nonce: String,
    data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    format: String,
    kdf: Kdf,
    check: Sealed,
    secrets: Sealed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultFile {
    #[serde(flatten)]
    body: FileBody,
    sha256: String,
}

/// An open vault: its secrets, and the key that seals them again.
pub struct Vault {
    path: PathBuf,
    kdf: Kdf,
    key: Key<Aes256Gcm>,
    entries: BTreeMap<String, String>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("names", &self.entries.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn vault_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Vault {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn derive(kdf: &Kdf, passphrase: &Secret, path: &Path) -> Result<Key<Aes256Gcm>> {
    let bad = |m: String| vault_error(path, m);
    if kdf.algorithm != "argon2id" || kdf.version != 0x13 {
        return Err(bad(format!(
            "unknown key derivation {} version {}",
            kdf.algorithm, kdf.version
        )));
    }
    let params = argon2::Params::new(kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, Some(32))
        .map_err(|e| bad(format!("key derivation parameters: {e}")))?;
    let salt = hex::decode(&kdf.salt).map_err(|_| bad("the salt is not hex".into()))?;
    let mut key = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase.expose().as_bytes(), &salt, &mut key)
        .map_err(|e| bad(format!("key derivation: {e}")))?;
    Ok(Key::<Aes256Gcm>::from(key))
}

fn aad(kdf: &Kdf) -> Vec<u8> {
    serde_json::to_vec(&(FORMAT, kdf)).unwrap_or_default()
}

fn seal(key: &Key<Aes256Gcm>, kdf: &Kdf, plain: &[u8]) -> Result<Sealed, String> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let data = Aes256Gcm::new(key)
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plain,
                aad: &aad(kdf),
            },
        )
        .map_err(|_| "encryption failed".to_string())?;
    Ok(Sealed {
        nonce: hex::encode(nonce),
        data: hex::encode(data),
    })
}

fn open(key: &Key<Aes256Gcm>, kdf: &Kdf, sealed: &Sealed) -> Option<Vec<u8>> {
    let nonce: [u8; 12] = hex::decode(&sealed.nonce).ok()?.try_into().ok()?;
    let data = hex::decode(&sealed.data).ok()?;
    Aes256Gcm::new(key)
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &data,
                aad: &aad(kdf),
            },
        )
        .ok()
}

fn checksum(body: &FileBody) -> String {
    crate::layout::sha256_hex(&serde_json::to_vec(body).unwrap_or_default())
}

/// Refuses a vault file that anyone but its owner can read or write.
fn check_mode(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(vault_error(
            path,
            format!(
                "refused: others than its owner can read or write it (mode {:o}); \
                 `chmod 600` it, and change the secrets it holds if others may have read them",
                mode & 0o777
            ),
        ));
    }
    Ok(())
}

impl Vault {
    /// Creates an empty vault at `path`.
    ///
    /// # Errors
    /// A file is already there, or it cannot be written.
    pub fn create(path: &Path, passphrase: &Secret) -> Result<Self> {
        if path.exists() {
            return Err(vault_error(
                path,
                "already exists; nothing was changed (`cairn vault passwd` changes its passphrase)",
            ));
        }
        let vault = Self::with_new_key(path, passphrase, BTreeMap::new())?;
        vault.save()?;
        Ok(vault)
    }

    fn with_new_key(
        path: &Path,
        passphrase: &Secret,
        entries: BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let kdf = Kdf {
            algorithm: "argon2id".into(),
            version: 0x13,
            m_cost_kib: M_COST_KIB,
            t_cost: T_COST,
            p_cost: P_COST,
            salt: hex::encode(salt),
        };
        let key = derive(&kdf, passphrase, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            kdf,
            key,
            entries,
        })
    }

    /// Opens the vault at `path` with `passphrase`; the attempt counts toward the lockout of
    /// this vault at `gate`.
    ///
    /// # Errors
    /// The file is missing, readable by others, damaged or altered ([`Error::Vault`]), the
    /// passphrase is wrong ([`Error::WrongPassphrase`]), or the vault is locked out.
    pub fn open(path: &Path, passphrase: &Secret, gate: Gate<'_>) -> Result<Self> {
        let text = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        check_mode(path)?;
        let damaged = || {
            vault_error(
                path,
                "is damaged or was altered (its checksum does not match); nothing was read \
                 from it: put back a copy",
            )
        };
        let file: VaultFile = serde_json::from_slice(&text).map_err(|_| damaged())?;
        if file.body.format != FORMAT {
            return Err(vault_error(
                path,
                format!("unknown format {:?}", file.body.format),
            ));
        }
        if checksum(&file.body) != file.sha256 {
            return Err(damaged());
        }
        // The checksum is no seal (anyone can recompute it): key derivation settings other
        // than cairn's own would make the right passphrase look wrong, or guessing cheap.
        let kdf = &file.body.kdf;
        if (kdf.m_cost_kib, kdf.t_cost, kdf.p_cost) != (M_COST_KIB, T_COST, P_COST) {
            return Err(vault_error(
                path,
                format!(
                    "was altered: its key derivation settings (m={} KiB, t={}, p={}) are not \
                     cairn's (m={M_COST_KIB} KiB, t={T_COST}, p={P_COST}); nothing was read \
                     from it: put back a copy",
                    kdf.m_cost_kib, kdf.t_cost, kdf.p_cost
                ),
            ));
        }
        let what = lockout_name(path);
        let attempt = gate.attempt(&what)?;
        let key = derive(kdf, passphrase, path)?;
        if open(&key, kdf, &file.body.check).as_deref() != Some(KEY_CHECK) {
            // A header other than the one last opened here (its salt changed) was altered: the
            // passphrase was never really tried, so it does not count.
            let header = header_hash(kdf);
            if gate
                .lockout
                .header(&what)
                .is_some_and(|known| known != header)
            {
                gate.untried(&what);
                return Err(vault_error(
                    path,
                    "was altered: its key derivation settings differ from those it was last \
                     opened with on this machine; nothing was read from it: put back a copy",
                ));
            }
            gate.wrong(&what, attempt);
            return Err(Error::WrongPassphrase {
                vault: path.to_path_buf(),
            });
        }
        gate.right(&what);
        gate.lockout.set_header(&what, &header_hash(kdf));
        let plain = open(&key, &file.body.kdf, &file.body.secrets).ok_or_else(|| {
            vault_error(
                path,
                "was altered: the passphrase is right but the secrets do not authenticate; \
                 nothing was read from it",
            )
        })?;
        let entries = serde_json::from_slice(&plain)
            .map_err(|_| vault_error(path, "holds secrets in an unknown layout"))?;
        Ok(Self {
            path: path.to_path_buf(),
            kdf: file.body.kdf,
            key,
            entries,
        })
    }

    /// Writes the vault (fresh nonces), replacing the file atomically, mode 0600.
    ///
    /// # Errors
    /// It cannot be sealed or written.
    pub fn save(&self) -> Result<()> {
        let plain = serde_json::to_vec(&self.entries).unwrap_or_default();
        let body = FileBody {
            format: FORMAT.into(),
            kdf: self.kdf.clone(),
            check: seal(&self.key, &self.kdf, KEY_CHECK).map_err(|m| vault_error(&self.path, m))?,
            secrets: seal(&self.key, &self.kdf, &plain).map_err(|m| vault_error(&self.path, m))?,
        };
        let file = VaultFile {
            sha256: checksum(&body),
            body,
        };
        let mut text = serde_json::to_vec_pretty(&file).unwrap_or_default();
        text.push(b'\n');
        crate::state::replace_private(&self.path, &text)
    }

    /// The secret named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<Secret> {
        self.entries.get(name).map(|v| Secret::new(v.clone()))
    }

    /// Sets `name` (not saved until [`Self::save`]); whether it replaced a value.
    pub fn set(&mut self, name: &str, value: &Secret) -> bool {
        self.entries
            .insert(name.to_string(), value.expose().to_string())
            .is_some()
    }

    /// Removes `name`; whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        self.entries.remove(name).is_some()
    }

    /// The names held, sorted.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// The same secrets under a new passphrase (new salt, new key); saved.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn change_passphrase(self, passphrase: &Secret) -> Result<Self> {
        let vault = Self::with_new_key(&self.path, passphrase, self.entries)?;
        vault.save()?;
        Ok(vault)
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remembers this vault's header (after it was made or given a new passphrase), so that a
    /// later change of it reads as an alteration, not as a wrong passphrase.
    pub fn remember_header(&self, gate: Gate<'_>) {
        gate.lockout
            .set_header(&lockout_name(&self.path), &header_hash(&self.kdf));
    }
}

/// What is remembered of a vault's header: the hash of its key derivation settings and salt.
fn header_hash(kdf: &Kdf) -> String {
    crate::layout::sha256_hex(&aad(kdf))
}

/// The lockout counter's name for a vault file.
fn lockout_name(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    format!("vault {}", abs.display())
}

/// The vault's passphrase: the configured reference, else `CAIRN_VAULT_PASSPHRASE`, else asked
/// on the terminal.
///
/// # Errors
/// None of them gives one.
pub fn passphrase(settings: &VaultSettings) -> Result<Secret> {
    if let Some(r) = &settings.passphrase {
        return r.resolve("vault.passphrase", &NoVault);
    }
    if let Ok(p) =
        SecretRef::Env("CAIRN_VAULT_PASSPHRASE".into()).resolve("vault passphrase", &NoVault)
    {
        return Ok(p);
    }
    crate::tty::ask(
        &format!("Passphrase of vault {}: ", settings.path.display()),
        "no vault passphrase: set CAIRN_VAULT_PASSPHRASE, or `passphrase = \"file:...\"` \
         (or credential:NAME) under [vault]",
    )
}

/// Opens the configured vault.
///
/// # Errors
/// As [`Vault::open`] and [`passphrase`].
pub fn open_configured(settings: &VaultSettings, gate: Gate<'_>) -> Result<Vault> {
    if !settings.path.exists() {
        return Err(vault_error(
            &settings.path,
            "does not exist (create it with `cairn vault init`)",
        ));
    }
    Vault::open(&settings.path, &passphrase(settings)?, gate)
}

/// The vault of one configuration, opened at its first `vault:` secret and then kept: one
/// attempt per configuration, however many targets ask (a wrong passphrase counts once toward
/// the lockout).
#[derive(Debug)]
pub struct Opener {
    settings: VaultSettings,
    opened: Mutex<Option<std::result::Result<Arc<Vault>, String>>>,
}

impl Opener {
    /// The vault `settings` name, not opened yet.
    #[must_use]
    pub fn new(settings: VaultSettings) -> Self {
        Self {
            settings,
            opened: Mutex::new(None),
        }
    }

    /// The secret `name`, for the setting `what`; the vault is opened at the first call.
    ///
    /// # Errors
    /// The vault cannot be opened (wrong passphrase, locked, altered), or it holds no such
    /// name.
    pub fn lookup(&self, name: &str, what: &str, gate: Gate<'_>) -> Result<Secret> {
        let err = |message: String| Error::Secret {
            what: what.to_string(),
            message,
        };
        let mut opened = self
            .opened
            .lock()
            .map_err(|_| err("vault poisoned".into()))?;
        if opened.is_none() {
            match open_configured(&self.settings, gate) {
                Ok(v) => *opened = Some(Ok(Arc::new(v))),
                Err(e) => {
                    *opened = Some(Err(e.to_string()));
                    return Err(e);
                }
            }
        }
        let vault = match opened.as_ref() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(err(e.clone())),
            None => return Err(err("no vault".into())),
        };
        vault.get(name).ok_or_else(|| {
            err(format!(
                "vault {} holds no secret named {name:?} (`cairn vault set {name}`)",
                vault.path().display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Secret {
        Secret::new(s.into())
    }

    #[test]
    fn round_trip_and_clear_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let lockout = crate::lockout::Lockout::new(
            crate::config::LockoutPolicy::default(),
            &dir.path().join("state"),
        );
        let trail = crate::audit::Trail::default();
        let gate = Gate {
            lockout: &lockout,
            trail: &trail,
        };
        let path = dir.path().join("v");
        let mut v = Vault::create(&path, &pass("correct horse")).unwrap();
        v.set("azure/key", &pass("k3y-value"));
        v.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("k3y-value") && !text.contains("azure"));
        let v = Vault::open(&path, &pass("correct horse"), gate).unwrap();
        assert_eq!(v.get("azure/key").unwrap().expose(), "k3y-value");

        let e = Vault::open(&path, &pass("wrong horse"), gate).unwrap_err();
        assert!(matches!(e, Error::WrongPassphrase { .. }), "{e}");

        // Every single byte of the file matters: flip each of a spread of them.
        let bytes = std::fs::read(&path).unwrap();
        for at in (0..bytes.len()).step_by(bytes.len() / 23) {
            let mut b = bytes.clone();
            b[at] ^= 0x01;
            std::fs::write(&path, &b).unwrap();
            let e = Vault::open(&path, &pass("correct horse"), gate).unwrap_err();
            assert!(matches!(e, Error::Vault { .. }), "byte {at}: {e}");
        }
        std::fs::write(&path, &bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Vault::open(&path, &pass("correct horse"), gate).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    /// The vault file with its header changed by `edit` and its checksum recomputed, as
    /// someone who can write the file (but knows no passphrase) would.
    fn tampered(path: &Path, edit: impl Fn(&mut Kdf)) {
        let mut file: VaultFile = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        edit(&mut file.body.kdf);
        file.sha256 = checksum(&file.body);
        std::fs::write(path, serde_json::to_vec(&file).unwrap()).unwrap();
    }

    #[test]
    fn a_changed_header_reads_as_altered_and_is_never_counted() {
        let dir = tempfile::tempdir().unwrap();
        let lockout = crate::lockout::Lockout::new(
            crate::config::LockoutPolicy {
                attempts: 1,
                lock_for: jiff::SignedDuration::from_mins(15),
            },
            &dir.path().join("state"),
        );
        let trail = crate::audit::Trail::default();
        let gate = Gate {
            lockout: &lockout,
            trail: &trail,
        };
        let path = dir.path().join("v");
        Vault::create(&path, &pass("correct horse"))
            .unwrap()
            .remember_header(gate);
        let good = std::fs::read(&path).unwrap();
        type Edit = (&'static str, fn(&mut Kdf));
        let edits: [Edit; 3] = [
            ("a stronger memory cost", |k| k.m_cost_kib *= 2),
            ("a weaker one", |k| k.m_cost_kib = 8),
            ("another salt", |k| k.salt = "00".repeat(16)),
        ];
        for (what, edit) in edits {
            tampered(&path, edit);
            let e = Vault::open(&path, &pass("correct horse"), gate).unwrap_err();
            assert!(
                matches!(&e, Error::Vault { message, .. } if message.contains("altered")),
                "{what}: {e}"
            );
            std::fs::write(&path, &good).unwrap();
        }
        // Not one of them counted (one wrong passphrase locks here): the vault still opens.
        assert!(Vault::open(&path, &pass("correct horse"), gate).is_ok());
    }
}
