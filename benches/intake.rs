//! Webhook intake throughput and latency, side by side under the same load:
//! - laojun, with durable writes;
//! - a null handler (parse the body, answer 200, store nothing), the ceiling;
//! - the peer engine ansible-rulebook (Event-Driven Ansible) with its built-in
//!   webhook source and the rulebook in benches/peer/, which answers once the
//!   event is queued to its rule engine and stores nothing.
//!
//! 1- and 50-alert bodies at 1, 8 and 32 concurrent senders, then a burst of
//! 2,000 requests from 32 senders; ratios of laojun's alerts/s to the others.
//! Run: `scripts/bench intake` (installs ansible-rulebook when missing) or
//! `cargo bench --bench intake` (skips ansible-rulebook when it is not in
//! $LAOJUN_PEER_VENV, default /var/cache/laojun/eda-venv, nor on PATH).
//! Prints a table and writes <out>/bench-intake.json, <out> being
//! $LAOJUN_BENCH_OUT or target/bench.
//!
//! The load generator runs in this process on the same 2 cores, so the
//! figures are what the machine gives both together; compare ratios.
//!
//! With PostgreSQL installed (Debian `postgresql`), the same load at 32
//! senders against laojun on a throwaway cluster that syncs its commits:
//! one replica, and three in this process sharing the database (senders
//! spread over them); beside it the raw ceiling of that server: 32
//! connections, one transaction per body of plain inserts.

mod common;
use common::{require, PATIENCE};
// The tests' cluster harness; the bench uses part of it.
#[allow(dead_code)]
#[path = "../tests/it/support/postgres.rs"]
mod pg_cluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::post;
use laojun::config::Config;
use serde_json::{json, Value};

const DURATION: Duration = Duration::from_secs(4);
const BURST: usize = 2000;
const BURST_SENDERS: usize = 32;
const TOKEN: &str = "bench";
const PEER: &str = "ansible-rulebook";

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

#[derive(Clone)]
struct Figures {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// `concurrency` senders post to `url`, each as fast as it is answered:
/// for DURATION, or `total` requests in all when given (a burst).
async fn load(url: &str, concurrency: usize, alerts_per_body: usize, total: Option<usize>) -> Figures {
    load_spread(&[url.to_string()], concurrency, alerts_per_body, total).await
}

/// As `load`, sender i posting to `urls[i % urls.len()]`.
async fn load_spread(urls: &[String], concurrency: usize, alerts_per_body: usize, total: Option<usize>) -> Figures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let client = client.clone();
        let url = urls[worker % urls.len()].clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut n) = (Vec::new(), 0, 0);
            loop {
                match total {
                    Some(total) if worker + n * concurrency >= total => break,
                    None if started.elapsed() >= DURATION => break,
                    _ => {}
                }
                let b = body(worker, n, alerts_per_body);
                n += 1;
                let t = Instant::now();
                let sent = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(b)
                    .send()
                    .await;
                match sent {
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

/// laojun on a PostgreSQL database: one replica through `serve::run`
/// (which takes the one-laojun-per-database lock), or `count` engines
/// sharing it (stores opened without that lock). Their webhook URLs.
async fn laojun_on_postgres(url: &str, count: usize, root: &Path) -> (Vec<String>, Vec<tempfile::TempDir>) {
    let (mut urls, mut dirs) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let data = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: data.path().to_path_buf(),
            root: root.to_path_buf(),
            auth: laojun::config::Auth {
                tokens: Vec::new(),
                token: Some(TOKEN.into()),
            },
            ..Config::default()
        };
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let on_listen = move |a| {
            let _ = addr_tx.send(a);
        };
        if count == 1 {
            config.store.postgres = Some(laojun::config::Postgres {
                url: url.to_string(),
                pool_size: 8,
                ca_file: None,
                lease_secs: 30,
            });
            tokio::spawn(laojun::serve::run(config, std::future::pending(), on_listen));
        } else {
            let store = laojun::store::PostgresStore::connect(url, 8, None).unwrap();
            store.migrate().await.unwrap();
            let engine = laojun::engine::Engine::builder(config)
                .store(std::sync::Arc::new(store))
                .start()
                .await
                .unwrap();
            tokio::spawn(laojun::serve::serve(engine, std::future::pending(), on_listen));
        }
        urls.push(format!("http://{}/api/v1/alerts", addr_rx.await.unwrap()));
        dirs.push(data);
    }
    (urls, dirs)
}

