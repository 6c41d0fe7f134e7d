//! `cairn ls`: the files of a snapshot.

use std::path::PathBuf;

use rustic_core::{LsOptions, ProgressBars, repofile::NodeType};
use serde::Serialize;

use crate::{
    context::Context,
    error::Result,
    secret::Secret,
    selection::{self, Selector},
    session::Session,
};

/// One entry of a snapshot.
#[derive(Debug, Serialize)]
pub struct LsEntry {
    /// Path inside the snapshot.
    pub path: PathBuf,
    /// `file`, `dir`, `symlink`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes (files).
    pub size: u64,
    /// Unix mode bits, if recorded.
    pub mode: Option<u32>,
    /// Modification time (RFC 3339), if recorded.
    pub mtime: Option<String>,
    /// Target of a symlink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// How an entry's type is named in listings and `--json`: `file`, `dir`, `symlink`, ...
#[must_use]
pub fn kind(t: &NodeType) -> String {
    match t {
        NodeType::File => "file".into(),
        NodeType::Dir => "dir".into(),
        NodeType::Symlink { .. } => "symlink".into(),
        other => other.to_string(),
    }
}

/// Calls `each` for every entry below the selected snapshot's path.
///
/// # Errors
/// No such snapshot or path; wrong password; no target usable.
pub fn run<P: ProgressBars>(
    ctx: &Context,
    password: &Secret,
    sel: &Selector,
    from: Option<&str>,
    pb: P,
    mut each: impl FnMut(LsEntry),
) -> Result<()> {
    let session = Session::open(ctx, from, password)?;
    let repo = session.repository(password, pb)?.to_indexed()?;
    let (_, node) = selection::node(&repo, sel, ctx.trail())?;
    for item in repo.ls(&node, &LsOptions::default().recursive(true))? {
        let (path, node) = item?;
        let kind = kind(&node.node_type);
        let link = node
            .is_symlink()
            .then(|| node.node_type.to_link().to_string_lossy().into_owned());
        each(LsEntry {
            path,
            kind,
            size: node.meta.size,
            mode: node.meta.mode,
            mtime: node.meta.mtime.map(|t| t.to_string()),
            link,
        });
    }
    Ok(())
}
