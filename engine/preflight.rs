//! `laojun check`: for each backend the catalog uses, with the configured
//! credentials and changing nothing, whether a run would get through —
//! Kubernetes reachable and every verb the runbooks need allowed (a
//! SelfSubjectAccessReview each, the same plan as `laojun rbac`), the
//! Route53 zones the catalog names readable, Slack's webhook configured
//! (nothing posted), Prometheus and AlertManager answering; and the
//! PostgreSQL store, when configured, reachable with a schema it reads. `serve` runs
//! the same checks at start and logs each failure as a warning.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use crate::actions::{Action, Backends};
use crate::catalog::Catalog;
use crate::config::{Endpoint, Resolved};
use crate::runbook::{OnFailure, Step};

/// How long one probe may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One line of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// `store`, `kubernetes`, `route53`, `slack`, `prometheus`, `alertmanager`.
    pub backend: &'static str,
    /// What was checked: `reachable`, `prod: patch deployments/scale`, a zone id.
    pub what: String,
    pub ok: bool,
    /// What was found; for a failure, what to fix.
    pub detail: String,
}

impl Check {
    fn pass(backend: &'static str, what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            backend,
            what: what.into(),
            ok: true,
            detail: detail.into(),
        }
    }
    fn fail(backend: &'static str, what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            ok: false,
            ..Check::pass(backend, what, detail)
        }
    }
}

/// Every check the catalog calls for, in the order of the report.
pub async fn run(resolved: &Resolved, catalog: &Catalog, namespaces: &[String]) -> Vec<Check> {
    let backends = Backends::from_config(&resolved.config, resolved.slack_webhook.clone());
    let used = used_actions(catalog);
    let mut checks = Vec::new();
    if let Some(pg) = &resolved.config.store.postgres {
        checks.push(postgres(pg).await);
    }
    if used.iter().any(|a| !a.spec().kube.is_empty()) {
        checks.extend(kubernetes(&backends, catalog, namespaces).await);
    }
    if used.contains(&Action::DnsFailover) {
        checks.extend(route53(&backends, catalog).await);
    }
    checks.push(slack(resolved, &used));
    let config = &resolved.config;
    if used.contains(&Action::PrometheusQuery) {
        checks.push(endpoint(&backends, "prometheus", &config.prometheus, "/-/ready").await);
    }
    if used
        .iter()
        .any(|a| matches!(a, Action::AlertmanagerSilence | Action::AlertmanagerExpireSilence))
    {
        checks.push(endpoint(&backends, "alertmanager", &config.alertmanager, "/-/ready").await);
    }
    checks
}

