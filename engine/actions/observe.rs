//! The HTTP endpoints read-and-silence actions talk to (Prometheus,
//! AlertManager), as `laojun.yaml` names them, and `expect`: the check a
//! read step makes of what it saw.

use serde_json::Value;

use super::ActionError;
use crate::config::Endpoint;
use crate::script::Sandbox;
use crate::secret;

impl Endpoint {
    /// A request to `path` under the base URL, authenticated; `key` is the
    /// config key, for messages.
    pub fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        key: &str,
    ) -> Result<reqwest::RequestBuilder, ActionError> {
        let Some(written) = self.url.as_deref().filter(|u| !u.is_empty()) else {
            return Err(ActionError::fatal(format!(
                "no {key}.url is configured: set it in laojun.yaml, e.g. {key}: {{url: http://{key}:{}}}",
                if key == "prometheus" { 9090 } else { 9093 }
            )));
        };
        let base = secret::resolve(written).map_err(|e| ActionError::fatal(format!("{key}.url: {e}")))?;
        let url = format!("{}{path}", base.expose().trim_end_matches('/'));
        if reqwest::Url::parse(&url).is_err() {
            return Err(ActionError::fatal(format!("{key}.url {written:?} is not a URL")));
        }
        let mut request = http.request(method, url);
        if let Some(token) = &self.bearer_token {
            let token = secret::resolve(token).map_err(|e| ActionError::fatal(format!("{key}.bearer_token: {e}")))?;
            request = request.bearer_auth(token.expose());
        } else if let Some(user) = &self.username {
            let password = match &self.password {
                Some(p) => Some(secret::resolve(p).map_err(|e| ActionError::fatal(format!("{key}.password: {e}")))?),
                None => None,
            };
            request = request.basic_auth(user, password.as_ref().map(|p| p.expose().to_string()));
        }
        Ok(request)
    }
}

/// `expect:` of a read step: `"< 0.5"` (a comparison every one of
/// `numbers` must pass, and there must be one), or a Rhai condition over
/// `context` (the step's output: `value`, `samples`, ...).
pub fn check(expect: &str, numbers: &[f64], context: &Value, sandbox: &Sandbox) -> Result<bool, ActionError> {
    let expect = expect.trim();
    if let Some((op, limit)) = comparison(expect) {
        return Ok(!numbers.is_empty() && numbers.iter().all(|v| op(*v, limit)));
    }
    let script = sandbox.compile_condition(expect).map_err(|e| {
        ActionError::fatal(format!(
            "`expect: {expect}` is neither a comparison such as \"< 0.5\" nor Rhai: {}",
            e.message
        ))
    })?;
    sandbox
        .eval_condition(&script, context)
        .map_err(|e| ActionError::fatal(format!("`expect: {expect}` failed: {}", e.message)))
}

/// A read's outcome under its `expect:`: as it is without one; with one,
/// marked `expect_met` when it holds, else a retryable failure (so
/// `retries` poll) naming what was seen. `count` is what a comparison
/// such as `== 0` is made with; Rhai sees the whole output.
pub fn expected(
    expect: Option<&str>,
    count: usize,
    mut output: Value,
    summary: String,
    sandbox: &Sandbox,
) -> Result<super::Outcome, ActionError> {
    let Some(expect) = expect.filter(|e| !e.trim().is_empty()) else {
        return Ok(super::Outcome { output, summary });
    };
    if check(expect, &[count as f64], &output, sandbox)? {
        output["expect_met"] = Value::Bool(true);
        Ok(super::Outcome {
            output,
            summary: format!("{summary}, as expected ({expect})"),
        })
    } else {
        Err(ActionError::retry(format!("{summary}; not {expect}")))
    }
}

type Compare = fn(f64, f64) -> bool;

/// `"< 0.5"`, `">= 3"`, `"== 0"`, `"!= 1"`.
fn comparison(text: &str) -> Option<(Compare, f64)> {
    let ops: [(&str, Compare); 6] = [
        ("<=", |a, b| a <= b),
        (">=", |a, b| a >= b),
        ("==", |a, b| a == b),
        ("!=", |a, b| a != b),
        ("<", |a, b| a < b),
        (">", |a, b| a > b),
    ];
    ops.iter()
        .find_map(|(op, f)| text.strip_prefix(op).map(|rest| (*f, rest.trim())))
        .and_then(|(f, rest)| rest.parse::<f64>().ok().map(|n| (f, n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_hold_for_every_number_and_need_one() {
        let sandbox = Sandbox::default();
        let context = serde_json::json!({"value": 0.2, "samples": [{"value": 0.2}, {"value": 0.4}]});
        assert!(check("< 0.5", &[0.2, 0.4], &context, &sandbox).unwrap());
        assert!(!check("< 0.3", &[0.2, 0.4], &context, &sandbox).unwrap());
        assert!(
            !check("< 1", &[], &context, &sandbox).unwrap(),
            "no samples: not back to normal"
        );
        assert!(check(">= 0.2", &[0.2], &context, &sandbox).unwrap());
        assert!(check("value < 1 && samples.len() == 2", &[], &context, &sandbox).unwrap());
        assert!(check("value +", &[], &context, &sandbox).is_err());
    }
}
