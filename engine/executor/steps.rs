//! A run's steps, in order: `when`, rendering `with:`, the target lock,
//! then a step's attempts with its timeout, retries (exponential backoff
//! with jitter, only for errors the action calls retryable) and
//! `on_failure`. Each attempt is journaled before it runs.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::values::{incident_value, step_context};
use super::{ExecError, Executor};
use crate::actions::{ActionError, Approvals, Call, Context, Decision, IncidentInfo, Outcome};
use crate::incident::EventKind;
use crate::notices::NoticeKind;
use crate::run::{Run, RunStatus, StepRecord, StepStatus};
use crate::runbook::{OnFailure, Retries, Runbook, Step};

impl Executor {
    /// Runs steps from `from_step` to the end, then journals how the run
    /// ended; answers that end.
    pub(super) async fn execute(
        &self,
        mut run: Run,
        runbook: &Runbook,
        from_step: usize,
    ) -> Result<RunStatus, ExecError> {
        let info = self.incident_info(run.incident);
        let incident = match run.incident {
            Some(id) => self.shared.store.incident(id).ok().flatten(),
            None => None,
        };
        let incident_json = incident
            .as_ref()
            .map(|i| incident_value(i, &self.shared.settings))
            .unwrap_or(json!({}));
        for step in &runbook.steps {
            if run.step(&step.id).is_none() {
                run.steps.push(StepRecord::new(&step.id, step.action.name()));
            }
        }
        run.status = RunStatus::Running;
        let _cancellable = Cancellable::register(self, run.id);
        let mut failed: Option<String> = None;
        for step in &runbook.steps[from_step.min(runbook.steps.len())..] {
            if let Some(why) = self.cancelled(run.id) {
                run.status = RunStatus::Cancelled;
                run.reason = Some(format!("{why} (before step `{}`)", step.id));
                break;
            }
            if let Some(why) = self.blocked(run.playbook.as_deref()) {
                run.status = RunStatus::Paused;
                run.reason = Some(format!("stopped before step `{}`: {why}", step.id));
                break;
            }
            if self.run_step(&mut run, step, &info, &incident_json).await? {
                continue;
            }
            // A cancel ends the run as it is: its on_failure steps do not run.
            if let Some(why) = self.cancelled(run.id) {
                run.status = RunStatus::Cancelled;
                run.reason = Some(format!("{why} (during step `{}`)", step.id));
                break;
            }
            match &step.on_failure {
                OnFailure::Continue => continue,
                OnFailure::Abort => {
                    failed = Some(format!("step `{}` failed", step.id));
                    break;
                }
                OnFailure::Steps(handlers) => {
                    for handler in handlers {
                        run.steps.push(StepRecord {
                            handles_failure_of: Some(step.id.clone()),
                            ..StepRecord::new(&handler.id, handler.action.name())
                        });
                        self.run_step(&mut run, handler, &info, &incident_json).await?;
                    }
                    failed = Some(format!("step `{}` failed (its on_failure steps ran)", step.id));
                    break;
                }
            }
        }
        if run.status == RunStatus::Running {
            run.status = if failed.is_some() {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            };
            run.reason = failed;
        }
        run.finished_at = Some(Utc::now());
        let event = finished_event(&run);
        self.shared.writer.journal(&run, Some(event)).await?;
        tracing::info!(run = %run.id, runbook = %run.runbook, status = run.status.as_str(), "run finished");
        if run.status == RunStatus::Failed && !run.dry_run {
            self.shared.notices.notify(
                NoticeKind::RunFailed,
                format!("run_failed:{}", run.id),
                run.incident,
                crate::notices::text::failed(&run),
            );
        }
        Ok(run.status)
    }

