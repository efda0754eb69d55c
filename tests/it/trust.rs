//! Automation that means what it says: only a fix mitigates, a playbook's
//! runbooks run in order (with `when:` and `on_failure:`), guards are
//! decided once per firing, and a condition on a missing label is false.

use laojun::client::{ApiClient, IncidentQuery, RunQuery};
use laojun::ids::{IncidentId, RunId};
use laojun::incident::{EventKind, Status};
use laojun::run::{Run, RunStatus};
use serde_json::json;

use crate::support::{self, as_token, root_with, token, Alert, Server};

const FIX: &str = "name: fix\nmitigates: true\nsteps:\n  - id: act\n    action: wait\n    with: {secs: 0}\n";
const TELL: &str = "name: tell\nsteps:\n  - id: say\n    action: wait\n    with: {secs: 1}\n";
const BREAK: &str =
    "name: break\nsteps:\n  - id: fail\n    action: script\n    with: {source: 'throw \"the check failed\"'}\n";
const LOOK: &str = "name: look\nsteps:\n  - id: only_when_critical\n    action: wait\n    with: {secs: 0}\n    when: 'alert.labels.severity == \"critical\"'\n  - id: always\n    action: wait\n    with: {secs: 0}\n";

async fn server(files: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
    let root = root_with(files);
    let path = root.path().to_path_buf();
    let server = Server::start_with(move |c| c.root = path).await;
    (server, root)
}

fn alert(alertname: &str, host: &str) -> Vec<u8> {
    support::webhook_body([Alert::firing(json!({"alertname": alertname, "host": host}))
        .starts_at("2026-11-30T08:00:00Z")
        .fingerprint(&format!("{:0>16}", host.replace('-', "")))])
}

