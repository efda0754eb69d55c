//! Runbooks running for real through `laojun serve`: manual runs, retries,
//! on_failure, dry-run, approvals, idempotency keys, pause, guards and the
//! timeline, against local HTTP listeners standing in for Slack and an API.

use crate::support;

use crate::support::{root_with, wait_run, with_params, Alert, Listener, Server};
use laojun::client::{ApiClient, ClientError, RunRequest, StartedRun};
use laojun::ids::{IncidentId, RunId};
use laojun::incident::{EventKind, Status};
use laojun::run::{Run, RunStatus, StepStatus};
use reqwest::Method;
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
    # the admin token that starts these runs decides them too
    with: {who: [oncall], message: "go?", ttl_secs: 30, allow_self_approval: true}
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
        // These tests count the posts their runbooks make; laojun's own
        // notices are tested in trust.rs.
        c.notifications.on = Vec::new();
    })
    .await;
    (server, root)
}

fn statuses(run: &Run) -> Vec<(String, String, u64)> {
    run.steps
        .iter()
        .map(|s| (s.id.clone(), s.status.as_str().into(), u64::from(s.attempts)))
        .collect()
}

const FINISHED: &[RunStatus] = &[RunStatus::Succeeded, RunStatus::Failed];

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_run_posts_to_slack_and_retries_a_failing_webhook() {
    let slack = Listener::start().await;
    slack.answer_with(&[500, 503]);
    let (server, _root) = start(&[("runbooks/notify.yaml", NOTIFY)], &slack).await;
    let c = server.client();
    let answer = c
        .start_run("notify", &with_params(json!({"text": "hello <!channel>"})))
        .await
        .expect("the run starts");
    let run = wait_run(&c, answer.id, FINISHED).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
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
    let answer = c
        .start_run("call", &with_params(json!({"path": "/missing"})))
        .await
        .unwrap();
    let run = wait_run(&c, answer.id, FINISHED).await;
    assert_eq!(run.status, RunStatus::Failed);
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
    assert_eq!(run.steps[0].output["log"], json!(["checking /missing"]));
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
    let answer = c.start_run("call", &RunRequest::default()).await.unwrap();
    let run = wait_run(&c, answer.id, FINISHED).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(statuses(&run)[1], ("call".into(), "succeeded".into(), 3));
    assert_eq!(run.steps[1].output["status"], 200);
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
    let dry = RunRequest {
        dry_run: true,
        ..RunRequest::default()
    };
    let a = c.start_run("call", &dry).await.unwrap();
    let run = wait_run(&c, a.id, FINISHED).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    assert!(run.dry_run);
    assert_eq!(
        run.steps[1].summary.as_deref(),
        Some(format!("would send POST {}/ok", api.url).as_str())
    );
    assert_eq!(run.steps[2].summary.as_deref(), Some("would wait 0s"));
    let dry = RunRequest {
        dry_run: true,
        ..with_params(json!({"text": "hi"}))
    };
    let a = c.start_run("notify", &dry).await.unwrap();
    let run = wait_run(&c, a.id, FINISHED).await;
    assert_eq!(run.steps[0].output["would_post"]["text"], "hi");
    assert_eq!(run.steps[0].summary.as_deref(), Some("would post to #ops: hi"));
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
    let id = c.start_run("gated", &RunRequest::default()).await.unwrap().id;
    let waiting = wait_run(&c, id, &[RunStatus::AwaitingApproval]).await;
    assert_eq!(waiting.steps[0].status, StepStatus::AwaitingApproval);
    assert!(slack.bodies().is_empty(), "nothing ran before the approval");
    let decision = c.approve(id).await.expect("the approval is taken");
    assert_eq!(decision.decision, "approved", "{decision:?}");
    let run = wait_run(&c, id, FINISHED).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(slack.bodies()[0]["text"], "approved by api-token");
    let again = c.approve(id).await;
    assert!(
        matches!(again, Err(ClientError::Conflict { .. })),
        "nothing is waiting any more: {again:?}"
    );

    let id = c.start_run("gated", &RunRequest::default()).await.unwrap().id;
    wait_run(&c, id, &[RunStatus::AwaitingApproval]).await;
    c.deny(id).await.unwrap();
    let run = wait_run(&c, id, FINISHED).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.steps[0].error.as_deref(), Some("denied by api-token"));
    assert_eq!(slack.bodies().len(), 1, "the denied run posted nothing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_idempotency_key_twice_starts_one_run() {
    let slack = Listener::start().await;
    let (server, _root) = start(&[("runbooks/notify.yaml", NOTIFY)], &slack).await;
    let c = server.client();
    let body = br#"{"params": {"text": "once"}, "idempotency_key": "deploy-42"}"#.to_vec();
    // Raw responses: the status, 202 Accepted for the first and the repeat
    // alike, is what is checked here.
    let mut answers = Vec::new();
    for _ in 0..2 {
        let response = c
            .send_raw_response(Method::POST, "/api/v1/runbooks/notify/runs", body.clone())
            .await
            .unwrap();
        let status = response.status().as_u16();
        answers.push((status, response.json::<StartedRun>().await.unwrap()));
    }
    let [(s1, a1), (s2, a2)] = <[_; 2]>::try_from(answers).unwrap();
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(a1.id, a2.id);
    assert!(a2.duplicate);
    wait_run(&c, a1.id, &[RunStatus::Succeeded]).await;
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
        let e = c
            .send_raw(Method::POST, path, body)
            .await
            .expect_err("a bad run request is refused");
        assert_eq!(e.status().map(|s| s.as_u16()), Some(status), "{path}: {e}");
        assert!(e.message().unwrap().contains(message), "{path}: {e}");
    }
    let missing = c.run("RUN-99").await;
    assert!(matches!(missing, Err(ClientError::NotFound { .. })), "{missing:?}");
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

