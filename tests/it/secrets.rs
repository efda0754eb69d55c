//! Secrets (the Slack webhook URL, API tokens, header values) never show in
//! logs at any level, API answers, timelines or postmortems, including when
//! the request that carries them fails.

use crate::support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const SLACK_PATH: &str = "/services/T0SECRETSLACK/B0SECRETSLACK/xoxSECRETSLACKxox";
const API_TOKEN: &str = "tokenSECRETapi0123456789";
const HEADER_SECRET: &str = "hdrSECRETvalue0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn secrets_stay_out_of_logs_answers_timelines_and_postmortems_even_on_failure() {
    // Slack refuses connections; the HTTP endpoint answers 500.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--config"])
        .arg(root.path().join("laojun.yaml"))
        .arg("--root")
        .arg(root.path())
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_LOG", "trace")
        .env("LAOJUN_API_TOKEN", API_TOKEN)
        .env("LAOJUN_TEST_SLACK", format!("http://{closed}{SLACK_PATH}"))
        .env("LAOJUN_TEST_HEADER_SECRET", HEADER_SECRET)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = tx.send(chunk.clone());
            all.push_str(&chunk);
        }
        all
    });
    let mut seen = String::new();
    let addr = loop {
        seen.push_str(&rx.recv_timeout(Duration::from_secs(20)).expect("laojun logs"));
        if let Some(line) = seen.lines().find(|l| l.contains("laojun listening")) {
            let v: Value = serde_json::from_str(line).unwrap();
            break v["fields"]["addr"].as_str().unwrap().to_string();
        }
    };
    let c = support::Client {
        url: format!("http://{addr}"),
        http: reqwest::Client::new(),
        token: Some(API_TOKEN.into()),
    };
    let alert = br#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"Leak"},"startsAt":"2026-11-29T12:00:00Z","fingerprint":"1eac"}]}"#;
    assert_eq!(c.post("/api/v1/alerts", alert.to_vec()).await.0, 200);
    let run = c.wait_run("RUN-1", &["succeeded", "failed"]).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    assert!(
        run["steps"][0]["error"].as_str().unwrap().contains("connection failed"),
        "{run:#}"
    );
    // Wrong tokens are refused without echoing anything.
    let mut wrong = c.clone();
    wrong.token = Some(format!("{API_TOKEN}x"));
    let (_, refused) = wrong.get("/api/v1/incidents").await;
    let mut answers = vec![refused.to_string()];
    for path in [
        "/api/v1/incidents/INC-1",
        "/api/v1/runs/RUN-1",
        "/api/v1/incidents",
        "/api/v1/runs",
    ] {
        answers.push(c.get(path).await.1.to_string());
    }
    let postmortem = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/incidents/INC-1/postmortem"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    answers.push(postmortem);
    answers.push(
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let logs = reader.join().unwrap();
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
        run["steps"][1]["error"].as_str().unwrap().contains("answered 500"),
        "{run:#}"
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
