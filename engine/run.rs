//! Runs: one execution of one runbook, with the state of each step. Plain
//! data; the executor changes it and journals every change before acting.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{IncidentId, RunId};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Journaled, no step started yet.
    Pending,
    Running,
    AwaitingApproval,
    Succeeded,
    Failed,
    /// A non-idempotent step was running when laojun stopped; it was not re-run.
    Interrupted,
    /// Not started: automation was paused.
    Paused,
    /// Not started: a guard (cooldown, max_runs), a missing parameter, or
    /// an earlier runbook of its playbook that failed stopped it.
    Refused,
    /// Not started: its playbook entry's `when` was false.
    Skipped,
    /// A person cancelled it; no step ran after.
    Cancelled,
}

impl RunStatus {
    pub fn is_finished(self) -> bool {
        !matches!(
            self,
            RunStatus::Pending | RunStatus::Running | RunStatus::AwaitingApproval
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::AwaitingApproval => "awaiting_approval",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Paused => "paused",
            RunStatus::Refused => "refused",
            RunStatus::Skipped => "skipped",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    AwaitingApproval,
    Interrupted,
    /// A person cancelled the run while this step waited.
    Cancelled,
}

impl StepStatus {
    /// Whether the step is over (it will not run again in this run).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded
                | StepStatus::Failed
                | StepStatus::Skipped
                | StepStatus::Interrupted
                | StepStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::AwaitingApproval => "awaiting_approval",
            StepStatus::Interrupted => "interrupted",
            StepStatus::Cancelled => "cancelled",
        }
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Alert,
    Manual,
    Schedule,
}

/// One step's record within a run. `on_failure` steps are added as they run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    pub action: String,
    pub status: StepStatus,
    #[serde(default)]
    pub attempts: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What the action gave (`steps.<id>.output`).
    #[serde(default)]
    pub output: serde_json::Value,
    /// One line on what the step did or would do (dry-run).
    #[serde(default)]
    pub summary: Option<String>,
    pub error: Option<String>,
    /// The step that failed and made this one run (for on_failure steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handles_failure_of: Option<String>,
    /// While an approval step waits: what it asks, of whom, until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalAsk>,
}

/// What a waiting approval step asks, of whom, until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalAsk {
    pub message: String,
    /// Token names and `role:NAME` entries; empty: any operator.
    pub who: Vec<String>,
    /// The run's starter may decide too.
    #[serde(default)]
    pub allow_self_approval: bool,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl StepRecord {
    pub fn new(id: &str, action: &str) -> Self {
        StepRecord {
            id: id.to_string(),
            action: action.to_string(),
            status: StepStatus::Pending,
            attempts: 0,
            started_at: None,
            finished_at: None,
            output: serde_json::Value::Null,
            summary: None,
            error: None,
            handles_failure_of: None,
            approval: None,
        }
    }

    pub fn duration_ms(&self) -> Option<i64> {
        Some((self.finished_at? - self.started_at?).num_milliseconds())
    }
}

/// One run. `Id` is `RunId` once it is journaled; a `Draft` is a run
/// before the ledger gave it an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run<Id = RunId> {
    pub id: Id,
    pub runbook: String,
    /// The incident it acts for (alert-triggered runs, or a manual run given one).
    #[serde(default, deserialize_with = "lenient_incident")]
    pub incident: Option<IncidentId>,
    pub playbook: Option<String>,
    pub trigger: TriggerKind,
    /// Who started it: a token name, `alert`, or `schedule`.
    pub by: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub dry_run: bool,
    pub status: RunStatus,
    pub steps: Vec<StepRecord>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed, was refused, paused or interrupted.
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The alert that started it (labels, annotations...), for templates.
    #[serde(default)]
    pub alert: serde_json::Value,
    /// Guard group: playbook and group key, for cooldowns after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Its success mitigates its incident (the runbook's or the playbook
    /// entry's `mitigates`).
    #[serde(default)]
    pub mitigates: bool,
    /// The run that stands for its playbook firing in guard counts (the
    /// first entry of a firing); `None` in runs stored before firings were
    /// counted once, which count one each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts_for_guards: Option<bool>,
    /// The revision of the catalog it ran with (see `GET /api/v1/catalog`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub catalog_revision: String,
    /// The run this one takes up again from a step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<RunId>,
    /// Which replica holds it, on a store replicas share (PostgreSQL):
    /// only that one writes its journal; `None` on sled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// A replica's hold on a run. The epoch goes up by one at each takeover,
/// and every journal write is checked against it, so a replica that lost
/// the run (paused, cut off) can no longer write for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub epoch: u64,
}

/// Runs stored before ids were typed kept a manual run's `incident` as
/// given (`"42"`, `""`); such text names no incident, as it did then.
fn lenient_incident<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<IncidentId>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    Ok(text.and_then(|t| t.parse().ok()))
}

/// A run not yet journaled: it gets its id when it is.
pub type Draft = Run<()>;

impl Draft {
    /// The draft as the run `id`.
    pub fn with_id(self, id: RunId) -> Run {
        Run {
            id,
            runbook: self.runbook,
            incident: self.incident,
            playbook: self.playbook,
            trigger: self.trigger,
            by: self.by,
            params: self.params,
            dry_run: self.dry_run,
            status: self.status,
            steps: self.steps,
            created_at: self.created_at,
            finished_at: self.finished_at,
            reason: self.reason,
            idempotency_key: self.idempotency_key,
            alert: self.alert,
            group: self.group,
            mitigates: self.mitigates,
            counts_for_guards: self.counts_for_guards,
            catalog_revision: self.catalog_revision,
            retry_of: self.retry_of,
            lease: self.lease,
        }
    }
}

impl<Id> Run<Id> {
    pub fn step(&self, id: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.id == id)
    }

    pub fn step_mut(&mut self, id: &str) -> Option<&mut StepRecord> {
        self.steps.iter_mut().find(|s| s.id == id)
    }
}

/// A waiting approval, as `GET /api/v1/approvals` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    pub run: RunId,
    pub step: String,
    pub incident: Option<IncidentId>,
    pub runbook: String,
    pub message: String,
    /// Token names and `role:NAME`; empty: any operator (admins always may).
    pub who: Vec<String>,
    /// Who started the run: a token name, `alert` or `schedule`.
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}
