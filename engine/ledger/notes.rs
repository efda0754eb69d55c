//! Notes people add to an incident's timeline (root cause, solution,
//! prevention, lesson, note), open or resolved.

use chrono::{DateTime, Utc};

use super::{Ledger, RequestError};
use crate::ids::IncidentId;
use crate::incident::{EventKind, NoteKind};

impl Ledger {
    /// Adds a note to an incident, open or resolved.
    pub fn add_note(
        &mut self,
        n: IncidentId,
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
            Err(RequestError::NotFound(n))
        }
    }
}
