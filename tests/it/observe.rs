//! Steps that look: `prometheus.query` against a real Prometheus scraping
//! a local exporter whose value the test changes (the verify step polls,
//! failing until the value drops), and `alertmanager.silence` /
//! `expire_silence` against a real AlertManager (the silence is listed by
//! its API and suppresses the alert). `evidence: true` puts what a step
//! saw on the timeline and into the postmortem.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use laojun::client::RunRequest;
use laojun::incident::EventKind;
use laojun::run::RunStatus;
use serde_json::json;

use crate::support::alertmanager::{push, start_alertmanager};
use crate::support::prometheus::start_prometheus;
use crate::support::{self, eventually, root_with, run_to_end, webhook_body, Alert, Server};

/// An exporter serving `errors_ratio` as the thousandths in `value`.
async fn exporter(value: Arc<AtomicU64>) -> u16 {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let v = value.load(Ordering::SeqCst) as f64 / 1000.0;
            async move { format!("# TYPE errors_ratio gauge\nerrors_ratio{{service=\"checkout\"}} {v}\n") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

const VERIFY: &str = r#"
name: verify
steps:
  - id: errors
    action: prometheus.query
    with: {query: 'max(errors_ratio{service="checkout"})', expect: "< 0.5"}
    retries: {attempts: 60, backoff_secs: 0.5, max_backoff_secs: 0.5}
    evidence: true
"#;

const BAD_QUERY: &str = r#"
name: bad-query
steps:
  - id: q
    action: prometheus.query
    with: {query: 'sum(rate(x[5m]'}
    retries: {attempts: 3, backoff_secs: 0.1}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_verify_step_polls_prometheus_until_the_value_is_back_to_normal() {
    let Some(prometheus) = support::require("prometheus") else {
        return;
    };
    let value = Arc::new(AtomicU64::new(900));
    let target = exporter(value.clone()).await;
    let prom = start_prometheus(
        &prometheus,
        &format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"),
        &[],
    ).await;
    let prom_url = prom.url.clone();
    let query = format!("{prom_url}/api/v1/query?query=errors_ratio");
    eventually("Prometheus to scrape the exporter", async || {
        let v: serde_json::Value = reqwest::get(&query).await.ok()?.json().await.ok()?;
        (v["data"]["result"][0]["value"][1] == "0.9").then_some(())
    })
    .await;

    let template = |name: &str| std::fs::read_to_string(support::repo().join("templates").join(name)).unwrap();
    let (postmortem, summary) = (template("postmortem.md.hbs"), template("postmortem-summary.hbs"));
    let root = root_with(&[
        ("runbooks/verify.yaml", VERIFY),
        ("runbooks/bad-query.yaml", BAD_QUERY),
        ("templates/postmortem.md.hbs", &postmortem),
        ("templates/postmortem-summary.hbs", &summary),
    ]);
    let (root_path, url) = (root.path().to_path_buf(), prom_url.clone());
    let server = Server::start_with(move |c| {
        c.root = root_path;
        c.prometheus.url = Some(url);
    })
    .await;
    let c = server.client();
    // An incident for the evidence to land on.
    c.post_alerts(webhook_body([Alert::firing(json!({"alertname": "HighErrorRate"}))
        .starts_at("2026-12-02T02:00:00Z")
        .fingerprint("00000000000e0001")]))
        .await
        .unwrap();
    let request = RunRequest {
        incident: Some("INC-1".parse().unwrap()),
        ..Default::default()
    };
    let id = c.start_run("verify", &request).await.unwrap().id;
    eventually("the verify step to have failed twice", async || {
        let run = c.run(id).await.ok()?;
        (run.steps[0].attempts >= 2).then_some(())
    })
    .await;
    let polling = c.run(id).await.unwrap();
    assert_eq!(polling.status, RunStatus::Running, "still polling: {polling:#?}");
    let detail = c.incident("INC-1").await.unwrap();
    let seen = detail.timeline.iter().find_map(|e| match &e.what {
        EventKind::Step { error: Some(error), .. } => Some(error.clone()),
        _ => None,
    });
    assert!(
        seen.as_deref().is_some_and(|e| e.contains("= 0.9, not < 0.5")),
        "the failed poll names the observed value: {seen:?}"
    );
    // The error rate drops; the next poll after the next scrape passes.
    value.store(100, Ordering::SeqCst);
    let run = support::wait_run(&c, id, &[RunStatus::Succeeded, RunStatus::Failed]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.steps[0].output["value"], 0.1);
    assert_eq!(run.steps[0].output["expect_met"], true);
    let detail = c.incident("INC-1").await.unwrap();
    let evidence: Vec<String> = detail
        .timeline
        .iter()
        .filter(|e| matches!(e.what, EventKind::Evidence { .. }))
        .map(|e| e.what.describe())
        .collect();
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    assert!(evidence[0].contains("= 0.1, as expected (< 0.5)"), "{evidence:?}");
    let postmortem = c.postmortem("INC-1").await.unwrap();
    assert!(postmortem.contains("## 现场证据 (Evidence)\n- "), "{postmortem}");
    assert!(
        postmortem.contains("step \\`errors\\` (prometheus.query) saw: "),
        "{postmortem}"
    );

    // A query Prometheus cannot parse fails at once, whatever the retries.
    let bad = run_to_end(&c, "bad-query", &RunRequest::default()).await;
    assert_eq!(bad.status, RunStatus::Failed);
    assert_eq!(bad.steps[0].attempts, 1, "{bad:#?}");
    assert!(
        bad.steps[0]
            .error
            .as_deref()
            .unwrap()
            .contains("Prometheus answered 400"),
        "{bad:#?}"
    );
    // A read runs in a dry run too: the check is made against the real value.
    let dry = run_to_end(
        &c,
        "verify",
        &RunRequest {
            dry_run: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(dry.status, RunStatus::Succeeded);
    assert_eq!(dry.steps[0].output["value"], 0.1);
    server.stop().await;
}

const SILENCE: &str = r#"
name: hush
params:
  alertname: string
steps:
  - id: silence
    action: alertmanager.silence
    with: {matchers: ['alertname="{{params.alertname}}"', 'namespace="prod"'], duration_secs: 600, comment: rolling back}
"#;

const UNHUSH: &str = r#"
name: unhush
params:
  id: string
steps:
  - id: expire
    action: alertmanager.expire_silence
    with: {id: "{{params.id}}"}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_silence_is_created_in_alertmanager_suppresses_the_alert_and_expires() {
    let Some(binary) = support::require("prometheus-alertmanager") else {
        return;
    };
    let root = root_with(&[("runbooks/hush.yaml", SILENCE), ("runbooks/unhush.yaml", UNHUSH)]);
    let nowhere = "http://127.0.0.1:9/api/v1/alerts";
    let am = start_alertmanager(&binary, nowhere).await;
    let (root_path, url) = (root.path().to_path_buf(), am.url.clone());
    let server = Server::start_with(move |c| {
        c.root = root_path;
        c.alertmanager.url = Some(url);
    })
    .await;
    let c = server.client();
    let params = |v| support::with_params(v);

    // A dry run says what it would create and creates nothing.
    let dry = run_to_end(
        &c,
        "hush",
        &RunRequest {
            dry_run: true,
            ..params(json!({"alertname": "ServiceDown"}))
        },
    )
    .await;
    assert_eq!(dry.status, RunStatus::Succeeded, "{dry:#?}");
    let would = &dry.steps[0].output["would_create"];
    assert_eq!(
        would["matchers"][0],
        json!({"name": "alertname", "value": "ServiceDown", "isRegex": false, "isEqual": true})
    );
    let silences = || async {
        let v: serde_json::Value = reqwest::get(format!("{}/api/v2/silences", am.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array().unwrap().clone()
    };
    assert!(silences().await.is_empty(), "a dry run creates nothing");

    let run = run_to_end(&c, "hush", &params(json!({"alertname": "ServiceDown"}))).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    let id = run.steps[0].output["id"].as_str().unwrap().to_string();
    let listed = silences().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["createdBy"], "laojun");
    assert_eq!(listed[0]["status"]["state"], "active");
    assert!(
        listed[0]["comment"]
            .as_str()
            .unwrap()
            .contains(&format!("rolling back (laojun {} step silence)", run.id)),
        "{listed:?}"
    );
    // The alert it matches is suppressed by it.
    push(&am, json!({"labels": {"alertname": "ServiceDown", "namespace": "prod"}, "startsAt": chrono::Utc::now().to_rfc3339()})).await;
    let alerts_url = format!("{}/api/v2/alerts", am.url);
    eventually("the alert to be suppressed by the silence", async || {
        let v: serde_json::Value = reqwest::get(&alerts_url).await.ok()?.json().await.ok()?;
        let a = v.as_array()?.first()?.clone();
        (a["status"]["state"] == "suppressed" && a["status"]["silencedBy"] == json!([id])).then_some(())
    })
    .await;

    let expired = run_to_end(&c, "unhush", &params(json!({"id": id}))).await;
    assert_eq!(expired.status, RunStatus::Succeeded, "{expired:#?}");
    assert_eq!(silences().await[0]["status"]["state"], "expired");
    let hostile = run_to_end(&c, "unhush", &params(json!({"id": "../../api/v2/status"}))).await;
    assert_eq!(hostile.status, RunStatus::Failed);
    assert!(hostile.steps[0]
        .error
        .as_deref()
        .unwrap()
        .contains("is not a silence id"));
    server.stop().await;
}
