//! The one thread that changes incidents. Requests (webhook bodies, notes,
//! resolves) wait in a bounded queue; the thread takes all that are waiting,
//! applies them and hands their writes to the store. A second thread
//! flushes (group commit: one flush for every batch applied before it) and
//! then answers each request, so the disk syncs one batch while the next is
//! applied. A full queue is refused at once (the webhook answers 503 and
//! AlertManager retries), so memory stays bounded under a storm.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use crate::alert::Alert;
use crate::effects::Effect;
use crate::health::Health;
use crate::ids::IncidentId;
use crate::incident::{EventKind, Incident};
use crate::ledger::{Applied, Change, Changed, Journaled, Ledger, RequestError};
use crate::metrics::Metrics;
use crate::run::{Draft, Run};
use crate::store::Store;

/// How many requests one commit may carry.
const MAX_BATCH: usize = 512;

/// About how many writes go into one atomic store batch. A commit holds
/// several such batches and one flush: sled's cost per write climbs
/// steeply past a few thousand writes in a batch (12 µs a write at 6,400
/// against 3 µs at 512-1,600, measured on this machine), and a 32-body
/// storm of 50-alert bodies makes some 7,000.
const CHUNK_WRITES: usize = 512;

/// One request for the writer thread.
pub enum Request {
    Alerts {
        alerts: Vec<Alert>,
        reply: oneshot::Sender<Result<Applied, Failure>>,
    },
    /// A person's change to an incident (ack, assign, severity, note,
    /// resolve, reopen).
    Change {
        incident: IncidentId,
        change: Change,
        by: String,
        reply: oneshot::Sender<Result<Changed, Failure>>,
    },
    /// Routes alerts by these playbooks from now on (after a reload).
    Playbooks {
        playbooks: Vec<crate::playbook::Playbook>,
        reply: oneshot::Sender<Result<(), Failure>>,
    },
    /// Stores a notice's state.
    Notice {
        notice: Box<crate::notices::Notice>,
        reply: oneshot::Sender<Result<(), Failure>>,
    },
    /// Pauses or resumes, on the pauses as stored now; answers them.
    Automation {
        change: crate::automation::PauseChange,
        reply: oneshot::Sender<Result<crate::automation::Automation, Failure>>,
    },
    /// Signs a web view session in (`Some`) or out (its id hash).
    Session {
        change: SessionChange,
        reply: oneshot::Sender<Result<(), Failure>>,
    },
    /// Records an operator action in the audit trail.
    Audit {
        record: crate::store::Audit,
        reply: oneshot::Sender<Result<(), Failure>>,
    },
    /// Commits what is queued before it, then stops the writer. Later
    /// requests (e.g. from runs still going) are refused.
    Stop,
    /// Journals a run's state (and its incident event) before it acts.
    Run {
        run: Box<Run>,
        event: Option<EventKind>,
        reply: oneshot::Sender<Result<(), Failure>>,
    },
    /// Journals a new run: it gets its id (or an earlier run's, for a
    /// repeated idempotency key).
    NewRun {
        draft: Box<Draft>,
        reply: oneshot::Sender<Result<Journaled, Failure>>,
    },
}

impl Request {
    /// Answers it with a store failure, having done nothing.
    fn refuse(self, why: &str) {
        let failure = || Failure::Unavailable(why.to_string());
        match self {
            Request::Alerts { reply, .. } => drop(reply.send(Err(failure()))),
            Request::Change { reply, .. } => drop(reply.send(Err(failure()))),
            Request::NewRun { reply, .. } => drop(reply.send(Err(failure()))),
            Request::Automation { reply, .. } => drop(reply.send(Err(failure()))),
            Request::Playbooks { reply, .. }
            | Request::Notice { reply, .. }
            | Request::Audit { reply, .. }
            | Request::Session { reply, .. }
            | Request::Run { reply, .. } => drop(reply.send(Err(failure()))),
            Request::Stop => {}
        }
    }
}

