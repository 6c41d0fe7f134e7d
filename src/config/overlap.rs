//! Sources, targets and restore folders that must not overlap: a target inside a source stores
//! the repository inside itself at every backup, a source inside a target backs the repository
//! up, two names for one folder make one copy look like two (and lock each other out), and a
//! restore into a target's folder overwrites the repository. Folders are compared as they
//! resolve on this machine (symlinks followed as far as the path exists).

use std::path::{Path, PathBuf};

use super::{
    sections::{BackupConfig, VerifyConfig},
    target::{TargetConfig, TargetKind},
};

/// `path` with symlinks resolved as far as it exists, the rest appended as written: two
/// spellings of one folder (`/t`, `/t/`, a link to it) come out equal.
#[must_use]
pub fn real_path(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return rest.iter().rev().fold(real, |p, n| p.join(n));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs,
        }
    }
}

/// The folder of a local target, resolved.
pub(super) fn folder(t: &TargetConfig) -> Option<PathBuf> {
    match &t.kind {
        TargetKind::Local { path, .. } => Some(real_path(path)),
        _ => None,
    }
}

/// Whether `inner` is `outer` or below it.
pub(super) fn within(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}

/// Whether an exclude pattern leaves out the folder `dir` whole (`DIR`, `DIR/` or `DIR/**`).
pub(super) fn excluded(excludes: &[String], dir: &Path) -> bool {
    excludes.iter().any(|g| {
        let g = g.trim_end_matches("/**").trim_end_matches('/');
        Path::new(g) == dir || real_path(Path::new(g)) == dir
    })
}

/// Sources, targets and the verify folder must not overlap: the first problem, with its line
/// and key.
pub(super) fn check(
    targets: &[TargetConfig],
    lines: &[usize],
    backup: &BackupConfig,
    verify: &VerifyConfig,
    (place, sources_line): (&str, usize),
) -> std::result::Result<(), String> {
    let sources: Vec<PathBuf> = backup.sources.iter().map(|p| real_path(p)).collect();
    let mut seen: Vec<(&str, PathBuf)> = Vec::new();
    for (t, line) in targets.iter().zip(lines) {
        let Some(folder) = folder(t) else {
            continue;
        };
        if let Some((other, _)) = seen.iter().find(|(_, f)| *f == folder) {
            return Err(format!(
                "line {line}: key `path`: target `{}` is the folder of target `{other}` ({}); \
                 one folder is one copy",
                t.name,
                folder.display()
            ));
        }
        for s in &sources {
            if within(&folder, s) && !excluded(&backup.excludes, &folder) {
                return Err(format!(
                    "line {line}: key `path`: target `{}` ({}) is inside the source {}: each \
                     backup would store the repository inside itself; put the target elsewhere, \
                     or add \"{}\" to {place} excludes",
                    t.name,
                    folder.display(),
                    s.display(),
                    folder.display()
                ));
            }
            if within(s, &folder) {
                return Err(format!(
                    "line {sources_line}: {place} key `sources`: {} is inside target `{}` ({}): \
                     the repository would be backed up into itself",
                    s.display(),
                    t.name,
                    folder.display()
                ));
            }
        }
        if let Some(to) = &verify.restore_to
            && within(&real_path(to), &folder)
        {
            return Err(format!(
                "[verify] key `restore_to`: {} is inside target `{}` ({}): sample restores \
                 would write into the repository",
                to.display(),
                t.name,
                folder.display()
            ));
        }
        seen.push((&t.name, folder));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    /// A configuration in `dir` backing up `sources` to local targets at `targets`.
    fn cfg(dir: &Path, sources: &[&str], targets: &[&str]) -> std::result::Result<Config, String> {
        let quoted: Vec<String> = sources.iter().map(|s| format!("{s:?}")).collect();
        let mut text = format!("[backup]\nsources = [{}]\n", quoted.join(", "));
        for (i, t) in targets.iter().enumerate() {
            text.push_str(&format!(
                "[[target]]\nname = \"t{i}\"\nkind = \"local\"\npath = {t:?}\n"
            ));
        }
        Config::parse(&text, &dir.join("targets.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn sources_and_targets_that_overlap_are_configuration_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("data/sub")).unwrap();
        std::fs::create_dir_all(d.join("t")).unwrap();
        std::os::unix::fs::symlink(d.join("t"), d.join("link")).unwrap();
        let data = d.join("data");
        let data = data.to_str().unwrap();
        let inside = format!("{data}/sub/repo");
        let e = cfg(d, &[data], &[&inside]).unwrap_err();
        assert!(
            e.contains("line 6") && e.contains("`path`") && e.contains("inside the source"),
            "{e}"
        );
        // Excluding the target's folder makes it fine.
        let text = format!(
            "[backup]\nsources = [{data:?}]\nexcludes = [{inside:?}]\n[[target]]\nname = \"t\"\nkind = \"local\"\npath = {inside:?}\n"
        );
        assert!(Config::parse(&text, &d.join("x.toml")).is_ok());
        let t = d.join("t");
        let t = t.to_str().unwrap();
        let e = cfg(d, &[&format!("{t}/inner")], &[t]).unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("`sources`") && e.contains("inside target"),
            "{e}"
        );
        let e = cfg(d, &[""], &[t]).unwrap_err();
        assert!(e.contains("line 2") && e.contains("empty path"), "{e}");
        let e = cfg(d, &[data], &[t, &format!("{t}/")]).unwrap_err();
        assert!(e.contains("line 10") && e.contains("`t0`"), "{e}");
        let link = d.join("link");
        let e = cfg(d, &[data], &[t, link.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("line 10") && e.contains("`t0`"), "{e}");
        assert!(cfg(d, &[data], &[t]).is_ok());
    }
}
