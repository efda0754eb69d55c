//! `k8s.logs`: the recent log lines of a Deployment's (or a selector's)
//! pods, optionally only those matching a regex — the guide's `kubectl
//! logs -l app=api-gateway --since=10m | grep 5xx` — counted, a few kept,
//! bounded in bytes, secrets redacted before they reach the timeline. A
//! read: it runs in a dry run too.

use std::sync::LazyLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use regex::Regex;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{kube_error, non_empty, selector_of, CLUSTER, NAMESPACE};
use crate::actions::spec::{opt, rule, ActionSpec, ArgKind};
use crate::actions::{observe, Act, ActionError, Context, Outcome};

pub struct Logs;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    cluster: Option<String>,
    namespace: String,
    deployment: Option<String>,
    selector: Option<String>,
    container: Option<String>,
    tail_lines: Option<i64>,
    since_secs: Option<i64>,
    regex: Option<String>,
    max_lines: Option<i64>,
    max_pods: Option<i64>,
    expect: Option<String>,
}

/// Lines read per pod when neither `tail_lines` nor `since_secs` is given.
const DEFAULT_TAIL: i64 = 100;
const DEFAULT_MAX_LINES: usize = 20;
const MAX_MAX_LINES: usize = 200;
const DEFAULT_MAX_PODS: usize = 10;
const MAX_MAX_PODS: usize = 50;
/// The kept lines together stay under this, so the output (and the
/// timeline, with `evidence: true`) stays small.
const MAX_BYTES: usize = 4096;
/// One kept line is cut at this many characters.
const MAX_LINE_CHARS: usize = 400;
/// What one pod may send back.
const POD_LIMIT_BYTES: i64 = 1 << 20;

