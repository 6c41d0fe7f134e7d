//! `cairn verify` against the real servers: a clean repository passes reproducibly; injected
//! faults are each caught and attributed to the right target and file; an unreachable target has
//! its own exit code; the failure hook receives the report.

mod common;

use std::{collections::BTreeSet, fs, time::SystemTime};

use common::*;
use serde_json::Value;

fn failures_of<'a>(r: &'a Value, target: &str) -> Vec<&'a Value> {
    r["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["target"] == target)
        .collect()
}

fn target<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()
}

#[test]
fn verify_proves_clean_targets_and_attributes_every_injected_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_corpus(&src);
    let prefix = unique("verify");
    let hook_dir = tmp.path().join("hook");
    fs::create_dir_all(&hook_dir).unwrap();
    let targets = format!(
        "{}{}{}{}{}[verify]\non_failure = \"cp \\\"$1\\\" {h}/report.json && printf %s \\\"$CAIRN_FAILED_TARGETS\\\" > {h}/failed.txt\"\n",
        local_target("usb", &tmp.path().join("local-repo")),
        sftp_target("dc", &prefix).0,
        smb_target("nas", &prefix).0,
        azblob_target("azure", &prefix),
        s3_target("s3", &prefix),
        h = hook_dir.display(),
    );
    let config = write_config(tmp.path(), &[&src], &targets);
    expect_code(&cairn(&config, &["backup", "--init"]), 0);

    // Clean: every sampled file passes on every target and matches the live source.
    let o = cairn(
        &config,
        &["--json", "verify", "--percent", "100", "--seed", "7"],
    );
    expect_code(&o, 0);
    let clean = json(&o);
    assert_eq!(clean["seed"], 7);
    let files = clean["sample"].as_array().unwrap().len() as u64;
    assert!(files >= 55, "{files}");
    for t in clean["targets"].as_array().unwrap() {
        assert_eq!(t["state"], "verified", "{t}");
        assert_eq!(t["ok"], files, "{t}");
        assert_eq!(t["compared_with_source"], files, "{t}");
        // Key, index and snapshot files are hashed whole; packs are not (chunks are checked).
        assert!(t["repository_files_hashed"].as_u64().unwrap() >= 3, "{t}");
    }
    assert!(!hook_dir.join("report.json").exists(), "no hook on success");

    // Reproducible: the same seed picks the same files; the default seed is reported.
    let pick = |seed: &str| {
        let o = cairn(
            &config,
            &[
                "--json", "verify", "--files", "5", "--seed", seed, "--only", "usb",
            ],
        );
        expect_code(&o, 0);
        json(&o)["sample"].clone()
    };
    assert_eq!(pick("99"), pick("99"));
    assert_ne!(pick("99"), pick("100"));

    // Faults on three targets (nas and usb stay undamaged), plus two changes to the live source.
    let packs = file_packs(&config, "usb");
    let small = packs
        .keys()
        .find(|p| p.ends_with("a/b/small-07.dat"))
        .unwrap()
        .clone();
    let big = packs
        .keys()
        .find(|p| p.ends_with("big.bin"))
        .unwrap()
        .clone();
    let flipped = packs[&small].iter().next().unwrap().clone();
    // The small corpus may sit in one pack: then the same pack is damaged in two different ways
    // on two different targets, and each failure must still name its own target.
    let deleted = packs[&big].iter().next().unwrap().clone();
    let uses = |pack: &str| -> BTreeSet<String> {
        packs
            .iter()
            .filter(|(_, p)| p.contains(pack))
            .map(|(f, _)| f.clone())
            .collect()
    };
    flip_byte(open_store(&config, "dc").as_ref(), &pack_path(&flipped));
    open_store(&config, "azure")
        .delete(&pack_path(&deleted))
        .unwrap();
    let s3 = open_store(&config, "s3");
    let index: Vec<String> = s3
        .list("index")
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(index.len(), 1);
    s3.delete(&format!("index/{}", index[0])).unwrap();
    // Same size and mtime, different bytes: only the source comparison can see it.
    let silent = src.join("a/b/c/d/deep.txt");
    let mtime = fs::metadata(&silent).unwrap().modified().unwrap();
    fs::write(&silent, b"DEEP\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&silent)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    // A legitimate change: new content and mtime.
    let changed = src.join("ünïcödé/naïve café.md");
    fs::write(&changed, "changed after the snapshot\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&changed)
        .unwrap()
        .set_modified(SystemTime::now())
        .unwrap();

    let report_file = tmp.path().join("verify.json");
    let o = cairn(
        &config,
        &[
            "--json",
            "verify",
            "--percent",
            "100",
            "--seed",
            "7",
            "--report",
            report_file.to_str().unwrap(),
        ],
    );
    expect_code(&o, 5);
    let r = json(&o);
    let rel = |p: &std::path::Path| p.strip_prefix("/").unwrap().to_string_lossy().into_owned();
    let (silent_rel, changed_rel) = (rel(&silent), rel(&changed));

    // The silent source change is a mismatch on every target, and the legitimate change is
    // reported as changed, never as a failure.
    for name in ["usb", "dc", "nas", "azure", "s3"] {
        let t = target(&r, name);
        assert_eq!(t["state"], "failed", "{t}");
        if name != "s3" {
            // (s3 cannot even read the snapshot's tree: see below)
            assert!(t["changed_since_snapshot"].as_u64().unwrap() >= 1, "{t}");
        }
        // It may still fail for repository damage on that target, never for the change itself.
        assert!(
            failures_of(&r, name)
                .iter()
                .all(|f| f["path"] != changed_rel.as_str()
                    || !f["what"].as_str().unwrap().contains("live source")),
            "{name}"
        );
    }
    let usb = failures_of(&r, "usb");
    assert_eq!(usb.len(), 1, "{usb:?}");
    assert_eq!(usb[0]["path"], silent_rel.as_str());
    assert_eq!(usb[0]["class"], "mismatch");
    assert!(
        usb[0]["what"].as_str().unwrap().contains("live source"),
        "{usb:?}"
    );

    // dc: files using the flipped pack, those whose chunk holds the flipped byte (a sample
    // reads chunks, not whole packs), plus the silent source change.
    let dc: BTreeSet<String> = failures_of(&r, "dc")
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    let mut could = uses(&flipped);
    could.insert(silent_rel.clone());
    assert!(dc.is_subset(&could), "{dc:?}");
    assert!(dc.len() >= 2, "the flipped chunk is found: {dc:?}");
    assert!(
        failures_of(&r, "dc")
            .iter()
            .filter(|f| f["path"] != silent_rel.as_str())
            .all(|f| f["class"] == "mismatch" && f["what"].as_str().unwrap().contains(&flipped))
    );

    // azure: the files using the deleted pack are missing data.
    let az: BTreeSet<String> = failures_of(&r, "azure")
        .iter()
        .filter(|f| f["class"] == "missing")
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(az, uses(&deleted));
    assert!(az.contains(&big));

    // s3: with its only index file gone, not even the snapshot's tree can be read there:
    // every sampled file is missing, and nothing on s3 is compared with the source.
    let s3_missing = failures_of(&r, "s3")
        .iter()
        .filter(|f| f["class"] == "missing")
        .count() as u64;
    assert_eq!(s3_missing, files);
    assert_eq!(target(&r, "s3")["compared_with_source"], 0);

    // The hook ran with the report and the failing targets.
    let hooked: Value =
        serde_json::from_slice(&fs::read(hook_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(hooked["failures"], r["failures"]);
    assert_eq!(
        fs::read_to_string(hook_dir.join("failed.txt")).unwrap(),
        "usb,dc,nas,azure,s3"
    );
    assert_eq!(r["hook"]["exit_code"], 0);
    let written: Value = serde_json::from_slice(&fs::read(&report_file).unwrap()).unwrap();
    assert_eq!(
        written["hook"]["exit_code"], 0,
        "--report includes the hook's result"
    );
}

#[test]
fn an_unreachable_target_has_its_own_exit_code_and_the_others_are_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"hello").unwrap();
    let repo = tmp.path().join("repo");
    let config = write_config(tmp.path(), &[&src], &local_target("disk", &repo));
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!(
        "[[target]]\nname = \"dead\"\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"x\"\n\
         key_file = \"{}\"\npath = \"/x\"\ntimeout = 5\nretries = 0\n\n",
        env("SFTP_KEY")
    );
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{dead}", local_target("disk", &repo)),
    );
    let o = cairn(&config, &["--json", "verify"]);
    expect_code(&o, 4);
    let r = json(&o);
    assert_eq!(target(&r, "disk")["state"], "verified");
    assert_eq!(target(&r, "disk")["ok"], 1);
    assert_eq!(target(&r, "dead")["state"], "unreachable");
    assert_eq!(r["unreachable_targets"], serde_json::json!(["dead"]));
}

