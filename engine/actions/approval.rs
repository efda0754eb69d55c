//! `approval`: wait until a person approves or denies (API or CLI). A
//! denial, or nobody deciding within `ttl_secs`, fails the step unless
//! `on_timeout: approve`. The executor registers where the decision will
//! arrive before it journals the step as `awaiting_approval`, so a decision
//! that comes at once is not lost.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::spec::{opt, ActionSpec, ArgKind};
use super::{Act, ActionError, Context, Outcome};

pub struct Approval;

/// A person's decision on an approval step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default, deserialize_with = "super::http::one_or_many")]
    who: Vec<String>,
    message: Option<String>,
    ttl_secs: Option<i64>,
    on_timeout: Option<String>,
}

impl Args {
    fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs.unwrap_or(900).max(1) as u64)
    }
}

impl Act for Approval {
    const SPEC: ActionSpec = ActionSpec {
        name: "approval",
        summary:
            "Wait until a person approves (API or CLI); deny or timeout fails the step unless `on_timeout: approve`.",
        args: &[
            opt(
                "who",
                ArgKind::StrList,
                Some("any operator"),
                "who may approve (token names)",
            ),
            opt("message", ArgKind::Str, None, "what the approver is asked"),
            opt("ttl_secs", ArgKind::Int, Some("900"), "how long to wait for a decision"),
            opt(
                "on_timeout",
                ArgKind::Enum(&["deny", "approve"]),
                Some("deny"),
                "what happens when nobody decides in time",
            ),
        ],
        exactly_one_of: &[],
        idempotent: true,
        output: "`decision`, `by`",
    };
    type Args = Args;

    fn timeout(args: &Args) -> Duration {
        args.ttl() + Duration::from_secs(5)
    }

    fn waits_for_a_person() -> bool {
        true
    }

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        let message = args.message.as_deref().unwrap_or("approve this step?");
        let ttl = args.ttl();
        let on_timeout = args.on_timeout.as_deref().unwrap_or("deny");
        let asked = if args.who.is_empty() {
            "any operator".to_string()
        } else {
            args.who.join(", ")
        };
        if cx.dry_run {
            return Ok(Outcome {
                output: json!({"decision": "approved", "by": "dry run"}),
                summary: format!(
                    "would ask {asked}: {message} (waiting up to {}s; on timeout: {on_timeout})",
                    ttl.as_secs()
                ),
            });
        }
        let rx = cx
            .approvals
            .decision()
            .ok_or_else(|| ActionError::fatal("the approval was not set up"))?;
        let decision = match tokio::time::timeout(ttl, rx).await {
            Ok(Ok(d)) => d,
            _ if on_timeout == "approve" => Decision {
                approved: true,
                by: format!("timeout after {}s", ttl.as_secs()),
            },
            _ => {
                return Err(ActionError::fatal(format!(
                    "nobody approved within {}s ({asked} was asked: {message})",
                    ttl.as_secs()
                )))
            }
        };
        cx.approvals.record(&decision).await;
        if decision.approved {
            Ok(Outcome {
                output: json!({"decision": "approved", "by": decision.by}),
                summary: format!("approved by {}", decision.by),
            })
        } else {
            Err(ActionError::fatal(format!("denied by {}", decision.by)))
        }
    }
}
