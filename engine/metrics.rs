//! Prometheus metrics, served at `/metrics` in the text format.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
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
        for m in [
            Box::new(webhooks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(alerts.clone()),
            Box::new(incidents_open.clone()),
            Box::new(request_seconds.clone()),
            Box::new(store_write_seconds.clone()),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        for s in Severity::NAMES {
            incidents_open.with_label_values(&[s]).set(0);
        }
        Metrics {
            registry,
            webhooks,
            alerts,
            incidents_open,
            request_seconds,
            store_write_seconds,
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