/// A web view session signed in, or ended (by its id hash).
pub enum SessionChange {
    Begin(Box<crate::store::Session>),
    End(String),
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The request itself cannot be done (unknown incident, already resolved).
    #[error(transparent)]
    Refused(RequestError),
    /// The store failed; the request is not known to be on disk. Try again
    /// (a retried alert finds its episode if it was kept).
    #[error("the store cannot write now: {0}")]
    Unavailable(String),
    /// The writer cannot take the request now (its queue is full, or it is
    /// stopping); nothing was done. Try again.
    #[error("{0}")]
    Busy(String),
}

/// The sending side, shared by request handlers.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

impl Writer {
    /// Starts the writer thread. Incidents that open or resolve are sent on `effects`
    /// (after their commit) for the executor.
    pub fn start(
        ledger: Ledger,
        store: Arc<dyn Store>,
        capacity: usize,
        metrics: Arc<Metrics>,
        effects: Option<mpsc::UnboundedSender<Effect>>,
        health: Arc<Health>,
    ) -> (Writer, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let handle = std::thread::Builder::new()
            .name("laojun-writer".into())
            .spawn(move || run(ledger, store, rx, metrics, effects, health))
            .expect("the OS can start the writer thread");
        (Writer { tx }, handle)
    }

    /// A webhook body's alerts, answered once they are on disk. Never
    /// waits for room: a full queue is `Unavailable`, so AlertManager
    /// retries instead of holding a connection.
    pub async fn alerts(&self, alerts: Vec<Alert>) -> Result<Applied, Failure> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Request::Alerts { alerts, reply })
            .map_err(|_| Failure::Busy("laojun is busy (intake queue full); retry shortly".into()))?;
        answer.await.map_err(|_| shutting_down())?
    }

    /// Applies a person's change to an incident; answers with the
    /// incident as it is now and whether the change took effect.
    pub async fn change(&self, incident: IncidentId, change: Change, by: &str) -> Result<Changed, Failure> {
        self.ask(|reply| Request::Change {
            incident,
            change,
            by: by.to_string(),
            reply,
        })
        .await
    }

    /// Journals a run's state (and its incident event) and waits until it is on disk.
    pub async fn journal(&self, run: &Run, event: Option<EventKind>) -> Result<(), Failure> {
        self.ask(|reply| Request::Run {
            run: Box::new(run.clone()),
            event,
            reply,
        })
        .await
    }

    /// Journals a new run and waits until it is on disk.
    pub async fn journal_new(&self, draft: Draft) -> Result<Journaled, Failure> {
        self.ask(|reply| Request::NewRun {
            draft: Box::new(draft),
            reply,
        })
        .await
    }

    /// Records who did what and waits until it is on disk. A record that
    /// cannot be written is logged: the action it records happened.
    pub async fn audit(&self, by: &str, action: &str, target: &str, detail: Option<String>) {
        let record = crate::store::Audit {
            at: Utc::now(),
            by: by.into(),
            action: action.into(),
            target: target.into(),
            detail,
        };
        if self.ask(|reply| Request::Audit { record, reply }).await.is_err() {
            tracing::warn!(by, action, target, "the audit record was not written");
        }
    }

    /// Routes the alerts after this request by `playbooks`.
    pub async fn playbooks(&self, playbooks: Vec<crate::playbook::Playbook>) -> Result<(), Failure> {
        self.ask(|reply| Request::Playbooks { playbooks, reply }).await
    }

    /// Stores a notice's state and waits until it is on disk.
    pub async fn notice(&self, notice: crate::notices::Notice) -> Result<(), Failure> {
        self.ask(|reply| Request::Notice {
            notice: Box::new(notice),
            reply,
        })
        .await
    }

    /// Pauses or resumes on the pauses as stored, and waits until the
    /// result is on disk; answers the pauses now in force.
    pub async fn automation(
        &self,
        change: crate::automation::PauseChange,
    ) -> Result<crate::automation::Automation, Failure> {
        self.ask(|reply| Request::Automation { change, reply }).await
    }

    /// Stores a web view session (signed in) and waits until it is on disk.
    pub async fn session(&self, session: crate::store::Session) -> Result<(), Failure> {
        let change = SessionChange::Begin(Box::new(session));
        self.ask(|reply| Request::Session { change, reply }).await
    }

    /// Ends a web view session; its cookie is refused once this returns.
    pub async fn end_session(&self, id_hash: String) -> Result<(), Failure> {
        let change = SessionChange::End(id_hash);
        self.ask(|reply| Request::Session { change, reply }).await
    }

    /// Asks the writer to commit what is queued and stop.
    pub async fn stop(&self) {
        let _ = self.tx.send(Request::Stop).await;
    }

    /// Sends a request, waiting for room (people's requests and run
    /// journals are few), and waits for its answer.
    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<Result<T, Failure>>) -> Request) -> Result<T, Failure> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(request(reply)).await.map_err(|_| shutting_down())?;
        answer.await.map_err(|_| shutting_down())?
    }
}

