//! What a case runs against, made fresh for each: the fake Kubernetes API
//! server seeded from `cluster:`, and a recorder standing in for every
//! plain-HTTP endpoint (Slack, Prometheus, AlertManager, `http` steps) that
//! answers from `responses:` and keeps every request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use fake_kube::{FakeKube, PodState};
use serde_json::json;

use super::case::{Response, Seed};

/// The Slack webhook a case's engine posts to; the recorder answers it.
pub const SLACK_WEBHOOK: &str = "http://slack.laojun-test/webhook";
pub const PROMETHEUS: &str = "http://prometheus";
pub const ALERTMANAGER: &str = "http://alertmanager";
/// How Route53's requests are named in `responses:` and `expect.requests`.
pub const ROUTE53: &str = "http://route53";

/// One request the recorder saw.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub body: String,
}

impl Request {
    /// The text of a Slack post, when this is one.
    pub fn slack_text(&self) -> Option<String> {
        if !self.url.starts_with(SLACK_WEBHOOK) {
            return None;
        }
        let body: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        body["text"].as_str().map(str::to_string)
    }
}

struct Answers {
    responses: Vec<(Response, regex::Regex, usize)>,
    seen: Vec<Request>,
}

/// The recorder: a local HTTP server the actions' requests go to (as their
/// proxy), so no request of a case leaves the machine.
pub struct Recorder {
    pub url: String,
    answers: Arc<Mutex<Answers>>,
    server: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub async fn start(responses: &[Response]) -> anyhow::Result<Recorder> {
        let responses = responses.iter().map(|r| (r.clone(), glob(&r.url), 0)).collect();
        let answers = Arc::new(Mutex::new(Answers {
            responses,
            seen: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let shared = answers.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
            let shared = shared.clone();
            async move { answer(&shared, method, uri, body) }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Recorder {
            url: format!("http://{addr}"),
            answers,
            server,
        })
    }

    pub fn requests(&self) -> Vec<Request> {
        lock(&self.answers).seen.clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(m: &Mutex<Answers>) -> std::sync::MutexGuard<'_, Answers> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `*` matches any run of characters; everything else itself.
pub fn glob(pattern: &str) -> regex::Regex {
    let parts: Vec<String> = pattern.split('*').map(regex::escape).collect();
    regex::Regex::new(&format!("^{}$", parts.join(".*"))).unwrap_or_else(|_| regex::Regex::new("^$").expect("valid"))
}

fn answer(shared: &Mutex<Answers>, method: Method, uri: Uri, body: Bytes) -> axum::response::Response {
    if method == Method::CONNECT {
        let why = format!("laojun test answers plain-HTTP requests only; {uri} is HTTPS");
        return (StatusCode::BAD_GATEWAY, why).into_response();
    }
    // Through a proxy the request line carries the whole URL; Route53 (the
    // AWS SDK has its own client) comes straight here.
    let url = match uri.scheme() {
        Some(_) => uri.to_string(),
        None => format!("{ROUTE53}{uri}"),
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut answers = lock(shared);
    answers.seen.push(Request {
        method: method.to_string(),
        url: url.clone(),
        body: body.clone(),
    });
    let haystack = format!("{} {}", uri.query().unwrap_or_default(), body);
    let hit = answers.responses.iter_mut().find(|(r, pattern, used)| {
        r.method.as_deref().is_none_or(|m| m == method.as_str())
            && pattern.is_match(&url)
            && r.contains
                .as_deref()
                .is_none_or(|c| haystack.contains(c) || decoded(&haystack).contains(c))
            && r.times.is_none_or(|t| *used < t)
    });
    if let Some((response, _, used)) = hit {
        *used += 1;
        let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
        return match &response.body {
            serde_json::Value::String(text) => (status, text.clone()).into_response(),
            json => (status, axum::Json(json.clone())).into_response(),
        };
    }
    if url.starts_with(SLACK_WEBHOOK) {
        return (StatusCode::OK, "ok").into_response();
    }
    let why = format!("laojun test: no response for {method} {url}; add one under `responses:`");
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"status": "error", "error": why})),
    )
        .into_response()
}

/// A form body or query as text (`a%3Db+c` → `a=b c`), so `contains` can
/// be written as the query reads.
fn decoded(text: &str) -> String {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(text.trim()).unwrap_or_default();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The fake cluster seeded for a case, and its kubeconfig.
pub struct Cluster {
    pub kube: FakeKube,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    pub async fn start(seed: &Seed, dir: &std::path::Path) -> anyhow::Result<Cluster> {
        let kube = FakeKube::start().await?;
        let kubeconfig = dir.join("kubeconfig");
        let mut contexts = vec!["laojun-test"];
        contexts.extend(seed.contexts.iter().map(String::as_str));
        kube.write_kubeconfig(&kubeconfig, &contexts)?;
        for d in &seed.deployments {
            let labels: Vec<(&str, &str)> = d.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            // Seeding again rolls out the next revision, fully ready.
            for image in &d.revisions {
                kube.add_deployment_with_labels(&d.namespace, &d.name, image, d.replicas, &labels);
            }
        }
        for s in &seed.services {
            let selector: Vec<(&str, &str)> = s.selector.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            kube.add_service(&s.namespace, &s.name, &selector);
        }
        for p in &seed.pods {
            let reason = p.reason.as_deref();
            let state = match p.state.as_str() {
                "CrashLoopBackOff" => PodState::Waiting {
                    reason: reason.unwrap_or("CrashLoopBackOff"),
                    restarts: p.restarts,
                },
                "Pending" => PodState::Pending {
                    reason: reason.unwrap_or("ContainerCreating"),
                },
                "Succeeded" => PodState::Succeeded,
                "Failed" => PodState::Failed {
                    reason: reason.unwrap_or("Error"),
                },
                _ => PodState::Running,
            };
            let name = match (&p.name, &p.deployment) {
                (Some(name), _) => {
                    kube.add_pod(&p.namespace, name, &[], state);
                    name.clone()
                }
                (None, Some(deployment)) => {
                    let Some(first) = kube.pods_of(&p.namespace, deployment).into_iter().next() else {
                        anyhow::bail!(
                            "`cluster.pods` names deployment {deployment} in {}, which `cluster.deployments` does not seed",
                            p.namespace
                        );
                    };
                    kube.set_pod_state(&p.namespace, &first, state);
                    first
                }
                (None, None) => continue,
            };
            let lines: Vec<&str> = p.logs.iter().map(String::as_str).collect();
            kube.append_logs(&p.namespace, &name, None, &lines);
        }
        for (status, count) in &seed.fail_next {
            kube.fail_next(*count, *status);
        }
        Ok(Cluster { kube, kubeconfig })
    }
}
