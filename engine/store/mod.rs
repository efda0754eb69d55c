//! Where incidents, timelines and alert episodes are kept. `Store` is the
//! interface; `sled` (embedded, under `data_dir`) is the default backend,
//! PostgreSQL (`store.postgres`) the shared one.
//!
//! Every change goes through `commit`, which applies batches of writes,
//! each all at once, and returns only when they are on disk: the webhook
//! answers 200 after that and never before.

pub mod copy;
mod postgres;
mod sled_store;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use postgres::{PostgresStore, Use};
pub use sled_store::SledStore;

use crate::alert::Status as AlertStatus;
use crate::ids::{IncidentId, RunId};
use crate::incident::{Event, Incident, IncidentAlert};
use crate::run::{Lease, Run};
use crate::severity::Severity;

/// Which incident an alert episode (fingerprint + startsAt) went to, and the
/// last status recorded for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    #[serde(with = "crate::ids::as_number")]
    pub incident: IncidentId,
    /// Its index among the incident's alerts.
    #[serde(default)]
    pub alert: u32,
    pub status: AlertStatus,
}

/// One write; `commit` applies a list of them atomically.
#[derive(Debug, Clone)]
pub enum Write {
    /// The incident record; its `alerts` are not part of it (see `Alert`).
    Incident(Incident),
    /// One of an incident's alerts, by its index.
    Alert {
        incident: IncidentId,
        index: u32,
        alert: IncidentAlert,
    },
    Event {
        incident: IncidentId,
        seq: u32,
        event: Event,
    },
    Episode {
        fingerprint: String,
        starts_at: DateTime<Utc>,
        episode: Episode,
    },
    /// Puts an incident in the index of open incidents, or updates its entry.
    Open(OpenEntry),
    /// Takes an incident out of the index of open incidents.
    Closed(IncidentId),
    /// The highest incident number handed out.
    LastIncident(u64),
    /// A run's whole state; also keeps the index of unfinished runs.
    Run(Run),
    /// The highest run number handed out.
    LastRun(u64),
    /// A manual run's idempotency key → its run id.
    IdempotencyKey { key: String, run: RunId },
    /// One operator action, for the audit trail.
    Audit(Audit),
    /// The pauses in force (replaces the ones before).
    Automation(crate::automation::Automation),
    /// A notice and how far it got (replaces its earlier state).
    Notice(crate::notices::Notice),
    /// When `/readyz` last wrote (it proves the store takes writes).
    Probe(DateTime<Utc>),
    /// A schedule's mark, set as it is (`laojun store copy`; the scheduler
    /// moves marks with `claim_schedule`).
    ScheduleMark { playbook: String, fired_at: DateTime<Utc> },
    /// A web view session, signed in (or renewed).
    Session(Session),
    /// A web view session ended (signed out): its cookie is refused after.
    SessionEnded(String),
}

/// A web view session, kept by the hash of the id its cookie holds (a
/// copy of the store gives no one a session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Hex SHA-256 of the session id.
    pub id_hash: String,
    /// The token's name and role it was signed in with.
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Write {
    /// The kind of record it writes, for `laojun store copy`'s counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Write::Incident(_) => "incidents",
            Write::Alert { .. } => "incident alerts",
            Write::Event { .. } => "timeline events",
            Write::Episode { .. } => "alert episodes",
            Write::Open(_) => "open incidents",
            Write::Closed(_) => "closed incidents",
            Write::LastIncident(_) => "incident counter",
            Write::Run(_) => "runs",
            Write::LastRun(_) => "run counter",
            Write::IdempotencyKey { .. } => "idempotency keys",
            Write::Audit(_) => "audit records",
            Write::Automation(_) => "pauses",
            Write::Notice(_) => "notices",
            Write::Probe(_) => "probes",
            Write::ScheduleMark { .. } => "schedule marks",
            Write::Session(_) | Write::SessionEnded(_) => "web sessions",
        }
    }
}

/// What routing needs of an open incident, kept in the index of open
/// incidents so that a restart rebuilds routing without reading every
/// incident record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenEntry {
    #[serde(with = "crate::ids::as_number")]
    pub incident: IncidentId,
    pub playbook: String,
    pub group: BTreeMap<String, String>,
    pub severity: Severity,
}

