//! The 3-2-1-1-0 rule, as provider auditors know it from Veeam, judged from what this machine
//! recorded of one repository's targets: at least 3 copies, on 2 kinds of storage, 1 off site,
//! 1 offline or immutable, and 0 errors in the last verification.
//!
//! What counts, so that the line never claims more than the records show:
//! - a *copy* is a target that received a complete snapshot in the last [`FRESH_DAYS`] days
//!   (a rotated disk at home still counts for the week it is away);
//! - *kinds* are media: a local folder, a removable disk, SFTP, SMB, Azure Blob, S3;
//! - *off site* is a copy that is not on a local path (a disk taken home cannot be told apart
//!   from one in the drawer);
//! - *offline* is a removable disk that a backup found unplugged in the last [`FRESH_DAYS`] days,
//!   or a target whose protection (S3 Object Lock) `check --immutability` proved in that time;
//! - *0 errors*: every target's last verification passed, and at least one was verified.

use serde::Serialize;

use crate::{
    config::{Config, TargetConfig, TargetKind},
    state::State,
};

/// How recent a complete snapshot (or an unplugged disk) must be to count.
pub const FRESH_DAYS: i64 = 8;

/// The rule for one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Every part holds.
    pub met: bool,
    /// Targets that count as copies.
    pub copies: Vec<String>,
    /// The kinds of storage among them.
    pub kinds: Vec<String>,
    /// Copies off site.
    pub off_site: Vec<String>,
    /// Copies offline (or immutable).
    pub offline: Vec<String>,
    /// Targets whose last verification failed.
    pub verify_failed: Vec<String>,
    /// Whether any target was ever verified.
    pub verified: bool,
    /// The parts not met, in words.
    pub missing: Vec<String>,
}

impl Rule {
    /// One line for `status`.
    #[must_use]
    pub fn line(&self) -> String {
        if self.met {
            format!(
                "3-2-1-1-0: met ({} copies: {}; {} kinds; off site: {}; offline: {}; last \
                 verification clean)",
                self.copies.len(),
                self.copies.join(", "),
                self.kinds.len(),
                self.off_site.join(", "),
                self.offline.join(", ")
            )
        } else {
            format!("3-2-1-1-0: not met: {}", self.missing.join("; "))
        }
    }
}

/// The medium a target is, for the "2 kinds" part.
fn medium(t: &TargetConfig) -> &'static str {
    match &t.kind {
        TargetKind::Local { .. } if t.is_removable() => "removable disk",
        TargetKind::Local { .. } => "local folder",
        other => other.name(),
    }
}

fn within(at: Option<&str>, now: jiff::Timestamp) -> bool {
    at.and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| now.duration_since(t).as_secs() <= FRESH_DAYS * 86_400)
}

/// Judges the rule for `cfg`'s targets from the records in `st`, as of `now`.
#[must_use]
pub fn judge(cfg: &Config, st: &State, now: jiff::Timestamp) -> Rule {
    let mut r = Rule::default();
    let record = |t: &TargetConfig| st.targets.get(&t.name).cloned().unwrap_or_default();
    for t in &cfg.targets {
        let rec = record(t);
        if rec.last_verify_ok == Some(false) {
            r.verify_failed.push(t.name.clone());
        }
        r.verified |= rec.last_verify_at.is_some();
        if !within(rec.last_complete_at.as_deref(), now) {
            continue;
        }
        r.copies.push(t.name.clone());
        let kind = medium(t).to_string();
        if !r.kinds.contains(&kind) {
            r.kinds.push(kind);
        }
        if !matches!(t.kind, TargetKind::Local { .. }) {
            r.off_site.push(t.name.clone());
        }
        let proven_immutable =
            rec.immutable == Some(true) && within(rec.immutability_checked_at.as_deref(), now);
        if proven_immutable || (t.is_removable() && within(rec.last_offline_at.as_deref(), now)) {
            r.offline.push(t.name.clone());
        }
    }
    if r.copies.len() < 3 {
        r.missing.push(format!(
            "{} cop{} with a snapshot of the last {FRESH_DAYS} days{}, 3 needed",
            r.copies.len(),
            if r.copies.len() == 1 { "y" } else { "ies" },
            if r.copies.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.copies.join(", "))
            }
        ));
    }
    if r.kinds.len() < 2 {
        r.missing
            .push(format!("{} kind of storage, 2 needed", r.kinds.len()));
    }
    if r.off_site.is_empty() {
        r.missing
            .push("no copy off site (SFTP, SMB, Azure or S3)".into());
    }
    if r.offline.is_empty() {
        r.missing.push(format!(
            "no offline or immutable copy (a removable disk found unplugged by a backup, or a \
             target whose protection `check --immutability` proved, in the last {FRESH_DAYS} days)"
        ));
    }
    if !r.verify_failed.is_empty() {
        r.missing.push(format!(
            "the last verification failed on {}",
            r.verify_failed.join(", ")
        ));
    } else if !r.verified {
        r.missing.push("no verification yet".into());
    }
    r.met = r.missing.is_empty();
    r
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::state::TargetRecord;

    const TARGETS: &str = r#"
