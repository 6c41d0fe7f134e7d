//! `[[repository]]` sections: several client repositories in one file, sharing its targets.
//! Each lives in a folder of its name on every target it uses, a complete restic repository
//! with its own password and key, so clients share no pack, index or key (and nothing is
//! deduplicated across them).

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Config, Shared, View,
    sections::{BackupConfig, RepositoryConfig, RetentionConfig, VerifyConfig},
    text::Source,
};
use crate::secret::SecretRef;

/// Names a repository folder may not take: restic's own entries at a target's root (where a
/// single-repository file keeps its repository) and cairn's.
const RESERVED: &[&str] = &["config", "data", "index", "keys", "locks", "snapshots"];

/// One `[[repository]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Section {
    name: Spanned<String>,
    password: Option<SecretRef>,
    host: Option<String>,
    #[serde(default)]
    sources: Vec<PathBuf>,
    #[serde(default)]
    excludes: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    exclude_if_present: Vec<String>,
    #[serde(default)]
    one_file_system: bool,
    targets: Option<Spanned<Vec<String>>>,
    retention: Option<RetentionConfig>,
    verify: Option<Spanned<VerifyConfig>>,
    allowed_regions: Option<Spanned<Vec<String>>>,
    /// Its own check's URL (healthchecks.io's protocol, as `[notify] ping_url`).
    ping_url: Option<Spanned<String>>,
}

/// Why `name` cannot be a repository's folder on every target, if it cannot.
fn unsafe_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > 64 {
        return Some("it is longer than 64 characters");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Some("it starts with `.` or `-`");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some("only letters, digits, `-`, `_` and `.` make a folder name on every target");
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Some("it is a folder of restic's own layout");
    }
    None
}

