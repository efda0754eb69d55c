//! Starting runs. One entry, `start(trigger)`, for the three ways a run
//! begins: an incident opened (its playbook's runbooks), a schedule fired
//! (a scheduled playbook's runbooks, no incident) and a person asked (one
//! runbook, by hand). A playbook's runbooks run in order, each after the
//! one before ended; pause and guards are decided once per firing. Runs
//! that may not start (a missing parameter, a guard, a pause, a `when`, an
//! earlier runbook that failed) are journaled as not started, with why.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{ExecError, Executor};
use crate::catalog::Catalog;
use crate::effects::Opened;
use crate::ids::{IncidentId, RunId};
use crate::notices::{self, NoticeKind};
use crate::playbook::{CallFailure, Playbook, RunbookCall, Trigger as PlaybookTrigger, DEFAULT_PLAYBOOK};
use crate::run::{Draft, Run, RunStatus, StepRecord, TriggerKind};
use crate::runbook::Runbook;

/// What starts runs.
#[derive(Debug)]
pub enum Trigger {
    /// An incident opened: its playbook's runbooks run for it.
    Incident(Box<Opened>),
    /// A scheduled playbook came due.
    Schedule { playbook: Playbook, due: DateTime<Utc> },
    /// A person started one runbook.
    Manual(ManualRun),
}

/// What a manual run asks for.
#[derive(Debug, Clone, Default)]
pub struct ManualRun {
    pub runbook: String,
    pub params: Map<String, Value>,
    pub dry_run: bool,
    pub by: String,
    pub idempotency_key: Option<String>,
    pub incident: Option<IncidentId>,
}

/// A run a trigger started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub id: RunId,
    /// A manual run whose idempotency key was used before: `id` is the
    /// earlier run, and nothing new started.
    pub duplicate: bool,
}

/// How far a firing's entries got: the next one to run, the statuses
/// `when:` sees as `runs.<runbook>.status`, and why the rest stop, if they do.
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub next: usize,
    pub runs: Map<String, Value>,
    pub stopped: Option<String>,
}

impl Progress {
    /// Entry `call` (of runbook `name`) ended with `status`.
    pub fn ended(&mut self, call: &RunbookCall, name: &str, status: RunStatus) {
        self.next += 1;
        self.runs.insert(name.to_string(), json!({"status": status.as_str()}));
        let failed = !matches!(status, RunStatus::Succeeded | RunStatus::Skipped);
        if failed && call.on_failure == CallFailure::Stop && self.stopped.is_none() {
            self.stopped = Some(format!(
                "runbook `{name}` before it ended {} (on_failure: stop)",
                status.as_str()
            ));
        }
    }
}

/// One playbook firing: what its runs share.
pub(super) struct Firing {
    /// The catalog it fired with: all its entries run on this version.
    pub(super) catalog: Arc<Catalog>,
    pub(super) playbook: Playbook,
    /// Cooldowns count per group: per incident group, or the schedule.
    pub(super) group: String,
    /// What the playbook's parameter templates see.
    pub(super) context: Value,
    pub(super) trigger: TriggerKind,
    pub(super) incident: Option<IncidentId>,
    pub(super) alert: Value,
}

impl Executor {
    /// Starts what `trigger` asks for. A manual run answers with its id; a
    /// playbook's runs start one after another in the background and are
    /// found through the store (its incident's `runs`, `GET /api/v1/runs`).
    pub async fn start(&self, trigger: Trigger) -> Result<Vec<Started>, ExecError> {
        match trigger {
            Trigger::Manual(request) => self.start_manual(request).await.map(|s| vec![s]),
            Trigger::Incident(opened) => {
                let alert = serde_json::to_value(&opened.alert).unwrap_or_default();
                match self.incident_firing(&opened.incident, alert) {
                    Some(firing) => Ok(self.fire(firing).await),
                    None => Ok(Vec::new()),
                }
            }
            Trigger::Schedule { playbook, due } => {
                let PlaybookTrigger::Schedule(s) = &playbook.trigger else {
                    return Ok(Vec::new());
                };
                let schedule =
                    json!({"playbook": playbook.name, "cron": s.expression, "due": due, "timezone": s.timezone.name()});
                let firing = Firing {
                    catalog: self.catalog(),
                    group: format!("{}|schedule", playbook.name),
                    context: json!({"schedule": schedule, "alert": empty_alert()}),
                    trigger: TriggerKind::Schedule,
                    incident: None,
                    alert: empty_alert(),
                    playbook,
                };
                Ok(self.fire(firing).await)
            }
        }
    }

