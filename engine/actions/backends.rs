//! Connections to the outside world, made once and shared by all runs.

use std::time::Duration;

use super::{dns, k8s};
use crate::secret::Secret;

/// Connections to the outside, shared by all runs.
pub struct Backends {
    pub http: reqwest::Client,
    pub slack_webhook: Option<Secret>,
    pub kube: k8s::Kube,
    pub route53: dns::Route53,
    /// `prometheus:` and `alertmanager:` in the config.
    pub prometheus: crate::config::Endpoint,
    pub alertmanager: crate::config::Endpoint,
}

impl Backends {
    /// Backends for `config`, with the Slack webhook already resolved.
    pub fn from_config(config: &crate::config::Config, slack_webhook: Option<Secret>) -> Self {
        let mut b = Backends::new(slack_webhook);
        b.kube = k8s::Kube::new(config.kubernetes.kubeconfig.clone(), config.kubernetes.context.clone());
        b.route53 = dns::Route53::new(config.aws.region.clone(), config.aws.endpoint_url.clone());
        b.prometheus = config.prometheus.clone();
        b.alertmanager = config.alertmanager.clone();
        b
    }

    /// Backends with default Kubernetes and AWS settings.
    pub fn new(slack_webhook: Option<Secret>) -> Self {
        let http = http_client(None);
        Backends {
            http,
            slack_webhook,
            kube: k8s::Kube::new(None, None),
            route53: dns::Route53::new("us-east-1".into(), None),
            prometheus: Default::default(),
            alertmanager: Default::default(),
        }
    }
}

impl Backends {
    /// Sends every plain-HTTP request of the actions (Slack, `http`,
    /// Prometheus, AlertManager; Route53 too) to `proxy` instead, as `laojun test` does
    /// to answer them from a case's `responses`.
    pub fn through_proxy(mut self, proxy: &str) -> Self {
        self.http = http_client(reqwest::Proxy::http(proxy).ok());
        // The AWS SDK has its own client: Route53 goes to the proxy directly.
        self.route53 = dns::Route53::offline(proxy.to_string());
        self
    }
}

fn http_client(proxy: Option<reqwest::Proxy>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("laojun/", env!("CARGO_PKG_VERSION")));
    if let Some(proxy) = proxy {
        builder = builder.proxy(proxy);
    }
    builder.build().unwrap_or_default()
}
