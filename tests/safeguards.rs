//! The smaller safeguards of issue 8 (points 8 and 9): secrets and file modes, an empty verify
//! sample, healing in dependency order, durable local writes, bounded retries. Each test here
//! failed on the code before its fix.

mod common;

use std::{fs, path::Path, process::Command};

use common::*;

/// One local target `a` with one snapshot of a one-file source.
fn one_target(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"hello").unwrap();
    let a = tmp.join("a");
    let config = write_config(tmp, &[&src], &local_target("a", &a));
    expect_code(&cairn(&config, &["backup", "--init"]), 0);
    (config, a)
}

#[test]
fn an_empty_verify_sample_is_never_a_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _) = one_target(tmp.path());
    let o = cairn(&config, &["verify", "--files", "0"]);
    expect_code(&o, 2);

    // The same asked for in the configuration: named by line and key.
    let text_cfg = fs::read_to_string(&config).unwrap();
    fs::write(&config, format!("{text_cfg}\n[verify]\nfiles = 0\n")).unwrap();
    let o = cairn(&config, &["verify"]);
    expect_code(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line ") && err.contains("`files`"), "{err}");
    fs::write(&config, &text_cfg).unwrap();

    // A snapshot with no file at all: nothing can be sampled, so nothing was proven.
    fs::remove_file(tmp.path().join("src/f.txt")).unwrap();
    fs::create_dir(tmp.path().join("src/empty")).unwrap();
    expect_code(&cairn(&config, &["backup"]), 0);
    let o = cairn(&config, &["--json", "verify"]);
    expect_code(&o, 1);
    assert_eq!(json(&o)["sample"].as_array().unwrap().len(), 0);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing was verified"),
        "{}",
        text(&o)
    );
}

#[test]
fn heal_copies_no_index_to_a_target_whose_pack_could_not_be_healed() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _, b) = two_local_targets(tmp.path(), "f.txt", &pseudo_random(7, 100_000));
    // `b` lost a data pack and the index naming it; the pack cannot be written back there (a
    // folder stands at its name).
    let packs = file_packs(&config, "a");
    let (_, packs) = packs.iter().find(|(p, _)| p.ends_with("f.txt")).unwrap();
    let pack = pack_path(packs.iter().next().unwrap());
    let index: Vec<String> = fs::read_dir(b.join("index"))
        .unwrap()
        .map(|e| format!("index/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    fs::remove_file(b.join(&pack)).unwrap();
    fs::create_dir(b.join(&pack)).unwrap();
    fs::write(b.join(&pack).join("in-the-way"), b"x").unwrap();
    for i in &index {
        fs::remove_file(b.join(i)).unwrap();
    }

    let o = cairn(&config, &["--json", "check", "--heal"]);
    expect_code(&o, 5);
    let r = json(&o);
    for i in &index {
        assert!(
            !b.join(i).exists(),
            "index {i} copied although its pack is missing on b: {r}"
        );
        let p = r["problems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["target"] == "b" && p["path"] == i.as_str())
            .unwrap_or_else(|| panic!("{i} not reported: {r}"));
        assert_eq!(p["healed"], false, "{r}");
    }
}

#[test]
fn a_local_write_syncs_the_folder_it_was_renamed_into() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"hello").unwrap();
    let a = tmp.path().join("a");
    let config = write_config(tmp.path(), &[&src], &local_target("a", &a));
    let trace = tmp.path().join("trace");
    let o = Command::new("strace")
        .args([
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=rename,renameat,renameat2,fsync",
            "-o",
        ])
        .arg(&trace)
        .arg(bin())
        .arg("--config")
        .arg(&config)
        .args(["backup", "--init"])
        .env("CAIRN_STATE_DIR", tmp.path().join("state"))
        .env("CAIRN_PASSWORD", PASSWORD)
        .output()
        .expect("strace runs (apt package strace)");
    expect_code(&o, 0);
    let trace = fs::read_to_string(trace).unwrap();
    // For each repository folder a file was renamed into, a later fsync of that folder.
    let snapshots = a.join("snapshots");
    let snapshots = snapshots.to_str().unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let renamed = lines
        .iter()
        .rposition(|l| l.contains("rename") && l.contains(&format!("{snapshots}/")))
        .unwrap_or_else(|| panic!("no rename into {snapshots}:\n{trace}"));
    assert!(
        lines[renamed..]
            .iter()
            .any(|l| l.contains("fsync(") && l.contains(&format!("<{snapshots}>"))),
        "{snapshots} never synced after the snapshot was renamed into it:\n{trace}"
    );
}