    /// Runs one step with its retries; returns whether it succeeded (or was skipped).
    async fn run_step(
        &self,
        run: &mut Run,
        step: &Step,
        info: &IncidentInfo,
        incident: &Value,
    ) -> Result<bool, ExecError> {
        let context = step_context(run, incident);
        if let Some(cond) = &step.when {
            let sandbox = self.shared.sandbox.clone();
            let script = cond.script.clone();
            let ctx = context.clone();
            let verdict = tokio::task::spawn_blocking(move || sandbox.eval_condition(&script, &ctx))
                .await
                .map_err(|e| ExecError::Unavailable(e.to_string()))?;
            match verdict {
                Ok(true) => {}
                Ok(false) => {
                    let summary = format!("skipped: `{}` is false", cond.source);
                    self.settle(run, step, StepStatus::Skipped, Value::Null, Some(summary), None)
                        .await?;
                    return Ok(true);
                }
                Err(e) => {
                    let error = format!("`when` failed: {}", e.message);
                    self.settle(run, step, StepStatus::Failed, Value::Null, None, Some(error))
                        .await?;
                    return Ok(false);
                }
            }
        }
        let prepared = self
            .shared
            .render
            .args(step, &context, &self.catalog())
            .and_then(|args| Ok((step.action.prepare(args.clone())?, args)));
        let (call, args) = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.settle(run, step, StepStatus::Failed, Value::Null, None, Some(e))
                    .await?;
                return Ok(false);
            }
        };
        let timeout = step.timeout.unwrap_or_else(|| call.timeout());
        let held = match self.acquire(call.targets(), run.id, timeout).await {
            Ok(held) => held,
            Err(e) => {
                self.settle(run, step, StepStatus::Failed, Value::Null, None, Some(e))
                    .await?;
                return Ok(false);
            }
        };
        let result = self.attempts(run, step, call, &args, timeout, info, &context).await;
        // Released before the next step asks: a release still under way
        // could otherwise undo the next step's hold on the same target.
        held.release().await;
        let (status, output, summary, error) = match result? {
            Ok(o) => (StepStatus::Succeeded, o.output, Some(o.summary), None),
            Err(e) if self.cancelled(run.id).is_some() => (StepStatus::Cancelled, Value::Null, None, Some(e.message)),
            Err(e) => (StepStatus::Failed, Value::Null, None, Some(e.message)),
        };
        let ok = status == StepStatus::Succeeded;
        self.settle(run, step, status, output, summary, error).await?;
        Ok(ok)
    }

    /// Tries a step up to its `retries.attempts`, journaling each attempt
    /// before it runs.
    #[allow(clippy::too_many_arguments)] // one step's parts, each used once
    async fn attempts(
        &self,
        run: &mut Run,
        step: &Step,
        call: Call,
        args: &Value,
        timeout: Duration,
        info: &IncidentInfo,
        context: &Value,
    ) -> Result<Result<Outcome, ActionError>, ExecError> {
        let attempts = step.retries.attempts.max(1);
        let waits = step.action.waits_for_a_person() && !run.dry_run;
        let mut call = Some(call);
        let mut last = ActionError::fatal("the step did not run");
        for attempt in 1..=attempts {
            let ask = if waits {
                let ask = serde_json::from_value::<crate::actions::approval::Args>(args.clone())
                    .map(|a| a.ask(Utc::now()))
                    .map_err(|e| ExecError::Conflict(format!("the approval's arguments: {e}")))?;
                let (tx, rx) = oneshot::channel();
                let waiting = super::Waiting {
                    decision: tx,
                    pending: super::PendingApproval {
                        run: run.id,
                        step: step.id.clone(),
                        incident: run.incident,
                        runbook: run.runbook.clone(),
                        message: ask.message.clone(),
                        who: ask.who.clone(),
                        requested_by: run.by.clone(),
                        requested_at: ask.requested_at,
                        expires_at: ask.expires_at,
                    },
                    ask: ask.clone(),
                    started_by_hand: (run.trigger == crate::run::TriggerKind::Manual).then(|| run.by.clone()),
                };
                let mut state = self.state();
                state.approvals.insert(run.id, waiting);
                state.decisions.insert(run.id, rx);
                Some(ask)
            } else {
                None
            };
            let record = record_mut(run, &step.id);
            record.approval = ask;
            record.status = if waits {
                StepStatus::AwaitingApproval
            } else {
                StepStatus::Running
            };
            record.attempts = attempt;
            record.started_at.get_or_insert_with(Utc::now);
            record.error = None;
            run.status = if waits {
                RunStatus::AwaitingApproval
            } else {
                RunStatus::Running
            };
            let event = step_event(run, &step.id);
            if let Err(e) = self.shared.writer.journal(run, Some(event)).await {
                // Not on disk, so not waiting: nobody may decide it.
                if waits {
                    let mut state = self.state();
                    state.approvals.remove(&run.id);
                    state.decisions.remove(&run.id);
                }
                return Err(e.into());
            }
            if waits {
                let pending = self.state().approvals.get(&run.id).map(|w| w.pending.clone());
                if let Some(pending) = pending {
                    self.shared.notices.notify_with(
                        NoticeKind::ApprovalRequested,
                        format!("approval_requested:{}:{}:{attempt}", run.id, step.id),
                        run.incident,
                        crate::notices::text::approval(&pending),
                        crate::notices::buttons::approval(&pending),
                    );
                }
            }
            // The first attempt uses the arguments typed in `run_step`;
            // a retry types them again from the same rendering.
            let this_call = match call.take() {
                Some(c) => Ok(c),
                None => step.action.prepare(args.clone()).map_err(ActionError::fatal),
            };
            let result = match this_call {
                Ok(c) => self.act(run, step, c, info, context, timeout).await,
                Err(e) => Err(e),
            };
            if waits {
                let mut state = self.state();
                state.approvals.remove(&run.id);
                state.decisions.remove(&run.id);
            }
            run.status = RunStatus::Running;
            match result {
                Ok(outcome) => return Ok(Ok(outcome)),
                Err(e) if e.retryable && attempt < attempts => {
                    let wait = backoff(&step.retries, attempt);
                    let record = record_mut(run, &step.id);
                    record.error = Some(format!("{}; retrying in {:.1}s", e.message, wait.as_secs_f64()));
                    record.status = StepStatus::Failed;
                    let event = step_event(run, &step.id);
                    self.shared.writer.journal(run, Some(event)).await?;
                    // Waiting between attempts changes nothing: a cancel ends it.
                    if let Err(why) = self.wait_unless_cancelled(run.id, tokio::time::sleep(wait)).await {
                        return Ok(Err(ActionError::fatal(why)));
                    }
                    last = e;
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Err(last))
    }

    /// One attempt of the action, bounded by the step's timeout.
    async fn act(
        &self,
        run: &Run,
        step: &Step,
        call: Call,
        info: &IncidentInfo,
        context: &Value,
        timeout: Duration,
    ) -> Result<Outcome, ActionError> {
        let approvals = RunApprovals {
            executor: self,
            run,
            step: &step.id,
        };
        let cx = Context {
            backends: &self.shared.backends,
            dry_run: run.dry_run,
            run_id: run.id,
            step_id: &step.id,
            incident: info,
            values: context,
            script: step.script.as_ref(),
            sandbox: &self.shared.sandbox,
            approvals: &approvals,
        };
        let attempt = tokio::time::timeout(timeout, call.run(&cx));
        // A step that only waits stops at once on a cancel; one that changes
        // something finishes its attempt (never aborted half-way).
        let result = if step.action.only_waits() {
            match self.wait_unless_cancelled(run.id, attempt).await {
                Ok(r) => r,
                Err(why) => return Err(ActionError::fatal(why)),
            }
        } else {
            attempt.await
        };
        match result {
            Ok(r) => r,
            Err(_) => Err(ActionError::retry(format!(
                "timed out after {}s (timeout_secs)",
                timeout.as_secs()
            ))),
        }
    }

    /// Awaits `work` unless the run is cancelled first (then: why).
    async fn wait_unless_cancelled<T>(
        &self,
        run: crate::ids::RunId,
        work: impl Future<Output = T>,
    ) -> Result<T, String> {
        let Some(mut signal) = self.cancel_signal(run) else {
            return Ok(work.await);
        };
        tokio::select! {
            done = work => Ok(done),
            why = signal.wait_for(Option::is_some) => match why {
                Ok(why) => Err(why.clone().unwrap_or_default()),
                Err(_) => Err("the run stopped".to_string()),
            },
        }
    }

    /// Records a step's end and journals it.
    async fn settle(
        &self,
        run: &mut Run,
        step: &Step,
        status: StepStatus,
        output: Value,
        summary: Option<String>,
        error: Option<String>,
    ) -> Result<(), ExecError> {
        let record = record_mut(run, &step.id);
        record.status = status;
        record.approval = None;
        record.started_at.get_or_insert_with(Utc::now);
        record.finished_at = Some(Utc::now());
        record.output = output;
        record.summary = summary;
        record.error = error;
        let event = step_event(run, &step.id);
        self.shared.writer.journal(run, Some(event)).await?;
        if step.evidence && run.incident.is_some() && status != StepStatus::Skipped {
            let id = run.id;
            let record = record_mut(run, &step.id);
            let event = EventKind::Evidence {
                run: id,
                step: step.id.clone(),
                action: record.action.clone(),
                summary: record.summary.clone().or_else(|| record.error.clone()),
                output: bounded(&record.output),
            };
            self.shared.writer.journal(run, Some(event)).await?;
        }
        Ok(())
    }
}

/// A run's place in the cancel registry, for as long as it goes on here.
struct Cancellable<'a> {
    executor: &'a Executor,
    run: crate::ids::RunId,
}

