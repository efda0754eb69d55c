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
        started_at: Some(at("2023-12-01T14:30:00Z")),
        severity_history: vec![laojun::incident::SeverityChange {
            at: at("2023-12-01T14:30:05Z"),
            from: None,
            to: Severity::P1,
            by: "alerts".into(),
            reason: Some("playbook `database-connection-exhaustion`".into()),
        }],
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
            generator_url: Some("http://prometheus:9090/graph?g0.expr=pg_stat_activity_count".into()),
            extras: None,
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
                owner: None,
                due: None,
            },
        ),
        ev(
            "2023-12-01T15:45:00Z",
            EventKind::StatusChanged {
                from: Status::Mitigated,
                to: Status::Resolved,
                by: "alerts".into(),
                reason: None,
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
        lease: None,
    };
    (incident, timeline, vec![run])
}

fn shipped_catalog() -> laojun::catalog::Catalog {
    let loaded = laojun::catalog::load(support::repo(), &laojun::script::Sandbox::default()).unwrap();
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.catalog
}

/// Renders with the shipped templates in Shanghai time and compares with
/// `tests/fixtures/postmortem/{name}` (UPDATE_GOLDEN=1 writes it).
fn golden(name: &str, incident: &Incident, timeline: &[Event], runs: &[Run]) -> String {
    let style = laojun::postmortem::Style {
        tz: chrono_tz::Asia::Shanghai,
        external_url: Some("https://laojun.example.com".into()),
    };
    let text = laojun::postmortem::render(
        &shipped_catalog(),
        incident,
        timeline,
        runs,
        style,
        at("2023-12-02T00:00:00Z"),
    )
    .unwrap();
    let golden_path = support::repo().join("tests/fixtures/postmortem").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        text, golden,
        "the rendering of {name} changed; if on purpose, run with UPDATE_GOLDEN=1 and review the diff"
    );
    text
}

fn note(t: &str, note: NoteKind, text: &str, by: &str) -> Event {
    ev(
        t,
        EventKind::Note {
            note,
            text: text.into(),
            by: by.into(),
            owner: None,
            due: None,
        },
    )
}

