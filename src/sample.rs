//! Choosing a random, reproducible sample of files: a seeded shuffle of every candidate, so the
//! sample is spread over the whole tree (not the first N files), then taken up to a count and a
//! byte budget.

use rand::{SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// How large a sample to take. Count and percentage both ask for a number of files (the larger
/// wins when both are given); the byte budget caps the total size.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SampleSpec {
    /// At least this many files.
    pub files: Option<usize>,
    /// At least this percentage (0-100] of the candidate files.
    pub percent: Option<f64>,
    /// At most this many bytes in all.
    pub max_bytes: Option<u64>,
}

/// A file that may be sampled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// Snapshot id (hex).
    pub snapshot: String,
    /// Path inside the snapshot.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

impl SampleSpec {
    /// The number of files asked for out of `total`.
    #[must_use]
    pub fn wanted(&self, total: usize) -> usize {
        let by_percent = self
            .percent
            .map_or(0, |p| ((total as f64) * p / 100.0).ceil() as usize);
        let n = self.files.unwrap_or(0).max(by_percent);
        if self.files.is_none() && self.percent.is_none() {
            total
        } else {
            n.min(total)
        }
    }
}

/// Picks the sample: same candidates, spec and seed give the same sample.
#[must_use]
pub fn choose(mut candidates: Vec<Candidate>, spec: &SampleSpec, seed: u64) -> Vec<Candidate> {
    // A stable starting order, so the listing order of the repository does not matter.
    candidates.sort_by(|a, b| (&a.snapshot, &a.path).cmp(&(&b.snapshot, &b.path)));
    let wanted = spec.wanted(candidates.len());
    candidates.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut budget = spec.max_bytes.unwrap_or(u64::MAX);
    let mut out = Vec::with_capacity(wanted);
    for c in candidates {
        if out.len() >= wanted {
            break;
        }
        // A file too large for what is left of the budget is passed over for smaller ones.
        if c.size <= budget {
            budget -= c.size;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                snapshot: "s".into(),
                path: format!("dir{}/f{i:04}", i % 10),
                size: 100,
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_sample_and_another_seed_another() {
        let spec = SampleSpec {
            files: Some(20),
            ..Default::default()
        };
        let a = choose(files(1000), &spec, 7);
        let mut reversed = files(1000);
        reversed.reverse();
        assert_eq!(a, choose(reversed, &spec, 7), "input order must not matter");
        assert_ne!(a, choose(files(1000), &spec, 8));
        assert_eq!(a.len(), 20);
    }

    #[test]
    fn the_sample_is_spread_over_the_tree() {
        let spec = SampleSpec {
            files: Some(100),
            ..Default::default()
        };
        let s = choose(files(10_000), &spec, 1);
        let dirs: std::collections::BTreeSet<_> = s.iter().map(|c| &c.path[..4]).collect();
        assert_eq!(dirs.len(), 10, "every folder is represented");
        // Not the first files: the highest index sampled is far into the list.
        let max = s
            .iter()
            .map(|c| c.path[6..].parse::<usize>().unwrap())
            .max()
            .unwrap();
        assert!(max > 5000, "{max}");
    }

    #[test]
    fn count_percent_and_budget_combine() {
        let spec = SampleSpec {
            files: Some(5),
            percent: Some(10.0),
            max_bytes: None,
        };
        assert_eq!(choose(files(200), &spec, 1).len(), 20, "10% of 200 beats 5");
        let spec = SampleSpec {
            files: Some(50),
            percent: None,
            max_bytes: Some(1000),
        };
        assert_eq!(
            choose(files(200), &spec, 1).len(),
            10,
            "the byte budget caps the count"
        );
        assert_eq!(
            choose(files(3), &SampleSpec::default(), 1).len(),
            3,
            "no limits: everything"
        );
    }
}
