//! Alerts in, incidents out. `Intake` holds the state of open incidents and
//! turns each alert into store writes: dedup on (fingerprint, startsAt,
//! status), routing through the playbooks, grouping into incidents,
//! severity, status and timeline events.
//!
//! Routing: the first alert playbook (in file-name order) whose matchers
//! pass takes the alert; an alert no playbook takes goes to the built-in
//! `default` playbook (grouped by `alertname`, severity from the `severity`
//! label), so nothing is dropped.
//!
//! Only one thread changes this state (see `writer`), so there are no races
//! between two webhooks about the same alert.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::alert::{Alert, Status as AlertStatus};
use crate::incident::{format_id, Event, EventKind, Incident, IncidentAlert, NoteKind, Status};
use crate::playbook::{Playbook, SeverityPolicy};
use crate::run::{format_run_id, Run, RunStatus};
use crate::store::{Episode, Store, StoreError, Write};

/// The playbook that takes alerts no other playbook matches.
pub const DEFAULT_PLAYBOOK: &str = "default";

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

/// An incident that just opened, for the executor to start its runbooks.
#[derive(Debug, Clone)]
pub struct Opened {
    pub incident: Incident,
    pub alert: Alert,
}

/// What a webhook body did.
#[derive(Debug, Default)]
pub struct Applied {
    pub outcomes: Vec<AlertOutcome>,
    pub opened: Vec<Opened>,
}

/// A journaled run: its id, and whether it was an earlier run with the
/// same idempotency key (nothing written then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journaled {
    pub id: String,
    pub duplicate: bool,
}

/// Why a person's request about an incident was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No incident has this id.
    #[error("no incident {0}")]
    NotFound(String),
    /// The incident is already in the state asked for.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state of open incidents, rebuilt from the store on start.
pub struct Intake {
    store: Arc<dyn Store>,
    playbooks: Vec<Playbook>,
    default: SeverityPolicy,
    /// Open (not resolved) incidents by number.
    open: HashMap<u64, Incident>,
    /// (playbook, group key) → open incident number.
    groups: HashMap<(String, String), u64>,
    /// Episodes of open incidents and those written but not yet committed.
    episodes: HashMap<(String, DateTime<Utc>), Episode>,
    last_incident: u64,
    last_run: u64,
    /// Idempotency keys handed out since start (the store has the rest).
    run_keys: HashMap<String, String>,
    /// Incidents resolved since the last `take_closed`.
    closed: Vec<Incident>,
    /// Open incidents changed since the last `take_writes`.
    dirty: std::collections::BTreeSet<u64>,
    /// Writes made since the last `take_writes`.
    pending: Vec<Write>,
}

impl Intake {
    /// Rebuilds the state from the store.
    pub fn new(store: Arc<dyn Store>, playbooks: Vec<Playbook>) -> Result<Self, StoreError> {
        let playbooks = playbooks
            .into_iter()
            .filter(|p| matches!(p.trigger, crate::playbook::Trigger::Alerts(_)))
            .collect();
        let mut intake = Intake {
            store,
            playbooks,
            default: SeverityPolicy::from_label(),
            open: HashMap::new(),
            groups: HashMap::new(),
            episodes: HashMap::new(),
            last_incident: 0,
            last_run: 0,
            run_keys: HashMap::new(),
            dirty: Default::default(),
            closed: Vec::new(),
            pending: Vec::new(),
        };
        intake.reload()?;
        Ok(intake)
    }

    /// Forgets everything not committed and reads the state again (after a
    /// failed commit, so memory never runs ahead of the disk).
    pub fn reload(&mut self) -> Result<(), StoreError> {
        self.pending.clear();
        self.dirty.clear();
        self.closed.clear();
        self.open.clear();
        self.groups.clear();
        self.episodes.clear();
        self.run_keys.clear();
        self.last_incident = self.store.last_incident()?;
        self.last_run = self.store.last_run()?;
        for inc in self.store.open_incidents()? {
            let n = inc.number();
            self.groups.insert((inc.playbook.clone(), group_key(&inc.group)), n);
            for a in &inc.alerts {
                self.episodes.insert(
                    (a.fingerprint.clone(), a.starts_at),
                    Episode {
                        incident: n,
                        status: a.status,
                    },
                );
            }
            self.open.insert(n, inc);
        }
        Ok(())
    }

