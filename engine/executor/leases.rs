//! Leases on a store replicas share (PostgreSQL): every third of a lease
//! this replica renews its runs' leases, stops the runs it no longer holds
//! (they were taken over while it was paused or cut off; their journal
//! writes would be refused anyway), and takes over the runs whose holder
//! went silent, settling each as after a crash (`recover.rs`). It also
//! hears what people decided on other replicas (approvals, cancels,
//! pauses): woken by LISTEN/NOTIFY, and looking every second regardless.

use std::collections::HashSet;

use super::{ExecError, Executor};
use crate::ids::RunId;
use crate::incident::EventKind;
use crate::run::Run;

/// How often a replica looks for what others stored for it, besides the
/// wake-ups PostgreSQL's LISTEN/NOTIFY brings.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a run lost here stops.
pub(super) const LOST: &str = "another replica took the run over: this replica's lease on it lapsed";

impl Executor {
    /// Keeps this replica's leases and hears what other replicas decided,
    /// for as long as the engine runs; returns at once on a store no other
    /// process shares.
    pub async fn keep_leases(self) {
        let Some(replica) = self.shared.store.replica().cloned() else {
            return;
        };
        let wake = self.shared.store.wake_ups().unwrap_or_default();
        let mut tick = tokio::time::interval(replica.lease / 3);
        // A replica that was stopped renews once when it wakes, not once
        // per tick it missed.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        // Renewing has a task of its own, so that settling what was taken
        // over never holds a renewal up.
        let renewer = self.clone();
        let every = replica.lease / 3;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                renewer.renew().await;
            }
        });
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match self.taken_over().await {
                        Ok(runs) if !runs.is_empty() => {
                            if let Err(e) = self.settle_runs(runs, false).await {
                                tracing::error!(error = %e, "settling runs taken over failed");
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "looking for runs to take over failed; trying again"),
                    }
                    // Notices a silent replica journaled but did not post.
                    let taken = self.shared.notices.post_pending().await;
                    if taken > 0 {
                        tracing::warn!(notices = taken, "posting notices another replica journaled but did not post");
                    }
                }
                _ = wake.notified() => self.catch_up().await,
                _ = poll.tick() => self.catch_up().await,
            }
        }
    }

    /// What other replicas stored for this one to act on: the pauses in
    /// force, decisions on the approvals waiting here, cancels of the runs
    /// going on here.
    async fn catch_up(&self) {
        if let Err(e) = self.catch_up_pauses().await {
            tracing::warn!(error = %e, "reading the pauses other replicas set failed; trying again");
        }
        let waiting: Vec<RunId> = self.state().approvals.keys().copied().collect();
        match self.shared.store.decisions(&waiting) {
            Ok(decided) => {
                for d in decided {
                    // Only to the step it was taken for: a runbook may ask
                    // twice, and each ask has its own decision.
                    self.deliver(d.run, Some(&d.step), d.approved, d.by);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading decisions failed; trying again"),
        }
        let here: Vec<RunId> = self.state().cancels.keys().copied().collect();
        match self.shared.store.cancels(&here) {
            Ok(asked) => {
                let state = self.state();
                for (run, why) in asked {
                    if let Some(signal) = state.cancels.get(&run).filter(|s| s.borrow().is_none()) {
                        tracing::warn!(%run, %why, "cancelled on another replica");
                        signal.send_replace(Some(why));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading cancels failed; trying again"),
        }
    }

    /// Takes the pauses the store holds, as another replica set them.
    async fn catch_up_pauses(&self) -> Result<(), ExecError> {
        // Not while this replica is changing them itself.
        let Ok(_one_at_a_time) = self.shared.pausing.try_lock() else {
            return Ok(());
        };
        let mut stored = self.shared.store.automation()?;
        let mut state = self.state();
        // The pause `execution.paused` adds is this replica's own.
        if stored.paused.is_none() {
            stored.paused = state.automation.paused.clone().filter(|p| p.by == super::CONFIG_PAUSER);
        }
        if state.automation != stored {
            tracing::warn!(paused = ?stored.paused.as_ref().map(|p| &p.by), playbooks = stored.playbooks.len(), "pauses changed on another replica");
            state.automation = stored;
        }
        Ok(())
    }

    /// Renews the leases of the runs going on here; stops those it no
    /// longer holds.
    async fn renew(&self) {
        // Runs registered before the renewal started: each was journaled
        // (and leased) before it, so one missing from the answer is lost.
        let here: Vec<RunId> = self.state().cancels.keys().copied().collect();
        let store = self.shared.store.clone();
        let asked = here.clone();
        let renewed = tokio::task::spawn_blocking(move || store.renew_leases(&asked))
            .await
            .unwrap_or_else(|e| Err(crate::store::StoreError::Postgres(e.to_string())));
        let held: HashSet<RunId> = match renewed {
            Ok(held) => held.into_iter().collect(),
            Err(e) => {
                // The leases run out if this goes on; the journal writes of
                // this replica's runs are then refused, and another replica
                // takes them over.
                tracing::warn!(error = %e, "renewing leases failed; trying again");
                return;
            }
        };
        let state = self.state();
        for run in here.into_iter().filter(|r| !held.contains(r)) {
            if let Some(signal) = state.cancels.get(&run) {
                tracing::warn!(%run, "{LOST}; stopping it here without writing");
                signal.send_replace(Some(LOST.to_string()));
            }
        }
    }

    /// Takes over the runs whose lease lapsed, each with an event on its
    /// incident's timeline saying from whom and after how long.
    pub(super) async fn taken_over(&self) -> Result<Vec<Run>, ExecError> {
        // Not the runs whose task here has not ended yet (lost, winding
        // down): taking them back would run them twice in this process.
        let here: Vec<RunId> = self.state().cancels.keys().copied().collect();
        let taken = self.shared.store.take_over(&here)?;
        let mut runs = Vec::with_capacity(taken.len());
        for t in taken {
            let by = t.run.lease.as_ref().map(|l| l.owner.clone()).unwrap_or_default();
            let silent_secs = (t.silent.as_secs_f64() * 10.0).round() / 10.0;
            tracing::warn!(run = %t.run.id, from = %t.from, %by, silent_secs, "took over a run whose replica went silent");
            let event = EventKind::RunTakenOver {
                run: t.run.id,
                by,
                from: t.from,
                silent_secs,
            };
            if let Err(e) = self.shared.writer.journal(&t.run, Some(event)).await {
                tracing::error!(run = %t.run.id, error = %e, "a run taken over could not be journaled");
                continue;
            }
            runs.push(t.run);
        }
        Ok(runs)
    }
}