    /// The firing of the playbook that opened `inc`, for its first alert.
    pub(super) fn incident_firing(&self, inc: &crate::incident::Incident, alert: Value) -> Option<Firing> {
        let playbook = self.playbook(&inc.playbook)?;
        Some(Firing {
            catalog: self.catalog(),
            group: format!(
                "{}|{}",
                playbook.name,
                serde_json::to_string(&inc.group).unwrap_or_default()
            ),
            context: json!({"alert": alert, "incident": super::values::incident_value(inc, &self.shared.settings)}),
            trigger: TriggerKind::Alert,
            incident: Some(inc.id),
            alert,
            playbook,
        })
    }

    fn playbook(&self, name: &str) -> Option<Playbook> {
        if name == DEFAULT_PLAYBOOK {
            return None;
        }
        self.catalog().playbooks.iter().find(|p| p.name == name).cloned()
    }

    /// Fires a playbook: pause and guards are decided once for the whole
    /// firing; then its runbooks run one after another in a task of their
    /// own (`run_entries`), so nothing is returned here.
    async fn fire(&self, firing: Firing) -> Vec<Started> {
        let playbook = &firing.playbook;
        let refusal = match self.blocked(Some(&playbook.name)) {
            Some(why) => Some((RunStatus::Paused, why)),
            None => self
                .state()
                .history
                .admit(playbook, &firing.group, Utc::now())
                .err()
                .map(|why| (RunStatus::Refused, why)),
        };
        if let Some((status, reason)) = refusal {
            for call in &playbook.runbooks {
                if let Some(runbook) = firing.catalog.runbooks.get(&call.runbook) {
                    let run = firing.draft(runbook, call, &self.shared.settings, false);
                    self.not_started(run, status, reason.clone()).await;
                }
            }
            return Vec::new();
        }
        let this = self.clone();
        tokio::spawn(async move { this.run_entries(firing).await });
        Vec::new()
    }

    /// A firing's runbooks in order, each after the one before finished. An
    /// entry whose `when` is false is skipped; after an entry that did not
    /// succeed, the later ones are recorded as not started unless it says
    /// `on_failure: continue`; once the incident has resolved, so are the
    /// ones left.
    async fn run_entries(&self, firing: Firing) {
        self.run_entries_from(firing, Progress::default()).await;
    }

    /// The entries from `progress.next` on (recovery resumes a firing here).
    pub(super) async fn run_entries_from(&self, firing: Firing, mut progress: Progress) {
        let playbook = firing.playbook.clone();
        for call in playbook.runbooks.iter().skip(progress.next) {
            let Some(runbook) = firing.catalog.runbooks.get(&call.runbook).cloned() else {
                progress.next += 1;
                continue;
            };
            let mut run = firing.draft(&runbook, call, &self.shared.settings, progress.next == 0);
            let status = if let Some(why) = progress.stopped.clone().or_else(|| self.resolved_before(&firing)) {
                self.not_started(run, RunStatus::Refused, why).await;
                RunStatus::Refused
            } else {
                let mut context = firing.context.clone();
                context["runs"] = Value::Object(progress.runs.clone());
                match self.entry_verdict(call, &context).await {
                    Err(why) => {
                        self.not_started(run, RunStatus::Refused, why).await;
                        RunStatus::Refused
                    }
                    Ok(false) => {
                        let source = call.when.as_ref().map(|c| c.source.as_str()).unwrap_or_default();
                        self.not_started(run, RunStatus::Skipped, format!("`when: {source}` is false"))
                            .await;
                        RunStatus::Skipped
                    }
                    Ok(true) => match self.shared.render.call_params(&runbook, &call.params, &firing.context) {
                        Err(why) => {
                            self.not_started(run, RunStatus::Refused, why).await;
                            RunStatus::Refused
                        }
                        Ok(params) => {
                            run.params = params;
                            match self.run_now(run, &runbook).await {
                                Some(status) => status,
                                // Another replica holds the run and goes on
                                // with the firing; this one stops here.
                                None => return,
                            }
                        }
                    },
                }
            };
            progress.ended(call, &runbook.name, status);
        }
    }

    /// Why the rest of a firing does not run: its incident resolved.
    fn resolved_before(&self, firing: &Firing) -> Option<String> {
        let id = firing.incident?;
        let inc = self.shared.store.incident_record(id).ok().flatten()?;
        (inc.status == crate::incident::Status::Resolved).then(|| format!("{id} resolved before it ran"))
    }

