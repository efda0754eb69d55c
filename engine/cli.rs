//! The command line: clap definitions and one function per command.
//! Exit codes: 0 success, 1 a failure the output explains, 2 bad usage.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::catalog;
use crate::script::Sandbox;

/// laojun — incident and runbook automation for Prometheus AlertManager.
///
/// AlertManager posts alerts to `laojun serve`; playbooks decide which
/// alerts open which incident at what severity (P0–P3) and which runbooks
/// run; every event lands on the incident's timeline.
#[derive(Debug, Parser)]
#[command(
    name = "laojun",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check runbooks, playbooks and templates without running anything.
    ///
    /// Reads DIR/runbooks/*.yaml, DIR/playbooks/*.yaml and
    /// DIR/templates/*.hbs and prints every problem as `path:line:col:
    /// message`. Needs no cluster, credentials or network.
    /// Exits 0 when all is well, 1 when there are problems, 2 on bad usage.
    Validate {
        /// Folder holding runbooks/, playbooks/ and templates/.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Print the reference of every runbook action and its arguments (markdown).
    Actions,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version on stdout with exit 0, usage errors on
            // stderr with exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Validate { dir } => validate(&dir),
        Command::Actions => {
            print!("{}", crate::runbook::spec::reference_markdown());
            ExitCode::SUCCESS
        }
    }
}

fn validate(dir: &std::path::Path) -> ExitCode {
    if !dir.is_dir() {
        eprintln!("laojun validate: {} is not a folder", dir.display());
        return ExitCode::from(2);
    }
    let loaded = match catalog::load(dir, &Sandbox::default()) {
        Ok(l) => l,
        Err(e @ catalog::RootError::Empty(_)) => {
            eprintln!("laojun validate: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("laojun validate: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout().lock();
    for p in &loaded.problems {
        let _ = writeln!(out, "{p}");
    }
    let c = &loaded.catalog;
    let counts = format!(
        "{} runbooks, {} playbooks, {} templates",
        c.runbooks.len(),
        c.playbooks.len(),
        c.templates.len()
    );
    if loaded.problems.is_empty() {
        let _ = writeln!(out, "ok: {counts} in {}", dir.display());
        ExitCode::SUCCESS
    } else {
        let n = loaded.problems.len();
        let _ = writeln!(out, "{n} problem{} found", if n == 1 { "" } else { "s" });
        ExitCode::from(1)
    }
}
