//! `k8s.set_image`: change a container's image in a Deployment, as
//! `kubectl set image deployment/NAME CONTAINER=IMAGE` does (a strategic
//! merge patch keyed by container name), reporting the image it replaced.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch};
use serde::Deserialize;
use serde_json::json;

use super::{kube_error, patch_params, DeploymentRef, CLUSTER, DEPLOYMENT, NAMESPACE};
use crate::actions::spec::{opt, req, rule, ActionSpec, ArgKind};
use crate::actions::{maybe, Act, ActionError, Context, Outcome, Target};

pub struct SetImage;

#[derive(Debug, Deserialize)]
pub struct Args {
    #[serde(flatten)]
    object: DeploymentRef,
    container: Option<String>,
    image: String,
}

impl Act for SetImage {
    const SPEC: ActionSpec = ActionSpec {
        name: "k8s.set_image",
        summary: "Set a container's image in a Deployment, as `kubectl set image` does.",
        args: &[
            CLUSTER,
            NAMESPACE,
            DEPLOYMENT,
            opt(
                "container",
                ArgKind::Str,
                Some("the only container"),
                "which container; needed when the pod has several",
            ),
            req(
                "image",
                ArgKind::Str,
                "the new image, e.g. `registry.example/api:v1.4.2`",
            ),
        ],
        exactly_one_of: &[],
        idempotent: true,
        output: "`container`, `previous` (the image it replaced), `image`, `changed`",
        kube: &[rule("apps", "deployments", &["get", "patch"])],
    };
    type Args = Args;

    fn targets(args: &Args) -> Vec<Target> {
        vec![args.object.target()]
    }

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        let what = args.object.checked()?;
        let image = args.image.trim();
        if image.is_empty() || image.chars().any(char::is_whitespace) {
            return Err(ActionError::fatal(format!(
                "`image` {image:?} is not an image reference"
            )));
        }
        let (namespace, name) = (args.object.namespace.as_str(), args.object.deployment.as_str());
        let client = cx.backends.kube.client(args.object.cluster()).await?;
        let deployments: Api<Deployment> = Api::namespaced(client, namespace);
        let current = deployments.get(name).await.map_err(|e| kube_error(&what, e))?;
        let containers = current
            .spec
            .template
            .spec
            .as_ref()
            .map(|p| p.containers.clone())
            .unwrap_or_default();
        let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        let wanted = args.container.as_deref().filter(|c| !c.is_empty());
        let container = match (wanted, containers.as_slice()) {
            (Some(w), _) => containers.iter().find(|c| c.name == w).ok_or_else(|| {
                ActionError::fatal(format!(
                    "{what} has no container `{w}`; its containers are {}",
                    names.join(", ")
                ))
            })?,
            (None, [only]) => only,
            (None, _) => {
                return Err(ActionError::fatal(format!(
                    "{what} has {} containers ({}); say which with `container:`",
                    names.len(),
                    names.join(", ")
                )))
            }
        };
        let previous = container.image.clone().unwrap_or_default();
        let output = |changed: bool| json!({"container": container.name, "previous": previous, "image": image, "changed": changed});
        if previous == image {
            return Ok(Outcome {
                output: output(false),
                summary: format!("{what} container `{}` already runs {image}", container.name),
            });
        }
        let patch = Patch::Strategic(json!({
            "spec": {"template": {"spec": {"containers": [{"name": container.name, "image": image}]}}}
        }));
        deployments
            .patch(name, &patch_params(cx.dry_run), &patch)
            .await
            .map_err(|e| kube_error(&what, e))?;
        Ok(Outcome {
            output: output(true),
            summary: format!(
                "{} {what} container `{}` from {previous} to {image}",
                maybe(cx.dry_run, "set", "would set"),
                container.name
            ),
        })
    }
}
