//! What people change on an incident: acknowledge, assign, severity,
//! notes, resolve and reopen. Each is one `Change` the writer applies; each
//! lands on the timeline with who made it.

use chrono::{DateTime, NaiveDate, Utc};

use super::{alerts::group_key, Ledger, RequestError};
use crate::ids::IncidentId;
use crate::incident::{EventKind, Incident, NoteKind, SeverityChange, Status};
use crate::severity::Severity;
use crate::store::{OpenEntry, Write};

/// One change a person asks for. Values are checked by the caller (the
/// API); the ledger checks what depends on the incident's state.
#[derive(Debug, Clone)]
pub enum Change {
    /// Takes the incident on; the first ack counts.
    Ack,
    Assign(Assignment),
    /// Sets the severity, up or down.
    Severity {
        severity: Severity,
        reason: String,
    },
    Note(Note),
    Resolve {
        reason: Option<String>,
    },
    /// Opens a resolved incident again; its group's later alerts join it.
    Reopen {
        reason: String,
    },
}

impl Change {
    /// The audit trail's name for it.
    pub fn action(&self) -> &'static str {
        match self {
            Change::Ack => "ack",
            Change::Assign(_) => "assign",
            Change::Severity { .. } => "severity",
            Change::Note(_) => "note",
            Change::Resolve { .. } => "resolve",
            Change::Reopen { .. } => "reopen",
        }
    }
}

/// Who a person names on an incident (`POST …/assign`).
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    pub commander: Option<String>,
    /// Replaces the responders when set.
    pub responders: Option<Vec<String>>,
    /// Added to the responders.
    pub add: Vec<String>,
}

/// A note; `owner` and `due` belong to action items.
#[derive(Debug, Clone)]
pub struct Note {
    pub kind: NoteKind,
    pub text: String,
    pub owner: Option<String>,
    pub due: Option<NaiveDate>,
}

/// What a change did: the incident as it is now, and whether anything
/// changed (a second ack changes nothing, and is not audited).
#[derive(Debug, Clone)]
pub struct Changed {
    /// Boxed: the writer keeps many answers waiting for their flush.
    pub incident: Box<Incident>,
    pub took_effect: bool,
}

impl Ledger {
    /// Applies a person's change to incident `n`.
    pub fn change(
        &mut self,
        n: IncidentId,
        change: Change,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Changed, RequestError> {
        let took_effect = match change {
            Change::Ack => self.acknowledge(n, by, now)?,
            Change::Assign(a) => self.assign(n, a, by, now)?,
            Change::Severity { severity, reason } => self.set_severity(n, severity, reason, by, now)?,
            Change::Note(note) => self.add_note(n, note, by, now)?,
            Change::Resolve { reason } => self.resolve_by_hand(n, reason, by, now)?,
            Change::Reopen { reason } => self.reopen(n, reason, by, now)?,
        };
        let incident = Box::new(self.record(n)?.clone());
        Ok(Changed { incident, took_effect })
    }

    fn record(&mut self, n: IncidentId) -> Result<&mut Incident, RequestError> {
        self.overlay
            .record(self.store.as_ref(), n)?
            .ok_or(RequestError::NotFound(n))
    }

    fn acknowledge(&mut self, n: IncidentId, by: &str, now: DateTime<Utc>) -> Result<bool, RequestError> {
        let inc = self.record(n)?;
        if inc.acknowledged_at.is_some() {
            return Ok(false);
        }
        inc.acknowledged_at = Some(now);
        inc.acknowledged_by = Some(by.to_string());
        let (severity, start) = (inc.severity, inc.start());
        self.reached(crate::metrics::Milestone::Acknowledged, severity, start, now);
        self.event(n, now, EventKind::Acknowledged { by: by.to_string() })?;
        Ok(true)
    }

    /// `responders` replaces the list, `add` appends the names not on it yet.
    fn assign(
        &mut self,
        n: IncidentId,
        change: Assignment,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RequestError> {
        let inc = self.record(n)?;
        if let Some(commander) = change.commander {
            inc.commander = Some(commander);
        }
        if let Some(responders) = change.responders {
            inc.responders.clear();
            add_names(&mut inc.responders, responders);
        }
        add_names(&mut inc.responders, change.add);
        let what = EventKind::Assigned {
            commander: inc.commander.clone(),
            responders: inc.responders.clone(),
            by: by.to_string(),
        };
        self.event(n, now, what)?;
        Ok(true)
    }

    /// A person may raise or lower (alerts only raise, in `alerts.rs`).
    fn set_severity(
        &mut self,
        n: IncidentId,
        to: Severity,
        reason: String,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RequestError> {
        let inc = self.record(n)?;
        let from = inc.severity;
        if from == to {
            return Err(RequestError::Conflict(format!("{n} is already {to}")));
        }
        inc.severity = to;
        inc.severity_history.push(SeverityChange {
            at: now,
            from: Some(from),
            to,
            by: by.to_string(),
            reason: Some(reason.clone()),
        });
        if inc.is_open() {
            let entry = OpenEntry::of(inc);
            self.pending.push(Write::Open(entry));
            self.open.insert(n, to);
        }
        let what = EventKind::SeverityChanged {
            from,
            to,
            by: by.to_string(),
            reason,
        };
        self.event(n, now, what)?;
        Ok(true)
    }

    fn add_note(&mut self, n: IncidentId, note: Note, by: &str, now: DateTime<Utc>) -> Result<bool, RequestError> {
        let what = EventKind::Note {
            note: note.kind,
            text: note.text,
            by: by.to_string(),
            owner: note.owner,
            due: note.due,
        };
        if self.event(n, now, what)? {
            Ok(true)
        } else {
            Err(RequestError::NotFound(n))
        }
    }

    fn resolve_by_hand(
        &mut self,
        n: IncidentId,
        reason: Option<String>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, RequestError> {
        if self.close(n, now, by.to_string(), reason)?.is_some() {
            return Ok(true);
        }
        self.record(n)?;
        Err(RequestError::Conflict(format!("{n} is already resolved")))
    }

    /// Back into the open set and its group, so the group's next alerts
    /// join it; refused while another incident of the group is open.
    fn reopen(&mut self, n: IncidentId, reason: String, by: &str, now: DateTime<Utc>) -> Result<bool, RequestError> {
        let inc = self.record(n)?;
        if inc.is_open() {
            return Err(RequestError::Conflict(format!(
                "{n} is open; there is nothing to reopen"
            )));
        }
        let gkey = group_key(&inc.playbook, &inc.group);
        if let Some(other) = self.groups.get(&gkey) {
            return Err(RequestError::Conflict(format!(
                "{other} is open for the same group; add to it instead of reopening {n}"
            )));
        }
        let inc = self.record(n)?;
        inc.status = Status::Open;
        inc.resolved_at = None;
        inc.mitigated_at = None;
        let (entry, severity) = (OpenEntry::of(inc), inc.severity);
        self.pending.push(Write::Open(entry));
        self.open.insert(n, severity);
        self.groups.insert(gkey, n);
        let what = EventKind::StatusChanged {
            from: Status::Resolved,
            to: Status::Open,
            by: by.to_string(),
            reason: Some(reason),
        };
        self.event(n, now, what)?;
        self.changed.insert(n);
        Ok(true)
    }
}

fn add_names(list: &mut Vec<String>, names: Vec<String>) {
    for name in names {
        if !list.contains(&name) {
            list.push(name);
        }
    }
}
