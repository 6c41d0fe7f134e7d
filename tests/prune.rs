//! Prune through the fan-out: every kind of target ends byte-identical and readable by stock
//! restic; a prune waits for an optional target away for less than `prune_wait` (the
//! split-brain scenario; rotated disks, never waited for, are in `rotation.rs`); and a
//! prune killed at any write or removal leaves every target checkable, loses nothing the policy
//! keeps, and the next prune finishes the job. Real servers; restic is the oracle.

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
};

use common::*;

fn by_name(report: &serde_json::Value, name: &str) -> serde_json::Value {
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no target {name} in {report}"))
        .clone()
}

#[test]
fn prune_on_every_kind_of_target_leaves_identical_repositories_that_restic_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let p = unique("prune-all");
    let local = tmp.path().join("local");
    let (sftp, sftp_dir) = sftp_target("sftp", &p);
    let (smb, smb_dir) = smb_target("smb", &p);
    let targets = format!(
        "{}{sftp}{smb}{}{}",
        local_target("local", &local),
        azblob_target("azure", &p),
        s3_target("s3", &p)
    );
    let config = write_config(tmp.path(), &[&src], &targets);
    fs::write(src.join("stays"), pseudo_random(1, 100_000)).unwrap();
    for night in 0..4u64 {
        // Replaced every night: yesterday's copy becomes garbage once forgotten.
        fs::write(src.join("changes"), pseudo_random(100 + night, 300_000)).unwrap();
        let args: &[&str] = if night == 0 {
            &["backup", "--init"]
        } else {
            &["backup"]
        };
        expect_code(&cairn(&config, args), 0);
    }
    let keep = tmp.path().join("expected");
    copy_tree(&src, &keep);

    let out = cairn(
        &config,
        &["--json", "forget", "--keep-last", "1", "--prune"],
    );
    expect_code(&out, 0);
    let r = json(&out);
    assert_eq!(r["removed"].as_array().unwrap().len(), 3);
    let pruned = &r["prune"];
    assert!(pruned["record"].is_string(), "{pruned}");
    assert!(
        pruned["plan"]["bytes_remove"].as_u64().unwrap() >= 3 * 250_000,
        "{pruned}"
    );
    for name in ["local", "sftp", "smb", "azure", "s3"] {
        let t = by_name(pruned, name);
        assert_eq!(t["state"], "complete", "{t}");
        assert!(t["bytes_removed"].as_u64().unwrap() >= 3 * 250_000, "{t}");
    }
    let files = |name: &str| repo_files(open_store(&config, name).as_ref());
    let reference = files("local");
    for name in ["sftp", "smb", "azure", "s3"] {
        assert_eq!(files(name), reference, "{name} differs from local");
    }
    for name in ["local", "sftp", "smb", "azure", "s3"] {
        restores_from(&config, name, "latest", &src, &keep);
    }
    // restic reads every target: local and SFTP where they are, SMB through the share's
    // folder, S3 through s3s-fs's verbatim objects, Azure through a verbatim copy (restic 0.14
    // cannot address Azurite).
    let azure_copy = tmp.path().join("azure-copy");
    verbatim_copy(&config, "azure", &azure_copy);
    let s3_dir = format!("{}/s3/data/{}/{p}", env("TS_RUN"), env("S3_BUCKET"));
    for repo in [
        local.to_str().unwrap(),
        &sftp_dir,
        &smb_dir,
        &s3_dir,
        azure_copy.to_str().unwrap(),
    ] {
        assert_eq!(snapshot_ids(repo).len(), 1, "{repo}");
        restic_check(repo);
        let dest = tmp.path().join(unique("restic-restore"));
        let out = restic(
            repo,
            &["restore", "latest", "--target", dest.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", text(&out));
        assert_same_tree(&keep, &restored(&dest, &src));
    }
    // Nothing left to do.
    let again = json(&cairn(&config, &["--json", "prune"]));
    assert!(again["record"].is_null(), "{again}");
}

#[test]
fn a_snapshot_only_the_away_disk_holds_survives_a_prune_made_while_it_was_away() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let (a, usb) = (tmp.path().join("a"), tmp.path().join("usb"));
    let (sftp, sftp_dir) = sftp_target("nas", &unique("split-brain"));
    let usb_toml =
        local_target("usb", &usb).replace("kind = \"local\"", "kind = \"local\"\nrequired = false");
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{sftp}{usb_toml}", local_target("a", &a)),
    );
    // A large file every snapshot shares, and small ones changing nightly.
    fs::write(src.join("shared"), pseudo_random(7, 400_000)).unwrap();
    nightly_backups(&config, &src, 0..3, |_| {});

    // Only the disk is there: the backup lands on it alone.
    let (a_away, nas_away) = (
        tmp.path().join("a-away"),
        PathBuf::from(format!("{sftp_dir}-away")),
    );
    fs::rename(&a, &a_away).unwrap();
    fs::rename(&sftp_dir, &nas_away).unwrap();
    fs::write(src.join("disk-only"), pseudo_random(42, 30_000)).unwrap();
    let out = cairn(&config, &["--json", "backup"]);
    expect_code(&out, 3);
    let disk_snapshot = json(&out)["snapshot"].as_str().unwrap().to_string();
    let disk_content = tmp.path().join("disk-content");
    copy_tree(&src, &disk_content);
    fs::rename(&a_away, &a).unwrap();
    fs::rename(&nas_away, &sftp_dir).unwrap();

    // The disk is away; the shared file is gone from the source; forget --prune on the others
    // would find the shared data unused.
    let usb_away = tmp.path().join("usb-away");
    fs::rename(&usb, &usb_away).unwrap();
    fs::remove_file(src.join("shared")).unwrap();
    fs::remove_file(src.join("disk-only")).unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    let out = cairn(
        &config,
        &["--json", "forget", "--keep-last", "1", "--prune"],
    );
    let r = json(&out);
    assert_eq!(r["removed"].as_array().unwrap().len(), 3, "{r}");
    let pruned = &r["prune"];
    let deferred = pruned["deferred"].as_str().unwrap_or_default();
    assert!(deferred.contains("`usb`"), "{pruned}");
    assert!(
        pruned["plan"]["bytes_remove"].as_u64().unwrap() >= 400_000,
        "{pruned}"
    );
    assert!(pruned["record"].is_null(), "{pruned}");
    // Deferred prune: partially done (exit 3), said in status too.
    expect_code(&out, 3);
    let status = json(&cairn(&config, &["--json", "status"]));
    let waiting = status["prune_deferred"]["waiting_for"].to_string();
    assert!(waiting.contains("usb"), "{status}");

    // The disk is back; the normal nightly backup runs.
    fs::rename(&usb_away, &usb).unwrap();
    fs::write(src.join("night"), pseudo_random(99, 20_000)).unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    let latest_content = tmp.path().join("latest-content");
    copy_tree(&src, &latest_content);
    // Every snapshot kept, from both sides, restores on every target.
    for target in ["a", "nas", "usb"] {
        restores_from(&config, target, &disk_snapshot, &src, &disk_content);
        restores_from(&config, target, "latest", &src, &latest_content);
    }
    for repo in [a.to_str().unwrap(), &sftp_dir, usb.to_str().unwrap()] {
        let ids = snapshot_ids(repo);
        assert!(ids.contains(&disk_snapshot), "{repo}: {ids:?}");
        assert_eq!(ids.len(), 3, "{repo}: {ids:?}");
        restic_check(repo);
    }

    // Now every target is back: the prune runs in full, and the disk's snapshot keeps its data.
    let out = cairn(&config, &["--json", "prune"]);
    expect_code(&out, 0);
    let r = json(&out);
    assert!(r["deferred"].is_null(), "{r}");
    assert!(r["record"].is_string(), "{r}");
    let status = json(&cairn(&config, &["--json", "status"]));
    assert!(status["prune_deferred"].is_null(), "{status}");
    for target in ["a", "nas", "usb"] {
        restores_from(&config, target, &disk_snapshot, &src, &disk_content);
    }
    for repo in [a.to_str().unwrap(), &sftp_dir, usb.to_str().unwrap()] {
        restic_check(repo);
    }
    let files = |name: &str| repo_files(open_store(&config, name).as_ref());
    assert_eq!(files("usb"), files("a"));
    assert_eq!(files("nas"), files("a"));
}

