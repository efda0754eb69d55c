//! A full disk, for real: the data dir on a small tmpfs filled to the last
//! byte. Webhooks get 503 and `/readyz` says why while `/healthz` stays ok;
//! once space is freed laojun exits with 75 so its supervisor restarts it
//! (sled stays failed after an I/O error), and the restarted process has
//! every alert that got a 200 and takes new ones.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use laojun::client::{ClientError, IncidentQuery};
use serde_json::json;

use crate::support::{self, eventually, webhook_body, Alert, Binary, TOKEN};

/// A tmpfs of `mb` MiB mounted on a fresh folder; unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (outside CI) when this process may not mount; in CI that fails.
    fn mount(mb: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("mount runs");
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot mount a tmpfs ({why}); CI runs as root so that this test can"
            );
            let _ = writeln!(std::io::stderr(), "skipped: cannot mount a tmpfs: {why}");
            return None;
        }
        Some(Tmpfs { path, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

async fn start(data: &Path, root: &Path) -> Binary {
    support::spawn_in(root, data).await
}

async fn get(url: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{url}{path}")).await.expect("laojun answers");
    (response.status().as_u16(), response.text().await.unwrap())
}

fn alert(i: usize) -> Vec<u8> {
    webhook_body([
        Alert::firing(json!({"alertname": "DiskTest", "instance": format!("i{i}")}))
            .starts_at("2026-12-02T08:00:00Z")
            .fingerprint(&format!("{i:016x}")),
    ])
}

/// Fills `dir`'s file system with one file until a write fails.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![7u8; 256 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // The last partial page, byte by byte in bigger steps first.
    for size in [4096, 1] {
        while file.write_all(&chunk[..size]).is_ok() {}
    }
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_gets_503_and_once_freed_laojun_exits_for_a_restart_that_loses_nothing() {
    let Some(disk) = Tmpfs::mount(40) else { return };
    let root = support::root_with(&[
        (
            "runbooks/look.yaml",
            "name: look\nsteps:\n  - id: look\n    action: wait\n    with: {secs: 0}\n",
        ),
        (
            "playbooks/disk.yaml",
            "name: disk\ntrigger: {alerts: ['alertname=\"DiskTest\"']}\ngroup_by: [alertname, instance]\nrunbooks:\n  - runbook: look\n",
        ),
    ]);
    let data = disk.path.join("data");
    let laojun = start(&data, root.path()).await;
    let client = laojun.client(TOKEN);
    let (status, body) = get(&laojun.url, "/readyz").await;
    assert_eq!(status, 200, "{body}");

    let mut accepted = HashSet::new();
    let mut i = 0;
    while i < 5 {
        client.post_alerts(alert(i)).await.expect("room on the disk");
        accepted.insert(format!("{i:016x}"));
        i += 1;
    }

    let filler = fill(&disk.path);
    // sled writes into segments it already has until one fills: alerts
    // may still be taken for a while, and each 200 must survive.
    let refused = eventually("a webhook to be refused on the full disk", async || {
        let n = i;
        i += 1;
        match client.post_alerts(alert(n)).await {
            Ok(_) => {
                accepted.insert(format!("{n:016x}"));
                None
            }
            Err(ClientError::Server { status, message, .. }) => Some((status, message)),
            Err(e) => panic!("laojun stopped answering on a full disk: {e}"),
        }
    })
    .await;
    assert_eq!(refused.0, 503, "{refused:?}");
    assert!(refused.1.contains("No space left on device"), "{refused:?}");
    let (status, body) = get(&laojun.url, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not ready: the store cannot write"), "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    assert_eq!(get(&laojun.url, "/healthz").await, (200, "ok\n".to_string()));

    // Room again: laojun says why it goes and exits for its supervisor.
    std::fs::remove_file(&filler).unwrap();
    let mut laojun = laojun;
    let code = eventually("laojun to exit once the disk has room", async || {
        laojun.child.try_wait().unwrap().map(|s| s.code())
    })
    .await;
    assert_eq!(code, Some(75), "exit status 75 (EX_TEMPFAIL) asks for a restart");
    let why = laojun
        .wait_for_log(
            "exiting so that the supervisor starts laojun again on the reopened store; everything acknowledged is on disk",
        )
        .await;
    assert!(
        why["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{why:?}"
    );
    drop(laojun);

    // The supervisor's restart: everything that got a 200 is there.
    let laojun = start(&data, root.path()).await;
    let client = laojun.client(TOKEN);
    let (status, body) = get(&laojun.url, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let incidents = client
        .incidents(&IncidentQuery {
            limit: Some(100_000),
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    let stored: HashSet<String> = incidents
        .iter()
        .flat_map(|inc| inc.alerts.iter().map(|a| a.fingerprint.clone()))
        .collect();
    let lost: Vec<&String> = accepted.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged alerts lost: {lost:?}");
    client.post_alerts(alert(i)).await.expect("new alerts are taken again");
    eprintln!(
        "full disk: {} alerts got a 200 before the disk filled, all {} kept; the refused one got 503; exit 75 once freed",
        accepted.len(),
        accepted.len()
    );
}
