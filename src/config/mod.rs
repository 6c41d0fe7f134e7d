//! `targets.toml`: the repositories, what to back up, and the targets every snapshot is written
//! to. A file holds one repository (`[repository]` + `[backup]`) or several client repositories
//! (`[[repository]]`, sharing the targets); each becomes one [`Config`].
//!
//! Parsing is two-stage: serde reads the file (unknown keys and wrong types are rejected there,
//! with their line), taking only each target's name and kind; then each `[[target]]` table is
//! read again by its kind's settings type, which owns its keys (`target.rs`). Relative paths are
//! taken from the configuration file's folder.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use crate::{
    error::{Error, Result},
    secret::SecretRef,
};

mod clients;
mod job;
mod overlap;
pub mod residency;
mod sections;
mod target;
mod text;
mod view;

pub use job::{
    DEFAULT_HOOK_TIMEOUT, LogConfig, MetricsConfig, NotifyConfig, ReportConfig, ScheduleConfig,
};
pub use overlap::real_path;
pub use sections::{
    BackupConfig, ByteCount, LockoutPolicy, RepositoryConfig, RetentionConfig, SnapshotSelection,
    VaultSettings, VerifyConfig,
};
use sections::{SecurityConfig, VaultConfig};
use text::Source;
pub(crate) use text::describe_toml_error;
use view::{Shared, View};

pub use target::{HostKeyChecking, LockMode, ObjectLock, SmbSecurity, TargetConfig, TargetKind};

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The `[[repository]]` this is the configuration of, when the file holds several (each
    /// then lives in a folder of its name on every target); `None` for the file's single
    /// `[repository]`, at the targets' root.
    pub client: Option<String>,
    /// The repository.
    pub repository: RepositoryConfig,
    /// What a backup reads.
    pub backup: BackupConfig,
    /// Where every snapshot is written.
    pub targets: Vec<TargetConfig>,
    /// Defaults of `cairn verify`.
    pub verify: VerifyConfig,
    /// What `cairn forget` keeps.
    pub retention: RetentionConfig,
    /// Hooks and the ping URL of `cairn run`.
    pub notify: NotifyConfig,
    /// The URL this repository's `cairn run` pings: the file's `[notify] ping_url` when it holds
    /// one repository; a `[[repository]]`'s own `ping_url` (the file's is then pinged once for
    /// the whole run, with the worst result, by the command line).
    pub ping_url: Option<String>,
    /// Prometheus text-file output.
    pub metrics: MetricsConfig,
    /// The run log.
    pub log: LogConfig,
    /// The evidence page.
    pub report: ReportConfig,
    /// The systemd timers.
    pub schedule: ScheduleConfig,
    /// The credentials vault.
    pub vault: VaultSettings,
    /// Lockout after wrong passwords.
    pub lockout: LockoutPolicy,
    /// A client's contract end, when its `[[repository]]` declares one.
    pub contract: Option<Contract>,
    /// Every target of the file at its root (a client's `targets` are inside its folder):
    /// where an erased client's folder is found once its section is gone.
    pub file_targets: Vec<TargetConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound = "R: Deserialize<'de> + Default")]
struct RawFile<R> {
    /// `[repository]` (one repository) or `[[repository]]` (several, [`clients`]).
    #[serde(default)]
    repository: R,
    backup: Option<BackupConfig>,
    #[serde(default)]
    target: Vec<Spanned<target::Head>>,
    verify: Option<Spanned<VerifyConfig>>,
    #[serde(default)]
    retention: RetentionConfig,
    notify: Option<Spanned<NotifyConfig>>,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    report: ReportConfig,
    #[serde(default)]
    schedule: ScheduleConfig,
    #[serde(default)]
    vault: VaultConfig,
    security: Option<Spanned<SecurityConfig>>,
    policy: Option<Spanned<PolicyConfig>>,
}

/// `[policy]`: what every repository of the file must keep to.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyConfig {
    /// Where any repository may be kept (see [`residency`]).
    allowed_regions: Option<Vec<String>>,
    /// The longest `keep_after_end` a repository may declare (default `"3y"`).
    max_keep_after_end: Option<String>,
}

