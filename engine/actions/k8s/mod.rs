//! Kubernetes actions through kube-rs, one file each: roll back, scale,
//! switch traffic, restart, set an image, wait until ready, clean up; and
//! the reads an assessment makes: pods, logs. This file holds what they
//! share: clients per context, error mapping, the arguments naming an object. Each step may name a `cluster` (a kubeconfig
//! context); without one the configured context is used. Dry runs go to
//! the API server with `dryRun=All`, so they report exactly what the server
//! would have done.

pub mod cleanup;
pub mod logs;
pub mod pods;
pub mod restart;
pub mod rollback;
pub mod scale;
pub mod set_image;
pub mod switch_traffic;
pub mod wait_ready;

use std::collections::HashMap;
use std::path::PathBuf;

use kube::api::PatchParams;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::spec::{opt, req, Arg, ArgKind};
use super::{status_is_retryable, ActionError, Target};

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

    /// The client for `cluster` (a kubeconfig context; empty or none: the
    /// configured context, else the default one).
    pub(crate) async fn client(&self, cluster: Option<&str>) -> Result<kube::Client, ActionError> {
        let context = cluster
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .or_else(|| self.context.clone());
        let key = context.clone().unwrap_or_default();
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let which = context.as_deref().unwrap_or("the default cluster");
        let config = self.config_for(context.as_deref()).await?;
        let client = kube::Client::try_from(config)
            .map_err(|e| ActionError::fatal(format!("Kubernetes client for {which}: {e}")))?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The kubeconfig to read, and where it came from: the configured one;
    /// none in a pod (`KUBERNETES_SERVICE_HOST`) without one; else
    /// `$KUBECONFIG` or `~/.kube/config` when there.
    fn kubeconfig(&self) -> Result<Option<(Kubeconfig, String)>, ActionError> {
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        Ok(match &self.kubeconfig {
            Some(path) => Some((
                Kubeconfig::read_from(path)
                    .map_err(|e| ActionError::fatal(format!("kubeconfig {}: {e}", path.display())))?,
                path.display().to_string(),
            )),
            None if in_cluster => None,
            None => {
                let from_env = std::env::var_os("KUBECONFIG").is_some();
                let source = if from_env { "$KUBECONFIG" } else { "~/.kube/config" };
                match Kubeconfig::read() {
                    Ok(kc) => Some((kc, source.to_string())),
                    // A file that is there but does not read is the user's to fix.
                    Err(e) if from_env || home_kubeconfig_exists() => {
                        return Err(ActionError::fatal(format!("kubeconfig {source}: {e}")))
                    }
                    Err(_) => None,
                }
            }
        })
    }

    /// The kubeconfig's contexts other than the one a step without a
    /// `cluster` uses (for `laojun check`); none without a kubeconfig.
    pub fn other_contexts(&self) -> Result<Vec<String>, ActionError> {
        let Some((kc, _)) = self.kubeconfig()? else {
            return Ok(Vec::new());
        };
        let default = self.context.clone().or(kc.current_context.clone());
        Ok(kc
            .contexts
            .iter()
            .map(|c| c.name.clone())
            .filter(|name| Some(name) != default.as_ref())
            .collect())
    }

    /// Where a context's API server is and how to authenticate: the
    /// configured kubeconfig; else, in a pod (`KUBERNETES_SERVICE_HOST`),
    /// its ServiceAccount; else `$KUBECONFIG` or `~/.kube/config`.
    async fn config_for(&self, context: Option<&str>) -> Result<kube::Config, ActionError> {
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let kubeconfig = self.kubeconfig()?;
        match (kubeconfig, context) {
            (Some((kc, source)), context) => {
                if let Some(name) = context {
                    if !kc.contexts.iter().any(|c| c.name == name) {
                        let known: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
                        return Err(ActionError::fatal(format!(
                            "cluster `{name}` is not a context in {source}; its contexts are: {}",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        )));
                    }
                }
                let options = KubeConfigOptions {
                    context: context.map(str::to_string),
                    ..KubeConfigOptions::default()
                };
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| ActionError::fatal(format!("Kubernetes config for {}: {e}", context.unwrap_or("the current context"))))
            }
            (None, None) if in_cluster => kube::Config::incluster()
                .map_err(|e| ActionError::fatal(format!("in-cluster Kubernetes config (the pod's ServiceAccount): {e}"))),
            (None, Some(name)) if in_cluster => Err(ActionError::fatal(format!(
                "cluster `{name}` is not configured: laojun runs in-cluster with its ServiceAccount, which reaches only the cluster it runs in; leave `cluster` empty for that one, or set kubernetes.kubeconfig to a file with a `{name}` context"
            ))),
            (None, _) => Err(ActionError::fatal(
                "no Kubernetes configuration: set kubernetes.kubeconfig in laojun.yaml or $KUBECONFIG, or run laojun in a pod with a ServiceAccount".to_string(),
            )),
        }
    }
}

fn home_kubeconfig_exists() -> bool {
    std::env::var_os("HOME").is_some_and(|home| PathBuf::from(home).join(".kube/config").is_file())
}

