//! Erasure that reaches every copy (issue 27): a whole client off every target, finished by
//! any later command of the file when a target was away, again on a copy that comes back;
//! purged data gone from a copy that comes back after compaction; forged certificates erase
//! nothing; contract-end expiry; kill -9 at each removal. Real servers (SFTP, Azurite) and
//! stock restic as the oracle.

mod common;

use std::{collections::BTreeMap, fs, path::Path};

use common::*;

/// A `[[repository]]` section backing up `tmp/src-NAME` (which gets `bytes` of its own).
fn client(tmp: &Path, name: &str, seed: u64, extra: &str) -> String {
    let src = tmp.join(format!("src-{name}"));
    fs::create_dir_all(src.join("hr/j.jansen")).unwrap();
    fs::write(src.join("own.bin"), pseudo_random(seed, 300_000)).unwrap();
    fs::write(
        src.join("hr/j.jansen/cv.pdf"),
        pseudo_random(seed + 1, 90_000),
    )
    .unwrap();
    format!(
        "[[repository]]\nname = \"{name}\"\npassword = \"env:CAIRN_PASSWORD\"\nsources = [\"{}\"]\n{extra}\n",
        src.display()
    )
}

/// Every file under `dir`, relative, with its SHA-256.
fn files_under(dir: &Path) -> BTreeMap<String, String> {
    tree_digest(dir)
        .into_iter()
        .filter(|(_, h)| h != "dir")
        .map(|(p, h)| (p.to_string_lossy().into_owned(), h))
        .collect()
}

/// Every file under `dir`, relative (none when it does not exist).
fn names_under(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    files_under(dir).into_keys().collect()
}

/// What an erased client's folder may keep: its certificate's copy, nothing else.
fn only_certificate(dir: &Path) {
    let left = names_under(dir);
    assert!(
        left.iter().all(|p| p.starts_with(".cairn-erasures/")),
        "{}: {left:?}",
        dir.display()
    );
    assert_eq!(left.len(), 1, "{}: {left:?}", dir.display());
    let out = restic(&dir.display().to_string(), &["snapshots"]);
    assert!(
        !out.status.success(),
        "restic still opens {}: {}",
        dir.display(),
        text(&out)
    );
}

fn certificates(config: &Path) -> Vec<serde_json::Value> {
    let out = cairn(config, &["--json", "erasures"]);
    expect_code(&out, 0);
    json(&out)["certificates"].as_array().unwrap().clone()
}

fn only(certs: &[serde_json::Value], kind: &str) -> serde_json::Value {
    let of: Vec<&serde_json::Value> = certs.iter().filter(|c| c["kind"] == kind).collect();
    assert_eq!(of.len(), 1, "{certs:?}");
    of[0].clone()
}

/// `tmp/targets.toml`: local targets `a` and `b`, the file-level `head`, and the clients acme
/// and beta (their files seeded from `seed`), initialised and backed up; returns (config, a, b).
fn two_clients(
    tmp: &Path,
    head: &str,
    seed: u64,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    let config = tmp.join("targets.toml");
    fs::write(
        &config,
        format!(
            "{}{}{head}{}{}",
            local_target("a", &a),
            local_target("b", &b),
            client(tmp, "acme", seed, ""),
            client(tmp, "beta", seed + 10, ""),
        ),
    )
    .unwrap();
    expect_code(&cairn(&config, &["init"]), 0);
    expect_code(&cairn(&config, &["backup"]), 0);
    (config, a, b)
}

