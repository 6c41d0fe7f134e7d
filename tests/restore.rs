//! Restore writes file contents itself, blob by blob (issue 12): big files, many small files,
//! sparse files, hard links and one folder come back with their content, mode and mtime.

mod common;

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    time::{Duration, SystemTime},
};

use common::*;
use sha2::{Digest, Sha256};

/// Every entry below `root`: kind, content hash, mode, mtime (seconds and nanoseconds), and
/// for files the number of links.
fn described(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                dirs.push(p.clone());
                "dir".to_string()
            } else {
                format!(
                    "file {} links {}",
                    hex(&Sha256::digest(fs::read(&p).unwrap())),
                    m.nlink()
                )
            };
            let mtime = if m.file_type().is_symlink() {
                String::new()
            } else {
                format!("{}.{:09}", m.mtime(), m.mtime_nsec())
            };
            out.insert(rel, format!("{what} mode {:o} mtime {mtime}", m.mode()));
        }
    }
    out
}

fn set_mtime(p: &Path, secs: u64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::new(secs, 123_456_789))
        .unwrap();
}

#[test]
fn big_small_sparse_and_linked_files_and_one_folder_come_back_with_content_mode_and_mtime() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let sub = src.join("sub/deeper");
    fs::create_dir_all(&sub).unwrap();
    // Big: many blobs, several packs.
    fs::write(src.join("big.bin"), pseudo_random(7, 40 << 20)).unwrap();
    // Many small files.
    for i in 0..300 {
        let p = sub.join(format!("small-{i:03}.dat"));
        fs::write(&p, pseudo_random(1000 + i, 100 + i as usize * 13)).unwrap();
        set_mtime(&p, 1_600_000_000 + i);
    }
    // Sparse: a hole, data, a hole at the end.
    let sparse = src.join("sparse.img");
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(48 << 20).unwrap();
    {
        use std::os::unix::fs::FileExt;
        f.write_all_at(&pseudo_random(9, 1 << 20), 16 << 20)
            .unwrap();
    }
    drop(f);
    // Hard links, modes, a symlink, an empty file, an empty folder.
    fs::write(src.join("linked-a"), b"one inode, two names").unwrap();
    fs::hard_link(src.join("linked-a"), sub.join("linked-b")).unwrap();
    fs::write(src.join("private.key"), b"0600").unwrap();
    fs::set_permissions(src.join("private.key"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(src.join("tool.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("tool.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    fs::create_dir_all(src.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("sub/deeper/small-000.dat", src.join("link")).unwrap();
    for p in [
        "big.bin",
        "sparse.img",
        "linked-a",
        "private.key",
        "tool.sh",
        "empty",
    ] {
        set_mtime(&src.join(p), 1_700_000_000);
    }

    let repo = tmp.path().join("repo");
    let config = write_config(tmp.path(), &[&src], &local_target("disk", &repo));
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    let expected = described(&src);

    let dest = tmp.path().join("all");
    let o = cairn(
        &config,
        &["restore", "latest", "--target", dest.to_str().unwrap()],
    );
    expect_code(&o, 0);
    assert_eq!(described(&restored(&dest, &src)), expected);
    // The sparse file comes back sparse: 1 MiB of data, not 48 MiB of disk (blocks of 512).
    let blocks = |p: &Path| fs::metadata(p).unwrap().blocks() * 512;
    let (kept, back) = (
        blocks(&sparse),
        blocks(&restored(&dest, &src).join("sparse.img")),
    );
    assert!(
        back <= kept + (2 << 20),
        "{back} bytes on disk, {kept} in the source"
    );

    // One folder of the snapshot.
    let one = tmp.path().join("one");
    let sel = format!("latest:{}", sub.display());
    let o = cairn(
        &config,
        &["restore", &sel, "--target", one.to_str().unwrap()],
    );
    expect_code(&o, 0);
    let expected_sub: BTreeMap<String, String> = expected
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix("sub/deeper/")?;
            // A hard link restored without its other name has one link.
            Some((rest.to_string(), v.replace("links 2", "links 1")))
        })
        .collect();
    assert_eq!(described(&one), expected_sub);
}

/// A pack no target holds intact: the files that need it are named, the restore fails with an
/// error (rustic_core's own restore panicked here, killing the process mid-write).
#[test]
fn a_pack_no_target_holds_intact_is_an_error_naming_the_file_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("doomed.bin"), pseudo_random(3, 2 << 20)).unwrap();
    let repo = tmp.path().join("repo");
    let config = write_config(tmp.path(), &[&src], &local_target("disk", &repo));
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    let store = open_store(&config, "disk");
    for packs in file_packs(&config, "disk").values() {
        for p in packs {
            flip_byte(store.as_ref(), &pack_path(p));
        }
    }
    let dest = tmp.path().join("out");
    let o = cairn(
        &config,
        &["restore", "latest", "--target", dest.to_str().unwrap()],
    );
    expect_code(&o, 1);
    let out = text(&o);
    assert!(out.contains("doomed.bin could not be restored"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}

/// Flips one byte of the file at `path` on `store`, `at` bytes from its start.
/// Where a pack's blobs end (its header follows, then the header's length).
fn blobs_end(pack: &[u8]) -> usize {
    let header = u32::from_le_bytes(pack[pack.len() - 4..].try_into().unwrap()) as usize;
    pack.len() - 4 - header
}

fn flip_at(store: &dyn cairn::store::Store, path: &str, at: usize) {
    let mut bytes = store.read(path).unwrap().to_vec();
    bytes[at] ^= 0x40;
    store.write(path, vec![bytes.into()]).unwrap();
}

/// Each target's copy of a pack damaged, in a different blob: neither copy is intact, yet every
/// blob is sound on one of them, and the file comes back whole. (Read pack by pack, the restore
/// failed here: no target held the pack intact.)
#[test]
fn two_copies_damaged_in_different_blobs_still_give_the_file_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _, _) = two_local_targets(tmp.path(), "big.bin", &pseudo_random(5, 6 << 20));
    let src = tmp.path().join("src");
    let (a, b) = (open_store(&config, "a"), open_store(&config, "b"));
    let packs: Vec<String> = file_packs(&config, "a").into_values().flatten().collect();
    assert!(!packs.is_empty());
    for pack in &packs {
        let path = pack_path(pack);
        let blobs_end = blobs_end(&a.read(&path).unwrap());
        // A chunk is at least 512 KiB: the pack's first and last bytes of blobs lie in
        // different blobs.
        assert!(blobs_end > 1 << 20, "pack {pack} holds one blob only");
        flip_at(a.as_ref(), &path, 100);
        flip_at(b.as_ref(), &path, blobs_end - 100);
    }
    let dest = tmp.path().join("restored");
    let o = cairn(
        &config,
        &["restore", "latest", "--target", dest.to_str().unwrap()],
    );
    expect_code(&o, 0);
    assert_same_tree(&src, &restored(&dest, &src));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("read from `b`"), "{}", text(&o));
}

