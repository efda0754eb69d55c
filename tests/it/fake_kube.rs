//! The fake Kubernetes API server, checked two ways: the real kubectl
//! (a subprocess with a kubeconfig pointing at the fake) runs the commands
//! laojun's runbooks rely on, and plain HTTP requests pin down the API
//! semantics clients depend on (conflicts, dry runs, patches, faults).

use std::path::PathBuf;
use std::time::Duration;

use ::fake_kube::{FakeKube, PodState, REVISION_ANNOTATION};

use crate::support::{self, eventually};
use serde_json::{json, Value};

/// kubectl pointed at one fake, with its own kubeconfig and discovery cache.
struct Kubectl {
    binary: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(kube: &FakeKube) -> Option<Kubectl> {
        let binary = support::require("kubectl")?;
        let dir = tempfile::tempdir().unwrap();
        kube.write_kubeconfig(&dir.path().join("config"), &["ap-east-1", "ap-southeast-1"])
            .unwrap();
        Some(Kubectl { binary, dir })
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Runs kubectl with `args`; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::process::Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .await
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Runs kubectl and insists that it succeeds; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed\nstdout: {stdout}\nstderr: {stderr}");
        stdout
    }
}

async fn fake() -> FakeKube {
    let kube = FakeKube::start().await.unwrap();
    kube.set_ready_delay(Duration::ZERO);
    kube
}

