//! Runbooks running for real through `laojun serve`: manual runs, retries,
//! on_failure, dry-run, approvals, idempotency keys, pause, guards and the
//! timeline, against local HTTP listeners standing in for Slack and an API.

use crate::support;

use crate::support::{root_with, Alert, Listener, Server};
use serde_json::{json, Value};

const NOTIFY: &str = r##"
name: notify
params:
  text: {type: string, required: true}
steps:
  - id: post
    action: slack.notify
    with: {channel: "#ops", text: "{{params.text}}"}
    retries: {attempts: 3, backoff_secs: 0.05}
"##;

fn call_runbook(url: &str) -> String {
    format!(
        r#"
name: call
params:
  path: {{type: string, default: /ok}}
  attempts: {{type: int, default: 3}}
steps:
  - id: check
    action: script
    with:
      source: |
        print("checking " + params.path);
        #{{target: "{url}" + params.path}}
  - id: call
    action: http
    when: steps.check.output.target != ""
    with: {{method: POST, url: "{{{{steps.check.output.target}}}}", body: {{hello: world}}}}
    retries: {{attempts: 3, backoff_secs: 0.05}}
    on_failure:
      - id: tell
        action: slack.notify
        with: {{text: "call failed: {{{{steps.call.error}}}}"}}
  - id: after
    action: wait
    with: {{secs: 0}}
"#
    )
}

const GATED: &str = r#"
name: gated
steps:
  - id: ask
    action: approval
    with: {who: [oncall], message: "go?", ttl_secs: 30}
  - id: post
    action: slack.notify
    with: {text: "approved by {{steps.ask.output.by}}"}
"#;

async fn start(files: &[(&str, &str)], slack: &Listener) -> (Server, tempfile::TempDir) {
    let root = root_with(files);
    let root_path = root.path().to_path_buf();
    let webhook = format!("{}/slack", slack.url);
    let server = Server::start_with(move |c| {
        c.root = root_path;
        c.slack.webhook_url = Some(webhook);
    })
    .await;
    (server, root)
}

