//! The evidence page (issue 29): rendered by a real browser (Debian's chromium, headless) from
//! state that real runs left: two clients on four targets, one failed verification, one
//! lagging removable disk, one erasure still pending on it. Asserted on the DOM the browser
//! built, validated by tidy; the screenshot is kept under the cargo target folder.

mod common;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use common::*;

const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The DOM chromium builds of `page`, and a screenshot of it in `shot`.
fn browser_dom(page: &Path, shot: &Path, profile: &Path) -> String {
    let url = format!("file://{}", page.display());
    let run = |extra: &[String]| {
        let out = Command::new("chromium")
            .args(CHROMIUM_FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium is installed (scripts/test-servers/start-all.sh installs it)");
        assert!(out.status.success(), "chromium: {}", text(&out));
        out
    };
    run(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,2400".into(),
    ]);
    let png = fs::read(shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "screenshot of {} bytes",
        png.len()
    );
    let out = run(&["--dump-dom".into()]);
    String::from_utf8(out.stdout).unwrap()
}

/// Each matrix cell's state, by (client, target).
fn cells(dom: &str) -> BTreeMap<(String, String), String> {
    let attr = |tag: &str, name: &str| {
        let key = format!("{name}=\"");
        let start = tag.find(&key)? + key.len();
        Some(tag[start..].split('"').next()?.to_string())
    };
    dom.split("<td class=\"cell ")
        .skip(1)
        .map(|rest| rest.split('>').next().unwrap_or_default())
        .map(|tag| {
            (
                (
                    attr(tag, "data-client").unwrap(),
                    attr(tag, "data-target").unwrap(),
                ),
                attr(tag, "data-state").unwrap(),
            )
        })
        .collect()
}

/// The problem lines, by client.
fn problems(dom: &str) -> Vec<(String, String)> {
    dom.split("<li class=\"problem\" data-client=\"")
        .skip(1)
        .map(|rest| {
            let (client, tail) = rest.split_once("\">").unwrap();
            let text = tail.split("</li>").next().unwrap();
            (client.to_string(), text.replace("&amp;", "&"))
        })
        .collect()
}

fn tidy(page: &Path) {
    let out = Command::new("tidy")
        .args(["-errors", "-quiet"])
        .arg(page)
        .output()
        .expect("tidy is installed (scripts/test-servers/start-all.sh installs it)");
    assert_eq!(
        out.status.code(),
        Some(0),
        "tidy finds fault with {}: {}",
        page.display(),
        text(&out)
    );
}

/// Where screenshots are kept for a person to look at.
fn artifacts() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
    fs::create_dir_all(&d).unwrap();
    d
}

fn client(tmp: &Path, name: &str, seed: u64) -> String {
    let src = tmp.join(format!("src-{name}"));
    fs::create_dir_all(src.join("docs")).unwrap();
    for i in 0..4 {
        fs::write(
            src.join(format!("docs/f{i}.bin")),
            pseudo_random(seed + i, 40_000),
        )
        .unwrap();
    }
    format!(
        "[[repository]]\nname = \"{name}\"\npassword = \"env:CAIRN_PASSWORD\"\nsources = [\"{}\"]\n\n",
        src.display()
    )
}

