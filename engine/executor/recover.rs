//! After a crash or a stop: settles runs a previous process left
//! unfinished, and starts the runbooks of incidents that opened just before
//! it died but had no run journaled yet. A step that was running is re-run
//! only if it is idempotent; otherwise it is marked interrupted and the run
//! stops, loudly (timeline, log, Slack).

use chrono::{DateTime, Utc};

use std::collections::HashMap;

use super::guards::WINDOW_HOURS;
use super::start::{Firing, Progress};
use super::steps::finished_event;
use super::{ExecError, Executor, Trigger};
use crate::effects::Opened;
use crate::ids::RunId;
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

/// A playbook firing that journaled some of its runs but not all.
struct CutShort {
    /// Its unfinished run, if one is.
    waits_on: Option<RunId>,
    firing: Firing,
    progress: Progress,
    /// When its runs last moved.
    latest: DateTime<Utc>,
}

/// What settling an unfinished run did.
enum Settled {
    /// It goes on from this step (an idempotent one re-runs).
    Resume(Box<(Run, crate::runbook::Runbook)>, usize),
    /// It ended here (interrupted).
    Ended(RunStatus),
}

impl Executor {
    /// Settles unfinished runs, goes on with playbook firings a crash cut
    /// short, and starts runs a crash kept from starting. On a store
    /// replicas share, only runs whose lease lapsed are this replica's to
    /// settle (it takes them over); the others belong to live replicas.
    pub async fn recover(&self) -> Result<Recovered, ExecError> {
        let since = Utc::now() - chrono::Duration::hours(WINDOW_HOURS);
        let recent = self.shared.store.runs_since(since)?;
        self.state().history.rebuild(&recent);
        let unfinished = match self.shared.store.replica() {
            Some(_) => self.taken_over().await?,
            None => self.shared.store.unfinished_runs()?,
        };
        let settled = unfinished.len();
        let started = self.settle_runs(unfinished, true).await?;
        Ok(Recovered { settled, started })
    }

    /// Settles `unfinished` runs (this replica's now), and goes on with
    /// the playbook firings that wait on them. `at_start`: also the
    /// firings cut short between entries and incidents whose runs never
    /// started — on a shared store only those quiet for a whole lease,
    /// since a live replica journals its next run at once.
    pub(super) async fn settle_runs(&self, unfinished: Vec<Run>, at_start: bool) -> Result<usize, ExecError> {
        let quiet_since = self
            .shared
            .store
            .replica()
            .map(|r| Utc::now() - chrono::Duration::from_std(r.lease).unwrap_or_default());
        let ours: std::collections::HashSet<RunId> = unfinished.iter().map(|r| r.id).collect();
        let mut waiting_on = HashMap::new();
        for CutShort {
            waits_on,
            firing,
            progress,
            latest,
        } in self.cut_short_firings()?
        {
            match waits_on {
                Some(run) if ours.contains(&run) => {
                    waiting_on.insert(run, (firing, progress));
                }
                // Another replica holds the run the firing waits for.
                Some(_) => {}
                None if at_start && quiet_since.is_none_or(|q| latest < q) => {
                    tracing::warn!(incident = ?firing.incident, "going on with a playbook a restart cut short");
                    let this = self.clone();
                    tokio::spawn(async move { this.run_entries_from(firing, progress).await });
                }
                None => {}
            }
        }
        for run in unfinished {
            let then = waiting_on.remove(&run.id);
            let this = self.clone();
            match self.settle_unfinished(run).await {
                Settled::Resume(parts, from) => {
                    let (run, runbook) = *parts;
                    tokio::spawn(async move {
                        let (id, name) = (run.id, run.runbook.clone());
                        let status = match this.execute(run, &runbook, from).await {
                            Ok(status) => status,
                            Err(e) => {
                                super::stopped(id, &e);
                                return;
                            }
                        };
                        if let Some((firing, progress)) = then {
                            this.go_on(firing, progress, &name, status).await;
                        }
                    });
                }
                Settled::Ended(status) => {
                    if let Some((firing, progress)) = then {
                        let name = firing.playbook.runbooks.get(progress.next).map(|c| c.runbook.clone());
                        tokio::spawn(
                            async move { this.go_on(firing, progress, &name.unwrap_or_default(), status).await },
                        );
                    }
                }
            }
        }
        if at_start {
            self.start_lost_runs(quiet_since).await
        } else {
            Ok(0)
        }
    }

