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
use crate::health::Health;
use crate::ledger::Ledger;
use crate::live::{Live, Reload, ReloadError, Reloaded};
use crate::metrics::Metrics;
use crate::notices::{NoticeKind, Notifier};
use crate::scheduler::{Clock, Scheduler, SystemClock};
use crate::script::Sandbox;
use crate::store::{SledStore, Store};
use crate::writer::Writer;

/// Everything but the HTTP side.
pub struct Engine {
    /// The catalog in force (and its postmortem templates); reloadable.
    pub live: Arc<Live>,
    /// Reloads the catalog from `root` (SIGHUP, `POST /api/v1/reload`).
    pub reloader: Arc<Reloader>,
    pub store: Arc<dyn Store>,
    pub writer: Writer,
    pub executor: Executor,
    pub metrics: Arc<Metrics>,
    /// Whether the store takes writes (`/readyz`), and whether the process
    /// must be restarted to reopen it.
    pub health: Arc<Health>,
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
    http_proxy: Option<String>,
}

impl Engine {
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            store: None,
            clock: None,
            http_proxy: None,
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

    /// Send the actions' plain-HTTP requests through this proxy (`laojun test`).
    pub fn http_proxy(mut self, proxy: &str) -> Self {
        self.http_proxy = Some(proxy.to_string());
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
            None => match &config.store.postgres {
                Some(pg) => open_postgres(pg).await?,
                None => open_sled(config)?,
            },
        };
        let catalog = Arc::new(loaded.catalog);
        let style = crate::postmortem::Style {
            tz: resolved.timezone,
            external_url: config.server.external_url.clone(),
        };
        let live = Arc::new(Live::new(catalog.clone(), style)?);
        let ledger = Ledger::new(store.clone(), catalog.playbooks.clone())?
            .with_default_severity(config.intake.default_severity);
        let metrics = Arc::new(Metrics::new());
        expect_series(&metrics, &catalog);
        let health = Health::new();
        let (effects_tx, effects_rx) = tokio::sync::mpsc::unbounded_channel();
        let (writer, writer_thread) = Writer::start(
            ledger,
            store.clone(),
            config.intake.queue_capacity,
            metrics.clone(),
            Some(effects_tx),
            health.clone(),
        );
        let settings = Settings {
            dry_run: config.execution.dry_run,
            paused: config.execution.paused,
            external_url: config.server.external_url.clone(),
        };
        let mut backends = Backends::from_config(config, resolved.slack_webhook.clone());
        if let Some(proxy) = &self.http_proxy {
            backends = backends.through_proxy(proxy);
        }
        let backends = Arc::new(backends);
        let automation = store.automation()?;
        let notices = Notifier::new(
            writer.clone(),
            store.clone(),
            backends.clone(),
            config.notifications.clone(),
            config.server.external_url.clone(),
            metrics.clone(),
            resolved.slack_signing_secret.is_some(),
        );
        let executor = Executor::new(
            writer.clone(),
            store.clone(),
            live.clone(),
            backends.clone(),
            settings,
            automation,
            notices.clone(),
        );
        // Before recovery, which may journal notices of its own: only what
        // a previous process left unposted is posted here.
        let unposted = notices.post_pending().await;
        if unposted > 0 {
            tracing::warn!(
                notices = unposted,
                "posting notices a previous process journaled but did not post"
            );
        }
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
        let reports = Reports {
            store: store.clone(),
            live: live.clone(),
            dir: config
                .postmortem
                .write_on_resolve
                .then(|| config.data_dir.join("postmortems")),
            notices: notices.clone(),
        };
        tokio::spawn(act_on_effects(effects_rx, executor.clone(), reports));
        // On a shared store: renew this replica's leases, take over runs of
        // replicas gone silent (returns at once on sled).
        tokio::spawn(executor.clone().keep_leases());
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let reloader = Arc::new(Reloader {
            root: config.root.clone(),
            live: live.clone(),
            writer: writer.clone(),
            store: store.clone(),
            clock,
            executor: executor.clone(),
            metrics: metrics.clone(),
            scheduler: std::sync::Mutex::new(None),
            one_at_a_time: tokio::sync::Mutex::new(()),
        });
        reloader.start_scheduler(&catalog);
        Ok(Engine {
            live,
            reloader,
            store,
            writer,
            executor,
            metrics,
            health,
            resolved,
            writer_thread,
        })
    }
}

/// Loads the catalog again and puts it in force for what starts after:
/// the executor's runs, the ledger's routing, the scheduler's schedules and
/// the postmortem templates. A catalog with problems changes nothing.
pub struct Reloader {
    root: std::path::PathBuf,
    live: Arc<Live>,
    writer: Writer,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    executor: Executor,
    metrics: Arc<Metrics>,
    /// The scheduler of the catalog in force; replaced on reload.
    scheduler: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    fn start_scheduler(&self, catalog: &Catalog) {
        let scheduler = Scheduler::new(
            &catalog.playbooks,
            self.store.clone(),
            self.clock.clone(),
            Arc::new(self.executor.clone()),
        );
        let task = tokio::spawn(scheduler.run());
        let mut slot = self.scheduler.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = slot.replace(task) {
            old.abort();
        }
    }

