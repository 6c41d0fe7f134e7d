//! systemd units for the nightly job: a oneshot service running `cairn run` and its timer, and
//! optionally a second pair for a separate `cairn verify`. System services are sandboxed
//! (read-only system, writable state folder and local targets only, low CPU and I/O priority)
//! and get their secrets as systemd credentials (`credential:NAME` -> `LoadCredential=`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{
    config::{Config, TargetKind},
    secret::SecretRef,
};

/// One unit file.
#[derive(Debug, Clone, Serialize)]
pub struct Unit {
    /// File name, e.g. `cairn-acme-run.timer`.
    pub name: String,
    /// Its content.
    pub text: String,
}

/// The units for this configuration, and warnings about settings a service cannot use.
#[derive(Debug, Clone, Serialize)]
pub struct Units {
    /// Services and timers.
    pub units: Vec<Unit>,
    /// The timers, to enable.
    pub timers: Vec<String>,
    /// Problems the admin must fix for the service to work.
    pub warnings: Vec<String>,
}

/// Where unit files go: `/etc/systemd/system`, or the user's `~/.config/systemd/user`.
#[must_use]
pub fn unit_dir(user: bool) -> PathBuf {
    if !user {
        return PathBuf::from("/etc/systemd/system");
    }
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"))
        .join("systemd/user")
}

/// The unit name prefix: `cairn-NAME`, from the repository's name (of a file of several
/// repositories, whose one timer runs them all: from the file's name).
#[must_use]
pub fn prefix(cfg: &Config) -> String {
    let stem = cfg.path.file_stem().and_then(|s| s.to_str());
    let name = match &cfg.client {
        Some(_) => stem.unwrap_or("backup"),
        None => cfg.repository.name.as_deref().unwrap_or("backup"),
    };
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("cairn-{safe}")
}

/// Renders the units of the repositories of one file (`cfgs`, each a view of it; one timer
/// runs them all). `exe` is the cairn binary, `config` the configuration's absolute path,
/// `state` the state base folder the admin's own commands use (so both see the same records).
///
/// # Panics
/// `cfgs` is empty.
#[must_use]
pub fn render(cfgs: &[Config], exe: &Path, config: &Path, state: &Path, user: bool) -> Units {
    let cfg = &cfgs[0];
    let prefix = prefix(cfg);
    let names: Vec<&str> = cfgs
        .iter()
        .map(|c| c.repository.name.as_deref().unwrap_or("backup"))
        .collect();
    let repo = names.join(", ");
    let creds_dir = cfg
        .schedule
        .credentials_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/credstore"));
    let mut warnings = Vec::new();
    let mut credentials = Vec::new();
    for s in cfgs.iter().flat_map(Config::secrets) {
        match s {
            SecretRef::Credential(n) if !credentials.contains(n) => credentials.push(n.clone()),
            SecretRef::Env(n) => warnings.push(format!(
                "secret env:{n}: a timer's service does not have this variable; use \
                 credential:NAME (systemd credentials) or file:PATH"
            )),
            _ => {}
        }
    }
    let mut writable = vec![state.to_path_buf()];
    for cfg in cfgs {
        if cfg.repository.password.is_none() {
            warnings.push(format!(
                "repository `{}`: password is not set, so CAIRN_PASSWORD would be used, which a \
                 timer's service does not have: set password = \"credential:cairn-password\"",
                cfg.repository.name.as_deref().unwrap_or("backup")
            ));
        }
        for t in &cfg.targets {
            if let TargetKind::Local { path, .. } = &t.kind
                && !writable.contains(path)
            {
                writable.push(path.clone());
            }
        }
        if let Some(p) = cfg.metrics.path.as_ref().and_then(|p| p.parent())
            && !writable.iter().any(|w| w == p)
        {
            writable.push(p.to_path_buf());
        }
        if let Some(p) = &cfg.verify.restore_to
            && !writable.contains(p)
        {
            writable.push(p.clone());
        }
    }

    let service = |what: &str, verb: &str| {
        let mut s = format!(
            "# Written by `cairn schedule install`; `cairn schedule remove` takes it away.\n\
             [Unit]\n\
             Description=cairn {what} of {repo}\n\
             Wants=network-online.target\n\
             After=network-online.target\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             ExecStart={} --config {} {verb}\n\
             Environment={}\n",
            quote(&exe.display().to_string()),
            quote(&config.display().to_string()),
            quote(&format!("CAIRN_STATE_DIR={}", state.display())),
        );
        for c in &credentials {
            s.push_str(&format!(
                "LoadCredential={}\n",
                escape(&format!("{c}:{}", creds_dir.join(c).display()))
            ));
        }
        s.push_str(
            "# Nightly work gives way to everything else.\n\
             Nice=10\n\
             CPUSchedulingPolicy=batch\n\
             IOSchedulingClass=idle\n\
             UMask=0077\n\
             NoNewPrivileges=yes\n",
        );
        if !user {
            // Sandboxing needs a system manager (a user manager cannot set up the namespaces).
            s.push_str(
                "PrivateTmp=yes\n\
                 ProtectSystem=strict\n\
                 ProtectHome=read-only\n\
                 ProtectKernelTunables=yes\n\
                 ProtectKernelModules=yes\n\
                 ProtectControlGroups=yes\n\
                 RestrictSUIDSGID=yes\n\
                 LockPersonality=yes\n",
            );
            for w in &writable {
                // `-`: a path that is missing (an unplugged disk) does not stop the service.
                s.push_str(&format!(
                    "ReadWritePaths={}\n",
                    quote(&format!("-{}", w.display()))
                ));
            }
        }
        s
    };
    let timer = |what: &str, at: &str| {
        format!(
            "# Written by `cairn schedule install`; `cairn schedule remove` takes it away.\n\
             [Unit]\n\
             Description=cairn {what} of {repo}, on a schedule\n\
             \n\
             [Timer]\n\
             OnCalendar={at}\n\
             RandomizedDelaySec={}\n\
             Persistent=true\n\
             \n\
             [Install]\n\
             WantedBy=timers.target\n",
            cfg.schedule.randomized_delay.as_deref().unwrap_or("30min")
        )
    };
    let run_at = cfg.schedule.run_at.as_deref().unwrap_or("*-*-* 01:00:00");
    let mut units = vec![
        Unit {
            name: format!("{prefix}-run.service"),
            text: service("nightly run", "run"),
        },
        Unit {
            name: format!("{prefix}-run.timer"),
            text: timer("nightly run", run_at),
        },
    ];
    let mut timers = vec![format!("{prefix}-run.timer")];
    if let Some(at) = &cfg.schedule.verify_at {
        units.push(Unit {
            name: format!("{prefix}-verify.service"),
            text: service("sample verification", "verify"),
        });
        units.push(Unit {
            name: format!("{prefix}-verify.timer"),
            text: timer("sample verification", at),
        });
        timers.push(format!("{prefix}-verify.timer"));
    }
    Units {
        units,
        timers,
        warnings,
    }
}