fn statuses(run: &Value) -> Vec<(String, String, u64)> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
                s["attempts"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_run_posts_to_slack_and_retries_a_failing_webhook() {
    let slack = Listener::start().await;
    slack.answer_with(&[500, 503]);
    let (server, _root) = start(&[("runbooks/notify.yaml", NOTIFY)], &slack).await;
    let c = server.client();
    let (status, answer) = c
        .post(
            "/api/v1/runbooks/notify/runs",
            br#"{"params": {"text": "hello <!channel>"}}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap();
    let run = c.wait_run(id, &["succeeded", "failed"]).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(statuses(&run), [("post".into(), "succeeded".into(), 3)]);
    let bodies = slack.bodies();
    assert_eq!(bodies.len(), 3, "two failures, then the post that worked");
    assert_eq!(bodies[2]["channel"], "#ops");
    assert_eq!(
        bodies[2]["text"], "hello &lt;!channel&gt;",
        "a parameter cannot mention @channel"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_error_is_not_retried_and_on_failure_steps_run() {
    let slack = Listener::start().await;
    let api = Listener::start().await;
    api.answer_with(&[404]);
    let runbook = call_runbook(&api.url);
    let (server, _root) = start(&[("runbooks/call.yaml", &runbook)], &slack).await;
    let c = server.client();
    let (_, answer) = c
        .post(
            "/api/v1/runbooks/call/runs",
            br#"{"params": {"path": "/missing"}}"#.to_vec(),
        )
        .await;
    let run = c
        .wait_run(answer["id"].as_str().unwrap(), &["succeeded", "failed"])
        .await;
    assert_eq!(run["status"], "failed");
    assert_eq!(
        statuses(&run),
        [
            ("check".into(), "succeeded".into(), 1),
            ("call".into(), "failed".into(), 1),
            ("after".into(), "pending".into(), 0),
            ("tell".into(), "succeeded".into(), 1),
        ]
    );
    assert_eq!(api.bodies(), [json!({"hello": "world"})], "a 404 is final: one request");
    let told = &slack.bodies()[0]["text"];
    assert!(told.as_str().unwrap().contains("answered 404"), "{told}");
    assert_eq!(run["steps"][0]["output"]["log"], json!(["checking /missing"]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_is_retried_until_it_passes() {
    let slack = Listener::start().await;
    let api = Listener::start().await;
    api.answer_with(&[502, 500]);
    let runbook = call_runbook(&api.url);
    let (server, _root) = start(&[("runbooks/call.yaml", &runbook)], &slack).await;
    let c = server.client();
    let (_, answer) = c.post("/api/v1/runbooks/call/runs", b"{}".to_vec()).await;
    let run = c
        .wait_run(answer["id"].as_str().unwrap(), &["succeeded", "failed"])
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(statuses(&run)[1], ("call".into(), "succeeded".into(), 3));
    assert_eq!(run["steps"][1]["output"]["status"], 200);
    assert_eq!(api.bodies().len(), 3);
    assert!(slack.bodies().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_reports_what_it_would_do_and_sends_nothing() {
    let slack = Listener::start().await;
    let api = Listener::start().await;
    let runbook = call_runbook(&api.url);
    let (server, _root) = start(
        &[("runbooks/call.yaml", &runbook), ("runbooks/notify.yaml", NOTIFY)],
        &slack,
    )
    .await;
    let c = server.client();
    let (_, a) = c
        .post("/api/v1/runbooks/call/runs", br#"{"dry_run": true}"#.to_vec())
        .await;
    let run = c.wait_run(a["id"].as_str().unwrap(), &["succeeded", "failed"]).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["dry_run"], true);
    assert_eq!(run["steps"][1]["summary"], format!("would send POST {}/ok", api.url));
    assert_eq!(run["steps"][2]["summary"], "would wait 0s");
    let (_, a) = c
        .post(
            "/api/v1/runbooks/notify/runs",
            br#"{"dry_run": true, "params": {"text": "hi"}}"#.to_vec(),
        )
        .await;
    let run = c.wait_run(a["id"].as_str().unwrap(), &["succeeded", "failed"]).await;
    assert_eq!(run["steps"][0]["output"]["would_post"]["text"], "hi");
    assert_eq!(run["steps"][0]["summary"], "would post to #ops: hi");
    assert!(
        api.bodies().is_empty() && slack.bodies().is_empty(),
        "a dry run sent something"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_waits_for_a_person_and_records_who_decided() {
    let slack = Listener::start().await;
    let (server, _root) = start(&[("runbooks/gated.yaml", GATED)], &slack).await;
    let c = server.client();
    let (_, a) = c.post("/api/v1/runbooks/gated/runs", vec![]).await;
    let id = a["id"].as_str().unwrap().to_string();
    let waiting = c.wait_run(&id, &["awaiting_approval"]).await;
    assert_eq!(waiting["steps"][0]["status"], "awaiting_approval");
    assert!(slack.bodies().is_empty(), "nothing ran before the approval");
    let (status, answer) = c.post(&format!("/api/v1/runs/{id}/approve"), vec![]).await;
    assert_eq!(status, 200, "{answer}");
    let run = c.wait_run(&id, &["succeeded", "failed"]).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(slack.bodies()[0]["text"], "approved by api-token");
    let (status, _) = c.post(&format!("/api/v1/runs/{id}/approve"), vec![]).await;
    assert_eq!(status, 409, "nothing is waiting any more");

    let (_, a) = c.post("/api/v1/runbooks/gated/runs", vec![]).await;
    let id = a["id"].as_str().unwrap().to_string();
    c.wait_run(&id, &["awaiting_approval"]).await;
    c.post(&format!("/api/v1/runs/{id}/deny"), vec![]).await;
    let run = c.wait_run(&id, &["succeeded", "failed"]).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["steps"][0]["error"], "denied by api-token");
    assert_eq!(slack.bodies().len(), 1, "the denied run posted nothing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_idempotency_key_twice_starts_one_run() {
    let slack = Listener::start().await;
    let (server, _root) = start(&[("runbooks/notify.yaml", NOTIFY)], &slack).await;
    let c = server.client();
    let body = br#"{"params": {"text": "once"}, "idempotency_key": "deploy-42"}"#.to_vec();
    let (s1, a1) = c.post("/api/v1/runbooks/notify/runs", body.clone()).await;
    let (s2, a2) = c.post("/api/v1/runbooks/notify/runs", body).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(a1["id"], a2["id"]);
    assert_eq!(a2["duplicate"], true);
    c.wait_run(a1["id"].as_str().unwrap(), &["succeeded"]).await;
    assert_eq!(slack.bodies().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_run_requests_say_what_is_wrong() {
    let slack = Listener::start().await;
    let (server, _root) = start(&[("runbooks/notify.yaml", NOTIFY)], &slack).await;
    let c = server.client();
    for (path, body, status, message) in [
        ("/api/v1/runbooks/nope/runs", "{}", 404, "no runbook `nope`"),
        (
            "/api/v1/runbooks/notify/runs",
            "{}",
            400,
            "parameter `text` is required",
        ),
        (
            "/api/v1/runbooks/notify/runs",
            r#"{"params": {"text": "x", "txt": "y"}}"#,
            400,
            "has no parameter `txt`",
        ),
        (
            "/api/v1/runbooks/notify/runs",
            r#"{"parms": {}}"#,
            400,
            "unknown field `parms`",
        ),
        ("/api/v1/runs/RUN-99/approve", "", 409, "not waiting"),
    ] {
        let (got, answer) = c.post(path, body.as_bytes().to_vec()).await;
        assert_eq!(got, status, "{path}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(message), "{path}: {answer}");
    }
    let (got, _) = c.get("/api/v1/runs/RUN-99").await;
    assert_eq!(got, 404);
    server.stop().await;
}

const PLAYBOOK: &str = r#"
name: disk-full
trigger:
  alerts: ['alertname="DiskFull"']
severity: P2
group_by: [alertname, host]
runbooks:
  - runbook: notify
    params: {text: "disk full on {{alert.labels.host}} ({{incident.id}})"}
guards:
  cooldown_secs: 3600
"#;

fn disk_full(host: &str, starts: &str) -> Vec<u8> {
    support::webhook_body([Alert::firing(json!({"alertname": "DiskFull", "host": host}))
        .starts_at(starts)
        .fingerprint(&format!("{:0>16}", host.replace('-', "")))])
}

async fn timeline_kinds(c: &support::Client, id: &str, run_kinds_only: bool) -> Vec<Value> {
    let (_, inc) = c.get(&format!("/api/v1/incidents/{id}")).await;
    inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            !run_kinds_only
                || matches!(
                    e["kind"].as_str(),
                    Some("run_started" | "run_not_started" | "step" | "run_finished")
                )
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_firing_alert_runs_the_playbook_once_and_the_timeline_shows_each_step() {
    let slack = Listener::start().await;
    let (server, _root) = start(
        &[("runbooks/notify.yaml", NOTIFY), ("playbooks/disk-full.yaml", PLAYBOOK)],
        &slack,
    )
    .await;
    let c = server.client();
    let body = disk_full("db-1", "2026-11-29T12:00:00Z");
    let (_, a) = c.post("/api/v1/alerts", body.clone()).await;
    assert_eq!(a["opened"], json!(["INC-1"]));
    // Repeats do not start the runbook again.
    c.post("/api/v1/alerts", body.clone()).await;
    c.post("/api/v1/alerts", body).await;
    let run = c.wait_run("RUN-1", &["succeeded", "failed"]).await;
    assert_eq!(run["incident"], "INC-1");
    assert_eq!(run["params"]["text"], "disk full on db-1 (INC-1)");
    let events = timeline_kinds(&c, "INC-1", true).await;
    let lines: Vec<String> = events
        .iter()
        .map(|e| format!("{} {}", e["kind"].as_str().unwrap(), e["status"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        lines,
        [
            "run_started ",
            "step running",
            "step succeeded",
            "run_finished succeeded"
        ]
    );
    assert!(
        events[2]["duration_ms"].is_number(),
        "steps carry their timing: {}",
        events[2]
    );
    let (_, inc) = c.get("/api/v1/incidents/INC-1").await;
    assert_eq!(inc["status"], "mitigated", "a successful run mitigates the incident");
    assert_eq!(inc["runs"], json!(["RUN-1"]));
    assert_eq!(slack.bodies().len(), 1);
    assert_eq!(c.get("/api/v1/runs/RUN-2").await.0, 404, "no second run");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cooldown_and_pause_stop_runs_and_say_so_on_the_timeline() {
    let slack = Listener::start().await;
    let (server, _root) = start(
        &[("runbooks/notify.yaml", NOTIFY), ("playbooks/disk-full.yaml", PLAYBOOK)],
        &slack,
    )
    .await;
    let c = server.client();
    c.post("/api/v1/alerts", disk_full("db-1", "2026-11-29T12:00:00Z"))
        .await;
    c.wait_run("RUN-1", &["succeeded"]).await;
    // Resolved, then a new episode of the same group within the cooldown.
    let resolved = support::webhook_body([Alert::resolved(json!({"alertname": "DiskFull", "host": "db-1"}))
        .starts_at("2026-11-29T12:00:00Z")
        .fingerprint(&format!("{:0>16}", "db1"))
        .ends_at("2026-11-29T12:05:00Z")]);
    c.post("/api/v1/alerts", resolved).await;
    let (_, a) = c
        .post("/api/v1/alerts", disk_full("db-1", "2026-11-29T13:00:00Z"))
        .await;
    assert_eq!(a["opened"], json!(["INC-2"]));
    let run = c.wait_run("RUN-2", &["refused"]).await;
    assert!(run["reason"].as_str().unwrap().starts_with("cooldown"), "{run}");
    let events = timeline_kinds(&c, "INC-2", true).await;
    assert_eq!(events[0]["kind"], "run_not_started");
    assert_eq!(events[0]["run"], "RUN-2");

    let (status, _) = c.post("/api/v1/automation/pause", vec![]).await;
    assert_eq!(status, 200);
    c.post("/api/v1/alerts", disk_full("db-2", "2026-11-29T13:00:00Z"))
        .await;
    let run = c.wait_run("RUN-3", &["paused"]).await;
    assert_eq!(run["reason"], "automation is paused (by api-token)");
    let (status, answer) = c
        .post("/api/v1/runbooks/notify/runs", br#"{"params": {"text": "x"}}"#.to_vec())
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        slack.bodies().len(),
        1,
        "neither the cooled-down nor the paused run posted"
    );
    c.post("/api/v1/automation/resume", vec![]).await;
    let (status, a) = c
        .post("/api/v1/runbooks/notify/runs", br#"{"params": {"text": "x"}}"#.to_vec())
        .await;
    assert_eq!(status, 202);
    c.wait_run(a["id"].as_str().unwrap(), &["succeeded"]).await;
    assert_eq!(slack.bodies().len(), 2, "after resume, runs post again");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connections_and_timeouts_are_retried_then_fail_the_step_with_the_reason() {
    // A port nobody listens on, and one that accepts but never answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let runbook = format!(
        r#"
name: flaky
steps:
  - id: refused
    action: http
    with: {{url: "http://{closed}/health"}}
    retries: {{attempts: 2, backoff_secs: 0.05}}
    on_failure: continue
  - id: silent
    action: http
    with: {{url: "http://{silent_addr}/health"}}
    timeout_secs: 1
    retries: {{attempts: 2, backoff_secs: 0.05}}
"#
    );
    let slack = Listener::start().await;
    let (server, _root) = start(&[("runbooks/flaky.yaml", &runbook)], &slack).await;
    let c = server.client();
    let (_, a) = c.post("/api/v1/runbooks/flaky/runs", vec![]).await;
    let run = c.wait_run(a["id"].as_str().unwrap(), &["succeeded", "failed"]).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(
        statuses(&run),
        [
            ("refused".into(), "failed".into(), 2),
            ("silent".into(), "failed".into(), 2)
        ]
    );
    assert!(
        run["steps"][0]["error"].as_str().unwrap().contains("connection failed"),
        "{run:#}"
    );
    assert_eq!(run["steps"][1]["error"], "timed out after 1s (timeout_secs)");
    server.stop().await;
}
