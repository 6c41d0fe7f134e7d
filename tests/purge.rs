//! `cairn purge` (issue 27, item 2): one person's folder out of every snapshot and every pack,
//! on a local folder, the SFTP server and Azurite; stock restic is the oracle, and the purged
//! files' chunk ids are looked up in every target's index by this test itself.

mod common;

use std::{collections::BTreeSet, fs, path::Path};

use common::*;

/// The chunk ids of the files under `folder` (a path in the snapshots, no leading `/`) in
/// every snapshot target `name` holds, and those of every other file.
fn chunks_under(config: &Path, name: &str, folder: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let repo = open_alone(config, name).to_indexed().unwrap();
    let (mut inside, mut outside) = (BTreeSet::new(), BTreeSet::new());
    for snap in repo.get_all_snapshots().unwrap() {
        let root = repo.node_from_snapshot_and_path(&snap, "").unwrap();
        for item in repo
            .ls(&root, &rustic_core::LsOptions::default().recursive(true))
            .unwrap()
        {
            let (path, node) = item.unwrap();
            let ids = node
                .content
                .iter()
                .flatten()
                .map(|c| c.to_hex().to_string());
            if path.starts_with(folder) {
                inside.extend(ids);
            } else {
                outside.extend(ids);
            }
        }
    }
    (inside, outside)
}

/// Which of `chunks` target `name`'s own index files still list.
fn indexed(config: &Path, name: &str, chunks: &BTreeSet<String>) -> Vec<String> {
    let repo = open_alone(config, name).to_indexed().unwrap();
    chunks
        .iter()
        .filter(|c| {
            let id: rustic_core::Id = c.parse().unwrap();
            repo.get_index_entry(&rustic_core::DataId::from(id)).is_ok()
        })
        .cloned()
        .collect()
}

