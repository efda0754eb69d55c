//! Reloading the catalog without a restart: a new runbook is there for the
//! next run, a broken catalog changes nothing (422 with every problem), a
//! run in progress finishes on the version it started with, SIGHUP reloads
//! and never stops the process, and only an admin may reload.

use laojun::client::{ClientError, RunRequest};
use laojun::run::RunStatus;

use crate::support::{self, root_with, Server};

const HOLD_V1: &str = "name: hold\nsteps:\n  - id: wait\n    action: wait\n    with: {secs: 1}\n  - id: old_step\n    action: wait\n    with: {secs: 0}\n";
const HOLD_V2: &str = "name: hold\nsteps:\n  - id: new_step\n    action: wait\n    with: {secs: 0}\n";
const QUICK: &str = "name: quick\nsteps:\n  - id: go\n    action: wait\n    with: {secs: 0}\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_puts_a_new_runbook_in_force_and_a_broken_one_changes_nothing() {
    let root = root_with(&[("runbooks/hold.yaml", HOLD_V1)]);
    let path = root.path().to_path_buf();
    let server = Server::start_with(move |c| c.root = path).await;
    let c = server.client();
    let before = c.catalog().await.unwrap();
    assert_eq!(before.runbooks, 1);
    let missing = c.start_run("quick", &RunRequest::default()).await;
    assert!(matches!(missing, Err(ClientError::NotFound { .. })), "{missing:?}");

    // A run in progress on the old version while the new one comes in.
    let old = c.start_run("hold", &RunRequest::default()).await.unwrap().id;
    support::wait_run(&c, old, &[RunStatus::Running]).await;
    std::fs::write(root.path().join("runbooks/quick.yaml"), QUICK).unwrap();
    std::fs::write(root.path().join("runbooks/hold.yaml"), HOLD_V2).unwrap();
    let reloaded = c.reload().await.unwrap();
    assert_eq!(reloaded.runbooks, 2);
    assert_ne!(reloaded.revision, before.revision);
    assert_eq!(c.catalog().await.unwrap().revision, reloaded.revision);

    let finished = support::wait_run(&c, old, &[RunStatus::Succeeded, RunStatus::Failed]).await;
    let steps: Vec<&str> = finished.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(steps, ["wait", "old_step"], "the run in progress kept its version");
    assert_eq!(finished.catalog_revision, before.revision);
    let new = support::run_to_end(&c, "hold", &RunRequest::default()).await;
    assert_eq!(
        new.steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["new_step"]
    );
    assert_eq!(new.catalog_revision, reloaded.revision);
    assert_eq!(
        support::run_to_end(&c, "quick", &RunRequest::default()).await.status,
        RunStatus::Succeeded
    );

    std::fs::write(
        root.path().join("runbooks/broken.yaml"),
        "name: broken\nsteps:\n  - id: x\n    action: k8s.rolback\n",
    )
    .unwrap();
    let refused = c.reload().await.unwrap_err();
    let ClientError::BadRequest { status, message } = &refused else {
        panic!("expected 422, got {refused:?}")
    };
    assert_eq!(*status, 422);
    assert!(message.contains("nothing changed"), "{message}");
    let raw = c
        .send_raw_response(reqwest::Method::POST, "/api/v1/reload", "")
        .await
        .unwrap();
    let body: serde_json::Value = raw.json().await.unwrap();
    let problem = body["problems"][0].as_str().unwrap();
    assert!(problem.ends_with("runbooks/broken.yaml:4:13: unknown action `k8s.rolback`; did you mean `k8s.rollback`? the actions are `k8s.rollback`, `k8s.scale`, `k8s.switch_traffic`, `k8s.restart`, `k8s.set_image`, `k8s.wait_ready`, `k8s.cleanup`, `k8s.pods`, `k8s.logs`, `dns.failover`, `slack.notify`, `http`, `prometheus.query`, `alertmanager.silence`, `alertmanager.expire_silence`, `script`, `approval` or `wait`"), "{problem}");
    assert_eq!(
        c.catalog().await.unwrap().revision,
        reloaded.revision,
        "nothing changed"
    );
    assert_eq!(
        support::run_to_end(&c, "quick", &RunRequest::default()).await.status,
        RunStatus::Succeeded
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_admin_may_reload() {
    let root = root_with(&[("runbooks/quick.yaml", QUICK)]);
    let path = root.path().to_path_buf();
    let server = Server::start_with(move |c| {
        c.root = path;
        c.auth.tokens = vec![laojun::config::NamedToken {
            name: "alice".into(),
            role: laojun::config::Role::Operator,
            token: "alice-token-0123456789abcdef".into(),
        }];
    })
    .await;
    let alice = server.client_as(Some("alice-token-0123456789abcdef"));
    let refused = alice.reload().await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Forbidden { message } if message.contains("needs an admin token")),
        "{refused:?}"
    );
    assert!(server.client().reload().await.is_ok());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_catalog_and_the_process_goes_on() {
    let root = root_with(&[("runbooks/hold.yaml", HOLD_V1)]);
    let data = tempfile::tempdir().unwrap();
    let (r, d) = (root.path().to_path_buf(), data.path().to_path_buf());
    let binary = support::spawn_binary(move |c| {
        c.arg("--root")
            .arg(r)
            .arg("--data-dir")
            .arg(d)
            .env("LAOJUN_API_TOKEN", support::TOKEN);
    })
    .await;
    let c = binary.client(support::TOKEN);
    let before = c.catalog().await.unwrap().revision;
    std::fs::write(root.path().join("runbooks/quick.yaml"), QUICK).unwrap();
    let pid = binary.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    binary.wait_for_log("catalog reloaded").await;
    let after = c.catalog().await.unwrap();
    assert_ne!(after.revision, before);
    assert_eq!(after.runbooks, 2);
    assert_eq!(
        support::run_to_end(&c, "quick", &RunRequest::default()).await.status,
        RunStatus::Succeeded
    );

    // A broken catalog on SIGHUP: every problem logged, nothing changed, still serving.
    std::fs::write(root.path().join("runbooks/broken.yaml"), "name: broken\nsteps: []\n").unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let problem = binary.wait_for_log("reload refused").await;
    assert!(
        problem["fields"]["problem"].as_str().unwrap().contains("broken.yaml"),
        "{problem}"
    );
    assert_eq!(c.catalog().await.unwrap().revision, after.revision);
}
