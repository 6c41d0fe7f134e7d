//! Prometheus metrics in the text format, for node_exporter's textfile collector: rendered from
//! the state folder (so every command leaves the same complete picture), written atomically.

use std::{
    fmt::Write as _,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
};

use crate::{
    config::Config,
    error::{Error, Result},
    state::{self, State},
};

/// Writes the metrics to `[metrics] path`, if one is configured: to a temporary file beside it,
/// then renamed over it, so the collector never reads half a file.
///
/// # Errors
/// The state cannot be read, or the file cannot be written.
pub fn write(cfg: &Config) -> Result<()> {
    let Some(path) = &cfg.metrics.path else {
        return Ok(());
    };
    // An erased client is no longer monitored: its gauges would raise alarms for good.
    let erased = cfg.client.as_deref().is_some_and(|name| {
        crate::erasure::Register::load(&crate::erasure::dir(cfg))
            .is_ok_and(|r| r.erased(name).is_some())
    });
    if erased {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
                path: path.clone(),
                source: e,
            }),
            _ => Ok(()),
        };
    }
    let st = State::load(&state::dir(cfg)?)?;
    let text = render(cfg, &st);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        // The collector runs as another user; the metrics name targets, never data or secrets.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

/// One metric family being rendered.
struct Family<'a> {
    out: &'a mut String,
    repository: &'a str,
}

impl Family<'_> {
    fn head(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} gauge");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(
            self.out,
            "{name}{{repository=\"{}\"",
            escape(self.repository)
        );
        for (k, v) in labels {
            let _ = write!(self.out, ",{k}=\"{}\"", escape(v));
        }
        let _ = writeln!(self.out, "}} {value}");
    }
}

/// The metrics text for this configuration's targets and the commands recorded.
#[must_use]
pub fn render(cfg: &Config, st: &State) -> String {
    let mut out = String::new();
    let repository = cfg.repository.name.as_deref().unwrap_or("repository");
    let mut f = Family {
        out: &mut out,
        repository,
    };
    let targets: Vec<_> = cfg
        .targets
        .iter()
        .map(|t| (t, st.targets.get(&t.name).cloned().unwrap_or_default()))
        .collect();
    type Get = fn(&crate::state::TargetRecord) -> Option<f64>;
    let per_target: [(&str, &str, Get); 12] = [
        (
            "cairn_target_up",
            "Whether the target could be reached and listed when last looked at.",
            |r| {
                r.observed
                    .as_ref()
                    .map(|o| f64::from(u8::from(o.reachable)))
            },
        ),
        (
            "cairn_target_last_backup_timestamp_seconds",
            "When the target last received a complete snapshot.",
            |r| seconds(r.last_complete_at.as_deref()),
        ),
        (
            "cairn_target_last_backup_duration_seconds",
            "How long that backup took.",
            |r| r.last_backup_millis.map(|m| m as f64 / 1000.0),
        ),
        (
            "cairn_target_last_backup_written_bytes",
            "Bytes that backup wrote to the target (new data, compressed and encrypted).",
            |r| r.last_backup_bytes.map(|b| b as f64),
        ),
        (
            "cairn_target_snapshots",
            "Snapshots the target holds, when last looked at.",
            |r| r.observed.as_ref().map(|o| o.snapshots as f64),
        ),
        (
            "cairn_target_lagging",
            "Whether the target misses snapshots or files the others hold, or holds deleted ones.",
            |r| Some(f64::from(u8::from(lagging(r)))),
        ),
        (
            "cairn_target_lagging_backups",
            "Backups the target has missed in a row (0 while it is level).",
            |r| Some(f64::from(r.lagging_backups)),
        ),
        (
            "cairn_target_lagging_since_timestamp_seconds",
            "Since when the target has been lagging (absent while it is level).",
            |r| seconds(r.lagging_since.as_deref()),
        ),
        (
            "cairn_target_pending_files",
            "Repository files the target lacks that another holds (pending catch-up).",
            |r| r.observed.as_ref().map(|o| o.pending_files as f64),
        ),
        (
            "cairn_target_last_verify_timestamp_seconds",
            "When a sample restore last verified the target.",
            |r| seconds(r.last_verify_at.as_deref()),
        ),
        (
            "cairn_target_last_verify_success",
            "Whether that verification passed.",
            |r| r.last_verify_ok.map(|ok| f64::from(u8::from(ok))),
        ),
        (
            "cairn_target_immutable",
            "Whether the target's claimed protection held when `check --immutability` last \
             attacked a canary there (absent: it claims none).",
            |r| r.immutable.map(|ok| f64::from(u8::from(ok))),
        ),
    ];
    for (name, help, get) in per_target {
        let values: Vec<_> = targets
            .iter()
            .filter_map(|(t, r)| get(r).map(|v| (t, v)))
            .collect();
        if values.is_empty() {
            continue;
        }
        f.head(name, help);
        for (t, v) in values {
            f.sample(
                name,
                &[
                    ("target", &t.name),
                    ("kind", t.kind.name()),
                    ("required", if t.required { "true" } else { "false" }),
                ],
                v,
            );
        }
    }
    type Cmd = fn(&crate::state::CommandRecord) -> Option<f64>;
    let per_command: [(&str, &str, Cmd); 4] = [
        (
            "cairn_command_last_exit_code",
            "Exit code of the command's last run (0 ok, 3 partially done, see cairn --help).",
            |c| Some(f64::from(c.exit_code)),
        ),
        (
            "cairn_command_last_finish_timestamp_seconds",
            "When the command's last run finished.",
            |c| seconds(Some(&c.at)),
        ),
        (
            "cairn_command_last_duration_seconds",
            "How long the command's last run took.",
            |c| Some(c.millis as f64 / 1000.0),
        ),
        (
            "cairn_command_last_success_timestamp_seconds",
            "When the command last finished with exit code 0.",
            |c| seconds(c.last_success_at.as_deref()),
        ),
    ];
    for (name, help, get) in per_command {
        let values: Vec<_> = st
            .commands
            .iter()
            .filter_map(|(c, r)| get(r).map(|v| (c, v)))
            .collect();
        if values.is_empty() {
            continue;
        }
        f.head(name, help);
        for (c, v) in values {
            f.sample(name, &[("command", c)], v);
        }
    }
    if let Some(d) = &st.prune_deferred
        && let Some(since) = seconds(Some(&d.since))
    {
        let name = "cairn_prune_deferred_since_timestamp_seconds";
        f.head(
            name,
            "Since when prunes remove nothing because a target is away.",
        );
        f.sample(name, &[], since);
    }
    let rule = crate::rule::judge(cfg, st, jiff::Timestamp::now());
    for (name, help, value) in [
        (
            "cairn_rule_32110_met",
            "Whether the 3-2-1-1-0 rule holds (3 copies, 2 kinds, 1 off site, 1 offline or \
             immutable, 0 verification errors); `cairn status` says which part is missing.",
            f64::from(u8::from(rule.met)),
        ),
        (
            "cairn_rule_32110_copies",
            "Targets holding a complete snapshot of the last 8 days.",
            rule.copies.len() as f64,
        ),
    ] {
        f.head(name, help);
        f.sample(name, &[], value);
    }
    if let Some(c) = &cfg.contract {
        let day = |d: jiff::civil::Date| {
            d.to_zoned(jiff::tz::TimeZone::UTC)
                .map(|z| z.timestamp().as_second() as f64)
                .ok()
        };
        for (name, help, date) in [
            (
                "cairn_contract_end_timestamp_seconds",
                "The day the client's contract ends (contract_end).",
                c.end,
            ),
            (
                "cairn_contract_erase_timestamp_seconds",
                "The day cairn run erases the client (contract_end + keep_after_end).",
                c.erase_on,
            ),
        ] {
            if let Some(v) = day(date) {
                f.head(name, help);
                f.sample(name, &[], v);
            }
        }
    }
    out
}

