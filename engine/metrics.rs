//! Prometheus metrics, served at `/metrics` in the text format: intake
//! (webhooks, alerts, open incidents, request latency, store writes) and
//! laojun's own automation (runs, steps, approvals, pauses, notices, how
//! long incidents take to acknowledge, mitigate and resolve).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::severity::Severity;

/// Every metric laojun exports, in one registry per process.
pub struct Metrics {
    registry: Registry,
    /// Webhook requests by outcome: accepted, bad_request, unauthorized, too_large, unavailable.
    pub webhooks: IntCounterVec,
    /// Alerts received by status (firing, resolved) and what they did.
    pub alerts: IntCounterVec,
    pub incidents_open: IntGaugeVec,
    pub request_seconds: HistogramVec,
    pub store_write_seconds: Histogram,
    /// Runs that ended (or did not start), by runbook and final status.
    pub runs: IntCounterVec,
    /// Steps that ended, by action and status.
    pub steps: IntCounterVec,
    pub step_seconds: HistogramVec,
    /// Set when /metrics is read, from the executor.
    pub approvals_pending: IntGauge,
    pub approval_oldest_seconds: IntGauge,
    /// 1 while paused: `playbook=""` for everything, else per playbook.
    pub automation_paused: IntGaugeVec,
    /// Seconds from the first alert's start to the first ack, the
    /// mitigation and the resolve, by severity.
    pub time_to_ack: HistogramVec,
    pub time_to_mitigate: HistogramVec,
    pub time_to_resolve: HistogramVec,
    /// Notices laojun posted itself, by outcome (sent, failed).
    pub notifications: IntCounterVec,
}

/// How an incident's milestone is measured, for the histograms above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    Acknowledged,
    Mitigated,
    Resolved,
}

/// How runs and steps end, as their `status` labels say.
const RUN_ENDS: [&str; 7] = [
    "succeeded",
    "failed",
    "interrupted",
    "cancelled",
    "paused",
    "refused",
    "skipped",
];
const STEP_ENDS: [&str; 5] = ["succeeded", "failed", "skipped", "interrupted", "cancelled"];

