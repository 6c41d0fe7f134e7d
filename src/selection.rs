//! Choosing a snapshot the way an admin names it: an id prefix, `latest` (with host, tag and path
//! filters), or a point in time, `@2026-11-17` / `@2026-11-17T22:00` ("the newest snapshot at or
//! before"), optionally followed by `:PATH` inside it.

use globset::{GlobBuilder, GlobMatcher};
use jiff::{Timestamp, tz::TimeZone};
use rustic_core::repofile::SnapshotFile;

use crate::error::{Error, Result};

/// Which snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Spec {
    /// The newest (among those the filter keeps).
    #[default]
    Latest,
    /// The newest at or before this moment (among those the filter keeps).
    At(Timestamp),
    /// The one whose id starts with this (hex, at least 4 digits).
    Id(String),
}

/// `SNAPSHOT[:PATH]` as given on a command line, with the filters that go with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// The snapshot.
    pub spec: Spec,
    /// A path inside it (`""`: its root).
    pub path: String,
    /// Filters for `latest` and times.
    pub filter: Filter,
}

/// Snapshot filters (`--host`, `--tag`, `--path`), as restic's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only snapshots of this host.
    pub host: Option<String>,
    /// Only snapshots holding every one of these tags.
    pub tags: Vec<String>,
    /// Only snapshots whose backed-up paths include this one.
    pub path: Option<String>,
}

impl Filter {
    /// Whether `s` passes.
    #[must_use]
    pub fn keeps(&self, s: &SnapshotFile) -> bool {
        self.host.as_ref().is_none_or(|h| &s.hostname == h)
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self
                .path
                .as_ref()
                .is_none_or(|p| s.paths.iter().any(|sp| sp == p.trim_end_matches('/')))
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if !self.tags.is_empty() {
            parts.push(format!("tags {}", self.tags.join(",")));
        }
        if let Some(p) = &self.path {
            parts.push(format!("path {p}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" with {}", parts.join(", "))
        }
    }
}

impl std::str::FromStr for Spec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "latest" {
            return Ok(Self::Latest);
        }
        if let Some(t) = s.strip_prefix('@') {
            return parse_time(t).map(Self::At);
        }
        if s.len() >= 4 && s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(Self::Id(s.to_ascii_lowercase()));
        }
        Err(Error::Input(format!(
            "snapshot {s:?}: expected an id (4 or more hex digits), `latest`, or a time such as \
             `@2026-11-17` or `@2026-11-17T22:00`"
        )))
    }
}

impl std::str::FromStr for Selector {
    type Err = Error;
    /// `SNAPSHOT[:PATH]`. A time holds colons itself: there, the path starts at `:/`.
    fn from_str(s: &str) -> Result<Self> {
        let (spec, path) = if s.starts_with('@') {
            match s.find(":/") {
                Some(i) => (&s[..i], &s[i + 1..]),
                None => (s, ""),
            }
        } else {
            s.split_once(':').unwrap_or((s, ""))
        };
        Ok(Self {
            spec: spec.parse()?,
            path: path.to_string(),
            filter: Filter::default(),
        })
    }
}

/// A moment as an admin writes it: a date (the end of that day), a date and time, both in this
/// machine's time zone unless they carry `Z` or an offset.
///
/// # Errors
/// [`Error::Input`] saying which forms are understood.
pub fn parse_time(s: &str) -> Result<Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let tz = TimeZone::system();
    // A date alone is the end of that day (jiff would read it as its midnight).
    if !s.contains(['T', 't', ' '])
        && let Ok(d) = s.parse::<jiff::civil::Date>()
        && let Ok(z) = d.at(23, 59, 59, 999_999_999).to_zoned(tz.clone())
    {
        return Ok(z.timestamp());
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>()
        && let Ok(z) = dt.to_zoned(tz)
    {
        return Ok(z.timestamp());
    }
    Err(Error::Input(format!(
        "time {s:?}: expected `YYYY-MM-DD` (the end of that day), `YYYY-MM-DDTHH:MM[:SS]` (this \
         machine's time zone), or either with `Z` or an offset such as `+01:00`"
    )))
}