/// The guide's example with every section filled in by the people on it:
/// ack, commander and responders, a severity raised by hand, notes of
/// every kind, action items, and a step that took two attempts.
fn filled() -> (Incident, Vec<Event>, Vec<Run>) {
    let (mut incident, mut timeline, mut runs) = recorded("core-services");
    incident.acknowledged_at = Some(at("2023-12-01T14:33:00Z"));
    incident.acknowledged_by = Some("alice".into());
    incident.commander = Some("alice".into());
    incident.responders = vec!["bob".into(), "carol".into()];
    incident.severity_history[0].to = Severity::P2;
    timeline[1].what = EventKind::SeveritySet { severity: Severity::P2 };
    incident.severity_history.push(laojun::incident::SeverityChange {
        at: at("2023-12-01T14:35:00Z"),
        from: Some(Severity::P2),
        to: Severity::P1,
        by: "alice".into(),
        reason: Some("checkout fails for all users in ap-east-1".into()),
    });
    incident.alerts[0].annotations.insert(
        "description".into(),
        "pg_stat_activity shows 50 of 50 connections in use".into(),
    );
    incident.alerts[0]
        .annotations
        .insert("runbook_url".into(), "https://wiki.example.com/runbooks/db-pool".into());
    runs[0].steps[0].attempts = 2;
    if let EventKind::Step {
        attempt, duration_ms, ..
    } = &mut timeline[5].what
    {
        *attempt = 2;
        *duration_ms = Some(1250);
    }
    let action = |t: &str, text: &str, owner: &str, due: &str| {
        ev(
            t,
            EventKind::Note {
                note: NoteKind::ActionItem,
                text: text.into(),
                by: "alice".into(),
                owner: Some(owner.into()),
                due: Some(due.parse().unwrap()),
            },
        )
    };
    let resolved = timeline.pop().unwrap();
    let people = [
        ev(
            "2023-12-01T14:30:05.500Z",
            EventKind::Evidence {
                run: laojun::ids::RunId::new(3),
                step: "pool".into(),
                action: "prometheus.query".into(),
                summary: Some("`max(pg_stat_activity_count{service=\"core-services\"})` = 50".into()),
                output: json!({"value": 50.0, "samples": [{"labels": {"service": "core-services"}, "value": 50.0}], "expect_met": null}),
            },
        ),
        ev("2023-12-01T14:33:00Z", EventKind::Acknowledged { by: "alice".into() }),
        ev(
            "2023-12-01T14:34:00Z",
            EventKind::Assigned {
                commander: Some("alice".into()),
                responders: vec!["bob".into(), "carol".into()],
                by: "alice".into(),
            },
        ),
        ev(
            "2023-12-01T14:35:00Z",
            EventKind::SeverityChanged {
                from: Severity::P2,
                to: Severity::P1,
                by: "alice".into(),
                reason: "checkout fails for all users in ap-east-1".into(),
            },
        ),
        note(
            "2023-12-01T14:50:00Z",
            NoteKind::Impact,
            "Users in ap-east-1 could not check out for 75 minutes; about 1,200 orders failed.",
            "bob",
        ),
        note(
            "2023-12-01T15:10:00Z",
            NoteKind::Solution,
            "Raised the pool from 50 to 150 connections.",
            "bob",
        ),
        note(
            "2023-12-01T15:20:00Z",
            NoteKind::Prevention,
            "Load-test at twice the peak before each release.",
            "carol",
        ),
        note(
            "2023-12-01T15:30:00Z",
            NoteKind::Lesson,
            "Capacity planning must cover the database, not just the pods.",
            "alice",
        ),
        note("2023-12-01T15:35:00Z", NoteKind::Note, "Status page updated.", "carol"),
        action("2023-12-01T15:40:00Z", "Alert at 80% pool use", "bob", "2023-12-08"),
        action(
            "2023-12-01T15:41:00Z",
            "Size the pool from measured peak | not guesses",
            "carol",
            "2023-12-15",
        ),
    ];
    timeline.extend(people);
    timeline.sort_by_key(|e| e.at);
    timeline.push(resolved);
    incident.events = timeline.len() as u32;
    (incident, timeline, runs)
}

