//! `http`: call an endpoint and check its status. Header values and the URL
//! may hold secret references; what is resolved is never logged, stored or
//! put in an error (messages show the references as written).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::spec::{opt, req, ActionSpec, ArgKind};
use super::{describe, status_is_retryable, Act, ActionError, Context, Outcome};
use crate::secret;

/// Responses are kept up to this size in the step output.
const MAX_BODY: usize = 64 * 1024;

pub struct Http;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    body: Option<Value>,
    #[serde(default, deserialize_with = "statuses")]
    expect_status: Vec<u16>,
    read_only: Option<bool>,
}

/// One string or a list of strings (`who: oncall` or `who: [alice, bob]`).
pub(crate) fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Status codes as the loader writes them (a list), or as a template
/// renders them (text); what is not a code is left out, as before typing.
fn statuses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    let code = |v: &Value| match v {
        Value::Number(n) => n.as_u64().and_then(|c| u16::try_from(c).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items.iter().filter_map(code).collect(),
        other => code(&other).into_iter().collect(),
    })
}

impl Act for Http {
    const SPEC: ActionSpec = ActionSpec {
        name: "http",
        summary: "Call an HTTP endpoint and check its status.",
        args: &[
            opt(
                "method",
                ArgKind::Enum(&["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
                Some("GET"),
                "HTTP method",
            ),
            req("url", ArgKind::Str, "http:// or https:// URL"),
            opt(
                "headers",
                ArgKind::StrMap,
                None,
                "request headers; values may hold secret references `${env:NAME}`",
            ),
            opt(
                "body",
                ArgKind::Any,
                None,
                "request body: a string is sent as is, anything else as JSON",
            ),
            opt(
                "expect_status",
                ArgKind::Statuses,
                Some("any 2xx"),
                "status codes that count as success",
            ),
            opt(
                "read_only",
                ArgKind::Bool,
                Some("true for GET and HEAD"),
                "the call changes nothing, so a dry run makes it for real (and later steps decide from its answer)",
            ),
        ],
        exactly_one_of: &[],
        idempotent: false,
        output: "`status`, `body` (JSON when the response is JSON, else text, at most 64 KiB)",
        kube: &[],
    };
    type Args = Args;

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        call(args, cx).await
    }
}

async fn call(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
    let backends = cx.backends;
    let method = args.method.as_deref().filter(|m| !m.is_empty()).unwrap_or("GET");
    let url_written = args.url.as_str();
    if url_written.is_empty() {
        return Err(ActionError::fatal("`url` is empty"));
    }
    let headers: BTreeMap<String, String> = args
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let expect = args.expect_status;
    let body = args.body.as_ref().filter(|b| !b.is_null());
    // A read changes nothing: a dry run makes it, so `when:` and scripts
    // after it decide from the real answer, as they would in a real run.
    let reads = args
        .read_only
        .unwrap_or_else(|| matches!(method.to_ascii_uppercase().as_str(), "GET" | "HEAD"));
    if cx.dry_run && !reads {
        let header_names: Vec<&String> = headers.keys().collect();
        return Ok(Outcome {
            output: json!({"would_send": {"method": method, "url": url_written, "headers": header_names, "body": body}}),
            summary: format!("would send {method} {url_written}"),
        });
    }
    let url = secret::resolve(url_written).map_err(|e| ActionError::fatal(format!("url: {e}")))?;
    let parsed = reqwest::Url::parse(url.expose()).map_err(|_| {
        ActionError::fatal(format!(
            "`{url_written}` is not a URL; write e.g. https://status.example.com/api"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ActionError::fatal(format!(
            "`{url_written}` must be http:// or https://"
        )));
    }
    let method_value = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| ActionError::fatal(format!("unknown method {method}")))?;
    let mut request = backends.http.request(method_value, parsed);
    for (name, value) in &headers {
        let value = secret::resolve(value).map_err(|e| ActionError::fatal(format!("header {name}: {e}")))?;
        request = request.header(name.as_str(), value.expose());
    }
    request = match body {
        Some(Value::String(text)) => request.body(text.clone()),
        Some(other) => request.json(other),
        None => request,
    };
    let response = request
        .send()
        .await
        .map_err(|e| ActionError::retry(format!("{method} {url_written}: {}", describe(&e))))?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ActionError::retry(format!("{method} {url_written}: {}", describe(&e))))?;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_BODY)]).into_owned();
    let body_value = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text.clone()));
    let ok = if expect.is_empty() {
        (200..300).contains(&status)
    } else {
        expect.contains(&status)
    };
    if ok {
        return Ok(Outcome {
            output: json!({"status": status, "body": body_value}),
            summary: format!(
                "{}{method} {url_written} answered {status}",
                if cx.dry_run {
                    "read for real in the dry run: "
                } else {
                    ""
                }
            ),
        });
    }
    let wanted = if expect.is_empty() {
        "a 2xx".to_string()
    } else {
        format!("{expect:?}")
    };
    let short: String = text.chars().take(200).collect();
    let message = format!("{method} {url_written} answered {status}, expected {wanted}: {short}");
    Err(if status_is_retryable(status) {
        ActionError::retry(message)
    } else {
        ActionError::fatal(message)
    })
}
