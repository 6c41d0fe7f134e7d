//! `kind = "sftp"`: an OpenSSH server, through opendal's SFTP service (which runs the system
//! `ssh` client: key authentication, `~/.ssh/known_hosts`).
//!
//! Writes go to a temporary file, then are renamed into place, so an interrupted upload never
//! leaves a short file under a repository name. opendal's writer closes the file without
//! syncing it, so a session of our own syncs it before the rename (OpenSSH's
//! `fsync@openssh.com`): a power cut on the server never leaves a file renamed into place whose
//! bytes were still in its page cache. SFTP cannot sync a folder (the extension needs a handle
//! open for writing), so the renames' own order on disk is the server filesystem's: ext4, XFS,
//! btrfs and ZFS journal them in order, so a snapshot never survives without its packs.

mod append_only;

pub use append_only::folders as append_only_folders;

use std::{path::PathBuf, sync::Arc, time::Duration};

use openssh_sftp_client::{
    Sftp, SftpOptions,
    openssh::{KnownHosts, SessionBuilder},
};

use super::{
    Policy, Store, StoreError, StoreErrorKind, StoreResult,
    opendal_store::{Atomicity, Durable, OpendalStore},
};
use crate::config::{HostKeyChecking, TargetKind};

pub(super) fn open(kind: &TargetKind, policy: Policy) -> StoreResult<Box<dyn Store>> {
    let TargetKind::Sftp {
        host,
        port,
        user,
        key_file,
        path,
        host_key_checking,
        append_only,
    } = kind
    else {
        unreachable!("sftp::open is called for sftp targets")
    };
    // ssh would only say "permission denied"; name the real problem.
    if let Err(e) = std::fs::File::open(key_file) {
        return Err(StoreError::new(
            StoreErrorKind::Permanent,
            format!("key file {}: {e}", key_file.display()),
        ));
    }
    // opendal's names for ssh's StrictHostKeyChecking yes / accept-new / no.
    let (strategy, known_hosts) = match host_key_checking {
        HostKeyChecking::Strict => ("strict", KnownHosts::Strict),
        HostKeyChecking::AcceptNew => ("add", KnownHosts::Add),
        HostKeyChecking::Off => ("accept", KnownHosts::Accept),
    };
    let location = format!("sftp://{user}@{host}:{port}{path}");
    let durable = Syncer {
        endpoint: format!("ssh://{host}:{port}"),
        user: user.clone(),
        key_file: key_file.clone(),
        known_hosts,
        root: path.trim_end_matches('/').to_string(),
        timeout: policy.timeout,
        location: location.clone(),
        sftp: tokio::sync::Mutex::default(),
    };
    let builder = opendal::services::Sftp::default()
        .endpoint(&format!("ssh://{host}:{port}"))
        .user(user)
        .key(&key_file.to_string_lossy())
        // opendal creates its root at every connection: "/" exists, and the target's folder
        // is a prefix, so that a wrong path shows absent instead of being created.
        .root("/")
        .known_hosts_strategy(strategy);
    let reads = OpendalStore::new(
        builder,
        policy,
        location,
        Vec::new(),
        Atomicity::TmpThenRename,
        true,
    )?
    .with_prefix(path);
    if *append_only {
        return Ok(Box::new(append_only::AppendOnly {
            reads,
            server: durable,
        }));
    }
    Ok(Box::new(reads.with_durable(Box::new(durable))))
}

/// Syncs files and folders on the server through one SFTP session, opened at the first write.
struct Syncer {
    endpoint: String,
    user: String,
    key_file: PathBuf,
    known_hosts: KnownHosts,
    root: String,
    timeout: Duration,
    location: String,
    /// The session; dropped after an error so that the next write opens a new one.
    /// Held across connecting, so that concurrent first writes open one session, not several.
    sftp: tokio::sync::Mutex<Option<Arc<Sftp>>>,
}

impl Syncer {
    fn err(&self, kind: StoreErrorKind, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::new(kind, format!("{what} on {}: {e}", self.location))
    }

    async fn session(&self) -> StoreResult<Arc<Sftp>> {
        let mut held = self.sftp.lock().await;
        if let Some(s) = held.as_ref() {
            return Ok(s.clone());
        }
        let mut b = SessionBuilder::default();
        b.user(self.user.clone())
            .keyfile(&self.key_file)
            .known_hosts_check(self.known_hosts.clone());
        let transient = |e: &dyn std::fmt::Display| {
            self.err(StoreErrorKind::Transient, "connecting to sync writes", e)
        };
        let session = b.connect(&self.endpoint).await.map_err(|e| transient(&e))?;
        let sftp = Sftp::from_session(session, SftpOptions::default())
            .await
            .map_err(|e| transient(&e))?;
        let sftp = Arc::new(sftp);
        *held = Some(sftp.clone());
        Ok(sftp)
    }

    /// fsync of one file on the server.
    fn fsync(&self, rel: &str) -> StoreResult<()> {
        let full = format!("{}/{rel}", self.root);
        let what = format!("syncing {rel}");
        let run = async {
            let sftp = self.session().await?;
            let synced = async {
                // Written, never truncated: the extension wants a handle open for writing.
                let mut f = sftp.options().write(true).open(&full).await?;
                let synced = f.sync_all().await;
                let closed = f.close().await;
                synced.and(closed)
            };
            match synced.await {
                Ok(()) => Ok(()),
                Err(e) => {
                    // Perhaps a broken session: the next write opens a new one.
                    *self.sftp.lock().await = None;
                    Err(self.err(StoreErrorKind::Permanent, &what, e))
                }
            }
        };
        let handle = super::runtime()?;
        handle.block_on(async {
            tokio::time::timeout(self.timeout, run)
                .await
                .unwrap_or_else(|_| Err(self.err(StoreErrorKind::Transient, &what, "timed out")))
        })
    }
}

impl Durable for Syncer {
    fn sync_file(&self, path: &str) -> StoreResult<()> {
        self.fsync(path)
    }
}
