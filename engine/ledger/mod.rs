//! The ledger: the one place incidents change. It turns webhook alerts into
//! incidents (`alerts.rs`), journals runs (`runs.rs`), applies what people
//! change (`people.rs`: ack, assign, severity, notes, resolve, reopen) and
//! keeps the audit trail (`audit.rs`), each as store writes that the writer commits. It holds the
//! routing and dedup index of open incidents in memory; records are read
//! through the overlay (`overlay.rs`) so memory does not grow with the
//! alerts an incident gathers.
//!
//! Routing: the first alert playbook (in file-name order) whose matchers
//! pass takes the alert; an alert no playbook takes goes to the built-in
//! `default` playbook (grouped by `alertname`, severity from the `severity`
//! label), so nothing is dropped.
//!
//! Only one thread changes this state (see `writer`), so there are no races
//! between two webhooks about the same alert.

mod alerts;
mod audit;
mod open;
mod overlay;
mod people;
mod runs;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use alerts::{AlertOutcome, Applied};
pub use people::{Assignment, Change, Changed, Note};
pub use runs::Journaled;

use crate::ids::IncidentId;
use crate::incident::{Event, EventKind, Incident};
use crate::metrics::Milestone;
use crate::playbook::{Playbook, SeverityPolicy};
use crate::severity::Severity;
use crate::store::{Store, StoreError, Write};
use open::OpenSet;
use overlay::Overlay;

/// Why a person's request about an incident was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No incident has this id.
    #[error("no incident {0}")]
    NotFound(IncidentId),
    /// The incident is already in the state asked for.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another replica took the run over: this one no longer writes for it.
    #[error("{0} was taken over by another replica (its lease here lapsed); this replica no longer writes for it")]
    LeaseLost(crate::ids::RunId),
}

/// What the ledger keeps in memory.
pub struct Ledger {
    store: Arc<dyn Store>,
    /// Alert-triggered playbooks, in routing order.
    playbooks: Vec<Playbook>,
    /// Severity for alerts no playbook takes.
    default: SeverityPolicy,
    /// For alerts without a `severity` label that no rule classifies
    /// (`intake.default_severity`).
    default_severity: Severity,
    /// Open (not resolved) incidents.
    open: OpenSet,
    /// Playbook and group (see `alerts::group_key`) → open incident number.
    groups: HashMap<String, IncidentId>,
    last_incident: u64,
    last_run: u64,
    /// Idempotency keys handed out since start (the store has the rest).
    run_keys: HashMap<String, crate::ids::RunId>,
    /// Incidents resolved since the last `take_closed`.
    closed: Vec<Incident>,
    /// The pauses as this commit left them (until it is on disk).
    automation: Option<crate::automation::Automation>,
    /// Records, alerts and episodes of the commit in progress.
    overlay: Overlay,
    /// Writes made since the last `take_writes`, besides the overlay's.
    pending: Vec<Write>,
    /// Incidents changed while resolved, or reopened, since the last
    /// `take_changed`: their postmortem files are written again.
    changed: BTreeSet<IncidentId>,
    /// Incidents that reached a milestone since the last `take_milestones`,
    /// with how long after their first alert: for the metrics.
    milestones: Vec<(Milestone, Severity, f64)>,
}

impl Ledger {
    /// Rebuilds the state from the store.
    pub fn new(store: Arc<dyn Store>, playbooks: Vec<Playbook>) -> Result<Self, StoreError> {
        let playbooks = playbooks
            .into_iter()
            .filter(|p| matches!(p.trigger, crate::playbook::Trigger::Alerts(_)))
            .collect();
        let mut ledger = Ledger {
            store,
            playbooks,
            default: SeverityPolicy::from_label(),
            default_severity: Severity::P3,
            open: OpenSet::default(),
            groups: HashMap::new(),
            last_incident: 0,
            last_run: 0,
            run_keys: HashMap::new(),
            closed: Vec::new(),
            automation: None,
            overlay: Overlay::default(),
            pending: Vec::new(),
            changed: BTreeSet::new(),
            milestones: Vec::new(),
        };
        ledger.reload()?;
        Ok(ledger)
    }

