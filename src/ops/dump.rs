//! `cairn dump`: a file of a snapshot to a writer (standard output), or a folder as a tar
//! stream. Data is read a few neighbouring blobs at a time, each checked against its id: memory
//! stays at one read, whatever the file's size.

use std::io::Write;

use rustic_core::{
    IndexedFull, LsOptions, ProgressBars, Repository,
    repofile::{Node, NodeType},
};

use crate::{
    context::Context,
    error::{Error, Result},
    secret::Secret,
    selection::{self, Selector},
    session::Session,
    verified::Contents,
};

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dumped {
    /// One file's bytes.
    File(u64),
    /// A tar stream of this many entries.
    Tar(u64),
}

/// Writes the file `sel` names, or the folder it names as a tar stream, to `out`.
///
/// # Errors
/// No such snapshot or path; a special file; wrong password; no target usable; `out` fails.
pub fn run<P: ProgressBars>(
    ctx: &Context,
    password: &Secret,
    sel: &Selector,
    from: Option<&str>,
    pb: P,
    out: &mut impl Write,
) -> Result<Dumped> {
    let session = Session::open(ctx, from, password)?;
    let repo = session.repository(password, pb)?.to_indexed()?;
    let (_, node) = selection::node(&repo, sel, ctx.trail())?;
    let contents = Contents::new(&session.fanout, &repo.key()).map_err(Error::Input)?;
    let io = |e: std::io::Error| Error::Io {
        path: "(standard output)".into(),
        source: e,
    };
    match &node.node_type {
        NodeType::File => {
            let mut r = contents.reader(&repo, &node).map_err(Error::Input)?;
            let n = std::io::copy(&mut r, out).map_err(io)?;
            Ok(Dumped::File(n))
        }
        NodeType::Dir => {
            let top = std::path::Path::new(&sel.path)
                .file_name()
                .map(std::path::PathBuf::from)
                .unwrap_or_default();
            let mut tar = tar::Builder::new(out);
            let mut entries = 0;
            for item in repo.ls(&node, &LsOptions::default().recursive(true))? {
                let (path, n) = item?;
                append(&repo, &contents, &mut tar, &top.join(path), &n).map_err(io)?;
                entries += 1;
            }
            tar.finish().map_err(io)?;
            Ok(Dumped::Tar(entries))
        }
        other => Err(Error::Input(format!(
            "{:?} is a {other}: only files and folders can be dumped",
            sel.path
        ))),
    }
}

/// One entry of the tar stream (files, folders, symlinks; other kinds are left out).
fn append<S: IndexedFull>(
    repo: &Repository<S>,
    contents: &Contents,
    tar: &mut tar::Builder<impl Write>,
    path: &std::path::Path,
    n: &Node,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(n.meta.mode.map_or(0o644, |m| m & 0o7777));
    h.set_mtime(
        n.meta
            .mtime
            .map_or(0, |t| u64::try_from(t.as_second()).unwrap_or(0)),
    );
    h.set_uid(n.meta.uid.map_or(0, u64::from));
    h.set_gid(n.meta.gid.map_or(0, u64::from));
    match &n.node_type {
        NodeType::File => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(n.meta.size);
            let blobs = contents.reader(repo, n).map_err(std::io::Error::other)?;
            tar.append_data(&mut h, path, blobs)
        }
        NodeType::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            tar.append_data(&mut h, path, std::io::empty())
        }
        NodeType::Symlink { .. } => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            tar.append_link(&mut h, path, n.node_type.to_link())
        }
        _ => Ok(()),
    }
}