fn shutting_down() -> Failure {
    Failure::Busy("laojun is shutting down; retry".into())
}

/// How many applied batches may wait for their flush. When the disk falls
/// behind, the writer stops taking requests, the queue fills and webhooks
/// get 503: memory stays bounded.
const FLUSHES_WAITING: usize = 2;

/// A batch applied to the store, to be answered once it is durable.
struct Flush {
    answers: Vec<Answer>,
    closed: Vec<Incident>,
    /// Changed after they resolved (their postmortems are written again).
    changed: Vec<IncidentId>,
    /// What the metrics count once the batch is on disk.
    counts: Vec<Count>,
    started: Instant,
}

/// One thing the metrics count for a committed request.
enum Count {
    /// A run ended (or did not start) with this status.
    Run {
        runbook: String,
        status: &'static str,
    },
    /// A step ended; how long it took.
    Step {
        action: String,
        status: &'static str,
        secs: Option<f64>,
    },
    Milestone(crate::metrics::Milestone, crate::severity::Severity, f64),
}

impl Count {
    fn record(self, metrics: &Metrics) {
        match self {
            Count::Run { runbook, status } => metrics.runs.with_label_values(&[&runbook, status]).inc(),
            Count::Step { action, status, secs } => {
                metrics.steps.with_label_values(&[&action, status]).inc();
                if let Some(secs) = secs {
                    metrics.step_seconds.with_label_values(&[&action]).observe(secs);
                }
            }
            Count::Milestone(milestone, severity, secs) => metrics.observe_milestone(milestone, severity, secs),
        }
    }

    /// What a run journal counts: a run's end, or a step's.
    fn of_journal(run: &Run, event: Option<&EventKind>) -> Option<Count> {
        match event? {
            EventKind::RunFinished { runbook, status, .. } if status.is_finished() => Some(Count::Run {
                runbook: runbook.clone(),
                status: status.as_str(),
            }),
            EventKind::Step {
                action,
                status,
                duration_ms,
                ..
            } if status.is_finished() && !run.dry_run => Some(Count::Step {
                action: action.clone(),
                status: status.as_str(),
                secs: duration_ms.map(|ms| ms as f64 / 1000.0),
            }),
            _ => None,
        }
    }
}