#[test]
fn an_sftp_upload_is_synced_on_the_server_before_its_rename() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.bin"), pseudo_random(3, 1 << 20)).unwrap();
    let (nas, dir) = sftp_target("nas", &unique("fsync"));
    let config = write_config(tmp.path(), &[&src], &nas);

    // The test server's sshd, traced with the sftp-server processes it starts from now on.
    let sshd = fs::read_to_string(format!("{}/sftp/sshd.pid", env("TS_RUN"))).unwrap();
    let trace = tmp.path().join("trace");
    let mut strace = Command::new("strace")
        .args([
            "-f",
            "-y",
            "-e",
            "trace=fsync,rename,renameat,renameat2",
            "-o",
        ])
        .arg(&trace)
        .args(["-p", sshd.trim()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("strace runs (apt package strace)");
    let mut attached = String::new();
    // Kept open until strace is gone: a closed pipe would kill it at its next message.
    let mut stderr = BufReader::new(strace.stderr.take().unwrap());
    stderr.read_line(&mut attached).unwrap();
    assert!(attached.contains("attached"), "{attached}");
    let o = cairn(&config, &["backup", "--init"]);
    // SAFETY: kill(2) on a child of this test; SIGTERM makes strace detach and flush.
    unsafe { libc::kill(strace.id().cast_signed(), libc::SIGTERM) };
    strace.wait().unwrap();
    drop(stderr);
    expect_code(&o, 0);

    // Every file renamed into this repository was synced under its temporary name first.
    let trace = fs::read_to_string(trace).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let mut renamed = 0;
    for (i, l) in lines.iter().enumerate() {
        let Some(from) = l
            .split_once("rename(\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(from, _)| from)
            .filter(|from| from.starts_with(&dir))
        else {
            continue;
        };
        renamed += 1;
        assert!(
            lines[..i]
                .iter()
                .any(|l| l.contains("fsync(") && l.contains(&format!("<{from}>"))),
            "{from} was renamed without being synced:\n{trace}"
        );
    }
    assert!(
        renamed >= 4,
        "config, key, index, snapshot, packs:\n{trace}"
    );
}

#[test]
fn retries_and_timeout_have_an_upper_bound() {
    let tmp = tempfile::tempdir().unwrap();
    for (key, value) in [("retries", "1000"), ("timeout", "86400")] {
        let config = write_config(
            tmp.path(),
            &[tmp.path()],
            &format!(
                "{}{key} = {value}\n",
                local_target("a", &tmp.path().join("a"))
            ),
        );
        let o = cairn(&config, &["status"]);
        expect_code(&o, 2);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("`{key}`")) && err.contains("at most"),
            "{err}"
        );
    }
}

/// A configuration with one local target `a` plus `extra` (more targets or keys).
fn config_with(tmp: &Path, extra: &str) -> std::path::PathBuf {
    // The source beside the target, not around it (that is a configuration error).
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    write_config(
        tmp,
        &[&src],
        &format!("{}{extra}", local_target("a", &tmp.join("a"))),
    )
}

#[test]
fn plain_http_object_stores_are_refused_unless_allowed_and_never_with_a_sas_token() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = "[[target]]\nname = \"s3\"\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:1\"\n\
              bucket = \"b\"\nregion = \"r\"\naccess_key_id = \"env:K\"\n\
              secret_access_key = \"env:S\"\n";
    let az = "[[target]]\nname = \"az\"\nkind = \"azblob\"\nendpoint = \"http://127.0.0.1:1\"\n\
              account = \"a\"\ncontainer = \"c\"\n";
    for (extra, allowed) in [
        (s3.to_string(), false),
        (format!("{az}key = \"env:K\"\n"), false),
        (format!("{s3}allow_insecure_http = true\n"), true),
        (
            format!("{az}key = \"env:K\"\nallow_insecure_http = true\n"),
            true,
        ),
        (
            format!("{az}sas = \"env:K\"\nallow_insecure_http = true\n"),
            false,
        ),
    ] {
        let config = config_with(tmp.path(), &extra);
        let o = cairn(&config, &["status"]);
        let err = String::from_utf8_lossy(&o.stderr);
        if allowed {
            assert_ne!(o.status.code(), Some(2), "{extra}\n{}", text(&o));
            assert!(err.contains("plain http://"), "a warning: {err}");
        } else {
            expect_code(&o, 2);
            assert!(
                err.contains("line ") && err.contains("`endpoint`") && err.contains("https://"),
                "{extra}\n{err}"
            );
        }
    }
}

