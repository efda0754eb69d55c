//! Runs left unfinished by a process that died: on the next start a step
//! that was running is re-run only if it is idempotent; otherwise it is
//! marked interrupted, the run stops, and the timeline and Slack say so.

use std::sync::Arc;

use crate::support::{eventually, root_with, wait_run, Listener, Server};
use chrono::Utc;
use laojun::run::{Run, RunStatus, StepRecord, StepStatus, TriggerKind};
use laojun::store::{SledStore, Store, Write};
use serde_json::{json, Map};

const RUNBOOK: &str = r#"
name: fix
steps:
  - id: announce
    action: slack.notify
    with: {text: "fixing"}
  - id: settle
    action: slack.notify
    idempotent: true
    with: {text: "settled by {{run.id}}"}
"#;

fn left_running(n: u64, running: &str) -> Run {
    let mut steps = vec![
        StepRecord::new("announce", "slack.notify"),
        StepRecord::new("settle", "slack.notify"),
    ];
    for s in &mut steps {
        if s.id == running {
            s.status = StepStatus::Running;
            s.attempts = 1;
            s.started_at = Some(Utc::now());
            break;
        }
        s.status = StepStatus::Succeeded;
    }
    Run {
        id: laojun::ids::RunId::new(n),
        runbook: "fix".into(),
        incident: None,
        playbook: None,
        trigger: TriggerKind::Manual,
        by: "alice".into(),
        params: Map::new(),
        dry_run: false,
        status: RunStatus::Running,
        steps,
        created_at: Utc::now(),
        finished_at: None,
        reason: None,
        idempotency_key: None,
        alert: json!(null),
        group: None,
        mitigates: true,
        counts_for_guards: None,
        catalog_revision: String::new(),
        retry_of: None,
        lease: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_idempotent_step_is_interrupted_and_an_idempotent_one_runs_again() {
    let data = tempfile::tempdir().unwrap();
    {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&data.path().join("store")).unwrap());
        store
            .commit(vec![vec![
                Write::Run(left_running(1, "announce")),
                Write::Run(left_running(2, "settle")),
                Write::LastRun(2),
            ]])
            .unwrap();
    }
    let slack = Listener::start().await;
    let root = root_with(&[("runbooks/fix.yaml", RUNBOOK)]);
    let (root_path, data_path, webhook) = (
        root.path().to_path_buf(),
        data.path().to_path_buf(),
        format!("{}/hook", slack.url),
    );
    // sled lets go of its file lock from a background thread after the
    // store above is dropped (spacejam/sled#1289): start once it has.
    let server = eventually("laojun to open the store the test wrote", async || {
        let (root_path, data_path, webhook) = (root_path.clone(), data_path.clone(), webhook.clone());
        Server::try_start_with(move |c| {
            c.root = root_path;
            c.data_dir = data_path;
            c.slack.webhook_url = Some(webhook);
        })
        .await
        .ok()
    })
    .await;
    let c = server.client();

    let finished = [RunStatus::Interrupted, RunStatus::Succeeded, RunStatus::Failed];
    let interrupted = wait_run(&c, "RUN-1", &finished).await;
    assert_eq!(interrupted.status, RunStatus::Interrupted, "{interrupted:?}");
    assert_eq!(interrupted.steps[0].status, StepStatus::Interrupted);
    assert_eq!(
        interrupted.steps[1].status,
        StepStatus::Pending,
        "the run stopped there"
    );
    assert!(
        interrupted.reason.as_deref().unwrap().contains("not idempotent"),
        "{interrupted:?}"
    );

    let rerun = wait_run(&c, "RUN-2", &finished).await;
    assert_eq!(rerun.status, RunStatus::Succeeded, "{rerun:?}");
    assert_eq!(rerun.steps[1].attempts, 1);

    // The interrupted run's warning is posted from a task of its own, so it
    // may come after RUN-2 is done: wait for both posts.
    let texts: Vec<String> = eventually("Slack to get two posts", async || {
        let texts: Vec<String> = slack
            .bodies()
            .iter()
            .map(|b| b["text"].as_str().unwrap().to_string())
            .collect();
        (texts.len() >= 2).then_some(texts)
    })
    .await;
    assert!(
        !texts.contains(&"fixing".to_string()),
        "the non-idempotent step ran again: {texts:?}"
    );
    assert!(texts.contains(&"settled by RUN-2".to_string()), "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with(":x: RUN-1 (`fix`) was interrupted at step")),
        "Slack was told: {texts:?}"
    );
    assert_eq!(texts.len(), 2, "{texts:?}");
    server.stop().await;
}