impl<'a> Cancellable<'a> {
    fn register(executor: &'a Executor, run: crate::ids::RunId) -> Self {
        let (signal, _) = tokio::sync::watch::channel(None);
        executor.state().cancels.insert(run, signal);
        Cancellable { executor, run }
    }
}

impl Drop for Cancellable<'_> {
    fn drop(&mut self) {
        self.executor.state().cancels.remove(&self.run);
    }
}

/// What an approval step of one run talks to.
struct RunApprovals<'a> {
    executor: &'a Executor,
    run: &'a Run,
    step: &'a str,
}

impl Approvals for RunApprovals<'_> {
    fn decision(&self) -> Option<oneshot::Receiver<Decision>> {
        self.executor.state().decisions.remove(&self.run.id)
    }

    fn record<'a>(&'a self, decision: &'a Decision) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let event = EventKind::Approval {
                run: self.run.id,
                step: self.step.to_string(),
                approved: decision.approved,
                by: decision.by.clone(),
            };
            if let Err(e) = self.executor.shared.writer.journal(self.run, Some(event)).await {
                tracing::error!(run = %self.run.id, error = %e, "could not journal an approval decision");
            }
        })
    }
}

fn record_mut<'a>(run: &'a mut Run, id: &str) -> &'a mut StepRecord {
    if run.step(id).is_none() {
        run.steps.push(StepRecord::new(id, ""));
    }
    run.step_mut(id).expect("the record was just added")
}

