//! `laojun pause` and `laojun resume` (everything, or one playbook), and
//! `laojun audit`: who did what.

use std::process::ExitCode;

use super::{finish, render, ClientArgs, Failure, Output};
use crate::client::AutomationState;

pub async fn pause(client: &ClientArgs, playbook: Option<&str>, reason: Option<&str>) -> ExitCode {
    let answer = client.server.client().pause(playbook, reason).await;
    finish(answer.map(|s| shown(&s, client.output)).map_err(Failure::from), true)
}

pub async fn resume(client: &ClientArgs, playbook: Option<&str>) -> ExitCode {
    let answer = client.server.client().resume(playbook).await;
    finish(answer.map(|s| shown(&s, client.output)).map_err(Failure::from), true)
}

fn shown(state: &AutomationState, output: Output) -> String {
    match output {
        Output::Json => render::json(state),
        Output::Table => describe(state),
    }
}

/// `laojun audit [--limit N]`: newest first.
pub async fn audit(limit: usize, client: &ClientArgs) -> ExitCode {
    let answer = client.server.client().audit(Some(limit)).await.map_err(Failure::from);
    finish(
        answer.map(|records| match client.output {
            Output::Json => render::json(&records),
            Output::Table if records.is_empty() => "no audit records\n".into(),
            Output::Table => records
                .iter()
                .map(|a| {
                    format!(
                        "{}  {:<12} {:<8} {}{}\n",
                        a.at.format("%Y-%m-%d %H:%M:%S"),
                        a.by,
                        a.action,
                        a.target,
                        a.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
                    )
                })
                .collect(),
        }),
        true,
    )
}

/// One line for everything, then one per paused playbook.
fn describe(state: &AutomationState) -> String {
    let mut out = match (&state.paused, &state.by) {
        (true, by) => format!(
            "automation is paused (by {}{}{})\n",
            by.as_deref().unwrap_or("?"),
            state.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default(),
            state
                .since
                .map(|t| format!(", since {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
                .unwrap_or_default()
        ),
        (false, _) => "automation is running\n".to_string(),
    };
    for p in &state.paused_playbooks {
        out.push_str(&format!(
            "playbook {} is paused (by {}{}, since {})\n",
            p.playbook,
            p.by,
            p.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default(),
            p.since.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    out
}
