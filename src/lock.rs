//! The repository lock: one writer at a time.
//!
//! Two layers. On this machine, an exclusive `flock` on a file in the state folder: the kernel
//! drops it when the holder dies, so it can never go stale. On every target taking part, a
//! `cairn.lock` file at the repository's root (restic does not look there) naming the holder,
//! refreshed every minute while the lock is held. Another process meeting it stops with the
//! holder named, unless the lock is stale: its process is dead (same host) or it has not been
//! refreshed for [`STALE_AFTER`]. Read-only commands take no lock.

use std::{
    fs::File,
    io::{Read, Seek, Write},
    sync::{
        Arc,
        mpsc::{self, RecvTimeoutError},
    },
    thread,
    time::Duration,
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{
    config::Config,
    error::{Error, Result},
    progress::Observer,
    state,
    target::Store,
};

/// The lock file's name on a target.
pub const TARGET_FILE: &str = "cairn.lock";
/// How often a held lock is refreshed on the targets.
const REFRESH: Duration = Duration::from_secs(60);
/// A target lock not refreshed for this long belongs to a process that is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    /// Unique per acquisition.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// User running it.
    pub user: String,
    /// The command, e.g. `backup`.
    pub command: String,
    /// When it was taken (RFC 3339).
    pub started: String,
    /// Last refresh, seconds since the epoch.
    pub refreshed: i64,
}

impl Holder {
    fn new(command: &str) -> Self {
        Self {
            id: format!("{:016x}", rand::random::<u64>()),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            user: user(),
            command: command.to_string(),
            started: state::now(),
            refreshed: jiff::Timestamp::now().as_second(),
        }
    }

    /// `cairn backup` (pid 42, user root on host nas, since ...).
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "`cairn {}` (pid {}, user {} on host {}, since {})",
            self.command, self.pid, self.user, self.host, self.started
        )
    }

    /// Why this lock no longer counts, if it does not.
    fn stale(&self) -> Option<String> {
        let here = gethostname::gethostname().to_string_lossy().into_owned();
        if self.host == here && !alive(self.pid) {
            return Some(format!("process {} no longer runs", self.pid));
        }
        let age = jiff::Timestamp::now().as_second() - self.refreshed;
        (age > STALE_AFTER.as_secs().cast_signed())
            .then(|| format!("not refreshed for {} min", age / 60))
    }
}

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|u| u.split_whitespace().next().map(|u| format!("uid {u}")))
                })
                .unwrap_or_else(|| "unknown".into())
        })
}

/// A held lock; dropping it releases it everywhere.
#[derive(Debug)]
pub struct RepoLock {
    local: File,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<thread::JoinHandle<()>>,
    holder: Holder,
    targets: Arc<Vec<(String, Arc<dyn Store>)>>,
}

/// Takes the lock on this machine, then on every target that can be reached.
///
/// # Errors
/// [`Error::Locked`] naming the holder and where it holds the lock. A target that cannot be
/// reached or written is not an error here: the run itself reports it, and writes nothing there.
pub fn acquire(cfg: &Config, command: &str, observer: &Arc<dyn Observer>) -> Result<RepoLock> {
    let dir = state::dir(cfg)?;
    let path = dir.join("lock");
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    if let Err(e) = file.try_lock() {
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let who = serde_json::from_str::<Holder>(&text)
            .map_or_else(|_| "another cairn process".to_string(), |h| h.describe());
        return Err(match e {
            std::fs::TryLockError::WouldBlock => Error::Locked(format!(
                "{who} holds the lock of {} on this machine ({})",
                cfg.path.display(),
                path.display()
            )),
            std::fs::TryLockError::Error(e) => io(e),
        });
    }
    let holder = Holder::new(command);
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(&serde_json::to_vec(&holder).unwrap_or_default())
        .map_err(io)?;

    // Every reachable target and the lock it holds, if any, asked concurrently.
    let found: Vec<(String, Arc<dyn Store>, Option<Holder>)> = thread::scope(|s| {
        let handles: Vec<_> = cfg
            .targets
            .iter()
            .map(|t| {
                s.spawn(move || {
                    let store: Arc<dyn Store> = Arc::from(crate::target::open(t).ok()?);
                    let held = match store.read(TARGET_FILE) {
                        Ok(b) => serde_json::from_slice::<Holder>(&b).ok(),
                        Err(e) if e.is_not_found() => None,
                        Err(_) => return None,
                    };
                    Some((t.name.clone(), store, held))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    });
    let mut targets = Vec::new();
    for (name, store, held) in found {
        if let Some(other) = held {
            match other.stale() {
                Some(why) => observer.warn(&format!(
                    "`{name}`: taking over a stale lock of {} ({why})",
                    other.describe()
                )),
                None => {
                    return Err(Error::Locked(format!(
                        "{} holds the lock on target `{name}` ({})",
                        other.describe(),
                        store.location()
                    )));
                }
            }
        }
        targets.push((name, store));
    }
    let targets = Arc::new(targets);
    write_all(&targets, &holder, observer);
    let (stop, stopped) = mpsc::channel::<()>();
    let refresher = {
        let targets = targets.clone();
        let mut holder = holder.clone();
        let observer = observer.clone();
        thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH) {
                holder.refreshed = jiff::Timestamp::now().as_second();
                write_all(&targets, &holder, &observer);
            }
        })
    };
    Ok(RepoLock {
        local: file,
        stop: Some(stop),
        refresher: Some(refresher),
        holder,
        targets,
    })
}

/// Who holds this configuration's lock on this machine right now, if anyone. Reads the holder
/// the lock file names without touching the lock itself, so asking never gets in a run's way.
#[must_use]
pub fn local_holder(cfg: &Config) -> Option<Holder> {
    let text = std::fs::read_to_string(state::dir(cfg).ok()?.join("lock")).ok()?;
    let holder: Holder = serde_json::from_str(&text).ok()?;
    alive(holder.pid).then_some(holder)
}

/// Whether a process of this machine runs.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn write_all(targets: &[(String, Arc<dyn Store>)], holder: &Holder, observer: &Arc<dyn Observer>) {
    let bytes = Bytes::from(serde_json::to_vec_pretty(holder).unwrap_or_default());
    thread::scope(|s| {
        for (name, store) in targets {
            let bytes = bytes.clone();
            s.spawn(move || {
                if let Err(e) = store.write(TARGET_FILE, vec![bytes]) {
                    observer.warn(&format!("`{name}`: cannot write its lock file: {e}"));
                }
            });
        }
    });
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        for (_, store) in self.targets.iter() {
            // Only our own lock: a stale-lock takeover by another process must survive us.
            let ours = store
                .read(TARGET_FILE)
                .ok()
                .and_then(|b| serde_json::from_slice::<Holder>(&b).ok())
                .is_some_and(|h| h.id == self.holder.id);
            if ours {
                let _ = store.delete(TARGET_FILE);
            }
        }
        // Cleared, so the file names no holder once we are gone; the flock goes with the handle.
        let _ = self.local.set_len(0);
    }
}
