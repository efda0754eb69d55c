//! A fake Kubernetes API server for tests, demos and anyone without a
//! cluster: enough of `apps/v1` Deployments and ReplicaSets and `v1`
//! Services and Pods, with discovery, watches, all three patch types, the
//! `scale` subresource, pod logs, optimistic concurrency, `dryRun=All`, a
//! simulated deployment controller (which keeps each ReplicaSet's pods)
//! and fault injection, for `kubectl` and kube-rs to talk to over plain
//! HTTP on loopback, or over HTTPS with a bearer token it checks
//! ([`Serving`], as a ServiceAccount's token is checked in a cluster).
//! With RBAC enforced it answers `SelfSubjectAccessReview` from the Roles.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let kube = fake_kube::FakeKube::start().await?;
//! kube.add_deployment("prod", "web", "web:1.0", 3);
//! kube.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"), &["local"])?;
//! // kubectl --kubeconfig /tmp/kubeconfig -n prod rollout undo deployment/web
//! # Ok(()) }
//! ```
//!
//! What it does not do, so a test that needs it knows to look elsewhere:
//! no kubelet (pods are in whatever state the controller or the test put
//! them, and a deleted pod is not replaced until its ReplicaSet next
//! changes), no `exec` or `attach`, no protobuf
//! bodies (kubectl's `create deployment` sends protobuf and gets 415), no
//! OpenAPI documents (`kubectl apply` needs `--validate=false`), no
//! server-side apply, and watches are long polls: each answers with the
//! next batch of events (or a bookmark) and ends, and clients re-watch.

mod controller;
mod discovery;
mod http;
mod patch;
mod pods;
mod proto;
mod rbac;
mod selector;
mod store;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::Method;
use serde_json::{json, Map, Value};

use controller::Pending;
pub use controller::REVISION as REVISION_ANNOTATION;
pub use pods::PodState;
use store::{ApiError, Kind, State};

/// State shared by the HTTP handlers, the settle timers and the handle.
pub(crate) struct Shared {
    state: Mutex<State>,
    runtime: tokio::runtime::Handle,
    /// `host:port`, for discovery's serverAddressByClientCIDRs.
    address: String,
    closed: AtomicBool,
    /// The bearer token every request must carry, when set.
    token: Option<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the fake down with it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Records a request; returns an injected fault's status, if one is due.
    fn record(&self, method: &Method, full_path: String, content_type: Option<String>, path: &str) -> Option<u16> {
        let mut state = self.lock();
        state.requests.push((method.to_string(), full_path, content_type));
        // Faults are for the API calls a test aims them at: discovery and
        // access reviews (a client's or `laojun check`'s) never take one.
        if discovery::is_discovery(path) || path == http::SELF_SUBJECT_ACCESS_REVIEWS {
            return None;
        }
        state.faults.pop_front()
    }

    /// Settles a rollout once the ready delay has passed.
    fn schedule(self: &Arc<Self>, pending: Option<Pending>) {
        let Some(pending) = pending else { return };
        let delay = self.lock().ready_delay;
        let shared = Arc::clone(self);
        self.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            controller::settle(&mut shared.lock(), &pending);
        });
    }

    /// Creates an object from a client's body (POST).
    fn create(self: &Arc<Self>, kind: Kind, namespace: &str, body: Value, dry_run: bool) -> Result<Value, ApiError> {
        let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let mut state = self.lock();
        if state.get(kind, namespace, &name).is_some() {
            return Err(ApiError {
                code: 409,
                reason: "AlreadyExists",
                message: format!("{} {name:?} already exists", kind.qualified()),
            });
        }
        let admitted = state.admit(kind, namespace, &name, body, None)?;
        if dry_run {
            return Ok(admitted);
        }
        let stored = state.store(kind, admitted);
        let pending = sync_if_deployment(&mut state, kind, namespace, &name);
        drop(state);
        self.schedule(pending);
        Ok(stored)
    }

    /// Replaces an object with what `change` makes of the current one,
    /// refusing a stale resourceVersion, as PUT and PATCH do. Returns the
    /// object as written (before the controller reacts to it).
    fn update(
        self: &Arc<Self>,
        kind: Kind,
        namespace: &str,
        name: &str,
        dry_run: bool,
        change: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let current = state
            .get(kind, namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))?;
        let new = change(&current)?;
        let expected = new["metadata"]["resourceVersion"].as_str().filter(|v| !v.is_empty());
        if expected.is_some_and(|v| current["metadata"]["resourceVersion"] != v) {
            return Err(ApiError::conflict(kind, name));
        }
        let mut admitted = state.admit(kind, namespace, name, new, Some(&current))?;
        if dry_run {
            admitted["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            return Ok(admitted);
        }
        let stored = state.store(kind, admitted);
        let pending = sync_if_deployment(&mut state, kind, namespace, name);
        drop(state);
        self.schedule(pending);
        Ok(stored)
    }

    /// Deletes an object; a deployment takes its ReplicaSets with it.
    fn delete(&self, kind: Kind, namespace: &str, name: &str, dry_run: bool) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let current = state
            .get(kind, namespace, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))?;
        if dry_run {
            return Ok(current);
        }
        match kind {
            Kind::Deployments => {
                for rs in controller::owned_replica_sets(&state, &current) {
                    pods::remove_owned(&mut state, &rs);
                    let rs_name = rs["metadata"]["name"].as_str().unwrap_or_default();
                    state.remove(Kind::ReplicaSets, namespace, rs_name);
                }
            }
            Kind::ReplicaSets => pods::remove_owned(&mut state, &current),
            Kind::Pods => return Ok(pods::remove(&mut state, namespace, name).unwrap_or(current)),
            Kind::Services => {}
        }
        Ok(state.remove(kind, namespace, name).unwrap_or(current))
    }
}