#[test]
fn the_evidence_page_shows_a_failed_verification_a_lagging_disk_and_a_pending_erasure() {
    let tmp = tempfile::tempdir().unwrap();
    let mut usb = Usb::new(tmp.path().join("mnt/usb"));
    let nas = tmp.path().join("nas");
    let config = tmp.path().join("targets.toml");
    fs::write(
        &config,
        format!(
            "[verify]\nfiles = 3\n\n[report]\nhtml = \"evidence.html\"\n\n{}{}{}{}{}{}{}",
            local_target("office", &tmp.path().join("office")),
            local_target("dc", &tmp.path().join("dc")),
            local_target("nas", &nas),
            usb.target("usb"),
            client(tmp.path(), "acme", 1),
            client(tmp.path(), "globex", 20),
            client(tmp.path(), "initech", 40),
        ),
    )
    .unwrap();
    usb.plug();
    expect_code(&cairn(&config, &["init"]), 0);
    for _ in 0..2 {
        expect_code(&cairn(&config, &["run"]), 0);
    }
    expect_code(
        &cairn(&config, &["--repo", "globex", "check", "--read-data"]),
        0,
    );
    // `[report] html` is rewritten after every run, with every client.
    let after_run = fs::read_to_string(tmp.path().join("evidence.html")).unwrap();
    assert!(after_run.contains("id=\"history-globex\" data-runs=\"2\""));

    // The disk goes home: initech's erasure waits for it, and both clients' run misses it.
    usb.unplug();
    let out = cairn(
        &config,
        &[
            "erase",
            "--repo",
            "initech",
            "--reason",
            "contract ended",
            "--yes",
        ],
    );
    expect_code(&out, 3);
    // An unplugged optional disk is expected: the run is ok, the disk lags.
    expect_code(&cairn(&config, &["run"]), 0);
    // acme's copy on the NAS is damaged: its next verification fails there.
    for pack in walk_files(&nas.join("acme/data")) {
        let mut bytes = fs::read(&pack).unwrap();
        for b in bytes.iter_mut().skip(100).step_by(97) {
            *b ^= 0x5a;
        }
        fs::write(&pack, bytes).unwrap();
    }
    expect_code(&cairn(&config, &["--repo", "acme", "verify"]), 5);

    let page = tmp.path().join("provider.html");
    let out = cairn(
        &config,
        &[
            "--operator",
            "m.visser",
            "report",
            "--html",
            page.to_str().unwrap(),
        ],
    );
    expect_code(&out, 0);
    // The report read the keys with the password: each client's audit log says who did.
    for c in ["acme", "globex"] {
        let out = cairn(&config, &["--repo", c, "--json", "audit", "show"]);
        let last = json(&out).as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            (last["command"].as_str(), last["operator"].as_str()),
            (Some("report"), Some("m.visser"))
        );
    }
    assert!(text(&out).contains("PROBLEM acme: the last sample verification failed on `nas`"));
    tidy(&page);
    let dom = browser_dom(
        &page,
        &artifacts().join("provider.png"),
        &tmp.path().join("chromium"),
    );

    let matrix = cells(&dom);
    let state = |c: &str, t: &str| matrix[&(c.to_string(), t.to_string())].as_str();
    assert_eq!(matrix.len(), 8, "{matrix:?}");
    assert_eq!(state("acme", "nas"), "failed");
    for c in ["acme", "globex"] {
        assert_eq!(state(c, "usb"), "lagging");
        assert_eq!(state(c, "office"), "ok");
        assert_eq!(state(c, "dc"), "ok");
    }
    assert_eq!(state("globex", "nas"), "ok");

    let lines = problems(&dom);
    let has = |client: &str, start: &str| {
        lines
            .iter()
            .any(|(c, t)| c == client && t.starts_with(start))
    };
    assert!(
        has(
            "acme",
            "acme: the last sample verification failed on `nas` ("
        ),
        "{lines:?}"
    );
    // The worst comes first.
    assert!(lines[0].1.contains("verification failed"), "{lines:?}");
    // A rotated disk away for one run lags in the matrix; it is not yet a problem.
    assert!(
        !lines.iter().any(|(_, t)| t.contains("`usb` missed")),
        "{lines:?}"
    );
    assert!(
        has("initech", "initech: erasure of the repository decided ")
            && lines
                .iter()
                .any(|(_, t)| t.ends_with("is still pending on `usb` (done when reachable)")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|(_, t)| t.contains("globex: the last")),
        "{lines:?}"
    );
    // Each client's history: three runs, the chart's bars and verification dots.
    for c in ["acme", "globex"] {
        let svg = dom
            .split(&format!(
                "<svg class=\"history\" id=\"history-{c}\" data-runs=\"3\""
            ))
            .nth(1)
            .unwrap_or_else(|| panic!("no chart of 3 runs for {c}"))
            .split("</svg>")
            .next()
            .unwrap();
        assert_eq!(svg.matches("<g class=\"run\"").count(), 3);
        assert_eq!(svg.matches("class=\"verify\" data-ok=\"true\"").count(), 3);
    }
    assert!(dom.contains("<tr data-client=\"initech\" data-state=\"pending\">"));
    let globex = dom
        .split("id=\"client-globex\"")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    assert_eq!(globex.matches(" of all (").count(), 4, "{globex}");
    assert_eq!(globex.matches("): clean</td>").count(), 4, "{globex}");
    assert!(dom.contains("data-verifies=\"true\""));
    // Self-contained: nothing is fetched from anywhere.
    for outside in ["<script", "<link", "<img", "src=", "url(", "@import"] {
        assert!(!dom.contains(outside), "{outside}");
    }

    // One client's page holds nothing of the others.
    let own = tmp.path().join("acme.html");
    expect_code(
        &cairn(
            &config,
            &["--repo", "acme", "report", "--html", own.to_str().unwrap()],
        ),
        0,
    );
    tidy(&own);
    let dom = browser_dom(
        &own,
        &artifacts().join("acme.png"),
        &tmp.path().join("chromium"),
    );
    for other in ["globex", "initech"] {
        assert!(
            !dom.to_lowercase().contains(other),
            "{other} on acme's page"
        );
        assert!(
            !fs::read_to_string(&own).unwrap().contains(other),
            "{other} in acme's file"
        );
    }
    assert_eq!(cells(&dom).len(), 4);
    assert!(dom.contains("id=\"history-acme\""));
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
