//! What a backup reads: rustic_core's local source, wrapped so that nothing it fails to read
//! goes unnoticed.
//!
//! rustic_core drops an entry it cannot read (a folder it may not list, a file it may not open,
//! a read error) with a log line and saves the snapshot without it. A backup that claims success
//! for files it did not save is worse than a failed one, so every such entry is recorded here,
//! and so is a file whose size changed while it was read (or that vanished before): the snapshot
//! holds a copy of it that matches neither before nor after.

use std::{
    io::Read,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use rustic_core::{
    LocalSource, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticResult, repofile::Node,
};
use serde::Serialize;

/// One source entry that is not (or not faithfully) in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unread {
    /// The path on this machine (empty when the walker could not say).
    pub path: PathBuf,
    /// What happened, e.g. `cannot open: Permission denied`.
    pub error: String,
}

/// The entries a backup could not read, from the threads that read them.
#[derive(Debug, Clone, Default)]
pub struct UnreadLog(Arc<Mutex<Vec<Unread>>>);

impl UnreadLog {
    fn add(&self, path: PathBuf, error: String) {
        if let Ok(mut v) = self.0.lock() {
            v.push(Unread { path, error });
        }
    }

    /// Everything recorded, sorted by path.
    #[must_use]
    pub fn take(&self) -> Vec<Unread> {
        let mut v = self
            .0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }
}

/// The operating system's reason behind a source error, e.g. `Permission denied (os error
/// 13)`: rustic_core's own wording around it is about itself (and asks for a bug report).
fn reason(err: &rustic_core::RusticError) -> String {
    let mut innermost = None;
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        innermost = Some(c);
        cause = c.source();
    }
    innermost.map_or_else(|| crate::error::rustic_words(err), ToString::to_string)
}

/// A walker error's path and reason: the walker says `PATH: IO error for operation on PATH:
/// REASON`.
fn walk_failure(err: &rustic_core::RusticError) -> (PathBuf, String) {
    let text = reason(err);
    match text.split_once(": ") {
        Some((path, rest)) if path.starts_with('/') => {
            let rest = rest
                .strip_prefix(&format!("IO error for operation on {path}: "))
                .unwrap_or(rest);
            (PathBuf::from(path), rest.to_string())
        }
        _ => (PathBuf::new(), text),
    }
}

/// [`LocalSource`] with every failure recorded in an [`UnreadLog`].
#[derive(Debug)]
pub struct Recorded<S> {
    inner: S,
    log: UnreadLog,
}

impl<S> Recorded<S> {
    /// Wraps `inner`; failures go to `log`.
    pub fn new(inner: S, log: UnreadLog) -> Self {
        Self { inner, log }
    }
}

impl<S: ReadSource> ReadSource for Recorded<S>
where
    S::Open: Send,
    S::Iter: Send,
{
    type Open = RecordedOpen<S::Open>;
    type Iter = RecordedIter<S::Iter>;

    fn size(&self) -> RusticResult<Option<u64>> {
        self.inner.size()
    }

    fn entries(&self) -> Self::Iter {
        RecordedIter {
            inner: self.inner.entries(),
            log: self.log.clone(),
        }
    }
}

/// The walk, recording entries it could not list or stat.
#[derive(Debug)]
pub struct RecordedIter<I> {
    inner: I,
    log: UnreadLog,
}

impl<I, O> Iterator for RecordedIter<I>
where
    I: Iterator<Item = RusticResult<ReadSourceEntry<O>>>,
{
    type Item = RusticResult<ReadSourceEntry<RecordedOpen<O>>>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.inner.next()? {
            Err(e) => {
                // rustic_core goes on without the entry.
                let (path, why) = walk_failure(&e);
                self.log.add(path, format!("cannot list or stat: {why}"));
                Err(e)
            }
            Ok(ReadSourceEntry { path, node, open }) => {
                let open = open.map(|inner| RecordedOpen {
                    inner,
                    path: path.clone(),
                    expected: expected_size(&node),
                    log: self.log.clone(),
                });
                Ok(ReadSourceEntry { path, node, open })
            }
        })
    }
}

fn expected_size(node: &Node) -> Option<u64> {
    node.is_file().then_some(node.meta.size)
}

