//! The chain of an audit log: each record links to the one before it, so that an edit, a removal
//! or a swap is named at the exact record.

use serde::Serialize;

use super::Record;
use crate::layout::sha256_hex;

/// The first fault in a chain of records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// The record concerned (its sequence number).
    pub seq: u64,
    /// The line of the file (from 1) where it shows.
    pub line: usize,
    /// What is wrong with it.
    pub what: String,
}

/// Checks a chain of records (the lines of one log); the first fault, if any.
#[must_use]
pub fn verify(lines: &[String]) -> Option<Fault> {
    let parsed: Vec<Option<Record>> = lines
        .iter()
        .map(|l| serde_json::from_str::<Record>(l).ok())
        .collect();
    let mut prev_line: Option<&String> = None;
    for (expected, (i, (line, record))) in (1u64..).zip(lines.iter().zip(&parsed).enumerate()) {
        let at = |seq: u64, what: String| {
            Some(Fault {
                seq,
                line: i + 1,
                what,
            })
        };
        let Some(r) = record else {
            return at(
                expected,
                format!("record {expected} was changed: it is not a record"),
            );
        };
        if r.own_hash() != r.hash {
            return at(r.seq, format!("record {} was changed", r.seq));
        }
        if r.seq != expected {
            let later = parsed[i + 1..]
                .iter()
                .flatten()
                .any(|later| later.seq == expected);
            return if later {
                at(
                    expected,
                    format!(
                        "record {expected} is out of order: it comes after record {}",
                        r.seq
                    ),
                )
            } else if r.seq > expected {
                at(
                    expected,
                    format!(
                        "record {expected}{} was removed (the next one is {})",
                        if r.seq > expected + 1 {
                            format!(" to {}", r.seq - 1)
                        } else {
                            String::new()
                        },
                        r.seq
                    ),
                )
            } else {
                at(r.seq, format!("record {} appears twice", r.seq))
            };
        }
        let link = prev_line
            .map(|l| sha256_hex(l.as_bytes()))
            .unwrap_or_default();
        if r.prev != link {
            return at(
                expected.saturating_sub(1),
                format!(
                    "record {} was changed (record {} no longer matches it)",
                    expected.saturating_sub(1),
                    r.seq
                ),
            );
        }
        prev_line = Some(line);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{append, read_lines};
    use std::path::PathBuf;

    fn log(n: u64) -> (tempfile::TempDir, PathBuf, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for i in 0..n {
            let mut r = Record {
                seq: 0,
                time: format!("2026-12-06T00:00:{i:02}Z"),
                log: String::new(),
                operator: "alice".into(),
                user: "root".into(),
                host: "h".into(),
                command: "backup".into(),
                args: vec!["cairn".into(), "backup".into()],
                repository: None,
                targets: vec![],
                result: "ok".into(),
                exit_code: Some(0),
                message: None,
                snapshots: vec![],
                bytes: Some(i),
                prev: String::new(),
                hash: String::new(),
            };
            append(&path, &mut r).unwrap();
        }
        let lines = read_lines(&path).unwrap();
        (dir, path, lines)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (_d, _p, lines) = log(6);
        assert_eq!(verify(&lines), None);
    }

    #[test]
    fn edits_removals_and_swaps_are_named_at_their_record() {
        let (_d, _p, lines) = log(6);
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"bytes\":2", "\"bytes\":9");
        assert_eq!(verify(&edited).unwrap().seq, 3);
        // Edited and its own hash recomputed: the next record's link names it.
        let mut r: Record = serde_json::from_str(&lines[2]).unwrap();
        r.bytes = Some(9);
        r.hash = r.own_hash();
        let mut rehashed = lines.clone();
        rehashed[2] = serde_json::to_string(&r).unwrap();
        let f = verify(&rehashed).unwrap();
        assert_eq!((f.seq, f.line), (3, 4), "{f:?}");
        let mut removed = lines.clone();
        removed.remove(3);
        let f = verify(&removed).unwrap();
        assert_eq!(f.seq, 4, "{f:?}");
        assert!(f.what.contains("removed"), "{f:?}");
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        let f = verify(&swapped).unwrap();
        assert_eq!(f.seq, 2, "{f:?}");
        assert!(f.what.contains("out of order"), "{f:?}");
    }
}
