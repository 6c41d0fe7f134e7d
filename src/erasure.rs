//! Erasure certificates and the register that keeps them for good: one per `cairn erase` (a
//! whole client) and per `cairn purge` (one person's files), saying who asked, why, when it was
//! decided and, per target, when it was applied and what it removed. The register is the
//! authority: an erasure is decided only here, by a command that proved the repository
//! password, and every later command of the configuration file finishes it on targets that
//! were away (and again on a copy that comes back). Nothing found on a target ever causes one.
//!
//! The register lives in the configuration file's own state folder (`file-HASH/erasures.json`,
//! shared by all its clients, so a backup of one client finishes the erasure of another). Each
//! target also receives a copy of the certificate as it stands when the target is done
//! (`.cairn-erasures/ID` in the repository's folder, which is all an erased client's folder
//! then holds), sealed with HMAC-SHA256 under a key kept beside the register: a copy planted by
//! someone without this machine's state does not verify and is reported as such.

use std::{
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{
    config::Config,
    error::{Error, Result},
    layout::sha256_hex,
};

/// Where a target keeps its copies of certificates, inside the repository's folder.
pub const DIR: &str = crate::layout::ERASURES_DIR;
const FILE: &str = "erasures.json";
const KEY_FILE: &str = "erasures.key";

/// What was erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A whole client's repository, on every target it used.
    Repository,
    /// Paths out of every snapshot of a repository.
    Purge,
}

/// One target's part of an erasure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Target name.
    pub target: String,
    /// When it was done there (unset: pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<String>,
    /// Files removed there.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Purge: chunks of the purged files still indexed there when last looked up (unset: not
    /// looked up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks_left: Option<u64>,
    /// Times a copy of the erased repository came back there and was erased again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returned: Vec<String>,
    /// Why it is still pending, as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One erasure, from decision to the last target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// Random id (also the name of its copies on the targets).
    pub id: String,
    /// Whole repository, or purged paths.
    pub kind: Kind,
    /// The repository (client) name.
    pub repository: String,
    /// Its folder on the targets (`""`: their root, a file of one repository).
    #[serde(default)]
    pub folder: String,
    /// Why (`--reason`, or "contract end ...").
    pub reason: String,
    /// Who asked (`--operator`, else the OS user).
    pub operator: String,
    /// The OS user and host that decided it.
    pub user: String,
    /// The host.
    pub host: String,
    /// When it was decided (RFC 3339).
    pub decided: String,
    /// Repository erasure: SHA-256 of its `config` file, by which a copy that comes back is
    /// known (and a new repository of the same name is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,
    /// Repository erasure: its size when decided (largest copy).
    #[serde(default)]
    pub bytes: u64,
    /// Purge: the patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<String>,
    /// Purge: the snapshots rewritten without the paths (old ids), then forgotten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    /// Purge: the repository files its deletion records remove (a target that no longer holds
    /// any of them has obeyed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Purge: every snapshot it judged (those there once it was done, and those found later
    /// and purged again): one from before it that is not here came back from a target that
    /// was cut off, and is purged again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judged: Vec<String>,
    /// Purge: distinct chunks of the purged files.
    #[serde(default)]
    pub chunks: u64,
    /// Purge: chunks kept because files that stay hold the same bytes (`chunk: /path in
    /// snapshot`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_chunks: Vec<String>,
    /// Per target.
    pub targets: Vec<Applied>,
    /// When the last target obeyed: the certificate is final.
    #[serde(default, rename = "final", skip_serializing_if = "Option::is_none")]
    pub done: Option<String>,
}

impl Certificate {
    /// A certificate decided now, by `operator`, for `targets` (all pending).
    #[must_use]
    pub fn new(
        kind: Kind,
        repository: &str,
        reason: &str,
        operator: &str,
        targets: &[String],
    ) -> Self {
        Self {
            id: format!("{:016x}", rand::random::<u64>()),
            kind,
            repository: repository.to_string(),
            folder: String::new(),
            reason: reason.to_string(),
            operator: operator.to_string(),
            user: crate::audit::os_user(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            decided: crate::state::now(),
            config_sha256: None,
            bytes: 0,
            patterns: Vec::new(),
            snapshots: Vec::new(),
            files: Vec::new(),
            judged: Vec::new(),
            chunks: 0,
            kept_chunks: Vec::new(),
            targets: targets
                .iter()
                .map(|t| Applied {
                    target: t.clone(),
                    ..Applied::default()
                })
                .collect(),
            done: None,
        }
    }

    /// The target's part.
    pub fn target_mut(&mut self, name: &str) -> Option<&mut Applied> {
        self.targets.iter_mut().find(|a| a.target == name)
    }

    /// The target's part, read only.
    #[must_use]
    pub fn target_part(&self, name: &str) -> Option<&Applied> {
        self.targets.iter().find(|a| a.target == name)
    }

    /// Targets that have not obeyed yet.
    pub fn pending(&self) -> impl Iterator<Item = &Applied> {
        self.targets.iter().filter(|a| a.applied.is_none())
    }

    /// Marks it final once every target has obeyed (and, for a purge, holds none of the
    /// purged chunks that were looked up).
    pub fn settle(&mut self) {
        let all = self.targets.iter().all(|a| {
            a.applied.is_some()
                && (self.kind == Kind::Repository || a.chunks_left.unwrap_or(0) == 0)
        });
        if all && self.done.is_none() {
            self.done = Some(crate::state::now());
        }
    }
}

/// Every erasure of one configuration file, kept for good.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Register {
    /// Oldest first.
    pub certificates: Vec<Certificate>,
}

