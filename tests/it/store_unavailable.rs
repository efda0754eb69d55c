//! When the store cannot write, the webhook answers 503 (so AlertManager
//! retries) and keeps nothing half-done; once the store recovers the retry
//! is stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use laojun::incident::{Event, Incident, IncidentAlert};
use laojun::intake::Intake;
use laojun::metrics::Metrics;
use laojun::run::Run;
use laojun::server::{router, AppState};
use laojun::store::{Episode, IncidentFilter, OpenEntry, SledStore, Store, StoreError, Write};
use laojun::writer::{Effect, Writer};
use tokio::sync::mpsc;

/// A sled store whose writes fail while `broken` is set (a full disk), and
/// whose flushes fail while `sync_broken` is set (a disk that cannot sync).
struct FlakyStore {
    inner: SledStore,
    broken: AtomicBool,
    sync_broken: AtomicBool,
}

impl Store for FlakyStore {
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
    fn incident(&self, n: u64) -> Result<Option<Incident>, StoreError> {
        self.inner.incident(n)
    }
    fn incidents(&self, f: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        self.inner.incidents(f)
    }
    fn incident_record(&self, n: u64) -> Result<Option<Incident>, StoreError> {
        self.inner.incident_record(n)
    }
    fn incident_alert(&self, n: u64, index: u32) -> Result<Option<IncidentAlert>, StoreError> {
        self.inner.incident_alert(n, index)
    }
    fn each_open(&self, each: &mut dyn FnMut(OpenEntry)) -> Result<(), StoreError> {
        self.inner.each_open(each)
    }
    fn timeline(&self, n: u64) -> Result<Vec<Event>, StoreError> {
        self.inner.timeline(n)
    }
    fn episode(&self, fp: &str, at: DateTime<Utc>) -> Result<Option<Episode>, StoreError> {
        self.inner.episode(fp, at)
    }
    fn last_incident(&self) -> Result<u64, StoreError> {
        self.inner.last_incident()
    }
    fn run(&self, n: u64) -> Result<Option<Run>, StoreError> {
        self.inner.run(n)
    }
    fn unfinished_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.inner.unfinished_runs()
    }
    fn runs_since(&self, since: DateTime<Utc>) -> Result<Vec<Run>, StoreError> {
        self.inner.runs_since(since)
    }
    fn last_run(&self) -> Result<u64, StoreError> {
        self.inner.last_run()
    }
    fn run_for_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.run_for_key(key)
    }
    fn audit(&self, limit: usize) -> Result<Vec<laojun::store::Audit>, StoreError> {
        self.inner.audit(limit)
    }
    fn schedule_mark(&self, playbook: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.schedule_mark(playbook)
    }
    fn claim_schedule(&self, p: &str, expected: Option<DateTime<Utc>>, new: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner.claim_schedule(p, expected, new)
    }
}

/// laojun's webhook in front of `flaky`; returns its URL and what the
/// writer tells the executor (incidents opened and resolved).
async fn serve(flaky: Arc<FlakyStore>) -> (String, mpsc::UnboundedReceiver<Effect>) {
    let store: Arc<dyn Store> = flaky.clone();
    let intake = Intake::new(store.clone(), vec![]).unwrap();
    let metrics = Arc::new(Metrics::new());
    let (effects, effects_rx) = mpsc::unbounded_channel();
    let (writer, _thread) = Writer::start(intake, store.clone(), 16, metrics.clone(), Some(effects));
    let catalog = Arc::new(laojun::catalog::Catalog::default());
    let executor = laojun::executor::Executor::new(
        writer.clone(),
        store.clone(),
        catalog.clone(),
        laojun::actions::Backends::new(None),
        Default::default(),
    );
    let state = Arc::new(AppState {
        writer,
        store: store.clone(),
        metrics,
        credentials: Vec::new(),
        catalog,
        executor,
        timezone: chrono_tz::UTC,
        max_body: 1 << 20,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/alerts", listener.local_addr().unwrap());
    let app = router(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, effects_rx)
}

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
    let (url, _effects) = serve(flaky.clone()).await;
    let body = firing_single();
    let http = reqwest::Client::new();
    let resp = http.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("No space left on device"),
        "{answer}"
    );
    assert_eq!(store.last_incident().unwrap(), 0, "nothing was kept");

    // AlertManager retries once the disk has room again: the alert is new
    // to laojun (the failed attempt left no trace) and opens INC-1.
    flaky.broken.store(false, Ordering::SeqCst);
    let resp = http.post(&url).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["opened"], serde_json::json!(["INC-1"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disk_that_cannot_sync_gets_503_and_after_recovery_the_incident_is_kept_once_and_its_runbooks_start() {
    let dir = tempfile::tempdir().unwrap();
    let flaky = flaky(dir.path());
    flaky.sync_broken.store(true, Ordering::SeqCst);
    let store: Arc<dyn Store> = flaky.clone();
    let (url, mut effects) = serve(flaky.clone()).await;
    let http = reqwest::Client::new();
    let resp = http.post(&url).body(firing_single()).send().await.unwrap();
    assert_eq!(resp.status(), 503, "not on disk, so not accepted");
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("Input/output error"),
        "{answer}"
    );

    // The retry once the disk syncs again is accepted, and the alert is in
    // one incident, once, whatever the failed attempt left behind.
    flaky.sync_broken.store(false, Ordering::SeqCst);
    let resp = http.post(&url).body(firing_single()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(store.last_incident().unwrap(), 1);
    let incident = store.incident(1).unwrap().unwrap();
    assert_eq!(incident.alerts.len(), 1, "{incident:?}");
    let fired = store
        .timeline(1)
        .unwrap()
        .iter()
        .filter(|e| e.what.kind_name() == "alert_fired")
        .count();
    assert_eq!(fired, 1);
    // The retry found the alert already kept, so it opened nothing itself;
    // the incident's runbooks start all the same, once it is on disk.
    let opened = tokio::time::timeout(std::time::Duration::from_secs(5), effects.recv())
        .await
        .expect("an effect within 5 s")
        .expect("the writer is running");
    match opened {
        Effect::Opened(o) => assert_eq!(o.incident.id, "INC-1"),
        other => panic!("expected INC-1 opened, got {other:?}"),
    }
}
