//! `kind = "local"`: a folder, possibly on a removable (USB) disk.
//!
//! A removable target is written only while its disk is mounted. An unplugged disk leaves an
//! empty mount-point folder on the root filesystem; writing there would fill the system disk
//! with a backup that vanishes behind the next mount. So the disk counts as present only when
//! the target folder, or its nearest existing parent, is on another filesystem than `/`, and,
//! if the folder does not exist yet, that parent is itself a mount point. The check runs when the
//! target is opened and again before every operation, so a disk pulled mid-run goes offline.
//!
//! The folder is created on the first write, never by a read: looking at a mistyped path
//! leaves nothing behind.

use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use bytes::Bytes;

use super::{
    Policy, Store, StoreError, StoreErrorKind, StoreResult,
    opendal_store::{Atomicity, OpendalStore, TMP_DIR},
};

/// Whether a removable disk is there to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    /// On a mounted filesystem other than `/`.
    Mounted,
    /// Not mounted; says why it is believed so.
    NotMounted(String),
}

/// Decides whether `path` is on a mounted removable disk (see the module documentation).
#[must_use]
pub fn mount_state(path: &Path) -> MountState {
    let root_dev = match std::fs::metadata("/") {
        Ok(m) => m.dev(),
        Err(e) => return MountState::NotMounted(format!("cannot stat /: {e}")),
    };
    let mut existing = path;
    let meta = loop {
        match std::fs::metadata(existing) {
            Ok(m) => break m,
            Err(_) => match existing.parent() {
                Some(p) => existing = p,
                None => return MountState::NotMounted(format!("{} not found", path.display())),
            },
        }
    };
    if meta.dev() == root_dev {
        return MountState::NotMounted(format!(
            "{} is on the root filesystem (disk not mounted)",
            existing.display()
        ));
    }
    if existing != path {
        let parent_dev = existing
            .parent()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.dev());
        if parent_dev == Some(meta.dev()) {
            return MountState::NotMounted(format!(
                "{} does not exist and {} is not a mount point (disk not mounted)",
                path.display(),
                existing.display()
            ));
        }
    }
    MountState::Mounted
}

/// A local folder.
#[derive(Debug)]
struct LocalStore {
    path: PathBuf,
    removable: bool,
    policy: Policy,
    /// Built on first use: opendal's fs service creates its root folder when built.
    inner: OnceLock<OpendalStore>,
    /// Folders whose own entry in their parent is known to be synced.
    synced: Mutex<HashSet<PathBuf>>,
}

pub(super) fn open(path: &Path, removable: bool, policy: Policy) -> StoreResult<Box<dyn Store>> {
    let store = LocalStore {
        path: path.to_path_buf(),
        removable,
        policy,
        inner: OnceLock::new(),
        synced: Mutex::default(),
    };
    store.guard()?;
    Ok(Box::new(store))
}

impl LocalStore {
    fn guard(&self) -> StoreResult<()> {
        if !self.removable {
            return Ok(());
        }
        match mount_state(&self.path) {
            MountState::Mounted => Ok(()),
            MountState::NotMounted(why) => Err(StoreError::new(StoreErrorKind::Offline, why)),
        }
    }

    /// The operator; `None` if the folder does not exist and `create` is false.
    fn inner(&self, create: bool) -> StoreResult<Option<&OpendalStore>> {
        self.guard()?;
        if let Some(s) = self.inner.get() {
            return Ok(Some(s));
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if !m.is_dir() => {
                return Err(StoreError::new(
                    StoreErrorKind::Permanent,
                    format!("{} is not a folder", self.path.display()),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::new(
                    StoreErrorKind::Permanent,
                    format!("{}: {e}", self.path.display()),
                ));
            }
        }
        let root = self.path.to_string_lossy().into_owned();
        let tmp = self.path.join(TMP_DIR).to_string_lossy().into_owned();
        let builder = opendal::services::Fs::default()
            .root(&root)
            .atomic_write_dir(&tmp);
        let store = OpendalStore::new(
            builder,
            self.policy,
            self.location(),
            Vec::new(),
            Atomicity::Native,
            true,
        )?;
        Ok(Some(self.inner.get_or_init(|| store)))
    }

    /// Makes a finished write survive a power cut. opendal syncs the file before renaming it;
    /// the rename itself, and a folder created for it, live in their folders, which are synced
    /// here (each folder's own entry once per run), so a snapshot is never durable before the
    /// packs it needs.
    fn sync_dirs(&self, path: &str) -> StoreResult<()> {
        let mut dir = self.path.join(path);
        // Whether the entry below `dir` may be new: the file always is; a folder only the first
        // time this run sees it. The repository folder's own entry is in its parent.
        let mut entry_new = true;
        while entry_new
            && dir.pop()
            && (dir.starts_with(&self.path) || Some(dir.as_path()) == self.path.parent())
        {
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| {
                    StoreError::new(
                        StoreErrorKind::Transient,
                        format!("syncing folder {}: {e}", dir.display()),
                    )
                })?;
            entry_new = self
                .synced
                .lock()
                .map_or(true, |mut s| s.insert(dir.clone()));
        }
        Ok(())
    }

