//! `POST /slack/interactions`: the buttons on laojun's Slack messages
//! (Approve, Deny, Acknowledge). No bearer token: Slack signs each request
//! with the app's signing secret, checked before the body is read as
//! anything. The clicking user is mapped by id (never by name) through
//! `slack.users` to a laojun identity, and the decision is taken with that
//! identity's rights, through the same paths as the API: one decision per
//! approval, the first ack counts. Slack hears back through the
//! `response_url` (only under `slack.response_url_prefixes`): the message
//! is replaced with the outcome, or, when refused, an ephemeral reply
//! says why and the original stays.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::actions::approval::Decider;
use crate::config::Role;
use crate::executor::ExecError;
use crate::ids::{IncidentId, RunId};
use crate::ledger::Change;
use crate::secret::Secret;

use super::signature::MAX_SKEW_SECS;

/// The Slack app laojun answers for.
pub struct SlackApp {
    pub signing_secret: Secret,
    /// Slack user id → laojun identity (a token name).
    pub users: BTreeMap<String, String>,
    pub response_url_prefixes: Vec<String>,
    pub http: reqwest::Client,
    /// For `chat.update` once a `response_url` no longer works.
    pub bot_token: Option<Secret>,
    /// Slack's Web API (`slack.api_url`).
    pub api_url: String,
}

/// The message a click came from, for `chat.update`.
struct Message {
    channel: String,
    ts: String,
}

/// Whether `signature` (`v0=<hex>`) is Slack's signature of `body` sent at
/// `timestamp`: HMAC-SHA256 over `v0:{timestamp}:{body}`, compared in
/// constant time.
pub fn signed(secret: &Secret, timestamp: &str, body: &[u8], signature: &str) -> bool {
    signature
        .strip_prefix("v0=")
        .is_some_and(|hex| super::signature::matches(secret, &[b"v0:", timestamp.as_bytes(), b":", body], hex))
}

/// The checks a request must pass before its body is looked at.
fn verify(app: &SlackApp, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), &'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(signature)) = (header("x-slack-request-timestamp"), header("x-slack-signature")) else {
        return Err("missing X-Slack-Request-Timestamp or X-Slack-Signature");
    };
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| "X-Slack-Request-Timestamp is not a number")?;
    if (now - sent).abs() > MAX_SKEW_SECS {
        return Err("the request is more than 5 minutes old or ahead; Slack's clock and laojun's must agree");
    }
    if !signed(&app.signing_secret, timestamp, body, signature) {
        return Err("the signature does not match: check slack.signing_secret");
    }
    Ok(())
}

/// What a click asks for.
#[derive(Debug, Clone, PartialEq)]
enum Ask {
    Decide { run: RunId, approved: bool },
    Ack(IncidentId),
}

impl Ask {
    fn parse(action_id: &str, value: &str) -> Option<Ask> {
        match action_id {
            "approve" | "deny" => {
                let run = value.split(':').next()?.parse().ok()?;
                Some(Ask::Decide {
                    run,
                    approved: action_id == "approve",
                })
            }
            "ack" => value.parse().ok().map(Ask::Ack),
            _ => None,
        }
    }

    fn verb(&self) -> &'static str {
        match self {
            Ask::Decide { approved: true, .. } => "approve",
            Ask::Decide { approved: false, .. } => "deny",
            Ask::Ack(_) => "ack",
        }
    }

    fn target(&self) -> String {
        match self {
            Ask::Decide { run, .. } => run.to_string(),
            Ask::Ack(id) => id.to_string(),
        }
    }
}

