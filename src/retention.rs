//! Which snapshots a retention policy keeps: restic's rules, to the letter.
//!
//! rustic_core's `KeepOptions` differs from restic in ways an admin would notice, so the policy
//! is applied here as restic 0.14 (the Debian package, the interop oracle) applies it:
//! - a bucket rule keeps a snapshot when its bucket differs from the *last one that rule kept*
//!   (rustic_core compares with the previous snapshot, and also spends a count on the oldest);
//! - `keep_within` counts back from the newest snapshot that is not in the future, with Go's
//!   calendar arithmetic (`AddDate`: 31 March less one month is 3 March, not 28 February);
//! - grouping defaults to host and paths (rustic_core adds the label).
//!
//! The tests compare every decision with stock `restic forget --dry-run` on the same snapshots.

use std::collections::BTreeMap;

use jiff::{Timestamp, Zoned, civil};
use serde::{Deserialize, Serialize};

/// A duration as restic writes it for `--keep-within`: `3y`, `1y6m`, `14d`, `2d12h` (years,
/// months, days, hours).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Within {
    /// Years.
    pub years: i32,
    /// Months.
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Hours.
    pub hours: i32,
}

impl std::str::FromStr for Within {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a duration like \"3y\", \"1y6m\", \"14d\" or \"36h\"");
        let mut d = Self::default();
        let mut units = 0;
        let mut num = String::new();
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: i32 = num.parse().map_err(|_| bad())?;
            num.clear();
            units += 1;
            match c {
                'y' => d.years += n,
                'm' => d.months += n,
                'd' => d.days += n,
                'h' => d.hours += n,
                _ => return Err(bad()),
            }
        }
        if !num.is_empty() || units == 0 {
            return Err(bad());
        }
        Ok(d)
    }
}

impl std::fmt::Display for Within {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl From<Within> for String {
    fn from(w: Within) -> Self {
        w.to_string()
    }
}

impl<'de> Deserialize<'de> for Within {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Within {
    /// Whether it is no time at all (`0d`): restic then ignores the rule.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// `t` less this duration, as Go's `t.AddDate(-y, -m, -d).Add(-h)` computes it: months
    /// and days overflow into the next month instead of being clamped.
    #[must_use]
    pub fn before(&self, t: &Zoned) -> Timestamp {
        let dt = t.datetime();
        let months = i64::from(dt.year()) * 12 + i64::from(dt.month())
            - 1
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let (year, month) = (months.div_euclid(12), months.rem_euclid(12) + 1);
        let first = civil::date(
            i16::try_from(year).unwrap_or(i16::MIN),
            i8::try_from(month).unwrap_or(1),
            1,
        );
        let day = first
            .checked_add(jiff::Span::new().days(i64::from(dt.day()) - 1 - i64::from(self.days)))
            .unwrap_or(first);
        let at = day.to_datetime(dt.time());
        t.offset()
            .to_timestamp(at)
            .unwrap_or(Timestamp::MIN)
            .checked_sub(jiff::Span::new().hours(i64::from(self.hours)))
            .unwrap_or(Timestamp::MIN)
    }
}

/// Which snapshot fields form a group; each group is judged on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GroupBy {
    /// By host name.
    pub host: bool,
    /// By the set of paths backed up.
    pub paths: bool,
    /// By the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        Self {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut g = Self {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                _ => {
                    return Err(format!(
                        "{part:?}: group_by takes host, paths and tags, comma-separated (or \"\")"
                    ));
                }
            }
        }
        Ok(g)
    }
}

impl<'de> Deserialize<'de> for GroupBy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A retention policy: restic's `--keep-*` options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The newest N snapshots.
    pub keep_last: Option<u32>,
    /// The newest snapshot of each of the last N hours that have one.
    pub keep_hourly: Option<u32>,
    /// ... days.
    pub keep_daily: Option<u32>,
    /// ... ISO weeks.
    pub keep_weekly: Option<u32>,
    /// ... months.
    pub keep_monthly: Option<u32>,
    /// ... years.
    pub keep_yearly: Option<u32>,
    /// Every snapshot taken within this duration of the group's newest.
    pub keep_within: Option<Within>,
    /// Every snapshot carrying all tags of one of these lists (`"a,b"` means both).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_tags: Vec<String>,
}

