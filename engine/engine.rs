//! The engine assembled from its parts: the catalog, the store, the writer
//! thread, the executor, the scheduler and the effects loop. Building is
//! apart from serving (see `serve`), and the parts a test wants to replace
//! are injected:
//!
//! ```text
//! let engine = Engine::builder(config).store(faulty).clock(manual).start().await?;
//! ```

use std::sync::Arc;

use anyhow::Context as _;

use crate::actions::Backends;
use crate::catalog::{self, Catalog};
use crate::config::{Config, Resolved};
use crate::effects::{Effect, Reports};
use crate::executor::Trigger;
use crate::executor::{Executor, Settings};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::notices::{NoticeKind, Notifier};
use crate::postmortem::Renderer;
use crate::scheduler::{Clock, Scheduler, SystemClock};
use crate::script::Sandbox;
use crate::store::{SledStore, Store};
use crate::writer::Writer;

/// Everything but the HTTP side.
pub struct Engine {
    pub catalog: Arc<Catalog>,
    pub store: Arc<dyn Store>,
    pub writer: Writer,
    pub executor: Executor,
    pub metrics: Arc<Metrics>,
    pub postmortems: Arc<Renderer>,
    /// The config with its secrets and time zone resolved.
    pub resolved: Resolved,
    writer_thread: std::thread::JoinHandle<()>,
}

/// Parts of an engine before it starts; what is not given is made from
/// the config.
pub struct Builder {
    config: Config,
    store: Option<Arc<dyn Store>>,
    clock: Option<Arc<dyn Clock>>,
}

impl Engine {
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            store: None,
            clock: None,
        }
    }

    /// Commits what is queued and stops the writer. Runs still going cannot
    /// journal further steps; the next start settles them as after a crash
    /// (idempotent steps re-run, others interrupted).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.writer.stop().await;
        let thread = self.writer_thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
        Ok(())
    }
}

impl Builder {
    /// Use this store instead of opening sled under `data_dir`.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Use this clock for schedules instead of the system's.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Resolves the config, loads the catalog (refusing one with problems),
    /// opens the store, starts the writer and the executor, settles runs a
    /// previous process left unfinished, and starts the scheduler.
    pub async fn start(self) -> anyhow::Result<Engine> {
        install_crypto_provider();
        let resolved = self.config.resolve()?;
        let config = &resolved.config;
        let loaded = catalog::load(&config.root, &Sandbox::default())
            .with_context(|| format!("loading runbooks and playbooks from {}", config.root.display()))?;
        if !loaded.problems.is_empty() {
            let list: Vec<String> = loaded.problems.iter().map(ToString::to_string).collect();
            anyhow::bail!(
                "{} has problems; fix them (laojun validate shows the same):\n{}",
                config.root.display(),
                list.join("\n")
            );
        }
        let store = match self.store {
            Some(store) => store,
            None => open_sled(config)?,
        };
        let catalog = Arc::new(loaded.catalog);
        let postmortems = Arc::new(Renderer::new(catalog.clone(), resolved.timezone)?);
        let ledger = Ledger::new(store.clone(), catalog.playbooks.clone())?;
        let metrics = Arc::new(Metrics::new());
        let (effects_tx, effects_rx) = tokio::sync::mpsc::unbounded_channel();
        let (writer, writer_thread) = Writer::start(
            ledger,
            store.clone(),
            config.intake.queue_capacity,
            metrics.clone(),
            Some(effects_tx),
        );
        let settings = Settings {
            dry_run: config.execution.dry_run,
            paused: config.execution.paused,
            external_url: config.external_url.clone(),
        };
        let backends = Arc::new(Backends::from_config(config, resolved.slack_webhook.clone()));
        let automation = store.automation()?;
        let notices = Notifier::new(
            writer.clone(),
            store.clone(),
            backends.clone(),
            config.notifications.clone(),
            config.external_url.clone(),
        );
        let executor = Executor::new(
            writer.clone(),
            store.clone(),
            catalog.clone(),
            backends.clone(),
            settings,
            automation,
            notices.clone(),
        );
        let recovered = executor
            .recover()
            .await
            .map_err(|e| anyhow::anyhow!("recovering unfinished runs: {e}"))?;
        if recovered.settled > 0 {
            tracing::warn!(
                runs = recovered.settled,
                "found runs a previous process left unfinished and settled them"
            );
        }
        if recovered.started > 0 {
            tracing::warn!(
                incidents = recovered.started,
                "started the runbooks of incidents whose runs a crash kept from starting"
            );
        }
        let unposted = notices.post_pending().await;
        if unposted > 0 {
            tracing::warn!(
                notices = unposted,
                "posting notices a previous process journaled but did not post"
            );
        }
        let reports = Reports {
            store: store.clone(),
            postmortems: postmortems.clone(),
            dir: config
                .postmortem
                .write_on_resolve
                .then(|| config.data_dir.join("postmortems")),
            notices: notices.clone(),
        };
        tokio::spawn(act_on_effects(effects_rx, executor.clone(), reports));
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let scheduler = Scheduler::new(&catalog.playbooks, store.clone(), clock, Arc::new(executor.clone()));
        tokio::spawn(scheduler.run());
        Ok(Engine {
            catalog,
            store,
            writer,
            executor,
            metrics,
            postmortems,
            resolved,
            writer_thread,
        })
    }
}

/// Acts on each effect until the writer stops sending them; each in a task
/// of its own, so a slow one holds up no other.
async fn act_on_effects(
    mut effects: tokio::sync::mpsc::UnboundedReceiver<Effect>,
    executor: Executor,
    reports: Reports,
) {
    while let Some(effect) = effects.recv().await {
        match effect {
            Effect::Opened(opened) => {
                let (notices, inc) = (&reports.notices, &opened.incident);
                if notices.wants_opened(inc.severity) {
                    notices.notify(
                        NoticeKind::IncidentOpened,
                        format!("incident_opened:{}", inc.id),
                        Some(inc.id),
                        crate::notices::text::opened(inc),
                    );
                }
                let executor = executor.clone();
                tokio::spawn(async move {
                    // Runs that cannot start are journaled as such; an
                    // error here means the journal itself failed.
                    if let Err(e) = executor.start(Trigger::Incident(opened)).await {
                        tracing::error!(error = %e, "the runbooks of an opened incident could not start");
                    }
                });
            }
            Effect::Resolved(incident) => {
                let reports = reports.clone();
                tokio::spawn(async move { reports.on_resolved(*incident).await });
            }
        }
    }
}

fn open_sled(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
    let dir = config.data_dir.join("store");
    let store = SledStore::open(&dir).with_context(|| format!("opening the store in {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// kube, reqwest and the AWS SDK all use rustls; with more than one crypto
/// backend compiled in, rustls will not pick one itself and the first TLS
/// connection panics. Installing ring once at start settles it.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