/// The folder of the configuration file's own state (beside its repositories' folders); made
/// when the register or its key is first written.
#[must_use]
pub fn dir(cfg: &Config) -> PathBuf {
    crate::state::file_dir(cfg)
}

impl Register {
    /// Reads the register (empty if there is none yet).
    ///
    /// # Errors
    /// It exists but cannot be read or parsed: erasures must never be forgotten silently.
    pub fn load(dir: &Path) -> Result<Self> {
        crate::state::load_json(&dir.join(FILE))
    }

    /// Replaces the register atomically.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Input(e.to_string()))?;
        crate::state::replace_private(&dir.join(FILE), &bytes)
    }

    /// Loads, changes and saves the register under an exclusive lock, so two commands of one
    /// file (a backup of one client finishing the erasure of another) never lose an update.
    ///
    /// # Errors
    /// It cannot be locked, read or written.
    pub fn update<T>(dir: &Path, f: impl FnOnce(&mut Self) -> T) -> Result<T> {
        crate::state::private_dir(dir)?;
        let lock = dir.join("erasures.lock");
        let _held = crate::state::lock_file(&lock)?;
        let mut r = Self::load(dir)?;
        let out = f(&mut r);
        r.save(dir)?;
        Ok(out)
    }

    /// The erasure of the repository `name`, if it was erased.
    #[must_use]
    pub fn erased(&self, name: &str) -> Option<&Certificate> {
        self.certificates
            .iter()
            .find(|c| c.kind == Kind::Repository && c.repository == name)
    }
}

/// The key that seals the targets' copies (made on first use, owner only).
///
/// # Errors
/// It cannot be read or made.
pub fn key(dir: &Path) -> Result<Vec<u8>> {
    crate::state::private_dir(dir)?;
    let path = dir.join(KEY_FILE);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(k) if k.len() == 32 => return Ok(k),
        Ok(_) => {
            return Err(Error::Input(format!(
                "{} is not a 32-byte key: the erasure certificates on the targets cannot be \
                 checked",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let k: [u8; 32] = rand::random();
    // create_new: two processes making it at once keep the first one's.
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &k));
    match made {
        Ok(()) => Ok(k.to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(&path).map_err(io),
        Err(e) => Err(io(e)),
    }
}

/// The sealed copy as written to a target.
#[derive(Serialize, Deserialize)]
struct Sealed {
    /// The certificate's JSON, exactly as sealed.
    certificate: String,
    /// HMAC-SHA256 of it, hex.
    hmac: String,
}

fn mac(key: &[u8], text: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    m.update(text.as_bytes());
    m
}

/// The path and bytes of a certificate's copy on a target.
///
/// # Errors
/// It cannot be serialised.
pub fn seal(cert: &Certificate, key: &[u8]) -> Result<(String, Bytes)> {
    let certificate = serde_json::to_string(cert).map_err(|e| Error::Input(e.to_string()))?;
    let hmac = hex::encode(mac(key, &certificate).finalize().into_bytes());
    let bytes = serde_json::to_vec_pretty(&Sealed { certificate, hmac })
        .map_err(|e| Error::Input(e.to_string()))?;
    Ok((format!("{DIR}/{}", cert.id), Bytes::from(bytes)))
}

/// The certificate in a target's copy, if its seal verifies under `key`; else why not.
///
/// # Errors
/// The copy is not sealed by this machine's key (or is not a certificate at all).
pub fn open(bytes: &[u8], key: &[u8]) -> std::result::Result<Certificate, String> {
    let sealed: Sealed =
        serde_json::from_slice(bytes).map_err(|_| "not a sealed certificate".to_string())?;
    let tag = hex::decode(&sealed.hmac).map_err(|_| "its seal is not hex".to_string())?;
    mac(key, &sealed.certificate)
        .verify_slice(&tag)
        .map_err(|_| "its seal does not verify: not written by this machine's cairn".to_string())?;
    serde_json::from_str(&sealed.certificate).map_err(|e| format!("sealed but unreadable: {e}"))
}

/// The SHA-256 of a repository's `config` file, as certificates name it.
#[must_use]
pub fn config_hash(config: &[u8]) -> String {
    sha256_hex(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_verifies_only_under_its_key_and_unchanged() {
        let mut c = Certificate::new(Kind::Repository, "acme", "request", "ops", &["usb".into()]);
        c.config_sha256 = Some("ab".repeat(32));
        let key = [7u8; 32];
        let (path, bytes) = seal(&c, &key).unwrap();
        assert_eq!(path, format!(".cairn-erasures/{}", c.id));
        assert_eq!(open(&bytes, &key).unwrap(), c);
        assert!(
            open(&bytes, &[8u8; 32])
                .unwrap_err()
                .contains("does not verify")
        );
        let forged = String::from_utf8(bytes.to_vec())
            .unwrap()
            .replace("acme", "beta");
        assert!(open(forged.as_bytes(), &key).is_err());
        assert!(open(b"{}", &key).is_err());
    }

    #[test]
    fn a_purge_is_final_only_once_no_target_holds_a_purged_chunk() {
        let mut c = Certificate::new(
            Kind::Purge,
            "acme",
            "request",
            "ops",
            &["a".into(), "b".into()],
        );
        for a in &mut c.targets {
            a.applied = Some(crate::state::now());
        }
        c.targets[1].chunks_left = Some(2);
        c.settle();
        assert!(c.done.is_none());
        c.targets[1].chunks_left = Some(0);
        c.settle();
        assert!(c.done.is_some());
    }
}
