//! Evidence an auditor can read: what this machine recorded of each repository and target
//! (state, run history, audit log, erasure register) and the operators' keys on the targets,
//! judged into problems in words, for `cairn report` and its HTML page ([`html`]).
//!
//! Nothing here changes a target or the state. What could not be read is said on the page,
//! never left out: a report that hides a gap is worse than none.

mod chart;
pub mod html;

use jiff::Timestamp;
use serde::Serialize;

use crate::{
    audit,
    context::Context,
    erasure::{Certificate, Kind, Register},
    history::{self, History},
    ops::key::{self, KeyInfo},
    rule::{self, Rule},
    state::{self, CommandRecord, State, TargetRecord},
};

/// No complete snapshot for longer than this is a problem (the alert rule's 26 hours).
pub const BACKUP_HOURS: i64 = 26;
/// No verified restore from a target for longer than this is a problem (the alert rule's).
pub const VERIFY_DAYS: i64 = 8;
/// An optional target (a rotated disk) that missed more backups than this in a row is a
/// problem (the alert rule's); a required one is at the first.
pub const LAG_RUNS: u32 = 3;

/// Everything one report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// When it was gathered.
    pub generated: String,
    /// The machine.
    pub host: String,
    /// cairn's version.
    pub version: &'static str,
    /// The configuration file.
    pub config: String,
    /// Whether this is one client's page (`--repo`), not the provider's.
    pub one_client: bool,
    /// Problems, worst first, in words.
    pub problems: Vec<Problem>,
    /// Per repository, in configuration order.
    pub clients: Vec<ClientEvidence>,
    /// Erasures and purges of the repositories shown (the whole file's on the provider page).
    pub erasures: Vec<Certificate>,
}

/// One problem.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The repository it concerns.
    pub client: String,
    /// In words.
    pub text: String,
}

/// One repository.
#[derive(Debug, Clone, Serialize)]
pub struct ClientEvidence {
    /// Its name.
    pub name: String,
    /// Its targets.
    pub targets: Vec<TargetEvidence>,
    /// The 3-2-1-1-0 rule.
    pub rule: Rule,
    /// The last `cairn run`.
    pub last_run: Option<CommandRecord>,
    /// The last runs, oldest first.
    pub history: Vec<history::Entry>,
    /// Lines of the history that could not be read.
    pub history_unreadable: usize,
    /// Contract end and the day the client is erased, when declared.
    pub contract: Option<(String, String)>,
    /// The erasure at contract end, once within 30 days.
    pub contract_warning: Option<String>,
    /// The local audit log.
    pub audit: AuditLog,
    /// The operators' keys on the targets, or why they were not read.
    pub keys: std::result::Result<Vec<KeyInfo>, String>,
    /// What of the state folder could not be read.
    pub unreadable: Vec<String>,
}

/// The local audit log's chain.
#[derive(Debug, Clone, Serialize)]
pub struct AuditLog {
    /// Records in it.
    pub records: usize,
    /// The first fault, or why it could not be read; `None`: the chain verifies.
    pub fault: Option<String>,
}

/// One target of a repository: a cell of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct TargetEvidence {
    /// Its name.
    pub name: String,
    /// Its kind (`local`, `sftp`, ...; `removable` for a disk that is unplugged between runs).
    pub kind: String,
    /// `region`, when set.
    pub region: Option<String>,
    /// Whether a backup needs it.
    pub required: bool,
    /// The cell's state.
    pub state: Cell,
    /// What was recorded of it.
    pub recorded: TargetRecord,
}

/// A matrix cell's state, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cell {
    /// Its last verification or read check found damage.
    Failed,
    /// Never received a complete snapshot.
    Never,
    /// It missed backups.
    Lagging,
    /// No complete snapshot or no verified restore for too long.
    Stale,
    /// Level, recent, verified.
    Ok,
}

/// `s` with the characters that mean something in HTML escaped.
#[must_use]
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn age_secs(at: Option<&str>, now: Timestamp) -> Option<i64> {
    let t: Timestamp = at?.parse().ok()?;
    Some(now.duration_since(t).as_secs())
}

