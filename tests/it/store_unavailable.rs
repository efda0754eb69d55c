//! When the store cannot write, the webhook answers 503 (so AlertManager
//! retries) and keeps nothing half-done; once the store recovers the retry
//! is stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use laojun::client::{ApiClient, ClientError};
use laojun::config::Config;
use laojun::engine::Engine;
use laojun::ids::{IncidentId, RunId};
use laojun::store::{Delegate, SledStore, Store, StoreError, Write};

/// A sled store whose writes fail while `broken` is set (a full disk), and
/// whose flushes fail while `sync_broken` is set (a disk that cannot sync).
struct FlakyStore {
    inner: SledStore,
    broken: AtomicBool,
    sync_broken: AtomicBool,
}

impl Delegate for FlakyStore {
    fn inner(&self) -> &dyn Store {
        &self.inner
    }
    fn apply(&self, writes: Vec<Vec<Write>>) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Backend(sled::Error::Io(std::io::Error::other(
                "No space left on device",
            ))));
        }
        self.inner.apply(writes)
    }
    fn flush(&self) -> Result<(), StoreError> {
        if self.sync_broken.load(Ordering::SeqCst) {
            return Err(StoreError::Backend(sled::Error::Io(std::io::Error::other(
                "Input/output error",
            ))));
        }
        self.inner.flush()
    }
}

/// A catalog whose one playbook takes the fixture's HighErrorRate alert
/// and runs a one-step runbook, so a test can see the runbooks start.
fn root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for dir in ["runbooks", "playbooks"] {
        std::fs::create_dir(root.path().join(dir)).unwrap();
    }
    std::fs::write(
        root.path().join("runbooks/note.yaml"),
        "name: note\nsteps:\n  - id: look\n    action: wait\n    with: {secs: 0}\n",
    )
    .unwrap();
    std::fs::write(
        root.path().join("playbooks/errors.yaml"),
        "name: errors\ntrigger: {alerts: ['alertname=\"HighErrorRate\"']}\nrunbooks: [{runbook: note}]\n",
    )
    .unwrap();
    root
}

/// The whole engine, assembled with `flaky` as its store, serving the
/// API without a token; returns a client of it.
async fn serve(flaky: Arc<FlakyStore>, root: &std::path::Path, data: &std::path::Path) -> ApiClient {
    let config = Config {
        listen: "127.0.0.1:0".into(),
        root: root.to_path_buf(),
        data_dir: data.to_path_buf(),
        ..Config::default()
    };
    let engine = Engine::builder(config).store(flaky).start().await.unwrap();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(laojun::serve::serve(engine, std::future::pending(), move |addr| {
        let _ = addr_tx.send(addr);
    }));
    ApiClient::new(format!("http://{}", addr_rx.await.unwrap()), None)
}

const INC_1: IncidentId = IncidentId::new(1);

fn flaky(dir: &std::path::Path) -> Arc<FlakyStore> {
    Arc::new(FlakyStore {
        inner: SledStore::open(dir).unwrap(),
        broken: AtomicBool::new(false),
        sync_broken: AtomicBool::new(false),
    })
}

