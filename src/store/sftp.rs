//! `kind = "sftp"`: an OpenSSH server, through one SFTP session of cairn's own per target and
//! command (openssh-sftp-client over an `ssh` process cairn starts, see `ssh`: key
//! authentication, `~/.ssh/known_hosts`, the user's ssh configuration).
//!
//! Not opendal's SFTP service: its writer closes a file without syncing it and re-encodes every
//! byte it sends one at a time (5% of all CPU samples of a backup to SFTP on 2 cores, about 1.2
//! CPU-s for 700 MiB), its pool checks each connection with a request before every operation,
//! and it lists and creates folders one request after another. Reads and writes here are
//! pipelined (`DEPTH` requests outstanding), listings and folders asked for a level at once.
//!
//! A file is written to a temporary name (its buffers handed to the session as they are),
//! synced (OpenSSH's `fsync@openssh.com`) and closed through the one handle, then renamed over
//! its name (`posix-rename@openssh.com`, atomic, where offered): an interrupted upload never
//! leaves a short file under a repository name, and a power cut on the server never leaves a file
//! renamed into place whose bytes were still in its page cache. SFTP cannot sync a folder (the
//! extension wants a handle open for writing), so the renames' own order on disk is the server
//! filesystem's: ext4, XFS, btrfs and ZFS journal them in order, so a snapshot never survives
//! without its packs.

mod append_only;
mod ssh;

pub use append_only::folders as append_only_folders;

use std::{sync::Arc, time::Duration};

use backon::{BlockingRetryable, ExponentialBuilder};
use bytes::Bytes;
use openssh_sftp_client::{Error as SftpError, Sftp, error::SftpErrorKind, file::File};
use tokio::io::AsyncSeek;

use super::{Policy, Store, StoreError, StoreErrorKind, StoreResult};
use crate::config::TargetKind;

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
    let location = format!("sftp://{user}@{host}:{port}{path}");
    let server = Server {
        ssh: ssh::Ssh::new(
            host.clone(),
            *port,
            user.clone(),
            key_file.clone(),
            *host_key_checking,
            policy.timeout,
        ),
        root: path.trim_end_matches('/').to_string(),
        timeout: policy.timeout,
        retries: policy.retries,
        location: location.clone(),
        sftp: tokio::sync::Mutex::default(),
        readers: std::sync::Mutex::default(),
    };
    if *append_only {
        return Ok(Box::new(append_only::AppendOnly { server }));
    }
    Ok(Box::new(SftpStore { server }))
}

/// cairn's own SFTP session with the server, opened at the first write.
struct Server {
    ssh: ssh::Ssh,
    root: String,
    timeout: Duration,
    /// Extra attempts after a transient failure.
    retries: usize,
    location: String,
    /// The session; dropped after an error so that the next write opens a new one.
    /// Held across connecting, so that concurrent first writes open one session, not several.
    sftp: tokio::sync::Mutex<Option<Arc<Sftp>>>,
    /// Read handles kept open, most recent last: verify and restore read many ranges of each
    /// pack, and an open costs a round trip. A path's handle is forgotten when cairn writes or
    /// removes it, and all of them with the session.
    readers: std::sync::Mutex<Vec<(String, File)>>,
}

/// Read handles kept open per target.
const READERS: usize = 16;

impl Server {
    fn err(&self, kind: StoreErrorKind, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::new(kind, format!("{what} on {}: {e}", self.location))
    }

    /// A failed request, classified: the server's own answers are final (a missing folder is
    /// [`StoreErrorKind::NotFound`]), a broken or refused session is worth another attempt.
    fn failed(&self, what: &str, e: &SftpError) -> StoreError {
        let text = e.to_string();
        let kind = match e {
            _ if super::error::says_full(&text) => StoreErrorKind::Full,
            SftpError::SftpError(SftpErrorKind::NoSuchFile, _) => StoreErrorKind::NotFound,
            SftpError::SftpError(..) | SftpError::UnsupportedExtension(_) => {
                StoreErrorKind::Permanent
            }
            _ => StoreErrorKind::Transient,
        };
        self.err(kind, what, text)
    }

