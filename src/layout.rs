//! restic's repository layout, in one place: where each file lives, which folders exist, the
//! order a copy fills them, and the rule that a file's name is the SHA-256 of its bytes. Also the
//! folders cairn keeps beside the repository, which restic ignores. restic's
//! `internal/backend/layout` is the model.

use std::sync::atomic::{AtomicU64, Ordering};

use rustic_core::{FileType, Id};
use sha2::{Digest, Sha256};

/// Uploads in progress, renamed into place once complete.
pub const TMP_DIR: &str = ".cairn-tmp";
/// cairn's own lock files (restic's `locks/` is for restic's).
pub const LOCK_DIR: &str = ".cairn-locks";
/// Deletion records ([`crate::deletion`]).
pub const DELETIONS_DIR: &str = ".cairn-deletions";
/// Audit records sealed with the repository key ([`crate::audit`]).
pub const AUDIT_DIR: &str = ".cairn-audit";
/// Endorsements of key files added by cairn ([`crate::ops::key`]).
pub const KEYS_DIR: &str = ".cairn-keys";
/// Copies of erasure certificates ([`crate::erasure`]); all an erased client's folder keeps.
pub const ERASURES_DIR: &str = ".cairn-erasures";
/// Files moved aside on their own target because no honest cairn could have written them.
pub const QUARANTINE_DIR: &str = ".cairn-quarantine";
/// Canaries `check --immutability` wrote and tried to destroy (S3 Object Lock).
pub const CANARY_DIR: &str = ".cairn-canary";

/// The repository folders, in the order a copy must fill them: a file is never copied before
/// the files it refers to (an index refers to packs, a snapshot to both).
pub const COPY_ORDER: [&str; 5] = ["config", "keys", "data", "index", "snapshots"];

/// The path of a repository file.
#[must_use]
pub fn file_path(tpe: FileType, id: &Id) -> String {
    let hex = id.to_hex();
    match tpe {
        FileType::Config => "config".to_string(),
        FileType::Pack => format!("data/{}/{}", &hex[..2], hex.as_str()),
        _ => format!("{}/{}", tpe.dirname(), hex.as_str()),
    }
}

/// The folders a repository has where storages have folders.
#[must_use]
pub fn repository_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = ["keys", "snapshots", "index", "data", "locks"]
        .iter()
        .map(ToString::to_string)
        .collect();
    dirs.extend((0..=255u8).map(|i| format!("data/{i:02x}")));
    dirs
}

/// Which stage of [`COPY_ORDER`] a path belongs to.
#[must_use]
pub fn stage(path: &str) -> usize {
    let top = path.split('/').next().unwrap_or(path);
    COPY_ORDER.iter().position(|d| *d == top).unwrap_or(0)
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `path` is where a deletion record lives (`.cairn-deletions/<sha256>`).
#[must_use]
pub fn is_record_path(path: &str) -> bool {
    path.strip_prefix(DELETIONS_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `path` is where restic keeps a file of that name (`keys/ID`, `data/ID[..2]/ID`, ...).
#[must_use]
pub fn is_repository_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["config"] => true,
        [dir, name] => ["keys", "index", "snapshots"].contains(dir) && is_id(name),
        ["data", sub, name] => is_id(name) && name.starts_with(sub) && sub.len() == 2,
        _ => false,
    }
}

/// Parses listed files of one type (paths relative to its folder, with sizes) into ids,
/// skipping anything not named by an id.
#[must_use]
pub fn ids_of(tpe: FileType, listed: Vec<(String, u64)>) -> Vec<(Id, u32)> {
    let size = |s: u64| u32::try_from(s).unwrap_or(u32::MAX);
    if tpe == FileType::Config {
        return listed
            .into_iter()
            .map(|(_, s)| (Id::default(), size(s)))
            .collect();
    }
    listed
        .into_iter()
        .filter_map(|(rel, s)| Some((rel.rsplit('/').next()?.parse::<Id>().ok()?, size(s))))
        .collect()
}

/// Lower-case hex SHA-256.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `bytes` are what the name of `path` promises (`config` promises nothing).
#[must_use]
pub fn hash_matches(path: &str, bytes: &[u8]) -> bool {
    path == "config" || path.rsplit('/').next() == Some(sha256_hex(bytes).as_str())
}

/// A temporary upload's name: the file's name, then this host and process, then a counter, so
/// that a cleaner can tell a live writer's upload ([`tmp_owner_alive`]).
#[must_use]
pub fn tmp_name(path: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{TMP_DIR}/{}.{}.{}.{}",
        path.rsplit('/').next().unwrap_or(path),
        host_tag(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn host_tag() -> String {
    let h = gethostname::gethostname().to_string_lossy().into_owned();
    sha256_hex(h.as_bytes())[..12].to_string()
}

/// Whether a temporary upload (its name below [`TMP_DIR`]) belongs to a process of this host
/// that still runs.
#[must_use]
pub fn tmp_owner_alive(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let (_, pid, host) = (parts.next(), parts.next(), parts.next());
    host == Some(host_tag().as_str())
        && pid
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";

    #[test]
    fn paths_follow_restic_layout() {
        let id: Id = "ab".repeat(32).parse().unwrap();
        assert_eq!(
            file_path(FileType::Pack, &id),
            format!("data/ab/{}", "ab".repeat(32))
        );
        assert_eq!(
            file_path(FileType::Key, &id),
            format!("keys/{}", "ab".repeat(32))
        );
        assert_eq!(file_path(FileType::Config, &id), "config");
        assert_eq!(repository_dirs().len(), 5 + 256);
    }

    #[test]
    fn repository_paths_are_recognised_and_strays_are_not() {
        assert!(is_repository_path("config"));
        assert!(is_repository_path(&format!("keys/{ID}")));
        assert!(is_repository_path(&format!("data/ab/{ID}")));
        assert!(
            !is_repository_path(&format!("data/cd/{ID}")),
            "wrong subfolder"
        );
        assert!(!is_repository_path("data/ab/notes.txt"));
        assert!(!is_repository_path(&format!("index/{ID}.tmp")));
        assert!(!is_repository_path(&format!("locks/{ID}")));
    }

    #[test]
    fn copy_order_puts_data_before_what_refers_to_it() {
        assert!(stage(&format!("data/ab/{ID}")) < stage(&format!("index/{ID}")));
        assert!(stage(&format!("index/{ID}")) < stage(&format!("snapshots/{ID}")));
        assert_eq!(stage("config"), 0);
    }

    #[test]
    fn a_name_is_the_hash_of_the_bytes() {
        let body = b"abc";
        let h = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(body), h);
        assert!(hash_matches(&format!("index/{h}"), body));
        assert!(!hash_matches(&format!("index/{h}"), b"abd"));
        assert!(hash_matches("config", b"anything"));
    }

    #[test]
    fn a_live_uploads_name_says_so() {
        let name = tmp_name(&format!("data/ab/{ID}"));
        let rel = name.strip_prefix(&format!("{TMP_DIR}/")).unwrap();
        assert!(tmp_owner_alive(rel), "{rel}");
        assert!(!tmp_owner_alive(&format!("{ID}.ffffffffffff.1.0")));
    }
}