/// When a client's contract ends and how long its backups are kept after that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contract {
    /// `contract_end`.
    pub end: jiff::civil::Date,
    /// `keep_after_end`.
    pub keep_after: crate::retention::Within,
    /// The day `cairn run` erases the client: `end + keep_after`.
    pub erase_on: jiff::civil::Date,
}

impl Contract {
    /// Days from a warning to the erasure: `status` and `run` say it is coming.
    pub const WARN_DAYS: i64 = 30;

    /// What `status` and `run` say when the erasure is due within [`Self::WARN_DAYS`].
    #[must_use]
    pub fn warning(&self, name: &str, today: jiff::civil::Date) -> Option<String> {
        let left = self.days_left(today);
        (left <= Self::WARN_DAYS).then(|| {
            format!(
                "the contract of `{name}` ends {}; its backups are kept {} after, so `cairn \
                 run` erases it from every target on {} ({})",
                self.end,
                self.keep_after,
                self.erase_on,
                if left <= 0 {
                    "due now".to_string()
                } else {
                    format!("in {left} day(s)")
                }
            )
        })
    }

    /// Days from `today` until the client is erased (0 or less: due).
    #[must_use]
    pub fn days_left(&self, today: jiff::civil::Date) -> i64 {
        self.erase_on
            .since(today)
            .map_or(0, |s| i64::from(s.get_days()))
    }
}

impl Config {
    /// Reads and validates a configuration file of one repository.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file, line and key of the first problem found; a file of
    /// several repositories (read it with [`Self::load_all`]).
    pub fn load(path: &Path) -> Result<Self> {
        Self::one(Self::load_all(path)?, path)
    }

