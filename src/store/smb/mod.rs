//! `kind = "smb"`: a NAS share over SMB2/3, spoken natively by the `smb2` crate (opendal has no
//! SMB service, and a kernel mount would need root and leave a mount behind).
//!
//! Up to `session::CONNECTIONS` sessions are kept open so the fan-out's concurrent writes do not queue
//! behind one another. Each attempt is bounded by the target's timeout; a connection that timed
//! out or dropped is discarded and the operation retried on a fresh one, up to `retries` times.
//! Writes go to a temporary file and are renamed over the final name in one step, so a reader
//! (or a crash) never meets a short file. The session must be signed or encrypted unless the
//! target says `security = "none"`: a NAS that silently negotiates an unprotected session would
//! otherwise let anyone on the path alter the backup in transit.

mod session;

use std::sync::{Condvar, Mutex};

use backon::{BlockingRetryable, ExponentialBuilder};
use bytes::Bytes;
use smb2::{ErrorKind, RenameOptions};

use session::{Conn, Failure, Op, Pool, transient};

use super::{
    Policy, Store, StoreError, StoreErrorKind, StoreResult, azblob::secret_error, redact, runtime,
};
use crate::{
    config::{SmbSecurity, TargetKind},
    secret::{Secret, Vaults},
};

/// Files up to this size are written whole, in one compounded round trip where they fit.
const SMALL: usize = 1 << 20;
/// The pieces a larger file is handed to smb2 in: a pack's parts are its blobs, often a few
/// hundred bytes, and each piece is at least one WRITE request of its own.
const PIECE: usize = 4 << 20;

/// `parts` (a file's bytes, in order) copied into pieces of `PIECE` bytes (the last shorter),
/// one at a time. Never an empty one: smb2 takes an empty piece for the end.
fn pieces(parts: &[Bytes]) -> impl Iterator<Item = Vec<u8>> + Send + '_ {
    let mut at = (0, 0); // (part, offset in it)
    std::iter::from_fn(move || {
        let mut piece = Vec::new();
        while piece.len() < PIECE {
            let Some(part) = parts.get(at.0) else { break };
            if piece.is_empty() {
                piece.reserve_exact(PIECE);
            }
            let take = (part.len() - at.1).min(PIECE - piece.len());
            piece.extend_from_slice(&part[at.1..at.1 + take]);
            at.1 += take;
            if at.1 == part.len() {
                at = (at.0 + 1, 0);
            }
        }
        (!piece.is_empty()).then_some(piece)
    })
}

struct SmbStore {
    host: String,
    port: u16,
    share: String,
    prefix: String,
    user: String,
    domain: String,
    password: Secret,
    security: SmbSecurity,
    policy: Policy,
    handle: tokio::runtime::Handle,
    pool: Mutex<Pool>,
    freed: Condvar,
}

impl std::fmt::Debug for SmbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmbStore")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

pub(super) fn open(
    kind: &TargetKind,
    policy: Policy,
    vaults: &dyn Vaults,
) -> StoreResult<Box<dyn Store>> {
    let TargetKind::Smb {
        host,
        port,
        share,
        path,
        user,
        domain,
        password,
        security,
    } = kind
    else {
        unreachable!("smb::open is called for smb targets")
    };
    let password = password
        .resolve("smb password", vaults)
        .map_err(secret_error)?;
    Ok(Box::new(SmbStore {
        host: host.clone(),
        port: *port,
        share: share.clone(),
        prefix: path.clone(),
        user: user.clone(),
        domain: domain.clone(),
        password,
        security: *security,
        policy,
        handle: runtime()?,
        pool: Mutex::new(Pool::default()),
        freed: Condvar::new(),
    }))
}

impl SmbStore {
    fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn full(&self, path: &str) -> String {
        match (self.prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{path}", self.prefix),
        }
    }

    fn err(&self, kind: StoreErrorKind, msg: String) -> StoreError {
        StoreError::new(kind, redact(&msg, &[self.password.expose().to_string()]))
    }

    /// Runs `f`, retrying transient failures with backoff (`retries` times).
    fn call<T>(
        &self,
        what: &str,
        path: &str,
        f: &(dyn for<'a> Fn(&'a mut Conn) -> Op<'a, T> + Sync),
    ) -> StoreResult<T> {
        let once = || self.attempt(f).map_err(|e| self.classify(e, what, path));
        once.retry(
            ExponentialBuilder::default()
                .with_min_delay(Policy::MIN_BACKOFF)
                .with_max_delay(Policy::MAX_BACKOFF)
                .with_max_times(self.policy.retries),
        )
        .sleep(std::thread::sleep)
        .when(|e| e.kind == StoreErrorKind::Transient)
        .call()
    }

