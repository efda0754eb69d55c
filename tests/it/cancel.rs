//! Cancelling a run: a step that only waits (`wait`, an approval,
//! `k8s.wait_ready`) stops at once; a step that changes something finishes
//! its attempt and no step runs after; `on_failure` steps do not run; the
//! timeline and the audit trail say who and why; a finished run is 409.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use laojun::client::{ClientError, RunRequest};
use laojun::run::{Run, RunStatus, StepStatus};

use crate::support::{self, root_with, Server};

const WAITS: &str = r#"
name: waits
steps:
  - id: nap
    action: wait
    with: {secs: 600}
    on_failure:
      - id: cleanup
        action: wait
        with: {secs: 0}
  - id: after
    action: wait
    with: {secs: 0}
"#;

const ASKS: &str =
    "name: asks\nsteps:\n  - id: ask\n    action: approval\n    with: {message: \"go?\", ttl_secs: 600}\n";

fn statuses(run: &Run) -> Vec<(&str, StepStatus)> {
    run.steps.iter().map(|s| (s.id.as_str(), s.status)).collect()
}

async fn server(files: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
    let root = root_with(files);
    let path = root.path().to_path_buf();
    (Server::start_with(move |c| c.root = path).await, root)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_step_stops_at_once_and_nothing_runs_after_it() {
    let (server, _root) = server(&[("runbooks/waits.yaml", WAITS), ("runbooks/asks.yaml", ASKS)]).await;
    let c = server.client();
    let id = c.start_run("waits", &RunRequest::default()).await.unwrap().id;
    support::eventually("the nap to start", async || {
        let run = c.run(id).await.ok()?;
        (run.steps[0].status == StepStatus::Running).then_some(())
    })
    .await;
    c.cancel(id, Some("wrong deployment")).await.unwrap();
    let run = support::wait_run(&c, id, &[RunStatus::Cancelled]).await;
    assert_eq!(
        statuses(&run),
        [("nap", StepStatus::Cancelled), ("after", StepStatus::Pending)],
        "no on_failure step and no later step ran"
    );
    assert_eq!(
        run.reason.as_deref(),
        Some("cancelled by api-token: wrong deployment (during step `nap`)")
    );
    let again = c.cancel(id, None).await.unwrap_err();
    assert!(
        matches!(&again, ClientError::Conflict { message } if message.contains("already ended cancelled")),
        "{again:?}"
    );
    let audit = c.audit(Some(5)).await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "cancel" && a.detail.as_deref() == Some("wrong deployment")));

    // An approval waiting for a person stops too, and leaves the list.
    let id = c.start_run("asks", &RunRequest::default()).await.unwrap().id;
    support::wait_run(&c, id, &[RunStatus::AwaitingApproval]).await;
    c.cancel(id, None).await.unwrap();
    let run = support::wait_run(&c, id, &[RunStatus::Cancelled]).await;
    assert_eq!(statuses(&run), [("ask", StepStatus::Cancelled)]);
    assert!(c.approvals().await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_changing_something_finishes_its_attempt_and_the_next_never_starts() {
    // An endpoint that takes a second to answer: the cancel comes while the
    // request is in flight. The slowness is what is tested, not a barrier.
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            "done"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/restart", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let changes = format!(
        "name: changes\nsteps:\n  - id: restart\n    action: http\n    with: {{method: POST, url: \"{url}\"}}\n  - id: next\n    action: wait\n    with: {{secs: 0}}\n"
    );
    let (server, _root) = server(&[("runbooks/changes.yaml", changes.as_str())]).await;
    let c = server.client();
    let id = c.start_run("changes", &RunRequest::default()).await.unwrap().id;
    support::eventually("the request to arrive", async || {
        (hits.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    c.cancel(id, None).await.unwrap();
    let run = support::wait_run(&c, id, &[RunStatus::Cancelled]).await;
    assert_eq!(
        statuses(&run),
        [("restart", StepStatus::Succeeded), ("next", StepStatus::Pending)],
        "the POST finished, the next step never started"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the write happened once");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_for_a_rollout_that_never_gets_ready_stops_on_cancel() {
    let kube = ::fake_kube::FakeKube::start().await.unwrap();
    kube.add_deployment("prod", "checkout", "registry.example/checkout:v1", 3);
    // Any rollout from here on stays unready for an hour.
    kube.set_ready_delay(Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    kube.write_kubeconfig(&dir.path().join("kubeconfig"), &["ap-east-1"])
        .unwrap();
    let runbook = "name: roll\nsteps:\n  - id: restart\n    action: k8s.restart\n    with: {namespace: prod, deployment: checkout}\n  - id: ready\n    action: k8s.wait_ready\n    with: {namespace: prod, deployment: checkout, timeout_secs: 3000}\n";
    let root = root_with(&[("runbooks/roll.yaml", runbook)]);
    let (path, kubeconfig) = (root.path().to_path_buf(), dir.path().join("kubeconfig"));
    let server = Server::start_with(move |c| {
        c.root = path;
        c.kubernetes.kubeconfig = Some(kubeconfig);
    })
    .await;
    let c = server.client();
    let id = c.start_run("roll", &RunRequest::default()).await.unwrap().id;
    support::eventually("the wait for the rollout", async || {
        let run = c.run(id).await.ok()?;
        (run.steps[1].status == StepStatus::Running).then_some(())
    })
    .await;
    c.cancel(id, Some("rolling forward instead")).await.unwrap();
    let run = support::wait_run(&c, id, &[RunStatus::Cancelled]).await;
    assert_eq!(
        statuses(&run),
        [("restart", StepStatus::Succeeded), ("ready", StepStatus::Cancelled)]
    );
    server.stop().await;
}
