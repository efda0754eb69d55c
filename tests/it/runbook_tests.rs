//! `laojun test` as a user runs it: the shipped cases pass; a broken copy
//! of a runbook (a removed step, a wrong selector) or a wrong expectation
//! makes exactly the case that should fail fail, with `path:line:col`; waits
//! and approval TTLs pass on the test's clock; cases share nothing; JUnit
//! and JSON come out for CI; `validate` checks test files too.

use std::path::Path;
use std::process::{Command, Output};

use crate::support;

fn laojun(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("laojun runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A copy of the shipped catalog and its cases, with `(file, from, to)` edits.
fn shipped_copy(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = support::shipped_root_with(edits_outside_tests(edits).as_slice());
    std::fs::create_dir_all(dir.path().join("runbook-tests")).unwrap();
    for entry in std::fs::read_dir(support::repo().join("runbook-tests")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join("runbook-tests").join(path.file_name().unwrap())).unwrap();
    }
    for (file, from, to) in edits.iter().filter(|(f, _, _)| f.starts_with("runbook-tests/")) {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} no longer contains {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
    dir
}

fn edits_outside_tests<'a>(edits: &[(&'a str, &'a str, &'a str)]) -> Vec<(&'a str, &'a str, &'a str)> {
    edits
        .iter()
        .copied()
        .filter(|(f, _, _)| !f.starts_with("runbook-tests/"))
        .collect()
}

