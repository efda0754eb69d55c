//! Resolving an incident by hand.

use chrono::{DateTime, Utc};

use super::{Ledger, RequestError};
use crate::ids::IncidentId;
use crate::incident::Incident;

impl Ledger {
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
