//! Runs runbooks: step by step, with `when`, timeouts, retries with backoff
//! and jitter, `on_failure`, approvals, dry-run, per-target locks, playbook
//! guards and a global pause. Every transition is journaled (through the
//! writer, to the store and the incident timeline) before it takes effect.
//!
//! - `mod.rs` — the handle, its shared state behind one lock, pause, decisions
//! - `start.rs` — one `start(trigger)` for incident, schedule and manual runs
//! - `steps.rs` — a run's steps; a step's attempts, retries, backoff, timeout
//! - `values.rs` — what templates and scripts see; rendering `with:` arguments
//! - `locks.rs` — one run per target, held by a guard that releases on drop
//! - `guards.rs` — cooldown and max runs per playbook
//! - `recover.rs` — settling runs a previous process left unfinished
//! - `leases.rs` — on a shared store: renewing leases, taking over runs

mod guards;
mod leases;
mod locks;
mod recover;
mod start;
mod steps;
mod values;

pub use recover::Recovered;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, Notify};

pub use crate::run::PendingApproval;
pub use start::{ManualRun, Retry, Started, Trigger};

use crate::actions::approval::Decider;
use crate::actions::{Backends, Decision, IncidentInfo, Target};
use crate::automation::{Automation, AutomationView, Pause, PauseChange};
use crate::catalog::Catalog;
use crate::ids::{IncidentId, RunId};
use crate::ledger::RequestError;
use crate::live::Live;
use crate::notices::Notifier;
use crate::run::Run;
use crate::runbook::Runbook;
use crate::script::Sandbox;
use crate::store::Store;
use crate::writer::{Failure, Writer};

/// Settings the executor takes from the service config.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Every run is a dry run.
    pub dry_run: bool,
    /// Start with automation paused.
    pub paused: bool,
    /// Base URL people reach laojun at, for links in messages.
    pub external_url: Option<String>,
}

/// Why a run could not be started or decided.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no runbook `{0}`")]
    UnknownRunbook(String),
    #[error("{0}")]
    BadParams(String),
    #[error("{0}; resume it first")]
    Paused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The caller may not make this decision.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unavailable(String),
    /// Another replica holds the run now; this one writes nothing more for it.
    #[error("{0}")]
    LeaseLost(String),
}

impl From<Failure> for ExecError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Refused(RequestError::NotFound(id)) => ExecError::NotFound(format!("no incident {id}")),
            Failure::Refused(e @ RequestError::LeaseLost(_)) => ExecError::LeaseLost(e.to_string()),
            Failure::Refused(e) => ExecError::Conflict(e.to_string()),
            Failure::Unavailable(e) | Failure::Busy(e) => ExecError::Unavailable(e),
        }
    }
}

impl From<crate::store::StoreError> for ExecError {
    fn from(e: crate::store::StoreError) -> Self {
        ExecError::Unavailable(e.to_string())
    }
}

/// An approval step waiting for a person.
struct Waiting {
    decision: oneshot::Sender<Decision>,
    pending: PendingApproval,
    ask: crate::run::ApprovalAsk,
    /// Who started the run by hand (`None` for a playbook's run).
    started_by_hand: Option<String>,
}

/// Who the pause `execution.paused: true` is by.
const CONFIG_PAUSER: &str = "config";

/// The executor; cheap to clone.
#[derive(Clone)]
pub struct Executor {
    shared: Arc<Shared>,
}

struct Shared {
    writer: Writer,
    store: Arc<dyn Store>,
    /// The catalog in force; each run keeps the one it started with.
    catalog: Arc<Live>,
    backends: Arc<Backends>,
    sandbox: Arc<Sandbox>,
    render: values::Renderer,
    settings: Settings,
    /// What laojun posts to Slack by itself.
    notices: Notifier,
    /// What changes while runs go, behind one lock that is never held
    /// across an await.
    state: Mutex<State>,
    /// Wakes runs waiting for a target another run released.
    unlocked: Notify,
    /// One pause or resume at a time, each stored before the next.
    pausing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// The pauses in force (a copy of what the store holds).
    automation: Automation,
    /// Target (a Kubernetes object or DNS record) → run acting on it.
    locks: HashMap<Target, RunId>,
    /// Per run waiting for approval: what it asks and where `decide`
    /// sends the decision.
    approvals: HashMap<RunId, Waiting>,
    /// The receiving ends, registered before `awaiting_approval` is
    /// journaled so an approval that comes at once is not refused.
    decisions: HashMap<RunId, oneshot::Receiver<Decision>>,
    /// When each playbook's runs started, for cooldowns and max_runs.
    history: guards::History,
    /// Per run going on here: set to who cancelled it and why.
    cancels: HashMap<RunId, tokio::sync::watch::Sender<Option<String>>>,
    /// The last decisions taken, so a second click hears who decided first.
    decided: std::collections::VecDeque<(RunId, String)>,
}

