//! Every route refuses a missing or wrong token, and each role can do
//! exactly what it is for: viewer reads, operator acts, webhook posts alerts.

use crate::support::{fixture, params, Server, TOKEN};
use laojun::client::{ApiClient, ClientError, RunRequest};
use laojun::incident::{EventKind, NoteKind};
use serde_json::{json, Value};

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

/// What `client` gets for `method path`: the route table is probed with raw
/// requests, with the body a route needs where it needs one.
async fn send(client: &ApiClient, method: &str, path: &str) -> Result<Value, ClientError> {
    let body = if path.ends_with("/alerts") {
        fixture("firing-single.json")
    } else if path.ends_with("/notes") {
        br#"{"text": "x"}"#.to_vec()
    } else {
        Vec::new()
    };
    client.send_raw(method.parse().unwrap(), path, body).await
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
    let (anonymous, wrong, prefix) = (
        server.client_as(None),
        server.client_as(Some("not-a-token")),
        // A token's prefix is not the token.
        server.client_as(Some(&TOKEN[..10])),
    );
    let (viewer, operator, webhook) = (
        server.client_as(Some(VIEWER)),
        server.client_as(Some(OPERATOR)),
        server.client_as(Some(WEBHOOK)),
    );
    for (method, path) in ROUTES {
        for (client, who) in [
            (&anonymous, "without a token"),
            (&wrong, "with a wrong token"),
            (&prefix, "with a prefix"),
        ] {
            let answer = send(client, method, path).await;
            assert!(
                matches!(answer, Err(ClientError::Unauthorized { .. })),
                "{method} {path} {who}: {answer:?}"
            );
        }
    }
    // The webhook token posts alerts and nothing else.
    webhook
        .post_alerts(fixture("firing-single.json"))
        .await
        .expect("the webhook token posts alerts");
    for (method, path) in ROUTES.iter().filter(|(_, p)| !p.ends_with("/alerts")) {
        let answer = send(&webhook, method, path).await;
        assert!(
            matches!(answer, Err(ClientError::Forbidden { .. })),
            "webhook token on {method} {path}: {answer:?}"
        );
    }
    // The viewer reads and may not act or post alerts.
    for (method, path) in ROUTES {
        let answer = send(&viewer, method, path).await;
        if *method == "GET" {
            assert!(
                !matches!(
                    answer,
                    Err(ClientError::Forbidden { .. } | ClientError::Unauthorized { .. })
                ),
                "viewer on {method} {path}: {answer:?}"
            );
        } else {
            assert!(
                matches!(answer, Err(ClientError::Forbidden { .. })),
                "viewer on {method} {path}: {answer:?}"
            );
        }
    }
    // The operator acts (and is named on the timeline) but does not post alerts.
    let answer = operator.post_alerts(fixture("firing-single.json")).await;
    assert!(matches!(answer, Err(ClientError::Forbidden { .. })), "{answer:?}");
    send(&operator, "POST", "/api/v1/incidents/INC-1/notes")
        .await
        .expect("the operator adds a note");
    let inc = operator.incident("INC-1").await.unwrap();
    let by = inc
        .timeline
        .iter()
        .find_map(|e| match &e.what {
            EventKind::Note { by, .. } => Some(by.as_str()),
            _ => None,
        })
        .unwrap();
    assert_eq!(by, "alice");
    match viewer.pause(None, None).await {
        Err(ClientError::Forbidden { message }) => assert_eq!(
            message,
            "token `grafana` (viewer) may not POST /api/v1/automation/pause; it needs an operator or admin token"
        ),
        other => panic!("the viewer paused automation: {other:?}"),
    }
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
    let alice = server.client_as(Some(OPERATOR));
    server
        .client()
        .post_alerts(fixture("firing-single.json"))
        .await
        .unwrap();
    alice.add_note("INC-1", NoteKind::Note, "looking").await.unwrap();
    alice.pause(None, None).await.unwrap();
    alice.resume(None).await.unwrap();
    let run = RunRequest {
        dry_run: true,
        params: params(json!({"text": "x"})),
        ..RunRequest::default()
    };
    let run = alice
        .start_run("slack-status-update", &run)
        .await
        .unwrap()
        .id
        .to_string();
    alice.resolve("INC-1").await.unwrap();
    let viewer = server.client_as(Some(VIEWER));
    let trail = viewer.audit(None).await.expect("the viewer reads the audit trail");
    let got: Vec<(String, String, String)> = trail.into_iter().rev().map(|r| (r.by, r.action, r.target)).collect();
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
