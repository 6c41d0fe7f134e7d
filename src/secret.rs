//! Secret references: a password or key is named in the configuration as `env:NAME`, `file:PATH`
//! or `command:CMD`, never written inline, and is never printed.

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
}

impl SecretRef {
    /// Parses `env:NAME`, `file:PATH` or `command:CMD`.
    ///
    /// # Errors
    /// Anything else, so that a secret pasted inline is refused rather than used.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            "a secret must be a reference `env:NAME`, `file:PATH` or `command:CMD`, not an inline value"
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

    /// Reads the secret.
    ///
    /// # Errors
    /// The variable is unset, the file unreadable, the command failed, or the value is empty.
    pub fn resolve(&self, what: &str) -> Result<Secret> {
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
        };
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(err(format!("{self:?} is empty")));
        }
        Ok(Secret(value))
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
            && let Ok(mut vars) = SECRET_VARS.lock()
        {
            vars.insert(name.clone());
        }
    }
}

/// Environment variables that hold secrets (the password's, and every `env:` secret of the
/// configuration loaded).
static SECRET_VARS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// `sh -c cmd`, without any secret in its environment: hooks and `command:` secrets are other
/// people's scripts, and an environment is easily logged or inherited further.
#[must_use]
pub fn shell(cmd: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(cmd).env_remove("CAIRN_PASSWORD");
    if let Ok(vars) = SECRET_VARS.lock() {
        for v in vars.iter() {
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
    /// Wraps a value (for `CAIRN_PASSWORD` and tests).
    #[must_use]
    pub fn new(value: String) -> Self {
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
        assert_eq!(s.resolve("t").unwrap().expose(), "abc");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "xyz\n").unwrap();
        let mut f = SecretRef::parse("file:pw").unwrap();
        f.rebase(dir.path());
        assert_eq!(f.resolve("t").unwrap().expose(), "xyz");
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
            .resolve("target.x.key")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("target.x.key") && e.contains("CAIRN_SURELY_UNSET_VAR"),
            "{e}"
        );
        let e = SecretRef::parse("command:exit 3")
            .unwrap()
            .resolve("p")
            .unwrap_err();
        assert!(e.to_string().contains("failed"), "{e}");
    }
}