    /// Reads and validates a configuration file: one view per repository it holds, in order.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file, line and key of the first problem found.
    pub fn load_all(path: &Path) -> Result<Vec<Self>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse_all(&text, path)
    }

    /// Validates configuration text of one repository; `path` is used for messages and as the
    /// base of relative paths. Nothing else happens: no secret is read, no state is touched.
    ///
    /// # Errors
    /// [`Error::Config`] naming the line and key of the first problem found.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        Self::one(Self::parse_all(text, path)?, path)
    }

    fn one(mut all: Vec<Self>, path: &Path) -> Result<Self> {
        if all.len() == 1 {
            return Ok(all.remove(0));
        }
        let names: Vec<&str> = all.iter().filter_map(|c| c.client.as_deref()).collect();
        Err(Error::Config {
            path: path.to_path_buf(),
            message: format!(
                "holds {} repositories ({}); name one (`--repo NAME`)",
                names.len(),
                names.join(", ")
            ),
        })
    }

    /// Validates configuration text: one view per repository, in order (see [`Self::parse`]).
    ///
    /// # Errors
    /// [`Error::Config`] naming the line and key of the first problem found.
    pub fn parse_all(text: &str, path: &Path) -> Result<Vec<Self>> {
        let err = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let several = text
            .parse::<toml::Table>()
            .ok()
            .is_some_and(|t| matches!(t.get("repository"), Some(toml::Value::Array(_))));
        let src = Source { text };
        if several {
            let mut raw: RawFile<Vec<Spanned<clients::Section>>> =
                toml::from_str(text).map_err(|e| err(describe_toml_error(&e, text, "")))?;
            if raw.backup.is_some() {
                return Err(err(format!(
                    "line {}: [backup]: with [[repository]] sections, each repository names its \
                     own `sources` (and `excludes`); move them there",
                    src.line_of(src.header("backup").start)
                )));
            }
            let sections = std::mem::take(&mut raw.repository);
            let shared = Shared::build(raw, &src, path).map_err(err)?;
            return clients::views(&shared, sections, &src).map_err(err);
        }
        let mut raw: RawFile<RepositoryConfig> =
            toml::from_str(text).map_err(|e| err(describe_toml_error(&e, text, "")))?;
        let mut repository = std::mem::take(&mut raw.repository);
        let backup = raw.backup.take().unwrap_or_default();
        let shared = Shared::build(raw, &src, path).map_err(err)?;
        if let Some(p) = &mut repository.password {
            p.rebase(&shared.base);
        }
        let header = src.header("backup");
        let cfg = shared
            .view(
                View {
                    client: None,
                    repository,
                    backup,
                    place: "[backup]".into(),
                    sources_line: src.key_line(header.clone(), "sources"),
                    excludes_line: src.key_line(header, "excludes"),
                    targets: None,
                    verify: None,
                    retention: None,
                    allowed: None,
                    ping_url: None,
                    contract: None,
                },
                &src,
            )
            .map_err(err)?;
        Ok(vec![cfg])
    }

    /// Every secret reference of the configuration.
    pub fn secrets(&self) -> impl Iterator<Item = &SecretRef> {
        let targets = self.targets.iter().flat_map(|t| match &t.kind {
            TargetKind::Local { .. } | TargetKind::Sftp { .. } => vec![],
            TargetKind::Azblob { key, sas, .. } => key.iter().chain(sas).collect(),
            TargetKind::Smb { password, .. } => vec![password],
            TargetKind::S3 {
                access_key_id,
                secret_access_key,
                ..
            } => vec![access_key_id, secret_access_key],
        });
        self.repository
            .password
            .iter()
            .chain(targets)
            .chain(&self.vault.passphrase)
    }

    /// Settings that weaken protection: shown at every run, so they are not forgotten after a
    /// test.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        // Reading it gives nothing away (a secret is never inline, only referenced); changing
        // it does: its `command:` secrets and hooks run as this user, its targets get the data.
        if let Ok(m) = std::fs::metadata(&self.path)
            && m.permissions().mode() & 0o022 != 0
        {
            out.push(format!(
                "configuration file {} can be changed by other users (mode {:o}), and its \
                 commands and hooks run as this user; `chmod go-w` it",
                self.path.display(),
                m.permissions().mode() & 0o777
            ));
        }
        for t in &self.targets {
            let name = &t.name;
            match &t.kind {
                TargetKind::Sftp {
                    host_key_checking: HostKeyChecking::Off,
                    ..
                } => out.push(format!(
                    "target `{name}`: host_key_checking = \"off\": the server's identity is not checked (not for production)"
                )),
                TargetKind::Smb {
                    security: SmbSecurity::None,
                    ..
                } => out.push(format!(
                    "target `{name}`: security = \"none\": the SMB session is neither signed nor encrypted (not for production)"
                )),
                TargetKind::Azblob { endpoint, .. } | TargetKind::S3 { endpoint, .. }
                    if endpoint.to_ascii_lowercase().starts_with("http://") =>
                {
                    out.push(format!(
                        "target `{name}`: plain http:// endpoint (allow_insecure_http; not for production)"
                    ));
                }
                _ => {}
            }
        }
        out.extend(self.secrets().filter_map(SecretRef::exposure));
        out
    }

    /// The local target whose folder holds `path` (or is it), as both resolve on this machine:
    /// restoring there would overwrite the repository.
    #[must_use]
    pub fn target_holding(&self, path: &Path) -> Option<&TargetConfig> {
        let path = real_path(path);
        self.targets
            .iter()
            .find(|t| overlap::folder(t).is_some_and(|f| overlap::within(&path, &f)))
    }

    /// The target named `name`.
    ///
    /// # Errors
    /// [`Error::Input`] listing the configured names.
    pub fn target(&self, name: &str) -> Result<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name).ok_or_else(|| {
            let names: Vec<_> = self.targets.iter().map(|t| t.name.as_str()).collect();
            Error::Input(format!(
                "no target named `{name}` in {} (configured: {})",
                self.path.display(),
                names.join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config> {
        Config::parse(s, Path::new("/etc/cairn/targets.toml"))
    }

    fn msg(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    const OK: &str = r#"
[repository]
password = "env:PW"

[backup]
sources = ["data", "/srv/x"]

[[target]]
name = "usb"
kind = "local"
path = "usb-disk/cairn"
removable = true
mount_point = "usb-disk"

[[target]]
name = "dc"
kind = "sftp"
host = "backup.example"
user = "cairn"
key_file = "/root/.ssh/id_ed25519"
path = "/srv/cairn"
"#;

    #[test]
    fn a_valid_file_gives_typed_targets_and_absolute_paths() {
        let c = parse(OK).unwrap();
        assert_eq!(c.backup.sources[0], PathBuf::from("/etc/cairn/data"));
        assert_eq!(c.targets.len(), 2);
        match &c.targets[0].kind {
            TargetKind::Local { path, mount_point } => {
                assert_eq!(path, &PathBuf::from("/etc/cairn/usb-disk/cairn"));
                assert_eq!(
                    mount_point.as_deref(),
                    Some(Path::new("/etc/cairn/usb-disk"))
                );
            }
            k => panic!("{k:?}"),
        }
        assert!(!c.targets[0].required, "removable implies optional");
        assert!(c.targets[1].required);
        match &c.targets[1].kind {
            TargetKind::Sftp {
                port,
                host_key_checking,
                ..
            } => {
                assert_eq!(*port, 22);
                assert_eq!(*host_key_checking, HostKeyChecking::Strict);
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn smb_targets_default_to_port_445_and_signing_and_need_a_password() {
        let smb = "[[target]]\nname = \"nas\"\nkind = \"smb\"\nhost = \"nas\"\nshare = \"b\"\nuser = \"u\"\n";
        let c = parse(&format!("{smb}password = \"env:P\"\n")).unwrap();
        match &c.targets[0].kind {
            TargetKind::Smb {
                port,
                security,
                path,
                ..
            } => {
                assert_eq!(*port, 445);
                assert_eq!(*security, SmbSecurity::Sign);
                assert_eq!(path, "");
            }
            k => panic!("{k:?}"),
        }
        let m = msg(smb);
        assert!(m.contains("`password`") && m.contains("smb"), "{m}");
        let m = msg(&format!(
            "{smb}password = \"env:P\"\nsecurity = \"maybe\"\n"
        ));
        assert!(m.contains("line 8"), "{m}");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let m = msg(&OK.replace("removable = true", "removable = true\ncolour = \"red\""));
        assert!(m.contains("line 13") && m.contains("colour"), "{m}");
    }

    #[test]
    fn key_of_another_kind_names_line_and_key() {
        let m = msg(&OK.replace("removable = true", "removable = true\nbucket = \"b\""));
        assert!(
            m.contains("line 13") && m.contains("`bucket`") && m.contains("local"),
            "{m}"
        );
    }

    #[test]
    fn unknown_kind_is_named() {
        let m = msg(&OK.replace("kind = \"sftp\"", "kind = \"ftp\""));
        assert!(
            m.contains("line 17") && m.contains("\"ftp\"") && m.contains("sftp"),
            "{m}"
        );
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let m = msg(&OK.replace("user = \"cairn\"", "user = cairn"));
        assert!(m.contains("line 19"), "{m}");
        assert!(m.contains("targets.toml"), "{m}");
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let m = msg(&OK.replace("removable = true", "removable = \"yes\""));
        assert!(m.contains("line 12"), "{m}");
    }

    #[test]
    fn uploads_in_flight_is_a_count_of_at_least_one() {
        assert_eq!(parse(OK).unwrap().backup.uploads_in_flight, None);
        let four = OK.replace("sources = [", "uploads_in_flight = 4\nsources = [");
        assert_eq!(
            parse(&four)
                .unwrap()
                .backup
                .uploads_in_flight
                .map(std::num::NonZeroUsize::get),
            Some(4)
        );
        let m = msg(&OK.replace("sources = [", "uploads_in_flight = 0\nsources = ["));
        assert!(
            m.contains("line 6") && m.contains("`uploads_in_flight`"),
            "{m}"
        );
    }

    #[test]
    fn inline_secret_is_refused() {
        let m = msg(&OK.replace("env:PW", "hunter2"));
        assert!(m.contains("line 3") && m.contains("reference"), "{m}");
        assert!(
            !m.contains("hunter2"),
            "the rejected value must not be echoed: {m}"
        );
    }

    #[test]
    fn missing_required_key_and_duplicate_names() {
        let m = msg(&OK.replace("user = \"cairn\"\n", ""));
        assert!(m.contains("`user`") && m.contains("dc"), "{m}");
        let m = msg(&OK.replace("name = \"dc\"", "name = \"usb\""));
        assert!(m.contains("used twice") && m.contains("line 16"), "{m}");
        assert!(msg("[repository]\n").contains("no [[target]]"));
    }
}