fn run(
    mut intake: Ledger,
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Request>,
    metrics: Arc<Metrics>,
    effects: Option<mpsc::UnboundedSender<Effect>>,
    health: Arc<Health>,
) {
    metrics.set_open_incidents(intake.open_counts());
    // Flushing runs beside applying: while the disk syncs one batch, the
    // next is applied, and one flush covers every batch applied before it.
    let (to_flush, flushes) = std::sync::mpsc::sync_channel::<Flush>(FLUSHES_WAITING);
    let flusher = {
        let (store, metrics, health) = (store.clone(), metrics.clone(), health.clone());
        std::thread::Builder::new()
            .name("laojun-flusher".into())
            .spawn(move || flush_and_answer(store, flushes, metrics, effects, &health))
            .expect("the OS can start the flusher thread")
    };
    // Ends when every sender is gone (shutdown) and the queue is drained.
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let now = Utc::now();
        let started = Instant::now();
        // Other replicas on a shared store wait from here to this commit's
        // end; if one committed since our last commit, what memory holds
        // (open incidents, counters) is read again first.
        let began = store.begin().and_then(|session| {
            if session.stale() {
                intake.reload()?;
            }
            // On a shared store, a run's journal goes in only while this
            // replica's lease on it holds (checked under the lock, so a
            // takeover cannot come between the check and the commit).
            let leased: Vec<_> = batch
                .iter()
                .filter_map(|r| match r {
                    Request::Run { run, .. } => run.lease.clone().map(|l| (run.id, l)),
                    _ => None,
                })
                .collect();
            let held = if leased.is_empty() {
                HashSet::new()
            } else {
                session.held(&leased)?
            };
            // One read for every alert's episode in the batch, not one each.
            let alerts: Vec<&Alert> = batch
                .iter()
                .filter_map(|r| match r {
                    Request::Alerts { alerts, .. } => Some(alerts.iter()),
                    _ => None,
                })
                .flatten()
                .collect();
            if !alerts.is_empty() {
                intake.prefetch_episodes(&alerts)?;
            }
            Ok((session, held))
        });
        let (session, held) = match began {
            Ok(began) => began,
            Err(e) => {
                let e = e.to_string();
                tracing::error!(error = %e, "store failed; the requests of this batch are refused with 503");
                health.store_failed(&e);
                let mut stop = false;
                for request in batch {
                    match request {
                        Request::Stop => stop = true,
                        other => other.refuse(&e),
                    }
                }
                if stop {
                    break;
                }
                continue;
            }
        };
        let mut answers = Vec::with_capacity(batch.len());
        let mut stop = false;
        let mut chunks = Vec::new();
        let mut counts = Vec::new();
        for request in batch {
            let request = match request {
                Request::Stop => {
                    stop = true;
                    continue;
                }
                Request::Run { run, reply, .. } if run.lease.is_some() && !held.contains(&run.id) => {
                    tracing::warn!(run = %run.id, "not journaled: another replica holds the run now");
                    let _ = reply.send(Err(Failure::Refused(RequestError::LeaseLost(run.id))));
                    continue;
                }
                other => other,
            };
            answers.push(apply(&mut intake, request, now, &mut counts));
            // A chunk holds whole requests, so each request's writes land together.
            if intake.writes_waiting() >= CHUNK_WRITES {
                chunks.push(intake.take_writes());
            }
        }
        chunks.push(intake.take_writes());
        chunks.retain(|c| !c.is_empty());
        // A request the store failed under (a read) may have made half its
        // writes: commit nothing of this batch rather than half a request.
        let applied = if let Some(failed) = answers.iter().find_map(Answer::store_failure) {
            Err(failed)
        } else if chunks.is_empty() {
            Ok(())
        } else {
            session.apply(chunks).map_err(|e| e.to_string())
        };
        match applied {
            Ok(()) => {
                intake.committed();
                metrics.set_open_incidents(intake.open_counts());
                let closed = intake.take_closed();
                let changed = intake.take_changed();
                counts.extend(
                    intake
                        .take_milestones()
                        .into_iter()
                        .map(|(m, s, secs)| Count::Milestone(m, s, secs)),
                );
                // Blocks while the flusher is FLUSHES_WAITING behind.
                if to_flush
                    .send(Flush {
                        answers,
                        closed,
                        changed,
                        counts,
                        started,
                    })
                    .is_err()
                {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store failed; the requests of this batch are refused with 503");
                health.store_failed(&e);
                intake.take_changed();
                intake.take_milestones();
                if let Err(e) = intake.reload() {
                    tracing::error!(error = %e, "reloading state from the store failed");
                }
                for answer in answers {
                    answer.send_err(&e);
                }
            }
        }
        if stop {
            break;
        }
    }
    drop(to_flush);
    if let Err(panic) = flusher.join() {
        // Not a clean stop: say so the way the writer itself would.
        std::panic::resume_unwind(panic);
    }
}

