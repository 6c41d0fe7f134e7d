//! `cairn check --immutability`: every target that claims to survive its own credentials
//! (S3 Object Lock) proves it now: its settings are read, and a canary is written and
//! attacked through the very credentials cairn uses. A canary that can be destroyed means the
//! copy would not survive whoever takes over this machine.

use serde::Serialize;

use crate::{context::Context, par, store::Protection};

/// One target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetImmutability {
    /// Its name.
    pub name: String,
    /// What it claims and what was found; `None`: it claims no protection.
    pub protection: Option<Protection>,
    /// Why it could not be opened, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
}

/// Every target.
#[derive(Debug, Clone, Serialize)]
pub struct ImmutabilityReport {
    /// In configuration order.
    pub targets: Vec<TargetImmutability>,
}

impl ImmutabilityReport {
    /// Targets that claim protection and were found without it.
    pub fn not_immutable(&self) -> impl Iterator<Item = &TargetImmutability> {
        self.targets
            .iter()
            .filter(|t| t.protection.as_ref().is_some_and(|p| !p.immutable))
    }

    /// Exit code: 5 when a claimed protection failed, 4 when a target could not be opened, 0.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        if self.not_immutable().next().is_some() {
            crate::exit::VERIFY_FAILED
        } else if self.targets.iter().any(|t| t.unreachable.is_some()) {
            crate::exit::UNREACHABLE
        } else {
            crate::exit::OK
        }
    }
}

/// Proves every target's claimed protection.
#[must_use]
pub fn run(ctx: &Context) -> ImmutabilityReport {
    let targets = par::each(&ctx.cfg().targets, |t| match ctx.open_store(t) {
        Ok(store) => TargetImmutability {
            name: t.name.clone(),
            protection: store.protection(),
            unreachable: None,
        },
        Err(e) => TargetImmutability {
            name: t.name.clone(),
            protection: None,
            unreachable: Some(e.to_string()),
        },
    });
    ctx.update_state(|s| {
        for t in &targets {
            if let Some(p) = &t.protection {
                s.record_immutability(&t.name, p.immutable);
            }
        }
    });
    ImmutabilityReport { targets }
}
