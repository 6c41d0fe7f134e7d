//! `kind = "sftp"`: an OpenSSH server, through opendal's SFTP service (which runs the system
//! `ssh` client: key authentication, `~/.ssh/known_hosts`).
//!
//! Writes go to a temporary file, then are renamed into place, so an interrupted upload never
//! leaves a short file under a repository name.

use super::{
    Policy, Store, StoreError, StoreErrorKind, StoreResult,
    opendal_store::{Atomicity, OpendalStore},
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
    let strategy = match host_key_checking {
        HostKeyChecking::Strict => "strict",
        HostKeyChecking::AcceptNew => "add",
        HostKeyChecking::Off => "accept",
    };
    let builder = opendal::services::Sftp::default()
        .endpoint(&format!("ssh://{host}:{port}"))
        .user(user)
        .key(&key_file.to_string_lossy())
        .root(path)
        .known_hosts_strategy(strategy);
    let store = OpendalStore::new(
        builder,
        policy,
        format!("sftp://{user}@{host}:{port}{path}"),
        Vec::new(),
        Atomicity::TmpThenRename,
        true,
    )?;
    Ok(Box::new(store))
}
