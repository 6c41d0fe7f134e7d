//! Secret references: a password or key is named in the configuration as `env:NAME`, `file:PATH`,
//! `command:CMD`, `credential:NAME` (a systemd credential) or `vault:NAME` (the credentials
//! vault, [`crate::vault`]), never written inline, and is never
//! printed. Every secret resolved is remembered, so that text bound for a log or a report can be
//! scrubbed of it ([`redact`]) whatever error message happened to quote it.

use std::{
    collections::BTreeSet, fmt, os::unix::fs::PermissionsExt, path::Path, process::Command,
    sync::Mutex,
};

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file whose content (without trailing newline) is the secret.
    File(std::path::PathBuf),
    /// A shell command whose standard output (without trailing newline) is the secret.
    Command(String),
    /// A systemd credential (`LoadCredential=NAME:...`): the file `$CREDENTIALS_DIRECTORY/NAME`.
    Credential(String),
    /// An entry of the credentials vault.
    Vault(String),
}

impl SecretRef {
    /// Parses `env:NAME`, `file:PATH` or `command:CMD`.
    ///
    /// # Errors
    /// Anything else, so that a secret pasted inline is refused rather than used.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            "a secret must be a reference `env:NAME`, `file:PATH`, `command:CMD`, \
             `credential:NAME` or `vault:NAME`, not an inline value"
                .to_string()
        };
        let (scheme, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.trim().is_empty() {
            return Err(bad());
        }
        match scheme {
            "env" => Ok(Self::Env(rest.to_string())),
            "file" => Ok(Self::File(rest.into())),
            "command" => Ok(Self::Command(rest.to_string())),
            "credential" if is_credential_name(rest) => Ok(Self::Credential(rest.to_string())),
            "credential" => Err(format!(
                "credential name {rest:?}: use letters, digits, `-`, `_` and `.` only"
            )),
            "vault" if is_vault_name(rest) => Ok(Self::Vault(rest.to_string())),
            "vault" => Err(format!(
                "vault name {rest:?}: use letters, digits, `-`, `_`, `.` and `/` only"
            )),
            _ => Err(bad()),
        }
    }

    /// Makes a relative `file:` path relative to `base` (the configuration file's folder).
    pub(crate) fn rebase(&mut self, base: &Path) {
        if let Self::File(p) = self
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }

    /// Reads the secret; `vault:` references are looked up in `vaults`.
    ///
    /// # Errors
    /// The variable is unset, the file unreadable, the command failed, the vault refused, or
    /// the value is empty.
    pub fn resolve(&self, what: &str, vaults: &dyn Vaults) -> Result<Secret> {
        let err = |message: String| Error::Secret {
            what: what.to_string(),
            message,
        };
        let value = match self {
            Self::Env(name) => std::env::var(name)
                .map_err(|_| err(format!("environment variable {name} is not set")))?,
            Self::File(path) => std::fs::read_to_string(path)
                .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?,
            Self::Command(cmd) => {
                let out = shell(cmd)
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .map_err(|e| err(format!("cannot run the command: {e}")))?;
                if !out.status.success() {
                    return Err(err(format!("the command failed ({})", out.status)));
                }
                String::from_utf8(out.stdout)
                    .map_err(|_| err("the command's output is not UTF-8".into()))?
            }
            Self::Credential(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    err(format!(
                        "credential:{name} is given by systemd (LoadCredential=) and \
                         $CREDENTIALS_DIRECTORY is not set: outside a service, use file:"
                    ))
                })?;
                let path = Path::new(&dir).join(name);
                std::fs::read_to_string(&path)
                    .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?
            }
            Self::Vault(name) => vaults.lookup(name, what)?.expose().to_string(),
        };
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(err(format!("{self:?} is empty")));
        }
        Ok(Secret::new(value))
    }

    /// Why this secret's source is too open, if it is: a `file:` secret that anyone but its
    /// owner can read.
    #[must_use]
    pub fn exposure(&self) -> Option<String> {
        let Self::File(path) = self else { return None };
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o077 != 0).then(|| {
            format!(
                "secret file {} is readable by others than its owner (mode {:o}); `chmod 600` it",
                path.display(),
                mode & 0o777
            )
        })
    }

    /// Records an `env:` source, so that commands cairn runs never inherit it.
    pub(crate) fn register(&self) {
        if let Self::Env(name) = self
            && let Ok(mut seen) = SEEN.lock()
        {
            seen.vars.insert(name.clone());
        }
    }
}

/// Where `vault:` references are looked up: the context of a loaded configuration
/// (`crate::context::Context`) opens its own vault once.
pub trait Vaults {
    /// The secret `name` of the vault, for the setting `what`.
    ///
    /// # Errors
    /// No vault, it cannot be opened, or it holds no such name.
    fn lookup(&self, name: &str, what: &str) -> Result<Secret>;
}

/// No vault: for secrets that may not come from one (the vault's own passphrase).
#[derive(Debug, Clone, Copy)]
pub struct NoVault;

impl Vaults for NoVault {
    fn lookup(&self, name: &str, what: &str) -> Result<Secret> {
        Err(Error::Secret {
            what: what.to_string(),
            message: format!("vault:{name} cannot be used here"),
        })
    }
}

