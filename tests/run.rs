//! `cairn run`, the nightly job, against the real servers: exit codes, the report in the state
//! folder, the metrics (checked by Prometheus' own `promtool`), hooks, pings, the run log, and
//! the systemd units (checked by `systemd-analyze verify`).

mod common;

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

use common::*;

/// The state folder of the configuration (`cairn_cmd` puts it beside the configuration).
fn state_dir(config: &Path) -> PathBuf {
    let base = config.parent().unwrap().join("state");
    let dirs: Vec<PathBuf> = fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn last_run(config: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(state_dir(config).join("last-run.json")).unwrap()).unwrap()
}

/// `promtool check metrics` passes (format and naming conventions), and the samples by name
/// and labels (`name{target="x"}` keyed by the target/command label only).
fn metrics(path: &Path) -> BTreeMap<String, f64> {
    let text = fs::read_to_string(path).unwrap();
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test-servers/start-all.sh installs it)");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}\n{text}",
        common::text(&out)
    );
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = series.split_once('{').unwrap();
        let key = labels
            .split(',')
            .find_map(|l| {
                l.strip_prefix("target=")
                    .or_else(|| l.strip_prefix("command="))
            })
            .map_or(String::new(), |v| v.trim_matches(['"', '}']).to_string());
        samples.insert(format!("{name}{{{key}}}"), value.parse().unwrap());
    }
    samples
}

