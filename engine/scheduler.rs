//! Cron triggers. Each playbook with `trigger.schedule` fires its runbooks
//! through the executor at the times its cron expression gives, in its
//! time zone. Scheduled runs are runs without an incident (a maintenance
//! record): they show in `GET /api/v1/runs` with `trigger: schedule`.
//!
//! Every firing is claimed in the store first (compare-and-swap of the
//! playbook's last fire time), so two replicas sharing a store never both
//! run it. After a restart, missed firings run once if the playbook says
//! `catch_up: true` and are skipped (and logged) otherwise.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::playbook::{Playbook, Schedule, Trigger};
use crate::store::{Store, StoreError};

/// A boxed future, for the object-safe traits here.
pub type BoxFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where the time comes from: the system clock, or a hand-moved one in tests.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'_>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'_> {
        Box::pin(async move {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
        })
    }
}

/// A clock that moves only when told to (for tests: no real minutes pass).
/// It also tells who sleeps until when, so a test can wait until the
/// scheduler has looked at the time and gone to sleep, instead of hoping a
/// pause was long enough.
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    moved: Notify,
    /// The deadline of every `sleep_until` now waiting.
    sleeping: Mutex<Vec<DateTime<Utc>>>,
    fell_asleep: Notify,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(start),
            moved: Notify::new(),
            sleeping: Mutex::new(Vec::new()),
            fell_asleep: Notify::new(),
        }
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += by;
        self.moved.notify_waiters();
    }

    /// Returns once `count` sleepers wait until exactly `at`.
    pub async fn sleepers(&self, at: DateTime<Utc>, count: usize) {
        loop {
            let fell_asleep = self.fell_asleep.notified();
            let asleep = lock(&self.sleeping).iter().filter(|t| **t == at).count();
            if asleep >= count {
                return;
            }
            fell_asleep.await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Takes a sleeper's deadline off the list when its sleep ends or is dropped.
struct Asleep<'a> {
    clock: &'a ManualClock,
    at: DateTime<Utc>,
}

impl Drop for Asleep<'_> {
    fn drop(&mut self) {
        let mut sleeping = lock(&self.clock.sleeping);
        if let Some(i) = sleeping.iter().position(|t| *t == self.at) {
            sleeping.swap_remove(i);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.now)
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'_> {
        Box::pin(async move {
            let mut asleep = None;
            loop {
                let moved = self.moved.notified();
                if self.now() >= at {
                    return;
                }
                if asleep.is_none() {
                    lock(&self.sleeping).push(at);
                    asleep = Some(Asleep { clock: self, at });
                    self.fell_asleep.notify_waiters();
                }
                moved.await;
            }
        })
    }
}

/// What firing a schedule does (the executor starts the runbooks).
pub trait Fire: Send + Sync + 'static {
    fn fire<'a>(&'a self, playbook: &'a Playbook, due: DateTime<Utc>) -> BoxFuture<'a>;
}

/// The next `count` fire times after `after`.
pub fn next_fires(schedule: &Schedule, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
    schedule
        .cron
        .after(&after.with_timezone(&schedule.timezone))
        .take(count)
        .map(|t| t.with_timezone(&Utc))
        .collect()
}

/// Fire times in `(from, to]`.
fn fires_between(schedule: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    schedule
        .cron
        .after(&from.with_timezone(&schedule.timezone))
        .map(|t| t.with_timezone(&Utc))
        .take_while(|t| *t <= to)
        .take(10_000)
        .collect()
}

pub struct Scheduler {
    playbooks: Vec<Playbook>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    fire: Arc<dyn Fire>,
}

impl Scheduler {
    pub fn new(playbooks: &[Playbook], store: Arc<dyn Store>, clock: Arc<dyn Clock>, fire: Arc<dyn Fire>) -> Self {
        let playbooks = playbooks
            .iter()
            .filter(|p| matches!(p.trigger, Trigger::Schedule(_)))
            .cloned()
            .collect();
        Scheduler {
            playbooks,
            store,
            clock,
            fire,
        }
    }

