//! Several client repositories in one configuration (`[[repository]]`): each in its own folder
//! on the targets it uses, with its own password, state and audit log; one client's trouble is
//! reported for it while the others run. Real servers for every target kind.

mod common;

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Output,
};

use common::*;

/// Each client's password, by name.
const CLIENTS: [(&str, &str); 3] = [
    ("acme", "acme's own long password"),
    ("beta", "beta's different password"),
    ("gamma", "gamma keeps a third one"),
];

fn password_of(name: &str) -> &'static str {
    CLIENTS.iter().find(|(n, _)| *n == name).unwrap().1
}

/// A `[[repository]]` section backing up `tmp/src-NAME`, with `extra` lines.
fn client(tmp: &Path, name: &str, extra: &str) -> String {
    let src = tmp.join(format!("src-{name}"));
    fs::create_dir_all(&src).unwrap();
    format!(
        "[[repository]]\nname = \"{name}\"\npassword = \"env:PW_{}\"\nsources = [\"{}\"]\n{extra}\n",
        name.to_ascii_uppercase(),
        src.display()
    )
}

/// Runs cairn with every client's password in its variable (and `wrong` for the clients named
/// in `wrong_for`).
fn cairn_clients(config: &Path, wrong_for: &[&str], args: &[&str]) -> Output {
    let mut cmd = cairn_cmd(config);
    for (name, pw) in CLIENTS {
        let pw = if wrong_for.contains(&name) {
            "not the password"
        } else {
            pw
        };
        cmd.env(format!("PW_{}", name.to_ascii_uppercase()), pw);
    }
    in_own_words(cmd.args(args).output().unwrap())
}

fn restic_with(repo: &str, password: &str, args: &[&str]) -> Output {
    restic_cmd(repo, args)
        .env("RESTIC_PASSWORD", password)
        .output()
        .unwrap()
}

fn each_repository(report: &serde_json::Value) -> Vec<(String, i64, serde_json::Value)> {
    report["repositories"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"))
        .iter()
        .map(|r| {
            (
                r["repository"].as_str().unwrap().to_string(),
                r["exit_code"].as_i64().unwrap(),
                r["report"].clone(),
            )
        })
        .collect()
}

/// The audit log of one client (its state folder is named after it).
fn audit_log(state: &Path, client: &str) -> String {
    let dir = fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{client}-")))
        })
        .unwrap_or_else(|| panic!("no state folder of {client}"));
    fs::read_to_string(dir.join("audit.jsonl")).unwrap()
}

#[test]
fn two_clients_on_every_target_kind_are_kept_apart_and_restic_opens_each_with_its_own_password() {
    let tmp = tempfile::tempdir().unwrap();
    let p = unique("clients");
    let local = tmp.path().join("local");
    let (sftp, sftp_dir) = sftp_target("sftp", &p);
    let (smb, smb_dir) = smb_target("smb", &p);
    let toml = format!(
        "{}{sftp}{smb}{}{}{}{}",
        local_target("local", &local),
        azblob_target("azure", &p),
        s3_target("s3", &p),
        client(tmp.path(), "acme", ""),
        client(tmp.path(), "beta", ""),
    );
    let config = tmp.path().join("targets.toml");
    fs::write(&config, toml).unwrap();
    for (i, (name, _)) in CLIENTS.iter().take(2).enumerate() {
        let src = tmp.path().join(format!("src-{name}"));
        fs::write(src.join("own.bin"), pseudo_random(i as u64 + 40, 200_000)).unwrap();
        // The same file in both: no deduplication across clients, each stores it.
        fs::write(src.join("shared.bin"), pseudo_random(99, 150_000)).unwrap();
    }
    expect_code(&cairn_clients(&config, &[], &["init"]), 0);
    let out = cairn_clients(&config, &[], &["--json", "backup"]);
    expect_code(&out, 0);
    let report = json(&out);
    let done = each_repository(&report);
    assert_eq!(done.len(), 2);
    for (name, code, r) in &done {
        assert_eq!(*code, 0, "{name}: {r}");
        for t in r["targets"].as_array().unwrap() {
            assert_eq!(t["state"], "complete", "{name}: {t}");
        }
    }
    // Restores and verify, one client at a time.
    for (name, _) in CLIENTS.iter().take(2) {
        let src = tmp.path().join(format!("src-{name}"));
        for from in ["local", "sftp", "smb", "azure", "s3"] {
            let dest = tmp.path().join(unique("restore"));
            let out = cairn_clients(
                &config,
                &[],
                &[
                    "--repo",
                    name,
                    "restore",
                    "latest",
                    "--from",
                    from,
                    "--target",
                    dest.to_str().unwrap(),
                ],
            );
            expect_code(&out, 0);
            assert_same_tree(&src, &restored(&dest, &src));
        }
        expect_code(&cairn_clients(&config, &[], &["--repo", name, "verify"]), 0);
    }
    // Stock restic opens each client's folder on every target with that client's password
    // only, and its full check passes there.
    let s3_root = format!("{}/s3/data/{}/{p}", env("TS_RUN"), env("S3_BUCKET"));
    for (name, pw) in CLIENTS.iter().take(2) {
        let azure_copy = tmp.path().join(format!("azure-{name}"));
        verbatim_copy(&config, &format!("{name}/azure"), &azure_copy);
        let other = if *name == "acme" { "beta" } else { "acme" };
        for repo in [
            local.join(name).display().to_string(),
            format!("{sftp_dir}/{name}"),
            format!("{smb_dir}/{name}"),
            format!("{s3_root}/{name}"),
            azure_copy.display().to_string(),
        ] {
            let out = restic_with(&repo, pw, &["check", "--read-data"]);
            assert!(out.status.success(), "{repo}: {}", text(&out));
            let out = restic_with(&repo, password_of(other), &["snapshots"]);
            assert!(!out.status.success(), "{other}'s password opens {repo}");
        }
    }
    // Nothing at a target's root but the clients' folders.
    let mut at_root: Vec<String> = fs::read_dir(&local)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    at_root.sort();
    assert_eq!(at_root, ["acme", "beta"]);
    // Two repositories, two ids: no pack, index or key in common.
    let files = |name: &str| -> BTreeSet<String> {
        repo_files(open_store(&config, &format!("{name}/local")).as_ref())
            .into_keys()
            .filter(|p| p != "config")
            .collect()
    };
    assert!(files("acme").is_disjoint(&files("beta")));
}

