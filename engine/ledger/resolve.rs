//! Resolving an incident by hand.

use chrono::{DateTime, Utc};

use super::{Ledger, RequestError};
use crate::ids::IncidentId;
use crate::incident::Incident;

/// Who a person names on an incident (`POST …/assign`).
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    pub commander: Option<String>,
    /// Replaces the responders when set.
    pub responders: Option<Vec<String>>,
    /// Added to the responders.
    pub add: Vec<String>,
}

impl Ledger {
    /// A person takes the incident on. The first ack counts: a later one
    /// changes nothing and answers the incident as it is (naming the first).
    /// The flag says whether this ack was the first, so exactly one is audited.
    pub fn acknowledge(
        &mut self,
        n: IncidentId,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(Incident, bool), RequestError> {
        let Some(inc) = self.overlay.record(self.store.as_ref(), n)? else {
            return Err(RequestError::NotFound(n));
        };
        if inc.acknowledged_at.is_some() {
            return Ok((inc.clone(), false));
        }
        inc.acknowledged_at = Some(now);
        inc.acknowledged_by = Some(by.to_string());
        let acked = inc.clone();
        self.event(n, now, crate::incident::EventKind::Acknowledged { by: by.to_string() })?;
        Ok((acked, true))
    }

    /// A person names the commander and/or the responders: `responders`
    /// replaces the list, `add` appends the names not on it yet.
    pub fn assign(
        &mut self,
        n: IncidentId,
        change: Assignment,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Incident, RequestError> {
        let Some(inc) = self.overlay.record(self.store.as_ref(), n)? else {
            return Err(RequestError::NotFound(n));
        };
        if let Some(commander) = change.commander {
            inc.commander = Some(commander);
        }
        if let Some(responders) = change.responders {
            inc.responders = Vec::new();
            for name in responders {
                if !inc.responders.contains(&name) {
                    inc.responders.push(name);
                }
            }
        }
        for name in change.add {
            if !inc.responders.contains(&name) {
                inc.responders.push(name);
            }
        }
        let assigned = inc.clone();
        let what = crate::incident::EventKind::Assigned {
            commander: assigned.commander.clone(),
            responders: assigned.responders.clone(),
            by: by.to_string(),
        };
        self.event(n, now, what)?;
        Ok(assigned)
    }

    /// Resolves an incident by hand.
    pub fn resolve_by_hand(&mut self, n: IncidentId, by: &str, now: DateTime<Utc>) -> Result<Incident, RequestError> {
        if let Some(inc) = self.close(n, now, by.to_string())? {
            return Ok(inc);
        }
        if self.overlay.has_record(self.store.as_ref(), n)? {
            Err(RequestError::Conflict(format!("{} is already resolved", n)))
        } else {
            Err(RequestError::NotFound(n))
        }
    }
}
