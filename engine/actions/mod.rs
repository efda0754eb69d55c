//! What steps do to the world. One module per backend; each action takes
//! its rendered, typed arguments and returns an outcome, or an error that
//! says whether trying again can help. Actions never touch the store: the
//! executor journals around them.

pub mod dns;
pub mod http;
pub mod k8s;
pub mod slack;

use std::time::Duration;

use serde_json::Value;

use crate::secret::Secret;

/// What a successful action gives back.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `steps.<id>.output` for later steps.
    pub output: Value,
    /// One line for the timeline: what changed, or in a dry run what would.
    pub summary: String,
}

/// A failed action. `retryable` is the action's judgement: a timeout, a
/// refused connection, a 5xx, a 409 or throttling may pass; a 404 or a bad
/// request will not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    pub retryable: bool,
    pub message: String,
}

impl ActionError {
    pub fn retry(message: impl Into<String>) -> Self {
        ActionError {
            retryable: true,
            message: message.into(),
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        ActionError {
            retryable: false,
            message: message.into(),
        }
    }
}

/// About the incident a run acts for, for messages.
#[derive(Debug, Clone, Default)]
pub struct IncidentInfo {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub link: Option<String>,
}

/// Connections to the outside, shared by all runs.
pub struct Backends {
    pub http: reqwest::Client,
    pub slack_webhook: Option<Secret>,
    pub kube: k8s::Kube,
    pub route53: dns::Route53,
}

impl Backends {
    /// Backends for `config`, with the Slack webhook already resolved.
    pub fn from_config(config: &crate::config::Config, slack_webhook: Option<Secret>) -> Self {
        let mut b = Backends::new(slack_webhook);
        b.kube = k8s::Kube::new(config.kubernetes.kubeconfig.clone(), config.kubernetes.context.clone());
        b.route53 = dns::Route53::new(config.aws.region.clone(), config.aws.endpoint_url.clone());
        b
    }

    /// Backends with default Kubernetes and AWS settings.
    pub fn new(slack_webhook: Option<Secret>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("laojun/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Backends {
            http,
            slack_webhook,
            kube: k8s::Kube::new(None, None),
            route53: dns::Route53::new("us-east-1".into(), None),
        }
    }
}

/// Reads a string argument.
pub fn str_arg<'a>(args: &'a Value, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

pub fn int_arg(args: &Value, name: &str) -> Option<i64> {
    args.get(name).and_then(Value::as_i64)
}

/// A reqwest error as text that never carries the URL (which may hold a
/// secret, such as a Slack webhook).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

/// Whether an HTTP status is worth retrying.
pub fn status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429) || status >= 500
}
