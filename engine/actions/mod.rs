//! What steps do to the world. Every action is one type in its own file
//! that implements [`Act`]: its spec (arguments, output, whether it is safe
//! to re-run), its typed arguments, the targets it locks, its default
//! timeout, and `run`, which also decides what a dry run does. The
//! [`Action`] enum below lists them all; the executor, the loader, `laojun
//! actions` and docs/ACTIONS.md go through it, so the compiler names every
//! place a new action must be handled.
//!
//! Actions never touch the store: the executor journals around them.

mod backends;
pub mod observe;
pub mod spec;

pub mod alertmanager;
pub mod approval;
pub mod dns;
pub mod http;
pub mod k8s;
pub mod prometheus;
pub mod script;
pub mod slack;
pub mod wait;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use approval::Decision;
pub use backends::Backends;
pub use spec::{ActionSpec, Arg, ArgKind};

use crate::script::{Sandbox, Script};

/// How long one attempt of a step may take when neither the step
/// (`timeout_secs`) nor its action says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One action: what it accepts and what it does.
pub trait Act {
    /// Its row in the reference and the loader's checks.
    const SPEC: ActionSpec;
    /// The rendered `with:` arguments, typed.
    type Args: DeserializeOwned + Send + Sync;

    /// The objects a step changes: two runs never hold one at once.
    fn targets(_args: &Self::Args) -> Vec<Target> {
        Vec::new()
    }

    /// How long one attempt may take unless the step sets `timeout_secs`.
    fn timeout(_args: &Self::Args) -> Duration {
        DEFAULT_TIMEOUT
    }

    /// Whether a step interrupted by a crash may run again without
    /// `idempotent: true`, judged from its `with:` as written.
    fn rerun_safe(_with: &Map<String, Value>) -> bool {
        Self::SPEC.idempotent
    }

    /// Whether the step waits for a person (its run shows
    /// `awaiting_approval` while it does).
    fn waits_for_a_person() -> bool {
        false
    }

    /// Whether an attempt only waits (changes nothing while it does), so a
    /// cancel may stop it at once; any other attempt is let finish.
    fn only_waits() -> bool {
        false
    }

    /// Does it, or in a dry run reports what it would do.
    fn run(args: Self::Args, cx: &Context<'_>) -> impl Future<Output = Result<Outcome, ActionError>> + Send;
}

/// Lists every action once; generates [`Action`] (which action a step
/// names) and [`Call`] (the action with its typed arguments) and their
/// dispatch.
macro_rules! actions {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// Every action a step can take.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($variant),*
        }

        impl Action {
            /// In the order the reference lists them.
            pub const ALL: &'static [Action] = &[$(Action::$variant),*];

            pub fn spec(self) -> &'static ActionSpec {
                match self {
                    $(Action::$variant => &<$ty as Act>::SPEC),*
                }
            }

            pub fn rerun_safe(self, with: &Map<String, Value>) -> bool {
                match self {
                    $(Action::$variant => <$ty as Act>::rerun_safe(with)),*
                }
            }

            pub fn waits_for_a_person(self) -> bool {
                match self {
                    $(Action::$variant => <$ty as Act>::waits_for_a_person()),*
                }
            }

            pub fn only_waits(self) -> bool {
                match self {
                    $(Action::$variant => <$ty as Act>::only_waits()),*
                }
            }

            /// Types the rendered arguments.
            pub fn prepare(self, args: Value) -> Result<Call, String> {
                match self {
                    $(Action::$variant => typed::<<$ty as Act>::Args>(self, args).map(Call::$variant)),*
                }
            }
        }

        /// An action with its rendered, typed arguments, ready to run.
        pub enum Call {
            $($variant(<$ty as Act>::Args)),*
        }

        impl Call {
            pub fn targets(&self) -> Vec<Target> {
                match self {
                    $(Call::$variant(args) => <$ty as Act>::targets(args)),*
                }
            }

            pub fn timeout(&self) -> Duration {
                match self {
                    $(Call::$variant(args) => <$ty as Act>::timeout(args)),*
                }
            }

            pub async fn run(self, cx: &Context<'_>) -> Result<Outcome, ActionError> {
                match self {
                    $(Call::$variant(args) => <$ty as Act>::run(args, cx).await),*
                }
            }
        }
    };
}

