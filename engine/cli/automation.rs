//! `laojun pause` and `laojun resume`: all automation at once.

use std::process::ExitCode;

use super::{finish, ClientArgs, Failure};
use crate::client::AutomationState;

pub async fn pause(client: &ClientArgs) -> ExitCode {
    finish(
        client
            .server
            .client()
            .pause()
            .await
            .map(describe)
            .map_err(Failure::from),
        true,
    )
}

pub async fn resume(client: &ClientArgs) -> ExitCode {
    finish(
        client
            .server
            .client()
            .resume()
            .await
            .map(describe)
            .map_err(Failure::from),
        true,
    )
}

fn describe(state: AutomationState) -> String {
    let word = if state.paused { "paused" } else { "running" };
    format!("automation is {word} ({})\n", state.by.as_deref().unwrap_or("?"))
}
