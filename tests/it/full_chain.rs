//! The whole chain on loopback, with real Debian `prometheus` and
//! `prometheus-alertmanager`: Prometheus scrapes a small target with the ops
//! guide's ServiceDown rule; the target fails; the alert goes Prometheus →
//! AlertManager → laojun; the shipped ServiceDown playbook assesses the
//! impact (pods, the gateway's 5xx lines, the error rate, as evidence),
//! rolls the deployment back on the fake Kubernetes API, tells the Slack
//! listener, and polls Prometheus until the target is up again; the alert
//! resolves, and the incident's postmortem file has the timeline, the
//! evidence, the runs' steps and the computed durations.

use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::alertmanager::spawn_alertmanager;
use crate::support::prometheus::start_prometheus;
use crate::support::{self, eventually, Listener, Server, TOKEN};
use fake_kube::{FakeKube, PodState};
use laojun::incident::EventKind;
use laojun::incident::Status;
use laojun::run::RunStatus;
use laojun::severity::Severity;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scrape target whose /metrics fails while `down` is set; each scrape
/// counts nine more requests answered 200 and one answered 503, so the
/// error rate is 0.1.
async fn target(down: Arc<AtomicBool>) -> u16 {
    let scrapes = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (down, scrapes) = (down.clone(), scrapes.clone());
            async move {
                if down.load(Ordering::SeqCst) {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down\n".to_string());
                }
                let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
                let body = format!(
                    "# TYPE http_requests_total counter\nhttp_requests_total{{code=\"200\"}} {}\nhttp_requests_total{{code=\"503\"}} {n}\n",
                    9 * n
                );
                (axum::http::StatusCode::OK, body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prometheus_service_down_alert_is_remediated_resolved_and_written_up() {
    let (Some(prometheus), Some(alertmanager)) = (
        support::require("prometheus"),
        support::require("prometheus-alertmanager"),
    ) else {
        return;
    };
    let kube = FakeKube::start().await.unwrap();
    kube.set_ready_delay(Duration::from_millis(100));
    kube.add_deployment("prod", "checkout", "registry.example/checkout:v1", 3);
    kube.set_image("prod", "checkout", "registry.example/checkout:v2");
    // The gateway users reach checkout through: one pod crash-looping, 5xx in its logs.
    kube.add_deployment("prod", "api-gateway", "registry.example/gateway:3.1", 2);
    let gateway = kube.pods_of("prod", "api-gateway");
    kube.append_logs(
        "prod",
        &gateway[0],
        None,
        &[
            "GET /checkout 200 8ms",
            "POST /checkout/pay 503 2ms upstream=checkout",
            "GET /cart 200 3ms",
        ],
    );
    kube.set_pod_state(
        "prod",
        &gateway[1],
        PodState::Waiting {
            reason: "CrashLoopBackOff",
            restarts: 3,
        },
    );
    let work = tempfile::tempdir().unwrap();
    kube.write_kubeconfig(&work.path().join("kubeconfig"), &["ap-east-1"])
        .unwrap();
    let slack = Listener::start().await;
    let (kubeconfig, webhook) = (work.path().join("kubeconfig"), format!("{}/slack", slack.url));
    // The shipped playbooks as they are, but polling every half second
    // instead of every 30 (a test should not wait minutes).
    let root = support::shipped_root_with(&[(
        "runbooks/verify-recovery.yaml",
        "retries: {attempts: 20, backoff_secs: 30, max_backoff_secs: 30}",
        "retries: {attempts: 40, backoff_secs: 0.5, max_backoff_secs: 0.5}",
    )]);
    let root_path = root.path().to_path_buf();

    // Prometheus first, so laojun can be configured with its URL, and told
    // where AlertManager is once that listens (no port picked ahead).
    let down = Arc::new(AtomicBool::new(false));
    let target_port = target(down.clone()).await;
    // The ops guide's rule, with short intervals.
    std::fs::write(
        work.path().join("rules.yml"),
        "groups:\n  - name: ops-guide\n    rules:\n      - alert: ServiceDown\n        expr: up == 0\n        for: 1s\n        labels: {severity: critical}\n        annotations: {summary: 'Service {{ $labels.instance }} is down'}\n",
    )
    .unwrap();
    let prom_config = |alerting: &str| {
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\n{alerting}scrape_configs:\n  - job_name: checkout\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n        labels: {{namespace: prod}}\n",
            work.path().join("rules.yml").display()
        )
    };
    let prom = start_prometheus(&prometheus, &prom_config(""), &["--rules.alert.resend-delay=1s"]).await;
    let prom_url = prom.url.clone();
    let configured_prometheus = prom_url.clone();
    let server = Server::start_with(move |c| {
        c.root = root_path;
        c.kubernetes.kubeconfig = Some(kubeconfig);
        c.slack.webhook_url = Some(webhook);
        c.prometheus.url = Some(configured_prometheus);
        c.postmortem.timezone = "Asia/Shanghai".into();
    })
    .await;

    let am_config = work.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        format!(
            "route:\n  receiver: laojun\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: laojun\n    webhook_configs:\n      - url: {}/api/v1/alerts\n        send_resolved: true\n        http_config:\n          authorization: {{type: Bearer, credentials: {TOKEN}}}\n",
            server.url
        ),
    )
    .unwrap();
    let (am, am_port) = spawn_alertmanager(&alertmanager, &am_config, &work.path().join("am")).await;
    let _am = Process(am);
    let am_target = format!("127.0.0.1:{am_port}");
    prom.reconfigure(
        &prom_config(&format!(
            "alerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['{am_target}']}}]\n"
        )),
        &am_target,
    )
    .await;
    // Up, with enough samples for the error rate to be a number.
    let query = format!("{prom_url}/api/v1/query?query=sum(rate(http_requests_total%7Bcode%3D~%225..%22%7D%5B5m%5D))");
    eventually("Prometheus to scrape the target twice", async || {
        let v: serde_json::Value = reqwest::get(&query).await.ok()?.json().await.ok()?;
        v["data"]["result"][0]["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()
            .filter(|r| *r > 0.0)
    })
    .await;

    // The service goes down.
    down.store(true, Ordering::SeqCst);
    let c = server.client();
    let ended = [RunStatus::Succeeded, RunStatus::Failed];
    let run_of = |id: &'static str| {
        let c = &c;
        async move {
            eventually(&format!("{id} to finish"), async || {
                let run = c.run(id).await.ok()?;
                ended.contains(&run.status).then_some(run)
            })
            .await
        }
    };
    let assess = run_of("RUN-1").await;
    assert_eq!(
        (assess.runbook.as_str(), assess.status),
        ("assess-impact", RunStatus::Succeeded),
        "{assess:#?}"
    );
    assert_eq!(
        assess.steps[0].output["value"], 1,
        "one pod not running: {:#?}",
        assess.steps[0]
    );
    assert_eq!(assess.steps[0].output["unhealthy"][0]["reason"], "CrashLoopBackOff");
    assert_eq!(
        assess.steps[1].output["value"], 1,
        "one 5xx line: {:#?}",
        assess.steps[1]
    );
    let rate = assess.steps[2].output["value"]
        .as_f64()
        .expect("the error rate is a number");
    assert!((rate - 0.1).abs() < 1e-9, "{rate}");
    let rollback = run_of("RUN-2").await;
    assert_eq!(rollback.runbook, "rollback-deployment");
    assert_eq!(rollback.status, RunStatus::Succeeded, "{rollback:#?}");
    let inc = c.incident("INC-1").await.unwrap().incident;
    assert_eq!(inc.severity, Severity::P0);
    assert_eq!(inc.playbook, "service-down");
    assert_eq!(inc.title, format!("Service 127.0.0.1:{target_port} is down"));
    let dep = kube.get("deployments", "prod", "checkout").unwrap();
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/checkout:v1"
    );

    // Verification polls while the target is still down...
    eventually("the verification to miss twice", async || {
        let run = c.run("RUN-3").await.ok()?;
        (run.steps.first()?.attempts >= 2).then_some(())
    })
    .await;
    let polling = c.run("RUN-3").await.unwrap();
    assert_eq!(
        (polling.runbook.as_str(), polling.status),
        ("verify-recovery", RunStatus::Running)
    );
    // ...and passes once it is back: the alert resolves, and so does the incident.
    down.store(false, Ordering::SeqCst);
    let verify = run_of("RUN-3").await;
    assert_eq!(verify.status, RunStatus::Succeeded, "{verify:#?}");
    assert_eq!(verify.steps[0].output["value"], 1.0);
    eventually("the incident to resolve", async || {
        let inc = c.incident("INC-1").await.ok()?;
        (inc.incident.status == Status::Resolved).then_some(())
    })
    .await;
    let detail = c.incident("INC-1").await.unwrap();
    let misses: Vec<String> = detail
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            EventKind::Step {
                run,
                error: Some(error),
                ..
            } if run.to_string() == "RUN-3" => Some(error.clone()),
            _ => None,
        })
        .collect();
    let up = format!("up{{job=\"checkout\", instance=\"127.0.0.1:{target_port}\"}}");
    assert!(misses.len() >= 2, "{misses:?}");
    assert!(
        misses
            .iter()
            .all(|m| m.starts_with(&format!("`{up}` = 0, not == 1; retrying in "))),
        "{misses:?}"
    );
    let slack_texts: Vec<String> = slack
        .bodies()
        .iter()
        .filter_map(|b| b["text"].as_str().map(str::to_string))
        .collect();
    assert!(
        slack_texts
            .iter()
            .any(|t| t == &format!(":white_check_mark: INC-1: verified: `{up}` is back to normal (== 1).")),
        "{slack_texts:?}"
    );

    let file = server.data_dir.join("postmortems/INC-1.md");
    let text = eventually("the postmortem file with the verification", async || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.contains("RUN-3 step \\`recovered\\` (prometheus.query) succeeded"))
    })
    .await;
    assert!(text.starts_with("# 事件报告 (P0) - Service 127.0.0.1:"), "{text}");
    for needle in [
        "CST",
        "alert ServiceDown firing",
        "## 现场证据 (Evidence)",
        "RUN-1 step \\`pods\\` (k8s.pods) saw: ",
        "CrashLoopBackOff",
        "RUN-1 step \\`gateway\\_5xx\\` (k8s.logs) saw: 1 of 3 lines matched",
        "RUN-1 step \\`error\\_rate\\` (prometheus.query) saw: ",
        r"RUN-2 step \`rollback\` (k8s.rollback) succeeded",
        "alert ServiceDown resolved",
        "**影响时长 (Impact)**: ",
        "after it started)",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from the postmortem:\n{text}");
    }
    // The polling, as the postmortem sums it up: the misses and the hit.
    let polled = format!(
        "RUN-3 step \\`recovered\\` (prometheus.query) succeeded ({} attempts, ",
        misses.len() + 1
    );
    assert!(
        text.contains(&polled),
        "{polled:?} missing from the postmortem:\n{text}"
    );
    assert!(
        text.contains("| rollback | k8s.rollback | succeeded | "),
        "the run's steps with timings:\n{text}"
    );
    // The record this flow leaves, for the reader of `cargo test -- --nocapture`.
    println!("{text}");
    server.stop().await;
}