impl Act for Logs {
    const SPEC: ActionSpec = ActionSpec {
        name: "k8s.logs",
        summary: "Read the recent log lines of a Deployment's pods, optionally those matching a regex (`kubectl logs -l app=x --since=10m | grep 5xx`): counted, a few kept, secrets redacted.",
        args: &[
            CLUSTER,
            NAMESPACE,
            opt("deployment", ArgKind::Str, None, "the Deployment whose pods to read"),
            opt("selector", ArgKind::Str, None, "or a label selector for the pods, e.g. `app=api-gateway`"),
            opt("container", ArgKind::Str, Some("the pod's only container"), "which container, when the pods have several"),
            opt("tail_lines", ArgKind::Int, Some("100 when `since_secs` is not given"), "read at most the last N lines of each pod"),
            opt("since_secs", ArgKind::Int, None, "read only lines newer than this many seconds"),
            opt("regex", ArgKind::Str, None, "keep and count only lines matching this (Rust regex syntax), e.g. `\" 5\\d\\d \"`"),
            opt("max_lines", ArgKind::Int, Some("20"), "keep at most this many lines (up to 200) in the output; all are counted"),
            opt("max_pods", ArgKind::Int, Some("10"), "read at most this many pods (up to 50)"),
            opt(
                "expect",
                ArgKind::Str,
                None,
                "a comparison with the number of matching lines, e.g. `== 0`, or a Rhai condition over the output; with `retries` the step polls until it holds",
            ),
        ],
        exactly_one_of: &[&["deployment", "selector"]],
        idempotent: true,
        output: "`pods` (how many were read), `lines_read`, `value` (lines matching `regex`, or all lines read), `lines` (the last matching lines as `pod: text`, at most `max_lines` and 4 KiB, secrets redacted), `truncated`, `skipped` [{pod, reason}], `expect_met`",
        kube: &[rule("apps", "deployments", &["get"]), rule("", "pods", &["list"]), rule("", "pods/log", &["get"])],
    };
    type Args = Args;

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        let namespace = args.namespace.trim();
        non_empty(namespace, "namespace")?;
        let filter =
            match args.regex.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => Some(regex::RegexBuilder::new(r).size_limit(1 << 20).build().map_err(|e| {
                    ActionError::fatal(format!("`regex` {r:?} is not a valid regular expression: {e}"))
                })?),
                None => None,
            };
        let max_lines = bounded(args.max_lines, DEFAULT_MAX_LINES, MAX_MAX_LINES, "max_lines")?;
        let max_pods = bounded(args.max_pods, DEFAULT_MAX_PODS, MAX_MAX_PODS, "max_pods")?;
        for (value, name) in [(args.tail_lines, "tail_lines"), (args.since_secs, "since_secs")] {
            if value.is_some_and(|n| n <= 0) {
                return Err(ActionError::fatal(format!("`{name}` must be a positive whole number")));
            }
        }
        let cluster = args.cluster.as_deref().filter(|c| !c.is_empty());
        let client = cx.backends.kube.client(cluster).await?;
        let (selector, whose) = match (args.deployment.as_deref(), args.selector.as_deref()) {
            (Some(d), _) if !d.is_empty() => {
                let what = format!("deployment/{d} in {namespace}");
                let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
                let deployment = deployments.get(d).await.map_err(|e| kube_error(&what, e))?;
                (selector_of(&deployment), what)
            }
            (_, Some(s)) if !s.is_empty() => (s.to_string(), format!("pods `{s}` in {namespace}")),
            _ => {
                return Err(ActionError::fatal(
                    "give `deployment` or `selector`: whose logs to read",
                ))
            }
        };
        let pods_api: Api<Pod> = Api::namespaced(client, namespace);
        let mut pods = pods_api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| kube_error(&format!("listing the pods of {whose}"), e))?
            .items;
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        if pods.is_empty() {
            return Err(ActionError::retry(format!("{whose} has no pods to read logs from")));
        }
        let params = LogParams {
            container: args.container.clone().filter(|c| !c.is_empty()),
            tail_lines: args.tail_lines.or(if args.since_secs.is_none() {
                Some(DEFAULT_TAIL)
            } else {
                None
            }),
            since_seconds: args.since_secs,
            limit_bytes: Some(POD_LIMIT_BYTES),
            ..LogParams::default()
        };
        let mut read = Read::default();
        for pod in pods.iter().take(max_pods) {
            let name = pod.metadata.name.clone().unwrap_or_default();
            match pods_api.logs(&name, &params).await {
                Ok(text) => read.add(&name, &text, filter.as_ref()),
                // A pod that has not started has no log yet; the others still tell.
                Err(kube::Error::Api(status)) if status.code == 400 => {
                    read.skipped.push(json!({"pod": name, "reason": status.message}));
                }
                Err(e) => return Err(kube_error(&format!("the log of pod {name}"), e)),
            }
        }
        let read_pods = pods.len().min(max_pods) - read.skipped.len();
        if read_pods == 0 {
            return Err(ActionError::retry(format!(
                "none of the pods of {whose} has a log yet: {}",
                read.skipped
                    .iter()
                    .filter_map(|s| s["reason"].as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        let (kept, truncated) = keep(&read.matching, max_lines);
        let window = match (args.since_secs, params.tail_lines) {
            (Some(s), _) => format!("the last {s}s"),
            (None, Some(n)) => format!("the last {n} lines of each"),
            (None, None) => "everything".into(),
        };
        let summary = match &filter {
            Some(f) => format!(
                "{} of {} lines matched `{}` in {read_pods} pods of {whose} ({window})",
                read.matching.len(),
                read.lines_read,
                f.as_str()
            ),
            None => format!("{} lines from {read_pods} pods of {whose} ({window})", read.lines_read),
        };
        let output = json!({
            "pods": read_pods,
            "lines_read": read.lines_read,
            "value": read.matching.len(),
            "lines": kept,
            "truncated": truncated,
            "skipped": read.skipped,
            "expect_met": null,
        });
        observe::expected(args.expect.as_deref(), read.matching.len(), output, summary, cx.sandbox)
    }
}

fn bounded(given: Option<i64>, default: usize, max: usize, name: &str) -> Result<usize, ActionError> {
    match given {
        None => Ok(default),
        Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
        Some(n) => Err(ActionError::fatal(format!("`{name}` is {n}; give 1 to {max}"))),
    }
}

/// What the pods' logs held.
#[derive(Default)]
struct Read {
    lines_read: usize,
    /// `pod: line`, redacted, in the order read.
    matching: Vec<String>,
    skipped: Vec<Value>,
}

impl Read {
    fn add(&mut self, pod: &str, text: &str, filter: Option<&Regex>) {
        for line in text.lines() {
            self.lines_read += 1;
            if filter.is_none_or(|f| f.is_match(line)) {
                self.matching.push(format!("{pod}: {}", redact(line)));
            }
        }
    }
}

/// The last lines that fit in `max_lines` and [`MAX_BYTES`], each cut at
/// [`MAX_LINE_CHARS`]; and whether any were left out.
fn keep(lines: &[String], max_lines: usize) -> (Vec<String>, bool) {
    let mut kept = Vec::new();
    let mut bytes = 0;
    for line in lines.iter().rev().take(max_lines) {
        let line: String = if line.chars().count() > MAX_LINE_CHARS {
            line.chars().take(MAX_LINE_CHARS).chain("…".chars()).collect()
        } else {
            line.clone()
        };
        if bytes + line.len() > MAX_BYTES {
            break;
        }
        bytes += line.len();
        kept.push(line);
    }
    kept.reverse();
    let truncated = kept.len() < lines.len();
    (kept, truncated)
}

/// Patterns of secrets that turn up in logs, and what replaces them.
static SECRETS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+", "Bearer [REDACTED]"),
        (
            r#"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret|authorization)(["']?\s*[:=]\s*["']?)([^\s"'&,;]+)"#,
            "${1}${2}[REDACTED]",
        ),
        // user:password@ in a URL
        (r"://([^/\s:@]+):([^/\s@]+)@", "://${1}:[REDACTED]@"),
        // AWS access key ids
        (r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", "[REDACTED]"),
    ]
    .into_iter()
    .filter_map(|(pattern, with)| Regex::new(pattern).ok().map(|r| (r, with)))
    .collect()
});

/// A log line with the secrets it shows replaced by `[REDACTED]`.
pub fn redact(line: &str) -> String {
    let mut out = line.to_string();
    for (pattern, with) in SECRETS.iter() {
        if pattern.is_match(&out) {
            out = pattern.replace_all(&out, *with).into_owned();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_log_lines_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact("login ok user=ana password=hunter2 from 10.0.0.1"),
            "login ok user=ana password=[REDACTED] from 10.0.0.1"
        );
        assert_eq!(
            redact(r#"{"api_key": "sk-123", "status": 503}"#),
            r#"{"api_key": "[REDACTED]", "status": 503}"#
        );
        let bearer = redact("GET /v1 Authorization: Bearer eyJhbGciOi.x.y 200");
        assert!(!bearer.contains("eyJ") && bearer.contains("200"), "{bearer}");
        assert_eq!(
            redact("dial postgres://app:s3cr3t@db:5432/app"),
            "dial postgres://app:[REDACTED]@db:5432/app"
        );
        assert_eq!(redact("key AKIAIOSFODNN7EXAMPLE used"), "key [REDACTED] used");
        assert_eq!(redact("GET /health 200 3ms"), "GET /health 200 3ms");
    }

    #[test]
    fn kept_lines_are_the_last_ones_within_the_line_and_byte_bounds() {
        let lines: Vec<String> = (0..30).map(|i| format!("pod: line {i}")).collect();
        let (kept, truncated) = keep(&lines, 5);
        assert_eq!(kept.first().map(String::as_str), Some("pod: line 25"));
        assert_eq!(kept.len(), 5);
        assert!(truncated);
        let long = vec!["x".repeat(2000); 40];
        let (kept, _) = keep(&long, 40);
        assert!(kept.iter().map(String::len).sum::<usize>() <= MAX_BYTES);
        assert!(kept[0].ends_with('…'));
    }
}