/// `%` is a specifier in unit files.
fn escape(s: &str) -> String {
    s.replace('%', "%%")
}

/// A word of a unit file's command line or setting: quoted when it holds spaces or quotes.
fn quote(s: &str) -> String {
    let s = escape(s);
    if s.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\')
    {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_sandboxed_and_take_credentials_and_timers_persist() {
        let cfg = Config::parse(
            "[repository]\nname = \"acme co\"\npassword = \"credential:repo-pw\"\n\
             [schedule]\nrun_at = \"*-*-* 02:30:00\"\nverify_at = \"Sun *-*-* 05:00:00\"\n\
             [[target]]\nname = \"usb\"\nkind = \"local\"\npath = \"/media/usb 1/cairn\"\n",
            Path::new("/etc/cairn/targets.toml"),
        )
        .unwrap();
        let u = render(
            std::slice::from_ref(&cfg),
            Path::new("/usr/local/bin/cairn"),
            Path::new("/etc/cairn/targets.toml"),
            Path::new("/var/lib/cairn"),
            false,
        );
        let names: Vec<&str> = u.units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cairn-acme-co-run.service",
                "cairn-acme-co-run.timer",
                "cairn-acme-co-verify.service",
                "cairn-acme-co-verify.timer"
            ]
        );
        let run = &u.units[0].text;
        for line in [
            "ExecStart=/usr/local/bin/cairn --config /etc/cairn/targets.toml run",
            "LoadCredential=repo-pw:/etc/credstore/repo-pw",
            "ProtectSystem=strict",
            "ReadWritePaths=-/var/lib/cairn",
            "ReadWritePaths=\"-/media/usb 1/cairn\"",
            "NoNewPrivileges=yes",
            "IOSchedulingClass=idle",
        ] {
            assert!(run.lines().any(|l| l == line), "{line} missing:\n{run}");
        }
        let timer = &u.units[1].text;
        assert!(timer.contains("OnCalendar=*-*-* 02:30:00\n"), "{timer}");
        assert!(
            timer.contains("Persistent=true\n") && timer.contains("RandomizedDelaySec=30min\n")
        );
        assert!(u.units[2].text.contains(" verify\n"));
        assert!(u.warnings.is_empty(), "{:?}", u.warnings);
    }

    #[test]
    fn one_timer_runs_every_repository_of_a_file_with_all_their_credentials_and_folders() {
        let cfgs = Config::parse_all(
            "[[target]]\nname = \"usb\"\nkind = \"local\"\npath = \"/media/usb/cairn\"\n\
             [[repository]]\nname = \"acme\"\npassword = \"credential:acme-pw\"\n\
             sources = [\"/srv/acme\"]\n\
             [[repository]]\nname = \"beta\"\npassword = \"credential:beta-pw\"\n\
             sources = [\"/srv/beta\"]\n",
            Path::new("/etc/cairn/clients.toml"),
        )
        .unwrap();
        let u = render(
            &cfgs,
            Path::new("/usr/local/bin/cairn"),
            Path::new("/etc/cairn/clients.toml"),
            Path::new("/var/lib/cairn"),
            false,
        );
        let names: Vec<&str> = u.units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            ["cairn-clients-run.service", "cairn-clients-run.timer"]
        );
        let run = &u.units[0].text;
        for line in [
            "ExecStart=/usr/local/bin/cairn --config /etc/cairn/clients.toml run",
            "LoadCredential=acme-pw:/etc/credstore/acme-pw",
            "LoadCredential=beta-pw:/etc/credstore/beta-pw",
            "ReadWritePaths=-/media/usb/cairn/acme",
            "ReadWritePaths=-/media/usb/cairn/beta",
        ] {
            assert!(run.lines().any(|l| l == line), "{line} missing:\n{run}");
        }
        assert!(
            run.contains("Description=cairn nightly run of acme, beta\n"),
            "{run}"
        );
    }
}
