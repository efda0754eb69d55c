//! Slack both ways, against the real binary: the approval notice of the
//! shipped `region-failover` carries Approve and Deny, the incident-opened
//! notice Acknowledge; clicks come signed with the app's secret to
//! `POST /slack/interactions` and are taken with the clicking user's
//! rights (mapped by Slack user id), once, on the timeline and in the
//! audit trail as `oncall (Slack U0ONCALL)`. A local listener plays both
//! the incoming webhook and the `response_url`.

use hmac::{KeyInit, Mac};
use serde_json::{json, Value};

use crate::support::moto::{record_values, start_moto, zone};
use crate::support::{self, eventually, spawn_binary, webhook_body, Alert, Binary, Listener, TOKEN};
use laojun::incident::EventKind;
use laojun::run::{RunStatus, StepStatus};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`, as Slack signs.
fn sign(timestamp: i64, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// A `block_actions` payload: `user` clicked `action_id` with `value`;
/// Slack is to answer at `response_url`.
fn click(user: &str, action_id: &str, value: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "someone-else-entirely", "name": "admin"},
        "response_url": response_url,
        "container": {"type": "message", "channel_id": "C0OPS", "message_ts": "1733100000.000100"},
        "message": {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "the question that was asked"}}]},
        "actions": [{"action_id": action_id, "value": value, "block_id": "laojun", "type": "button"}],
    });
    serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
}

/// Posts `body` to /slack/interactions with these headers; the status.
async fn post(laojun: &Binary, body: &str, headers: &[(&str, String)]) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/slack/interactions", laojun.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Posts `body` signed now.
async fn signed(laojun: &Binary, body: &str) -> u16 {
    let now = chrono::Utc::now().timestamp();
    post(
        laojun,
        body,
        &[
            ("x-slack-request-timestamp", now.to_string()),
            ("x-slack-signature", sign(now, body)),
        ],
    )
    .await
}

/// What the listener got at `path`, waiting for the `n`th.
async fn at_path(slack: &Listener, path: &str, n: usize) -> Value {
    eventually(&format!("Slack to hear at {path}"), async || {
        let got: Vec<Value> = slack
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect();
        got.get(n).cloned()
    })
    .await
}

fn tokens() -> String {
    [("oncall", "operator"), ("bob", "operator"), ("vera", "viewer")]
        .iter()
        .map(|(name, role)| format!("    - {{name: {name}, role: {role}, token: \"{name}-token-0123456789abcdef\"}}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn approve_deny_and_ack_from_slack_are_verified_attributed_and_taken_once() {
    let Some(moto) = start_moto().await else { return };
    let (route53, zone_id) = zone(&moto.url, "laojun-slack").await;
    let kube = fake_kube::FakeKube::start().await.unwrap();
    kube.add_deployment("prod", "core-services", "registry.example/core-services:v7", 2);
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig, &["ap-east-1", "ap-southeast-1"])
        .unwrap();
    let slack = Listener::start().await;
    let config = work.path().join("laojun.yaml");
    std::fs::write(
        &config,
        format!(
            "auth:\n  tokens:\n{}kubernetes: {{kubeconfig: '{}'}}\naws: {{endpoint_url: '{}'}}\nslack:\n  webhook_url: '{}/webhook'\n  signing_secret: '${{env:SLACK_SIGNING_SECRET}}'\n  response_url_prefixes: ['{}/respond/']\n  users: {{U0ONCALL: oncall, U0BOB: bob, U0VERA: vera}}\n",
            tokens(),
            kubeconfig.display(),
            moto.url,
            slack.url,
            slack.url
        ),
    )
    .unwrap();
    let laojun = spawn_binary(|c| {
        c.arg("--root")
            .arg(support::repo())
            .arg("--data-dir")
            .arg(work.path().join("data"))
            .arg("--config")
            .arg(&config)
            .env("LAOJUN_API_TOKEN", TOKEN)
            .env("SLACK_SIGNING_SECRET", SECRET)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
    })
    .await;
    let api = laojun.client(TOKEN);
    api.post_alerts(webhook_body([Alert::firing(json!({
        "alertname": "RegionDown", "region": "ap-east-1", "hosted_zone_id": zone_id,
        "record_name": "api.example.com", "standby_target": "standby.example.com",
    }))
    .starts_at("2026-12-02T01:00:00Z")
    .fingerprint("00000000000re610")]))
        .await
        .unwrap();

    // The notices carry buttons naming what they act on.
    let opened = at_path(&slack, "/webhook", 0).await;
    let asked = eventually("the approval notice", async || {
        slack
            .bodies()
            .into_iter()
            .find(|b| b["text"].as_str().is_some_and(|t| t.starts_with(":raising_hand:")))
    })
    .await;
    println!("approval notice:\n{}", serde_json::to_string_pretty(&asked).unwrap());
    let buttons = |notice: &Value| -> Vec<(String, String)> {
        let blocks = notice["blocks"].as_array().unwrap();
        let actions = blocks
            .iter()
            .find(|b| b["type"] == "actions")
            .expect("an actions block");
        actions["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["action_id"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(buttons(&opened), [("ack".to_string(), "INC-1".to_string())], "{opened}");
    assert_eq!(
        buttons(&asked),
        [
            ("approve".to_string(), "RUN-1:ask".to_string()),
            ("deny".to_string(), "RUN-1:ask".to_string())
        ]
    );

    // Requests Slack did not sign are refused, and change nothing.
    let approve = click("U0ONCALL", "approve", "RUN-1:ask", &format!("{}/respond/1", slack.url));
    let now = chrono::Utc::now().timestamp();
    let stale = now - 600;
    for (what, headers) in [
        ("missing headers", vec![]),
        (
            "a wrong signature",
            vec![
                ("x-slack-request-timestamp", now.to_string()),
                ("x-slack-signature", sign(now, "other")),
            ],
        ),
        (
            "a stale timestamp",
            vec![
                ("x-slack-request-timestamp", stale.to_string()),
                ("x-slack-signature", sign(stale, &approve)),
            ],
        ),
    ] {
        assert_eq!(post(&laojun, &approve, &headers).await, 401, "{what}");
    }
    // An unmapped user, and one the step does not list, are refused with an ephemeral reply.
    let refusals = [
        ("U0NOBODY", "is not mapped to a laojun identity"),
        (
            "U0BOB",
            "`bob` (operator) may not decide this approval; oncall (or an admin) may",
        ),
    ];
    for (i, (user, why)) in refusals.iter().enumerate() {
        let url = format!("{}/respond/refused-{i}", slack.url);
        assert_eq!(signed(&laojun, &click(user, "approve", "RUN-1:ask", &url)).await, 200);
        let reply = at_path(&slack, &format!("/respond/refused-{i}"), 0).await;
        assert_eq!(reply["response_type"], "ephemeral", "{reply}");
        assert_eq!(reply["replace_original"], false);
        assert!(reply["text"].as_str().unwrap().contains(why), "{reply}");
    }
    assert_eq!(api.approvals().await.unwrap().len(), 1, "still waiting");

    // oncall approves: the run goes on, on the fake cluster and moto.
    assert_eq!(signed(&laojun, &approve).await, 200);
    let replaced = at_path(&slack, "/respond/1", 0).await;
    println!(
        "the message after the decision:\n{}",
        serde_json::to_string_pretty(&replaced).unwrap()
    );
    assert_eq!(replaced["replace_original"], true);
    assert_eq!(
        replaced["blocks"][0]["text"]["text"], "the question that was asked",
        "the replaced message keeps its question: {replaced}"
    );
    assert!(
        replaced["text"]
            .as_str()
            .unwrap()
            .contains("RUN-1 approved by oncall (Slack U0ONCALL) at "),
        "{replaced}"
    );
    let run = support::wait_run(&api, "RUN-1", &[RunStatus::Succeeded, RunStatus::Failed]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.steps[0].output["by"], "oncall (Slack U0ONCALL)");
    let scaled = kube.get("deployments", "prod", "core-services").unwrap();
    assert_eq!(scaled["spec"]["replicas"], 10);
    assert_eq!(
        record_values(&route53, &zone_id, "api.example.com").await[0].2,
        ["standby.example.com"]
    );

    // A second click decides nothing and says who decided first.
    let again = click("U0ONCALL", "deny", "RUN-1:ask", &format!("{}/respond/2", slack.url));
    assert_eq!(signed(&laojun, &again).await, 200);
    let reply = at_path(&slack, "/respond/2", 0).await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("RUN-1 was already approved by oncall (Slack U0ONCALL) at "),
        "{reply}"
    );
    let detail = api.incident("INC-1").await.unwrap();
    let decisions: Vec<(bool, &str)> = detail
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            EventKind::Approval { approved, by, .. } => Some((*approved, by.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(decisions, [(true, "oncall (Slack U0ONCALL)")], "one decision");

    // Acknowledge: a viewer may not; oncall may, and is the one recorded.
    let vera = click("U0VERA", "ack", "INC-1", &format!("{}/respond/ack-0", slack.url));
    assert_eq!(signed(&laojun, &vera).await, 200);
    let reply = at_path(&slack, "/respond/ack-0", 0).await;
    assert!(
        reply["text"].as_str().unwrap().contains("may not acknowledge"),
        "{reply}"
    );
    let ack = click("U0ONCALL", "ack", "INC-1", &format!("{}/respond/ack-1", slack.url));
    assert_eq!(signed(&laojun, &ack).await, 200);
    at_path(&slack, "/respond/ack-1", 0).await;
    let inc = api.incident("INC-1").await.unwrap().incident;
    assert_eq!(inc.acknowledged_by.as_deref(), Some("oncall (Slack U0ONCALL)"));

    // Deny: a run started by hand waits; oncall denies it from Slack and it fails saying who.
    let params = support::params(json!({
        "failed_region": "ap-east-1", "hosted_zone_id": zone_id, "record_name": "api.example.com",
        "standby_target": "standby.example.com",
    }));
    let manual = api
        .start_run(
            "region-failover",
            &laojun::client::RunRequest {
                params,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    eventually("the manual run to wait for approval", async || {
        (api.approvals().await.ok()?.len() == 1).then_some(())
    })
    .await;
    let deny = click(
        "U0ONCALL",
        "deny",
        &format!("{manual}:ask"),
        &format!("{}/respond/3", slack.url),
    );
    assert_eq!(signed(&laojun, &deny).await, 200);
    let denied = support::wait_run(&api, manual, &[RunStatus::Failed, RunStatus::Succeeded]).await;
    assert_eq!(denied.status, RunStatus::Failed);
    assert_eq!(denied.steps[0].status, StepStatus::Failed);
    assert!(
        denied.steps[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("oncall (Slack U0ONCALL)"),
        "{denied:#?}"
    );

    // The audit trail has every attempt, refused ones included, by Slack user.
    let trail = api.audit(Some(100)).await.unwrap();
    let seen: Vec<(String, String, bool)> = trail
        .iter()
        .rev()
        .filter(|a| a.by.contains("Slack"))
        .map(|a| {
            (
                a.by.clone(),
                a.action.clone(),
                a.detail.as_deref().is_some_and(|d| d.starts_with("refused")),
            )
        })
        .collect();
    let expected: Vec<(String, String, bool)> = [
        ("Slack U0NOBODY", "approve", true),
        ("bob (Slack U0BOB)", "approve", true),
        ("oncall (Slack U0ONCALL)", "approve", false),
        ("oncall (Slack U0ONCALL)", "deny", true),
        ("vera (Slack U0VERA)", "ack", true),
        ("oncall (Slack U0ONCALL)", "ack", false),
        ("oncall (Slack U0ONCALL)", "deny", false),
    ]
    .iter()
    .map(|(b, a, r)| (b.to_string(), a.to_string(), *r))
    .collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_signing_secret_notices_have_no_buttons_say_the_command_and_429s_are_retried() {
    let slack = Listener::start().await;
    // Slack rate-limits the first post; laojun waits and posts again.
    slack.answer_with(&[429]);
    let webhook = format!("{}/webhook", slack.url);
    let server = support::Server::start_with(move |c| c.slack.webhook_url = Some(webhook)).await;
    let c = server.client();
    c.post_alerts(webhook_body([Alert::firing(
        json!({"alertname": "Down", "severity": "critical"}),
    )
    .starts_at("2026-12-02T01:00:00Z")
    .fingerprint("00000000000d0001")]))
        .await
        .unwrap();
    let bodies = eventually("the notice, posted again after the 429", async || {
        let bodies = slack.bodies();
        (bodies.len() >= 2).then_some(bodies)
    })
    .await;
    assert_eq!(bodies[0], bodies[1], "the same notice, tried again");
    let notice = &bodies[1];
    assert!(
        notice["text"]
            .as_str()
            .unwrap()
            .contains("Acknowledge with `laojun incidents ack INC-1`"),
        "{notice}"
    );
    let blocks = notice["blocks"].as_array().unwrap();
    assert!(blocks.iter().all(|b| b["type"] != "actions"), "no buttons: {notice}");
    // The interactions route is off, and says how to turn it on.
    let answer = reqwest::Client::new()
        .post(format!("{}/slack/interactions", server.url))
        .body("payload={}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 404);
    assert!(answer.text().await.unwrap().contains("slack.signing_secret"));
    let metrics = c.metrics().await.unwrap();
    assert!(
        metrics.contains("laojun_notifications_total{outcome=\"sent\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}