/// `KEY=VALUE` lines a hook wrote with `env`.
fn hook_env(path: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the hook did not run ({}): {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn hooks(dir: &Path) -> String {
    let rec = |name: &str| {
        format!(
            "{name} = \"env > {}/{name}.env; echo \\\"$1\\\" > {}/{name}.arg\"\n",
            dir.display(),
            dir.display()
        )
    };
    format!(
        "[notify]\n{}{}{}",
        rec("on_success"),
        rec("on_partial"),
        rec("on_failure")
    )
}

fn step<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {report:#}"))
}

#[test]
fn a_run_with_sftp_stopped_is_partial_and_the_next_brings_it_level() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sshd = PrivateSshd::start(tmp.path(), None);
    let src = tmp.path().join("src");
    make_corpus(&src);
    let prefix = unique("run");
    let (sftp, _) = sshd.sftp_target("sftp", &prefix);
    let (smb, _) = smb_target("smb", &prefix);
    let targets = format!(
        "{}{sftp}{smb}{}{}",
        local_target("disk", &tmp.path().join("disk")),
        azblob_target("azure", &prefix),
        s3_target("s3", &prefix),
    );
    // The password as a systemd credential, as the timer's service gets it.
    let creds = tmp.path().join("creds");
    fs::create_dir_all(&creds).unwrap();
    fs::write(creds.join("repo-pw"), PASSWORD).unwrap();
    let config = write_config(tmp.path(), &[&src], &targets);
    let hook_dir = tmp.path().join("hooks");
    fs::create_dir_all(&hook_dir).unwrap();
    let prom = tmp.path().join("cairn.prom");
    let mut text = fs::read_to_string(&config).unwrap();
    text = text.replace(
        "[repository]\n",
        "[repository]\npassword = \"credential:repo-pw\"\n",
    );
    text.push_str(&format!(
        "{}\n[metrics]\npath = \"{}\"\n\n[retention]\nkeep_last = 3\nprune_every = \"1d\"\n\n\
         [verify]\nfiles = 3\n",
        hooks(&hook_dir),
        prom.display()
    ));
    fs::write(&config, text).unwrap();
    let cmd = |args: &[&str]| {
        cairn_cmd(&config)
            .args(args)
            .env("CREDENTIALS_DIRECTORY", &creds)
            .output()
            .unwrap()
    };
    let run = || cmd(&["--json", "run"]);
    expect_code(&cmd(&["init"]), 0);

    sshd.kill();
    let o = run();
    expect_code(&o, 3);
    let r = json(&o);
    assert_eq!(r["result"], "partial", "{r:#}");
    assert_eq!(r["failed_step"], "backup", "{r:#}");
    assert_eq!(r["failed_targets"], serde_json::json!(["sftp"]), "{r:#}");
    assert!(
        r["lagging_targets"]
            .as_array()
            .unwrap()
            .contains(&"sftp".into())
    );
    assert_eq!(step(&r, "backup")["result"], "partial");
    assert_eq!(step(&r, "backup")["targets"], serde_json::json!(["sftp"]));
    // The prune waits for the target that is away; verify sampled the four others.
    assert!(
        step(&r, "prune")["summary"]
            .as_str()
            .unwrap()
            .contains("deferred"),
        "{r:#}"
    );
    assert_eq!(step(&r, "verify")["result"], "partial", "{r:#}");
    assert_eq!(step(&r, "verify")["targets"], serde_json::json!(["sftp"]));
    assert_eq!(last_run(&config)["run"], r["run"]);
    let snapshot = r["snapshot"].as_str().unwrap().to_string();

    let m = metrics(&prom);
    assert_eq!(m["cairn_target_up{sftp}"], 0.0, "{m:?}");
    assert_eq!(m["cairn_target_up{disk}"], 1.0);
    assert_eq!(m["cairn_target_lagging{sftp}"], 1.0);
    assert_eq!(m["cairn_target_lagging{s3}"], 0.0);
    assert!(m.contains_key("cairn_target_lagging_since_timestamp_seconds{sftp}"));
    assert!(!m.contains_key("cairn_target_last_backup_timestamp_seconds{sftp}"));
    assert!(m["cairn_target_last_backup_timestamp_seconds{azure}"] > 1.7e9);
    assert_eq!(m["cairn_target_snapshots{smb}"], 1.0);
    assert_eq!(m["cairn_target_last_verify_success{disk}"], 1.0);
    assert_eq!(m["cairn_command_last_exit_code{run}"], 3.0);

    let hook = hook_env(&hook_dir.join("on_partial.env"));
    assert_eq!(hook["CAIRN_RESULT"], "partial");
    assert_eq!(hook["CAIRN_EXIT_CODE"], "3");
    assert_eq!(hook["CAIRN_FAILED_STEP"], "backup");
    assert_eq!(hook["CAIRN_FAILED_TARGETS"], "sftp");
    assert_eq!(hook["CAIRN_SNAPSHOT"], snapshot);
    let arg = fs::read_to_string(hook_dir.join("on_partial.arg")).unwrap();
    assert_eq!(arg.trim(), hook["CAIRN_REPORT"]);
    assert_eq!(
        Path::new(arg.trim()),
        state_dir(&config).join("last-run.json")
    );
    assert!(!hook_dir.join("on_success.env").exists());
    assert!(
        !hook.contains_key("CAIRN_PASSWORD") && !hook.contains_key("S3_SECRET_ACCESS_KEY"),
        "a hook never inherits a secret's variable"
    );

    // SFTP back: caught up first, then written; everything level, exit 0.
    sshd.restart();
    let o = run();
    expect_code(&o, 0);
    let r = json(&o);
    assert_eq!(r["result"], "ok", "{r:#}");
    assert!(
        step(&r, "catch-up")["summary"]
            .as_str()
            .unwrap()
            .contains("`sftp` caught-up"),
        "{r:#}"
    );
    assert_eq!(r["lagging_targets"], serde_json::json!([]));
    let m = metrics(&prom);
    assert_eq!(m["cairn_target_up{sftp}"], 1.0);
    assert_eq!(m["cairn_target_lagging{sftp}"], 0.0);
    assert_eq!(m["cairn_target_pending_files{sftp}"], 0.0);
    assert!(!m.contains_key("cairn_target_lagging_since_timestamp_seconds{sftp}"));
    assert_eq!(m["cairn_target_snapshots{sftp}"], 2.0);
    assert_eq!(m["cairn_command_last_exit_code{run}"], 0.0);
    assert!(m.contains_key("cairn_command_last_success_timestamp_seconds{run}"));
    assert_eq!(
        hook_env(&hook_dir.join("on_success.env"))["CAIRN_RESULT"],
        "ok"
    );

    // No secret of any target kind, nor the password, in anything the runs left behind.
    let log = fs::read_to_string(state_dir(&config).join("run.log")).unwrap();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["time"].is_string() && v["event"].is_string(), "{line}");
    }
    assert!(log.contains("\"event\":\"step\""), "{log}");
    let key = fs::read_to_string(env_path("SFTP_KEY")).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    let everything = format!(
        "{log}{}{}{}{}",
        fs::read_to_string(state_dir(&config).join("last-run.json")).unwrap(),
        fs::read_to_string(&prom).unwrap(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    for secret in [
        PASSWORD.to_string(),
        env("SMB_PASSWORD"),
        env("AZBLOB_ACCOUNT_KEY"),
        env("S3_ACCESS_KEY_ID"),
        env("S3_SECRET_ACCESS_KEY"),
        key_body.to_string(),
    ] {
        assert!(
            !everything.contains(&secret),
            "a secret leaked: {secret:.6}…"
        );
    }
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(env(name))
}

/// Two local targets backing up a small tree, with metrics and hooks.
fn local_setup(tmp: &Path, extra: &str) -> (PathBuf, PathBuf) {
    let src = tmp.join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..4 {
        fs::write(src.join(format!("f{i}.bin")), pseudo_random(i, 40_000)).unwrap();
    }
    let targets = format!(
        "{}{}",
        local_target("a", &tmp.join("a")),
        local_target("b", &tmp.join("b"))
    );
    let config = write_config(tmp, &[&src], &targets);
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str(extra);
    fs::write(&config, text).unwrap();
    expect_code(&cairn(&config, &["init"]), 0);
    (config, src)
}

#[test]
fn a_run_while_another_holds_the_lock_exits_11_and_the_report_and_metrics_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let prom = tmp.path().join("cairn.prom");
    let (config, _) = local_setup(
        tmp.path(),
        &format!("\n[metrics]\npath = \"{}\"\n", prom.display()),
    );
    // A run held still (test hook) after its backup's first write: it holds the run lock.
    let mut first = halted(&config, "run");
    let o = cairn(&config, &["--json", "run"]);
    expect_code(&o, 11);
    let r = json(&o);
    assert_eq!(r["result"], "locked", "{r:#}");
    assert_eq!(r["failed_step"], "lock");
    let summary = step(&r, "lock")["summary"].as_str().unwrap().to_string();
    assert!(
        summary.contains(&format!("pid {}", first.id())),
        "{summary}"
    );
    assert_eq!(r["steps"].as_array().unwrap().len(), 1, "nothing else ran");
    assert_eq!(last_run(&config)["result"], "locked");
    assert_eq!(metrics(&prom)["cairn_command_last_exit_code{run}"], 11.0);

    // The lock dies with its holder.
    first.kill().unwrap();
    first.wait().unwrap();
    expect_code(&cairn(&config, &["run"]), 0);

    // A `cairn backup` holding the repository lock stops a run at its backup step, also 11.
    let mut backup = halted_backup(&config);
    let o = cairn(&config, &["--json", "run"]);
    expect_code(&o, 11);
    let r = json(&o);
    assert_eq!(r["failed_step"], "backup", "{r:#}");
    assert!(
        step(&r, "backup")["summary"]
            .as_str()
            .unwrap()
            .contains("locked"),
        "{r:#}"
    );
    backup.kill().unwrap();
    backup.wait().unwrap();
}

