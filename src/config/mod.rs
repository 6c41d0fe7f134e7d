//! `targets.toml`: the repository, what to back up, and the targets every snapshot is written to.
//!
//! Parsing is two-stage: serde reads the file (unknown keys and wrong types are rejected there,
//! with their line), taking only each target's name and kind; then each `[[target]]` table is
//! read again by its kind's settings type, which owns its keys ([`target`]). Relative paths are
//! taken from the configuration file's folder.

use std::{
    collections::BTreeSet,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use crate::{
    error::{Error, Result},
    secret::SecretRef,
};

mod job;
mod overlap;
mod sections;
mod target;
mod text;

pub use job::{DEFAULT_HOOK_TIMEOUT, LogConfig, MetricsConfig, NotifyConfig, ScheduleConfig};
pub use overlap::real_path;
pub use sections::{
    BackupConfig, ByteCount, LockoutPolicy, RepositoryConfig, RetentionConfig, SnapshotSelection,
    VaultSettings, VerifyConfig,
};
use sections::{SecurityConfig, VaultConfig};
use text::Source;
pub(crate) use text::describe_toml_error;

pub use target::{HostKeyChecking, SmbSecurity, TargetConfig, TargetKind};

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
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
    /// Prometheus text-file output.
    pub metrics: MetricsConfig,
    /// The run log.
    pub log: LogConfig,
    /// The systemd timers.
    pub schedule: ScheduleConfig,
    /// The credentials vault.
    pub vault: VaultSettings,
    /// Lockout after wrong passwords.
    pub lockout: LockoutPolicy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    repository: RepositoryConfig,
    #[serde(default)]
    backup: BackupConfig,
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
    schedule: ScheduleConfig,
    #[serde(default)]
    vault: VaultConfig,
    security: Option<Spanned<SecurityConfig>>,
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// [`Error::Config`] naming the file, line and key of the first problem found.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Validates configuration text; `path` is used for messages and as the base of relative paths.
    /// Nothing else happens: no secret is read, no state is touched.
    ///
    /// # Errors
    /// [`Error::Config`] naming the line and key of the first problem found.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let err = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawFile =
            toml::from_str(text).map_err(|e| err(describe_toml_error(&e, text, "")))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let base = std::path::absolute(&base).unwrap_or(base);
        let src = Source { text };

        if raw.target.is_empty() {
            return Err(err("no [[target]] is configured".into()));
        }
        let mut names = BTreeSet::new();
        let mut targets = Vec::new();
        let mut target_lines = Vec::new();
        for t in raw.target {
            let head = t.get_ref();
            let name_line = src.line_of(head.name.span().start);
            let table = target::Table {
                src: &src,
                span: t.span(),
                name: head.name.get_ref(),
                kind: head.kind.get_ref(),
                base: &base,
            };
            let target = target::build(head, &table).map_err(err)?;
            target_lines.push(src.key_line(t.span(), "path"));
            if !names.insert(target.name.clone()) {
                return Err(err(format!(
                    "line {name_line}: key `name`: target name `{}` is used twice",
                    target.name
                )));
            }
            targets.push(target);
        }

        let (verify_span, mut verify) = raw.verify.map_or((0..0, VerifyConfig::default()), |v| {
            (v.span(), v.into_inner())
        });
        for name in &verify.targets {
            if !names.contains(name) {
                return Err(err(format!(
                    "line {}: [verify] key `targets`: no target named `{name}`",
                    src.key_line(verify_span.clone(), "targets")
                )));
            }
        }
        if verify.files == Some(0) {
            return Err(err(format!(
                "line {}: [verify] key `files` must be at least 1 (an empty sample proves nothing)",
                src.key_line(verify_span.clone(), "files")
            )));
        }
        if verify.percent.is_some_and(|p| !(p > 0.0 && p <= 100.0)) {
            return Err(err(format!(
                "line {}: [verify] key `percent` must be more than 0 and at most 100",
                src.key_line(verify_span, "percent")
            )));
        }
        verify.restore_to = verify
            .restore_to
            .map(|p| if p.is_relative() { base.join(p) } else { p });
        let mut repository = raw.repository;
        if let Some(p) = &mut repository.password {
            p.rebase(&base);
        }
        let mut backup = raw.backup;
        if backup.sources.iter().any(|p| p.as_os_str().is_empty()) {
            return Err(err(format!(
                "line {}: [backup] key `sources`: an empty path names the configuration's own \
                 folder (and the targets in it); name each folder to back up",
                src.key_line(src.header("backup"), "sources")
            )));
        }
        for g in &backup.excludes {
            let compiles = rustic_core::Excludes::default()
                .globs(vec![format!("!{g}")])
                .as_override()
                .is_ok();
            if !compiles {
                return Err(err(format!(
                    "line {}: [backup] key `excludes`: {g:?} is not a valid pattern (an \
                     unclosed `[` or `{{`?)",
                    src.key_line(src.header("backup"), "excludes")
                )));
            }
        }
        backup.sources = backup
            .sources
            .into_iter()
            .map(|p| if p.is_relative() { base.join(p) } else { p })
            .collect();
        let (notify_span, notify) = raw.notify.map_or((0..0, NotifyConfig::default()), |n| {
            (n.span(), n.into_inner())
        });
        if let Some(url) = &notify.ping_url {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://")) {
                return Err(err(format!(
                    "line {}: [notify] key `ping_url` must be an http:// or https:// URL",
                    src.key_line(notify_span.clone(), "ping_url")
                )));
            }
        }
        if notify.timeout == Some(0) {
            return Err(err(format!(
                "line {}: [notify] key `timeout` must be at least 1 (seconds)",
                src.key_line(notify_span, "timeout")
            )));
        }
        let mut metrics = raw.metrics;
        metrics.path = metrics
            .path
            .map(|p| if p.is_relative() { base.join(p) } else { p });
        let mut vault_passphrase = raw.vault.passphrase;
        if let Some(p) = &mut vault_passphrase {
            if matches!(p, SecretRef::Vault(_)) {
                return Err(err(
                    "[vault] key `passphrase`: the vault's passphrase cannot be kept in the vault"
                        .into(),
                ));
            }
            p.rebase(&base);
        }
        let vault = VaultSettings {
            path: raw.vault.path.map_or_else(
                || base.join("cairn.vault"),
                |p| if p.is_relative() { base.join(p) } else { p },
            ),
            passphrase: vault_passphrase,
        };
        let mut lockout = LockoutPolicy::default();
        if let Some(sec) = raw.security {
            let span = sec.span();
            let sec = sec.into_inner();
            if let Some(n) = sec.lockout_attempts {
                if n == 0 {
                    return Err(err(format!(
                        "line {}: [security] key `lockout_attempts` must be at least 1",
                        src.key_line(span, "lockout_attempts")
                    )));
                }
                lockout.attempts = n;
            }
            if let Some(d) = &sec.lockout_for {
                lockout.lock_for = d
                    .parse::<jiff::SignedDuration>()
                    .ok()
                    .filter(|d| d.is_positive())
                    .ok_or_else(|| {
                        err(format!(
                            "line {}: [security] key `lockout_for`: {d:?} is not a duration \
                             like \"15m\", \"1h\" or \"30s\"",
                            src.key_line(span.clone(), "lockout_for")
                        ))
                    })?;
            }
        }
        overlap::check(&targets, &target_lines, &backup, &verify, &src).map_err(err)?;
        let cfg = Self {
            path: path.to_path_buf(),
            repository,
            backup,
            targets,
            verify,
            retention: raw.retention,
            notify,
            metrics,
            log: raw.log,
            schedule: raw.schedule,
            vault,
            lockout,
        };
        Ok(cfg)
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
        if let Ok(m) = std::fs::metadata(&self.path)
            && m.permissions().mode() & 0o004 != 0
        {
            out.push(format!(
                "configuration file {} is readable by everyone (mode {:o}); `chmod o-r` it",
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