/// The names of the cases that failed, from `--output json`.
fn failed(out: &Output) -> Vec<String> {
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)));
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_shipped_cases_pass() {
    let out = laojun(support::repo(), &["test", "."]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases = text.lines().filter(|l| l.starts_with("PASS  ")).count();
    assert_eq!(cases, 18, "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("18 cases: 18 passed, 0 failed in "),
        "{text}"
    );
    // The figure for the closing note, not an assertion.
    println!("{text}");
}

#[test]
fn a_wrong_expectation_fails_that_case_alone_and_says_where_and_what_happened() {
    let root = shipped_copy(&[(
        "runbook-tests/service-down.yaml",
        r#"deployments: [{namespace: prod, name: core-services, image: "core:v1"}]"#,
        r#"deployments: [{namespace: prod, name: core-services, image: "core:v9"}]"#,
    )]);
    let out = laojun(root.path(), &["test", "."]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let failing: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL  ")).collect();
    assert_eq!(failing.len(), 1, "{text}");
    assert!(failing[0].contains("service-down-rolls-back-and-verifies"), "{text}");
    assert!(
        text.contains("runbook-tests/service-down.yaml:25:21: expected deployment prod/core-services on image core:v9; got core:v1"),
        "{text}"
    );
    assert!(
        text.contains("RUN-2 step `rollback` (k8s.rollback) succeeded"),
        "the timeline of a failing case is printed: {text}"
    );
}

#[test]
fn a_removed_step_fails_the_case_that_expects_it() {
    let rollback = std::fs::read_to_string(support::repo().join("runbooks/rollback-deployment.yaml")).unwrap();
    let start = rollback.find("  - id: verify\n").unwrap();
    let end = rollback.find("  - id: report\n").unwrap();
    let removed = &rollback[start..end];
    let root = shipped_copy(&[("runbooks/rollback-deployment.yaml", removed, "")]);
    let out = laojun(root.path(), &["test", ".", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(failed(&out), ["service-down-rolls-back-and-verifies"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let case = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["passed"] == false)
        .unwrap();
    assert_eq!(case["failures"][0]["at"], "runbook-tests/service-down.yaml:23:98");
    assert_eq!(case["failures"][0]["expected"], "step `verify` succeeded");
    assert!(
        case["failures"][0]["got"]
            .as_str()
            .unwrap()
            .starts_with("no run had a step `verify`"),
        "{case}"
    );
}

#[test]
fn a_wrong_selector_fails_the_traffic_switch_case() {
    let root = shipped_copy(&[(
        "runbooks/switch-traffic-to-stable.yaml",
        r#"selector: {version: "{{params.version}}"}"#,
        r#"selector: {track: "{{params.version}}"}"#,
    )]);
    let out = laojun(root.path(), &["test", ".", "--output", "junit"]);
    assert_eq!(out.status.code(), Some(1));
    let xml = stdout(&out);
    assert!(
        xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"laojun test\" tests=\"18\" failures=\"1\""
        ),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 18, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    let failure = xml.lines().find(|l| l.contains("<failure ")).unwrap();
    assert!(
        failure.contains("expected service prod/core-services selecting {&quot;app&quot;:&quot;core-services&quot;,&quot;version&quot;:&quot;stable&quot;}"),
        "{failure}"
    );
    let case = xml
        .lines()
        .rev()
        .skip_while(|l| !l.contains("<failure "))
        .find(|l| l.contains("<testcase "))
        .unwrap();
    assert!(case.contains("name=\"switch-traffic-to-stable-by-hand\""), "{case}");
}

const SLOW: &str = r#"
name: slow
steps:
  - id: nap
    action: wait
    with: {secs: 600}
  - id: ask
    action: approval
    with: {message: "go on?", ttl_secs: 900, on_timeout: approve}
"#;

const SCALE: &str = r#"
name: grow
steps:
  - id: grow
    action: k8s.scale
    with: {namespace: prod, deployment: web, replicas: 7}
"#;

const CASES: &str = r#"
- name: a-long-wait-and-an-unanswered-approval
  run: {runbook: slow}
  expect:
    steps: {nap: succeeded, ask: succeeded}

- name: first-grows-the-deployment
  run: {runbook: grow}
  cluster:
    deployments: [{namespace: prod, name: web, revisions: ["web:1"], replicas: 3}]
  expect:
    cluster: {deployments: [{namespace: prod, name: web, replicas: 7}]}

- name: second-starts-from-its-own-seed
  run: {runbook: slow}
  cluster:
    deployments: [{namespace: prod, name: web, revisions: ["web:1"], replicas: 3}]
  expect:
    cluster: {deployments: [{namespace: prod, name: web, replicas: 3}]}
"#;

#[test]
fn waits_and_ttls_pass_on_the_tests_clock_and_cases_share_nothing() {
    let root = support::root_with(&[("runbooks/slow.yaml", SLOW), ("runbooks/grow.yaml", SCALE)]);
    std::fs::create_dir_all(root.path().join("runbook-tests")).unwrap();
    std::fs::write(root.path().join("runbook-tests/cases.yaml"), CASES).unwrap();
    let out = laojun(root.path(), &["test", ".", "--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], 3);
    // 600 s of waiting and a 900 s TTL, in this much real time (a figure, not a check):
    println!("slow case took {} s", report["cases"][0]["seconds"]);
    let filtered = laojun(root.path(), &["test", ".", "--filter", "second"]);
    assert!(
        stdout(&filtered).starts_with("PASS  second-starts-from-its-own-seed"),
        "{}",
        stdout(&filtered)
    );
    assert_eq!(stdout(&filtered).lines().count(), 2);
    let nothing = laojun(root.path(), &["test", ".", "--filter", "nope"]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("no case name contains \"nope\""));
}

const BROKEN_CASES: &str = r#"
- name: typo
  alert: {labels: {alertname: ServiceDown}, severity: P0}
  expect:
    runs: [{runbook: rollback-deploymnet, status: succeeded}]
- name: missing-fixture
  alert: {file: fixtures/nowhere.json}
  expect:
    incident: {status: resolvd}
"#;

#[test]
fn validate_checks_test_files_and_test_refuses_to_run_broken_ones() {
    let root = shipped_copy(&[]);
    std::fs::write(root.path().join("runbook-tests/broken.yaml"), BROKEN_CASES).unwrap();
    let out = laojun(root.path(), &["validate", "."]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "runbook-tests/broken.yaml:3:45: unknown key `severity` in `alert` (allowed: `file`, `labels`, `annotations` or `status`)",
            "runbook-tests/broken.yaml:5:22: runbook `rollback-deploymnet` does not exist (did you mean `rollback-deployment`?); the runbooks are `assess-impact`, `daily-health-check`, `monthly-maintenance`, `region-failover`, `restart-deployment`, `rollback-deployment`, `scale-out`, `slack-status-update`, `switch-traffic-to-stable`, `verify-recovery` or `weekly-maintenance`",
            "runbook-tests/broken.yaml:7:17: alert file runbook-tests/fixtures/nowhere.json: No such file or directory (os error 2)",
            "runbook-tests/broken.yaml:9:24: `status` is `resolvd`; write `open`, `mitigated`, `resolved` or `none` (`none`: no incident opens)",
        ],
        "{text}"
    );
    let test = laojun(root.path(), &["test", "."]);
    assert_eq!(test.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&test.stderr).contains("`laojun validate .` lists the same"));
}
