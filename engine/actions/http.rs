//! `http`: call an endpoint and check its status. Header values and the URL
//! may hold secret references; what is resolved is never logged, stored or
//! put in an error (messages show the references as written).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{describe, status_is_retryable, str_arg, ActionError, Backends, Outcome};
use crate::secret;

/// Responses are kept up to this size in the step output.
const MAX_BODY: usize = 64 * 1024;

pub async fn call(args: &Value, backends: &Backends, dry_run: bool) -> Result<Outcome, ActionError> {
    let method = str_arg(args, "method").unwrap_or("GET");
    let url_written = str_arg(args, "url").ok_or_else(|| ActionError::fatal("`url` is empty"))?;
    let headers: BTreeMap<String, String> = args
        .get("headers")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let expect: Vec<u16> = args
        .get("expect_status")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).map(|c| c as u16).collect())
        .unwrap_or_default();
    let body = args.get("body").filter(|b| !b.is_null());
    if dry_run {
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
            summary: format!("{method} {url_written} answered {status}"),
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
