//! `k8s.pods`: what `kubectl get pods | grep -v Running` tells an on-call
//! engineer, as data: pods counted by phase, and the ones that are not
//! running and ready listed with why. A read: it runs in a dry run too.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{kube_error, non_empty, CLUSTER};
use crate::actions::spec::{opt, req, rule, ActionSpec, ArgKind};
use crate::actions::{observe, Act, ActionError, Context, Outcome};

pub struct Pods;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    cluster: Option<String>,
    namespace: String,
    selector: Option<String>,
    field_selector: Option<String>,
    expect: Option<String>,
}

/// At most this many unhealthy pods are listed (all are counted).
const MAX_LISTED: usize = 50;

impl Act for Pods {
    const SPEC: ActionSpec = ActionSpec {
        name: "k8s.pods",
        summary: "Count a namespace's pods by phase and list those not running and ready, with why (`kubectl get pods | grep -v Running`).",
        args: &[
            CLUSTER,
            req("namespace", ArgKind::Str, "namespace to look in; `*` for all namespaces"),
            opt("selector", ArgKind::Str, None, "label selector, e.g. `app=api-gateway`"),
            opt("field_selector", ArgKind::Str, None, "field selector, e.g. `spec.nodeName=node-3`"),
            opt(
                "expect",
                ArgKind::Str,
                None,
                "a comparison with the number of unhealthy pods, e.g. `== 0`, or a Rhai condition over the output; with `retries` the step polls until it holds",
            ),
        ],
        exactly_one_of: &[],
        idempotent: true,
        output: "`total`, `by_phase` {phase: count}, `ready`, `value` (how many pods are unhealthy: not Running and ready, and not Succeeded), `unhealthy` [{namespace, name, phase, ready, restarts, reason}] (at most 50), `expect_met`",
        kube: &[rule("", "pods", &["list"])],
    };
    type Args = Args;

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        let namespace = args.namespace.trim();
        non_empty(namespace, "namespace")?;
        let cluster = args.cluster.as_deref().filter(|c| !c.is_empty());
        let client = cx.backends.kube.client(cluster).await?;
        let api: Api<Pod> = if namespace == "*" {
            Api::all(client)
        } else {
            Api::namespaced(client, namespace)
        };
        let mut params = ListParams::default();
        if let Some(s) = args.selector.as_deref().filter(|s| !s.is_empty()) {
            params = params.labels(s);
        }
        if let Some(s) = args.field_selector.as_deref().filter(|s| !s.is_empty()) {
            params = params.fields(s);
        }
        let scope = match namespace {
            "*" => "all namespaces".to_string(),
            ns => ns.to_string(),
        };
        let list = api
            .list(&params)
            .await
            .map_err(|e| kube_error(&format!("listing pods in {scope}"), e))?;
        let mut by_phase: BTreeMap<String, u64> = BTreeMap::new();
        let mut ready = 0;
        let mut unhealthy = Vec::new();
        for pod in &list.items {
            let health = Health::of(pod);
            *by_phase.entry(health.phase.clone()).or_default() += 1;
            if health.ready {
                ready += 1;
            }
            if !health.is_fine() {
                unhealthy.push(health);
            }
        }
        let total = list.items.len();
        let count = unhealthy.len();
        let listed: Vec<Value> = unhealthy.iter().take(MAX_LISTED).map(Health::to_json).collect();
        let phases: Vec<String> = by_phase.iter().map(|(p, n)| format!("{n} {p}")).collect();
        let named: Vec<String> = unhealthy
            .iter()
            .take(3)
            .map(|h| format!("{} {}", h.name, h.reason))
            .collect();
        let more = if count > 3 {
            format!(" and {} more", count - 3)
        } else {
            String::new()
        };
        let mut summary = format!("{total} pods in {scope}");
        if !phases.is_empty() {
            summary.push_str(&format!(" ({})", phases.join(", ")));
        }
        if count == 0 {
            summary.push_str("; all running and ready");
        } else {
            summary.push_str(&format!("; {count} unhealthy: {}{more}", named.join(", ")));
        }
        let output = json!({
            "total": total,
            "by_phase": by_phase,
            "ready": ready,
            "value": count,
            "unhealthy": listed,
            "expect_met": null,
        });
        observe::expected(args.expect.as_deref(), count, output, summary, cx.sandbox)
    }
}

/// One pod as the assessment sees it.
struct Health {
    namespace: String,
    name: String,
    phase: String,
    ready: bool,
    containers: usize,
    ready_containers: usize,
    restarts: i32,
    reason: String,
}

impl Health {
    fn of(pod: &Pod) -> Health {
        let status = pod.status.clone().unwrap_or_default();
        let phase = status.phase.clone().unwrap_or_else(|| "Unknown".into());
        let statuses = status.container_statuses.clone().unwrap_or_default();
        let ready = status
            .conditions
            .as_ref()
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let container_reason = statuses.iter().find_map(|c| {
            let state = c.state.as_ref()?;
            state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .or_else(|| state.terminated.as_ref().and_then(|t| t.reason.clone()))
        });
        // The reason kubectl's STATUS column would show: the pod's own
        // (Evicted), a container's (CrashLoopBackOff, OOMKilled), else
        // "not ready" for a running pod, else the phase.
        let reason = status.reason.clone().or(container_reason).unwrap_or_else(|| {
            if phase == "Running" && !ready {
                "not ready".into()
            } else {
                phase.clone()
            }
        });
        Health {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            containers: pod.spec.as_ref().map_or(statuses.len(), |s| s.containers.len()),
            ready_containers: statuses.iter().filter(|c| c.ready).count(),
            restarts: statuses.iter().map(|c| c.restart_count).sum(),
            phase,
            ready,
            reason,
        }
    }

    /// Running and ready, or finished as it should (a Job's pod).
    fn is_fine(&self) -> bool {
        (self.phase == "Running" && self.ready) || self.phase == "Succeeded"
    }

    fn to_json(&self) -> Value {
        json!({
            "namespace": self.namespace,
            "name": self.name,
            "phase": self.phase,
            "ready": format!("{}/{}", self.ready_containers, self.containers),
            "restarts": self.restarts,
            "reason": self.reason,
        })
    }
}
