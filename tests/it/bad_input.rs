//! The bad-input table: hostile and broken inputs, and the answer each
//! gets. Printed as a table (run with --nocapture) for the record.

use crate::support::{first_run, root_with, run_to_end, wait_run, webhook_body, Alert, Listener, Server};
use laojun::client::{IncidentQuery, RunRequest};
use laojun::run::{RunStatus, StepStatus};
use reqwest::Method;
use serde_json::{json, Value};

fn alert_body(labels: Value, starts_at: &str) -> Vec<u8> {
    webhook_body([Alert::firing(labels).starts_at(starts_at)])
}

const RUNBOOKS: &[(&str, &str)] = &[
    ("runbooks/spin.yaml", "name: spin\nsteps:\n  - id: spin\n    action: script\n    with: {source: \"loop { }\"}\n"),
    ("runbooks/hog.yaml", "name: hog\nsteps:\n  - id: hog\n    action: script\n    with: {source: \"let s = \\\"x\\\"; loop { s += s; }\"}\n"),
    (
        "runbooks/echo.yaml",
        "name: echo\nparams:\n  who: {type: string, required: true}\nsteps:\n  - id: check\n    action: script\n    when: 'params.who == \"admin\"'\n    with: {source: \"#{ran: true}\"}\n  - id: say\n    action: slack.notify\n    with: {text: \"hello {{params.who}}\"}\n",
    ),
    (
        "playbooks/echo.yaml",
        "name: echo\ntrigger: {alerts: ['alertname=\"Echo\"']}\ngroup_by: [alertname, who]\nrunbooks:\n  - runbook: echo\n    params: {who: \"{{alert.labels.who}}\"}\n",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn hostile_and_broken_inputs_get_a_clear_answer_and_change_nothing_else() {
    let slack = Listener::start().await;
    let root = root_with(RUNBOOKS);
    let (root_path, webhook) = (root.path().to_path_buf(), format!("{}/hook", slack.url));
    let server = Server::start_with(move |c| {
        c.root = root_path;
        c.slack.webhook_url = Some(webhook);
    })
    .await;
    let c = server.client();
    let big_label = "x".repeat(10 * 1024 * 1024);
    let many: Vec<Value> = (0..100_000).map(|i| json!({"status": "firing", "labels": {"alertname": "Many", "i": i.to_string()}, "startsAt": "2026-11-29T12:00:00Z"})).collect();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut invalid_utf8 = alert_body(json!({"alertname": "X"}), "2026-11-29T12:00:00Z");
    invalid_utf8.splice(30..30, [0xff, 0xfe, 0xfd]);
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            "/api/v1/alerts",
            b"{\"alerts\": [}".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "truncated JSON",
            "/api/v1/alerts",
            alert_body(json!({"alertname": "X"}), "2026-11-29T12:00:00Z")[..40].to_vec(),
            400,
            "EOF while parsing",
        ),
        (
            "wrong type: labels is a list",
            "/api/v1/alerts",
            br#"{"alerts":[{"status":"firing","labels":["a"],"startsAt":"2026-11-29T12:00:00Z"}]}"#.to_vec(),
            400,
            "invalid type",
        ),
        (
            "wrong type: status is a number",
            "/api/v1/alerts",
            br#"{"alerts":[{"status":1,"labels":{},"startsAt":"2026-11-29T12:00:00Z"}]}"#.to_vec(),
            400,
            "not an AlertManager (version 4) or Grafana (version 1) webhook",
        ),
        (
            "10 MB label value",
            "/api/v1/alerts",
            alert_body(json!({"alertname": "X", "big": big_label}), "2026-11-29T12:00:00Z"),
            413,
            "larger than the limit",
        ),
        (
            "100k alerts in one body",
            "/api/v1/alerts",
            serde_json::to_vec(&json!({"version": "4", "alerts": many})).unwrap(),
            413,
            "larger than the limit",
        ),
        ("invalid UTF-8", "/api/v1/alerts", invalid_utf8, 400, "not valid JSON"),
        (
            "10k-deep nesting",
            "/api/v1/alerts",
            deep.into_bytes(),
            400,
            "not valid JSON",
        ),
        (
            "startsAt in year 99999",
            "/api/v1/alerts",
            alert_body(json!({"alertname": "X"}), "99999-01-01T00:00:00Z"),
            400,
            "is not an RFC 3339 time",
        ),
        (
            "startsAt month 13",
            "/api/v1/alerts",
            alert_body(json!({"alertname": "X"}), "2026-13-01T00:00:00Z"),
            400,
            "is not an RFC 3339 time",
        ),
        ("empty body", "/api/v1/alerts", Vec::new(), 400, "not valid JSON"),
        (
            "traversal in a runbook name",
            "/api/v1/runbooks/..%2F..%2Fetc%2Fpasswd/runs",
            b"{}".to_vec(),
            404,
            "no runbook",
        ),
        (
            "traversal in an incident id",
            "/api/v1/incidents/..%2F..%2Fetc%2Fpasswd/notes",
            br#"{"text":"x"}"#.to_vec(),
            404,
            "incident ids look like INC-42",
        ),
        (
            "traversal in a run id",
            "/api/v1/runs/..%2FRUN-1/approve",
            Vec::new(),
            404,
            "run ids look like RUN-7",
        ),
    ];
    let mut table = vec![("input".to_string(), "answer".to_string(), "message".to_string())];
    for (name, path, body, status, message) in cases {
        let e = c
            .send_raw(Method::POST, path, body)
            .await
            .expect_err("a bad input is refused");
        let got = e.status().map_or(0, |s| s.as_u16());
        let text = e.message().unwrap_or_default().to_string();
        assert_eq!(got, status, "{name}: {e}");
        assert!(text.contains(message), "{name}: {text}");
        table.push((name.to_string(), got.to_string(), text.chars().take(90).collect()));
    }
    let incidents = c.incidents(&IncidentQuery::default()).await.unwrap();
    assert!(incidents.is_empty(), "no bad body left anything behind: {incidents:#?}");

    // Scripts that never end or never stop growing fail their step within their limits.
    for runbook in ["spin", "hog"] {
        let started = std::time::Instant::now();
        let run = run_to_end(&c, runbook, &RunRequest::default()).await;
        assert_eq!(run.status, RunStatus::Failed);
        let error = run.steps[0].error.clone().unwrap();
        assert!(error.contains("limit") || error.contains("too large"), "{error}");
        table.push((
            format!("Rhai `{runbook}` script"),
            format!("step failed in {:.1}s", started.elapsed().as_secs_f64()),
            error.chars().take(90).collect(),
        ));
    }

    // Label values with template and script syntax are data, never code.
    for (who, case) in [
        ("{{params.who}} {{#each alert}}x{{/each}}", "Handlebars in a label"),
        ("admin\" || true || \"", "Rhai in a label"),
    ] {
        let body = alert_body(json!({"alertname": "Echo", "who": who}), "2026-11-29T12:00:00Z");
        let a = c.post_alerts(body).await.expect("the alert is stored");
        let run_id = first_run(&c, a.opened[0]).await;
        let run = wait_run(&c, run_id, &[RunStatus::Succeeded, RunStatus::Failed]).await;
        assert_eq!(run.params["who"], who, "the label went in as a value");
        assert_eq!(
            run.steps[0].status,
            StepStatus::Skipped,
            "`when` compared the label as a string: {run:#?}"
        );
        let said = run.steps[1].output["status"].clone();
        assert_eq!(said, 200);
        table.push((
            case.to_string(),
            "run succeeded".into(),
            format!("params.who = {who:?}, `when` skipped the admin step"),
        ));
    }
    let texts: Vec<String> = slack
        .bodies()
        .iter()
        .map(|b| b["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t == "hello {{params.who}} {{#each alert}}x{{/each}}"),
        "{texts:?}"
    );

    let width = table.iter().map(|r| r.0.len()).max().unwrap();
    for (input, answer, message) in &table {
        eprintln!("| {input:<width$} | {answer:<22} | {message} |");
    }
    server.stop().await;
}
