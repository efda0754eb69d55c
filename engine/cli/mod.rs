//! The command line: clap definitions, `main` with the one async runtime
//! every command shares, and the exit codes scripts rely on (`exit`: 0
//! done, 1 failed, 2 bad usage, 3 unreachable, 4 refused, 5 not found).
//! Each group of commands has its own file; those that talk to a server go
//! through `crate::client::ApiClient`.

mod automation;
mod incidents;
mod local;
mod postmortem;
mod render;
mod runs;
mod serve;
mod store;
mod testing;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::{ApiClient, ClientError};

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
    max_term_width = 100,
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check runbooks, playbooks and templates without running anything.
    ///
    /// Reads DIR/runbooks/*.yaml, DIR/playbooks/*.yaml, DIR/templates/*.hbs
    /// and the cases of `laojun test` in DIR/runbook-tests/*.yaml, and
    /// prints every problem as `path:line:col: message`. Needs no cluster, credentials or network.
    /// Exits 0 when all is well, 1 when there are problems, 2 on bad usage.
    Validate {
        /// Folder holding runbooks/, playbooks/ and templates/.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Output format (json: {"problems": [...], "runbooks", "playbooks", "templates", "test_cases"})
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Run the cases in DIR/runbook-tests/ against a fake cluster, with no network.
    ///
    /// Each case starts with an alert (or a schedule, or a runbook by hand)
    /// and runs in-process through the real intake, playbooks, guards,
    /// executor and actions, against a fresh fake Kubernetes cluster and
    /// recorded HTTP endpoints, on a clock that skips waits, retries and
    /// approval TTLs. Then its `expect:` is checked. Exits 0 when every case
    /// passes, 1 when one fails (each failure names its `path:line:col`, and
    /// the timeline is printed), 2 on bad usage or when there is no case.
    Test {
        /// Folder holding runbooks/, playbooks/, templates/ and runbook-tests/.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Run only the cases whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Output format: a table, JSON, or JUnit XML for CI systems.
        #[arg(long, short, value_enum, default_value_t = TestOutput::Table)]
        output: TestOutput,
        /// Roles and ClusterRoles (YAML, e.g. `laojun rbac` output): the fake
        /// cluster allows only what they grant and answers the rest 403.
        #[arg(long, value_name = "FILE")]
        rbac: Option<PathBuf>,
    },
    /// Print the ServiceAccount, Roles and RoleBindings the catalog's Kubernetes steps need (YAML).
    ///
    /// Exactly the verbs each step's action sends, resource by resource,
    /// one Role per namespace the runbooks and playbooks name. A step whose
    /// namespace comes from an alert label gets Roles in the --namespace
    /// namespaces, or without them a ClusterRole (with a warning saying why).
    /// Apply it with `laojun rbac | kubectl apply -f -`.
    Rbac {
        /// Folder holding runbooks/ and playbooks/.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// A namespace alert-driven steps may act in (repeat for several).
        #[arg(long = "namespace", value_name = "NS")]
        namespaces: Vec<String>,
        /// Where laojun runs: the ServiceAccount's namespace.
        #[arg(long, default_value = "laojun")]
        service_account_namespace: String,
    },
    /// Check, changing nothing, that every backend the catalog uses takes
    /// laojun's configured credentials.
    ///
    /// Kubernetes: reachable, and each verb the runbooks need allowed (a
    /// SelfSubjectAccessReview each, the plan `laojun rbac` prints).
    /// Route53: the hosted zones the catalog names readable. Slack: the
    /// webhook configured (nothing is posted). Prometheus, AlertManager:
    /// answering. Exit 0 when every check passes, 1 otherwise.
    Check {
        /// laojun.yaml to read (default: ./laojun.yaml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A namespace alert-driven steps act in, beside kubernetes.namespaces (repeat for several).
        #[arg(long = "namespace", value_name = "NS")]
        namespaces: Vec<String>,
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// The PostgreSQL store: migrate its schema, or copy a sled store into it.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Run the server: receive AlertManager webhooks, keep incidents, serve the API.
    ///
    /// Reads laojun.yaml (or --config); flags override it. Data lives in
    /// the embedded store under --data-dir; nothing else needs setting up.
    /// Point AlertManager's webhook_config at http://ADDR/api/v1/alerts.
    Serve(ServeArgs),
    /// List incidents or show one with its timeline (talks to a running server).
    #[command(subcommand)]
    Incidents(IncidentsCommand),
    /// Start a runbook by hand and follow it until it ends.
    ///
    /// Goes through the server (--server, $LAOJUN_URL) unless --standalone,
    /// which runs it in this process on the store in --data-dir. Exits 0
    /// when the run succeeded, 1 otherwise.
    Run(RunArgs),
    /// Show a run with the state, output and error of each step, or list runs.
    ///
    /// `laojun runs RUN-7` shows one run (a waiting approval with its question,
    /// approvers and deadline); `laojun runs list [--status S] [--incident ID]`
    /// lists the runs of the last 30 days, newest first.
    Runs {
        /// Run id, e.g. RUN-7, or `list`
        id: String,
        /// With `list`: only runs in this state (pending, running, awaiting_approval,
        /// succeeded, failed, interrupted, paused, refused, skipped)
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// With `list`: only the runs of this incident, e.g. INC-4
        #[arg(long, value_name = "ID")]
        incident: Option<crate::ids::IncidentId>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the approval steps waiting for a person: what they ask, of whom, until when.
    Approvals {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve the approval step a run is waiting on.
    Approve {
        /// Run id, e.g. RUN-7
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a run: a waiting step stops at once, a step changing something
    /// finishes its attempt, and no step runs after (its on_failure steps neither).
    Cancel {
        /// Run id, e.g. RUN-7
        id: String,
        /// Why, for the timeline and the audit trail
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take a finished run up again from a step (the one that failed, by default).
    ///
    /// A new run of the same runbook version with the same parameters, on the
    /// same incident; the steps before STEP are not run again and their outputs
    /// are the original run's.
    Retry {
        /// Run id, e.g. RUN-7
        id: String,
        /// Start from this step instead of the one that failed
        #[arg(long = "from", value_name = "STEP")]
        from_step: Option<String>,
        /// Report what every step would do and change nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deny the approval step a run is waiting on (the step fails).
    Deny {
        /// Run id, e.g. RUN-7
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop automation: no run starts, running ones stop before their next step.
    ///
    /// Everything, or with --playbook one playbook. The pause is stored and
    /// holds across restarts until `laojun resume`.
    Pause {
        /// Pause only this playbook
        #[arg(long, value_name = "NAME")]
        playbook: Option<String>,
        /// Why, for the timeline, the audit trail and `GET /api/v1/automation`
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Let automation run again after `pause` (everything, or one --playbook).
    Resume {
        /// Resume only this playbook
        #[arg(long, value_name = "NAME")]
        playbook: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print an incident's postmortem (markdown), or write it to a file.
    Postmortem {
        /// Incident id, e.g. INC-42
        id: String,
        /// Write to this file instead of standard output
        #[arg(short, long, value_name = "FILE")]
        output_file: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List scheduled playbooks and their next fire times (reads playbooks/, no server needed).
    Schedules {
        /// Folder holding playbooks/
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// How many upcoming times to show for each
        #[arg(long, default_value_t = 3)]
        count: usize,
    },
    /// Print the reference of every runbook action and its arguments (markdown).
    Actions,
    /// Show the audit trail: who did what (runs, approvals, notes, resolves, pauses), newest first.
    Audit {
        /// At most this many records
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Name of the runbook (see GET /api/v1/runbooks or runbooks/)
    pub runbook: String,
    /// A parameter, e.g. -p namespace=prod (repeat for more)
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Report what every step would do and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Run in this process instead of through a server
    #[arg(long)]
    pub standalone: bool,
    /// Starting twice with the same key starts one run
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Incident the run acts for (its timeline gets the run), e.g. INC-42
    #[arg(long, value_name = "ID")]
    pub incident: Option<crate::ids::IncidentId>,
    /// With --standalone: service config file [default: laojun.yaml if it exists]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// With --standalone: folder of the store [default: data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// With --standalone: folder holding runbooks/ [default: .]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Service config file [default: laojun.yaml if it exists]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9095]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Folder for the embedded store and postmortems [default: data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Folder holding runbooks/, playbooks/ and templates/ [default: .]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Report what every step would do and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Log format on stderr
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the server is and how to reach it, and how to print its answer.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Output format
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Where the server is and the token to show it.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// laojun server URL, e.g. http://127.0.0.1:9095
    #[arg(
        long,
        env = "LAOJUN_URL",
        default_value = "http://127.0.0.1:9095",
        value_name = "URL",
        value_parser = server_url
    )]
    pub server: String,
    /// API token (prefer the environment variable: arguments show in `ps`)
    #[arg(long, env = "LAOJUN_API_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// A server URL must say `http://` or `https://`: `127.0.0.1:9095` alone
/// would be read as a scheme and a path.
fn server_url(text: &str) -> Result<String, String> {
    if text.starts_with("http://") || text.starts_with("https://") {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} has no scheme; write http://{text} (or https:// for TLS)"
        ))
    }
}

impl ServerArgs {
    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.server, self.token.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestOutput {
    Table,
    Json,
    Junit,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Bring the PostgreSQL schema (store.postgres.url) up to date, as `serve` does at start.
    ///
    /// Runs the migrations the database has not had, under an advisory lock
    /// (replicas starting meanwhile wait). A database migrated by a newer
    /// laojun is refused. Exits 0 when the schema is up to date, 1 otherwise.
    Migrate {
        /// laojun.yaml to read (default: ./laojun.yaml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Copy a sled store (laojun stopped) into PostgreSQL, then verify the counts.
    ///
    /// Reads DATA_DIR/store, migrates the database at URL and writes every
    /// record (incidents, alerts, timelines, episodes, runs, idempotency
    /// keys, audit, pauses, notices, schedule marks). Running it again
    /// changes nothing. Exits 0 when the database reads back as many
    /// records of each kind as the source holds, 1 otherwise.
    Copy {
        /// The data_dir of the sled store (laojun must be stopped).
        #[arg(long, value_name = "DATA_DIR")]
        from: PathBuf,
        /// The database, e.g. postgres://laojun@db/laojun or ${env:LAOJUN_PG_URL}.
        #[arg(long, value_name = "URL")]
        to: String,
        /// The CA (PEM) that signed the database's certificate, for a URL with
        /// sslmode=require (default: the system's CA roots).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// List incidents, newest first.
    List {
        /// Only incidents with this status (any case)
        #[arg(long, ignore_case = true, value_parser = ["open", "mitigated", "resolved"])]
        status: Option<String>,
        /// Only incidents with this severity (any case)
        #[arg(long, ignore_case = true, value_parser = ["P0", "P1", "P2", "P3"])]
        severity: Option<String>,
        /// At most this many
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one incident with its alerts and timeline.
    Show {
        /// Incident id, e.g. INC-42
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Acknowledge an incident: you are on it (the first ack counts).
    Ack {
        /// Incident id, e.g. INC-42
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Name an incident's commander and/or responders.
    Assign {
        /// Incident id, e.g. INC-42
        id: String,
        /// Who leads the response
        #[arg(long)]
        commander: Option<String>,
        /// The responders, replacing the list (repeat, or separate with commas)
        #[arg(long = "responder", value_delimiter = ',')]
        responders: Vec<String>,
        /// Responders to add to the list (repeat, or separate with commas)
        #[arg(long = "add-responder", value_delimiter = ',')]
        add_responders: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set an incident's severity by hand, up or down, saying why.
    Severity {
        /// Incident id, e.g. INC-42
        id: String,
        /// The new severity (any case)
        #[arg(ignore_case = true, value_parser = ["P0", "P1", "P2", "P3"])]
        severity: String,
        /// Why (kept in the incident's severity history)
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resolve an incident by hand.
    Resolve {
        /// Incident id, e.g. INC-42
        id: String,
        /// Why it is over (on the timeline)
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Open a resolved incident again; its group's later alerts join it.
    Reopen {
        /// Incident id, e.g. INC-42
        id: String,
        /// Why it is not over
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a note to an incident's timeline (root cause, impact, action item, ... for the postmortem).
    Note {
        /// Incident id, e.g. INC-42
        id: String,
        /// The text of the note (markdown)
        text: String,
        /// What kind of note (any case)
        #[arg(long, ignore_case = true, default_value = "note", value_parser = ["root_cause", "solution", "prevention", "lesson", "impact", "action_item", "note"])]
        kind: String,
        /// Who does it (action items)
        #[arg(long)]
        owner: Option<String>,
        /// By when, YYYY-MM-DD (action items)
        #[arg(long)]
        due: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
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
    // One runtime for every command; multi-threaded because `serve` and
    // `run --standalone` run the engine on it.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("laojun: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if cli.command.wants_json() {
        ERRORS_AS_JSON.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    runtime.block_on(dispatch(cli.command))
}

impl Command {
    /// Whether the command was asked for `--output json`.
    fn wants_json(&self) -> bool {
        let client = match self {
            Command::Incidents(
                IncidentsCommand::List { client, .. }
                | IncidentsCommand::Show { client, .. }
                | IncidentsCommand::Resolve { client, .. }
                | IncidentsCommand::Ack { client, .. }
                | IncidentsCommand::Assign { client, .. }
                | IncidentsCommand::Note { client, .. },
            ) => client,
            Command::Run(args) => &args.client,
            Command::Validate { output, .. } | Command::Check { output, .. } => return *output == Output::Json,
            Command::Test { output, .. } => return *output == TestOutput::Json,
            Command::Runs { client, .. }
            | Command::Approvals { client }
            | Command::Approve { client, .. }
            | Command::Cancel { client, .. }
            | Command::Retry { client, .. }
            | Command::Deny { client, .. }
            | Command::Pause { client, .. }
            | Command::Resume { client, .. }
            | Command::Audit { client, .. } => client,
            _ => return false,
        };
        client.output == Output::Json
    }
}

async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Validate { dir, output } => local::validate(&dir, output),
        Command::Test {
            dir,
            filter,
            output,
            rbac,
        } => testing::test(dir, filter, output, rbac).await,
        Command::Rbac {
            dir,
            namespaces,
            service_account_namespace,
        } => local::rbac(&dir, &namespaces, &service_account_namespace),
        Command::Check {
            config,
            namespaces,
            output,
        } => serve::check(config.as_deref(), &namespaces, output).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Store(StoreCommand::Migrate { config }) => store::migrate(config.as_deref()).await,
        Command::Store(StoreCommand::Copy { from, to, ca_file }) => store::copy(&from, &to, ca_file.as_deref()).await,
        Command::Incidents(command) => incidents::incidents(command).await,
        Command::Run(args) => runs::run(args).await,
        Command::Runs {
            id,
            status,
            incident,
            client,
        } => {
            if id == "list" {
                runs::list_runs(status.as_deref(), incident, &client).await
            } else if status.is_some() || incident.is_some() {
                usage("--status and --incident go with `laojun runs list`")
            } else {
                runs::show_run(&id, &client).await
            }
        }
        Command::Approvals { client } => runs::approvals(&client).await,
        Command::Cancel { id, reason, client } => runs::cancel(&id, reason.as_deref(), &client).await,
        Command::Retry {
            id,
            from_step,
            dry_run,
            client,
        } => runs::retry(&id, from_step.as_deref(), dry_run, &client).await,
        Command::Approve { id, client } => runs::decide(&id, true, &client).await,
        Command::Deny { id, client } => runs::decide(&id, false, &client).await,
        Command::Postmortem {
            id,
            output_file,
            server,
        } => postmortem::postmortem(&id, output_file.as_deref(), &server).await,
        Command::Schedules { dir, count } => local::schedules(&dir, count),
        Command::Pause {
            playbook,
            reason,
            client,
        } => automation::pause(&client, playbook.as_deref(), reason.as_deref()).await,
        Command::Resume { playbook, client } => automation::resume(&client, playbook.as_deref()).await,
        Command::Actions => local::actions(),
        Command::Audit { limit, client } => automation::audit(limit, &client).await,
    }
}

/// What the exit code says, for scripts (also in the README).
const EXIT_CODES: &str = "Exit codes: 0 done; 1 the operation failed (a run failed, validate found problems, \
any other error answer); 2 bad usage; 3 the server cannot be reached; 4 refused (401/403: the \
token); 5 not found (404).";

/// The exit codes, one per outcome a script may want to tell apart.
pub mod exit {
    pub const DONE: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
    pub const REFUSED: u8 = 4;
    pub const NOT_FOUND: u8 = 5;
}

/// How errors are printed: as text, or as `{"error": ...}` when the
/// command was asked for `--output json`. Set once, before the command runs.
static ERRORS_AS_JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Why a command that talks to the server failed: the server's answer, or a
/// message of the command's own.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Other(String),
}

/// Bad usage clap cannot see: the message on stderr, exit 2.
fn usage(message: &str) -> ExitCode {
    print_error(message);
    ExitCode::from(exit::USAGE)
}

fn print_error(message: &str) {
    if ERRORS_AS_JSON.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{}", serde_json::json!({ "error": message }));
    } else {
        eprintln!("laojun: {message}");
    }
}

/// The exit code for a failure.
fn code_of(failure: &Failure) -> u8 {
    match failure {
        Failure::Client(ClientError::Connect { .. }) => exit::UNREACHABLE,
        Failure::Client(ClientError::Unauthorized { .. } | ClientError::Forbidden { .. }) => exit::REFUSED,
        Failure::Client(ClientError::NotFound { .. }) => exit::NOT_FOUND,
        _ => exit::FAILED,
    }
}

/// Prints a command's text and turns the outcome into the exit code:
/// 0 when it succeeded, 1 when `success` is false or it failed (the
/// failure on stderr).
fn finish(result: Result<String, Failure>, success: bool) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            if success {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            print_error(&e.to_string());
            ExitCode::from(code_of(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_command_definition_passes_claps_own_checks() {
        // Catches clashes such as two arguments sharing `-o`, which clap
        // otherwise reports only when that command is first used.
        Cli::command().debug_assert();
    }

    #[test]
    fn postmortem_takes_dash_o_as_the_file_to_write() {
        let cli = Cli::try_parse_from(["laojun", "postmortem", "INC-7", "-o", "pm.md"]).expect("valid usage");
        let Command::Postmortem { id, output_file, .. } = cli.command else {
            panic!("parsed as another command")
        };
        assert_eq!((id.as_str(), output_file), ("INC-7", Some(PathBuf::from("pm.md"))));
    }

    #[test]
    fn the_other_server_commands_take_dash_o_as_the_output_format() {
        let cli = Cli::try_parse_from(["laojun", "runs", "RUN-7", "-o", "json"]).expect("valid usage");
        let Command::Runs { client, .. } = cli.command else {
            panic!("parsed as another command")
        };
        assert_eq!(client.output, Output::Json);
    }
}