fn sync_if_deployment(state: &mut State, kind: Kind, namespace: &str, name: &str) -> Option<Pending> {
    if kind == Kind::Deployments {
        controller::sync(state, namespace, name)
    } else {
        None
    }
}

/// A running fake API server. Dropping it stops the server.
pub struct FakeKube {
    shared: Arc<Shared>,
    addr: SocketAddr,
    scheme: &'static str,
    server: tokio::task::JoinHandle<()>,
}

/// How the fake serves: plain HTTP without auth (the default), or HTTPS,
/// and whether every request must carry `Authorization: Bearer <token>`
/// (401 `Unauthorized` otherwise, as a real API server answers).
#[derive(Debug, Clone, Default)]
pub struct Serving {
    pub tls: Option<Tls>,
    pub token: Option<String>,
}

/// The server's certificate chain and key, PEM.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_pem: String,
    pub key_pem: String,
}

impl FakeKube {
    /// Binds 127.0.0.1 on a free port and serves in a tokio task.
    pub async fn start() -> std::io::Result<FakeKube> {
        FakeKube::start_on("127.0.0.1:0").await
    }

    /// Binds `addr` (e.g. "127.0.0.1:8001") and serves in a tokio task.
    pub async fn start_on(addr: &str) -> std::io::Result<FakeKube> {
        FakeKube::serve(addr, Serving::default()).await
    }

