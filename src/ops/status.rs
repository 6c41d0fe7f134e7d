//! `cairn status`: every target as it is now (probed) and as remembered (last complete
//! snapshot, lagging since, last error). Needs no password and takes no lock.

use std::collections::BTreeSet;

use rustic_core::Id;
use serde::Serialize;

use crate::{
    config::Config,
    error::Result,
    lock::{self, Holder},
    probe::{Probe, probe_all},
    report::TargetState,
    state::{self, State, TargetRecord},
};

/// One target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Where it is.
    pub location: String,
    /// Whether it is required.
    pub required: bool,
    /// As probed now.
    pub state: TargetState,
    /// Snapshot files it holds.
    pub snapshots: usize,
    /// Key, index and snapshot files it lacks that another target holds.
    pub missing_files: usize,
    /// Why it is not level, when probing says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What earlier runs recorded.
    pub recorded: TargetRecord,
}

crate::outcome_fields!(TargetStatus);

/// Every target.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// In configuration order.
    pub targets: Vec<TargetStatus>,
    /// The cairn process holding the repository lock on this machine, if one does.
    pub locked_by: Option<Holder>,
}

/// Probes every target and joins what earlier runs recorded.
///
/// # Errors
/// The state file exists but cannot be read.
pub fn run(cfg: &Config) -> Result<StatusReport> {
    let recorded = State::load(&state::dir(cfg)?)?;
    let probed = probe_all(cfg, None)?;
    let mut union: BTreeSet<(u8, Id)> = BTreeSet::new();
    let sets = |p: &Probe| -> Option<BTreeSet<(u8, Id)>> {
        match p {
            Probe::Ready {
                keys,
                index,
                snapshots,
                ..
            } => Some(
                keys.iter()
                    .map(|i| (0, *i))
                    .chain(index.iter().map(|i| (1, *i)))
                    .chain(snapshots.iter().map(|i| (2, *i)))
                    .collect(),
            ),
            _ => None,
        }
    };
    for p in &probed {
        union.extend(sets(&p.probe).unwrap_or_default());
    }
    let targets = probed
        .iter()
        .map(|p| {
            let (state, detail, missing, snapshots) = match &p.probe {
                Probe::Ready { snapshots, .. } => {
                    let have = sets(&p.probe).unwrap_or_default();
                    let missing = union.difference(&have).count();
                    let state = if missing == 0 {
                        TargetState::Level
                    } else {
                        TargetState::Lagging
                    };
                    (state, None, missing, snapshots.len())
                }
                Probe::Empty => (TargetState::NotInitialised, None, union.len(), 0),
                _ => {
                    let (state, why) = p
                        .unusable()
                        .unwrap_or((TargetState::Unreachable, String::new()));
                    (state, Some(why), 0, 0)
                }
            };
            TargetStatus {
                name: p.cfg.name.clone(),
                kind: p.cfg.kind.name().to_string(),
                location: p.location(),
                required: p.cfg.required,
                state,
                snapshots,
                missing_files: missing,
                detail,
                recorded: recorded
                    .targets
                    .get(&p.cfg.name)
                    .cloned()
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok(StatusReport {
        targets,
        locked_by: lock::local_holder(cfg),
    })
}
