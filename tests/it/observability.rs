//! laojun watched as operators watch it: the alert rules for laojun itself
//! pass `promtool check rules` and their unit tests (`promtool test
//! rules`), and a real Prometheus scraping a real `laojun serve` that has
//! handled alerts, runs that succeeded and failed, an ack, an approval and
//! a pause answers every query of the shipped Grafana dashboard with data.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::prometheus::start_prometheus;
use crate::support::{self, eventually, root_with, spawn_binary, webhook_body, Alert, Listener, TOKEN};

fn deploy(path: &str) -> std::path::PathBuf {
    support::repo().join("deploy").join(path)
}

#[test]
fn the_alert_rules_for_laojun_pass_promtool_and_their_unit_tests() {
    let Some(promtool) = support::require("promtool") else {
        return;
    };
    for args in [
        ["check", "rules", "laojun-rules.yml"],
        ["test", "rules", "laojun-rules.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(deploy("prometheus"))
            .output()
            .expect("promtool runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {}:\n{said}", args.join(" "));
        assert!(said.contains("SUCCESS"), "{said}");
    }
    // Every rule has a unit test.
    let rules: Value =
        serde_yaml::from_str(&std::fs::read_to_string(deploy("prometheus/laojun-rules.yml")).unwrap()).unwrap();
    let tests = std::fs::read_to_string(deploy("prometheus/laojun-rules.test.yml")).unwrap();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let name = rule["alert"].as_str().unwrap();
        assert!(tests.contains(&format!("alertname: {name}")), "{name} has no unit test");
    }
}

/// Every `expr` of every panel of the shipped dashboard, with its title.
fn panel_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(deploy("grafana/laojun.json")).unwrap())
        .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a prometheus expr");
            // The dashboard's own variable: every laojun.
            queries.push((
                panel["title"].as_str().unwrap().to_string(),
                expr.replace("$instance", ".*"),
            ));
        }
    }
    queries
}

const FIX: &str = "name: fix\nmitigates: true\nsteps:\n  - id: act\n    action: wait\n    with: {secs: 0}\n";
const BREAK: &str =
    "name: break\nsteps:\n  - id: check\n    action: script\n    with: {source: 'throw \"the check failed\"'}\n";
const ASK: &str =
    "name: ask\nsteps:\n  - id: approve\n    action: approval\n    with: {message: \"fail over?\", ttl_secs: 3600}\n";

fn playbook(name: &str, alertname: &str, runbook: &str) -> String {
    format!("name: {name}\ntrigger: {{alerts: ['alertname=\"{alertname}\"']}}\nseverity: P1\nrunbooks:\n  - runbook: {runbook}\n")
}