impl Policy {
    /// Whether the policy keeps nothing (no rule set, or every count zero).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(n, _)| n.unwrap_or(0) == 0)
            && self.keep_within.is_none_or(|w| w.is_zero())
            && self.keep_tags.is_empty()
    }

    fn counts(&self) -> [(Option<u32>, &'static str); 6] {
        [
            (self.keep_last, "latest"),
            (self.keep_hourly, "hourly"),
            (self.keep_daily, "daily"),
            (self.keep_weekly, "weekly"),
            (self.keep_monthly, "monthly"),
            (self.keep_yearly, "yearly"),
        ]
    }

    /// `self`, with every rule `over` sets taken from `over`.
    #[must_use]
    pub fn overridden_by(&self, over: &Self) -> Self {
        Self {
            keep_last: over.keep_last.or(self.keep_last),
            keep_hourly: over.keep_hourly.or(self.keep_hourly),
            keep_daily: over.keep_daily.or(self.keep_daily),
            keep_weekly: over.keep_weekly.or(self.keep_weekly),
            keep_monthly: over.keep_monthly.or(self.keep_monthly),
            keep_yearly: over.keep_yearly.or(self.keep_yearly),
            keep_within: over.keep_within.or(self.keep_within),
            keep_tags: if over.keep_tags.is_empty() {
                self.keep_tags.clone()
            } else {
                over.keep_tags.clone()
            },
        }
    }

    /// restic's one-line description: `keep 7 daily, 4 weekly snapshots`.
    #[must_use]
    pub fn describe(&self) -> String {
        let keeps: Vec<String> = self
            .counts()
            .iter()
            .filter_map(|(n, what)| n.filter(|n| *n > 0).map(|n| format!("{n} {what}")))
            .collect();
        let mut s = String::new();
        if !keeps.is_empty() {
            s = format!("{} snapshots", keeps.join(", "));
        }
        if !self.keep_tags.is_empty() {
            if !s.is_empty() {
                s += " and ";
            }
            s += &format!("all snapshots with tags {}", self.keep_tags.join(" "));
        }
        if let Some(w) = self.keep_within.filter(|w| !w.is_zero()) {
            if !s.is_empty() {
                s += " and ";
            }
            s += &format!("all snapshots within {w} of the newest");
        }
        format!("keep {s}")
    }
}

/// What the policy needs of a snapshot.
#[derive(Debug, Clone)]
pub struct Snap {
    /// Its id (hex).
    pub id: String,
    /// When it was taken, in the zone it was recorded in.
    pub time: Zoned,
    /// Host name.
    pub host: String,
    /// Paths backed up.
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Its id (hex).
    pub id: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// Host name.
    pub host: String,
    /// Paths.
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Whether the policy keeps it.
    pub keep: bool,
    /// The rules that keep it (restic's words: `daily snapshot`, `within 3y`).
    pub reasons: Vec<String>,
}

/// A group of snapshots and the verdicts on them, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct GroupVerdict {
    /// The host, when grouping by host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The paths, when grouping by paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// The tags, when grouping by tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Newest first.
    pub snapshots: Vec<Verdict>,
}

/// Groups `snaps` and applies `policy` to each group, as `restic forget` does. `now` decides
/// which snapshots are in the future (those never count as the newest for `keep_within`).
#[must_use]
pub fn apply(
    snaps: Vec<Snap>,
    policy: &Policy,
    group_by: GroupBy,
    now: Timestamp,
) -> Vec<GroupVerdict> {
    type Key = (Option<String>, Option<Vec<String>>, Option<Vec<String>>);
    let mut groups: BTreeMap<Key, Vec<Snap>> = BTreeMap::new();
    for s in snaps {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let key = (
            group_by.host.then(|| s.host.clone()),
            group_by.paths.then(|| sorted(&s.paths)),
            group_by.tags.then(|| sorted(&s.tags)),
        );
        groups.entry(key).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|((host, paths, tags), list)| GroupVerdict {
            host,
            paths,
            tags,
            snapshots: apply_group(list, policy, now),
        })
        .collect()
}

