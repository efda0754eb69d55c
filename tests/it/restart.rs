//! Everything that got a 200 survives `kill -9`: the real binary is killed
//! while alerts are being posted and restarted on the same data dir.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::{self, eventually, wait_run, webhook_body, Alert, Binary, TOKEN};
use laojun::client::{ClientError, IncidentQuery, RunRequest};
use laojun::run::{RunStatus, StepStatus};
use serde_json::json;

async fn start(data_dir: &std::path::Path) -> Binary {
    start_in(data_dir, support::repo()).await
}

async fn start_in(data_dir: &std::path::Path, root: &std::path::Path) -> Binary {
    support::spawn_in(root, data_dir).await
}

fn alert_body(i: usize) -> Vec<u8> {
    webhook_body([
        Alert::firing(json!({"alertname": format!("Storm{i}"), "severity": "warning"}))
            .annotations(json!({}))
            .starts_at("2026-11-29T12:00:00Z")
            .ends_at("0001-01-01T00:00:00Z")
            .fingerprint(&format!("{i:016x}")),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn every_alert_that_got_a_200_is_there_after_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let laojun = start(dir.path()).await;
    let client = laojun.client(TOKEN);

    // Post from several tasks; kill the process while they are at it.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (c, answered) = (client.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for n in 0..10_000 {
                let i = worker * 100_000 + n;
                match c.post_alerts(alert_body(i)).await {
                    Ok(_) => {
                        accepted.push(i);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(ClientError::Connect { .. }) => break, // the process is gone
                    Err(e) => assert_eq!(
                        e.status().map(|s| s.as_u16()),
                        Some(503),
                        "only 200 or 503 before the kill: {e}"
                    ),
                }
            }
            accepted
        }));
    }
    eventually("the storm to get going", async || {
        (answered.load(Ordering::SeqCst) > 200).then_some(())
    })
    .await;
    laojun.kill();
    let mut accepted = Vec::new();
    for t in tasks {
        accepted.extend(t.await.unwrap());
    }
    assert!(
        accepted.len() > 20,
        "the storm got going before the kill ({} accepted)",
        accepted.len()
    );

    let laojun = start(dir.path()).await;
    let client = laojun.client(TOKEN);
    let list = client
        .incidents(&IncidentQuery {
            limit: Some(10000),
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    let stored: std::collections::HashSet<String> = list.iter().map(|i| i.alerts[0].fingerprint.clone()).collect();
    let missing: Vec<&usize> = accepted
        .iter()
        .filter(|i| !stored.contains(&format!("{i:016x}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} accepted alerts are missing, e.g. {:?}",
        missing.len(),
        accepted.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "{} alerts got a 200 before SIGKILL; all are stored after the restart ({} incidents)",
        accepted.len(),
        stored.len()
    );
    let mut numbers: Vec<u64> = list.iter().map(|i| i.id.number()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), list.len(), "no incident id was handed out twice");

    // Resending an accepted alert after the restart is a repeat.
    let answer = client.post_alerts(alert_body(accepted[0])).await.unwrap();
    assert_eq!(answer.repeats, 1, "{answer:?}");
    laojun.kill();
}

/// An HTTP endpoint that holds every request open while `hang` is set and
/// answers 200 otherwise; counts requests by path.
pub struct Endpoint {
    pub addr: std::net::SocketAddr,
    pub hang: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub hits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub async fn endpoint() -> Endpoint {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hang = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (h, seen) = (hang.clone(), hits.clone());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (h, seen) = (h.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(path);
                if h.load(Ordering::SeqCst) {
                    // The hanging backend the test kills laojun in front
                    // of; not a barrier.
                    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    Endpoint { addr, hang, hits }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_sigkill_mid_step_a_non_idempotent_step_is_interrupted_and_an_idempotent_one_reruns() {
    let ep = endpoint().await;
    let runbook = |name: &str, idempotent: bool| {
        format!(
            "name: {name}\nsteps:\n  - id: call\n    action: http\n    idempotent: {idempotent}\n    timeout_secs: 300\n    with: {{url: \"http://{}/{name}\"}}\n  - id: done\n    action: wait\n    with: {{secs: 0}}\n",
            ep.addr
        )
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("runbooks")).unwrap();
    std::fs::write(root.path().join("runbooks/charge.yaml"), runbook("charge", false)).unwrap();
    std::fs::write(root.path().join("runbooks/probe.yaml"), runbook("probe", true)).unwrap();
    let data = tempfile::tempdir().unwrap();

    let laojun = start_in(data.path(), root.path()).await;
    let client = laojun.client(TOKEN);
    let run = RunRequest::default();
    client.start_run("charge", &run).await.expect("charge starts");
    client.start_run("probe", &run).await.expect("probe starts");
    eventually("both runs to reach their http step", async || {
        (ep.hits.lock().unwrap().len() >= 2).then_some(())
    })
    .await;
    laojun.kill();

    ep.hang.store(false, std::sync::atomic::Ordering::SeqCst);
    let laojun = start_in(data.path(), root.path()).await;
    let client = laojun.client(TOKEN);
    let finished = [RunStatus::Interrupted, RunStatus::Succeeded, RunStatus::Failed];
    let charge = wait_run(&client, "RUN-1", &finished).await;
    let probe = wait_run(&client, "RUN-2", &finished).await;
    assert_eq!(charge.status, RunStatus::Interrupted, "{charge:#?}");
    assert_eq!(charge.steps[0].status, StepStatus::Interrupted);
    assert_eq!(charge.steps[1].status, StepStatus::Pending);
    assert_eq!(probe.status, RunStatus::Succeeded, "{probe:#?}");
    let hits = ep.hits.lock().unwrap().clone();
    assert_eq!(
        hits.iter().filter(|p| *p == "/charge").count(),
        1,
        "the non-idempotent call was not made twice: {hits:?}"
    );
    assert_eq!(
        hits.iter().filter(|p| *p == "/probe").count(),
        2,
        "the idempotent call ran again: {hits:?}"
    );
    laojun.kill();
}
