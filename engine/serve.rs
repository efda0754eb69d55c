//! `laojun serve`: loads the catalog, opens the store, starts the writer
//! and the HTTP server, and shuts down in order on SIGINT/SIGTERM (stop
//! accepting, let in-flight requests finish, drain the writer's queue).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;

use crate::actions::Backends;
use crate::catalog;
use crate::config::Config;
use crate::executor::Executor;
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::script::Sandbox;
use crate::server::{router, AppState};
use crate::store::{SledStore, Store};
use crate::writer::{Effect, Writer};

/// Everything but the HTTP side: catalog, store, writer, executor.
pub struct Engine {
    pub catalog: Arc<crate::catalog::Catalog>,
    pub store: Arc<dyn Store>,
    pub writer: Writer,
    pub executor: Executor,
    pub metrics: Arc<Metrics>,
    writer_thread: std::thread::JoinHandle<()>,
}

impl Engine {
    /// Loads the catalog (refusing one with problems), opens the store,
    /// starts the writer and the executor, and settles runs a previous
    /// process left unfinished.
    pub async fn start(config: &Config) -> anyhow::Result<Engine> {
        install_crypto_provider();
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
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
        let store_dir = config.data_dir.join("store");
        let store: Arc<dyn Store> = Arc::new(
            SledStore::open(&store_dir).with_context(|| format!("opening the store in {}", store_dir.display()))?,
        );
        let catalog = Arc::new(loaded.catalog);
        let intake = Intake::new(store.clone(), catalog.playbooks.clone())?;
        let metrics = Arc::new(Metrics::new());
        let (effects_tx, mut effects_rx) = tokio::sync::mpsc::unbounded_channel();
        let (writer, writer_thread) = Writer::start(
            intake,
            store.clone(),
            config.intake.queue_capacity,
            metrics.clone(),
            Some(effects_tx),
        );
        let slack = match &config.slack.webhook_url {
            Some(reference) => {
                Some(crate::secret::resolve(reference).map_err(|e| anyhow::anyhow!("slack.webhook_url: {e}"))?)
            }
            None => None,
        };
        let settings = crate::executor::Settings {
            dry_run: config.execution.dry_run,
            paused: config.execution.paused,
            external_url: config.external_url.clone(),
        };
        let backends = Backends::from_config(config, slack);
        let executor = Executor::new(writer.clone(), store.clone(), catalog.clone(), backends, settings);
        let settled = executor
            .recover()
            .await
            .map_err(|e| anyhow::anyhow!("recovering unfinished runs: {e}"))?;
        if settled > 0 {
            tracing::warn!(
                runs = settled,
                "found runs a previous process left unfinished and settled them"
            );
        }
        // An incident committed just before a crash may not have had its
        // runs journaled yet: start them now rather than lose them.
        let mut started = 0;
        let mut with_runbooks = Vec::new();
        store.each_open(&mut |entry| {
            if catalog
                .playbooks
                .iter()
                .any(|p| p.name == entry.playbook && !p.runbooks.is_empty())
            {
                with_runbooks.push(entry.incident);
            }
        })?;
        for n in with_runbooks {
            let Some(inc) = store.incident_record(n)? else {
                continue;
            };
            if inc.runs.is_empty() {
                if let Some(alert) = store.incident_alert(inc.number(), 0)?.map(|a| crate::alert::Alert {
                    fingerprint: a.fingerprint,
                    status: a.status,
                    labels: a.labels,
                    annotations: a.annotations,
                    starts_at: a.starts_at,
                    ends_at: a.ends_at,
                    generator_url: None,
                }) {
                    started += 1;
                    executor
                        .start_for_incident(crate::intake::Opened { incident: inc, alert })
                        .await;
                }
            }
        }
        if started > 0 {
            tracing::warn!(
                incidents = started,
                "started the runbooks of incidents whose runs a crash kept from starting"
            );
        }
        let tz = config.postmortem.tz().map_err(|e| anyhow::anyhow!(e))?;
        let reports = Reports {
            store: store.clone(),
            catalog: catalog.clone(),
            tz,
            dir: config
                .postmortem
                .write_on_resolve
                .then(|| config.data_dir.join("postmortems")),
            slack_summary: config.postmortem.slack_summary,
            executor: executor.clone(),
        };
        let scheduler = crate::scheduler::Scheduler::new(
            &catalog.playbooks,
            store.clone(),
            Arc::new(crate::scheduler::SystemClock),
            Arc::new(executor.clone()),
        );
        tokio::spawn(scheduler.run());
        let starter = executor.clone();
        tokio::spawn(async move {
            while let Some(effect) = effects_rx.recv().await {
                match effect {
                    Effect::Opened(opened) => {
                        let executor = starter.clone();
                        tokio::spawn(async move { executor.start_for_incident(*opened).await });
                    }
                    Effect::Resolved(incident) => {
                        let reports = reports.clone();
                        tokio::spawn(async move { reports.on_resolved(*incident).await });
                    }
                }
            }
        });
        Ok(Engine {
            catalog,
            store,
            writer,
            executor,
            metrics,
            writer_thread,
        })
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

/// Runs the server until `shutdown` completes. `on_listen` is told the
/// bound address (the port may have been 0).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let credentials = config.credentials()?;
    if credentials.is_empty() {
        tracing::warn!(
            "no API token is configured (auth.token or LAOJUN_API_TOKEN): anyone who can reach {} can use the API",
            config.listen
        );
    }
    let engine = Engine::start(&config).await?;
    let state = Arc::new(AppState {
        writer: engine.writer.clone(),
        store: engine.store.clone(),
        metrics: engine.metrics.clone(),
        credentials,
        catalog: engine.catalog.clone(),
        executor: engine.executor.clone(),
        max_body: config.intake.max_body_bytes,
        timezone: config.postmortem.tz().map_err(|e| anyhow::anyhow!(e))?,
    });
    let app = router(state);
    let std_listener =
        std::net::TcpListener::bind(&config.listen).with_context(|| format!("listening on {}", config.listen))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, runbooks = engine.catalog.runbooks.len(), playbooks = engine.catalog.playbooks.len(), data_dir = %config.data_dir.display(), "laojun listening");
    match &config.tls {
        None => {
            on_listen(addr);
            let listener = tokio::net::TcpListener::from_std(std_listener)?;
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        }
        Some(tls) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert_file, &tls.key_file)
                .await
                .with_context(|| {
                    format!(
                        "loading TLS files {} and {}",
                        tls.cert_file.display(),
                        tls.key_file.display()
                    )
                })?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                // Stop accepting; give requests in flight ten seconds.
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            on_listen(addr);
            axum_server::from_tcp_rustls(std_listener, rustls)?
                .handle(handle)
                .serve(app.into_make_service())
                .await?;
        }
    }
    tracing::info!("stopped accepting; finishing queued writes");
    engine.stop().await?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// `laojun run --standalone`: one manual run in this process, on the
