//! What laojun posts to Slack by itself, so nothing important happens in
//! silence: an incident opened (P0 and P1 by default), a run that did not
//! start, a run that failed or was interrupted, an approval requested, an
//! incident resolved. Each notice is journaled before it is posted and
//! posted once: a notice a crash kept from going out is posted at the next
//! start; a post that keeps failing is retried, then recorded as failed.
//! Posting happens in a task of its own and never holds a run up.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actions::{slack, Backends, IncidentInfo};
use crate::config::Notifications;
use crate::ids::IncidentId;
use crate::store::Store;
use crate::writer::Writer;

/// The kinds of notice, as `notifications.on` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    IncidentOpened,
    RunNotStarted,
    RunFailed,
    ApprovalRequested,
    IncidentResolved,
}

impl NoticeKind {
    pub const ALL: &'static [NoticeKind] = &[
        NoticeKind::IncidentOpened,
        NoticeKind::RunNotStarted,
        NoticeKind::RunFailed,
        NoticeKind::ApprovalRequested,
        NoticeKind::IncidentResolved,
    ];
}

/// Where a notice stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeState {
    /// Journaled, not yet posted.
    Pending,
    Sent,
    /// Every attempt failed; `error` says why.
    Failed,
}

/// One notice, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// What it is about, e.g. `incident_opened:INC-3`: one notice per id.
    pub id: String,
    pub kind: NoticeKind,
    pub incident: Option<IncidentId>,
    /// Slack mrkdwn; every value in it is escaped.
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub state: NoticeState,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Buttons under the message (only when Slack interactivity is on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<slack::Button>,
}

/// How often a post is tried, and the first pause between tries.
const ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_secs(1);

