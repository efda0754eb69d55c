//! Journaling runs: each transition of a run written with the event it
//! puts on its incident's timeline; new runs get the next `RUN-n`, and a
//! manual run's idempotency key maps to the first run that used it.

use chrono::{DateTime, Utc};

use super::{Ledger, RequestError};
use crate::incident::{format_id, EventKind, Status};
use crate::run::{format_run_id, Run, RunStatus};
use crate::store::Write;

/// A journaled run: its id, and whether it was an earlier run with the
/// same idempotency key (nothing written then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journaled {
    pub id: String,
    pub duplicate: bool,
}

impl Ledger {
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
                if !self.overlay.has_record(self.store.as_ref(), n)? {
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
            let inc = self
                .overlay
                .record(self.store.as_ref(), n)?
                .ok_or_else(|| RequestError::NotFound(format_id(n)))?;
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
