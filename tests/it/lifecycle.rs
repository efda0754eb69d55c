//! The incident as people run it: acknowledging (the first ack counts, on
//! the timeline and in the audit trail).

use laojun::client::ClientError;
use laojun::config::Role;
use laojun::incident::EventKind;

use crate::support::{self, as_token, token, Server};

#[tokio::test(flavor = "multi_thread")]
async fn the_first_ack_counts_and_is_on_the_timeline_and_in_the_audit_trail() {
    let server = Server::start_with(|c| c.auth.tokens = vec![token("alice", Role::Operator)]).await;
    let admin = server.client();
    let alice = as_token(&server, "alice");
    admin.post_alerts(support::fixture("firing-single.json")).await.unwrap();

    let acked = alice.ack("INC-1").await.unwrap();
    assert_eq!(acked.acknowledged_by.as_deref(), Some("alice"));
    let at = acked.acknowledged_at.expect("a time");
    let again = admin.ack("INC-1").await.unwrap();
    assert_eq!(again.acknowledged_by.as_deref(), Some("alice"), "the first ack counts");
    assert_eq!(again.acknowledged_at, Some(at));

    let detail = admin.incident("INC-1").await.unwrap();
    let acks: Vec<&str> = detail
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            EventKind::Acknowledged { by } => Some(by.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(acks, ["alice"], "one ack on the timeline");
    let trail = admin.audit(None).await.unwrap();
    let audited: Vec<&str> = trail
        .iter()
        .filter(|a| a.action == "ack")
        .map(|a| a.by.as_str())
        .collect();
    assert_eq!(audited, ["alice"]);

    let missing = alice.ack("INC-9").await.unwrap_err();
    assert!(matches!(missing, ClientError::NotFound { .. }), "{missing:?}");
    let bad = alice
        .send_raw(reqwest::Method::POST, "/api/v1/incidents/INC-1/ack", r#"{"by": "bob"}"#)
        .await
        .unwrap_err();
    assert!(bad.message().unwrap().contains("send `{}` or no body"), "{bad:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_acks_at_once_record_and_audit_one() {
    let server = Server::start_with(|c| {
        c.auth.tokens = vec![token("alice", Role::Operator), token("bob", Role::Operator)];
    })
    .await;
    let alice = as_token(&server, "alice");
    let bob = as_token(&server, "bob");
    let admin = server.client();
    admin.post_alerts(support::fixture("firing-single.json")).await.unwrap();

    let (a, b) = tokio::join!(alice.ack("INC-1"), bob.ack("INC-1"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.acknowledged_by, b.acknowledged_by,
        "both answers name the same first ack"
    );
    let first = a.acknowledged_by.expect("acknowledged");
    let trail = admin.audit(None).await.unwrap();
    let audited: Vec<&str> = trail
        .iter()
        .filter(|e| e.action == "ack")
        .map(|e| e.by.as_str())
        .collect();
    assert_eq!(audited, [first.as_str()], "exactly the first ack is audited");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_names_the_commander_and_responders() {
    let server = Server::start_with(|c| c.auth.tokens = vec![token("alice", Role::Operator)]).await;
    let admin = server.client();
    let alice = as_token(&server, "alice");
    admin.post_alerts(support::fixture("firing-single.json")).await.unwrap();

    let inc = alice
        .assign(
            "INC-1",
            &serde_json::json!({"commander": "alice", "responders": ["bob", "carol"]}),
        )
        .await
        .unwrap();
    assert_eq!(inc.commander.as_deref(), Some("alice"));
    assert_eq!(inc.responders, ["bob", "carol"]);
    let inc = alice
        .assign("INC-1", &serde_json::json!({"add_responders": ["dave", "bob"]}))
        .await
        .unwrap();
    assert_eq!(inc.commander.as_deref(), Some("alice"), "a key not sent is kept");
    assert_eq!(
        inc.responders,
        ["bob", "carol", "dave"],
        "add_responders adds who is not there yet"
    );
    let inc = alice
        .assign("INC-1", &serde_json::json!({"responders": ["erin"]}))
        .await
        .unwrap();
    assert_eq!(inc.responders, ["erin"], "responders replaces the list");

    let detail = admin.incident("INC-1").await.unwrap();
    let assigned = detail
        .timeline
        .iter()
        .filter(|e| matches!(e.what, EventKind::Assigned { .. }))
        .count();
    assert_eq!(assigned, 3, "each assignment is on the timeline");
    let trail = admin.audit(None).await.unwrap();
    assert_eq!(
        trail.iter().filter(|a| a.action == "assign" && a.by == "alice").count(),
        3
    );

    for (body, names) in [
        (r#"{}"#, "nothing to assign"),
        (r#"{"commander": "  "}"#, "`commander`"),
        (r#"{"responders": ["ok", ""]}"#, "`responders`"),
        (r#"{"owner": "x"}"#, "owner"),
    ] {
        let bad = alice
            .send_raw(reqwest::Method::POST, "/api/v1/incidents/INC-1/assign", body)
            .await
            .unwrap_err();
        let message = bad.message().unwrap_or_default().to_string();
        assert!(message.contains(names), "{body}: {message}");
    }
    let unchanged = admin.incident("INC-1").await.unwrap();
    assert_eq!(unchanged.incident.responders, ["erin"], "bad input changes nothing");
    let missing = alice
        .assign("INC-9", &serde_json::json!({"commander": "alice"}))
        .await
        .unwrap_err();
    assert!(matches!(missing, ClientError::NotFound { .. }), "{missing:?}");
    server.stop().await;
}
