//! One conformance suite for every storage kind, each against its real server (restic's
//! `internal/backend/test` is the model): whole and ranged reads, listing at depth, stat,
//! atomic replace, deletion, and the error classes callers rely on (not found; a missing
//! folder, bucket, container or share is *absent*, never empty). The in-memory store used by
//! unit tests runs the same suite, so it behaves as the real ones do.

mod common;

use bytes::Bytes;
use cairn::store::{MemStore, Store, StoreErrorKind};
use common::*;

/// A pack-like path two folders deep, as restic keeps `data/`.
const PACK: &str = "data/ab/ab00000000000000000000000000000000000000000000000000000000000001";
const INDEX: &str = "index/cd00000000000000000000000000000000000000000000000000000000000002";

fn store_of(kind_toml: &str, name: &str) -> Box<dyn Store> {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &[tmp.path()], kind_toml);
    open_store(&config, name)
}

/// The behaviour every store must share. `store` is empty and its root exists.
fn conforms(store: &dyn Store) {
    let kind = store.location();
    store
        .create_dirs(&["data/ab".to_string(), "index".to_string()])
        .unwrap();
    // Idempotent.
    store.create_dirs(&["index".to_string()]).unwrap();

    // Nothing there yet: a missing file is NotFound, a missing folder lists empty.
    let missing = store.read(PACK).unwrap_err();
    assert_eq!(missing.kind, StoreErrorKind::NotFound, "{kind}: {missing}");
    assert_eq!(store.stat(PACK).unwrap(), None, "{kind}");
    assert!(store.list("snapshots").unwrap().is_empty(), "{kind}");

    // Written from several parts, read back whole, in ranges, and stated.
    let body = pseudo_random(7, 300_000);
    let parts = vec![
        Bytes::copy_from_slice(&body[..1000]),
        Bytes::copy_from_slice(&body[1000..]),
    ];
    store.write(PACK, parts).unwrap();
    store
        .write(INDEX, vec![Bytes::from_static(b"index")])
        .unwrap();
    assert_eq!(store.read(PACK).unwrap(), body, "{kind}");
    assert_eq!(store.stat(PACK).unwrap(), Some(body.len() as u64), "{kind}");
    assert_eq!(
        store.read_range(PACK, 123_456, 1000).unwrap(),
        body[123_456..124_456],
        "{kind}"
    );
    assert_eq!(store.read_range(PACK, 0, 1).unwrap(), body[..1], "{kind}");
    let tail = body.len() as u64 - 10;
    assert_eq!(
        store.read_range(PACK, tail, 10).unwrap(),
        body[body.len() - 10..],
        "{kind}"
    );
    // A range past the end is an error, never silently short.
    assert!(store.read_range(PACK, tail, 100).is_err(), "{kind}");

    // Listing: paths relative to the folder, at any depth, with sizes, and no temporary files.
    let mut data = store.list("data").unwrap();
    data.sort();
    assert_eq!(
        data,
        [(PACK["data/".len()..].to_string(), body.len() as u64)],
        "{kind}"
    );
    assert_eq!(
        store.list("index").unwrap(),
        [(INDEX["index/".len()..].to_string(), 5)],
        "{kind}"
    );

    // Replacing a file replaces it whole (a shorter content leaves no tail behind).
    store
        .write(PACK, vec![Bytes::from_static(b"shorter")])
        .unwrap();
    assert_eq!(store.read(PACK).unwrap(), b"shorter"[..], "{kind}");
    assert_eq!(store.stat(PACK).unwrap(), Some(7), "{kind}");

    // Deleting: gone, and deleting again is no error.
    store.delete(PACK).unwrap();
    store.delete(PACK).unwrap();
    assert_eq!(store.stat(PACK).unwrap(), None, "{kind}");
    assert!(store.list("data").unwrap().is_empty(), "{kind}");
    let gone = store.read_range(PACK, 0, 1).unwrap_err();
    assert_eq!(gone.kind, StoreErrorKind::NotFound, "{kind}: {gone}");
    store.delete(INDEX).unwrap();
}

/// A store whose root (folder, bucket, container) does not exist: absent when listed, and
/// never taken for an empty one.
fn absent(store: &dyn Store) {
    let e = store.list("keys").unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Absent, "{}: {e}", store.location());
}

#[test]
fn memory() {
    conforms(&MemStore::new());
}

#[test]
fn local_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    std::fs::create_dir(&root).unwrap();
    conforms(store_of(&local_target("t", &root), "t").as_ref());
    absent(store_of(&local_target("t", &tmp.path().join("nowhere")), "t").as_ref());
}

#[test]
fn sftp() {
    let (toml, dir) = sftp_target("t", &unique("conform"));
    std::fs::create_dir_all(&dir).unwrap();
    conforms(store_of(&toml, "t").as_ref());
    let (toml, _) = sftp_target("t", &format!("{}/nowhere", unique("conform")));
    absent(store_of(&toml, "t").as_ref());
}

#[test]
fn smb() {
    let (toml, dir) = smb_target("t", &unique("conform"));
    std::fs::create_dir_all(&dir).unwrap();
    conforms(store_of(&toml, "t").as_ref());
    let (toml, _) = smb_target("t", &format!("{}/nowhere", unique("conform")));
    absent(store_of(&toml, "t").as_ref());
}

#[test]
fn azure_blob() {
    conforms(store_of(&azblob_target("t", &unique("conform")), "t").as_ref());
    let toml = azblob_target("t", &unique("conform")).replace(
        &format!("container = \"{}\"", env("AZBLOB_CONTAINER")),
        "container = \"no-such-container\"",
    );
    absent(store_of(&toml, "t").as_ref());
}

#[test]
fn s3() {
    conforms(store_of(&s3_target("t", &unique("conform")), "t").as_ref());
    let toml = s3_target("t", &unique("conform")).replace(
        &format!("bucket = \"{}\"", env("S3_BUCKET")),
        "bucket = \"no-such-bucket\"",
    );
    absent(store_of(&toml, "t").as_ref());
}
