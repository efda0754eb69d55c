//! The CLI's side of the API: `laojun incidents list|show`, like amtool
//! talks to AlertManager. Tables for people, `--output json` for scripts.

use std::process::ExitCode;

use serde_json::Value;

use crate::cli::{ClientArgs, IncidentsCommand, Output};
use crate::incident::{Event, Incident};

pub fn incidents(command: IncidentsCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("laojun: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match command {
            IncidentsCommand::List {
                status,
                severity,
                limit,
                client,
            } => {
                let mut query = vec![("limit", limit.to_string())];
                query.extend(status.map(|s| ("status", s)));
                query.extend(severity.map(|s| ("severity", s)));
                let value = get(&client, "/api/v1/incidents", &query).await?;
                if client.output == Output::Json {
                    return Ok(pretty(&value));
                }
                let incidents: Vec<Incident> = serde_json::from_value(value)
                    .map_err(|e| format!("the server's answer is not an incident list: {e}"))?;
                Ok(table(&incidents))
            }
            IncidentsCommand::Show { id, client } => {
                let value = get(&client, &format!("/api/v1/incidents/{}", urlencode(&id)), &[]).await?;
                if client.output == Output::Json {
                    return Ok(pretty(&value));
                }
                show(&value)
            }
        }
    });
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("laojun: {e}");
            ExitCode::from(1)
        }
    }
}

async fn get(client: &ClientArgs, path: &str, query: &[(&str, String)]) -> Result<Value, String> {
    let url = format!("{}{path}", client.server.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .get(&url)
        .query(query)
        .timeout(std::time::Duration::from_secs(30));
    if let Some(token) = &client.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| {
        format!(
            "cannot reach the laojun server at {} ({e}); is `laojun serve` running? Set --server or LAOJUN_URL",
            client.server
        )
    })?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("{url} answered {status} with a body that is not JSON: {e}"))?;
    if !status.is_success() {
        let why = body.get("error").and_then(Value::as_str).unwrap_or("no reason given");
        return Err(format!("{status}: {why}"));
    }
    Ok(body)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

fn table(incidents: &[Incident]) -> String {
    if incidents.is_empty() {
        return "no incidents\n".into();
    }
    let rows: Vec<[String; 6]> = incidents
        .iter()
        .map(|i| {
            [
                i.id.clone(),
                i.severity.to_string(),
                i.status.as_str().to_string(),
                i.opened_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                i.alerts.len().to_string(),
                i.title.clone(),
            ]
        })
        .collect();
    let header = ["ID", "SEV", "STATUS", "OPENED (UTC)", "ALERTS", "TITLE"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[&str], out: &mut String| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push('\n');
    };
    line(&header, &mut out);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells, &mut out);
    }
    out
}

fn show(value: &Value) -> Result<String, String> {
    let incident: Incident =
        serde_json::from_value(value.clone()).map_err(|e| format!("the server's answer is not an incident: {e}"))?;
    let timeline: Vec<Event> =
        serde_json::from_value(value.get("timeline").cloned().unwrap_or_default()).unwrap_or_default();
    let mut out = format!(
        "{}  {}  {}\n{}\nplaybook: {}\nopened:   {}\n",
        incident.id,
        incident.severity,
        incident.status.as_str(),
        incident.title,
        incident.playbook,
        incident.opened_at.to_rfc3339()
    );
    if let Some(at) = incident.resolved_at {
        out.push_str(&format!("resolved: {}\n", at.to_rfc3339()));
    }
    out.push_str(&format!("\nalerts ({}):\n", incident.alerts.len()));
    for a in &incident.alerts {
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let repeats = if a.repeats > 0 {
            format!(", sent {} more times", a.repeats)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {} {} since {}{repeats}\n    {{{}}}\n",
            a.fingerprint,
            a.status.as_str(),
            a.starts_at.to_rfc3339(),
            labels.join(", ")
        ));
    }
    out.push_str(&format!("\ntimeline ({} events):\n", timeline.len()));
    for e in &timeline {
        out.push_str(&format!(
            "  {}  {}\n",
            e.at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.what.describe()
        ));
    }
    Ok(out)
}