/// Flushes what the writer applied and then answers it, in order: a
/// requester hears 200 only for writes that are on disk, and runbooks start
/// only for incidents that are.
fn flush_and_answer(
    store: Arc<dyn Store>,
    flushes: std::sync::mpsc::Receiver<Flush>,
    metrics: Arc<Metrics>,
    effects: Option<mpsc::UnboundedSender<Effect>>,
    health: &Health,
) {
    // Effects of batches whose flush failed. Their writes stay applied (a
    // retried alert finds its episode and opens nothing), so they are sent
    // once a later flush has made those writes durable: the incident's
    // runbooks start late rather than never.
    let mut owed: Vec<Effect> = Vec::new();
    let send = |effect| {
        if let Some(tx) = &effects {
            let _ = tx.send(effect);
        }
    };
    while let Ok(first) = flushes.recv() {
        let mut waiting = vec![first];
        waiting.extend(flushes.try_iter());
        let flushed = flush_with_retries(&*store);
        for batch in &waiting {
            metrics
                .store_write_seconds
                .observe(batch.started.elapsed().as_secs_f64());
        }
        match flushed {
            Ok(()) => {
                health.store_ok();
                owed.drain(..).for_each(send);
                for batch in waiting {
                    batch.counts.into_iter().for_each(|c| c.record(&metrics));
                    for answer in batch.answers {
                        answer.send_ok(effects.as_ref());
                    }
                    for incident in batch.closed {
                        send(Effect::Resolved(Box::new(incident)));
                    }
                    batch.changed.into_iter().map(Effect::Changed).for_each(send);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "flushing failed; the requests waiting on it are refused with 503");
                health.store_failed(&e);
                for batch in waiting {
                    for answer in batch.answers {
                        owed.extend(answer.opened());
                        answer.send_err(&e);
                    }
                    owed.extend(batch.closed.into_iter().map(|i| Effect::Resolved(Box::new(i))));
                    owed.extend(batch.changed.into_iter().map(Effect::Changed));
                }
            }
        }
    }
}

