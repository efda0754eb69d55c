//! Incidents, their status and their timeline events. Plain data; the
//! rules that change them live in `intake`, their storage in `store`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::Status as AlertStatus;
use crate::ids::{IncidentId, RunId};
use crate::severity::Severity;

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    /// Remediation succeeded; the alerts have not all resolved yet.
    Mitigated,
    Resolved,
}

impl Status {
    pub const NAMES: &'static [&'static str] = &["open", "mitigated", "resolved"];

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "open" => Status::Open,
            "mitigated" => Status::Mitigated,
            "resolved" => Status::Resolved,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Mitigated => "mitigated",
            Status::Resolved => "resolved",
        }
    }
}

/// One alert episode (fingerprint + startsAt) that belongs to an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentAlert {
    pub fingerprint: String,
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Where the alert came from (Prometheus' graph), as AlertManager sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
    /// Grafana's links and observed values, when it sent the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Box<crate::alert::Extras>>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    /// How many times AlertManager sent this alert again unchanged.
    #[serde(default)]
    pub repeats: u64,
}

/// An incident as stored and as the API shows it (without its timeline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub title: String,
    pub status: Status,
    pub severity: Severity,
    pub playbook: String,
    /// The `group_by` labels and their values that make this incident.
    pub group: BTreeMap<String, String>,
    pub opened_at: DateTime<Utc>,
    /// When the trouble began: the earliest `startsAt` of its alerts.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// Every severity it has had, oldest first: set at open, raised by
    /// alerts, changed by people (with their reason).
    #[serde(default)]
    pub severity_history: Vec<SeverityChange>,
    /// When a person first acknowledged it, and who.
    #[serde(default)]
    pub acknowledged_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    /// Who leads the response, and who else works on it (set by people).
    #[serde(default)]
    pub commander: Option<String>,
    #[serde(default)]
    pub responders: Vec<String>,
    pub mitigated_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The alert episodes, oldest first. The store keeps them under their
    /// own keys: the incident record is written without them, so an
    /// incident that gathers thousands of alerts is not rewritten whole
    /// for each one, and only what routing needs stays in memory.
    #[serde(default)]
    pub alerts: Vec<IncidentAlert>,
    /// How many alert episodes joined (the next one's index).
    #[serde(default)]
    pub alert_count: u32,
    /// How many of them still fire; the incident resolves at 0.
    #[serde(default)]
    pub alerts_firing: u32,
    /// The runs started for this incident.
    #[serde(default)]
    pub runs: Vec<RunId>,
    /// Number of timeline events so far (the next event's sequence number).
    #[serde(default)]
    pub events: u32,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.status != Status::Resolved
    }

    /// When the trouble began: the first alert's start, else when it opened.
    pub fn start(&self) -> DateTime<Utc> {
        self.started_at.unwrap_or(self.opened_at).min(self.opened_at)
    }
}

/// One entry of an incident's severity history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityChange {
    pub at: DateTime<Utc>,
    /// None when the incident opened with `to`.
    pub from: Option<Severity>,
    pub to: Severity,
    /// `alerts` for automation, else the person's name.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The kinds of note a person can add; postmortems group notes by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    RootCause,
    Solution,
    Prevention,
    Lesson,
    /// Who or what was affected, and how badly.
    Impact,
    /// Work to do after the incident (with an owner and a due date).
    ActionItem,
    Note,
}

