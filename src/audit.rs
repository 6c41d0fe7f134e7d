//! The audit log: one record per command that touches a repository or the vault, and one per
//! refused password, appended to a local file and sealed onto every reachable target.
//!
//! Records are chained: each holds its sequence number, the SHA-256 of the record before it
//! (`prev`) and of itself without that field (`hash`). So an edited record fails its own hash,
//! a removed one leaves a gap in the numbers, and two swapped ones come out of order; each
//! is named at the exact record by [`verify`]. Someone who rewrites the whole tail of the local
//! file consistently is caught by the replicated copy: each record is sealed with the
//! repository key (as restic seals its files) into `.cairn-audit/LOG-SEQ` on every target the
//! command reached, and [`compare`] sets the local records against them. Records written while
//! no key was open (a wrong password) reach the targets with the next command that opens it.
//!
//! The local file is `audit.jsonl` in the configuration's state folder, mode 0600; appends are
//! serialised between processes with `flock`. Secrets never reach a record: the command line is
//! scrubbed of every secret the process resolved, and no option takes a secret.

use std::{
    collections::BTreeMap,
    io::Write,
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

use crate::{
    config::Config,
    layout::{AUDIT_DIR, sha256_hex},
    sealed::Cipher,
    secret::redact,
    store::Store,
};

/// One audit record, as one line of JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in its log, from 1.
    pub seq: u64,
    /// When (UTC, RFC 3339).
    pub time: String,
    /// The log it belongs to (random, made with its first record): logs of several machines
    /// meet on the targets.
    pub log: String,
    /// Who: `--operator` / `CAIRN_OPERATOR`, else the OS user.
    pub operator: String,
    /// The OS user that ran it.
    pub user: String,
    /// The machine.
    pub host: String,
    /// The verb (`backup`, `key remove`, ...).
    pub command: String,
    /// The command line, secrets removed.
    pub args: Vec<String>,
    /// The repository's name in the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The targets concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// `ok`, `partial`, `failed` or `refused` (a wrong password or passphrase, a lockout).
    pub result: String,
    /// The exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why, when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Snapshots written or removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    /// Bytes written or restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// SHA-256 of the previous record's line; empty for the first.
    pub prev: String,
    /// SHA-256 of this record's JSON with `hash` empty.
    pub hash: String,
}

impl Record {
    fn own_hash(&self) -> String {
        let mut r = self.clone();
        r.hash = String::new();
        sha256_hex(&serde_json::to_vec(&r).unwrap_or_default())
    }
}

/// Where the records of a command go besides the local file: the repository key, and the
/// targets it was opened on.
type Replica = (Arc<Cipher>, Vec<(String, Arc<dyn Store>)>);

/// A target's sealed records by log (each log's lines in order), and the names that could not
/// be used, with why.
pub type Replicated = (BTreeMap<String, Vec<String>>, Vec<(String, String)>);

/// What one command contributes, gathered while it runs.
struct Trail {
    path: PathBuf,
    operator: String,
    command: String,
    repository: Option<String>,
    targets: Vec<String>,
    snapshots: Vec<String>,
    bytes: Option<u64>,
    /// The repository key and the targets it was opened on, once a command opened it.
    replica: Option<Replica>,
    /// Records that could not be written to the local log, and why.
    lost: Vec<String>,
}

/// What [`finish`] has to say beyond the record itself.
#[derive(Debug, Default)]
pub struct Finished {
    /// Records that could not be written to the local log: the trail has a gap, which the
    /// command's exit code must show.
    pub lost: Vec<String>,
    /// Targets the records did not reach yet (they go with the next command).
    pub pending: Option<String>,
}

static TRAIL: Mutex<Option<Trail>> = Mutex::new(None);

/// The local audit log of a configuration.
///
/// # Errors
/// The state folder cannot be made.
pub fn path(cfg: &Config) -> crate::error::Result<PathBuf> {
    Ok(crate::state::dir(cfg)?.join("audit.jsonl"))
}

/// The OS user running this process.
#[must_use]
pub fn os_user() -> String {
    // SAFETY: geteuid cannot fail; getpwuid's result is read at once.
    let uid = unsafe { libc::geteuid() };
    let pw = unsafe { libc::getpwuid(uid) };
    if !pw.is_null() {
        // SAFETY: a non-null passwd entry has a NUL-terminated name.
        let name = unsafe { std::ffi::CStr::from_ptr((*pw).pw_name) };
        return name.to_string_lossy().into_owned();
    }
    std::env::var("USER").unwrap_or_else(|_| format!("uid {uid}"))
}

