//! The whole chain on loopback, with real Debian `prometheus` and
//! `prometheus-alertmanager`: Prometheus scrapes a small target with the ops
//! guide's ServiceDown rule; the target fails; the alert goes Prometheus →
//! AlertManager → laojun; the ServiceDown playbook rolls the deployment back
//! on the fake Kubernetes API and tells the Slack listener; the target comes
//! back; the incident resolves and its postmortem file has the timeline, the
//! run's steps and the computed durations.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{self, eventually, Listener, Server, TOKEN};
use fake_kube::FakeKube;
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A scrape target whose /metrics fails while `down` is set.
async fn target(down: Arc<AtomicBool>) -> u16 {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let down = down.clone();
            async move {
                if down.load(Ordering::SeqCst) {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down\n")
                } else {
                    (axum::http::StatusCode::OK, "checkout_requests_total 42\n")
                }
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
    let work = tempfile::tempdir().unwrap();
    kube.write_kubeconfig(&work.path().join("kubeconfig"), &["ap-east-1"])
        .unwrap();
    let slack = Listener::start().await;
    let (kubeconfig, webhook) = (work.path().join("kubeconfig"), format!("{}/slack", slack.url));
    let server = Server::start_with(move |c| {
        c.kubernetes.kubeconfig = Some(kubeconfig);
        c.slack.webhook_url = Some(webhook);
        c.postmortem.timezone = "Asia/Shanghai".into();
    })
    .await;

    let down = Arc::new(AtomicBool::new(false));
    let target_port = target(down.clone()).await;
    let am_port = free_port();
    let am_config = work.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        format!(
            "route:\n  receiver: laojun\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: laojun\n    webhook_configs:\n      - url: {}/api/v1/alerts\n        send_resolved: true\n        http_config:\n          authorization: {{type: Bearer, credentials: {TOKEN}}}\n",
            server.url
        ),
    )
    .unwrap();
    let _am = Process(
        Command::new(&alertmanager)
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!("--storage.path={}", work.path().join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("alertmanager starts"),
    );
    // The ops guide's rule, with short intervals.
    std::fs::write(
        work.path().join("rules.yml"),
        "groups:\n  - name: ops-guide\n    rules:\n      - alert: ServiceDown\n        expr: up == 0\n        for: 1s\n        labels: {severity: critical}\n        annotations: {summary: 'Service {{ $labels.instance }} is down'}\n",
    )
    .unwrap();
    let prom_config = work.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\nalerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]\nscrape_configs:\n  - job_name: checkout\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n        labels: {{namespace: prod}}\n",
            work.path().join("rules.yml").display()
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let _prom = Process(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!("--storage.tsdb.path={}", work.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    let query = format!("http://127.0.0.1:{prom_port}/api/v1/query?query=up");
    eventually("Prometheus to scrape the target", async || {
        let v: serde_json::Value = reqwest::get(&query).await.ok()?.json().await.ok()?;
        (v["data"]["result"][0]["value"][1] == "1").then_some(())
    })
    .await;

    // The service goes down.
    down.store(true, Ordering::SeqCst);
    let c = server.client();
    let run = eventually("the rollback run to finish", async || {
        let run = c.run("RUN-1").await.ok()?;
        matches!(run.status, RunStatus::Succeeded | RunStatus::Failed).then_some(run)
    })
    .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    let inc = c.incident("INC-1").await.unwrap().incident;
    assert_eq!(inc.severity, Severity::P0);
    assert_eq!(inc.playbook, "service-down");
    assert_eq!(inc.title, format!("Service 127.0.0.1:{target_port} is down"));
    let dep = kube.get("deployments", "prod", "checkout").unwrap();
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/checkout:v1"
    );
    assert!(
        slack.bodies().len() >= 2,
        "Slack heard about the rollback: {:?}",
        slack.bodies()
    );

    // It comes back: the alert resolves, and so does the incident.
    down.store(false, Ordering::SeqCst);
    eventually("the incident to resolve", async || {
        let inc = c.incident("INC-1").await.ok()?;
        (inc.incident.status == Status::Resolved).then_some(())
    })
    .await;
    let file = server.data_dir.join("postmortems/INC-1.md");
    let text = eventually("the postmortem file", async || std::fs::read_to_string(&file).ok()).await;
    assert!(text.starts_with("# 事件报告 (P0) - Service 127.0.0.1:"), "{text}");
    for needle in [
        "CST",
        "alert ServiceDown firing",
        r"RUN-1 step \`rollback\` (k8s.rollback) succeeded",
        "alert ServiceDown resolved",
        "**影响时长 (Impact)**: ",
        "after it started)",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from the postmortem:\n{text}");
    }
    assert!(
        text.contains("| rollback | k8s.rollback | succeeded | "),
        "the run's steps with timings:\n{text}"
    );
    server.stop().await;
}
