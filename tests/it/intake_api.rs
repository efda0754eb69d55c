//! The webhook and incident API over a real socket: every captured
//! AlertManager body, dedup, the answers bad input gets, notes and resolve.

use crate::support::{fixture, Server, FIXTURES, TOKEN};
use serde_json::{json, Value};

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_captured_body_is_accepted_and_resending_them_creates_nothing_new() {
    let server = Server::start().await;
    let c = server.client();
    for name in FIXTURES {
        let (status, body) = c.post("/api/v1/alerts", fixture(name)).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["status"], "stored");
    }
    let (_, before) = c.get("/api/v1/incidents").await;
    let timelines_before: Vec<usize> = {
        let mut v = Vec::new();
        for id in ids(&before) {
            v.push(
                c.get(&format!("/api/v1/incidents/{id}")).await.1["timeline"]
                    .as_array()
                    .unwrap()
                    .len(),
            );
        }
        v
    };
    // AlertManager resends on every group_interval, and an HA pair sends twice.
    for _ in 0..2 {
        for name in FIXTURES {
            let (status, body) = c.post("/api/v1/alerts", fixture(name)).await;
            assert_eq!(status, 200);
            assert_eq!(body["opened"], json!([]), "{name}: a resend opened an incident");
        }
    }
    let (_, after) = c.get("/api/v1/incidents").await;
    assert_eq!(ids(&before), ids(&after));
    for (i, id) in ids(&after).iter().enumerate() {
        let timeline = c.get(&format!("/api/v1/incidents/{id}")).await.1["timeline"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(timeline, timelines_before[i], "{id}: a resend added timeline events");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_firing_alert_opens_an_incident_and_its_resolve_closes_it() {
    let server = Server::start().await;
    let c = server.client();
    let (_, r) = c.post("/api/v1/alerts", fixture("firing-single.json")).await;
    let id = r["opened"][0].as_str().unwrap().to_string();
    let (status, inc) = c.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(inc["status"], "open");
    assert_eq!(inc["severity"], "P1", "severity=critical maps to P1");
    assert_eq!(inc["title"], "HighErrorRate on web-1");
    assert_eq!(inc["resolved_at"], Value::Null);
    assert_eq!(inc["alerts"][0]["fingerprint"], "0033d16c8f77dffe");
    let kinds: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opened", "severity_set", "alert_fired"]);

    let (_, r) = c.post("/api/v1/alerts", fixture("resolved-single.json")).await;
    assert_eq!(r["resolved"], 1);
    let (_, inc) = c.get(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(inc["status"], "resolved");
    assert!(inc["resolved_at"].is_string());
    let (_, open) = c.get("/api/v1/incidents?status=open").await;
    assert!(!ids(&open).contains(&id));
    let (_, resolved) = c.get("/api/v1/incidents?status=resolved&severity=P1").await;
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
        let (got, answer) = c.post("/api/v1/alerts", body).await;
        assert_eq!(got, status, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(message), "{answer}");
    }

    let mut anonymous = c.clone();
    anonymous.token = None;
    let (status, answer) = anonymous.post("/api/v1/alerts", good.clone()).await;
    assert_eq!(status, 401);
    assert!(answer["error"].as_str().unwrap().contains("needs a token"));
    let mut wrong = c.clone();
    wrong.token = Some("wrong".into());
    assert_eq!(wrong.post("/api/v1/alerts", good.clone()).await.0, 401);
    assert_eq!(wrong.get("/api/v1/incidents").await.0, 401);
    // AlertManager's basic_auth, with the token as password, is accepted too.
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
        let (got, answer) = c.get(path).await;
        assert_eq!(got, status, "{path}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(message), "{path}: {answer}");
    }
    // The failures are counted in /metrics, by outcome.
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    c.post("/api/v1/alerts", fixture("firing-grouped.json")).await;
    let (status, _) = c
        .post(
            "/api/v1/incidents/INC-1/notes",
            br#"{"kind":"root_cause","text":"pool too small"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 200);
    let (status, answer) = c
        .post(
            "/api/v1/incidents/INC-1/notes",
            br#"{"kind":"gossip","text":"x"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("root_cause"), "{answer}");
    let (status, inc) = c.post("/api/v1/incidents/INC-1/resolve", vec![]).await;
    assert_eq!(status, 200, "{inc}");
    assert_eq!(inc["status"], "resolved");
    let (status, answer) = c.post("/api/v1/incidents/INC-1/resolve", vec![]).await;
    assert_eq!(status, 409, "{answer}");
    let (_, inc) = c.get("/api/v1/incidents/INC-1").await;
    let timeline = inc["timeline"].as_array().unwrap();
    let note = timeline.iter().find(|e| e["kind"] == "note").unwrap();
    assert_eq!(note["text"], "pool too small");
    assert_eq!(note["by"], "api-token");
    let last = timeline.last().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["to"].as_str()),
        (Some("status_changed"), Some("resolved"))
    );
    // The group's alerts fire again (a repeat): the resolved incident stays
    // resolved and no new one opens.
    let (_, r) = c.post("/api/v1/alerts", fixture("firing-grouped.json")).await;
    assert_eq!(r["opened"], json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_runbooks_answer() {
    let server = Server::start().await;
    let health = reqwest::get(format!("{}/healthz", server.url)).await.unwrap();
    assert_eq!(health.status(), 200);
    let (status, runbooks) = server.client().get("/api/v1/runbooks").await;
    assert_eq!(status, 200);
    let rollback = runbooks
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "rollback-deployment")
        .unwrap();
    assert!(rollback["params"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "namespace" && p["required"] == true));
    server.stop().await;
}
