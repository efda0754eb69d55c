//! Kubernetes actions through kube-rs: roll back, scale, switch traffic,
//! restart, wait until ready. Each step may name a `cluster` (a kubeconfig
//! context); without one the configured context is used. Dry runs go to
//! the API server with `dryRun=All`, so they report exactly what the server
//! would have done.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};

use super::{int_arg, status_is_retryable, str_arg, ActionError, Outcome};
use crate::runbook::load::{parse_scale_by, ScaleBy};

const REVISION: &str = "deployment.kubernetes.io/revision";
const FIELD_MANAGER: &str = "laojun";

/// Clients per kubeconfig context, made on first use.
pub struct Kube {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    clients: tokio::sync::Mutex<HashMap<String, kube::Client>>,
}

impl Kube {
    pub fn new(kubeconfig: Option<PathBuf>, context: Option<String>) -> Self {
        Kube {
            kubeconfig,
            context,
            clients: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn client(&self, cluster: Option<&str>) -> Result<kube::Client, ActionError> {
        let context = cluster.map(str::to_string).or_else(|| self.context.clone());
        let key = context.clone().unwrap_or_default();
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let options = KubeConfigOptions {
            context: context.clone(),
            ..KubeConfigOptions::default()
        };
        let which = context.as_deref().unwrap_or("the current context");
        let config = match (&self.kubeconfig, &context) {
            (Some(path), _) => {
                let kc = Kubeconfig::read_from(path)
                    .map_err(|e| ActionError::fatal(format!("kubeconfig {}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| e.to_string())
            }
            (None, Some(_)) => kube::Config::from_kubeconfig(&options).await.map_err(|e| e.to_string()),
            // No context asked for: KUBECONFIG, ~/.kube/config, then in-cluster.
            (None, None) => kube::Config::infer().await.map_err(|e| e.to_string()),
        }
        .map_err(|e| ActionError::fatal(format!("Kubernetes config for {which}: {e}")))?;
        let client = kube::Client::try_from(config)
            .map_err(|e| ActionError::fatal(format!("Kubernetes client for {which}: {e}")))?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

fn patch_params(dry_run: bool) -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        dry_run,
        ..PatchParams::default()
    }
}

/// A kube error as an action error, saying whether a retry can help.
fn kube_error(what: &str, e: kube::Error) -> ActionError {
    match &e {
        kube::Error::Api(status) => {
            let code = status.code;
            let message = format!("{what}: {} ({code})", status.message);
            if status_is_retryable(code) {
                ActionError::retry(message)
            } else {
                ActionError::fatal(message)
            }
        }
        // Connection refused, timeouts, TLS hiccups: the server may come back.
        _ => ActionError::retry(format!("{what}: {e}")),
    }
}

struct Target<'a> {
    namespace: &'a str,
    name: &'a str,
}

fn target<'a>(args: &'a Value, kind: &str) -> Result<Target<'a>, ActionError> {
    let namespace = str_arg(args, "namespace").ok_or_else(|| ActionError::fatal("`namespace` is empty"))?;
    let name = str_arg(args, kind).ok_or_else(|| ActionError::fatal(format!("`{kind}` is empty")))?;
    Ok(Target { namespace, name })
}

fn revision_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<i64> {
    meta.annotations.as_ref()?.get(REVISION)?.parse().ok()
}

fn first_image(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> String {
    template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn maybe(dry_run: bool, done: &str, would: &str) -> String {
    if dry_run {
        would.to_string()
    } else {
        done.to_string()
    }
}

/// `k8s.rollback`: the way `kubectl rollout undo` does it — find the
/// deployment's ReplicaSets by revision and make the chosen one's pod
/// template the deployment's.
pub async fn rollback(kube: &Kube, args: &Value, dry_run: bool) -> Result<Outcome, ActionError> {
    let t = target(args, "deployment")?;
    let client = kube.client(str_arg(args, "cluster")).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), t.namespace);
    let what = format!("deployment/{} in {}", t.name, t.namespace);
    let dep = deployments.get(t.name).await.map_err(|e| kube_error(&what, e))?;
    let current = revision_of(&dep.metadata).unwrap_or(0);
    let selector = dep
        .spec
        .selector
        .match_labels
        .as_ref()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let uid = dep.metadata.uid.clone().unwrap_or_default();
    let sets: Api<ReplicaSet> = Api::namespaced(client, t.namespace);
    let list = sets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| kube_error(&what, e))?;
    let mut revisions: Vec<(i64, ReplicaSet)> = list
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|r| r.uid == uid))
        })
        .filter_map(|rs| revision_of(&rs.metadata).map(|r| (r, rs)))
        .collect();
    revisions.sort_by_key(|(r, _)| *r);
    let known: Vec<i64> = revisions.iter().map(|(r, _)| *r).collect();
    let chosen = match int_arg(args, "to_revision") {
        Some(want) => revisions
            .iter()
            .find(|(r, _)| *r == want)
            .ok_or_else(|| ActionError::fatal(format!("{what} has no revision {want} (it has {known:?})")))?,
        None => revisions.iter().rev().find(|(r, _)| *r < current).ok_or_else(|| {
            ActionError::fatal(format!(
                "{what} has no revision before {current} to roll back to (it has {known:?})"
            ))
        })?,
    };
    let (to_revision, rs) = chosen;
    let mut template =
        rs.spec.template.clone().ok_or_else(|| {
            ActionError::fatal(format!("the ReplicaSet of revision {to_revision} has no pod template"))
        })?;
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove("pod-template-hash");
    }
    let from_image = first_image(&dep.spec.template);
    let to_image = first_image(&template);
    let resource_version = dep.metadata.resource_version.clone().unwrap_or_default();
    // `test` makes the patch fail (409) if someone changed the deployment
    // since we read it, instead of overwriting their change.
    let ops = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
        {"op": "replace", "path": "/spec/template", "value": template},
    ]);
    let patch = Patch::Json::<()>(
        serde_json::from_value(ops).map_err(|e| ActionError::fatal(format!("building the patch: {e}")))?,
    );
    deployments
        .patch(t.name, &patch_params(dry_run), &patch)
        .await
        .map_err(|e| kube_error(&what, e))?;
    Ok(Outcome {
        output: json!({"from_revision": current, "to_revision": to_revision, "image": to_image, "previous_image": from_image}),
        summary: format!(
            "{} {what} from revision {current} ({from_image}) to revision {to_revision} ({to_image})",
            maybe(dry_run, "rolled back", "would roll back")
        ),
    })
}

