//! Alerts into incidents: dedup on (fingerprint, startsAt, status),
//! routing through the playbooks, grouping, severity that only rises, and
//! resolving when every alert of an incident has.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::Ledger;
use crate::alert::{Alert, Status as AlertStatus};
use crate::effects::Opened;
use crate::ids::IncidentId;
use crate::incident::{Event, EventKind, Incident, IncidentAlert, Status};
use crate::playbook::{Playbook, SeverityPolicy, DEFAULT_PLAYBOOK};
use crate::severity::Severity;
use crate::store::{Episode, OpenEntry, StoreError, Write};

/// What one alert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOutcome {
    /// A new episode opened a new incident.
    Opened,
    /// A new episode joined an open incident.
    Joined,
    /// The episode resolved.
    Resolved,
    /// Sent again unchanged: nothing changed.
    Repeat,
    /// A firing notice for an episode already resolved (a late or
    /// out-of-order send): ignored.
    Stale,
}

/// What a webhook body did.
#[derive(Debug, Default)]
pub struct Applied {
    pub outcomes: Vec<AlertOutcome>,
    pub opened: Vec<Opened>,
}

impl Ledger {
    /// Applies the alerts of one webhook body.
    pub fn apply(&mut self, alerts: &[Alert], now: DateTime<Utc>) -> Result<Applied, StoreError> {
        let mut applied = Applied::default();
        for alert in alerts {
            let outcome = self.apply_one(alert, now, &mut applied.opened)?;
            applied.outcomes.push(outcome);
        }
        Ok(applied)
    }

    fn apply_one(
        &mut self,
        alert: &Alert,
        now: DateTime<Utc>,
        opened: &mut Vec<Opened>,
    ) -> Result<AlertOutcome, StoreError> {
        let known = self
            .overlay
            .episode(self.store.as_ref(), &alert.fingerprint, alert.starts_at)?;
        match (known, alert.status) {
            (Some(e), status) if e.status == status => {
                self.count_repeat(e)?;
                Ok(AlertOutcome::Repeat)
            }
            (Some(e), AlertStatus::Firing) if e.status == AlertStatus::Resolved => Ok(AlertOutcome::Stale),
            (Some(e), _) => {
                self.resolve_alert(e, alert, now)?;
                Ok(AlertOutcome::Resolved)
            }
            (None, status) => {
                let (number, is_new) = self.incident_for(alert, now)?;
                let episode = self.add_alert(number, alert, now)?;
                if status == AlertStatus::Resolved {
                    // Seen only once it had resolved (e.g. laojun was down
                    // while it fired): recorded all the same.
                    self.resolve_alert(episode, alert, now)?;
                } else if is_new {
                    if let Some(inc) = self.overlay.get(number) {
                        opened.push(Opened {
                            incident: inc.clone(),
                            alert: alert.clone(),
                        });
                    }
                }
                Ok(if is_new {
                    AlertOutcome::Opened
                } else {
                    AlertOutcome::Joined
                })
            }
        }
    }

    /// The playbook that takes an alert: the first whose matchers pass.
    fn route(&self, alert: &Alert) -> (Option<&Playbook>, &SeverityPolicy) {
        match self.playbooks.iter().find(|p| p.matches(&alert.labels)) {
            Some(p) => (Some(p), &p.severity),
            None => (None, &self.default),
        }
    }

