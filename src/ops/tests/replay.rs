//! Trust, round 2: records and files that one target captured or kept, put back later. None of
//! them may remove data a kept snapshot needs, nor come back once deleted.

use super::*;
use crate::ops::{forget, prune};

fn keep_last_one() -> forget::ForgetOptions {
    forget::ForgetOptions {
        policy: crate::retention::Policy {
            keep_last: Some(1),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn prune_all() -> prune::PruneOptions {
    prune::PruneOptions {
        max_unused: "0".into(),
        ..Default::default()
    }
}

/// Content no other file shares, in a chunk of its own.
fn unique_content() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// `snapshot` restored from target `i` alone: the content of `file` in it.
fn restored_from(s: &Setup, ctx: &Context, snapshot: &str, i: usize, file: &str) -> Vec<u8> {
    let dest = s.dir.path().join(format!("restored-{snapshot}-{i}"));
    let opts = restore::RestoreOptionsCairn {
        selector: snapshot.parse().unwrap(),
        dest: dest.clone(),
        from: Some(s.names[i].clone()),
        ..Default::default()
    };
    restore::run(ctx, &pw(), &opts, NoProgressBars).unwrap();
    std::fs::read(find(&dest, file)).unwrap()
}

/// Backs up X, forgets the snapshot holding it, and prunes while `refusing` targets refuse the
/// prune's record (keeping its bytes): the prune is called off. X is backed up again, so the
/// new snapshot deduplicates against the data the prune meant to remove. Returns the new
/// snapshot, X's content, and the record's captured path and bytes.
fn called_off_prune(s: &Setup, refusing: &[usize]) -> (String, Vec<u8>, (String, Bytes)) {
    let both = s.ctx(2);
    init::run(&both, &pw(), false, NoProgressBars).unwrap();
    let x = s.dir.path().join("src/x.bin");
    let content = unique_content();
    std::fs::write(&x, &content).unwrap();
    backed_up(s, 2);
    std::fs::remove_file(&x).unwrap();
    backed_up(s, 2);
    assert_eq!(
        forget::run(&both, &pw(), &keep_last_one())
            .unwrap()
            .removed
            .len(),
        1
    );
    for &i in refusing {
        s.stores[i].refuse_under(crate::deletion::DIR);
    }
    let r = prune::run(&both, &pw(), &prune_all(), &NoProgressBars).unwrap();
    assert!(r.partial && r.record.is_none(), "{r:?}");
    let mut captured = Vec::new();
    for &i in refusing {
        captured.extend(s.stores[i].refused());
    }
    let record = captured
        .into_iter()
        .find(|(_, b)| {
            crate::deletion::Record::open(b, &crate::sealed::Cipher::new(&key(s)).unwrap())
                .is_some_and(|r| r.command == "prune")
        })
        .expect("the prune's record, refused and kept");
    std::fs::write(&x, &content).unwrap();
    let again = backed_up(s, 2).snapshot;
    (again, content, record)
}

/// The repository's master key (the test plays cairn's part only through the commands).
fn key(s: &Setup) -> rustic_core::repofile::MasterKey {
    let ctx = s.ctx(2);
    let probed = crate::probe::probe_all(&ctx, None).unwrap();
    crate::unlock::unlock(&ctx, &probed, &pw())
        .unwrap()
        .master_key()
        .clone()
}

/// Every kept snapshot restores from each target alone, and a full check finds nothing.
fn intact(s: &Setup, snapshot: &str, content: &[u8]) {
    let both = s.ctx(2);
    for i in 0..2 {
        assert_eq!(
            restored_from(s, &both, snapshot, i, "x.bin"),
            content,
            "target {i}"
        );
    }
    let opts = check::CheckOptions {
        read_data: check::ReadData::All,
        heal: false,
        seed: None,
    };
    let r = check::run(&both, &opts, Some(&pw()), &NoProgressBars).unwrap();
    assert_eq!(r.open_problems(), 0, "{:?}", r.problems);
}

#[test]
fn a_called_off_prune_put_back_by_the_target_that_refused_it_never_takes_effect() {
    let s = Setup::new(2);
    let (again, content, (path, bytes)) = called_off_prune(&s, &[1]);
    // The target that refused the record puts it in place; catch-up runs.
    s.stores[1].write(&path, vec![bytes]).unwrap();
    let r = sync::run_and_record(&s.ctx(2), Some(&pw()), None, &NoProgressBars).unwrap();
    assert!(r.targets.iter().all(|t| t.deletions_applied == 0), "{r:?}");
    intact(&s, &again, &content);
}

#[test]
fn a_prune_record_that_would_break_a_kept_snapshot_is_not_obeyed_even_unvoided() {
    let s = Setup::new(2);
    // Both refused the record, so no void could be written anywhere either.
    let (again, content, (path, bytes)) = called_off_prune(&s, &[0, 1]);
    s.stores[1].write(&path, vec![bytes]).unwrap();
    let r = sync::run_and_record(&s.ctx(2), Some(&pw()), None, &NoProgressBars).unwrap();
    assert!(r.targets.iter().all(|t| t.deletions_applied == 0), "{r:?}");
    intact(&s, &again, &content);
}

/// Backs up X, forgets the snapshot holding it and prunes on both targets, while target 1 keeps
/// copies of its index and snapshot files; catch-up then compacts every record (kept for 0
/// hours). X is back in the source. Returns the target's old files (path, bytes) and X.
fn pruned_and_compacted(s: &Setup, ctx: &Context) -> (Vec<(String, Bytes)>, Vec<u8>) {
    init::run(ctx, &pw(), false, NoProgressBars).unwrap();
    let x = s.dir.path().join("src/x.bin");
    let content = unique_content();
    std::fs::write(&x, &content).unwrap();
    backup::run(ctx, &pw(), &Default::default(), NoProgressBars).unwrap();
    std::fs::remove_file(&x).unwrap();
    backup::run(ctx, &pw(), &Default::default(), NoProgressBars).unwrap();
    let kept: Vec<(String, Bytes)> = ["index", "snapshots"]
        .iter()
        .flat_map(|d| {
            let store = &s.stores[1];
            store
                .list(d)
                .unwrap()
                .into_iter()
                .map(|(p, _)| format!("{d}/{p}"))
                .map(|p| (p.clone(), store.read(&p).unwrap()))
                .collect::<Vec<_>>()
        })
        .collect();
    forget::run(ctx, &pw(), &keep_last_one()).unwrap();
    let pruned = prune::run(ctx, &pw(), &prune_all(), &NoProgressBars).unwrap();
    assert!(pruned.record.is_some(), "{pruned:?}");
    let r = sync::run_and_record(ctx, Some(&pw()), None, &NoProgressBars).unwrap();
    assert!(r.records_compacted >= 1, "{r:?}");
    std::fs::write(&x, &content).unwrap();
    (kept, content)
}

#[test]
fn old_index_and_snapshot_files_put_back_after_compaction_stay_deleted() {
    let s = Setup::new(2);
    let ctx = s.over(s.config_with(2, "[retention]\ndeletion_records_for = \"0h\"\n"));
    let (kept, content) = pruned_and_compacted(&s, &ctx);
    // Target 1 puts every old index and snapshot file back.
    let mut back = 0;
    for (path, bytes) in &kept {
        if s.stores[1].stat(path).unwrap().is_none() {
            s.stores[1].write(path, vec![bytes.clone()]).unwrap();
            back += 1;
        }
    }
    assert!(back >= 2, "an old index and an old snapshot put back");
    let again = backup::run(&ctx, &pw(), &Default::default(), NoProgressBars).unwrap();
    assert!(!again.partial, "{:?}", again.targets);
    // Neither came back anywhere: the target that put them back lost them again.
    for (path, _) in &kept {
        for i in 0..2 {
            let held = s.files(i).contains(path);
            let live = s.files(0).contains(path) && s.files(1).contains(path);
            assert!(!held || live, "{path} back on target {i}");
        }
    }
    intact(&s, &again.snapshot, &content);
}

#[test]
fn an_index_naming_packs_no_target_holds_is_never_copied() {
    let s = Setup::new(2);
    let both = s.ctx(2);
    init::run(&both, &pw(), false, NoProgressBars).unwrap();
    std::fs::write(s.dir.path().join("src/x.bin"), unique_content()).unwrap();
    backed_up(&s, 2);
    // The second target keeps an index file whose packs are gone everywhere; the first lacks it.
    let index = s
        .files(1)
        .into_iter()
        .find(|p| p.starts_with("index/"))
        .unwrap();
    for i in 0..2 {
        for pack in s.files(i).into_iter().filter(|p| p.starts_with("data/")) {
            s.stores[i].delete(&pack).unwrap();
        }
    }
    s.stores[0].delete(&index).unwrap();
    let r = sync::run_and_record(&both, Some(&pw()), None, &NoProgressBars).unwrap();
    assert!(!s.files(0).contains(&index), "{r:?}");
    assert!(r.targets[0].held_back >= 1, "{r:?}");
}