fn step_event(run: &Run, id: &str) -> EventKind {
    let r = run.step(id).cloned().unwrap_or_else(|| StepRecord::new(id, ""));
    EventKind::Step {
        run: run.id,
        step: r.id.clone(),
        action: r.action.clone(),
        status: r.status,
        attempt: r.attempts,
        duration_ms: r.duration_ms(),
        summary: r.summary.clone(),
        error: r.error.clone(),
    }
}

/// Evidence kept on a timeline is at most this many bytes of JSON.
const EVIDENCE_BYTES: usize = 4096;

/// `output` as it is when small, else its JSON cut short (as text).
fn bounded(output: &Value) -> Value {
    let text = output.to_string();
    if text.len() <= EVIDENCE_BYTES {
        return output.clone();
    }
    let mut end = EVIDENCE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Value::String(format!("{}… ({} bytes in all)", &text[..end], text.len()))
}

pub(super) fn finished_event(run: &Run) -> EventKind {
    EventKind::RunFinished {
        run: run.id,
        runbook: run.runbook.clone(),
        status: run.status,
        reason: run.reason.clone(),
        duration_ms: run.finished_at.map(|f| (f - run.created_at).num_milliseconds()),
    }
}

/// Exponential backoff with ±25% jitter, capped.
fn backoff(retries: &Retries, attempt: u32) -> Duration {
    let base = retries.backoff.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(20) as i32);
    let capped = base.min(retries.max_backoff.as_secs_f64());
    let jitter = 0.75 + 0.5 * pseudo_random();
    Duration::from_secs_f64((capped * jitter).max(0.0))
}

/// A number in [0, 1) good enough for jitter (spreading retries), not for secrets.
fn pseudo_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_cap() {
        let r = Retries {
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3),
        };
        let first = backoff(&r, 1).as_secs_f64();
        let second = backoff(&r, 2).as_secs_f64();
        let late = backoff(&r, 10).as_secs_f64();
        assert!((0.75..=1.25).contains(&first), "{first}");
        assert!((1.5..=2.5).contains(&second), "{second}");
        assert!((2.25..=3.75).contains(&late), "{late}");
    }
}
