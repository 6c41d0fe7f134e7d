//! `cairn recover --from TARGET --as-of TIME --to TARGET2`: after an attack, copy a locked
//! bucket's repository as it stood at TIME into a fresh target, which stock restic then reads.
//! Every file is proven first (its hash matches its name, its metadata decrypts with the key
//! of that moment); one that is not is named and left behind, never copied. `config` is
//! written last, so an interrupted recovery leaves no repository and can be run again.

use serde::Serialize;

use crate::{
    context::Context,
    error::{Error, Result},
    layout::{COPY_ORDER, DELETIONS_DIR},
    probe::probe_targets,
    secret::Secret,
    store::Store,
    unlock::unlock,
};

/// What a recovery did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoverReport {
    /// Files copied.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files not copied, with why (not proven, unreadable).
    pub left: Vec<(String, String)>,
}

/// Copies `from` (read as `ctx` reads it: as of a moment) into the empty target `to`.
///
/// # Errors
/// Unknown targets; `to` already holds a repository; wrong password; a write to `to` failed.
pub fn run(
    ctx: &Context,
    now: &Context,
    from: &str,
    to: &str,
    pw: &Secret,
) -> Result<RecoverReport> {
    let cfg = ctx.cfg();
    let (src_cfg, dst_cfg) = (cfg.target(from)?, cfg.target(to)?);
    if from == to {
        return Err(Error::Usage(
            "recover into a fresh target: --to must name another target than --from".into(),
        ));
    }
    let probed = probe_targets(ctx, std::slice::from_ref(src_cfg));
    let proof = unlock(ctx, &probed, pw)?;
    let src = probed[0]
        .store
        .clone()
        .ok_or_else(|| Error::NoTargetUsable(format!("`{from}` could not be opened")))?;
    let dst = now
        .open_store(dst_cfg)
        .map_err(|e| Error::NoTargetUsable(format!("`{to}`: {e}")))?;
    let io = |e: crate::store::StoreError| Error::NoTargetUsable(format!("`{to}`: {e}"));
    if dst.stat("config").map_err(io)?.is_some() {
        return Err(Error::Usage(format!(
            "`{to}` already holds a repository: recover into an empty target"
        )));
    }
    let mut paths: Vec<String> = Vec::new();
    // The deletion records come along (what was forgotten by then stays forgotten); cairn's
    // endorsements of operators' keys do not (the keys they vouch for are proven at unlock and
    // copied; the endorsements themselves are not files a proof covers).
    for dir in COPY_ORDER[1..].iter().copied().chain([DELETIONS_DIR]) {
        let listed = src
            .list(dir)
            .map_err(|e| Error::NoTargetUsable(format!("`{from}`: {e}")))?;
        paths.extend(listed.into_iter().map(|(rel, _)| format!("{dir}/{rel}")));
    }
    dst.create_dirs(&crate::layout::repository_dirs())
        .map_err(io)?;
    paths.push("config".into());
    let mut report = RecoverReport::default();
    // The index files first: a pack is proven by a proven index that references it. They are
    // still written after the packs they name.
    let mut proven_indexes = std::collections::BTreeMap::new();
    for path in paths.iter().filter(|p| p.starts_with("index/")) {
        match src.read(path) {
            Ok(bytes) => match proof.check(path, &bytes) {
                Ok(()) => {
                    proven_indexes.insert(path.clone(), bytes);
                }
                Err(why) => report.left.push((path.clone(), why)),
            },
            Err(e) => report.left.push((path.clone(), format!("not read: {e}"))),
        }
    }
    for path in paths {
        if path.starts_with("index/") {
            if let Some(bytes) = proven_indexes.remove(&path) {
                report.bytes += bytes.len() as u64;
                dst.write(&path, vec![bytes]).map_err(io)?;
                report.files += 1;
            }
            continue;
        }
        let bytes = match src.read(&path) {
            Ok(b) => b,
            Err(e) => {
                report.left.push((path, format!("not read: {e}")));
                continue;
            }
        };
        if let Err(why) = proof.check(&path, &bytes) {
            report.left.push((path, why));
            continue;
        }
        report.bytes += bytes.len() as u64;
        dst.write(&path, vec![bytes]).map_err(io)?;
        report.files += 1;
    }
    Ok(report)
}