/// An age in words: `5 h`, `12 days`.
#[must_use]
pub fn age(secs: i64) -> String {
    match secs {
        s if s < 3_600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3_600),
        s => format!("{} days", s / 86_400),
    }
}

impl TargetEvidence {
    fn judge(r: &TargetRecord, now: Timestamp) -> Cell {
        let damaged = r.last_verify_ok == Some(false)
            || r.last_read_check.as_ref().is_some_and(|c| c.problems > 0);
        if damaged {
            Cell::Failed
        } else if r.last_complete_at.is_none() {
            Cell::Never
        } else if r.lagging_backups > 0 || r.lagging_since.is_some() {
            Cell::Lagging
        } else if age_secs(r.last_complete_at.as_deref(), now)
            .is_none_or(|s| s > BACKUP_HOURS * 3_600)
            || age_secs(r.last_verify_at.as_deref(), now).is_none_or(|s| s > VERIFY_DAYS * 86_400)
        {
            Cell::Stale
        } else {
            Cell::Ok
        }
    }
}

/// Gathers the evidence of `clients` (each a repository's context). `register` is the file's
/// erasure register; `one_client` keeps its certificates to the repositories shown.
#[must_use]
pub fn gather(clients: &[Context], register: &Register, one_client: bool) -> Evidence {
    let now = Timestamp::now();
    let config = clients
        .first()
        .map(|c| c.cfg().path.display().to_string())
        .unwrap_or_default();
    let clients: Vec<ClientEvidence> = clients.iter().map(|c| client(c, now)).collect();
    let erasures: Vec<Certificate> = register
        .certificates
        .iter()
        .filter(|c| !one_client || clients.iter().any(|k| k.name == c.repository))
        .cloned()
        .collect();
    let mut problems: Vec<Problem> = clients.iter().flat_map(|c| problems(c, now)).collect();
    for c in &erasures {
        let pending: Vec<String> = c.pending().map(|a| format!("`{}`", a.target)).collect();
        if !pending.is_empty() {
            problems.push(Problem {
                client: c.repository.clone(),
                text: format!(
                    "{}: {} decided {} is still pending on {} (done when reachable)",
                    c.repository,
                    what_erased(c),
                    c.decided,
                    pending.join(", ")
                ),
            });
        }
    }
    Evidence {
        generated: state::now(),
        host: crate::audit::host_name(),
        version: env!("CARGO_PKG_VERSION"),
        config,
        one_client,
        problems,
        clients,
        erasures,
    }
}

/// `erasure of the repository` / `purge of 2 path pattern(s)`.
#[must_use]
pub fn what_erased(c: &Certificate) -> String {
    match c.kind {
        Kind::Repository => "erasure of the repository".into(),
        Kind::Purge => format!("purge of {} path pattern(s)", c.patterns.len()),
    }
}

fn client(ctx: &Context, now: Timestamp) -> ClientEvidence {
    let cfg = ctx.cfg();
    let name = cfg
        .client
        .clone()
        .or_else(|| cfg.repository.name.clone())
        .unwrap_or_else(|| "repository".into());
    let mut unreadable = Vec::new();
    let (st, hist) = match state::dir(cfg) {
        Ok(dir) => (
            State::load(&dir).unwrap_or_else(|e| {
                unreadable.push(format!("targets' records: {e}"));
                State::default()
            }),
            history::load(&dir).unwrap_or_else(|e| {
                unreadable.push(format!("run history: {e}"));
                History::default()
            }),
        ),
        Err(e) => {
            unreadable.push(format!("state folder: {e}"));
            (State::default(), History::default())
        }
    };
    let targets = cfg
        .targets
        .iter()
        .map(|t| {
            let recorded = st.targets.get(&t.name).cloned().unwrap_or_default();
            TargetEvidence {
                name: t.name.clone(),
                kind: if t.is_removable() {
                    "removable".into()
                } else {
                    t.kind.name().into()
                },
                region: t.region.clone(),
                required: t.required,
                state: TargetEvidence::judge(&recorded, now),
                recorded,
            }
        })
        .collect();
    let keys = ctx
        .password()
        .map_err(|e| format!("not read: {e}"))
        .and_then(|pw| key::list(ctx, &pw).map_err(|e| format!("not read: {e}")));
    ClientEvidence {
        rule: rule::judge(cfg, &st, now),
        last_run: st.commands.get("run").cloned(),
        history: hist.runs,
        history_unreadable: hist.unreadable,
        contract: cfg
            .contract
            .map(|c| (c.end.to_string(), c.erase_on.to_string())),
        contract_warning: cfg.contract.and_then(|c| c.warning(&name, state::today())),
        audit: audit_log(cfg),
        keys,
        unreadable,
        targets,
        name,
    }
}

