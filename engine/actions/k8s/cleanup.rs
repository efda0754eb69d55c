//! `k8s.cleanup`: the guide's cleanup script made safe to automate —
//! delete finished pods (`status.phase=Succeeded`) and the ReplicaSets of
//! a Deployment that sit at zero replicas beyond the revisions it keeps
//! for rollback, at most `max` objects a run, oldest first. It never
//! touches a ReplicaSet with replicas or the current revision. A dry run
//! sends each delete with `dryRun=All` and lists what would go.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use serde::Deserialize;
use serde_json::json;

use super::{kube_error, non_empty, object_target, replica_sets_of, revision_of, CLUSTER, NAMESPACE};
use crate::actions::spec::{opt, rule, ActionSpec, ArgKind};
use crate::actions::{maybe, Act, ActionError, Context, Outcome, Target};

pub struct Cleanup;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    cluster: Option<String>,
    namespace: String,
    deployment: Option<String>,
    succeeded_pods: Option<bool>,
    old_replicasets: Option<bool>,
    keep_revisions: Option<i64>,
    max: Option<i64>,
}

const DEFAULT_MAX: usize = 20;
const MAX_MAX: usize = 500;

impl Act for Cleanup {
    const SPEC: ActionSpec = ActionSpec {
        name: "k8s.cleanup",
        summary: "Delete finished pods and a Deployment's old ReplicaSets beyond the revisions it keeps, at most `max` at a time.",
        args: &[
            CLUSTER,
            NAMESPACE,
            opt(
                "deployment",
                ArgKind::Str,
                Some("every Deployment in the namespace"),
                "whose old ReplicaSets to delete",
            ),
            opt("succeeded_pods", ArgKind::Bool, Some("true"), "delete the namespace's pods with `status.phase=Succeeded`"),
            opt("old_replicasets", ArgKind::Bool, Some("true"), "delete ReplicaSets at zero replicas beyond `keep_revisions`"),
            opt(
                "keep_revisions",
                ArgKind::Int,
                Some("the Deployment's revisionHistoryLimit (10)"),
                "how many old revisions to keep for `k8s.rollback`",
            ),
            opt("max", ArgKind::Int, Some("20"), "delete at most this many objects (up to 500); the rest wait for the next run"),
        ],
        exactly_one_of: &[],
        idempotent: true,
        output: "`pods` and `replicasets` (names deleted, or that a dry run would delete), `deleted`, `remaining` (left for the next run by `max`)",
        kube: &[rule("apps", "deployments", &["get", "list"]), rule("apps", "replicasets", &["list", "delete"]), rule("", "pods", &["list", "delete"])],
    };
    type Args = Args;

