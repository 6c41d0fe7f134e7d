//! Per-target outcomes and command reports, serialisable for `--json` and later the audit log.

use serde::Serialize;

/// Findings that share a cause (`K`: which target, what went wrong): one line for the admin
/// however many files it affects, e.g. one damaged pack behind a hundred sampled files.
#[derive(Debug, Clone, Serialize)]
pub struct Cause<K> {
    /// The cause.
    #[serde(flatten)]
    pub key: K,
    /// How many files it affects (0: none in particular, e.g. the target itself).
    pub files: usize,
    /// Up to three of them.
    pub examples: Vec<String>,
}

impl<K> Cause<K> {
    /// `what (N units, e.g. a, b, c, …)`, or `what` alone when it concerns no file; `unit` is
    /// singular (`file`, `entry`).
    #[must_use]
    pub fn describe(&self, what: &str, unit: &str) -> String {
        if self.files == 0 {
            return what.to_string();
        }
        let unit = match (self.files, unit.strip_suffix('y')) {
            (1, _) => unit.to_string(),
            (_, Some(stem)) => format!("{stem}ies"),
            (_, None) => format!("{unit}s"),
        };
        let more = if self.files > self.examples.len() {
            ", …"
        } else {
            ""
        };
        format!(
            "{what} ({} {unit}, e.g. {}{more})",
            self.files,
            self.examples.join(", ")
        )
    }
}

#[cfg(test)]
mod cause_tests {
    use super::{causes, template};

    #[test]
    fn findings_with_one_cause_are_one_line_with_three_examples() {
        let found = (0..100).map(|i| {
            let (what, _) = template(&format!(
                "changed size while it was read ({i} bytes when listed, {} read)",
                i + 1
            ));
            (what, Some(format!("/srv/f{i}")))
        });
        let c = causes(found.chain([("cannot open: denied (os error 13)".to_string(), None)]));
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].files, 100);
        assert_eq!(
            c[0].describe(&c[0].key, "entry"),
            "changed size while it was read (N bytes when listed, N read) (100 entries, e.g. \
             /srv/f0, /srv/f1, /srv/f2, …)"
        );
        assert_eq!(
            c[1].describe(&c[1].key, "entry"),
            "cannot open: denied (os error 13)"
        );
        let (what, id) = template("pack 1fb7e80b: size computed by index: 2933, actual size: 100.");
        assert_eq!(what, "pack …: size computed by index: N, actual size: N.");
        assert_eq!(id.as_deref(), Some("1fb7e80b"));
    }
}

/// Groups findings, each a cause and the file it affects (if any), by cause, in the order the
/// causes were first met.
pub fn causes<K: PartialEq>(
    findings: impl IntoIterator<Item = (K, Option<String>)>,
) -> Vec<Cause<K>> {
    let mut out: Vec<Cause<K>> = Vec::new();
    for (key, file) in findings {
        let i = match out.iter().position(|c| c.key == key) {
            Some(i) => i,
            None => {
                out.push(Cause {
                    key,
                    files: 0,
                    examples: Vec::new(),
                });
                out.len() - 1
            }
        };
        if let Some(f) = file {
            let c = &mut out[i];
            c.files += 1;
            if c.examples.len() < 3 {
                c.examples.push(f);
            }
        }
    }
    out
}

/// A message with its ids and figures left out (`pack … size computed by index: N`), so that
/// a hundred files with the same fault are one cause, and the first id it held.
#[must_use]
pub fn template(message: &str) -> (String, Option<String>) {
    let mut id = None;
    let mut previous = "";
    let words: Vec<String> = message
        .split(' ')
        .map(|w| {
            let core = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            // An error code (`os error 13`) says what went wrong; it is no figure.
            let code = previous == "error";
            previous = w;
            if core.len() >= 8 && core.chars().all(|c| c.is_ascii_hexdigit()) {
                id.get_or_insert_with(|| core.to_string());
                w.replace(core, "…")
            } else if !code && !core.is_empty() && core.chars().all(|c| c.is_ascii_digit()) {
                w.replace(core, "N")
            } else {
                w.to_string()
            }
        })
        .collect();
    (words.join(" "), id)
}

