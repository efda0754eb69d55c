//! `laojun incidents list|show|ack|assign|severity|resolve|reopen|note`, like amtool talks to
//! AlertManager: tables for people, `--output json` for scripts.

use std::process::ExitCode;

use super::{finish, render, Failure, IncidentsCommand, Output};
use crate::client::IncidentQuery;
use crate::incident::{NoteKind, Status};
use crate::severity::Severity;

pub async fn incidents(command: IncidentsCommand) -> ExitCode {
    let result = match command {
        IncidentsCommand::List {
            status,
            severity,
            limit,
            client,
        } => list(status, severity, limit, client).await,
        IncidentsCommand::Show { id, client } => {
            let api = client.server.client();
            api.incident(&id)
                .await
                .map_err(Failure::from)
                .map(|detail| match client.output {
                    Output::Json => render::json(&detail),
                    Output::Table => render::incident(&detail),
                })
        }
        IncidentsCommand::Ack { id, client } => {
            let api = client.server.client();
            api.ack(&id)
                .await
                .map_err(Failure::from)
                .map(|inc| match client.output {
                    Output::Json => render::json(&inc),
                    Output::Table => format!(
                        "{} acknowledged by {} at {}\n",
                        inc.id,
                        inc.acknowledged_by.as_deref().unwrap_or("?"),
                        inc.acknowledged_at
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                            .unwrap_or_default()
                    ),
                })
        }
        IncidentsCommand::Assign {
            id,
            commander,
            responders,
            add_responders,
            client,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(c) = commander {
                body.insert("commander".into(), c.into());
            }
            if !responders.is_empty() {
                body.insert("responders".into(), responders.into());
            }
            if !add_responders.is_empty() {
                body.insert("add_responders".into(), add_responders.into());
            }
            let api = client.server.client();
            api.assign(&id, &serde_json::Value::Object(body))
                .await
                .map_err(Failure::from)
                .map(|inc| match client.output {
                    Output::Json => render::json(&inc),
                    Output::Table => format!(
                        "{}: {}\n",
                        inc.id,
                        crate::incident::team(inc.commander.as_deref(), &inc.responders)
                    ),
                })
        }
        IncidentsCommand::Severity {
            id,
            severity,
            reason,
            client,
        } => {
            // clap allows only the names this parses.
            match Severity::parse(&severity.to_ascii_uppercase()) {
                None => Err(Failure::Other(format!(
                    "severity {severity:?} is not one of {}",
                    Severity::NAMES.join(", ")
                ))),
                Some(sev) => {
                    let answer = client.server.client().set_severity(&id, sev, &reason).await;
                    answer.map_err(Failure::from).map(|inc| match client.output {
                        Output::Json => render::json(&inc),
                        Output::Table => format!("{} is {}\n", inc.id, inc.severity),
                    })
                }
            }
        }
        IncidentsCommand::Resolve { id, reason, client } => {
            let api = client.server.client();
            api.resolve_because(&id, reason.as_deref())
                .await
                .map_err(Failure::from)
                .map(|inc| status_line(&inc, &client.output))
        }
        IncidentsCommand::Reopen { id, reason, client } => {
            let api = client.server.client();
            api.reopen(&id, &reason)
                .await
                .map_err(Failure::from)
                .map(|inc| status_line(&inc, &client.output))
        }
        IncidentsCommand::Note {
            id,
            text,
            kind,
            owner,
            due,
            client,
        } => note(&id, &text, &kind, owner, due, &client).await,
    };
    finish(result, true)
}

fn status_line(inc: &crate::incident::Incident, output: &Output) -> String {
    match output {
        Output::Json => render::json(inc),
        Output::Table => format!("{} is {}\n", inc.id, inc.status.as_str()),
    }
}

async fn note(
    id: &str,
    text: &str,
    kind: &str,
    owner: Option<String>,
    due: Option<String>,
    client: &super::ClientArgs,
) -> Result<String, Failure> {
    let kind = NoteKind::parse(&kind.to_ascii_lowercase())
        .ok_or_else(|| Failure::Other(format!("--kind {kind:?} is not one of {}", NoteKind::NAMES.join(", "))))?;
    let mut body = serde_json::json!({"kind": kind, "text": text});
    if let Some(owner) = owner {
        body["owner"] = owner.into();
    }
    if let Some(due) = due {
        body["due"] = due.into();
    }
    // The server checks owner and due (and says what to send).
    let stored = client.server.client().note(id, &body).await?;
    Ok(match client.output {
        Output::Json => render::json(&stored),
        Output::Table => format!("noted on {}\n", stored.incident),
    })
}

async fn list(
    status: Option<String>,
    severity: Option<String>,
    limit: usize,
    client: super::ClientArgs,
) -> Result<String, Failure> {
    // clap allows only the names these parse.
    let status = status
        .map(|s| {
            Status::parse(&s.to_ascii_lowercase())
                .ok_or_else(|| Failure::Other(format!("status {s:?} is not one of {}", Status::NAMES.join(", "))))
        })
        .transpose()?;
    let severity = severity
        .map(|s| {
            Severity::parse(&s.to_ascii_uppercase())
                .ok_or_else(|| Failure::Other(format!("severity {s:?} is not one of {}", Severity::NAMES.join(", "))))
        })
        .transpose()?;
    let query = IncidentQuery {
        status,
        severity,
        limit: Some(limit),
    };
    let incidents = client.server.client().incidents(&query).await?;
    Ok(match client.output {
        Output::Json => render::json(&incidents),
        Output::Table => render::incident_table(&incidents),
    })
}
