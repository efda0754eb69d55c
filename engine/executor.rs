//! Runs runbooks: step by step, with `when`, timeouts, retries with backoff
//! and jitter, `on_failure`, approvals, dry-run, per-target locks, playbook
//! guards and a global pause. Every transition is journaled (through the
//! writer, to the store and the incident timeline) before it takes effect.
//!
//! Alert-triggered runs, manual runs and scheduled runs all come through
//! here; on start, `recover` finds runs a previous process left unfinished.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use handlebars::Handlebars;
use serde_json::{json, Map, Value};
use tokio::sync::{oneshot, Notify};

use crate::actions::{self, ActionError, Backends, IncidentInfo, Outcome};
use crate::catalog::Catalog;
use crate::incident::{EventKind, Incident};
use crate::intake::{Opened, DEFAULT_PLAYBOOK};
use crate::run::{Run, RunStatus, StepRecord, StepStatus, TriggerKind};
use crate::runbook::spec::ArgKind;
use crate::runbook::{OnFailure, Runbook, Step};
use crate::script::Sandbox;
use crate::store::Store;
use crate::template;
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

/// A person's decision on an approval step.
#[derive(Debug, Clone)]
struct Decision {
    approved: bool,
    by: String,
}

/// Why a run could not be started or decided.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no runbook `{0}`")]
    UnknownRunbook(String),
    #[error("{0}")]
    BadParams(String),
    #[error("automation is paused (by {0}); resume it first")]
    Paused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<Failure> for ExecError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Refused(crate::intake::RequestError::NotFound(id)) => {
                ExecError::NotFound(format!("no incident {id}"))
            }
            Failure::Refused(e) => ExecError::Conflict(e.to_string()),
            Failure::Unavailable(e) => ExecError::Unavailable(e),
        }
    }
}

/// What a manual run asks for.
#[derive(Debug, Clone, Default)]
pub struct ManualRun {
    pub runbook: String,
    pub params: Map<String, Value>,
    pub dry_run: bool,
    pub by: String,
    pub idempotency_key: Option<String>,
    pub incident: Option<String>,
}

/// The executor; cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    backends: Backends,
    sandbox: Arc<Sandbox>,
    plain: Handlebars<'static>,
    slack: Handlebars<'static>,
    settings: Settings,
    paused: AtomicBool,
    paused_by: Mutex<String>,
    /// Target (a Kubernetes object or DNS record) → run acting on it.
    locks: Mutex<HashMap<String, String>>,
    unlocked: Notify,
    approvals: Mutex<HashMap<String, oneshot::Sender<Decision>>>,
    /// The receiving ends, registered before `awaiting_approval` is
    /// journaled so an approval that comes at once is not refused.
    decisions: Mutex<HashMap<String, oneshot::Receiver<Decision>>>,
    /// Per playbook: when its runs started and for which group.
    history: Mutex<HashMap<String, Vec<Started>>>,
}

/// When a playbook's run started, and for which incident group.
type Started = (DateTime<Utc>, String);

/// How long runs are remembered for cooldowns and max_runs after a restart.
const HISTORY_WINDOW_HOURS: i64 = 24;

impl Executor {
    pub fn new(
        writer: Writer,
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        backends: Backends,
        settings: Settings,
    ) -> Self {
        let mut slack = template::registry();
        slack.register_escape_fn(actions::slack::escape);
        let inner = Inner {
            writer,
            store,
            catalog,
            backends,
            sandbox: Arc::new(Sandbox::default()),
            plain: template::registry(),
            slack,
            paused: AtomicBool::new(settings.paused),
            paused_by: Mutex::new("config".into()),
            settings,
            locks: Mutex::new(HashMap::new()),
            unlocked: Notify::new(),
            approvals: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
            history: Mutex::new(HashMap::new()),
        };
        Executor { inner: Arc::new(inner) }
    }

    pub fn is_paused(&self) -> Option<String> {
        self.inner
            .paused
            .load(Ordering::SeqCst)
            .then(|| lock(&self.inner.paused_by).clone())
    }

    /// Stops all automation: no run starts, running ones stop before their next step.
    pub fn pause(&self, by: &str) {
        *lock(&self.inner.paused_by) = by.to_string();
        self.inner.paused.store(true, Ordering::SeqCst);
        tracing::warn!(by, "automation paused");
    }

    pub fn resume(&self, by: &str) {
        self.inner.paused.store(false, Ordering::SeqCst);
        tracing::info!(by, "automation resumed");
    }