    fn not_found(&self, path: &str) -> StoreError {
        StoreError::new(
            StoreErrorKind::NotFound,
            format!("{}: {path} not found", self.location()),
        )
    }
}

impl Store for LocalStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }
    fn stat(&self, path: &str) -> StoreResult<Option<u64>> {
        match self.inner(false)? {
            Some(s) => s.stat(path),
            None => Ok(None),
        }
    }
    fn read(&self, path: &str) -> StoreResult<Bytes> {
        self.inner(false)?
            .ok_or_else(|| self.not_found(path))?
            .read(path)
    }
    fn read_range(&self, path: &str, offset: u64, length: u64) -> StoreResult<Bytes> {
        self.inner(false)?
            .ok_or_else(|| self.not_found(path))?
            .read_range(path, offset, length)
    }
    fn write(&self, path: &str, parts: Vec<Bytes>) -> StoreResult<()> {
        self.inner(true)?
            .ok_or_else(|| self.not_found(path))?
            .write(path, parts)?;
        self.sync_dirs(path)
    }
    fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        match self.inner(false)? {
            Some(s) => s.list(dir),
            // On a removable disk the mount check has passed: a fresh disk, to be filled.
            None if self.removable => Ok(Vec::new()),
            // A folder that should hold a repository and is not there may be a mount that is
            // missing: never take it for an empty target (only `init` creates it).
            None => Err(StoreError::new(
                StoreErrorKind::Absent,
                format!(
                    "folder {} does not exist (a disk or share not mounted? `cairn init` creates it)",
                    self.path.display()
                ),
            )),
        }
    }
    fn delete(&self, path: &str) -> StoreResult<()> {
        match self.inner(false)? {
            Some(s) => s.delete(path),
            None => Ok(()),
        }
    }
    fn create_dirs(&self, dirs: &[String]) -> StoreResult<()> {
        self.inner(true)?
            .ok_or_else(|| self.not_found("."))?
            .create_dirs(dirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_below_an_ordinary_folder_is_not_mounted() {
        // Whether /tmp is on the root filesystem or a tmpfs, a folder that does not exist
        // below a plain folder there is what an unplugged disk's mount point looks like.
        let tmp = tempfile::tempdir().unwrap();
        let state = mount_state(&tmp.path().join("media/usb/cairn"));
        assert!(matches!(state, MountState::NotMounted(_)), "{state:?}");
    }

    #[test]
    fn the_root_filesystem_is_never_a_removable_disk() {
        let state = mount_state(Path::new("/"));
        assert!(matches!(state, MountState::NotMounted(m) if m.contains("root filesystem")));
    }

    #[test]
    fn a_folder_to_create_directly_on_another_mount_counts_as_mounted() {
        // /proc is always its own mount: a stand-in for a mounted disk's root.
        assert_eq!(
            mount_state(Path::new("/proc/cairn-no-such-folder")),
            MountState::Mounted
        );
    }

    #[test]
    fn reads_never_create_the_folder_and_writes_do() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        let policy = Policy {
            retries: 0,
            timeout: std::time::Duration::from_secs(5),
        };
        let s = open(&dir, false, policy).unwrap();
        assert_eq!(s.stat("config").unwrap(), None);
        assert!(s.read("config").unwrap_err().is_not_found());
        assert_eq!(s.list("keys").unwrap_err().kind, StoreErrorKind::Absent);
        assert!(!dir.exists());
        s.write("data/ab/abc", vec![Bytes::from_static(b"k")])
            .unwrap();
        assert_eq!(s.list("data").unwrap(), vec![("ab/abc".to_string(), 1)]);
        assert!(!dir.join(TMP_DIR).read_dir().unwrap().any(|_| true));
        assert_eq!(&s.read_range("data/ab/abc", 0, 1).unwrap()[..], b"k");
    }
}
