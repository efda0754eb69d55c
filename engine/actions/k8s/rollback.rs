//! `k8s.rollback`: the way `kubectl rollout undo` does it.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, Patch};
use serde::Deserialize;
use serde_json::json;

use super::{
    first_image, kube_error, patch_params, replica_sets_of, revision_of, DeploymentRef, CLUSTER, DEPLOYMENT, NAMESPACE,
};
use crate::actions::spec::{opt, rule, ActionSpec, ArgKind};
use crate::actions::{maybe, Act, ActionError, Context, Outcome, Target};

pub struct Rollback;

#[derive(Debug, Deserialize)]
pub struct Args {
    #[serde(flatten)]
    object: DeploymentRef,
    to_revision: Option<i64>,
}

impl Act for Rollback {
    const SPEC: ActionSpec = ActionSpec {
        name: "k8s.rollback",
        summary: "Roll a Deployment back to an earlier revision, as `kubectl rollout undo` does.",
        args: &[
            CLUSTER,
            NAMESPACE,
            DEPLOYMENT,
            opt(
                "to_revision",
                ArgKind::Int,
                Some("the previous revision"),
                "revision to roll back to",
            ),
        ],
        exactly_one_of: &[],
        idempotent: false,
        output: "`from_revision`, `to_revision` (whose template came back), `revision` (the new revision, as `kubectl rollout history` lists it), `image` (the restored pod template's first image)",
        kube: &[rule("apps", "deployments", &["get", "patch"]), rule("apps", "replicasets", &["list"])],
    };
    type Args = Args;

    fn targets(args: &Args) -> Vec<Target> {
        vec![args.object.target()]
    }

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        rollback(args, cx).await
    }
}

/// `k8s.rollback`: the way `kubectl rollout undo` does it — find the
/// deployment's ReplicaSets by revision and make the chosen one's pod
/// template the deployment's.
async fn rollback(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
    let what = args.object.checked()?;
    let (namespace, name) = (args.object.namespace.as_str(), args.object.deployment.as_str());
    let client = cx.backends.kube.client(args.object.cluster()).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let dep = deployments.get(name).await.map_err(|e| kube_error(&what, e))?;
    let current = revision_of(&dep.metadata).unwrap_or(0);
    let mut revisions: Vec<(i64, ReplicaSet)> = replica_sets_of(client, &dep, &what)
        .await?
        .into_iter()
        .filter_map(|rs| revision_of(&rs.metadata).map(|r| (r, rs)))
        .collect();
    revisions.sort_by_key(|(r, _)| *r);
    let known: Vec<i64> = revisions.iter().map(|(r, _)| *r).collect();
    let chosen = match args.to_revision {
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
        .patch(name, &patch_params(cx.dry_run), &patch)
        .await
        .map_err(|e| kube_error(&what, e))?;
    // The controller files the restored template under a new number, one
    // past the highest (as `kubectl rollout history` then shows it).
    let revision = known.iter().copied().max().unwrap_or(current).max(current) + 1;
    Ok(Outcome {
        output: json!({"from_revision": current, "to_revision": to_revision, "revision": revision, "image": to_image, "previous_image": from_image}),
        summary: format!(
            "{} {what} from revision {current} ({from_image}) to revision {to_revision}'s template ({to_image}), {} revision {revision}",
            maybe(cx.dry_run, "rolled back", "would roll back"),
            maybe(cx.dry_run, "now", "which would be")
        ),
    })
}
