//! `targets.toml`: the repository, what to back up, and the targets every snapshot is written to.
//!
//! Parsing is two-stage: serde reads the file into raw tables (unknown keys and wrong types are
//! rejected there, with line and column), then [`Config::load`] checks each target's keys against
//! its kind and builds typed settings. Relative paths are taken from the configuration file's folder.

use std::{
    collections::BTreeSet,
    fmt,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::Spanned;

use crate::{
    error::{Error, Result},
    secret::SecretRef,
};

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
}

/// `[verify]`: the defaults the nightly sample restore uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Files to sample (default 50 when neither this nor `percent` is set).
    pub files: Option<usize>,
    /// Percentage of the files to sample.
    pub percent: Option<f64>,
    /// Byte budget of a sample, e.g. `"2GiB"`.
    pub max_bytes: Option<ByteCount>,
    /// `"latest"` (default), `"all"`, or the number of newest snapshots to sample across.
    pub snapshots: Option<SnapshotSelection>,
    /// Targets to verify (default: all).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Shell command run when a verification fails or a target is unreachable; `$1` is the
    /// report's path.
    pub on_failure: Option<String>,
    /// Folder to restore sampled files into (default: a scratch folder, removed afterwards).
    pub restore_to: Option<PathBuf>,
}

/// A byte count written as `"2GiB"`, `"500 MB"` or a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteCount(pub u64);

impl std::str::FromStr for ByteCount {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| Self(b.as_u64()))
            .map_err(|e| format!("{s:?} is not a size like \"2GiB\": {e}"))
    }
}

impl<'de> Deserialize<'de> for ByteCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Which snapshots a verification samples across.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSelection {
    /// The newest snapshot.
    Latest,
    /// The N newest.
    Newest(usize),
    /// Every snapshot.
    All,
}

impl std::str::FromStr for SnapshotSelection {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "latest" => Ok(Self::Latest),
            "all" => Ok(Self::All),
            n => match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Self::Newest(n)),
                _ => Err(format!(
                    "{s:?}: expected \"latest\", \"all\" or a number of snapshots"
                )),
            },
        }
    }
}

impl<'de> Deserialize<'de> for SnapshotSelection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string().parse().map_err(serde::de::Error::custom),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `[repository]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A label for messages and reports.
    #[serde(default)]
    pub name: Option<String>,
    /// The repository password; without it, `CAIRN_PASSWORD` is used.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Host name recorded in snapshots (default: this machine's).
    #[serde(default)]
    pub host: Option<String>,
}

/// `[backup]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Files and folders to back up.
    #[serde(default)]
    pub sources: Vec<PathBuf>,
    /// Glob patterns to leave out (gitignore-like, matched against full paths).
    #[serde(default)]
    pub excludes: Vec<String>,
    /// Tags added to every snapshot.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Folders holding a file of one of these names are left out.
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
    /// Do not cross filesystem boundaries.
    #[serde(default)]
    pub one_file_system: bool,
}

/// One `[[target]]`, validated.
#[derive(Clone)]
pub struct TargetConfig {
    /// Unique name, used in messages, reports and `--from`.
    pub name: String,
    /// Whether a backup that does not reach this target counts as only partially done.
    pub required: bool,
    /// Extra attempts after a transient failure.
    pub retries: usize,
    /// Time limit for one operation (one attempt).
    pub timeout: Duration,
    /// Kind-specific settings.
    pub kind: TargetKind,
}

