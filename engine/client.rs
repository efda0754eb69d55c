//! The CLI's side of the API: `laojun incidents list|show`, like amtool
//! talks to AlertManager. Tables for people, `--output json` for scripts.

use std::process::ExitCode;

use serde_json::Value;

use crate::cli::{ClientArgs, IncidentsCommand, Output, RunArgs};
use crate::incident::{Event, Incident};
use crate::run::Run;

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
    call(client, reqwest::Client::new().get(&url).query(query), &url).await
}

async fn post(client: &ClientArgs, path: &str, body: Value) -> Result<Value, String> {
    let url = format!("{}{path}", client.server.trim_end_matches('/'));
    call(client, reqwest::Client::new().post(&url).json(&body), &url).await
}

/// Sends a request with the token and turns the answer into JSON, or into
/// the server's own error message.
async fn call(client: &ClientArgs, request: reqwest::RequestBuilder, url: &str) -> Result<Value, String> {
    let mut request = request.timeout(std::time::Duration::from_secs(30));
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
                i.id.to_string(),
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

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn finish(result: Result<String, String>, success: bool) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            if success {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("laojun: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--param k=v` pairs as JSON strings; the server types them by the
/// runbook's declarations.
fn params(pairs: &[String]) -> Result<serde_json::Map<String, Value>, String> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), Value::String(v.to_string()))),
            _ => Err(format!(
                "--param {p:?} must look like KEY=VALUE, e.g. -p namespace=prod"
            )),
        })
        .collect()
}

pub fn run(args: RunArgs) -> ExitCode {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => return finish(Err(e), false),
    };
    let params = match params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("laojun run: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        if args.standalone {
            let mut config = crate::config::Config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
            if let Some(d) = args.data_dir {
                config.data_dir = d;
            }
            if let Some(r) = args.root {
                config.root = r;
            }
            let request = crate::executor::ManualRun {
                runbook: args.runbook,
                params,
                dry_run: args.dry_run,
                by: std::env::var("USER").unwrap_or_else(|_| "cli".into()),
                idempotency_key: args.idempotency_key,
                incident: args
                    .incident
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e| format!("--incident: {e}"))?,
            };
            let run = crate::serve::standalone(&config, request).await.map_err(|e| format!("{e:#}"))?;
            return Ok(run);
        }
        let body = serde_json::json!({
            "params": params, "dry_run": args.dry_run, "idempotency_key": args.idempotency_key, "incident": args.incident,
        });
        let started = post(&args.client, &format!("/api/v1/runbooks/{}/runs", urlencode(&args.runbook)), body).await?;
        let id = started["id"].as_str().unwrap_or_default().to_string();
        eprintln!("started {id}; following it (Ctrl-C stops following, not the run)");
        loop {
            let value = get(&args.client, &format!("/api/v1/runs/{id}"), &[]).await?;
            let run: Run = serde_json::from_value(value).map_err(|e| format!("the server's answer is not a run: {e}"))?;
            if run.status.is_finished() {
                return Ok(run);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
    match result {
        Ok(run) => {
            let ok = run.status == crate::run::RunStatus::Succeeded;
            let text = if args.client.output == Output::Json {
                pretty(&serde_json::json!(run))
            } else {
                describe_run(&run)
            };
            finish(Ok(text), ok)
        }
        Err(e) => finish(Err(e), false),
    }
}

pub fn show_run(id: &str, client: &ClientArgs) -> ExitCode {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let value = get(client, &format!("/api/v1/runs/{}", urlencode(id)), &[]).await?;
            if client.output == Output::Json {
                return Ok(pretty(&value));
            }
            let run: Run =
                serde_json::from_value(value).map_err(|e| format!("the server's answer is not a run: {e}"))?;
            Ok(describe_run(&run))
        })
    });
    finish(result, true)
}

pub fn decide(id: &str, approve: bool, client: &ClientArgs) -> ExitCode {
    let verb = if approve { "approve" } else { "deny" };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let v = post(client, &format!("/api/v1/runs/{}/{verb}", urlencode(id)), Value::Null).await?;
            Ok(format!(
                "{id}: {} by {}\n",
                v["decision"].as_str().unwrap_or(verb),
                v["by"].as_str().unwrap_or("?")
            ))
        })
    });
    finish(result, true)
}

pub fn automation(verb: &str, client: &ClientArgs) -> ExitCode {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let v = post(client, &format!("/api/v1/automation/{verb}"), Value::Null).await?;
            let state = if v["paused"] == Value::Bool(true) {
                "paused"
            } else {
                "running"
            };
            Ok(format!("automation is {state} ({})\n", v["by"].as_str().unwrap_or("?")))
        })
    });
    finish(result, true)
}

/// A run for people: its status and one line per step.
pub fn describe_run(run: &Run) -> String {
    let mut out = format!(
        "{} `{}` {}{}{}\n",
        run.id,
        run.runbook,
        run.status.as_str(),
        if run.dry_run { " (dry run)" } else { "" },
        run.incident.as_ref().map(|i| format!(" for {i}")).unwrap_or_default()
    );
    if let Some(r) = &run.reason {
        out.push_str(&format!("  reason: {r}\n"));
    }
    for s in &run.steps {
        let timing = s.duration_ms().map(|ms| format!(" {ms} ms")).unwrap_or_default();
        let attempts = if s.attempts > 1 {
            format!(" ({} attempts)", s.attempts)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {:<20} {:<18} {:<17}{timing}{attempts}\n",
            s.id,
            s.action,
            s.status.as_str()
        ));
        if let Some(summary) = &s.summary {
            out.push_str(&format!("      {summary}\n"));
        }
        if let Some(e) = &s.error {
            out.push_str(&format!("      error: {e}\n"));
        }
    }
    out
}

pub fn postmortem(id: &str, file: Option<&std::path::Path>, client: &ClientArgs) -> ExitCode {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let url = format!(
                "{}/api/v1/incidents/{}/postmortem",
                client.server.trim_end_matches('/'),
                urlencode(id)
            );
            let mut request = reqwest::Client::new()
                .get(&url)
                .timeout(std::time::Duration::from_secs(30));
            if let Some(token) = &client.token {
                request = request.bearer_auth(token);
            }
            let response = request
                .send()
                .await
                .map_err(|e| format!("cannot reach the laojun server at {} ({e})", client.server))?;
            let status = response.status();
            let text = response.text().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                let why = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or(text);
                return Err(format!("{status}: {why}"));
            }
            match file {
                Some(path) => {
                    std::fs::write(path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    Ok(format!("wrote {}\n", path.display()))
                }
                None => Ok(text),
            }
        })
    });
    finish(result, true)
}