    fn targets(args: &Args) -> Vec<Target> {
        let cluster = args.cluster.as_deref().filter(|c| !c.is_empty());
        match args.deployment.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => vec![object_target(cluster, &args.namespace, "deployment", d)],
            None => vec![object_target(cluster, &args.namespace, "cleanup", "*")],
        }
    }

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        let namespace = args.namespace.trim();
        non_empty(namespace, "namespace")?;
        let max = match args.max {
            None => DEFAULT_MAX,
            Some(n) if n >= 1 && n as usize <= MAX_MAX => n as usize,
            Some(n) => return Err(ActionError::fatal(format!("`max` is {n}; give 1 to {MAX_MAX}"))),
        };
        if args.keep_revisions.is_some_and(|k| k < 0) {
            return Err(ActionError::fatal("`keep_revisions` must be 0 or more"));
        }
        let cluster = args.cluster.as_deref().filter(|c| !c.is_empty());
        let client = cx.backends.kube.client(cluster).await?;
        let mut doomed_sets = Vec::new();
        if args.old_replicasets.unwrap_or(true) {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
            let chosen = match args.deployment.as_deref().filter(|d| !d.is_empty()) {
                Some(d) => vec![deployments
                    .get(d)
                    .await
                    .map_err(|e| kube_error(&format!("deployment/{d} in {namespace}"), e))?],
                None => {
                    deployments
                        .list(&ListParams::default())
                        .await
                        .map_err(|e| kube_error(&format!("listing deployments in {namespace}"), e))?
                        .items
                }
            };
            for deployment in &chosen {
                doomed_sets.extend(old_replica_sets(client.clone(), deployment, args.keep_revisions).await?);
            }
        }
        let mut doomed_pods = Vec::new();
        if args.succeeded_pods.unwrap_or(true) {
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            let mut finished = pods
                .list(&ListParams::default().fields("status.phase=Succeeded"))
                .await
                .map_err(|e| kube_error(&format!("listing finished pods in {namespace}"), e))?
                .items;
            finished.sort_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp));
            doomed_pods.extend(finished.into_iter().filter_map(|p| p.metadata.name));
        }
        let total = doomed_sets.len() + doomed_pods.len();
        doomed_sets.truncate(max);
        doomed_pods.truncate(max - doomed_sets.len());
        let params = DeleteParams {
            dry_run: cx.dry_run,
            ..DeleteParams::default()
        };
        let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
        let mut deleted_sets = Vec::new();
        for name in doomed_sets {
            if delete(&sets, &name, &params, "replicaset", namespace).await? {
                deleted_sets.push(name);
            }
        }
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let mut deleted_pods = Vec::new();
        for name in doomed_pods {
            if delete(&pods, &name, &params, "pod", namespace).await? {
                deleted_pods.push(name);
            }
        }
        let deleted = deleted_sets.len() + deleted_pods.len();
        let remaining = total.saturating_sub(deleted_sets.len() + deleted_pods.len());
        let verb = maybe(cx.dry_run, "deleted", "would delete");
        let list = |names: &[String]| -> String {
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        };
        let mut summary = format!(
            "{verb} {} finished pods ({}) and {} old ReplicaSets ({}) in {namespace}",
            deleted_pods.len(),
            list(&deleted_pods),
            deleted_sets.len(),
            list(&deleted_sets)
        );
        if remaining > 0 {
            summary.push_str(&format!("; {remaining} more left for the next run (max {max})"));
        }
        Ok(Outcome {
            output: json!({
                "pods": deleted_pods,
                "replicasets": deleted_sets,
                "deleted": deleted,
                "remaining": remaining,
            }),
            summary,
        })
    }
}

/// A deployment's ReplicaSets at zero replicas beyond the newest
/// `keep` old revisions, oldest first. The current revision and any set
/// with replicas (desired or still running) are never among them.
async fn old_replica_sets(
    client: kube::Client,
    deployment: &Deployment,
    keep: Option<i64>,
) -> Result<Vec<String>, ActionError> {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let what = format!("the ReplicaSets of deployment/{name}");
    let current = revision_of(&deployment.metadata);
    let keep = keep
        .or(deployment.spec.revision_history_limit.map(i64::from))
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<(i64, String)> = replica_sets_of(client, deployment, &what)
        .await?
        .into_iter()
        .filter(|rs| {
            let desired = rs.spec.replicas.unwrap_or(1);
            let running = rs.status.as_ref().map_or(0, |s| s.replicas);
            desired == 0 && running == 0
        })
        .filter_map(|rs| {
            let revision = revision_of(&rs.metadata)?;
            (Some(revision) != current).then(|| (revision, rs.metadata.name.unwrap_or_default()))
        })
        .collect();
    // Newest first: the first `keep` stay as rollback targets.
    idle.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
    let mut doomed: Vec<String> = idle.into_iter().skip(keep).map(|(_, n)| n).collect();
    doomed.reverse();
    Ok(doomed)
}

/// Deletes one object; false when it was already gone.
async fn delete<K>(
    api: &Api<K>,
    name: &str,
    params: &DeleteParams,
    kind: &str,
    namespace: &str,
) -> Result<bool, ActionError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(kube_error(&format!("deleting {kind}/{name} in {namespace}"), e)),
    }
}
