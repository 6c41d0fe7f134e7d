//! The audit log's copies on the targets: each record sealed with the repository key as
//! `.cairn-audit/LOG-SEQ`, read back and compared with the local log.

use std::collections::BTreeMap;

use super::{Record, Replicated};
use crate::{layout::AUDIT_DIR, sealed::Cipher, store::Store};

/// The name of a record on a target.
fn remote_name(r: &Record) -> String {
    format!("{}-{:010}", r.log, r.seq)
}

pub(super) fn upload(store: &dyn Store, lines: &[String], cipher: &Cipher) -> Result<(), String> {
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
    for name in names {
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