/// How many past decisions `decide` remembers.
const DECISIONS_KEPT: usize = 1024;

impl Executor {
    /// `automation` is what the store holds; `settings.paused` adds a
    /// pause by `config` when nothing else paused everything.
    pub fn new(
        writer: Writer,
        store: Arc<dyn Store>,
        catalog: Arc<Live>,
        backends: Arc<Backends>,
        settings: Settings,
        mut automation: Automation,
        notices: Notifier,
    ) -> Self {
        if settings.paused && automation.paused.is_none() {
            automation.paused = Some(Pause {
                by: CONFIG_PAUSER.into(),
                reason: Some("execution.paused in laojun.yaml".into()),
                since: chrono::Utc::now(),
            });
        }
        let state = State {
            automation,
            ..State::default()
        };
        let shared = Shared {
            writer,
            store,
            catalog,
            backends,
            sandbox: Arc::new(Sandbox::default()),
            render: values::Renderer::new(),
            settings,
            notices,
            state: Mutex::new(state),
            unlocked: Notify::new(),
            pausing: tokio::sync::Mutex::new(()),
        };
        Executor {
            shared: Arc::new(shared),
        }
    }

    /// The catalog in force now.
    fn catalog(&self) -> Arc<Catalog> {
        self.shared.catalog.catalog()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the maps usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Why nothing may start now, while everything is paused.
    pub fn is_paused(&self) -> Option<String> {
        self.state().automation.everything_paused()
    }

    /// Why a run of `playbook` (`None`: a manual run) may not start or go on.
    pub fn blocked(&self, playbook: Option<&str>) -> Option<String> {
        self.state().automation.blocks(playbook)
    }

    pub fn automation(&self) -> AutomationView {
        self.state().automation.view()
    }

    /// Pauses everything (`playbook: None`) or one playbook: nothing of it
    /// starts, and running runs stop before their next step. Stored before
    /// it answers, so it holds across a restart.
    pub async fn pause(
        &self,
        by: &str,
        playbook: Option<&str>,
        reason: Option<String>,
    ) -> Result<AutomationView, ExecError> {
        if let Some(name) = playbook {
            if !self.catalog().playbooks.iter().any(|p| p.name == name) {
                return Err(ExecError::NotFound(format!("no playbook `{name}`")));
            }
        }
        let pause = Pause {
            by: by.to_string(),
            reason,
            since: chrono::Utc::now(),
        };
        let view = self
            .change_automation(PauseChange::Pause {
                playbook: playbook.map(str::to_string),
                pause,
            })
            .await?;
        tracing::warn!(by, playbook, "automation paused");
        Ok(view)
    }

    /// Lifts the pause of everything (`None`) or of one playbook.
    pub async fn resume(&self, by: &str, playbook: Option<&str>) -> Result<AutomationView, ExecError> {
        let view = self
            .change_automation(PauseChange::Resume {
                playbook: playbook.map(str::to_string),
            })
            .await?;
        tracing::info!(by, playbook, "automation resumed");
        Ok(view)
    }

    /// Applies `change` to the pauses as stored (so a pause another replica
    /// took a moment ago is kept), and takes the result here.
    async fn change_automation(&self, change: PauseChange) -> Result<AutomationView, ExecError> {
        let _one_at_a_time = self.shared.pausing.lock().await;
        let stored = self.shared.writer.automation(change.clone()).await?;
        let mut state = self.state();
        // The pause `execution.paused` adds lives in the config, not the
        // store (storing it would outlast the flag): kept here until
        // everything is resumed.
        let config_pause = state.automation.paused.clone().filter(|p| p.by == CONFIG_PAUSER);
        let mut next = stored;
        if next.paused.is_none() && !matches!(change, PauseChange::Resume { playbook: None }) {
            next.paused = config_pause;
        }
        let view = next.view();
        state.automation = next;
        Ok(view)
    }

    /// Decides a waiting approval step, if `decider` may: a listed name or
    /// role, or an admin, and not the one who started the run by hand
    /// (unless the step allows it). A refusal changes nothing. On a store
    /// replicas share, the decision is one compare-and-set there, taken on
    /// any replica; the one holding the run acts on it.
    pub fn decide(&self, run_id: RunId, approved: bool, decider: &Decider) -> Result<(), ExecError> {
        if self.shared.store.replica().is_some() {
            return self.decide_shared(run_id, approved, decider);
        }
        let state = self.state();
        let Some(waiting) = state.approvals.get(&run_id) else {
            if let Some((_, how)) = state.decided.iter().rev().find(|(id, _)| *id == run_id) {
                return Err(ExecError::Conflict(format!("{run_id} was already {how}")));
            }
            return Err(ExecError::Conflict(format!("{run_id} is not waiting for an approval")));
        };
        crate::actions::approval::may_decide(&waiting.ask, decider, waiting.started_by_hand.as_deref())
            .map_err(ExecError::Forbidden)?;
        drop(state);
        if self.deliver(run_id, None, approved, decider.recorded()) {
            Ok(())
        } else {
            Err(ExecError::Conflict(format!("{run_id} stopped waiting for approval")))
        }
    }

    fn decide_shared(&self, run_id: RunId, approved: bool, decider: &Decider) -> Result<(), ExecError> {
        let store = &self.shared.store;
        let already = |d: crate::store::Decided| {
            ExecError::Conflict(format!(
                "{run_id} was already {} by {} at {}",
                if d.approved { "approved" } else { "denied" },
                d.by,
                d.at.format("%Y-%m-%d %H:%M:%S UTC")
            ))
        };
        let here = self
            .state()
            .approvals
            .get(&run_id)
            .map(|w| (w.ask.clone(), w.started_by_hand.clone(), w.pending.step.clone()));
        let (ask, by_hand, step) = match here {
            Some(found) => found,
            None => {
                let run = store
                    .run(run_id)?
                    .ok_or_else(|| ExecError::NotFound(format!("no run {run_id}")))?;
                let waiting = run
                    .steps
                    .iter()
                    .find(|s| s.status == crate::run::StepStatus::AwaitingApproval)
                    .and_then(|s| s.approval.clone().map(|ask| (ask, s.id.clone())));
                let Some((ask, step)) = waiting.filter(|_| !run.status.is_finished()) else {
                    if let Some(d) = store.decisions(&[run_id])?.pop() {
                        return Err(already(d));
                    }
                    return Err(ExecError::Conflict(format!("{run_id} is not waiting for an approval")));
                };
                let by_hand = (run.trigger == crate::run::TriggerKind::Manual).then(|| run.by.clone());
                (ask, by_hand, step)
            }
        };
        crate::actions::approval::may_decide(&ask, decider, by_hand.as_deref()).map_err(ExecError::Forbidden)?;
        let now = chrono::Utc::now();
        if ask.expires_at < now {
            return Err(ExecError::Conflict(format!(
                "{run_id}'s approval expired at {}",
                ask.expires_at
            )));
        }
        let decision = crate::store::Decided {
            run: run_id,
            step,
            approved,
            by: decider.recorded(),
            at: now,
        };
        if let Some(first) = store.decide(&decision)? {
            return Err(already(first));
        }
        // Waiting here: it goes on now. Elsewhere: its replica hears it.
        self.deliver(run_id, Some(&decision.step), approved, decision.by.clone());
        Ok(())
    }

    /// Hands a decision to the approval step of `run_id` waiting here, if
    /// it is `step` (any, from this replica's own decide); false when none
    /// is.
    fn deliver(&self, run_id: RunId, step: Option<&str>, approved: bool, by: String) -> bool {
        let mut state = self.state();
        let matches = state
            .approvals
            .get(&run_id)
            .is_some_and(|w| step.is_none_or(|step| w.pending.step == step));
        if !matches {
            return false;
        }
        let Some(waiting) = state.approvals.remove(&run_id) else {
            return false;
        };
        let how = format!(
            "{} by {by} at {}",
            if approved { "approved" } else { "denied" },
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
        );
        state.decided.push_back((run_id, how));
        if state.decided.len() > DECISIONS_KEPT {
            state.decided.pop_front();
        }
        drop(state);
        waiting.decision.send(Decision { approved, by }).is_ok()
    }

    /// Cancels a run: a step that only waits stops at once, a step
    /// changing something finishes its attempt, and no step runs after. A
    /// run going on at another replica is asked through the store.
    pub fn cancel(&self, run_id: RunId, by: &str, reason: Option<&str>) -> Result<(), ExecError> {
        let why = match reason {
            Some(r) => format!("cancelled by {by}: {r}"),
            None => format!("cancelled by {by}"),
        };
        // The store first: a run that just ended may not have left the
        // registry yet, and its end is what the caller should hear.
        match self.shared.store.run(run_id)? {
            None => Err(ExecError::NotFound(format!("no run {run_id}"))),
            Some(run) if run.status.is_finished() => Err(ExecError::Conflict(format!(
                "{run_id} already ended {}; there is nothing to cancel",
                run.status.as_str()
            ))),
            Some(run) => {
                if let Some(signal) = self.state().cancels.get(&run_id) {
                    signal.send_replace(Some(why));
                    return Ok(());
                }
                if self.shared.store.replica().is_some() {
                    // Going on at another replica: it hears the ask.
                    self.shared.store.ask_cancel(run_id, &why)?;
                    return Ok(());
                }
                Err(ExecError::Conflict(format!(
                    "{run_id} is {} but not going on in this process; try again in a moment",
                    run.status.as_str()
                )))
            }
        }
    }

    /// Why the run was cancelled, if it was.
    fn cancelled(&self, run_id: RunId) -> Option<String> {
        self.state().cancels.get(&run_id).and_then(|s| s.borrow().clone())
    }

    /// What a step that only waits listens to for a cancel.
    fn cancel_signal(&self, run_id: RunId) -> Option<tokio::sync::watch::Receiver<Option<String>>> {
        self.state().cancels.get(&run_id).map(|s| s.subscribe())
    }

    /// The approval steps waiting for a person, the oldest first.
    pub fn approvals(&self) -> Vec<PendingApproval> {
        let mut list: Vec<PendingApproval> = self.state().approvals.values().map(|w| w.pending.clone()).collect();
        list.sort_by_key(|p| (p.requested_at, p.run));
        list
    }

    /// Runs `run`'s steps from `from_step` on, in a task of its own.
    fn spawn(&self, run: Run, runbook: Runbook, from_step: usize) {
        let this = self.clone();
        tokio::spawn(async move {
            let id = run.id;
            if let Err(e) = this.execute(run, &runbook, from_step).await {
                stopped(id, &e);
            }
        });
    }

    /// About an incident, for messages.
    fn incident_info(&self, incident: Option<IncidentId>) -> IncidentInfo {
        let Some(id) = incident else {
            return IncidentInfo::default();
        };
        let inc = self.shared.store.incident(id).ok().flatten();
        IncidentInfo {
            id: id.to_string(),
            title: inc.as_ref().map(|i| i.title.clone()).unwrap_or_default(),
            severity: inc.as_ref().map(|i| i.severity.to_string()).unwrap_or_default(),
            link: crate::incident::page_url(self.shared.settings.external_url.as_deref(), id),
        }
    }
}

/// Says why a run stopped before its end was journaled.
fn stopped(run: RunId, e: &ExecError) {
    if matches!(e, ExecError::LeaseLost(_)) {
        tracing::warn!(%run, "run stopped here: another replica holds it now");
    } else {
        tracing::error!(%run, error = %e, "run stopped: its journal could not be written");
    }
}

impl crate::scheduler::Fire for Executor {
    fn fire<'a>(
        &'a self,
        playbook: &'a crate::playbook::Playbook,
        due: chrono::DateTime<chrono::Utc>,
    ) -> crate::scheduler::BoxFuture<'a> {
        Box::pin(async move {
            let trigger = Trigger::Schedule {
                playbook: playbook.clone(),
                due,
            };
            // Scheduled starts never fail as a whole: each run that could
            // not start is journaled as such.
            let _ = self.start(trigger).await;
        })
    }
}