#[test]
fn weakened_settings_and_open_secret_files_are_warned_about_at_every_run() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("smb-password");
    fs::write(&secret, "hunter2-hunter2\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
    let extra = format!(
        "[[target]]\nname = \"dc\"\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = 1\nuser = \"u\"\n\
         key_file = \"{}\"\npath = \"/x\"\nhost_key_checking = \"off\"\nrequired = false\n\n\
         [[target]]\nname = \"nas\"\nkind = \"smb\"\nhost = \"127.0.0.1\"\nport = 1\nshare = \"s\"\n\
         user = \"u\"\npassword = \"file:{}\"\nsecurity = \"none\"\nrequired = false\n",
        secret.display(),
        secret.display()
    );
    let config = config_with(tmp.path(), &extra);
    fs::set_permissions(&config, fs::Permissions::from_mode(0o664)).unwrap();
    let o = cairn(&config, &["status"]);
    let err = String::from_utf8_lossy(&o.stderr);
    for needle in [
        "`dc`: host_key_checking = \"off\"",
        "`nas`: security = \"none\"",
        "smb-password is readable by others",
        "targets.toml can be changed by other users (mode 664)",
    ] {
        assert!(err.contains(needle), "no warning {needle:?}:\n{}", text(&o));
    }
    assert!(!err.contains("hunter2"), "{err}");

    // Readable by everyone is no warning: the file holds no secret, only references.
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let err = String::from_utf8_lossy(&cairn(&config, &["status"]).stderr).into_owned();
    assert!(
        !err.contains("readable by") && !err.contains("targets.toml"),
        "{err}"
    );
}

#[test]
fn commands_cairn_runs_never_see_a_secret_in_their_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _) = one_target(tmp.path());
    let seen = tmp.path().join("seen-env");
    // The password comes from a command that records its environment; the verify hook too.
    let text_cfg = fs::read_to_string(&config).unwrap().replace(
        "[repository]\n",
        &format!(
            "[repository]\npassword = \"command:env > {}.cmd; printf %s \\\"$CAIRN_TEST_PW\\\"\"\n",
            seen.display()
        ),
    );
    // The hook runs only on failure: ask for a target that does not answer.
    let text_cfg = format!(
        "{text_cfg}[[target]]\nname = \"gone\"\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = 1\n\
         user = \"u\"\nkey_file = \"{}\"\npath = \"/x\"\ntimeout = 2\nretries = 0\n\n\
         [verify]\non_failure = \"env > {}.hook\"\n",
        config.display(),
        seen.display()
    );
    fs::write(&config, text_cfg).unwrap();
    let o = cairn_cmd(&config)
        .args(["verify"])
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_TEST_PW", PASSWORD)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    for suffix in ["cmd", "hook"] {
        let env = fs::read_to_string(format!("{}.{suffix}", seen.display()))
            .unwrap_or_else(|e| panic!("{suffix} did not run ({e}): {}", text(&o)));
        assert!(!env.contains("CAIRN_PASSWORD"), "{suffix}: {env}");
    }
}

#[test]
fn a_toml_error_never_repeats_the_value_of_a_secret_key() {
    let tmp = tempfile::tempdir().unwrap();
    for line in [
        "password = hunter2hunter2",
        "password = 123456789",
        "password = [\"hunter2hunter2\"]",
    ] {
        let config = tmp.path().join("targets.toml");
        fs::write(
            &config,
            format!(
                "[repository]\n{line}\n\n{}",
                local_target("a", &tmp.path().join("a"))
            ),
        )
        .unwrap();
        let o = cairn(&config, &["status"]);
        expect_code(&o, 2);
        let all = text(&o);
        assert!(
            !all.contains("hunter2") && !all.contains("123456789"),
            "{line}: {all}"
        );
        assert!(
            all.contains("line 2") && all.contains("`password`"),
            "{all}"
        );
    }
}

#[test]
fn the_state_folder_and_reports_are_for_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (config, _) = one_target(tmp.path());
    let report = tmp.path().join("report.json");
    expect_code(
        &cairn(&config, &["verify", "--report", report.to_str().unwrap()]),
        0,
    );
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&report), 0o600);
    let state = tmp.path().join("state");
    let mut dirs = vec![state.clone()];
    dirs.extend(fs::read_dir(&state).unwrap().map(|e| e.unwrap().path()));
    for d in dirs {
        if d.is_dir() {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        } else {
            assert_eq!(mode(&d) & 0o077, 0, "{}", d.display());
        }
        for f in fs::read_dir(&d).into_iter().flatten() {
            let f = f.unwrap().path();
            assert_eq!(mode(&f) & 0o077, 0, "{}", f.display());
        }
    }
}
