//! Debian's `prometheus-alertmanager` on loopback: started with a route
//! to laojun, and alerts pushed into it as Prometheus would.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use super::{spawn_listening, TOKEN};

/// A running AlertManager, killed when dropped.
pub struct AlertManager {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for AlertManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// AlertManager on a free port, routing every alert to `webhook_url` with laojun's token.
pub async fn start_alertmanager(binary: &std::path::Path, webhook_url: &str) -> AlertManager {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"route:
  receiver: laojun
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: laojun
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {TOKEN}
"#
    );
    std::fs::write(dir.path().join("alertmanager.yml"), config).unwrap();
    let (child, port) =
        spawn_alertmanager(binary, &dir.path().join("alertmanager.yml"), &dir.path().join("data")).await;
    let url = format!("http://127.0.0.1:{port}");
    AlertManager { child, url, _dir: dir }
}

/// Starts AlertManager (no cluster) with `config` and `storage` on a free
/// port, and waits until it is ready there.
pub async fn spawn_alertmanager(binary: &Path, config: &Path, storage: &Path) -> (Child, u16) {
    spawn_listening(
        "alertmanager",
        |port| {
            let mut command = Command::new(binary);
            command
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", storage.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            command
        },
        // Only AlertManager's status names its cluster and config.
        async |url| {
            let Ok(r) = reqwest::get(format!("{url}/api/v2/status")).await else {
                return false;
            };
            let body: Value = r.json().await.unwrap_or_default();
            body.get("cluster").is_some()
                && body.get("config").is_some()
                && reqwest::get(format!("{url}/-/ready"))
                    .await
                    .is_ok_and(|r| r.status().is_success())
        },
    )
    .await
}

/// Pushes one alert into AlertManager as Prometheus would.
pub async fn push(am: &AlertManager, alert: Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&json!([alert]))
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "alertmanager took the alert: {}",
        resp.status()
    );
}