    /// Whether an entry's `when:` holds (true without one).
    async fn entry_verdict(&self, call: &RunbookCall, context: &Value) -> Result<bool, String> {
        let Some(cond) = &call.when else {
            return Ok(true);
        };
        let (sandbox, script, ctx) = (self.shared.sandbox.clone(), cond.script.clone(), context.clone());
        tokio::task::spawn_blocking(move || sandbox.eval_condition(&script, &ctx))
            .await
            .map_err(|e| format!("`when` stopped: {e}"))?
            .map_err(|e| format!("`when: {}` failed: {}", cond.source, e.message))
    }

    /// Journals a run that does not start, and why.
    async fn not_started(&self, mut run: Draft, status: RunStatus, reason: String) {
        tracing::warn!(playbook = ?run.playbook, runbook = %run.runbook, %reason, "run not started");
        run.status = status;
        run.reason = Some(reason);
        run.finished_at = Some(Utc::now());
        match self.shared.writer.journal_new(run.clone()).await {
            Ok(journaled) => {
                let run = journaled.run(run);
                self.shared.notices.notify(
                    NoticeKind::RunNotStarted,
                    format!("run_not_started:{}", run.id),
                    run.incident,
                    notices::text::not_started(&run),
                );
            }
            Err(e) => tracing::error!(error = %e, "a run that did not start could not be journaled"),
        }
    }

    /// Journals a run and runs it to its end here; its final status, or
    /// `None` when another replica took it over (and the firing with it).
    async fn run_now(&self, run: Draft, runbook: &Runbook) -> Option<RunStatus> {
        match self.shared.writer.journal_new(run.clone()).await {
            Ok(journaled) => {
                let run = journaled.run(run);
                tracing::info!(run = %run.id, playbook = ?run.playbook, "run started");
                let id = run.id;
                match self.execute(run, runbook, 0).await {
                    Ok(status) => Some(status),
                    Err(e @ ExecError::LeaseLost(_)) => {
                        super::stopped(id, &e);
                        None
                    }
                    Err(e) => {
                        super::stopped(id, &e);
                        Some(RunStatus::Failed)
                    }
                }
            }
            Err(e) => {
                tracing::error!(runbook = %runbook.name, error = %e, "a run could not be journaled");
                Some(RunStatus::Failed)
            }
        }
    }

    /// Starts a run by hand; an earlier run's id when the idempotency key
    /// was used before.
    async fn start_manual(&self, request: ManualRun) -> Result<Started, ExecError> {
        let catalog = self.catalog();
        let runbook = catalog
            .runbooks
            .get(&request.runbook)
            .cloned()
            .ok_or_else(|| ExecError::UnknownRunbook(request.runbook.clone()))?;
        let dry_run = request.dry_run || self.shared.settings.dry_run;
        if let Some(why) = self.is_paused() {
            if !dry_run {
                return Err(ExecError::Paused(why));
            }
        }
        let params = crate::runbook::params::check(&runbook, &request.params).map_err(ExecError::BadParams)?;
        let mut run = draft(&runbook, TriggerKind::Manual, &request.by, dry_run);
        run.catalog_revision.clone_from(&catalog.revision);
        run.params = params;
        run.idempotency_key = request.idempotency_key;
        run.incident = request.incident;
        run.alert = empty_alert();
        if let Some(id) = run.incident {
            if let Some(first) = self
                .shared
                .store
                .incident(id)?
                .and_then(|inc| inc.alerts.into_iter().next())
            {
                run.alert = serde_json::to_value(first).unwrap_or_else(|_| empty_alert());
            }
        }
        let journaled = self.shared.writer.journal_new(run.clone()).await?;
        if !journaled.duplicate {
            self.spawn(journaled.run(run), runbook, 0);
        }
        Ok(Started {
            id: journaled.id,
            duplicate: journaled.duplicate,
        })
    }
}

impl Firing {
    /// The run of one of this firing's entries, before it is journaled.
    fn draft(&self, runbook: &Runbook, call: &RunbookCall, settings: &super::Settings, counts: bool) -> Draft {
        let by = match self.trigger {
            TriggerKind::Schedule => "schedule",
            _ => "alert",
        };
        let mut run = draft(runbook, self.trigger, by, settings.dry_run);
        run.incident = self.incident;
        run.playbook = Some(self.playbook.name.clone());
        run.alert = self.alert.clone();
        run.group = Some(self.group.clone());
        run.mitigates = call.mitigates.unwrap_or(runbook.mitigates);
        run.counts_for_guards = Some(counts);
        run.catalog_revision.clone_from(&self.catalog.revision);
        run
    }
}