    /// The writes made since the last call; the caller commits them.
    pub fn take_writes(&mut self) -> Vec<Write> {
        for n in std::mem::take(&mut self.dirty) {
            if let Some(inc) = self.open.get(&n) {
                self.pending.push(Write::Incident(inc.clone()));
            }
        }
        std::mem::take(&mut self.pending)
    }

    /// Queues an audit record with the other writes.
    pub fn audit(&mut self, record: crate::store::Audit) {
        self.pending.push(Write::Audit(record));
    }

    /// Incidents resolved since the last call (once their writes are committed).
    pub fn take_closed(&mut self) -> Vec<Incident> {
        std::mem::take(&mut self.closed)
    }

    /// Drops cached episodes of incidents that are no longer open, once
    /// their writes are committed (they are then read from the store).
    pub fn forget_closed(&mut self) {
        let open = &self.open;
        self.episodes.retain(|_, e| open.contains_key(&e.incident));
    }

    pub fn open_incidents(&self) -> impl Iterator<Item = &Incident> {
        self.open.values()
    }

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
        let key = (alert.fingerprint.clone(), alert.starts_at);
        let known = match self.episodes.get(&key) {
            Some(e) => Some(*e),
            None => self.store.episode(&alert.fingerprint, alert.starts_at)?,
        };
        match (known, alert.status) {
            (Some(e), status) if e.status == status => {
                self.count_repeat(e.incident, alert);
                Ok(AlertOutcome::Repeat)
            }
            (Some(e), AlertStatus::Firing) if e.status == AlertStatus::Resolved => Ok(AlertOutcome::Stale),
            (Some(e), _) => {
                self.resolve_alert(e.incident, alert, now)?;
                Ok(AlertOutcome::Resolved)
            }
            (None, status) => {
                let (number, is_new) = self.incident_for(alert, now);
                self.add_alert(number, alert, now);
                if status == AlertStatus::Resolved {
                    // Seen only once it had resolved (e.g. laojun was down
                    // while it fired): recorded all the same.
                    self.resolve_alert(number, alert, now)?;
                } else if is_new {
                    if let Some(inc) = self.open.get(&number) {
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
    fn incident_for(&mut self, alert: &Alert, now: DateTime<Utc>) -> (u64, bool) {
        let (playbook, policy) = self.route(alert);
        let name = playbook.map_or(DEFAULT_PLAYBOOK, |p| p.name.as_str()).to_string();
        let group_by: Vec<String> = playbook.map_or_else(|| vec!["alertname".to_string()], |p| p.group_by.clone());
        let severity = policy.classify(&alert.labels);
        let group: BTreeMap<String, String> = group_by
            .iter()
            .map(|l| (l.clone(), alert.labels.get(l).cloned().unwrap_or_default()))
            .collect();
        let is_default = playbook.is_none();
        let gkey = (name.clone(), group_key(&group));
        if let Some(&n) = self.groups.get(&gkey) {
            self.raise_severity(n, severity, alert, now);
            return (n, false);
        }
        self.last_incident += 1;
        let n = self.last_incident;
        let incident = Incident {
            id: format_id(n),
            title: title_of(alert, &group),
            status: Status::Open,
            severity,
            playbook: name.clone(),
            group,
            opened_at: now,
            mitigated_at: None,
            resolved_at: None,
            alerts: Vec::new(),
            runs: Vec::new(),
            events: 0,
        };
        self.pending.push(Write::LastIncident(n));
        self.pending.push(Write::Open {
            incident: n,
            open: true,
        });
        self.open.insert(n, incident);
        self.groups.insert(gkey, n);
        self.event(
            n,
            now,
            EventKind::Opened {
                playbook: name,
                default_playbook: is_default,
            },
        );
        self.event(n, now, EventKind::SeveritySet { severity });
        (n, true)
    }

    fn raise_severity(&mut self, n: u64, severity: crate::severity::Severity, alert: &Alert, now: DateTime<Utc>) {
        let Some(inc) = self.open.get_mut(&n) else {
            return;
        };
        if severity < inc.severity {
            let from = inc.severity;
            inc.severity = severity;
            self.event(
                n,
                now,
                EventKind::SeverityRaised {
                    from,
                    to: severity,
                    fingerprint: alert.fingerprint.clone(),
                },
            );
        }
    }

    fn add_alert(&mut self, n: u64, alert: &Alert, now: DateTime<Utc>) {
        let Some(inc) = self.open.get_mut(&n) else {
            return;
        };
        inc.alerts.push(IncidentAlert {
            fingerprint: alert.fingerprint.clone(),
            status: AlertStatus::Firing,
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at: alert.starts_at,
            ends_at: None,
            repeats: 0,
        });
        self.record_episode(n, alert, AlertStatus::Firing);
        self.event(
            n,
            now,
            EventKind::AlertFired {
                fingerprint: alert.fingerprint.clone(),
                alertname: alert.name().to_string(),
                starts_at: alert.starts_at,
            },
        );
    }

    fn record_episode(&mut self, n: u64, alert: &Alert, status: AlertStatus) {
        let episode = Episode { incident: n, status };
        self.episodes
            .insert((alert.fingerprint.clone(), alert.starts_at), episode);
        self.pending.push(Write::Episode {
            fingerprint: alert.fingerprint.clone(),
            starts_at: alert.starts_at,
            episode,
        });
    }

    fn count_repeat(&mut self, n: u64, alert: &Alert) {
        // Repeats of alerts of resolved incidents only show in metrics.
        if let Some(a) = self
            .open
            .get_mut(&n)
            .and_then(|inc| inc.alert_mut(&alert.fingerprint, alert.starts_at))
        {
            a.repeats += 1;
            self.dirty.insert(n);
        }
    }

    fn resolve_alert(&mut self, n: u64, alert: &Alert, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.record_episode(n, alert, AlertStatus::Resolved);
        let Some(inc) = self.open.get_mut(&n) else {
            // The incident was resolved by hand before its alert resolved:
            // note it on the timeline all the same.
            if let Some(mut inc) = self.store.incident(n)? {
                if let Some(a) = inc.alert_mut(&alert.fingerprint, alert.starts_at) {
                    a.status = AlertStatus::Resolved;
                    a.ends_at = alert.ends_at;
                }
                let seq = inc.events;
                inc.events += 1;
                self.pending.push(Write::Event {
                    incident: n,
                    seq,
                    event: resolved_event(alert, now),
                });
                self.pending.push(Write::Incident(inc));
            }
            return Ok(());
        };
        if let Some(a) = inc.alert_mut(&alert.fingerprint, alert.starts_at) {
            a.status = AlertStatus::Resolved;
            a.ends_at = alert.ends_at;
        }
        let all_resolved = inc.alerts.iter().all(|a| a.status == AlertStatus::Resolved);
        self.event(n, now, resolved_event(alert, now).what);
        if all_resolved {
            self.close(n, now, "alerts".to_string());
        }
        Ok(())
    }

    /// Resolves an open incident: status, index of open incidents, group.
    /// Returns the incident as resolved.
    fn close(&mut self, n: u64, now: DateTime<Utc>, by: String) -> Option<Incident> {
        let inc = self.open.get_mut(&n)?;
        let from = inc.status;
        inc.status = Status::Resolved;
        inc.resolved_at = Some(now);
        let gkey = (inc.playbook.clone(), group_key(&inc.group));
        self.event(
            n,
            now,
            EventKind::StatusChanged {
                from,
                to: Status::Resolved,
                by,
            },
        );
        self.groups.remove(&gkey);
        self.pending.push(Write::Open {
            incident: n,
            open: false,
        });
        self.dirty.remove(&n);
        let closed = self.open.remove(&n)?;
        self.pending.push(Write::Incident(closed.clone()));
        self.closed.push(closed.clone());
        Some(closed)
    }

    /// Appends an event to an open incident and queues the incident write.
    fn event(&mut self, n: u64, at: DateTime<Utc>, what: EventKind) {
        let Some(inc) = self.open.get_mut(&n) else {
            return;
        };
        let seq = inc.events;
        inc.events += 1;
        self.pending.push(Write::Event {
            incident: n,
            seq,
            event: Event { at, what },
        });
        // Written once per commit however many events it got (see take_writes).
        self.dirty.insert(n);
    }

    /// Resolves an incident by hand.
    pub fn resolve_by_hand(&mut self, n: u64, by: &str, now: DateTime<Utc>) -> Result<Incident, RequestError> {
        if !self.open.contains_key(&n) {
            return match self.store.incident(n)? {
                Some(inc) => Err(RequestError::Conflict(format!("{} is already resolved", inc.id))),
                None => Err(RequestError::NotFound(format_id(n))),
            };
        }
        self.close(n, now, by.to_string())
            .ok_or_else(|| RequestError::NotFound(format_id(n)))
    }

    /// Adds a note to an incident, open or resolved.
    pub fn add_note(
        &mut self,
        n: u64,
        note: NoteKind,
        text: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), RequestError> {
        let what = EventKind::Note {
            note,
            text: text.to_string(),
            by: by.to_string(),
        };
        self.append_event(n, now, what, |_| {})
    }

    /// Appends an event to any incident, open or resolved; `change` may
    /// alter the incident in the same write.
    fn append_event(
        &mut self,
        n: u64,
        at: DateTime<Utc>,
        what: EventKind,
        change: impl FnOnce(&mut Incident),
    ) -> Result<(), RequestError> {
        if let Some(inc) = self.open.get_mut(&n) {
            change(inc);
            self.event(n, at, what);
            return Ok(());
        }
        let mut inc = self
            .store
            .incident(n)?
            .ok_or_else(|| RequestError::NotFound(format_id(n)))?;
        change(&mut inc);
        let seq = inc.events;
        inc.events += 1;
        self.pending.push(Write::Event {
            incident: n,
            seq,
            event: Event { at, what },
        });
        self.pending.push(Write::Incident(inc));
        Ok(())
    }

    /// Journals a run's state and, when it acts for an incident, an event
    /// on that incident's timeline. A run without an id is new: it gets the
    /// next `RUN-n`, unless its idempotency key was seen before, in which
    /// case nothing is written and the earlier run's id comes back.
    pub fn journal_run(
        &mut self,
        mut run: Run,
        event: Option<EventKind>,
        now: DateTime<Utc>,
    ) -> Result<Journaled, RequestError> {
        let incident = run.incident.as_deref().and_then(crate::incident::parse_id);
        let is_new = run.id.is_empty();
        if is_new {
            if let Some(key) = &run.idempotency_key {
                let earlier = match self.run_keys.get(key) {
                    Some(id) => Some(id.clone()),
                    None => self.store.run_for_key(key)?,
                };
                if let Some(id) = earlier {
                    return Ok(Journaled { id, duplicate: true });
                }
            }
            if let Some(n) = incident {
                if !self.open.contains_key(&n) && self.store.incident(n)?.is_none() {
                    return Err(RequestError::NotFound(format_id(n)));
                }
            }
            self.last_run += 1;
            run.id = format_run_id(self.last_run);
            self.pending.push(Write::LastRun(self.last_run));
            if let Some(key) = &run.idempotency_key {
                self.run_keys.insert(key.clone(), run.id.clone());
                self.pending.push(Write::IdempotencyKey {
                    key: key.clone(),
                    run: run.id.clone(),
                });
            }
        }
        let id = run.id.clone();
        let mut event = event;
        if let Some(EventKind::RunStarted { run: r, .. } | EventKind::RunNotStarted { run: r, .. }) = &mut event {
            if r.is_empty() {
                r.clone_from(&id);
            }
        }
        let mitigates = run.status == RunStatus::Succeeded && !run.dry_run;
        self.pending.push(Write::Run(run));
        if let (Some(n), Some(what)) = (incident, event) {
            let run_id = id.clone();
            self.append_event(n, now, what, |inc| {
                if is_new && !inc.runs.contains(&run_id) {
                    inc.runs.push(run_id.clone());
                }
            })?;
            if mitigates && self.open.get(&n).is_some_and(|i| i.status == Status::Open) {
                if let Some(inc) = self.open.get_mut(&n) {
                    inc.status = Status::Mitigated;
                    inc.mitigated_at = Some(now);
                }
                self.event(
                    n,
                    now,
                    EventKind::StatusChanged {
                        from: Status::Open,
                        to: Status::Mitigated,
                        by: id.clone(),
                    },
                );
            }
        }
        Ok(Journaled { id, duplicate: false })
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

/// The values of the group labels, as one key.
fn group_key(group: &BTreeMap<String, String>) -> String {
    let mut key = String::new();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::severity::Severity;
    use crate::store::{IncidentFilter, SledStore};

    fn playbook(src: &str) -> Playbook {
        let mut found = Vec::new();
        let name = src.lines().next().unwrap().trim_start_matches("name: ").to_string();
        let path = std::path::PathBuf::from(format!("playbooks/{name}.yaml"));
        crate::playbook::load(&path, src, &mut found).unwrap_or_else(|| panic!("{found:?}"))
    }

    fn setup() -> (tempfile::TempDir, Arc<dyn Store>, Intake) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let pbs = vec![playbook(
            "name: service-down\ntrigger: {alerts: ['alertname=\"ServiceDown\"']}\nseverity: {rules: [{match: ['env=\"prod\"'], severity: P0}]}\ngroup_by: [alertname, namespace]\n",
        )];
        let intake = Intake::new(store.clone(), pbs).unwrap();
        (dir, store, intake)
    }

    fn alert(fp: &str, status: AlertStatus, starts: &str, labels: &[(&str, &str)]) -> Alert {
        Alert {
            fingerprint: fp.into(),
            status,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            annotations: BTreeMap::new(),
            starts_at: DateTime::parse_from_rfc3339(starts).unwrap().with_timezone(&Utc),
            ends_at: None,
            generator_url: None,
        }
    }

    fn commit(intake: &mut Intake, store: &Arc<dyn Store>) {
        store.commit(intake.take_writes()).unwrap();
        intake.forget_closed();
    }

    const T0: &str = "2026-11-29T12:00:00Z";
    const T1: &str = "2026-11-29T13:00:00Z";

    #[test]
    fn repeats_and_ha_double_sends_change_nothing() {
        let (_d, store, mut intake) = setup();
        let a = alert(
            "aa",
            AlertStatus::Firing,
            T0,
            &[("alertname", "ServiceDown"), ("namespace", "web")],
        );
        let first = intake.apply(std::slice::from_ref(&a), Utc::now()).unwrap();
        assert_eq!(first.outcomes, [AlertOutcome::Opened]);
        assert_eq!(first.opened.len(), 1);
        commit(&mut intake, &store);
        for _ in 0..3 {
            let again = intake.apply(std::slice::from_ref(&a), Utc::now()).unwrap();
            assert_eq!(again.outcomes, [AlertOutcome::Repeat]);
            assert!(again.opened.is_empty());
            commit(&mut intake, &store);
        }
        let all = store
            .incidents(&IncidentFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].alerts[0].repeats, 3);
        let kinds: Vec<String> = store.timeline(1).unwrap().iter().map(|e| e.what.describe()).collect();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
    }

    #[test]
    fn alerts_of_one_group_share_an_incident_and_worse_ones_raise_its_severity() {
        let (_d, store, mut intake) = setup();
        let a = alert(
            "aa",
            AlertStatus::Firing,
            T0,
            &[
                ("alertname", "ServiceDown"),
                ("namespace", "web"),
                ("severity", "critical"),
            ],
        );
        let b = alert(
            "bb",
            AlertStatus::Firing,
            T0,
            &[("alertname", "ServiceDown"), ("namespace", "web"), ("env", "prod")],
        );
        let c = alert(
            "cc",
            AlertStatus::Firing,
            T0,
            &[("alertname", "ServiceDown"), ("namespace", "api")],
        );
        let r = intake.apply(&[a, b, c], Utc::now()).unwrap();
        assert_eq!(
            r.outcomes,
            [AlertOutcome::Opened, AlertOutcome::Joined, AlertOutcome::Opened]
        );
        commit(&mut intake, &store);
        let inc = store.incident(1).unwrap().unwrap();
        assert_eq!(inc.severity, Severity::P0);
        assert_eq!(inc.alerts.len(), 2);
        assert!(store.timeline(1).unwrap().iter().any(|e| matches!(
            e.what,
            EventKind::SeverityRaised {
                from: Severity::P1,
                to: Severity::P0,
                ..
            }
        )));
    }

    #[test]
    fn the_incident_resolves_when_all_its_alerts_resolve_and_a_new_episode_opens_a_new_one() {
        let (_d, store, mut intake) = setup();
        let labels = [("alertname", "ServiceDown"), ("namespace", "web")];
        intake
            .apply(&[alert("aa", AlertStatus::Firing, T0, &labels)], Utc::now())
            .unwrap();
        commit(&mut intake, &store);
        let mut resolved = alert("aa", AlertStatus::Resolved, T0, &labels);
        resolved.ends_at = Some(Utc::now());
        assert_eq!(
            intake.apply(&[resolved.clone()], Utc::now()).unwrap().outcomes,
            [AlertOutcome::Resolved]
        );
        commit(&mut intake, &store);
        assert_eq!(store.incident(1).unwrap().unwrap().status, Status::Resolved);
        // A late firing send of the same episode does not reopen it.
        assert_eq!(
            intake
                .apply(&[alert("aa", AlertStatus::Firing, T0, &labels)], Utc::now())
                .unwrap()
                .outcomes,
            [AlertOutcome::Stale]
        );
        assert_eq!(
            intake.apply(&[resolved], Utc::now()).unwrap().outcomes,
            [AlertOutcome::Repeat]
        );
        // The same fingerprint firing again later is a new episode.
        let again = intake
            .apply(&[alert("aa", AlertStatus::Firing, T1, &labels)], Utc::now())
            .unwrap();
        assert_eq!(again.outcomes, [AlertOutcome::Opened]);
        commit(&mut intake, &store);
        assert_eq!(store.incident(2).unwrap().unwrap().status, Status::Open);
    }

    #[test]
    fn alerts_no_playbook_matches_are_kept_under_the_default_playbook() {
        let (_d, store, mut intake) = setup();
        intake
            .apply(
                &[alert(
                    "zz",
                    AlertStatus::Firing,
                    T0,
                    &[("alertname", "DiskFull"), ("severity", "warning")],
                )],
                Utc::now(),
            )
            .unwrap();
        commit(&mut intake, &store);
        let inc = store.incident(1).unwrap().unwrap();
        assert_eq!(inc.playbook, DEFAULT_PLAYBOOK);
        assert_eq!(inc.severity, Severity::P2);
        assert_eq!(inc.title, "DiskFull");
    }

    #[test]
    fn a_resolved_alert_never_seen_firing_is_recorded_resolved() {
        let (_d, store, mut intake) = setup();
        let r = intake
            .apply(
                &[alert("qq", AlertStatus::Resolved, T0, &[("alertname", "X")])],
                Utc::now(),
            )
            .unwrap();
        assert!(r.opened.is_empty(), "remediation never starts on a resolved alert");
        commit(&mut intake, &store);
        assert_eq!(store.incident(1).unwrap().unwrap().status, Status::Resolved);
    }

    #[test]
    fn state_is_rebuilt_from_the_store() {
        let (dir, store, mut intake) = setup();
        let labels = [("alertname", "ServiceDown"), ("namespace", "web")];
        intake
            .apply(&[alert("aa", AlertStatus::Firing, T0, &labels)], Utc::now())
            .unwrap();
        commit(&mut intake, &store);
        drop(intake);
        drop(store);
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let mut intake = Intake::new(store.clone(), vec![]).unwrap();
        assert_eq!(
            intake
                .apply(&[alert("aa", AlertStatus::Firing, T0, &labels)], Utc::now())
                .unwrap()
                .outcomes,
            [AlertOutcome::Repeat]
        );
        let r = intake
            .apply(
                &[alert("bb", AlertStatus::Firing, T0, &[("alertname", "Other")])],
                Utc::now(),
            )
            .unwrap();
        assert_eq!(r.opened[0].incident.id, "INC-2", "numbering goes on after a restart");
    }

    #[test]
    fn notes_and_resolve_by_hand() {
        let (_d, store, mut intake) = setup();
        intake
            .apply(
                &[alert("aa", AlertStatus::Firing, T0, &[("alertname", "X")])],
                Utc::now(),
            )
            .unwrap();
        commit(&mut intake, &store);
        intake
            .add_note(1, NoteKind::RootCause, "pool too small", "alice", Utc::now())
            .unwrap();
        let inc = intake.resolve_by_hand(1, "alice", Utc::now()).unwrap();
        assert_eq!(inc.status, Status::Resolved);
        commit(&mut intake, &store);
        assert!(matches!(
            intake.resolve_by_hand(1, "bob", Utc::now()),
            Err(RequestError::Conflict(_))
        ));
        assert!(matches!(
            intake.add_note(9, NoteKind::Note, "x", "bob", Utc::now()),
            Err(RequestError::NotFound(_))
        ));
        intake
            .add_note(1, NoteKind::Lesson, "after the fact", "bob", Utc::now())
            .unwrap();
        commit(&mut intake, &store);
        let timeline = store.timeline(1).unwrap();
        assert!(matches!(
            &timeline.last().unwrap().what,
            EventKind::Note {
                note: NoteKind::Lesson,
                ..
            }
        ));
        assert_eq!(store.incident(1).unwrap().unwrap().events as usize, timeline.len());
    }
}
