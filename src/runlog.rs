//! The run log: one JSON object per line, appended to `run.log` in the state folder, rotated by
//! size (`run.log.1` is the newest old one). Every message is scrubbed of secrets first.

use std::{
    fs::File,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde_json::{Map, Value, json};

use crate::{
    config::Config,
    error::{Error, Result},
    secret::redact,
    state,
};

/// The log's file name in the state folder.
pub const FILE: &str = "run.log";

/// An open run log.
#[derive(Debug)]
pub struct RunLog {
    file: Mutex<File>,
    run: String,
    path: PathBuf,
}

impl RunLog {
    /// Opens the log for one run (`run` identifies its lines), rotating it first when it has
    /// reached `[log] max_bytes`.
    ///
    /// # Errors
    /// The state folder or the log cannot be opened.
    pub fn open(cfg: &Config, run: &str) -> Result<Self> {
        let path = state::dir(cfg)?.join(FILE);
        rotate(&path, cfg.log.max_bytes(), cfg.log.keep())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            file: Mutex::new(file),
            run: run.to_string(),
            path,
        })
    }

    /// Where it is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line: `event` (`step`, `warn`, `hook`, `result`, ...), a message, and
    /// `fields` (an object; its strings are scrubbed too). A line that cannot be written is
    /// dropped: the log never stops a run.
    pub fn line(&self, level: &str, event: &str, message: &str, fields: Value) {
        let mut obj = Map::new();
        obj.insert("time".into(), json!(state::now()));
        obj.insert("run".into(), json!(self.run));
        obj.insert("level".into(), json!(level));
        obj.insert("event".into(), json!(event));
        obj.insert("message".into(), json!(redact(message)));
        if let Value::Object(extra) = fields {
            for (k, v) in extra {
                obj.insert(k, scrub(v));
            }
        }
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// `v` with secrets scrubbed from every string in it.
fn scrub(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(redact(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(scrub).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, scrub(v))).collect()),
        other => other,
    }
}

/// Moves `path` to `path.1` (and `.1` to `.2`, ... dropping the oldest) once it holds
/// `max_bytes` or more.
fn rotate(path: &Path, max_bytes: u64, keep: u32) -> Result<()> {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size < max_bytes {
        return Ok(());
    }
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io { path: p, source }
    };
    if keep == 0 {
        return std::fs::remove_file(path).map_err(io(path));
    }
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1)).map_err(io(&from))?;
        }
    }
    std::fs::rename(path, numbered(1)).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_resolved_by_the_process_never_reach_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::parse(
            "[[target]]\nname = \"a\"\nkind = \"local\"\npath = \"/tmp/x\"\n",
            &dir.path().join("targets.toml"),
        )
        .unwrap();
        let secret = crate::secret::Secret::new("runlog-secret-9f1c".into());
        let log = RunLog::open(&cfg, "r1").unwrap();
        log.line(
            "WARN",
            "warn",
            &format!("auth failed with {}", secret.expose()),
            json!({ "detail": [format!("x{}x", secret.expose())] }),
        );
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(!text.contains(secret.expose()), "{text}");
        assert!(
            text.contains("auth failed with ***") && text.contains("x***x"),
            "{text}"
        );
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["run"], "r1");
    }

    #[test]
    fn the_log_rotates_by_size_keeping_the_newest_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(FILE);
        for n in 0..5 {
            std::fs::write(&log, format!("run {n}\n").repeat(10)).unwrap();
            rotate(&log, 20, 2).unwrap();
            assert!(!log.exists());
        }
        let read = |n: u32| std::fs::read_to_string(format!("{}.{n}", log.display())).unwrap();
        assert!(read(1).starts_with("run 4"));
        assert!(read(2).starts_with("run 3"));
        assert!(!dir.path().join("run.log.3").exists());
        // Under the limit, nothing moves.
        std::fs::write(&log, "x").unwrap();
        rotate(&log, 20, 2).unwrap();
        assert!(log.exists());
    }
}