fn alert(alertname: &str, firing: bool) -> Vec<u8> {
    let labels = json!({"alertname": alertname});
    let alert = if firing {
        Alert::firing(labels)
    } else {
        Alert::resolved(labels).ends_at("2026-12-01T10:00:37Z")
    };
    let fingerprint: String = alertname.bytes().map(|b| format!("{b:02x}")).collect();
    webhook_body([alert
        .starts_at("2026-12-01T10:00:00Z")
        .fingerprint(&format!("{fingerprint:0>16}"))])
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_returns_data_from_a_real_prometheus_scraping_laojun() {
    let Some(prometheus) = support::require("prometheus") else {
        return;
    };
    let (boom, flaky, gate) = (
        playbook("boom", "Boom", "fix"),
        playbook("flaky", "Flaky", "break"),
        playbook("gate", "Gate", "ask"),
    );
    let root = root_with(&[
        ("runbooks/fix.yaml", FIX),
        ("runbooks/break.yaml", BREAK),
        ("runbooks/ask.yaml", ASK),
        ("playbooks/boom.yaml", &boom),
        ("playbooks/flaky.yaml", &flaky),
        ("playbooks/gate.yaml", &gate),
    ]);
    let slack = Listener::start().await;
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("laojun.yaml");
    std::fs::write(&config, format!("slack: {{webhook_url: '{}/slack'}}\n", slack.url)).unwrap();
    let laojun = spawn_binary(|c| {
        c.arg("--root")
            .arg(root.path())
            .arg("--data-dir")
            .arg(work.path().join("data"))
            .arg("--config")
            .arg(&config)
            .env("LAOJUN_API_TOKEN", TOKEN);
    })
    .await;
    let target = laojun.url.trim_start_matches("http://").to_string();

    let prom = start_prometheus(
        &prometheus,
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}']\nscrape_configs:\n  - job_name: laojun\n    static_configs: [{{targets: ['{target}']}}]\n",
            deploy("prometheus/laojun-rules.yml").display()
        ),
        &[],
    ).await;
    let http = reqwest::Client::new();
    let query = async |expr: &str| -> Option<Value> {
        let answer = http
            .get(format!("{}/api/v1/query", prom.url))
            .query(&[("query", expr)])
            .send()
            .await
            .ok()?;
        answer.json::<Value>().await.ok()
    };
    // Scraped before anything happens, so increases show from zero.
    eventually("Prometheus to scrape laojun", async || {
        let v = query("up{job=\"laojun\"}").await?;
        (v["data"]["result"][0]["value"][1] == "1").then_some(())
    })
    .await;

    let c = laojun.client(TOKEN);
    c.post_alerts(alert("Boom", true)).await.unwrap();
    c.post_alerts(alert("Flaky", true)).await.unwrap();
    c.post_alerts(alert("Gate", true)).await.unwrap();
    eventually(
        "the fix to mitigate INC-1, the check to fail and the approval to wait",
        async || {
            let mitigated = c.incident("INC-1").await.ok()?.incident.mitigated_at.is_some();
            let runs = c.runs(&Default::default()).await.ok()?;
            let failed = runs
                .iter()
                .any(|r| r.runbook == "break" && r.status == laojun::run::RunStatus::Failed);
            let waiting = c.approvals().await.ok()?.len() == 1;
            (mitigated && failed && waiting).then_some(())
        },
    )
    .await;
    c.ack("INC-1").await.unwrap();
    c.pause(Some("flaky"), Some("the check is broken")).await.unwrap();
    c.post_alerts(alert("Boom", false)).await.unwrap();
    eventually("Slack to hear of the opened incidents", async || {
        (slack.bodies().len() >= 3).then_some(())
    })
    .await;

    // Every query of every panel is valid and, once Prometheus has scraped
    // what laojun did, has a number to show.
    let queries = panel_queries();
    assert!(queries.len() >= 15, "{queries:?}");
    let mut report = Vec::new();
    for (title, expr) in &queries {
        let series = eventually(&format!("data for panel {title:?}: {expr}"), async || {
            let v = query(expr).await?;
            assert_eq!(
                v["status"], "success",
                "panel {title:?}: {expr} is not a valid query: {v}"
            );
            let result = v["data"]["result"].as_array()?.clone();
            let numbers = result
                .iter()
                .filter(|s| {
                    s["value"][1]
                        .as_str()
                        .and_then(|n| n.parse::<f64>().ok())
                        .is_some_and(f64::is_finite)
                })
                .count();
            (numbers > 0).then_some(result)
        })
        .await;
        report.push(format!("{title}: {} series", series.len()));
    }
    // What a person looking at the dashboard sees.
    let value = async |expr: &str| -> f64 {
        let v = query(expr).await.unwrap();
        v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or("nan")
            .parse()
            .unwrap()
    };
    eventually("the runs panel to show a success and a failure", async || {
        let ok = value("sum(increase(laojun_runs_total{status=\"succeeded\"}[1h]))").await;
        let failed = value("sum(increase(laojun_runs_total{status=\"failed\"}[1h]))").await;
        (ok > 0.0 && failed > 0.0).then_some(())
    })
    .await;
    assert_eq!(value("laojun_approvals_pending").await, 1.0);
    assert_eq!(value("laojun_automation_paused{playbook=\"flaky\"}").await, 1.0);
    assert_eq!(value("laojun_automation_paused{playbook=\"\"}").await, 0.0);
    assert_eq!(
        value("laojun_incident_time_to_ack_seconds_count{severity=\"P1\"}").await,
        1.0
    );
    assert_eq!(
        value("laojun_incident_time_to_resolve_seconds_count{severity=\"P1\"}").await,
        1.0
    );
    // The rules load in that Prometheus too.
    let rules = query("ALERTS").await.unwrap();
    assert_eq!(rules["status"], "success");
    let loaded: Value = http
        .get(format!("{}/api/v1/rules", prom.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let healthy = loaded["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["health"] != "err")
        .count();
    assert_eq!(healthy, 5, "{loaded}");
    println!("{}", report.join("\n"));
}