/// Whether `name` can name a vault entry.
#[must_use]
pub fn is_vault_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// Every secret this process has seen, whichever configuration or repository it came from.
#[derive(Default)]
struct Seen {
    /// Values resolved, scrubbed from any text bound for a log, a report or a hook.
    values: BTreeSet<String>,
    /// Environment variables that hold secrets (`env:` references), kept from child processes.
    vars: BTreeSet<String>,
}

/// The one process-wide registry, on purpose: a secret resolved for one repository must be
/// scrubbed from every output of the process, whichever repository's text quotes it.
static SEEN: Mutex<Seen> = Mutex::new(Seen {
    values: BTreeSet::new(),
    vars: BTreeSet::new(),
});

/// Whether `name` can name a systemd credential (and stays inside its folder).
fn is_credential_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Shorter values are not scrubbed: they would blank out ordinary words.
const MIN_REDACTED: usize = 4;

/// `text` with every secret this process has resolved replaced by `***`: for anything written
/// to a log, a report or a hook's environment.
#[must_use]
pub fn redact(text: &str) -> String {
    let Ok(seen) = SEEN.lock() else {
        return text.to_string();
    };
    redact_these(text, seen.values.iter().map(String::as_str))
}

/// `text` with each of `secrets` (of [`MIN_REDACTED`] bytes or more) replaced by `***`, the
/// longest first, so that a secret containing another is scrubbed whole.
pub(crate) fn redact_these<'a>(text: &str, secrets: impl Iterator<Item = &'a str>) -> String {
    let mut values: Vec<&str> = secrets.filter(|s| s.len() >= MIN_REDACTED).collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values
        .into_iter()
        .fold(text.to_string(), |t, v| t.replace(v, "***"))
}

/// `sh -c cmd`, without any secret in its environment: hooks and `command:` secrets are other
/// people's scripts, and an environment is easily logged or inherited further.
#[must_use]
pub fn shell(cmd: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd);
    for v in [
        "CAIRN_PASSWORD",
        "CAIRN_NEW_PASSWORD",
        "CAIRN_VAULT_PASSPHRASE",
        "CAIRN_NEW_VAULT_PASSPHRASE",
    ] {
        c.env_remove(v);
    }
    if let Ok(seen) = SEEN.lock() {
        for v in &seen.vars {
            c.env_remove(v);
        }
    }
    c
}

// Shows where the secret comes from, which is not itself secret.
impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(n) => write!(f, "env:{n}"),
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Command(_) => write!(f, "command:…"),
            Self::Credential(n) => write!(f, "credential:{n}"),
            Self::Vault(n) => write!(f, "vault:{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A resolved secret. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (for `CAIRN_PASSWORD` and tests); it is scrubbed from logs from now on.
    #[must_use]
    pub fn new(value: String) -> Self {
        if value.len() >= MIN_REDACTED
            && let Ok(mut seen) = SEEN.lock()
        {
            seen.values.insert(value.clone());
        }
        Self(value)
    }
    /// The secret itself, for handing to a storage client or rustic_core.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_values_are_refused() {
        assert!(SecretRef::parse("hunter2").is_err());
        assert!(SecretRef::parse("plain:hunter2").is_err());
        assert!(SecretRef::parse("env:").is_err());
        assert_eq!(SecretRef::parse("env:X"), Ok(SecretRef::Env("X".into())));
    }

    #[test]
    fn command_and_file_resolve_without_trailing_newline() {
        let s = SecretRef::parse("command:printf 'abc\\n'").unwrap();
        assert_eq!(s.resolve("t", &NoVault).unwrap().expose(), "abc");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "xyz\n").unwrap();
        let mut f = SecretRef::parse("file:pw").unwrap();
        f.rebase(dir.path());
        assert_eq!(f.resolve("t", &NoVault).unwrap().expose(), "xyz");
    }

    #[test]
    fn credentials_are_read_from_systemds_folder_and_names_stay_inside_it() {
        assert!(SecretRef::parse("credential:../x").is_err());
        assert!(SecretRef::parse("credential:a/b").is_err());
        let c = SecretRef::parse("credential:repo-password").unwrap();
        assert_eq!(format!("{c:?}"), "credential:repo-password");
    }

    #[test]
    fn resolved_secrets_are_scrubbed_from_text() {
        let s = SecretRef::parse("command:printf 's3cr3t-value-42'")
            .unwrap()
            .resolve("t", &NoVault)
            .unwrap();
        assert_eq!(
            redact(&format!("auth failed for {} at host", s.expose())),
            "auth failed for *** at host"
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::new("topsecret".into());
        assert!(!format!("{s:?}").contains("topsecret"));
        let c = SecretRef::parse("command:echo topsecret").unwrap();
        assert!(!format!("{c:?}").contains("topsecret"));
    }

    #[test]
    fn failures_name_the_setting_not_the_value() {
        let e = SecretRef::parse("env:CAIRN_SURELY_UNSET_VAR")
            .unwrap()
            .resolve("target.x.key", &NoVault)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("target.x.key") && e.contains("CAIRN_SURELY_UNSET_VAR"),
            "{e}"
        );
        let e = SecretRef::parse("command:exit 3")
            .unwrap()
            .resolve("p", &NoVault)
            .unwrap_err();
        assert!(e.to_string().contains("failed"), "{e}");
    }
}