/// Whether a target's record says it is behind.
fn lagging(r: &crate::state::TargetRecord) -> bool {
    r.lagging_since.is_some()
        || r.observed
            .as_ref()
            .is_some_and(|o| o.pending_files > 0 || o.pending_deletions > 0)
}

/// An RFC 3339 time as seconds since the epoch.
fn seconds(t: Option<&str>) -> Option<f64> {
    t?.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second() as f64)
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes the metrics, turning a failure into a warning: monitoring never fails a backup.
pub fn write_or_warn(cfg: &Config, observer: &dyn crate::progress::Observer) {
    if let Err(e) = write(cfg) {
        observer.warn(&format!("metrics not written: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_unknown_values_left_out() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let cfg = Config::parse(
            "[repository]\nname = \"acme \\\"x\\\"\"\n[[target]]\nname = \"a\"\nkind = \"local\"\npath = \"/tmp/x\"\n",
            std::path::Path::new("/etc/cairn/targets.toml"),
        )
        .unwrap();
        let mut st = State::default();
        let text = render(&cfg, &st);
        // Nothing known yet but that the target is not lagging.
        assert!(!text.contains("cairn_target_up"), "{text}");
        assert!(
            text.contains(
                "cairn_target_lagging{repository=\"acme \\\"x\\\"\",target=\"a\",kind=\"local\",required=\"true\"} 0"
            ),
            "{text}"
        );
        st.record_command("run", 3, 2.5);
        let text = render(&cfg, &st);
        assert!(
            text.contains(
                "cairn_command_last_exit_code{repository=\"acme \\\"x\\\"\",command=\"run\"} 3"
            ),
            "{text}"
        );
        assert!(
            !text.contains("cairn_command_last_success_timestamp_seconds"),
            "{text}"
        );
    }
}
