//! A real Prometheus AlertManager (Debian's `prometheus-alertmanager`) in
//! front of laojun on loopback: alerts pushed into AlertManager reach
//! laojun as webhooks with a bearer token, open one incident, repeat
//! without creating anything new, and resolve it.

use crate::support::alertmanager::{push, start_alertmanager};
use crate::support::{self, eventually, Server};
use laojun::client::{IncidentDetail, IncidentQuery};
use laojun::incident::Status;
use laojun::severity::Severity;
use serde_json::json;

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_flow_from_alertmanager_to_one_incident_repeat_without_duplicates_and_resolve() {
    let Some(binary) = support::require("prometheus-alertmanager") else {
        return;
    };
    let server = Server::start().await;
    let am = start_alertmanager(&binary, &format!("{}/api/v1/alerts", server.url)).await;
    let c = server.client();

    let labels = json!({"alertname": "ServiceDown", "namespace": "prod", "job": "checkout", "severity": "critical"});
    let starts_at = chrono::Utc::now().to_rfc3339();
    push(
        &am,
        json!({"labels": labels, "annotations": {"summary": "checkout is down"}, "startsAt": starts_at}),
    )
    .await;

    let incident = eventually("the incident to open", async || {
        let list = c.incidents(&IncidentQuery::default()).await.ok()?;
        list.into_iter().next()
    })
    .await;
    assert_eq!(incident.playbook, "service-down");
    assert_eq!(incident.severity, Severity::P0, "the ServiceDown playbook says P0");
    assert_eq!(incident.title, "checkout is down");
    let id = incident.id;
    // The playbook's runbooks add their own events meanwhile; what a repeat
    // must not add is an alert event.
    let alert_events = |incident: &IncidentDetail| {
        incident
            .timeline
            .iter()
            .filter(|e| e.what.kind_name().starts_with("alert_"))
            .count()
    };
    let with_timeline = c.incident(id).await.unwrap();
    let events_before = alert_events(&with_timeline);
    assert_eq!(events_before, 1, "{with_timeline:#?}");

    // AlertManager resends the group every repeat_interval (2 s) and we
    // push the same alert again: still one incident, same timeline.
    push(
        &am,
        json!({"labels": labels, "annotations": {"summary": "checkout is down"}, "startsAt": starts_at}),
    )
    .await;
    let scraper = server.client_as(None);
    eventually("AlertManager to repeat the notification", async || {
        let text = scraper.metrics().await.ok()?;
        (metric(
            &text,
            "laojun_alerts_received_total{outcome=\"repeat\",status=\"firing\"}",
        ) >= 1)
            .then_some(())
    })
    .await;
    let list = c.incidents(&IncidentQuery::default()).await.unwrap();
    assert_eq!(list.len(), 1, "a repeat opened another incident: {list:#?}");
    let again = c.incident(id).await.unwrap();
    assert_eq!(
        alert_events(&again),
        events_before,
        "a repeat added to the timeline: {again:#?}"
    );
    assert!(again.incident.alerts[0].repeats >= 1);

    // Resolve it in AlertManager: laojun resolves the incident.
    push(&am, json!({"labels": labels, "annotations": {"summary": "checkout is down"}, "startsAt": starts_at, "endsAt": chrono::Utc::now().to_rfc3339()})).await;
    let resolved = eventually("the incident to resolve", async || {
        let inc = c.incident(id).await.ok()?;
        (inc.incident.status == Status::Resolved).then_some(inc)
    })
    .await;
    // The alert's own story, in order (the playbook's run adds its events in between).
    let kinds: Vec<&str> = resolved
        .timeline
        .iter()
        .map(|e| e.what.kind_name())
        .filter(|k| {
            !matches!(
                *k,
                "run_started" | "step" | "evidence" | "run_finished" | "run_not_started"
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "severity_set",
            "alert_fired",
            "alert_resolved",
            "status_changed"
        ]
    );
    assert!(resolved.incident.alerts[0].ends_at.is_some());
    drop(am);
    server.stop().await;
}