/// One [`Config`] per section, in order.
pub(super) fn views(
    shared: &Shared,
    sections: Vec<Spanned<Section>>,
    src: &Source<'_>,
) -> std::result::Result<Vec<Config>, String> {
    let mut out: Vec<Config> = Vec::new();
    for section in sections {
        let span = section.span();
        let s = section.into_inner();
        let name_line = src.line_of(s.name.span().start);
        let name = s.name.into_inner();
        if let Some(why) = unsafe_name(&name) {
            return Err(format!(
                "line {name_line}: [[repository]] key `name`: {name:?} cannot be a repository \
                 name: {why}"
            ));
        }
        if out
            .iter()
            .any(|c| c.client.as_deref() == Some(name.as_str()))
        {
            return Err(format!(
                "line {name_line}: [[repository]] key `name`: repository name `{name}` is used \
                 twice"
            ));
        }
        let targets = match s.targets {
            None => None,
            Some(t) => {
                let line = src.line_of(t.span().start);
                let names = t.into_inner();
                if names.is_empty() {
                    return Err(format!(
                        "line {line}: [[repository]] `{name}` key `targets`: an empty list; \
                         leave the key out to use every target"
                    ));
                }
                if let Some(unknown) = names
                    .iter()
                    .find(|n| !shared.targets.iter().any(|t| t.name == **n))
                {
                    let known: Vec<&str> = shared.targets.iter().map(|t| t.name.as_str()).collect();
                    return Err(format!(
                        "line {line}: [[repository]] `{name}` key `targets`: no target named \
                         `{unknown}` (configured: {})",
                        known.join(", ")
                    ));
                }
                Some(names)
            }
        };
        let ping_url = match s.ping_url {
            Some(u) => {
                let line = src.line_of(u.span().start);
                let u = u.into_inner();
                if !super::text::is_http_url(&u) {
                    return Err(format!(
                        "line {line}: [[repository]] `{name}` key `ping_url` must be an http:// \
                         or https:// URL"
                    ));
                }
                Some(u)
            }
            None => None,
        };
        let mut password = s.password;
        if let Some(p) = &mut password {
            p.rebase(&shared.base);
        }
        let place = format!("[[repository]] `{name}`");
        out.push(
            shared.view(
                View {
                    client: Some(name.clone()),
                    repository: RepositoryConfig {
                        name: Some(name),
                        password,
                        host: s.host,
                    },
                    backup: BackupConfig {
                        sources: s.sources,
                        excludes: s.excludes,
                        tags: s.tags,
                        exclude_if_present: s.exclude_if_present,
                        one_file_system: s.one_file_system,
                    },
                    place,
                    sources_line: src.key_line(span.clone(), "sources"),
                    excludes_line: src.key_line(span, "excludes"),
                    targets,
                    verify: s.verify.map(|v| {
                        let span = v.span();
                        (v.into_inner(), span)
                    }),
                    retention: s.retention,
                    allowed: s
                        .allowed_regions
                        .map(|a| (src.line_of(a.span().start), a.into_inner()))
                        .map(|(line, a)| (a, line)),
                    ping_url,
                },
                src,
            )?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, TargetKind};

    const TWO: &str = r#"
[[target]]
name = "usb"
kind = "local"
path = "/mnt/usb/cairn"

[[target]]
name = "dc"
kind = "sftp"
host = "backup.example"
user = "cairn"
key_file = "/root/.ssh/id_ed25519"
path = "/srv/cairn"

[retention]
keep_daily = 3

[[repository]]
name = "acme"
password = "env:ACME_PW"
sources = ["/srv/clients/acme"]
excludes = ["*.tmp"]
targets = ["usb"]
[repository.retention]
keep_daily = 7

[[repository]]
name = "beta"
sources = ["/srv/clients/beta"]
"#;

    fn all(text: &str) -> Result<Vec<Config>, String> {
        Config::parse_all(text, Path::new("/etc/cairn/targets.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn each_repository_lives_in_its_folder_on_the_targets_it_names() {
        let c = all(TWO).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].client.as_deref(), Some("acme"));
        assert_eq!(c[0].targets.len(), 1);
        match &c[0].targets[0].kind {
            TargetKind::Local { path, .. } => assert_eq!(path, Path::new("/mnt/usb/cairn/acme")),
            k => panic!("{k:?}"),
        }
        assert_eq!(c[0].retention.keep_daily, Some(7));
        assert_eq!(c[0].backup.excludes, ["*.tmp"]);
        assert_eq!(c[1].targets.len(), 2);
        match &c[1].targets[1].kind {
            TargetKind::Sftp { path, .. } => assert_eq!(path, "/srv/cairn/beta"),
            k => panic!("{k:?}"),
        }
        // The file's [retention] is the default of a repository without its own.
        assert_eq!(c[1].retention.keep_daily, Some(3));
        let one = Config::parse(TWO, Path::new("/etc/cairn/targets.toml")).unwrap_err();
        assert!(one.to_string().contains("acme, beta"), "{one}");
    }

    #[test]
    fn bad_repository_sections_name_their_line_and_key() {
        let with = |from: &str, to: &str| all(&TWO.replacen(from, to, 1)).unwrap_err();
        let e = with("name = \"beta\"", "name = \"acme\"");
        assert!(e.contains("line 28") && e.contains("used twice"), "{e}");
        for bad in ["../x", "", "/", "a/b", ".hidden", "data"] {
            let e = with("name = \"beta\"", &format!("name = {bad:?}"));
            assert!(
                e.contains("line 28") && e.contains("cannot be a repository name"),
                "{bad}: {e}"
            );
        }
        let e = with("targets = [\"usb\"]", "targets = [\"usb\", \"nas\"]");
        assert!(
            e.contains("line 23") && e.contains("no target named `nas`"),
            "{e}"
        );
        let e = with(
            "sources = [\"/srv/clients/beta\"]",
            "sources = [\"/srv/clients/beta\"]\nsoruces = []",
        );
        assert!(e.contains("soruces"), "{e}");
        let e = all(&format!("[backup]\nsources = [\"/x\"]\n{TWO}")).unwrap_err();
        assert!(
            e.contains("line 1") && e.contains("each repository names its own"),
            "{e}"
        );
    }
}
