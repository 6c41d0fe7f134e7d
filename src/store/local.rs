//! `kind = "local"`: a folder, possibly on a removable (USB) disk.
//!
//! A removable target is written only while its disk is mounted. An unplugged disk leaves an
//! empty mount-point folder behind; writing there would fill another filesystem with a backup
//! that vanishes behind the next mount. So the disk counts as present only when its mount point
//! (`mount_point`, by default the folder holding the repository folder) is listed as a mount
//! point by the kernel, is not `/`, and the repository folder, symlinks followed, lies on it. The
//! check runs when the target is opened and again before every operation, so a disk pulled
//! mid-run goes offline.
//!
//! The folder is created on the first write, never by a read: looking at a mistyped path
//! leaves nothing behind.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use bytes::Bytes;

use crate::layout::TMP_DIR;

use super::{Policy, Store, StoreError, StoreErrorKind, StoreResult, opendal_store::OpendalStore};

/// Whether a removable disk is there to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    /// A filesystem is mounted at the mount point, and the folder lies on it.
    Mounted,
    /// Not mounted; says why it is believed so.
    NotMounted(String),
}

/// Decides whether `path` is on a disk mounted at `mount_point` (see the module documentation).
#[must_use]
pub fn mount_state(path: &Path, mount_point: &Path) -> MountState {
    let not = |why: String| MountState::NotMounted(why);
    let mp = match std::fs::canonicalize(mount_point) {
        Ok(p) => p,
        Err(e) => return not(format!("mount point {}: {e}", mount_point.display())),
    };
    if mp == Path::new("/") {
        return not(format!(
            "mount point {} is the root filesystem, not a disk",
            mount_point.display()
        ));
    }
    match is_mount_point(&mp) {
        Ok(true) => {}
        Ok(false) => {
            return not(format!(
                "{} is not a mount point (disk not mounted; if it is mounted elsewhere, set \
                 `mount_point`)",
                mount_point.display()
            ));
        }
        Err(e) => return not(format!("cannot read the mount table: {e}")),
    }
    // The repository folder (or its nearest existing parent) must lead onto the disk.
    let mut existing = path;
    while std::fs::symlink_metadata(existing).is_err() {
        match existing.parent() {
            Some(p) => existing = p,
            None => break,
        }
    }
    match std::fs::canonicalize(existing) {
        Ok(real) if real.starts_with(&mp) => MountState::Mounted,
        Ok(real) => not(format!(
            "{} leads to {}, off the disk mounted at {}",
            existing.display(),
            real.display(),
            mount_point.display()
        )),
        Err(e) => not(format!("{}: {e}", existing.display())),
    }
}

/// Whether the kernel lists `path` (canonical) as a mount point of this process.
fn is_mount_point(path: &Path) -> std::io::Result<bool> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(&unescape(m)) == path))
}

/// The kernel writes space, tab, newline and backslash in mount points as `\ooo` octal.
fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A local folder.
#[derive(Debug)]
struct LocalStore {
    path: PathBuf,
    /// Set for a removable disk.
    mount_point: Option<PathBuf>,
    policy: Policy,
    /// Built on first write: opendal's fs service creates its root and temporary folders when
    /// built.
    inner: OnceLock<OpendalStore>,
    /// Built on first read of an existing folder, with no temporary folder: reading a target
    /// (a probe of one holding another repository) creates nothing there.
    reader: OnceLock<OpendalStore>,
    /// Folders whose own entry in their parent is known to be synced.
    synced: Mutex<HashSet<PathBuf>>,
}

pub(super) fn open(
    path: &Path,
    mount_point: Option<&Path>,
    policy: Policy,
) -> StoreResult<Box<dyn Store>> {
    let store = LocalStore {
        path: path.to_path_buf(),
        mount_point: mount_point.map(Path::to_path_buf),
        policy,
        inner: OnceLock::new(),
        reader: OnceLock::new(),
        synced: Mutex::default(),
    };
    store.guard()?;
    Ok(Box::new(store))
}

