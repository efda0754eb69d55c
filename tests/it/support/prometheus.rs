//! Debian's `prometheus` on loopback with a config the test writes,
//! killed when dropped.

use std::process::{Child, Command, Stdio};

use super::alertmanager::free_port;

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` with `config` (prometheus.yml's text) on a free port.
/// Callers wait for what they need scraped (`eventually`), since the first
/// scrape comes a few seconds after start.
pub fn start_prometheus(binary: &std::path::Path, config: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}