fn audit_log(cfg: &crate::config::Config) -> AuditLog {
    let lines =
        audit::path(cfg)
            .map_err(|e| e.to_string())
            .and_then(|p| match audit::read_lines(&p) {
                Ok(l) => Ok(l),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(format!("{}: {e}", p.display())),
            });
    match lines {
        Ok(lines) => AuditLog {
            records: lines.len(),
            fault: audit::verify(&lines).map(|f| format!("{} (line {})", f.what, f.line)),
        },
        Err(e) => AuditLog {
            records: 0,
            fault: Some(format!("not read: {e}")),
        },
    }
}

/// What is wrong with one repository, in words, worst first.
fn problems(c: &ClientEvidence, now: Timestamp) -> Vec<Problem> {
    let n = &c.name;
    let mut out: Vec<(u8, String)> = Vec::new();
    for what in &c.unreadable {
        out.push((0, format!("{n}: could not read its {what}")));
    }
    if let Some(f) = &c.audit.fault {
        out.push((0, format!("{n}: the audit log does not verify: {f}")));
    }
    for t in &c.targets {
        let r = &t.recorded;
        let tn = &t.name;
        if r.last_verify_ok == Some(false) {
            let seed = r
                .last_verify_sample
                .as_ref()
                .map(|s| format!(", {} file(s), seed {}", s.files, s.seed))
                .unwrap_or_default();
            out.push((
                0,
                format!(
                    "{n}: the last sample verification failed on `{tn}` ({}{seed}): a restore \
                     from it is not proven",
                    r.last_verify_at.as_deref().unwrap_or("?")
                ),
            ));
        }
        if let Some(k) = r.last_read_check.as_ref().filter(|k| k.problems > 0) {
            out.push((
                0,
                format!(
                    "{n}: `cairn check --read-data` found {} problem(s) on `{tn}` ({})",
                    k.problems, k.at
                ),
            ));
        }
        match age_secs(r.last_complete_at.as_deref(), now) {
            None => out.push((1, format!("{n}: `{tn}` never received a complete snapshot"))),
            Some(s) if s > BACKUP_HOURS * 3_600 => out.push((
                1,
                format!("{n}: no complete backup on `{tn}` for {}", age(s)),
            )),
            Some(_) => {}
        }
        if r.lagging_backups > 0 && (t.required || r.lagging_backups > LAG_RUNS) {
            let why = r
                .last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            out.push((
                2,
                format!(
                    "{n}: `{tn}` missed {} backup(s) (lagging since {}){why}",
                    r.lagging_backups,
                    r.lagging_since.as_deref().unwrap_or("?")
                ),
            ));
        }
        if r.last_verify_ok != Some(false) {
            match age_secs(r.last_verify_at.as_deref(), now) {
                None => out.push((2, format!("{n}: no verified restore from `{tn}` yet"))),
                Some(s) if s > VERIFY_DAYS * 86_400 => out.push((
                    2,
                    format!("{n}: no verified restore from `{tn}` for {}", age(s)),
                )),
                Some(_) => {}
            }
        }
    }
    if let Some(r) = c.last_run.as_ref().filter(|r| r.exit_code != 0) {
        out.push((
            1,
            format!(
                "{n}: the last run ({}) ended with exit {}",
                r.at, r.exit_code
            ),
        ));
    }
    if !c.rule.met {
        out.push((3, format!("{n}: {}", c.rule.line())));
    }
    if let Some(w) = &c.contract_warning {
        out.push((3, w.clone()));
    }
    if c.history_unreadable > 0 {
        out.push((
            3,
            format!(
                "{n}: {} line(s) of the run history could not be read",
                c.history_unreadable
            ),
        ));
    }
    out.sort_by_key(|(rank, _)| *rank);
    out.into_iter()
        .map(|(_, text)| Problem {
            client: n.clone(),
            text,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, required: bool, recorded: TargetRecord) -> TargetEvidence {
        TargetEvidence {
            name: name.into(),
            kind: "local".into(),
            region: None,
            required,
            state: TargetEvidence::judge(&recorded, Timestamp::now()),
            recorded,
        }
    }

    fn acme(targets: Vec<TargetEvidence>) -> ClientEvidence {
        ClientEvidence {
            name: "acme".into(),
            targets,
            rule: Rule {
                met: true,
                ..Rule::default()
            },
            last_run: None,
            history: Vec::new(),
            history_unreadable: 0,
            contract: None,
            contract_warning: None,
            audit: AuditLog {
                records: 0,
                fault: None,
            },
            keys: Ok(Vec::new()),
            unreadable: Vec::new(),
        }
    }

    fn ago(secs: i64) -> Option<String> {
        Some(
            (Timestamp::now() - jiff::SignedDuration::from_secs(secs))
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        )
    }

    fn fresh(lagging_backups: u32) -> TargetRecord {
        TargetRecord {
            last_complete_at: ago(3_600),
            last_verify_at: ago(86_400),
            last_verify_ok: Some(true),
            lagging_backups,
            lagging_since: (lagging_backups > 0).then(|| ago(3_600)).flatten(),
            ..TargetRecord::default()
        }
    }

    fn texts(c: &ClientEvidence) -> Vec<String> {
        problems(c, Timestamp::now())
            .into_iter()
            .map(|p| p.text)
            .collect()
    }

    #[test]
    fn a_rotated_disk_away_for_a_few_runs_lags_without_being_a_problem() {
        let c = acme(vec![
            target("office", true, fresh(0)),
            target("usb", false, fresh(LAG_RUNS)),
        ]);
        assert_eq!(c.targets[1].state, Cell::Lagging);
        assert_eq!(c.targets[0].state, Cell::Ok);
        assert!(texts(&c).is_empty(), "{:?}", texts(&c));
        let c = acme(vec![target("usb", false, fresh(LAG_RUNS + 1))]);
        assert_eq!(texts(&c).len(), 1);
        assert!(texts(&c)[0].starts_with("acme: `usb` missed 4 backup(s) (lagging since "));
        let c = acme(vec![target("nas", true, fresh(1))]);
        assert!(texts(&c)[0].starts_with("acme: `nas` missed 1 backup(s)"));
    }

    #[test]
    fn damage_comes_before_age_and_every_gap_is_named() {
        let mut failed = fresh(0);
        failed.last_verify_ok = Some(false);
        let mut old = fresh(0);
        old.last_complete_at = ago(30 * 3_600);
        old.last_verify_at = ago(12 * 86_400);
        let mut c = acme(vec![
            target("old", true, old),
            target("never", true, TargetRecord::default()),
            target("nas", true, failed),
        ]);
        c.audit.fault = Some("record 3 was changed".into());
        let t = texts(&c);
        assert_eq!(
            t,
            vec![
                "acme: the audit log does not verify: record 3 was changed".to_string(),
                format!(
                    "acme: the last sample verification failed on `nas` ({}): a restore from \
                     it is not proven",
                    c.targets[2].recorded.last_verify_at.as_deref().unwrap()
                ),
                "acme: no complete backup on `old` for 30 h".into(),
                "acme: `never` never received a complete snapshot".into(),
                "acme: no verified restore from `old` for 12 days".into(),
                "acme: no verified restore from `never` yet".into(),
            ]
        );
        assert_eq!(
            c.targets.iter().map(|t| t.state).collect::<Vec<_>>(),
            vec![Cell::Stale, Cell::Never, Cell::Failed]
        );
    }
}