/// `POST /slack/interactions`.
pub async fn interactions(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(app) = state.slack.as_ref() else {
        return ApiError::not_found("Slack interactivity is off: set slack.signing_secret in laojun.yaml")
            .into_response();
    };
    if let Err(why) = verify(app, &headers, &body, chrono::Utc::now().timestamp()) {
        return ApiError::new(StatusCode::UNAUTHORIZED, why).into_response();
    }
    let payload: Option<Value> = serde_urlencoded::from_bytes::<BTreeMap<String, String>>(&body)
        .ok()
        .and_then(|form| form.get("payload").and_then(|p| serde_json::from_str(p).ok()));
    let Some(payload) = payload else {
        return ApiError::bad_request("send a form with a `payload` field holding Slack's JSON").into_response();
    };
    // Only button clicks act; Slack sends other kinds an app may ignore.
    if payload["type"] != "block_actions" {
        return StatusCode::OK.into_response();
    }
    let user = payload["user"]["id"].as_str().unwrap_or_default().to_string();
    let response_url = payload["response_url"].as_str().map(str::to_string);
    let container = &payload["container"];
    let message = match (container["channel_id"].as_str(), container["message_ts"].as_str()) {
        (Some(channel), Some(ts)) => Some(Message {
            channel: channel.to_string(),
            ts: ts.to_string(),
        }),
        _ => None,
    };
    let action = &payload["actions"][0];
    let ask = Ask::parse(
        action["action_id"].as_str().unwrap_or_default(),
        action["value"].as_str().unwrap_or_default(),
    );
    let (reply, recorded) = match ask {
        None => (
            Reply::Refused("this button is not one of laojun's".into()),
            format!("Slack {user}"),
        ),
        Some(ask) => act(&state, app, &user, &ask).await,
    };
    // The message the click came from, so the replacement keeps its question.
    let asked = payload["message"]["blocks"][0]["text"]["text"]
        .as_str()
        .map(|t| t.chars().take(3000).collect::<String>());
    if let Some(url) = response_url {
        respond(app, url, reply, recorded, message, asked);
    }
    // Slack wants an answer within 3 s; the reply goes through response_url.
    StatusCode::OK.into_response()
}

/// What Slack is told: the message replaced with the outcome, or an
/// ephemeral reply saying why nothing happened.
enum Reply {
    Done(String),
    Refused(String),
}

/// Takes the decision as `user`'s identity, auditing it either way;
/// returns the reply and who it is recorded as.
async fn act(state: &AppState, app: &SlackApp, user: &str, ask: &Ask) -> (Reply, String) {
    let via = format!("Slack {user}");
    let Some(name) = app.users.get(user).filter(|_| !user.is_empty()) else {
        let why = format!(
            "your Slack user {user} is not mapped to a laojun identity; an admin adds it under slack.users in laojun.yaml"
        );
        state
            .writer
            .audit(&via, ask.verb(), &ask.target(), Some(format!("refused: {why}")))
            .await;
        return (Reply::Refused(why), via);
    };
    let role = if state.credentials.is_empty() {
        // An open API lets everyone do everything; the map still names who.
        Some(Role::Admin)
    } else {
        state.credentials.iter().find(|c| &c.name == name).map(|c| c.role)
    };
    let decider = Decider {
        name: name.clone(),
        role: role.unwrap_or(Role::Viewer),
        anonymous: state.credentials.is_empty(),
        via: Some(via),
    };
    let recorded = decider.recorded();
    let outcome = match role {
        None => Err(format!(
            "`{name}` (your Slack user's identity in slack.users) has no token in auth.tokens, so it has no rights"
        )),
        Some(_) => decide(state, &decider, ask).await,
    };
    let detail = outcome.as_ref().err().map(|why| format!("refused: {why}"));
    state.writer.audit(&recorded, ask.verb(), &ask.target(), detail).await;
    match outcome {
        Ok(done) => (Reply::Done(done), recorded),
        Err(why) => (Reply::Refused(why), recorded),
    }
}

