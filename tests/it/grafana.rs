//! Grafana Alerting as a sender: its webhook contact point's bodies
//! (`version` "1", fixtures written from Grafana's sources: see
//! tests/fixtures/grafana/README.md) are taken like AlertManager's, its
//! links and values are kept and shown only as http(s) links, and its HMAC
//! signature is required when configured.

use hmac::{KeyInit, Mac};
use laojun::incident::Status;
use laojun::severity::Severity;

use crate::support::{self, Server};

fn grafana(name: &str) -> Vec<u8> {
    std::fs::read(support::repo().join("tests/fixtures/grafana").join(name)).expect("fixture exists")
}

/// Posts `body` with `headers`; the status and the answer.
async fn post(server: &Server, body: &[u8], headers: &[(&str, String)]) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/api/v1/alerts", server.url))
        .bearer_auth(support::TOKEN)
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn grafana_bodies_open_and_resolve_incidents_and_keep_their_links_and_values() {
    let server = Server::start().await;
    let c = server.client();
    let (status, answer) = post(&server, &grafana("firing.json"), &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["opened"], serde_json::json!(["INC-1"]));
    let inc = c.incident("INC-1").await.unwrap().incident;
    assert_eq!(inc.playbook, "default", "no shipped playbook takes it");
    assert_eq!(inc.severity, Severity::P3, "no severity label: intake.default_severity");
    let extras = inc.alerts[0].extras.as_deref().expect("Grafana's extras are kept");
    assert_eq!(
        extras.dashboard_url.as_deref(),
        Some("https://play.grafana.org/d/abcd?orgId=1")
    );
    assert_eq!(extras.values["B"], 44.23943737541908);
    assert_eq!(
        extras.title.as_deref(),
        Some("[FIRING:1]  (High memory usage blue us-1)")
    );
    assert_eq!(inc.alerts[0].fingerprint, "c6eadffa33fcdf37", "used as sent");

    // Sent again: a repeat. Resolved: the one incident resolves.
    let (_, again) = post(&server, &grafana("firing.json"), &[]).await;
    assert_eq!(again["repeats"], 1);
    let (status, resolved) = post(&server, &grafana("resolved.json"), &[]).await;
    assert_eq!((status, resolved["resolved"].clone()), (200, serde_json::json!(1)));
    let inc = c.incident("INC-1").await.unwrap().incident;
    assert_eq!(inc.status, Status::Resolved);
    assert_eq!(c.incidents(&Default::default()).await.unwrap().len(), 1);

    let postmortem = c.postmortem("INC-1").await.unwrap();
    for line in [
        "  - Values: B=44.23943737541908, C=1",
        "[dashboard](https://play.grafana.org/d/abcd?orgId=1) · [panel](https://play.grafana.org/d/abcd?orgId=1&viewPanel=4) · [silence](https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1)",
        "- **影响时长 (Impact)**: 1m 37s",
    ] {
        assert!(postmortem.contains(line), "{line:?} missing:\n{postmortem}");
    }

    // A grouped body: two alerts, each its own incident under the default playbook's grouping.
    let (status, grouped) = post(&server, &grafana("grouped.json"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(grouped["alerts"], 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_test_button_opens_an_incident_under_the_default_playbook_and_runs_nothing() {
    let server = Server::start_with(|c| c.intake.default_severity = Severity::P2).await;
    let c = server.client();
    let (status, answer) = post(&server, &grafana("test-notification.json"), &[]).await;
    assert_eq!(status, 200, "{answer}");
    let detail = c.incident("INC-1").await.unwrap();
    assert_eq!(detail.incident.playbook, "default");
    assert_eq!(detail.incident.title, "Notification test");
    assert_eq!(detail.incident.severity, Severity::P2, "intake.default_severity");
    assert!(detail.incident.runs.is_empty());
    assert!(c.runs(&Default::default()).await.unwrap().is_empty(), "no runbook ran");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_dashboard_url_is_text_and_other_versions_are_refused() {
    let server = Server::start().await;
    let c = server.client();
    let mut body: serde_json::Value = serde_json::from_slice(&grafana("firing.json")).unwrap();
    body["alerts"][0]["dashboardURL"] = "javascript:alert(document.cookie)".into();
    body["alerts"][0]["panelURL"] = "https://grafana.example.com/d/x?a=1)[evil](javascript:alert(1)".into();
    body["title"] = "<script>alert(1)</script> [x](javascript:y)".into();
    let (status, _) = post(&server, &serde_json::to_vec(&body).unwrap(), &[]).await;
    assert_eq!(status, 200);
    let postmortem = c.postmortem("INC-1").await.unwrap();
    assert!(!postmortem.contains("[dashboard]"), "{postmortem}");
    assert!(!postmortem.contains("](javascript:"), "{postmortem}");
    assert!(
        postmortem.contains("[panel](https://grafana.example.com/d/x?a=1%29%5Bevil%5D%28javascript:alert%281%29)"),
        "{postmortem}"
    );
    let mut other: serde_json::Value = serde_json::from_slice(&grafana("firing.json")).unwrap();
    other["version"] = "2".into();
    let (status, answer) = post(&server, &serde_json::to_vec(&other).unwrap(), &[]).await;
    assert_eq!(status, 400);
    let message = answer["error"].as_str().unwrap();
    assert!(message.contains("\"4\"") && message.contains("\"1\""), "{message}");
    server.stop().await;
}

fn sign(secret: &str, message: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_signature_is_required_of_grafana_and_checked_in_full() {
    std::env::set_var("LAOJUN_TEST_GRAFANA_HMAC", "grafana-shared-secret");
    let server = Server::start_with(|c| {
        c.intake.grafana_signature = Some(laojun::config::GrafanaSignature {
            secret: "${env:LAOJUN_TEST_GRAFANA_HMAC}".into(),
            header: "X-Grafana-Alert-Signature".into(),
            timestamp_header: Some("X-Grafana-Alert-Timestamp".into()),
        })
    })
    .await;
    let body = grafana("firing.json");
    let now = chrono::Utc::now().timestamp();
    let signed = |ts: i64, secret: &str| {
        let mut message = format!("{ts}:").into_bytes();
        message.extend_from_slice(&body);
        vec![
            ("X-Grafana-Alert-Timestamp", ts.to_string()),
            ("X-Grafana-Alert-Signature", sign(secret, &message)),
        ]
    };
    type Headers = Vec<(&'static str, String)>;
    let cases: Vec<(&str, Headers, u16, &str)> = vec![
        ("no signature", vec![], 401, "is not signed"),
        ("the wrong secret", signed(now, "another-secret"), 401, "does not match"),
        (
            "a stale timestamp",
            signed(now - 900, "grafana-shared-secret"),
            401,
            "5 minutes",
        ),
        (
            "no timestamp",
            vec![("X-Grafana-Alert-Signature", sign("grafana-shared-secret", &body))],
            401,
            "X-Grafana-Alert-Timestamp header is missing",
        ),
    ];
    for (what, headers, status, says) in cases {
        let (got, answer) = post(&server, &body, &headers).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or_default().contains(says),
            "{what}: {answer}"
        );
    }
    assert!(
        server.client().incidents(&Default::default()).await.unwrap().is_empty(),
        "nothing was taken"
    );
    let (got, answer) = post(&server, &body, &signed(now, "grafana-shared-secret")).await;
    assert_eq!(got, 200, "{answer}");
    // AlertManager cannot sign; its bodies still need only the token.
    let (got, _) = post(&server, &support::fixture("firing-single.json"), &[]).await;
    assert_eq!(got, 200);
    let metrics = server.client().metrics().await.unwrap();
    assert!(
        metrics.contains("laojun_webhooks_received_total{outcome=\"unauthorized\"} 4"),
        "{metrics}"
    );
    server.stop().await;
}
