//! The admin at the keyboard: snapshot selection by time and filters, `find`, `diff` and `dump`,
//! on a repository with several snapshots on a local folder and the SFTP server.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Read,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
};

use common::*;

/// Three nights of a small file server: known additions, removals, changes and a mode change.
struct History {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    src: PathBuf,
    /// Snapshot ids by night (1, 2, 3).
    ids: Vec<String>,
    big: Vec<u8>,
}

fn history() -> History {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("srv");
    fs::create_dir_all(src.join("clients/acme")).unwrap();
    fs::create_dir_all(src.join("clients/globex")).unwrap();
    let big = pseudo_random(7, 3 << 20);
    fs::write(src.join("clients/acme/Contract-2026.PDF"), b"contract v1").unwrap();
    fs::write(src.join("clients/acme/notes.txt"), b"call back").unwrap();
    fs::write(src.join("clients/globex/old-offer.pdf"), b"offer").unwrap();
    fs::write(src.join("clients/globex/scan.bin"), &big).unwrap();
    let (sftp, _) = sftp_target("dc", &unique("admin"));
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{sftp}", local_target("disk", &tmp.path().join("disk"))),
    );
    let backup = |time: &str, extra: &[&str]| {
        let mut args = vec!["--json", "backup", "--time", time];
        args.extend_from_slice(extra);
        let o = cairn(&config, &args);
        expect_code(&o, 0);
        json(&o)["snapshot"].as_str().unwrap().to_string()
    };
    expect_code(&cairn(&config, &["init"]), 0);
    let n1 = backup("2026-11-16T22:00:00Z", &[]);
    // Night 2: a file added, one removed, one changed, one only chmod'ed.
    fs::write(
        src.join("clients/acme/Contract-2026.PDF"),
        b"contract v2, signed",
    )
    .unwrap();
    fs::write(src.join("clients/acme/invoice.pdf"), b"invoice").unwrap();
    fs::remove_file(src.join("clients/globex/old-offer.pdf")).unwrap();
    fs::set_permissions(
        src.join("clients/acme/notes.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let n2 = backup("2026-11-17T22:00:00Z", &[]);
    // Night 3, from another host's point of view (a second machine backing up the same tree).
    let n3 = backup(
        "2026-11-18T22:00:00Z",
        &["--host", "mail-01", "--tag", "adhoc"],
    );
    History {
        _tmp: tmp,
        config,
        src,
        ids: vec![n1, n2, n3],
        big,
    }
}

#[test]
fn find_diff_dump_and_time_selection_over_three_nights() {
    let h = history();
    let c = &h.config;
    let src = h.src.display().to_string();

    // find: across snapshots, newest first; case-insensitive; restricted by time and count.
    let found = |args: &[&str]| -> Vec<(String, String)> {
        let mut a = vec!["--json", "find"];
        a.extend_from_slice(args);
        let o = cairn(c, &a);
        expect_code(&o, 0);
        json(&o)["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["snapshot"].as_str().unwrap()[..8].to_string(),
                    m["path"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let short = |n: usize| h.ids[n][..8].to_string();
    let pdf = |name: &str| format!("{src}/clients/{name}");
    assert_eq!(
        found(&["*.pdf"]),
        [
            (short(2), pdf("acme/invoice.pdf")),
            (short(1), pdf("acme/invoice.pdf")),
            (short(0), pdf("globex/old-offer.pdf")),
        ]
    );
    let all_pdfs = found(&["-i", "*.pdf"]);
    assert_eq!(all_pdfs.len(), 6, "{all_pdfs:?}");
    assert_eq!(all_pdfs[0], (short(2), pdf("acme/Contract-2026.PDF")));
    assert_eq!(
        found(&["old-offer.pdf", "--snapshot", "@2026-11-16"]),
        [(short(0), pdf("globex/old-offer.pdf"))]
    );
    assert_eq!(found(&["old-offer.pdf", "--last", "2"]), []);
    assert_eq!(
        found(&[&format!("{src}/clients/*/notes.txt"), "--host", "mail-01"]),
        [(short(2), pdf("acme/notes.txt"))]
    );

    // Time selection at its boundaries: exactly at a snapshot's time, just before, a day.
    let ls_snapshot = |sel: &str| -> serde_json::Value {
        let d = cairn(c, &["--json", "diff", sel, sel]);
        expect_code(&d, 0);
        json(&d)["from"].clone()
    };
    assert_eq!(ls_snapshot("@2026-11-17T22:00:00Z"), h.ids[1].as_str());
    assert_eq!(ls_snapshot("@2026-11-17T21:59:59Z"), h.ids[0].as_str());
    assert_eq!(
        ls_snapshot("@2026-11-17"),
        h.ids[1].as_str(),
        "a day means its end"
    );
    let early = cairn(c, &["ls", "@2026-11-16T21:59:59Z"]);
    expect_code(&early, 1);
    let err = String::from_utf8_lossy(&early.stderr);
    assert!(
        err.contains("no snapshot at or before") && err.contains(&h.ids[0][..8]),
        "{err}"
    );
    // `latest` with a filter.
    let o = cairn(
        c,
        &["--json", "diff", "latest", "latest", "--host", "vm-none"],
    );
    expect_code(&o, 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no snapshot with host vm-none"));
    let o = cairn(c, &["--json", "diff", "latest", "latest", "--tag", "adhoc"]);
    assert_eq!(json(&o)["from"], h.ids[2].as_str());

    // diff: the known changes, and nothing else (folders' own times do not count).
    let o = cairn(c, &["--json", "diff", &h.ids[0][..8], &h.ids[1][..8]]);
    expect_code(&o, 0);
    let d = json(&o);
    let changes: BTreeMap<String, String> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = [
        (pdf("acme/invoice.pdf"), "added"),
        (pdf("globex/old-offer.pdf"), "removed"),
        (pdf("acme/Contract-2026.PDF"), "modified"),
        (pdf("acme/notes.txt"), "metadata"),
    ]
    .into_iter()
    .map(|(p, c)| (p, c.to_string()))
    .collect();
    assert_eq!(changes, expected, "{d:#}");
    assert_eq!(
        (
            d["added"].as_u64(),
            d["removed"].as_u64(),
            d["modified"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let text = cairn(c, &["diff", &h.ids[0][..8], &h.ids[1][..8]]);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(
        out.contains(&format!("+    {}", pdf("acme/invoice.pdf"))),
        "{out}"
    );
    assert!(
        out.contains(&format!("U    {}", pdf("acme/notes.txt"))),
        "{out}"
    );
    // A path in both: only what is below it.
    let o = cairn(
        c,
        &[
            "--json",
            "diff",
            &format!("{}:{src}/clients/globex", &h.ids[0][..8]),
            &format!("{}:{src}/clients/globex", &h.ids[1][..8]),
        ],
    );
    assert_eq!(json(&o)["changes"].as_array().unwrap().len(), 1);

    // dump: a file byte-identical (a 3 MiB file, several blobs), from the SFTP target alone;
    // a folder as a tar stream with every entry and its content.
    let o = cairn(
        c,
        &[
            "dump",
            "--from",
            "dc",
            &format!("latest:{src}/clients/globex/scan.bin"),
        ],
    );
    expect_code(&o, 0);
    assert!(
        o.stdout == h.big,
        "dumped file differs ({} bytes)",
        o.stdout.len()
    );
    let o = cairn(c, &["dump", &format!("@2026-11-16:{src}/clients")]);
    expect_code(&o, 0);
    let mut archive = tar::Archive::new(o.stdout.as_slice());
    let mut entries = BTreeMap::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        entries.insert(path, body);
    }
    let names: BTreeSet<&str> = entries.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "clients/acme",
            "clients/acme/Contract-2026.PDF",
            "clients/acme/notes.txt",
            "clients/globex",
            "clients/globex/old-offer.pdf",
            "clients/globex/scan.bin",
        ])
    );
    assert_eq!(entries["clients/acme/Contract-2026.PDF"], b"contract v1");
    assert!(entries["clients/globex/scan.bin"] == h.big);
    let o = cairn(c, &["dump", &format!("latest:{src}/clients/none")]);
    expect_code(&o, 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds no"));
}

/// Every file below `root`, relative, with its content.
fn files_below(root: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    tree_digest(root)
        .into_keys()
        .filter(|p| root.join(p).is_file())
        .map(|p| (p.display().to_string(), fs::read(root.join(&p)).unwrap()))
        .collect()
}

#[test]
fn selective_restore_dry_run_verify_and_overwrite_modes() {
    let h = history();
    let c = &h.config;
    let tmp = tempfile::tempdir().unwrap();
    let clients = format!("latest:{}/clients", h.src.display());
    let dest = |name: &str| tmp.path().join(name);
    let restore = |d: &str, extra: &[&str]| {
        let target = dest(d);
        let mut args = vec![
            "--json",
            "restore",
            clients.as_str(),
            "--target",
            target.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        cairn(c, &args)
    };

    // --include: exactly the matching files (and the folders holding them).
    let o = restore("pdfs", &["--include", "*.pdf", "--include", "*.PDF"]);
    expect_code(&o, 0);
    let got: BTreeSet<String> = files_below(&dest("pdfs")).into_keys().collect();
    assert_eq!(
        got,
        BTreeSet::from([
            "acme/Contract-2026.PDF".to_string(),
            "acme/invoice.pdf".to_string()
        ])
    );
    assert!(
        !dest("pdfs/globex").exists(),
        "a folder with nothing included is not made"
    );
    // --exclude: a folder with all it holds.
    let o = restore("no-globex", &["--exclude", "globex"]);
    expect_code(&o, 0);
    let got: BTreeSet<String> = files_below(&dest("no-globex")).into_keys().collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|p| p.starts_with("acme/")));

    // --dry-run: the totals, and nothing written (not even the destination folder).
    let o = restore("dry", &["--dry-run", "--exclude", "scan.bin"]);
    expect_code(&o, 0);
    let r = json(&o);
    assert_eq!(
        (r["files"].as_u64(), r["dry_run"].as_bool()),
        (Some(3), Some(true)),
        "{r:#}"
    );
    assert!(!dest("dry").exists());

    // --verify reads back what was written: a file changed on disk after the restore (test
    // hook, layered on the real folder) is named, exit 5.
    let target = dest("verified");
    let o = cairn_cmd(c)
        .args([
            "--json",
            "restore",
            &clients,
            "--target",
            target.to_str().unwrap(),
            "--verify",
        ])
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_TEST_TAMPER_RESTORED", "globex/scan.bin")
        .output()
        .unwrap();
    expect_code(&o, 5);
    let r = json(&o);
    assert_eq!(r["verified"].as_u64(), Some(3), "{r:#}");
    let bad = r["mismatches"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{r:#}");
    assert!(bad[0].as_str().unwrap().contains("scan.bin"));
    let o = restore("verified-clean", &["--verify"]);
    expect_code(&o, 0);
    assert_eq!(json(&o)["verified"].as_u64(), Some(4));

    // The summary for people: counts, size, where, time and rate.
    let target = dest("summary");
    let o = cairn(
        c,
        &["restore", &clients, "--target", target.to_str().unwrap()],
    );
    expect_code(&o, 0);
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().next().unwrap_or_default();
    let head = format!(
        "restored 4 file(s), 2 folder(s), 3.0 MiB to {} in ",
        target.display()
    );
    assert!(line.starts_with(&head) && line.ends_with("/s)"), "{out}");

    // Overwrite modes over an existing tree: refuse (default), never, if-changed, always.
    let notes = dest("pdfs/acme/notes.txt");
    let contract = dest("pdfs/acme/Contract-2026.PDF");
    fs::write(&contract, b"edited locally").unwrap();
    expect_code(&restore("pdfs", &[]), 1);
    let o = restore("pdfs", &["--overwrite", "never"]);
    expect_code(&o, 0);
    let r = json(&o);
    assert_eq!(
        (r["existing"].as_u64(), r["skipped"].as_u64()),
        (Some(2), Some(2)),
        "{r:#}"
    );
    assert_eq!(fs::read(&contract).unwrap(), b"edited locally");
    assert_eq!(
        fs::read(&notes).unwrap(),
        b"call back",
        "the missing file was restored"
    );
    // if-changed: the edited file is replaced, the identical one kept (not rewritten).
    let o = restore("pdfs", &["--overwrite"]);
    expect_code(&o, 0);
    let r = json(&o);
    assert_eq!(
        (r["existing"].as_u64(), r["unchanged"].as_u64()),
        (Some(4), Some(3)),
        "{r:#}"
    );
    assert_eq!(fs::read(&contract).unwrap(), b"contract v2, signed");
    assert_eq!(fs::read(&notes).unwrap(), b"call back");
    fs::write(&contract, b"contract v2, signeD").unwrap();
    expect_code(&restore("pdfs", &["--overwrite", "always"]), 0);
    assert_eq!(fs::read(&contract).unwrap(), b"contract v2, signed");
}

#[test]
fn verify_prints_one_line_per_cause_not_one_per_sampled_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // Thirty small files share one data pack, lost on one target.
    for i in 0..30 {
        fs::write(
            src.join(format!("f{i:02}.bin")),
            pseudo_random(100 + i, 2000),
        )
        .unwrap();
    }
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{}", local_target("a", &a), local_target("b", &b)),
    );
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    let store = open_store(&config, "b");
    // The data pack is the large one (the other holds the trees).
    let (rel, _) = store
        .list("data")
        .unwrap()
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    let packs = [format!("data/{rel}")];
    store.delete(&packs[0]).unwrap();

    let o = cairn(&config, &["verify", "--files", "30"]);
    expect_code(&o, 5);
    let out = String::from_utf8_lossy(&o.stdout);
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fails.len(), 1, "{out}");
    assert!(
        fails[0].starts_with("FAIL [b]")
            && fails[0].contains(&packs[0])
            && fails[0].contains("(30 sampled files, e.g. /"),
        "{out}"
    );
    let r = json(&cairn(&config, &["--json", "verify", "--files", "30"]));
    assert_eq!(
        r["failures"].as_array().unwrap().len(),
        30,
        "the per-file list stays"
    );
    assert_eq!(r["causes"].as_array().unwrap().len(), 1);
    assert_eq!(r["causes"][0]["files"], 30);

    // A truncated tree pack (the small one) cuts every sampled file off its snapshot: one
    // cause, the pack, not a pack line plus a line of tree read errors.
    let store = open_store(&config, "a");
    let (rel, size) = store
        .list("data")
        .unwrap()
        .into_iter()
        .min_by_key(|(_, size)| *size)
        .unwrap();
    let tree_pack = format!("data/{rel}");
    let bytes = store.read(&tree_pack).unwrap();
    store
        .write(&tree_pack, vec![bytes.slice(..(size / 2) as usize)])
        .unwrap();
    let o = cairn(&config, &["verify", "--files", "30", "--only", "a"]);
    expect_code(&o, 5);
    let out = String::from_utf8_lossy(&o.stdout);
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fails.len(), 1, "{out}");
    assert!(
        fails[0].starts_with("FAIL [a]")
            && fails[0].contains(&tree_pack)
            && fails[0].contains("(30 sampled files, e.g. /"),
        "{out}"
    );
}

#[test]
fn check_prints_one_line_per_cause_and_heals_by_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let config = write_config(
        tmp.path(),
        &[&src],
        &format!("{}{}", local_target("a", &a), local_target("b", &b)),
    );
    // Three nights, three snapshots and three index files.
    for night in 0..3 {
        fs::write(
            src.join(format!("n{night}.bin")),
            pseudo_random(night, 5000),
        )
        .unwrap();
        let args = ["backup", "--init"];
        expect_code(&cairn(&config, &args[..if night == 0 { 2 } else { 1 }]), 0);
    }
    // `b` lost its snapshots and its index: six files, one cause.
    let store = open_store(&config, "b");
    let mut lost = Vec::new();
    for dir in ["snapshots", "index"] {
        for (rel, _) in store.list(dir).unwrap() {
            let path = format!("{dir}/{rel}");
            store.delete(&path).unwrap();
            lost.push(path);
        }
    }
    assert_eq!(lost.len(), 6);

    let o = cairn(&config, &["check"]);
    expect_code(&o, 5);
    let out = String::from_utf8_lossy(&o.stdout);
    let missing: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("PROBLEM [b] missing"))
        .collect();
    assert_eq!(missing.len(), 1, "{out}");
    assert!(
        missing[0].contains("another target holds an intact copy (6 files, e.g. "),
        "{out}"
    );
    // The per-file list stays in --json.
    let r = json(&cairn(&config, &["--json", "check"]));
    let problems = r["problems"].as_array().unwrap();
    let missing_files = problems
        .iter()
        .filter(|p| p["target"] == "b" && p["kind"] == "missing")
        .count();
    assert_eq!(missing_files, 6, "{r}");
    let cause = r["causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["target"] == "b" && c["kind"] == "missing")
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(cause["files"], 6);
    assert_eq!(cause["examples"].as_array().unwrap().len(), 3);

    let o = cairn(&config, &["check", "--heal"]);
    expect_code(&o, 0);
    let out = String::from_utf8_lossy(&o.stdout);
    let healed: Vec<&str> = out.lines().filter(|l| l.starts_with("HEALED")).collect();
    assert_eq!(healed.len(), 1, "{out}");
    assert!(
        healed[0].starts_with("HEALED [b] missing")
            && healed[0].contains("[healed] (6 files, e.g. "),
        "{out}"
    );
    for path in &lost {
        assert!(
            store.stat(path).unwrap().is_some(),
            "{path} was not put back"
        );
    }
    expect_code(&cairn(&config, &["check"]), 0);
}