/// The kind-specific settings of a target.
#[derive(Clone, Debug)]
pub enum TargetKind {
    /// A local folder, possibly on a removable disk.
    Local {
        /// The folder holding the repository.
        path: PathBuf,
        /// A USB disk's mount point (`removable = true`): the target is used only while a
        /// filesystem is mounted exactly there.
        mount_point: Option<PathBuf>,
    },
    /// An SFTP server (OpenSSH).
    Sftp {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// Login name.
        user: String,
        /// Private key file.
        key_file: PathBuf,
        /// Folder on the server.
        path: String,
        /// Host-key policy.
        host_key_checking: HostKeyChecking,
    },
    /// Azure Blob Storage.
    Azblob {
        /// e.g. `https://ACCOUNT.blob.core.windows.net`.
        endpoint: String,
        /// Storage account name.
        account: String,
        /// Container (must exist).
        container: String,
        /// Prefix inside the container.
        path: String,
        /// Shared account key.
        key: Option<SecretRef>,
        /// SAS token.
        sas: Option<SecretRef>,
    },
    /// A NAS share over SMB2/3 (spoken natively; no mount needed).
    Smb {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// Share name.
        share: String,
        /// Folder inside the share.
        path: String,
        /// Login name.
        user: String,
        /// Domain or workgroup (empty for a local account).
        domain: String,
        /// Password.
        password: SecretRef,
        /// What the session must be protected by.
        security: SmbSecurity,
    },
    /// An S3-compatible object store.
    S3 {
        /// e.g. `https://s3.eu-central-1.amazonaws.com`.
        endpoint: String,
        /// Bucket (must exist).
        bucket: String,
        /// Region.
        region: String,
        /// Prefix inside the bucket.
        path: String,
        /// Access key id.
        access_key_id: SecretRef,
        /// Secret access key.
        secret_access_key: SecretRef,
        /// `https://BUCKET.endpoint/` instead of `https://endpoint/BUCKET/`.
        virtual_host_style: bool,
    },
}

/// What an SMB session must be protected by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmbSecurity {
    /// Signing or encryption (the default).
    Sign,
    /// Encryption.
    Encrypt,
    /// Neither (not for production).
    None,
}

/// How an SFTP target checks the server's host key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyChecking {
    /// The key must already be in `~/.ssh/known_hosts` (the default).
    Strict,
    /// An unknown host's key is added; a changed key is refused.
    AcceptNew,
    /// No check (not for production).
    Off,
}

impl TargetKind {
    /// The kind's name as written in `kind = "..."`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Local { .. } => "local",
            Self::Sftp { .. } => "sftp",
            Self::Azblob { .. } => "azblob",
            Self::Smb { .. } => "smb",
            Self::S3 { .. } => "s3",
        }
    }
}

// Written by hand so a future inline secret could never leak through `{:?}`.
impl fmt::Debug for TargetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetConfig")
            .field("name", &self.name)
            .field("required", &self.required)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

const KINDS: &str = "local, sftp, smb, azblob, s3";
const DEFAULT_RETRIES: usize = 3;
const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Upper bounds: with the longest backoff, 10 retries of 600 s attempts already take 110 minutes.
const MAX_RETRIES: usize = 10;
const MAX_TIMEOUT_SECS: u64 = 600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    repository: RepositoryConfig,
    #[serde(default)]
    backup: BackupConfig,
    #[serde(default)]
    target: Vec<Spanned<RawTarget>>,
    verify: Option<Spanned<VerifyConfig>>,
}

// Every key of every kind; which ones a kind accepts is checked in `RawTarget::build`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Spanned<String>,
    kind: Spanned<String>,
    required: Option<bool>,
    retries: Option<usize>,
    timeout: Option<u64>,
    path: Option<String>,
    removable: Option<bool>,
    mount_point: Option<PathBuf>,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    key_file: Option<PathBuf>,
    host_key_checking: Option<HostKeyChecking>,
    endpoint: Option<String>,
    account: Option<String>,
    container: Option<String>,
    key: Option<SecretRef>,
    sas: Option<SecretRef>,
    bucket: Option<String>,
    region: Option<String>,
    access_key_id: Option<SecretRef>,
    secret_access_key: Option<SecretRef>,
    virtual_host_style: Option<bool>,
    allow_insecure_http: Option<bool>,
    share: Option<String>,
    domain: Option<String>,
    password: Option<SecretRef>,
    security: Option<SmbSecurity>,
}

