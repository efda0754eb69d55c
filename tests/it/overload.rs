//! A storm larger than the intake queue: the overflow gets 503 with
//! Retry-After (never 429, which AlertManager would not retry), and once
//! senders retry as AlertManager does, every alert is stored exactly once.

use std::collections::HashSet;

use crate::support::{webhook_body, Alert, Server};
use laojun::client::{ClientError, IncidentQuery};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn overflow_gets_503_and_every_retried_alert_is_stored_once() {
    let server = Server::start_with(|c| c.intake.queue_capacity = 2).await;
    let client = server.client();
    let senders = 64;
    let per_sender = 25;
    let mut tasks = Vec::new();
    for s in 0..senders {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            for n in 0..per_sender {
                let body = webhook_body([Alert::firing(json!({"alertname": format!("Storm{s}-{n}")}))
                    .starts_at("2026-11-29T12:00:00Z")
                    .fingerprint(&format!("{s:08x}{n:08x}"))]);
                loop {
                    match client.post_alerts(body.clone()).await {
                        Ok(_) => break,
                        Err(ClientError::Server {
                            status, retry_after, ..
                        }) if status == 503 => {
                            assert_eq!(retry_after, Some(1));
                            refused += 1;
                            // A sender's pause before it resends, as
                            // AlertManager backs off; not a barrier.
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        }
                        Err(other) => panic!("a storm got {other}; only 200 or 503 are allowed"),
                    }
                }
            }
            refused
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap();
    }
    assert!(
        refused > 0,
        "a queue of 2 under 64 senders never filled; the test proves nothing"
    );
    let list = server
        .client()
        .incidents(&IncidentQuery {
            limit: Some(10000),
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    let titles: Vec<&str> = list.iter().map(|i| i.title.as_str()).collect();
    let unique: HashSet<&&str> = titles.iter().collect();
    assert_eq!(titles.len(), senders * per_sender, "every alert stored");
    assert_eq!(unique.len(), titles.len(), "none stored twice");
    eprintln!(
        "{} alerts stored; {refused} requests got 503 and were retried",
        titles.len()
    );
    server.stop().await;
}

/// Grouped bodies from many senders at once make commits of thousands of
/// writes, which the writer applies in several store batches: every alert
/// and every timeline event of the few incidents they join must survive.
#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_grouped_bodies_keeps_every_alert_and_event_of_the_incidents_it_joins() {
    let server = Server::start().await;
    let client = server.client();
    let (senders, bodies, per_body, groups) = (16, 10, 50, 3);
    let mut tasks = Vec::new();
    for s in 0..senders {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..bodies {
                let alerts = (0..per_body).map(|a| {
                    Alert::firing(json!({"alertname": format!("Grouped{}", (s + b + a) % groups), "instance": format!("{s}-{b}-{a}")}))
                        .starts_at("2026-11-29T12:00:00Z")
                        .fingerprint(&format!("{s:04x}{b:04x}{a:04x}"))
                });
                client.post_alerts(webhook_body(alerts)).await.expect("a grouped body is stored");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = server.client();
    let list = c
        .incidents(&IncidentQuery {
            limit: Some(100),
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(list.len(), groups, "{list:#?}");
    let mut stored = HashSet::new();
    for inc in &list {
        let full = c.incident(inc.id).await.unwrap();
        let alerts = &full.incident.alerts;
        assert_eq!(full.incident.alert_count as usize, alerts.len());
        let timeline = &full.timeline;
        assert_eq!(full.incident.events as usize, timeline.len());
        let fired = timeline.iter().filter(|e| e.what.kind_name() == "alert_fired").count();
        assert_eq!(fired, alerts.len(), "one alert_fired event per alert, none overwritten");
        for a in alerts {
            assert!(stored.insert(a.fingerprint.clone()), "stored twice: {a:?}");
        }
    }
    assert_eq!(stored.len(), senders * bodies * per_body, "every alert stored");
    server.stop().await;
}