#[test]
fn the_postmortem_of_a_filled_in_incident_matches_the_golden_file() {
    let (incident, timeline, runs) = filled();
    let text = golden("INC-7.md", &incident, &timeline, &runs);
    // What a reader checks first: real times in the configured zone, the
    // people, and durations counted from the alert's start.
    for line in [
        "- **发生时间 (Started)**: 2023-12-01 22:30:00 CST",
        "- **确认时间 (Acknowledged)**: 2023-12-01 22:33:00 CST by alice (3m 00s)",
        "- **指挥官 (Commander)**: alice",
        "- **响应人员 (Responders)**: bob, carol",
        "- **影响时长 (Impact)**: 1h 14m (first alert's start to last alert's end)",
        "  - 2023-12-01 22:35:00 CST: P2 → P1 by alice: checkout fails for all users in ap-east-1",
        "| bob | 2023-12-08 | Alert at 80% pool use |",
        "| carol | 2023-12-15 | Size the pool from measured peak \\| not guesses |",
        "  - Links: [runbook](https://wiki.example.com/runbooks/db-pool) · [source](http://prometheus:9090/graph?g0.expr=pg%5Fstat%5Factivity%5Fcount)",
        "## 现场证据 (Evidence)\n- 2023-12-01 22:30:05 CST — RUN-3 step \\`pool\\` (prometheus.query) saw: \\`max(pg\\_stat\\_activity\\_count\\{service=\"core-services\"\\})\\` = 50 — \\{\"expect\\_met\":null,",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    // A step is one line: where it began, how it ended.
    let restart: Vec<&str> = text.lines().filter(|l| l.contains("step \\`restart\\`")).collect();
    assert_eq!(
        restart,
        vec!["- 2023-12-01 22:30:06 CST — RUN-3 step \\`restart\\` (k8s.restart) succeeded (2 attempts, 1.2s): restarted deployment/core-services in prod"]
    );
}

#[test]
fn timeline_lines_carry_their_date_across_midnight() {
    let (mut incident, mut timeline, runs) = recorded("core-services");
    // 23:50 to 00:20 in Shanghai: the lines after midnight say the next day.
    let shift = chrono::Duration::minutes(80);
    for e in &mut timeline {
        e.at += shift;
    }
    incident.opened_at += shift;
    incident.started_at = incident.started_at.map(|t| t + shift);
    incident.mitigated_at = incident.mitigated_at.map(|t| t + shift);
    incident.resolved_at = Some(at("2023-12-01T16:20:00Z"));
    incident.alerts[0].starts_at += shift;
    incident.alerts[0].ends_at = Some(at("2023-12-01T16:19:30Z"));
    *timeline.last_mut().unwrap() = ev(
        "2023-12-01T16:20:00Z",
        EventKind::StatusChanged {
            from: Status::Mitigated,
            to: Status::Resolved,
            by: "alerts".into(),
            reason: None,
        },
    );
    let text = golden("INC-7-midnight.md", &incident, &timeline, &runs);
    assert!(
        text.contains("- 2023-12-01 23:50:05 CST — incident opened by playbook"),
        "{text}"
    );
    assert!(
        text.contains("- 2023-12-02 00:20:00 CST — status mitigated → resolved (alerts)"),
        "{text}"
    );
}

#[test]
fn impact_comes_from_the_alerts_not_from_when_laojun_heard_of_them() {
    let (mut incident, mut timeline, _) = recorded("core-services");
    // The alert fired at 14:30:00 and ended 37 s later; AlertManager's
    // group_wait and group_interval delivered both later.
    incident.alerts[0].ends_at = Some(at("2023-12-01T14:30:37Z"));
    incident.mitigated_at = None;
    incident.resolved_at = Some(at("2023-12-01T14:30:46Z"));
    incident.runs.clear();
    timeline.retain(|e| {
        !matches!(
            e.what,
            EventKind::RunStarted { .. }
                | EventKind::Step { .. }
                | EventKind::RunFinished { .. }
                | EventKind::Note { .. }
        )
    });
    *timeline.last_mut().unwrap() = ev(
        "2023-12-01T14:30:46Z",
        EventKind::StatusChanged {
            from: Status::Open,
            to: Status::Resolved,
            by: "alerts".into(),
            reason: None,
        },
    );
    let text = golden("INC-7-short.md", &incident, &timeline, &[]);
    assert!(
        text.contains("- **影响时长 (Impact)**: 37s (first alert's start to last alert's end)"),
        "{text}"
    );
    assert!(
        text.contains("- **解决时间 (Resolved)**: 2023-12-01 22:30:46 CST (46s)"),
        "{text}"
    );
    assert!(
        text.contains("- **检测时间 (Detected)**: 2023-12-01 22:30:05 CST (5s after it started)"),
        "{text}"
    );
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
    assert!(
        text.contains("## 告警 (Alerts)\n- **DatabaseConnectionsExhausted** (resolved)"),
        "the P0 template shows the alerts:\n{text}"
    );
}

#[test]
fn label_values_with_markdown_or_template_syntax_come_out_inert() {
    let hostile = "x](http://evil.example) # {{incident.id}} <script>|";
    let (mut incident, timeline, runs) = recorded(hostile);
    let annotations = &mut incident.alerts[0].annotations;
    annotations.insert("runbook_url".into(), "javascript:alert(1)".into());
    annotations.insert(
        "description".into(),
        "<img src=x onerror=alert(1)> [click](http://evil)".into(),
    );
    incident.alerts[0].generator_url = Some("http://prom:9090/graph?g0.expr=up)[evil](http://evil.example".into());
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
            " step \\`restart\\` (k8s.restart) succeeded (1 attempt): restarted deployment/{inert} in prod"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "| restart | k8s.restart | succeeded | 1 | 250 ms | restarted deployment/{inert} in prod |"
        )),
        "{text}"
    );
    // Links only when they are http(s), and encoded so they cannot end early.
    assert!(!text.contains("javascript:"), "{text}");
    let bare_angle = text.match_indices('<').find(|(i, _)| !text[..*i].ends_with('\\'));
    assert_eq!(bare_angle, None, "every < is escaped, so no HTML:\n{text}");
    assert!(
        text.contains("  - Links: [source](http://prom:9090/graph?g0.expr=up%29%5Bevil%5D%28http://evil.example)"),
        "{text}"
    );
    assert!(
        text.contains(r"  - Description: \<img src=x onerror=alert(1)\> \[click\](http://evil)"),
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
        text.starts_with("opened at 2023-12-01 14:30:05 UTC: incident opened by playbook"),
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
        "_To be completed: who was affected, and how badly?_",
        "_None yet: add them with",
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
        c.server.external_url = Some("https://laojun.example".into());
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
    // The alert says how long it lasted (startsAt to endsAt), as the postmortem does.
    let body: serde_json::Value = serde_json::from_slice(&fixture("resolved-single.json")).unwrap();
    let (starts, ends) = (&body["alerts"][0]["startsAt"], &body["alerts"][0]["endsAt"]);
    let lasted = at(ends.as_str().unwrap()) - at(starts.as_str().unwrap());
    let impact = laojun::timing::human(lasted.num_seconds());
    assert!(
        summary.starts_with(&format!(
            ":white_check_mark: INC-1 (P1) resolved: HighErrorRate on web-1. Impact {impact};"
        )),
        "{summary}"
    );
    assert!(
        written.contains(&format!("- **影响时长 (Impact)**: {impact} (first")),
        "{written}"
    );
    // The link is the incident's page for people, under server.external_url.
    assert!(
        summary.ends_with(" https://laojun.example/ui/incidents/INC-1"),
        "{summary}"
    );
    // A note after the resolve reaches the file, which stays what the API serves.
    c.note(
        "INC-1",
        &json!({"kind": "action_item", "text": "add a canary", "owner": "bob", "due": "2026-12-24"}),
    )
    .await
    .unwrap();
    let rewritten = eventually("the postmortem file to show the action item", async || {
        let text = std::fs::read_to_string(&file).ok()?;
        text.contains("| bob | 2026-12-24 | add a canary |").then_some(text)
    })
    .await;
    assert_eq!(c.postmortem("INC-1").await.unwrap(), rewritten);
    let leftovers: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("INC-1.md")],
        "no partial files left"
    );
    let missing = c.postmortem("INC-404").await;
    assert!(matches!(missing, Err(ClientError::NotFound { .. })), "{missing:?}");
    server.stop().await;
}

