//! Latency from webhook accepted to first step started, read from the
//! incident timelines (`opened` → first `step` running), at a steady rate
//! and in a burst. Run: `cargo bench --bench latency` (or `scripts/bench
//! latency`); prints a table and writes <out>/bench-latency.json, <out>
//! being $LAOJUN_BENCH_OUT or target/bench.

mod common;

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
    let data = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    for (path, text) in [("runbooks/noop.yaml", RUNBOOK), ("playbooks/all.yaml", PLAYBOOK)] {
        std::fs::create_dir_all(root.path().join(path).parent().unwrap()).unwrap();
        std::fs::write(root.path().join(path), text).unwrap();
    }
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: data.path().to_path_buf(),
        root: root.path().to_path_buf(),
        auth: laojun::config::Auth {
            tokens: Vec::new(),
            token: Some("bench".into()),
        },
        ..Config::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(laojun::serve::run(config, std::future::pending(), move |a| {
        let _ = tx.send(a);
    }));
    let base = format!("http://{}", rx.await.unwrap());
    let url = format!("{base}/api/v1/alerts");
    let client = reqwest::Client::new();

    // Steady: 500 alerts/s for 4 s, one new incident each.
    let rate = 500;
    let steady = rate * 4;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..steady {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let (c, u) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move { post(&c, &u, i).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut steady_ms = latencies(&client, &base, 1, steady + 1).await;

    // Burst: 2000 alerts from 32 concurrent senders, as fast as they go.
    let burst = 2000;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (c, u) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for i in (w..burst).step_by(32) {
                post(&c, &u, steady + i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let burst_secs = started.elapsed().as_secs_f64();
    let mut burst_ms = latencies(&client, &base, steady + 1, steady + burst + 1).await;

    let steady_pct = [0.5, 0.99, 1.0].map(|p| pct(&mut steady_ms, p));
    let burst_pct = [0.5, 0.99, 1.0].map(|p| pct(&mut burst_ms, p));
    println!("webhook accepted -> first step started (ms, from the timeline)");
    println!("{:<28} {:>8} {:>8} {:>8}", "load", "p50", "p99", "max");
    println!(
        "{:<28} {:>8.2} {:>8.2} {:>8.2}",
        format!("steady {rate}/s x {steady}"),
        steady_pct[0],
        steady_pct[1],
        steady_pct[2]
    );
    println!(
        "{:<28} {:>8.2} {:>8.2} {:>8.2}",
        format!("burst {burst} in {burst_secs:.2}s"),
        burst_pct[0],
        burst_pct[1],
        burst_pct[2]
    );
    common::write_json(
        "latency",
        &json!({
            "bench": "latency",
            "measures": "webhook accepted -> first step started, ms, from the incident timelines",
            "steady": {"rate_per_sec": rate, "alerts": steady,
                       "p50_ms": steady_pct[0], "p99_ms": steady_pct[1], "max_ms": steady_pct[2]},
            "burst": {"alerts": burst, "senders": 32, "secs": burst_secs,
                      "p50_ms": burst_pct[0], "p99_ms": burst_pct[1], "max_ms": burst_pct[2]},
        }),
    );
}