#[test]
fn a_client_limited_to_some_targets_is_written_only_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let toml = format!(
        "{}{}{}{}",
        local_target("a", &a),
        local_target("b", &b),
        client(tmp.path(), "acme", "targets = [\"b\"]"),
        client(tmp.path(), "beta", ""),
    );
    let config = tmp.path().join("targets.toml");
    fs::write(&config, toml).unwrap();
    fs::write(tmp.path().join("src-acme/x"), b"acme's").unwrap();
    fs::write(tmp.path().join("src-beta/y"), b"beta's").unwrap();
    expect_code(&cairn_clients(&config, &[], &["backup", "--init"]), 0);
    assert!(!a.join("acme").exists(), "acme is not to be on `a`");
    assert!(b.join("acme/config").exists());
    for t in [&a, &b] {
        assert!(t.join("beta/config").exists());
    }
    // `status` of acme knows only `b`.
    let out = cairn_clients(&config, &[], &["--json", "--repo", "acme", "status"]);
    expect_code(&out, 0);
    let names: Vec<String> = json(&out)["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["b"]);
}

#[test]
fn three_clients_one_with_a_wrong_password_the_others_complete_and_each_audit_log_is_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let hooks = tmp.path().join("hooks.log");
    let hook = format!(
        "'echo \"$CAIRN_REPOSITORY $CAIRN_RESULT\" >> {}'",
        hooks.display()
    );
    // The file's ping URL reports the whole run once; acme has its own check.
    let (file_ping, file_seen) = ping_server();
    let (acme_ping, acme_seen) = ping_server();
    let mut toml = format!(
        "[notify]\non_success = {hook}\non_failure = {hook}\nping_url = \"{file_ping}\"\n\n{}{}",
        local_target("a", &a),
        local_target("b", &b)
    );
    for (name, _) in CLIENTS {
        let own = if name == "acme" {
            format!("ping_url = \"{acme_ping}\"")
        } else {
            String::new()
        };
        toml.push_str(&client(tmp.path(), name, &own));
        fs::write(
            tmp.path().join(format!("src-{name}/f")),
            format!("{name}'s file"),
        )
        .unwrap();
    }
    let config = tmp.path().join("targets.toml");
    fs::write(&config, toml).unwrap();
    expect_code(&cairn_clients(&config, &[], &["init"]), 0);
    let out = cairn_clients(&config, &["beta"], &["--json", "run"]);
    // The worst of the three: beta's wrong password.
    expect_code(&out, 12);
    let report = json(&out);
    assert_eq!(report["exit_code"], 12);
    let done = each_repository(&report);
    let codes: Vec<(&str, i64)> = done.iter().map(|(n, c, _)| (n.as_str(), *c)).collect();
    assert_eq!(codes, [("acme", 0), ("beta", 12), ("gamma", 0)]);
    for (name, _, r) in &done {
        if name != "beta" {
            assert_eq!(r["result"], "ok", "{name}: {r}");
            assert!(r["snapshot"].is_string(), "{name}: {r}");
        } else {
            assert_eq!(r["failed_step"], "backup", "{r}");
        }
    }
    // One start and one failure for the whole run (a client's success never hides another's
    // failure); acme's own check saw acme's run alone.
    let paths = |seen: &std::sync::Mutex<Vec<String>>| -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap().to_string())
            .collect()
    };
    assert_eq!(
        paths(&file_seen),
        ["/ping-token-5f2d/start", "/ping-token-5f2d/fail"]
    );
    assert_eq!(
        paths(&acme_seen),
        ["/ping-token-5f2d/start", "/ping-token-5f2d"]
    );
    // Each client's hook ran for it alone, and knew which client it was.
    assert_eq!(
        fs::read_to_string(&hooks).unwrap(),
        "acme ok\nbeta failed\ngamma ok\n"
    );
    // In words too, naming the client.
    let out = cairn_clients(&config, &["beta"], &["backup"]);
    expect_code(&out, 12);
    let said = text(&out);
    assert!(
        said.contains("repository `beta`") && said.contains("wrong password"),
        "{said}"
    );
    assert!(said.contains("not done in full: beta (exit 12)"), "{said}");
    for (name, _) in CLIENTS {
        assert_eq!(
            snapshot_ids_with(b.join(name).to_str().unwrap(), password_of(name)).len(),
            usize::from(name != "beta") * 2
        );
    }
    // Each client's audit log holds its own commands only: init, run and backup, each
    // record naming that client.
    let state = tmp.path().join("state");
    for (name, _) in CLIENTS {
        let log = audit_log(&state, name);
        let records: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let commands: BTreeSet<&str> = records
            .iter()
            .map(|r| r["command"].as_str().unwrap())
            .collect();
        assert_eq!(
            commands,
            BTreeSet::from(["init", "run", "backup"]),
            "{name}: {log}"
        );
        for r in &records {
            assert_eq!(r["repository"], name, "{name}'s log: {r}");
        }
    }
}