    fn readers(&self) -> std::sync::MutexGuard<'_, Vec<(String, File)>> {
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the read handle of `path` (about to be replaced or removed).
    fn forget_reader(&self, path: &str) {
        self.readers().retain(|(p, _)| p != path);
    }

    /// A read handle of `path`, kept or opened.
    async fn reader(&self, sftp: &Sftp, path: &str) -> Result<File, SftpError> {
        {
            let mut kept = self.readers();
            if let Some(i) = kept.iter().position(|(p, _)| p == path) {
                let entry = kept.remove(i);
                let f = entry.1.clone();
                kept.push(entry);
                return Ok(f);
            }
        }
        let f = sftp.options().read(true).open(self.full(path)).await?;
        let mut kept = self.readers();
        if kept.len() >= READERS {
            // Dropping the last clone closes the handle.
            kept.remove(0);
        }
        kept.push((path.to_string(), f.clone()));
        Ok(f)
    }

    /// A repository path on the server.
    fn full(&self, path: &str) -> String {
        format!("{}/{path}", self.root)
    }

    async fn session(&self) -> StoreResult<Arc<Sftp>> {
        let mut held = self.sftp.lock().await;
        if let Some(s) = held.as_ref() {
            return Ok(s.clone());
        }
        let sftp = self
            .ssh
            .open()
            .await
            .map_err(|(kind, why)| self.err(kind, "connecting", why))?;
        let sftp = Arc::new(sftp);
        *held = Some(sftp.clone());
        Ok(sftp)
    }

