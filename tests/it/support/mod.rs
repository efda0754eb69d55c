//! Helpers shared by the integration tests: a laojun server in this
//! process on a loopback port, and the captured AlertManager bodies.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use laojun::config::Config;
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-token-0123456789";

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/alertmanager").join(name)).expect("fixture exists")
}

pub const FIXTURES: &[&str] = &[
    "firing-single.json",
    "resolved-single.json",
    "firing-grouped.json",
    "firing-child-route.json",
    "prometheus-targetdown-firing.json",
    "prometheus-targetdown-resolved.json",
];

/// A server running in this process until dropped.
pub struct Server {
    pub url: String,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    /// Starts with the shipped runbooks and playbooks, a token, a fresh
    /// data dir and port 0; `adjust` may change the config first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            root: repo().to_path_buf(),
            ..Config::default()
        };
        config.auth.token = Some(TOKEN.into());
        adjust(&mut config);
        let data_dir = config.data_dir.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
        let done = tokio::spawn(laojun::serve::run(
            config,
            async {
                let _ = stopped.await;
            },
            move |addr| {
                let _ = addr_tx.send(addr);
            },
        ));
        let addr = addr_rx.await.expect("the server starts and reports its address");
        Server {
            url: format!("http://{addr}"),
            data_dir,
            stop: Some(stop),
            done: Some(done),
            _dir: Some(dir),
        }
    }

    /// Stops it the graceful way and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.expect("server task").expect("server shut down cleanly");
        }
    }

    pub fn client(&self) -> Client {
        Client {
            url: self.url.clone(),
            http: reqwest::Client::new(),
            token: Some(TOKEN.into()),
        }
    }
}

/// A small API client for tests.
#[derive(Clone)]
pub struct Client {
    pub url: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

impl Client {
    pub async fn post(&self, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let mut r = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// A folder with runbooks/, playbooks/ and templates/ made of `files`
/// (path relative to the folder → content).
pub fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["runbooks", "playbooks", "templates"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("create folder");
    }
    for (path, content) in files {
        std::fs::write(dir.path().join(path), content).expect("write file");
    }
    dir
}

/// A local HTTP listener standing in for Slack or any endpoint: records
/// every request body and answers with the statuses queued (200 after).
#[derive(Clone)]
pub struct Listener {
    pub url: String,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
    answers: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u16>>>,
}

impl Listener {
    pub async fn start() -> Listener {
        use axum::routing::any;
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let answers = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let (r, a) = (received.clone(), answers.clone());
        let app = axum::Router::new().fallback(any(move |uri: axum::http::Uri, body: axum::body::Bytes| {
            let (r, a) = (r.clone(), a.clone());
            async move {
                let value = serde_json::from_slice(&body)
                    .unwrap_or(serde_json::Value::String(String::from_utf8_lossy(&body).into()));
                r.lock().unwrap().push((uri.path().to_string(), value));
                let status = a.lock().unwrap().pop_front().unwrap_or(200);
                (axum::http::StatusCode::from_u16(status).unwrap(), "ok")
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Listener { url, received, answers }
    }

    /// The next requests get these statuses, in order.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses.iter().copied());
    }

    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.received.lock().unwrap().iter().map(|(_, b)| b.clone()).collect()
    }
}

impl Client {
    /// Polls a run until it is finished (or waits for approval when `until`
    /// says so); panics after 20 s.
    /// The id of an incident's first run: runbooks start just after the
    /// webhook that opened the incident is answered.
    pub async fn first_run(&self, incident: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (_, inc) = self.get(&format!("/api/v1/incidents/{incident}")).await;
            if let Some(id) = inc["runs"][0].as_str() {
                return id.to_string();
            }
            assert!(std::time::Instant::now() < deadline, "{incident} started no run: {inc}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_run(&self, id: &str, until: &[&str]) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (_, run) = self.get(&format!("/api/v1/runs/{id}")).await;
            let status = run["status"].as_str().unwrap_or_default().to_string();
            if until.contains(&status.as_str()) {
                return run;
            }
            assert!(std::time::Instant::now() < deadline, "run {id} stayed {status}: {run}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
