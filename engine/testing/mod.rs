//! `laojun test`: runbooks and playbooks tested like code. Each case in
//! `runbook-tests/` runs in-process through the real intake, routing,
//! guards, executor and actions, against a fresh fake cluster and a
//! recorder for every HTTP endpoint, on a paused clock (tokio's), so waits,
//! retries and approval TTLs pass in virtual time. Then its expectations
//! are checked against the store, the cluster and what was sent.

pub mod case;
mod check;
pub mod report;
mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actions::approval::Decider;
use crate::config::Config;
use crate::config::Role;
use crate::engine::Engine;
use crate::executor::{ManualRun, Trigger};
use crate::ids::IncidentId;
use crate::run::Run;

pub use case::{Case, TriggerSpec};

/// How one case went.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub file: PathBuf,
    pub pos: crate::yaml::Pos,
    pub failures: Vec<check::Failure>,
    /// Real time the case took.
    pub took: Duration,
    /// The incident's (or the runs') story, for a failing case.
    pub timeline: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Virtual time a case may take before it counts as stuck.
const VIRTUAL_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// Runs one case on a runtime of its own with a paused clock; nothing is
/// shared with another case.
pub fn run_case(case: &Case, root: &Path, rbac: Option<&[serde_json::Value]>) -> Outcome {
    let started = Instant::now();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run_in(case, root, rbac)));
    let (failures, timeline) = match result {
        Ok(done) => done,
        Err(e) => (vec![check::Failure::setup(case, format!("{e:#}"))], Vec::new()),
    };
    Outcome {
        name: case.name.clone(),
        file: case.file.clone(),
        pos: case.pos,
        failures,
        took: started.elapsed(),
        timeline,
    }
}

async fn run_in(
    case: &Case,
    root: &Path,
    rbac: Option<&[serde_json::Value]>,
) -> anyhow::Result<(Vec<check::Failure>, Vec<String>)> {
    let dir = tempfile::tempdir()?;
    let cluster = world::Cluster::start(&case.cluster, dir.path()).await?;
    if let Some(roles) = rbac {
        // Seeded as an administrator would; laojun's own requests are checked.
        cluster.kube.enforce_rbac(roles);
    }
    let recorder = world::Recorder::start(&case.responses).await?;
    let mut config = Config {
        root: root.to_path_buf(),
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.kubernetes.kubeconfig = Some(cluster.kubeconfig.clone());
    config.kubernetes.context = None;
    config.slack.webhook_url = Some(world::SLACK_WEBHOOK.into());
    config.prometheus = crate::config::Endpoint {
        url: Some(world::PROMETHEUS.into()),
        ..Default::default()
    };
    config.alertmanager = crate::config::Endpoint {
        url: Some(world::ALERTMANAGER.into()),
        ..Default::default()
    };
    config.postmortem.write_on_resolve = false;
    // A schedule clock that never moves: only the case starts runs.
    let frozen = Arc::new(crate::scheduler::ManualClock::new(chrono::Utc::now()));
    let engine = Engine::builder(config)
        .http_proxy(&recorder.url)
        .clock(frozen)
        .start()
        .await?;
    let started = tokio::time::Instant::now();
    let (incident, expected_runs) = start(&engine, case).await?;
    let runs = settle(&engine, case, incident, expected_runs, started).await;
    let (runs, stuck) = match runs {
        Ok(runs) => (runs, None),
        Err((runs, why)) => (runs, Some(why)),
    };
    // Let laojun's own notices (posted from tasks of their own) go out.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let seen = check::Seen {
        incident: match incident {
            Some(id) => engine.store.incident(id)?,
            None => None,
        },
        timeline: match incident {
            Some(id) => engine.store.timeline(id)?,
            None => Vec::new(),
        },
        runs,
        requests: recorder.requests(),
        kube: &cluster.kube,
    };
    let mut failures = check::all(case, &seen);
    if let Some(why) = stuck {
        failures.insert(0, check::Failure::setup(case, why));
    }
    let timeline = seen.story();
    drop(seen);
    engine.stop().await?;
    Ok((failures, timeline))
}