/// Starts the trail of `command` for `cfg`; records go to its state folder.
pub fn begin(cfg: &Config, command: &str, operator: Option<&str>) {
    let Ok(path) = path(cfg) else { return };
    let trail = Trail {
        path,
        operator: operator
            .filter(|o| !o.trim().is_empty())
            .map_or_else(os_user, str::to_string),
        command: command.to_string(),
        repository: Some(
            cfg.repository
                .name
                .clone()
                .unwrap_or_else(|| "repository".into()),
        ),
        targets: cfg.targets.iter().map(|t| t.name.clone()).collect(),
        snapshots: Vec::new(),
        bytes: None,
        replica: None,
        lost: Vec::new(),
    };
    if let Ok(mut t) = TRAIL.lock() {
        *t = Some(trail);
    }
}

fn with(f: impl FnOnce(&mut Trail)) {
    if let Ok(mut t) = TRAIL.lock()
        && let Some(t) = t.as_mut()
    {
        f(t);
    }
}

/// Who is at work: the operator of this command's trail, else the OS user.
#[must_use]
pub fn operator() -> String {
    TRAIL
        .lock()
        .ok()
        .and_then(|t| t.as_ref().map(|t| t.operator.clone()))
        .unwrap_or_else(os_user)
}

/// The command names the command more precisely (`key add`, `vault set`).
pub fn command(name: &str) {
    with(|t| t.command = name.to_string());
}

/// A snapshot the command wrote or removed.
pub fn snapshot(id: &str) {
    with(|t| t.snapshots.push(id.to_string()));
}

/// Bytes the command wrote or restored.
pub fn bytes(n: u64) {
    with(|t| *t.bytes.get_or_insert(0) += n);
}

/// The targets the command actually used.
pub fn targets(names: Vec<String>) {
    with(|t| t.targets = names);
}

/// The repository key was opened on these targets: the records go there too.
pub fn replicate_to(
    master: &rustic_core::repofile::MasterKey,
    stores: Vec<(String, Arc<dyn Store>)>,
) {
    let Ok(cipher) = Cipher::new(master) else {
        return;
    };
    with(|t| t.replica = Some((Arc::new(cipher), stores)));
}

/// A refused password or passphrase for `what`, recorded at once.
pub fn refused(what: &str, failures: u32, locked: bool) {
    let lock = if locked { "; now locked" } else { "" };
    append_now(
        "refused",
        None,
        Some(format!(
            "wrong password for {what} ({failures} in a row{lock})"
        )),
    );
}

/// An attempt refused because `what` is locked out.
pub fn locked_out(message: &str) {
    append_now("refused", None, Some(message.to_string()));
}

/// The command ended with `code` (and `error`, if it failed): its record, then the records not
/// yet on the targets the command opened the repository on.
pub fn finish(code: i32, error: Option<&str>) -> Finished {
    let result = match code {
        crate::exit::OK => "ok",
        crate::exit::PARTIAL | crate::exit::INCOMPLETE => "partial",
        crate::exit::WRONG_PASSWORD | crate::exit::LOCKED_OUT => "refused",
        _ => "failed",
    };
    append_now(result, Some(code), error.map(str::to_string));
    let Some(trail) = TRAIL.lock().ok().and_then(|mut t| t.take()) else {
        return Finished::default();
    };
    let mut out = Finished {
        lost: trail.lost,
        pending: None,
    };
    let Some((cipher, stores)) = trail.replica else {
        return out;
    };
    let Ok(lines) = read_lines(&trail.path) else {
        return out;
    };
    let failed: Vec<String> = crate::par::each(&stores, |(name, store)| {
        upload(store.as_ref(), &lines, &cipher).map_err(|e| format!("`{name}`: {e}"))
    })
    .into_iter()
    .filter_map(Result::err)
    .collect();
    out.pending = (!failed.is_empty()).then(|| {
        format!(
            "audit records not yet replicated to {} (they go with the next command)",
            failed.join(", ")
        )
    });
    out
}

fn append_now(result: &str, exit_code: Option<i32>, message: Option<String>) {
    let Ok(mut t) = TRAIL.lock() else { return };
    let Some(t) = t.as_mut() else { return };
    let args: Vec<String> = std::env::args().map(|a| redact(&a)).collect();
    let mut record = Record {
        seq: 0,
        time: crate::state::now(),
        log: String::new(),
        operator: t.operator.clone(),
        user: os_user(),
        host: gethostname::gethostname().to_string_lossy().into_owned(),
        command: t.command.clone(),
        args,
        repository: t.repository.clone(),
        targets: t.targets.clone(),
        result: result.to_string(),
        exit_code,
        message: message.map(|m| redact(&m)),
        snapshots: t.snapshots.clone(),
        bytes: t.bytes,
        prev: String::new(),
        hash: String::new(),
    };
    if let Err(e) = append(&t.path, &mut record) {
        t.lost.push(format!(
            "audit record not written to {}: {e}",
            t.path.display()
        ));
    }
}