    /// A failed attempt as a classified error.
    fn classify(&self, failure: Failure, what: &str, path: &str) -> StoreError {
        match failure {
            Failure::Connect(e) => e,
            Failure::Timeout => self.err(
                StoreErrorKind::Transient,
                format!(
                    "{what} {path} on {}: no answer within {} s",
                    self.location(),
                    self.policy.timeout.as_secs()
                ),
            ),
            Failure::Op(e) => {
                let kind = match e.kind() {
                    ErrorKind::NotFound => StoreErrorKind::NotFound,
                    ErrorKind::DiskFull => StoreErrorKind::Full,
                    k if transient(k) => StoreErrorKind::Transient,
                    _ => StoreErrorKind::Permanent,
                };
                let why = match e.kind() {
                    ErrorKind::DiskFull => format!("the share is full ({e})"),
                    ErrorKind::ConnectionLost => format!("connection lost ({e})"),
                    ErrorKind::AccessDenied => format!("access denied ({e})"),
                    _ => e.to_string(),
                };
                self.err(kind, format!("{what} {path} on {}: {why}", self.location()))
            }
        }
    }

    fn mkdirs(&self, dirs: Vec<String>) -> StoreResult<()> {
        self.call("creating folders in", &self.share, &|c| {
            let dirs = dirs.clone();
            Box::pin(async move {
                for d in &dirs {
                    match c.client.create_directory(&c.tree, d).await {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })
        })
    }

    /// Every folder from the share root down to `dir` (inclusive).
    fn ancestry(dir: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(part);
            out.push(cur.clone());
        }
        out
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

impl Store for SmbStore {
    fn location(&self) -> String {
        let mut loc = format!("smb://{}@{}/{}", self.user, self.addr(), self.share);
        if !self.prefix.is_empty() {
            loc.push('/');
            loc.push_str(&self.prefix);
        }
        loc
    }

    fn stat(&self, path: &str) -> StoreResult<Option<u64>> {
        let full = self.full(path);
        match self.call("checking", path, &|c| {
            let full = full.clone();
            Box::pin(async move { c.client.stat(&mut c.tree, &full).await })
        }) {
            Ok(info) => Ok(Some(info.size)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read(&self, path: &str) -> StoreResult<Bytes> {
        let full = self.full(path);
        self.call("reading", path, &|c| {
            let full = full.clone();
            Box::pin(async move { c.client.read_file_pipelined(&mut c.tree, &full).await })
        })
        .map(Bytes::from)
    }

    fn read_range(&self, path: &str, offset: u64, length: u64) -> StoreResult<Bytes> {
        let full = self.full(path);
        let bytes = self.call("reading", path, &|c| {
            let full = full.clone();
            Box::pin(async move {
                let reader = c.client.open_file_reader(&c.tree, &full).await?;
                let data = reader.read_at(offset, length).await;
                let closed = reader.close().await;
                let data = data?;
                closed?;
                Ok(data)
            })
        })?;
        if bytes.len() as u64 != length {
            return Err(self.err(
                StoreErrorKind::Permanent,
                format!(
                    "reading {path} on {}: got {} of {length} bytes at offset {offset}",
                    self.location(),
                    bytes.len()
                ),
            ));
        }
        Ok(Bytes::from(bytes))
    }

    fn write(&self, path: &str, parts: Vec<Bytes>) -> StoreResult<()> {
        let full = self.full(path);
        // A small file goes in one round trip (CREATE+WRITE+FLUSH compounded), a file in one
        // part as it is; a larger one in `PIECE`s, never copied whole (a pack held as one more
        // 16 MiB copy per upload in flight was 38 MiB of an SMB backup's peak heap). Either
        // way smb2 flushes the file before it closes it.
        let size: usize = parts.iter().map(Bytes::len).sum();
        let whole = match parts.as_slice() {
            [one] => Some(one.clone()),
            _ if size <= SMALL => Some(Bytes::from(parts.concat())),
            _ => None,
        };
        let tmp = self.full(&crate::layout::tmp_name(path));
        let put = || {
            self.call("writing", path, &|c| {
                let (full, tmp, whole) = (full.clone(), tmp.clone(), whole.clone());
                let parts = parts.clone();
                Box::pin(async move {
                    let written = match whole {
                        Some(data) => c.client.write_file(&c.tree, &tmp, &data).await,
                        None => {
                            let mut pieces = pieces(&parts);
                            let mut next = || pieces.next().map(Ok);
                            c.client.write_file_streamed(&c.tree, &tmp, &mut next).await
                        }
                    };
                    let renamed = match written {
                        Ok(_) => {
                            c.client
                                .rename_with(
                                    &c.tree,
                                    &tmp,
                                    &full,
                                    RenameOptions::new().replace_if_exists(true),
                                )
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    if renamed.is_err() {
                        let _ = c.client.delete_file(&c.tree, &tmp).await;
                    }
                    renamed
                })
            })
        };
        match put() {
            // The temporary or the final folder is missing (a share prepared by hand, or a
            // repository created by restic): create both, once, and write again.
            Err(e) if e.is_not_found() => {
                let mut dirs = Self::ancestry(parent(&tmp));
                dirs.extend(Self::ancestry(parent(&full)));
                dirs.dedup();
                self.mkdirs(dirs)?;
                put()
            }
            other => other,
        }
    }

    fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        let root = self.full(dir);
        let listed = self.call("listing", dir, &|c| {
            let root = root.clone();
            Box::pin(async move {
                let mut out = Vec::new();
                // (folder on the share, its path relative to `dir`)
                let mut stack = vec![(root, String::new())];
                while let Some((d, rel)) = stack.pop() {
                    for e in c.client.list_directory(&mut c.tree, &d).await? {
                        if e.name == "." || e.name == ".." {
                            continue;
                        }
                        let r = if rel.is_empty() {
                            e.name.clone()
                        } else {
                            format!("{rel}/{}", e.name)
                        };
                        if e.is_directory {
                            stack.push((format!("{d}/{}", e.name), r));
                        } else {
                            out.push((r, e.size));
                        }
                    }
                }
                Ok(out)
            })
        });
        match listed {
            // A missing folder is empty, but only inside a target folder that exists.
            Err(e) if e.is_not_found() => match self.stat("")? {
                Some(_) => Ok(Vec::new()),
                None => Err(self.err(
                    StoreErrorKind::Absent,
                    format!("{}: the target's folder does not exist", self.location()),
                )),
            },
            other => other,
        }
    }

    fn delete(&self, path: &str) -> StoreResult<()> {
        let full = self.full(path);
        match self.call("deleting", path, &|c| {
            let full = full.clone();
            Box::pin(async move { c.client.delete_file(&c.tree, &full).await })
        }) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    fn create_dirs(&self, dirs: &[String]) -> StoreResult<()> {
        // Parents first, each folder once: `data/ab` may come without `data`.
        let mut all = Self::ancestry(&self.prefix);
        for d in dirs
            .iter()
            .map(String::as_str)
            .chain([crate::layout::TMP_DIR])
        {
            for a in Self::ancestry(&self.full(d)) {
                if !all.contains(&a) {
                    all.push(a);
                }
            }
        }
        self.mkdirs(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_s_parts_go_in_whole_pieces_in_order_and_none_empty() {
        let part = |n: usize, b: u8| Bytes::from(vec![b; n]);
        let parts = vec![
            part(0, 0),
            part(300, 1),
            part(PIECE - 300, 2),
            part(0, 3),
            part(PIECE + 5, 4),
            part(1, 5),
        ];
        let got: Vec<Vec<u8>> = pieces(&parts).collect();
        let sizes: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(sizes, [PIECE, PIECE, 6]);
        assert_eq!(got.concat(), parts.concat());
        assert_eq!(pieces(&[part(0, 0)]).count(), 0);
        assert_eq!(pieces(&[]).count(), 0);
    }

    #[test]
    fn ancestry_lists_each_folder_from_the_top() {
        assert_eq!(
            SmbStore::ancestry("a/b/c"),
            vec!["a".to_string(), "a/b".into(), "a/b/c".into()]
        );
        assert!(SmbStore::ancestry("").is_empty());
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("c"), "");
    }

    #[test]
    fn timeouts_and_lost_connections_are_retried_refusals_are_not() {
        assert!(transient(ErrorKind::ConnectionLost));
        assert!(transient(ErrorKind::TimedOut));
        assert!(!transient(ErrorKind::AccessDenied));
        assert!(!transient(ErrorKind::NotFound));
    }
}
