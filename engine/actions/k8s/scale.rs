//! `k8s.scale`: set a Deployment's replicas through the scale subresource,
//! absolute or relative (`by: +2`, `x2`), within `min`/`max`.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch};
use serde::Deserialize;
use serde_json::json;

use super::{kube_error, patch_params, DeploymentRef, CLUSTER, DEPLOYMENT, NAMESPACE};
use crate::actions::spec::{opt, rule, ActionSpec, ArgKind};
use crate::actions::{maybe, Act, ActionError, Context, Outcome, Target};

pub struct Scale;

#[derive(Debug, Deserialize)]
pub struct Args {
    #[serde(flatten)]
    object: DeploymentRef,
    replicas: Option<i64>,
    by: Option<String>,
    min: Option<i64>,
    max: Option<i64>,
    scale_down: Option<bool>,
}

impl Act for Scale {
    const SPEC: ActionSpec = ActionSpec {
        name: "k8s.scale",
        summary: "Set a Deployment's replicas through the scale subresource, absolute or relative, within bounds.",
        args: &[
            CLUSTER,
            NAMESPACE,
            DEPLOYMENT,
            opt("replicas", ArgKind::Int, None, "the replica count to set"),
            opt(
                "by",
                ArgKind::ScaleBy,
                None,
                "a change from the current count: `+2`, `-1`, `x2`, `*1.5`",
            ),
            opt("min", ArgKind::Int, Some("0"), "never scale below this"),
            opt("max", ArgKind::Int, None, "never scale above this"),
            opt(
                "scale_down",
                ArgKind::Bool,
                Some("true"),
                "`false`: never lower the count, so `replicas` is a floor (a standby that already runs more keeps them)",
            ),
        ],
        exactly_one_of: &[&["replicas", "by"]],
        idempotent: false,
        output: "`previous_replicas`, `replicas`",
        kube: &[rule("apps", "deployments/scale", &["get", "patch"])],
    };
    type Args = Args;

    fn targets(args: &Args) -> Vec<Target> {
        vec![args.object.target()]
    }

    /// Setting an absolute count twice leaves what setting it once does.
    fn rerun_safe(with: &serde_json::Map<String, serde_json::Value>) -> bool {
        with.contains_key("replicas")
    }

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        scale(args, cx).await
    }
}

/// A relative scale change: `+N`, `-N`, `xF`, `*F` or `×F`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScaleBy {
    Add(i64),
    Times(f64),
}

pub fn parse_scale_by(text: &str) -> Option<ScaleBy> {
    let t = text.trim();
    if let Some(factor) = t.strip_prefix(['x', '*', '×']) {
        return factor
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| *f > 0.0 && f.is_finite())
            .map(ScaleBy::Times);
    }
    if t.starts_with(['+', '-']) {
        return t.parse::<i64>().ok().map(ScaleBy::Add);
    }
    None
}

/// `k8s.scale`: through the scale subresource, clamped to `min`/`max`.
async fn scale(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
    let what = args.object.checked()?;
    let (namespace, name) = (args.object.namespace.as_str(), args.object.deployment.as_str());
    let client = cx.backends.kube.client(args.object.cluster()).await?;
    let deployments: Api<Deployment> = Api::namespaced(client, namespace);
    let current = deployments.get_scale(name).await.map_err(|e| kube_error(&what, e))?;
    let previous = i64::from(current.spec.and_then(|s| s.replicas).unwrap_or(0));
    let wanted = match (args.replicas, args.by.as_deref().and_then(parse_scale_by)) {
        (Some(n), _) => n,
        (None, Some(ScaleBy::Add(d))) => previous + d,
        (None, Some(ScaleBy::Times(f))) => (previous as f64 * f).ceil() as i64,
        (None, None) => return Err(ActionError::fatal("give `replicas` or `by`")),
    };
    let min = args.min.unwrap_or(0).max(0);
    let max = args.max.unwrap_or(i64::from(i32::MAX));
    let target = wanted.clamp(min, max.max(min));
    let clamped = if target != wanted {
        format!(" (asked {wanted}, bounds {min}..={max})")
    } else {
        String::new()
    };
    if target < previous && args.scale_down == Some(false) {
        return Ok(Outcome {
            output: json!({"previous_replicas": previous, "replicas": previous}),
            summary: format!("{what} keeps its {previous} replicas: {target} would lower it (scale_down: false)"),
        });
    }
    if target == previous {
        return Ok(Outcome {
            output: json!({"previous_replicas": previous, "replicas": target}),
            summary: format!("{what} already has {target} replicas{clamped}"),
        });
    }
    let patch = Patch::Merge(json!({"spec": {"replicas": target}}));
    deployments
        .patch_scale(name, &patch_params(cx.dry_run), &patch)
        .await
        .map_err(|e| kube_error(&what, e))?;
    Ok(Outcome {
        output: json!({"previous_replicas": previous, "replicas": target}),
        summary: format!(
            "{} {what} from {previous} to {target} replicas{clamped}",
            maybe(cx.dry_run, "scaled", "would scale")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_by_accepts_the_documented_forms() {
        assert_eq!(parse_scale_by("+2"), Some(ScaleBy::Add(2)));
        assert_eq!(parse_scale_by("-1"), Some(ScaleBy::Add(-1)));
        assert_eq!(parse_scale_by("x2"), Some(ScaleBy::Times(2.0)));
        assert_eq!(parse_scale_by("*1.5"), Some(ScaleBy::Times(1.5)));
        assert_eq!(parse_scale_by("2"), None);
        assert_eq!(parse_scale_by("x-1"), None);
    }
}
