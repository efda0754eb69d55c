//! The webhook and incident API over a real socket: every captured
//! AlertManager body, dedup, the answers bad input gets, notes and resolve.

use crate::support::{fixture, Server, FIXTURES, TOKEN};
use laojun::client::{ClientError, IncidentQuery};
use laojun::ids::IncidentId;
use laojun::incident::{EventKind, Incident, NoteKind, Status};
use laojun::severity::Severity;
use reqwest::Method;

fn ids(list: &[Incident]) -> Vec<IncidentId> {
    list.iter().map(|i| i.id).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_captured_body_is_accepted_and_resending_them_creates_nothing_new() {
    let server = Server::start().await;
    let c = server.client();
    for name in FIXTURES {
        let answer = c
            .post_alerts(fixture(name))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer.status, "stored");
    }
    let before = c.incidents(&IncidentQuery::default()).await.unwrap();
    let timelines_before: Vec<usize> = {
        let mut v = Vec::new();
        for id in ids(&before) {
            v.push(c.incident(id).await.unwrap().timeline.len());
        }
        v
    };
    // AlertManager resends on every group_interval, and an HA pair sends twice.
    for _ in 0..2 {
        for name in FIXTURES {
            let answer = c.post_alerts(fixture(name)).await.unwrap();
            assert!(
                answer.opened.is_empty(),
                "{name}: a resend opened an incident: {answer:?}"
            );
        }
    }
    let after = c.incidents(&IncidentQuery::default()).await.unwrap();
    assert_eq!(ids(&before), ids(&after));
    for (i, id) in ids(&after).iter().enumerate() {
        let timeline = c.incident(id).await.unwrap().timeline.len();
        assert_eq!(timeline, timelines_before[i], "{id}: a resend added timeline events");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_firing_alert_opens_an_incident_and_its_resolve_closes_it() {
    let server = Server::start().await;
    let c = server.client();
    let r = c.post_alerts(fixture("firing-single.json")).await.unwrap();
    let id = r.opened[0];
    let detail = c.incident(id).await.expect("the incident is there");
    let inc = &detail.incident;
    assert_eq!(inc.status, Status::Open);
    assert_eq!(inc.severity, Severity::P1, "severity=critical maps to P1");
    assert_eq!(inc.title, "HighErrorRate on web-1");
    assert_eq!(inc.resolved_at, None);
    assert_eq!(inc.alerts[0].fingerprint, "0033d16c8f77dffe");
    let kinds: Vec<&str> = detail.timeline.iter().map(|e| e.what.kind_name()).collect();
    assert_eq!(kinds, ["opened", "severity_set", "alert_fired"]);

    let r = c.post_alerts(fixture("resolved-single.json")).await.unwrap();
    assert_eq!(r.resolved, 1);
    let inc = c.incident(id).await.unwrap().incident;
    assert_eq!(inc.status, Status::Resolved);
    assert!(inc.resolved_at.is_some());
    let open = c
        .incidents(&IncidentQuery {
            status: Some(Status::Open),
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    assert!(!ids(&open).contains(&id));
    let resolved = c
        .incidents(&IncidentQuery {
            status: Some(Status::Resolved),
            severity: Some(Severity::P1),
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&resolved), [id]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_its_status_and_a_message_a_person_understands() {
    let server = Server::start_with(|c| c.intake.max_body_bytes = 64 * 1024).await;
    let c = server.client();
    let good = fixture("firing-single.json");
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{\"alerts\": [".to_vec(), 400, "not valid JSON"),
        (b"{\"receiver\": \"x\"}".to_vec(), 400, "missing field `alerts`"),
        (
            br#"{"alerts":[{"status":"firing","labels":{"a":1},"startsAt":"2026-11-29T12:46:35Z"}]}"#.to_vec(),
            400,
            "expected a string",
        ),
        (
            br#"{"alerts":[{"status":"firing","labels":{},"startsAt":"soon"}]}"#.to_vec(),
            400,
            "startsAt \"soon\" is not an RFC 3339 time",
        ),
        (vec![0xff, 0xfe, 0x00], 400, "not valid JSON"),
        (vec![b' '; 65 * 1024], 413, "larger than the limit"),
    ];
    for (body, status, message) in cases {
        let e = c
            .send_raw(Method::POST, "/api/v1/alerts", body)
            .await
            .expect_err("a bad body is refused");
        assert!(matches!(e, ClientError::BadRequest { .. }), "{e:?}");
        assert_eq!(e.status().map(|s| s.as_u16()), Some(status), "{e}");
        assert!(e.message().unwrap().contains(message), "{e}");
    }

    let anonymous = server.client_as(None);
    match anonymous.post_alerts(good.clone()).await {
        Err(ClientError::Unauthorized { message }) => assert!(message.contains("needs a token"), "{message}"),
        other => panic!("an alert without a token got {other:?}"),
    }
    let wrong = server.client_as(Some("wrong"));
    let answer = wrong.post_alerts(good.clone()).await;
    assert!(matches!(answer, Err(ClientError::Unauthorized { .. })), "{answer:?}");
    let answer = wrong.incidents(&IncidentQuery::default()).await;
    assert!(matches!(answer, Err(ClientError::Unauthorized { .. })), "{answer:?}");
    // AlertManager's basic_auth, with the token as password, is accepted too.
    // Plain reqwest: ApiClient only sends bearer tokens.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/alerts", server.url))
        .basic_auth("alertmanager", Some(TOKEN))
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    for (path, status, message) in [
        ("/api/v1/incidents/INC-999", 404, "no incident INC-999"),
        (
            "/api/v1/incidents/..%2F..%2Fetc%2Fpasswd",
            404,
            "incident ids look like INC-42",
        ),
        (
            "/api/v1/incidents?status=burning",
            400,
            "status \"burning\" is not one of open, mitigated, resolved",
        ),
        ("/api/v1/incidents?sev=P1", 400, "unknown field `sev`"),
    ] {
        let e = c
            .send_raw(Method::GET, path, "")
            .await
            .expect_err("a bad path is refused");
        assert_eq!(e.status().map(|s| s.as_u16()), Some(status), "{path}: {e}");
        assert!(e.message().unwrap().contains(message), "{path}: {e}");
    }
    // The failures are counted in /metrics, by outcome.
    let metrics = server.client_as(None).metrics().await.unwrap();
    for line in [
        "laojun_webhooks_received_total{outcome=\"bad_request\"} 5",
        "laojun_webhooks_received_total{outcome=\"too_large\"} 1",
        "laojun_webhooks_received_total{outcome=\"unauthorized\"} 2",
        "laojun_webhooks_received_total{outcome=\"accepted\"} 1",
        "laojun_incidents_open{severity=\"P1\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn notes_and_resolve_by_hand_land_on_the_timeline_with_who_did_it() {
    let server = Server::start().await;
    let c = server.client();
    c.post_alerts(fixture("firing-grouped.json")).await.unwrap();
    c.add_note("INC-1", NoteKind::RootCause, "pool too small")
        .await
        .expect("the note is stored");
    // No such kind of note: only a raw request can send it.
    let e = c
        .send_raw(
            Method::POST,
            "/api/v1/incidents/INC-1/notes",
            r#"{"kind":"gossip","text":"x"}"#,
        )
        .await
        .expect_err("an unknown kind of note is refused");
    assert_eq!(e.status().map(|s| s.as_u16()), Some(400), "{e}");
    assert!(e.message().unwrap().contains("root_cause"), "{e}");
    let inc = c.resolve("INC-1").await.expect("INC-1 resolves");
    assert_eq!(inc.status, Status::Resolved);
    let answer = c.resolve("INC-1").await;
    assert!(matches!(answer, Err(ClientError::Conflict { .. })), "{answer:?}");
    let timeline = c.incident("INC-1").await.unwrap().timeline;
    let (text, by) = timeline
        .iter()
        .find_map(|e| match &e.what {
            EventKind::Note { text, by, .. } => Some((text.as_str(), by.as_str())),
            _ => None,
        })
        .unwrap();
    assert_eq!(text, "pool too small");
    assert_eq!(by, "api-token");
    let last = timeline.last().unwrap();
    assert!(
        matches!(
            last.what,
            EventKind::StatusChanged {
                to: Status::Resolved,
                ..
            }
        ),
        "{last:?}"
    );
    // The group's alerts fire again (a repeat): the resolved incident stays
    // resolved and no new one opens.
    let r = c.post_alerts(fixture("firing-grouped.json")).await.unwrap();
    assert!(r.opened.is_empty(), "{r:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_runbooks_answer() {
    let server = Server::start().await;
    server.client_as(None).healthz().await.expect("/healthz answers");
    let runbooks = server.client().runbooks().await.unwrap();
    let rollback = runbooks.iter().find(|r| r.name == "rollback-deployment").unwrap();
    assert!(rollback.params.iter().any(|p| p.name == "namespace" && p.required));
    server.stop().await;
}