    /// Runs `work` within the target's timeout; after a transient failure (a timeout, a broken
    /// session) the session is dropped, so that the next attempt connects again. The server's
    /// own answers (no such file, permission denied) keep it.
    fn run<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        super::runtime()?.block_on(async {
            let done = tokio::time::timeout(self.timeout, work)
                .await
                .unwrap_or_else(|_| Err(self.err(StoreErrorKind::Transient, what, "timed out")));
            if matches!(&done, Err(e) if e.kind == StoreErrorKind::Transient) {
                *self.sftp.lock().await = None;
                self.readers().clear();
            }
            done
        })
    }

    /// [`Self::run`] of what `op` makes, again after a transient failure, `retries` times.
    fn call<T, F: std::future::Future<Output = StoreResult<T>>>(
        &self,
        what: &str,
        op: impl Fn() -> F,
    ) -> StoreResult<T> {
        (|| self.run(what, op()))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Policy::MIN_BACKOFF)
                    .with_max_delay(Policy::MAX_BACKOFF)
                    .with_max_times(self.retries)
                    .with_jitter(),
            )
            .sleep(std::thread::sleep)
            .when(|e: &StoreError| e.kind == StoreErrorKind::Transient)
            .call()
    }

    /// [`Self::stat`], retried (both SFTP stores read alike; only their writes differ).
    pub(super) fn blocking_stat(&self, path: &str) -> StoreResult<Option<u64>> {
        self.call(&format!("checking {path}"), || self.stat(path))
    }

    /// [`Self::read`], retried.
    pub(super) fn blocking_read(
        &self,
        path: &str,
        range: Option<(u64, u64)>,
    ) -> StoreResult<Bytes> {
        self.call(&format!("reading {path}"), || self.read(path, range))
    }

    /// [`Self::list`], retried.
    pub(super) fn blocking_list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        self.call(&format!("listing {dir}"), || self.list(dir))
    }

    /// Creates `path` whole under a temporary name in `tmp`, synced, and renames it into place.
    async fn put(&self, tmp: &str, path: &str, parts: &[Bytes]) -> StoreResult<()> {
        self.forget_reader(path);
        let sftp = self.session().await?;
        let (tmp_full, full) = (self.full(tmp), self.full(path));
        let sent = parts.to_vec();
        let written = async {
            let mut f = sftp
                .options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp_full)
                .await?;
            write_pipelined(&f, &sent).await?;
            f.sync_all().await?;
            f.close().await
        }
        .await;
        let renamed = match written {
            Ok(()) => self.rename_over(&sftp, &tmp_full, &full).await,
            Err(e) => Err(self.failed(&format!("writing {tmp}"), &e)),
        };
        if renamed.is_err() {
            let _ = sftp.fs().remove_file(&tmp_full).await;
        }
        // A read meanwhile may have kept a handle of the file replaced.
        self.forget_reader(path);
        renamed
    }

    async fn rename_over(&self, sftp: &Sftp, tmp: &str, full: &str) -> StoreResult<()> {
        let mut fs = sftp.fs();
        let what = format!("renaming into {full}");
        match fs.rename(tmp, full).await {
            Ok(()) => Ok(()),
            // Without posix-rename, SFTP's rename refuses an existing name. Content-addressed
            // files are only ever replaced by equal bytes (or on purpose, by tests), so removing
            // the old one first is safe.
            Err(first) if !sftp.support_posix_rename() && fs.metadata(full).await.is_ok() => {
                fs.remove_file(full)
                    .await
                    .map_err(|e| self.failed(&what, &e))?;
                fs.rename(tmp, full)
                    .await
                    .map_err(|_| self.failed(&what, &first))
            }
            Err(e) => Err(self.failed(&what, &e)),
        }
    }

    /// The size of a file, or `None`.
    async fn stat(&self, path: &str) -> StoreResult<Option<u64>> {
        let sftp = self.session().await?;
        match sftp.fs().metadata(self.full(path)).await {
            Ok(m) => Ok(Some(m.len().unwrap_or(0))),
            Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => Ok(None),
            Err(e) => Err(self.failed(&format!("checking {path}"), &e)),
        }
    }

    /// `length` bytes from `offset` (the whole file when `None`), read `DEPTH` pieces at once.
    async fn read(&self, path: &str, range: Option<(u64, u64)>) -> StoreResult<Bytes> {
        let sftp = self.session().await?;
        let what = format!("reading {path}");
        let failed = |e: SftpError| self.failed(&what, &e);
        let mut f = self.reader(&sftp, path).await.map_err(failed)?;
        let (offset, length) = match range {
            Some(r) => r,
            None => (0, f.metadata().await.map_err(failed)?.len().unwrap_or(0)),
        };
        let got = read_pipelined(&f, offset, length).await.map_err(failed)?;
        super::whole_range(got, path, &self.location, offset, length)
    }

    /// Removes a file; one already gone is fine.
    async fn delete(&self, path: &str) -> StoreResult<()> {
        self.forget_reader(path);
        let sftp = self.session().await?;
        match sftp.fs().remove_file(self.full(path)).await {
            Ok(()) | Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => Ok(()),
            Err(e) => Err(self.failed(&format!("deleting {path}"), &e)),
        }
    }

    /// The files below `dir` at any depth (see [`Store::list`]), each folder's entries asked
    /// for at once with its siblings': `data/` is 256 folders, one round trip each otherwise.
    async fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        let sftp = self.session().await?;
        let what = format!("listing {dir}");
        let mut asked = tokio::task::JoinSet::new();
        let ask = |asked: &mut tokio::task::JoinSet<_>, rel: String| {
            let (sftp, full) = (sftp.clone(), self.full(&rel));
            asked.spawn(async move {
                let entries = read_dir(&sftp, &full).await;
                (rel, entries)
            });
        };
        ask(&mut asked, dir.to_string());
        let mut files = Vec::new();
        while let Some(done) = asked.join_next().await {
            let (rel, entries) = done.map_err(|e| self.err(StoreErrorKind::Permanent, &what, e))?;
            let entries = match entries {
                Ok(entries) => entries,
                Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) if rel == dir => {
                    return self.missing_folder(&sftp).await.map(|()| Vec::new());
                }
                Err(e) => return Err(self.failed(&format!("listing {rel}"), &e)),
            };
            for (name, is_dir, size) in entries {
                let path = format!("{rel}/{name}");
                if is_dir {
                    ask(&mut asked, path);
                } else {
                    let inside = path.strip_prefix(&format!("{dir}/")).unwrap_or(&path);
                    files.push((inside.to_string(), size));
                }
            }
        }
        Ok(files)
    }

    /// A listed folder is missing: fine (empty) unless the target's own folder is.
    async fn missing_folder(&self, sftp: &Sftp) -> StoreResult<()> {
        match sftp.fs().metadata(&self.root).await {
            Ok(_) => Ok(()),
            Err(SftpError::SftpError(SftpErrorKind::NoSuchFile, _)) => Err(StoreError::new(
                StoreErrorKind::Absent,
                format!("{}: the target's folder does not exist", self.location),
            )),
            Err(e) => Err(self.failed("checking the target's folder", &e)),
        }
    }

    /// Creates folders (repository paths) with their parents, the target's own folder
    /// included; one that exists already is fine. Each level's folders are asked for at once.
    async fn mkdirs(&self, dirs: &[String]) -> StoreResult<()> {
        let sftp = self.session().await?;
        let mut levels: Vec<Vec<String>> = Vec::new();
        let mut add = |path: String| {
            let depth = path.matches('/').count();
            if levels.len() <= depth {
                levels.resize(depth + 1, Vec::new());
            }
            if !levels[depth].contains(&path) {
                levels[depth].push(path);
            }
        };
        let mut root = String::new();
        for part in self.root.split('/').filter(|p| !p.is_empty()) {
            root = format!("{root}/{part}");
            add(root.clone());
        }
        for d in dirs {
            let mut at = self.root.clone();
            for part in d.split('/').filter(|p| !p.is_empty()) {
                at = format!("{at}/{part}");
                add(at.clone());
            }
        }
        for level in levels {
            let mut asked = tokio::task::JoinSet::new();
            for d in level {
                let sftp = sftp.clone();
                asked.spawn(async move {
                    let mut fs = sftp.fs();
                    let Err(e) = fs.create_dir(&d).await else {
                        return Ok(());
                    };
                    match fs.metadata(&d).await {
                        Ok(m) if m.file_type().is_some_and(|t| t.is_dir()) => Ok(()),
                        _ => Err((d, e)),
                    }
                });
            }
            while let Some(made) = asked.join_next().await {
                match made {
                    Ok(Ok(())) => {}
                    Ok(Err((d, e))) => return Err(self.failed(&format!("creating folder {d}"), &e)),
                    Err(e) => {
                        return Err(self.err(StoreErrorKind::Permanent, "creating folders", e));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Bytes asked for in one write request: within OpenSSH's limit (255 KiB); a server with a
/// smaller one takes the rest of a piece in further requests.
const PIECE: usize = 255 * 1024;
/// Write requests outstanding at once on one file: awaited one by one, each piece costs a
/// round trip, and one upload stream ran at a quarter of `sftp put`'s speed on loopback.
const DEPTH: usize = 8;

/// Writes `parts` (a file's bytes, in order) through `DEPTH` clones of `f`'s handle at once,
/// each piece at its own offset; the buffers are sent as they are, never copied.
pub(super) async fn write_pipelined(f: &File, parts: &[Bytes]) -> Result<(), SftpError> {
    let mut pieces: Vec<(u64, Vec<Bytes>)> = Vec::new();
    let (mut offset, mut piece, mut filled) = (0u64, Vec::new(), 0usize);
    for part in parts {
        let mut part = part.clone();
        while !part.is_empty() {
            let take = part.len().min(PIECE - filled);
            piece.push(part.split_to(take));
            filled += take;
            if filled == PIECE {
                pieces.push((offset, std::mem::take(&mut piece)));
                offset += PIECE as u64;
                filled = 0;
            }
        }
    }
    if filled > 0 {
        pieces.push((offset, piece));
    }
    let pieces = Arc::new(pieces);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers: tokio::task::JoinSet<Result<(), SftpError>> = tokio::task::JoinSet::new();
    for _ in 0..DEPTH.min(pieces.len()) {
        let (mut f, pieces, next) = (f.clone(), pieces.clone(), next.clone());
        writers.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((at, bufs)) = pieces.get(i) else {
                    return Ok(());
                };
                std::pin::Pin::new(&mut f)
                    .start_seek(std::io::SeekFrom::Start(*at))
                    .map_err(SftpError::IOError)?;
                f.write_all_zero_copy(&mut bufs.clone()).await?;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.map_err(|e| SftpError::IOError(std::io::Error::other(e)))??;
    }
    Ok(())
}

/// `length` bytes of `f` from `offset`, through `DEPTH` clones of its handle at once; shorter
/// only where the file ends.
async fn read_pipelined(f: &File, offset: u64, length: u64) -> Result<Bytes, SftpError> {
    let pieces: Vec<(u64, usize)> = (0..length.div_ceil(PIECE as u64))
        .map(|i| {
            let at = i * PIECE as u64;
            (offset + at, (length - at).min(PIECE as u64) as usize)
        })
        .collect();
    let pieces = Arc::new(pieces);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut readers: tokio::task::JoinSet<Result<Vec<(usize, Bytes)>, SftpError>> =
        tokio::task::JoinSet::new();
    for _ in 0..DEPTH.min(pieces.len()) {
        let (mut f, pieces, next) = (f.clone(), pieces.clone(), next.clone());
        readers.spawn(async move {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(at, len)) = pieces.get(i) else {
                    return Ok(got);
                };
                std::pin::Pin::new(&mut f)
                    .start_seek(std::io::SeekFrom::Start(at))
                    .map_err(SftpError::IOError)?;
                let bytes = f.read_all(len, bytes::BytesMut::new()).await?;
                got.push((i, bytes.freeze()));
            }
        });
    }
    let mut got = Vec::with_capacity(pieces.len());
    while let Some(done) = readers.join_next().await {
        got.extend(done.map_err(|e| SftpError::IOError(std::io::Error::other(e)))??);
    }
    got.sort_unstable_by_key(|(i, _)| *i);
    if let [(_, one)] = got.as_slice() {
        return Ok(one.clone());
    }
    let mut whole = bytes::BytesMut::with_capacity(length as usize);
    for (_, piece) in got {
        let short = piece.len() < PIECE;
        whole.extend_from_slice(&piece);
        // The file ended there: what follows, if anything, was read past its end.
        if short {
            break;
        }
    }
    Ok(whole.freeze())
}

/// One folder's entries: (name, is a folder, size); links and the like are left out.
async fn read_dir(sftp: &Sftp, full: &str) -> Result<Vec<(String, bool, u64)>, SftpError> {
    let entries = sftp.fs().open_dir(full).await?.read_dir();
    let mut entries = std::pin::pin!(entries);
    let mut out = Vec::new();
    while let Some(entry) =
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(entries.as_mut(), cx)).await
    {
        let entry = entry?;
        let name = entry.filename().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        match entry.file_type() {
            Some(t) if t.is_dir() => out.push((name, true, 0)),
            Some(t) if t.is_file() => out.push((name, false, entry.metadata().len().unwrap_or(0))),
            _ => {}
        }
    }
    Ok(out)
}

/// An SFTP target.
#[derive(Debug)]
struct SftpStore {
    server: Server,
}

impl Store for SftpStore {
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
    fn delete(&self, path: &str) -> StoreResult<()> {
        self.server
            .call(&format!("deleting {path}"), || self.server.delete(path))
    }

    fn write(&self, path: &str, parts: Vec<Bytes>) -> StoreResult<()> {
        let what = format!("writing {path}");
        let put = || {
            self.server.call(&what, || {
                let (tmp, parts) = (crate::layout::tmp_name(path), &parts);
                async move { self.server.put(&tmp, path, parts).await }
            })
        };
        match put() {
            // A folder is missing (made by hand, or by restic without cairn's temporary
            // folder): create it and the temporary one, once, and write again.
            Err(e) if e.kind == StoreErrorKind::NotFound => {
                let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                let dirs = [crate::layout::TMP_DIR.to_string(), parent.to_string()];
                self.create_dirs(&dirs)?;
                put()
            }
            other => other,
        }
    }

    fn create_dirs(&self, dirs: &[String]) -> StoreResult<()> {
        let mut all = dirs.to_vec();
        all.push(crate::layout::TMP_DIR.to_string());
        self.server
            .call("creating folders", || self.server.mkdirs(&all))
    }
}
