//! The web view's incident page for an incident with a 5,000-event
//! timeline and 50 runs, rendered by a running laojun (store reads,
//! templates, the postmortem it embeds), timed from request to the last
//! byte on loopback; and the page weight (HTML, JS, CSS). Run:
//! `cargo bench --bench ui`; prints the figures and writes
//! <out>/bench-ui.json, <out> being $LAOJUN_BENCH_OUT or target/bench.

mod common;

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use laojun::config::Config;
use laojun::engine::Engine;
use laojun::incident::{Event, EventKind, Incident, Status};
use laojun::run::{Run, RunStatus, StepRecord, StepStatus, TriggerKind};
use laojun::severity::Severity;
use laojun::store::{SledStore, Store, Write};

const EVENTS: u32 = 5000;
const RUNS: u64 = 50;

fn filled(dir: &std::path::Path) -> SledStore {
    let store = SledStore::open(dir).expect("a store");
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
    let id = laojun::ids::IncidentId::new(1);
    let incident = Incident {
        id,
        title: "checkout is down".into(),
        status: Status::Open,
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
        mitigated_at: None,
        resolved_at: None,
        alerts: Vec::new(),
        alert_count: 0,
        alerts_firing: 0,
        runs: (1..=RUNS).map(laojun::ids::RunId::new).collect(),
        events: EVENTS,
    };
    let mut writes = vec![Write::Incident(incident), Write::LastIncident(1), Write::LastRun(RUNS)];
    for seq in 0..EVENTS {
        writes.push(Write::Event {
            incident: id,
            seq,
            event: Event {
                at: t0 + Duration::seconds(i64::from(seq)),
                what: EventKind::Step {
                    run: laojun::ids::RunId::new(u64::from(seq) % RUNS + 1),
                    step: "rollback".into(),
                    action: "k8s.rollback".into(),
                    status: StepStatus::Succeeded,
                    attempt: 1,
                    duration_ms: Some(120),
                    summary: Some(format!(
                        "rolled back deployment/checkout-{seq} in prod from revision 2 to revision 1"
                    )),
                    error: None,
                },
            },
        });
    }
    for n in 1..=RUNS {
        let mut steps = Vec::new();
        for step in ["rollback", "verify"] {
            let mut s = StepRecord::new(step, "k8s.rollback");
            s.status = StepStatus::Succeeded;
            s.attempts = 1;
            s.started_at = Some(t0);
            s.finished_at = Some(t0 + Duration::milliseconds(250));
            s.summary = Some("done".into());
            steps.push(s);
        }
        writes.push(Write::Run(Run {
            id: laojun::ids::RunId::new(n),
            runbook: "rollback-deployment".into(),
            incident: Some(id),
            playbook: Some("service-down".into()),
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
            mitigates: false,
            counts_for_guards: None,
            catalog_revision: String::new(),
            retry_of: None,
            lease: None,
        }));
    }
    store.commit(vec![writes]).expect("the incident is stored");
    store
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(&dir.path().join("store"));
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().to_path_buf(),
        root: env!("CARGO_MANIFEST_DIR").into(),
        ..Config::default()
    };
    let engine = Engine::builder(config)
        .store(Arc::new(store))
        .start()
        .await
        .expect("an engine");
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(laojun::serve::serve(engine, std::future::pending(), move |addr| {
        let _ = addr_tx.send(addr);
    }));
    let base = format!("http://{}", addr_rx.await.unwrap());
    let http = reqwest::Client::new();
    let get = async |path: &str| -> (f64, usize) {
        let start = Instant::now();
        let body = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        (start.elapsed().as_secs_f64() * 1000.0, body.len())
    };
    // No token configured: the view is open, so no sign-in here.
    let mut times = Vec::new();
    let mut html = 0;
    get("/ui/incidents/INC-1").await;
    for _ in 0..11 {
        let (ms, bytes) = get("/ui/incidents/INC-1").await;
        times.push(ms);
        html = bytes;
    }
    times.sort_by(f64::total_cmp);
    let (_, js) = get("/ui/assets/ui.js").await;
    let (_, css) = get("/ui/assets/ui.css").await;
    let (_, list) = get("/ui/incidents").await;
    println!(
        "incident page, {EVENTS} events + {RUNS} runs: median {:.1} ms, min {:.1} ms, max {:.1} ms over 11 requests; {} KiB of HTML",
        times[5],
        times[0],
        times[10],
        html / 1024
    );
    println!("page weight: ui.js {js} B, ui.css {css} B; the incident list with one incident {list} B of HTML");
    common::write_json(
        "ui",
        &serde_json::json!({
            "bench": "ui", "events": EVENTS, "runs": RUNS, "requests": times.len(),
            "median_ms": times[5], "min_ms": times[0], "max_ms": times[10],
            "html_bytes": html, "js_bytes": js, "css_bytes": css, "list_html_bytes": list,
        }),
    );
}
