//! `laojun serve`: the flags over laojun.yaml, logging, then `crate::serve::run`.

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
