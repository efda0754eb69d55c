//! The reads an assessment makes and the guide's cleanup, against the fake
//! cluster and cross-checked with kubectl: `k8s.pods` (what `kubectl get
//! pods | grep -v Running` shows), `k8s.logs` (what `kubectl logs -l ...
//! --since=10m | grep` finds, secrets redacted), `k8s.cleanup` (finished
//! pods and old ReplicaSets, within `max`, dry run first); and the shipped
//! HighCPUUsage playbook assessing, scaling out and verifying against a
//! real Prometheus.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::fake_kube::{FakeKube, PodState};
use laojun::client::RunRequest;
use laojun::run::RunStatus;
use serde_json::json;

use crate::support::prometheus::start_prometheus;
use crate::support::{self, eventually, root_with, run_to_end, wait_run, with_params, Server};

const LOOK: &str = r#"
name: look
params:
  namespace: string
  expect: {type: string, default: ""}
steps:
  - id: pods
    action: k8s.pods
    with: {namespace: "{{params.namespace}}", expect: "{{params.expect}}"}
"#;

const GREP: &str = r#"
name: grep
params:
  since: {type: int, default: 600}
steps:
  - id: errors
    action: k8s.logs
    with: {namespace: prod, deployment: api-gateway, since_secs: "{{params.since}}", regex: '\s5\d\d(\s|$)', max_lines: 3}
"#;

const TIDY: &str = r#"
name: tidy
steps:
  - id: cleanup
    action: k8s.cleanup
    with: {namespace: prod, keep_revisions: 2, max: 4}
"#;

