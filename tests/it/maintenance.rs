//! The guide's weekly and monthly maintenance as shipped: on their
//! Asia/Shanghai schedules, the weekly image update behind an approval with
//! the cleanup after it (fake cluster, cross-checked with kubectl), and the
//! monthly rolling restart with the request-rate report from a real
//! Prometheus posted to the Slack listener.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::fake_kube::{FakeKube, PodState};
use laojun::client::RunRequest;
use laojun::run::RunStatus;
use serde_json::json;

use crate::support::prometheus::start_prometheus;
use crate::support::{self, eventually, wait_run, with_params, Listener, Server};

const OPERATOR: &str = "operator-token-0123456789";

async fn cluster() -> (FakeKube, tempfile::TempDir) {
    let kube = FakeKube::start().await.expect("the fake API server starts");
    kube.set_ready_delay(Duration::from_millis(50));
    let dir = tempfile::tempdir().unwrap();
    kube.write_kubeconfig(&dir.path().join("kubeconfig"), &["local"])
        .unwrap();
    (kube, dir)
}

#[test]
fn the_maintenance_playbooks_are_scheduled_in_beijing_time() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(["schedules", "."])
        .current_dir(support::repo())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let block = |name: &str| -> Vec<String> {
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {text}"));
        vec![lines[at].to_string(), lines[at + 1].to_string()]
    };
    let weekly = block("weekly-maintenance");
    assert!(
        weekly[0].contains(r#"cron "0 3 * * SUN" in Asia/Shanghai"#),
        "{weekly:?}"
    );
    let first = weekly[1]
        .trim()
        .trim_start_matches("next: ")
        .split(", ")
        .next()
        .unwrap()
        .to_string();
    let at = chrono::NaiveDateTime::parse_from_str(first.trim_end_matches(" CST"), "%Y-%m-%d %H:%M").unwrap();
    assert_eq!(
        (at.format("%a %H:%M").to_string(), first.ends_with(" CST")),
        ("Sun 03:00".to_string(), true),
        "{weekly:?}"
    );
    let monthly = block("monthly-maintenance");
    assert!(
        monthly[0].contains(r#"cron "0 4 1 * *" in Asia/Shanghai"#),
        "{monthly:?}"
    );
    assert!(monthly[1].contains("-01 04:00 CST"), "{monthly:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_weekly_image_update_waits_for_an_operator_then_rolls_out_and_cleans_up() {
    let Some(binary) = support::require("kubectl") else {
        return;
    };
    let (kube, dir) = cluster().await;
    let kubeconfig = dir.path().join("kubeconfig");
    kube.add_deployment("prod", "core-services", "taishang-laojun/core-services:1.40.0", 2);
    for minor in 41..=47 {
        kube.set_image(
            "prod",
            "core-services",
            &format!("taishang-laojun/core-services:1.{minor}.0"),
        );
        kube.finish_rollout("prod", "core-services");
    }
    for n in 1..=3 {
        kube.add_pod(
            "prod",
            &format!("db-backup-{n}"),
            &[("job", "backup")],
            PodState::Succeeded,
        );
    }
    let slack = Listener::start().await;
    let (config_path, webhook) = (kubeconfig.clone(), format!("{}/slack", slack.url));
    let server = Server::start_with(move |c| {
        c.kubernetes.kubeconfig = Some(config_path);
        c.slack.webhook_url = Some(webhook);
        c.auth
            .tokens
            .push(serde_yaml::from_str(&format!("{{name: alice, role: operator, token: {OPERATOR}}}")).unwrap());
    })
    .await;
    let c = server.client();
    let image = "taishang-laojun/core-services:1.48.0";
    let id = c
        .start_run("weekly-maintenance", &with_params(json!({"image": image})))
        .await
        .unwrap()
        .id;
    let waiting = wait_run(&c, id, &[RunStatus::AwaitingApproval]).await;
    assert!(
        waiting.steps[0].output.is_null()
            && kube.get("deployments", "prod", "core-services").unwrap()["spec"]["template"]["spec"]["containers"][0]
                ["image"]
                == "taishang-laojun/core-services:1.47.0",
        "nothing changes before the approval"
    );
    // The admin who started it may not approve it; an operator may.
    assert!(c.approve(id).await.is_err(), "self-approval is refused");
    let alice = server.client_as(Some(OPERATOR));
    let decision = alice.approve(id).await.expect("the operator approves");
    assert_eq!(decision.decision, "approved");
    let run = wait_run(&c, id, &[RunStatus::Succeeded, RunStatus::Failed]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");

    let shown = support::kubectl(
        &binary,
        &kubeconfig,
        &[
            "get",
            "deployment/core-services",
            "-n",
            "prod",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert_eq!(shown, image);
    assert_eq!(run.steps[1].output["previous"], "taishang-laojun/core-services:1.47.0");
    // 9 revisions now: the current one and the 5 before it stay, 1-3 went.
    let history = support::kubectl(
        &binary,
        &kubeconfig,
        &["rollout", "history", "deployment/core-services", "-n", "prod"],
    );
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|ch| ch.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["4", "5", "6", "7", "8", "9"], "{history}");
    let finished = support::kubectl(
        &binary,
        &kubeconfig,
        &[
            "get",
            "pods",
            "-n",
            "prod",
            "--field-selector=status.phase=Succeeded",
            "-o",
            "name",
        ],
    );
    assert_eq!(finished.trim(), "", "the finished backup pods are gone");
    let report = eventually("the weekly report", async || {
        slack
            .bodies()
            .iter()
            .filter_map(|b| b["text"].as_str().map(str::to_string))
            .find(|t| t.starts_with(":wrench: weekly maintenance: "))
    })
    .await;
    assert!(
        report.contains(&format!("from taishang-laojun/core-services:1.47.0 to {image}"))
            && report.contains("deleted 3 finished pods (db-backup-1, db-backup-2, db-backup-3) and 3 old ReplicaSets"),
        "{report}"
    );
    server.stop().await;
}

/// An exporter whose `http_requests_total` grows by 30 per scrape.
async fn exporter() -> u16 {
    let total = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let n = total.fetch_add(30, Ordering::SeqCst) + 30;
            async move { format!("# TYPE http_requests_total counter\nhttp_requests_total{{code=\"200\"}} {n}\n") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn the_monthly_security_update_restarts_and_posts_the_months_request_rates() {
    let Some(prometheus) = support::require("prometheus") else {
        return;
    };
    let (kube, dir) = cluster().await;
    kube.add_deployment("prod", "core-services", "taishang-laojun/core-services:1.47.0", 2);
    let before = kube.pods_of("prod", "core-services");
    let target = exporter().await;
    let prom = start_prometheus(
        &prometheus,
        &format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: core-services\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"),
        &[],
    ).await;
    let rate = format!(
        "{}/api/v1/query?query=sum%20by%20(job)%20(rate(http_requests_total%5B30d%5D))",
        prom.url
    );
    eventually("Prometheus to have two samples", async || {
        let v: serde_json::Value = reqwest::get(&rate).await.ok()?.json().await.ok()?;
        v["data"]["result"][0]["value"][1].as_str().map(str::to_string)
    })
    .await;
    let slack = Listener::start().await;
    let (kubeconfig, webhook, prom_url) = (
        dir.path().join("kubeconfig"),
        format!("{}/slack", slack.url),
        prom.url.clone(),
    );
    let server = Server::start_with(move |c| {
        c.kubernetes.kubeconfig = Some(kubeconfig);
        c.slack.webhook_url = Some(webhook);
        c.prometheus.url = Some(prom_url);
    })
    .await;
    let c = server.client();
    let id = c
        .start_run("monthly-maintenance", &RunRequest::default())
        .await
        .unwrap()
        .id;
    let run = wait_run(&c, id, &[RunStatus::Succeeded, RunStatus::Failed]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    let deployment = kube.get("deployments", "prod", "core-services").unwrap();
    assert!(
        deployment["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(),
        "the security update stamps the template as `kubectl rollout restart` does: {deployment}"
    );
    let after = kube.pods_of("prod", "core-services");
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every pod was replaced: {before:?} -> {after:?}"
    );
    let average = run.steps[2].output["samples"][0]["value"]
        .as_f64()
        .expect("an average rate");
    assert!(average > 0.0, "{:#?}", run.steps[2]);
    let post = slack
        .bodies()
        .iter()
        .filter_map(|b| b["text"].as_str().map(str::to_string))
        .find(|t| t.starts_with(":calendar: Monthly maintenance (prod): restarted deployment/core-services in prod"))
        .unwrap_or_else(|| panic!("{:?}", slack.bodies()));
    let line = post
        .lines()
        .find_map(|l| l.strip_prefix("• core-services: "))
        .unwrap_or_else(|| panic!("{post}"));
    let shown: f64 = line
        .split_once(" req/s on average")
        .map_or(line, |(n, _)| n)
        .parse()
        .unwrap_or_else(|_| panic!("{line}"));
    assert!((shown - average).abs() <= 0.005, "{shown} shown for {average}: {post}");
    server.stop().await;
}
