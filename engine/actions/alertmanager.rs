//! `alertmanager.silence` and `alertmanager.expire_silence`: silence the
//! alert a run is remediating while it works (through AlertManager's v2
//! API, config `alertmanager.url`), and lift the silence after. The
//! silence says it was laojun, and which run, in its comment.

use serde::Deserialize;
use serde_json::{json, Value};

use super::spec::{opt, req, ActionSpec, ArgKind};
use super::{describe, status_is_retryable, Act, ActionError, Context, Outcome};
use crate::matcher::{parse_matchers, Op};

pub struct Silence;
pub struct ExpireSilence;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceArgs {
    #[serde(deserialize_with = "super::http::one_or_many")]
    matchers: Vec<String>,
    duration_secs: Option<i64>,
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpireArgs {
    id: String,
}

/// AlertManager's matchers (`{name, value, isRegex, isEqual}`) for
/// matcher strings such as `alertname="X"`.
fn wire_matchers(written: &[String]) -> Result<Vec<Value>, ActionError> {
    let mut out = Vec::new();
    for text in written {
        let parsed = parse_matchers(text).map_err(|e| {
            ActionError::fatal(format!(
                "matcher {text:?}: {}; write e.g. 'alertname=\"ServiceDown\"'",
                e.0
            ))
        })?;
        for m in parsed {
            let (is_regex, is_equal) = match m.op {
                Op::Equal => (false, true),
                Op::NotEqual => (false, false),
                Op::Regex => (true, true),
                Op::NotRegex => (true, false),
            };
            out.push(json!({"name": m.name, "value": m.value, "isRegex": is_regex, "isEqual": is_equal}));
        }
    }
    if out.is_empty() {
        return Err(ActionError::fatal(
            "`matchers` is empty: a silence must match something",
        ));
    }
    Ok(out)
}

async fn answer(response: Result<reqwest::Response, reqwest::Error>) -> Result<Value, ActionError> {
    let response = response.map_err(|e| ActionError::retry(format!("AlertManager: {}", describe(&e))))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if (200..300).contains(&status) {
        return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
    }
    let message = format!(
        "AlertManager answered {status}: {}",
        text.chars().take(200).collect::<String>().trim()
    );
    Err(if status_is_retryable(status) {
        ActionError::retry(message)
    } else {
        ActionError::fatal(message)
    })
}

impl Act for Silence {
    const SPEC: ActionSpec = ActionSpec {
        name: "alertmanager.silence",
        summary: "Create an AlertManager silence (config `alertmanager.url`) while the run works.",
        args: &[
            req(
                "matchers",
                ArgKind::StrList,
                "AlertManager matchers, e.g. `['alertname=\"ServiceDown\"', 'namespace=\"prod\"']`",
            ),
            opt(
                "duration_secs",
                ArgKind::Int,
                Some("3600"),
                "how long the silence lasts",
            ),
            opt(
                "comment",
                ArgKind::Str,
                Some("the run and step"),
                "why; laojun adds the run id",
            ),
        ],
        exactly_one_of: &[],
        idempotent: false,
        output: "`id` (the silence's), `ends_at`",
        kube: &[],
    };
    type Args = SilenceArgs;

    async fn run(args: SilenceArgs, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        let matchers = wire_matchers(&args.matchers)?;
        let secs = args.duration_secs.unwrap_or(3600).clamp(60, 7 * 86_400);
        let now = chrono::Utc::now();
        let ends = now + chrono::Duration::seconds(secs);
        let why = args
            .comment
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .unwrap_or("remediation in progress");
        let comment = format!("{why} (laojun {} step {})", cx.run_id, cx.step_id);
        let body = json!({
            "matchers": matchers,
            "startsAt": now.to_rfc3339(),
            "endsAt": ends.to_rfc3339(),
            "createdBy": "laojun",
            "comment": comment,
        });
        let what = args.matchers.join(", ");
        if cx.dry_run {
            return Ok(Outcome {
                output: json!({"would_create": body}),
                summary: format!("would silence {what} for {secs}s"),
            });
        }
        let request = cx.backends.alertmanager.request(
            &cx.backends.http,
            reqwest::Method::POST,
            "/api/v2/silences",
            "alertmanager",
        )?;
        let created = answer(request.json(&body).send().await).await?;
        let id = created["silenceID"].as_str().unwrap_or_default().to_string();
        Ok(Outcome {
            output: json!({"id": id, "ends_at": ends.to_rfc3339()}),
            summary: format!("silenced {what} until {} (silence {id})", ends.format("%H:%M:%S UTC")),
        })
    }
}

impl Act for ExpireSilence {
    const SPEC: ActionSpec = ActionSpec {
        name: "alertmanager.expire_silence",
        summary: "Expire an AlertManager silence by id (e.g. `{{steps.silence.output.id}}`).",
        args: &[req("id", ArgKind::Str, "the silence's id")],
        exactly_one_of: &[],
        idempotent: true,
        output: "`id`",
        kube: &[],
    };
    type Args = ExpireArgs;

    async fn run(args: ExpireArgs, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        let id = args.id.trim();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(ActionError::fatal(format!("`id` {id:?} is not a silence id")));
        }
        if cx.dry_run {
            return Ok(Outcome {
                output: json!({"id": id}),
                summary: format!("would expire silence {id}"),
            });
        }
        let request = cx.backends.alertmanager.request(
            &cx.backends.http,
            reqwest::Method::DELETE,
            &format!("/api/v2/silence/{id}"),
            "alertmanager",
        )?;
        answer(request.send().await).await?;
        Ok(Outcome {
            output: json!({"id": id}),
            summary: format!("expired silence {id}"),
        })
    }
}
