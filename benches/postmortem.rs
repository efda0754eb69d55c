//! Rendering a postmortem for an incident with a 5,000-event timeline and
//! 500 runs of 2 steps. Run: `cargo bench --bench postmortem` (or
//! `scripts/bench postmortem`); prints one line and writes
//! <out>/bench-postmortem.json, <out> being $LAOJUN_BENCH_OUT or target/bench.

mod common;

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use laojun::incident::{Event, EventKind, Incident, Status};
use laojun::run::{Run, RunStatus, StepRecord, StepStatus, TriggerKind};
use laojun::severity::Severity;

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let loaded =
        laojun::catalog::load(std::path::Path::new(root), &laojun::script::Sandbox::default()).expect("catalog");
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
    let incident = Incident {
        id: laojun::ids::IncidentId::new(1),
        title: "checkout is down".into(),
        status: Status::Resolved,
        severity: Severity::P1,
        playbook: "service-down".into(),
        group: Default::default(),
        opened_at: t0,
        started_at: None,
        severity_history: Vec::new(),
        acknowledged_at: None,
        acknowledged_by: None,
        commander: None,
        responders: Vec::new(),
        mitigated_at: Some(t0 + Duration::minutes(5)),
        resolved_at: Some(t0 + Duration::hours(2)),
        alerts: Vec::new(),
        alert_count: 0,
        alerts_firing: 0,
        runs: (1..=500).map(laojun::ids::RunId::new).collect(),
        events: 5000,
    };
    let timeline: Vec<Event> = (0..5000)
        .map(|i| Event {
            at: t0 + Duration::seconds(i),
            what: EventKind::Step {
                run: laojun::ids::RunId::new(i as u64 / 10 + 1),
                step: "rollback".into(),
                action: "k8s.rollback".into(),
                status: StepStatus::Succeeded,
                attempt: 1,
                duration_ms: Some(120),
                summary: Some(format!(
                    "rolled back deployment/checkout-{i} in prod from revision 2 to revision 1"
                )),
                error: None,
            },
        })
        .collect();
    let runs: Vec<Run> = (1..=500)
        .map(|i| {
            let mut steps = Vec::new();
            for id in ["rollback", "verify"] {
                let mut s = StepRecord::new(id, "k8s.rollback");
                s.status = StepStatus::Succeeded;
                s.started_at = Some(t0);
                s.finished_at = Some(t0 + Duration::milliseconds(250));
                s.summary = Some("done".into());
                steps.push(s);
            }
            Run {
                id: laojun::ids::RunId::new(i),
                runbook: "rollback-deployment".into(),
                incident: Some(laojun::ids::IncidentId::new(1)),
                playbook: None,
                trigger: TriggerKind::Alert,
                by: "alert".into(),
                params: Default::default(),
                dry_run: false,
                status: RunStatus::Succeeded,
                steps,
                created_at: t0,
                finished_at: Some(t0 + Duration::seconds(1)),
                reason: None,
                idempotency_key: None,
                alert: serde_json::Value::Null,
                group: None,
                mitigates: true,
                counts_for_guards: None,
                catalog_revision: String::new(),
                retry_of: None,
                lease: None,
            }
        })
        .collect();
    let mut times = Vec::new();
    let mut size = 0;
    let renderer = laojun::postmortem::Renderer::new(std::sync::Arc::new(loaded.catalog), chrono_tz::Asia::Shanghai)
        .expect("the templates compile");
    for _ in 0..11 {
        let start = Instant::now();
        let text = renderer.render(&incident, &timeline, &runs, t0).expect("renders");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        size = text.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "postmortem, 5000 events + 500 runs ({} KiB): median {:.1} ms, min {:.1} ms, max {:.1} ms over 11 renders",
        size / 1024,
        times[5],
        times[0],
        times[10]
    );
    common::write_json(
        "postmortem",
        &serde_json::json!({
            "bench": "postmortem", "events": 5000, "runs": 500, "renders": times.len(), "size_kib": size / 1024,
            "median_ms": times[5], "min_ms": times[0], "max_ms": times[10],
        }),
    );
}