/// Posts notices; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    store: Arc<dyn Store>,
    backends: Arc<Backends>,
    settings: Notifications,
    external_url: Option<String>,
    metrics: Arc<crate::metrics::Metrics>,
    /// `slack.signing_secret` is set: notices carry buttons.
    interactive: bool,
    /// Notices being posted by this process now: `post_pending` (every
    /// third of a lease on a shared store) leaves them to the post going on.
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Notifier {
    pub fn new(
        writer: Writer,
        store: Arc<dyn Store>,
        backends: Arc<Backends>,
        settings: Notifications,
        external_url: Option<String>,
        metrics: Arc<crate::metrics::Metrics>,
        interactive: bool,
    ) -> Self {
        Notifier {
            inner: Arc::new(Inner {
                writer,
                store,
                backends,
                settings,
                external_url,
                metrics,
                interactive,
                in_flight: Default::default(),
            }),
        }
    }

    /// Whether notices of `kind` are posted at all (Slack configured, and
    /// `notifications.on` names it).
    pub fn wants(&self, kind: NoticeKind) -> bool {
        self.inner.backends.slack_webhook.is_some() && self.inner.settings.on.contains(&kind)
    }

    /// Whether an incident of this severity gets an "opened" notice.
    pub fn wants_opened(&self, severity: crate::severity::Severity) -> bool {
        self.wants(NoticeKind::IncidentOpened) && self.inner.settings.opened_severities.contains(&severity)
    }

    /// Base URL people reach laojun at, for links.
    pub fn link(&self, path: &str) -> Option<String> {
        self.inner
            .external_url
            .as_ref()
            .map(|u| format!("{}{path}", u.trim_end_matches('/')))
    }

    /// Journals and posts a notice, in the background; does nothing when
    /// the kind is not wanted or a notice with this id was journaled before.
    pub fn notify(&self, kind: NoticeKind, id: String, incident: Option<IncidentId>, text: String) {
        self.notify_with(kind, id, incident, text, Vec::new());
    }

    /// `notify` with buttons, which are left off unless Slack
    /// interactivity is on (`slack.signing_secret`).
    pub fn notify_with(
        &self,
        kind: NoticeKind,
        id: String,
        incident: Option<IncidentId>,
        text: String,
        buttons: Vec<slack::Button>,
    ) {
        if !self.wants(kind) {
            return;
        }
        let buttons = if self.inner.interactive { buttons } else { Vec::new() };
        let this = self.clone();
        tokio::spawn(async move {
            let seen = {
                let (store, id) = (this.inner.store.clone(), id.clone());
                tokio::task::spawn_blocking(move || store.notice(&id)).await
            };
            match seen {
                Ok(Ok(Some(_))) => return,
                Ok(Ok(None)) => {}
                _ => tracing::warn!(notice = %id, "could not tell whether this notice went out before; posting it"),
            }
            let notice = Notice {
                id,
                kind,
                incident,
                text,
                created_at: Utc::now(),
                state: NoticeState::Pending,
                attempts: 0,
                error: None,
                buttons,
            };
            if let Err(e) = this.inner.writer.notice(notice.clone()).await {
                tracing::error!(notice = %notice.id, error = %e, "a notice could not be journaled; posting it anyway");
            }
            this.post(notice).await;
        });
    }

    /// Posts the notices a previous process journaled but did not post
    /// (on a shared store: those whose poster's claim lapsed; replicas call
    /// this every third of a lease). Answers how many it took on.
    pub async fn post_pending(&self) -> usize {
        let store = self.inner.store.clone();
        let pending = match tokio::task::spawn_blocking(move || store.pending_notices()).await {
            Ok(Ok(list)) => list,
            _ => {
                tracing::error!("could not read the notices waiting to be posted");
                return 0;
            }
        };
        let mut count = 0;
        for notice in pending {
            if self.in_flight().contains(&notice.id) || !self.claimed(&notice.id).await {
                continue;
            }
            count += 1;
            let this = self.clone();
            tokio::spawn(async move { this.post(notice).await });
        }
        count
    }

    /// Whether this replica may post the notice now (always on a store
    /// only it writes). A store that cannot tell is taken as a yes: a
    /// notice posted twice beats one never posted.
    async fn claimed(&self, id: &str) -> bool {
        let (store, id) = (self.inner.store.clone(), id.to_string());
        match tokio::task::spawn_blocking(move || store.claim_notice(&id)).await {
            Ok(Ok(claimed)) => claimed,
            _ => true,
        }
    }

    /// Tries the post up to `ATTEMPTS` times, then journals how it ended;
    /// nothing when this process is posting it already.
    async fn post(&self, notice: Notice) {
        let id = notice.id.clone();
        if !self.in_flight().insert(id.clone()) {
            return;
        }
        self.post_once(notice).await;
        self.in_flight().remove(&id);
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn post_once(&self, mut notice: Notice) {
        let info = IncidentInfo {
            id: notice.incident.map(|i| i.to_string()).unwrap_or_default(),
            link: notice.incident.and_then(|i| self.link(&crate::incident::page_path(i))),
            ..IncidentInfo::default()
        };
        let args = slack::Args {
            text: Some(notice.text.clone()),
            channel: self.inner.settings.channel.clone(),
            ..slack::Args::default()
        };
        let mut wait = BACKOFF;
        loop {
            // On a store replicas share, one of them posts it: the one that
            // journaled it, or whoever claims it once that one's claim lapsed.
            if !self.claimed(&notice.id).await {
                tracing::info!(notice = %notice.id, "another replica posts this notice");
                return;
            }
            notice.attempts += 1;
            let sent = tokio::time::timeout(
                Duration::from_secs(30),
                slack::notify_with(&args, &info, &self.inner.backends, false, &notice.buttons),
            )
            .await;
            match sent {
                Ok(Ok(_)) => {
                    notice.state = NoticeState::Sent;
                    notice.error = None;
                    break;
                }
                Ok(Err(e)) if e.retryable && notice.attempts < ATTEMPTS => notice.error = Some(e.message),
                Ok(Err(e)) => {
                    notice.state = NoticeState::Failed;
                    notice.error = Some(e.message);
                    break;
                }
                Err(_) if notice.attempts < ATTEMPTS => notice.error = Some("Slack did not answer within 30s".into()),
                Err(_) => {
                    notice.state = NoticeState::Failed;
                    notice.error = Some("Slack did not answer within 30s".into());
                    break;
                }
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        let outcome = if notice.state == NoticeState::Failed {
            tracing::warn!(notice = %notice.id, error = ?notice.error, "a notice could not be posted to Slack");
            "failed"
        } else {
            "sent"
        };
        self.inner.metrics.notifications.with_label_values(&[outcome]).inc();
        if let Err(e) = self.inner.writer.notice(notice.clone()).await {
            tracing::error!(notice = %notice.id, error = %e, "how a notice ended could not be journaled");
        }
    }
}

/// The buttons of the notices that ask a person to decide.
pub mod buttons {
    use super::slack::Button;
    use crate::ids::IncidentId;
    use crate::run::PendingApproval;

    /// Approve and Deny, valued `RUN-3:step`.
    pub fn approval(a: &PendingApproval) -> Vec<Button> {
        let value = format!("{}:{}", a.run, a.step);
        vec![
            Button {
                action_id: "approve".into(),
                text: "Approve".into(),
                value: value.clone(),
                style: Some("primary".into()),
            },
            Button {
                action_id: "deny".into(),
                text: "Deny".into(),
                value,
                style: Some("danger".into()),
            },
        ]
    }

    /// Acknowledge, valued with the incident id.
    pub fn ack(id: IncidentId) -> Vec<Button> {
        vec![Button {
            action_id: "ack".into(),
            text: "Acknowledge".into(),
            value: id.to_string(),
            style: None,
        }]
    }
}

/// The texts, each value escaped for Slack (labels cannot make mentions
/// or links).
pub mod text {
    use super::slack::escape;
    use crate::incident::Incident;
    use crate::run::{PendingApproval, Run};
    use crate::timing::Times;

    pub fn opened(inc: &Incident) -> String {
        format!(
            ":rotating_light: {} ({}) opened: {} (playbook `{}`). Acknowledge with `laojun incidents ack {}`.",
            inc.id,
            inc.severity,
            escape(&inc.title),
            escape(&inc.playbook),
            inc.id
        )
    }

    pub fn not_started(run: &Run) -> String {
        format!(
            ":no_entry: {} (`{}`){} did not start: {}",
            run.id,
            escape(&run.runbook),
            run.incident.map(|i| format!(" for {i}")).unwrap_or_default(),
            escape(run.reason.as_deref().unwrap_or("no reason was recorded"))
        )
    }

    pub fn failed(run: &Run) -> String {
        let step = run
            .steps
            .iter()
            .find(|s| matches!(s.status.as_str(), "failed" | "interrupted") && s.handles_failure_of.is_none());
        let at = step
            .map(|s| {
                format!(
                    " at step `{}`: {}",
                    escape(&s.id),
                    escape(s.error.as_deref().unwrap_or("no error was recorded"))
                )
            })
            .unwrap_or_else(|| {
                format!(
                    ": {}",
                    escape(run.reason.as_deref().unwrap_or("no reason was recorded"))
                )
            });
        let ended = match run.status {
            crate::run::RunStatus::Interrupted => "was interrupted",
            _ => "failed",
        };
        format!(
            ":x: {} (`{}`){} {ended}{at}",
            run.id,
            escape(&run.runbook),
            run.incident.map(|i| format!(" for {i}")).unwrap_or_default(),
        )
    }

    pub fn approval(a: &PendingApproval) -> String {
        let who = if a.who.is_empty() {
            "any operator or admin".to_string()
        } else {
            format!("{} (or an admin)", a.who.join(", "))
        };
        format!(
            ":raising_hand: {} (`{}`){} waits for approval: {}\nWho may decide: {}. Until {}. Decide with `laojun approve {}` or `laojun deny {}` (POST /api/v1/runs/{}/approve or /deny).",
            a.run,
            escape(&a.runbook),
            a.incident.map(|i| format!(" for {i}")).unwrap_or_default(),
            escape(&a.message),
            escape(&who),
            a.expires_at.format("%Y-%m-%d %H:%M:%S UTC"),
            a.run,
            a.run,
            a.run
        )
    }

    /// The figures are the postmortem's (see `timing`).
    pub fn resolved(inc: &Incident, times: &Times, link: Option<String>) -> String {
        let figure = |secs: Option<i64>| secs.map_or_else(|| "—".to_string(), crate::timing::human);
        format!(
            ":white_check_mark: {} ({}) resolved: {}. Impact {}; acknowledged after {}, mitigated after {}, resolved after {}.{}",
            inc.id,
            inc.severity,
            escape(&inc.title),
            figure(times.impact()),
            figure(times.since_start(times.acknowledged)),
            figure(times.since_start(times.mitigated)),
            figure(times.since_start(times.resolved)),
            link.map(|u| format!(" {u}")).unwrap_or_default()
        )
    }
}