[repository]
name = "acme"

[backup]
sources = ["/srv/acme"]

[[target]]
name = "nas"
kind = "local"
path = "/srv/backup"

[[target]]
name = "usb"
kind = "local"
path = "/mnt/usb/cairn"
removable = true
mount_point = "/mnt/usb"

[[target]]
name = "dc"
kind = "sftp"
host = "backup.example"
user = "cairn"
key_file = "/root/.ssh/id_ed25519"
path = "/srv/cairn"
"#;

    fn now() -> jiff::Timestamp {
        "2026-12-07T03:00:00Z".parse().unwrap()
    }

    /// A target backed up `days` ago, verified with `ok`.
    fn rec(days: i64, ok: bool) -> TargetRecord {
        let at = now()
            .checked_sub(jiff::SignedDuration::from_hours(24 * days))
            .unwrap()
            .to_string();
        TargetRecord {
            last_complete_at: Some(at.clone()),
            last_verify_at: Some(at),
            last_verify_ok: Some(ok),
            ..TargetRecord::default()
        }
    }

    fn state(usb_away_days: Option<i64>) -> State {
        let mut st = State::default();
        st.targets.insert("nas".into(), rec(0, true));
        st.targets.insert("dc".into(), rec(0, true));
        let mut usb = rec(3, true);
        usb.last_offline_at = usb_away_days.map(|d| {
            now()
                .checked_sub(jiff::SignedDuration::from_hours(24 * d))
                .unwrap()
                .to_string()
        });
        st.targets.insert("usb".into(), usb);
        st
    }

    fn cfg(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/cairn/targets.toml")).unwrap()
    }

    #[test]
    fn three_copies_two_kinds_off_site_an_unplugged_disk_and_clean_verification_meet_it() {
        let r = judge(&cfg(TARGETS), &state(Some(1)), now());
        assert!(r.met, "{}", r.line());
        assert_eq!(r.copies, ["nas", "usb", "dc"]);
        assert_eq!(r.kinds, ["local folder", "removable disk", "sftp"]);
        assert_eq!(r.off_site, ["dc"]);
        assert_eq!(r.offline, ["usb"]);
        assert!(
            r.line().starts_with("3-2-1-1-0: met (3 copies"),
            "{}",
            r.line()
        );
    }

    #[test]
    fn two_targets_are_two_copies_short_of_the_rule() {
        let two = TARGETS.split("[[target]]\nname = \"dc\"").next().unwrap();
        let r = judge(&cfg(two), &state(Some(1)), now());
        assert!(!r.met);
        assert_eq!(
            r.missing,
            [
                "2 copies with a snapshot of the last 8 days (nas, usb), 3 needed",
                "no copy off site (SFTP, SMB, Azure or S3)"
            ]
        );
    }

    #[test]
    fn a_disk_never_unplugged_is_no_offline_copy() {
        for away in [None, Some(9)] {
            let r = judge(&cfg(TARGETS), &state(away), now());
            assert!(!r.met);
            assert_eq!(r.missing.len(), 1, "{:?}", r.missing);
            assert!(
                r.missing[0].starts_with("no offline or immutable copy"),
                "{:?}",
                r.missing
            );
        }
    }

    #[test]
    fn a_failed_or_missing_verification_is_not_zero_errors() {
        let mut st = state(Some(1));
        st.targets.get_mut("dc").unwrap().last_verify_ok = Some(false);
        let r = judge(&cfg(TARGETS), &st, now());
        assert_eq!(r.missing, ["the last verification failed on dc"]);
        assert_eq!(
            r.line(),
            "3-2-1-1-0: not met: the last verification failed on dc"
        );
        for t in st.targets.values_mut() {
            t.last_verify_at = None;
            t.last_verify_ok = None;
        }
        assert_eq!(
            judge(&cfg(TARGETS), &st, now()).missing,
            ["no verification yet"]
        );
        // A copy older than 8 days no longer counts.
        let mut st = state(Some(1));
        st.targets.get_mut("dc").unwrap().last_complete_at = rec(9, true).last_complete_at;
        let r = judge(&cfg(TARGETS), &st, now());
        assert_eq!(r.copies, ["nas", "usb"]);
    }
}
