//! `prometheus.query`: an instant query, and with `expect` a check of what
//! it returned ("is the error rate back to normal?"). With `retries` the
//! step polls until the check holds. A read: it runs in a dry run too, so
//! later steps decide from the real answer.

use serde::Deserialize;
use serde_json::{json, Value};

use super::spec::{opt, req, ActionSpec, ArgKind};
use super::{describe, status_is_retryable, Act, ActionError, Context, Outcome};

pub struct Query;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    query: String,
    time: Option<String>,
    expect: Option<String>,
}

/// At most this many samples are kept in the output.
const MAX_SAMPLES: usize = 100;

impl Act for Query {
    const SPEC: ActionSpec = ActionSpec {
        name: "prometheus.query",
        summary: "Run a PromQL instant query (config `prometheus.url`); with `expect`, fail unless the result passes.",
        args: &[
            req("query", ArgKind::Str, "PromQL, e.g. `sum(rate(http_requests_total{code=~\"5..\"}[5m]))`"),
            opt("time", ArgKind::Str, Some("now"), "evaluation time, RFC 3339 or Unix seconds"),
            opt(
                "expect",
                ArgKind::Str,
                None,
                "a comparison every sample must pass, e.g. `< 0.5`, or a Rhai condition over `value` and `samples`; with `retries` the step polls until it holds",
            ),
        ],
        exactly_one_of: &[],
        idempotent: true,
        output: "`value` (the sample's value when there is exactly one, else null), `samples` [{labels, value}] (at most 100), `expect_met`",
        kube: &[],
    };
    type Args = Args;

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        let query = args.query.trim();
        if query.is_empty() {
            return Err(ActionError::fatal("`query` is empty"));
        }
        let mut form = vec![("query", query.to_string())];
        if let Some(t) = args.time.as_deref().filter(|t| !t.is_empty()) {
            form.push(("time", t.to_string()));
        }
        let request =
            cx.backends
                .prometheus
                .request(&cx.backends.http, reqwest::Method::POST, "/api/v1/query", "prometheus")?;
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| ActionError::retry(format!("Prometheus: {}", describe(&e))))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if body["status"] != "success" {
            let why = body["error"].as_str().unwrap_or("no error message");
            let message = format!("Prometheus answered {status}: {why}");
            // A 400 is the query itself (bad PromQL): trying again will not help.
            return Err(if status_is_retryable(status) {
                ActionError::retry(message)
            } else {
                ActionError::fatal(message)
            });
        }
        let data = &body["data"];
        let samples: Vec<Value> = match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .take(MAX_SAMPLES)
                        .map(|s| json!({"labels": s["metric"], "value": number(&s["value"][1])}))
                        .collect()
                })
                .unwrap_or_default(),
            Some("scalar") => vec![json!({"labels": {}, "value": number(&data["result"][1])})],
            other => {
                return Err(ActionError::fatal(format!(
                    "the query gave a {} result; prometheus.query takes instant vectors and scalars",
                    other.unwrap_or("missing")
                )))
            }
        };
        let value = match samples.as_slice() {
            [one] => one["value"].as_f64(),
            _ => None,
        };
        let shown = match value {
            Some(v) => format!("{v}"),
            None => format!("{} samples", samples.len()),
        };
        let samples = Value::Array(samples);
        let Some(expect) = args.expect.as_deref().filter(|e| !e.trim().is_empty()) else {
            return Ok(Outcome {
                output: json!({"value": value, "samples": samples, "expect_met": null}),
                summary: format!("`{query}` = {shown}"),
            });
        };
        let numbers: Vec<f64> = match value {
            Some(v) => vec![v],
            None => samples
                .as_array()
                .map(|s| s.iter().filter_map(|x| x["value"].as_f64()).collect())
                .unwrap_or_default(),
        };
        let context = json!({"value": value, "samples": samples});
        if super::observe::check(expect, &numbers, &context, cx.sandbox)? {
            Ok(Outcome {
                output: json!({"value": value, "samples": samples, "expect_met": true}),
                summary: format!("`{query}` = {shown}, as expected ({expect})"),
            })
        } else {
            // Retryable: with `retries` the step polls until it holds.
            Err(ActionError::retry(format!("`{query}` = {shown}, not {expect}")))
        }
    }
}

/// Prometheus writes sample values as strings (`"0.25"`, `"NaN"`).
fn number(v: &Value) -> Value {
    v.as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|f| f.is_finite())
        .map_or(Value::Null, |f| json!(f))
}
