//! Helpers shared by the integration tests: a laojun server in this
//! process on a loopback port, and the captured AlertManager bodies.

#![allow(dead_code)] // each test binary uses a different part

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
