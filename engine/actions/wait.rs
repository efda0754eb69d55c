//! `wait`: pause the run.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::spec::{req, ActionSpec, ArgKind};
use super::{Act, ActionError, Context, Outcome};

pub struct Wait;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    secs: i64,
}

impl Act for Wait {
    const SPEC: ActionSpec = ActionSpec {
        name: "wait",
        summary: "Pause the run.",
        args: &[req("secs", ArgKind::Int, "how long to wait")],
        exactly_one_of: &[],
        idempotent: true,
        output: "nothing",
        kube: &[],
    };
    type Args = Args;

    fn timeout(args: &Args) -> Duration {
        Duration::from_secs(args.secs.max(0) as u64 + 5)
    }

    fn only_waits() -> bool {
        true
    }

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        let secs = args.secs.max(0) as u64;
        if cx.dry_run {
            return Ok(Outcome {
                output: Value::Null,
                summary: format!("would wait {secs}s"),
            });
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok(Outcome {
            output: Value::Null,
            summary: format!("waited {secs}s"),
        })
    }
}