fn image(kube: &FakeKube, ns: &str, name: &str) -> String {
    let d = kube.get("deployments", ns, name).expect("deployment exists");
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

fn revision(object: &Value) -> String {
    object["metadata"]["annotations"][REVISION_ANNOTATION]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn requests_matching(kube: &FakeKube, method: &str, path_part: &str) -> Vec<(String, String, Option<String>)> {
    kube.requests()
        .into_iter()
        .filter(|(m, p, _)| m == method && p.contains(path_part))
        .collect()
}

// ---- kubectl ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_deployments_shows_the_seeded_deployments_ready() {
    let kube = fake().await;
    kube.add_deployment("prod", "core-services", "core:1.41", 3);
    kube.add_deployment("prod", "compliance-service", "compliance:0.9", 2);
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };
    let out = kubectl.ok(&["get", "deploy", "-n", "prod"]).await;
    assert!(out.contains("NAME"), "{out}");
    let line = out.lines().find(|l| l.starts_with("core-services")).expect(&out);
    assert!(line.contains("3/3"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("compliance-service") && l.contains("2/2")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_replicasets_by_short_name_and_json_output_work() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };
    let out = kubectl
        .ok(&["get", "rs", "-n", "prod", "-l", "app=web", "-o", "json"])
        .await;
    let list: Value = serde_json::from_str(&out).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0]["metadata"]["name"].as_str().unwrap().starts_with("web-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_pods_shows_each_deployments_pods_and_the_unhealthy_ones_reasons() {
    let kube = fake().await;
    kube.add_deployment("prod", "api-gateway", "gw:2.3", 3);
    kube.add_pod("prod", "report-28861", &[("job", "report")], PodState::Succeeded);
    let pods = kube.pods_of("prod", "api-gateway");
    assert_eq!(pods.len(), 3, "{pods:?}");
    kube.set_pod_state(
        "prod",
        &pods[1],
        PodState::Waiting {
            reason: "CrashLoopBackOff",
            restarts: 4,
        },
    );
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };
    let out = kubectl.ok(&["get", "pods", "-n", "prod"]).await;
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .to_string()
    };
    assert!(
        row(&pods[0]).contains("1/1") && row(&pods[0]).contains("Running"),
        "{out}"
    );
    let crashing = row(&pods[1]);
    assert!(
        crashing.contains("0/1") && crashing.contains("CrashLoopBackOff") && crashing.contains(" 4 "),
        "{out}"
    );
    assert!(row("report-28861").contains("Completed"), "{out}");
    // The guide's `kubectl get pods | grep -v Running`, as a field selector.
    let not_running = kubectl
        .ok(&[
            "get",
            "pods",
            "-n",
            "prod",
            "--field-selector=status.phase!=Running",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(not_running.trim(), "pod/report-28861");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_replaces_the_pods_when_it_settles() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    let before = kube.pods_of("prod", "web");
    kube.set_image("prod", "web", "web:2");
    let after = kube.pods_of("prod", "web");
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.iter().all(|p| !before.contains(p)), "{before:?} -> {after:?}");
    let pod = kube.get("pods", "prod", &after[0]).unwrap();
    assert_eq!(pod["spec"]["containers"][0]["image"], "web:2");
    assert_eq!(pod["status"]["phase"], "Running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_by_label_tails_and_filters_by_age() {
    let kube = fake().await;
    kube.add_deployment("prod", "api-gateway", "gw:2.3", 2);
    let pods = kube.pods_of("prod", "api-gateway");
    let old = chrono::Utc::now() - chrono::Duration::minutes(30);
    kube.append_logs_at("prod", &pods[0], None, &["GET /old 500"], old);
    kube.append_logs("prod", &pods[0], None, &["GET /a 200", "GET /b 503", "GET /c 200"]);
    kube.append_logs("prod", &pods[1], None, &["GET /d 502"]);
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };
    let out = kubectl
        .ok(&["logs", "-n", "prod", "-l", "app=api-gateway", "--since=10m", "--prefix"])
        .await;
    assert!(
        !out.contains("/old"),
        "--since drops the line from 30 minutes ago: {out}"
    );
    assert!(
        out.contains(&format!("pod/{}/api-gateway] GET /b 503", pods[0])),
        "{out}"
    );
    assert!(out.contains("GET /d 502"), "{out}");
    let tail = kubectl.ok(&["logs", "-n", "prod", &pods[0], "--tail=2"]).await;
    assert_eq!(tail, "GET /b 503\nGET /c 200\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_deletes_finished_pods_and_old_replicasets_with_their_pods() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 1);
    kube.add_pod("prod", "backup-1", &[], PodState::Succeeded);
    kube.add_pod("prod", "backup-2", &[], PodState::Failed { reason: "Error" });
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };
    kubectl
        .ok(&[
            "delete",
            "pods",
            "-n",
            "prod",
            "--field-selector=status.phase=Succeeded",
        ])
        .await;
    assert!(kube.get("pods", "prod", "backup-1").is_none());
    assert!(
        kube.get("pods", "prod", "backup-2").is_some(),
        "a failed pod is kept for its logs"
    );
    let first_rs = kube.list("replicasets", "prod")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    kube.set_image("prod", "web", "web:2");
    kubectl.ok(&["delete", "rs", "-n", "prod", &first_rs]).await;
    assert!(kube.get("replicasets", "prod", &first_rs).is_none());
    assert_eq!(kube.list("replicasets", "prod").len(), 1);
    assert_eq!(
        kube.pods_of("prod", "web").len(),
        1,
        "the current ReplicaSet's pod stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_undo_restores_the_previous_template() {
    let kube = fake().await;
    kube.add_deployment("prod", "core-services", "core:1.41", 3);
    kube.set_image("prod", "core-services", "core:1.42-canary");
    assert_eq!(revision(&kube.get("deploy", "prod", "core-services").unwrap()), "2");
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };

    let out = kubectl
        .ok(&["rollout", "undo", "deployment/core-services", "-n", "prod"])
        .await;

    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(image(&kube, "prod", "core-services"), "core:1.41");
    let deployment = kube.get("deployments", "prod", "core-services").unwrap();
    assert_eq!(revision(&deployment), "3");
    // The revision-1 ReplicaSet was reused and now holds every replica.
    let sets = kube.list("replicasets", "prod");
    assert_eq!(sets.len(), 2, "no new ReplicaSet for a template seen before");
    let active: Vec<&Value> = sets.iter().filter(|rs| rs["spec"]["replicas"] == 3).collect();
    assert_eq!(active.len(), 1);
    assert_eq!(revision(active[0]), "3");
    assert_eq!(
        active[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "1"
    );
    assert_eq!(
        active[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "core:1.41"
    );
    // kubectl 1.32 rolls back with a JSON patch of spec.template and the annotations.
    let patches = requests_matching(&kube, "PATCH", "/deployments/core-services");
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0].2.as_deref(), Some("application/json-patch+json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_undo_to_revision_one_skips_the_revisions_in_between() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    kube.set_image("prod", "web", "web:2");
    kube.set_image("prod", "web", "web:3");
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };

    kubectl
        .ok(&["rollout", "undo", "deployment/web", "-n", "prod", "--to-revision=1"])
        .await;

    assert_eq!(image(&kube, "prod", "web"), "web:1");
    assert_eq!(revision(&kube.get("deployments", "prod", "web").unwrap()), "4");
    let history = kubectl
        .ok(&["rollout", "history", "deployment/web", "-n", "prod"])
        .await;
    for rev in ["2", "3", "4"] {
        assert!(
            history.lines().any(|l| l.trim_start().starts_with(rev)),
            "revision {rev} in:\n{history}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_undo_to_the_current_template_is_skipped() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    kube.set_image("prod", "web", "web:2");
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };
    let out = kubectl
        .ok(&["rollout", "undo", "deployment/web", "-n", "prod", "--to-revision=2"])
        .await;
    assert!(out.contains("skipped rollback"), "{out}");
    assert_eq!(revision(&kube.get("deployments", "prod", "web").unwrap()), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_sets_replicas_through_the_scale_subresource() {
    let kube = fake().await;
    kube.add_deployment("prod", "core-services", "core:1.41", 3);
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };

    let out = kubectl
        .ok(&["scale", "deployment/core-services", "--replicas=5", "-n", "prod"])
        .await;

    assert!(out.contains("scaled"), "{out}");
    let deployment = kube.get("deployments", "prod", "core-services").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 5);
    assert_eq!(deployment["metadata"]["generation"], 2);
    assert_eq!(deployment["status"]["readyReplicas"], 5);
    assert_eq!(revision(&deployment), "1", "scaling is not a new revision");
    let scale_patches = requests_matching(&kube, "PATCH", "/deployments/core-services/scale");
    assert_eq!(scale_patches.len(), 1, "{:?}", kube.requests());
    assert_eq!(scale_patches[0].2.as_deref(), Some("application/merge-patch+json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_patch_service_merges_the_selector() {
    let kube = fake().await;
    kube.add_service(
        "prod",
        "core-services",
        &[("app", "core-services"), ("version", "canary")],
    );
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };

    kubectl
        .ok(&[
            "patch",
            "service",
            "core-services",
            "-n",
            "prod",
            "-p",
            r#"{"spec":{"selector":{"version":"stable"}}}"#,
        ])
        .await;

    let service = kube.get("services", "prod", "core-services").unwrap();
    assert_eq!(
        service["spec"]["selector"],
        json!({"app": "core-services", "version": "stable"})
    );
    let patches = requests_matching(&kube, "PATCH", "/services/core-services");
    assert_eq!(patches[0].2.as_deref(), Some("application/strategic-merge-patch+json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_restart_stamps_the_template_and_makes_a_new_revision() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };

    kubectl
        .ok(&["rollout", "restart", "deployment/web", "-n", "prod"])
        .await;

    let deployment = kube.get("deployments", "prod", "web").unwrap();
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert!(
        annotations["kubectl.kubernetes.io/restartedAt"].is_string(),
        "{deployment:#}"
    );
    assert_eq!(revision(&deployment), "2");
    assert_eq!(image(&kube, "prod", "web"), "web:1");
    assert_eq!(kube.list("replicasets", "prod").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_pause_holds_a_new_image_until_resume() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };
    kubectl.ok(&["rollout", "pause", "deployment/web", "-n", "prod"]).await;
    kubectl
        .ok(&["set", "image", "deployment/web", "web=web:2", "-n", "prod"])
        .await;
    assert_eq!(image(&kube, "prod", "web"), "web:2");
    assert_eq!(kube.list("replicasets", "prod").len(), 1, "paused: no rollout");
    let (ok, _, stderr) = kubectl
        .run(&["rollout", "undo", "deployment/web", "-n", "prod", "--to-revision=1"])
        .await;
    assert!(!ok && stderr.contains("paused"), "{stderr}");

    kubectl.ok(&["rollout", "resume", "deployment/web", "-n", "prod"]).await;

    assert_eq!(kube.list("replicasets", "prod").len(), 2);
    assert_eq!(revision(&kube.get("deployments", "prod", "web").unwrap()), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_waits_for_the_ready_delay_then_succeeds() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 3);
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };
    // The rollout stays unready until the test ends it with
    // finish_rollout, not until a timer races kubectl's start-up.
    kube.set_ready_delay(Duration::from_secs(3600));
    kube.set_image("prod", "web", "web:2");
    let midway = kube.get("deployments", "prod", "web").unwrap();
    assert_eq!(midway["status"]["updatedReplicas"], 0, "{midway:#}");
    assert_eq!(midway["status"]["observedGeneration"], 2);

    kube.clear_requests();
    let status = tokio::spawn(async move {
        kubectl
            .ok(&["rollout", "status", "deployment/web", "-n", "prod", "--timeout=60s"])
            .await
    });
    // A watch comes after kubectl has read the deployment and found it unready.
    eventually("kubectl rollout status to watch the unready deployment", async || {
        (!requests_matching(&kube, "GET", "watch=").is_empty()).then_some(())
    })
    .await;
    assert!(
        !status.is_finished(),
        "rollout status returned before the deployment was ready"
    );
    kube.finish_rollout("prod", "web");
    let out = status.await.unwrap();

    assert!(out.contains("successfully rolled out"), "{out}");
    let done = kube.get("deployments", "prod", "web").unwrap();
    assert_eq!(done["status"]["updatedReplicas"], 3);
    assert_eq!(done["status"]["availableReplicas"], 3);
    let progressing = done["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap();
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_uses_every_context_in_the_written_kubeconfig() {
    let kube = fake().await;
    kube.add_deployment("default", "web", "web:1", 1);
    let Some(kubectl) = Kubectl::new(&kube) else {
        return;
    };
    let contexts = kubectl.ok(&["config", "get-contexts", "-o", "name"]).await;
    assert_eq!(
        contexts.split_whitespace().collect::<Vec<_>>(),
        ["ap-east-1", "ap-southeast-1"]
    );
    let current = kubectl.ok(&["config", "current-context"]).await;
    assert_eq!(current.trim(), "ap-east-1");
    let out = kubectl
        .ok(&["--context", "ap-southeast-1", "get", "deployment", "web", "-o", "name"])
        .await;
    assert_eq!(out.trim(), "deployment.apps/web");
}

// ---- HTTP ----

fn deployment_url(kube: &FakeKube, ns: &str, name: &str) -> String {
    format!("{}/apis/apps/v1/namespaces/{ns}/deployments/{name}", kube.url())
}

async fn send_patch(url: &str, content_type: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .patch(url)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_put_with_a_stale_resource_version_gets_409_conflict() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    let url = deployment_url(&kube, "prod", "web");
    let stale = kube.get("deployments", "prod", "web").unwrap();
    kube.set_image("prod", "web", "web:2");

    let mut body = stale.clone();
    body["spec"]["replicas"] = json!(7);
    let response = reqwest::Client::new().put(&url).json(&body).send().await.unwrap();

    assert_eq!(response.status(), 409);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(status["code"], 409);
    assert_eq!(kube.get("deployments", "prod", "web").unwrap()["spec"]["replicas"], 2);

    // With the current resourceVersion the same update goes through.
    let mut fresh = kube.get("deployments", "prod", "web").unwrap();
    fresh["spec"]["replicas"] = json!(7);
    let response = reqwest::Client::new().put(&url).json(&fresh).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(kube.get("deployments", "prod", "web").unwrap()["spec"]["replicas"], 7);
}

#[tokio::test]
async fn a_patch_carrying_a_stale_resource_version_gets_409_conflict() {
    let kube = fake().await;
    kube.add_service("prod", "web", &[("app", "web")]);
    let url = format!("{}/api/v1/namespaces/prod/services/web", kube.url());
    let body = json!({"metadata": {"resourceVersion": "1"}, "spec": {"selector": {"version": "stable"}}});
    let response = send_patch(&url, "application/merge-patch+json", body).await;
    assert_eq!(response.status(), 409);
}

#[tokio::test]
async fn dry_run_all_returns_the_result_but_stores_nothing() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    let before = kube.get("deployments", "prod", "web").unwrap();
    let url = format!("{}?dryRun=All", deployment_url(&kube, "prod", "web"));

    let response = send_patch(&url, "application/merge-patch+json", json!({"spec": {"replicas": 9}})).await;

    assert_eq!(response.status(), 200);
    let preview: Value = response.json().await.unwrap();
    assert_eq!(preview["spec"]["replicas"], 9);
    assert_eq!(kube.get("deployments", "prod", "web").unwrap(), before);
    assert_eq!(kube.list("replicasets", "prod").len(), 1);

    let create = reqwest::Client::new()
        .post(format!("{}/api/v1/namespaces/prod/services?dryRun=All", kube.url()))
        .json(&json!({"metadata": {"name": "new"}, "spec": {"selector": {"app": "web"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 201);
    assert!(kube.get("services", "prod", "new").is_none());
    assert!(kube
        .requests()
        .iter()
        .any(|(m, p, _)| m == "PATCH" && p.ends_with("?dryRun=All")));
}

#[tokio::test]
async fn json_patch_paths_unescape_tilde_one() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    let url = deployment_url(&kube, "prod", "web");
    let patch = json!([
        {"op": "test", "path": "/metadata/annotations/deployment.kubernetes.io~1revision", "value": "1"},
        {"op": "add", "path": "/metadata/annotations/laojun.io~1paused-by", "value": "runbook"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "web:2"},
    ]);

    let response = send_patch(&url, "application/json-patch+json", patch).await;

    assert_eq!(response.status(), 200);
    let deployment = kube.get("deployments", "prod", "web").unwrap();
    assert_eq!(deployment["metadata"]["annotations"]["laojun.io/paused-by"], "runbook");
    assert_eq!(image(&kube, "prod", "web"), "web:2");
    assert_eq!(revision(&deployment), "2");

    let failing =
        json!([{"op": "test", "path": "/metadata/annotations/deployment.kubernetes.io~1revision", "value": "1"}]);
    let response = send_patch(&url, "application/json-patch+json", failing).await;
    assert_eq!(response.status(), 422);
}

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "web:2"},
        {"name": "sidecar", "image": "envoy:1"},
    ]}}}});
    let response = send_patch(
        &deployment_url(&kube, "prod", "web"),
        "application/strategic-merge-patch+json",
        patch,
    )
    .await;
    assert_eq!(response.status(), 200);
    let deployment = kube.get("deployments", "prod", "web").unwrap();
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0]["image"], "web:2");
    assert_eq!(containers[0]["ports"][0]["containerPort"], 8080, "merged, not replaced");
}