    fn schedule(p: &Playbook) -> &Schedule {
        match &p.trigger {
            Trigger::Schedule(s) => s,
            Trigger::Alerts(_) => unreachable!("only scheduled playbooks are kept"),
        }
    }

    /// Claims a firing; true when this process won it.
    fn claim(&self, p: &Playbook, last: Option<DateTime<Utc>>, due: DateTime<Utc>) -> Result<bool, StoreError> {
        self.store.claim_schedule(&p.name, last, due)
    }

    /// Settles firings missed while nothing was running: one run if the
    /// playbook catches up, none otherwise. Returns each playbook's mark.
    async fn catch_up(&self) -> Result<Vec<Option<DateTime<Utc>>>, StoreError> {
        let now = self.clock.now();
        let mut marks = Vec::new();
        for p in &self.playbooks {
            let s = Self::schedule(p);
            let last = self.store.schedule_mark(&p.name)?;
            let Some(last) = last else {
                // First start with this playbook: begin from now.
                self.claim(p, None, now)?;
                marks.push(Some(now));
                continue;
            };
            let missed = fires_between(s, last, now);
            let Some(latest) = missed.last().copied() else {
                marks.push(Some(last));
                continue;
            };
            if self.claim(p, Some(last), latest)? {
                if s.catch_up {
                    tracing::warn!(playbook = %p.name, missed = missed.len(), "running a missed scheduled firing once (catch_up: true)");
                    self.fire.fire(p, latest).await;
                } else {
                    tracing::warn!(playbook = %p.name, missed = missed.len(), "skipping missed scheduled firings (catch_up: false)");
                }
            }
            marks.push(Some(latest));
        }
        Ok(marks)
    }