#[test]
fn a_target_without_the_key_file_fails_verify_even_once_another_target_opened() {
    // Regression: master keys derived once per process were reused on a target alone without
    // looking at its key files, so a target stock restic cannot open passed verify.
    let tmp = tempfile::tempdir().unwrap();
    let (config, _a, b) = two_local_targets(tmp.path(), "f.bin", &pseudo_random(3, 50_000));
    for e in fs::read_dir(b.join("keys")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let o = cairn(&config, &["--json", "verify"]);
    let r = json(&o);
    let state = |name: &str| {
        r["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state("a"), "verified", "{r:#}");
    assert_ne!(state("b"), "verified", "{r:#}");
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_sample_reads_what_it_checks_not_the_packs_around_it() {
    // Forty 256 KiB files of random bytes share large data packs: a two-file sample used to
    // read (and hash) every pack it touched, megabytes for half a megabyte checked.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        fs::write(
            src.join(format!("f{i:02}.bin")),
            pseudo_random(i, 256 << 10),
        )
        .unwrap();
    }
    let repo = tmp.path().join("repo");
    let config = write_config(tmp.path(), &[&src], &local_target("disk", &repo));
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    let stored: u64 = open_store(&config, "disk")
        .list("data")
        .unwrap()
        .iter()
        .map(|(_, size)| *size)
        .sum();
    assert!(stored > 8 << 20, "{stored}");

    let r = json(&cairn(
        &config,
        &["--json", "verify", "--files", "2", "--seed", "3"],
    ));
    let t = target(&r, "disk");
    assert_eq!(t["state"], "verified", "{t}");
    let sampled = t["bytes"].as_u64().unwrap();
    assert_eq!(sampled, 2 * (256 << 10));
    // The sampled chunks once (checked, then restored from what was read), plus trees, index,
    // snapshot and the packs' headers.
    let read = t["bytes_read"].as_u64().unwrap();
    assert!(
        read <= sampled + (256 << 10),
        "read {read} for {sampled} sampled"
    );
}

#[test]
fn a_path_sampled_from_two_snapshots_is_restored_and_checked_as_each_holds_it() {
    // Sampled files are restored together, a batch at a time; one path with different content
    // in two snapshots must not be written over by the other before it is checked.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("f{i:02}.bin")), pseudo_random(i, 30_000)).unwrap();
    }
    let config = write_config(
        tmp.path(),
        &[&src],
        &local_target("disk", &tmp.path().join("repo")),
    );
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    for i in 0..20 {
        fs::write(
            src.join(format!("f{i:02}.bin")),
            pseudo_random(100 + i, 20_000),
        )
        .unwrap();
    }
    expect_code(&cairn(&config, &["backup"]), 0);
    let o = cairn(
        &config,
        &["--json", "verify", "--snapshots", "all", "--percent", "100"],
    );
    let r = json(&o);
    expect_code(&o, 0);
    assert_eq!(r["sample"].as_array().unwrap().len(), 40, "{r}");
    assert_eq!(target(&r, "disk")["ok"], 40, "{r}");
}

/// A pack whose header is damaged, or describes its blobs elsewhere than the index does, is
/// caught by a sample that reads only the sampled chunks and the header (before, a damaged
/// header went unnoticed until `check --read-data`).
#[test]
fn a_sampled_chunk_is_checked_against_its_packs_header() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("one.bin"), pseudo_random(5, 300 << 10)).unwrap();
    let repo = tmp.path().join("repo");
    let config = write_config(tmp.path(), &[&src], &local_target("disk", &repo));
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    let verify = || {
        cairn(
            &config,
            &["--json", "verify", "--percent", "100", "--seed", "1"],
        )
    };
    let o = verify();
    expect_code(&o, 0);
    assert_eq!(target(&json(&o), "disk")["state"], "verified");

    let store = open_store(&config, "disk");
    let packs: Vec<String> = file_packs(&config, "disk")
        .into_values()
        .flatten()
        .collect();
    let path = pack_path(&packs[0]);
    let mut bytes = store.read(&path).unwrap().to_vec();
    let n = bytes.len();
    let header_len = u32::from_le_bytes(bytes[n - 4..].try_into().unwrap()) as usize;
    bytes[n - 4 - header_len / 2] ^= 0x01;
    // Stored under its own name (a header flipped by the disk, not a forged file).
    fs::write(repo.join(&path), &bytes).unwrap();
    let o = verify();
    expect_code(&o, 5);
    let r = json(&o);
    let f = failures_of(&r, "disk");
    assert!(
        f.iter().any(|f| f["what"]
            .as_str()
            .unwrap()
            .contains("header that does not open")),
        "{r}"
    );
}