#[test]
fn hooks_pings_and_metrics_that_fail_are_warnings_and_the_backup_completes() {
    let tmp = tempfile::tempdir().unwrap();
    // A metrics path under a regular file cannot be written; the hook hangs past its limit;
    // nothing listens at the ping URL.
    fs::write(tmp.path().join("not-a-folder"), "").unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/ping-token-dead", closed.local_addr().unwrap());
    drop(closed);
    let (config, _) = local_setup(
        tmp.path(),
        &format!(
            "\n[metrics]\npath = \"{}\"\n\n[notify]\non_success = \"sleep 600\"\ntimeout = 2\n\
             ping_url = \"{dead_url}\"\n",
            tmp.path().join("not-a-folder/cairn.prom").display()
        ),
    );
    let o = cairn(&config, &["--json", "run"]);
    expect_code(&o, 0);
    let r = json(&o);
    assert_eq!(r["result"], "ok", "{r:#}");
    assert_eq!(r["hook"]["hook"], "on_success");
    assert_eq!(r["hook"]["timed_out"], true, "{r:#}");
    let pings = r["pings"].as_array().unwrap();
    assert_eq!(pings.len(), 2, "{r:#}");
    assert!(
        pings
            .iter()
            .all(|p| p["status"].is_null() && p["error"].is_string())
    );
    let warnings = serde_json::to_string(&r["warnings"]).unwrap();
    for w in [
        "metrics not written",
        "on_success hook was killed",
        "ping to",
    ] {
        assert!(warnings.contains(w), "{w}: {warnings}");
    }
    assert!(
        !warnings.contains("ping-token"),
        "the ping URL's token is never shown"
    );
    let snaps = json(&cairn(&config, &["--json", "snapshots"]));
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 1, "{snaps:#}");

    // A listening ping URL gets `start`, then success; under systemd the lines carry the
    // journal's priority prefixes instead of a time.
    let (url, seen) = ping_server();
    let mut text = fs::read_to_string(&config).unwrap();
    text = text
        .replace(&dead_url, &url)
        .replace("on_success = \"sleep 600\"", "on_success = \"true\"");
    fs::write(&config, text).unwrap();
    let o = cairn_cmd(&config)
        .arg("run")
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("JOURNAL_STREAM", "8:12345")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("<6>INFO backup: snapshot")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("<4>WARN metrics not written"))
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "POST /ping-token-5f2d/start HTTP/1.1",
            "POST /ping-token-5f2d HTTP/1.1"
        ]
    );
    let log = fs::read_to_string(state_dir(&config).join("run.log")).unwrap();
    assert!(!log.contains("ping-token"), "{log}");
}

