//! Secrets (the Slack webhook URL, API tokens, header values) never show in
//! logs at any level, API answers, timelines or postmortems, including when
//! the request that carries them fails.

use crate::support;

use crate::support::{spawn_binary, wait_run, Alert};
use laojun::client::{ApiClient, ClientError, IncidentQuery};
use laojun::run::RunStatus;
use reqwest::Method;

const SLACK_PATH: &str = "/services/T0SECRETSLACK/B0SECRETSLACK/xoxSECRETSLACKxox";
const API_TOKEN: &str = "tokenSECRETapi0123456789";
const HEADER_SECRET: &str = "hdrSECRETvalue0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn secrets_stay_out_of_logs_answers_timelines_and_postmortems_even_on_failure() {
    // Slack refuses connections; the HTTP endpoint answers 500.
    let closed = support::CLOSED;
    let api = support::Listener::start().await;
    api.answer_with(&[500, 500, 500]);
    let runbook = format!(
        r#"
name: leaky
steps:
  - id: tell
    action: slack.notify
    with: {{text: "hello"}}
    retries: {{attempts: 2, backoff_secs: 0.05}}
    on_failure: continue
  - id: call
    action: http
    with: {{method: POST, url: "{}/hook", headers: {{Authorization: "Bearer ${{env:LAOJUN_TEST_HEADER_SECRET}}"}}}}
    retries: {{attempts: 2, backoff_secs: 0.05}}
"#,
        api.url
    );
    let root = support::root_with(&[
        ("runbooks/leaky.yaml", &runbook),
        (
            "playbooks/leak.yaml",
            "name: leak\ntrigger: {alerts: ['alertname=\"Leak\"']}\nrunbooks:\n  - runbook: leaky\n",
        ),
    ]);
    std::fs::write(
        root.path().join("laojun.yaml"),
        "slack: {webhook_url: \"${env:LAOJUN_TEST_SLACK}\"}\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let (config, root_path) = (root.path().join("laojun.yaml"), root.path().to_path_buf());
    let laojun = spawn_binary(|c| {
        c.arg("--config")
            .arg(config)
            .arg("--root")
            .arg(root_path)
            .arg("--data-dir")
            .arg(data.path())
            .env("RUST_LOG", "trace")
            .env("LAOJUN_API_TOKEN", API_TOKEN)
            .env("LAOJUN_TEST_SLACK", format!("http://{closed}{SLACK_PATH}"))
            .env("LAOJUN_TEST_HEADER_SECRET", HEADER_SECRET);
    })
    .await;
    let c = laojun.client(API_TOKEN);
    let alert = support::webhook_body([Alert::firing(serde_json::json!({"alertname": "Leak"}))
        .starts_at("2026-11-29T12:00:00Z")
        .fingerprint("1eac")]);
    c.post_alerts(alert).await.expect("the alert is stored");
    let run = wait_run(&c, "RUN-1", &[RunStatus::Succeeded, RunStatus::Failed]).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:#?}");
    assert!(
        run.steps[0].error.as_deref().unwrap().contains("connection failed"),
        "{run:#?}"
    );
    // Wrong tokens are refused without echoing anything.
    let wrong = laojun.client(&format!("{API_TOKEN}x"));
    let refused = match wrong.incidents(&IncidentQuery::default()).await {
        Err(e @ ClientError::Unauthorized { .. }) => e,
        other => panic!("a wrong token read {other:?}"),
    };
    let mut answers = vec![refused.message().unwrap().to_string()];
    // Read as raw JSON, so a field the typed answers do not know is looked at too.
    for path in [
        "/api/v1/incidents/INC-1",
        "/api/v1/runs/RUN-1",
        "/api/v1/incidents",
        "/api/v1/runs",
    ] {
        answers.push(c.send_raw(Method::GET, path, "").await.unwrap().to_string());
    }
    // This root has no postmortem template, so the answer is an error:
    // whichever it is, it is checked.
    answers.push(match c.postmortem("INC-1").await {
        Ok(markdown) => markdown,
        Err(e) => e.to_string(),
    });
    answers.push(ApiClient::new(&laojun.url, None).metrics().await.unwrap());
    let logs = laojun.kill();
    assert!(logs.contains("\"level\":\"TRACE\""), "the logs were at trace level");
    let stored: String = walk_files(data.path());
    for secret in ["T0SECRETSLACK", "xoxSECRETSLACKxox", API_TOKEN, HEADER_SECRET] {
        assert!(!logs.contains(secret), "{secret} is in the logs");
        for a in &answers {
            assert!(!a.contains(secret), "{secret} is in an API answer: {a}");
        }
        assert!(!stored.contains(secret), "{secret} is in the data dir");
    }
    // The header's reference is kept as written, which is what people need to see.
    assert!(
        run.steps[1].error.as_deref().unwrap().contains("answered 500"),
        "{run:#?}"
    );
}

/// Everything under the data dir, as text (sled files included).
fn walk_files(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.push_str(&walk_files(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}
