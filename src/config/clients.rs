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
    uploads_in_flight: Option<std::num::NonZeroUsize>,
    targets: Option<Spanned<Vec<String>>>,
    retention: Option<RetentionConfig>,
    verify: Option<Spanned<VerifyConfig>>,
    allowed_regions: Option<Spanned<Vec<String>>>,
    /// Its own check's URL (healthchecks.io's protocol, as `[notify] ping_url`).
    ping_url: Option<Spanned<String>>,
    /// The day its contract ends (`"2027-06-30"`).
    contract_end: Option<Spanned<String>>,
    /// How long its backups are kept after that (`"1y"`), then erased by `cairn run`.
    keep_after_end: Option<Spanned<String>>,
}

/// The contract of `name`, from its two keys: both or neither, the keeping no longer than
/// `[policy] max_keep_after_end`.
fn contract(
    name: &str,
    end: Option<Spanned<String>>,
    keep: Option<Spanned<String>>,
    max: &(crate::retention::Within, Option<usize>),
    src: &Source<'_>,
) -> std::result::Result<Option<super::Contract>, String> {
    let place = format!("[[repository]] `{name}`");
    let (end, keep) = match (end, keep) {
        (None, None) => return Ok(None),
        (Some(e), None) => {
            return Err(format!(
                "line {}: {place} key `contract_end`: say how long its backups are kept after                  it with `keep_after_end` (e.g. \"1y\"; at most {})",
                src.line_of(e.span().start),
                max.0
            ));
        }
        (None, Some(k)) => {
            return Err(format!(
                "line {}: {place} key `keep_after_end`: without `contract_end` there is no end                  to keep after",
                src.line_of(k.span().start)
            ));
        }
        (Some(e), Some(k)) => (e, k),
    };
    let end_line = src.line_of(end.span().start);
    let keep_line = src.line_of(keep.span().start);
    let end: jiff::civil::Date = end.get_ref().parse().map_err(|_| {
        format!(
            "line {end_line}: {place} key `contract_end`: {:?} is not a date like \"2027-06-30\"",
            end.get_ref()
        )
    })?;
    let keep_after: crate::retention::Within = keep
        .get_ref()
        .parse()
        .map_err(|e| format!("line {keep_line}: {place} key `keep_after_end`: {e}"))?;
    let plus = |w: &crate::retention::Within| {
        end.checked_add(
            jiff::Span::new()
                .years(w.years)
                .months(w.months)
                .days(w.days + w.hours / 24),
        )
        .map_err(|e| format!("line {keep_line}: {place} key `keep_after_end`: {e}"))
    };
    let erase_on = plus(&keep_after)?;
    if erase_on > plus(&max.0)? {
        let set = max
            .1
            .map_or_else(|| "the default".to_string(), |l| format!("line {l}"));
        return Err(format!(
            "line {keep_line}: {place} key `keep_after_end`: {keep_after} is longer than              [policy] max_keep_after_end = {} ({set}); the agreements promise no longer",
            max.0
        ));
    }
    Ok(Some(super::Contract {
        end,
        keep_after,
        erase_on,
    }))
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
        let contract = contract(
            &name,
            s.contract_end,
            s.keep_after_end,
            &shared.max_keep_after_end,
            src,
        )?;
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
                        uploads_in_flight: s.uploads_in_flight,
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
                    contract,
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
    fn a_contract_end_is_kept_no_longer_than_the_policy_allows() {
        let with = |extra: &str| {
            all(&TWO.replacen(
                "name = \"beta\"\n",
                &format!("name = \"beta\"\n{extra}\n"),
                1,
            ))
        };
        let c = with("contract_end = \"2027-06-30\"\nkeep_after_end = \"1y6m\"").unwrap();
        let contract = c[1].contract.unwrap();
        assert_eq!(contract.erase_on, jiff::civil::date(2028, 12, 30));
        assert_eq!(contract.days_left(jiff::civil::date(2028, 12, 1)), 29);
        assert!(
            contract
                .warning("beta", jiff::civil::date(2028, 11, 1))
                .is_none()
        );
        assert!(
            contract
                .warning("beta", jiff::civil::date(2028, 12, 1))
                .is_some()
        );
        assert!(c[0].contract.is_none());
        let e = with("contract_end = \"2027-06-30\"\nkeep_after_end = \"3y1d\"").unwrap_err();
        assert!(
            e.contains("line 30") && e.contains("`keep_after_end`") && e.contains("3y"),
            "{e}"
        );
        let e = with("contract_end = \"2027-06-30\"").unwrap_err();
        assert!(e.contains("line 29") && e.contains("keep_after_end"), "{e}");
        let e = with("keep_after_end = \"1y\"").unwrap_err();
        assert!(
            e.contains("line 29") && e.contains("without `contract_end`"),
            "{e}"
        );
        let e = with("contract_end = \"30.06.2027\"\nkeep_after_end = \"1y\"").unwrap_err();
        assert!(e.contains("line 29") && e.contains("not a date"), "{e}");
        let policy = |max: &str, keep: &str| {
            all(&format!("[policy]\nmax_keep_after_end = \"{max}\"\n{}", TWO.replacen(
                "name = \"beta\"\n",
                &format!("name = \"beta\"\ncontract_end = \"2027-06-30\"\nkeep_after_end = \"{keep}\"\n"),
                1,
            )))
        };
        assert!(policy("1y", "6m").is_ok());
        let e = policy("1y", "13m").unwrap_err();
        assert!(
            e.contains("[policy] max_keep_after_end = 1y (line 2)"),
            "{e}"
        );
        let e = policy("soon", "1y").unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("max_keep_after_end"),
            "{e}"
        );
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