#[test]
fn damage_found_by_the_nightly_verify_fails_the_run_with_5_after_the_backup_is_saved() {
    let tmp = tempfile::tempdir().unwrap();
    let hook_dir = tmp.path().join("hooks");
    fs::create_dir_all(&hook_dir).unwrap();
    let (config, _) = local_setup(
        tmp.path(),
        &format!("\n{}\n[verify]\nfiles = 10\n", hooks(&hook_dir)),
    );
    expect_code(&cairn(&config, &["backup"]), 0);
    let b = open_store(&config, "b");
    for (rel, _) in b.list("data").unwrap() {
        flip_byte(b.as_ref(), &format!("data/{rel}"));
    }
    let o = cairn(&config, &["--json", "run"]);
    expect_code(&o, 5);
    let r = json(&o);
    assert_eq!(r["result"], "verify-failed", "{r:#}");
    assert_eq!(r["failed_step"], "verify");
    assert_eq!(
        step(&r, "backup")["result"],
        "ok",
        "the backup's result stays visible"
    );
    assert!(r["snapshot"].is_string());
    assert_eq!(r["failed_targets"], serde_json::json!(["b"]));
    let env = hook_env(&hook_dir.join("on_failure.env"));
    assert_eq!(env["CAIRN_RESULT"], "verify-failed");
    assert_eq!(env["CAIRN_EXIT_CODE"], "5");
    assert_eq!(env["CAIRN_FAILED_TARGETS"], "b");
}