    async fn reload_now(&self) -> Result<Reloaded, ReloadError> {
        let _one = self.one_at_a_time.lock().await;
        let root = self.root.clone();
        let loaded = tokio::task::spawn_blocking(move || catalog::load(&root, &Sandbox::default()))
            .await
            .map_err(|e| ReloadError::Failed(format!("the reload stopped: {e}")))?
            .map_err(|e| ReloadError::Failed(e.to_string()))?;
        if !loaded.problems.is_empty() {
            return Err(ReloadError::Problems(
                loaded.problems.iter().map(ToString::to_string).collect(),
            ));
        }
        let catalog = Arc::new(loaded.catalog);
        // Templates first: a catalog whose postmortems do not compile is not
        // put in force at all.
        self.live
            .replace(catalog.clone())
            .map_err(|e| ReloadError::Failed(e.to_string()))?;
        self.writer
            .playbooks(catalog.playbooks.clone())
            .await
            .map_err(|e| ReloadError::Failed(e.to_string()))?;
        self.start_scheduler(&catalog);
        expect_series(&self.metrics, &catalog);
        tracing::info!(
            revision = %catalog.revision,
            runbooks = catalog.runbooks.len(),
            playbooks = catalog.playbooks.len(),
            "catalog reloaded"
        );
        Ok(Reloaded::of(&catalog))
    }
}

impl Reload for Reloader {
    fn reload(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reloaded, ReloadError>> + Send + '_>> {
        Box::pin(self.reload_now())
    }
}

/// Acts on each effect until the writer stops sending them; each in a task
/// of its own, so a slow one holds up no other.
async fn act_on_effects(
    mut effects: tokio::sync::mpsc::UnboundedReceiver<Effect>,
    executor: Executor,
    reports: Reports,
) {
    let files = reports.start_files();
    while let Some(effect) = effects.recv().await {
        match effect {
            Effect::Opened(opened) => {
                let (notices, inc) = (&reports.notices, &opened.incident);
                if notices.wants_opened(inc.severity) {
                    notices.notify_with(
                        NoticeKind::IncidentOpened,
                        format!("incident_opened:{}", inc.id),
                        Some(inc.id),
                        crate::notices::text::opened(inc),
                        crate::notices::buttons::ack(inc.id),
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
                files.write(incident.id);
                tokio::spawn(reports.clone().summarize(incident.id));
            }
            Effect::Changed(id) => files.write(id),
        }
    }
}

/// The catalog's runbooks and actions as metric series at 0.
fn expect_series(metrics: &Metrics, catalog: &Catalog) {
    let actions: std::collections::BTreeSet<&str> = catalog
        .runbooks
        .values()
        .flat_map(|rb| rb.steps.iter().map(|s| s.action.name()))
        .collect();
    metrics.expect(catalog.runbooks.keys().map(String::as_str), actions);
}

/// The shared store: connects, and migrates the schema under an advisory
/// lock (replicas starting together take turns).
pub async fn open_postgres(pg: &crate::config::Postgres) -> anyhow::Result<Arc<dyn Store>> {
    let url = crate::secret::resolve(&pg.url).map_err(|e| anyhow::anyhow!("store.postgres.url: {e}"))?;
    if pg.pool_size < 3 {
        anyhow::bail!(
            "store.postgres.pool_size is {}: write at least 3 (a commit holds one connection and reads on others; the default is 8)",
            pg.pool_size
        );
    }
    if pg.lease_secs < 3 {
        anyhow::bail!(
            "store.postgres.lease_secs is {}: write at least 3 (leases are renewed every third of it; the default is 30)",
            pg.lease_secs
        );
    }
    let store = crate::store::PostgresStore::open(
        url.expose(),
        pg.pool_size,
        pg.ca_file.as_deref(),
        crate::store::Use::Replica,
    )
    .await
    .context("opening the PostgreSQL store (store.postgres)")?
    .with_lease(pg.lease_secs);
    Ok(Arc::new(store))
}

fn open_sled(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
    let dir = config.data_dir.join("store");
    let pid_file = config.data_dir.join("laojun.pid");
    let store = match SledStore::open(&dir) {
        Ok(store) => store,
        // sled allows one process per store: say who holds it, once, in
        // place of the raw lock error.
        Err(e) if e.to_string().contains("could not acquire lock") => {
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .map(|p| format!(" (pid {}?)", p.trim()))
                .unwrap_or_default();
            anyhow::bail!(
                "another laojun is using data dir {}{pid}; stop it, or go through it (laojun run without --standalone)",
                config.data_dir.display()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("opening the store in {}", dir.display())),
    };
    // Who holds the store, for the message above in the next process.
    if let Err(e) = std::fs::write(&pid_file, std::process::id().to_string()) {
        tracing::warn!(path = %pid_file.display(), error = %e, "could not write the pid file");
    }
    Ok(Arc::new(store))
}

/// kube, reqwest and the AWS SDK all use rustls; with more than one crypto
/// backend compiled in, rustls will not pick one itself and the first TLS
/// connection panics. Installing ring once at start settles it.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
