//! `append_only = true`: a server that lets cairn's account create and read files but not
//! remove, rename or change them (OpenSSH's `internal-sftp -u 0222 -P remove,rename,...`, see
//! `contrib/sftp-append-only/`). Whoever holds this machine's keys can add files there, never
//! take one away: the copy survives a compromised backup host.
//!
//! Without rename, a file reaches its name by a hard link (`hardlink@openssh.com`) from a
//! temporary upload that was written and synced through one handle: the name appears only
//! once the bytes are whole and on disk. The temporary name stays behind (it cannot be
//! removed); it shares the file's bytes. Removals are never sent: forget and prune there are
//! left to the storage's owner, and the deletion records keep cairn's readers from seeing what
//! was forgotten. Folders are the storage owner's to create: one made through this account
//! would take the server's umask and accept no file.

use std::path::Path;

use bytes::Bytes;
use openssh_sftp_client::metadata::Permissions;

use super::Server;
use crate::store::{Protection, Store, StoreError, StoreErrorKind, StoreResult};

/// Reads and adds files through cairn's own session; removes nothing.
#[derive(Debug)]
pub(in crate::store) struct AppendOnly {
    pub(super) server: Server,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// The folders the storage owner creates before the first backup: cairn adds files to these
/// only (`contrib/sftp-append-only/prepare-folder.sh` makes the same list).
#[must_use]
pub fn folders(repository: &[String]) -> Vec<String> {
    use crate::layout::{AUDIT_DIR, CANARY_DIR, DELETIONS_DIR, ERASURES_DIR, KEYS_DIR, TMP_DIR};
    let mut all = repository.to_vec();
    for d in [
        TMP_DIR,
        DELETIONS_DIR,
        AUDIT_DIR,
        KEYS_DIR,
        ERASURES_DIR,
        CANARY_DIR,
    ] {
        all.push(d.to_string());
    }
    all
}

impl AppendOnly {
    fn failed(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        let text = e.to_string();
        let kind = if crate::store::error::says_full(&text) {
            StoreErrorKind::Full
        } else {
            StoreErrorKind::Permanent
        };
        self.server.err(kind, what, text)
    }

    /// Writes `parts` under a fresh temporary name, syncs and closes it, and links it to
    /// `path`. A name that already exists is kept if it holds the same bytes, else refused.
    async fn add(&self, path: &str, parts: Vec<Bytes>) -> StoreResult<()> {
        let sftp = self.server.session().await?;
        if !sftp.support_hardlink() {
            return Err(self.server.err(
                StoreErrorKind::Permanent,
                "append-only writes",
                "the server does not offer hardlink@openssh.com, so a file cannot reach its \
                 name whole without rename",
            ));
        }
        // Random: leftovers of earlier runs stay, and a process id comes round again.
        let tmp = format!(
            "{}.{:016x}",
            crate::layout::tmp_name(path),
            rand::random::<u64>()
        );
        let written = async {
            let mut f = sftp
                .options()
                .write(true)
                .create_new(true)
                .open(self.server.full(&tmp))
                .await?;
            super::write_pipelined(&f, &parts).await?;
            f.sync_all().await?;
            f.close().await
        };
        if let Err(e) = written.await {
            *self.server.sftp.lock().await = None;
            let why = if e.to_string().contains("No such file") {
                format!(
                    "{e}; the folders of an append-only target are created by the storage's \
                     owner (contrib/sftp-append-only/prepare-folder.sh)"
                )
            } else {
                e.to_string()
            };
            return Err(self.failed(&format!("writing {tmp}"), why));
        }
        let Err(e) = sftp
            .fs()
            .hard_link(self.server.full(&tmp), self.server.full(path))
            .await
        else {
            return Ok(());
        };
        // The name exists (a link never replaces one): the same bytes are fine.
        match sftp.fs().read(self.server.full(path)).await {
            Ok(held) if held.as_ref() == parts.concat().as_slice() => Ok(()),
            Ok(_) => Err(self.server.err(
                StoreErrorKind::Permanent,
                &format!("writing {path}"),
                "it already holds other bytes, and an append-only target replaces nothing",
            )),
            Err(_) => Err(self.failed(&format!("linking {path}"), e)),
        }
    }

