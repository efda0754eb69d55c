//! `laojun check` against the fake cluster enforcing the generated Roles,
//! moto with the zone the catalog names, and listeners for Slack and
//! Prometheus: every check passes (exit 0). Then a cluster that refuses one
//! verb and a stopped moto: each is reported with what to fix (exit 1), and
//! `serve` logs the same failures as warnings at start.

use std::path::Path;
use std::process::Command;

use ::fake_kube::FakeKube;
use serde_json::Value;

use crate::support::moto::{start_moto, zone};
use crate::support::{shipped_root_with, spawn_binary, Listener, TOKEN};

fn check(config: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("laojun runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What `laojun rbac --namespace prod` prints for `root`, as objects.
fn roles(root: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(["rbac", ".", "--namespace", "prod"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success());
    laojun::testing::read_objects(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

/// The rows of a check table: (backend, check, result).
fn rows(table: &str) -> Vec<(String, String, String)> {
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    let (check_at, result_at, detail_at) = (
        header.find("CHECK").unwrap(),
        header.find("RESULT").unwrap(),
        header.find("DETAIL").unwrap(),
    );
    lines
        .filter(|l| l.len() > detail_at)
        .map(|l| {
            (
                l[..check_at].trim().to_string(),
                l[check_at..result_at].trim().to_string(),
                l[result_at..detail_at].trim().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_passes_against_backends_that_allow_everything_and_names_each_that_does_not() {
    let Some(moto) = start_moto().await else { return };
    let (_, zone_id) = zone(&moto.url, "laojun-check").await;
    // The shipped catalog, with the region-outage playbook naming moto's zone.
    let root = shipped_root_with(&[("playbooks/region-outage.yaml", "Z123456789", &zone_id)]);
    let kube = FakeKube::start().await.unwrap();
    let objects = roles(root.path());
    kube.enforce_rbac(&objects);
    let (slack, prometheus) = (Listener::start().await, Listener::start().await);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig, &["ap-east-1"]).unwrap();
    let config = dir.path().join("laojun.yaml");
    let write_config = |aws: &str, slack: &str| {
        std::fs::write(
            &config,
            format!(
                "root: {root}\ndata_dir: {data}\nkubernetes: {{kubeconfig: {kc}, namespaces: [prod]}}\naws: {{endpoint_url: \"{aws}\"}}\n{slack}prometheus: {{url: \"{prom}\"}}\n",
                root = root.path().display(),
                data = dir.path().join("data").display(),
                kc = kubeconfig.display(),
                prom = prometheus.url,
            ),
        )
        .unwrap();
    };
    write_config(&moto.url, &format!("slack: {{webhook_url: \"{}/hook\"}}\n", slack.url));

    let (code, table, stderr) = check(&config);
    assert_eq!(code, 0, "{table}{stderr}");
    let rows = rows(&table);
    let failed: Vec<_> = rows.iter().filter(|r| r.2 != "ok").collect();
    assert!(failed.is_empty(), "{table}");
    let kubernetes: Vec<&str> = rows
        .iter()
        .filter(|r| r.0 == "kubernetes")
        .map(|r| r.1.as_str())
        .collect();
    assert_eq!(
        kubernetes,
        [
            "reachable",
            "prod: delete pods",
            "prod: get pods/log",
            "prod: get services",
            "prod: patch services",
            "prod: get deployments",
            "prod: list deployments",
            "prod: patch deployments",
            "prod: get deployments/scale",
            "prod: patch deployments/scale",
            "prod: delete replicasets",
            "prod: list replicasets",
            "all namespaces: list pods",
        ],
        "{table}"
    );
    assert!(
        rows.contains(&("route53".into(), format!("zone {zone_id}"), "ok".into())),
        "{table}"
    );
    assert!(rows.iter().any(|r| r.0 == "slack" && r.2 == "ok"), "{table}");
    assert!(rows.iter().any(|r| r.0 == "prometheus" && r.2 == "ok"), "{table}");
    assert!(
        table.ends_with(&format!("{} checks, 0 failed\n", rows.len())),
        "{table}"
    );
    assert!(slack.bodies().is_empty(), "nothing was posted to Slack");
    let changes: Vec<_> = kube
        .requests()
        .into_iter()
        .filter(|(m, p, _)| m != "GET" && !p.contains("selfsubjectaccessreviews"))
        .collect();
    assert!(changes.is_empty(), "check changed nothing: {changes:?}");

    // One verb refused, Route53 gone, Slack unset.
    let without_scale: Vec<Value> = objects
        .into_iter()
        .map(|mut o| {
            if let Some(rules) = o["rules"].as_array_mut() {
                for rule in rules.iter_mut().filter(|r| r["resources"][0] == "deployments/scale") {
                    rule["verbs"] = serde_json::json!(["get"]);
                }
            }
            o
        })
        .collect();
    kube.enforce_rbac(&without_scale);
    let stopped = moto.url.clone();
    drop(moto);
    write_config(&stopped, "");
    let (code, table, stderr) = check(&config);
    assert_eq!(code, 1, "{table}{stderr}");
    let rows_now = self::rows(&table);
    let failed: Vec<(String, String)> = rows_now
        .iter()
        .filter(|r| r.2 == "FAIL")
        .map(|r| (r.0.clone(), r.1.clone()))
        .collect();
    assert_eq!(
        failed,
        [
            ("kubernetes".to_string(), "prod: patch deployments/scale".to_string()),
            ("route53".to_string(), format!("zone {zone_id}")),
            ("slack".to_string(), "webhook".to_string()),
        ],
        "{table}"
    );
    let line = |needle: &str| table.lines().find(|l| l.contains(needle)).unwrap().to_string();
    assert!(
        line("patch deployments/scale").contains(
            "not allowed, and region-failover/scale_standby (k8s.scale), scale-out/scale (k8s.scale) need it: apply what `laojun rbac` prints"
        ),
        "{table}"
    );
    assert!(
        line("route53").contains(&format!("cannot reach Route53 at {stopped}")),
        "{table}"
    );
    assert!(line("slack").contains("slack.webhook_url is not set"), "{table}");
    assert!(
        table.ends_with(&format!("{} checks, 3 failed\n", rows_now.len())),
        "{table}"
    );

    // `serve` logs the same at start, as warnings, and serves all the same.
    let laojun = spawn_binary(|c| {
        c.arg("--config").arg(&config).env("LAOJUN_API_TOKEN", TOKEN);
    })
    .await;
    let done = laojun
        .wait_for_log("preflight checks done (`laojun check` shows them all)")
        .await;
    assert_eq!(done["fields"]["failed"], 3, "{done}");
    let warnings = laojun.logged("preflight check failed");
    let warned: Vec<&str> = warnings
        .iter()
        .map(|w| w["fields"]["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        warned,
        ["prod: patch deployments/scale", &format!("zone {zone_id}"), "webhook"]
    );
    assert_eq!(laojun.client(TOKEN).healthz().await.unwrap(), "ok\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_asks_every_context_a_templated_cluster_may_name_and_reports_the_one_it_cannot_reach() {
    // The shipped runbooks take `cluster` from a parameter (one cluster per
    // region), so every context of the kubeconfig is checked.
    let root = shipped_root_with(&[]);
    let kube = FakeKube::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // Closed: nothing listens there.
    let gone_url = format!("http://{}", crate::support::CLOSED);
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- {{name: east, cluster: {{server: \"{}\"}}}}\n- {{name: west, cluster: {{server: \"{gone_url}\"}}}}\n\
             users:\n- {{name: u, user: {{}}}}\ncontexts:\n- {{name: ap-east-1, context: {{cluster: east, user: u}}}}\n- {{name: ap-southeast-1, context: {{cluster: west, user: u}}}}\n\
             current-context: ap-east-1\n",
            kube.url()
        ),
    )
    .unwrap();
    let config = dir.path().join("laojun.yaml");
    std::fs::write(
        &config,
        format!(
            "root: {}\nkubernetes: {{kubeconfig: {}, namespaces: [prod]}}\n",
            root.path().display(),
            kubeconfig.display()
        ),
    )
    .unwrap();
    let (code, table, stderr) = check(&config);
    assert_eq!(code, 1, "{table}{stderr}");
    let rows = rows(&table);
    let kubernetes: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.0 == "kubernetes")
        .map(|r| (r.1.as_str(), r.2.as_str()))
        .collect();
    assert_eq!(kubernetes[0], ("reachable", "ok"), "{table}");
    assert!(kubernetes[1..13].iter().all(|(_, result)| *result == "ok"), "{table}");
    assert_eq!(kubernetes[13..], [("ap-southeast-1: reachable", "FAIL")], "{table}");
    let line = table.lines().find(|l| l.contains("ap-southeast-1: reachable")).unwrap();
    assert!(
        line.contains("Connection refused"),
        "says why it could not reach it: {line}"
    );
}
