//! SMB sessions: logon, the security the session must have, a small pool of open
//! connections, and one bounded attempt of an operation over one of them.
//!
//! The pool is a counter and a list under a mutex: no pool crate is in the tree, and one would
//! add more than these lines do.

use std::{future::Future, pin::Pin};

use smb2::{ClientConfig, ErrorKind, SmbClient, Tree};

use super::SmbStore;
use crate::{
    config::SmbSecurity,
    store::{Store, StoreError, StoreErrorKind, StoreResult},
};

/// Sessions kept open per target.
pub(super) const CONNECTIONS: usize = 4;

/// One authenticated session with the share connected.
pub(super) struct Conn {
    pub(super) client: SmbClient,
    pub(super) tree: Tree,
}

#[derive(Default)]
pub(super) struct Pool {
    idle: Vec<Conn>,
    open: usize,
}

/// An operation's future over one borrowed connection.
pub(super) type Op<'a, T> = Pin<Box<dyn Future<Output = smb2::Result<T>> + Send + 'a>>;

/// Why an attempt failed: the connection could not be made, or the operation failed on it.
pub(super) enum Failure {
    Connect(StoreError),
    Op(smb2::Error),
    Timeout,
}

impl SmbStore {
    async fn connect(&self) -> StoreResult<Conn> {
        let config = ClientConfig {
            addr: self.addr(),
            timeout: self.policy.timeout,
            username: self.user.clone(),
            password: self.password.expose().to_string(),
            domain: self.domain.clone(),
            auto_reconnect: false,
            dfs_enabled: false,
            response_timeout: Some(self.policy.timeout),
            ..ClientConfig::default()
        };
        let mut client = SmbClient::connect(config).await.map_err(|e| {
            let (kind, what) = match e.kind() {
                ErrorKind::AuthRequired | ErrorKind::AccessDenied => (
                    StoreErrorKind::Permanent,
                    format!(
                        "logon failure: the server refused user `{}` (wrong user, domain or password)",
                        self.user
                    ),
                ),
                ErrorKind::SigningRequired => (
                    StoreErrorKind::Permanent,
                    format!("logon failure: {e}"),
                ),
                _ if matches!(e, smb2::Error::GuestSessionRefused { .. }) => (
                    StoreErrorKind::Permanent,
                    format!(
                        "logon failure: user `{}` was only let in as a guest (wrong password?)",
                        self.user
                    ),
                ),
                k if transient(k) => (StoreErrorKind::Transient, format!("cannot connect: {e}")),
                _ => (StoreErrorKind::Permanent, format!("cannot connect: {e}")),
            };
            self.err(kind, format!("{}: {what}", self.location()))
        })?;
        let tree = client.connect_share(&self.share).await.map_err(|e| {
            let kind = if transient(e.kind()) {
                StoreErrorKind::Transient
            } else {
                StoreErrorKind::Permanent
            };
            let what = match e.kind() {
                ErrorKind::NotFound => format!("share `{}` not found", self.share),
                ErrorKind::AccessDenied => format!("access to share `{}` denied", self.share),
                _ => format!("cannot connect share `{}`: {e}", self.share),
            };
            self.err(kind, format!("{}: {what}", self.location()))
        })?;
        let session = client.session();
        let (signed, encrypted) = (
            session.should_sign,
            session.should_encrypt || tree.encrypt_data,
        );
        let refused = match self.security {
            SmbSecurity::Sign if !signed && !encrypted => Some("neither signed nor encrypted"),
            SmbSecurity::Encrypt if !encrypted => Some("not encrypted"),
            _ => None,
        };
        if let Some(why) = refused {
            return Err(self.err(
                StoreErrorKind::Permanent,
                format!(
                    "{}: the server's session is {why}; refusing it (security = {:?} in targets.toml)",
                    self.location(),
                    self.security
                ),
            ));
        }
        Ok(Conn { client, tree })
    }

    /// An idle connection, or `None` if the caller may open a new one.
    fn checkout(&self) -> Option<Conn> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(c) = pool.idle.pop() {
                return Some(c);
            }
            if pool.open < CONNECTIONS {
                pool.open += 1;
                return None;
            }
            pool = self.freed.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn checkin(&self, conn: Option<Conn>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        match conn {
            Some(c) => pool.idle.push(c),
            None => pool.open -= 1,
        }
        self.freed.notify_one();
    }

    /// One attempt: a connection (pooled or new), the operation, both within the timeout.
    pub(super) fn attempt<T>(
        &self,
        f: &(dyn for<'a> Fn(&'a mut Conn) -> Op<'a, T> + Sync),
    ) -> Result<T, Failure> {
        let pooled = self.checkout();
        let timeout = self.policy.timeout;
        let (conn, result) = self.handle.block_on(async {
            let mut conn = match pooled {
                Some(c) => c,
                None => match tokio::time::timeout(timeout, self.connect()).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return (None, Err(Failure::Connect(e))),
                    Err(_) => return (None, Err(Failure::Timeout)),
                },
            };
            match tokio::time::timeout(timeout, f(&mut conn)).await {
                Ok(Ok(v)) => (Some(conn), Ok(v)),
                // A connection that lost its server is not used again.
                Ok(Err(e)) if transient(e.kind()) => (None, Err(Failure::Op(e))),
                Ok(Err(e)) => (Some(conn), Err(Failure::Op(e))),
                Err(_) => (None, Err(Failure::Timeout)),
            }
        });
        self.checkin(conn);
        result
    }
}

pub(super) fn transient(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionLost
            | ErrorKind::TimedOut
            | ErrorKind::SessionExpired
            | ErrorKind::Cancelled
            | ErrorKind::Io
            | ErrorKind::SharingViolation
    )
}
