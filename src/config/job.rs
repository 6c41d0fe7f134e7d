//! The nightly job's settings: `[notify]`, `[metrics]`, `[log]` and `[schedule]`.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::ByteCount;

/// How long a hook may run when the configuration does not say.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// `[notify]`: commands run after `cairn run` by its result, and a ping URL (healthchecks.io
/// style) told when a run starts, succeeds or fails.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Run when everything worked.
    pub on_success: Option<String>,
    /// Run when a run was partially done (a required target left behind, unread source files).
    pub on_partial: Option<String>,
    /// Run when a run failed, found damage, or was locked out.
    pub on_failure: Option<String>,
    /// Pinged at `URL/start`, `URL` (success) and `URL/fail`. Holds a token: never logged whole.
    pub ping_url: Option<String>,
    /// Seconds a hook or a ping may take (default 60) before it is killed or given up.
    pub timeout: Option<u64>,
}

impl NotifyConfig {
    /// The time limit of a hook or ping.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
            .map_or(DEFAULT_HOOK_TIMEOUT, Duration::from_secs)
    }

    /// The command for an outcome, by its exit code.
    #[must_use]
    pub fn command_for(&self, code: i32) -> Option<(&'static str, &str)> {
        match code {
            crate::exit::OK => self.on_success.as_deref().map(|c| ("on_success", c)),
            crate::exit::PARTIAL | crate::exit::INCOMPLETE => {
                self.on_partial.as_deref().map(|c| ("on_partial", c))
            }
            _ => self.on_failure.as_deref().map(|c| ("on_failure", c)),
        }
    }
}

/// `[metrics]`: Prometheus text-file output (node_exporter's textfile collector).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// The `.prom` file, rewritten atomically after every command.
    pub path: Option<PathBuf>,
}

/// `[report]`: the evidence page `cairn run` rewrites after every run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// The HTML file (every repository of the file on one page), relative to the file.
    pub html: Option<PathBuf>,
}

/// `[log]`: the run log in the state folder.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Size at which the log is rotated (default 10 MiB).
    pub max_bytes: Option<ByteCount>,
    /// Rotated logs kept (default 3).
    pub keep: Option<u32>,
}

impl LogConfig {
    /// Rotation size.
    #[must_use]
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes.map_or(10 << 20, |b| b.0)
    }
    /// Rotated files kept.
    #[must_use]
    pub fn keep(&self) -> u32 {
        self.keep.unwrap_or(3)
    }
}

/// `[schedule]`: the systemd timers `cairn schedule` writes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// When `cairn run` starts: a systemd calendar expression (default `*-*-* 01:00:00`).
    pub run_at: Option<String>,
    /// When a separate `cairn verify` starts (default: no separate verify timer).
    pub verify_at: Option<String>,
    /// Random delay added to each start, a systemd time span (default `30min`).
    pub randomized_delay: Option<String>,
    /// Where the files behind `credential:NAME` secrets are (default `/etc/credstore`).
    pub credentials_dir: Option<PathBuf>,
}
