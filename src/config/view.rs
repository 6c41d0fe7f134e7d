//! What the repositories of one file share (its targets, jobs, vault and lockout), and one
//! repository's [`Config`] made of it: its own settings over the shared ones, its targets
//! checked for overlap and residency, and moved into its folder when it is one of several.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use super::{
    BackupConfig, Config, LockoutPolicy, LogConfig, MetricsConfig, NotifyConfig, RawFile,
    ReportConfig, RepositoryConfig, RetentionConfig, ScheduleConfig, TargetConfig, VaultSettings,
    VerifyConfig, overlap, residency, target,
    text::{self, Source},
};
use crate::secret::SecretRef;

/// `cairn.prom` -> `cairn-acme.prom`.
fn per_repository(path: &Path, name: &str) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()));
    path.with_file_name(format!(
        "{}-{name}{}",
        stem.unwrap_or_default(),
        ext.unwrap_or_default()
    ))
}

/// What every repository of a file shares: the targets, the jobs' settings, the vault and the
/// lockout; [`Shared::view`] makes one repository's [`Config`] of it.
pub(super) struct Shared {
    path: PathBuf,
    pub(super) base: PathBuf,
    pub(super) targets: Vec<TargetConfig>,
    target_lines: Vec<usize>,
    /// The line of each target's `region` (its header's when it has none).
    region_lines: Vec<usize>,
    verify: VerifyConfig,
    verify_span: std::ops::Range<usize>,
    retention: RetentionConfig,
    notify: NotifyConfig,
    metrics: MetricsConfig,
    log: LogConfig,
    report: ReportConfig,
    schedule: ScheduleConfig,
    vault: VaultSettings,
    lockout: LockoutPolicy,
    /// `[policy] allowed_regions`, with its line.
    allowed: Option<(Vec<String>, usize)>,
    /// `[policy] max_keep_after_end` (default 3 years), with its line when set.
    pub(super) max_keep_after_end: (crate::retention::Within, Option<usize>),
}

/// One repository's own settings, for [`Shared::view`].
pub(super) struct View {
    /// Its `[[repository]]` name (`None`: the file's single `[repository]`).
    pub(super) client: Option<String>,
    pub(super) repository: RepositoryConfig,
    pub(super) backup: BackupConfig,
    /// Where its sources are configured (`[backup]`, `[[repository]] acme`), and the lines of
    /// its `sources` and `excludes`.
    pub(super) place: String,
    pub(super) sources_line: usize,
    pub(super) excludes_line: usize,
    /// The names of the targets it uses (`None`: all).
    pub(super) targets: Option<Vec<String>>,
    /// Its own `verify` and `retention` (`None`: the file's).
    pub(super) verify: Option<(VerifyConfig, std::ops::Range<usize>)>,
    pub(super) retention: Option<RetentionConfig>,
    /// Its own `allowed_regions`, with their line.
    pub(super) allowed: Option<(Vec<String>, usize)>,
    /// Its own `ping_url` (one of several repositories).
    pub(super) ping_url: Option<String>,
    /// Its contract end (one of several repositories).
    pub(super) contract: Option<super::Contract>,
}

