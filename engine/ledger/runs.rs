//! Journaling runs: each transition of a run written with the event it
//! puts on its incident's timeline. A new run (a draft) gets the next
//! `RUN-n` and its `run_started` (or `run_not_started`) event here, unless
//! its idempotency key was used before: then nothing is written and the
//! earlier run's id comes back.

use chrono::{DateTime, Utc};

use super::{Ledger, RequestError};
use crate::ids::RunId;
use crate::incident::{EventKind, Status};
use crate::run::{Draft, Lease, Run, RunStatus};
use crate::store::Write;

/// A journaled run: its id, and whether it was an earlier run with the
/// same idempotency key (nothing written then); on a store replicas
/// share, the lease this replica holds it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journaled {
    pub id: RunId,
    pub duplicate: bool,
    pub lease: Option<Lease>,
}

impl Journaled {
    /// The draft as the run journaled: its id and lease.
    pub fn run(&self, draft: Draft) -> Run {
        let mut run = draft.with_id(self.id);
        run.lease = self.lease.clone();
        run
    }
}

impl Ledger {
    /// Journals a new run: its id, its record, and on its incident the
    /// event saying it started or why it did not.
    pub fn journal_new(&mut self, draft: Draft, now: DateTime<Utc>) -> Result<Journaled, RequestError> {
        if let Some(key) = &draft.idempotency_key {
            let earlier = match self.run_keys.get(key) {
                Some(id) => Some(*id),
                None => self.store.run_for_key(key)?,
            };
            if let Some(id) = earlier {
                return Ok(Journaled {
                    id,
                    duplicate: true,
                    lease: None,
                });
            }
        }
        if let Some(incident) = draft.incident {
            if !self.overlay.has_record(self.store.as_ref(), incident)? {
                return Err(RequestError::NotFound(incident));
            }
        }
        self.last_run += 1;
        let id = RunId::new(self.last_run);
        self.pending.push(Write::LastRun(self.last_run));
        if let Some(key) = &draft.idempotency_key {
            self.run_keys.insert(key.clone(), id);
            self.pending.push(Write::IdempotencyKey {
                key: key.clone(),
                run: id,
            });
        }
        let mut run = draft.with_id(id);
        // The replica that journals a run holds it first.
        run.lease = self.store.replica().map(|r| Lease {
            owner: r.name.clone(),
            epoch: 1,
        });
        let lease = run.lease.clone();
        let event = match (run.status, &run.reason) {
            (RunStatus::Refused | RunStatus::Paused | RunStatus::Skipped, reason) => EventKind::RunNotStarted {
                run: id,
                runbook: run.runbook.clone(),
                status: run.status,
                reason: reason.clone().unwrap_or_default(),
            },
            _ => EventKind::RunStarted {
                run: id,
                runbook: run.runbook.clone(),
                dry_run: run.dry_run,
                by: run.by.clone(),
            },
        };
        if let Some(incident) = run.incident {
            if let Some(inc) = self.overlay.record(self.store.as_ref(), incident)? {
                inc.runs.push(id);
            }
        }
        self.journal_run(run, Some(event), now)?;
        Ok(Journaled {
            id,
            duplicate: false,
            lease,
        })
    }

    /// Journals a run's state and, when it acts for an incident, an event
    /// on that incident's timeline. A run that succeeded for real marks its
    /// incident mitigated.
    pub fn journal_run(&mut self, run: Run, event: Option<EventKind>, now: DateTime<Utc>) -> Result<(), RequestError> {
        let id = run.id;
        let incident = run.incident;
        let mitigates = run.status == RunStatus::Succeeded && !run.dry_run && run.mitigates;
        self.pending.push(Write::Run(run));
        if let (Some(n), Some(what)) = (incident, event) {
            let inc = self
                .overlay
                .record(self.store.as_ref(), n)?
                .ok_or(RequestError::NotFound(n))?;
            let mitigated = mitigates && inc.status == Status::Open;
            if mitigated {
                inc.status = Status::Mitigated;
                inc.mitigated_at = Some(now);
                let (severity, start) = (inc.severity, inc.start());
                self.reached(crate::metrics::Milestone::Mitigated, severity, start, now);
            }
            self.event(n, now, what)?;
            if mitigated {
                self.event(
                    n,
                    now,
                    EventKind::StatusChanged {
                        from: Status::Open,
                        to: Status::Mitigated,
                        by: id.to_string(),
                        reason: None,
                    },
                )?;
            }
        }
        Ok(())
    }
}
