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
use crate::config::Role;
use crate::run::ApprovalAsk;

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
    allow_self_approval: Option<bool>,
}

impl Args {
    fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs.unwrap_or(900).max(1) as u64)
    }

    fn message(&self) -> &str {
        self.message.as_deref().unwrap_or("approve this step?")
    }

    /// What the step asks, of whom, until when, from now.
    pub fn ask(&self, now: chrono::DateTime<chrono::Utc>) -> ApprovalAsk {
        let ttl = chrono::Duration::from_std(self.ttl()).unwrap_or(chrono::Duration::MAX);
        ApprovalAsk {
            message: self.message().to_string(),
            who: self.who.clone(),
            allow_self_approval: self.allow_self_approval.unwrap_or(false),
            requested_at: now,
            // A deadline past what a date can hold is as good as never.
            expires_at: now
                .checked_add_signed(ttl)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
        }
    }
}

/// Who asks to decide: a token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider {
    pub name: String,
    pub role: Role,
    /// The API has no tokens, so nobody can be told apart: the rule that
    /// a requester may not approve their own run cannot apply.
    pub anonymous: bool,
    /// Where the decision came from when not the API, e.g. `Slack U0123ABCD`.
    pub via: Option<String>,
}

impl Decider {
    /// How the decision is recorded: `alice`, or `alice (Slack U0123ABCD)`.
    pub fn recorded(&self) -> String {
        match &self.via {
            Some(via) => format!("{} ({via})", self.name),
            None => self.name.clone(),
        }
    }
}

/// Whether `decider` may decide `ask` on a run that `requested_by` started
/// by hand (`None` for runs a playbook started). Admins are always among
/// the approvers; nobody approves a run they started unless the step
/// allows it. The error says who may decide.
pub fn may_decide(ask: &ApprovalAsk, decider: &Decider, requested_by: Option<&str>) -> Result<(), String> {
    let listed = ask.who.is_empty() && matches!(decider.role, Role::Operator | Role::Admin)
        || decider.role == Role::Admin
        || ask
            .who
            .iter()
            .any(|w| w == &decider.name || w.strip_prefix("role:").is_some_and(|r| r == decider.role.as_str()));
    let who = if ask.who.is_empty() {
        "any operator or admin".to_string()
    } else {
        format!("{} (or an admin)", ask.who.join(", "))
    };
    if !listed {
        return Err(format!(
            "`{}` ({}) may not decide this approval; {who} may",
            decider.name,
            decider.role.as_str()
        ));
    }
    if requested_by == Some(decider.name.as_str()) && !ask.allow_self_approval && !decider.anonymous {
        return Err(format!(
            "`{}` started this run and may not approve it too (the step does not say allow_self_approval: true); {who} may",
            decider.name
        ));
    }
    Ok(())
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
                "who may decide: token names and `role:NAME` entries; admins always may",
            ),
            opt("message", ArgKind::Str, None, "what the approver is asked"),
            opt("ttl_secs", ArgKind::Int, Some("900"), "how long to wait for a decision"),
            opt(
                "on_timeout",
                ArgKind::Enum(&["deny", "approve"]),
                Some("deny"),
                "what happens when nobody decides in time",
            ),
            opt(
                "allow_self_approval",
                ArgKind::Bool,
                Some("false"),
                "whether the token that started a run by hand may also approve it",
            ),
        ],
        exactly_one_of: &[],
        idempotent: true,
        output: "`decision`, `by`",
        kube: &[],
    };
    type Args = Args;

    /// The TTL, and a minute to record the decision (or the timeout) once
    /// it comes: a slow disk then, or `laojun test`'s clock running ahead
    /// while the journal is written, must not turn an `on_timeout: approve`
    /// into a step timeout.
    fn timeout(args: &Args) -> Duration {
        args.ttl() + Duration::from_secs(60)
    }

    fn waits_for_a_person() -> bool {
        true
    }

    fn only_waits() -> bool {
        true
    }

    async fn run(args: Args, cx: &Context<'_>) -> Result<Outcome, ActionError> {
        let message = args.message();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(who: &[&str], allow_self: bool) -> ApprovalAsk {
        ApprovalAsk {
            message: "go?".into(),
            who: who.iter().map(|w| w.to_string()).collect(),
            allow_self_approval: allow_self,
            requested_at: chrono::Utc::now(),
            expires_at: chrono::Utc::now(),
        }
    }

    fn decider(name: &str, role: Role) -> Decider {
        Decider {
            via: None,
            name: name.into(),
            role,
            anonymous: false,
        }
    }

    #[test]
    fn listed_names_and_roles_may_decide_and_admins_always_may() {
        let a = ask(&["oncall", "role:operator"], false);
        assert!(may_decide(&a, &decider("oncall", Role::Viewer), None).is_ok());
        assert!(may_decide(&a, &decider("bob", Role::Operator), None).is_ok());
        assert!(may_decide(&a, &decider("root", Role::Admin), None).is_ok());
        let only = ask(&["oncall"], false);
        let e = may_decide(&only, &decider("alice", Role::Operator), None).unwrap_err();
        assert_eq!(
            e,
            "`alice` (operator) may not decide this approval; oncall (or an admin) may"
        );
    }

    #[test]
    fn the_starter_of_a_manual_run_may_not_approve_it_unless_the_step_allows() {
        let a = ask(&[], false);
        let alice = decider("alice", Role::Operator);
        assert!(may_decide(&a, &alice, Some("alice"))
            .unwrap_err()
            .contains("started this run"));
        assert!(may_decide(&a, &alice, Some("bob")).is_ok());
        assert!(may_decide(&ask(&[], true), &alice, Some("alice")).is_ok());
        let admin = decider("root", Role::Admin);
        assert!(may_decide(&a, &admin, Some("root")).is_err(), "not even an admin");
    }
}