/// Starts what the case says; returns the incident it opened (if any) and
/// how many runs the start leads to.
async fn start(engine: &Engine, case: &Case) -> anyhow::Result<(Option<IncidentId>, usize)> {
    let catalog = engine.live.catalog();
    match &case.trigger {
        TriggerSpec::Alert(body) => {
            let (_, alerts) = crate::alert::parse(body).map_err(|e| anyhow::anyhow!("the alert: {}", e.0))?;
            let applied = engine
                .writer
                .alerts(alerts)
                .await
                .map_err(|e| anyhow::anyhow!("storing the alert: {e}"))?;
            let Some(opened) = applied.opened.first() else {
                return Ok((None, 0));
            };
            let runs = catalog
                .playbooks
                .iter()
                .find(|p| p.name == opened.incident.playbook)
                .map_or(0, |p| p.runbooks.len());
            Ok((Some(opened.incident.id), runs))
        }
        TriggerSpec::Schedule(name) => {
            let playbook = catalog
                .playbooks
                .iter()
                .find(|p| &p.name == name)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no playbook {name}"))?;
            let runs = playbook.runbooks.len();
            engine
                .executor
                .start(Trigger::Schedule {
                    playbook,
                    due: chrono::Utc::now(),
                })
                .await
                .map_err(|e| anyhow::anyhow!("starting {name}: {e}"))?;
            Ok((None, runs))
        }
        TriggerSpec::Run { runbook, params } => {
            engine
                .executor
                .start(Trigger::Manual(ManualRun {
                    runbook: runbook.clone(),
                    params: params.clone(),
                    by: "laojun-test".into(),
                    ..ManualRun::default()
                }))
                .await
                .map_err(|e| anyhow::anyhow!("starting {runbook}: {e}"))?;
            Ok((None, 1))
        }
    }
}

/// Decides approvals as the case says and waits (in virtual time) until
/// every run the start leads to has ended.
async fn settle(
    engine: &Engine,
    case: &Case,
    incident: Option<IncidentId>,
    expected: usize,
    started: tokio::time::Instant,
) -> Result<Vec<Run>, (Vec<Run>, String)> {
    let decider = Decider {
        name: "laojun-test".into(),
        role: Role::Admin,
        anonymous: true,
        via: Some("laojun test".into()),
    };
    let mut decided = std::collections::HashSet::new();
    let mut pause = Duration::from_millis(10);
    loop {
        for waiting in engine.executor.approvals() {
            if let Some(approve) = case.approvals.get(&waiting.step) {
                if decided.insert((waiting.run, waiting.step.clone())) {
                    let _ = engine.executor.decide(waiting.run, *approve, &decider);
                }
            }
        }
        let runs = runs_of(engine, incident);
        if runs.len() >= expected && runs.iter().all(|r| r.status.is_finished()) {
            return Ok(runs);
        }
        if started.elapsed() > VIRTUAL_LIMIT {
            let open: Vec<String> = runs
                .iter()
                .filter(|r| !r.status.is_finished())
                .map(|r| format!("{} (`{}`) is {}", r.id, r.runbook, r.status.as_str()))
                .collect();
            return Err((
                runs,
                format!(
                    "the runs did not end within 24 hours of virtual time: {}",
                    open.join(", ")
                ),
            ));
        }
        // The clock is paused: this sleep ends as soon as nothing else is
        // left to do, so growing it up to a second only saves polling.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

fn runs_of(engine: &Engine, incident: Option<IncidentId>) -> Vec<Run> {
    let mut runs = engine
        .store
        .runs_since(chrono::DateTime::<chrono::Utc>::MIN_UTC)
        .unwrap_or_default();
    if let Some(id) = incident {
        runs.retain(|r| r.incident == Some(id));
    }
    runs.sort_by_key(|r| r.id);
    runs
}

/// Runs every case whose name contains `filter`, in file order; with
/// `rbac` (Roles and ClusterRoles), the fake cluster allows only what they
/// grant.
pub fn run_all(root: &Path, cases: &[Case], filter: Option<&str>, rbac: Option<&[serde_json::Value]>) -> Vec<Outcome> {
    cases
        .iter()
        .filter(|c| filter.is_none_or(|f| c.name.contains(f)))
        .map(|c| run_case(c, root, rbac))
        .collect()
}

/// The Kubernetes objects of a multi-document YAML file (`laojun rbac`'s output).
pub fn read_objects(text: &str) -> Result<Vec<serde_json::Value>, String> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(doc).map_err(|e| e.to_string())?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}
