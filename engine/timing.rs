//! How long an incident took, from its alerts and its timeline: the
//! figures its postmortem, its Slack summary and the metrics all show.
//!
//! Every span starts at the trouble's start, the earliest `startsAt` of
//! its alerts, not at when laojun heard of it: AlertManager sends a group
//! after `group_wait` and its resolve after `group_interval`, which would
//! inflate every figure. The impact ends at the last alert's `endsAt` once
//! all have ended (else when the incident resolved).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::incident::{Event, EventKind, Incident};
use crate::run::StepStatus;

/// The moments of an incident's life.
#[derive(Debug, Clone, PartialEq)]
pub struct Times {
    /// The trouble began (earliest `startsAt`, else when laojun opened it).
    pub started: DateTime<Utc>,
    /// The trouble ended (last `endsAt` once every alert has ended, else
    /// when the incident resolved).
    pub ended: Option<DateTime<Utc>>,
    /// laojun opened the incident (detection).
    pub opened: DateTime<Utc>,
    pub acknowledged: Option<DateTime<Utc>>,
    /// The first step of a real (not dry) run began.
    pub first_action: Option<DateTime<Utc>>,
    pub mitigated: Option<DateTime<Utc>>,
    pub resolved: Option<DateTime<Utc>>,
}

impl Times {
    /// The times of `incident` (with its alerts) and its timeline.
    pub fn of(incident: &Incident, timeline: &[Event]) -> Times {
        let started = incident
            .alerts
            .iter()
            .map(|a| a.starts_at)
            .chain(incident.started_at)
            .min()
            .unwrap_or(incident.opened_at)
            .min(incident.opened_at);
        let all_ended = !incident.alerts.is_empty() && incident.alerts.iter().all(|a| a.ends_at.is_some());
        let last_end = incident.alerts.iter().filter_map(|a| a.ends_at).max();
        let ended = match (all_ended, last_end) {
            (true, Some(end)) => Some(end.max(started)),
            _ => incident.resolved_at,
        };
        let mut dry_runs = Vec::new();
        let mut first_action = None;
        for e in timeline {
            match &e.what {
                EventKind::RunStarted { run, dry_run: true, .. } => dry_runs.push(*run),
                EventKind::Step { run, status, .. }
                    if !dry_runs.contains(run) && *status != StepStatus::Skipped && *status != StepStatus::Pending =>
                {
                    first_action = Some(e.at);
                    break;
                }
                _ => {}
            }
        }
        // A mitigation undone by a reopen is still when it was mitigated.
        let mitigated = incident.mitigated_at.or_else(|| {
            timeline.iter().find_map(|e| match &e.what {
                EventKind::StatusChanged {
                    to: crate::incident::Status::Mitigated,
                    ..
                } => Some(e.at),
                _ => None,
            })
        });
        Times {
            started,
            ended,
            opened: incident.opened_at,
            acknowledged: incident.acknowledged_at,
            first_action,
            mitigated,
            resolved: incident.resolved_at,
        }
    }

    /// Seconds from the start of the trouble to `at`.
    pub fn since_start(&self, at: Option<DateTime<Utc>>) -> Option<i64> {
        at.map(|t| (t - self.started).num_seconds().max(0))
    }

    /// How long the trouble lasted, in seconds.
    pub fn impact(&self) -> Option<i64> {
        self.since_start(self.ended)
    }

    /// The spans as templates read them: each `{"secs", "human"}`, null
    /// where the moment has not come.
    pub fn spans(&self) -> Value {
        let span = |secs: Option<i64>| match secs {
            Some(s) => json!({"secs": s, "human": human(s)}),
            None => json!({"secs": null, "human": null}),
        };
        json!({
            "impact": span(self.impact()),
            "to_detect": span(self.since_start(Some(self.opened))),
            "to_acknowledge": span(self.since_start(self.acknowledged)),
            "to_first_action": span(self.since_start(self.first_action)),
            "to_mitigate": span(self.since_start(self.mitigated)),
            "to_resolve": span(self.since_start(self.resolved)),
        })
    }
}

/// `37s`, `4m 05s`, `1h 15m`, `1d 1h 00m`.
pub use crate::template::human_duration as human;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::IncidentAlert;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn spans_count_from_the_alerts_not_from_when_laojun_heard() {
        let alert = |starts: &str, ends: Option<&str>| IncidentAlert {
            fingerprint: "f".into(),
            status: crate::alert::Status::Resolved,
            labels: Default::default(),
            annotations: Default::default(),
            generator_url: None,
            extras: None,
            starts_at: at(starts),
            ends_at: ends.map(at),
            repeats: 0,
        };
        let mut inc: Incident = serde_json::from_value(serde_json::json!({
            "id": "INC-1", "title": "t", "status": "resolved", "severity": "P1", "playbook": "p",
            "group": {}, "opened_at": "2026-12-01T10:00:10Z", "mitigated_at": null,
            "resolved_at": "2026-12-01T10:05:00Z"
        }))
        .unwrap();
        inc.alerts = vec![
            alert("2026-12-01T10:00:00Z", Some("2026-12-01T10:00:37Z")),
            alert("2026-12-01T10:00:05Z", Some("2026-12-01T10:00:20Z")),
        ];
        let t = Times::of(&inc, &[]);
        assert_eq!(t.impact(), Some(37), "first startsAt to last endsAt");
        assert_eq!(t.since_start(Some(t.opened)), Some(10), "time to detect");
        assert_eq!(t.since_start(t.resolved), Some(300));
        // One alert still firing: the impact lasts until the incident resolved.
        inc.alerts[1].ends_at = None;
        assert_eq!(Times::of(&inc, &[]).impact(), Some(300));
        assert_eq!(t.spans()["impact"], serde_json::json!({"secs": 37, "human": "37s"}));
        assert_eq!(t.spans()["to_acknowledge"]["human"], Value::Null);
    }
}
