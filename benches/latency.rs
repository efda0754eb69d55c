//! Latency from webhook accepted to first step started, read from the
//! incident timelines (`opened` → first `step` running), at a steady rate
//! and in a burst. Run: `cargo bench --bench latency` (or `scripts/bench
//! latency`); prints a table and writes <out>/bench-latency.json, <out>
//! being $LAOJUN_BENCH_OUT or target/bench. On sled, and with PostgreSQL
//! installed on a throwaway cluster that syncs its commits.

mod common;
use common::{require, PATIENCE};
// The tests' cluster harness, for the PostgreSQL figures.
#[allow(dead_code)]
#[path = "../tests/it/support/postgres.rs"]
mod pg_cluster;

use std::time::{Duration, Instant};

use laojun::config::Config;
use serde_json::{json, Value};

const RUNBOOK: &str = "name: noop\nsteps:\n  - id: first\n    action: wait\n    with: {secs: 0}\n";
const PLAYBOOK: &str = "name: all\ntrigger: {alerts: ['alertname=~\".+\"']}\ngroup_by: [alertname, instance]\nrunbooks:\n  - runbook: noop\n";

fn body(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"version": "4", "alerts": [{
        "status": "firing", "labels": {"alertname": "Latency", "instance": format!("i-{i}")},
        "startsAt": "2026-11-29T12:00:00Z", "fingerprint": format!("{i:016x}"),
    }]}))
    .unwrap()
}

async fn post(client: &reqwest::Client, url: &str, i: usize) {
    let r = client
        .post(url)
        .bearer_auth("bench")
        .body(body(i))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
}

/// Milliseconds from `opened` to the first step running, per incident.
async fn latencies(client: &reqwest::Client, base: &str, from: usize, to: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for n in from..to {
        let url = format!("{base}/api/v1/incidents/INC-{n}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let inc: Value = client
                .get(&url)
                .bearer_auth("bench")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let events = inc["timeline"].as_array().cloned().unwrap_or_default();
            let at = |e: &Value| chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap();
            let opened = events.iter().find(|e| e["kind"] == "opened");
            let first = events.iter().find(|e| e["kind"] == "step" && e["status"] == "running");
            if let (Some(o), Some(f)) = (opened, first) {
                out.push((at(f) - at(o)).num_microseconds().unwrap() as f64 / 1000.0);
                break;
            }
            assert!(Instant::now() < deadline, "INC-{n} never started its step");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    out
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

#[tokio::main]
async fn main() {
    let sled = measure(|_| {}).await;
    let postgres = if require("initdb").is_some() {
        pg_cluster::DURABLE.store(true, std::sync::atomic::Ordering::SeqCst);
        let url = pg_cluster::database().unwrap();
        let pg = measure(move |c| {
            c.store.postgres = Some(laojun::config::Postgres {
                url: url.clone(),
                pool_size: 8,
                ca_file: None,
                lease_secs: 30,
            })
        })
        .await;
        Some(pg)
    } else {
        println!("postgresql: skipped, initdb not installed (apt-get install postgresql)");
        None
    };
    println!("webhook accepted -> first step started (ms, from the timeline)");
    println!("{:<10} {:<28} {:>8} {:>8} {:>8}", "store", "load", "p50", "p99", "max");
    for (store, m) in [("sled", Some(&sled)), ("postgres", postgres.as_ref())] {
        let Some(m) = m else { continue };
        for (load, p) in [
            (format!("steady {RATE}/s x {}", RATE * 4), m.steady),
            (format!("burst {BURST} in {:.2}s", m.burst_secs), m.burst),
        ] {
            println!("{store:<10} {load:<28} {:>8.2} {:>8.2} {:>8.2}", p[0], p[1], p[2]);
        }
    }
    let figures = |m: &Measured| {
        json!({
            "steady": {"rate_per_sec": RATE, "alerts": RATE * 4,
                       "p50_ms": m.steady[0], "p99_ms": m.steady[1], "max_ms": m.steady[2]},
            "burst": {"alerts": BURST, "senders": 32, "secs": m.burst_secs,
                      "p50_ms": m.burst[0], "p99_ms": m.burst[1], "max_ms": m.burst[2]},
        })
    };
    let mut out = figures(&sled);
    out["bench"] = json!("latency");
    out["measures"] = json!("webhook accepted -> first step started, ms, from the incident timelines");
    out["postgres"] = postgres
        .as_ref()
        .map(figures)
        .unwrap_or(json!({"skipped": "postgresql not installed"}));
    common::write_json("latency", &out);
}

const RATE: usize = 500;
const BURST: usize = 2000;

/// Percentiles (p50, p99, max) of the steady load and of the burst.
struct Measured {
    steady: [f64; 3],
    burst: [f64; 3],
    burst_secs: f64,
}

/// The steady load and the burst on a fresh laojun whose config `store` adjusts.
async fn measure(store: impl FnOnce(&mut Config)) -> Measured {
    let data = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    for (path, text) in [("runbooks/noop.yaml", RUNBOOK), ("playbooks/all.yaml", PLAYBOOK)] {
        std::fs::create_dir_all(root.path().join(path).parent().unwrap()).unwrap();
        std::fs::write(root.path().join(path), text).unwrap();
    }
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: data.path().to_path_buf(),
        root: root.path().to_path_buf(),
        auth: laojun::config::Auth {
            tokens: Vec::new(),
            token: Some("bench".into()),
        },
        ..Config::default()
    };
    store(&mut config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(laojun::serve::run(
        config,
        async {
            let _ = stopped.await;
        },
        move |a| {
            let _ = tx.send(a);
        },
    ));
    let base = format!("http://{}", rx.await.unwrap());
    let url = format!("{base}/api/v1/alerts");
    let client = reqwest::Client::new();

    // Steady: RATE alerts/s for 4 s, one new incident each.
    let steady = RATE * 4;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..steady {
        let due = start + Duration::from_secs_f64(i as f64 / RATE as f64);
        tokio::time::sleep_until(due.into()).await;
        let (c, u) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move { post(&c, &u, i).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut steady_ms = latencies(&client, &base, 1, steady + 1).await;

    // Burst: BURST alerts from 32 concurrent senders, as fast as they go.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (c, u) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..BURST).step_by(32) {
                post(&c, &u, steady + i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let burst_secs = started.elapsed().as_secs_f64();
    let mut burst_ms = latencies(&client, &base, steady + 1, steady + BURST + 1).await;
    let _ = stop.send(());
    let _ = server.await;
    Measured {
        steady: [0.5, 0.99, 1.0].map(|p| pct(&mut steady_ms, p)),
        burst: [0.5, 0.99, 1.0].map(|p| pct(&mut burst_ms, p)),
        burst_secs,
    }
}