/// store in `data_dir`, without a server. Returns the finished run.
pub async fn standalone(config: &Config, request: crate::executor::ManualRun) -> anyhow::Result<crate::run::Run> {
    let engine = Engine::start(config).await?;
    let (id, _) = engine
        .executor
        .start_manual(request)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = crate::run::parse_run_id(&id).unwrap_or(0);
    let run = loop {
        if let Some(run) = engine.store.run(n)? {
            if run.status.is_finished() {
                break run;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    engine.stop().await?;
    Ok(run)
}

/// Completes on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// kube, reqwest and the AWS SDK all use rustls; with more than one crypto
/// backend compiled in, rustls will not pick one itself and the first TLS
/// connection panics. Installing ring once at start settles it.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What happens when an incident resolves: its postmortem is written to
/// `data_dir/postmortems/`, and Slack gets a summary if configured.
#[derive(Clone)]
struct Reports {
    store: Arc<dyn Store>,
    catalog: Arc<crate::catalog::Catalog>,
    tz: chrono_tz::Tz,
    dir: Option<std::path::PathBuf>,
    slack_summary: bool,
    executor: Executor,
}

impl Reports {
    async fn on_resolved(self, incident: crate::incident::Incident) {
        let id = incident.id.clone();
        if let Some(dir) = self.dir.clone() {
            let this = self.clone();
            let written = tokio::task::spawn_blocking(move || -> anyhow::Result<std::path::PathBuf> {
                let text = crate::postmortem::render_stored(&this.catalog, this.store.as_ref(), &incident.id, this.tz)?;
                std::fs::create_dir_all(&dir)?;
                let path = dir.join(format!("{}.md", incident.id));
                // Write beside and rename, so a reader never sees half a file.
                let partial = dir.join(format!(".{}.md.partial", incident.id));
                std::fs::write(&partial, text)?;
                std::fs::rename(&partial, &path)?;
                Ok(path)
            })
            .await;
            match written {
                Ok(Ok(path)) => tracing::info!(incident = %id, path = %path.display(), "postmortem written"),
                Ok(Err(e)) => tracing::error!(incident = %id, error = %format!("{e:#}"), "postmortem not written"),
                Err(e) => tracing::error!(incident = %id, error = %e, "postmortem task failed"),
            }
        }
        if self.slack_summary {
            self.executor.post_resolved_summary(&id).await;
        }
    }
}