impl OpenEntry {
    pub fn of(incident: &Incident) -> OpenEntry {
        OpenEntry {
            incident: incident.id,
            playbook: incident.playbook.clone(),
            group: incident.group.clone(),
            severity: incident.severity,
        }
    }
}

/// Who did what, when: manual runs, approvals, notes, resolves, pause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    pub at: DateTime<Utc>,
    /// The token's name.
    pub by: String,
    /// `run`, `approve`, `deny`, `note`, `resolve`, `pause`, `resume`.
    pub action: String,
    /// What it acted on: a run id, an incident id, or `automation`.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A storage failure. The webhook answers 503 so AlertManager retries.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database itself failed (disk full, I/O error, corruption).
    #[error("store: {0}")]
    Backend(#[from] sled::Error),
    /// PostgreSQL refused, or cannot be reached.
    #[error("store: PostgreSQL: {0}")]
    Postgres(String),
    /// A stored record could not be read back.
    #[error("store: a stored record does not decode: {0}")]
    Decode(#[from] serde_json::Error),
    /// A stored value is not what it must be (e.g. an id that does not parse).
    #[error("store: a stored value is not valid: {0}")]
    Corrupt(String),
    /// A record another one points at is not there.
    #[error("store: no record of {0}")]
    Missing(String),
    /// The store was written by a newer laojun, whose layout this one
    /// cannot read.
    #[error("store: written by a newer laojun (layout {found}; this one reads up to {known}): run that laojun, or set data_dir to another directory")]
    Newer { found: u64, known: u64 },
}

/// What an incident list may be filtered by.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub status: Option<crate::incident::Status>,
    pub severity: Option<crate::severity::Severity>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// This process among the replicas sharing a store: the name its leases
/// carry, and how long a lease lasts without being renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub name: String,
    pub lease: std::time::Duration,
}

/// A run this replica took over after its owner's lease lapsed; `run`
/// carries the new lease.
#[derive(Debug, Clone)]
pub struct TakenOver {
    pub run: Run,
    /// Who held it (empty: nobody, e.g. a run copied from sled).
    pub from: String,
    /// Since that holder last renewed its lease.
    pub silent: std::time::Duration,
}

/// A person's decision on a waiting approval step, as a store replicas
/// share keeps it: the first one stored for a step is the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub run: RunId,
    pub step: String,
    pub approved: bool,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// A commit under the store's cross-process write lock (PostgreSQL shared
/// by replicas): taken by `Store::begin` before the writer decides what to
/// write, released when it applies (or is dropped). `stale` says whether
/// another process committed since this one last did, so the writer first
/// re-reads what it keeps in memory (open incidents, counters).
pub trait Exclusive {
    fn stale(&self) -> bool;
    /// Which of these runs the lease given still holds (same owner and
    /// epoch, not lapsed): only their journal writes may go in this
    /// commit. A store no other process writes holds them all.
    fn held(&self, runs: &[(RunId, Lease)]) -> Result<std::collections::HashSet<RunId>, StoreError> {
        Ok(runs.iter().map(|(id, _)| *id).collect())
    }
    /// As `Store::apply`, and the lock is released.
    fn apply(self: Box<Self>, batches: Vec<Vec<Write>>) -> Result<(), StoreError>;
}

/// A store only this process writes: nothing to lock, never stale.
struct Alone<'a, S: ?Sized>(&'a S);

impl<S: Store + ?Sized> Exclusive for Alone<'_, S> {
    fn stale(&self) -> bool {
        false
    }
    fn apply(self: Box<Self>, batches: Vec<Vec<Write>>) -> Result<(), StoreError> {
        self.0.apply(batches)
    }
}