/// `k8s.scale`: through the scale subresource, clamped to `min`/`max`.
pub async fn scale(kube: &Kube, args: &Value, dry_run: bool) -> Result<Outcome, ActionError> {
    let t = target(args, "deployment")?;
    let client = kube.client(str_arg(args, "cluster")).await?;
    let deployments: Api<Deployment> = Api::namespaced(client, t.namespace);
    let what = format!("deployment/{} in {}", t.name, t.namespace);
    let current = deployments.get_scale(t.name).await.map_err(|e| kube_error(&what, e))?;
    let previous = i64::from(current.spec.and_then(|s| s.replicas).unwrap_or(0));
    let wanted = match (int_arg(args, "replicas"), str_arg(args, "by").and_then(parse_scale_by)) {
        (Some(n), _) => n,
        (None, Some(ScaleBy::Add(d))) => previous + d,
        (None, Some(ScaleBy::Times(f))) => (previous as f64 * f).ceil() as i64,
        (None, None) => return Err(ActionError::fatal("give `replicas` or `by`")),
    };
    let min = int_arg(args, "min").unwrap_or(0).max(0);
    let max = int_arg(args, "max").unwrap_or(i64::from(i32::MAX));
    let target = wanted.clamp(min, max.max(min));
    let clamped = if target != wanted {
        format!(" (asked {wanted}, bounds {min}..={max})")
    } else {
        String::new()
    };
    if target == previous {
        return Ok(Outcome {
            output: json!({"previous_replicas": previous, "replicas": target}),
            summary: format!("{what} already has {target} replicas{clamped}"),
        });
    }
    let patch = Patch::Merge(json!({"spec": {"replicas": target}}));
    deployments
        .patch_scale(t.name, &patch_params(dry_run), &patch)
        .await
        .map_err(|e| kube_error(&what, e))?;
    Ok(Outcome {
        output: json!({"previous_replicas": previous, "replicas": target}),
        summary: format!(
            "{} {what} from {previous} to {target} replicas{clamped}",
            maybe(dry_run, "scaled", "would scale")
        ),
    })
}