/// An incident's timeline as JSON, only the run events when `run_kinds_only`.
async fn timeline_kinds(c: &ApiClient, id: &str, run_kinds_only: bool) -> Vec<Value> {
    let inc = c.incident(id).await.unwrap();
    inc.timeline
        .iter()
        .filter(|e| {
            !run_kinds_only
                || matches!(
                    e.what,
                    EventKind::RunStarted { .. }
                        | EventKind::RunNotStarted { .. }
                        | EventKind::Step { .. }
                        | EventKind::RunFinished { .. }
                )
        })
        .map(support::json_of)
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
    let a = c.post_alerts(body.clone()).await.unwrap();
    assert_eq!(a.opened, [IncidentId::new(1)]);
    // Repeats do not start the runbook again.
    c.post_alerts(body.clone()).await.unwrap();
    c.post_alerts(body).await.unwrap();
    let run = wait_run(&c, "RUN-1", FINISHED).await;
    assert_eq!(run.incident, Some(IncidentId::new(1)));
    assert_eq!(run.params["text"], "disk full on db-1 (INC-1)");
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
    let inc = c.incident("INC-1").await.unwrap().incident;
    assert_eq!(
        inc.status,
        Status::Open,
        "a notify-only runbook (mitigates: false) leaves the incident open"
    );
    assert_eq!(inc.runs, [RunId::new(1)]);
    assert_eq!(slack.bodies().len(), 1);
    let second = c.run("RUN-2").await;
    assert!(
        matches!(second, Err(ClientError::NotFound { .. })),
        "no second run: {second:?}"
    );
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
    c.post_alerts(disk_full("db-1", "2026-11-29T12:00:00Z")).await.unwrap();
    wait_run(&c, "RUN-1", &[RunStatus::Succeeded]).await;
    // Resolved, then a new episode of the same group within the cooldown.
    let resolved = support::webhook_body([Alert::resolved(json!({"alertname": "DiskFull", "host": "db-1"}))
        .starts_at("2026-11-29T12:00:00Z")
        .fingerprint(&format!("{:0>16}", "db1"))
        .ends_at("2026-11-29T12:05:00Z")]);
    c.post_alerts(resolved).await.unwrap();
    let a = c.post_alerts(disk_full("db-1", "2026-11-29T13:00:00Z")).await.unwrap();
    assert_eq!(a.opened, [IncidentId::new(2)]);
    let run = wait_run(&c, "RUN-2", &[RunStatus::Refused]).await;
    assert!(run.reason.as_deref().unwrap().starts_with("cooldown"), "{run:#?}");
    let events = timeline_kinds(&c, "INC-2", true).await;
    assert_eq!(events[0]["kind"], "run_not_started");
    assert_eq!(events[0]["run"], "RUN-2");

    c.pause(None, None).await.expect("automation pauses");
    c.post_alerts(disk_full("db-2", "2026-11-29T13:00:00Z")).await.unwrap();
    let run = wait_run(&c, "RUN-3", &[RunStatus::Paused]).await;
    assert_eq!(run.reason.as_deref(), Some("automation is paused (by api-token)"));
    let refused = c.start_run("notify", &with_params(json!({"text": "x"}))).await;
    assert!(matches!(refused, Err(ClientError::Conflict { .. })), "{refused:?}");
    assert_eq!(
        slack.bodies().len(),
        1,
        "neither the cooled-down nor the paused run posted"
    );
    c.resume(None).await.unwrap();
    let a = c
        .start_run("notify", &with_params(json!({"text": "x"})))
        .await
        .expect("after resume, runs start again");
    wait_run(&c, a.id, &[RunStatus::Succeeded]).await;
    assert_eq!(slack.bodies().len(), 2, "after resume, runs post again");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connections_and_timeouts_are_retried_then_fail_the_step_with_the_reason() {
    // A port nobody listens on, and one that accepts but never answers.
    let closed = support::CLOSED;
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
    let a = c.start_run("flaky", &RunRequest::default()).await.unwrap();
    let run = wait_run(&c, a.id, FINISHED).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        statuses(&run),
        [
            ("refused".into(), "failed".into(), 2),
            ("silent".into(), "failed".into(), 2)
        ]
    );
    assert!(
        run.steps[0].error.as_deref().unwrap().contains("connection failed"),
        "{run:#?}"
    );
    assert_eq!(run.steps[1].error.as_deref(), Some("timed out after 1s (timeout_secs)"));
    server.stop().await;
}