fn firing_single() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alertmanager/firing-single.json"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_cannot_write_gets_503_and_the_retry_after_recovery_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = flaky(dir.path());
    flaky.broken.store(true, Ordering::SeqCst);
    let store: Arc<dyn Store> = flaky.clone();
    let (root, data) = (root(), tempfile::tempdir().unwrap());
    let client = serve(flaky.clone(), root.path(), data.path()).await;
    let body = firing_single();
    match client.post_alerts(body.clone()).await {
        Err(ClientError::Server {
            status,
            message,
            retry_after,
        }) => {
            assert_eq!(status, 503);
            assert_eq!(retry_after, Some(1));
            assert!(message.contains("No space left on device"), "{message}");
        }
        other => panic!("a store that cannot write got {other:?}"),
    }
    assert_eq!(store.last_incident().unwrap(), 0, "nothing was kept");

    // AlertManager retries once the disk has room again: the alert is new
    // to laojun (the failed attempt left no trace) and opens INC-1.
    flaky.broken.store(false, Ordering::SeqCst);
    let answer = client.post_alerts(body).await.expect("the retry is stored");
    assert_eq!(answer.opened, [INC_1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disk_that_cannot_sync_gets_503_and_after_recovery_the_incident_is_kept_once_and_its_runbooks_start() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = flaky(dir.path());
    flaky.sync_broken.store(true, Ordering::SeqCst);
    let store: Arc<dyn Store> = flaky.clone();
    let (root, data) = (root(), tempfile::tempdir().unwrap());
    let client = serve(flaky.clone(), root.path(), data.path()).await;
    match client.post_alerts(firing_single()).await {
        Err(ClientError::Server { status, message, .. }) => {
            assert_eq!(status, 503, "not on disk, so not accepted");
            assert!(message.contains("Input/output error"), "{message}");
        }
        other => panic!("a disk that cannot sync got {other:?}"),
    }

    // The retry once the disk syncs again is accepted, and the alert is in
    // one incident, once, whatever the failed attempt left behind.
    flaky.sync_broken.store(false, Ordering::SeqCst);
    client
        .post_alerts(firing_single())
        .await
        .expect("the retry is accepted");
    assert_eq!(store.last_incident().unwrap(), 1);
    let incident = store.incident(INC_1).unwrap().unwrap();
    assert_eq!(incident.alerts.len(), 1, "{incident:?}");
    let fired = store
        .timeline(INC_1)
        .unwrap()
        .iter()
        .filter(|e| e.what.kind_name() == "alert_fired")
        .count();
    assert_eq!(fired, 1);
    // The retry found the alert already kept, so it opened nothing itself;
    // the incident's runbooks start all the same, once it is on disk.
    let runs = crate::support::eventually("INC-1's runbook to start", async || {
        let runs = store.incident(INC_1).unwrap().unwrap().runs;
        (!runs.is_empty()).then_some(runs)
    })
    .await;
    assert_eq!(runs, vec![RunId::new(1)], "INC-1's runbook started once");
}

/// `/readyz` as (status, body).
async fn readyz(url: &str) -> (u16, String) {
    let response = reqwest::get(format!("{url}/readyz")).await.expect("laojun answers");
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_with_the_reason_while_the_store_cannot_write_and_healthz_stays_ok() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = flaky(dir.path());
    let (root, data) = (root(), tempfile::tempdir().unwrap());
    let client = serve(flaky.clone(), root.path(), data.path()).await;
    let url = client.base_url().to_string();
    let (status, body) = readyz(&url).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("ready: the store takes writes; 1 runbooks and 1 playbooks loaded"),
        "{body}"
    );

    // The probe itself writes: a full disk shows before any alert comes.
    flaky.broken.store(true, Ordering::SeqCst);
    let (status, body) = readyz(&url).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("not ready: the store cannot write") && body.contains("No space left on device"),
        "{body}"
    );
    assert_eq!(client.healthz().await.unwrap(), "ok\n", "the process still answers");

    // A failed webhook write is remembered, with when it started.
    assert!(client.post_alerts(firing_single()).await.is_err());
    let (status, body) = readyz(&url).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not ready: the store cannot write (since "), "{body}");
    flaky.broken.store(false, Ordering::SeqCst);
    client
        .post_alerts(firing_single())
        .await
        .expect("stored once the disk has room");
    let (status, body) = readyz(&url).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_when_no_runbooks_or_playbooks_are_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let (root, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for folder in ["runbooks", "playbooks"] {
        std::fs::create_dir(root.path().join(folder)).unwrap();
    }
    let client = serve(flaky(dir.path()), root.path(), data.path()).await;
    let (status, body) = readyz(client.base_url()).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("not ready: no runbooks or playbooks are loaded"),
        "{body}"
    );
}