    /// Starts the runbooks of the playbook that opened an incident.
    pub async fn start_for_incident(&self, opened: Opened) {
        let inc = &opened.incident;
        if inc.playbook == DEFAULT_PLAYBOOK {
            return;
        }
        let Some(playbook) = self
            .inner
            .catalog
            .playbooks
            .iter()
            .find(|p| p.name == inc.playbook)
            .cloned()
        else {
            return;
        };
        let alert = serde_json::to_value(&opened.alert).unwrap_or_default();
        let group = format!(
            "{}|{}",
            playbook.name,
            serde_json::to_string(&inc.group).unwrap_or_default()
        );
        for call in &playbook.runbooks {
            let Some(runbook) = self.inner.catalog.runbooks.get(&call.runbook).cloned() else {
                continue;
            };
            let context = json!({"alert": alert, "incident": incident_value(inc, &self.inner.settings)});
            let mut run = new_run(&runbook, TriggerKind::Alert, "alert", self.inner.settings.dry_run);
            run.incident = Some(inc.id.clone());
            run.playbook = Some(playbook.name.clone());
            run.alert = alert.clone();
            run.group = Some(group.clone());
            let refusal = match self.render_call_params(&runbook, &call.params, &context) {
                Err(why) => Some((RunStatus::Refused, why)),
                Ok(params) => {
                    run.params = params;
                    if let Some(by) = self.is_paused() {
                        Some((RunStatus::Paused, format!("automation is paused (by {by})")))
                    } else {
                        self.check_guards(&playbook, &group)
                            .map(|why| (RunStatus::Refused, why))
                    }
                }
            };
            if let Some((status, reason)) = refusal {
                run.status = status;
                run.reason = Some(reason.clone());
                run.finished_at = Some(Utc::now());
                let event = EventKind::RunNotStarted {
                    run: String::new(),
                    runbook: runbook.name.clone(),
                    status,
                    reason,
                };
                self.journal_new(run, event).await.ok();
                continue;
            }
            lock(&self.inner.history)
                .entry(playbook.name.clone())
                .or_default()
                .push((Utc::now(), group.clone()));
            let event = EventKind::RunStarted {
                run: String::new(),
                runbook: runbook.name.clone(),
                dry_run: run.dry_run,
                by: run.by.clone(),
            };
            if let Ok(run) = self.journal_new(run, event).await {
                self.spawn(run, runbook, 0);
            }
        }
    }

    /// Starts the runbooks of a scheduled playbook. The runs have no
    /// incident: they are the record of the maintenance they did.
    pub async fn start_scheduled(&self, playbook: &crate::playbook::Playbook, due: DateTime<Utc>) {
        let group = format!("{}|schedule", playbook.name);
        let schedule = match &playbook.trigger {
            crate::playbook::Trigger::Schedule(s) => {
                json!({"playbook": playbook.name, "cron": s.expression, "due": due, "timezone": s.timezone.name()})
            }
            crate::playbook::Trigger::Alerts(_) => return,
        };
        for call in &playbook.runbooks {
            let Some(runbook) = self.inner.catalog.runbooks.get(&call.runbook).cloned() else {
                continue;
            };
            let mut run = new_run(&runbook, TriggerKind::Schedule, "schedule", self.inner.settings.dry_run);
            run.playbook = Some(playbook.name.clone());
            run.group = Some(group.clone());
            let refusal = match self.render_call_params(&runbook, &call.params, &json!({"schedule": schedule})) {
                Err(why) => Some((RunStatus::Refused, why)),
                Ok(params) => {
                    run.params = params;
                    match self.is_paused() {
                        Some(by) => Some((RunStatus::Paused, format!("automation is paused (by {by})"))),
                        None => self.check_guards(playbook, &group).map(|why| (RunStatus::Refused, why)),
                    }
                }
            };
            if let Some((status, reason)) = refusal {
                tracing::warn!(playbook = %playbook.name, runbook = %runbook.name, %reason, "scheduled run not started");
                run.status = status;
                run.reason = Some(reason);
                run.finished_at = Some(Utc::now());
                let _ = self.inner.writer.journal(&run, None).await;
                continue;
            }
            lock(&self.inner.history)
                .entry(playbook.name.clone())
                .or_default()
                .push((Utc::now(), group.clone()));
            match self.inner.writer.journal(&run, None).await {
                Ok(j) => {
                    run.id = j.id;
                    tracing::info!(run = %run.id, playbook = %playbook.name, "scheduled run started");
                    self.spawn(run, runbook, 0);
                }
                Err(e) => {
                    tracing::error!(playbook = %playbook.name, error = %e, "scheduled run could not be journaled")
                }
            }
        }
    }

    /// Starts a run by hand; returns its id (an earlier run's id when the
    /// idempotency key was used before).
    pub async fn start_manual(&self, request: ManualRun) -> Result<(String, bool), ExecError> {
        let runbook = self
            .inner
            .catalog
            .runbooks
            .get(&request.runbook)
            .cloned()
            .ok_or_else(|| ExecError::UnknownRunbook(request.runbook.clone()))?;
        let dry_run = request.dry_run || self.inner.settings.dry_run;
        if let Some(by) = self.is_paused() {
            if !dry_run {
                return Err(ExecError::Paused(by));
            }
        }
        let params = check_params(&runbook, &request.params).map_err(ExecError::BadParams)?;
        let mut run = new_run(&runbook, TriggerKind::Manual, &request.by, dry_run);
        run.params = params;
        run.idempotency_key = request.idempotency_key;
        run.incident = request.incident;
        if let Some(id) = run.incident.as_deref().and_then(crate::incident::parse_id) {
            if let Some(inc) = self
                .inner
                .store
                .incident(id)
                .map_err(|e| ExecError::Unavailable(e.to_string()))?
            {
                run.alert = inc
                    .alerts
                    .first()
                    .map(|a| serde_json::to_value(a).unwrap_or_default())
                    .unwrap_or_default();
            }
        }
        let event = EventKind::RunStarted {
            run: String::new(),
            runbook: runbook.name.clone(),
            dry_run,
            by: request.by.clone(),
        };
        let (reply, answer) = oneshot::channel();
        self.inner
            .writer
            .send(crate::writer::Request::Run {
                run: Box::new(run.clone()),
                event: Some(event),
                reply,
            })
            .await
            .map_err(|_| ExecError::Unavailable("laojun is shutting down".into()))?;
        let journaled = answer
            .await
            .map_err(|_| ExecError::Unavailable("laojun is shutting down".into()))??;
        if !journaled.duplicate {
            run.id = journaled.id.clone();
            self.spawn(run, runbook, 0);
        }
        Ok((journaled.id, journaled.duplicate))
    }