    /// The open incident the alert's group maps to, or a new one.
    fn incident_for(&mut self, alert: &Alert, now: DateTime<Utc>) -> Result<(IncidentId, bool), StoreError> {
        let (playbook, policy) = self.route(alert);
        let name = playbook.map_or(DEFAULT_PLAYBOOK, |p| p.name.as_str()).to_string();
        let group: BTreeMap<String, String> = match playbook {
            Some(p) => p
                .group_by
                .iter()
                .map(|l| (l.clone(), alert.labels.get(l).cloned().unwrap_or_default()))
                .collect(),
            None => BTreeMap::from([(
                "alertname".to_string(),
                alert.labels.get("alertname").cloned().unwrap_or_default(),
            )]),
        };
        let severity = policy.classify_or(&alert.labels, self.default_severity);
        let is_default = playbook.is_none();
        let gkey = group_key(&name, &group);
        if let Some(&n) = self.groups.get(&gkey) {
            self.raise_severity(n, severity, alert, now)?;
            return Ok((n, false));
        }
        self.last_incident += 1;
        let n = IncidentId::new(self.last_incident);
        let incident = Incident {
            id: n,
            title: title_of(alert, &group),
            status: Status::Open,
            severity,
            playbook: name.clone(),
            group,
            opened_at: now,
            started_at: Some(alert.starts_at),
            severity_history: vec![crate::incident::SeverityChange {
                at: now,
                from: None,
                to: severity,
                by: "alerts".to_string(),
                reason: Some(format!("playbook `{name}`")),
            }],
            acknowledged_at: None,
            acknowledged_by: None,
            commander: None,
            responders: Vec::new(),
            mitigated_at: None,
            resolved_at: None,
            alerts: Vec::new(),
            alert_count: 0,
            alerts_firing: 0,
            runs: Vec::new(),
            events: 0,
        };
        self.pending.push(Write::LastIncident(self.last_incident));
        self.pending.push(Write::Open(OpenEntry::of(&incident)));
        self.overlay.insert(n, incident);
        self.open.insert(n, severity);
        self.groups.insert(gkey, n);
        self.event(
            n,
            now,
            EventKind::Opened {
                playbook: name,
                default_playbook: is_default,
            },
        )?;
        self.event(n, now, EventKind::SeveritySet { severity })?;
        Ok((n, true))
    }

    fn raise_severity(
        &mut self,
        n: IncidentId,
        severity: Severity,
        alert: &Alert,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(inc) = self.overlay.record(self.store.as_ref(), n)? else {
            return Ok(());
        };
        if severity < inc.severity {
            let from = inc.severity;
            inc.severity = severity;
            inc.severity_history.push(crate::incident::SeverityChange {
                at: now,
                from: Some(from),
                to: severity,
                by: "alerts".to_string(),
                reason: Some(format!("alert {} ({})", alert.name(), alert.fingerprint)),
            });
            let entry = OpenEntry::of(inc);
            self.pending.push(Write::Open(entry));
            self.open.insert(n, severity);
            self.event(
                n,
                now,
                EventKind::SeverityRaised {
                    from,
                    to: severity,
                    fingerprint: alert.fingerprint.clone(),
                },
            )?;
        }
        Ok(())
    }

    /// Adds a firing alert to incident `n`; returns its episode.
    fn add_alert(&mut self, n: IncidentId, alert: &Alert, now: DateTime<Utc>) -> Result<Episode, StoreError> {
        let Some(inc) = self.overlay.record(self.store.as_ref(), n)? else {
            return Err(StoreError::Missing(format!(
                "incident {n}, which alerts were routed to"
            )));
        };
        let index = inc.alert_count;
        inc.alert_count += 1;
        if inc.started_at.is_none_or(|s| alert.starts_at < s) {
            inc.started_at = Some(alert.starts_at);
        }
        inc.alerts_firing += 1;
        self.overlay.insert_alert(
            n,
            index,
            IncidentAlert {
                fingerprint: alert.fingerprint.clone(),
                status: AlertStatus::Firing,
                labels: alert.labels.clone(),
                annotations: alert.annotations.clone(),
                generator_url: alert.generator_url.clone(),
                extras: alert.extras.clone(),
                starts_at: alert.starts_at,
                ends_at: None,
                repeats: 0,
            },
        );
        let episode = Episode {
            incident: n,
            alert: index,
            status: AlertStatus::Firing,
        };
        self.record_episode(alert, episode);
        self.event(
            n,
            now,
            EventKind::AlertFired {
                fingerprint: alert.fingerprint.clone(),
                alertname: alert.name().to_string(),
                starts_at: alert.starts_at,
            },
        )?;
        Ok(episode)
    }

    fn record_episode(&mut self, alert: &Alert, episode: Episode) {
        self.overlay.put_episode(&alert.fingerprint, alert.starts_at, episode);
        self.pending.push(Write::Episode {
            fingerprint: alert.fingerprint.clone(),
            starts_at: alert.starts_at,
            episode,
        });
    }

