//! Resolving an incident by hand.

use chrono::{DateTime, Utc};

use super::{Ledger, RequestError};
use crate::ids::IncidentId;
use crate::incident::Incident;

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