    /// Tells Slack an incident resolved, how long it took, and where its
    /// postmortem is. Failures are logged, not raised: the incident is
    /// resolved either way.
    pub async fn post_resolved_summary(&self, id: &str) {
        let Some(inc) = crate::incident::parse_id(id).and_then(|n| self.inner.store.incident(n).ok().flatten()) else {
            return;
        };
        let took = inc
            .resolved_at
            .map(|r| crate::template::human_duration((r - inc.opened_at).num_seconds()))
            .unwrap_or_default();
        let link = self.inner.settings.external_url.as_ref().map(|u| {
            format!(
                " Postmortem: {}/api/v1/incidents/{id}/postmortem",
                u.trim_end_matches('/')
            )
        });
        let text = format!(
            ":white_check_mark: {id} resolved after {took}: {}.{}",
            actions::slack::escape(&inc.title),
            link.unwrap_or_default()
        );
        let info = self.incident_info(Some(id));
        match tokio::time::timeout(
            Duration::from_secs(30),
            actions::slack::notify(&json!({"text": text}), &info, &self.inner.backends, false),
        )
        .await
        {
            Ok(Ok(_)) => {}
            _ => tracing::warn!(incident = %id, "could not post the resolve summary to Slack"),
        }
    }

    /// Decides a waiting approval step.
    pub fn decide(&self, run_id: &str, approved: bool, by: &str) -> Result<(), ExecError> {
        let waiting = lock(&self.inner.approvals).remove(run_id);
        match waiting {
            Some(tx) => tx
                .send(Decision {
                    approved,
                    by: by.to_string(),
                })
                .map_err(|_| ExecError::Conflict(format!("{run_id} stopped waiting for approval"))),
            None => Err(ExecError::Conflict(format!("{run_id} is not waiting for an approval"))),
        }
    }

    /// Finds runs a previous process left unfinished and settles each:
    /// a step that was running is re-run only if it is idempotent; otherwise
    /// it is marked interrupted and the run stops, loudly.
    pub async fn recover(&self) -> Result<usize, ExecError> {
        let since = Utc::now() - chrono::Duration::hours(HISTORY_WINDOW_HOURS);
        let recent = self
            .inner
            .store
            .runs_since(since)
            .map_err(|e| ExecError::Unavailable(e.to_string()))?;
        {
            let mut history = lock(&self.inner.history);
            for r in recent.iter().rev().filter(|r| {
                r.trigger == TriggerKind::Alert && !matches!(r.status, RunStatus::Refused | RunStatus::Paused)
            }) {
                if let (Some(p), Some(g)) = (&r.playbook, &r.group) {
                    history.entry(p.clone()).or_default().push((r.created_at, g.clone()));
                }
            }
        }
        let unfinished = self
            .inner
            .store
            .unfinished_runs()
            .map_err(|e| ExecError::Unavailable(e.to_string()))?;
        let count = unfinished.len();
        for mut run in unfinished {
            let Some(runbook) = self.inner.catalog.runbooks.get(&run.runbook).cloned() else {
                let why = format!("runbook `{}` no longer exists", run.runbook);
                self.interrupt(&mut run, None, why).await;
                continue;
            };
            let in_flight = run
                .steps
                .iter()
                .position(|s| matches!(s.status, StepStatus::Running | StepStatus::AwaitingApproval));
            let Some(index) = in_flight else {
                // Journaled but between steps: go on after the last finished one.
                let next = runbook
                    .steps
                    .iter()
                    .position(|s| run.step(&s.id).is_none_or(|r| r.status == StepStatus::Pending))
                    .unwrap_or(runbook.steps.len());
                tracing::info!(run = %run.id, "resuming a run left between steps");
                self.spawn(run, runbook, next);
                continue;
            };
            let record = run.steps[index].clone();
            let step = find_step(&runbook.steps, &record.id);
            let main_index = runbook.steps.iter().position(|s| s.id == record.id);
            let safe = step.is_some_and(|s| s.idempotent) || record.status == StepStatus::AwaitingApproval;
            match (safe, main_index) {
                (true, Some(i)) => {
                    tracing::warn!(run = %run.id, step = %record.id, "re-running an idempotent step that was running when laojun stopped");
                    self.spawn(run, runbook, i);
                }
                _ => {
                    let why = format!(
                        "laojun stopped while step `{}` ({}) was running; it is not idempotent, so it was not run again. Check its target by hand",
                        record.id, record.action
                    );
                    self.interrupt(&mut run, Some(index), why).await;
                }
            }
        }
        Ok(count)
    }

    async fn interrupt(&self, run: &mut Run, step: Option<usize>, reason: String) {
        if let Some(i) = step {
            run.steps[i].status = StepStatus::Interrupted;
            run.steps[i].finished_at = Some(Utc::now());
            run.steps[i].error = Some(reason.clone());
        }
        run.status = RunStatus::Interrupted;
        run.reason = Some(reason.clone());
        run.finished_at = Some(Utc::now());
        let event = finished_event(run);
        if let Err(e) = self.inner.writer.journal(run, Some(event)).await {
            tracing::error!(run = %run.id, error = %e, "could not journal an interrupted run");
        }
        tracing::error!(run = %run.id, %reason, "run interrupted");
        // Say so where people look, without holding up the start: a slow or
        // missing Slack is no reason to delay recovery.
        if self.inner.backends.slack_webhook.is_some() && !run.dry_run {
            let text = format!(
                ":warning: {} (`{}`) was interrupted: {}",
                run.id,
                run.runbook,
                actions::slack::escape(&reason)
            );
            let info = self.incident_info(run.incident.as_deref());
            let this = self.clone();
            tokio::spawn(async move {
                let sent = tokio::time::timeout(
                    Duration::from_secs(30),
                    actions::slack::notify(&json!({"text": text}), &info, &this.inner.backends, false),
                )
                .await;
                if !matches!(sent, Ok(Ok(_))) {
                    tracing::warn!("could not tell Slack about an interrupted run");
                }
            });
        }
    }

