//! One backup to local + SFTP + SMB + Azure Blob + S3 at once, against the real servers. Afterwards
//! every target, opened alone, restores the same files, holds byte-identical repository files,
//! and stock restic checks and restores it.

mod common;

use std::fs;

use common::*;

#[test]
fn one_backup_lands_identically_on_all_five_kinds_and_each_restores_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_corpus(&src);
    let prefix = unique("roundtrip");
    let (sftp, sftp_dir) = sftp_target("dc", &prefix);
    let (smb, smb_dir) = smb_target("nas", &prefix);
    let targets = format!(
        "{}{sftp}{smb}{}{}",
        local_target("usb", &tmp.path().join("local-repo")),
        azblob_target("azure", &prefix),
        s3_target("s3", &prefix),
    );
    let config = write_config(tmp.path(), &[&src], &targets);

    let o = cairn(&config, &["--json", "init"]);
    expect_code(&o, 0);
    assert_eq!(json(&o)["created"], true);

    let o = cairn(&config, &["--json", "backup", "--tag", "first"]);
    expect_code(&o, 0);
    let first = json(&o);
    assert_eq!(first["partial"], false);
    for t in first["targets"].as_array().unwrap() {
        assert_eq!(t["state"], "complete", "{t}");
        assert!(
            t["bytes_written"].as_u64().unwrap() > 12 << 20,
            "every target got the data: {t}"
        );
    }
    // Encrypted and compressed once: every target received exactly the same bytes.
    let written: Vec<u64> = first["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["bytes_written"].as_u64().unwrap())
        .collect();
    assert!(written.windows(2).all(|w| w[0] == w[1]), "{written:?}");

    // An unchanged file is not re-read; a changed one is.
    fs::write(src.join("a/b/c/d/deep.txt"), b"deeper\n").unwrap();
    let o = cairn(&config, &["--json", "backup"]);
    expect_code(&o, 0);
    let second = json(&o);
    assert_eq!(second["parent"], first["snapshot"]);
    assert_eq!(second["files_changed"], 1, "{second}");
    assert_eq!(second["files_new"], 0, "{second}");
    assert!(
        second["files_unmodified"].as_u64().unwrap() >= 55,
        "{second}"
    );

    // Every target holds the same repository files, byte for byte.
    let reference = repo_files(open_store(&config, "usb").as_ref());
    assert!(reference.keys().any(|k| k.starts_with("data/")));
    for name in ["dc", "azure", "s3"] {
        assert_eq!(
            repo_files(open_store(&config, name).as_ref()),
            reference,
            "target {name}"
        );
    }

    // `snapshots` shows both snapshots on all five targets.
    let o = cairn(&config, &["--json", "snapshots"]);
    expect_code(&o, 0);
    let snaps = json(&o);
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 2);
    for s in snaps["snapshots"].as_array().unwrap() {
        assert_eq!(s["targets"].as_array().unwrap().len(), 5, "{s}");
    }

    // Each target alone restores byte-identical files.
    for name in ["usb", "dc", "nas", "azure", "s3"] {
        let dest = tmp.path().join(format!("restore-{name}"));
        let o = cairn(
            &config,
            &[
                "restore",
                "latest",
                "--from",
                name,
                "--target",
                dest.to_str().unwrap(),
            ],
        );
        expect_code(&o, 0);
        assert_same_tree(&src, &restored(&dest, &src));
    }

    // A path inside the snapshot, from the automatic choice of target.
    let dest = tmp.path().join("restore-part");
    let inside = format!("latest:{}", src.join("ünïcödé").display());
    let o = cairn(
        &config,
        &["restore", &inside, "--target", dest.to_str().unwrap()],
    );
    expect_code(&o, 0);
    assert_same_tree(&src.join("ünïcödé"), &dest);

    // `ls` lists the snapshot.
    let o = cairn(&config, &["ls", "latest", "--from", "s3"]);
    expect_code(&o, 0);
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(
        listing.contains("ファイル.txt") && listing.contains("big.bin"),
        "{listing}"
    );

    // Interop: stock restic checks every byte and restores, on each target.
    let sftp_cmd = format!(
        "sftp.command=ssh {}@{} -p {} -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -s sftp",
        env("SFTP_USER"),
        env("SFTP_HOST"),
        env("SFTP_PORT"),
        env("SFTP_KEY"),
        env("SFTP_KNOWN_HOSTS"),
    );
    // restic 0.14 cannot address Azurite's endpoint, so the Azure target's files are fetched
    // verbatim and restic reads that copy.
    let azure_copy = tmp.path().join("azure-copy");
    verbatim_copy(&config, "azure", &azure_copy);
    let repos: Vec<(&str, String, Vec<String>)> = vec![
        (
            "usb",
            tmp.path().join("local-repo").display().to_string(),
            vec![],
        ),
        (
            "dc",
            format!("sftp:{}@{}:{sftp_dir}", env("SFTP_USER"), env("SFTP_HOST")),
            vec!["-o".into(), sftp_cmd],
        ),
        // restic 0.14 lists no packs through s3s-fs even in a repository restic made itself;
        // s3s-fs keeps each object verbatim as a file, so restic reads the uploaded objects there.
        (
            "s3",
            format!("{}/s3/data/{}/{prefix}", env("TS_RUN"), env("S3_BUCKET")),
            vec![],
        ),
        ("azure", azure_copy.display().to_string(), vec![]),
        // The SMB share's folder on the server's disk.
        ("nas", smb_dir.clone(), vec![]),
    ];
    for (name, repo, opts) in repos {
        let mut args: Vec<&str> = opts.iter().map(String::as_str).collect();
        args.extend(["check", "--read-data"]);
        let o = restic(&repo, &args);
        assert!(o.status.success(), "restic check on {name}: {}", text(&o));
        let dest = tmp.path().join(format!("restic-restore-{name}"));
        let mut args: Vec<&str> = opts.iter().map(String::as_str).collect();
        args.extend(["restore", "latest", "--target", dest.to_str().unwrap()]);
        let o = restic(&repo, &args);
        assert!(o.status.success(), "restic restore on {name}: {}", text(&o));
        assert_same_tree(&src, &restored(&dest, &src));
    }
}

