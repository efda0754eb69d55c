//! Webhook intake throughput and latency with durable writes, against a
//! null handler (parse the body, answer 200, store nothing) as the ceiling.
//! Run: `cargo bench --bench intake` (prints a table, writes
//! target/bench-intake.json).
//!
//! The load generator runs in this process on the same 2 cores, so the
//! figures are what the machine gives both together; compare ratios.

use std::time::{Duration, Instant};

use axum::routing::post;
use laojun::config::Config;
use serde_json::json;

const DURATION: Duration = Duration::from_secs(4);

fn body(worker: usize, n: usize, alerts: usize) -> Vec<u8> {
    let alerts: Vec<_> = (0..alerts)
        .map(|a| {
            json!({
                "status": "firing",
                "labels": {"alertname": format!("Bench{}", n % 1000), "instance": format!("w{worker}-{n}-{a}"), "severity": "warning"},
                "annotations": {"summary": "bench"},
                "startsAt": "2026-11-29T12:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": format!("{worker:04x}{n:08x}{a:04x}"),
            })
        })
        .collect();
    serde_json::to_vec(&json!({"version": "4", "status": "firing", "receiver": "bench", "alerts": alerts})).unwrap()
}

struct Figures {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn load(url: &str, concurrency: usize, alerts_per_body: usize) -> Figures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let client = client.clone();
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut n) = (Vec::new(), 0, 0);
            while started.elapsed() < DURATION {
                let b = body(worker, n, alerts_per_body);
                n += 1;
                let t = Instant::now();
                match client.post(&url).bearer_auth("bench").body(b).send().await {
                    Ok(r) if r.status() == 200 => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    Figures {
        requests: latencies.len(),
        errors,
        elapsed: started.elapsed(),
        latencies,
    }
}

fn pct(l: &[Duration], p: f64) -> f64 {
    if l.is_empty() {
        return 0.0;
    }
    l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("playbooks")).unwrap();
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().to_path_buf(),
        root: root.path().to_path_buf(),
        auth: laojun::config::Auth {
            tokens: Vec::new(),
            token: Some("bench".into()),
        },
        ..Config::default()
    };
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(laojun::serve::run(config, std::future::pending(), move |a| {
        let _ = addr_tx.send(a);
    }));
    let laojun_url = format!("http://{}/api/v1/alerts", addr_rx.await.unwrap());

    let null = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let null_url = format!("http://{}/api/v1/alerts", null.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/api/v1/alerts",
        post(|b: axum::body::Bytes| async move {
            let _ = laojun::alert::parse(&b);
            "{}"
        }),
    );
    tokio::spawn(async move { axum::serve(null, app).await });

    let mut rows = Vec::new();
    println!(
        "{:<8} {:>6} {:>5} {:>10} {:>10} {:>9} {:>9} {:>7}",
        "target", "alerts", "conc", "req/s", "alerts/s", "p50 ms", "p99 ms", "errors"
    );
    for alerts_per_body in [1, 50] {
        for concurrency in [1, 8, 32] {
            for (target, url) in [("laojun", &laojun_url), ("null", &null_url)] {
                let f = load(url, concurrency, alerts_per_body).await;
                let rps = f.requests as f64 / f.elapsed.as_secs_f64();
                let row = json!({
                    "target": target, "alerts_per_body": alerts_per_body, "concurrency": concurrency,
                    "requests_per_sec": rps, "alerts_per_sec": rps * alerts_per_body as f64,
                    "p50_ms": pct(&f.latencies, 0.50), "p99_ms": pct(&f.latencies, 0.99), "errors": f.errors,
                });
                println!(
                    "{:<8} {:>6} {:>5} {:>10.0} {:>10.0} {:>9.2} {:>9.2} {:>7}",
                    target,
                    alerts_per_body,
                    concurrency,
                    rps,
                    rps * alerts_per_body as f64,
                    pct(&f.latencies, 0.5),
                    pct(&f.latencies, 0.99),
                    f.errors
                );
                rows.push(row);
            }
        }
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-intake.json");
    let _ = std::fs::write(&out, serde_json::to_vec_pretty(&rows).unwrap());
    println!("wrote {}", out.display());
}
