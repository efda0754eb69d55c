//! Starting runs. One entry, `start(trigger)`, for the three ways a run
//! begins: an incident opened (its playbook's runbooks), a schedule fired
//! (a scheduled playbook's runbooks, no incident) and a person asked (one
//! runbook, by hand). Playbook-started runs that may not start (a missing
//! parameter, a guard, a pause) are journaled as not started, with why.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{ExecError, Executor};
use crate::effects::Opened;
use crate::ids::{IncidentId, RunId};
use crate::playbook::{Playbook, Trigger as PlaybookTrigger, DEFAULT_PLAYBOOK};
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

/// The runs of one playbook firing, before they are journaled.
struct Firing<'a> {
    playbook: &'a Playbook,
    /// Cooldowns count per group: per incident group, or the schedule.
    group: String,
    /// What the playbook's parameter templates see.
    context: Value,
    trigger: TriggerKind,
    incident: Option<IncidentId>,
    alert: Value,
}

impl Executor {
    /// Starts what `trigger` asks for and returns the runs that started.
    pub async fn start(&self, trigger: Trigger) -> Result<Vec<Started>, ExecError> {
        match trigger {
            Trigger::Manual(request) => self.start_manual(request).await.map(|s| vec![s]),
            Trigger::Incident(opened) => {
                let inc = &opened.incident;
                let Some(playbook) = self.playbook(&inc.playbook) else {
                    return Ok(Vec::new());
                };
                let alert = serde_json::to_value(&opened.alert).unwrap_or_default();
                let firing = Firing {
                    playbook: &playbook,
                    group: format!(
                        "{}|{}",
                        playbook.name,
                        serde_json::to_string(&inc.group).unwrap_or_default()
                    ),
                    context: json!({"alert": alert, "incident": super::values::incident_value(inc, &self.shared.settings)}),
                    trigger: TriggerKind::Alert,
                    incident: Some(inc.id),
                    alert,
                };
                Ok(self.fire(firing).await)
            }
            Trigger::Schedule { playbook, due } => {
                let PlaybookTrigger::Schedule(s) = &playbook.trigger else {
                    return Ok(Vec::new());
                };
                let schedule =
                    json!({"playbook": playbook.name, "cron": s.expression, "due": due, "timezone": s.timezone.name()});
                let firing = Firing {
                    playbook: &playbook,
                    group: format!("{}|schedule", playbook.name),
                    context: json!({ "schedule": schedule }),
                    trigger: TriggerKind::Schedule,
                    incident: None,
                    alert: Value::Null,
                };
                Ok(self.fire(firing).await)
            }
        }
    }

    fn playbook(&self, name: &str) -> Option<Playbook> {
        if name == DEFAULT_PLAYBOOK {
            return None;
        }
        self.shared.catalog.playbooks.iter().find(|p| p.name == name).cloned()
    }

    /// Starts each runbook a playbook names, or journals why it did not.
    async fn fire(&self, firing: Firing<'_>) -> Vec<Started> {
        let playbook = firing.playbook;
        let mut started = Vec::new();
        for call in &playbook.runbooks {
            let Some(runbook) = self.shared.catalog.runbooks.get(&call.runbook).cloned() else {
                continue;
            };
            let by = match firing.trigger {
                TriggerKind::Schedule => "schedule",
                _ => "alert",
            };
            let mut run = draft(&runbook, firing.trigger, by, self.shared.settings.dry_run);
            run.incident = firing.incident;
            run.playbook = Some(playbook.name.clone());
            run.alert = firing.alert.clone();
            run.group = Some(firing.group.clone());
            let refusal = match self.shared.render.call_params(&runbook, &call.params, &firing.context) {
                Err(why) => Some((RunStatus::Refused, why)),
                Ok(params) => {
                    run.params = params;
                    match self.is_paused() {
                        Some(by) => Some((RunStatus::Paused, format!("automation is paused (by {by})"))),
                        None => self
                            .state()
                            .history
                            .admit(playbook, &firing.group, Utc::now())
                            .err()
                            .map(|why| (RunStatus::Refused, why)),
                    }
                }
            };
            if let Some((status, reason)) = refusal {
                tracing::warn!(playbook = %playbook.name, runbook = %runbook.name, %reason, "run not started");
                run.status = status;
                run.reason = Some(reason);
                run.finished_at = Some(Utc::now());
                if let Err(e) = self.shared.writer.journal_new(run).await {
                    tracing::error!(playbook = %playbook.name, error = %e, "a refused run could not be journaled");
                }
                continue;
            }
            match self.shared.writer.journal_new(run.clone()).await {
                Ok(journaled) => {
                    let run = run.with_id(journaled.id);
                    tracing::info!(run = %run.id, playbook = %playbook.name, "run started");
                    started.push(Started {
                        id: run.id,
                        duplicate: false,
                    });
                    self.spawn(run, runbook, 0);
                }
                Err(e) => {
                    tracing::error!(playbook = %playbook.name, error = %e, "a run could not be journaled")
                }
            }
        }
        started
    }

    /// Starts a run by hand; an earlier run's id when the idempotency key
    /// was used before.
    async fn start_manual(&self, request: ManualRun) -> Result<Started, ExecError> {
        let runbook = self
            .shared
            .catalog
            .runbooks
            .get(&request.runbook)
            .cloned()
            .ok_or_else(|| ExecError::UnknownRunbook(request.runbook.clone()))?;
        let dry_run = request.dry_run || self.shared.settings.dry_run;
        if let Some(by) = self.is_paused() {
            if !dry_run {
                return Err(ExecError::Paused(by));
            }
        }
        let params = crate::runbook::params::check(&runbook, &request.params).map_err(ExecError::BadParams)?;
        let mut run = draft(&runbook, TriggerKind::Manual, &request.by, dry_run);
        run.params = params;
        run.idempotency_key = request.idempotency_key;
        run.incident = request.incident;
        if let Some(id) = run.incident {
            if let Some(inc) = self.shared.store.incident(id)? {
                run.alert = inc
                    .alerts
                    .first()
                    .map(|a| serde_json::to_value(a).unwrap_or_default())
                    .unwrap_or_default();
            }
        }
        let journaled = self.shared.writer.journal_new(run.clone()).await?;
        if !journaled.duplicate {
            self.spawn(run.with_id(journaled.id), runbook, 0);
        }
        Ok(Started {
            id: journaled.id,
            duplicate: journaled.duplicate,
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
    }
}