/// A file to open, recording a failure to open it.
#[derive(Debug)]
pub struct RecordedOpen<O> {
    inner: O,
    path: PathBuf,
    expected: Option<u64>,
    log: UnreadLog,
}

impl<O: ReadSourceOpen> ReadSourceOpen for RecordedOpen<O> {
    type Reader = RecordedReader<O::Reader>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self.inner.open() {
            Ok(reader) => Ok(RecordedReader {
                inner: reader,
                path: self.path,
                expected: self.expected,
                read: 0,
                log: self.log,
                reported: false,
            }),
            Err(e) => {
                let why = if std::fs::symlink_metadata(&self.path).is_err() {
                    "vanished before it could be read".to_string()
                } else {
                    format!("cannot open: {}", reason(&e))
                };
                self.log.add(self.path, why);
                Err(e)
            }
        }
    }
}

/// A file being read, recording read errors and a size that changed under the reader.
#[derive(Debug)]
pub struct RecordedReader<R> {
    inner: R,
    path: PathBuf,
    expected: Option<u64>,
    read: u64,
    log: UnreadLog,
    reported: bool,
}

impl<R> RecordedReader<R> {
    fn report(&mut self, why: String) {
        if !self.reported {
            self.reported = true;
            self.log.add(self.path.clone(), why);
        }
    }
}

impl<R: Read> Read for RecordedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                if let Some(size) = self.expected
                    && size != self.read
                {
                    let why = format!(
                        "changed size while it was read ({size} bytes when listed, {} read); \
                         the snapshot's copy is inconsistent",
                        self.read
                    );
                    self.report(why);
                }
                Ok(0)
            }
            Ok(n) => {
                self.read += n as u64;
                if let Some(size) = self.expected
                    && self.read > size
                {
                    let why = format!(
                        "changed size while it was read: it grew past the size it had when listed \
                         ({size} bytes); the snapshot's copy is inconsistent"
                    );
                    self.report(why);
                }
                Ok(n)
            }
            Err(e) => {
                self.report(format!("read error after {} bytes: {e}", self.read));
                Err(e)
            }
        }
    }
}

/// rustic_core's local source over `paths`, recording into `log`.
///
/// # Errors
/// The source cannot be set up (an invalid exclude pattern).
pub fn local(
    opts: &rustic_core::BackupOptions,
    paths: &[PathBuf],
    log: UnreadLog,
) -> RusticResult<Recorded<LocalSource>> {
    let src = LocalSource::new(
        opts.ignore_save_opts,
        &opts.excludes,
        &opts.ignore_filter_opts,
        paths,
    )?;
    Ok(Recorded::new(src, log))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use rustic_core::{BackupOptions, ReadSource, ReadSourceOpen};

    use super::*;

    #[test]
    fn a_file_that_vanishes_or_changes_size_after_listing_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        for (name, len) in [
            ("shrinks", 1000),
            ("grows", 10),
            ("vanishes", 5),
            ("steady", 7),
        ] {
            fs::write(dir.path().join(name), vec![b'x'; len]).unwrap();
        }
        let log = UnreadLog::default();
        let src = local(
            &BackupOptions::default(),
            &[dir.path().to_path_buf()],
            log.clone(),
        )
        .unwrap();
        // Listed (and stat'ed) first, as rustic_core does, then changed before being read.
        let entries: Vec<_> = src.entries().map(Result::unwrap).collect();
        fs::write(dir.path().join("shrinks"), b"short").unwrap();
        fs::write(dir.path().join("grows"), vec![b'y'; 5000]).unwrap();
        fs::remove_file(dir.path().join("vanishes")).unwrap();
        for e in entries {
            if let Some(open) = e.open
                && let Ok(mut r) = open.open()
            {
                let mut sink = Vec::new();
                let _ = r.read_to_end(&mut sink);
            }
        }
        let got: Vec<(String, String)> = log
            .take()
            .into_iter()
            .map(|u| {
                let name = u.path.file_name().unwrap().to_string_lossy().into_owned();
                (name, u.error)
            })
            .collect();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["grows", "shrinks", "vanishes"], "{got:?}");
        assert!(got[0].1.contains("changed size"), "{got:?}");
        assert!(
            got[1].1.contains("1000 bytes when listed, 5 read"),
            "{got:?}"
        );
        assert!(got[2].1.contains("vanished"), "{got:?}");
    }
}
