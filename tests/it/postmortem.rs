//! Postmortems: a golden rendering of a recorded incident with fixed
//! times, hostile label values that come out inert, and the postmortem
//! that `laojun serve` writes and serves when an incident resolves.

use crate::support;

use std::collections::BTreeMap;

use crate::support::{eventually, fixture, Listener, Server};
use chrono::{DateTime, Utc};
use laojun::alert::Status as AlertStatus;
use laojun::client::ClientError;
use laojun::incident::{Event, EventKind, Incident, IncidentAlert, NoteKind, Status};
use laojun::run::{Run, RunStatus, StepRecord, StepStatus, TriggerKind};
use laojun::severity::Severity;
use serde_json::json;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn ev(t: &str, what: EventKind) -> Event {
    Event { at: at(t), what }
}

/// The ops guide's example, as laojun would have recorded it.
fn recorded(service: &str) -> (Incident, Vec<Event>, Vec<Run>) {
    let labels: BTreeMap<String, String> = [
        ("alertname", "DatabaseConnectionsExhausted"),
        ("namespace", "prod"),
        ("deployment", service),
        ("region", "ap-east-1"),
        ("severity", "critical"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let incident = Incident {
        id: laojun::ids::IncidentId::new(7),
        title: format!("Connection pool exhausted on {service}"),
        status: Status::Resolved,
        severity: Severity::P1,
        playbook: "database-connection-exhaustion".into(),
        group: BTreeMap::new(),
        opened_at: at("2023-12-01T14:30:05Z"),
        acknowledged_at: None,
        acknowledged_by: None,
        commander: None,
        responders: Vec::new(),
        mitigated_at: Some(at("2023-12-01T14:31:10Z")),
        resolved_at: Some(at("2023-12-01T15:45:00Z")),
        alerts: vec![IncidentAlert {
            fingerprint: "9f2c1d0e8a7b6c5d".into(),
            status: AlertStatus::Resolved,
            labels,
            annotations: [(
                "summary".to_string(),
                format!("{service} has no free database connections"),
            )]
            .into(),
            starts_at: at("2023-12-01T14:30:00Z"),
            ends_at: Some(at("2023-12-01T15:44:30Z")),
            repeats: 4,
        }],
        alert_count: 1,
        alerts_firing: 0,
        runs: vec![laojun::ids::RunId::new(3)],
        events: 9,
    };
    let step = |step: &str, action: &str, status, t: &str, summary: Option<&str>| {
        ev(
            t,
            EventKind::Step {
                run: laojun::ids::RunId::new(3),
                step: step.into(),
                action: action.into(),
                status,
                attempt: 1,
                duration_ms: None,
                summary: summary.map(str::to_string),
                error: None,
            },
        )
    };
    let timeline = vec![
        ev(
            "2023-12-01T14:30:05Z",
            EventKind::Opened {
                playbook: "database-connection-exhaustion".into(),
                default_playbook: false,
            },
        ),
        ev(
            "2023-12-01T14:30:05Z",
            EventKind::SeveritySet { severity: Severity::P1 },
        ),
        ev(
            "2023-12-01T14:30:05Z",
            EventKind::AlertFired {
                fingerprint: "9f2c1d0e8a7b6c5d".into(),
                alertname: "DatabaseConnectionsExhausted".into(),
                starts_at: at("2023-12-01T14:30:00Z"),
            },
        ),
        ev(
            "2023-12-01T14:30:05Z",
            EventKind::RunStarted {
                run: laojun::ids::RunId::new(3),
                runbook: "restart-deployment".into(),
                dry_run: false,
                by: "alert".into(),
            },
        ),
        step(
            "restart",
            "k8s.restart",
            StepStatus::Running,
            "2023-12-01T14:30:06Z",
            None,
        ),
        step(
            "restart",
            "k8s.restart",
            StepStatus::Succeeded,
            "2023-12-01T14:30:06Z",
            Some(&format!("restarted deployment/{service} in prod")),
        ),
        ev(
            "2023-12-01T14:31:10Z",
            EventKind::RunFinished {
                run: laojun::ids::RunId::new(3),
                runbook: "restart-deployment".into(),
                status: RunStatus::Succeeded,
                reason: None,
                duration_ms: Some(65_000),
            },
        ),
        ev(
            "2023-12-01T14:40:00Z",
            EventKind::Note {
                note: NoteKind::RootCause,
                text: "The pool was sized for **50** connections; peak load needed 120.".into(),
                by: "alice".into(),
            },
        ),
        ev(
            "2023-12-01T15:45:00Z",
            EventKind::StatusChanged {
                from: Status::Mitigated,
                to: Status::Resolved,
                by: "alerts".into(),
            },
        ),
    ];
    let mut restart = StepRecord::new("restart", "k8s.restart");
    restart.status = StepStatus::Succeeded;
    restart.attempts = 1;
    restart.started_at = Some(at("2023-12-01T14:30:06Z"));
    restart.finished_at = Some(at("2023-12-01T14:30:06.250Z"));
    restart.summary = Some(format!("restarted deployment/{service} in prod"));
    let mut wait = StepRecord::new("wait", "k8s.wait_ready");
    wait.status = StepStatus::Succeeded;
    wait.attempts = 1;
    wait.started_at = Some(at("2023-12-01T14:30:06.300Z"));
    wait.finished_at = Some(at("2023-12-01T14:31:09Z"));
    wait.summary =
        Some("deployment/core-services in prod is ready (3/3 available, 3 updated, 3 total) after 62.7s".into());
    let run = Run {
        id: laojun::ids::RunId::new(3),
        runbook: "restart-deployment".into(),
        incident: Some(laojun::ids::IncidentId::new(7)),
        playbook: Some("database-connection-exhaustion".into()),
        trigger: TriggerKind::Alert,
        by: "alert".into(),
        params: serde_json::Map::new(),
        dry_run: false,
        status: RunStatus::Succeeded,
        steps: vec![restart, wait],
        created_at: at("2023-12-01T14:30:05Z"),
        finished_at: Some(at("2023-12-01T14:31:10Z")),
        reason: None,
        idempotency_key: None,
        alert: json!(null),
        group: None,
        mitigates: true,
        counts_for_guards: None,
        catalog_revision: String::new(),
        retry_of: None,
    };
    (incident, timeline, vec![run])
}

fn shipped_catalog() -> laojun::catalog::Catalog {
    let loaded = laojun::catalog::load(support::repo(), &laojun::script::Sandbox::default()).unwrap();
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.catalog
}

#[test]
fn the_postmortem_of_a_recorded_incident_matches_the_golden_file() {
    let (incident, timeline, runs) = recorded("core-services");
    let text = laojun::postmortem::render(
        &shipped_catalog(),
        &incident,
        &timeline,
        &runs,
        chrono_tz::Asia::Shanghai,
        at("2023-12-02T00:00:00Z"),
    )
    .unwrap();
    let golden_path = support::repo().join("tests/fixtures/postmortem/INC-7.md");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        text, golden,
        "the rendering changed; if on purpose, run with UPDATE_GOLDEN=1 and review the diff"
    );
    // What a reader checks first: real times in the configured zone and the computed durations.
    assert!(
        text.contains("**发生时间 (Detected)**: 2023-12-01 22:30:00 CST"),
        "{text}"
    );
    assert!(text.contains("**影响时长 (Duration)**: 1h 15m"), "{text}");
    assert!(text.contains("(6s after detection)"), "{text}");
}

#[test]
fn a_p0_incident_uses_the_p0_template() {
    let (mut incident, timeline, runs) = recorded("core-services");
    incident.severity = Severity::P0;
    let text = laojun::postmortem::render(
        &shipped_catalog(),
        &incident,
        &timeline,
        &runs,
        chrono_tz::UTC,
        Utc::now(),
    )
    .unwrap();
    assert!(text.starts_with("# 事件报告 (P0)"), "{text}");
    assert!(text.contains("## 对外沟通 (Communication)"));
}

#[test]
fn label_values_with_markdown_or_template_syntax_come_out_inert() {
    let hostile = "x](http://evil.example) # {{incident.id}} <script>|";
    let (incident, timeline, runs) = recorded(hostile);
    let text = laojun::postmortem::render(
        &shipped_catalog(),
        &incident,
        &timeline,
        &runs,
        chrono_tz::UTC,
        Utc::now(),
    )
    .unwrap();
    assert!(!text.contains("x](http://evil"), "a label made a link:\n{text}");
    assert!(!text.contains("<script>"), "a label made HTML:\n{text}");
    let inert = r"x\](http://evil.example) \# \{\{incident.id\}\} \<script\>\|";
    assert!(text.contains(inert), "{text}");
    // The timeline line and the step table row are written by laojun, not the template: escaped too.
    assert!(
        text.contains(&format!(
            " step \\`restart\\` (k8s.restart) succeeded: restarted deployment/{inert} in prod"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "| restart | k8s.restart | succeeded | 250 ms | restarted deployment/{inert} in prod |"
        )),
        "{text}"
    );
    assert_eq!(
        text.matches("INC-7").count(),
        laojun::postmortem::render(
            &shipped_catalog(),
            &recorded("core-services").0,
            &timeline,
            &runs,
            chrono_tz::UTC,
            Utc::now()
        )
        .unwrap()
        .matches("INC-7")
        .count(),
        "the label's {{{{incident.id}}}} was not expanded"
    );
}

#[test]
fn a_template_of_your_own_can_walk_the_timeline_and_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/postmortem.md.hbs"),
        "{{#each incident.timeline}}{{this.kind}} at {{this.time}}: {{this.text}}\n{{/each}}\
         {{#each incident.runs}}{{#each this.steps}}{{../id}}/{{this.id}} took {{this.duration_ms}} ms\n{{/each}}{{/each}}",
    )
    .unwrap();
    let loaded = laojun::catalog::load(dir.path(), &laojun::script::Sandbox::default()).unwrap();
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let (incident, timeline, runs) = recorded("core-services");
    let text =
        laojun::postmortem::render(&loaded.catalog, &incident, &timeline, &runs, chrono_tz::UTC, Utc::now()).unwrap();
    assert_eq!(text.lines().count(), timeline.len() + 2, "{text}");
    assert!(
        text.starts_with("opened at 14:30:05: incident opened by playbook"),
        "{text}"
    );
    assert!(
        text.contains("RUN-3/restart took 250 ms\nRUN-3/wait took 62700 ms\n"),
        "{text}"
    );
}