async fn decide(state: &AppState, decider: &Decider, ask: &Ask) -> Result<String, String> {
    let by = decider.recorded();
    let at = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
    match ask {
        Ask::Decide { run, approved } => match state.executor.decide(*run, *approved, decider) {
            Ok(()) => Ok(format!(
                "{} {run} {} by {by} at {at}",
                if *approved { ":white_check_mark:" } else { ":no_entry:" },
                if *approved { "approved" } else { "denied" }
            )),
            Err(ExecError::Forbidden(why) | ExecError::Conflict(why)) => Err(why),
            Err(other) => Err(other.to_string()),
        },
        Ask::Ack(id) => {
            if !matches!(decider.role, Role::Operator | Role::Admin) {
                return Err(format!(
                    "`{}` ({}) may not acknowledge; an operator or admin may",
                    decider.name,
                    decider.role.as_str()
                ));
            }
            match state.writer.change(*id, Change::Ack, &by).await {
                Ok(changed) if changed.took_effect => Ok(format!(":eyes: {id} acknowledged by {by} at {at}")),
                Ok(changed) => Err(format!(
                    "{id} was already acknowledged by {} at {}",
                    changed.incident.acknowledged_by.as_deref().unwrap_or("someone"),
                    changed
                        .incident
                        .acknowledged_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_default()
                )),
                Err(e) => Err(ApiError::from(e).message),
            }
        }
    }
}

/// Posts the reply to `url` in the background, only when it is under one
/// of the configured prefixes (a forged payload cannot make laojun call
/// elsewhere).
fn respond(
    app: &SlackApp,
    url: String,
    reply: Reply,
    recorded: String,
    message: Option<Message>,
    asked: Option<String>,
) {
    if !app.response_url_prefixes.iter().any(|p| url.starts_with(p.as_str())) {
        tracing::warn!("a Slack response_url outside slack.response_url_prefixes was not called");
        return;
    }
    let replaces = matches!(reply, Reply::Done(_));
    let body = match reply {
        Reply::Done(text) => {
            let mut blocks = Vec::new();
            // Slack relays laojun's own text (it was escaped when posted).
            if let Some(asked) = asked {
                blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": asked}}));
            }
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
            blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("decided in Slack; recorded as {}", crate::actions::slack::escape(&recorded))}]}));
            json!({"replace_original": true, "text": text, "blocks": blocks})
        }
        Reply::Refused(why) => json!({
            "response_type": "ephemeral",
            "replace_original": false,
            "text": format!(":warning: nothing was done: {}", crate::actions::slack::escape(&why)),
        }),
    };
    let http = app.http.clone();
    // A response_url works five times in 30 minutes; after that the bot
    // token (when there is one) updates the message instead.
    let update = match (replaces, &app.bot_token, message) {
        (true, Some(token), Some(m)) => Some((
            token.clone(),
            format!("{}/chat.update", app.api_url.trim_end_matches('/')),
            m,
        )),
        _ => None,
    };
    tokio::spawn(async move {
        let Err(e) = crate::actions::slack::post_json(&http, &url, &body, None).await else {
            return;
        };
        tracing::warn!(error = %e.message, "the reply to Slack could not be posted to its response_url");
        if let Some((token, api, m)) = update {
            let update = json!({"channel": m.channel, "ts": m.ts, "text": body["text"], "blocks": body["blocks"]});
            if let Err(e) = crate::actions::slack::post_json(&http, &api, &update, Some(&token)).await {
                tracing::warn!(error = %e.message, "chat.update failed too; the Slack message still shows the buttons");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's own example ("Verifying requests from Slack").
    #[test]
    fn slacks_published_signing_example_verifies() {
        let secret = Secret::new("8f742231b10e8888abcd99yyyzzz85a5");
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let good = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert!(signed(&secret, "1531420618", body, good));
        assert!(!signed(&secret, "1531420619", body, good), "another timestamp");
        assert!(!signed(&secret, "1531420618", &body[1..], good), "another body");
        assert!(!signed(&secret, "1531420618", body, &good.replace("v0=", "v1=")));
        assert!(!signed(&secret, "1531420618", body, "v0=zz"));
    }

    #[test]
    fn buttons_name_what_they_act_on() {
        assert_eq!(
            Ask::parse("approve", "RUN-3:ask"),
            Some(Ask::Decide {
                run: RunId::new(3),
                approved: true
            })
        );
        assert_eq!(Ask::parse("ack", "INC-7"), Some(Ask::Ack(IncidentId::new(7))));
        assert_eq!(Ask::parse("approve", "INC-7"), None);
        assert_eq!(Ask::parse("delete", "RUN-3"), None);
    }
}