actions! {
    K8sRollback(k8s::rollback::Rollback),
    K8sScale(k8s::scale::Scale),
    K8sSwitchTraffic(k8s::switch_traffic::SwitchTraffic),
    K8sRestart(k8s::restart::Restart),
    K8sSetImage(k8s::set_image::SetImage),
    K8sWaitReady(k8s::wait_ready::WaitReady),
    K8sCleanup(k8s::cleanup::Cleanup),
    K8sPods(k8s::pods::Pods),
    K8sLogs(k8s::logs::Logs),
    DnsFailover(dns::failover::Failover),
    SlackNotify(slack::Notify),
    Http(http::Http),
    PrometheusQuery(prometheus::Query),
    AlertmanagerSilence(alertmanager::Silence),
    AlertmanagerExpireSilence(alertmanager::ExpireSilence),
    Script(script::RunScript),
    Approval(approval::Approval),
    Wait(wait::Wait),
}

impl Action {
    /// The action a step's `action:` names.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.spec().name == name)
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn names() -> Vec<&'static str> {
        Action::ALL.iter().map(|a| a.name()).collect()
    }

    pub fn arg(self, name: &str) -> Option<&'static Arg> {
        self.spec().arg(name)
    }
}

fn typed<T: DeserializeOwned>(action: Action, args: Value) -> Result<T, String> {
    serde_json::from_value(args).map_err(|e| {
        format!(
            "the arguments do not fit {}: {e} (an argument that rendered empty counts as left out)",
            action.name()
        )
    })
}

/// Something a step changes, named so that two runs changing the same
/// object see the same name (`k8s:CLUSTER:NS:deployment/NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target(pub String);

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an action may use while it runs.
pub struct Context<'a> {
    pub backends: &'a Backends,
    pub dry_run: bool,
    pub run_id: crate::ids::RunId,
    pub step_id: &'a str,
    /// The incident the run acts for, for messages.
    pub incident: &'a IncidentInfo,
    /// What templates and scripts see (`params`, `alert`, `steps`, ...).
    pub values: &'a Value,
    /// The compiled script of a `script` step.
    pub script: Option<&'a Script>,
    pub sandbox: &'a Arc<Sandbox>,
    /// Where an approval step gets its decision and records it.
    pub approvals: &'a dyn Approvals,
}

/// The side of the executor an approval step talks to.
pub trait Approvals: Send + Sync {
    /// The decision this run's waiting step will get; taken once.
    fn decision(&self) -> Option<tokio::sync::oneshot::Receiver<Decision>>;
    /// Puts a decision on the timeline.
    fn record<'a>(&'a self, decision: &'a Decision) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// What a successful action gives back.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `steps.<id>.output` for later steps.
    pub output: Value,
    /// One line for the timeline: what changed, or in a dry run what would.
    pub summary: String,
}

/// A failed action. `retryable` is the action's judgement: a timeout, a
/// refused connection, a 5xx, a 409 or throttling may pass; a 404 or a bad
/// request will not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    pub retryable: bool,
    pub message: String,
}

impl ActionError {
    pub fn retry(message: impl Into<String>) -> Self {
        ActionError {
            retryable: true,
            message: message.into(),
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        ActionError {
            retryable: false,
            message: message.into(),
        }
    }
}

/// About the incident a run acts for, for messages.
#[derive(Debug, Clone, Default)]
pub struct IncidentInfo {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub link: Option<String>,
}

/// "did" in a real run, "would do" in a dry run.
pub(crate) fn maybe(dry_run: bool, done: &str, would: &str) -> String {
    if dry_run {
        would.to_string()
    } else {
        done.to_string()
    }
}

/// A reqwest error as text that never carries the URL (which may hold a
/// secret, such as a Slack webhook).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

/// Whether an HTTP status is worth retrying.
pub fn status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429) || status >= 500
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_found_by_its_name_and_names_are_unique() {
        let names = Action::names();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.name()), Some(*a));
        }
        assert_eq!(Action::from_name("k8s.rolback"), None);
    }

    #[test]
    fn arguments_that_do_not_fit_say_which_action_and_field() {
        let e = Action::K8sScale
            .prepare(serde_json::json!({"namespace": "prod"}))
            .err()
            .expect("deployment is required");
        assert!(e.contains("k8s.scale") && e.contains("deployment"), "{e}");
    }

    #[test]
    fn only_the_approval_step_waits_for_a_person() {
        let waiting: Vec<_> = Action::ALL.iter().filter(|a| a.waits_for_a_person()).collect();
        assert_eq!(waiting, vec![&Action::Approval]);
    }
}