#[test]
fn a_purged_folder_leaves_no_snapshot_and_no_chunk_on_any_target() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let person = src.join("hr/j.jansen");
    fs::create_dir_all(&person).unwrap();
    fs::create_dir_all(src.join("hr/other")).unwrap();
    fs::create_dir_all(src.join("public")).unwrap();
    // The same bytes in a kept file and a purged one: that chunk stays, and is named.
    let same = pseudo_random(77, 40_000);
    fs::write(src.join("public/same.bin"), &same).unwrap();
    fs::write(person.join("same.bin"), &same).unwrap();
    let (local, a_dir) = (tmp.path().join("local"), tmp.path().join("local"));
    let (sftp, sftp_dir) = sftp_target("sftp", &unique("purge"));
    let p = unique("purge");
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!(
            "{}{sftp}{}",
            local_target("local", &local),
            azblob_target("azure", &p)
        ),
    );
    for night in 0..5u64 {
        fs::write(person.join("cv.pdf"), pseudo_random(100 + night, 30_000)).unwrap();
        fs::write(
            person.join(format!("mail-{night}.eml")),
            pseudo_random(200 + night, 8_000),
        )
        .unwrap();
        fs::write(
            src.join("hr/other/plan.txt"),
            pseudo_random(300 + night, 20_000),
        )
        .unwrap();
        let args: &[&str] = if night == 0 {
            &["backup", "--init"]
        } else {
            &["backup"]
        };
        expect_code(&cairn(&config, args), 0);
    }
    let folder = format!("{}/hr/j.jansen", src.display());
    let in_snapshots = folder.trim_start_matches('/').to_string();
    let (purged, kept) = chunks_under(&config, "local", &in_snapshots);
    let shared: BTreeSet<String> = purged.intersection(&kept).cloned().collect();
    assert!(!shared.is_empty(), "same.bin's chunks are shared");
    let gone: BTreeSet<String> = purged.difference(&kept).cloned().collect();
    for name in ["local", "sftp", "azure"] {
        assert_eq!(indexed(&config, name, &gone).len(), gone.len(), "{name}");
    }

    // A dry run lists every snapshot and changes nothing.
    let before = repo_files(open_store(&config, "local").as_ref());
    let out = cairn(&config, &["--json", "purge", "--dry-run", &folder]);
    expect_code(&out, 0);
    let r = json(&out);
    assert_eq!(r["snapshots"].as_array().unwrap().len(), 5, "{r}");
    assert_eq!(
        r["snapshots"][0]["paths"],
        serde_json::json!([folder]),
        "{r}"
    );
    assert_eq!(repo_files(open_store(&config, "local").as_ref()), before);

    let out = cairn(&config, &["--json", "purge", &format!("{folder}/")]);
    expect_code(&out, 0);
    let r = json(&out);
    assert_eq!(r["complete"], true, "{r}");
    assert!(
        r["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["rewritten_as"].is_string() && s["files"].as_u64() >= Some(3))
    );
    let kept_by: BTreeSet<&str> = r["kept_chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kept_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept_by,
        BTreeSet::from([format!("{}/public/same.bin", src.display()).as_str()]),
        "{r}"
    );
    for c in r["index_check"].as_array().unwrap() {
        assert_eq!(c["checked"], true, "{c}");
        assert_eq!(c["still_indexed"], serde_json::json!([]), "{c}");
        assert_eq!(c["still_in_packs"], serde_json::json!([]), "{c}");
        assert!(c["packs_checked"].as_u64().unwrap() > 0, "{c}");
    }
    let cert = &r["certificate"];
    assert!(cert["final"].is_string(), "{cert}");
    assert_eq!(cert["snapshots"].as_array().unwrap().len(), 5, "{cert}");
    assert!(
        cert["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["applied"].is_string() && t["chunks_left"] == 0),
        "{cert}"
    );

    // Looked up independently: no purged chunk (other than the shared ones) on any target.
    for name in ["local", "sftp", "azure"] {
        assert_eq!(
            indexed(&config, name, &gone),
            Vec::<String>::new(),
            "{name}"
        );
        assert_eq!(
            indexed(&config, name, &shared).len(),
            shared.len(),
            "{name}"
        );
    }
    // restic finds none of the files in any snapshot on any target; the rest restores.
    let expected = tmp.path().join("expected");
    copy_tree(&src, &expected);
    fs::remove_dir_all(expected.join("hr/j.jansen")).unwrap();
    let azure_copy = tmp.path().join("azure-copy");
    verbatim_copy(&config, "azure", &azure_copy);
    for repo in [
        a_dir.to_str().unwrap(),
        &sftp_dir,
        azure_copy.to_str().unwrap(),
    ] {
        restic_check(repo);
        let ids = snapshot_ids(repo);
        assert_eq!(ids.len(), 5, "{repo}");
        for pattern in ["cv.pdf", "mail-*.eml", "j.jansen"] {
            let out = restic(repo, &["find", "--json", pattern]);
            assert!(out.status.success(), "{}", text(&out));
            let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(found, serde_json::json!([]), "{repo}: {pattern}");
        }
        let out = restic(repo, &["find", "--json", "plan.txt"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("plan.txt"));
    }
    for name in ["local", "sftp", "azure"] {
        restores_from(&config, name, "latest", &src, &expected);
    }
    // Run again: nothing left to purge.
    let r = json(&cairn(&config, &["--json", "purge", &folder]));
    assert_eq!(r["snapshots"], serde_json::json!([]), "{r}");
}

#[test]
fn a_purge_killed_at_any_write_or_removal_is_finished_by_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("template");
    let src = template.join("src");
    let person = src.join("hr/j.jansen");
    fs::create_dir_all(&person).unwrap();
    let a = template.join("a");
    let (sftp, sftp_dir) = sftp_target("nas", &unique("purge-kill"));
    let config = write_config(
        &template,
        &[&src],
        &format!("{}{sftp}", local_target("a", &a)),
    );
    nightly_backups(&config, &src, 0..3, |night| {
        fs::write(person.join("cv.pdf"), pseudo_random(100 + night, 30_000)).unwrap();
    });
    let folder = format!("{}/hr/j.jansen", src.display());
    let expected = tmp.path().join("expected");
    copy_tree(&src, &expected);
    fs::remove_dir_all(expected.join("hr/j.jansen")).unwrap();
    let templates = Templates::keep(tmp.path(), &config, &a, &sftp_dir);
    let mut steps = 0;
    for hook in [
        "CAIRN_TEST_HALT_AFTER_WRITES",
        "CAIRN_TEST_HALT_AFTER_DELETES",
    ] {
        for n in 1.. {
            let (cfg, ra, rnas) = templates.fresh();
            if !kill_at(&cfg, &["purge", &folder], hook, n, 2) {
                assert!(n > 1, "{hook}: never reached its first step");
                break;
            }
            steps += 1;
            let at = format!("purge {hook}={n}");
            every_copy_checks(&at, &[&ra, &rnas]);
            // The next purge finishes the job: three purged snapshots, nothing of the folder.
            let out = cairn(&cfg, &["--json", "purge", &folder]);
            expect_code(&out, 0);
            assert_eq!(json(&out)["complete"], true, "{at}: {}", text(&out));
            let files = |name: &str| repo_files(open_store(&cfg, name).as_ref());
            assert_eq!(files("a"), files("nas"), "{at}");
            let out = restic(&ra, &["find", "--json", "cv.pdf"]);
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
                serde_json::json!([]),
                "{at}"
            );
            assert_eq!(snapshot_ids(&ra).len(), 3, "{at}");
            restores_from(&cfg, "nas", "latest", &src, &expected);
        }
    }
    assert!(steps >= 8, "only {steps} steps were interrupted");
}