/// The storage interface.
pub trait Store: Send + Sync + 'static {
    /// Takes the write lock other processes on the same store respect; see
    /// [`Exclusive`]. A store one process owns (sled) has none.
    fn begin(&self) -> Result<Box<dyn Exclusive + '_>, StoreError> {
        Ok(Box::new(Alone(self)))
    }
    /// Applies each batch of writes atomically, in order: reads see them at
    /// once, `flush` makes them durable. Each batch holds whole requests (see
    /// `writer`). On an error, the batches before the failing one may be
    /// kept: every request of the commit is refused all the same, and a
    /// retried alert then finds its episode and changes nothing.
    fn apply(&self, batches: Vec<Vec<Write>>) -> Result<(), StoreError>;
    /// Returns once everything applied before the call is durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// `apply`, then `flush`.
    fn commit(&self, batches: Vec<Vec<Write>>) -> Result<(), StoreError> {
        self.apply(batches)?;
        self.flush()
    }
    /// Writes a marker and flushes it: ok when the store takes writes.
    fn check_writable(&self) -> Result<(), StoreError> {
        self.commit(vec![vec![Write::Probe(Utc::now())]])
    }
    /// Whether a failed write leaves the store failed until it is opened
    /// again (sled after an I/O error), so that only a restart recovers.
    fn stays_failed(&self) -> bool {
        false
    }
    /// This process's part when replicas share the store; `None` when it
    /// is the only one (sled): its runs need no leases.
    fn replica(&self) -> Option<&Replica> {
        None
    }
    /// Renews the leases of these runs (the ones going on here) where this
    /// replica holds them and they have not lapsed; returns those runs. A
    /// run missing from the answer is no longer this replica's to write.
    /// A run this replica holds but no longer runs is not renewed, so it
    /// lapses and is taken over.
    fn renew_leases(&self, _runs: &[RunId]) -> Result<Vec<RunId>, StoreError> {
        Ok(Vec::new())
    }
    /// Takes every unfinished run whose lease lapsed, but `except` (runs
    /// whose task here has not ended yet): its epoch goes up by one, under
    /// the write lock, so the old holder's writes are refused from then on.
    /// Returns them for this replica to settle; none when another replica
    /// is taking over at the same moment.
    fn take_over(&self, _except: &[RunId]) -> Result<Vec<TakenOver>, StoreError> {
        Ok(Vec::new())
    }
    /// Woken when another replica stored something this one acts on (a
    /// decision, a cancel, a pause); replicas also look every second, so a
    /// lost wake-up only delays.
    fn wake_ups(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
    /// Stores a decision unless the step has one: `None` when this one is
    /// taken, else the one taken first. Wakes the other replicas.
    fn decide(&self, _decision: &Decided) -> Result<Option<Decided>, StoreError> {
        Ok(None)
    }
    /// The decisions stored for these runs.
    fn decisions(&self, _runs: &[RunId]) -> Result<Vec<Decided>, StoreError> {
        Ok(Vec::new())
    }
    /// Asks the replica holding `run` to cancel it (the first ask counts).
    fn ask_cancel(&self, _run: RunId, _why: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// The cancels asked for these runs, with why.
    fn cancels(&self, _runs: &[RunId]) -> Result<Vec<(RunId, String)>, StoreError> {
        Ok(Vec::new())
    }
    /// Claims a pending notice for this replica to post (or renews its
    /// claim) for a lease; false when another replica holds it, or it is no
    /// longer pending. Only one replica posts a notice at a time.
    fn claim_notice(&self, _id: &str) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Takes these targets (Kubernetes objects, DNS records) for `run`
    /// across replicas, all or none, for a lease (renewed with the run's):
    /// `None` when taken, else one target another run holds, and that run.
    fn lock_targets(&self, _targets: &[String], _run: RunId) -> Result<Option<(String, RunId)>, StoreError> {
        Ok(None)
    }
    /// Gives back what `lock_targets` took for `run`.
    fn unlock_targets(&self, _targets: &[String], _run: RunId) -> Result<(), StoreError> {
        Ok(())
    }
    /// Every record, each as the write that makes it again, to `each`
    /// (`laojun store copy`). Derived indexes (unfinished runs, pending
    /// notices) come with their records; probes are left out.
    fn export(&self, each: &mut dyn FnMut(Write) -> Result<(), StoreError>) -> Result<(), StoreError>;
    /// An incident with its alerts.
    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError>;
    /// An incident's record alone: `alerts` is empty.
    fn incident_record(&self, id: IncidentId) -> Result<Option<Incident>, StoreError>;
    /// One of an incident's alerts, by index.
    fn incident_alert(&self, id: IncidentId, index: u32) -> Result<Option<IncidentAlert>, StoreError>;
    /// Incidents newest first, with their alerts.
    fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError>;
    /// Calls `each` with the index entry of every incident not yet
    /// resolved, oldest first (to rebuild routing on start).
    fn each_open(&self, each: &mut dyn FnMut(OpenEntry)) -> Result<(), StoreError>;
    fn timeline(&self, id: IncidentId) -> Result<Vec<Event>, StoreError>;
    fn episode(&self, fingerprint: &str, starts_at: DateTime<Utc>) -> Result<Option<Episode>, StoreError>;
    /// The episodes of these keys that are stored, at once (a commit's
    /// alerts, before the ledger looks at each).
    fn episodes(
        &self,
        keys: &[(String, DateTime<Utc>)],
    ) -> Result<std::collections::HashMap<(String, DateTime<Utc>), Episode>, StoreError> {
        let mut found = std::collections::HashMap::new();
        for (fingerprint, starts_at) in keys {
            if let Some(e) = self.episode(fingerprint, *starts_at)? {
                found.insert((fingerprint.clone(), *starts_at), e);
            }
        }
        Ok(found)
    }
    fn last_incident(&self) -> Result<u64, StoreError>;
    fn run(&self, id: RunId) -> Result<Option<Run>, StoreError>;
    /// Runs not finished (pending, running, awaiting approval), oldest first.
    fn unfinished_runs(&self) -> Result<Vec<Run>, StoreError>;
    /// Runs newest first, until one created before `since`.
    fn runs_since(&self, since: DateTime<Utc>) -> Result<Vec<Run>, StoreError>;
    fn last_run(&self) -> Result<u64, StoreError>;
    fn run_for_key(&self, key: &str) -> Result<Option<RunId>, StoreError>;
    /// The audit trail, newest first.
    fn audit(&self, limit: usize) -> Result<Vec<Audit>, StoreError>;
    /// The pauses in force; none in a store that never had one.
    fn automation(&self) -> Result<crate::automation::Automation, StoreError>;
    /// A notice by id.
    fn notice(&self, id: &str) -> Result<Option<crate::notices::Notice>, StoreError>;
    /// Notices journaled but not yet posted, oldest first.
    fn pending_notices(&self) -> Result<Vec<crate::notices::Notice>, StoreError>;
    /// A web view session by the hash of its id, if it is signed in (it
    /// may have expired: the caller checks `expires_at`).
    fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError>;
    /// When a scheduled playbook last fired (or was claimed to).
    fn schedule_mark(&self, playbook: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Moves a playbook's mark from `expected` to `new` if nobody moved it
    /// first; durable before it returns. True when this call won.
    fn claim_schedule(
        &self,
        playbook: &str,
        expected: Option<DateTime<Utc>>,
        new: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// A store that hands every call to another, so a wrapper (a fault drill,
/// a test's failing disk) writes only what it changes: `inner`, and the
/// write side it wants to fail.
///
/// ```text
/// struct FullDisk(SledStore);
/// impl Delegate for FullDisk {
///     fn inner(&self) -> &dyn Store { &self.0 }
///     fn apply(&self, _: Vec<Vec<Write>>) -> Result<(), StoreError> { Err(...) }
/// }
/// ```
pub trait Delegate: Send + Sync + 'static {
    fn inner(&self) -> &dyn Store;
    fn apply(&self, batches: Vec<Vec<Write>>) -> Result<(), StoreError> {
        self.inner().apply(batches)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner().flush()
    }
}

impl<T: Delegate> Store for T {
    fn apply(&self, batches: Vec<Vec<Write>>) -> Result<(), StoreError> {
        Delegate::apply(self, batches)
    }
    fn flush(&self) -> Result<(), StoreError> {
        Delegate::flush(self)
    }
    fn replica(&self) -> Option<&Replica> {
        self.inner().replica()
    }
    fn renew_leases(&self, runs: &[RunId]) -> Result<Vec<RunId>, StoreError> {
        self.inner().renew_leases(runs)
    }
    fn take_over(&self, except: &[RunId]) -> Result<Vec<TakenOver>, StoreError> {
        self.inner().take_over(except)
    }
    fn wake_ups(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        self.inner().wake_ups()
    }
    fn decide(&self, decision: &Decided) -> Result<Option<Decided>, StoreError> {
        self.inner().decide(decision)
    }
    fn decisions(&self, runs: &[RunId]) -> Result<Vec<Decided>, StoreError> {
        self.inner().decisions(runs)
    }
    fn ask_cancel(&self, run: RunId, why: &str) -> Result<(), StoreError> {
        self.inner().ask_cancel(run, why)
    }
    fn cancels(&self, runs: &[RunId]) -> Result<Vec<(RunId, String)>, StoreError> {
        self.inner().cancels(runs)
    }
    fn claim_notice(&self, id: &str) -> Result<bool, StoreError> {
        self.inner().claim_notice(id)
    }
    fn lock_targets(&self, targets: &[String], run: RunId) -> Result<Option<(String, RunId)>, StoreError> {
        self.inner().lock_targets(targets, run)
    }
    fn unlock_targets(&self, targets: &[String], run: RunId) -> Result<(), StoreError> {
        self.inner().unlock_targets(targets, run)
    }
    fn export(&self, each: &mut dyn FnMut(Write) -> Result<(), StoreError>) -> Result<(), StoreError> {
        self.inner().export(each)
    }
    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.inner().incident(id)
    }
    fn incident_record(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.inner().incident_record(id)
    }
    fn incident_alert(&self, id: IncidentId, index: u32) -> Result<Option<IncidentAlert>, StoreError> {
        self.inner().incident_alert(id, index)
    }
    fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        self.inner().incidents(filter)
    }
    fn each_open(&self, each: &mut dyn FnMut(OpenEntry)) -> Result<(), StoreError> {
        self.inner().each_open(each)
    }
    fn timeline(&self, id: IncidentId) -> Result<Vec<Event>, StoreError> {
        self.inner().timeline(id)
    }
    fn episode(&self, fingerprint: &str, starts_at: DateTime<Utc>) -> Result<Option<Episode>, StoreError> {
        self.inner().episode(fingerprint, starts_at)
    }
    fn episodes(
        &self,
        keys: &[(String, DateTime<Utc>)],
    ) -> Result<std::collections::HashMap<(String, DateTime<Utc>), Episode>, StoreError> {
        self.inner().episodes(keys)
    }
    fn last_incident(&self) -> Result<u64, StoreError> {
        self.inner().last_incident()
    }
    fn run(&self, id: RunId) -> Result<Option<Run>, StoreError> {
        self.inner().run(id)
    }
    fn unfinished_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.inner().unfinished_runs()
    }
    fn runs_since(&self, since: DateTime<Utc>) -> Result<Vec<Run>, StoreError> {
        self.inner().runs_since(since)
    }
    fn last_run(&self) -> Result<u64, StoreError> {
        self.inner().last_run()
    }
    fn run_for_key(&self, key: &str) -> Result<Option<RunId>, StoreError> {
        self.inner().run_for_key(key)
    }
    fn audit(&self, limit: usize) -> Result<Vec<Audit>, StoreError> {
        self.inner().audit(limit)
    }
    fn automation(&self) -> Result<crate::automation::Automation, StoreError> {
        self.inner().automation()
    }
    fn notice(&self, id: &str) -> Result<Option<crate::notices::Notice>, StoreError> {
        self.inner().notice(id)
    }
    fn pending_notices(&self) -> Result<Vec<crate::notices::Notice>, StoreError> {
        self.inner().pending_notices()
    }
    fn schedule_mark(&self, playbook: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner().schedule_mark(playbook)
    }
    fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        self.inner().session(id_hash)
    }
    fn claim_schedule(
        &self,
        playbook: &str,
        expected: Option<DateTime<Utc>>,
        new: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner().claim_schedule(playbook, expected, new)
    }
}
