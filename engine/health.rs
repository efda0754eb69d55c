//! Whether this process can do its job, for `/readyz` and its supervisor.
//! The writer reports store failures here. sled stays failed after an I/O
//! error (a full disk), so once the disk has room again the watchdog asks
//! `serve` to exit with `RESTART_EXIT_CODE`: the supervisor (systemd,
//! Kubernetes) starts laojun again on the store as it is on disk, which
//! holds everything that was acknowledged (nothing is answered 200 before
//! it is flushed).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::Store;

/// `serve` exits with this (EX_TEMPFAIL) when the store needs reopening.
pub const RESTART_EXIT_CODE: u8 = 75;

/// How often the watchdog looks at a failed store.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The free space the watchdog wants before it calls the disk usable:
/// a few of sled's segments.
const ROOM_WANTED: usize = 4 * 1024 * 1024;

/// Why the store is not taking writes.
#[derive(Debug, Clone)]
pub struct StoreFailure {
    /// The first failure of this spell.
    pub since: DateTime<Utc>,
    /// The latest error.
    pub error: String,
}

pub struct Health {
    failed: AtomicBool,
    store: Mutex<Option<StoreFailure>>,
    restart: tokio::sync::watch::Sender<Option<String>>,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health {
            failed: AtomicBool::new(false),
            store: Mutex::new(None),
            restart: tokio::sync::watch::Sender::new(None),
        })
    }

    /// The writer (or `/readyz`) could not write.
    pub fn store_failed(&self, error: &str) {
        let mut slot = self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = slot.as_ref().map_or_else(Utc::now, |f| f.since);
        *slot = Some(StoreFailure {
            since,
            error: error.to_string(),
        });
        self.failed.store(true, Ordering::Release);
    }

    /// A write went through: the store takes writes again.
    pub fn store_ok(&self) {
        // Checked first so the writer's every flush takes no lock; cleared
        // under the lock, so a failure recorded meanwhile is not lost.
        if !self.failed.load(Ordering::Acquire) {
            return;
        }
        let mut slot = self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.failed.store(false, Ordering::Release);
        if let Some(was) = slot.take() {
            tracing::info!(since = %was.since, "the store takes writes again");
        }
    }

    pub fn store_failure(&self) -> Option<StoreFailure> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Why the process must be restarted, once the watchdog decided so.
    pub fn restart_reason(&self) -> Option<String> {
        self.restart.borrow().clone()
    }

    /// Completes with the reason when the process must be restarted.
    pub async fn restart_needed(&self) -> String {
        let mut rx = self.restart.subscribe();
        let reason = rx.wait_for(Option::is_some).await.map(|r| r.clone());
        match reason {
            Ok(reason) => reason.unwrap_or_default(),
            // The sender lives as long as `self`: never reached.
            Err(_) => std::future::pending().await,
        }
    }

    /// Watches a failed store: once `data_dir` has room again, a store
    /// that takes a write again is ok; one that still fails and cannot go
    /// on by itself (`Store::stays_failed`: sled after an I/O error) calls
    /// for a restart. Any other store (PostgreSQL, whose outage a restart
    /// does not end) is only watched until it takes writes again.
    /// It holds the store weakly: it ends when the engine lets go of it.
    pub fn watch(self: &Arc<Self>, store: std::sync::Weak<dyn Store>, data_dir: PathBuf) {
        let health = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(failure) = health.store_failure() else {
                    continue;
                };
                let Some(store) = store.upgrade() else { return };
                let dir = data_dir.clone();
                let probe = tokio::task::spawn_blocking(move || {
                    if has_room(&dir).is_err() {
                        return Probe::NoRoom;
                    }
                    match store.check_writable() {
                        Ok(()) => Probe::Writable,
                        Err(_) if store.stays_failed() => Probe::Stuck,
                        Err(_) => Probe::Failing,
                    }
                })
                .await;
                match probe {
                    Ok(Probe::Writable) => health.store_ok(),
                    Ok(Probe::Stuck) => {
                        let reason = format!(
                            "the store failed at {} ({}) and does not recover by itself; {} has room again",
                            failure.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            failure.error,
                            data_dir.display()
                        );
                        health.restart.send_replace(Some(reason));
                        return;
                    }
                    // Still no room, a backend still down, or the probe
                    // could not run: keep waiting.
                    Ok(Probe::NoRoom | Probe::Failing) | Err(_) => {}
                }
            }
        });
    }
}

/// What the watchdog found.
enum Probe {
    NoRoom,
    Writable,
    /// Fails, and will until reopened.
    Stuck,
    /// Fails, and may recover (a database that comes back).
    Failing,
}

/// Whether `dir` takes `ROOM_WANTED` bytes, written and synced (then removed).
fn has_room(dir: &Path) -> Result<(), String> {
    use std::io::Write as _;
    let path = dir.join(".laojun-room-probe");
    let written = (|| {
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&vec![0u8; ROOM_WANTED])?;
        file.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    written.map_err(|e| e.to_string())
}
