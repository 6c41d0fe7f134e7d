//! Commands cairn runs for the admin (notification and failure hooks): a shell command with a
//! report path and a few variables, a time limit, and no secret in its environment. A hook that
//! fails or hangs is reported, never fatal: it is someone else's script.

use std::{
    os::{fd::AsFd, unix::process::CommandExt},
    path::Path,
    process::Stdio,
    sync::mpsc,
    time::{Duration, Instant},
};

use serde::Serialize;

/// What became of a hook.
#[derive(Debug, Clone, Serialize)]
pub struct HookResult {
    /// Which hook (`on_failure`, ...).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hook: String,
    /// The command as configured.
    pub command: String,
    /// Its exit code (None if it could not be started, was killed, or timed out).
    pub exit_code: Option<i32>,
    /// Whether it was killed for running past its time limit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// Seconds it ran.
    pub seconds: f64,
    /// Why it could not be started, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HookResult {
    /// Whether it ran and exited 0.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// One line for a log: `on_failure hook exited 0`.
    #[must_use]
    pub fn describe(&self) -> String {
        let what = match (self.exit_code, &self.error) {
            (Some(0), _) => "exited 0".to_string(),
            (Some(c), _) => format!("FAILED with exit code {c}"),
            (None, Some(e)) => format!("could not be run: {e}"),
            (None, None) if self.timed_out => {
                format!("was killed after {:.0}s (its time limit)", self.seconds)
            }
            (None, None) => "was killed by a signal".to_string(),
        };
        let name = if self.hook.is_empty() {
            "hook"
        } else {
            &self.hook
        };
        format!("{name} hook {what}")
    }
}

/// Runs `sh -c COMMAND ARG0 REPORT` (so `$1` is the report's path) with `vars` added to its
/// environment, killing it and everything it started once `timeout` has passed. Its output goes
/// to cairn's standard error (the journal under systemd), never to standard output, which may
/// carry `--json`.
#[must_use]
pub fn run(
    hook: &str,
    command: &str,
    arg0: &str,
    report: &Path,
    vars: &[(&str, String)],
    timeout: Duration,
) -> HookResult {
    let started = Instant::now();
    let mut result = HookResult {
        hook: hook.to_string(),
        command: command.to_string(),
        exit_code: None,
        timed_out: false,
        seconds: 0.0,
        error: None,
    };
    let mut cmd = crate::secret::shell(command);
    cmd.arg(arg0).arg(report).stdin(Stdio::null());
    if let Ok(err) = std::io::stderr().as_fd().try_clone_to_owned() {
        cmd.stdout(err);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    // Its own process group, so that a timeout ends what it started too (a `sleep`, a `curl`).
    cmd.process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            result.error = Some(e.to_string());
            return result;
        }
    };
    let pgid = child.id().cast_signed();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(s) => s,
        Err(_) => {
            result.timed_out = true;
            // SAFETY: kill(2) on the hook's own process group; no memory is involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            rx.recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("hook waiter lost")))
        }
    };
    let _ = waiter.join();
    result.seconds = started.elapsed().as_secs_f64();
    match status {
        Ok(s) => result.exit_code = s.code(),
        Err(e) => result.error = Some(e.to_string()),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_gets_its_report_and_variables_and_its_exit_code_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = format!(
            "printf '%s %s' \"$1\" \"$CAIRN_RESULT\" > {}",
            out.display()
        );
        let r = run(
            "on_failure",
            &cmd,
            "cairn-run",
            Path::new("/x/report.json"),
            &[("CAIRN_RESULT", "partial".into())],
            crate::config::DEFAULT_HOOK_TIMEOUT,
        );
        assert!(r.ok(), "{r:?}");
        assert_eq!(
            std::fs::read_to_string(out).unwrap(),
            "/x/report.json partial"
        );
        let r = run(
            "h",
            "exit 7",
            "a",
            Path::new("r"),
            &[],
            crate::config::DEFAULT_HOOK_TIMEOUT,
        );
        assert_eq!(r.exit_code, Some(7));
        assert!(r.describe().contains("exit code 7"), "{}", r.describe());
    }

    #[test]
    fn a_hanging_hook_and_what_it_started_are_killed_at_the_time_limit() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // A grandchild that would outlive a kill of the shell alone.
        let cmd = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let r = run(
            "on_success",
            &cmd,
            "a",
            Path::new("r"),
            &[],
            Duration::from_secs(2),
        );
        assert!(r.timed_out && r.exit_code.is_none(), "{r:?}");
        assert!(r.describe().contains("killed"), "{}", r.describe());
        let pid: i32 = std::fs::read_to_string(pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The sleep is gone (or a zombie about to be reaped by init). SIGKILL is delivered
        // asynchronously: under load the kernel may not have acted on it yet when `run`
        // returns, so the state is polled, with a deadline.
        let state = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next())
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !matches!(state(), None | Some('Z')) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(matches!(state(), None | Some('Z')), "{:?}", state());
    }
}
