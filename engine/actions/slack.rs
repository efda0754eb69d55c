//! `slack.notify`: a Block Kit message through an incoming webhook. The
//! webhook URL is a secret: it is never logged, stored or put in an error.

use serde::Deserialize;
use serde_json::{json, Value};

use super::spec::{opt, ActionSpec, ArgKind};
use super::{describe, status_is_retryable, Act, ActionError, Backends, Context, IncidentInfo, Outcome};
use crate::secret::{self, Secret};

pub struct Notify;

/// `text` is rendered with Slack's escape (see `escape`); `template`, when
/// given, was rendered into `text` by the executor before the step runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    pub channel: Option<String>,
    pub text: Option<String>,
    pub template: Option<String>,
    pub webhook_url: Option<String>,
}

impl Act for Notify {
    const SPEC: ActionSpec = ActionSpec {
        name: "slack.notify",
        summary: "Post a Block Kit message to Slack through an incoming webhook.",
        args: &[
            opt(
                "channel",
                ArgKind::Str,
                Some("the webhook's channel"),
                "channel to post to, e.g. `#ops-alerts`",
            ),
            opt("text", ArgKind::Str, None, "the message text (a template)"),
            opt(
                "template",
                ArgKind::Str,
                None,
                "name of a template in templates/ to render as the message",
            ),
            opt(
                "webhook_url",
                ArgKind::Str,
                Some("`slack.webhook_url` from the config"),
                "a secret reference such as `${env:SLACK_WEBHOOK_URL}`",
            ),
        ],
        exactly_one_of: &[&["text", "template"]],
        idempotent: false,
        output: "`status`",
        kube: &[],
    };
    type Args = Args;

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        notify(&args, cx.incident, cx.backends, cx.dry_run).await
    }
}

/// The message body Slack gets.
pub fn payload(text: &str, channel: Option<&str>, incident: &IncidentInfo) -> Value {
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})];
    if !incident.id.is_empty() {
        let mut context = format!(
            "*{}* · {} · {}",
            incident.id,
            incident.severity,
            escape(&incident.title)
        );
        if let Some(link) = &incident.link {
            context.push_str(&format!(" · <{link}|open>"));
        }
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    }
    let mut body = json!({"text": text, "blocks": blocks});
    if let Some(c) = channel {
        body["channel"] = json!(c);
    }
    body
}

/// Slack's own escaping: `&`, `<` and `>` would otherwise make links and
/// mentions (`<!channel>`) out of alert label values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Posts `args.text`; also used for laojun's own notices (resolve
/// summaries, interrupted runs).
pub async fn notify(
    args: &Args,
    incident: &IncidentInfo,
    backends: &Backends,
    dry_run: bool,
) -> Result<Outcome, ActionError> {
    notify_with(args, incident, backends, dry_run, &[]).await
}

/// `notify`, with buttons under the message.
pub async fn notify_with(
    args: &Args,
    incident: &IncidentInfo,
    backends: &Backends,
    dry_run: bool,
    buttons: &[Button],
) -> Result<Outcome, ActionError> {
    let text = args.text.as_deref().unwrap_or_default();
    let channel = args.channel.as_deref().filter(|c| !c.is_empty());
    let mut body = payload(text, channel, incident);
    if !buttons.is_empty() {
        if let Some(blocks) = body["blocks"].as_array_mut() {
            blocks.push(actions_block(buttons));
        }
    }
    let target = channel.map_or_else(|| "the webhook's channel".to_string(), str::to_string);
    let webhook = match args.webhook_url.as_deref().filter(|w| !w.is_empty()) {
        Some(reference) => {
            Some(secret::resolve(reference).map_err(|e| ActionError::fatal(format!("webhook_url: {e}")))?)
        }
        None => backends.slack_webhook.clone(),
    };
    let first_line: String = text.lines().next().unwrap_or_default().chars().take(120).collect();
    // Checked before the dry-run answer: a dry run shows what the real run would do, failures included.
    let webhook: Secret = webhook.ok_or_else(|| {
        ActionError::fatal("no Slack webhook is configured: set slack.webhook_url in laojun.yaml (e.g. \"${env:SLACK_WEBHOOK_URL}\") or webhook_url on the step")
    })?;
    if dry_run {
        return Ok(Outcome {
            output: json!({"would_post": body}),
            summary: format!("would post to {target}: {first_line}"),
        });
    }
    let status = post_json(&backends.http, webhook.expose(), &body, None).await?;
    Ok(Outcome {
        output: json!({"status": status}),
        summary: format!("posted to {target}: {first_line}"),
    })
}

