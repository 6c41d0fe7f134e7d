//! Restoring only inside the destination folder.
//!
//! A restore may run as root, and both the destination and the snapshot are input: a symlink
//! already in the destination (`d -> /etc`) would carry a write for `d/f` outside it, and a
//! snapshot whose tree names an entry `..`, `a/b` or `/x` would do the same without any link.
//! So before anything is written, every path of the plan is checked: its names must be plain
//! names, no path may appear twice (a symlink and a folder of one name), and no folder on the
//! way to it inside the destination may be a symlink. Without `--overwrite` such a link is
//! refused; with it, the link itself (which lies inside the destination) is removed and a real
//! folder takes its place. Nothing outside the destination is ever read, followed or removed.

use std::{
    collections::HashSet,
    ffi::OsStr,
    hash::{BuildHasher, BuildHasherDefault, DefaultHasher},
    io::ErrorKind,
    path::{Component, Path, PathBuf},
};

use crate::error::{Error, Result};

/// Whether `name` is a plain file name: not empty, `.` or `..`, without `/` or NUL.
///
/// # Errors
/// Why it is not, naming it.
pub fn check_name(name: &OsStr) -> Result<()> {
    let bytes = name.as_encoded_bytes();
    let bad = bytes.is_empty()
        || name == "."
        || name == ".."
        || bytes.contains(&b'/')
        || bytes.contains(&0);
    if bad {
        return Err(Error::Input(format!(
            "the snapshot holds an entry named {name:?}, which is not a plain file name; \
             refusing to restore (nothing was written)"
        )));
    }
    Ok(())
}

/// Whether `rel` only descends (no root, no `..`).
///
/// # Errors
/// Why not, naming it.
pub fn check_relative(rel: &Path) -> Result<()> {
    if rel.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "the snapshot holds a path {} that leaves the destination; refusing to restore \
             (nothing was written)",
            rel.display()
        )))
    }
}

/// Paths seen so far in a plan, to refuse one that appears twice (8 bytes each).
#[derive(Debug, Default)]
pub struct Seen(HashSet<u64>);

impl Seen {
    /// Records `rel`.
    ///
    /// # Errors
    /// It was seen before.
    pub fn add(&mut self, rel: &Path) -> Result<()> {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(rel);
        if self.0.insert(h) {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "the snapshot holds {} twice; refusing to restore (nothing was written)",
                rel.display()
            )))
        }
    }
}

/// Makes sure that nothing on the way from `dest` to `dest/rel` is a symlink (the last
/// component too, unless the snapshot's entry is itself a symlink). With `replace`, links found
/// are removed (they are inside `dest`); without it, they are refused.
///
/// # Errors
/// A symlink or a non-folder is in the way and may not be replaced.
pub fn clear_way(dest: &Path, rel: &Path, entry_is_symlink: bool, replace: bool) -> Result<()> {
    let parts: Vec<_> = rel.components().collect();
    let mut at = dest.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(Error::Io {
                    path: at,
                    source: e,
                });
            }
        };
        if meta.file_type().is_symlink() {
            if last && entry_is_symlink {
                return Ok(());
            }
            if !replace {
                return Err(Error::Input(format!(
                    "{} is a symlink in the destination, and the snapshot has {} there; a restore \
                     would write through it. Nothing was restored. Use --overwrite to replace \
                     the link, or restore into an empty folder",
                    at.display(),
                    if last { "an entry" } else { "a folder" }
                )));
            }
            std::fs::remove_file(&at).map_err(|source| Error::Io {
                path: at.clone(),
                source,
            })?;
            return Ok(());
        }
        if !last && !meta.is_dir() {
            return Err(Error::Input(format!(
                "{} is not a folder in the destination, but the snapshot has a folder there; \
                 nothing was restored",
                at.display()
            )));
        }
    }
    Ok(())
}

/// The destination folder, created if missing, as an absolute path without symlinks (the user
/// named it; links below it are what [`clear_way`] guards against).
///
/// # Errors
/// It cannot be created or resolved.
pub fn resolve(dest: &Path) -> Result<PathBuf> {
    if dest.symlink_metadata().is_ok_and(|m| !m.is_dir()) && !dest.is_dir() {
        return Err(Error::Usage(format!(
            "--target {} is a file, not a folder; nothing was restored",
            dest.display()
        )));
    }
    std::fs::create_dir_all(dest).map_err(|source| Error::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    std::fs::canonicalize(dest).map_err(|source| Error::Io {
        path: dest.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn names_that_leave_or_split_are_refused() {
        for bad in ["", ".", "..", "a/b", "/x", "nul\0byte"] {
            assert!(check_name(OsStr::new(bad)).is_err(), "{bad:?}");
        }
        assert!(check_name(OsStr::new("ok name.txt")).is_ok());
        assert!(check_relative(Path::new("a/../b")).is_err());
        assert!(check_relative(Path::new("/etc")).is_err());
        assert!(check_relative(Path::new("a/b")).is_ok());
        let mut seen = Seen::default();
        seen.add(Path::new("a/b")).unwrap();
        assert!(seen.add(Path::new("a/b")).is_err());
    }

    #[test]
    fn a_symlink_on_the_way_is_refused_or_replaced_never_followed() {
        let dest = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), dest.path().join("d")).unwrap();
        let e = clear_way(dest.path(), Path::new("d/f"), false, false).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(dest.path().join("d").is_symlink());
        clear_way(dest.path(), Path::new("d/f"), false, true).unwrap();
        assert!(!dest.path().join("d").exists());
        assert!(outside.path().exists(), "the link's target is untouched");
        // A symlink the snapshot itself restores at that name is fine.
        symlink("x", dest.path().join("l")).unwrap();
        clear_way(dest.path(), Path::new("l"), true, false).unwrap();
    }
}
