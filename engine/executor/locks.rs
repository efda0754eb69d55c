//! One run per target: two runs never change the same Deployment, Service
//! or DNS record at once. A run holds its targets through a `Held` guard
//! that releases them when dropped, so a step that panics or is cancelled
//! cannot leave a target locked.

use std::time::Duration;

use super::Executor;
use crate::actions::Target;
use crate::ids::RunId;

/// Targets a run holds until this is dropped.
pub struct Held {
    executor: Executor,
    targets: Vec<Target>,
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
        self.executor.shared.unlocked.notify_waiters();
    }
}

impl Executor {
    /// Takes every target for `run_id`, waiting up to `wait` for runs that
    /// hold one; says who held it when giving up.
    pub(super) async fn acquire(&self, targets: Vec<Target>, run_id: RunId, wait: Duration) -> Result<Held, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a release between the look and
            // the wait still wakes us.
            let notified = self.shared.unlocked.notified();
            {
                let mut state = self.state();
                let busy = targets.iter().find_map(|t| {
                    state
                        .locks
                        .get(t)
                        .filter(|holder| **holder != run_id)
                        .map(|h| (t.clone(), *h))
                });
                match busy {
                    None => {
                        for t in &targets {
                            state.locks.insert(t.clone(), run_id);
                        }
                        return Ok(Held {
                            executor: self.clone(),
                            targets,
                        });
                    }
                    Some((target, holder)) if tokio::time::Instant::now() >= deadline => {
                        return Err(format!(
                            "{target} is being changed by {holder}; gave up waiting after {}s",
                            wait.as_secs()
                        ));
                    }
                    Some(_) => {}
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}