    /// Binds `addr` and serves as `serving` says, in a tokio task.
    pub async fn serve(addr: &str, serving: Serving) -> std::io::Result<FakeKube> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            runtime: tokio::runtime::Handle::current(),
            address: addr.to_string(),
            closed: AtomicBool::new(false),
            token: serving.token,
        });
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(Arc::clone(&shared));
        let (scheme, server) = match serving.tls {
            None => {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let server = tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::warn!(error = %e, "fake kube-apiserver stopped");
                    }
                });
                ("http", server)
            }
            Some(tls) => {
                // The process may not have chosen a provider; ring is the one
                // this workspace builds rustls with.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                    tls.cert_pem.into_bytes(),
                    tls.key_pem.into_bytes(),
                )
                .await?;
                let server = axum_server::from_tcp_rustls(listener, config)?;
                let server = tokio::spawn(async move {
                    if let Err(e) = server.serve(app.into_make_service()).await {
                        tracing::warn!(error = %e, "fake kube-apiserver stopped");
                    }
                });
                ("https", server)
            }
        };
        Ok(FakeKube {
            shared,
            addr,
            scheme,
            server,
        })
    }

    /// The base URL, e.g. "http://127.0.0.1:40123".
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes a kubeconfig (no TLS, no auth) with one context per name, all
    /// pointing at this server with namespace `default`; the first is current.
    pub fn write_kubeconfig(&self, path: &Path, contexts: &[&str]) -> std::io::Result<()> {
        let Some(current) = contexts.first() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a kubeconfig needs at least one context",
            ));
        };
        std::fs::write(
            path,
            kubeconfig(&self.url(), self.shared.token.as_deref(), contexts, current),
        )
    }

    /// Seeds a Deployment as if created and fully rolled out, with its
    /// ReplicaSet at revision 1. Labels and selector are `app=<name>`.
    /// Seeding one that exists rolls it out to the new template as the
    /// next revision, again fully ready at once.
    ///
    /// # Panics
    /// If the name or namespace is not usable.
    pub fn add_deployment(&self, namespace: &str, name: &str, image: &str, replicas: i64) {
        self.add_deployment_with_labels(namespace, name, image, replicas, &[]);
    }

    /// Like [`FakeKube::add_deployment`], with `extra_labels` on the pod
    /// template (the selector stays `app=<name>`).
    ///
    /// # Panics
    /// If the name or namespace is not usable.
    pub fn add_deployment_with_labels(
        &self,
        namespace: &str,
        name: &str,
        image: &str,
        replicas: i64,
        extra_labels: &[(&str, &str)],
    ) {
        let mut template_labels = Map::new();
        template_labels.insert("app".into(), json!(name));
        for (k, v) in extra_labels {
            template_labels.insert((*k).into(), json!(v));
        }
        let deployment = json!({
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": template_labels},
                    "spec": {"containers": [{
                        "name": name,
                        "image": image,
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    }]},
                },
            },
        });
        let mut state = self.shared.lock();
        let old = state.get(Kind::Deployments, namespace, name).cloned();
        let admitted = state
            .admit(Kind::Deployments, namespace, name, deployment, old.as_ref())
            .unwrap_or_else(|e| panic!("add_deployment({namespace}/{name}): {}", e.message));
        state.store(Kind::Deployments, admitted);
        // A seeded deployment is already rolled out, whatever the delay.
        if let Some(pending) = controller::sync(&mut state, namespace, name) {
            controller::settle(&mut state, &pending);
        }
    }

    /// Rolls every container of a deployment to `image`, as `kubectl set
    /// image` would; the rollout becomes ready after the ready delay.
    ///
    /// # Panics
    /// If the deployment does not exist.
    pub fn set_image(&self, namespace: &str, name: &str, image: &str) {
        let result = self
            .shared
            .update(Kind::Deployments, namespace, name, false, |current| {
                let mut deployment = current.clone();
                if let Some(containers) = deployment["spec"]["template"]["spec"]["containers"].as_array_mut() {
                    for container in containers.iter_mut().filter_map(Value::as_object_mut) {
                        container.insert("image".into(), json!(image));
                    }
                }
                Ok(deployment)
            });
        if let Err(e) = result {
            panic!("set_image({namespace}/{name}): {}", e.message);
        }
    }

    /// Seeds (or replaces) a ClusterIP Service on port 80 with `selector`.
    ///
    /// # Panics
    /// If the name or namespace is not usable.
    pub fn add_service(&self, namespace: &str, name: &str, selector: &[(&str, &str)]) {
        let selector: Map<String, Value> = selector.iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect();
        let service = json!({
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            },
        });
        let mut state = self.shared.lock();
        let old = state.get(Kind::Services, namespace, name).cloned();
        let admitted = state
            .admit(Kind::Services, namespace, name, service, old.as_ref())
            .unwrap_or_else(|e| panic!("add_service({namespace}/{name}): {}", e.message));
        state.store(Kind::Services, admitted);
    }

    /// Seeds a pod with no owner (say, a finished Job's), one container
    /// named like the pod, in `state`.
    ///
    /// # Panics
    /// If the name or namespace is not usable.
    pub fn add_pod(&self, namespace: &str, name: &str, labels: &[(&str, &str)], state: PodState<'_>) {
        let labels: Map<String, Value> = labels.iter().map(|(k, v)| ((*k).to_string(), json!(v))).collect();
        let mut guard = self.shared.lock();
        let pod = pods::standalone(namespace, name, &Value::Object(labels));
        let admitted = guard
            .admit(Kind::Pods, namespace, name, pod, None)
            .unwrap_or_else(|e| panic!("add_pod({namespace}/{name}): {}", e.message));
        let mut admitted = pods::with_state(admitted, state);
        store::prune_nulls(&mut admitted);
        guard.store(Kind::Pods, admitted);
    }

    /// The names of a deployment's pods (those of all its ReplicaSets),
    /// oldest first.
    pub fn pods_of(&self, namespace: &str, deployment: &str) -> Vec<String> {
        let state = self.shared.lock();
        let Some(d) = state.get(Kind::Deployments, namespace, deployment).cloned() else {
            return Vec::new();
        };
        let owners: Vec<Value> = controller::owned_replica_sets(&state, &d)
            .iter()
            .map(|rs| rs["metadata"]["uid"].clone())
            .collect();
        let mut owned: Vec<Value> = state
            .list(Kind::Pods, Some(namespace))
            .into_iter()
            .filter(|p| {
                p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| owners.contains(&r["uid"])))
            })
            .collect();
        owned.sort_by_key(|p| p["metadata"]["uid"].as_str().unwrap_or_default().to_string());
        owned
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }

    /// Puts a pod in `state` (a crash loop, a finished Job), which the
    /// controller then leaves as it is.
    ///
    /// # Panics
    /// If the pod does not exist.
    pub fn set_pod_state(&self, namespace: &str, name: &str, state: PodState<'_>) {
        if let Err(e) = pods::set_state(&mut self.shared.lock(), namespace, name, state) {
            panic!("set_pod_state({namespace}/{name}): {}", e.message);
        }
    }

    /// Appends lines to a pod's log, written now (its only container's, or
    /// `container`'s).
    ///
    /// # Panics
    /// If the pod does not exist.
    pub fn append_logs(&self, namespace: &str, pod: &str, container: Option<&str>, lines: &[&str]) {
        self.append_logs_at(namespace, pod, container, lines, chrono::Utc::now());
    }

    /// Like [`FakeKube::append_logs`], written at `at` (for `sinceSeconds`).
    ///
    /// # Panics
    /// If the pod does not exist.
    pub fn append_logs_at(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        lines: &[&str],
        at: chrono::DateTime<chrono::Utc>,
    ) {
        if let Err(e) = pods::append(&mut self.shared.lock(), namespace, pod, container, lines, at) {
            panic!("append_logs({namespace}/{pod}): {}", e.message);
        }
    }

    /// The current object, or None. `kind` is "deployments", "replicasets",
    /// "services" or "pods" (singulars and short names work too).
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let kind = Kind::parse(kind)?;
        self.shared.lock().get(kind, namespace, name).cloned()
    }

    /// Every object of a kind in a namespace, by name.
    pub fn list(&self, kind: &str, namespace: &str) -> Vec<Value> {
        match Kind::parse(kind) {
            Some(kind) => self.shared.lock().list(kind, Some(namespace)),
            None => Vec::new(),
        }
    }

    /// How long after a template or replica change a deployment becomes
    /// ready (default 200 ms); zero makes it ready at once.
    pub fn set_ready_delay(&self, delay: Duration) {
        self.shared.lock().ready_delay = delay;
    }

    /// Makes a deployment's rollout ready now, as its ready delay passing
    /// would: a test that holds a rollout with a long delay decides when it
    /// ends instead of racing a timer. A ready deployment stays as it is.
    pub fn finish_rollout(&self, namespace: &str, name: &str) {
        let mut state = self.shared.lock();
        let generation = state
            .get(Kind::Deployments, namespace, name)
            .and_then(|d| d["metadata"]["generation"].as_i64());
        if let Some(generation) = generation {
            let pending = Pending {
                namespace: namespace.to_string(),
                name: name.to_string(),
                generation,
            };
            controller::settle(&mut state, &pending);
        }
    }

    /// The next `count` requests (discovery excepted) fail with `status`
    /// and a `Status` body; queued after any faults already pending.
    pub fn fail_next(&self, count: usize, status: u16) {
        let mut state = self.shared.lock();
        state.faults.extend(std::iter::repeat_n(status, count));
    }

    /// Every request seen: (method, path with query, content-type).
    pub fn requests(&self) -> Vec<(String, String, Option<String>)> {
        self.shared.lock().requests.clone()
    }

    /// From now on, serves only what these Roles and ClusterRoles (as
    /// JSON objects; other kinds are ignored) allow, answering anything
    /// else with Kubernetes' 403 Forbidden. Bindings are not consulted:
    /// every client is the one identity the roles are for.
    pub fn enforce_rbac(&self, objects: &[Value]) {
        self.shared.lock().rbac = Some(rbac::grants(objects));
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        // Wake pending watches so they end instead of waiting out their timeout.
        let state = self.shared.lock();
        state.changed.send_replace(state.rv);
        drop(state);
        self.server.abort();
    }
}

/// A kubeconfig in YAML; names are JSON-quoted, which YAML accepts as-is.
fn kubeconfig(url: &str, token: Option<&str>, contexts: &[&str], current: &str) -> String {
    let q = |s: &str| Value::String(s.to_string()).to_string();
    let user = token.map_or_else(|| "{}".to_string(), |t| format!("{{token: {}}}", q(t)));
    let mut out = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake-kube\n  cluster:\n    server: {}\nusers:\n- name: fake-kube\n  user: {user}\ncontexts:\n",
        q(url)
    );
    for name in contexts {
        out.push_str(&format!(
            "- name: {}\n  context:\n    cluster: fake-kube\n    user: fake-kube\n    namespace: default\n",
            q(name)
        ));
    }
    out.push_str(&format!("current-context: {}\npreferences: {{}}\n", q(current)));
    out
}