/// The server's own ceiling: `senders` connections, each committing one
/// transaction of `alerts` plain inserts per body, for DURATION.
async fn raw_inserts(url: &str, senders: usize, alerts: usize) -> Figures {
    let (setup, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    setup
        .batch_execute("CREATE TABLE IF NOT EXISTS raw_alerts (fingerprint text, starts_at text, body jsonb, PRIMARY KEY (fingerprint, starts_at))")
        .await
        .unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..senders {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let insert = client
                .prepare("INSERT INTO raw_alerts (fingerprint, starts_at, body) VALUES ($1, $2, $3)")
                .await
                .unwrap();
            let (mut lat, mut n) = (Vec::new(), 0);
            while started.elapsed() < DURATION {
                let t = Instant::now();
                let tx = client.transaction().await.unwrap();
                for a in 0..alerts {
                    let fingerprint = format!("{worker:04x}{n:08x}{a:04x}");
                    let body = json!({"labels": {"alertname": "Bench", "instance": &fingerprint}});
                    tx.execute(&insert, &[&fingerprint, &"2026-11-29T12:00:00Z", &body])
                        .await
                        .unwrap();
                }
                tx.commit().await.unwrap();
                lat.push(t.elapsed());
                n += 1;
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    latencies.sort();
    Figures {
        requests: latencies.len(),
        errors: 0,
        elapsed: started.elapsed(),
        latencies,
    }
}

/// The PostgreSQL rows: laojun with 1 and 3 replicas and the raw ceiling,
/// 1- and 50-alert bodies, 32 senders.
async fn postgres_rows(root: &Path) -> Value {
    if require("initdb").is_none() {
        println!("postgresql: skipped, initdb not installed (apt-get install postgresql)");
        return json!({"skipped": "postgresql not installed"});
    }
    pg_cluster::DURABLE.store(true, std::sync::atomic::Ordering::SeqCst);
    println!("PostgreSQL (fsync on), 32 senders");
    println!(
        "{:<16} {:>6} {:>10} {:>10} {:>9} {:>9} {:>7} {:>7}",
        "target", "alerts", "req/s", "alerts/s", "p50 ms", "p99 ms", "errors", "x raw"
    );
    let mut rows = Vec::new();
    for alerts in [1, 50] {
        let raw = raw_inserts(&pg_cluster::database().unwrap(), 32, alerts).await;
        let raw_rate = raw.requests as f64 * alerts as f64 / raw.elapsed.as_secs_f64();
        for (target, replicas) in [("laojun-pg", 1), ("laojun-pg x3", 3), ("raw inserts", 0)] {
            let f = if replicas == 0 {
                raw.clone()
            } else {
                let db = pg_cluster::database().unwrap();
                let (urls, _dirs) = laojun_on_postgres(&db, replicas, root).await;
                load_spread(&urls, 32, alerts, None).await
            };
            let rps = f.requests as f64 / f.elapsed.as_secs_f64();
            let row = json!({
                "target": target, "replicas": replicas, "alerts_per_body": alerts, "concurrency": 32,
                "requests_per_sec": rps, "alerts_per_sec": rps * alerts as f64,
                "p50_ms": pct(&f.latencies, 0.5), "p99_ms": pct(&f.latencies, 0.99), "errors": f.errors,
                "over_raw": rps * alerts as f64 / raw_rate,
            });
            println!(
                "{:<16} {:>6} {:>10.0} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>7.2}",
                target,
                alerts,
                rps,
                rps * alerts as f64,
                pct(&f.latencies, 0.5),
                pct(&f.latencies, 0.99),
                f.errors,
                row["over_raw"].as_f64().unwrap()
            );
            rows.push(row);
        }
    }
    json!({"rows": rows, "notes": [
        "A throwaway cluster from Debian's postgresql with fsync on, on the same 2 cores as laojun and the load.",
        "raw inserts: 32 connections, each body one transaction of plain INSERTs (the server's ceiling for this work, no laojun).",
        "laojun-pg x3: three engines in one process sharing the database; their writers take turns under one advisory lock per commit.",
    ]})
}

/// What each target does with a body before it answers.
fn stores(target: &str) -> &'static str {
    match target {
        "laojun" => "durable: stored before the answer",
        "null" => "nothing: parses the body and answers",
        _ => "nothing: answers once the event is queued to the rule engine (no persistence)",
    }
}

/// ansible-rulebook serving benches/peer/rulebook.yml; killed when dropped.
struct Peer {
    child: Child,
    url: String,
    log: PathBuf,
    _cwd: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        for pid in process_tree(self.child.id()).into_iter().skip(1) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ansible-rulebook from the bench's virtualenv, else from PATH.
fn find_peer() -> Option<PathBuf> {
    let venv = std::env::var_os("LAOJUN_PEER_VENV").unwrap_or_else(|| "/var/cache/laojun/eda-venv".into());
    let in_venv = Path::new(&venv).join("bin").join(PEER);
    if in_venv.is_file() {
        return Some(in_venv);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(PEER))
        .find(|p| p.is_file())
}

/// `ansible-rulebook --version`: its own version and the lines `Name = value`
/// (Ansible core, Java, Python versions).
fn peer_versions(exe: &Path) -> Value {
    let out = Command::new(exe)
        .arg("--version")
        .output()
        .expect("run ansible-rulebook --version");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut versions = serde_json::Map::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("ansible-rulebook [") {
            versions.insert(PEER.into(), v.trim_end_matches(']').into());
        } else if let Some((k, v)) = line.split_once(" = ") {
            versions.insert(k.trim().into(), v.trim().into());
        }
    }
    Value::Object(versions)
}

/// Starts ansible-rulebook on a free port and waits until it answers a POST
/// with 200 (a body without alerts, which the rule does not match).
async fn start_peer(exe: &Path) -> Result<Peer, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let peer_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer");
    let cwd = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = cwd.path().join("ansible-rulebook.log");
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    // It runs ansible-galaxy at start, from PATH: put its own bin dir first.
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(exe.parent().unwrap_or(Path::new(".")).to_path_buf());
    let path = std::env::join_paths(dirs.chain(std::env::split_paths(&inherited))).map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .arg("--rulebook")
        .arg(peer_dir.join("rulebook.yml"))
        .arg("--inventory")
        .arg(peer_dir.join("inventory.yml"))
        .args(["--env-vars", "EDA_PORT,EDA_TOKEN"])
        .env("EDA_PORT", port.to_string())
        .env("EDA_TOKEN", TOKEN)
        .env("PATH", path)
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let mut peer = Peer {
        child,
        url: format!("http://127.0.0.1:{port}/api/v1/alerts"),
        log,
        _cwd: cwd,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let sent = client.post(&peer.url).bearer_auth(TOKEN).body("{}").send().await;
        match sent {
            Ok(r) if r.status() == 200 => return Ok(peer),
            Ok(r) => {
                return Err(format!(
                    "answered {} to a probe; log {}",
                    r.status(),
                    peer.log.display()
                ))
            }
            Err(_) => {}
        }
        if let Ok(Some(status)) = peer.child.try_wait() {
            let log = std::fs::read_to_string(&peer.log).unwrap_or_default();
            let tail: Vec<_> = log.lines().rev().take(15).collect();
            let tail: Vec<_> = tail.into_iter().rev().collect();
            return Err(format!("exited ({status}) before listening:\n{}", tail.join("\n")));
        }
        if Instant::now() > deadline {
            return Err("did not answer within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `root` and all its descendants, from /proc/*/stat (root first).
fn process_tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid ...; comm may hold spaces and parentheses.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

/// Resident memory of the whole process tree. ansible-rulebook runs its
/// rule engine (Drools) in a JVM loaded into the Python process through
/// jpy, so the Python process itself holds nearly all of it.
fn tree_rss_mib(root: u32) -> f64 {
    process_tree(root).into_iter().map(common::rss_mib).sum()
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
            token: Some(TOKEN.into()),
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

    let mut targets = vec![("laojun", laojun_url), ("null", null_url)];
    let mut peer_json = json!({"skipped": "not installed"});
    let peer = match find_peer() {
        None => {
            println!("{PEER}: skipped, not found in $LAOJUN_PEER_VENV/bin (default /var/cache/laojun/eda-venv/bin) nor on PATH; `scripts/bench intake` installs it");
            None
        }
        Some(exe) => match start_peer(&exe).await {
            Ok(peer) => {
                let idle = tree_rss_mib(peer.child.id());
                peer_json = json!({"executable": exe, "versions": peer_versions(&exe), "rss_idle_mib": idle});
                targets.push((PEER, peer.url.clone()));
                Some(peer)
            }
            Err(e) => {
                println!("{PEER}: skipped, {} did not start: {e}", exe.display());
                peer_json = json!({"skipped": format!("did not start: {e}")});
                None
            }
        },
    };

    let mut rows = Vec::new();
    println!(
        "{:<16} {:>6} {:>5} {:>10} {:>10} {:>9} {:>9} {:>7} {:>7} {:>7}",
        "target", "alerts", "conc", "req/s", "alerts/s", "p50 ms", "p99 ms", "errors", "x null", "x eda"
    );
    for alerts_per_body in [1, 50] {
        for concurrency in [1, 8, 32] {
            let mut group = Vec::new();
            for (target, url) in &targets {
                let f = load(url, concurrency, alerts_per_body, None).await;
                let rps = f.requests as f64 / f.elapsed.as_secs_f64();
                group.push(json!({
                    "target": target, "alerts_per_body": alerts_per_body, "concurrency": concurrency,
                    "requests_per_sec": rps, "alerts_per_sec": rps * alerts_per_body as f64,
                    "p50_ms": pct(&f.latencies, 0.50), "p99_ms": pct(&f.latencies, 0.99), "errors": f.errors,
                    "stores": stores(target),
                }));
            }
            // laojun's alerts/s over each other target's, on laojun's row.
            let over = |target: &str| {
                let of = |t: &str| {
                    group
                        .iter()
                        .find(|r| r["target"] == t)
                        .map(|r| r["alerts_per_sec"].as_f64().unwrap())
                };
                Some(of("laojun")? / of(target)?).filter(|r| r.is_finite())
            };
            let (over_null, over_peer) = (over("null"), over(PEER));
            group[0]["laojun_over_null"] = json!(over_null);
            group[0]["laojun_over_ansible_rulebook"] = json!(over_peer);
            for (i, row) in group.into_iter().enumerate() {
                let ratio = |r: Option<f64>| match (i, r) {
                    (0, Some(r)) => format!("{r:.2}"),
                    _ => String::new(),
                };
                println!(
                    "{:<16} {:>6} {:>5} {:>10.0} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>7} {:>7}",
                    row["target"].as_str().unwrap(),
                    alerts_per_body,
                    concurrency,
                    row["requests_per_sec"].as_f64().unwrap(),
                    row["alerts_per_sec"].as_f64().unwrap(),
                    row["p50_ms"].as_f64().unwrap(),
                    row["p99_ms"].as_f64().unwrap(),
                    row["errors"].as_u64().unwrap(),
                    ratio(over_null),
                    ratio(over_peer),
                );
                rows.push(row);
            }
        }
    }

    println!("burst: {BURST} 1-alert requests from {BURST_SENDERS} senders, as fast as they are answered");
    println!(
        "{:<16} {:>8} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "target", "secs", "req/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    let mut bursts = Vec::new();
    for (target, url) in &targets {
        let f = load(url, BURST_SENDERS, 1, Some(BURST)).await;
        let secs = f.elapsed.as_secs_f64();
        let (p50, p99, max) = (pct(&f.latencies, 0.5), pct(&f.latencies, 0.99), pct(&f.latencies, 1.0));
        println!(
            "{:<16} {:>8.2} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            target,
            secs,
            f.requests as f64 / secs,
            p50,
            p99,
            max,
            f.errors
        );
        bursts.push(json!({
            "target": target, "requests": BURST, "senders": BURST_SENDERS, "secs": secs,
            "requests_per_sec": f.requests as f64 / secs, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
            "errors": f.errors, "stores": stores(target),
        }));
    }

    if let Some(peer) = peer {
        let tree = process_tree(peer.child.id());
        let loaded = tree_rss_mib(peer.child.id());
        println!(
            "{PEER}: resident memory idle {:.1} MiB, after the load {loaded:.1} MiB ({} process(es): its rule engine is a JVM inside the Python process); it answers once the event is queued, before anything is stored",
            peer_json["rss_idle_mib"].as_f64().unwrap(),
            tree.len(),
        );
        peer_json["rss_after_load_mib"] = json!(loaded);
        peer_json["processes"] = json!(tree.len());
    }
    let postgres = postgres_rows(root.path()).await;
    common::write_json(
        "intake",
        &json!({
            "postgres": postgres,
            "bench": "intake",
            "seconds_per_run": DURATION.as_secs(),
            "rows": rows,
            "burst": bursts,
            "ansible_rulebook": peer_json,
            "notes": [
                "laojun stores every alert durably before it answers; the null handler parses and stores nothing.",
                "ansible-rulebook (built-in eda.builtin.webhook source, rulebook benches/peer/rulebook.yml, action `none`) answers 200 once the event is queued to its rule engine, before anything is stored; it persists nothing.",
                "laojun_over_* are laojun's alerts/s divided by the other target's, same bodies and concurrency.",
                "The load generator shares the machine with the targets; compare ratios.",
            ],
        }),
    );
}
