//! `k8s.restart`: restart a Deployment's pods, as `kubectl rollout restart` does.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch};
use serde::Deserialize;
use serde_json::json;

use super::{kube_error, patch_params, DeploymentRef, CLUSTER, DEPLOYMENT, NAMESPACE};
use crate::actions::spec::{rule, ActionSpec};
use crate::actions::{maybe, Act, ActionError, Context, Outcome, Target};

pub struct Restart;

#[derive(Debug, Deserialize)]
pub struct Args {
    #[serde(flatten)]
    object: DeploymentRef,
}

impl Act for Restart {
    const SPEC: ActionSpec = ActionSpec {
        name: "k8s.restart",
        summary: "Restart a Deployment's pods, as `kubectl rollout restart` does.",
        args: &[CLUSTER, NAMESPACE, DEPLOYMENT],
        exactly_one_of: &[],
        idempotent: false,
        output: "`restarted_at`",
        kube: &[rule("apps", "deployments", &["patch"])],
    };
    type Args = Args;

    fn targets(args: &Args) -> Vec<Target> {
        vec![args.object.target()]
    }

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        restart(args, cx).await
    }
}

/// `k8s.restart`: as `kubectl rollout restart`, a `restartedAt` annotation
/// on the pod template.
async fn restart(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
    let what = args.object.checked()?;
    let (namespace, name) = (args.object.namespace.as_str(), args.object.deployment.as_str());
    let client = cx.backends.kube.client(args.object.cluster()).await?;
    let deployments: Api<Deployment> = Api::namespaced(client, namespace);
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let patch = Patch::Merge(
        json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}}),
    );
    deployments
        .patch(name, &patch_params(cx.dry_run), &patch)
        .await
        .map_err(|e| kube_error(&what, e))?;
    Ok(Outcome {
        output: json!({"restarted_at": at}),
        summary: format!("{} {what}", maybe(cx.dry_run, "restarted", "would restart")),
    })
}