#[test]
fn schedule_units_pass_systemd_analyze_and_install_and_remove_as_user_units() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _) = local_setup(
        tmp.path(),
        "\n[schedule]\nrun_at = \"*-*-* 02:30:00\"\nverify_at = \"Sun *-*-* 05:00:00\"\n\
         randomized_delay = \"45min\"\n",
    );
    let mut text = fs::read_to_string(&config).unwrap();
    text = text.replace(
        "[repository]\n",
        "[repository]\npassword = \"credential:repo-pw\"\n",
    );
    fs::write(&config, text).unwrap();
    let runtime = tmp.path().join("runtime");
    fs::create_dir_all(&runtime).unwrap();
    let verify = |dir: &Path, user: bool| {
        let mut c = Command::new("systemd-analyze");
        if user {
            c.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
        }
        let files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 4, "{files:?}");
        let o = c
            .arg("verify")
            .args(&files)
            .output()
            .expect("systemd-analyze is installed (start-all.sh installs systemd)");
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "systemd-analyze verify: {}",
            common::text(&o)
        );
    };
    for user in [false, true] {
        let mut args = vec!["--json", "schedule", "print"];
        if user {
            args.push("--user");
        }
        let units = json(&cairn(&config, &args));
        let dir = tmp.path().join(format!("printed-{user}"));
        fs::create_dir_all(&dir).unwrap();
        for u in units["units"].as_array().unwrap() {
            fs::write(
                dir.join(u["name"].as_str().unwrap()),
                u["text"].as_str().unwrap(),
            )
            .unwrap();
        }
        verify(&dir, user);
        let service = fs::read_to_string(dir.join("cairn-test-run.service")).unwrap();
        assert!(service.contains("LoadCredential=repo-pw:/etc/credstore/repo-pw\n"));
        assert_eq!(
            service.contains("ProtectSystem=strict\n"),
            !user,
            "{service}"
        );
    }

    let xdg = tmp.path().join("xdg");
    let install = |action: &str| {
        cairn_cmd(&config)
            .args(["schedule", action, "--user", "--files-only"])
            .env("XDG_CONFIG_HOME", &xdg)
            .output()
            .unwrap()
    };
    expect_code(&install("install"), 0);
    let units = xdg.join("systemd/user");
    let mut names: Vec<String> = fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cairn-test-run.service",
            "cairn-test-run.timer",
            "cairn-test-verify.service",
            "cairn-test-verify.timer"
        ]
    );
    verify(&units, true);
    let timer = fs::read_to_string(units.join("cairn-test-run.timer")).unwrap();
    assert!(
        timer.contains("OnCalendar=*-*-* 02:30:00\n")
            && timer.contains("RandomizedDelaySec=45min\n")
    );
    expect_code(&install("remove"), 0);
    assert_eq!(fs::read_dir(&units).unwrap().count(), 0);
}

#[test]
fn a_wrong_password_fails_the_run_with_12_at_its_backup_and_the_failure_hook_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let hook_dir = tmp.path().join("hooks");
    fs::create_dir_all(&hook_dir).unwrap();
    let (config, _) = local_setup(tmp.path(), &format!("\n{}", hooks(&hook_dir)));
    let o = cairn_with_password(&config, "not the password", &["--json", "run"]);
    expect_code(&o, 12);
    let r = json(&o);
    assert_eq!(r["result"], "failed", "{r:#}");
    assert_eq!(r["failed_step"], "backup");
    let steps: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["lock", "backup"],
        "nothing runs after a failed backup"
    );
    assert!(
        step(&r, "backup")["summary"]
            .as_str()
            .unwrap()
            .contains("wrong password")
    );
    let env = hook_env(&hook_dir.join("on_failure.env"));
    assert_eq!(env["CAIRN_RESULT"], "failed");
    assert_eq!(env["CAIRN_EXIT_CODE"], "12");
    assert_eq!(env["CAIRN_SNAPSHOT"], "");
}

#[test]
fn on_a_terminal_each_step_is_shown_once_and_piped_the_table_holds_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, _) = local_setup(tmp.path(), "");
    // `script` gives the run a terminal for both its outputs, as a person at a shell has.
    let line = format!("{} --config {} run", bin().display(), config.display());
    let out = Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_STATE_DIR", tmp.path().join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(screen.matches("backup: snapshot").count(), 1, "{screen}");
    assert!(
        !screen.lines().any(|l| l.starts_with("backup ")),
        "the table repeats the steps:\n{screen}"
    );
    assert!(screen.contains("result: ok (exit 0)"), "{screen}");
    // Without a terminal, the table on stdout holds every step (a log or a mail gets it).
    let out = cairn(&config, &["run"]);
    expect_code(&out, 0);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().any(|l| l.starts_with("backup ")),
        "{}",
        text(&out)
    );
}