/// The snapshot `spec` names among `snaps` (a filter applies to `latest` and times).
///
/// # Errors
/// [`Error::Input`]: no snapshot matches (saying what the nearest is), or an id prefix is
/// ambiguous (listing the candidates).
pub fn pick<'a>(
    snaps: &'a [SnapshotFile],
    spec: &Spec,
    filter: &Filter,
) -> Result<&'a SnapshotFile> {
    let kept = || snaps.iter().filter(|s| filter.keeps(s));
    match spec {
        Spec::Latest => kept()
            .max_by_key(|s| s.time.timestamp())
            .ok_or_else(|| Error::Input(format!("no snapshot{}", filter.describe()))),
        Spec::At(t) => kept()
            .filter(|s| s.time.timestamp() <= *t)
            .max_by_key(|s| s.time.timestamp())
            .ok_or_else(|| {
                let first = kept().min_by_key(|s| s.time.timestamp()).map_or_else(
                    || "there is none".to_string(),
                    |s| format!("the oldest is {} of {}", short(s), s.time.timestamp()),
                );
                Error::Input(format!(
                    "no snapshot{} at or before {t}: {first}",
                    filter.describe()
                ))
            }),
        Spec::Id(prefix) => {
            let found: Vec<&SnapshotFile> = snaps
                .iter()
                .filter(|s| s.id.to_hex().to_string().starts_with(prefix.as_str()))
                .collect();
            match found.as_slice() {
                [one] => Ok(one),
                [] => Err(Error::Input(format!("no snapshot with id {prefix}"))),
                many => Err(Error::Input(format!(
                    "snapshot id {prefix} is ambiguous: it matches {}",
                    many.iter()
                        .map(|s| format!("{} ({}, {})", short(s), s.time.timestamp(), s.hostname))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
    }
}

/// The snapshot and the node `sel` names in `repo`; the snapshot is noted in `trail`.
///
/// # Errors
/// As [`pick`]; the path is not in the snapshot; the repository cannot be read.
pub fn node<S: rustic_core::IndexedTree>(
    repo: &rustic_core::Repository<S>,
    sel: &Selector,
    trail: &crate::audit::Trail,
) -> Result<(SnapshotFile, rustic_core::repofile::Node)> {
    let snaps = repo.get_all_snapshots()?;
    let snap = pick(&snaps, &sel.spec, &sel.filter)?.clone();
    let node = repo
        .node_from_snapshot_and_path(&snap, &sel.path)
        .map_err(|_| Error::Input(format!("snapshot {} holds no {:?}", short(&snap), sel.path)))?;
    // Which client data a command read (restore, dump, ls, diff) goes in its audit record.
    trail.snapshot(&snap.id.to_hex());
    Ok((snap, node))
}

/// A snapshot's 8-digit id.
#[must_use]
pub fn short(s: &SnapshotFile) -> String {
    s.id.to_hex().to_string().chars().take(8).collect()
}

/// The `--include`/`--exclude` patterns: a pattern without `/` matches an entry's name, one with
/// `/` its whole path in the snapshot (as `restore --include`, `purge`).
pub struct Patterns(Vec<(bool, GlobMatcher)>);

impl Patterns {
    /// Compiles `globs`.
    ///
    /// # Errors
    /// A pattern that is not a glob.
    pub fn new(globs: &[String]) -> Result<Self> {
        globs
            .iter()
            .map(|g| {
                let m = GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| Error::Input(format!("pattern {g:?}: {e}")))?
                    .compile_matcher();
                Ok((g.contains('/'), m))
            })
            .collect::<Result<_>>()
            .map(Self)
    }
    /// Whether `full` (a path in a snapshot, from `/`) matches a pattern.
    #[must_use]
    pub fn matches(&self, full: &std::path::Path) -> bool {
        let name = full.file_name().unwrap_or_default();
        self.0.iter().any(|(whole, m)| {
            if *whole {
                m.is_match(full)
            } else {
                m.is_match(name)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id_byte: u8, time: &str, host: &str, tags: &[&str]) -> SnapshotFile {
        let mut s = SnapshotFile::default();
        let mut raw = [0u8; 32];
        raw[0] = id_byte;
        raw[1] = 0xab;
        s.id = rustic_core::repofile::SnapshotId::from(rustic_core::Id::new(raw));
        s.time = time.parse::<Timestamp>().unwrap().to_zoned(TimeZone::UTC);
        s.hostname = host.into();
        for t in tags {
            s.tags.add((*t).to_string());
        }
        s.paths.add("/srv/data".into());
        s
    }

    #[test]
    fn a_time_picks_the_newest_at_or_before_it_and_before_the_first_is_an_error() {
        let snaps = [
            snap(1, "2026-11-16T22:00:00Z", "fs", &[]),
            snap(2, "2026-11-17T22:00:00Z", "fs", &[]),
            snap(3, "2026-11-18T22:00:00Z", "fs", &[]),
        ];
        let at = |s: &str| {
            pick(
                &snaps,
                &format!("@{s}").parse().unwrap(),
                &Filter::default(),
            )
        };
        // Exactly at a snapshot's time: that one.
        assert_eq!(at("2026-11-17T22:00:00Z").unwrap().time, snaps[1].time);
        assert_eq!(at("2026-11-17T21:59:59Z").unwrap().time, snaps[0].time);
        // A date alone is the end of that day (this machine's time zone).
        let end = parse_time("2026-11-17").unwrap();
        let day_end = jiff::civil::date(2026, 11, 17)
            .at(23, 59, 59, 999_999_999)
            .to_zoned(TimeZone::system())
            .unwrap()
            .timestamp();
        assert_eq!(end, day_end);
        assert_eq!(
            parse_time("2026-11-17T22:00Z").unwrap(),
            snaps[1].time.timestamp()
        );
        let e = at("2026-11-16T21:00:00Z").unwrap_err().to_string();
        assert!(
            e.contains("at or before") && e.contains("the oldest is"),
            "{e}"
        );
    }

    #[test]
    fn latest_obeys_the_filters_and_an_ambiguous_prefix_lists_the_candidates() {
        let snaps = [
            snap(0x11, "2026-11-16T22:00:00Z", "fs", &["daily"]),
            snap(0x12, "2026-11-17T22:00:00Z", "mail", &[]),
            snap(0x21, "2026-11-18T22:00:00Z", "mail", &["daily"]),
        ];
        let host = Filter {
            host: Some("fs".into()),
            ..Filter::default()
        };
        assert_eq!(pick(&snaps, &Spec::Latest, &host).unwrap().hostname, "fs");
        let tag = Filter {
            tags: vec!["daily".into()],
            ..Filter::default()
        };
        assert_eq!(
            pick(&snaps, &Spec::Latest, &tag).unwrap().time,
            snaps[2].time
        );
        let none = Filter {
            host: Some("web".into()),
            ..Filter::default()
        };
        let e = pick(&snaps, &Spec::Latest, &none).unwrap_err().to_string();
        assert!(e.contains("host web"), "{e}");
        let e = pick(&snaps, &Spec::Id("1".into()), &Filter::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ambiguous") && e.contains("11ab") && e.contains("12ab"),
            "{e}"
        );
        assert_eq!(
            pick(&snaps, &Spec::Id("21".into()), &Filter::default())
                .unwrap()
                .time,
            snaps[2].time
        );
    }

    #[test]
    fn selectors_split_the_path_after_a_time_at_its_slash() {
        let s: Selector = "@2026-11-17T22:00:/srv/data/x".parse().unwrap();
        assert_eq!(s.path, "/srv/data/x");
        assert!(matches!(s.spec, Spec::At(_)));
        let s: Selector = "latest:/srv".parse().unwrap();
        assert_eq!((s.spec, s.path.as_str()), (Spec::Latest, "/srv"));
        let s: Selector = "abcd1234".parse().unwrap();
        assert_eq!(s.spec, Spec::Id("abcd1234".into()));
        assert!("xyz".parse::<Selector>().is_err());
        assert!("@yesterday".parse::<Selector>().is_err());
    }
}