#[test]
fn sections_without_notes_ask_to_be_completed() {
    let (incident, mut timeline, runs) = recorded("core-services");
    timeline.retain(|e| !matches!(e.what, EventKind::Note { .. }));
    let text = laojun::postmortem::render(
        &shipped_catalog(),
        &incident,
        &timeline,
        &runs,
        chrono_tz::UTC,
        Utc::now(),
    )
    .unwrap();
    for prompt in [
        "_To be completed: what made this happen?_",
        "_To be completed: what keeps it from happening again?_",
        "_To be completed: what did we learn?_",
    ] {
        assert!(text.contains(prompt), "{prompt} missing:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resolving_an_incident_writes_its_postmortem_serves_it_and_tells_slack() {
    let slack = Listener::start().await;
    let webhook = format!("{}/slack", slack.url);
    let server = Server::start_with(move |c| {
        c.slack.webhook_url = Some(webhook);
        c.notifications.on = vec![laojun::notices::NoticeKind::IncidentResolved];
        c.external_url = Some("https://laojun.example".into());
    })
    .await;
    let c = server.client();
    c.post_alerts(fixture("firing-single.json")).await.unwrap();
    c.add_note("INC-1", NoteKind::RootCause, "a bad deploy").await.unwrap();
    c.post_alerts(fixture("resolved-single.json")).await.unwrap();
    let file = server.data_dir.join("postmortems/INC-1.md");
    eventually(&format!("the postmortem file at {}", file.display()), async || {
        file.exists().then_some(())
    })
    .await;
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.starts_with("# 事件报告 - HighErrorRate on web-1"), "{written}");
    assert!(written.contains("a bad deploy"));
    // The content type is a header, which only the raw response shows.
    let response = c
        .send_raw_response(reqwest::Method::GET, "/api/v1/incidents/INC-1/postmortem", "")
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/markdown; charset=utf-8");
    let served = c.postmortem("INC-1").await.unwrap();
    assert_eq!(served.lines().next(), written.lines().next());
    eventually("the Slack summary", async || (!slack.bodies().is_empty()).then_some(())).await;
    let summary = slack.bodies()[0]["text"].as_str().unwrap().to_string();
    assert!(
        summary.starts_with(":white_check_mark: INC-1 resolved after "),
        "{summary}"
    );
    assert!(
        summary.ends_with("Postmortem: https://laojun.example/api/v1/incidents/INC-1/postmortem"),
        "{summary}"
    );
    let missing = c.postmortem("INC-404").await;
    assert!(matches!(missing, Err(ClientError::NotFound { .. })), "{missing:?}");
    server.stop().await;
}