/// `k8s.switch_traffic`: merge `selector` into the Service's selector; the
/// old selector is in the output so a later step can switch back.
pub async fn switch_traffic(kube: &Kube, args: &Value, dry_run: bool) -> Result<Outcome, ActionError> {
    let t = target(args, "service")?;
    let selector = args.get("selector").cloned().unwrap_or(json!({}));
    let client = kube.client(str_arg(args, "cluster")).await?;
    let services: Api<Service> = Api::namespaced(client, t.namespace);
    let what = format!("service/{} in {}", t.name, t.namespace);
    let svc = services.get(t.name).await.map_err(|e| kube_error(&what, e))?;
    let previous: BTreeMap<String, String> = svc.spec.and_then(|s| s.selector).unwrap_or_default();
    let patch = Patch::Merge(json!({"spec": {"selector": selector}}));
    let after = services
        .patch(t.name, &patch_params(dry_run), &patch)
        .await
        .map_err(|e| kube_error(&what, e))?;
    let now: BTreeMap<String, String> = after.spec.and_then(|s| s.selector).unwrap_or_default();
    let show = |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    Ok(Outcome {
        output: json!({"previous_selector": previous, "selector": now}),
        summary: format!(
            "{} {what} from {{{}}} to {{{}}}",
            maybe(dry_run, "switched", "would switch"),
            show(&previous),
            show(&now)
        ),
    })
}

/// `k8s.restart`: as `kubectl rollout restart`, a `restartedAt` annotation
/// on the pod template.
pub async fn restart(kube: &Kube, args: &Value, dry_run: bool) -> Result<Outcome, ActionError> {
    let t = target(args, "deployment")?;
    let client = kube.client(str_arg(args, "cluster")).await?;
    let deployments: Api<Deployment> = Api::namespaced(client, t.namespace);
    let what = format!("deployment/{} in {}", t.name, t.namespace);
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let patch = Patch::Merge(
        json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}}),
    );
    deployments
        .patch(t.name, &patch_params(dry_run), &patch)
        .await
        .map_err(|e| kube_error(&what, e))?;
    Ok(Outcome {
        output: json!({"restarted_at": at}),
        summary: format!("{} {what}", maybe(dry_run, "restarted", "would restart")),
    })
}

/// Readiness as `kubectl rollout status` judges it.
fn readiness(dep: &Deployment) -> (bool, String) {
    let want = i64::from(dep.spec.replicas.unwrap_or(1));
    let generation = dep.metadata.generation.unwrap_or(0);
    let Some(status) = &dep.status else {
        return (false, "no status yet".into());
    };
    let observed = status.observed_generation.unwrap_or(0);
    let updated = i64::from(status.updated_replicas.unwrap_or(0));
    let total = i64::from(status.replicas.unwrap_or(0));
    let available = i64::from(status.available_replicas.unwrap_or(0));
    let ready = observed >= generation && updated == want && total == want && available == want;
    (
        ready,
        format!("{available}/{want} available, {updated} updated, {total} total"),
    )
}

/// `k8s.wait_ready`: polls until the rollout is complete, bounded by `timeout_secs`.
pub async fn wait_ready(kube: &Kube, args: &Value, dry_run: bool) -> Result<Outcome, ActionError> {
    let t = target(args, "deployment")?;
    let timeout = Duration::from_secs(int_arg(args, "timeout_secs").unwrap_or(300).max(0) as u64);
    let client = kube.client(str_arg(args, "cluster")).await?;
    let deployments: Api<Deployment> = Api::namespaced(client, t.namespace);
    let what = format!("deployment/{} in {}", t.name, t.namespace);
    let started = Instant::now();
    loop {
        let dep = deployments.get(t.name).await.map_err(|e| kube_error(&what, e))?;
        let (ready, state) = readiness(&dep);
        let ready_replicas = dep.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        if dry_run {
            return Ok(Outcome {
                output: json!({"ready": ready, "ready_replicas": ready_replicas}),
                summary: format!("would wait up to {}s for {what}; now {state}", timeout.as_secs()),
            });
        }
        if ready {
            let waited = started.elapsed().as_secs_f64();
            return Ok(Outcome {
                output: json!({"ready_replicas": ready_replicas, "waited_secs": waited}),
                summary: format!("{what} is ready ({state}) after {waited:.1}s"),
            });
        }
        if started.elapsed() >= timeout {
            return Err(ActionError::fatal(format!(
                "{what} is not ready after {}s: {state}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