impl Shared {
    pub(super) fn build<R>(
        raw: RawFile<R>,
        src: &Source<'_>,
        path: &Path,
    ) -> std::result::Result<Self, String> {
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let base = std::path::absolute(&base).unwrap_or(base);

        if raw.target.is_empty() {
            return Err("no [[target]] is configured".into());
        }
        let mut names = BTreeSet::new();
        let mut targets = Vec::new();
        let mut target_lines = Vec::new();
        let mut region_lines = Vec::new();
        for t in raw.target {
            let head = t.get_ref();
            let name_line = src.line_of(head.name.span().start);
            let table = target::Table {
                src,
                span: t.span(),
                name: head.name.get_ref(),
                kind: head.kind.get_ref(),
                base: &base,
            };
            let target = target::build(head, &table)?;
            target_lines.push(src.key_line(t.span(), "path"));
            region_lines.push(src.key_line(t.span(), "region"));
            if !names.insert(target.name.clone()) {
                return Err(format!(
                    "line {name_line}: key `name`: target name `{}` is used twice",
                    target.name
                ));
            }
            targets.push(target);
        }
        let (verify_span, verify) = raw.verify.map_or((0..0, VerifyConfig::default()), |v| {
            (v.span(), v.into_inner())
        });
        let (notify_span, notify) = raw.notify.map_or((0..0, NotifyConfig::default()), |n| {
            (n.span(), n.into_inner())
        });
        if let Some(url) = &notify.ping_url
            && !text::is_http_url(url)
        {
            return Err(format!(
                "line {}: [notify] key `ping_url` must be an http:// or https:// URL",
                src.key_line(notify_span.clone(), "ping_url")
            ));
        }
        if notify.timeout == Some(0) {
            return Err(format!(
                "line {}: [notify] key `timeout` must be at least 1 (seconds)",
                src.key_line(notify_span, "timeout")
            ));
        }
        let mut metrics = raw.metrics;
        metrics.path = metrics
            .path
            .map(|p| if p.is_relative() { base.join(p) } else { p });
        let mut report = raw.report;
        report.html = report
            .html
            .map(|p| if p.is_relative() { base.join(p) } else { p });
        let mut vault_passphrase = raw.vault.passphrase;
        if let Some(p) = &mut vault_passphrase {
            if matches!(p, SecretRef::Vault(_)) {
                return Err(
                    "[vault] key `passphrase`: the vault's passphrase cannot be kept in the vault"
                        .into(),
                );
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
                    return Err(format!(
                        "line {}: [security] key `lockout_attempts` must be at least 1",
                        src.key_line(span, "lockout_attempts")
                    ));
                }
                lockout.attempts = n;
            }
            if let Some(d) = &sec.lockout_for {
                lockout.lock_for = d
                    .parse::<jiff::SignedDuration>()
                    .ok()
                    .filter(|d| d.is_positive())
                    .ok_or_else(|| {
                        format!(
                            "line {}: [security] key `lockout_for`: {d:?} is not a duration \
                             like \"15m\", \"1h\" or \"30s\"",
                            src.key_line(span.clone(), "lockout_for")
                        )
                    })?;
            }
        }
        let mut allowed = None;
        let mut max_keep_after_end = (
            crate::retention::Within {
                years: 3,
                ..Default::default()
            },
            None,
        );
        if let Some(p) = raw.policy {
            let span = p.span();
            let p = p.into_inner();
            allowed = p
                .allowed_regions
                .map(|a| (a, src.key_line(span.clone(), "allowed_regions")));
            if let Some(m) = p.max_keep_after_end {
                let line = src.key_line(span, "max_keep_after_end");
                let within = m
                    .parse()
                    .map_err(|e| format!("line {line}: [policy] key `max_keep_after_end`: {e}"))?;
                max_keep_after_end = (within, Some(line));
            }
        }
        Ok(Self {
            allowed,
            max_keep_after_end,
            path: path.to_path_buf(),
            base,
            targets,
            target_lines,
            region_lines,
            verify,
            verify_span,
            retention: raw.retention,
            notify,
            metrics,
            log: raw.log,
            report,
            schedule: raw.schedule,
            vault,
            lockout,
        })
    }

    /// Every target of a repository is where `[policy]` and the repository's own
    /// `allowed_regions` allow, and says where it is when either is set.
    fn residency(
        &self,
        targets: &[TargetConfig],
        lines: &[usize],
        own: Option<&(Vec<String>, usize)>,
        place: &str,
    ) -> std::result::Result<(), String> {
        let lists: Vec<(&(Vec<String>, usize), String)> = self
            .allowed
            .iter()
            .map(|a| (a, "[policy] allowed_regions".to_string()))
            .chain(own.map(|a| (a, format!("{place} key `allowed_regions`"))))
            .collect();
        if lists.is_empty() {
            return Ok(());
        }
        for (t, line) in targets.iter().zip(lines) {
            let Some(region) = &t.region else {
                return Err(format!(
                    "line {line}: target `{}`: key `region` is missing: allowed regions are set \
                     (line {}), so every target says where it is",
                    t.name, lists[0].0.1
                ));
            };
            for ((allowed, at), what) in &lists {
                if !allowed.iter().any(|a| residency::within(region, a)) {
                    return Err(format!(
                        "line {at}: {what} = {allowed:?} does not allow target `{}`, whose \
                         region is {region:?} (line {line}); nothing was written anywhere",
                        t.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// One repository's configuration: its settings over the shared ones, its targets moved
    /// into its folder when it is one of several.
    pub(super) fn view(&self, v: View, src: &Source<'_>) -> std::result::Result<Config, String> {
        let (mut verify, verify_span) = v
            .verify
            .unwrap_or_else(|| (self.verify.clone(), self.verify_span.clone()));
        let chosen: Vec<usize> = match &v.targets {
            None => (0..self.targets.len()).collect(),
            Some(names) => names
                .iter()
                .filter_map(|n| self.targets.iter().position(|t| t.name == *n))
                .collect(),
        };
        for name in &verify.targets {
            if !chosen.iter().any(|&i| self.targets[i].name == *name) {
                return Err(format!(
                    "line {}: [verify] key `targets`: no target named `{name}`{}",
                    src.key_line(verify_span.clone(), "targets"),
                    if v.client.is_some() {
                        " among this repository's targets"
                    } else {
                        ""
                    }
                ));
            }
        }
        if verify.files == Some(0) {
            return Err(format!(
                "line {}: [verify] key `files` must be at least 1 (an empty sample proves nothing)",
                src.key_line(verify_span.clone(), "files")
            ));
        }
        if verify.percent.is_some_and(|p| !(p > 0.0 && p <= 100.0)) {
            return Err(format!(
                "line {}: [verify] key `percent` must be more than 0 and at most 100",
                src.key_line(verify_span, "percent")
            ));
        }
        verify.restore_to = verify.restore_to.map(|p| {
            if p.is_relative() {
                self.base.join(p)
            } else {
                p
            }
        });
        let mut backup = v.backup;
        if backup.sources.iter().any(|p| p.as_os_str().is_empty()) {
            return Err(format!(
                "line {}: {} key `sources`: an empty path names the configuration's own \
                 folder (and the targets in it); name each folder to back up",
                v.sources_line, v.place
            ));
        }
        for g in &backup.excludes {
            let compiles = rustic_core::Excludes::default()
                .globs(vec![format!("!{g}")])
                .as_override()
                .is_ok();
            if !compiles {
                return Err(format!(
                    "line {}: {} key `excludes`: {g:?} is not a valid pattern (an \
                     unclosed `[` or `{{`?)",
                    v.excludes_line, v.place
                ));
            }
        }
        backup.sources = backup
            .sources
            .into_iter()
            .map(|p| {
                if p.is_relative() {
                    self.base.join(p)
                } else {
                    p
                }
            })
            .collect();
        let roots: Vec<TargetConfig> = chosen.iter().map(|&i| self.targets[i].clone()).collect();
        let lines: Vec<usize> = chosen.iter().map(|&i| self.target_lines[i]).collect();
        let region_lines: Vec<usize> = chosen.iter().map(|&i| self.region_lines[i]).collect();
        self.residency(&roots, &region_lines, v.allowed.as_ref(), &v.place)?;
        overlap::check(&roots, &lines, &backup, &verify, (&v.place, v.sources_line))?;
        let targets = match &v.client {
            Some(name) => roots.iter().map(|t| t.within(name)).collect(),
            None => roots,
        };
        // One metrics file per repository beside the configured one: a textfile collector reads
        // every `.prom` file of its folder.
        let metrics = match (&v.client, &self.metrics.path) {
            (Some(name), Some(path)) => MetricsConfig {
                path: Some(per_repository(path, name)),
            },
            _ => self.metrics.clone(),
        };
        let ping_url = match &v.client {
            Some(_) => v.ping_url,
            None => self.notify.ping_url.clone(),
        };
        Ok(Config {
            path: self.path.clone(),
            client: v.client,
            repository: v.repository,
            backup,
            targets,
            verify,
            retention: v.retention.unwrap_or_else(|| self.retention.clone()),
            ping_url,
            notify: self.notify.clone(),
            metrics,
            log: self.log.clone(),
            report: self.report.clone(),
            schedule: self.schedule.clone(),
            vault: self.vault.clone(),
            lockout: self.lockout,
            contract: v.contract,
            file_targets: self.targets.clone(),
        })
    }
}