/// restic's `ApplyPolicy` over one group.
fn apply_group(mut list: Vec<Snap>, policy: &Policy, now: Timestamp) -> Vec<Verdict> {
    // Newest first; a stable sort keeps equal times in listing order, as restic's does.
    list.sort_by_key(|s| std::cmp::Reverse(s.time.timestamp()));
    let latest = list
        .iter()
        .filter(|s| s.time.timestamp() < now)
        .max_by_key(|s| s.time.timestamp())
        .map(|s| s.time.clone());
    type Bucket = fn(&Zoned, usize) -> i64;
    let always: Bucket = |_, nr| nr as i64;
    let hour: Bucket = |t, _| ymd(t) * 100 + i64::from(t.hour());
    let day: Bucket = |t, _| ymd(t);
    let week: Bucket = |t, _| {
        let w = t.date().iso_week_date();
        i64::from(w.year()) * 100 + i64::from(w.week())
    };
    let month: Bucket = |t, _| i64::from(t.year()) * 100 + i64::from(t.month());
    let year: Bucket = |t, _| i64::from(t.year());
    let mut buckets: Vec<(u32, Bucket, Option<i64>, &str)> = [
        (policy.keep_last, always, "last snapshot"),
        (policy.keep_hourly, hour, "hourly snapshot"),
        (policy.keep_daily, day, "daily snapshot"),
        (policy.keep_weekly, week, "weekly snapshot"),
        (policy.keep_monthly, month, "monthly snapshot"),
        (policy.keep_yearly, year, "yearly snapshot"),
    ]
    .into_iter()
    .map(|(n, f, why)| (n.unwrap_or(0), f, None, why))
    .collect();
    let within = policy.keep_within.filter(|w| !w.is_zero());
    let within_since = within.map(|w| {
        // With every snapshot in the future, restic counts from the zero time: all are kept.
        latest.as_ref().map_or(Timestamp::MIN, |l| w.before(l))
    });
    list.into_iter()
        .enumerate()
        .map(|(nr, s)| {
            let mut reasons = Vec::new();
            for l in &policy.keep_tags {
                let want: Vec<&str> = l
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect();
                if want.iter().all(|t| s.tags.iter().any(|h| h == t)) {
                    reasons.push(format!("has tags [{}]", want.join(" ")));
                }
            }
            if let (Some(since), Some(w)) = (within_since, within)
                && s.time.timestamp() > since
            {
                reasons.push(format!("within {w}"));
            }
            for (count, bucket, last, why) in &mut buckets {
                if *count > 0 {
                    let val = bucket(&s.time, nr);
                    if Some(val) != *last {
                        *last = Some(val);
                        *count -= 1;
                        reasons.push((*why).to_string());
                    }
                }
            }
            Verdict {
                id: s.id,
                time: s.time.timestamp().to_string(),
                host: s.host,
                paths: s.paths,
                tags: s.tags,
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect()
}

fn ymd(t: &Zoned) -> i64 {
    i64::from(t.year()) * 10_000 + i64::from(t.month()) * 100 + i64::from(t.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Zoned {
        s.parse::<Timestamp>()
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC)
    }

    fn snap(id: &str, time: &str) -> Snap {
        Snap {
            id: id.into(),
            time: at(time),
            host: "h".into(),
            paths: vec!["/p".into()],
            tags: vec![],
        }
    }

    fn kept(groups: &[GroupVerdict]) -> Vec<String> {
        groups
            .iter()
            .flat_map(|g| &g.snapshots)
            .filter(|v| v.keep)
            .map(|v| v.id.clone())
            .collect()
    }

    #[test]
    fn durations_read_as_restic_writes_them() {
        let w: Within = "1y6m2d12h".parse().unwrap();
        assert_eq!((w.years, w.months, w.days, w.hours), (1, 6, 2, 12));
        assert_eq!(w.to_string(), "1y6m2d12h");
        assert!("0d".parse::<Within>().unwrap().is_zero());
        for bad in ["", "3", "3w", "-1y", "y"] {
            assert!(bad.parse::<Within>().is_err(), "{bad}");
        }
    }

    #[test]
    fn months_overflow_as_in_go() {
        let w: Within = "1m".parse().unwrap();
        // Go: 2024-03-31 less one month is "2024-02-31", which is 2024-03-02.
        assert_eq!(
            w.before(&at("2024-03-31T12:00:00Z")),
            "2024-03-02T12:00:00Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn a_bucket_rule_compares_with_what_it_kept_and_spares_not_the_oldest() {
        // Two on the oldest day: restic 0.14 keeps only the newer of them.
        let snaps = vec![
            snap("a", "2024-01-01T10:00:00Z"),
            snap("b", "2024-01-01T11:00:00Z"),
            snap("c", "2024-01-02T10:00:00Z"),
        ];
        let policy = Policy {
            keep_daily: Some(5),
            ..Policy::default()
        };
        let now = "2025-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            kept(&apply(snaps, &policy, GroupBy::default(), now)),
            ["c", "b"]
        );
    }

    #[test]
    fn within_counts_from_the_newest_snapshot_not_in_the_future() {
        let snaps = vec![
            snap("a", "2024-01-01T10:00:00Z"),
            snap("b", "2024-01-01T11:00:00Z"),
            snap("c", "2024-01-02T10:00:00Z"),
            snap("future", "2099-01-01T00:00:00Z"),
        ];
        let policy = Policy {
            keep_within: Some("1d".parse().unwrap()),
            ..Policy::default()
        };
        let now = "2025-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            kept(&apply(snaps, &policy, GroupBy::default(), now)),
            ["future", "c", "b"]
        );
    }

    #[test]
    fn an_empty_policy_is_empty_and_groups_split_by_host() {
        assert!(Policy::default().is_empty());
        assert!(
            Policy {
                keep_last: Some(0),
                ..Policy::default()
            }
            .is_empty()
        );
        let mut other = snap("x", "2024-01-01T10:00:00Z");
        other.host = "other".into();
        let snaps = vec![snap("a", "2024-01-01T10:00:00Z"), other];
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let now = "2025-01-01T00:00:00Z".parse().unwrap();
        let groups = apply(snaps, &policy, GroupBy::default(), now);
        assert_eq!(groups.len(), 2);
        assert_eq!(kept(&groups).len(), 2);
    }
}