/// A flush, tried again twice (after 50 and 200 ms) before the batches
/// waiting on it are refused: a disk that hiccups once costs a pause, not
/// a round of 503s.
fn flush_with_retries(store: &dyn Store) -> Result<(), String> {
    let mut pauses = [50, 200].into_iter();
    loop {
        match store.flush() {
            Ok(()) => return Ok(()),
            Err(e) => match pauses.next() {
                Some(ms) => {
                    tracing::warn!(error = %e, "flushing failed; trying again in {ms} ms");
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
                None => return Err(e.to_string()),
            },
        }
    }
}

/// A request applied in memory, waiting for its commit to be answered.
enum Answer {
    Alerts(oneshot::Sender<Result<Applied, Failure>>, Result<Applied, Failure>),
    Done(oneshot::Sender<Result<(), Failure>>, Result<(), Failure>),
    Change(oneshot::Sender<Result<Changed, Failure>>, Result<Changed, Failure>),
    Run(oneshot::Sender<Result<(), Failure>>, Result<(), Failure>),
    NewRun(oneshot::Sender<Result<Journaled, Failure>>, Result<Journaled, Failure>),
    Automation(
        oneshot::Sender<Result<crate::automation::Automation, Failure>>,
        Result<crate::automation::Automation, Failure>,
    ),
}

/// Applies one request; what the metrics count for it goes to `counts`.
fn apply(intake: &mut Ledger, request: Request, now: chrono::DateTime<Utc>, counts: &mut Vec<Count>) -> Answer {
    match request {
        Request::Alerts { alerts, reply } => {
            let r = intake
                .apply(&alerts, now)
                .map_err(|e| Failure::Unavailable(e.to_string()));
            Answer::Alerts(reply, r)
        }
        Request::Change {
            incident,
            change,
            by,
            reply,
        } => {
            let r = intake.change(incident, change, &by, now).map_err(refused);
            Answer::Change(reply, r)
        }
        Request::Run { run, event, reply } => {
            let count = Count::of_journal(&run, event.as_ref());
            let r = intake.journal_run(*run, event, now).map_err(refused);
            counts.extend(count.filter(|_| r.is_ok()));
            Answer::Run(reply, r)
        }
        Request::NewRun { draft, reply } => {
            // A run journaled already finished did not start (a guard, a pause).
            let count = draft.status.is_finished().then(|| Count::Run {
                runbook: draft.runbook.clone(),
                status: draft.status.as_str(),
            });
            let r = intake.journal_new(*draft, now).map_err(refused);
            if r.as_ref().is_ok_and(|j| !j.duplicate) {
                counts.extend(count);
            }
            Answer::NewRun(reply, r)
        }
        Request::Audit { record, reply } => {
            intake.audit(record);
            Answer::Done(reply, Ok(()))
        }
        Request::Playbooks { playbooks, reply } => {
            intake.set_playbooks(playbooks);
            Answer::Done(reply, Ok(()))
        }
        Request::Notice { notice, reply } => {
            intake.notice(*notice);
            Answer::Done(reply, Ok(()))
        }
        Request::Automation { change, reply } => {
            let r = intake
                .automation(&change)
                .map_err(|e| Failure::Unavailable(e.to_string()));
            Answer::Automation(reply, r)
        }
        Request::Session { change, reply } => {
            intake.session(match change {
                SessionChange::Begin(session) => crate::store::Write::Session(*session),
                SessionChange::End(id_hash) => crate::store::Write::SessionEnded(id_hash),
            });
            Answer::Done(reply, Ok(()))
        }
        Request::Stop => unreachable!("Stop is handled by the loop"),
    }
}

fn refused(e: RequestError) -> Failure {
    match e {
        RequestError::Store(s) => Failure::Unavailable(s.to_string()),
        other => Failure::Refused(other),
    }
}

impl Answer {
    /// Why the store failed this request, if it did.
    fn store_failure(&self) -> Option<String> {
        let failure = match self {
            Answer::Alerts(_, Err(f)) => f,
            Answer::Done(_, Err(f)) => f,
            Answer::Change(_, Err(f)) => f,
            Answer::Run(_, Err(f)) => f,
            Answer::NewRun(_, Err(f)) => f,
            Answer::Automation(_, Err(f)) => f,
            _ => return None,
        };
        match failure {
            Failure::Unavailable(why) => Some(why.clone()),
            Failure::Refused(_) | Failure::Busy(_) => None,
        }
    }

    /// The incidents this request opened, as effects.
    fn opened(&self) -> Vec<Effect> {
        match self {
            Answer::Alerts(_, Ok(applied)) => applied
                .opened
                .iter()
                .map(|o| Effect::Opened(Box::new(o.clone())))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn send_ok(self, effects: Option<&mpsc::UnboundedSender<Effect>>) {
        if let Some(tx) = effects {
            for effect in self.opened() {
                let _ = tx.send(effect);
            }
        }
        // A requester that went away (client hung up) is no reason to stop.
        match self {
            Answer::Alerts(reply, result) => {
                let _ = reply.send(result);
            }
            Answer::Done(reply, result) => {
                let _ = reply.send(result);
            }
            Answer::Change(reply, result) => {
                let _ = reply.send(result);
            }
            Answer::Run(reply, result) => {
                let _ = reply.send(result);
            }
            Answer::NewRun(reply, result) => {
                let _ = reply.send(result);
            }
            Answer::Automation(reply, result) => {
                let _ = reply.send(result);
            }
        }
    }

    fn send_err(self, why: &str) {
        let failure = || Failure::Unavailable(why.to_string());
        match self {
            Answer::Alerts(reply, _) => {
                let _ = reply.send(Err(failure()));
            }
            Answer::Done(reply, r) => {
                let _ = reply.send(r.and(Err(failure())));
            }
            Answer::Change(reply, r) => {
                let _ = reply.send(r.and_then(|_| Err(failure())));
            }
            Answer::Run(reply, r) => {
                let _ = reply.send(r.and_then(|_| Err(failure())));
            }
            Answer::NewRun(reply, r) => {
                let _ = reply.send(r.and_then(|_| Err(failure())));
            }
            Answer::Automation(reply, r) => {
                let _ = reply.send(r.and_then(|_| Err(failure())));
            }
        }
    }
}