    async fn journal_new(&self, run: Run, event: EventKind) -> Result<Run, ExecError> {
        let mut run = run;
        let journaled = self.inner.writer.journal(&run, Some(event)).await?;
        run.id = journaled.id;
        // The event was written with an empty run id; the record has the real one.
        Ok(run)
    }

    fn spawn(&self, run: Run, runbook: Runbook, from_step: usize) {
        let this = self.clone();
        tokio::spawn(async move {
            let id = run.id.clone();
            if let Err(e) = this.execute(run, &runbook, from_step).await {
                tracing::error!(run = %id, error = %e, "run stopped: its journal could not be written");
            }
        });
    }

    fn check_guards(&self, playbook: &crate::playbook::Playbook, group: &str) -> Option<String> {
        let now = Utc::now();
        let history = lock(&self.inner.history);
        let starts = history.get(&playbook.name).map(Vec::as_slice).unwrap_or_default();
        if let Some(cooldown) = playbook.guards.cooldown {
            let limit = now - chrono::Duration::from_std(cooldown).unwrap_or_default();
            if let Some((at, _)) = starts.iter().rev().find(|(at, g)| g == group && *at > limit) {
                return Some(format!(
                    "cooldown: playbook `{}` ran for this group at {} and waits {}s between runs (guards.cooldown_secs)",
                    playbook.name,
                    at.format("%H:%M:%S"),
                    cooldown.as_secs()
                ));
            }
        }
        if let Some((count, window)) = playbook.guards.max_runs {
            let limit = now - chrono::Duration::from_std(window).unwrap_or_default();
            let recent = starts.iter().filter(|(at, _)| *at > limit).count();
            if recent >= count as usize {
                return Some(format!(
                    "max_runs: playbook `{}` already ran {recent} times in the last {}s (guards.max_runs allows {count})",
                    playbook.name,
                    window.as_secs()
                ));
            }
        }
        None
    }

    /// Renders a playbook's parameters from the alert and checks them.
    fn render_call_params(
        &self,
        runbook: &Runbook,
        params: &Map<String, Value>,
        context: &Value,
    ) -> Result<Map<String, Value>, String> {
        let mut rendered = Map::new();
        for (name, value) in params {
            let v = render_value(&self.inner.plain, value, context).map_err(|e| format!("parameter `{name}`: {e}"))?;
            // An empty rendering means the alert lacked the labels; leave it
            // out so the default (if any) applies and a required one is missing.
            if v.as_str() == Some("") {
                if runbook.param(name).is_some_and(|p| p.required) {
                    let written = value.as_str().unwrap_or_default();
                    return Err(format!(
                        "parameter `{name}` is empty for this alert: `{written}` found none of those labels"
                    ));
                }
                continue;
            }
            rendered.insert(name.clone(), v);
        }
        check_params(runbook, &rendered)
    }

    fn incident_info(&self, incident: Option<&str>) -> IncidentInfo {
        let Some(id) = incident else {
            return IncidentInfo::default();
        };
        let inc = crate::incident::parse_id(id).and_then(|n| self.inner.store.incident(n).ok().flatten());
        IncidentInfo {
            id: id.to_string(),
            title: inc.as_ref().map(|i| i.title.clone()).unwrap_or_default(),
            severity: inc.as_ref().map(|i| i.severity.to_string()).unwrap_or_default(),
            link: self
                .inner
                .settings
                .external_url
                .as_ref()
                .map(|u| format!("{}/api/v1/incidents/{id}", u.trim_end_matches('/'))),
        }
    }

    /// Runs steps from `from_step` to the end.
    async fn execute(&self, mut run: Run, runbook: &Runbook, from_step: usize) -> Result<(), ExecError> {
        let info = self.incident_info(run.incident.as_deref());
        let incident = match run.incident.as_deref().and_then(crate::incident::parse_id) {
            Some(n) => self.inner.store.incident(n).ok().flatten(),
            None => None,
        };
        let incident_json = incident
            .as_ref()
            .map(|i| incident_value(i, &self.inner.settings))
            .unwrap_or(json!({}));
        for step in &runbook.steps {
            if run.step(&step.id).is_none() {
                run.steps.push(StepRecord::new(&step.id, step.action.name));
            }
        }
        run.status = RunStatus::Running;
        let mut failed: Option<String> = None;
        for step in &runbook.steps[from_step.min(runbook.steps.len())..] {
            if let Some(by) = self.is_paused() {
                run.status = RunStatus::Paused;
                run.reason = Some(format!("automation was paused by {by} before step `{}`", step.id));
                break;
            }
            let ok = self.run_step(&mut run, step, &info, &incident_json, None).await?;
            if ok {
                continue;
            }
            match &step.on_failure {
                OnFailure::Continue => continue,
                OnFailure::Abort => {
                    failed = Some(format!("step `{}` failed", step.id));
                    break;
                }
                OnFailure::Steps(handlers) => {
                    for handler in handlers {
                        run.steps.push(StepRecord {
                            handles_failure_of: Some(step.id.clone()),
                            ..StepRecord::new(&handler.id, handler.action.name)
                        });
                        self.run_step(&mut run, handler, &info, &incident_json, Some(&step.id))
                            .await?;
                    }
                    failed = Some(format!("step `{}` failed (its on_failure steps ran)", step.id));
                    break;
                }
            }
        }
        if run.status == RunStatus::Running {
            run.status = if failed.is_some() {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            };
            run.reason = failed;
        }
        run.finished_at = Some(Utc::now());
        let event = finished_event(&run);
        self.inner.writer.journal(&run, Some(event)).await?;
        tracing::info!(run = %run.id, runbook = %run.runbook, status = run.status.as_str(), "run finished");
        Ok(())
    }