#[tokio::test]
async fn a_merge_patch_with_null_deletes_a_selector_key() {
    let kube = fake().await;
    kube.add_service("prod", "web", &[("app", "web"), ("version", "canary")]);
    let url = format!("{}/api/v1/namespaces/prod/services/web", kube.url());
    let response = send_patch(
        &url,
        "application/merge-patch+json",
        json!({"spec": {"selector": {"version": null}}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        kube.get("services", "prod", "web").unwrap()["spec"]["selector"],
        json!({"app": "web"})
    );
}

#[tokio::test]
async fn bad_patch_bodies_are_refused_with_a_status() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    let url = deployment_url(&kube, "prod", "web");
    let client = reqwest::Client::new();
    let not_json = client
        .patch(&url)
        .header("content-type", "application/merge-patch+json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let not_a_list = send_patch(&url, "application/json-patch+json", json!({"op": "add"})).await;
    assert_eq!(not_a_list.status(), 422);
    let negative = send_patch(&url, "application/merge-patch+json", json!({"spec": {"replicas": -1}})).await;
    assert_eq!(negative.status(), 422);
    let unknown_type = send_patch(&url, "text/plain", json!({})).await;
    assert_eq!(unknown_type.status(), 415);
}

#[tokio::test]
async fn unknown_objects_get_a_404_status() {
    let kube = fake().await;
    let response = reqwest::get(deployment_url(&kube, "prod", "nothing")).await.unwrap();
    assert_eq!(response.status(), 404);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["status"], "Failure");
    let response = send_patch(
        &deployment_url(&kube, "prod", "nothing"),
        "application/merge-patch+json",
        json!({}),
    )
    .await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn fail_next_fails_exactly_that_many_requests_but_not_discovery() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    kube.fail_next(2, 503);
    let url = deployment_url(&kube, "prod", "web");

    assert_eq!(
        reqwest::get(format!("{}/apis/apps/v1", kube.url()))
            .await
            .unwrap()
            .status(),
        200
    );
    let first = reqwest::get(&url).await.unwrap();
    assert_eq!(first.status(), 503);
    assert_eq!(first.headers()["retry-after"], "1");
    let status: Value = first.json().await.unwrap();
    assert_eq!(status["reason"], "ServiceUnavailable");
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 503);
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    assert_eq!(kube.requests().len(), 4);
}

