//! The snapshot selection every verb that reads a snapshot shares: `SNAPSHOT[:PATH]` and
//! restic's `--host`, `--tag`, `--path` filters (for `latest` and `@TIME`).

use cairn::selection::{Filter, Selector};

/// Parses `SNAPSHOT[:PATH]` for clap.
pub fn selector(s: &str) -> Result<Selector, String> {
    s.parse().map_err(|e: cairn::error::Error| e.to_string())
}

#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// With `latest` or `@TIME`: only snapshots of this host.
    #[arg(long)]
    host: Option<String>,
    /// With `latest` or `@TIME`: only snapshots with this tag (repeatable: all of them).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// With `latest` or `@TIME`: only snapshots that backed up this path.
    #[arg(long = "path", value_name = "PATH")]
    path: Option<String>,
}

impl FilterArgs {
    /// `sel` with these filters.
    pub fn apply(&self, mut sel: Selector) -> Selector {
        sel.filter = self.filter();
        sel
    }

    pub fn filter(&self) -> Filter {
        Filter {
            host: self.host.clone(),
            tags: self.tags.clone(),
            path: self.path.clone(),
        }
    }
}
