//! The Kubernetes actions against the project's fake API server: the
//! ServiceDown playbook rolling a deployment back, the same end state as
//! kubectl's own commands, server-side dry runs, and retried conflicts.

use crate::support;

use std::time::Duration;

use crate::support::{root_with, run_to_end, wait_run, with_params, Alert, Listener, Server};
use ::fake_kube::FakeKube;
use laojun::client::RunRequest;
use laojun::incident::{EventKind, Status};
use laojun::run::{RunStatus, StepStatus};
use serde_json::{json, Value};

/// Seeds `prod/checkout` at revision 2 (image v2) over revision 1 (v1).
fn seed(kube: &FakeKube, namespace: &str) {
    kube.add_deployment(namespace, "checkout", "registry.example/checkout:v1", 3);
    kube.set_image(namespace, "checkout", "registry.example/checkout:v2");
    kube.add_service(namespace, "checkout", &[("app", "checkout"), ("version", "canary")]);
}

async fn fake_cluster() -> (FakeKube, tempfile::TempDir) {
    let kube = FakeKube::start().await.expect("the fake API server starts");
    kube.set_ready_delay(Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    kube.write_kubeconfig(&dir.path().join("kubeconfig"), &["ap-east-1", "ap-southeast-1"])
        .unwrap();
    (kube, dir)
}

async fn server(root: std::path::PathBuf, kubeconfig: std::path::PathBuf, slack: &Listener) -> Server {
    let webhook = format!("{}/slack", slack.url);
    Server::start_with(move |c| {
        c.root = root;
        c.kubernetes.kubeconfig = Some(kubeconfig);
        c.slack.webhook_url = Some(webhook);
    })
    .await
}

/// Removes nulls and empty objects, as the API server's defaulting would.
fn drop_empty(v: &mut Value) {
    if let Value::Object(m) = v {
        for child in m.values_mut() {
            drop_empty(child);
        }
        m.retain(|_, c| !(c.is_null() || c.as_object().is_some_and(|o| o.is_empty())));
    } else if let Value::Array(items) = v {
        items.iter_mut().for_each(drop_empty);
    }
}

fn image(deployment: &Value) -> String {
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn revision(deployment: &Value) -> String {
    deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_down_alert_rolls_the_deployment_back_notifies_slack_and_times_each_step() {
    let (kube, dir) = fake_cluster().await;
    seed(&kube, "prod");
    let slack = Listener::start().await;
    let server = server(support::repo().to_path_buf(), dir.path().join("kubeconfig"), &slack).await;
    let c = server.client();
    let alert = support::webhook_body([Alert::firing(
        json!({"alertname": "ServiceDown", "namespace": "prod", "job": "checkout", "instance": "10.0.0.7:8080", "severity": "critical"}),
    )
    .annotations(json!({"summary": "Service 10.0.0.7:8080 is down"}))
    .starts_at("2026-11-29T12:00:00Z")
    .ends_at("0001-01-01T00:00:00Z")
    .fingerprint("5e11d0c0ffee0001")]);
    c.post_alerts(alert).await.expect("the alert is stored");
    let ended = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Refused,
        RunStatus::Interrupted,
    ];
    // The playbook assesses first; a finding it cannot make (no api-gateway
    // here, no Prometheus configured) does not hold up the rollback.
    let assess = wait_run(&c, "RUN-1", &ended).await;
    assert_eq!(assess.runbook, "assess-impact");
    assert_eq!(assess.status, RunStatus::Succeeded, "{assess:#?}");
    assert_eq!(assess.steps[0].status, StepStatus::Succeeded, "{assess:#?}");
    assert_eq!(assess.steps[0].output["total"], 3, "the checkout pods were counted");
    let run = wait_run(&c, "RUN-2", &ended).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.runbook, "rollback-deployment");
    // Verification needs Prometheus: without `prometheus.url` it fails at once, saying so.
    let verify = wait_run(&c, "RUN-3", &ended).await;
    assert_eq!(verify.runbook, "verify-recovery");
    assert_eq!(verify.status, RunStatus::Failed, "{verify:#?}");
    assert_eq!(verify.steps[0].attempts, 1, "a missing setting is not retried");
    assert!(
        verify.steps[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no prometheus.url is configured"),
        "{verify:#?}"
    );

    let dep = kube.get("deployments", "prod", "checkout").unwrap();
    assert_eq!(
        image(&dep),
        "registry.example/checkout:v1",
        "rolled back to revision 1's image"
    );
    assert_eq!(
        revision(&dep),
        "3",
        "as after kubectl rollout undo, the old template is the newest revision"
    );
    let rollback = &run.steps[1];
    assert_eq!(rollback.output["from_revision"], 2);
    assert_eq!(rollback.output["to_revision"], 1);
    assert_eq!(
        rollback.output["revision"], 3,
        "the step reports the revision `kubectl rollout history` lists"
    );
    assert_eq!(
        run.steps[2].status,
        StepStatus::Succeeded,
        "verify waited for the rollout: {:?}",
        run.steps[2]
    );

    // laojun's own notice that a P0 opened goes out beside the runbook's
    // posts (from a task of its own, so in no fixed order with them).
    let bodies = support::eventually("the notice and the three posts", async || {
        let bodies = slack.bodies();
        (bodies.len() >= 4).then_some(bodies)
    })
    .await;
    let (opened, texts): (Vec<String>, Vec<String>) = bodies
        .iter()
        .map(|b| b["text"].as_str().unwrap().to_string())
        .partition(|t| t.starts_with(":rotating_light:"));
    assert_eq!(
        opened,
        [":rotating_light: INC-1 (P0) opened: Service 10.0.0.7:8080 is down (playbook `service-down`). Acknowledge with `laojun incidents ack INC-1`."]
    );
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(
        texts[0].contains("rolling back deployment/checkout in prod"),
        "{texts:?}"
    );
    assert!(
        texts[1].contains("back on revision 1's template (registry.example/checkout:v1), now revision 3"),
        "{texts:?}"
    );
    assert!(
        texts[2].starts_with(":x: RUN-3 (`verify-recovery`) for INC-1 failed at step `recovered`: no prometheus.url"),
        "{texts:?}"
    );
    let first_post = bodies
        .iter()
        .find(|b| b["text"].as_str().unwrap().contains("rolling back"))
        .unwrap();
    let context = &first_post["blocks"][1]["elements"][0]["text"];
    assert_eq!(context, "*INC-1* · P0 · Service 10.0.0.7:8080 is down");

    let inc = c.incident("INC-1").await.unwrap();
    let steps: Vec<(&str, Option<i64>)> = inc
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            EventKind::Step {
                run,
                step,
                status: StepStatus::Succeeded,
                duration_ms,
                ..
            } if run.to_string() == "RUN-2" => Some((step.as_str(), *duration_ms)),
            _ => None,
        })
        .collect();
    let ids: Vec<&str> = steps.iter().map(|(step, _)| *step).collect();
    assert_eq!(ids, ["announce", "rollback", "verify", "report"]);
    assert!(steps.iter().all(|(_, ms)| ms.is_some_and(|ms| ms >= 0)), "{steps:?}");
    assert_eq!(inc.incident.status, Status::Mitigated);
    server.stop().await;
}

