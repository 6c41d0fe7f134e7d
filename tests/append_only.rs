//! Append-only SFTP targets (issue 28, item 4), on the test server's append-only account
//! (`internal-sftp -u 0222 -P remove,rename,...`, as `contrib/sftp-append-only/` tells a
//! storage owner to set up). cairn adds files there and removes nothing; whoever holds this
//! machine's keys cannot take anything away either.

mod common;

use std::{fs, path::Path};

use common::*;

/// Files under restic's repository names whose bytes are not what their name promises.
fn broken_names(repo: &Path) -> Vec<String> {
    files_below(repo)
        .into_iter()
        .filter(|(rel, bytes)| {
            let top = rel.split('/').next().unwrap_or_default();
            ["keys", "snapshots", "index", "data"].contains(&top)
                && rel.rsplit('/').next() != Some(hex_sha256(bytes).as_str())
        })
        .map(|(rel, _)| rel)
        .collect()
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn the_canary_proves_the_append_only_account_and_unmasks_one_that_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"alpha").unwrap();
    let (ao, ao_dir) = append_only_target("ao", &unique("canary"), true);
    // The same claim on the ordinary (root) account: nothing stops a removal there.
    let (plain, plain_dir) = sftp_target("liar", &unique("canary-liar"));
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sftp-append-only/prepare-folder.sh");
    let out = std::process::Command::new(script)
        .args([plain_dir.as_str(), "root"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let plain = plain.replace("timeout = 10", "append_only = true\ntimeout = 10");
    let config = write_config(tmp.path(), &[&src], &format!("{ao}{plain}"));
    let out = cairn(&config, &["--json", "check", "--immutability"]);
    expect_code(&out, 5);
    let r = json(&out);
    let target = |n: &str| {
        r["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(target("ao")["protection"]["immutable"], true, "{r}");
    assert_eq!(target("liar")["protection"]["immutable"], false, "{r}");
    let detail = target("liar")["protection"]["detail"].to_string();
    assert!(detail.contains("removed"), "{detail}");
    // The canary stays where the account cannot remove it.
    assert_eq!(
        fs::read_dir(Path::new(&ao_dir).join(".cairn-canary"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn a_folder_the_storage_owner_did_not_prepare_is_named_and_the_other_targets_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"alpha").unwrap();
    let (ao, ao_dir) = append_only_target("ao", &unique("unprepared"), false);
    // The owner made the folder only, not its layout.
    let out = std::process::Command::new("install")
        .args(["-d", "-o", &std::env::var("SFTP_AO_USER").unwrap(), &ao_dir])
        .output()
        .unwrap();
    assert!(out.status.success());
    let local = tmp.path().join("local");
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{ao}", local_target("local", &local)),
    );
    let out = cairn(&config, &["backup", "--init"]);
    expect_code(&out, 3);
    assert!(
        text(&out).contains("ao") && text(&out).contains("prepare-folder.sh"),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot_ids(&local.display().to_string()).len(), 1);
}

#[test]
fn a_backup_killed_while_uploading_leaves_no_broken_file_and_the_next_run_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("small.txt"), b"first").unwrap();
    let (ao, ao_dir) = append_only_target("ao", &unique("kill"), true);
    let config = write_config(tmp.path(), &[&src], &ao);
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    for i in 0..6 {
        fs::write(
            src.join(format!("big-{i}.bin")),
            pseudo_random(100 + i, 12_000_000),
        )
        .unwrap();
    }
    let tmp_dir = Path::new(&ao_dir).join(".cairn-tmp");
    let count = || {
        let data = Path::new(&ao_dir).join("data");
        fs::read_dir(&tmp_dir).unwrap().count()
            + fs::read_dir(&data)
                .unwrap()
                .map(|d| fs::read_dir(d.unwrap().path()).unwrap().count())
                .sum::<usize>()
    };
    let before = count();
    let mut run = cairn_cmd(&config)
        .arg("backup")
        .env("CAIRN_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed as soon as its first upload has begun.
    wait_for("the first upload to begin", || count() > before);
    run.kill().unwrap();
    run.wait().unwrap();
    assert_eq!(broken_names(Path::new(&ao_dir)), Vec::<String>::new());
    assert_eq!(
        snapshot_ids(&ao_dir).len(),
        1,
        "no snapshot of the killed run"
    );
    // It was cut mid-upload: a temporary file never linked to a name.
    let cut = fs::read_dir(&tmp_dir)
        .unwrap()
        .filter(|e| {
            use std::os::unix::fs::MetadataExt;
            e.as_ref().unwrap().metadata().unwrap().nlink() == 1
        })
        .count();
    assert!(cut >= 1, "the kill came between two uploads");
    // The next run completes, and stock restic reads every byte of it.
    expect_code(&cairn(&config, &["backup"]), 0);
    assert_eq!(broken_names(Path::new(&ao_dir)), Vec::<String>::new());
    assert_eq!(snapshot_ids(&ao_dir).len(), 2);
    let out = restic(&ao_dir, &["--no-lock", "check", "--read-data"]);
    assert!(out.status.success(), "{}", text(&out));
}