/// How often a post Slack rate-limits (429) is tried, and the longest
/// `Retry-After` waited for.
const RATE_LIMITED_TRIES: u32 = 3;
const LONGEST_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Posts `body` as JSON to `url` (a webhook, a `response_url`, the Web
/// API with `bearer`): a 429 is tried again after its `Retry-After`
/// (capped), up to three tries. The URL is never put in an error.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    bearer: Option<&Secret>,
) -> Result<u16, ActionError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut request = http.post(url).json(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|e| ActionError::retry(format!("Slack: {}", describe(&e))))?;
        let status = response.status().as_u16();
        if status == 429 && tries < RATE_LIMITED_TRIES {
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(std::time::Duration::from_secs(1), std::time::Duration::from_secs)
                .min(LONGEST_RETRY_AFTER);
            tracing::info!(
                wait_secs = wait.as_secs(),
                "Slack rate-limited a post; trying again after Retry-After"
            );
            tokio::time::sleep(wait).await;
            continue;
        }
        let answer: String = response.text().await.unwrap_or_default().chars().take(200).collect();
        // The Web API answers 200 with {"ok": false} on errors.
        let api_error = bearer.is_some() && answer.contains("\"ok\":false");
        if (200..300).contains(&status) && !api_error {
            return Ok(status);
        }
        let message = format!("Slack answered {status}: {answer}");
        return Err(if status_is_retryable(status) {
            ActionError::retry(message)
        } else {
            ActionError::fatal(message)
        });
    }
}

/// A button on one of laojun's own messages (approve, deny, acknowledge).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Button {
    /// `approve`, `deny` or `ack`: what `POST /slack/interactions` does.
    pub action_id: String,
    pub text: String,
    /// What it acts on: `RUN-3:ask` or `INC-7`.
    pub value: String,
    /// `primary` or `danger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
}

/// The Block Kit actions block holding `buttons`.
pub fn actions_block(buttons: &[Button]) -> Value {
    let elements: Vec<Value> = buttons
        .iter()
        .map(|b| {
            let mut e = json!({
                "type": "button",
                "action_id": b.action_id,
                "text": {"type": "plain_text", "text": b.text},
                "value": b.value,
            });
            if let Some(style) = &b.style {
                e["style"] = json!(style);
            }
            e
        })
        .collect();
    json!({"type": "actions", "block_id": "laojun", "elements": elements})
}

/// Posts one of laojun's own notices (an interrupted run, a resolved
/// incident), bounded so a slow Slack holds nothing up. Failures are
/// logged, not raised: what the notice is about happened either way.
pub async fn notice(backends: &Backends, text: String, incident: &IncidentInfo, what: &str) {
    let args = Args {
        text: Some(text),
        ..Args::default()
    };
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        notify(&args, incident, backends, false),
    )
    .await;
    if !matches!(sent, Ok(Ok(_))) {
        tracing::warn!(incident = %incident.id, "could not post {what} to Slack");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_cannot_become_mentions_or_links() {
        assert_eq!(
            escape("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
    }

    #[test]
    fn the_message_carries_the_incident_id_severity_title_and_link() {
        let inc = IncidentInfo {
            id: "INC-3".into(),
            title: "checkout down".into(),
            severity: "P0".into(),
            link: Some("http://l/INC-3".into()),
        };
        let body = payload("rolling back", Some("#ops"), &inc);
        assert_eq!(body["channel"], "#ops");
        assert_eq!(
            body["blocks"][1]["elements"][0]["text"],
            "*INC-3* · P0 · checkout down · <http://l/INC-3|open>"
        );
    }
}
