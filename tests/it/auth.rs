//! Every route refuses a missing or wrong token, and each role can do
//! exactly what it is for: viewer reads, operator acts, webhook posts alerts.

use crate::support::{fixture, Server, TOKEN};

const VIEWER: &str = "viewer-token-0123456789";
const OPERATOR: &str = "operator-token-0123456789";
const WEBHOOK: &str = "webhook-token-0123456789";

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/alerts"),
    ("GET", "/api/v1/incidents"),
    ("GET", "/api/v1/incidents/INC-1"),
    ("POST", "/api/v1/incidents/INC-1/notes"),
    ("POST", "/api/v1/incidents/INC-1/resolve"),
    ("GET", "/api/v1/incidents/INC-1/postmortem"),
    ("GET", "/api/v1/runbooks"),
    ("POST", "/api/v1/runbooks/slack-status-update/runs"),
    ("GET", "/api/v1/runs"),
    ("GET", "/api/v1/runs/RUN-1"),
    ("POST", "/api/v1/runs/RUN-1/approve"),
    ("POST", "/api/v1/runs/RUN-1/deny"),
    ("GET", "/api/v1/automation"),
    ("POST", "/api/v1/automation/pause"),
    ("POST", "/api/v1/automation/resume"),
];

async fn send(url: &str, method: &str, path: &str, token: Option<&str>) -> u16 {
    let http = reqwest::Client::new();
    let mut r = http.request(method.parse().unwrap(), format!("{url}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let body = if path.ends_with("/alerts") {
        fixture("firing-single.json")
    } else if path.ends_with("/notes") {
        br#"{"text": "x"}"#.to_vec()
    } else {
        Vec::new()
    };
    r.header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_a_missing_or_wrong_token_and_roles_do_what_they_are_for() {
    let server = Server::start_with(|c| {
        for (name, role, token) in [
            ("grafana", "viewer", VIEWER),
            ("alice", "operator", OPERATOR),
            ("alertmanager", "webhook", WEBHOOK),
        ] {
            c.auth
                .tokens
                .push(serde_yaml::from_str(&format!("{{name: {name}, role: {role}, token: {token}}}")).unwrap());
        }
    })
    .await;
    for (method, path) in ROUTES {
        assert_eq!(
            send(&server.url, method, path, None).await,
            401,
            "{method} {path} without a token"
        );
        assert_eq!(
            send(&server.url, method, path, Some("not-a-token")).await,
            401,
            "{method} {path} with a wrong token"
        );
        // A token's prefix is not the token.
        assert_eq!(
            send(&server.url, method, path, Some(&TOKEN[..10])).await,
            401,
            "{method} {path} with a prefix"
        );
    }
    // The webhook token posts alerts and nothing else.
    assert_eq!(send(&server.url, "POST", "/api/v1/alerts", Some(WEBHOOK)).await, 200);
    for (method, path) in ROUTES.iter().filter(|(_, p)| !p.ends_with("/alerts")) {
        assert_eq!(
            send(&server.url, method, path, Some(WEBHOOK)).await,
            403,
            "webhook token on {method} {path}"
        );
    }
    // The viewer reads and may not act or post alerts.
    for (method, path) in ROUTES {
        let status = send(&server.url, method, path, Some(VIEWER)).await;
        if *method == "GET" {
            assert_ne!(status, 403, "viewer on {method} {path}");
            assert_ne!(status, 401, "viewer on {method} {path}");
        } else {
            assert_eq!(status, 403, "viewer on {method} {path}");
        }
    }
    // The operator acts (and is named on the timeline) but does not post alerts.
    assert_eq!(send(&server.url, "POST", "/api/v1/alerts", Some(OPERATOR)).await, 403);
    assert_eq!(
        send(&server.url, "POST", "/api/v1/incidents/INC-1/notes", Some(OPERATOR)).await,
        200
    );
    let mut op = server.client();
    op.token = Some(OPERATOR.into());
    let (_, inc) = op.get("/api/v1/incidents/INC-1").await;
    let note = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "note")
        .unwrap()
        .clone();
    assert_eq!(note["by"], "alice");
    let refused = reqwest::Client::new()
        .post(format!("{}/api/v1/automation/pause", server.url))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(
        body["error"],
        "token `grafana` (viewer) may not POST /api/v1/automation/pause; it needs an operator or admin token"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operator_action_is_in_the_audit_trail_with_who_did_it() {
    let server = Server::start_with(|c| {
        c.auth
            .tokens
            .push(serde_yaml::from_str(&format!("{{name: alice, role: operator, token: {OPERATOR}}}")).unwrap());
        c.auth
            .tokens
            .push(serde_yaml::from_str(&format!("{{name: grafana, role: viewer, token: {VIEWER}}}")).unwrap());
    })
    .await;
    let mut alice = server.client();
    alice.token = Some(OPERATOR.into());
    server
        .client()
        .post("/api/v1/alerts", fixture("firing-single.json"))
        .await;
    alice
        .post(
            "/api/v1/incidents/INC-1/notes",
            br#"{"kind": "note", "text": "looking"}"#.to_vec(),
        )
        .await;
    alice.post("/api/v1/automation/pause", vec![]).await;
    alice.post("/api/v1/automation/resume", vec![]).await;
    let (_, a) = alice
        .post(
            "/api/v1/runbooks/slack-status-update/runs",
            br#"{"dry_run": true, "params": {"text": "x"}}"#.to_vec(),
        )
        .await;
    let run = a["id"].as_str().unwrap().to_string();
    alice.post("/api/v1/incidents/INC-1/resolve", vec![]).await;
    let mut viewer = server.client();
    viewer.token = Some(VIEWER.into());
    let (status, trail) = viewer.get("/api/v1/audit").await;
    assert_eq!(status, 200);
    let got: Vec<(String, String, String)> = trail
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| {
            (
                r["by"].as_str().unwrap().into(),
                r["action"].as_str().unwrap().into(),
                r["target"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("alice", "note", "INC-1"),
        ("alice", "pause", "automation"),
        ("alice", "resume", "automation"),
        ("alice", "run", run.as_str()),
        ("alice", "resolve", "INC-1"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want);
    server.stop().await;
}