impl NoteKind {
    pub const NAMES: &'static [&'static str] = &[
        "root_cause",
        "solution",
        "prevention",
        "lesson",
        "impact",
        "action_item",
        "note",
    ];

    /// The name as serialized (`root_cause`, `action_item`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::RootCause => "root_cause",
            NoteKind::Solution => "solution",
            NoteKind::Prevention => "prevention",
            NoteKind::Lesson => "lesson",
            NoteKind::Impact => "impact",
            NoteKind::ActionItem => "action_item",
            NoteKind::Note => "note",
        }
    }

    pub fn parse(text: &str) -> Option<NoteKind> {
        [
            NoteKind::RootCause,
            NoteKind::Solution,
            NoteKind::Prevention,
            NoteKind::Lesson,
            NoteKind::Impact,
            NoteKind::ActionItem,
            NoteKind::Note,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub what: EventKind,
}

/// What happened. Serialized with a `kind` field (`"kind": "alert_fired"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Opened {
        playbook: String,
        /// True when the alert matched no playbook and the default took it.
        #[serde(default)]
        default_playbook: bool,
    },
    AlertFired {
        fingerprint: String,
        alertname: String,
        starts_at: DateTime<Utc>,
    },
    AlertResolved {
        fingerprint: String,
        alertname: String,
        ends_at: Option<DateTime<Utc>>,
    },
    SeveritySet {
        severity: Severity,
    },
    SeverityRaised {
        from: Severity,
        to: Severity,
        fingerprint: String,
    },
    /// A person changed the severity (up or down), saying why.
    SeverityChanged {
        from: Severity,
        to: Severity,
        by: String,
        reason: String,
    },
    /// A person took the incident on; the first ack counts.
    Acknowledged {
        by: String,
    },
    /// A person named the commander and/or the responders (as they are now).
    Assigned {
        commander: Option<String>,
        responders: Vec<String>,
        by: String,
    },
    StatusChanged {
        from: Status,
        to: Status,
        /// Who changed it: `alerts` when all alerts resolved, a token name when a person did.
        by: String,
        /// Why, when a person resolved or reopened it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Note {
        note: NoteKind,
        text: String,
        by: String,
        /// For an action item: who does it, and by when.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<chrono::NaiveDate>,
    },
    RunStarted {
        run: RunId,
        runbook: String,
        dry_run: bool,
        by: String,
    },
    /// A run that was not started: paused automation, a guard, a missing parameter.
    RunNotStarted {
        run: RunId,
        runbook: String,
        status: crate::run::RunStatus,
        reason: String,
    },
    Step {
        run: RunId,
        step: String,
        action: String,
        status: crate::run::StepStatus,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Approval {
        run: RunId,
        step: String,
        approved: bool,
        by: String,
    },
    /// What a step marked `evidence: true` saw (its output, bounded).
    Evidence {
        run: RunId,
        step: String,
        action: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
        output: serde_json::Value,
    },
    RunFinished {
        run: RunId,
        runbook: String,
        status: crate::run::RunStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<i64>,
    },
    /// A replica took a run over from one whose lease lapsed (it died,
    /// stopped or was cut off from the database).
    RunTakenOver {
        run: RunId,
        /// The replica that holds it now.
        by: String,
        /// The one that held it (empty: a run copied from sled).
        from: String,
        /// Since the old owner last renewed its lease.
        silent_secs: f64,
    },
}