/// What became of one target in a run, for every command: one set of states, one rule for
/// "partially done" ([`is_partial`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetState {
    /// Took part and received everything.
    Complete,
    /// Was read from (read-only commands).
    Available,
    /// Every sampled file passed every check (`verify`).
    Verified,
    /// Listed, and hashed as asked (`check`).
    Checked,
    /// Holds every file the others hold (`sync`, `status`).
    Level,
    /// Was missing files and now holds everything (`sync`).
    CaughtUp,
    /// Some files could not be copied to it; it is still lagging (`sync`).
    Incomplete,
    /// Dropped during the run after a failure (a backup's: it has no snapshot of this run), or
    /// a check failed on it.
    Failed,
    /// A removable disk that is not mounted.
    Offline,
    /// Could not be reached or listed.
    Unreachable,
    /// Its storage is full or over quota: free space (or raise the quota), then sync.
    Full,
    /// Holds another repository than the one this machine has been using: left out.
    Foreign,
    /// Reachable but holds no repository yet.
    NotInitialised,
    /// Holds the repository but lacks files the others have; not written until it is synced.
    Lagging,
    /// Not used in this run (e.g. `--from` chose another target).
    NotUsed,
}

impl TargetState {
    /// Whether a required target in this state makes a run only partially done.
    #[must_use]
    pub fn is_shortfall(self) -> bool {
        !matches!(
            self,
            Self::Complete
                | Self::Available
                | Self::Verified
                | Self::Checked
                | Self::Level
                | Self::CaughtUp
                | Self::NotUsed
        )
    }

    /// For commands that vouch for every target (verify, check): whether this target could not
    /// be vouched for. An unplugged optional disk is expected; any other target that could not
    /// be reached is not.
    #[must_use]
    pub fn is_unvouched(self, required: bool) -> bool {
        self == Self::Unreachable || (self == Self::Offline && required)
    }
}

/// A target's line in any command's report.
pub trait Outcome {
    /// The target's name.
    fn name(&self) -> &str;
    /// Whether it is required.
    fn required(&self) -> bool;
    /// What became of it.
    fn state(&self) -> TargetState;
}

/// Implements [`Outcome`] for a report line with `name`, `required` and `state` fields.
#[macro_export]
#[doc(hidden)]
macro_rules! outcome_fields {
    ($t:ty) => {
        impl $crate::report::Outcome for $t {
            fn name(&self) -> &str {
                &self.name
            }
            fn required(&self) -> bool {
                self.required
            }
            fn state(&self) -> $crate::report::TargetState {
                self.state
            }
        }
    };
}

outcome_fields!(TargetOutcome);

/// One target's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TargetOutcome {
    /// Target name.
    pub name: String,
    /// `local`, `sftp`, `azblob`, `s3`.
    pub kind: String,
    /// Where it is (no secrets).
    pub location: String,
    /// Whether it is required.
    pub required: bool,
    /// What became of it.
    pub state: TargetState,
    /// Bytes written to it in this run.
    pub bytes_written: u64,
    /// Repository files written to it in this run.
    pub files_written: u64,
    /// Why it is not complete, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The one rule for "partially done": some required target fell short.
#[must_use]
pub fn is_partial<T: Outcome>(targets: &[T]) -> bool {
    targets
        .iter()
        .any(|t| t.required() && t.state().is_shortfall())
}

/// The required targets that fell short, by name.
#[must_use]
pub fn shortfalls<T: Outcome>(targets: &[T]) -> Vec<String> {
    targets
        .iter()
        .filter(|t| t.required() && t.state().is_shortfall())
        .map(|t| t.name().to_string())
        .collect()
}

/// How a unit enum is spelled in JSON (`not-initialised`), for text and hook variables.
#[must_use]
pub fn label<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Human-readable byte count (binary units: "1.5 KiB").
#[must_use]
pub fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(required: bool, state: TargetState) -> TargetOutcome {
        TargetOutcome {
            name: "x".into(),
            kind: "local".into(),
            location: String::new(),
            required,
            state,
            bytes_written: 0,
            files_written: 0,
            detail: None,
        }
    }

    #[test]
    fn only_required_shortfalls_make_a_run_partial() {
        assert!(!is_partial(&[
            t(true, TargetState::Complete),
            t(false, TargetState::Offline)
        ]));
        assert!(is_partial(&[
            t(true, TargetState::Complete),
            t(true, TargetState::Failed)
        ]));
        assert!(is_partial(&[t(true, TargetState::Lagging)]));
    }

    #[test]
    fn bytes_are_humanised() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
