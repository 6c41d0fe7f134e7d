//! The alert rules cairn ships (`contrib/prometheus/`): Prometheus' own `promtool` checks them
//! and fires each one on its unit-test series; those series carry the names and labels of a
//! metrics file a real `cairn run` wrote, so a renamed metric or label fails here. Also the
//! 3-2-1-1-0 line of `cairn status`.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
    process::Command,
};

use common::*;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/prometheus");

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(RULES)
        .output()
        .expect("promtool is installed (scripts/test-servers/start-all.sh installs it)")
}

/// Metric name -> label names, of `name{a="x",b="y"} value` lines (YAML quoting around them is
/// dropped).
fn label_names<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in lines {
        let Some(start) = line.find("cairn_") else {
            continue;
        };
        let series = &line[start..];
        let Some((name, rest)) = series.split_once('{') else {
            continue;
        };
        let labels = rest.split('}').next().unwrap_or_default();
        out.entry(name.to_string()).or_default().extend(
            labels
                .split(',')
                .filter_map(|l| l.split_once('='))
                .map(|(k, _)| k.to_string()),
        );
    }
    out
}

#[test]
fn the_shipped_rules_pass_promtool_and_fire_on_series_shaped_as_cairn_writes_them() {
    let out = promtool(&["check", "rules", "cairn-rules.yml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("SUCCESS: 7 rules found"),
        "{}",
        text(&out)
    );
    let out = promtool(&["test", "rules", "cairn-rules.test.yml"]);
    assert!(out.status.success(), "{}", text(&out));

    // A real run of a client with a contract end writes every metric the rules read.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.bin"), pseudo_random(1, 100_000)).unwrap();
    let config = tmp.path().join("targets.toml");
    let bucket = lock_bucket(tmp.path(), Some(Some(("COMPLIANCE", 1))));
    fs::write(
        &config,
        format!(
            "{}{}{}[metrics]\npath = \"{}\"\n\n[[repository]]\nname = \"acme\"\n\
             password = \"env:CAIRN_PASSWORD\"\nsources = [\"{}\"]\n\
             contract_end = \"2099-01-31\"\nkeep_after_end = \"1y\"\n",
            local_target("nas", &tmp.path().join("nas")),
            local_target("dc", &tmp.path().join("dc")),
            locked_target("vault", &bucket, "compliance", 1),
            tmp.path().join("cairn.prom").display(),
            src.display()
        ),
    )
    .unwrap();
    expect_code(&cairn(&config, &["run", "--init"]), 0);
    let written = fs::read_to_string(tmp.path().join("cairn-acme.prom")).unwrap();
    let real = label_names(written.lines().filter(|l| !l.starts_with('#')));
    let rules = fs::read_to_string(Path::new(RULES).join("cairn-rules.yml")).unwrap();
    let used: BTreeSet<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("cairn_"))
        .map(str::to_string)
        .collect();
    assert_eq!(used.len(), 7, "{used:?}");
    for name in &used {
        assert!(real.contains_key(name), "{name} is not in:\n{written}");
    }
    let tests = fs::read_to_string(Path::new(RULES).join("cairn-rules.test.yml")).unwrap();
    let series = label_names(tests.lines().filter(|l| l.contains("series:")));
    assert!(!series.is_empty());
    for (name, labels) in &series {
        assert_eq!(Some(labels), real.get(name), "labels of {name}");
    }

    // Two local folders and a bucket whose lock the run proved: the rule is met, the bucket
    // being both the copy off site and the immutable one.
    let out = cairn(&config, &["--repo", "acme", "status"]);
    assert!(
        text(&out).contains(
            "3-2-1-1-0: met (3 copies: nas, dc, vault; 2 kinds; off site: vault; offline: vault; \
             last verification clean)"
        ),
        "{}",
        text(&out)
    );
    assert!(
        written.contains(
            "cairn_target_immutable{repository=\"acme\",target=\"vault\",kind=\"s3\",required=\"true\"} 1"
        ),
        "{written}"
    );
    assert!(
        written.contains("cairn_rule_32110_met{repository=\"acme\"} 1"),
        "{written}"
    );
}
