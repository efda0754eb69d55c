//! `k8s.switch_traffic`: point a Service at other pods by patching its selector.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch};
use serde::Deserialize;
use serde_json::json;

use super::{kube_error, non_empty, object_target, patch_params, CLUSTER, NAMESPACE};
use crate::actions::spec::{req, rule, ActionSpec, ArgKind};
use crate::actions::{maybe, Act, ActionError, Context, Outcome, Target};

pub struct SwitchTraffic;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    cluster: Option<String>,
    namespace: String,
    service: String,
    selector: BTreeMap<String, String>,
}

impl Act for SwitchTraffic {
    const SPEC: ActionSpec = ActionSpec {
        name: "k8s.switch_traffic",
        summary: "Point a Service at other pods by patching its selector (e.g. `version: stable`).",
        args: &[
            CLUSTER,
            NAMESPACE,
            req("service", ArgKind::Str, "name of the Service"),
            req("selector", ArgKind::StrMap, "labels to set in the Service's selector"),
        ],
        exactly_one_of: &[],
        idempotent: true,
        output: "`previous_selector` (to switch back), `selector`",
        kube: &[rule("", "services", &["get", "patch"])],
    };
    type Args = Args;

    fn targets(args: &Args) -> Vec<Target> {
        vec![object_target(
            args.cluster.as_deref(),
            &args.namespace,
            "service",
            &args.service,
        )]
    }

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        switch_traffic(args, cx).await
    }
}

/// `k8s.switch_traffic`: merge `selector` into the Service's selector; the
/// old selector is in the output so a later step can switch back.
async fn switch_traffic(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
    non_empty(&args.namespace, "namespace")?;
    non_empty(&args.service, "service")?;
    let (namespace, name) = (args.namespace.as_str(), args.service.as_str());
    let selector = json!(args.selector);
    let client = cx
        .backends
        .kube
        .client(args.cluster.as_deref().filter(|c| !c.is_empty()))
        .await?;
    let services: Api<Service> = Api::namespaced(client, namespace);
    let what = format!("service/{name} in {namespace}");
    let svc = services.get(name).await.map_err(|e| kube_error(&what, e))?;
    let previous: BTreeMap<String, String> = svc.spec.and_then(|s| s.selector).unwrap_or_default();
    let patch = Patch::Merge(json!({"spec": {"selector": selector}}));
    let after = services
        .patch(name, &patch_params(cx.dry_run), &patch)
        .await
        .map_err(|e| kube_error(&what, e))?;
    let now: BTreeMap<String, String> = after.spec.and_then(|s| s.selector).unwrap_or_default();
    let show = |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    Ok(Outcome {
        output: json!({"previous_selector": previous, "selector": now}),
        summary: format!(
            "{} {what} from {{{}}} to {{{}}}",
            maybe(cx.dry_run, "switched", "would switch"),
            show(&previous),
            show(&now)
        ),
    })
}