/// Position helper: byte offsets to 1-based line numbers of the source text.
struct Source<'a> {
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The line of `key = ...` in the table whose header starts at `span` (toml's span of an
    /// array-of-tables entry may cover only its header, so search until the next header).
    fn key_line(&self, span: std::ops::Range<usize>, key: &str) -> usize {
        let start = span.start.min(self.text.len());
        let mut offset = start;
        for (n, line) in self.text[start..].split_inclusive('\n').enumerate() {
            let t = line.trim_start();
            if n > 0 && t.starts_with('[') {
                break;
            }
            if t.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
            {
                return self.line_of(offset);
            }
            offset += line.len();
        }
        self.line_of(start)
    }
}

impl RawTarget {
    fn present_keys(&self) -> Vec<&'static str> {
        let keys: [(&'static str, bool); 26] = [
            ("required", self.required.is_some()),
            ("retries", self.retries.is_some()),
            ("timeout", self.timeout.is_some()),
            ("path", self.path.is_some()),
            ("removable", self.removable.is_some()),
            ("mount_point", self.mount_point.is_some()),
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("user", self.user.is_some()),
            ("key_file", self.key_file.is_some()),
            ("host_key_checking", self.host_key_checking.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("account", self.account.is_some()),
            ("container", self.container.is_some()),
            ("key", self.key.is_some()),
            ("sas", self.sas.is_some()),
            ("bucket", self.bucket.is_some()),
            ("region", self.region.is_some()),
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
            ("virtual_host_style", self.virtual_host_style.is_some()),
            ("allow_insecure_http", self.allow_insecure_http.is_some()),
            ("share", self.share.is_some()),
            ("domain", self.domain.is_some()),
            ("password", self.password.is_some()),
            ("security", self.security.is_some()),
        ];
        keys.into_iter()
            .filter(|(_, p)| *p)
            .map(|(k, _)| k)
            .collect()
    }

    fn build(
        self,
        span: std::ops::Range<usize>,
        src: &Source<'_>,
        base: &Path,
    ) -> std::result::Result<TargetConfig, String> {
        let name = self.name.get_ref().clone();
        let at = |key: &str| format!("line {}: target `{name}`", src.key_line(span.clone(), key));
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "line {}: key `name`: target name {name:?} must be letters, digits, `-` or `_`",
                src.line_of(self.name.span().start)
            ));
        }
        let kind = self.kind.get_ref().as_str();
        let allowed: &[&str] = match kind {
            "local" => &["path", "removable", "mount_point"],
            "sftp" => &[
                "host",
                "port",
                "user",
                "key_file",
                "path",
                "host_key_checking",
            ],
            "smb" => &[
                "host", "port", "share", "path", "user", "domain", "password", "security",
            ],
            "azblob" => &[
                "endpoint",
                "account",
                "container",
                "path",
                "key",
                "sas",
                "allow_insecure_http",
            ],
            "s3" => &[
                "endpoint",
                "bucket",
                "region",
                "path",
                "access_key_id",
                "secret_access_key",
                "virtual_host_style",
                "allow_insecure_http",
            ],
            other => {
                return Err(format!(
                    "line {}: target `{name}`: key `kind`: unknown target kind {other:?}; expected one of {KINDS}",
                    src.line_of(self.kind.span().start)
                ));
            }
        };
        const COMMON: [&str; 3] = ["required", "retries", "timeout"];
        for key in self.present_keys() {
            if !COMMON.contains(&key) && !allowed.contains(&key) {
                return Err(format!(
                    "{}: key `{key}` does not apply to kind = \"{kind}\" (its keys: {})",
                    at(key),
                    allowed.join(", ")
                ));
            }
        }
        let need = |v: Option<String>, key: &str| {
            v.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                format!(
                    "{}: key `{key}` is required for kind = \"{kind}\"",
                    at("kind")
                )
            })
        };
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(
                endpoint,
                self.allow_insecure_http == Some(true),
                self.sas.is_some(),
            )
            .map_err(|why| format!("{}: key `endpoint`: {why}", at("endpoint")))?;
        }
        let abs = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let prefix = |p: Option<String>| p.unwrap_or_default().trim_matches('/').to_string();
        let removable = self.removable.unwrap_or(false);
        let kind = match kind {
            "local" => {
                let path = abs(need(self.path, "path")?.into());
                if self.mount_point.is_some() && !removable {
                    return Err(format!(
                        "{}: key `mount_point` needs removable = true",
                        at("mount_point")
                    ));
                }
                // No default: whether the repository sits at the disk's root or in a folder on
                // it cannot be guessed, and a wrong guess writes to the wrong filesystem.
                if removable && self.mount_point.is_none() {
                    return Err(format!(
                        "{}: key `mount_point` is required with removable = true: the folder the \
                         disk is mounted at (`{}` itself, or a folder above it)",
                        at("removable"),
                        path.display()
                    ));
                }
                let mount_point = self.mount_point.filter(|_| removable).map(abs);
                if let Some(m) = &mount_point
                    && !path.starts_with(m)
                {
                    return Err(format!(
                        "{}: key `mount_point`: {} is not {} or a folder above it",
                        at("mount_point"),
                        m.display(),
                        path.display()
                    ));
                }
                TargetKind::Local { path, mount_point }
            }
            "sftp" => TargetKind::Sftp {
                host: need(self.host, "host")?,
                port: self.port.unwrap_or(22),
                user: need(self.user, "user")?,
                key_file: abs(self.key_file.ok_or_else(|| {
                    format!(
                        "{}: key `key_file` is required for kind = \"sftp\"",
                        at("kind")
                    )
                })?),
                path: need(self.path, "path")?,
                host_key_checking: self.host_key_checking.unwrap_or(HostKeyChecking::Strict),
            },
            "smb" => TargetKind::Smb {
                host: need(self.host, "host")?,
                port: self.port.unwrap_or(445),
                share: need(self.share, "share")?,
                path: prefix(self.path),
                user: need(self.user, "user")?,
                domain: self.domain.unwrap_or_default(),
                password: {
                    let mut p = self.password.ok_or_else(|| {
                        format!(
                            "{}: key `password` is required for kind = \"smb\"",
                            at("kind")
                        )
                    })?;
                    p.rebase(base);
                    p
                },
                security: self.security.unwrap_or(SmbSecurity::Sign),
            },
            "azblob" => {
                if self.key.is_some() == self.sas.is_some() {
                    return Err(format!(
                        "{}: exactly one of `key` and `sas` is required for kind = \"azblob\"",
                        at("kind")
                    ));
                }
                let rebase = |s: Option<SecretRef>| {
                    s.map(|mut s| {
                        s.rebase(base);
                        s
                    })
                };
                TargetKind::Azblob {
                    endpoint: need(self.endpoint, "endpoint")?,
                    account: need(self.account, "account")?,
                    container: need(self.container, "container")?,
                    path: prefix(self.path),
                    key: rebase(self.key),
                    sas: rebase(self.sas),
                }
            }
            _ => {
                let secret = |s: Option<SecretRef>, key: &str| {
                    let mut s = s.ok_or_else(|| {
                        format!("{}: key `{key}` is required for kind = \"s3\"", at("kind"))
                    })?;
                    s.rebase(base);
                    Ok::<_, String>(s)
                };
                TargetKind::S3 {
                    endpoint: need(self.endpoint, "endpoint")?,
                    bucket: need(self.bucket, "bucket")?,
                    region: need(self.region, "region")?,
                    path: prefix(self.path),
                    access_key_id: secret(self.access_key_id, "access_key_id")?,
                    secret_access_key: secret(self.secret_access_key, "secret_access_key")?,
                    virtual_host_style: self.virtual_host_style.unwrap_or(false),
                }
            }
        };
        // Each attempt may take `timeout`: a large count turns one dead server into hours.
        if self.retries.is_some_and(|r| r > MAX_RETRIES) {
            return Err(format!(
                "{}: key `retries` must be at most {MAX_RETRIES}",
                at("retries")
            ));
        }
        if self.timeout.is_some_and(|t| t > MAX_TIMEOUT_SECS) {
            return Err(format!(
                "{}: key `timeout` must be at most {MAX_TIMEOUT_SECS} (seconds)",
                at("timeout")
            ));
        }
        if self.timeout == Some(0) {
            return Err(format!(
                "{}: key `timeout` must be at least 1 (seconds)",
                at("timeout")
            ));
        }
        Ok(TargetConfig {
            name,
            // A removable disk is absent half the week; that alone must not fail the nightly job.
            required: self.required.unwrap_or(!removable),
            retries: self.retries.unwrap_or(DEFAULT_RETRIES),
            timeout: Duration::from_secs(self.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS)),
            kind,
        })
    }
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
    ///
    /// # Errors
    /// [`Error::Config`] naming the line and key of the first problem found.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let err = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| err(describe_toml_error(&e, text)))?;
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
        for t in raw.target {
            let span = t.span();
            let name_line = src.line_of(t.get_ref().name.span().start);
            let target = t.into_inner().build(span, &src, &base).map_err(err)?;
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
        backup.sources = backup
            .sources
            .into_iter()
            .map(|p| if p.is_relative() { base.join(p) } else { p })
            .collect();
        let cfg = Self {
            path: path.to_path_buf(),
            repository,
            backup,
            targets,
            verify,
        };
        for secret in cfg.secrets() {
            secret.register();
        }
        Ok(cfg)
    }

    /// Every secret reference of the configuration.
    fn secrets(&self) -> impl Iterator<Item = &SecretRef> {
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
        self.repository.password.iter().chain(targets)
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

// toml's own message carries line, column and a snippet; keep it, on one line per part.
/// An object store's endpoint must be `https://`; `http://` only when asked for by name (a test
/// server on loopback), and never with a SAS token, which would cross the wire in the URL.
fn check_endpoint(endpoint: &str, allow_http: bool, sas: bool) -> std::result::Result<(), String> {
    let lower = endpoint.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    if !lower.starts_with("http://") {
        return Err(format!("{endpoint:?} must start with https://"));
    }
    if sas {
        return Err("a SAS token is never sent over plain http://; use https://".into());
    }
    if !allow_http {
        return Err(
            "plain http:// sends the data's metadata and the credentials' signatures unencrypted; \
             use https://, or set allow_insecure_http = true (a test server on loopback)"
                .into(),
        );
    }
    Ok(())
}

/// Keys whose value is a secret reference: an error about them never repeats the value (it may
/// be a password pasted inline).
const SECRET_KEYS: [&str; 5] = [
    "password",
    "key",
    "sas",
    "access_key_id",
    "secret_access_key",
];

fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let at = e.span().map(|s| s.start.min(text.len()));
    let line = at.map(|a| text[..a].matches('\n').count() + 1);
    let msg = e.message().trim();
    let key = at.and_then(|a| {
        let start = text[..a].rfind('\n').map_or(0, |i| i + 1);
        let (key, _) = text[start..].lines().next()?.split_once('=')?;
        let key = key.trim().trim_matches('"');
        SECRET_KEYS.contains(&key).then_some(key)
    });
    match (line, key) {
        (Some(l), Some(key)) => format!(
            "line {l}: key `{key}`: not a valid secret reference (the value is not shown); \
             write `env:NAME`, `file:PATH` or `command:CMD` in quotes"
        ),
        (Some(l), None) => format!("line {l}: {msg}"),
        _ => msg.to_string(),
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
