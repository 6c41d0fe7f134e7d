//! One `[[target]]`: its common keys, and one settings type per storage kind that owns its own
//! keys. A kind is added in one place: its settings struct and a line in [`KINDS`].

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, de::DeserializeOwned};

use super::text::{Source, check_endpoint, describe_toml_error};
use crate::secret::SecretRef;

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
    /// Where it is, as its `region` says (`"nl"`, `"eu-west"`): checked against the allowed
    /// regions ([`super::residency`]).
    pub region: Option<String>,
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
        /// The server lets this account create and read files but not remove, rename or
        /// change them (`append_only = true`): cairn then adds files only.
        append_only: bool,
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
        /// The bucket's Object Lock, which every write must find in force.
        object_lock: Option<ObjectLock>,
    },
}

/// `object_lock = { mode = "compliance", days = 30 }`: what an S3 target's bucket must enforce
/// on every object cairn writes (by its default retention), so that whoever holds this
/// machine's credentials cannot destroy a version for `days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLock {
    /// `compliance` (nobody can shorten or lift it) or `governance` (lifted by credentials
    /// allowed to bypass it).
    pub mode: LockMode,
    /// The shortest retention every new object must get.
    pub days: u32,
}

/// S3 Object Lock's retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// No one, root included, can delete a locked version early.
    Compliance,
    /// Credentials with `s3:BypassGovernanceRetention` can.
    Governance,
}

impl LockMode {
    /// As S3 writes it.
    #[must_use]
    pub fn s3_name(self) -> &'static str {
        match self {
            Self::Compliance => "COMPLIANCE",
            Self::Governance => "GOVERNANCE",
        }
    }
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

impl TargetConfig {
    /// Whether it claims to survive its own credentials (S3 `object_lock`, SFTP
    /// `append_only`): `check --immutability` proves it.
    #[must_use]
    pub fn claims_protection(&self) -> bool {
        self.locks()
            || matches!(
                self.kind,
                TargetKind::Sftp {
                    append_only: true,
                    ..
                }
            )
    }

    /// Whether its storage locks what it holds (S3 `object_lock`).
    #[must_use]
    pub fn locks(&self) -> bool {
        matches!(
            self.kind,
            TargetKind::S3 {
                object_lock: Some(_),
                ..
            }
        )
    }

    /// Whether it is a removable disk (a local folder with a mount point): away by design.
    #[must_use]
    pub fn is_removable(&self) -> bool {
        matches!(
            self.kind,
            TargetKind::Local {
                mount_point: Some(_),
                ..
            }
        )
    }

    /// This target with its path moved into `folder`: where one of several repositories lives.
    #[must_use]
    pub fn within(&self, folder: &str) -> Self {
        let mut t = self.clone();
        let join = |p: &mut String| {
            let base = p.trim_end_matches('/');
            *p = if base.is_empty() {
                folder.to_string()
            } else {
                format!("{base}/{folder}")
            };
        };
        match &mut t.kind {
            TargetKind::Local { path, .. } => *path = path.join(folder),
            TargetKind::Sftp { path, .. }
            | TargetKind::Azblob { path, .. }
            | TargetKind::Smb { path, .. }
            | TargetKind::S3 { path, .. } => join(path),
        }
        t
    }
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

const DEFAULT_RETRIES: usize = 3;
const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Upper bounds: with the longest backoff, 10 retries of 600 s attempts already take 110 minutes.
const MAX_RETRIES: usize = 10;
const MAX_TIMEOUT_SECS: u64 = 600;

/// The kinds, each with the reader of its settings.
const KINDS: [(&str, ReadKind); 5] = [
    ("local", read::<Local>),
    ("sftp", read::<Sftp>),
    ("smb", read::<Smb>),
    ("azblob", read::<Azblob>),
    ("s3", read::<S3>),
];

type ReadKind = fn(&Table<'_>) -> Result<(Common, TargetKind), String>;

/// What the first pass reads of a `[[target]]`: enough to name it and pick its kind.
#[derive(Deserialize)]
pub(super) struct Head {
    pub name: toml::Spanned<String>,
    pub kind: toml::Spanned<String>,
}

/// Keys every kind has.
struct Common {
    name: String,
    required: Option<bool>,
    retries: Option<usize>,
    timeout: Option<u64>,
    region: Option<String>,
}

/// One target's table within the file, for reading it again by its kind's settings type.
pub(super) struct Table<'a> {
    pub src: &'a Source<'a>,
    pub span: std::ops::Range<usize>,
    pub name: &'a str,
    pub kind: &'a str,
    pub base: &'a Path,
}

impl Table<'_> {
    /// `line N: target `x``, the line being that of `key` (or the table's header).
    fn at(&self, key: &str) -> String {
        format!(
            "line {}: target `{}`",
            self.src.key_line(self.span.clone(), key),
            self.name
        )
    }

