//! Crash consistency: an alert storm against the real binary, killed with
//! SIGKILL at a random moment 20 times and restarted on the same data dir.
//! Afterwards every alert that got a 200 is stored, no episode made two
//! incidents, every run belongs to a stored incident, timelines are whole,
//! and no non-idempotent step ran twice.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{webhook_body, Alert, Binary, TOKEN};
use laojun::client::{ClientError, IncidentQuery, RunQuery};
use laojun::ids::IncidentId;
use laojun::run::RunStatus;
use serde_json::json;

const CYCLES: usize = 20;

async fn start(data: &std::path::Path, root: &std::path::Path) -> Binary {
    support::spawn_in(root, data).await
}

/// Counts POSTs by path; the runbook's non-idempotent step calls it.
async fn counter() -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let hits = Arc::new(Mutex::new(HashMap::new()));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let h = h.clone();
        async move {
            *h.lock().unwrap().entry(uri.path().to_string()).or_insert(0) += 1;
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

fn jitter(cycle: usize) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    Duration::from_millis(150 + ((nanos / 7 + cycle * 97) % 450) as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_sigkills_during_a_storm_lose_nothing_and_repeat_nothing() {
    let (url, hits) = counter().await;
    let root = support::root_with(&[
        (
            "runbooks/tick.yaml",
            &format!("name: tick\nsteps:\n  - id: charge\n    action: http\n    with: {{method: POST, url: \"{url}/charge/{{{{run.id}}}}\"}}\n  - id: done\n    action: wait\n    with: {{secs: 0}}\n"),
        ),
        ("playbooks/storm.yaml", "name: storm\ntrigger: {alerts: ['alertname=\"Storm\"']}\ngroup_by: [alertname, instance]\nrunbooks:\n  - runbook: tick\n"),
    ]);
    let data = tempfile::tempdir().unwrap();
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let mut sent = 0usize;
    for cycle in 0..CYCLES {
        let laojun = start(data.path(), root.path()).await;
        let client = laojun.client(TOKEN);
        let mut tasks = Vec::new();
        for w in 0..4 {
            let (c, acc) = (client.clone(), accepted.clone());
            let base = cycle * 1_000_000 + w * 100_000;
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                loop {
                    let i = base + n;
                    n += 1;
                    let body =
                        webhook_body([
                            Alert::firing(json!({"alertname": "Storm", "instance": format!("i{i}")}))
                                .starts_at("2026-11-29T12:00:00Z")
                                .fingerprint(&format!("{i:016x}")),
                        ]);
                    match c.post_alerts(body).await {
                        Ok(_) => {
                            acc.lock().unwrap().insert(format!("{i:016x}"));
                        }
                        Err(ClientError::Connect { .. }) => return n,
                        Err(_) => {}
                    }
                }
            }));
        }
        // Killing at a random moment of the storm is what is tested; the
        // pause is that moment, not a barrier.
        tokio::time::sleep(jitter(cycle)).await;
        laojun.kill();
        for t in tasks {
            sent += t.await.unwrap();
        }
    }

    let laojun = start(data.path(), root.path()).await;
    let client = laojun.client(TOKEN);
    // Recovery, done before laojun listens, logs each run it goes on with
    // (left between steps, an idempotent step again, or an incident whose
    // runs a crash kept from starting); wait until each has finished.
    let going_on = laojun.logged("resuming a run left between steps").len()
        + laojun
            .logged("re-running an idempotent step that was running when laojun stopped")
            .len()
        + laojun
            .logged("started the runbooks of incidents whose runs a crash kept from starting")
            .iter()
            .map(|l| l["fields"]["incidents"].as_u64().unwrap_or(0) as usize)
            .sum::<usize>();
    laojun.wait_for_logs("run finished", going_on).await;
    let incidents = client
        .incidents(&IncidentQuery {
            limit: Some(100000),
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    let accepted = accepted.lock().unwrap().clone();
    let mut by_fingerprint: HashMap<String, usize> = HashMap::new();
    for inc in &incidents {
        for a in &inc.alerts {
            *by_fingerprint.entry(a.fingerprint.clone()).or_insert(0) += 1;
        }
    }
    let lost: Vec<&String> = accepted.iter().filter(|f| !by_fingerprint.contains_key(*f)).collect();
    let doubled: Vec<(&String, &usize)> = by_fingerprint.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        lost.is_empty(),
        "{} accepted alerts are missing, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(3)]
    );
    assert!(doubled.is_empty(), "episodes in two incidents: {doubled:?}");

    // Timelines are whole and runs belong to stored incidents.
    let ids: HashSet<IncidentId> = incidents.iter().map(|i| i.id).collect();
    let mut runs = 0;
    for inc in incidents.iter().take(300) {
        let full = client.incident(inc.id).await.unwrap();
        assert_eq!(full.incident.events as usize, full.timeline.len(), "{}", inc.id);
    }
    let all_runs = client
        .runs(&RunQuery {
            limit: Some(10000),
            ..RunQuery::default()
        })
        .await
        .unwrap();
    for run in &all_runs {
        runs += 1;
        assert!(
            run.incident.is_some_and(|i| ids.contains(&i)),
            "run {} belongs to no stored incident",
            run.id
        );
        assert!(
            !matches!(run.status, RunStatus::Running | RunStatus::Pending),
            "run {} left {}",
            run.id,
            run.status.as_str()
        );
    }
    let with_runs: HashSet<IncidentId> = all_runs.iter().filter_map(|r| r.incident).collect();
    let runless: Vec<&IncidentId> = ids.iter().filter(|id| !with_runs.contains(id)).collect();
    assert!(
        runless.is_empty(),
        "{} incidents whose remediation was silently lost, e.g. {:?}",
        runless.len(),
        &runless[..runless.len().min(3)]
    );
    let hits = hits.lock().unwrap().clone();
    let twice: Vec<(&String, &usize)> = hits.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "a non-idempotent step ran twice: {twice:?}");
    let interrupted = all_runs.iter().filter(|r| r.status == RunStatus::Interrupted).count();
    eprintln!(
        "{CYCLES} SIGKILL cycles: {sent} alerts sent, {} got a 200, all {} stored; {} incidents, 0 duplicates; {runs} runs ({interrupted} interrupted, {going_on} carried on by the last start), {} charge calls, none twice",
        accepted.len(),
        accepted.len(),
        incidents.len(),
        hits.len()
    );
    laojun.kill();
}
