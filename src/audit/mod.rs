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

mod chain;
mod copies;

pub use chain::{Fault, verify};
pub use copies::{Head, check_heads, compare, heads, replicated};

use crate::{config::Config, layout::sha256_hex, sealed::Cipher, secret::redact, store::Store};

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
#[derive(Debug)]
struct Current {
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

/// What [`Trail::finish`] has to say beyond the record itself.
#[derive(Debug, Default)]
pub struct Finished {
    /// Records that could not be written to the local log: the trail has a gap, which the
    /// command's exit code must show.
    pub lost: Vec<String>,
    /// Targets the records did not reach yet (they go with the next command).
    pub pending: Option<String>,
}

/// The audit trail of one configuration: the command under way, between [`Trail::begin`] and
/// [`Trail::finish`]. Outside a command, nothing is recorded.
#[derive(Debug, Default)]
pub struct Trail {
    current: Mutex<Option<Current>>,
}

/// The local audit log of a configuration.
///
/// # Errors
/// The state folder cannot be made.
pub fn path(cfg: &Config) -> crate::error::Result<PathBuf> {
    Ok(crate::state::dir(cfg)?.join("audit.jsonl"))
}

/// This machine's name.
#[must_use]
pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
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

impl Trail {
    /// Starts the trail of `command` for `cfg`; records go to its state folder.
    pub fn begin(&self, cfg: &Config, command: &str, operator: Option<&str>) {
        // Without a state folder no record can be written: the command must say so, and fail.
        let (path, lost) = match path(cfg) {
            Ok(p) => (p, Vec::new()),
            Err(e) => (
                PathBuf::new(),
                vec![format!("audit record not written: {e}")],
            ),
        };
        let current = Current {
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
            lost,
        };
        if let Ok(mut t) = self.current.lock() {
            *t = Some(current);
        }
    }

    fn with(&self, f: impl FnOnce(&mut Current)) {
        if let Ok(mut t) = self.current.lock()
            && let Some(t) = t.as_mut()
        {
            f(t);
        }
    }

    /// Who is at work: the operator of the command under way, else the OS user.
    #[must_use]
    pub fn operator(&self) -> String {
        self.current
            .lock()
            .ok()
            .and_then(|t| t.as_ref().map(|t| t.operator.clone()))
            .unwrap_or_else(os_user)
    }

    /// The command names the command more precisely (`key add`, `vault set`).
    pub fn command(&self, name: &str) {
        self.with(|t| t.command = name.to_string());
    }

    /// A snapshot the command wrote, removed or read.
    pub fn snapshot(&self, id: &str) {
        self.with(|t| t.snapshots.push(id.to_string()));
    }

    /// Bytes the command wrote or restored.
    pub fn bytes(&self, n: u64) {
        self.with(|t| *t.bytes.get_or_insert(0) += n);
    }

    /// The targets the command actually used.
    pub fn targets(&self, names: Vec<String>) {
        self.with(|t| t.targets = names);
    }

    /// The repository key was opened on these targets: the records go there too.
    pub fn replicate_to(
        &self,
        master: &rustic_core::repofile::MasterKey,
        stores: Vec<(String, Arc<dyn Store>)>,
    ) {
        let Ok(cipher) = Cipher::new(master) else {
            return;
        };
        self.with(|t| t.replica = Some((Arc::new(cipher), stores)));
    }

    /// The command's records stay in the local log only (the repository they would go to was
    /// erased).
    pub fn keep_local(&self) {
        self.with(|t| t.replica = None);
    }

    /// A refused password or passphrase for `what`, recorded at once.
    pub fn refused(&self, what: &str, failures: u32, locked: bool) {
        let lock = if locked { "; now locked" } else { "" };
        self.append_now(
            "refused",
            None,
            Some(format!(
                "wrong password for {what} ({failures} in a row{lock})"
            )),
        );
    }

    /// An attempt refused because `what` is locked out.
    pub fn locked_out(&self, message: &str) {
        self.append_now("refused", None, Some(message.to_string()));
    }

    /// The command ended with `code` (and `error`, if it failed): its record, then the records
    /// not yet on the targets the command opened the repository on.
    pub fn finish(&self, code: i32, error: Option<&str>) -> Finished {
        let result = match code {
            crate::exit::OK => "ok",
            crate::exit::PARTIAL | crate::exit::INCOMPLETE => "partial",
            crate::exit::WRONG_PASSWORD | crate::exit::LOCKED_OUT => "refused",
            _ => "failed",
        };
        self.append_now(result, Some(code), error.map(str::to_string));
        let Some(current) = self.current.lock().ok().and_then(|mut t| t.take()) else {
            return Finished::default();
        };
        let mut out = Finished {
            lost: current.lost,
            pending: None,
        };
        let Some((cipher, stores)) = current.replica else {
            return out;
        };
        let Ok(lines) = read_lines(&current.path) else {
            return out;
        };
        let failed: Vec<String> = crate::par::each(&stores, |(name, store)| {
            copies::upload(store.as_ref(), &current.path, &lines, &cipher)
                .map_err(|e| format!("`{name}`: {e}"))
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

    fn append_now(&self, result: &str, exit_code: Option<i32>, message: Option<String>) {
        let Ok(mut t) = self.current.lock() else {
            return;
        };
        let Some(t) = t.as_mut() else { return };
        if t.path.as_os_str().is_empty() {
            return;
        }
        let args: Vec<String> = std::env::args().map(|a| redact(&a)).collect();
        let mut record = Record {
            seq: 0,
            time: crate::state::now(),
            log: String::new(),
            operator: t.operator.clone(),
            user: os_user(),
            host: host_name(),
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
