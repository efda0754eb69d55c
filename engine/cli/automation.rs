//! `laojun pause` and `laojun resume`: everything, or one playbook.

use std::process::ExitCode;

use super::{finish, ClientArgs, Failure};
use crate::client::AutomationState;

pub async fn pause(client: &ClientArgs, playbook: Option<&str>, reason: Option<&str>) -> ExitCode {
    let answer = client.server.client().pause(playbook, reason).await;
    finish(answer.map(|s| describe(&s)).map_err(Failure::from), true)
}

pub async fn resume(client: &ClientArgs, playbook: Option<&str>) -> ExitCode {
    let answer = client.server.client().resume(playbook).await;
    finish(answer.map(|s| describe(&s)).map_err(Failure::from), true)
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