/// No `ssh` of an SFTP session may outlive a cairn run (a nightly job would otherwise leave
/// one behind per connection per night).
#[test]
fn no_ssh_process_outlives_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"hello").unwrap();
    // A key file at a path only this test uses, to find this test's ssh processes.
    let key = tmp.path().join("unique-key");
    fs::copy(env("SFTP_KEY"), &key).unwrap();
    let (sftp, _) = sftp_target("dc", &unique("ssh-leak"));
    let sftp = sftp.replace(&env("SFTP_KEY"), key.to_str().unwrap());
    let config = write_config(tmp.path(), &[&src], &sftp);
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    expect_code(&cairn(&config, &["snapshots"]), 0);
    let leftovers: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(key.to_str().unwrap()))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// An SFTP session is one `ssh` that cairn starts with the SFTP subsystem (no control master
/// beside it). Where this CPU has AES instructions and no ssh configuration chose ciphers,
/// AES-GCM goes first; a configuration that chose them is obeyed. A wrapper on `PATH` notes
/// each `ssh` run and hands it to the real one; for the second backup it also stands in for a
/// `Ciphers` line in the user's configuration (added to `ssh -G` without `-F`).
#[test]
fn an_sftp_session_is_one_ssh_with_aes_gcm_first_unless_configured_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"hello").unwrap();
    let real_ssh = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v ssh"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let (bin, runs) = (tmp.path().join("bin"), tmp.path().join("ssh-runs"));
    fs::create_dir_all(&bin).unwrap();
    fs::write(
        bin.join("ssh"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{runs}'\n\
             if [ -n \"$CHOSEN\" ] && [ \"$1\" = -G ] && [ \"$2\" != -F ]; then\n\
             exec {real} -G -o \"Ciphers=$CHOSEN\" \"$@\"\nfi\nexec {real} \"$@\"\n",
            runs = runs.display(),
            real = real_ssh.trim()
        ),
    )
    .unwrap();
    fs::set_permissions(
        bin.join("ssh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let cpu = fs::read_to_string("/proc/cpuinfo").unwrap();
    let flags = cpu.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let aes = flags.split_whitespace().any(|f| f == "aes")
        && flags.split_whitespace().any(|f| f == "pclmulqdq");

    let (sftp, _) = sftp_target("dc", &unique("one-ssh"));
    let config = write_config(tmp.path(), &[&src], &sftp);
    let backup = |chosen: &str| {
        let o = in_own_words(
            cairn_cmd(&config)
                .args(["backup", "--init"])
                .env("CAIRN_PASSWORD", "one-ssh-password")
                .env("PATH", &path)
                .env("CHOSEN", chosen)
                .output()
                .unwrap(),
        );
        expect_code(&o, 0);
        let said = fs::read_to_string(&runs).unwrap();
        fs::remove_file(&runs).unwrap();
        let sessions: Vec<String> = said
            .lines()
            .filter(|l| !l.starts_with("-G "))
            .map(str::to_string)
            .collect();
        assert_eq!(sessions.len(), 1, "{said}");
        let subsystem = format!(" -s -- {} sftp", env("SFTP_HOST"));
        assert!(sessions[0].ends_with(&subsystem), "{said}");
        sessions.into_iter().next().unwrap()
    };

    let session = backup("");
    assert_eq!(
        session.contains("-o Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,"),
        aes,
        "AES instructions: {aes}; {session}"
    );
    let session = backup("chacha20-poly1305@openssh.com");
    assert!(!session.contains("Ciphers"), "{session}");
}