/// Buckets for incident times: 30 s to a day.
const INCIDENT_BUCKETS: [f64; 12] = [
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
];

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition is valid")
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
        .expect("metric definition is valid")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let webhooks = IntCounterVec::new(
            Opts::new(
                "laojun_webhooks_received_total",
                "AlertManager webhook requests, by outcome.",
            ),
            &["outcome"],
        )
        .expect("metric definition is valid");
        let alerts = IntCounterVec::new(
            Opts::new(
                "laojun_alerts_received_total",
                "Alerts received, by status and by what they did (opened, joined, resolved, repeat, stale).",
            ),
            &["status", "outcome"],
        )
        .expect("metric definition is valid");
        let incidents_open = IntGaugeVec::new(
            Opts::new("laojun_incidents_open", "Incidents not yet resolved, by severity."),
            &["severity"],
        )
        .expect("metric definition is valid");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "laojun_http_request_duration_seconds",
                "HTTP request latency, by route and status.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route", "status"],
        )
        .expect("metric definition is valid");
        let store_write_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "laojun_store_write_duration_seconds",
                "Time to commit and flush one batch of writes.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            ]),
        )
        .expect("metric definition is valid");
        let runs = counter(
            "laojun_runs_total",
            "Runs that ended or did not start, by runbook and final status.",
            &["runbook", "status"],
        );
        let steps = counter(
            "laojun_steps_total",
            "Steps that ended, by action and status.",
            &["action", "status"],
        );
        let step_seconds = histogram(
            "laojun_step_duration_seconds",
            "How long steps took (all their attempts), by action.",
            &["action"],
            &[
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
            ],
        );
        let approvals_pending = IntGauge::new("laojun_approvals_pending", "Approval steps waiting for a person.")
            .expect("metric definition is valid");
        let approval_oldest_seconds = IntGauge::new(
            "laojun_approval_oldest_pending_seconds",
            "How long the oldest waiting approval has waited (0 when none waits).",
        )
        .expect("metric definition is valid");
        let automation_paused = IntGaugeVec::new(
            Opts::new(
                "laojun_automation_paused",
                "1 while automation is paused: playbook=\"\" for everything, else that playbook.",
            ),
            &["playbook"],
        )
        .expect("metric definition is valid");
        let time_to = |what: &str, help: &str| {
            histogram(
                &format!("laojun_incident_time_to_{what}_seconds"),
                help,
                &["severity"],
                &INCIDENT_BUCKETS,
            )
        };
        let time_to_ack = time_to(
            "ack",
            "Seconds from an incident's first alert to its first acknowledgement.",
        );
        let time_to_mitigate = time_to(
            "mitigate",
            "Seconds from an incident's first alert to a runbook mitigating it.",
        );
        let time_to_resolve = time_to("resolve", "Seconds from an incident's first alert to its resolve.");
        let notifications = counter(
            "laojun_notifications_total",
            "Notices laojun posted to Slack itself, by outcome (sent, failed after its retries).",
            &["outcome"],
        );
        let build_info = IntGaugeVec::new(
            Opts::new("laojun_build_info", "Always 1; the version laojun was built as."),
            &["version"],
        )
        .expect("metric definition is valid");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for m in [
            Box::new(webhooks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(alerts.clone()),
            Box::new(incidents_open.clone()),
            Box::new(request_seconds.clone()),
            Box::new(store_write_seconds.clone()),
            Box::new(runs.clone()),
            Box::new(steps.clone()),
            Box::new(step_seconds.clone()),
            Box::new(approvals_pending.clone()),
            Box::new(approval_oldest_seconds.clone()),
            Box::new(automation_paused.clone()),
            Box::new(time_to_ack.clone()),
            Box::new(time_to_mitigate.clone()),
            Box::new(time_to_resolve.clone()),
            Box::new(notifications.clone()),
            Box::new(build_info),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        for s in Severity::NAMES {
            incidents_open.with_label_values(&[s]).set(0);
        }
        for outcome in ["sent", "failed"] {
            notifications.with_label_values(&[outcome]);
        }
        automation_paused.with_label_values(&[""]).set(0);
        request_seconds.with_label_values(&["/api/v1/alerts", "200"]);
        // Series that exist from the start: rate() and increase() see
        // their first observation instead of a series that appears at 1.
        for severity in Severity::NAMES {
            for h in [&time_to_ack, &time_to_mitigate, &time_to_resolve] {
                h.with_label_values(&[severity]);
            }
        }
        Metrics {
            registry,
            webhooks,
            alerts,
            incidents_open,
            request_seconds,
            store_write_seconds,
            runs,
            steps,
            step_seconds,
            approvals_pending,
            approval_oldest_seconds,
            automation_paused,
            time_to_ack,
            time_to_mitigate,
            time_to_resolve,
            notifications,
        }
    }

    /// Creates the run and step series of a catalog at 0 (at start and on
    /// reload), so the first run of a runbook shows as an increase.
    pub fn expect<'a>(&self, runbooks: impl IntoIterator<Item = &'a str>, actions: impl IntoIterator<Item = &'a str>) {
        for runbook in runbooks {
            for status in RUN_ENDS {
                self.runs.with_label_values(&[runbook, status]);
            }
        }
        for action in actions {
            for status in STEP_ENDS {
                self.steps.with_label_values(&[action, status]);
            }
            self.step_seconds.with_label_values(&[action]);
        }
    }

    /// Records how long an incident of `severity` took to reach a milestone.
    pub fn observe_milestone(&self, milestone: Milestone, severity: Severity, secs: f64) {
        let histogram = match milestone {
            Milestone::Acknowledged => &self.time_to_ack,
            Milestone::Mitigated => &self.time_to_mitigate,
            Milestone::Resolved => &self.time_to_resolve,
        };
        histogram.with_label_values(&[severity.as_str()]).observe(secs.max(0.0));
    }

    /// Sets the pause gauges: everything, and each of `playbooks`.
    pub fn set_paused(&self, everything: bool, playbooks: &[(String, bool)]) {
        self.automation_paused.reset();
        self.automation_paused
            .with_label_values(&[""])
            .set(i64::from(everything));
        for (name, paused) in playbooks {
            self.automation_paused
                .with_label_values(&[name])
                .set(i64::from(*paused));
        }
    }

    /// Sets the open incident gauge from counts by severity (`Severity as usize`).
    pub fn set_open_incidents(&self, counts: [i64; 4]) {
        for (i, s) in Severity::NAMES.iter().enumerate() {
            self.incidents_open.with_label_values(&[s]).set(counts[i]);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