pub(crate) fn patch_params(dry_run: bool) -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        dry_run,
        ..PatchParams::default()
    }
}

/// A kube error as an action error, saying whether a retry can help.
pub(crate) fn kube_error(what: &str, e: kube::Error) -> ActionError {
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
        // Connection refused, timeouts, TLS hiccups: the server may come
        // back. The causes say which (kube's own text stops at "Connect").
        _ => ActionError::retry(format!("{what}: {}", crate::causes::with_causes(&e))),
    }
}

pub(crate) const CLUSTER: Arg = opt(
    "cluster",
    ArgKind::Str,
    Some("the configured context"),
    "kubeconfig context to act on (one cluster per region)",
);
pub(crate) const NAMESPACE: Arg = req("namespace", ArgKind::Str, "namespace of the object");
pub(crate) const DEPLOYMENT: Arg = req("deployment", ArgKind::Str, "name of the Deployment");

/// The arguments that name a Deployment, shared by the Deployment actions.
#[derive(Debug, serde::Deserialize)]
pub struct DeploymentRef {
    pub cluster: Option<String>,
    pub namespace: String,
    pub deployment: String,
}

impl DeploymentRef {
    pub(crate) fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref().filter(|c| !c.is_empty())
    }

    pub(crate) fn target(&self) -> Target {
        object_target(self.cluster.as_deref(), &self.namespace, "deployment", &self.deployment)
    }

    /// Checks the names are there and says what the step acts on.
    pub(crate) fn checked(&self) -> Result<String, ActionError> {
        non_empty(&self.namespace, "namespace")?;
        non_empty(&self.deployment, "deployment")?;
        Ok(format!("deployment/{} in {}", self.deployment, self.namespace))
    }
}

pub(crate) fn object_target(cluster: Option<&str>, namespace: &str, kind: &str, name: &str) -> Target {
    Target(format!("k8s:{}:{namespace}:{kind}/{name}", cluster.unwrap_or_default()))
}

pub(crate) fn non_empty(value: &str, name: &str) -> Result<(), ActionError> {
    if value.is_empty() {
        Err(ActionError::fatal(format!("`{name}` is empty")))
    } else {
        Ok(())
    }
}

pub(crate) fn revision_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<i64> {
    meta.annotations.as_ref()?.get(REVISION)?.parse().ok()
}

pub(crate) fn first_image(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> String {
    template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// A Deployment's selector in the `?labelSelector=` form (`k=v,k in (a,b)`).
pub(crate) fn selector_of(deployment: &k8s_openapi::api::apps::v1::Deployment) -> String {
    let selector = &deployment.spec.selector;
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "DoesNotExist" => format!("!{}", e.key),
            _ => e.key.clone(),
        });
    }
    parts.join(",")
}

/// A Deployment's ReplicaSets: those its selector matches that it
/// controls (by owner uid), as `kubectl rollout` finds them.
pub(crate) async fn replica_sets_of(
    client: kube::Client,
    deployment: &k8s_openapi::api::apps::v1::Deployment,
    what: &str,
) -> Result<Vec<k8s_openapi::api::apps::v1::ReplicaSet>, ActionError> {
    let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
    let uid = deployment.metadata.uid.clone().unwrap_or_default();
    let sets: kube::Api<k8s_openapi::api::apps::v1::ReplicaSet> = kube::Api::namespaced(client, &namespace);
    let list = sets
        .list(&kube::api::ListParams::default().labels(&selector_of(deployment)))
        .await
        .map_err(|e| kube_error(what, e))?;
    Ok(list
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|r| r.uid == uid && r.controller == Some(true)))
        })
        .collect())
}

/// Read-only questions `laojun check` asks a cluster.
impl Kube {
    /// The API server's version (`GET /version`): it is reachable and
    /// takes the credentials.
    pub async fn server_version(&self, cluster: Option<&str>) -> Result<String, ActionError> {
        let client = self.client(cluster).await?;
        let info = client
            .apiserver_version()
            .await
            .map_err(|e| kube_error("GET /version", e))?;
        Ok(info.git_version)
    }

    /// Whether the credentials may `verb` `resource` (`deployments/scale`
    /// for a subresource) in `namespace` (`None`: cluster-wide), by a
    /// SelfSubjectAccessReview, as `kubectl auth can-i` asks.
    pub async fn can_i(
        &self,
        cluster: Option<&str>,
        namespace: Option<&str>,
        group: &str,
        resource: &str,
        verb: &str,
    ) -> Result<bool, ActionError> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        };
        let client = self.client(cluster).await?;
        let (base, sub) = resource.split_once('/').map_or((resource, None), |(b, s)| (b, Some(s)));
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: namespace.map(str::to_string),
                    verb: Some(verb.to_string()),
                    group: Some(group.to_string()),
                    resource: Some(base.to_string()),
                    subresource: sub.map(str::to_string),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let reviews: kube::Api<SelfSubjectAccessReview> = kube::Api::all(client);
        let answer = reviews
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| kube_error("SelfSubjectAccessReview", e))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}
