//! Debian's `prometheus` on loopback with a config the test writes,
//! killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{body_contains, eventually, spawn_listening};

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    pub url: String,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` with `config` (prometheus.yml's text) and `args` on a
/// free port, and waits until it says it is ready. Callers wait for what
/// they need scraped (`eventually`), since the first scrape comes a few
/// seconds after start.
pub async fn start_prometheus(binary: &std::path::Path, config: &str, args: &[&str]) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    let (child, port) = spawn_listening(
        "prometheus",
        |port| {
            let mut command = Command::new(binary);
            command
                .arg(format!("--config.file={}", path.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            command
        },
        async |url| body_contains(&format!("{url}/-/ready"), "Prometheus Server is Ready").await,
    )
    .await;
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        config: path,
        _dir: dir,
    }
}

impl Prometheus {
    /// Replaces the config and has Prometheus reload it (SIGHUP), waiting
    /// until `/api/v1/status/config` shows the new text's `marker`.
    pub async fn reconfigure(&self, config: &str, marker: &str) {
        std::fs::write(&self.config, config).unwrap();
        let hup = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(hup.success(), "SIGHUP to prometheus");
        let status = format!("{}/api/v1/status/config", self.url);
        eventually("prometheus to load the new config", async || {
            let v: serde_json::Value = reqwest::get(&status).await.ok()?.json().await.ok()?;
            v["data"]["yaml"].as_str()?.contains(marker).then_some(())
        })
        .await;
    }
}