/// Appends `record` (its seq, log, prev and hash filled in) to the log at `path`.
///
/// # Errors
/// The log cannot be read or written.
pub fn append(path: &Path, record: &mut Record) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    // SAFETY: the fd is open; the lock is released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let lines = read_lines(path)?;
    match lines.last() {
        Some(last) => {
            let before: Record = serde_json::from_str(last).map_err(std::io::Error::other)?;
            record.seq = before.seq + 1;
            record.log = before.log;
            record.prev = sha256_hex(last.as_bytes());
        }
        None => {
            record.seq = 1;
            record.log = hex::encode(rand::random::<[u8; 8]>());
            record.prev = String::new();
        }
    }
    record.hash = record.own_hash();
    let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// The lines of a log (none if it does not exist).
///
/// # Errors
/// It cannot be read.
pub fn read_lines(path: &Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The first fault in a chain of records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// The record concerned (its sequence number).
    pub seq: u64,
    /// The line of the file (from 1) where it shows.
    pub line: usize,
    /// What is wrong with it.
    pub what: String,
}

/// Checks a chain of records (the lines of one log); the first fault, if any.
#[must_use]
pub fn verify(lines: &[String]) -> Option<Fault> {
    let parsed: Vec<Option<Record>> = lines
        .iter()
        .map(|l| serde_json::from_str::<Record>(l).ok())
        .collect();
    let mut prev_line: Option<&String> = None;
    for (expected, (i, (line, record))) in (1u64..).zip(lines.iter().zip(&parsed).enumerate()) {
        let at = |seq: u64, what: String| {
            Some(Fault {
                seq,
                line: i + 1,
                what,
            })
        };
        let Some(r) = record else {
            return at(
                expected,
                format!("record {expected} was changed: it is not a record"),
            );
        };
        if r.own_hash() != r.hash {
            return at(r.seq, format!("record {} was changed", r.seq));
        }
        if r.seq != expected {
            let later = parsed[i + 1..]
                .iter()
                .flatten()
                .any(|later| later.seq == expected);
            return if later {
                at(
                    expected,
                    format!(
                        "record {expected} is out of order: it comes after record {}",
                        r.seq
                    ),
                )
            } else if r.seq > expected {
                at(
                    expected,
                    format!(
                        "record {expected}{} was removed (the next one is {})",
                        if r.seq > expected + 1 {
                            format!(" to {}", r.seq - 1)
                        } else {
                            String::new()
                        },
                        r.seq
                    ),
                )
            } else {
                at(r.seq, format!("record {} appears twice", r.seq))
            };
        }
        let link = prev_line
            .map(|l| sha256_hex(l.as_bytes()))
            .unwrap_or_default();
        if r.prev != link {
            return at(
                expected.saturating_sub(1),
                format!(
                    "record {} was changed (record {} no longer matches it)",
                    expected.saturating_sub(1),
                    r.seq
                ),
            );
        }
        prev_line = Some(line);
    }
    None
}

/// The name of a record on a target.
fn remote_name(r: &Record) -> String {
    format!("{}-{:010}", r.log, r.seq)
}

fn upload(store: &dyn Store, lines: &[String], cipher: &Cipher) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: u64) -> (tempfile::TempDir, PathBuf, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for i in 0..n {
            let mut r = Record {
                seq: 0,
                time: format!("2026-12-06T00:00:{i:02}Z"),
                log: String::new(),
                operator: "alice".into(),
                user: "root".into(),
                host: "h".into(),
                command: "backup".into(),
                args: vec!["cairn".into(), "backup".into()],
                repository: None,
                targets: vec![],
                result: "ok".into(),
                exit_code: Some(0),
                message: None,
                snapshots: vec![],
                bytes: Some(i),
                prev: String::new(),
                hash: String::new(),
            };
            append(&path, &mut r).unwrap();
        }
        let lines = read_lines(&path).unwrap();
        (dir, path, lines)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (_d, _p, lines) = log(6);
        assert_eq!(verify(&lines), None);
    }

    #[test]
    fn edits_removals_and_swaps_are_named_at_their_record() {
        let (_d, _p, lines) = log(6);
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"bytes\":2", "\"bytes\":9");
        assert_eq!(verify(&edited).unwrap().seq, 3);
        // Edited and its own hash recomputed: the next record's link names it.
        let mut r: Record = serde_json::from_str(&lines[2]).unwrap();
        r.bytes = Some(9);
        r.hash = r.own_hash();
        let mut rehashed = lines.clone();
        rehashed[2] = serde_json::to_string(&r).unwrap();
        let f = verify(&rehashed).unwrap();
        assert_eq!((f.seq, f.line), (3, 4), "{f:?}");
        let mut removed = lines.clone();
        removed.remove(3);
        let f = verify(&removed).unwrap();
        assert_eq!(f.seq, 4, "{f:?}");
        assert!(f.what.contains("removed"), "{f:?}");
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        let f = verify(&swapped).unwrap();
        assert_eq!(f.seq, 2, "{f:?}");
        assert!(f.what.contains("out of order"), "{f:?}");
    }
}