impl EventKind {
    /// The `kind` field as serialized (`alert_fired`, `step`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            EventKind::Opened { .. } => "opened",
            EventKind::AlertFired { .. } => "alert_fired",
            EventKind::AlertResolved { .. } => "alert_resolved",
            EventKind::SeveritySet { .. } => "severity_set",
            EventKind::SeverityRaised { .. } => "severity_raised",
            EventKind::SeverityChanged { .. } => "severity_changed",
            EventKind::Acknowledged { .. } => "acknowledged",
            EventKind::Assigned { .. } => "assigned",
            EventKind::StatusChanged { .. } => "status_changed",
            EventKind::Note { .. } => "note",
            EventKind::RunStarted { .. } => "run_started",
            EventKind::RunNotStarted { .. } => "run_not_started",
            EventKind::Step { .. } => "step",
            EventKind::Approval { .. } => "approval",
            EventKind::Evidence { .. } => "evidence",
            EventKind::RunFinished { .. } => "run_finished",
            EventKind::RunTakenOver { .. } => "run_taken_over",
        }
    }

    /// The event as one line of prose, for tables and postmortems.
    pub fn describe(&self) -> String {
        match self {
            EventKind::Opened {
                playbook,
                default_playbook: true,
            } => {
                format!("incident opened (no playbook matched; recorded under `{playbook}`)")
            }
            EventKind::Opened { playbook, .. } => {
                format!("incident opened by playbook `{playbook}`")
            }
            EventKind::AlertFired {
                alertname, fingerprint, ..
            } => format!("alert {alertname} firing ({fingerprint})"),
            EventKind::AlertResolved {
                alertname, fingerprint, ..
            } => format!("alert {alertname} resolved ({fingerprint})"),
            EventKind::SeveritySet { severity } => format!("severity set to {severity}"),
            EventKind::SeverityRaised { from, to, .. } => {
                format!("severity raised from {from} to {to}")
            }
            EventKind::SeverityChanged { from, to, by, reason } => {
                let verb = if to < from { "raised" } else { "lowered" };
                format!("severity {verb} from {from} to {to} by {by}: {reason}")
            }
            EventKind::Acknowledged { by } => format!("acknowledged by {by}"),
            EventKind::Assigned {
                commander,
                responders,
                by,
            } => format!("{} ({by})", team(commander.as_deref(), responders)),
            EventKind::StatusChanged { from, to, by, reason } => match reason {
                Some(why) => format!("status {} → {} ({by}): {why}", from.as_str(), to.as_str()),
                None => format!("status {} → {} ({by})", from.as_str(), to.as_str()),
            },
            EventKind::RunStarted {
                run,
                runbook,
                dry_run,
                by,
            } => {
                format!(
                    "{run} started runbook `{runbook}`{} ({by})",
                    if *dry_run { " as a dry run" } else { "" }
                )
            }
            EventKind::RunNotStarted {
                run,
                runbook,
                status,
                reason,
            } => {
                format!(
                    "{run} of runbook `{runbook}` not started ({}): {reason}",
                    status.as_str()
                )
            }
            EventKind::Step {
                run,
                step,
                action,
                status,
                attempt,
                duration_ms,
                summary,
                error,
            } => {
                let mut s = format!("{run} step `{step}` ({action}) {}", status.as_str());
                let attempts = match attempt {
                    0 => None,
                    1 => Some("1 attempt".to_string()),
                    n => Some(format!("{n} attempts")),
                };
                let took = duration_ms.filter(|ms| *ms > 0).map(step_time);
                match (attempts, took) {
                    (Some(a), Some(t)) => s.push_str(&format!(" ({a}, {t})")),
                    (Some(a), None) => s.push_str(&format!(" ({a})")),
                    (None, Some(t)) => s.push_str(&format!(" ({t})")),
                    (None, None) => {}
                }
                if let Some(text) = summary {
                    s.push_str(&format!(": {text}"));
                }
                if let Some(e) = error {
                    s.push_str(&format!(": {e}"));
                }
                s
            }
            EventKind::Approval {
                run,
                step,
                approved,
                by,
            } => {
                format!(
                    "{run} step `{step}` {} by {by}",
                    if *approved { "approved" } else { "denied" }
                )
            }
            EventKind::Evidence {
                run,
                step,
                action,
                summary,
                output,
            } => {
                let seen = summary.as_deref().unwrap_or("no summary");
                format!("{run} step `{step}` ({action}) saw: {seen} — {output}")
            }
            EventKind::RunFinished {
                run,
                runbook,
                status,
                reason,
                ..
            } => match reason {
                Some(r) => format!("{run} (`{runbook}`) {}: {r}", status.as_str()),
                None => format!("{run} (`{runbook}`) {}", status.as_str()),
            },
            EventKind::RunTakenOver {
                run,
                by,
                from,
                silent_secs,
            } => {
                let from = if from.is_empty() { "no replica" } else { from };
                format!("{run} taken over by replica {by} from {from}, silent for {silent_secs:.0} s")
            }
            EventKind::Note {
                note,
                text,
                by,
                owner,
                due,
            } => {
                let mut s = format!("{} by {by}: {text}", note.as_str().replace('_', " "));
                match (owner, due) {
                    (Some(o), Some(d)) => s.push_str(&format!(" (owner {o}, due {d})")),
                    (Some(o), None) => s.push_str(&format!(" (owner {o})")),
                    (None, Some(d)) => s.push_str(&format!(" (due {d})")),
                    (None, None) => {}
                }
                s
            }
        }
    }
}

/// How long a step took: `250 ms`, `62.7s`, `4m 05s`.
pub fn step_time(ms: i64) -> String {
    match ms {
        ..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => crate::template::human_duration(ms / 1000),
    }
}

/// The path of an incident's page for people, in the web view. Slack
/// messages and postmortems link here (behind `server.external_url`).
pub fn page_path(id: IncidentId) -> String {
    format!("/ui/incidents/{id}")
}

/// The path of a run's page in the web view.
pub fn run_page_path(id: RunId) -> String {
    format!("/ui/runs/{id}")
}

/// The page's full URL under `server.external_url`, when that is set.
pub fn page_url(external_url: Option<&str>, id: IncidentId) -> Option<String> {
    external_url.map(|u| format!("{}{}", u.trim_end_matches('/'), page_path(id)))
}

/// "commander alice, responders bob, carol" ("none" where nobody is named).
pub fn team(commander: Option<&str>, responders: &[String]) -> String {
    let responders = if responders.is_empty() {
        "none".to_string()
    } else {
        responders.join(", ")
    };
    format!("commander {}, responders {responders}", commander.unwrap_or("none"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_at_and_kind() {
        let e = Event {
            at: DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            what: EventKind::SeveritySet { severity: Severity::P0 },
        };
        assert_eq!(e.what.kind_name(), "severity_set");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"at": "2026-11-29T12:00:00Z", "kind": "severity_set", "severity": "P0"})
        );
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), e);
    }
}
