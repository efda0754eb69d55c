//! `laojun serve`: the flags over laojun.yaml, logging, then
//! `crate::serve::run`; and `laojun check`, which reads the same config.

use std::process::ExitCode;

use super::{LogFormat, ServeArgs};

pub async fn serve(args: ServeArgs) -> ExitCode {
    init_logging(args.log_format);
    let mut config = match crate::config::Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("laojun serve: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(root) = args.root {
        config.root = root;
    }
    config.execution.dry_run |= args.dry_run;
    match crate::serve::run(config, crate::serve::signal(), |_| {}).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("laojun serve: {e:#}");
            if e.is::<crate::serve::RestartNeeded>() {
                ExitCode::from(crate::health::RESTART_EXIT_CODE)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// `laojun check`: the preflight table (or JSON); 0 when all pass.
pub async fn check(config: Option<&std::path::Path>, namespaces: &[String], output: super::Output) -> ExitCode {
    let failed = |message: String| {
        super::print_error(&format!("check: {message}"));
        ExitCode::from(super::exit::FAILED)
    };
    let resolved = match crate::config::Config::load(config)
        .map_err(|e| e.to_string())
        .and_then(|c| c.resolve().map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let root = resolved.config.root.clone();
    let loaded = match crate::catalog::load(&root, &crate::script::Sandbox::default()) {
        Ok(l) => l,
        Err(e) => return failed(e.to_string()),
    };
    if !loaded.problems.is_empty() {
        for p in &loaded.problems {
            eprintln!("{p}");
        }
        return failed(format!(
            "{} has problems; fix them first (`laojun validate` lists the same)",
            root.display()
        ));
    }
    let mut namespaces = namespaces.to_vec();
    namespaces.extend(resolved.config.kubernetes.namespaces.iter().cloned());
    crate::engine::install_crypto_provider();
    let checks = crate::preflight::run(&resolved, &loaded.catalog, &namespaces).await;
    match output {
        super::Output::Table => print!("{}", crate::preflight::table(&checks)),
        super::Output::Json => println!("{}", serde_json::json!({ "checks": checks })),
    }
    if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::exit::FAILED)
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