/// Small files are read several to a request, pack by pack: a request one copy fails (a blob
/// of another file in it damaged) and the other fails too (a different file damaged there)
/// falls back to each file alone, so every file still comes back.
#[test]
fn two_copies_damaged_in_different_small_files_of_one_pack_still_give_every_file_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _, _) = two_local_targets(tmp.path(), "first.bin", &pseudo_random(11, 3000));
    let src = tmp.path().join("src");
    for i in 0..60 {
        fs::write(
            src.join(format!("doc-{i:02}.bin")),
            pseudo_random(200 + i, 3000),
        )
        .unwrap();
    }
    expect_code(&cairn(&config, &["backup"]), 0);
    let (a, b) = (open_store(&config, "a"), open_store(&config, "b"));
    let packs: std::collections::BTreeSet<String> = file_packs(&config, "a")
        .into_iter()
        .filter(|(p, _)| p.contains("doc-"))
        .flat_map(|(_, packs)| packs)
        .collect();
    assert_eq!(packs.len(), 1, "the 60 files share one pack");
    let path = pack_path(packs.first().unwrap());
    // The first and the last blob of a pack of 60 blobs of ~3 KB.
    let blobs_end = blobs_end(&a.read(&path).unwrap());
    flip_at(a.as_ref(), &path, 100);
    flip_at(b.as_ref(), &path, blobs_end - 100);
    let dest = tmp.path().join("restored");
    let o = cairn(
        &config,
        &["restore", "latest", "--target", dest.to_str().unwrap()],
    );
    expect_code(&o, 0);
    assert_same_tree(&src, &restored(&dest, &src));
}