/// The runs of INC-n once `count` of them have finished, in start order.
async fn finished_runs(c: &ApiClient, incident: u64, count: usize) -> Vec<Run> {
    let id = IncidentId::new(incident);
    support::eventually(&format!("{count} finished runs of {id}"), async || {
        let runs: Vec<Run> = c
            .runs(&RunQuery::default())
            .await
            .ok()?
            .into_iter()
            .filter(|r| r.incident == Some(id) && r.status.is_finished())
            .collect();
        (runs.len() >= count).then(|| {
            let mut runs = runs;
            runs.sort_by_key(|r| r.id);
            runs
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notify_only_runbook_leaves_its_incident_open_and_a_fix_mitigates_it_naming_the_run() {
    let pb = "name: watch\ntrigger: {alerts: ['alertname=\"Watch\"']}\nseverity: P0\ngroup_by: [alertname, host]\nrunbooks:\n  - runbook: tell\n  - runbook: fix\n    when: 'alert.labels.host == \"db-2\"'\n";
    let (server, _root) = server(&[
        ("runbooks/tell.yaml", TELL),
        ("runbooks/fix.yaml", FIX),
        ("playbooks/watch.yaml", pb),
    ])
    .await;
    let c = server.client();
    c.post_alerts(alert("Watch", "db-1")).await.unwrap();
    let runs = finished_runs(&c, 1, 2).await;
    assert_eq!(runs[0].status, RunStatus::Succeeded, "tell ran");
    assert_eq!(
        runs[1].status,
        RunStatus::Skipped,
        "fix is only for db-2: {:?}",
        runs[1].reason
    );
    let open = c
        .incidents(&IncidentQuery {
            status: Some(Status::Open),
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        open.iter().map(|i| i.id).collect::<Vec<_>>(),
        [IncidentId::new(1)],
        "a P0 that was only told about stays in `incidents list --status open`"
    );

    c.post_alerts(alert("Watch", "db-2")).await.unwrap();
    let runs = finished_runs(&c, 2, 2).await;
    assert_eq!(runs[1].status, RunStatus::Succeeded, "fix ran for db-2");
    let detail = c.incident("INC-2").await.unwrap();
    assert_eq!(detail.incident.status, Status::Mitigated);
    let by: Vec<String> = detail
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            EventKind::StatusChanged {
                to: Status::Mitigated,
                by,
                ..
            } => Some(by.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        by,
        [runs[1].id.to_string()],
        "the timeline names the run that mitigated"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_playbooks_runbooks_run_in_order_and_a_failure_stops_the_rest() {
    let pb = "name: chain\ntrigger: {alerts: ['alertname=\"Chain\"']}\nrunbooks:\n  - runbook: tell\n  - runbook: break\n  - runbook: fix\n";
    let (server, _root) = server(&[
        ("runbooks/tell.yaml", TELL),
        ("runbooks/break.yaml", BREAK),
        ("runbooks/fix.yaml", FIX),
        ("playbooks/chain.yaml", pb),
    ])
    .await;
    let c = server.client();
    c.post_alerts(alert("Chain", "web-1")).await.unwrap();
    let runs = finished_runs(&c, 1, 3).await;
    let names: Vec<(&str, RunStatus)> = runs.iter().map(|r| (r.runbook.as_str(), r.status)).collect();
    assert_eq!(
        names,
        [
            ("tell", RunStatus::Succeeded),
            ("break", RunStatus::Failed),
            ("fix", RunStatus::Refused)
        ]
    );
    let tell_done = runs[0].finished_at.expect("tell finished");
    assert!(
        runs[1].created_at >= tell_done,
        "break started after tell ended: {} < {tell_done}",
        runs[1].created_at
    );
    let why = runs[2].reason.as_deref().unwrap_or_default();
    assert!(why.contains("`break`") && why.contains("on_failure: stop"), "{why}");
    let inc = c.incident("INC-1").await.unwrap().incident;
    assert_eq!(inc.status, Status::Open, "nothing that mitigates succeeded");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_failure_continue_and_when_over_earlier_runs_let_a_playbook_go_on() {
    let pb = "name: chain\ntrigger: {alerts: ['alertname=\"Chain\"']}\nrunbooks:\n  - runbook: break\n    on_failure: continue\n  - runbook: tell\n    when: 'runs[\"break\"].status == \"failed\"'\n  - runbook: fix\n    when: 'runs[\"break\"].status == \"succeeded\"'\n";
    let (server, _root) = server(&[
        ("runbooks/tell.yaml", TELL),
        ("runbooks/break.yaml", BREAK),
        ("runbooks/fix.yaml", FIX),
        ("playbooks/chain.yaml", pb),
    ])
    .await;
    let c = server.client();
    c.post_alerts(alert("Chain", "web-1")).await.unwrap();
    let runs = finished_runs(&c, 1, 3).await;
    let names: Vec<(&str, RunStatus)> = runs.iter().map(|r| (r.runbook.as_str(), r.status)).collect();
    assert_eq!(
        names,
        [
            ("break", RunStatus::Failed),
            ("tell", RunStatus::Succeeded),
            ("fix", RunStatus::Skipped)
        ]
    );
    let timeline = c.incident("INC-1").await.unwrap().timeline;
    let skipped: Vec<&EventKind> = timeline
        .iter()
        .map(|e| &e.what)
        .filter(|w| matches!(w, EventKind::RunNotStarted { runbook, .. } if runbook == "fix"))
        .collect();
    assert_eq!(
        skipped.len(),
        1,
        "a skipped entry is a run that did not start: {timeline:#?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cooldown_is_decided_once_per_firing_never_between_its_runbooks() {
    let pb = "name: db\ntrigger: {alerts: ['alertname=\"Db\"']}\ngroup_by: [alertname]\nrunbooks:\n  - runbook: tell\n  - runbook: fix\nguards: {cooldown_secs: 3600}\n";
    let (server, _root) = server(&[
        ("runbooks/tell.yaml", TELL),
        ("runbooks/fix.yaml", FIX),
        ("playbooks/db.yaml", pb),
    ])
    .await;
    let c = server.client();
    c.post_alerts(alert("Db", "db-1")).await.unwrap();
    let first = finished_runs(&c, 1, 2).await;
    assert!(
        first.iter().all(|r| r.status == RunStatus::Succeeded),
        "both runbooks of the firing ran: {:?}",
        first
            .iter()
            .map(|r| (&r.runbook, r.status, &r.reason))
            .collect::<Vec<_>>()
    );
    // Resolve by hand so the next alert of the group opens a new incident
    // within the cooldown.
    c.resolve("INC-1").await.unwrap();
    c.post_alerts(alert("Db", "db-2")).await.unwrap();
    let second = finished_runs(&c, 2, 2).await;
    for r in &second {
        assert_eq!(r.status, RunStatus::Refused, "{}", r.runbook);
        assert!(
            r.reason.as_deref().unwrap_or_default().starts_with("cooldown:"),
            "{:?}",
            r.reason
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_run_without_an_alert_skips_a_step_on_a_label_instead_of_failing() {
    let (server, _root) = server(&[("runbooks/look.yaml", LOOK)]).await;
    let c = server.client();
    let run = support::run_to_end(&c, "look", &Default::default()).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    let steps: Vec<(&str, &str)> = run.steps.iter().map(|s| (s.id.as_str(), s.status.as_str())).collect();
    assert_eq!(steps, [("only_when_critical", "skipped"), ("always", "succeeded")]);
    assert_eq!(run.id, RunId::new(1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_makes_reads_for_real_and_only_reports_what_would_change() {
    let api = support::Listener::start().await;
    let probe = r#"name: probe
params:
  base: {type: string, required: true}
steps:
  - id: look
    action: http
    with: {url: "{{params.base}}/status"}
  - id: decide
    action: script
    with: {source: 'if steps.look.output.body != "ok" { throw "unexpected answer" }; #{healthy: true}'}
  - id: change
    action: http
    with: {method: POST, url: "{{params.base}}/restart"}
    when: 'steps.decide.output.healthy == true'
"#;
    let (server, _root) = server(&[("runbooks/probe.yaml", probe)]).await;
    let c = server.client();
    let request = laojun::client::RunRequest {
        dry_run: true,
        ..support::with_params(json!({"base": api.url}))
    };
    let run = support::run_to_end(&c, "probe", &request).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    let paths: Vec<String> = api.received.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(paths, ["/status"], "the GET was made, the POST was not");
    assert_eq!(run.steps[0].output["status"], 200);
    assert_eq!(
        run.steps[1].status.as_str(),
        "succeeded",
        "the script decided from the real answer"
    );
    assert_eq!(
        run.steps[2].summary.as_deref(),
        Some(format!("would send POST {}/restart", api.url).as_str())
    );
    server.stop().await;
}

async fn binary(data_dir: &std::path::Path, root: &std::path::Path) -> support::Binary {
    support::spawn_binary(|c| {
        c.arg("--root")
            .arg(root)
            .arg("--data-dir")
            .arg(data_dir)
            .env("LAOJUN_API_TOKEN", support::TOKEN);
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_holds_across_a_restart_of_the_binary_until_resumed() {
    let pb = "name: scale\ntrigger: {alerts: ['alertname=\"HighCPU\"']}\ngroup_by: [alertname, host]\nrunbooks:\n  - runbook: fix\n";
    let root = root_with(&[("runbooks/fix.yaml", FIX), ("playbooks/scale.yaml", pb)]);
    let data = tempfile::tempdir().unwrap();
    let first = binary(data.path(), root.path()).await;
    let c = first.client(support::TOKEN);
    let paused = c.pause(None, Some("change freeze")).await.unwrap();
    assert!(
        paused.paused && paused.reason.as_deref() == Some("change freeze"),
        "{paused:?}"
    );
    let c_pb = c.pause(Some("scale"), Some("db migration")).await.unwrap();
    assert_eq!(c_pb.paused_playbooks.len(), 1);
    first.kill();

    let second = binary(data.path(), root.path()).await;
    let c = second.client(support::TOKEN);
    let state = c.automation().await.unwrap();
    assert!(state.paused, "the pause survived the restart: {state:?}");
    assert_eq!(state.by.as_deref(), Some("api-token"));
    assert_eq!(state.paused_playbooks[0].playbook, "scale");
    c.post_alerts(alert("HighCPU", "web-1")).await.unwrap();
    let runs = finished_runs(&c, 1, 1).await;
    assert_eq!(runs[0].status, RunStatus::Paused, "nothing scaled while paused");
    assert_eq!(
        runs[0].reason.as_deref(),
        Some("automation is paused (by api-token: change freeze)")
    );

    // Resuming everything leaves the playbook's own pause in force.
    c.resume(None).await.unwrap();
    c.post_alerts(alert("HighCPU", "web-2")).await.unwrap();
    let runs = finished_runs(&c, 2, 1).await;
    assert_eq!(runs[0].status, RunStatus::Paused);
    assert_eq!(
        runs[0].reason.as_deref(),
        Some("playbook `scale` is paused (by api-token: db migration)")
    );
    let state = c.resume(Some("scale")).await.unwrap();
    assert!(!state.paused && state.paused_playbooks.is_empty(), "{state:?}");
    c.post_alerts(alert("HighCPU", "web-3")).await.unwrap();
    let runs = finished_runs(&c, 3, 1).await;
    assert_eq!(runs[0].status, RunStatus::Succeeded);
    let trail = c.audit(None).await.unwrap();
    let actions: Vec<(String, String)> = trail
        .iter()
        .rev()
        .map(|a| (a.action.clone(), a.target.clone()))
        .collect();
    assert_eq!(
        actions,
        [
            ("pause".to_string(), "automation".to_string()),
            ("pause".into(), "playbook scale".into()),
            ("resume".into(), "automation".into()),
            ("resume".into(), "playbook scale".into()),
        ]
    );
    let unknown = c.pause(Some("nope"), None).await.unwrap_err();
    assert!(
        matches!(unknown, laojun::client::ClientError::NotFound { .. }),
        "{unknown:?}"
    );
}

const GATED: &str = r#"
name: gated
params:
  who: {type: list, default: [oncall, "role:admin"]}
steps:
  - id: ask
    action: approval
    with: {who: "{{json params.who}}", message: "restart checkout?", ttl_secs: 600}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn only_listed_approvers_may_decide_never_the_requester_and_every_refusal_is_audited() {
    use laojun::client::ClientError;
    use laojun::config::Role;
    let root = root_with(&[("runbooks/gated.yaml", GATED)]);
    let path = root.path().to_path_buf();
    let server = Server::start_with(move |c| {
        c.root = path;
        c.auth.tokens = vec![
            token("alice", Role::Operator),
            token("bob", Role::Operator),
            token("oncall", Role::Operator),
            token("watcher", Role::Viewer),
        ];
    })
    .await;
    let alice = as_token(&server, "alice");
    let bob = as_token(&server, "bob");
    let id = alice.start_run("gated", &Default::default()).await.unwrap().id;
    support::wait_run(&alice, id, &[RunStatus::AwaitingApproval]).await;

    // In sight: the list, and the run itself, say what is asked of whom until when.
    let pending = alice.approvals().await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let p = &pending[0];
    assert_eq!((p.run, p.step.as_str(), p.runbook.as_str()), (id, "ask", "gated"));
    assert_eq!(p.message, "restart checkout?");
    assert_eq!(p.who, ["oncall", "role:admin"]);
    assert_eq!(p.requested_by, "alice");
    assert_eq!((p.expires_at - p.requested_at).num_seconds(), 600);
    let run = alice.run(id).await.unwrap();
    let ask = run.steps[0]
        .approval
        .as_ref()
        .expect("the waiting step shows its question");
    assert_eq!(ask.who, ["oncall", "role:admin"]);
    let waiting = alice
        .runs(&RunQuery {
            status: Some(RunStatus::AwaitingApproval),
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(waiting.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);

    let refused = |r: Result<laojun::client::Decision, ClientError>| match r {
        Err(ClientError::Forbidden { message }) => message,
        other => panic!("expected 403, got {other:?}"),
    };
    let why = refused(alice.approve(id).await);
    assert!(why.contains("`alice` (operator) may not decide"), "{why}");
    let why = refused(bob.approve(id).await);
    assert!(why.contains("oncall, role:admin (or an admin) may"), "{why}");
    let why = refused(as_token(&server, "watcher").deny(id).await);
    assert!(why.contains("needs an operator or admin token"), "{why}");
    assert_eq!(
        alice.run(id).await.unwrap().status,
        RunStatus::AwaitingApproval,
        "refusals change nothing"
    );
    let decision = as_token(&server, "oncall").approve(id).await.unwrap();
    assert_eq!(decision.by, "oncall");
    let run = support::wait_run(&alice, id, &[RunStatus::Succeeded, RunStatus::Failed]).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    assert!(alice.approvals().await.unwrap().is_empty());

    // A listed role decides; the requester still may not, even so listed.
    let by_role = support::with_params(json!({"who": ["role:operator"]}));
    let id2 = alice.start_run("gated", &by_role).await.unwrap().id;
    support::wait_run(&alice, id2, &[RunStatus::AwaitingApproval]).await;
    let why = refused(alice.approve(id2).await);
    assert!(why.contains("started this run"), "{why}");
    assert_eq!(bob.deny(id2).await.unwrap().decision, "denied");

    let trail = server.client().audit(None).await.unwrap();
    let refusals: Vec<(String, String)> = trail
        .iter()
        .rev()
        .filter(|a| a.detail.as_deref().is_some_and(|d| d.starts_with("refused:")))
        .map(|a| (a.by.clone(), a.action.clone()))
        .collect();
    assert_eq!(
        refusals,
        [
            ("alice".to_string(), "approve".to_string()),
            ("bob".into(), "approve".into()),
            ("watcher".into(), "deny".into()),
            ("alice".into(), "approve".into()),
        ]
    );
    server.stop().await;
}

/// The texts Slack got, in arrival order.
fn texts(slack: &support::Listener) -> Vec<String> {
    slack
        .bodies()
        .iter()
        .map(|b| b["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn laojun_posts_each_kind_of_notice_once_without_a_runbook_asking() {
    let slack = support::Listener::start().await;
    let pb = "name: down\ntrigger: {alerts: ['alertname=\"Down\"']}\nseverity: P0\ngroup_by: [alertname, host]\nrunbooks:\n  - runbook: break\n  - runbook: fix\n";
    let root = root_with(&[
        ("runbooks/break.yaml", BREAK),
        ("runbooks/fix.yaml", FIX),
        ("runbooks/gated.yaml", GATED),
        ("playbooks/down.yaml", pb),
    ]);
    let (path, webhook) = (root.path().to_path_buf(), format!("{}/slack", slack.url));
    let server = Server::start_with(move |c| {
        c.root = path;
        c.slack.webhook_url = Some(webhook);
    })
    .await;
    let c = server.client();
    c.post_alerts(alert("Down", "web-1")).await.unwrap();
    finished_runs(&c, 1, 2).await;
    let gated = c.start_run("gated", &Default::default()).await.unwrap().id;
    support::wait_run(&c, gated, &[RunStatus::AwaitingApproval]).await;
    c.resolve("INC-1").await.unwrap();

    let posted = support::eventually("five notices", async || {
        let t = texts(&slack);
        (t.len() >= 5).then_some(t)
    })
    .await;
    let one = |prefix: &str| {
        let found: Vec<&String> = posted.iter().filter(|t| t.starts_with(prefix)).collect();
        assert_eq!(found.len(), 1, "{prefix}: {posted:#?}");
        found[0].clone()
    };
    assert_eq!(
        one(":rotating_light:"),
        ":rotating_light: INC-1 (P0) opened: Down (host=web-1) (playbook `down`). Acknowledge with `laojun incidents ack INC-1`."
    );
    assert_eq!(
        one(":x:"),
        ":x: RUN-1 (`break`) for INC-1 failed at step `fail`: the script failed: the check failed"
    );
    assert!(
        one(":no_entry:")
            .starts_with(":no_entry: RUN-2 (`fix`) for INC-1 did not start: runbook `break` before it ended failed"),
        "{posted:#?}"
    );
    let asked = one(":raising_hand:");
    assert!(
        asked.contains("restart checkout?") && asked.contains("oncall, role:admin (or an admin)"),
        "{asked}"
    );
    assert!(asked.contains("`laojun approve RUN-3`"), "{asked}");
    let resolved = one(":white_check_mark:");
    assert!(resolved.starts_with(":white_check_mark: INC-1 (P"), "{resolved}");
    assert!(
        resolved.contains(") resolved: ") && resolved.contains(". Impact "),
        "{resolved}"
    );
    assert_eq!(posted.len(), 5, "nothing twice: {posted:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notice_a_kill_kept_from_going_out_is_posted_once_after_the_restart() {
    let slack = support::Listener::start().await;
    // Slack fails the first two posts: the notice is retrying when laojun dies.
    slack.answer_with(&[500, 500]);
    let pb = "name: down\ntrigger: {alerts: ['alertname=\"Down\"']}\nseverity: P0\ngroup_by: [alertname, host]\nrunbooks: []\n";
    let root = root_with(&[("playbooks/down.yaml", pb)]);
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "slack: {webhook_url: \"${env:SLACK_WEBHOOK_URL}\"}\n").unwrap();
    let webhook = format!("{}/slack", slack.url);
    let first = {
        let (data, root, cfg) = (
            data.path().to_path_buf(),
            root.path().to_path_buf(),
            config.path().to_path_buf(),
        );
        let webhook = webhook.clone();
        support::spawn_binary(move |c| {
            c.arg("--config")
                .arg(cfg)
                .arg("--root")
                .arg(root)
                .arg("--data-dir")
                .arg(data)
                .env("LAOJUN_API_TOKEN", support::TOKEN)
                .env("SLACK_WEBHOOK_URL", webhook);
        })
        .await
    };
    first
        .client(support::TOKEN)
        .post_alerts(alert("Down", "web-1"))
        .await
        .unwrap();
    support::eventually("two failed attempts", async || {
        (slack.bodies().len() >= 2).then_some(())
    })
    .await;
    first.kill();

    let second = {
        let (data, root, cfg) = (
            data.path().to_path_buf(),
            root.path().to_path_buf(),
            config.path().to_path_buf(),
        );
        support::spawn_binary(move |c| {
            c.arg("--config")
                .arg(cfg)
                .arg("--root")
                .arg(root)
                .arg("--data-dir")
                .arg(data)
                .env("LAOJUN_API_TOKEN", support::TOKEN)
                .env("SLACK_WEBHOOK_URL", webhook);
        })
        .await
    };
    second
        .wait_for_log("posting notices a previous process journaled but did not post")
        .await;
    let posted = support::eventually("the notice after the restart", async || {
        let t = texts(&slack);
        (t.len() >= 3).then_some(t)
    })
    .await;
    let opened =
        ":rotating_light: INC-1 (P0) opened: Down (host=web-1) (playbook `down`). Acknowledge with `laojun incidents ack INC-1`.";
    assert_eq!(
        posted,
        [opened, opened, opened],
        "two refused tries, then one that went out"
    );
    // A later alert's notice shows the restarted process is idle, not still
    // posting the first one again.
    second
        .client(support::TOKEN)
        .post_alerts(alert("Down", "web-2"))
        .await
        .unwrap();
    let posted = support::eventually("the next notice", async || {
        let t = texts(&slack);
        (t.len() >= 4).then_some(t)
    })
    .await;
    assert_eq!(posted.len(), 4, "{posted:#?}");
    assert!(posted[3].contains("INC-2"), "{posted:#?}");
}

const HOLD: &str = "name: hold\nsteps:\n  - id: wait\n    action: wait\n    with: {secs: 2}\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_playbook_cut_short_by_a_kill_goes_on_with_its_later_runbooks_after_the_restart() {
    let pb =
        "name: chain\ntrigger: {alerts: ['alertname=\"Chain\"']}\nrunbooks:\n  - runbook: hold\n  - runbook: fix\n";
    let root = root_with(&[
        ("runbooks/hold.yaml", HOLD),
        ("runbooks/fix.yaml", FIX),
        ("playbooks/chain.yaml", pb),
    ]);
    let data = tempfile::tempdir().unwrap();
    let first = binary(data.path(), root.path()).await;
    let c = first.client(support::TOKEN);
    c.post_alerts(alert("Chain", "web-1")).await.unwrap();
    support::wait_run(&c, RunId::new(1), &[RunStatus::Running]).await;
    first.kill();

    let second = binary(data.path(), root.path()).await;
    let c = second.client(support::TOKEN);
    let runs = finished_runs(&c, 1, 2).await;
    let ended: Vec<(&str, RunStatus)> = runs.iter().map(|r| (r.runbook.as_str(), r.status)).collect();
    assert_eq!(
        ended,
        [("hold", RunStatus::Succeeded), ("fix", RunStatus::Succeeded)],
        "the waiting step ran again (it is idempotent) and the next runbook followed it"
    );
    assert!(runs[1].created_at >= runs[0].finished_at.unwrap());
    let inc = c.incident("INC-1").await.unwrap().incident;
    assert_eq!(inc.status, Status::Mitigated, "fix mitigated it after the restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn once_its_incident_resolved_a_playbooks_later_runbooks_do_not_run() {
    let pb =
        "name: chain\ntrigger: {alerts: ['alertname=\"Chain\"']}\nrunbooks:\n  - runbook: hold\n  - runbook: fix\n";
    let (server, _root) = server(&[
        ("runbooks/hold.yaml", HOLD),
        ("runbooks/fix.yaml", FIX),
        ("playbooks/chain.yaml", pb),
    ])
    .await;
    let c = server.client();
    c.post_alerts(alert("Chain", "web-1")).await.unwrap();
    support::wait_run(&c, RunId::new(1), &[RunStatus::Running]).await;
    c.resolve("INC-1").await.unwrap();
    let runs = finished_runs(&c, 1, 2).await;
    assert_eq!(runs[1].runbook, "fix");
    assert_eq!(runs[1].status, RunStatus::Refused);
    assert_eq!(runs[1].reason.as_deref(), Some("INC-1 resolved before it ran"));
    let timeline = c.incident("INC-1").await.unwrap().timeline;
    let not_started = timeline
        .iter()
        .filter(|e| matches!(&e.what, EventKind::RunNotStarted { runbook, .. } if runbook == "fix"))
        .count();
    assert_eq!(not_started, 1, "the timeline says fix did not start");
    server.stop().await;
}