    /// Runs until the process ends.
    pub async fn run(self) {
        if self.playbooks.is_empty() {
            return;
        }
        let mut marks = match self.catch_up().await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "the scheduler cannot read its state; scheduled playbooks will not run");
                return;
            }
        };
        loop {
            let next: Vec<Option<DateTime<Utc>>> = self
                .playbooks
                .iter()
                .zip(&marks)
                .map(|(p, mark)| {
                    next_fires(Self::schedule(p), mark.unwrap_or_else(|| self.clock.now()), 1)
                        .first()
                        .copied()
                })
                .collect();
            let Some(soonest) = next.iter().flatten().min().copied() else {
                return;
            };
            self.clock.sleep_until(soonest).await;
            for (i, p) in self.playbooks.iter().enumerate() {
                let Some(due) = next[i].filter(|d| *d <= self.clock.now()) else {
                    continue;
                };
                match self.claim(p, marks[i], due) {
                    Ok(true) => self.fire.fire(p, due).await,
                    Ok(false) => tracing::info!(playbook = %p.name, "another replica took this firing"),
                    Err(e) => {
                        tracing::error!(playbook = %p.name, error = %e, "cannot claim a scheduled firing; skipped")
                    }
                }
                // Refresh: another replica may have moved the mark further.
                marks[i] = self.store.schedule_mark(&p.name).ok().flatten().or(Some(due));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    struct Recorder(Mutex<Vec<(String, DateTime<Utc>)>>);

    impl Fire for Recorder {
        fn fire<'a>(&'a self, playbook: &'a Playbook, due: DateTime<Utc>) -> BoxFuture<'a> {
            self.0.lock().unwrap().push((playbook.name.clone(), due));
            Box::pin(async {})
        }
    }

    fn playbook(cron: &str, catch_up: bool) -> Playbook {
        let src = format!("name: nightly\ntrigger:\n  schedule: {{cron: \"{cron}\", timezone: Asia/Shanghai, catch_up: {catch_up}}}\n");
        let mut found = Vec::new();
        crate::playbook::load(std::path::Path::new("playbooks/nightly.yaml"), &src, &mut found)
            .unwrap_or_else(|| panic!("{found:?}"))
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Waits until `count` schedulers have decided what is due and gone to
    /// sleep until `at`: whatever they fire before then has fired.
    async fn asleep_until(clock: &ManualClock, at: DateTime<Utc>, count: usize) {
        tokio::time::timeout(std::time::Duration::from_secs(60), clock.sleepers(at, count))
            .await
            .unwrap_or_else(|_| panic!("no scheduler went to sleep until {at}"));
    }

    #[tokio::test]
    async fn fires_at_each_cron_time_in_its_time_zone_without_real_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        // 08:59 in Shanghai (UTC+8); the playbook fires daily at 09:00 there.
        let clock = Arc::new(ManualClock::new(at("2026-11-29T00:59:00Z")));
        let fired = Arc::new(Recorder(Mutex::new(Vec::new())));
        let scheduler = Scheduler::new(&[playbook("0 9 * * *", false)], store, clock.clone(), fired.clone());
        tokio::spawn(scheduler.run());
        asleep_until(&clock, at("2026-11-29T01:00:00Z"), 1).await;
        assert!(fired.0.lock().unwrap().is_empty());
        clock.advance(chrono::Duration::minutes(1));
        asleep_until(&clock, at("2026-11-30T01:00:00Z"), 1).await;
        assert_eq!(
            *fired.0.lock().unwrap(),
            [("nightly".to_string(), at("2026-11-29T01:00:00Z"))]
        );
        clock.advance(chrono::Duration::hours(24));
        asleep_until(&clock, at("2026-12-01T01:00:00Z"), 1).await;
        assert_eq!(fired.0.lock().unwrap().len(), 2);
        assert_eq!(fired.0.lock().unwrap()[1].1, at("2026-11-30T01:00:00Z"));
    }

    #[tokio::test]
    async fn after_downtime_a_missed_firing_runs_once_or_is_skipped_as_the_playbook_says() {
        for (catch_up, expected) in [(true, 1usize), (false, 0)] {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
            // Last fired three days ago; three firings were missed.
            store
                .claim_schedule("nightly", None, at("2026-11-26T01:00:00Z"))
                .unwrap();
            let clock = Arc::new(ManualClock::new(at("2026-11-29T05:00:00Z")));
            let fired = Arc::new(Recorder(Mutex::new(Vec::new())));
            let scheduler = Scheduler::new(
                &[playbook("0 9 * * *", catch_up)],
                store.clone(),
                clock.clone(),
                fired.clone(),
            );
            tokio::spawn(scheduler.run());
            // Catching up is done once it sleeps until the next firing.
            asleep_until(&clock, at("2026-11-30T01:00:00Z"), 1).await;
            let got = fired.0.lock().unwrap().clone();
            assert_eq!(got.len(), expected, "catch_up {catch_up}: {got:?}");
            if catch_up {
                assert_eq!(got[0].1, at("2026-11-29T01:00:00Z"), "the latest missed firing");
            }
            assert_eq!(
                store.schedule_mark("nightly").unwrap(),
                Some(at("2026-11-29T01:00:00Z"))
            );
        }
    }

    #[tokio::test]
    async fn two_replicas_on_one_store_fire_each_time_once() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let clock = Arc::new(ManualClock::new(at("2026-11-29T00:59:00Z")));
        let fired = Arc::new(Recorder(Mutex::new(Vec::new())));
        store
            .claim_schedule("nightly", None, at("2026-11-29T00:59:00Z"))
            .unwrap();
        for _ in 0..2 {
            let s = Scheduler::new(
                &[playbook("0 9 * * *", false)],
                store.clone(),
                clock.clone(),
                fired.clone(),
            );
            tokio::spawn(s.run());
        }
        asleep_until(&clock, at("2026-11-29T01:00:00Z"), 2).await;
        clock.advance(chrono::Duration::minutes(1));
        asleep_until(&clock, at("2026-11-30T01:00:00Z"), 2).await;
        assert_eq!(fired.0.lock().unwrap().len(), 1, "{:?}", fired.0.lock().unwrap());
    }
}