impl LocalStore {
    fn guard(&self) -> StoreResult<()> {
        let Some(mount_point) = &self.mount_point else {
            return Ok(());
        };
        match mount_state(&self.path, mount_point) {
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
        if !create && let Some(s) = self.reader.get() {
            return Ok(Some(s));
        }
        let root = self.path.to_string_lossy().into_owned();
        let mut builder = opendal::services::Fs::default().root(&root);
        if create {
            let tmp = self.path.join(TMP_DIR).to_string_lossy().into_owned();
            builder = builder.atomic_write_dir(&tmp);
        }
        let store = OpendalStore::new(builder, self.policy, self.location(), Vec::new(), true)?;
        let cell = if create { &self.inner } else { &self.reader };
        Ok(Some(cell.get_or_init(|| store)))
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

    /// Removes what a failed write of `path` left in the temporary folder: opendal keeps its
    /// partial copy (`<name>.<random>`), and on a full disk that copy keeps the disk full.
    fn remove_partial(&self, path: &str) {
        let prefix = format!("{}.", path.rsplit('/').next().unwrap_or(path));
        let Ok(entries) = std::fs::read_dir(self.path.join(TMP_DIR)) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn read_error(&self, path: &str, e: &std::io::Error) -> StoreError {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => StoreErrorKind::NotFound,
            std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut => {
                StoreErrorKind::Transient
            }
            _ => StoreErrorKind::Permanent,
        };
        StoreError::new(kind, format!("reading {path} on {}: {e}", self.location()))
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
    // Reads go straight to the file system: through opendal each one is a trip to the I/O
    // runtime's threads and back, which a restore of many small files pays per file.
    fn read(&self, path: &str) -> StoreResult<Bytes> {
        self.guard()?;
        std::fs::read(self.path.join(path))
            .map(Bytes::from)
            .map_err(|e| self.read_error(path, &e))
    }
    fn read_range(&self, path: &str, offset: u64, length: u64) -> StoreResult<Bytes> {
        use std::os::unix::fs::FileExt;
        self.guard()?;
        let size = usize::try_from(length)
            .map_err(|e| self.read_error(path, &std::io::Error::other(e)))?;
        let mut buf = vec![0u8; size];
        std::fs::File::open(self.path.join(path))
            .and_then(|f| f.read_exact_at(&mut buf, offset))
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    StoreError::new(
                        StoreErrorKind::Permanent,
                        format!(
                            "reading {path} on {}: shorter than {length} bytes at offset {offset}",
                            self.location()
                        ),
                    )
                } else {
                    self.read_error(path, &e)
                }
            })?;
        Ok(Bytes::from(buf))
    }
    fn write(&self, path: &str, parts: Vec<Bytes>) -> StoreResult<()> {
        let store = self.inner(true)?.ok_or_else(|| self.not_found(path))?;
        if let Err(e) = store.write(path, parts) {
            self.remove_partial(path);
            return Err(e);
        }
        self.sync_dirs(path)
    }
    fn list(&self, dir: &str) -> StoreResult<Vec<(String, u64)>> {
        match self.inner(false)? {
            Some(s) => s.list(dir),
            // On a removable disk the mount check has passed: a fresh disk, to be filled.
            None if self.mount_point.is_some() => Ok(Vec::new()),
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
        let tmp = tempfile::tempdir().unwrap();
        let mp = tmp.path().join("media/usb");
        std::fs::create_dir_all(&mp).unwrap();
        let state = mount_state(&mp.join("cairn"), &mp);
        assert!(matches!(state, MountState::NotMounted(_)), "{state:?}");
    }

    #[test]
    fn a_plain_folder_on_another_filesystem_is_not_a_mounted_disk() {
        // /dev/shm is a tmpfs of its own; a folder in it is still no mount point.
        let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
        let state = mount_state(&tmp.path().join("cairn"), tmp.path());
        assert!(
            matches!(&state, MountState::NotMounted(m) if m.contains("not a mount point")),
            "{state:?}"
        );
    }

    #[test]
    fn the_root_filesystem_is_never_a_removable_disk() {
        let state = mount_state(Path::new("/cairn"), Path::new("/"));
        assert!(matches!(state, MountState::NotMounted(m) if m.contains("root filesystem")));
    }

    #[test]
    fn a_folder_to_create_directly_on_another_mount_counts_as_mounted() {
        // /proc is always its own mount: a stand-in for a mounted disk's root.
        assert_eq!(
            mount_state(Path::new("/proc/cairn-no-such-folder"), Path::new("/proc")),
            MountState::Mounted
        );
    }

    #[test]
    fn a_symlink_leading_off_the_disk_is_not_on_it() {
        let tmp = tempfile::tempdir().unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        // /proc is mounted, but the path through the link leads elsewhere.
        let state = mount_state(&link.join("cairn"), Path::new("/proc"));
        assert!(matches!(state, MountState::NotMounted(m) if m.contains("off the disk")));
    }

    #[test]
    fn mount_points_with_spaces_are_read_from_the_kernel_table() {
        assert_eq!(unescape("/media/my\\040disk"), "/media/my disk");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn reads_never_create_the_folder_and_writes_do() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        let policy = Policy {
            retries: 0,
            timeout: std::time::Duration::from_secs(5),
        };
        let s = open(&dir, None, policy).unwrap();
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
