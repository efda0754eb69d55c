//! After a crash or a stop: settles runs a previous process left
//! unfinished, and starts the runbooks of incidents that opened just before
//! it died but had no run journaled yet. A step that was running is re-run
//! only if it is idempotent; otherwise it is marked interrupted and the run
//! stops, loudly (timeline, log, Slack).

use chrono::Utc;

use super::guards::WINDOW_HOURS;
use super::steps::finished_event;
use super::{ExecError, Executor, Trigger};
use crate::effects::Opened;
use crate::run::{Run, RunStatus, StepStatus};
use crate::runbook::{OnFailure, Step};

/// What `recover` found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Unfinished runs settled (resumed, re-run or interrupted).
    pub settled: usize,
    /// Incidents whose runbooks had not started and now have.
    pub started: usize,
}

impl Executor {
    /// Settles unfinished runs and starts runs a crash kept from starting.
    pub async fn recover(&self) -> Result<Recovered, ExecError> {
        let since = Utc::now() - chrono::Duration::hours(WINDOW_HOURS);
        let recent = self.shared.store.runs_since(since)?;
        self.state().history.rebuild(&recent);
        let unfinished = self.shared.store.unfinished_runs()?;
        let settled = unfinished.len();
        for run in unfinished {
            self.settle_unfinished(run).await;
        }
        let started = self.start_lost_runs().await?;
        Ok(Recovered { settled, started })
    }

    async fn settle_unfinished(&self, mut run: Run) {
        let Some(runbook) = self.shared.catalog.runbooks.get(&run.runbook).cloned() else {
            let why = format!("runbook `{}` no longer exists", run.runbook);
            self.interrupt(&mut run, None, why).await;
            return;
        };
        let in_flight = run
            .steps
            .iter()
            .position(|s| matches!(s.status, StepStatus::Running | StepStatus::AwaitingApproval));
        let Some(index) = in_flight else {
            // Journaled but between steps: go on after the last finished one.
            let next = runbook
                .steps
                .iter()
                .position(|s| run.step(&s.id).is_none_or(|r| r.status == StepStatus::Pending))
                .unwrap_or(runbook.steps.len());
            tracing::info!(run = %run.id, "resuming a run left between steps");
            self.spawn(run, runbook, next);
            return;
        };
        let record = run.steps[index].clone();
        let step = find_step(&runbook.steps, &record.id);
        let main_index = runbook.steps.iter().position(|s| s.id == record.id);
        let safe = step.is_some_and(|s| s.idempotent) || record.status == StepStatus::AwaitingApproval;
        match (safe, main_index) {
            (true, Some(i)) => {
                tracing::warn!(run = %run.id, step = %record.id, "re-running an idempotent step that was running when laojun stopped");
                self.spawn(run, runbook, i);
            }
            _ => {
                let why = format!(
                    "laojun stopped while step `{}` ({}) was running; it is not idempotent, so it was not run again. Check its target by hand",
                    record.id, record.action
                );
                self.interrupt(&mut run, Some(index), why).await;
            }
        }
    }

    async fn interrupt(&self, run: &mut Run, step: Option<usize>, reason: String) {
        if let Some(i) = step {
            run.steps[i].status = StepStatus::Interrupted;
            run.steps[i].finished_at = Some(Utc::now());
            run.steps[i].error = Some(reason.clone());
        }
        run.status = RunStatus::Interrupted;
        run.reason = Some(reason.clone());
        run.finished_at = Some(Utc::now());
        let event = finished_event(run);
        if let Err(e) = self.shared.writer.journal(run, Some(event)).await {
            tracing::error!(run = %run.id, error = %e, "could not journal an interrupted run");
        }
        tracing::error!(run = %run.id, %reason, "run interrupted");
        // Say so where people look, without holding up the start: the
        // notice goes out in the background.
        if !run.dry_run {
            self.shared.notices.notify(
                crate::notices::NoticeKind::RunFailed,
                format!("run_failed:{}", run.id),
                run.incident,
                crate::notices::text::failed(run),
            );
        }
    }

    /// An incident committed just before a crash may not have had its runs
    /// journaled yet: start them now rather than lose them.
    async fn start_lost_runs(&self) -> Result<usize, ExecError> {
        let store = &self.shared.store;
        let catalog = &self.shared.catalog;
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
        let mut started = 0;
        for n in with_runbooks {
            let Some(incident) = store.incident_record(n)? else {
                continue;
            };
            if !incident.runs.is_empty() {
                continue;
            }
            let Some(first) = store.incident_alert(incident.id, 0)? else {
                continue;
            };
            let alert = crate::alert::Alert {
                fingerprint: first.fingerprint,
                status: first.status,
                labels: first.labels,
                annotations: first.annotations,
                starts_at: first.starts_at,
                ends_at: first.ends_at,
                generator_url: None,
            };
            started += 1;
            self.start(Trigger::Incident(Box::new(Opened { incident, alert })))
                .await?;
        }
        Ok(started)
    }
}

/// A step by id, among the main steps and their `on_failure` steps.
fn find_step<'a>(steps: &'a [Step], id: &str) -> Option<&'a Step> {
    steps.iter().find_map(|s| {
        if s.id == id {
            return Some(s);
        }
        match &s.on_failure {
            OnFailure::Steps(inner) => find_step(inner, id),
            _ => None,
        }
    })
}