    /// The severity of alerts with no `severity` label that no rule classifies.
    pub fn with_default_severity(mut self, severity: Severity) -> Self {
        self.default_severity = severity;
        self
    }

    /// Routes by these playbooks from now on; open incidents keep theirs.
    pub fn set_playbooks(&mut self, playbooks: Vec<Playbook>) {
        self.playbooks = playbooks
            .into_iter()
            .filter(|p| matches!(p.trigger, crate::playbook::Trigger::Alerts(_)))
            .collect();
    }

    /// Forgets everything not committed and reads the state again (after a
    /// failed commit, so memory never runs ahead of the disk).
    pub fn reload(&mut self) -> Result<(), StoreError> {
        self.pending.clear();
        self.overlay.clear();
        self.automation = None;
        self.closed.clear();
        self.changed.clear();
        self.milestones.clear();
        self.open.clear();
        self.groups.clear();
        self.run_keys.clear();
        self.last_incident = self.store.last_incident()?;
        self.last_run = self.store.last_run()?;
        let (groups, open) = (&mut self.groups, &mut self.open);
        self.store.each_open(&mut |entry| {
            groups.insert(alerts::group_key(&entry.playbook, &entry.group), entry.incident);
            open.insert(entry.incident, entry.severity);
        })?;
        Ok(())
    }

    /// The writes made since the last call; the caller commits them and
    /// then calls `committed`.
    pub fn take_writes(&mut self) -> Vec<Write> {
        let mut writes = std::mem::take(&mut self.pending);
        self.overlay.take_writes(&mut writes);
        writes
    }

    /// How many writes `take_writes` would return now.
    pub fn writes_waiting(&self) -> usize {
        self.pending.len() + self.overlay.writes_waiting()
    }

    /// The writes taken are on disk: records are read from the store from now on.
    pub fn committed(&mut self) {
        self.overlay.committed();
        self.automation = None;
    }

    /// Reads ahead the stored episodes of these alerts (a commit's), so
    /// the store answers once rather than once per alert.
    pub fn prefetch_episodes(&mut self, alerts: &[&crate::alert::Alert]) -> Result<(), StoreError> {
        let mut keys: Vec<_> = alerts.iter().map(|a| (a.fingerprint.clone(), a.starts_at)).collect();
        keys.sort();
        keys.dedup();
        self.overlay.prefetch(self.store.as_ref(), keys)
    }

    /// Incidents resolved since the last call (once their writes are committed).
    pub fn take_closed(&mut self) -> Vec<Incident> {
        std::mem::take(&mut self.closed)
    }

    /// Incidents changed while resolved (or reopened) since the last call.
    pub fn take_changed(&mut self) -> Vec<IncidentId> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// Milestones reached since the last call (once their writes are committed).
    pub fn take_milestones(&mut self) -> Vec<(Milestone, Severity, f64)> {
        std::mem::take(&mut self.milestones)
    }

    /// Notes that `inc` reached `milestone` at `now`.
    fn reached(&mut self, milestone: Milestone, severity: Severity, started: DateTime<Utc>, now: DateTime<Utc>) {
        let secs = (now - started).num_milliseconds() as f64 / 1000.0;
        self.milestones.push((milestone, severity, secs));
    }

    /// How many incidents are open, by severity (`Severity as usize`).
    pub fn open_counts(&self) -> [i64; 4] {
        self.open.counts
    }

    /// Appends an event to incident `n`'s timeline, open or resolved.
    /// Returns false when there is no such incident.
    pub(super) fn event(&mut self, n: IncidentId, at: DateTime<Utc>, what: EventKind) -> Result<bool, StoreError> {
        let Some(inc) = self.overlay.record(self.store.as_ref(), n)? else {
            return Ok(false);
        };
        let seq = inc.events;
        inc.events += 1;
        if !self.open.contains(n) {
            self.changed.insert(n);
        }
        self.pending.push(Write::Event {
            incident: n,
            seq,
            event: Event { at, what },
        });
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
