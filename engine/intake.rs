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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::alert::{Alert, Status as AlertStatus};
use crate::incident::{format_id, Event, EventKind, Incident, IncidentAlert, NoteKind, Status};
use crate::playbook::{Playbook, SeverityPolicy};
use crate::run::{format_run_id, Run, RunStatus};
use crate::severity::Severity;
use crate::store::{Episode, OpenEntry, Store, StoreError, Write};

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

/// Open incidents by number and how many there are of each severity (for
/// the metrics), kept up to date as they change.
#[derive(Default)]
struct OpenSet {
    severity: HashMap<u64, Severity>,
    counts: [i64; 4],
}

impl OpenSet {
    fn insert(&mut self, n: u64, severity: Severity) {
        if let Some(old) = self.severity.insert(n, severity) {
            self.counts[old as usize] -= 1;
        }
        self.counts[severity as usize] += 1;
    }

    fn remove(&mut self, n: u64) -> bool {
        match self.severity.remove(&n) {
            Some(old) => {
                self.counts[old as usize] -= 1;
                true
            }
            None => false,
        }
    }

    fn contains(&self, n: u64) -> bool {
        self.severity.contains_key(&n)
    }

    fn clear(&mut self) {
        *self = OpenSet::default();
    }
}

/// What intake needs in memory: the routing and dedup index of open
/// incidents, and the records changed since the last commit. Everything
/// else is read from the store when an alert needs it, so memory does not
/// grow with the alerts an incident gathers.
pub struct Intake {
    store: Arc<dyn Store>,
    playbooks: Vec<Playbook>,
    default: SeverityPolicy,
    /// Open (not resolved) incidents.
    open: OpenSet,
    /// Playbook and group (see `group_key`) → open incident number.
    groups: HashMap<String, u64>,
    /// Episodes written but not yet committed (the store has the rest).
    episodes: HashMap<(String, DateTime<Utc>), Episode>,
    last_incident: u64,
    last_run: u64,
    /// Idempotency keys handed out since start (the store has the rest).
    run_keys: HashMap<String, String>,
    /// Incidents resolved since the last `take_closed`.
    closed: Vec<Incident>,
    /// Incident records (without alerts) read or changed since the last
    /// commit: the store has them only once it is done, and a commit may
    /// take its writes in several chunks (see `writer`).
    records: BTreeMap<u64, Incident>,
    /// Alerts read or changed since the last commit, by (incident, index).
    alerts: BTreeMap<(u64, u32), IncidentAlert>,
    /// Records and alerts changed since the last `take_writes`.
    changed_records: BTreeSet<u64>,
    changed_alerts: BTreeSet<(u64, u32)>,
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
            open: OpenSet::default(),
            groups: HashMap::new(),
            episodes: HashMap::new(),
            last_incident: 0,
            last_run: 0,
            run_keys: HashMap::new(),
            closed: Vec::new(),
            records: BTreeMap::new(),
            alerts: BTreeMap::new(),
            changed_records: BTreeSet::new(),
            changed_alerts: BTreeSet::new(),
            pending: Vec::new(),
        };
        intake.reload()?;
        Ok(intake)
    }

    /// Forgets everything not committed and reads the state again (after a
    /// failed commit, so memory never runs ahead of the disk).
    pub fn reload(&mut self) -> Result<(), StoreError> {
        self.pending.clear();
        self.records.clear();
        self.alerts.clear();
        self.changed_records.clear();
        self.changed_alerts.clear();
        self.closed.clear();
        self.open.clear();
        self.groups.clear();
        self.episodes.clear();
        self.run_keys.clear();
        self.last_incident = self.store.last_incident()?;
        self.last_run = self.store.last_run()?;
        let (groups, open) = (&mut self.groups, &mut self.open);
        self.store.each_open(&mut |entry| {
            groups.insert(group_key(&entry.playbook, &entry.group), entry.incident);
            open.insert(entry.incident, entry.severity);
        })?;
        Ok(())
    }

    /// The writes made since the last call; the caller commits them and
    /// then calls `committed`.
    pub fn take_writes(&mut self) -> Vec<Write> {
        for n in std::mem::take(&mut self.changed_records) {
            if let Some(inc) = self.records.get(&n) {
                self.pending.push(Write::Incident(inc.clone()));
            }
        }
        for (incident, index) in std::mem::take(&mut self.changed_alerts) {
            if let Some(alert) = self.alerts.get(&(incident, index)) {
                self.pending.push(Write::Alert {
                    incident,
                    index,
                    alert: alert.clone(),
                });
            }
        }
        std::mem::take(&mut self.pending)
    }

    /// How many writes `take_writes` would return now.
    pub fn writes_waiting(&self) -> usize {
        self.pending.len() + self.changed_records.len() + self.changed_alerts.len()
    }

    /// The writes taken are on disk: episodes, records and alerts are read
    /// from the store from now on.
    pub fn committed(&mut self) {
        self.episodes.clear();
        self.records.clear();
        self.alerts.clear();
    }

    /// Queues an audit record with the other writes.
    pub fn audit(&mut self, record: crate::store::Audit) {
        self.pending.push(Write::Audit(record));
    }

    /// Incidents resolved since the last call (once their writes are committed).
    pub fn take_closed(&mut self) -> Vec<Incident> {
        std::mem::take(&mut self.closed)
    }

    /// How many incidents are open, by severity (`Severity as usize`).
    pub fn open_counts(&self) -> [i64; 4] {
        self.open.counts
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
        let known = match self.episodes.get(&(alert.fingerprint.clone(), alert.starts_at)) {
            Some(e) => Some(*e),
            None => self.store.episode(&alert.fingerprint, alert.starts_at)?,
        };
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
                    if let Some(inc) = self.records.get(&number) {
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
    fn incident_for(&mut self, alert: &Alert, now: DateTime<Utc>) -> Result<(u64, bool), StoreError> {
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
        let severity = policy.classify(&alert.labels);
        let is_default = playbook.is_none();
        let gkey = group_key(&name, &group);
        if let Some(&n) = self.groups.get(&gkey) {
            self.raise_severity(n, severity, alert, now)?;
            return Ok((n, false));
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
            alert_count: 0,
            alerts_firing: 0,
            runs: Vec::new(),
            events: 0,
        };
        self.pending.push(Write::LastIncident(n));
        self.pending.push(Write::Open(OpenEntry::of(&incident)));
        self.records.insert(n, incident);
        self.changed_records.insert(n);
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

    /// Incident `n`'s record, to change: read once per commit, written by
    /// the next `take_writes`. `None` when there is no such incident.
    fn record(&mut self, n: u64) -> Result<Option<&mut Incident>, StoreError> {
        if !self.has_record(n)? {
            return Ok(None);
        }
        self.changed_records.insert(n);
        Ok(self.records.get_mut(&n))
    }

    /// Whether incident `n` exists, reading its record once per commit
    /// (not written back unless `record` changes it).
    fn has_record(&mut self, n: u64) -> Result<bool, StoreError> {
        if !self.records.contains_key(&n) {
            match self.store.incident_record(n)? {
                Some(inc) => self.records.insert(n, inc),
                None => return Ok(false),
            };
        }
        Ok(true)
    }

    /// One of incident `n`'s alerts, to change, like `record`.
    fn alert(&mut self, n: u64, index: u32) -> Result<Option<&mut IncidentAlert>, StoreError> {
        if !self.alerts.contains_key(&(n, index)) {
            match self.store.incident_alert(n, index)? {
                Some(a) => self.alerts.insert((n, index), a),
                None => return Ok(None),
            };
        }
        self.changed_alerts.insert((n, index));
        Ok(self.alerts.get_mut(&(n, index)))
    }

    fn raise_severity(
        &mut self,
        n: u64,
        severity: Severity,
        alert: &Alert,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(inc) = self.record(n)? else {
            return Ok(());
        };
        if severity < inc.severity {
            let from = inc.severity;
            inc.severity = severity;
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
    fn add_alert(&mut self, n: u64, alert: &Alert, now: DateTime<Utc>) -> Result<Episode, StoreError> {
        let Some(inc) = self.record(n)? else {
            return Err(StoreError::Missing(format!(
                "incident {n}, which alerts were routed to"
            )));
        };
        let index = inc.alert_count;
        inc.alert_count += 1;
        inc.alerts_firing += 1;
        self.changed_alerts.insert((n, index));
        self.alerts.insert(
            (n, index),
            IncidentAlert {
                fingerprint: alert.fingerprint.clone(),
                status: AlertStatus::Firing,
                labels: alert.labels.clone(),
                annotations: alert.annotations.clone(),
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
        self.episodes
            .insert((alert.fingerprint.clone(), alert.starts_at), episode);
        self.pending.push(Write::Episode {
            fingerprint: alert.fingerprint.clone(),
            starts_at: alert.starts_at,
            episode,
        });
    }

    fn count_repeat(&mut self, e: Episode) -> Result<(), StoreError> {
        // Repeats of alerts of resolved incidents only show in metrics.
        if self.open.contains(e.incident) {
            if let Some(a) = self.alert(e.incident, e.alert)? {
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
        let was_firing = match self.alert(n, e.alert)? {
            Some(a) => {
                let was_firing = a.status == AlertStatus::Firing;
                a.status = AlertStatus::Resolved;
                a.ends_at = alert.ends_at;
                was_firing
            }
            None => false,
        };
        let Some(inc) = self.record(n)? else {
            return Ok(());
        };
        if was_firing {
            inc.alerts_firing = inc.alerts_firing.saturating_sub(1);
        }
        let all_resolved = inc.alerts_firing == 0;
        // Also on an incident resolved by hand before its alerts did.
        self.event(n, now, resolved_event(alert, now).what)?;
        if all_resolved && self.open.contains(n) {
            self.close(n, now, "alerts".to_string())?;
        }
        Ok(())
    }

    /// Resolves an open incident: status, index of open incidents, group.
    /// Returns the incident record as resolved, or `None` when `n` is not
    /// open.
    fn close(&mut self, n: u64, now: DateTime<Utc>, by: String) -> Result<Option<Incident>, StoreError> {
        if !self.open.remove(n) {
            return Ok(None);
        }
        let Some(inc) = self.record(n)? else {
            return Ok(None);
        };
        let from = inc.status;
        inc.status = Status::Resolved;
        inc.resolved_at = Some(now);
        let gkey = group_key(&inc.playbook, &inc.group);
        self.groups.remove(&gkey);
        self.pending.push(Write::Closed(n));
        self.event(
            n,
            now,
            EventKind::StatusChanged {
                from,
                to: Status::Resolved,
                by,
            },
        )?;
        let closed = self.records.get(&n).cloned();
        self.closed.extend(closed.clone());
        Ok(closed)
    }

    /// Appends an event to incident `n`'s timeline, open or resolved.
    /// Returns false when there is no such incident.
    fn event(&mut self, n: u64, at: DateTime<Utc>, what: EventKind) -> Result<bool, StoreError> {
        let Some(inc) = self.record(n)? else {
            return Ok(false);
        };
        let seq = inc.events;
        inc.events += 1;
        self.pending.push(Write::Event {
            incident: n,
            seq,
            event: Event { at, what },
        });
        Ok(true)
    }

    /// Resolves an incident by hand.
    pub fn resolve_by_hand(&mut self, n: u64, by: &str, now: DateTime<Utc>) -> Result<Incident, RequestError> {
        if let Some(inc) = self.close(n, now, by.to_string())? {
            return Ok(inc);
        }
        if self.has_record(n)? {
            Err(RequestError::Conflict(format!("{} is already resolved", format_id(n))))
        } else {
            Err(RequestError::NotFound(format_id(n)))
        }
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
        if self.event(n, now, what)? {
            Ok(())
        } else {
            Err(RequestError::NotFound(format_id(n)))
        }
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
                if !self.has_record(n)? {
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
            let inc = self.record(n)?.ok_or_else(|| RequestError::NotFound(format_id(n)))?;
            if is_new && !inc.runs.contains(&id) {
                inc.runs.push(id.clone());
            }
            let mitigated = mitigates && inc.status == Status::Open;
            if mitigated {
                inc.status = Status::Mitigated;
                inc.mitigated_at = Some(now);
            }
            self.event(n, now, what)?;
            if mitigated {
                self.event(
                    n,
                    now,
                    EventKind::StatusChanged {
                        from: Status::Open,
                        to: Status::Mitigated,
                        by: id.clone(),
                    },
                )?;
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

/// A playbook's name and the values of its group labels, as one key.
fn group_key(playbook: &str, group: &BTreeMap<String, String>) -> String {
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
        let store = reopen(dir.path());
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

    /// Opens the store again once the one dropped lets go of its lock
    /// (sled's flusher thread lets go a little after the drop).
    fn reopen(dir: &std::path::Path) -> Arc<dyn Store> {
        for _ in 0..100 {
            if let Ok(store) = SledStore::open(dir) {
                return Arc::new(store);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Arc::new(SledStore::open(dir).unwrap())
    }

    fn commit(intake: &mut Intake, store: &Arc<dyn Store>) {
        store.commit(vec![intake.take_writes()]).unwrap();
        intake.committed();
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
    fn an_incident_of_many_alerts_resolves_with_its_last_alert_also_across_a_restart() {
        let (dir, store, mut intake) = setup();
        let labels = [("alertname", "ServiceDown"), ("namespace", "web")];
        let fp = |i: usize| format!("fp{i}");
        for i in 0..300 {
            intake
                .apply(&[alert(&fp(i), AlertStatus::Firing, T0, &labels)], Utc::now())
                .unwrap();
            commit(&mut intake, &store);
        }
        let resolve = |i: usize| {
            let mut a = alert(&fp(i), AlertStatus::Resolved, T0, &labels);
            a.ends_at = Some(Utc::now());
            a
        };
        let all: Vec<Alert> = (0..299).map(resolve).collect();
        intake.apply(&all[..150], Utc::now()).unwrap();
        commit(&mut intake, &store);
        drop(intake);
        drop(store);
        let store = reopen(dir.path());
        let mut intake = Intake::new(store.clone(), vec![]).unwrap();
        intake.apply(&all[150..], Utc::now()).unwrap();
        commit(&mut intake, &store);
        let inc = store.incident(1).unwrap().unwrap();
        assert_eq!(
            (inc.status, inc.alerts.len(), inc.alerts_firing),
            (Status::Open, 300, 1)
        );
        assert_eq!(inc.alerts[299].fingerprint, "fp299", "alerts keep their order");
        assert_eq!(
            intake.apply(&[resolve(299)], Utc::now()).unwrap().outcomes,
            [AlertOutcome::Resolved]
        );
        commit(&mut intake, &store);
        let inc = store.incident(1).unwrap().unwrap();
        assert_eq!(inc.status, Status::Resolved);
        assert!(inc.alerts.iter().all(|a| a.status == AlertStatus::Resolved));
        assert_eq!(intake.open_counts(), [0; 4]);
        assert_eq!(inc.events as usize, store.timeline(1).unwrap().len());
    }

    #[test]
    fn writes_taken_in_several_chunks_of_one_commit_build_on_each_other() {
        // The writer takes writes in chunks as a commit grows and applies
        // them all at its end: a later request in the same commit must see
        // what the earlier ones did to the same incident.
        let (_d, store, mut intake) = setup();
        let labels = [("alertname", "ServiceDown"), ("namespace", "web")];
        let mut chunks = Vec::new();
        for i in 0..3 {
            intake
                .apply(
                    &[alert(&format!("fp{i}"), AlertStatus::Firing, T0, &labels)],
                    Utc::now(),
                )
                .unwrap();
            chunks.push(intake.take_writes());
        }
        let mut resolved = alert("fp0", AlertStatus::Resolved, T0, &labels);
        resolved.ends_at = Some(Utc::now());
        intake.apply(&[resolved], Utc::now()).unwrap();
        chunks.push(intake.take_writes());
        store.commit(chunks).unwrap();
        intake.committed();
        let inc = store.incident(1).unwrap().unwrap();
        let fingerprints: Vec<&str> = inc.alerts.iter().map(|a| a.fingerprint.as_str()).collect();
        assert_eq!(fingerprints, ["fp0", "fp1", "fp2"]);
        assert_eq!((inc.alerts_firing, inc.alerts[0].status), (2, AlertStatus::Resolved));
        let timeline = store.timeline(1).unwrap();
        assert_eq!(inc.events as usize, timeline.len());
        let fired = timeline
            .iter()
            .filter(|e| matches!(e.what, EventKind::AlertFired { .. }))
            .count();
        assert_eq!(fired, 3, "no event overwrote another: {timeline:?}");
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
        let store = reopen(dir.path());
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
