//! The incident as people run it: acknowledging (the first ack counts),
//! naming the commander and responders, setting the severity, resolving
//! and reopening with a reason, notes of every kind: each on the timeline
//! with who, in the audit trail, and refused with a message naming the
//! field when the input is bad.

use laojun::client::ClientError;
use laojun::config::Role;
use laojun::incident::{EventKind, Status};
use laojun::severity::Severity;

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

/// Sends `body` to `POST /api/v1/incidents/{id}/{verb}` and expects a 4xx
/// whose message names `field`; returns the status.
async fn refused(client: &laojun::client::ApiClient, path: &str, body: &str, field: &str) -> u16 {
    let bad = client
        .send_raw(reqwest::Method::POST, path, body.to_string())
        .await
        .expect_err("bad input is refused");
    let message = bad.message().unwrap_or_default().to_string();
    assert!(
        message.contains(field),
        "{path} {body}: {message:?} does not name {field}"
    );
    let status = bad.status().expect("an answer from the server").as_u16();
    assert!((400..500).contains(&status), "{path} {body}: {status}");
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_raises_and_lowers_the_severity_with_a_reason_and_the_history_is_kept() {
    let server = Server::start_with(|c| {
        c.auth.tokens = vec![token("alice", Role::Operator), token("vera", Role::Viewer)];
    })
    .await;
    let admin = server.client();
    let alice = as_token(&server, "alice");
    admin.post_alerts(support::fixture("firing-single.json")).await.unwrap();
    let opened = admin.incident("INC-1").await.unwrap().incident.severity;

    let raised = alice
        .set_severity("INC-1", Severity::P0, "checkout is down for everyone")
        .await
        .unwrap();
    assert_eq!(raised.severity, Severity::P0);
    let lowered = alice
        .set_severity("INC-1", Severity::P3, "only the canary")
        .await
        .unwrap();
    assert_eq!(lowered.severity, Severity::P3, "a person may lower it");
    let history: Vec<(Option<Severity>, Severity, &str, Option<&str>)> = lowered
        .severity_history
        .iter()
        .map(|h| (h.from, h.to, h.by.as_str(), h.reason.as_deref()))
        .collect();
    assert_eq!(
        history[1..],
        [
            (
                Some(opened),
                Severity::P0,
                "alice",
                Some("checkout is down for everyone")
            ),
            (Some(Severity::P0), Severity::P3, "alice", Some("only the canary")),
        ]
    );
    assert_eq!((history[0].0, history[0].1, history[0].2), (None, opened, "alerts"));
    // The open-incident gauge follows a person's change.
    let metrics = admin.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"laojun_incidents_open{severity="P3"} 1"#),
        "{metrics}"
    );

    let detail = admin.incident("INC-1").await.unwrap();
    let changes: Vec<String> = detail
        .timeline
        .iter()
        .filter(|e| matches!(e.what, EventKind::SeverityChanged { .. }))
        .map(|e| e.what.describe())
        .collect();
    assert_eq!(
        changes,
        [
            format!("severity raised from {opened} to P0 by alice: checkout is down for everyone"),
            "severity lowered from P0 to P3 by alice: only the canary".to_string(),
        ]
    );
    let trail = admin.audit(None).await.unwrap();
    let audited: Vec<_> = trail
        .iter()
        .filter(|a| a.action == "severity")
        .map(|a| a.detail.clone())
        .collect();
    assert_eq!(
        audited,
        [
            Some("P3: only the canary".to_string()),
            Some("P0: checkout is down for everyone".to_string())
        ]
    );

    let path = "/api/v1/incidents/INC-1/severity";
    assert_eq!(
        refused(&alice, path, r#"{"severity": "P5", "reason": "x"}"#, "`severity`").await,
        400
    );
    assert_eq!(refused(&alice, path, r#"{"severity": "P1"}"#, "`reason`").await, 400);
    assert_eq!(
        refused(&alice, path, r#"{"severity": "P1", "reason": "  "}"#, "`reason`").await,
        400
    );
    assert_eq!(
        refused(
            &alice,
            path,
            r#"{"severity": "P1", "reason": "x", "by": "bob"}"#,
            "`by`"
        )
        .await,
        400
    );
    assert_eq!(
        refused(&alice, path, r#"{"severity": "P3", "reason": "again"}"#, "already P3").await,
        409
    );
    assert_eq!(
        refused(
            &alice,
            "/api/v1/incidents/INC-9/severity",
            r#"{"severity": "P1", "reason": "x"}"#,
            "INC-9"
        )
        .await,
        404
    );
    let viewer = as_token(&server, "vera");
    assert_eq!(
        refused(&viewer, path, r#"{"severity": "P1", "reason": "x"}"#, "").await,
        403
    );
    assert_eq!(
        admin.incident("INC-1").await.unwrap().incident.severity,
        Severity::P3,
        "nothing changed"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resolve_and_reopen_take_a_reason_and_the_groups_next_alert_joins_the_reopened_incident() {
    let server = Server::start_with(|c| c.auth.tokens = vec![token("alice", Role::Operator)]).await;
    let admin = server.client();
    let alice = as_token(&server, "alice");
    admin.post_alerts(support::fixture("firing-single.json")).await.unwrap();

    assert_eq!(
        refused(
            &alice,
            "/api/v1/incidents/INC-1/resolve",
            r#"{"reason": ""}"#,
            "`reason`"
        )
        .await,
        400
    );
    let resolved = alice
        .resolve_because("INC-1", Some("rolled back by hand"))
        .await
        .unwrap();
    assert_eq!(resolved.status, Status::Resolved);
    let reopen = "/api/v1/incidents/INC-1/reopen";
    assert_eq!(refused(&alice, reopen, "", "`reason`").await, 400);
    let unknown = r#"{"reason": "x"}"#;
    assert_eq!(
        refused(&alice, "/api/v1/incidents/INC-9/reopen", unknown, "INC-9").await,
        404
    );
    assert_eq!(
        refused(&alice, "/api/v1/incidents/INC-9/resolve", unknown, "INC-9").await,
        404
    );
    assert_eq!(refused(&alice, reopen, r#"{"why": "x"}"#, "`why`").await, 400);
    let reopened = alice.reopen("INC-1", "errors came back").await.unwrap();
    assert_eq!(reopened.status, Status::Open);
    assert_eq!(reopened.resolved_at, None);
    assert_eq!(
        refused(&alice, reopen, r#"{"reason": "again"}"#, "INC-1 is open").await,
        409
    );

    // The group's next alert joins the reopened incident instead of opening one.
    let mut next: serde_json::Value = serde_json::from_slice(&support::fixture("firing-single.json")).unwrap();
    next["alerts"][0]["startsAt"] = "2026-11-30T08:00:00Z".into();
    next["alerts"][0]["fingerprint"] = "0123456789abcdef".into();
    admin.post_alerts(serde_json::to_vec(&next).unwrap()).await.unwrap();
    let list = admin.incidents(&Default::default()).await.unwrap();
    assert_eq!(list.len(), 1, "no new incident: {list:?}");
    assert_eq!(list[0].alert_count, 2);

    // Resolved again; another incident of the group opens; reopening the first is refused, naming it.
    alice.resolve_because("INC-1", None).await.unwrap();
    next["alerts"][0]["startsAt"] = "2026-11-30T09:00:00Z".into();
    admin.post_alerts(serde_json::to_vec(&next).unwrap()).await.unwrap();
    assert_eq!(
        refused(&alice, reopen, r#"{"reason": "x"}"#, "INC-2 is open for the same group").await,
        409
    );

    let detail = admin.incident("INC-1").await.unwrap();
    let statuses: Vec<(Status, Status, Option<&str>)> = detail
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            EventKind::StatusChanged { from, to, reason, .. } => Some((*from, *to, reason.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (Status::Open, Status::Resolved, Some("rolled back by hand")),
            (Status::Resolved, Status::Open, Some("errors came back")),
            (Status::Open, Status::Resolved, None),
        ]
    );
    let trail = admin.audit(None).await.unwrap();
    let actions: Vec<(&str, Option<&str>)> = trail
        .iter()
        .filter(|a| a.by == "alice")
        .map(|a| (a.action.as_str(), a.detail.as_deref()))
        .collect();
    assert_eq!(
        actions,
        [
            ("resolve", None),
            ("reopen", Some("errors came back")),
            ("resolve", Some("rolled back by hand"))
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn notes_of_every_kind_and_action_items_with_an_owner_and_a_due_date() {
    let server = Server::start().await;
    let c = server.client();
    c.post_alerts(support::fixture("firing-single.json")).await.unwrap();
    for kind in laojun::incident::NoteKind::NAMES {
        let mut body = serde_json::json!({"kind": kind, "text": format!("a {kind}")});
        if *kind == "action_item" {
            body["owner"] = "bob".into();
            body["due"] = "2026-12-24".into();
        }
        let stored = c.note("INC-1", &body).await.unwrap();
        assert_eq!(stored.incident.to_string(), "INC-1");
    }
    let path = "/api/v1/incidents/INC-1/notes";
    for (body, field) in [
        (
            r#"{"kind": "action_item", "text": "x", "owner": "bob", "due": "24/12/2026"}"#,
            "`due`",
        ),
        (
            r#"{"kind": "action_item", "text": "x", "owner": "bob", "due": "2026-02-30"}"#,
            "`due`",
        ),
        (
            r#"{"kind": "action_item", "text": "x", "due": "2026-12-24"}"#,
            "`owner`",
        ),
        (r#"{"kind": "impact", "text": "x", "owner": "bob"}"#, "action items"),
        (r#"{"kind": "gossip", "text": "x"}"#, "`kind`"),
        (r#"{"kind": "impact", "text": ""}"#, "`text`"),
        (r#"{"kind": "impact"}"#, "`text`"),
    ] {
        assert_eq!(refused(&c, path, body, field).await, 400, "{body}");
    }
    let missing = c
        .note("INC-9", &serde_json::json!({"kind": "impact", "text": "x"}))
        .await
        .unwrap_err();
    assert!(matches!(missing, ClientError::NotFound { .. }), "{missing:?}");
    let detail = c.incident("INC-1").await.unwrap();
    let notes: Vec<(String, Option<&str>, Option<String>)> = detail
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            EventKind::Note { note, owner, due, .. } => {
                Some((note.as_str().to_string(), owner.as_deref(), due.map(|d| d.to_string())))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        notes.len(),
        laojun::incident::NoteKind::NAMES.len(),
        "bad input added nothing: {notes:?}"
    );
    assert!(notes.contains(&("action_item".into(), Some("bob"), Some("2026-12-24".into()))));
    let postmortem = c.postmortem("INC-1").await.unwrap();
    assert!(
        postmortem.contains("| bob | 2026-12-24 | a action\\_item |"),
        "{postmortem}"
    );
    assert!(
        postmortem.contains("## 影响 (Impact)\n- a impact _(api-token)_"),
        "{postmortem}"
    );
    server.stop().await;
}