/// The guide's example (database connection pool exhausted, P1) run
/// through the routes as a team would: the playbook restarts the
/// deployment on the fake cluster, people ack, name a commander, raise the
/// severity, write notes of every kind and action items, the alert
/// resolves. The postmortem has every section filled; run with
/// `--nocapture` to read it.
#[tokio::test(flavor = "multi_thread")]
async fn the_guides_example_run_through_the_routes_fills_every_section() {
    let kube = fake_kube::FakeKube::start().await.unwrap();
    kube.add_deployment("prod", "core-services", "registry.example/core-services:v7", 3);
    let work = tempfile::tempdir().unwrap();
    kube.write_kubeconfig(&work.path().join("kubeconfig"), &["ap-east-1"])
        .unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    let slack = Listener::start().await;
    let webhook = format!("{}/slack", slack.url);
    let server = Server::start_with(move |c| {
        c.kubernetes.kubeconfig = Some(kubeconfig);
        c.slack.webhook_url = Some(webhook);
        c.postmortem.timezone = "Asia/Shanghai".into();
        c.server.external_url = Some("https://laojun.example.com".into());
    })
    .await;
    let c = server.client();
    let started = Utc::now() - chrono::Duration::seconds(95);
    let alert = |status: &str| {
        let labels = json!({
            "alertname": "DatabaseConnectionsExhausted", "namespace": "prod",
            "deployment": "core-services", "region": "ap-east-1", "severity": "warning",
        });
        let a = if status == "resolved" {
            support::Alert::resolved(labels).ends_at(&(started + chrono::Duration::seconds(75)).to_rfc3339())
        } else {
            support::Alert::firing(labels)
        };
        support::webhook_body([a
            .annotations(json!({
                "summary": "core-services has no free database connections",
                "description": "pg_stat_activity: 50 of 50 connections in use",
                "runbook_url": "https://wiki.example.com/runbooks/db-pool",
            }))
            .starts_at(&started.to_rfc3339())
            .fingerprint("9f2c1d0e8a7b6c5d")])
    };
    c.post_alerts(alert("firing")).await.unwrap();
    eventually("the restart to mitigate INC-1", async || {
        let inc = c.incident("INC-1").await.ok()?.incident;
        inc.mitigated_at.is_some().then_some(())
    })
    .await;
    c.ack("INC-1").await.unwrap();
    c.assign("INC-1", &json!({"commander": "alice", "responders": ["bob", "carol"]}))
        .await
        .unwrap();
    c.set_severity("INC-1", Severity::P0, "checkout fails for every user")
        .await
        .unwrap();
    c.set_severity("INC-1", Severity::P1, "only ap-east-1 is affected")
        .await
        .unwrap();
    for (kind, text) in [
        (
            "impact",
            "Users in ap-east-1 could not check out; about 1,200 orders failed.",
        ),
        (
            "root_cause",
            "The pool was sized for **50** connections; peak load needed 120.",
        ),
        (
            "solution",
            "Raised the pool to 150 connections and restarted core-services.",
        ),
        ("prevention", "Load-test at twice the peak before each release."),
        (
            "lesson",
            "Capacity planning must cover the database, not just the pods.",
        ),
        ("note", "Status page updated at 14:40."),
    ] {
        c.note("INC-1", &json!({"kind": kind, "text": text})).await.unwrap();
    }
    for (text, owner, due) in [
        ("Alert at 80% pool use", "bob", "2026-12-09"),
        ("Size the pool from measured peak", "carol", "2026-12-16"),
    ] {
        c.note(
            "INC-1",
            &json!({"kind": "action_item", "text": text, "owner": owner, "due": due}),
        )
        .await
        .unwrap();
    }
    c.post_alerts(alert("resolved")).await.unwrap();
    let file = server.data_dir.join("postmortems/INC-1.md");
    let text = eventually("the postmortem file", async || {
        let text = std::fs::read_to_string(&file).ok()?;
        text.contains("status mitigated → resolved").then_some(text)
    })
    .await;
    println!("{text}");
    for needle in [
        "# 事件报告 - core-services has no free database connections",
        "[INC-1](https://laojun.example.com/ui/incidents/INC-1)",
        "- **指挥官 (Commander)**: alice",
        "- **响应人员 (Responders)**: bob, carol",
        "by api-token (",
        ": P1 → P0 by api-token: checkout fails for every user",
        ": P0 → P1 by api-token: only ap-east-1 is affected",
        "- **影响时长 (Impact)**: 1m 15s (first alert's start to last alert's end)",
        "## 影响 (Impact)\n- Users in ap-east-1 could not check out",
        "RUN-2 step \\`restart\\` (k8s.restart) succeeded (1 attempt",
        "- **DatabaseConnectionsExhausted** (resolved)",
        "  - Links: [runbook](https://wiki.example.com/runbooks/db-pool)",
        "| bob | 2026-12-09 | Alert at 80% pool use |",
        "| carol | 2026-12-16 | Size the pool from measured peak |",
        "The pool was sized for **50** connections",
        "1. Raised the pool to 150 connections",
        "1. Load-test at twice the peak",
        "- Capacity planning must cover the database",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    assert!(!text.contains("_To be completed"), "every section is filled:\n{text}");
    assert!(!text.contains("| failed |"), "every step succeeded:\n{text}");
    assert_eq!(
        c.postmortem("INC-1").await.unwrap(),
        text,
        "the file and the route agree"
    );
    server.stop().await;
}