/// What a run without an alert sees as `alert`: no labels, no
/// annotations, so `alert.labels.severity == "critical"` is just false.
pub(super) fn empty_alert() -> Value {
    json!({"labels": {}, "annotations": {}})
}

/// What a retry asks for.
#[derive(Debug, Clone)]
pub struct Retry {
    pub of: RunId,
    /// The step to start from; the one that failed (or was interrupted or
    /// cancelled) when not given.
    pub from_step: Option<String>,
    pub dry_run: Option<bool>,
    pub by: String,
}

impl Executor {
    /// A new run of the same runbook version with the same parameters, on
    /// the same incident, from a step: the steps before it are not run
    /// again, and their outputs are the original run's.
    pub async fn retry(&self, request: Retry) -> Result<Started, ExecError> {
        let original = self
            .shared
            .store
            .run(request.of)?
            .ok_or_else(|| ExecError::NotFound(format!("no run {}", request.of)))?;
        if !original.status.is_finished() {
            return Err(ExecError::Conflict(format!(
                "{} is still {}; cancel it or wait for it to end",
                original.id,
                original.status.as_str()
            )));
        }
        let catalog = if original.catalog_revision.is_empty() {
            self.catalog()
        } else {
            self.shared.catalog.at(&original.catalog_revision).ok_or_else(|| {
                ExecError::Conflict(format!(
                    "{} ran catalog revision {}, which this process no longer has (now {}); start a new run",
                    original.id,
                    original.catalog_revision,
                    self.catalog().revision
                ))
            })?
        };
        let runbook = catalog
            .runbooks
            .get(&original.runbook)
            .cloned()
            .ok_or_else(|| ExecError::UnknownRunbook(original.runbook.clone()))?;
        let from_id = match request.from_step {
            Some(id) => id,
            None => original
                .steps
                .iter()
                .find(|s| {
                    s.handles_failure_of.is_none()
                        && matches!(s.status.as_str(), "failed" | "interrupted" | "cancelled")
                })
                .map(|s| s.id.clone())
                .ok_or_else(|| {
                    ExecError::Conflict(format!(
                        "no step of {} failed, was interrupted or cancelled; say which step to start from",
                        original.id
                    ))
                })?,
        };
        let from = runbook.steps.iter().position(|s| s.id == from_id).ok_or_else(|| {
            let ids: Vec<&str> = runbook.steps.iter().map(|s| s.id.as_str()).collect();
            ExecError::BadParams(format!(
                "`{from_id}` is not a step of `{}`; its steps are {}",
                runbook.name,
                ids.join(", ")
            ))
        })?;
        let dry_run = request.dry_run.unwrap_or(original.dry_run) || self.shared.settings.dry_run;
        if let Some(why) = self.is_paused() {
            if !dry_run {
                return Err(ExecError::Paused(why));
            }
        }
        let mut run = draft(&runbook, TriggerKind::Manual, &request.by, dry_run);
        run.params = original.params.clone();
        run.incident = original.incident;
        run.alert = original.alert.clone();
        run.mitigates = original.mitigates;
        run.catalog_revision.clone_from(&catalog.revision);
        run.retry_of = Some(original.id);
        // The steps before `from` keep what they did in the original run, so
        // later templates still see `steps.<id>.output`.
        for (record, step) in run.steps.iter_mut().zip(&runbook.steps).take(from) {
            if let Some(done) = original.step(&step.id) {
                *record = done.clone();
            }
        }
        let journaled = self.shared.writer.journal_new(run.clone()).await?;
        self.spawn(journaled.run(run), runbook, from);
        Ok(Started {
            id: journaled.id,
            duplicate: false,
        })
    }
}

/// A run of `runbook` before it is journaled: every step pending.
fn draft(runbook: &Runbook, trigger: TriggerKind, by: &str, dry_run: bool) -> Draft {
    Run {
        id: (),
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
            .map(|s| StepRecord::new(&s.id, s.action.name()))
            .collect(),
        created_at: Utc::now(),
        finished_at: None,
        reason: None,
        idempotency_key: None,
        alert: Value::Null,
        group: None,
        mitigates: runbook.mitigates,
        counts_for_guards: None,
        catalog_revision: String::new(),
        retry_of: None,
        lease: None,
    }
}