    fn count_repeat(&mut self, e: Episode) -> Result<(), StoreError> {
        // Repeats of alerts of resolved incidents only show in metrics.
        if self.open.contains(e.incident) {
            if let Some(a) = self.overlay.alert(self.store.as_ref(), e.incident, e.alert)? {
                a.repeats += 1;
            }
        }
        Ok(())
    }

    fn resolve_alert(&mut self, e: Episode, alert: &Alert, now: DateTime<Utc>) -> Result<(), StoreError> {
        let n = e.incident;
        self.record_episode(
            alert,
            Episode {
                status: AlertStatus::Resolved,
                ..e
            },
        );
        let was_firing = match self.overlay.alert(self.store.as_ref(), n, e.alert)? {
            Some(a) => {
                let was_firing = a.status == AlertStatus::Firing;
                a.status = AlertStatus::Resolved;
                a.ends_at = alert.ends_at;
                was_firing
            }
            None => false,
        };
        let Some(inc) = self.overlay.record(self.store.as_ref(), n)? else {
            return Ok(());
        };
        if was_firing {
            inc.alerts_firing = inc.alerts_firing.saturating_sub(1);
        }
        let all_resolved = inc.alerts_firing == 0;
        // Also on an incident resolved by hand before its alerts did.
        self.event(n, now, resolved_event(alert, now).what)?;
        if all_resolved && self.open.contains(n) {
            self.close(n, now, "alerts".to_string(), None)?;
        }
        Ok(())
    }

    /// Resolves an open incident: status, index of open incidents, group.
    /// Returns the incident record as resolved, or `None` when `n` is not
    /// open.
    pub(super) fn close(
        &mut self,
        n: IncidentId,
        now: DateTime<Utc>,
        by: String,
        reason: Option<String>,
    ) -> Result<Option<Incident>, StoreError> {
        if !self.open.remove(n) {
            return Ok(None);
        }
        let Some(inc) = self.overlay.record(self.store.as_ref(), n)? else {
            return Ok(None);
        };
        let from = inc.status;
        inc.status = Status::Resolved;
        inc.resolved_at = Some(now);
        let (severity, start) = (inc.severity, inc.start());
        let gkey = group_key(&inc.playbook, &inc.group);
        self.groups.remove(&gkey);
        self.pending.push(Write::Closed(n));
        self.reached(crate::metrics::Milestone::Resolved, severity, start, now);
        self.event(
            n,
            now,
            EventKind::StatusChanged {
                from,
                to: Status::Resolved,
                by,
                reason,
            },
        )?;
        let closed = self.overlay.get(n).cloned();
        self.closed.extend(closed.clone());
        Ok(closed)
    }
}

fn resolved_event(alert: &Alert, now: DateTime<Utc>) -> Event {
    Event {
        at: now,
        what: EventKind::AlertResolved {
            fingerprint: alert.fingerprint.clone(),
            alertname: alert.name().to_string(),
            ends_at: alert.ends_at,
        },
    }
}

/// A playbook's name and the values of its group labels, as one key.
pub(super) fn group_key(playbook: &str, group: &BTreeMap<String, String>) -> String {
    let len = group.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>();
    let mut key = String::with_capacity(playbook.len() + 1 + len);
    key.push_str(playbook);
    key.push('\u{0}');
    for (k, v) in group {
        key.push_str(k);
        key.push('\u{1}');
        key.push_str(v);
        key.push('\u{2}');
    }
    key
}

/// The summary annotation if there is one, else the alert name and the
/// group's other labels.
fn title_of(alert: &Alert, group: &BTreeMap<String, String>) -> String {
    if let Some(summary) = alert.annotations.get("summary").filter(|s| !s.trim().is_empty()) {
        return summary.chars().take(200).collect();
    }
    let rest: Vec<String> = group
        .iter()
        .filter(|(k, v)| k.as_str() != "alertname" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if rest.is_empty() {
        alert.name().to_string()
    } else {
        format!("{} ({})", alert.name(), rest.join(", "))
    }
}
