//! Start-up time with 500 runbooks, and resident memory idle and after
//! 100,000 incidents are stored, of the real `laojun serve` binary.
//! Run: `cargo bench --bench footprint` (or `scripts/bench footprint`;
//! Linux: reads /proc); prints three lines and writes
//! <out>/bench-footprint.json, <out> being $LAOJUN_BENCH_OUT or target/bench.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const RUNBOOKS: usize = 500;
const INCIDENTS: usize = 100_000;

fn dir_mib(dir: &std::path::Path) -> f64 {
    let mut total = 0u64;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            (dir_mib(&e.path()) * 1048576.0) as u64
        } else {
            m.len()
        };
    }
    total as f64 / 1048576.0
}

#[tokio::main]
async fn main() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = tempfile::tempdir().unwrap();
    for sub in ["runbooks", "playbooks", "templates"] {
        std::fs::create_dir(root.path().join(sub)).unwrap();
        for e in std::fs::read_dir(repo.join(sub)).unwrap().flatten() {
            std::fs::copy(e.path(), root.path().join(sub).join(e.file_name())).unwrap();
        }
    }
    let template = std::fs::read_to_string(repo.join("runbooks/rollback-deployment.yaml")).unwrap();
    for i in 0..RUNBOOKS - 7 {
        let name = format!("rollback-{i:03}");
        std::fs::write(
            root.path().join(format!("runbooks/{name}.yaml")),
            template.replace("name: rollback-deployment", &format!("name: {name}")),
        )
        .unwrap();
    }
    // One incident per host (as a host-down playbook would group them).
    std::fs::write(
        root.path().join("playbooks/footprint.yaml"),
        "name: footprint\ntrigger:\n  alerts: ['alertname=\"Footprint\"']\nseverity: P3\ngroup_by: [alertname, instance]\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--root"])
        .arg(root.path())
        .arg("--data-dir")
        .arg(data.path())
        .env("LAOJUN_API_TOKEN", "bench-token")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("laojun logs").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "laojun listening" {
            break v["fields"]["addr"].as_str().unwrap().to_string();
        }
    };
    let startup = started.elapsed();
    std::thread::spawn(move || for _ in lines {});
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = common::rss_mib(child.id());

    let url = format!("http://{addr}/api/v1/alerts");
    let http = reqwest::Client::new();
    let per_body = 50;
    let bodies = INCIDENTS / per_body;
    let load_start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for b in (w..bodies).step_by(16) {
                let alerts: Vec<Value> = (0..per_body)
                    .map(|a| {
                        let i = b * per_body + a;
                        json!({"status": "firing", "labels": {"alertname": "Footprint", "instance": format!("host-{i}"), "severity": "warning"},
                               "annotations": {"summary": format!("host-{i} is unhappy")}, "startsAt": "2026-11-29T12:00:00Z", "fingerprint": format!("{i:016x}")})
                    })
                    .collect();
                loop {
                    let r = http.post(&url).bearer_auth("bench-token").json(&json!({"version": "4", "alerts": alerts})).send().await.unwrap();
                    if r.status() == 200 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let load = load_start.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = common::rss_mib(child.id());
    let disk = dir_mib(data.path());
    child.kill().unwrap();
    child.wait().unwrap();
    println!(
        "start-up with {RUNBOOKS} runbooks: {:.0} ms (spawn to listening)",
        startup.as_secs_f64() * 1000.0
    );
    println!("resident memory idle: {idle:.1} MiB");
    println!("resident memory with {INCIDENTS} open incidents stored: {loaded:.1} MiB (store on disk {disk:.0} MiB; stored in {:.1} s)", load.as_secs_f64());
    common::write_json(
        "footprint",
        &json!({
            "bench": "footprint", "runbooks": RUNBOOKS, "startup_ms": startup.as_secs_f64() * 1000.0,
            "rss_idle_mib": idle, "incidents": INCIDENTS, "rss_loaded_mib": loaded,
            "store_mib": disk, "store_secs": load.as_secs_f64(),
        }),
    );
}
