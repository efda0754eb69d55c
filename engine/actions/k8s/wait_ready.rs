//! `k8s.wait_ready`: wait until a Deployment's rollout is complete, as
//! `kubectl rollout status` judges it.

use std::time::Duration;

// tokio's clock, so `laojun test` (on a paused clock) times out in virtual time.
use tokio::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use serde::Deserialize;
use serde_json::json;

use super::{kube_error, DeploymentRef, CLUSTER, DEPLOYMENT, NAMESPACE};
use crate::actions::spec::{opt, rule, ActionSpec, ArgKind};
use crate::actions::{Act, ActionError, Context, Outcome};

pub struct WaitReady;

#[derive(Debug, Deserialize)]
pub struct Args {
    #[serde(flatten)]
    object: DeploymentRef,
    timeout_secs: Option<i64>,
}

impl Args {
    fn wait(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.unwrap_or(300).max(0) as u64)
    }
}

impl Act for WaitReady {
    const SPEC: ActionSpec = ActionSpec {
        name: "k8s.wait_ready",
        summary: "Wait until a Deployment's rollout is complete and all replicas are available.",
        args: &[
            CLUSTER,
            NAMESPACE,
            DEPLOYMENT,
            opt("timeout_secs", ArgKind::Int, Some("300"), "give up after this long"),
        ],
        exactly_one_of: &[],
        idempotent: true,
        output: "`ready_replicas`, `waited_secs`",
        kube: &[rule("apps", "deployments", &["get"])],
    };
    type Args = Args;

    /// Waiting changes nothing, so it locks nothing.
    fn timeout(args: &Args) -> Duration {
        args.wait() + Duration::from_secs(10)
    }

    fn only_waits() -> bool {
        true
    }

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        wait_ready(args, cx).await
    }
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
async fn wait_ready(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
    let what = args.object.checked()?;
    let (namespace, name) = (args.object.namespace.as_str(), args.object.deployment.as_str());
    let timeout = args.wait();
    let client = cx.backends.kube.client(args.object.cluster()).await?;
    let deployments: Api<Deployment> = Api::namespaced(client, namespace);
    let started = Instant::now();
    loop {
        let dep = deployments.get(name).await.map_err(|e| kube_error(&what, e))?;
        let (ready, state) = readiness(&dep);
        let ready_replicas = dep.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        if cx.dry_run {
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