    /// Runs one step with its retries; returns whether it succeeded (or was skipped).
    async fn run_step(
        &self,
        run: &mut Run,
        step: &Step,
        info: &IncidentInfo,
        incident: &Value,
        _handles: Option<&str>,
    ) -> Result<bool, ExecError> {
        let context = step_context(run, incident);
        if let Some(cond) = &step.when {
            let sandbox = self.inner.sandbox.clone();
            let script = cond.script.clone();
            let ctx = context.clone();
            let verdict = tokio::task::spawn_blocking(move || sandbox.eval_condition(&script, &ctx))
                .await
                .map_err(|e| ExecError::Unavailable(e.to_string()))?;
            match verdict {
                Ok(true) => {}
                Ok(false) => {
                    let summary = format!("skipped: `{}` is false", cond.source);
                    self.settle(run, step, StepStatus::Skipped, Value::Null, Some(summary), None)
                        .await?;
                    return Ok(true);
                }
                Err(e) => {
                    self.settle(
                        run,
                        step,
                        StepStatus::Failed,
                        Value::Null,
                        None,
                        Some(format!("`when` failed: {}", e.message)),
                    )
                    .await?;
                    return Ok(false);
                }
            }
        }
        let args = match self.render_args(step, &context) {
            Ok(a) => a,
            Err(e) => {
                self.settle(run, step, StepStatus::Failed, Value::Null, None, Some(e))
                    .await?;
                return Ok(false);
            }
        };
        let targets = targets_of(step.action.name, &args);
        let held = match self.acquire(&targets, &run.id, step_timeout(step, &args)).await {
            Ok(held) => held,
            Err(e) => {
                self.settle(run, step, StepStatus::Failed, Value::Null, None, Some(e))
                    .await?;
                return Ok(false);
            }
        };
        let result = self.attempts(run, step, &args, info, &context).await;
        self.release(&held);
        let (status, output, summary, error) = match result? {
            Ok(o) => (StepStatus::Succeeded, o.output, Some(o.summary), None),
            Err(e) => (StepStatus::Failed, Value::Null, None, Some(e.message)),
        };
        let ok = status == StepStatus::Succeeded;
        self.settle(run, step, status, output, summary, error).await?;
        Ok(ok)
    }