#[test]
fn repo_names_on_the_command_line_are_checked_and_single_repository_verbs_ask_for_one() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let toml = format!(
        "{}{}{}",
        local_target("a", &a),
        client(tmp.path(), "acme", ""),
        client(tmp.path(), "beta", ""),
    );
    let config = tmp.path().join("targets.toml");
    fs::write(&config, toml).unwrap();
    let out = cairn_clients(&config, &[], &["--repo", "zeta", "snapshots"]);
    expect_code(&out, 2);
    assert!(
        text(&out).contains("no repository named `zeta`") && text(&out).contains("acme, beta"),
        "{}",
        text(&out)
    );
    for verb in [
        &["restore", "latest", "--target", "/tmp/x"][..],
        &["ls", "latest"],
        &["forget", "--keep-last", "1"],
        &["prune"],
        &["key", "list"],
    ] {
        let out = cairn_clients(&config, &[], verb);
        expect_code(&out, 2);
        assert!(
            text(&out).contains("name it with --repo"),
            "{verb:?}: {}",
            text(&out)
        );
    }
    // Nothing was created by any of them.
    assert!(!a.exists());
}

/// A configuration of the single-repository shape keeps its repository at the targets' root
/// and its state folder where it was.
#[test]
fn a_single_repository_file_keeps_its_repository_and_state_where_they_were() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = two_local_targets(tmp.path(), "f", b"first");
    for t in [&a, &b] {
        assert!(t.join("config").exists() && t.join("index").is_dir());
    }
    let before = repo_files(open_store(&config, "a").as_ref());
    let out = cairn(&config, &["--json", "snapshots"]);
    expect_code(&out, 0);
    // Not wrapped: one repository, one document, as before.
    assert!(json(&out)["repositories"].is_null());
    assert_eq!(repo_files(open_store(&config, "a").as_ref()), before);
    // The state folder's name is the one every release gave it: name and configuration path.
    let state: Vec<PathBuf> = fs::read_dir(tmp.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    let key = {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(
            std::path::absolute(&config)
                .unwrap()
                .to_string_lossy()
                .as_bytes(),
        ))
    };
    assert!(
        state
            .iter()
            .any(|p| p.file_name().unwrap().to_string_lossy() == format!("test-{}", &key[..12])),
        "{state:?}"
    );
}

