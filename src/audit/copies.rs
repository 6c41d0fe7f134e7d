//! The audit log's copies on the targets: each record sealed with the repository key as
//! `.cairn-audit/LOG-SEQ`, read back and compared with the local log. Beside them, one sealed
//! *head* note per local log file (`head-WHERE-LOG`: which host and file, how long, its last
//! line's hash), never removed: a local log that was replaced or shortened no longer matches
//! what the targets know of it.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use super::{Record, Replicated};
use crate::{
    layout::{AUDIT_DIR, sha256_hex},
    sealed::Cipher,
    store::Store,
};

/// What the targets know of one local log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The host holding the log.
    pub host: String,
    /// The log file there.
    pub path: String,
    /// Its log id.
    pub log: String,
    /// How many records it held.
    pub seq: u64,
    /// SHA-256 of its last line.
    pub last: String,
}

/// The prefix of the head notes of the log file at `path` on this host.
fn head_prefix(path: &Path) -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let key = sha256_hex(format!("{host}\n{}", path.display()).as_bytes());
    format!("head-{}-", &key[..16])
}

/// The head notes every target holds of the log file at `path` on this host.
///
/// # Errors
/// The folder cannot be listed.
pub fn heads(store: &dyn Store, cipher: &Cipher, path: &Path) -> Result<Vec<Head>, String> {
    let prefix = head_prefix(path);
    let mut out = Vec::new();
    for (name, _) in store.list(AUDIT_DIR).map_err(|e| e.to_string())? {
        if !name.starts_with(&prefix) {
            continue;
        }
        let bytes = store
            .read(&format!("{AUDIT_DIR}/{name}"))
            .map_err(|e| e.to_string())?;
        if let Some(head) = cipher
            .open(&bytes)
            .and_then(|p| serde_json::from_slice::<Head>(&p).ok())
            .filter(|h| name == format!("{prefix}{}", h.log))
        {
            out.push(head);
        }
    }
    Ok(out)
}

/// Where the local log at `path` (its `lines`) and what a target knows of it disagree.
#[must_use]
pub fn check_heads(path: &Path, lines: &[String], heads: &[Head]) -> Vec<String> {
    let last = lines
        .last()
        .and_then(|l| serde_json::from_str::<Record>(l).ok());
    let mut out = Vec::new();
    for h in heads {
        match &last {
            Some(r) if r.log == h.log => {
                if h.seq > r.seq {
                    out.push(format!(
                        "the local log {} was shortened: the target knows {} records of it, it \
                         holds {}",
                        path.display(),
                        h.seq,
                        r.seq
                    ));
                } else if usize::try_from(h.seq)
                    .ok()
                    .and_then(|n| lines.get(n.checked_sub(1)?))
                    .is_none_or(|l| sha256_hex(l.as_bytes()) != h.last)
                {
                    out.push(format!(
                        "record {} of the local log {} differs from what the target knows of it",
                        h.seq,
                        path.display()
                    ));
                }
            }
            _ => out.push(format!(
                "the local log {} was replaced: the target knows its earlier log {} ({} \
                 records), which it no longer holds",
                path.display(),
                h.log,
                h.seq
            )),
        }
    }
    out
}

/// The name of a record on a target.
fn remote_name(r: &Record) -> String {
    format!("{}-{:010}", r.log, r.seq)
}

pub(super) fn upload(
    store: &dyn Store,
    path: &Path,
    lines: &[String],
    cipher: &Cipher,
) -> Result<(), String> {
    let held: std::collections::BTreeSet<String> = store
        .list(AUDIT_DIR)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for line in lines {
        let Ok(r) = serde_json::from_str::<Record>(line) else {
            continue;
        };
        let name = remote_name(&r);
        if held.contains(&name) {
            continue;
        }
        let (_, sealed) = cipher.seal(line.as_bytes())?;
        store
            .write(&format!("{AUDIT_DIR}/{name}"), vec![sealed])
            .map_err(|e| e.to_string())?;
    }
    // The head note of this log: how far the targets have seen it. An append-only target
    // cannot have it rewritten, nor its records taken away.
    if store.append_only() {
        return Ok(());
    }
    if let Some((r, line)) = lines
        .last()
        .and_then(|l| Some((serde_json::from_str::<Record>(l).ok()?, l)))
    {
        let head = Head {
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            path: path.display().to_string(),
            log: r.log.clone(),
            seq: r.seq,
            last: sha256_hex(line.as_bytes()),
        };
        let json = serde_json::to_vec(&head).map_err(|e| e.to_string())?;
        let (_, sealed) = cipher.seal(&json)?;
        store
            .write(
                &format!("{AUDIT_DIR}/{}{}", head_prefix(path), r.log),
                vec![sealed],
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The records a target holds, by log (each log's lines in order), and the names that do not
/// open with the key or could not be read (with why).
///
/// # Errors
/// The folder cannot be listed.
pub fn replicated(store: &dyn Store, cipher: &Cipher) -> Result<Replicated, String> {
    let mut names: Vec<String> = store
        .list(AUDIT_DIR)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    let mut logs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut foreign = Vec::new();
    // Head notes are read by [`heads`].
    for name in names.into_iter().filter(|n| !n.starts_with("head-")) {
        let bytes = match store.read(&format!("{AUDIT_DIR}/{name}")) {
            Ok(b) => b,
            Err(e) => {
                foreign.push((name, format!("cannot be read: {e}")));
                continue;
            }
        };
        let opened = cipher
            .open(&bytes)
            .and_then(|p| String::from_utf8(p).ok())
            .filter(|line| {
                serde_json::from_str::<Record>(line).is_ok_and(|r| remote_name(&r) == name)
            });
        match opened {
            Some(line) => {
                let log = name.split('-').next().unwrap_or_default().to_string();
                logs.entry(log).or_default().push(line);
            }
            None => foreign.push((
                name,
                "does not open with the repository key (not cairn's)".into(),
            )),
        }
    }
    Ok((logs, foreign))
}

/// Where the local log and a target's copy of it disagree: the first record of each kind.
#[must_use]
pub fn compare(local: &[String], remote: &[String]) -> Vec<String> {
    let seq = |l: &String| serde_json::from_str::<Record>(l).map(|r| r.seq).ok();
    let local_by: BTreeMap<u64, &String> =
        local.iter().filter_map(|l| Some((seq(l)?, l))).collect();
    let mut out = Vec::new();
    if let Some(r) = remote.iter().find(|r| {
        seq(r)
            .and_then(|s| local_by.get(&s))
            .is_some_and(|l| *l != *r)
    }) {
        out.push(format!(
            "record {} differs from the copy sealed on the target: the local one was changed",
            seq(r).unwrap_or_default()
        ));
    }
    if let Some(r) = remote
        .iter()
        .find(|r| seq(r).is_some_and(|s| !local_by.contains_key(&s)))
    {
        out.push(format!(
            "record {} is on the target but not in the local log: removed locally",
            seq(r).unwrap_or_default()
        ));
    }
    out
}