/// The PostgreSQL store: reachable with its credentials (TLS as the URL
/// says), its schema one this laojun reads, its tables writable.
async fn postgres(pg: &crate::config::Postgres) -> Check {
    let what = "reachable, schema, grants";
    let url = match crate::secret::resolve(&pg.url) {
        Ok(u) => u,
        Err(e) => return Check::fail("store", what, format!("store.postgres.url: {e}")),
    };
    let checked = async {
        let store = crate::store::PostgresStore::connect(url.expose(), 1, pg.ca_file.as_deref())?;
        store.check().await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, checked).await {
        Ok(Ok(detail)) => Check::pass("store", what, detail),
        Ok(Err(e)) => Check::fail("store", what, e.to_string()),
        Err(_) => Check::fail("store", what, format!("no answer in {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// The report as a table, one check per line.
pub fn table(checks: &[Check]) -> String {
    let width = |f: fn(&Check) -> usize| checks.iter().map(f).max().unwrap_or(0);
    let (b, w) = (width(|c| c.backend.len()).max(7), width(|c| c.what.len()).max(5));
    let mut out = format!("{:<b$}  {:<w$}  RESULT  DETAIL\n", "BACKEND", "CHECK");
    for c in checks {
        let result = if c.ok { "ok" } else { "FAIL" };
        let _ = writeln!(out, "{:<b$}  {:<w$}  {result:<6}  {}", c.backend, c.what, c.detail);
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    let _ = writeln!(out, "{} checks, {failed} failed", checks.len());
    out
}

/// Every action some step (or `on_failure` step) of the catalog runs.
fn used_actions(catalog: &Catalog) -> HashSet<Action> {
    catalog
        .runbooks
        .values()
        .flat_map(|r| all_steps(&r.steps))
        .map(|s| s.action)
        .collect()
}

/// A list's steps with their `on_failure` steps.
fn all_steps(list: &[Step]) -> Vec<&Step> {
    let mut out = Vec::new();
    for s in list {
        out.push(s);
        if let OnFailure::Steps(more) = &s.on_failure {
            out.extend(all_steps(more));
        }
    }
    out
}

async fn probe<T>(
    future: impl std::future::Future<Output = Result<T, crate::actions::ActionError>>,
) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, future).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.message),
        Err(_) => Err(format!("no answer in {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// The default cluster reachable, then one review per verb of the plan
/// `laojun rbac` makes.
async fn kubernetes(backends: &Backends, catalog: &Catalog, namespaces: &[String]) -> Vec<Check> {
    const K: &str = "kubernetes";
    let (named, any) = named_clusters(catalog);
    let mut clusters: Vec<Option<String>> = vec![None];
    let others = if any {
        match backends.kube.other_contexts() {
            Ok(others) => others,
            Err(e) => return vec![Check::fail(K, "reachable", e.to_string())],
        }
    } else {
        Vec::new()
    };
    clusters.extend(
        named
            .into_iter()
            .chain(others)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(Some),
    );
    let mut checks = Vec::new();
    for cluster in &clusters {
        checks.extend(cluster_checks(backends, catalog, namespaces, cluster.as_deref()).await);
    }
    checks
}

/// The contexts the catalog's Kubernetes steps name in `cluster`, and
/// whether some step's `cluster` is a template (so may be any context).
fn named_clusters(catalog: &Catalog) -> (BTreeSet<String>, bool) {
    let (mut named, mut any) = (BTreeSet::new(), false);
    for runbook in catalog.runbooks.values() {
        for step in all_steps(&runbook.steps)
            .into_iter()
            .filter(|s| !s.action.spec().kube.is_empty())
        {
            match step.with.get("cluster").and_then(|v| v.as_str()) {
                None | Some("") => {}
                Some(text) if text.contains("{{") => any = true,
                Some(name) => {
                    named.insert(name.to_string());
                }
            }
        }
    }
    (named, any)
}

/// Reachability and the plan's every verb in one cluster (`None`: the one
/// a step without `cluster` uses). The same RBAC goes to every cluster, so
/// each is asked for all of it.
async fn cluster_checks(
    backends: &Backends,
    catalog: &Catalog,
    namespaces: &[String],
    cluster: Option<&str>,
) -> Vec<Check> {
    const K: &str = "kubernetes";
    let prefix = cluster.map(|c| format!("{c}: ")).unwrap_or_default();
    let version = match probe(backends.kube.server_version(cluster)).await {
        Ok(v) => v,
        Err(e) => {
            return vec![Check::fail(
                K,
                format!("{prefix}reachable"),
                format!("{e}; set kubernetes.kubeconfig/context, or run in a pod with laojun's ServiceAccount"),
            )]
        }
    };
    let mut checks = vec![Check::pass(
        K,
        format!("{prefix}reachable"),
        format!("API server {version}"),
    )];
    let plan = crate::rbac::plan(catalog, namespaces);
    let scopes = plan
        .roles
        .iter()
        .map(|(ns, rules)| (Some(ns.as_str()), rules))
        .chain((!plan.cluster.is_empty()).then_some((None, &plan.cluster)));
    for (namespace, rules) in scopes {
        for ((group, resource), verbs) in rules {
            for (verb, needers) in verbs {
                let scope = namespace.unwrap_or("all namespaces");
                let what = format!("{prefix}{scope}: {verb} {resource}");
                let who = first_few(needers);
                let check = match probe(backends.kube.can_i(cluster, namespace, group, resource, verb)).await {
                    Ok(true) => Check::pass(K, what, format!("allowed (for {who})")),
                    Ok(false) => Check::fail(
                        K,
                        what,
                        format!("not allowed, and {who} need it: apply what `laojun rbac` prints"),
                    ),
                    Err(e) => Check::fail(K, what, format!("cannot ask: {e}")),
                };
                checks.push(check);
            }
        }
    }
    checks
}

/// The first two steps that need a verb, and how many more.
fn first_few(needers: &BTreeSet<String>) -> String {
    let mut out: Vec<&str> = needers.iter().take(2).map(String::as_str).collect();
    let more = needers.len().saturating_sub(2);
    let more = format!("{more} more");
    if needers.len() > 2 {
        out.push(&more);
    }
    out.join(", ")
}

/// Each hosted zone the catalog names, read.
async fn route53(backends: &Backends, catalog: &Catalog) -> Vec<Check> {
    const R: &str = "route53";
    let zones = named_zones(catalog);
    if zones.is_empty() {
        return vec![Check::pass(
            R,
            "zones",
            "the zones come from alerts only; none to read ahead",
        )];
    }
    let mut checks = Vec::new();
    for zone in zones {
        let check = match probe(backends.route53.zone_name(&zone)).await {
            Ok(name) => Check::pass(R, format!("zone {zone}"), format!("readable ({name})")),
            Err(e) => Check::fail(
                R,
                format!("zone {zone}"),
                format!("{e}; check the AWS credentials, aws.region and aws.endpoint_url"),
            ),
        };
        checks.push(check);
    }
    checks
}

/// The `hosted_zone_id`s written in `dns.failover` steps, their runbook's
/// parameter defaults and what playbooks pass (quoted fallbacks in a
/// template, such as `coalesce alert.labels.hosted_zone_id "Z1"`, count).
fn named_zones(catalog: &Catalog) -> BTreeSet<String> {
    let mut zones = BTreeSet::new();
    let mut add = |text: &str| {
        if !text.contains("{{") {
            if !text.is_empty() {
                zones.insert(text.to_string());
            }
            return;
        }
        // Only a `coalesce` fallback names a zone; other quoted text in a
        // template (`eq region "prod"`) is not one.
        if !text.trim_start().starts_with("{{coalesce") {
            return;
        }
        for quoted in text.split('"').skip(1).step_by(2) {
            if !quoted.is_empty() && !quoted.contains("{{") {
                zones.insert(quoted.to_string());
            }
        }
    };
    for runbook in catalog.runbooks.values() {
        for step in all_steps(&runbook.steps)
            .into_iter()
            .filter(|s| s.action == Action::DnsFailover)
        {
            let Some(written) = step.with.get("hosted_zone_id").and_then(|v| v.as_str()) else {
                continue;
            };
            let param = written
                .trim()
                .strip_prefix("{{params.")
                .and_then(|r| r.strip_suffix("}}"));
            let Some(param) = param else {
                add(written);
                continue;
            };
            if let Some(default) = runbook
                .param(param)
                .and_then(|p| p.default.as_ref())
                .and_then(|d| d.as_str())
            {
                add(default);
            }
            for call in catalog.playbooks.iter().flat_map(|p| p.runbooks.iter()) {
                if call.runbook == runbook.name {
                    if let Some(value) = call.params.get(param).and_then(|v| v.as_str()) {
                        add(value);
                    }
                }
            }
        }
    }
    zones
}

/// Slack's webhook: configured when anything posts; never posted to here.
fn slack(resolved: &Resolved, used: &HashSet<Action>) -> Check {
    const S: &str = "slack";
    let steps_post = used.contains(&Action::SlackNotify);
    let notices = !resolved.config.notifications.on.is_empty();
    match &resolved.slack_webhook {
        Some(secret) => {
            let host = reqwest::Url::parse(secret.expose())
                .ok()
                .and_then(|u| u.host_str().map(str::to_string));
            match host {
                Some(host) => Check::pass(S, "webhook", format!("configured (host {host}; nothing posted)")),
                None => Check::fail(
                    S,
                    "webhook",
                    "slack.webhook_url is not a URL: set it to the incoming webhook's https://hooks.slack.com/... address",
                ),
            }
        }
        None if steps_post || notices => Check::fail(
            S,
            "webhook",
            format!(
                "slack.webhook_url is not set, and {} would post: set it (a secret reference such as ${{env:SLACK_WEBHOOK_URL}})",
                if steps_post { "slack.notify steps" } else { "laojun's own notices" }
            ),
        ),
        None => Check::pass(S, "webhook", "not configured, and nothing posts"),
    }
}

/// A configured HTTP endpoint answering its readiness route, with the
/// credentials steps use.
async fn endpoint(backends: &Backends, name: &'static str, endpoint: &Endpoint, path: &str) -> Check {
    let request = match endpoint.request(&backends.http, reqwest::Method::GET, path, name) {
        Ok(r) => r,
        Err(e) => return Check::fail(name, "reachable", format!("{}; steps query it", e.message)),
    };
    match tokio::time::timeout(PROBE_TIMEOUT, request.send()).await {
        Ok(Ok(r)) if r.status().is_success() => {
            Check::pass(name, "reachable", format!("{path} answers {}", r.status()))
        }
        Ok(Ok(r)) => Check::fail(
            name,
            "reachable",
            format!("{path} answered {}; check {name}.url and its credentials", r.status()),
        ),
        Ok(Err(e)) => Check::fail(
            name,
            "reachable",
            format!("cannot reach it: {}; check {name}.url", crate::actions::describe(&e)),
        ),
        Err(_) => Check::fail(
            name,
            "reachable",
            format!("no answer in {} s; check {name}.url", PROBE_TIMEOUT.as_secs()),
        ),
    }
}