#[tokio::test]
async fn replica_sets_are_listed_by_label_selector() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    kube.add_deployment("prod", "api", "api:1", 2);
    kube.add_deployment("prod", "db", "db:1", 1);
    let list = |selector: &'static str| {
        let url = format!("{}/apis/apps/v1/namespaces/prod/replicasets", kube.url());
        async move {
            let list: Value = reqwest::Client::new()
                .get(url)
                .query(&[("labelSelector", selector)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut names: Vec<String> = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|rs| rs["metadata"]["labels"]["app"].as_str().unwrap().to_string())
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(list("app=web").await, ["web"]);
    assert_eq!(list("app in (web, api)").await, ["api", "web"]);
    assert_eq!(list("app!=web").await, ["api", "db"]);
}

#[tokio::test]
async fn a_watch_reports_changes_after_its_resource_version() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    let rv = kube.get("deployments", "prod", "web").unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!(
        "{}/apis/apps/v1/namespaces/prod/deployments?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dweb",
        kube.url()
    );
    let watch = tokio::spawn(async move { reqwest::get(url).await.unwrap().text().await.unwrap() });
    // Change it once the watch has reached the fake, so the change wakes a
    // waiting watch. (Had the change come first, the watch would replay it
    // from the resourceVersion: the same answer either way.)
    eventually("the watch to reach the fake", async || {
        (!requests_matching(&kube, "GET", "watch=true").is_empty()).then_some(())
    })
    .await;
    kube.set_image("prod", "web", "web:2");

    let body = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .unwrap()
        .unwrap();

    let events: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!events.is_empty());
    assert!(events
        .iter()
        .all(|e| e["type"] == "MODIFIED" && e["object"]["metadata"]["name"] == "web"));
}