fn kubectl(binary: &std::path::Path, kubeconfig: &std::path::Path, args: &[&str]) {
    support::kubectl(binary, kubeconfig, args);
}

const SCALE_TO: &str = r#"
name: scale-to
params:
  namespace: string
  replicas: int
steps:
  - id: scale
    action: k8s.scale
    with: {namespace: "{{params.namespace}}", deployment: checkout, replicas: "{{params.replicas}}"}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn rollback_scale_and_selector_switch_leave_the_same_state_as_kubectl() {
    let Some(binary) = support::require("kubectl") else {
        return;
    };
    let (kube, dir) = fake_cluster().await;
    let kubeconfig = dir.path().join("kubeconfig");
    seed(&kube, "by-kubectl");
    seed(&kube, "by-laojun");
    let slack = Listener::start().await;
    let mut files: Vec<(String, String)> = Vec::new();
    for name in ["rollback-deployment", "switch-traffic-to-stable"] {
        let path = format!("runbooks/{name}.yaml");
        files.push((
            path.clone(),
            std::fs::read_to_string(support::repo().join(&path)).unwrap(),
        ));
    }
    files.push(("runbooks/scale-to.yaml".into(), SCALE_TO.into()));
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let root = root_with(&refs);
    let server = server(root.path().to_path_buf(), kubeconfig.clone(), &slack).await;
    let c = server.client();

    kubectl(
        &binary,
        &kubeconfig,
        &["rollout", "undo", "deployment/checkout", "-n", "by-kubectl"],
    );
    kubectl(
        &binary,
        &kubeconfig,
        &["scale", "deployment/checkout", "--replicas=5", "-n", "by-kubectl"],
    );
    kubectl(
        &binary,
        &kubeconfig,
        &[
            "patch",
            "service",
            "checkout",
            "-n",
            "by-kubectl",
            "-p",
            r#"{"spec":{"selector":{"version":"stable"}}}"#,
        ],
    );

    for (runbook, params) in [
        (
            "rollback-deployment",
            json!({"namespace": "by-laojun", "deployment": "checkout"}),
        ),
        ("scale-to", json!({"namespace": "by-laojun", "replicas": "5"})),
        (
            "switch-traffic-to-stable",
            json!({"namespace": "by-laojun", "service": "checkout"}),
        ),
    ] {
        let run = run_to_end(&c, runbook, &with_params(params)).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{runbook}: {run:#?}");
    }

    let theirs = kube.get("deployments", "by-kubectl", "checkout").unwrap();
    let ours = kube.get("deployments", "by-laojun", "checkout").unwrap();
    let mut their_template = theirs["spec"]["template"].clone();
    let mut our_template = ours["spec"]["template"].clone();
    // kubectl writes `creationTimestamp: null` and `resources: {}`, which
    // Kubernetes treats as absent; compare without empty values.
    for t in [&mut their_template, &mut our_template] {
        drop_empty(t);
    }
    assert_eq!(our_template, their_template);
    assert_eq!(revision(&ours), revision(&theirs));
    assert_eq!(ours["spec"]["replicas"], theirs["spec"]["replicas"]);
    assert_eq!(ours["spec"]["replicas"], 5);
    let their_svc = kube.get("services", "by-kubectl", "checkout").unwrap();
    let our_svc = kube.get("services", "by-laojun", "checkout").unwrap();
    assert_eq!(our_svc["spec"]["selector"], their_svc["spec"]["selector"]);
    assert_eq!(
        our_svc["spec"]["selector"],
        json!({"app": "checkout", "version": "stable"})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_asks_the_api_server_for_a_dry_run_and_changes_nothing() {
    let (kube, dir) = fake_cluster().await;
    seed(&kube, "prod");
    let before = kube.get("deployments", "prod", "checkout").unwrap();
    let slack = Listener::start().await;
    let server = server(support::repo().to_path_buf(), dir.path().join("kubeconfig"), &slack).await;
    let c = server.client();
    kube.clear_requests();
    let body = RunRequest {
        dry_run: true,
        ..with_params(json!({"namespace": "prod", "deployment": "checkout"}))
    };
    let run = run_to_end(&c, "rollback-deployment", &body).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(
        run.steps[1].summary.as_deref().unwrap(),
        "would roll back deployment/checkout in prod from revision 2 (registry.example/checkout:v2) to revision 1's template (registry.example/checkout:v1), which would be revision 3"
    );
    let after = kube.get("deployments", "prod", "checkout").unwrap();
    assert_eq!(image(&after), image(&before));
    assert_eq!(after["spec"], before["spec"], "the dry run changed the spec");
    assert_eq!(after["metadata"]["generation"], before["metadata"]["generation"]);
    assert_eq!(revision(&after), "2");
    let patches: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|(m, _, _)| m == "PATCH")
        .map(|(_, p, _)| p)
        .collect();
    assert!(
        !patches.is_empty() && patches.iter().all(|p| p.contains("dryRun=All")),
        "{patches:?}"
    );
    assert!(slack.bodies().is_empty(), "a dry run posted to Slack");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_from_the_api_server_is_retried_and_a_missing_deployment_is_not() {
    let (kube, dir) = fake_cluster().await;
    seed(&kube, "prod");
    let slack = Listener::start().await;
    let server = server(support::repo().to_path_buf(), dir.path().join("kubeconfig"), &slack).await;
    let c = server.client();
    kube.fail_next(1, 409);
    let body = with_params(json!({"namespace": "prod", "deployment": "checkout"}));
    let run = run_to_end(&c, "restart-deployment", &body).await;
    // restart-deployment does not retry: the 409 fails it, as its YAML says.
    assert_eq!(run.status, RunStatus::Failed, "{run:#?}");
    assert!(run.steps[0].error.as_deref().unwrap().contains("(409)"), "{run:#?}");

    kube.fail_next(1, 409);
    let run = run_to_end(&c, "rollback-deployment", &body).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(
        run.steps[1].attempts, 2,
        "rollback has retries: 3, so the conflict was retried: {run:#?}"
    );

    let body = with_params(json!({"namespace": "prod", "deployment": "nope"}));
    let run = run_to_end(&c, "rollback-deployment", &body).await;
    assert_eq!(run.steps[1].attempts, 1, "a 404 is not retried");
    assert!(
        run.steps[1]
            .error
            .as_deref()
            .unwrap()
            .contains("deployment/nope in prod"),
        "{run:#?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_unavailable_api_servers_are_retried_and_the_incident_goes_on() {
    let (kube, dir) = fake_cluster().await;
    seed(&kube, "prod");
    let slack = Listener::start().await;
    // Slack throttles the first post too.
    slack.answer_with(&[429]);
    let server = server(support::repo().to_path_buf(), dir.path().join("kubeconfig"), &slack).await;
    let c = server.client();
    kube.clear_requests();
    kube.fail_next(1, 429);
    let body = with_params(json!({"namespace": "prod", "deployment": "checkout"}));
    let run = run_to_end(&c, "rollback-deployment", &body).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    // Slack's 429 is waited out (its Retry-After, 1 s without one) within
    // the step's attempt: the listener answered 429, then 200 to the same post.
    assert_eq!(run.steps[0].attempts, 1, "{run:#?}");
    let posts = slack.bodies();
    assert!(posts.len() >= 2, "{posts:?}");
    assert!(
        posts[0]["text"]
            .as_str()
            .unwrap()
            .contains("rolling back deployment/checkout"),
        "{posts:?}"
    );
    assert_eq!(posts[1], posts[0], "the second request is the retried post");
    assert_eq!(run.steps[0].status, StepStatus::Succeeded, "after the 429: {run:#?}");
    // kube-rs retries 429/503 itself before our step retries do; whoever
    // retried, the request that got the 429 was made again and the rollback
    // went through.
    let calls: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|(_, path, _)| path.contains("/namespaces/prod/"))
        .map(|(method, path, _)| format!("{method} {path}"))
        .collect();
    assert!(
        calls.len() >= 2 && calls[1..].contains(&calls[0]),
        "the request answered 429 was made again: {calls:?}"
    );
    assert_eq!(run.steps[1].status, StepStatus::Succeeded, "{run:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_server_that_keeps_failing_fails_the_step_within_its_timeout() {
    let (kube, dir) = fake_cluster().await;
    seed(&kube, "prod");
    let slack = Listener::start().await;
    let runbook = "name: quick\nsteps:\n  - id: rollback\n    action: k8s.rollback\n    with: {namespace: prod, deployment: checkout}\n    timeout_secs: 2\n    retries: {attempts: 2, backoff_secs: 0.1}\n";
    let root = root_with(&[("runbooks/quick.yaml", runbook)]);
    let server = server(root.path().to_path_buf(), dir.path().join("kubeconfig"), &slack).await;
    let c = server.client();
    kube.fail_next(100_000, 503);
    let run = run_to_end(&c, "quick", &RunRequest::default()).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:#?}");
    assert_eq!(run.steps[0].attempts, 2);
    let error = run.steps[0].error.as_deref().unwrap();
    assert!(
        error.contains("(503)") || error.contains("timed out after 2s"),
        "{error}"
    );
    let dep = kube.get("deployments", "prod", "checkout").unwrap();
    assert_eq!(revision(&dep), "2", "nothing changed");
    server.stop().await;
}

const STANDBY: &str = r#"
name: standby
params:
  replicas: {type: int, required: true}
steps:
  - id: scale
    action: k8s.scale
    with: {namespace: prod, deployment: checkout, replicas: "{{params.replicas}}", scale_down: false}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_with_scale_down_false_raises_a_standby_but_never_lowers_it() {
    let (kube, dir) = fake_cluster().await;
    kube.add_deployment("prod", "checkout", "registry.example/checkout:v1", 9);
    let slack = Listener::start().await;
    let root = root_with(&[("runbooks/standby.yaml", STANDBY)]);
    let server = server(root.path().to_path_buf(), dir.path().join("kubeconfig"), &slack).await;
    let c = server.client();
    let replicas = |kube: &FakeKube| kube.get("deployments", "prod", "checkout").unwrap()["spec"]["replicas"].clone();

    let run = run_to_end(&c, "standby", &with_params(json!({"replicas": 4}))).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(replicas(&kube), 9, "a standby that runs 9 keeps them");
    assert!(
        run.steps[0]
            .summary
            .as_deref()
            .unwrap()
            .contains("keeps its 9 replicas"),
        "{:?}",
        run.steps[0].summary
    );
    let run = run_to_end(&c, "standby", &with_params(json!({"replicas": 12}))).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(replicas(&kube), 12, "raising still works");
    server.stop().await;
}

const SET_IMAGE: &str = r#"
name: set-image
params:
  namespace: string
  image: string
steps:
  - id: set
    action: k8s.set_image
    with: {namespace: "{{params.namespace}}", deployment: checkout, image: "{{params.image}}"}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn set_image_leaves_the_deployment_as_kubectl_set_image_does_and_reports_the_previous_image() {
    let Some(binary) = support::require("kubectl") else {
        return;
    };
    let (kube, dir) = fake_cluster().await;
    let kubeconfig = dir.path().join("kubeconfig");
    seed(&kube, "by-kubectl");
    seed(&kube, "by-laojun");
    let slack = Listener::start().await;
    let root = root_with(&[("runbooks/set-image.yaml", SET_IMAGE)]);
    let server = server(root.path().to_path_buf(), kubeconfig.clone(), &slack).await;
    let c = server.client();
    let to = "registry.example/checkout:v3";
    let container = kube.get("deployments", "by-kubectl", "checkout").unwrap()["spec"]["template"]["spec"]
        ["containers"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    kubectl(
        &binary,
        &kubeconfig,
        &[
            "set",
            "image",
            "deployment/checkout",
            &format!("{container}={to}"),
            "-n",
            "by-kubectl",
        ],
    );
    // A dry run says what it would do and changes nothing.
    let dry = run_to_end(
        &c,
        "set-image",
        &RunRequest {
            dry_run: true,
            ..with_params(json!({"namespace": "by-laojun", "image": to}))
        },
    )
    .await;
    assert_eq!(dry.status, RunStatus::Succeeded, "{dry:#?}");
    assert!(
        dry.steps[0].summary.as_deref().unwrap().starts_with("would set"),
        "{dry:#?}"
    );
    assert_eq!(
        image(&kube.get("deployments", "by-laojun", "checkout").unwrap()),
        "registry.example/checkout:v2"
    );

    let run = run_to_end(
        &c,
        "set-image",
        &with_params(json!({"namespace": "by-laojun", "image": to})),
    )
    .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.steps[0].output["previous"], "registry.example/checkout:v2");
    assert_eq!(run.steps[0].output["changed"], true);
    let template = |ns: &str| {
        let mut t = kube.get("deployments", ns, "checkout").unwrap()["spec"]["template"].clone();
        drop_empty(&mut t);
        t
    };
    assert_eq!(
        template("by-laojun"),
        template("by-kubectl"),
        "the same pod template as kubectl's"
    );
    assert_eq!(image(&kube.get("deployments", "by-laojun", "checkout").unwrap()), to);
    // Again: nothing to change.
    let again = run_to_end(
        &c,
        "set-image",
        &with_params(json!({"namespace": "by-laojun", "image": to})),
    )
    .await;
    assert_eq!(again.steps[0].output["changed"], false);
    assert!(
        again.steps[0].summary.as_deref().unwrap().contains("already runs"),
        "{again:#?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_cluster_acts_on_the_default_context_and_an_unknown_one_fails_naming_the_contexts() {
    let (kube, dir) = fake_cluster().await;
    seed(&kube, "prod");
    let root = root_with(&[(
        "runbooks/scale-in.yaml",
        "name: scale-in\nparams:\n  cluster: {type: string, default: \"\"}\nsteps:\n  - id: scale\n    action: k8s.scale\n    with: {cluster: \"{{params.cluster}}\", namespace: prod, deployment: checkout, replicas: 5}\n",
    )]);
    let slack = Listener::start().await;
    let server = server(root.path().to_path_buf(), dir.path().join("kubeconfig"), &slack).await;
    let c = server.client();

    // An alert without a `region` label fills `cluster` with nothing.
    let run = run_to_end(&c, "scale-in", &with_params(json!({"cluster": ""}))).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(
        kube.get("deployment", "prod", "checkout").unwrap()["spec"]["replicas"],
        5
    );

    kube.clear_requests();
    let run = run_to_end(&c, "scale-in", &with_params(json!({"cluster": "eu-west-9"}))).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:#?}");
    let error = run.steps[0].error.clone().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    assert_eq!(
        error,
        format!(
            "cluster `eu-west-9` is not a context in {}; its contexts are: ap-east-1, ap-southeast-1",
            kubeconfig.display()
        )
    );
    assert_eq!(run.steps[0].attempts, 1, "a context that is not there is not retried");
    let sent: Vec<_> = kube
        .requests()
        .into_iter()
        .filter(|(_, p, _)| p.contains("/namespaces/"))
        .collect();
    assert!(sent.is_empty(), "nothing was sent: {sent:?}");
    server.stop().await;
}
