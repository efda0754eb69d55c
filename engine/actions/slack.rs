//! `slack.notify`: a Block Kit message through an incoming webhook. The
//! webhook URL is a secret: it is never logged, stored or put in an error.

use serde_json::{json, Value};

use super::{describe, status_is_retryable, str_arg, ActionError, Backends, IncidentInfo, Outcome};
use crate::secret::{self, Secret};

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

pub async fn notify(
    args: &Value,
    incident: &IncidentInfo,
    backends: &Backends,
    dry_run: bool,
) -> Result<Outcome, ActionError> {
    let text = str_arg(args, "text").unwrap_or_default();
    let channel = str_arg(args, "channel");
    let body = payload(text, channel, incident);
    let target = channel.map_or_else(|| "the webhook's channel".to_string(), str::to_string);
    let webhook = match str_arg(args, "webhook_url") {
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
    let response = backends
        .http
        .post(webhook.expose())
        .json(&body)
        .send()
        .await
        .map_err(|e| ActionError::retry(format!("Slack: {}", describe(&e))))?;
    let status = response.status().as_u16();
    let answer: String = response.text().await.unwrap_or_default().chars().take(200).collect();
    if (200..300).contains(&status) {
        return Ok(Outcome {
            output: json!({"status": status}),
            summary: format!("posted to {target}: {first_line}"),
        });
    }
    let message = format!("Slack answered {status}: {answer}");
    Err(if status_is_retryable(status) {
        ActionError::retry(message)
    } else {
        ActionError::fatal(message)
    })
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