#[test]
fn a_client_erased_while_sftp_is_down_is_erased_there_by_the_next_backup_of_another() {
    let tmp = tempfile::tempdir().unwrap();
    let p = unique("erase");
    let mut sshd = PrivateSshd::start(tmp.path(), None);
    let local = tmp.path().join("local");
    let (sftp, sftp_dir) = sshd.sftp_target("sftp", &p);
    let config = tmp.path().join("targets.toml");
    fs::write(
        &config,
        format!(
            "{}{sftp}{}{}{}",
            local_target("local", &local),
            azblob_target("azure", &p),
            client(tmp.path(), "acme", 1, ""),
            client(tmp.path(), "beta", 2, ""),
        ),
    )
    .unwrap();
    expect_code(&cairn(&config, &["init"]), 0);
    expect_code(&cairn(&config, &["backup"]), 0);
    let beta_on = |t: &str| repo_files(open_store(&config, &format!("beta/{t}")).as_ref());
    let beta_before: Vec<_> = ["local", "sftp", "azure"].map(beta_on).into();

    // A dry run changes nothing and names every target with its size.
    let out = cairn(
        &config,
        &[
            "--repo", "acme", "--json", "erase", "--reason", "request", "-n",
        ],
    );
    expect_code(&out, 0);
    let plan = json(&out);
    assert_eq!(plan["targets"].as_array().unwrap().len(), 3, "{plan}");
    assert!(plan["bytes"].as_u64().unwrap() > 300_000, "{plan}");
    assert!(local.join("acme/config").exists());
    // Without a terminal and without --yes, nothing is erased.
    let out = cairn(&config, &["--repo", "acme", "erase", "--reason", "request"]);
    expect_code(&out, 2);
    assert!(text(&out).contains("--yes"), "{}", text(&out));
    assert!(local.join("acme/config").exists());

    sshd.kill();
    let out = cairn(
        &config,
        &[
            "--repo",
            "acme",
            "--operator",
            "dpo-desk",
            "--json",
            "erase",
            "--reason",
            "request of the client, 2026-12-01",
            "--yes",
        ],
    );
    expect_code(&out, 3);
    let r = json(&out);
    let state_of = |r: &serde_json::Value, t: &str| {
        r["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == t)
            .unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state_of(&r, "local"), "erased", "{r}");
    assert_eq!(state_of(&r, "azure"), "erased", "{r}");
    assert_eq!(state_of(&r, "sftp"), "pending", "{r}");
    only_certificate(&local.join("acme"));
    let azure_acme = open_store(&config, "acme/azure");
    for dir in ["keys", "snapshots", "index", "data", ".cairn-audit"] {
        assert!(azure_acme.list(dir).unwrap().is_empty(), "azure {dir}");
    }
    assert!(azure_acme.stat("config").unwrap().is_none());
    // The other client is byte for byte untouched where the erasure ran.
    assert_eq!(beta_on("local"), beta_before[0]);
    assert_eq!(beta_on("azure"), beta_before[2]);
    // No command works on an erased client again.
    let out = cairn(&config, &["--repo", "acme", "backup"]);
    expect_code(&out, 2);
    assert!(text(&out).contains("was erased"), "{}", text(&out));

    sshd.restart();
    let out = cairn(&config, &["--repo", "beta", "backup"]);
    expect_code(&out, 0);
    assert!(
        text(&out).contains("erasure of `acme`: erased on `sftp`"),
        "{}",
        text(&out)
    );
    only_certificate(&Path::new(&sftp_dir).join("acme"));
    assert_eq!(beta_on("sftp").get("config"), beta_before[1].get("config"));
    for (at, before) in ["local", "sftp", "azure"].iter().zip(&beta_before) {
        let now = beta_on(at);
        assert!(
            before.iter().all(|(p, h)| now.get(p) == Some(h)),
            "{at}: a file of beta changed"
        );
    }
    restic_check(&local.join("beta").display().to_string());
    restic_check(&format!("{sftp_dir}/beta"));

    let cert = only(&certificates(&config), "repository");
    assert_eq!(cert["repository"], "acme");
    assert_eq!(cert["operator"], "dpo-desk");
    assert_eq!(cert["reason"], "request of the client, 2026-12-01");
    assert!(cert["final"].is_string(), "{cert}");
    for t in cert["targets"].as_array().unwrap() {
        assert!(t["applied"].is_string(), "{cert}");
        assert!(t["files"].as_u64().unwrap() >= 5, "{cert}");
    }
    // Every copy of the certificate on the targets verifies.
    let out = cairn(&config, &["--json", "erasures", "--copies"]);
    expect_code(&out, 0);
    let copies = json(&out)["copies"].as_array().unwrap().clone();
    assert_eq!(copies.len(), 3, "{copies:?}");
    assert!(
        copies.iter().all(|c| c["verdict"] == "sealed"),
        "{copies:?}"
    );
}

#[test]
fn a_forged_certificate_erases_nothing_and_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = two_clients(tmp.path(), "", 3);
    // A genuine certificate from another configuration (another machine's key), and a planted
    // one naming beta, in beta's folder and at the root.
    let other = tmp.path().join("other");
    fs::create_dir_all(&other).unwrap();
    let other_cfg = other.join("targets.toml");
    let oa = other.join("a");
    fs::write(
        &other_cfg,
        format!(
            "{}{}",
            local_target("a", &oa),
            client(&other, "beta", 5, "")
        ),
    )
    .unwrap();
    expect_code(&cairn(&other_cfg, &["init"]), 0);
    expect_code(
        &cairn(
            &other_cfg,
            &["--repo", "beta", "erase", "--reason", "x", "--yes"],
        ),
        0,
    );
    // Every client of that file is erased: its certificates are still listed.
    let out = cairn(&other_cfg, &["--json", "erasures"]);
    expect_code(&out, 0);
    assert_eq!(json(&out)["certificates"].as_array().map(Vec::len), Some(1));
    let genuine_elsewhere = fs::read_dir(oa.join("beta/.cairn-erasures"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let beta_on_a = || repo_files(open_store(&config, "beta/a").as_ref());
    let before = beta_on_a();
    for dir in [a.join("beta/.cairn-erasures"), a.join(".cairn-erasures")] {
        fs::create_dir_all(&dir).unwrap();
        fs::copy(&genuine_elsewhere, dir.join("0123456789abcdef")).unwrap();
        fs::write(
            dir.join("fedcba9876543210"),
            format!(
                "{{\"certificate\":{:?},\"hmac\":\"{}\"}}",
                "{\"id\":\"fedcba9876543210\",\"kind\":\"repository\",\"repository\":\"beta\"}",
                "00".repeat(32)
            ),
        )
        .unwrap();
    }
    let out = cairn(&config, &["backup"]);
    expect_code(&out, 0);
    let after = beta_on_a();
    assert!(
        before.iter().all(|(p, h)| after.get(p) == Some(h)),
        "a file of beta changed or went"
    );
    restic_check(&a.join("beta").display().to_string());
    restic_check(&b.join("beta").display().to_string());
    assert!(certificates(&config).is_empty());
    let out = cairn(&config, &["--json", "erasures", "--copies"]);
    expect_code(&out, 5);
    let copies = json(&out)["copies"].as_array().unwrap().clone();
    let forged: Vec<&serde_json::Value> = copies
        .iter()
        .filter(|c| c["verdict"] == "not proven")
        .collect();
    assert_eq!(forged.len(), 2, "{copies:?}");
    assert!(
        forged.iter().all(|c| c["path"]
            .as_str()
            .unwrap()
            .starts_with("beta/.cairn-erasures/")),
        "{copies:?}"
    );
}

#[test]
fn a_copy_put_back_after_an_erase_or_a_purge_brings_nothing_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = two_clients(
        tmp.path(),
        "[retention]\ndeletion_records_for = \"0d\"\n\n",
        6,
    );
    fs::write(
        tmp.path().join("src-beta/hr/j.jansen/letter.txt"),
        pseudo_random(8, 40_000),
    )
    .unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    // The rotated disk: b copied aside before anything is erased.
    let aside = tmp.path().join("b-aside");
    copy_tree(&b, &aside);

    expect_code(
        &cairn(
            &config,
            &["--repo", "acme", "erase", "--reason", "contract", "--yes"],
        ),
        0,
    );
    let out = cairn(
        &config,
        &[
            "--repo",
            "beta",
            "--json",
            "purge",
            "--reason",
            "art. 17",
            "/**/j.jansen",
        ],
    );
    expect_code(&out, 0);
    let purge = json(&out);
    assert_eq!(purge["snapshots"].as_array().unwrap().len(), 2, "{purge}");
    // Gone from the live data too, so later backups hold none of it.
    fs::remove_dir_all(tmp.path().join("src-beta/hr/j.jansen")).unwrap();
    // A backup compacts the purge's records (deletion_records_for = 0d) into a tombstone.
    expect_code(&cairn(&config, &["--repo", "beta", "backup"]), 0);
    assert!(
        names_under(&a.join("beta/.cairn-deletions")).len() <= 2,
        "{:?}",
        names_under(&a.join("beta/.cairn-deletions"))
    );
    let cert = only(&certificates(&config), "purge");
    assert!(cert["final"].is_string(), "{cert}");
    let purged: Vec<String> = cert["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert!(purged.iter().any(|f| f.starts_with("data/")), "{cert}");

    // The old copy comes back in place of b.
    fs::remove_dir_all(&b).unwrap();
    copy_tree(&aside, &b);
    assert!(b.join("acme/config").exists());
    let out = cairn(&config, &["--repo", "beta", "backup"]);
    expect_code(&out, 0);
    assert!(
        text(&out).contains("erasure of `acme`: erased again on `b`"),
        "{}",
        text(&out)
    );
    only_certificate(&b.join("acme"));
    only_certificate(&a.join("acme"));
    let cert = only(&certificates(&config), "repository");
    let returned = cert["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "b")
        .unwrap()["returned"]
        .clone();
    assert_eq!(returned.as_array().map(Vec::len), Some(1), "{cert}");
    // Nothing the purge removed is back on b: no snapshot, index or pack, and restic finds
    // none of the purged files.
    for f in &purged {
        assert!(!b.join("beta").join(f).exists(), "{f} is back on b");
    }
    for repo in [a.join("beta"), b.join("beta")] {
        let repo = repo.display().to_string();
        restic_check(&repo);
        for pattern in ["cv.pdf", "letter.txt"] {
            let out = restic(&repo, &["find", "--json", pattern]);
            assert!(out.status.success(), "{}", text(&out));
            let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(
                found.as_array().is_none_or(Vec::is_empty),
                "{repo}: {pattern}: {found}"
            );
        }
    }
}

#[test]
fn contract_end_erases_an_expired_client_warns_of_a_near_one_and_refuses_a_long_keep() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let config = tmp.path().join("targets.toml");
    let prom = tmp.path().join("cairn.prom");
    let soon = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .checked_add(jiff::Span::new().days(5))
        .unwrap();
    let head = format!(
        "{}{}[metrics]\npath = \"{}\"\n\n",
        local_target("a", &a),
        local_target("b", &b),
        prom.display()
    );
    let clients = format!(
        "{}{}",
        client(
            tmp.path(),
            "acme",
            9,
            "contract_end = \"2020-01-31\"\nkeep_after_end = \"1y\""
        ),
        client(
            tmp.path(),
            "beta",
            10,
            &format!("contract_end = \"{soon}\"\nkeep_after_end = \"1d\"")
        ),
    );
    fs::write(&config, format!("{head}{clients}")).unwrap();
    expect_code(&cairn(&config, &["init"]), 0);
    expect_code(&cairn(&config, &["--repo", "beta", "backup"]), 0);
    // beta's erasure is 6 days away: status says so, and the metrics hold the day.
    let out = cairn(&config, &["--repo", "beta", "status"]);
    let warned = text(&out);
    assert!(
        warned.contains("the contract of `beta` ends") && warned.contains("in 6 day(s)"),
        "{warned}"
    );
    let beta_prom = fs::read_to_string(tmp.path().join("cairn-beta.prom")).unwrap();
    assert!(
        beta_prom.contains("cairn_contract_erase_timestamp_seconds{repository=\"beta\"}"),
        "{beta_prom}"
    );

    let out = cairn(&config, &["--json", "run"]);
    let doc = json(&out);
    expect_code(&out, 0);
    let runs = doc["repositories"].as_array().unwrap();
    let acme = &runs[0]["report"];
    assert_eq!(acme["steps"][1]["step"], "erase", "{acme}");
    assert!(
        acme["steps"][1]["summary"]
            .as_str()
            .unwrap()
            .contains("contract ended 2020-01-31"),
        "{acme}"
    );
    let beta = &runs[1]["report"];
    assert!(
        beta["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("the contract of `beta` ends")),
        "{beta}"
    );
    only_certificate(&a.join("acme"));
    only_certificate(&b.join("acme"));
    assert!(b.join("beta/config").exists());
    let cert = only(&certificates(&config), "repository");
    assert!(
        cert["reason"]
            .as_str()
            .unwrap()
            .starts_with("contract end 2020-01-31"),
        "{cert}"
    );
    assert!(!tmp.path().join("cairn-acme.prom").exists());

    // Longer than [policy] max_keep_after_end (3 years unless set): refused, line and key.
    let long = clients.replace("keep_after_end = \"1d\"", "keep_after_end = \"5y\"");
    fs::write(&config, format!("{head}{long}")).unwrap();
    let out = cairn(&config, &["status"]);
    expect_code(&out, 2);
    let e = text(&out);
    assert!(
        e.contains("key `keep_after_end`")
            && e.contains("max_keep_after_end")
            && e.contains("line "),
        "{e}"
    );
}

#[test]
fn an_erase_killed_at_any_removal_is_finished_by_the_next_command() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, a, b) = two_clients(tmp.path(), "", 11);
    let state = tmp.path().join("state");
    let template = tmp.path().join("template");
    fs::create_dir_all(&template).unwrap();
    copy_tree(&a, &template.join("a"));
    copy_tree(&b, &template.join("b"));
    copy_tree(&state, &template.join("state"));
    // Removals the crash hook counts: restic's own files.
    let acme_files = names_under(&a.join("acme"))
        .iter()
        .filter(|p| {
            *p == "config"
                || ["keys/", "snapshots/", "index/", "data/"]
                    .iter()
                    .any(|d| p.starts_with(d))
        })
        .count();
    let mut n = 1;
    let mut kills = 0;
    loop {
        for (from, to) in [("a", &a), ("b", &b), ("state", &state)] {
            fs::remove_dir_all(to).unwrap();
            copy_tree(&template.join(from), to);
        }
        let (hook, at) = if n <= acme_files {
            ("CAIRN_TEST_HALT_AFTER_DELETES", n)
        } else {
            // The certificate's copy, written last.
            ("CAIRN_TEST_HALT_AFTER_WRITES", 1)
        };
        let killed = kill_at(
            &config,
            &["--repo", "acme", "erase", "--reason", "kill test", "--yes"],
            hook,
            at,
            2,
        );
        if killed {
            kills += 1;
        }
        // The other client is whole, and the next command (a backup of it) finishes the job.
        for t in [&a, &b] {
            restic_check(&t.join("beta").display().to_string());
        }
        let out = cairn(&config, &["--repo", "beta", "backup"]);
        expect_code(&out, 0);
        only_certificate(&a.join("acme"));
        only_certificate(&b.join("acme"));
        let cert = only(&certificates(&config), "repository");
        assert!(
            cert["final"].is_string(),
            "after a kill at {hook}={at}: {cert}"
        );
        if n > acme_files {
            break;
        }
        n += 1;
    }
    assert!(kills >= acme_files, "only {kills} of the runs were killed");
}

#[test]
fn a_snapshot_from_before_a_purge_that_comes_back_with_a_disk_is_purged_again_by_run() {
    purged_again_by("run");
}

#[test]
fn a_snapshot_from_before_a_purge_that_comes_back_with_a_disk_is_purged_again_by_backup() {
    purged_again_by("backup");
}

/// A USB disk gets a backup alone elsewhere holding a person's file; the office purges it while
/// the disk is away; the disk comes back and `verb` runs at the office.
fn purged_again_by(verb: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let person = src.join("hr/j.jansen");
    fs::create_dir_all(&person).unwrap();
    fs::write(src.join("report.bin"), pseudo_random(20, 200_000)).unwrap();
    let cv = pseudo_random(21, 120_000);
    fs::write(person.join("cv.pdf"), &cv).unwrap();
    let a = tmp.path().join("a");
    let mut usb = Usb::new(tmp.path().join("mnt/usb"));
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{}", local_target("a", &a), usb.target("usb")),
    );
    usb.plug();
    expect_code(&cairn(&config, &["init"]), 0);
    expect_code(&cairn(&config, &["backup"]), 0);

    // Before the request, the disk gets a backup alone elsewhere, holding the person's file.
    let elsewhere = tmp.path().join("elsewhere");
    let solo_src = elsewhere.join("src");
    fs::create_dir_all(solo_src.join("hr/j.jansen")).unwrap();
    fs::write(solo_src.join("hr/j.jansen/cv.pdf"), &cv).unwrap();
    fs::write(solo_src.join("solo.bin"), pseudo_random(22, 50_000)).unwrap();
    let solo = write_config(&elsewhere, &[&solo_src], &usb.target("usb"));
    expect_code(&cairn(&solo, &["backup"]), 0);
    usb.unplug();

    // The request: purged at the office while the disk is away, and gone from the live data.
    let out = cairn(
        &config,
        &["--json", "purge", "--reason", "art. 17", "/**/j.jansen"],
    );
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", text(&out));
    assert_eq!(json(&out)["snapshots"].as_array().unwrap().len(), 1);
    fs::remove_dir_all(&person).unwrap();
    let a_repo = a.display().to_string();
    let found = |repo: &str, pattern: &str| -> usize {
        let out = restic(repo, &["find", "--json", pattern]);
        assert!(out.status.success(), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array().map_or(0, Vec::len)
    };
    assert_eq!(found(&a_repo, "cv.pdf"), 0);

    // The disk is back; the nightly run catches it up, and the snapshot it got alone, older
    // than the purge, would bring the person's file to the office with its data.
    usb.plug();
    let out = cairn(&config, &["--json", verb]);
    let report = json(&out);
    for repo in [a_repo.clone(), usb.repo()] {
        assert_eq!(found(&repo, "cv.pdf"), 0, "{repo}: {report}");
        assert_eq!(found(&repo, "solo.bin"), 1, "{repo}");
        assert_eq!(found(&repo, "report.bin"), 2, "{repo}");
        restic_check(&repo);
    }
    expect_code(&out, 0);
    let certs = certificates(&config);
    assert_eq!(certs.len(), 2, "{certs:?}");
    assert!(certs.iter().all(|c| c["final"].is_string()), "{certs:?}");
    if verb == "backup" {
        assert_eq!(
            report["purged_again"][0]["snapshots"]
                .as_array()
                .map(Vec::len),
            Some(1),
            "{report}"
        );
        let again = json(&cairn(&config, &["--json", "backup"]));
        assert!(again.get("purged_again").is_none(), "{again}");
        return;
    }
    let step = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "purge")
        .unwrap_or_else(|| panic!("{report}"))
        .clone();
    assert!(
        step["summary"]
            .as_str()
            .unwrap()
            .starts_with("purged again: 1 snapshot"),
        "{step}"
    );
    // A second run finds nothing more to purge.
    let out = cairn(&config, &["--json", "run"]);
    expect_code(&out, 0);
    assert!(
        json(&out)["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["summary"] == "nothing from before a purge came back"),
        "{}",
        text(&out)
    );
}
