//! One run per target: two runs never change the same Deployment, Service
//! or DNS record at once. A run holds its targets through a `Held` guard
//! that releases them when dropped, so a step that panics or is cancelled
//! cannot leave a target locked. On a store replicas share, the targets are
//! also taken there (`Store::lock_targets`), so a run on another replica
//! waits too; a dead replica's targets lapse with its leases.

use std::time::Duration;

use super::Executor;
use crate::actions::Target;
use crate::ids::RunId;

/// Targets a run holds until this is dropped.
pub struct Held {
    executor: Executor,
    targets: Vec<Target>,
    run: RunId,
    /// Also taken in the store replicas share.
    shared: bool,
}

impl Held {
    /// Gives the targets back, waiting until the store has them back too.
    pub async fn release(mut self) {
        if self.shared && !self.targets.is_empty() {
            self.shared = false;
            let store = self.executor.shared.store.clone();
            let (names, run) = (names(&self.targets), self.run);
            let released = tokio::task::spawn_blocking(move || store.unlock_targets(&names, run)).await;
            if !matches!(released, Ok(Ok(()))) {
                tracing::warn!(%run, "releasing targets in the store failed; they lapse with the lease");
            }
        }
        // Drop gives them back here.
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.targets.is_empty() {
            return;
        }
        {
            let mut state = self.executor.state();
            for t in &self.targets {
                state.locks.remove(t);
            }
        }
        if self.shared {
            let store = self.executor.shared.store.clone();
            let (names, run) = (names(&self.targets), self.run);
            // Off the runtime's threads; a release that fails lapses with
            // the lease.
            tokio::task::spawn_blocking(move || {
                if let Err(e) = store.unlock_targets(&names, run) {
                    tracing::warn!(%run, error = %e, "releasing targets in the store failed; they lapse with the lease");
                }
            });
        }
        self.executor.shared.unlocked.notify_waiters();
    }
}

fn names(targets: &[Target]) -> Vec<String> {
    targets.iter().map(|t| t.0.clone()).collect()
}

/// How often a run waiting for a target another replica holds looks again.
const SHARED_POLL: Duration = Duration::from_millis(500);

impl Executor {
    /// Takes every target for `run_id`, waiting up to `wait` for runs that
    /// hold one; says who held it when giving up.
    pub(super) async fn acquire(
        &self,
        mut targets: Vec<Target>,
        run_id: RunId,
        wait: Duration,
    ) -> Result<Held, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a release between the look and
            // the wait still wakes us.
            let notified = self.shared.unlocked.notified();
            let busy = {
                let mut state = self.state();
                let busy = targets.iter().find_map(|t| {
                    state
                        .locks
                        .get(t)
                        .filter(|holder| **holder != run_id)
                        .map(|h| (t.clone(), *h))
                });
                if busy.is_none() {
                    for t in &targets {
                        state.locks.insert(t.clone(), run_id);
                    }
                }
                busy
            };
            let busy = match busy {
                None => {
                    let held = Held {
                        executor: self.clone(),
                        targets,
                        run: run_id,
                        shared: false,
                    };
                    match self.lock_shared(held).await {
                        Ok(held) => return Ok(held),
                        Err((back, busy)) => {
                            targets = back;
                            busy
                        }
                    }
                }
                Some(busy) => busy,
            };
            let (target, holder) = busy;
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{target} is being changed by {holder}; gave up waiting after {}s",
                    wait.as_secs()
                ));
            }
            // Another replica's release wakes nobody here: look again soon.
            let until = match self.shared.store.replica() {
                Some(_) => deadline.min(tokio::time::Instant::now() + SHARED_POLL),
                None => deadline,
            };
            let _ = tokio::time::timeout_at(until, notified).await;
        }
    }
}

impl Executor {
    /// Takes the targets `held` holds here in the store replicas share as
    /// well; when another replica's run holds one, gives them back here and
    /// says which and whose.
    async fn lock_shared(&self, mut held: Held) -> Result<Held, (Vec<Target>, (Target, RunId))> {
        if self.shared.store.replica().is_none() || held.targets.is_empty() {
            return Ok(held);
        }
        let (store, names, run) = (self.shared.store.clone(), names(&held.targets), held.run);
        let taken = tokio::task::spawn_blocking(move || store.lock_targets(&names, run)).await;
        let busy = match taken {
            Ok(Ok(None)) => {
                held.shared = true;
                return Ok(held);
            }
            Ok(Ok(Some((target, holder)))) => (Target(target), holder),
            // The store cannot say: wait as if another run held it rather
            // than act on a target that may be in use.
            Ok(Err(e)) => {
                tracing::warn!(run = %run, error = %e, "taking targets in the store failed; trying again");
                (held.targets[0].clone(), run)
            }
            Err(_) => (held.targets[0].clone(), run),
        };
        let targets = std::mem::take(&mut held.targets);
        {
            let mut state = self.state();
            for t in &targets {
                state.locks.remove(t);
            }
        }
        self.shared.unlocked.notify_waiters();
        Err((targets, busy))
    }
}