/// A restic repository of another password put on one of three targets: once this machine
/// knows its repository, that target is left out (named, nothing written there) and the others
/// are backed up; with nothing remembered, the command is refused as before.
#[test]
fn a_foreign_repository_on_one_target_is_left_out_once_this_machine_knows_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"first").unwrap();
    let t: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| tmp.path().join(n)).collect();
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!(
            "{}{}{}",
            local_target("a", &t[0]),
            local_target("b", &t[1]),
            local_target("c", &t[2])
        ),
    );
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    // `c` now holds another repository.
    fs::remove_dir_all(&t[2]).unwrap();
    let out = restic_cmd(t[2].to_str().unwrap(), &["init"])
        .env("RESTIC_PASSWORD", "someone else's")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let before = tree_digest(&t[2]);
    fs::write(src.join("g"), b"second").unwrap();
    let out = cairn(&config, &["--json", "backup"]);
    expect_code(&out, 3);
    let r = json(&out);
    let c = &r["targets"][2];
    assert_eq!(c["state"], "foreign", "{r}");
    assert!(
        c["detail"].as_str().unwrap().contains("another repository"),
        "{r}"
    );
    for i in 0..2 {
        assert_eq!(r["targets"][i]["state"], "complete", "{r}");
        assert_eq!(snapshot_ids(t[i].to_str().unwrap()).len(), 2);
    }
    assert_eq!(tree_digest(&t[2]), before, "nothing was written to `c`");
    // Forgetting what this machine knew: refused, as before, naming both.
    fs::remove_dir_all(tmp.path().join("state")).unwrap();
    let out = cairn(&config, &["backup"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out).contains("holds a different repository"),
        "{}",
        text(&out)
    );
    // (The refused command took its lock there and released it: no file is left.)
    let files = |d: &std::collections::BTreeMap<PathBuf, String>| {
        d.iter()
            .filter(|(_, v)| v.starts_with("file:"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(files(&tree_digest(&t[2])), files(&before));
}

/// Every file below `dir` (none when it does not exist).
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Data residency: a target without `region` under a policy, a client whose own
/// `allowed_regions` excludes one of its targets, and an S3 target whose `region` contradicts
/// the region its settings name are each a configuration error naming line and key, and
/// nothing is written on any target.
#[test]
fn targets_outside_the_allowed_regions_are_configuration_errors_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let p = unique("residency");
    let s3_dir = PathBuf::from(format!(
        "{}/s3/data/{}/{p}",
        env("TS_RUN"),
        env("S3_BUCKET")
    ));
    let with_region = |toml: String, region: &str| {
        toml.replacen("\n\n", &format!("\nregion = \"{region}\"\n\n"), 1)
    };
    let good = format!(
        "[policy]\nallowed_regions = [\"eu\"]\n\n{}{}{}{}{}",
        with_region(local_target("a", &a), "nl"),
        with_region(local_target("b", &b), "de"),
        s3_target("s3", &p).replacen(
            &format!("region = \"{}\"", env("S3_REGION")),
            &format!("region = \"nl\"\ns3_region = \"{}\"", "nl-ams"),
            1
        ),
        client(
            tmp.path(),
            "acme",
            "allowed_regions = [\"nl\"]\ntargets = [\"a\", \"s3\"]"
        ),
        client(tmp.path(), "beta", ""),
    );
    let config = tmp.path().join("targets.toml");
    let bad = |toml: &str, line: &str, words: &[&str]| {
        fs::write(&config, toml).unwrap();
        for args in [&["init"][..], &["backup", "--init"], &["status"]] {
            let out = cairn_clients(&config, &[], args);
            expect_code(&out, 2);
            let said = text(&out);
            assert!(said.contains(line), "{args:?}: {said}");
            for w in words {
                assert!(said.contains(w), "{args:?}: {said}");
            }
        }
        for dir in [&a, &b, &s3_dir] {
            assert!(
                listing(dir).is_empty(),
                "written to {}: {:?}",
                dir.display(),
                listing(dir)
            );
        }
    };
    // A target without `region` while a policy is set.
    let no_region = good.replacen("region = \"de\"\n", "", 1);
    bad(
        &no_region,
        "line 10",
        &["target `b`", "key `region` is missing"],
    );
    // A client's own list excludes one of its targets.
    let excluded = good.replacen("targets = [\"a\", \"s3\"]", "targets = [\"a\", \"b\"]", 1);
    bad(
        &excluded,
        "allowed_regions",
        &["`acme`", "target `b`", "\"de\""],
    );
    // An S3 target labelled nl whose S3 region is in the US.
    let contradicted = good.replacen("s3_region = \"nl-ams\"", "s3_region = \"us-east-1\"", 1);
    bad(
        &contradicted,
        "key `region`",
        &["target `s3`", "contradicts", "us-east-1"],
    );
    // Within the policy, `status --json` lists each client's targets with their regions.
    fs::write(&config, &good).unwrap();
    expect_code(&cairn_clients(&config, &[], &["init"]), 0);
    let out = cairn_clients(&config, &[], &["--json", "status"]);
    let report = json(&out);
    let regions: Vec<(String, Vec<(String, String)>)> = each_repository(&report)
        .into_iter()
        .map(|(name, _, r)| {
            let targets = r["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap().to_string(),
                        t["region"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (name, targets)
        })
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        regions,
        [
            ("acme".to_string(), pairs(&[("a", "nl"), ("s3", "nl")])),
            (
                "beta".to_string(),
                pairs(&[("a", "nl"), ("b", "de"), ("s3", "nl")])
            ),
        ]
    );
}