    /// After the entry `progress.next` ended with `status`: the rest.
    async fn go_on(&self, firing: Firing, mut progress: Progress, runbook: &str, status: RunStatus) {
        if let Some(call) = firing.playbook.runbooks.get(progress.next) {
            let call = call.clone();
            progress.ended(&call, runbook, status);
            self.run_entries_from(firing, progress).await;
        }
    }

    /// Open incidents whose playbook journaled some of its runs but not
    /// all (laojun stopped during or between them): the firing, how far it
    /// got, the unfinished run it waits for, if one is, and when its runs
    /// last moved.
    fn cut_short_firings(&self) -> Result<Vec<CutShort>, ExecError> {
        let store = &self.shared.store;
        let mut open = Vec::new();
        store.each_open(&mut |entry| open.push(entry.incident))?;
        let mut out = Vec::new();
        for id in open {
            let Some(inc) = store.incident_record(id)? else {
                continue;
            };
            let catalog = self.catalog();
            let Some(playbook) = catalog.playbooks.iter().find(|p| p.name == inc.playbook) else {
                continue;
            };
            let mut runs = Vec::new();
            for run_id in &inc.runs {
                runs.extend(
                    store
                        .run(*run_id)?
                        .filter(|r| r.playbook.as_deref() == Some(&playbook.name)),
                );
            }
            runs.sort_by_key(|r| r.id);
            if runs.is_empty() || runs.len() >= playbook.runbooks.len() {
                continue;
            }
            let alert = runs[0].alert.clone();
            let Some(firing) = self.incident_firing(&inc, alert) else {
                continue;
            };
            let mut progress = Progress::default();
            let mut last = None;
            let latest = runs
                .iter()
                .map(|r| r.finished_at.unwrap_or(r.created_at))
                .max()
                .unwrap_or(inc.opened_at);
            for (run, call) in runs.iter().zip(&playbook.runbooks) {
                if run.status.is_finished() {
                    progress.ended(call, &run.runbook, run.status);
                } else {
                    last = Some(run.id);
                }
            }
            out.push(CutShort {
                waits_on: last,
                firing,
                progress,
                latest,
            });
        }
        Ok(out)
    }

    /// Decides how an unfinished run goes on: from the step after the last
    /// finished one, re-running an idempotent step that was running, or
    /// not at all (interrupted).
    async fn settle_unfinished(&self, mut run: Run) -> Settled {
        let Some(runbook) = self.catalog().runbooks.get(&run.runbook).cloned() else {
            let why = format!("runbook `{}` no longer exists", run.runbook);
            self.interrupt(&mut run, None, why).await;
            return Settled::Ended(RunStatus::Interrupted);
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
            return Settled::Resume(Box::new((run, runbook)), next);
        };
        let record = run.steps[index].clone();
        let step = find_step(&runbook.steps, &record.id);
        let main_index = runbook.steps.iter().position(|s| s.id == record.id);
        let safe = step.is_some_and(|s| s.idempotent) || record.status == StepStatus::AwaitingApproval;
        match (safe, main_index) {
            (true, Some(i)) => {
                tracing::warn!(run = %run.id, step = %record.id, "re-running an idempotent step that was running when laojun stopped");
                Settled::Resume(Box::new((run, runbook)), i)
            }
            _ => {
                let why = format!(
                    "laojun stopped while step `{}` ({}) was running; it is not idempotent, so it was not run again. Check its target by hand",
                    record.id, record.action
                );
                self.interrupt(&mut run, Some(index), why).await;
                Settled::Ended(RunStatus::Interrupted)
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
    /// journaled yet: start them now rather than lose them (on a shared
    /// store, only incidents opened before `quiet_since`).
    async fn start_lost_runs(&self, quiet_since: Option<DateTime<Utc>>) -> Result<usize, ExecError> {
        let store = &self.shared.store;
        let catalog = self.catalog();
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
            if !incident.runs.is_empty() || quiet_since.is_some_and(|q| incident.opened_at >= q) {
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
                generator_url: first.generator_url,
                extras: first.extras,
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
