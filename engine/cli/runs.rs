//! `laojun run` (through the server, or `--standalone` in this process),
//! `laojun runs ID`, `laojun runs list`, `laojun approvals`,
//! `laojun approve|deny ID`.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{finish, render, ClientArgs, Failure, Output, RunArgs};
use crate::client::{ApiClient, RunQuery, RunRequest};
use crate::ids::IncidentId;
use crate::run::{Run, RunStatus};

/// How often `run` asks the server how the run is doing.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// `--param k=v` pairs as JSON strings; the server types them by the
/// runbook's declarations.
fn params(pairs: &[String]) -> Result<Map<String, Value>, String> {
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

pub async fn run(args: RunArgs) -> ExitCode {
    let params = match params(&args.params) {
        Ok(p) => p,
        Err(e) => return super::usage(&format!("run: {e}")),
    };
    let output = args.client.output;
    let result = if args.standalone {
        standalone(args, params).await
    } else {
        let api = args.client.server.client();
        let request = RunRequest {
            params,
            dry_run: args.dry_run,
            idempotency_key: args.idempotency_key,
            incident: args.incident,
        };
        through_server(&api, &args.runbook, &request).await
    };
    match result {
        Ok(run) => {
            let text = match output {
                Output::Json => render::json(&run),
                Output::Table => render::run(&run),
            };
            finish(Ok(text), run.status == RunStatus::Succeeded)
        }
        Err(e) => finish(Err(e), false),
    }
}

async fn standalone(args: RunArgs, params: Map<String, Value>) -> Result<Run, Failure> {
    let mut config = crate::config::Config::load(args.config.as_deref()).map_err(|e| Failure::Other(e.to_string()))?;
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
        incident: args.incident,
    };
    crate::serve::standalone(&config, request)
        .await
        .map_err(|e| Failure::Other(format!("{e:#}")))
}

/// Starts the run and follows it until it ends. Following never gives up
/// by itself: a run may wait hours for an approval, and Ctrl-C stops only
/// the following.
async fn through_server(api: &ApiClient, runbook: &str, request: &RunRequest) -> Result<Run, Failure> {
    let started = api.start_run(runbook, request).await?;
    eprintln!(
        "started {}; following it (Ctrl-C stops following, not the run)",
        started.id
    );
    loop {
        let run = api.run(&started.id).await?;
        if run.status.is_finished() {
            return Ok(run);
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

pub async fn show_run(id: &str, client: &ClientArgs) -> ExitCode {
    let result = client.server.client().run(id).await.map_err(Failure::from);
    finish(
        result.map(|run| match client.output {
            Output::Json => render::json(&run),
            Output::Table => render::run(&run),
        }),
        true,
    )
}

/// `laojun runs list [--status S] [--incident ID]`.
pub async fn list_runs(status: Option<&str>, incident: Option<IncidentId>, client: &ClientArgs) -> ExitCode {
    let status = match status.map(|s| serde_json::from_value::<RunStatus>(serde_json::json!(s))) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => {
            return super::usage(&format!(
                "--status {:?} is not a run status; use pending, running, awaiting_approval, succeeded, failed, interrupted, paused, refused or skipped",
                status.unwrap_or_default()
            ))
        }
    };
    let query = RunQuery {
        status,
        incident,
        ..RunQuery::default()
    };
    let result = client.server.client().runs(&query).await.map_err(Failure::from);
    finish(
        result.map(|runs| match client.output {
            Output::Json => render::json(&runs),
            Output::Table => render::runs(&runs),
        }),
        true,
    )
}

/// `laojun approvals`: what waits for a person, and how to decide it.
pub async fn approvals(client: &ClientArgs) -> ExitCode {
    let result = client.server.client().approvals().await.map_err(Failure::from);
    finish(
        result.map(|list| match client.output {
            Output::Json => render::json(&list),
            Output::Table => render::approvals(&list),
        }),
        true,
    )
}

/// `laojun retry RUN-n [--from STEP] [--dry-run]`: prints the new run's id.
pub async fn retry(id: &str, from_step: Option<&str>, dry_run: bool, client: &ClientArgs) -> ExitCode {
    let api = client.server.client();
    let answer = api
        .retry(id, from_step, dry_run.then_some(true))
        .await
        .map_err(Failure::from);
    finish(
        answer.map(|started| match client.output {
            Output::Json => render::json(&started),
            Output::Table => format!("{}: retry of {id}\n", started.id),
        }),
        true,
    )
}

/// `laojun cancel RUN-n [--reason TEXT]`.
pub async fn cancel(id: &str, reason: Option<&str>, client: &ClientArgs) -> ExitCode {
    let answer = client.server.client().cancel(id, reason).await.map_err(Failure::from);
    finish(
        answer.map(|a| match client.output {
            Output::Json => render::json(&a),
            Output::Table => format!("{id}: cancel asked; it stops before its next step\n"),
        }),
        true,
    )
}

pub async fn decide(id: &str, approve: bool, client: &ClientArgs) -> ExitCode {
    let api = client.server.client();
    let decision = if approve {
        api.approve(id).await
    } else {
        api.deny(id).await
    };
    finish(
        decision
            .map(|d| match client.output {
                Output::Json => render::json(&d),
                Output::Table => format!("{id}: {} by {}\n", d.decision, d.by),
            })
            .map_err(Failure::from),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_key_value_strings_split_at_the_first_equals_sign() {
        let p = params(&["namespace=prod".into(), " expr = a=b".into()]).expect("valid pairs");
        assert_eq!(p["namespace"], "prod");
        assert_eq!(p["expr"], " a=b");
    }

    #[test]
    fn a_param_without_a_key_says_how_to_write_one() {
        for bad in ["nokey", "=value"] {
            let e = params(&[bad.into()]).expect_err("no key");
            assert!(e.contains("KEY=VALUE, e.g. -p namespace=prod"), "{e}");
        }
    }
}