#[tokio::test]
async fn creating_a_deployment_over_http_rolls_out_its_first_replica_set() {
    let kube = fake().await;
    let body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "new"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "new"}},
            "template": {"metadata": {"labels": {"app": "new"}}, "spec": {"containers": [{"name": "new", "image": "new:1"}]}},
        },
    });
    let url = format!("{}/apis/apps/v1/namespaces/prod/deployments", kube.url());
    let response = reqwest::Client::new().post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let again = reqwest::Client::new().post(&url).json(&body).send().await.unwrap();
    assert_eq!(again.status(), 409);
    let deployment = kube.get("deployments", "prod", "new").unwrap();
    assert_eq!(revision(&deployment), "1");
    assert_eq!(deployment["status"]["readyReplicas"], 2);
    let sets = kube.list("replicasets", "prod");
    assert_eq!(sets.len(), 1);
    assert_eq!(
        sets[0]["metadata"]["ownerReferences"][0]["uid"],
        deployment["metadata"]["uid"]
    );
    assert!(sets[0]["metadata"]["labels"]["pod-template-hash"].is_string());
}

#[tokio::test]
async fn a_protobuf_body_is_refused_with_415() {
    let kube = fake().await;
    let response = reqwest::Client::new()
        .post(format!("{}/apis/apps/v1/namespaces/prod/deployments", kube.url()))
        .header("content-type", "application/vnd.kubernetes.protobuf")
        .body(vec![0x6b, 0x38, 0x73, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["reason"], "UnsupportedMediaType");
}

#[tokio::test]
async fn an_idle_watch_that_allows_bookmarks_ends_soon_with_a_bookmark() {
    let kube = fake().await;
    kube.add_deployment("prod", "web", "web:1", 2);
    let rv = kube.get("deployments", "prod", "web").unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!(
        "{}/apis/apps/v1/namespaces/prod/deployments?watch=1&allowWatchBookmarks=true&resourceVersion={rv}",
        kube.url()
    );
    // Only the bookmark window ends an idle watch with a BOOKMARK; without
    // bookmarks it would wait 30 s and end empty.
    let body = reqwest::get(url).await.unwrap().text().await.unwrap();
    let event: Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(event["type"], "BOOKMARK");
    assert_eq!(event["object"]["kind"], "Deployment");
    assert_eq!(event["object"]["metadata"]["resourceVersion"], rv.as_str());
}