    /// Tries a step up to its `retries.attempts`, journaling each attempt
    /// before it runs.
    async fn attempts(
        &self,
        run: &mut Run,
        step: &Step,
        args: &Value,
        info: &IncidentInfo,
        context: &Value,
    ) -> Result<Result<Outcome, ActionError>, ExecError> {
        let attempts = step.retries.attempts.max(1);
        let mut last = ActionError::fatal("the step did not run");
        for attempt in 1..=attempts {
            {
                let waits = step.action.name == "approval" && !run.dry_run;
                if waits {
                    let (tx, rx) = oneshot::channel();
                    lock(&self.inner.approvals).insert(run.id.clone(), tx);
                    lock(&self.inner.decisions).insert(run.id.clone(), rx);
                }
                let record = record_mut(run, &step.id);
                record.status = if waits {
                    StepStatus::AwaitingApproval
                } else {
                    StepStatus::Running
                };
                record.attempts = attempt;
                record.started_at.get_or_insert_with(Utc::now);
                record.error = None;
            }
            let status = record_mut(run, &step.id).status;
            run.status = if status == StepStatus::AwaitingApproval {
                RunStatus::AwaitingApproval
            } else {
                RunStatus::Running
            };
            let event = step_event(run, &step.id);
            self.inner.writer.journal(run, Some(event)).await?;
            let timeout = step_timeout(step, args);
            let result = match tokio::time::timeout(timeout, self.act(run, step, args, info, context)).await {
                Ok(r) => r,
                Err(_) => Err(ActionError::retry(format!(
                    "timed out after {}s (timeout_secs)",
                    timeout.as_secs()
                ))),
            };
            run.status = RunStatus::Running;
            match result {
                Ok(outcome) => return Ok(Ok(outcome)),
                Err(e) if e.retryable && attempt < attempts => {
                    let wait = backoff(&step.retries, attempt);
                    let record = record_mut(run, &step.id);
                    record.error = Some(format!("{}; retrying in {:.1}s", e.message, wait.as_secs_f64()));
                    record.status = StepStatus::Failed;
                    let event = step_event(run, &step.id);
                    self.inner.writer.journal(run, Some(event)).await?;
                    tokio::time::sleep(wait).await;
                    last = e;
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Err(last))
    }

    /// The action itself.
    async fn act(
        &self,
        run: &Run,
        step: &Step,
        args: &Value,
        info: &IncidentInfo,
        context: &Value,
    ) -> Result<Outcome, ActionError> {
        let dry = run.dry_run;
        match step.action.name {
            "wait" => {
                let secs = actions::int_arg(args, "secs").unwrap_or(0).max(0) as u64;
                if dry {
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
            "script" => {
                let script = step
                    .script
                    .clone()
                    .ok_or_else(|| ActionError::fatal("the script did not compile"))?;
                let sandbox = self.inner.sandbox.clone();
                let ctx = context.clone();
                let out = tokio::task::spawn_blocking(move || sandbox.eval(&script, &ctx))
                    .await
                    .map_err(|e| ActionError::fatal(format!("the script panicked: {e}")))?
                    .map_err(|e| ActionError::fatal(e.message))?;
                let mut output = out.value;
                if !out.log.is_empty() {
                    if let Value::Object(m) = &mut output {
                        m.entry("log").or_insert(json!(out.log));
                    }
                }
                Ok(Outcome {
                    output,
                    summary: "script ran".into(),
                })
            }
            "slack.notify" => actions::slack::notify(args, info, &self.inner.backends, dry).await,
            "http" => actions::http::call(args, &self.inner.backends, dry).await,
            "approval" => self.approval(run, step, args).await,
            "k8s.rollback" => actions::k8s::rollback(&self.inner.backends.kube, args, dry).await,
            "k8s.scale" => actions::k8s::scale(&self.inner.backends.kube, args, dry).await,
            "k8s.switch_traffic" => actions::k8s::switch_traffic(&self.inner.backends.kube, args, dry).await,
            "k8s.restart" => actions::k8s::restart(&self.inner.backends.kube, args, dry).await,
            "k8s.wait_ready" => actions::k8s::wait_ready(&self.inner.backends.kube, args, dry).await,
            "dns.failover" => {
                let comment = format!("laojun {} step {}", run.id, step.id);
                actions::dns::failover(&self.inner.backends.route53, args, dry, &comment).await
            }
            other => Err(ActionError::fatal(format!(
                "action `{other}` is not available in this build"
            ))),
        }
    }

    async fn approval(&self, run: &Run, step: &Step, args: &Value) -> Result<Outcome, ActionError> {
        let who: Vec<String> = args
            .get("who")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|w| w.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let message = actions::str_arg(args, "message")
            .unwrap_or("approve this step?")
            .to_string();
        let ttl = Duration::from_secs(actions::int_arg(args, "ttl_secs").unwrap_or(900).max(1) as u64);
        let on_timeout = actions::str_arg(args, "on_timeout").unwrap_or("deny");
        let asked = if who.is_empty() {
            "any operator".to_string()
        } else {
            who.join(", ")
        };
        if run.dry_run {
            return Ok(Outcome {
                output: json!({"decision": "approved", "by": "dry run"}),
                summary: format!(
                    "would ask {asked}: {message} (waiting up to {}s; on timeout: {on_timeout})",
                    ttl.as_secs()
                ),
            });
        }
        let rx = lock(&self.inner.decisions)
            .remove(&run.id)
            .ok_or_else(|| ActionError::fatal("the approval was not set up"))?;
        let decision = tokio::time::timeout(ttl, rx).await;
        lock(&self.inner.approvals).remove(&run.id);
        let decision = match decision {
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
        let event = EventKind::Approval {
            run: run.id.clone(),
            step: step.id.clone(),
            approved: decision.approved,
            by: decision.by.clone(),
        };
        let _ = self.inner.writer.journal(run, Some(event)).await;
        if decision.approved {
            Ok(Outcome {
                output: json!({"decision": "approved", "by": decision.by}),
                summary: format!("approved by {}", decision.by),
            })
        } else {
            Err(ActionError::fatal(format!("denied by {}", decision.by)))
        }
    }

    /// Records a step's end and journals it.
    async fn settle(
        &self,
        run: &mut Run,
        step: &Step,
        status: StepStatus,
        output: Value,
        summary: Option<String>,
        error: Option<String>,
    ) -> Result<(), ExecError> {
        let record = record_mut(run, &step.id);
        record.status = status;
        record.started_at.get_or_insert_with(Utc::now);
        record.finished_at = Some(Utc::now());
        record.output = output;
        record.summary = summary;
        record.error = error;
        let event = step_event(run, &step.id);
        self.inner.writer.journal(run, Some(event)).await?;
        Ok(())
    }

    fn render_args(&self, step: &Step, context: &Value) -> Result<Value, String> {
        let mut out = Map::new();
        for (name, value) in &step.with {
            let registry = if step.action.name == "slack.notify" && name == "text" {
                &self.inner.slack
            } else {
                &self.inner.plain
            };
            let rendered = render_value(registry, value, context).map_err(|e| format!("`{name}`: {e}"))?;
            let kind = step.action.arg(name).map(|a| a.kind);
            let typed = coerce(kind, rendered).map_err(|e| format!("`{name}` {e}"))?;
            if typed.as_str() == Some("") {
                continue; // an empty optional argument is no argument (e.g. `cluster`)
            }
            out.insert(name.clone(), typed);
        }
        if step.action.name == "slack.notify" {
            if let Some(name) = out.get("template").and_then(Value::as_str).map(str::to_string) {
                let source = self
                    .inner
                    .catalog
                    .templates
                    .get(&name)
                    .ok_or_else(|| format!("template `{name}` is not loaded"))?;
                let text = self
                    .inner
                    .slack
                    .render_template(source, context)
                    .map_err(|e| format!("template `{name}`: {e}"))?;
                out.insert("text".into(), Value::String(text.trim_end().to_string()));
            }
        }
        Ok(Value::Object(out))
    }

    async fn acquire(&self, targets: &[String], run_id: &str, wait: Duration) -> Result<Vec<String>, String> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.inner.unlocked.notified();
            {
                let mut locks = lock(&self.inner.locks);
                let busy = targets.iter().find_map(|t| {
                    locks
                        .get(t)
                        .filter(|holder| holder.as_str() != run_id)
                        .map(|h| (t.clone(), h.clone()))
                });
                match busy {
                    None => {
                        for t in targets {
                            locks.insert(t.clone(), run_id.to_string());
                        }
                        return Ok(targets.to_vec());
                    }
                    Some((target, holder)) if tokio::time::Instant::now() >= deadline => {
                        return Err(format!(
                            "{target} is being changed by {holder}; gave up waiting after {}s",
                            wait.as_secs()
                        ));
                    }
                    Some(_) => {}
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    fn release(&self, held: &[String]) {
        if held.is_empty() {
            return;
        }
        let mut locks = lock(&self.inner.locks);
        for t in held {
            locks.remove(t);
        }
        drop(locks);
        self.inner.unlocked.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves it usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn new_run(runbook: &Runbook, trigger: TriggerKind, by: &str, dry_run: bool) -> Run {
    Run {
        id: String::new(),
        runbook: runbook.name.clone(),
        incident: None,
        playbook: None,
        trigger,
        by: by.to_string(),
        params: Map::new(),
        dry_run,
        status: RunStatus::Pending,
        steps: runbook
            .steps
            .iter()
            .map(|s| StepRecord::new(&s.id, s.action.name))
            .collect(),
        created_at: Utc::now(),
        finished_at: None,
        reason: None,
        idempotency_key: None,
        alert: Value::Null,
        group: None,
    }
}

fn find_step<'a>(steps: &'a [Step], id: &str) -> Option<&'a Step> {
    steps.iter().find_map(|s| {
        if s.id == id {
            return Some(s);
        }
        match &s.on_failure {
            OnFailure::Steps(inner) => find_step(inner, id),
            _ => None,
        }
    })
}

fn record_mut<'a>(run: &'a mut Run, id: &str) -> &'a mut StepRecord {
    if run.step(id).is_none() {
        run.steps.push(StepRecord::new(id, ""));
    }
    run.step_mut(id).expect("the record was just added")
}

fn step_event(run: &Run, id: &str) -> EventKind {
    let r = run.step(id).cloned().unwrap_or_else(|| StepRecord::new(id, ""));
    EventKind::Step {
        run: run.id.clone(),
        step: r.id.clone(),
        action: r.action.clone(),
        status: r.status,
        attempt: r.attempts,
        duration_ms: r.duration_ms(),
        summary: r.summary.clone(),
        error: r.error.clone(),
    }
}

fn finished_event(run: &Run) -> EventKind {
    EventKind::RunFinished {
        run: run.id.clone(),
        runbook: run.runbook.clone(),
        status: run.status,
        reason: run.reason.clone(),
        duration_ms: run.finished_at.map(|f| (f - run.created_at).num_milliseconds()),
    }
}

/// The incident as templates see it.
fn incident_value(inc: &Incident, settings: &Settings) -> Value {
    json!({
        "id": inc.id,
        "title": inc.title,
        "severity": inc.severity,
        "status": inc.status,
        "playbook": inc.playbook,
        "group": inc.group,
        "opened_at": inc.opened_at,
        "url": settings.external_url.as_ref().map(|u| format!("{}/api/v1/incidents/{}", u.trim_end_matches('/'), inc.id)),
    })
}

/// What `when`, `with:` templates and scripts see.
fn step_context(run: &Run, incident: &Value) -> Value {
    let steps: Map<String, Value> = run
        .steps
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                json!({"status": s.status.as_str(), "output": s.output, "error": s.error, "summary": s.summary}),
            )
        })
        .collect();
    json!({
        "params": run.params,
        "alert": run.alert,
        "incident": incident,
        "steps": steps,
        "run": {"id": run.id, "runbook": run.runbook, "dry_run": run.dry_run},
    })
}

/// Renders every template string in a value.
fn render_value(hb: &Handlebars<'static>, value: &Value, context: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) if template::is_template(s) => {
            Value::String(hb.render_template(s, context).map_err(|e| e.to_string())?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(hb, v, context))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(hb, v, context)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Turns a rendered value into the argument's type ("3" → 3 for integers).
fn coerce(kind: Option<ArgKind>, value: Value) -> Result<Value, String> {
    let Some(kind) = kind else { return Ok(value) };
    let text = value.as_str().map(str::trim);
    Ok(match (kind, text) {
        (ArgKind::Int, Some("")) => Value::String(String::new()),
        (ArgKind::Int, Some(t)) => json!(t
            .parse::<i64>()
            .map_err(|_| format!("rendered to {t:?}, which is not a whole number"))?),
        (ArgKind::Bool, Some(t)) => json!(t
            .parse::<bool>()
            .map_err(|_| format!("rendered to {t:?}, which is not true or false"))?),
        (ArgKind::Enum(words), Some(t)) if !words.contains(&t) => {
            return Err(format!("rendered to {t:?}; expected one of {}", words.join(", ")))
        }
        (ArgKind::ScaleBy, Some(t)) if crate::runbook::load::parse_scale_by(t).is_none() => {
            return Err(format!("rendered to {t:?}; write +N, -N, xF or *F"))
        }
        (ArgKind::IntMap, _) => match value {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| {
                        let n = match &v {
                            Value::String(s) => s
                                .trim()
                                .parse::<i64>()
                                .map_err(|_| format!("`{k}` rendered to {s:?}, which is not a whole number"))?,
                            other => other.as_i64().ok_or_else(|| format!("`{k}` is not a whole number"))?,
                        };
                        Ok((k, json!(n)))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            other => other,
        },
        _ => value,
    })
}

/// Checks parameters against the runbook's declarations and fills defaults.
pub fn check_params(runbook: &Runbook, given: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut problems = Vec::new();
    for name in given.keys() {
        if runbook.param(name).is_none() {
            let known: Vec<&str> = runbook.params.iter().map(|p| p.name.as_str()).collect();
            problems.push(format!(
                "runbook `{}` has no parameter `{name}` (its parameters: {})",
                runbook.name,
                known.join(", ")
            ));
        }
    }
    let mut out = Map::new();
    for p in &runbook.params {
        let value = match given.get(&p.name) {
            Some(Value::String(s)) if p.kind != crate::runbook::ParamType::String => match parse_typed(p.kind, s) {
                Some(v) => v,
                None => {
                    problems.push(format!("parameter `{}` must be a {}, got {s:?}", p.name, p.kind.name()));
                    continue;
                }
            },
            Some(v) => v.clone(),
            None => match &p.default {
                Some(d) => d.clone(),
                None if p.required => {
                    problems.push(format!("parameter `{}` is required", p.name));
                    continue;
                }
                None => continue,
            },
        };
        if !p.kind.accepts(&value) {
            problems.push(format!(
                "parameter `{}` must be a {}, got {value}",
                p.name,
                p.kind.name()
            ));
        } else if !p.allowed.is_empty() && !p.allowed.contains(&value) {
            let allowed: Vec<String> = p.allowed.iter().map(ToString::to_string).collect();
            problems.push(format!(
                "parameter `{}` must be one of {}, got {value}",
                p.name,
                allowed.join(", ")
            ));
        } else {
            out.insert(p.name.clone(), value);
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

fn parse_typed(kind: crate::runbook::ParamType, s: &str) -> Option<Value> {
    use crate::runbook::ParamType;
    match kind {
        ParamType::Int => s.trim().parse::<i64>().ok().map(|i| json!(i)),
        ParamType::Bool => s.trim().parse::<bool>().ok().map(|b| json!(b)),
        ParamType::List => Some(
            serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_array)
                .unwrap_or_else(|| {
                    json!(s
                        .split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .collect::<Vec<_>>())
                }),
        ),
        ParamType::String => Some(json!(s)),
    }
}

/// The objects a step changes, for the per-target lock.
fn targets_of(action: &str, args: &Value) -> Vec<String> {
    let s = |k: &str| actions::str_arg(args, k).unwrap_or_default().to_string();
    match action {
        "k8s.rollback" | "k8s.scale" | "k8s.restart" => vec![format!(
            "k8s:{}:{}:deployment/{}",
            s("cluster"),
            s("namespace"),
            s("deployment")
        )],
        "k8s.switch_traffic" => vec![format!(
            "k8s:{}:{}:service/{}",
            s("cluster"),
            s("namespace"),
            s("service")
        )],
        "dns.failover" => vec![format!(
            "dns:{}:{}:{}",
            s("hosted_zone_id"),
            s("record_name").trim_end_matches('.'),
            s("record_type")
        )],
        _ => Vec::new(),
    }
}

/// How long one attempt may take.
fn step_timeout(step: &Step, args: &Value) -> Duration {
    if let Some(t) = step.timeout {
        return t;
    }
    let arg_secs = |k: &str| actions::int_arg(args, k).map(|s| s.max(0) as u64);
    match step.action.name {
        "wait" => Duration::from_secs(arg_secs("secs").unwrap_or(0) + 5),
        "approval" => Duration::from_secs(arg_secs("ttl_secs").unwrap_or(900) + 5),
        "k8s.wait_ready" => Duration::from_secs(arg_secs("timeout_secs").unwrap_or(300) + 10),
        "dns.failover" => Duration::from_secs(330),
        _ => Duration::from_secs(60),
    }
}

/// Exponential backoff with ±25% jitter, capped.
fn backoff(retries: &crate::runbook::Retries, attempt: u32) -> Duration {
    let base = retries.backoff.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(20) as i32);
    let capped = base.min(retries.max_backoff.as_secs_f64());
    let jitter = 0.75 + 0.5 * pseudo_random();
    Duration::from_secs_f64((capped * jitter).max(0.0))
}

/// A number in [0, 1) good enough for jitter (spreading retries), not for secrets.
fn pseudo_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl crate::scheduler::Fire for Executor {
    fn fire<'a>(
        &'a self,
        playbook: &'a crate::playbook::Playbook,
        due: DateTime<Utc>,
    ) -> crate::scheduler::BoxFuture<'a> {
        Box::pin(self.start_scheduled(playbook, due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_cap() {
        let r = crate::runbook::Retries {
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3),
        };
        let first = backoff(&r, 1).as_secs_f64();
        let second = backoff(&r, 2).as_secs_f64();
        let late = backoff(&r, 10).as_secs_f64();
        assert!((0.75..=1.25).contains(&first), "{first}");
        assert!((1.5..=2.5).contains(&second), "{second}");
        assert!((2.25..=3.75).contains(&late), "{late}");
    }

    #[test]
    fn rendered_strings_become_the_declared_type() {
        assert_eq!(coerce(Some(ArgKind::Int), json!("12")).unwrap(), json!(12));
        assert!(coerce(Some(ArgKind::Int), json!("twelve"))
            .unwrap_err()
            .contains("not a whole number"));
        assert_eq!(
            coerce(Some(ArgKind::IntMap), json!({"a": "0", "b": 100})).unwrap(),
            json!({"a": 0, "b": 100})
        );
        assert!(coerce(Some(ArgKind::Enum(&["A", "CNAME"])), json!("MX")).is_err());
    }
}