async fn cluster() -> (FakeKube, tempfile::TempDir) {
    let kube = FakeKube::start().await.expect("the fake API server starts");
    kube.set_ready_delay(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    kube.write_kubeconfig(&dir.path().join("kubeconfig"), &["local"])
        .unwrap();
    (kube, dir)
}

async fn server(root: &Path, kubeconfig: PathBuf) -> Server {
    let root = root.to_path_buf();
    Server::start_with(move |c| {
        c.root = root;
        c.kubernetes.kubeconfig = Some(kubeconfig);
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_pods_counts_by_phase_and_names_the_pods_kubectl_shows_as_not_running() {
    let Some(binary) = support::require("kubectl") else {
        return;
    };
    let (kube, dir) = cluster().await;
    let kubeconfig = dir.path().join("kubeconfig");
    kube.add_deployment("prod", "api-gateway", "gw:2.3", 3);
    kube.add_deployment("payments", "ledger", "ledger:7", 1);
    let gateway = kube.pods_of("prod", "api-gateway");
    let ledger = kube.pods_of("payments", "ledger");
    kube.set_pod_state(
        "prod",
        &gateway[2],
        PodState::Waiting {
            reason: "CrashLoopBackOff",
            restarts: 7,
        },
    );
    kube.set_pod_state(
        "payments",
        &ledger[0],
        PodState::Pending {
            reason: "ImagePullBackOff",
        },
    );
    kube.add_pod("prod", "nightly-report-1", &[("job", "report")], PodState::Succeeded);
    let root = root_with(&[("runbooks/look.yaml", LOOK)]);
    let server = server(root.path(), kubeconfig.clone()).await;
    let c = server.client();

    let run = run_to_end(&c, "look", &with_params(json!({"namespace": "*"}))).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    let out = &run.steps[0].output;
    assert_eq!(out["total"], 5);
    assert_eq!(out["by_phase"], json!({"Pending": 1, "Running": 3, "Succeeded": 1}));
    assert_eq!(out["value"], 2, "a finished Job's pod is not a problem: {out}");
    let unhealthy: Vec<(String, String)> = out["unhealthy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        unhealthy,
        [
            (ledger[0].clone(), "ImagePullBackOff".to_string()),
            (gateway[2].clone(), "CrashLoopBackOff".to_string()),
        ]
    );
    assert_eq!(out["unhealthy"][1]["restarts"], 7);
    assert_eq!(out["unhealthy"][1]["ready"], "0/1");
    // kubectl shows the same two pods with the same reasons.
    let table = support::kubectl(&binary, &kubeconfig, &["get", "pods", "-A", "--no-headers"]);
    for (name, reason) in &unhealthy {
        let row = table
            .lines()
            .find(|l| l.contains(name.as_str()))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(row.contains(reason.as_str()), "{row}");
    }
    let summary = run.steps[0].summary.as_deref().unwrap();
    assert!(
        summary.starts_with("5 pods in all namespaces (1 Pending, 3 Running, 1 Succeeded); 2 unhealthy: "),
        "{summary}"
    );

    // With `expect`, the step fails naming what it saw.
    let strict = run_to_end(&c, "look", &with_params(json!({"namespace": "prod", "expect": "== 0"}))).await;
    assert_eq!(strict.status, RunStatus::Failed);
    let error = strict.steps[0].error.as_deref().unwrap();
    assert!(
        error.contains(&format!("1 unhealthy: {} CrashLoopBackOff; not == 0", gateway[2])),
        "{error}"
    );
    // A read runs in a dry run too, and sees the same.
    let dry = run_to_end(
        &c,
        "look",
        &RunRequest {
            dry_run: true,
            ..with_params(json!({"namespace": "payments"}))
        },
    )
    .await;
    assert_eq!(dry.steps[0].output["value"], 1, "{dry:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_logs_counts_the_lines_grep_finds_keeps_the_last_and_redacts_secrets() {
    let Some(binary) = support::require("kubectl") else {
        return;
    };
    let (kube, dir) = cluster().await;
    let kubeconfig = dir.path().join("kubeconfig");
    kube.add_deployment("prod", "api-gateway", "gw:2.3", 3);
    let pods = kube.pods_of("prod", "api-gateway");
    let old = chrono::Utc::now() - chrono::Duration::minutes(30);
    kube.append_logs_at("prod", &pods[0], None, &["GET /old 500 9ms"], old);
    kube.append_logs(
        "prod",
        &pods[0],
        None,
        &[
            "GET /health 200 1ms",
            "POST /pay 502 30ms",
            "GET /cart 503 12ms token=abc123",
            "GET /5000 200 2ms",
        ],
    );
    kube.append_logs(
        "prod",
        &pods[1],
        None,
        &["POST /login 500 4ms password=hunter2", "GET /a 504 3000ms"],
    );
    // A pod still starting has no log yet: it is skipped, not fatal.
    kube.set_pod_state(
        "prod",
        &pods[2],
        PodState::Pending {
            reason: "ContainerCreating",
        },
    );
    let root = root_with(&[("runbooks/grep.yaml", GREP)]);
    let server = server(root.path(), kubeconfig.clone()).await;
    let c = server.client();

    let run = run_to_end(&c, "grep", &RunRequest::default()).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    let out = &run.steps[0].output;
    // The guide's pipeline, with the same pattern, counts the same lines.
    let text = support::kubectl(
        &binary,
        &kubeconfig,
        &[
            "logs",
            "-n",
            "prod",
            "-l",
            "app=api-gateway",
            "--since=10m",
            "--ignore-errors",
        ],
    );
    let pattern = regex::Regex::new(r"\s5\d\d(\s|$)").unwrap();
    let by_grep = text.lines().filter(|l| pattern.is_match(l)).count();
    assert_eq!(by_grep, 4, "{text}");
    assert_eq!(out["value"], by_grep, "{out}");
    assert_eq!(out["lines_read"], 6, "the line from 30 minutes ago is not read: {out}");
    assert_eq!(out["pods"], 2);
    assert_eq!(out["skipped"][0]["pod"], pods[2].as_str());
    assert_eq!(
        out["lines"],
        json!([
            format!("{}: GET /cart 503 12ms token=[REDACTED]", pods[0]),
            format!("{}: POST /login 500 4ms password=[REDACTED]", pods[1]),
            format!("{}: GET /a 504 3000ms", pods[1]),
        ]),
        "the last three matches, secrets redacted"
    );
    assert_eq!(out["truncated"], true);
    assert!(!out.to_string().contains("hunter2") && !out.to_string().contains("abc123"));
    let summary = run.steps[0].summary.as_deref().unwrap();
    assert!(summary.starts_with("4 of 6 lines matched"), "{summary}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_cleanup_deletes_finished_pods_and_replicasets_beyond_the_kept_revisions_within_max() {
    let Some(binary) = support::require("kubectl") else {
        return;
    };
    let (kube, dir) = cluster().await;
    let kubeconfig = dir.path().join("kubeconfig");
    kube.add_deployment("prod", "web", "web:1", 2);
    for v in 2..=5 {
        kube.set_image("prod", "web", &format!("web:{v}"));
    }
    for n in 1..=3 {
        kube.add_pod("prod", &format!("backup-{n}"), &[], PodState::Succeeded);
    }
    kube.add_pod("prod", "backup-failed", &[], PodState::Failed { reason: "Error" });
    let sets_before = kube.list("replicasets", "prod").len();
    assert_eq!(sets_before, 5);
    let root = root_with(&[("runbooks/tidy.yaml", TIDY)]);
    let server = server(root.path(), kubeconfig.clone()).await;
    let c = server.client();

    // The dry run lists what would go and deletes nothing: each delete went
    // to the server as a dry run (kube-rs sends dryRun in the DeleteOptions body).
    kube.clear_requests();
    let dry = run_to_end(
        &c,
        "tidy",
        &RunRequest {
            dry_run: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(dry.status, RunStatus::Succeeded, "{dry:#?}");
    let out = &dry.steps[0].output;
    assert_eq!(out["deleted"], 4);
    assert_eq!(out["pods"], json!(["backup-1", "backup-2"]));
    assert_eq!(out["remaining"], 1);
    assert!(dry.steps[0]
        .summary
        .as_deref()
        .unwrap()
        .starts_with("would delete 2 finished pods"));
    assert_eq!(kube.list("replicasets", "prod").len(), 5);
    assert_eq!(kube.list("pods", "prod").len(), 6);
    let deletes: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|(m, _, _)| m == "DELETE")
        .map(|(_, p, _)| p)
        .collect();
    assert_eq!(deletes.len(), 4, "{deletes:?}");

    let real = run_to_end(&c, "tidy", &RunRequest::default()).await;
    assert_eq!(
        real.steps[0].output, dry.steps[0].output,
        "the dry run said exactly what happened"
    );
    // Revisions 1 and 2 went; 3 and 4 stay for rollback, 5 is current.
    let history = support::kubectl(
        &binary,
        &kubeconfig,
        &["rollout", "history", "deployment/web", "-n", "prod"],
    );
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|ch| ch.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["3", "4", "5"], "{history}");
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
    assert_eq!(finished.trim(), "pod/backup-3", "max 4: one is left for the next run");
    assert!(
        kube.get("pods", "prod", "backup-failed").is_some(),
        "a failed pod is kept for its logs"
    );
    assert_eq!(kube.pods_of("prod", "web").len(), 2, "the running pods are untouched");

    let again = run_to_end(&c, "tidy", &RunRequest::default()).await;
    assert_eq!(again.steps[0].output["pods"], json!(["backup-3"]));
    assert_eq!(again.steps[0].output["remaining"], 0);
    support::kubectl(
        &binary,
        &kubeconfig,
        &["rollout", "undo", "deployment/web", "-n", "prod", "--to-revision=3"],
    );
    assert_eq!(
        kube.get("deployments", "prod", "web").unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:3",
        "the kept revisions still roll back"
    );
    server.stop().await;
}

/// An exporter serving `cpu_usage_percent{instance="web-1"}` at `percent`.
async fn cpu_exporter(percent: Arc<AtomicU64>) -> u16 {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let v = percent.load(Ordering::SeqCst);
            async move { format!("# TYPE cpu_usage_percent gauge\ncpu_usage_percent{{instance=\"web-1\"}} {v}\n") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_high_cpu_alert_is_assessed_scaled_out_and_verified_back_under_80_percent() {
    let Some(prometheus) = support::require("prometheus") else {
        return;
    };
    let (kube, dir) = cluster().await;
    kube.add_deployment("prod", "checkout", "registry.example/checkout:v2", 3);
    let percent = Arc::new(AtomicU64::new(95));
    let target = cpu_exporter(percent.clone()).await;
    // honor_labels keeps the exporter's `instance`, as a node exporter's relabelling would.
    let prom = start_prometheus(
        &prometheus,
        &format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: nodes\n    honor_labels: true\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"),
        &[],
    ).await;
    let query = format!("{}/api/v1/query?query=cpu_usage_percent", prom.url);
    eventually("Prometheus to scrape the CPU", async || {
        let v: serde_json::Value = reqwest::get(&query).await.ok()?.json().await.ok()?;
        (v["data"]["result"][0]["value"][1] == "95").then_some(())
    })
    .await;
    let root = support::shipped_root_with(&[(
        "runbooks/verify-recovery.yaml",
        "retries: {attempts: 20, backoff_secs: 30, max_backoff_secs: 30}",
        "retries: {attempts: 60, backoff_secs: 0.3, max_backoff_secs: 0.3}",
    )]);
    let (root_path, kubeconfig, prom_url) = (
        root.path().to_path_buf(),
        dir.path().join("kubeconfig"),
        prom.url.clone(),
    );
    let server = Server::start_with(move |c| {
        c.root = root_path;
        c.kubernetes.kubeconfig = Some(kubeconfig);
        c.prometheus.url = Some(prom_url);
    })
    .await;
    let c = server.client();
    c.post_alerts(support::webhook_body([support::Alert::firing(json!({
        "alertname": "HighCPUUsage", "namespace": "prod", "deployment": "checkout", "instance": "web-1", "severity": "warning"
    }))
    .annotations(json!({"summary": "High CPU usage on web-1"}))
    .starts_at(&chrono::Utc::now().to_rfc3339())]))
    .await
    .unwrap();
    let ended = [RunStatus::Succeeded, RunStatus::Failed];
    let assess = wait_run(&c, "RUN-1", &ended).await;
    assert_eq!(
        (assess.runbook.as_str(), assess.status),
        ("assess-impact", RunStatus::Succeeded)
    );
    let scale = wait_run(&c, "RUN-2", &ended).await;
    assert_eq!(
        (scale.runbook.as_str(), scale.status),
        ("scale-out", RunStatus::Succeeded),
        "{scale:#?}"
    );
    assert_eq!(
        kube.get("deployments", "prod", "checkout").unwrap()["spec"]["replicas"],
        5
    );
    // A snapshot between attempts: a later read may catch the next attempt
    // running, its error not yet set.
    let polling = eventually("the CPU check to miss", async || {
        let run = c.run("RUN-3").await.ok()?;
        let step = run.steps.first()?;
        (step.attempts >= 2 && step.error.is_some()).then_some(run)
    })
    .await;
    assert_eq!(polling.status, RunStatus::Running);
    assert!(
        polling.steps[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with(r#"`max(cpu_usage_percent{instance="web-1"})` = 95, not <= 80"#),
        "{polling:#?}"
    );
    // The new replicas take the load.
    percent.store(60, Ordering::SeqCst);
    let verify = wait_run(&c, "RUN-3", &ended).await;
    assert_eq!(verify.status, RunStatus::Succeeded, "{verify:#?}");
    assert_eq!(verify.steps[0].output["value"], 60.0);
    server.stop().await;
}