    fn abs(&self, p: PathBuf) -> PathBuf {
        if p.is_relative() {
            self.base.join(p)
        } else {
            p
        }
    }

    fn secret(&self, mut s: SecretRef) -> SecretRef {
        s.rebase(self.base);
        s
    }

    /// The file with every line outside this table blanked: toml then reports errors at
    /// their true lines.
    fn alone(&self) -> String {
        let text = self.src.text;
        let std::ops::Range { start, end } = self.src.table(self.span.clone());
        let blank = |t: &str| t.chars().filter(|c| *c == '\n').collect::<String>();
        format!(
            "{}{}{}",
            blank(&text[..start]),
            &text[start..end],
            blank(&text[end..])
        )
    }
}

/// A kind's settings: its own keys (serde refuses any other), and how they become a
/// [`TargetKind`].
trait Settings: DeserializeOwned + CommonKeys {
    fn build(self, t: &Table<'_>) -> Result<TargetKind, String>;
    /// Whether the target is required unless `required` says otherwise.
    fn required_by_default(&self) -> bool {
        true
    }
}

/// The keys every kind has, as the [`settings!`] macro gives each settings type.
trait CommonKeys {
    fn common(&self) -> Common;
}

fn read<S: Settings>(t: &Table<'_>) -> Result<(Common, TargetKind), String> {
    #[derive(Deserialize)]
    struct One<S> {
        target: Vec<S>,
    }
    let alone = t.alone();
    let one: One<S> = toml::from_str(&alone).map_err(|e| {
        let place = format!("target `{}` (kind = \"{}\"): ", t.name, t.kind);
        describe_toml_error(&e, &alone, &place)
    })?;
    let settings = one
        .target
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: empty table", t.at("name")))?;
    let mut common = settings.common();
    common.required = common.required.or(Some(settings.required_by_default()));
    Ok((common, settings.build(t)?))
}

/// A settings struct with the common keys and the kind's own.
macro_rules! settings {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct $name {
            name: String,
            kind: String,
            required: Option<bool>,
            retries: Option<usize>,
            timeout: Option<u64>,
            region: Option<String>,
            $($(#[$fdoc])* $field: $ty,)*
        }
        impl CommonKeys for $name {
            fn common(&self) -> Common {
                Common {
                    name: self.name.clone(),
                    required: self.required,
                    retries: self.retries,
                    timeout: self.timeout,
                    region: self.region.clone(),
                }
            }
        }
    };
}

settings!(
    /// `kind = "local"`: a folder, possibly on a removable disk.
    Local {
        path: String,
        removable: Option<bool>,
        mount_point: Option<PathBuf>,
    }
);

impl Settings for Local {
    // A removable disk is absent half the week; that alone must not fail the nightly job.
    fn required_by_default(&self) -> bool {
        !self.removable.unwrap_or(false)
    }
    fn build(self, t: &Table<'_>) -> Result<TargetKind, String> {
        let path = t.abs(nonempty(self.path, "path", t)?.into());
        let removable = self.removable.unwrap_or(false);
        if self.mount_point.is_some() && !removable {
            return Err(format!(
                "{}: key `mount_point` needs removable = true",
                t.at("mount_point")
            ));
        }
        // No default: whether the repository sits at the disk's root or in a folder on it
        // cannot be guessed, and a wrong guess writes to the wrong filesystem.
        if removable && self.mount_point.is_none() {
            return Err(format!(
                "{}: key `mount_point` is required with removable = true: the folder the \
                 disk is mounted at (`{}` itself, or a folder above it)",
                t.at("removable"),
                path.display()
            ));
        }
        let mount_point = self.mount_point.map(|m| t.abs(m));
        if let Some(m) = &mount_point
            && !path.starts_with(m)
        {
            return Err(format!(
                "{}: key `mount_point`: {} is not {} or a folder above it",
                t.at("mount_point"),
                m.display(),
                path.display()
            ));
        }
        Ok(TargetKind::Local { path, mount_point })
    }
}

settings!(
    /// `kind = "sftp"`: an OpenSSH server.
    Sftp {
        host: String,
        port: Option<u16>,
        user: String,
        key_file: PathBuf,
        path: String,
        host_key_checking: Option<HostKeyChecking>,
        append_only: Option<bool>,
    }
);

impl Settings for Sftp {
    fn build(self, t: &Table<'_>) -> Result<TargetKind, String> {
        Ok(TargetKind::Sftp {
            host: nonempty(self.host, "host", t)?,
            port: self.port.unwrap_or(22),
            user: nonempty(self.user, "user", t)?,
            key_file: t.abs(self.key_file),
            path: nonempty(self.path, "path", t)?,
            host_key_checking: self.host_key_checking.unwrap_or(HostKeyChecking::Strict),
            append_only: self.append_only.unwrap_or(false),
        })
    }
}

settings!(
    /// `kind = "smb"`: a NAS share.
    Smb {
        host: String,
        port: Option<u16>,
        share: String,
        path: Option<String>,
        user: String,
        domain: Option<String>,
        password: SecretRef,
        security: Option<SmbSecurity>,
    }
);

impl Settings for Smb {
    fn build(self, t: &Table<'_>) -> Result<TargetKind, String> {
        Ok(TargetKind::Smb {
            host: nonempty(self.host, "host", t)?,
            port: self.port.unwrap_or(445),
            share: nonempty(self.share, "share", t)?,
            path: prefix(self.path),
            user: nonempty(self.user, "user", t)?,
            domain: self.domain.unwrap_or_default(),
            password: t.secret(self.password),
            security: self.security.unwrap_or(SmbSecurity::Sign),
        })
    }
}

settings!(
    /// `kind = "azblob"`: Azure Blob Storage.
    Azblob {
        endpoint: String,
        account: String,
        container: String,
        path: Option<String>,
        key: Option<SecretRef>,
        sas: Option<SecretRef>,
        allow_insecure_http: Option<bool>,
    }
);

impl Settings for Azblob {
    fn build(self, t: &Table<'_>) -> Result<TargetKind, String> {
        if self.key.is_some() == self.sas.is_some() {
            return Err(format!(
                "{}: exactly one of `key` and `sas` is required for kind = \"azblob\"",
                t.at("kind")
            ));
        }
        endpoint(
            &self.endpoint,
            self.allow_insecure_http,
            self.sas.is_some(),
            t,
        )?;
        Ok(TargetKind::Azblob {
            endpoint: nonempty(self.endpoint, "endpoint", t)?,
            account: nonempty(self.account, "account", t)?,
            container: nonempty(self.container, "container", t)?,
            path: prefix(self.path),
            key: self.key.map(|s| t.secret(s)),
            sas: self.sas.map(|s| t.secret(s)),
        })
    }
}

settings!(
    /// `kind = "s3"`: an S3-compatible object store.
    S3 {
        endpoint: String,
        bucket: String,
        /// The region requests are signed for, when `region` (where the target is) is not it.
        s3_region: Option<String>,
        path: Option<String>,
        access_key_id: SecretRef,
        secret_access_key: SecretRef,
        virtual_host_style: Option<bool>,
        allow_insecure_http: Option<bool>,
        object_lock: Option<ObjectLock>,
    }
);

impl Settings for S3 {
    fn build(self, t: &Table<'_>) -> Result<TargetKind, String> {
        endpoint(&self.endpoint, self.allow_insecure_http, false, t)?;
        Ok(TargetKind::S3 {
            endpoint: nonempty(self.endpoint, "endpoint", t)?,
            bucket: nonempty(self.bucket, "bucket", t)?,
            region: match self.s3_region.or(self.region) {
                Some(r) => nonempty(r, "region", t)?,
                None => {
                    return Err(format!(
                        "{}: key `region` is required for kind = \"s3\" (the bucket's region; \
                         `s3_region` when `region` names the place another way)",
                        t.at("region")
                    ));
                }
            },
            path: prefix(self.path),
            access_key_id: t.secret(self.access_key_id),
            secret_access_key: t.secret(self.secret_access_key),
            virtual_host_style: self.virtual_host_style.unwrap_or(false),
            object_lock: match self.object_lock {
                Some(l) if l.days == 0 => {
                    return Err(format!(
                        "{}: `object_lock` needs `days` of at least 1",
                        t.at("object_lock")
                    ));
                }
                l => l,
            },
        })
    }
}

fn nonempty(v: String, key: &str, t: &Table<'_>) -> Result<String, String> {
    if v.trim().is_empty() {
        Err(format!(
            "{}: key `{key}` must not be empty for kind = \"{}\"",
            t.at(key),
            t.kind
        ))
    } else {
        Ok(v)
    }
}

fn prefix(p: Option<String>) -> String {
    p.unwrap_or_default().trim_matches('/').to_string()
}

fn endpoint(e: &str, insecure: Option<bool>, sas: bool, t: &Table<'_>) -> Result<(), String> {
    check_endpoint(e, insecure == Some(true), sas)
        .map_err(|why| format!("{}: key `endpoint`: {why}", t.at("endpoint")))
}

/// Reads and validates one `[[target]]` whose head (name and kind) the first pass read.
pub(super) fn build(head: &Head, t: &Table<'_>) -> Result<TargetConfig, String> {
    let name = t.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "line {}: key `name`: target name {name:?} must be letters, digits, `-` or `_`",
            t.src.line_of(head.name.span().start)
        ));
    }
    let Some((_, read)) = KINDS.iter().find(|(k, _)| *k == t.kind) else {
        let kinds: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        return Err(format!(
            "line {}: target `{name}`: key `kind`: unknown target kind {:?}; expected one of {}",
            t.src.line_of(head.kind.span().start),
            t.kind,
            kinds.join(", ")
        ));
    };
    let (common, kind) = read(t)?;
    if let Some(label) = &common.region {
        if label.trim().is_empty() {
            return Err(format!(
                "{}: key `region` must not be empty",
                t.at("region")
            ));
        }
        if let Some(why) = super::residency::contradiction(&kind, label) {
            return Err(format!("{}: key `region`: {why}", t.at("region")));
        }
    }
    // Each attempt may take `timeout`: a large count turns one dead server into hours.
    if common.retries.is_some_and(|r| r > MAX_RETRIES) {
        return Err(format!(
            "{}: key `retries` must be at most {MAX_RETRIES}",
            t.at("retries")
        ));
    }
    if common.timeout.is_some_and(|s| s > MAX_TIMEOUT_SECS) {
        return Err(format!(
            "{}: key `timeout` must be at most {MAX_TIMEOUT_SECS} (seconds)",
            t.at("timeout")
        ));
    }
    if common.timeout == Some(0) {
        return Err(format!(
            "{}: key `timeout` must be at least 1 (seconds)",
            t.at("timeout")
        ));
    }
    Ok(TargetConfig {
        name: common.name,
        required: common.required.unwrap_or(true),
        retries: common.retries.unwrap_or(DEFAULT_RETRIES),
        timeout: Duration::from_secs(common.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS)),
        region: common.region,
        kind,
    })
}