    /// The canary: written, then attacked as whoever holds these credentials would.
    async fn canary(&self) -> StoreResult<Result<String, String>> {
        let name = format!(
            "{}/{:016x}",
            crate::layout::CANARY_DIR,
            rand::random::<u64>()
        );
        let body = Bytes::from_static(b"cairn immutability canary\n");
        self.add(&name, vec![body.clone()]).await?;
        let sftp = self.server.session().await?;
        let full = self.server.full(&name);
        let mut fs = sftp.fs();
        let mut done = Vec::new();
        if fs.remove_file(&full).await.is_ok() {
            done.push("removed");
        }
        if fs.rename(&full, format!("{full}.moved")).await.is_ok() {
            done.push("renamed");
        }
        let mut writable = Permissions::new();
        writable.set_read_by_owner(true);
        writable.set_write_by_owner(true);
        if fs.set_permissions(&full, writable).await.is_ok() {
            done.push("made writable");
        }
        let opened = sftp
            .options()
            .write(true)
            .truncate(true)
            .open(Path::new(&full))
            .await;
        if let Ok(f) = opened {
            done.push("opened for overwriting");
            let _ = f.close().await;
        }
        let intact = matches!(fs.read(&full).await, Ok(b) if b.as_ref() == body.as_ref());
        if !intact {
            done.push("changed");
        }
        Ok(if done.is_empty() {
            Ok(format!(
                "the canary {name} could not be removed, renamed, made writable or opened \
                 for overwriting through cairn's own credentials"
            ))
        } else {
            Err(format!(
                "the canary {name} was {} through cairn's own credentials",
                done.join(", ")
            ))
        })
    }
}

impl Store for AppendOnly {
    fn location(&self) -> String {
        self.server.location.clone()
    }
    fn stat(&self, path: &str) -> StoreResult<Option<u64>> {
        self.server.blocking_stat(path)
    }
    fn read(&self, path: &str) -> StoreResult<Bytes> {
        self.server.blocking_read(path, None)
    }
    fn read_range(&self, path: &str, offset: u64, length: u64) -> StoreResult<Bytes> {
        self.server.blocking_read(path, Some((offset, length)))
    }
    fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        self.server.blocking_list(dir)
    }

    fn write(&self, path: &str, parts: Vec<Bytes>) -> StoreResult<()> {
        self.server
            .run(&format!("writing {path}"), self.add(path, parts))
    }

    fn delete(&self, path: &str) -> StoreResult<()> {
        Err(StoreError::new(
            StoreErrorKind::Permanent,
            format!(
                "removing {path} on {}: the target is append-only; removals there are left to \
                 the storage's owner",
                self.location()
            ),
        ))
    }

    fn create_dirs(&self, dirs: &[String]) -> StoreResult<()> {
        let want = folders(dirs);
        let missing = self.server.run("checking its folders", async {
            let sftp = self.server.session().await?;
            let mut fs = sftp.fs();
            let mut missing = Vec::new();
            for d in &want {
                match fs.metadata(self.server.full(d)).await {
                    Ok(m) if m.file_type().is_some_and(|t| t.is_dir()) => {}
                    _ => missing.push(d.clone()),
                }
            }
            Ok(missing)
        })?;
        if missing.is_empty() {
            return Ok(());
        }
        Err(StoreError::new(
            StoreErrorKind::Permanent,
            format!(
                "{}: an append-only target's folders are created by the storage's owner \
                 (contrib/sftp-append-only/prepare-folder.sh); {} missing, e.g. {}",
                self.location(),
                missing.len(),
                missing[..missing.len().min(3)].join(", ")
            ),
        ))
    }

    fn protection(&self) -> Option<Protection> {
        let (immutable, detail) = match self.server.run("proving append-only", self.canary()) {
            Err(e) => (false, format!("could not be checked: {e}")),
            Ok(Ok(refused)) => (true, refused),
            Ok(Err(destroyed)) => (false, destroyed),
        };
        Some(Protection {
            claim: "append-only SFTP (no removal, rename or change)".into(),
            immutable,
            detail,
        })
    }

    fn append_only(&self) -> bool {
        true
    }
}
