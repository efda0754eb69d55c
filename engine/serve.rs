//! `laojun serve`: assembles the engine, serves the HTTP side on a
//! listener (plain or TLS), and shuts down in order on SIGINT/SIGTERM (stop
//! accepting, let in-flight requests finish, drain the writer's queue).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
use crate::engine::Engine;
use crate::server::{router, AppState};

/// Runs the server until `shutdown` completes. `on_listen` is told the
/// bound address (the port may have been 0).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let engine = Engine::builder(config).start().await?;
    serve(engine, shutdown, on_listen).await
}

/// Serves an assembled engine until `shutdown` completes, then stops it.
pub async fn serve(
    engine: Engine,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let config = engine.resolved.config.clone();
    if engine.resolved.credentials.is_empty() {
        tracing::warn!(
            "no API token is configured (auth.token or LAOJUN_API_TOKEN): anyone who can reach {} can use the API",
            config.listen
        );
    }
    let state = Arc::new(AppState {
        writer: engine.writer.clone(),
        store: engine.store.clone(),
        metrics: engine.metrics.clone(),
        credentials: engine.resolved.credentials.clone(),
        live: engine.live.clone(),
        reload: engine.reloader.clone(),
        executor: engine.executor.clone(),
        max_body: config.intake.max_body_bytes,
        slack: engine
            .resolved
            .slack_signing_secret
            .clone()
            .map(|signing_secret| crate::server::slack::SlackApp {
                signing_secret,
                users: config.slack.users.clone(),
                response_url_prefixes: config.slack.response_url_prefixes.clone(),
                http: reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(10))
                    .build()
                    .unwrap_or_default(),
                bot_token: engine.resolved.slack_bot_token.clone(),
                api_url: config.slack.api_url.clone(),
            }),
        grafana: match (&config.intake.grafana_signature, &engine.resolved.grafana_secret) {
            (Some(g), Some(secret)) => Some(crate::server::signature::Grafana {
                secret: secret.clone(),
                header: g.header.clone(),
                timestamp_header: g.timestamp_header.clone(),
            }),
            _ => None,
        },
        health: engine.health.clone(),
        ui: crate::server::UiSettings {
            session_ttl: std::time::Duration::from_secs(config.ui.session_ttl_secs.max(60)),
            secure_cookies: config.tls.is_some(),
        },
    });
    engine
        .health
        .watch(Arc::downgrade(&engine.store), config.data_dir.clone());
    preflight_at_start(&engine);
    // Stop on the signal, or when the store needs reopening (see `health`).
    let restart: Arc<std::sync::OnceLock<String>> = Arc::default();
    let shutdown = {
        let (health, restart) = (engine.health.clone(), restart.clone());
        async move {
            tokio::select! {
                () = shutdown => {}
                why = health.restart_needed() => {
                    tracing::error!(
                        reason = %why,
                        code = crate::health::RESTART_EXIT_CODE,
                        "exiting so that the supervisor starts laojun again on the reopened store; everything acknowledged is on disk"
                    );
                    let _ = restart.set(why);
                }
            }
        }
    };
    let app = router(state);
    let std_listener =
        std::net::TcpListener::bind(&config.listen).with_context(|| format!("listening on {}", config.listen))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let catalog = engine.live.catalog();
    tracing::info!(%addr, scheme, runbooks = catalog.runbooks.len(), playbooks = catalog.playbooks.len(), revision = %catalog.revision, data_dir = %config.data_dir.display(), "laojun listening");
    reload_on_sighup(engine.reloader.clone());
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
    if let Some(why) = restart.get() {
        return Err(RestartNeeded(why.clone()).into());
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// `serve` stopped because the store must be reopened: exit with
/// `health::RESTART_EXIT_CODE` so the supervisor starts it again.
#[derive(Debug, thiserror::Error)]
#[error("restart needed: {0}")]
pub struct RestartNeeded(pub String);

/// `laojun check`'s checks, in the background so a slow backend does not
/// hold up the start; each failure a warning (it may be why a run fails).
fn preflight_at_start(engine: &Engine) {
    let resolved = engine.resolved.clone();
    let catalog = engine.live.catalog();
    tokio::spawn(async move {
        let namespaces = resolved.config.kubernetes.namespaces.clone();
        let checks = crate::preflight::run(&resolved, &catalog, &namespaces).await;
        let failed: Vec<_> = checks.iter().filter(|c| !c.ok).collect();
        for c in &failed {
            tracing::warn!(backend = c.backend, check = %c.what, problem = %c.detail, "preflight check failed");
        }
        tracing::info!(
            checks = checks.len(),
            failed = failed.len(),
            "preflight checks done (`laojun check` shows them all)"
        );
    });
}

/// `laojun run --standalone`: one manual run in this process, on the
/// store in `data_dir`, without a server. Returns the finished run.
pub async fn standalone(config: &Config, request: crate::executor::ManualRun) -> anyhow::Result<crate::run::Run> {
    let engine = Engine::builder(config.clone()).start().await?;
    let started = engine
        .executor
        .start(crate::executor::Trigger::Manual(request))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = started
        .first()
        .map(|s| s.id)
        .ok_or_else(|| anyhow::anyhow!("the run got no id"))?;
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

/// SIGHUP reloads the catalog, as Prometheus and AlertManager do; it never
/// stops the process. Problems are logged, every one, and change nothing.
fn reload_on_sighup(reloader: Arc<crate::engine::Reloader>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use crate::live::Reload;
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /api/v1/reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the catalog");
            match reloader.reload().await {
                Ok(_) => {}
                Err(crate::live::ReloadError::Problems(problems)) => {
                    for p in &problems {
                        tracing::error!(problem = %p, "reload refused");
                    }
                    tracing::error!(problems = problems.len(), "the catalog has problems; nothing changed");
                }
                Err(e) => tracing::error!(error = %e, "reload failed; nothing changed"),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = reloader;
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
