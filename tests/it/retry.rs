//! Retrying a run from a step: a run interrupted by SIGKILL of the real
//! binary in the middle of a step is taken up again from that step; the
//! steps before it are not run again and their outputs reach later
//! templates; a run still going is 409.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use laojun::client::{ClientError, RunRequest};
use laojun::ids::RunId;
use laojun::run::{RunStatus, StepStatus};

use crate::support::{self, root_with};

#[derive(Default)]
struct Seen {
    finds: AtomicUsize,
    acts: AtomicUsize,
    told: Mutex<Vec<String>>,
}

/// An endpoint with three paths: /find answers a target, /act hangs on its
/// first call (laojun is killed while it waits) and answers after, /tell
/// records what it was told.
async fn endpoint(seen: Arc<Seen>) -> String {
    use axum::routing::{get, post};
    let (a, b, c) = (seen.clone(), seen.clone(), seen);
    let app = axum::Router::new()
        .route(
            "/find",
            get(move || {
                let a = a.clone();
                async move {
                    a.finds.fetch_add(1, Ordering::SeqCst);
                    axum::Json(serde_json::json!({"target": "db-7"}))
                }
            }),
        )
        .route(
            "/act",
            post(move || {
                let b = b.clone();
                async move {
                    if b.acts.fetch_add(1, Ordering::SeqCst) == 0 {
                        // Hangs: this is the step laojun is killed in.
                        std::future::pending::<()>().await;
                    }
                    "acted"
                }
            }),
        )
        .route(
            "/tell",
            post(move |body: String| {
                let c = c.clone();
                async move {
                    c.told.lock().unwrap().push(body);
                    "ok"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_run_is_retried_from_its_step_with_the_earlier_outputs() {
    let seen = Arc::new(Seen::default());
    let url = endpoint(seen.clone()).await;
    let runbook = format!(
        "name: fix\nsteps:\n  - id: find\n    action: http\n    with: {{url: \"{url}/find\"}}\n  - id: act\n    action: http\n    with: {{method: POST, url: \"{url}/act\"}}\n    timeout_secs: 3000\n  - id: tell\n    action: http\n    with: {{method: POST, url: \"{url}/tell\", body: \"fixed {{{{steps.find.output.body.target}}}}\"}}\n"
    );
    let root = root_with(&[("runbooks/fix.yaml", runbook.as_str())]);
    let data = tempfile::tempdir().unwrap();
    let start = || {
        let (r, d) = (root.path().to_path_buf(), data.path().to_path_buf());
        support::spawn_binary(move |c| {
            c.arg("--root")
                .arg(r)
                .arg("--data-dir")
                .arg(d)
                .env("LAOJUN_API_TOKEN", support::TOKEN);
        })
    };
    let first = start().await;
    let c = first.client(support::TOKEN);
    let id = c.start_run("fix", &RunRequest::default()).await.unwrap().id;
    support::eventually("the act step to be in flight", async || {
        (seen.acts.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let refused = c.retry(id, None, None).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Conflict { message } if message.contains("still running")),
        "{refused:?}"
    );
    first.kill();

    let second = start().await;
    let c = second.client(support::TOKEN);
    let interrupted = support::wait_run(&c, id, &[RunStatus::Interrupted]).await;
    assert_eq!(interrupted.steps[1].status, StepStatus::Interrupted);
    let retry = c.retry(id, None, None).await.unwrap().id;
    assert_eq!(retry, RunId::new(2));
    let run = support::wait_run(&c, retry, &[RunStatus::Succeeded, RunStatus::Failed]).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.retry_of, Some(id));
    assert_eq!(
        run.steps[0].output, interrupted.steps[0].output,
        "find's output is the original's"
    );
    assert_eq!(seen.finds.load(Ordering::SeqCst), 1, "find did not run again");
    assert_eq!(
        seen.acts.load(Ordering::SeqCst),
        2,
        "act ran again, from where it stopped"
    );
    assert_eq!(
        *seen.told.lock().unwrap(),
        ["fixed db-7"],
        "the earlier output reached the template"
    );
    let unknown = c.retry(id, Some("nope"), None).await.unwrap_err();
    assert!(
        matches!(&unknown, ClientError::BadRequest { message, .. } if message.contains("its steps are find, act, tell")),
        "{unknown:?}"
    );
}