/// Two targets (local and SFTP) with four nights of backups: the state a forget starts from.
/// Returns (config, a's folder, the SFTP folder on disk, a copy of
/// the source as the kept snapshot holds it).
fn forgotten_nights(tmp: &Path) -> (PathBuf, PathBuf, String, PathBuf) {
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    let a = tmp.join("a");
    let (sftp, sftp_dir) = sftp_target("nas", &unique("prune-kill"));
    let config = write_config(tmp, &[&src], &format!("{}{sftp}", local_target("a", &a)));
    fs::write(src.join("stays"), pseudo_random(3, 50_000)).unwrap();
    nightly_backups(&config, &src, 0..4, |_| {});
    let keep = tmp.join("expected");
    copy_tree(&src, &keep);
    (config, a, sftp_dir, keep)
}

#[test]
fn forget_and_prune_killed_at_any_write_or_removal_lose_nothing_and_the_next_prune_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("template");
    fs::create_dir_all(&template).unwrap();
    let (config, a, sftp_dir, keep) = forgotten_nights(&template);
    let src = template.join("src");
    let templates = Templates::keep(tmp.path(), &config, &a, &sftp_dir);

    let forget: &[&str] = &["forget", "--keep-last", "1"];
    let mut steps = 0;
    for (command, hook) in [
        (forget, "CAIRN_TEST_HALT_AFTER_WRITES"),
        (forget, "CAIRN_TEST_HALT_AFTER_DELETES"),
        (&["prune"][..], "CAIRN_TEST_HALT_AFTER_WRITES"),
        (&["prune"][..], "CAIRN_TEST_HALT_AFTER_DELETES"),
    ] {
        for n in 1.. {
            // A fresh copy of the state before the forget, under new names.
            let (cfg, ra, rnas) = templates.fresh();
            if command[0] == "prune" {
                expect_code(&cairn(&cfg, forget), 0);
            }
            if !kill_at(&cfg, command, hook, n, 2) {
                assert!(n > 1, "{command:?} {hook}: never reached its first step");
                break;
            }
            steps += 1;
            let at = format!("{} {hook}={n}", command[0]);
            every_copy_checks(&at, &[&ra, &rnas]);
            for target in ["a", "nas"] {
                restores_from(&cfg, target, "latest", &src, &keep);
            }
            let out = cairn(&cfg, &["--json", "prune"]);
            expect_code(&out, 0);
            for repo in [&ra, &rnas] {
                let out = restic(repo, &["check"]);
                assert!(
                    out.status.success(),
                    "{at}: restic check {repo}: {}",
                    text(&out)
                );
            }
            let files = |name: &str| repo_files(open_store(&cfg, name).as_ref());
            assert_eq!(files("a"), files("nas"), "{at}");
            assert_eq!(
                files("a")
                    .keys()
                    .filter(|p| p.starts_with("snapshots/"))
                    .count(),
                1,
                "{at}"
            );
            // The job is done: nothing left to remove.
            let again = json(&cairn(&cfg, &["--json", "prune", "--dry-run"]));
            assert_eq!(again["plan"]["packs_unused"], 0, "{at}: {again}");
            assert_eq!(again["plan"]["packs_unindexed"], 0, "{at}: {again}");
        }
    }
    assert!(steps >= 8, "only {steps} steps were interrupted");
}
