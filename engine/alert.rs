//! The webhook payloads laojun takes: AlertManager's (version 4, as
//! AlertManager 0.25+ sends it) and Grafana Alerting's webhook contact
//! point (version 1: the same shape with extra fields), and the checks a
//! body must pass before anything is stored. No I/O.
//!
//! Unknown fields are ignored (newer senders add some); firing alerts carry
//! `endsAt: 0001-01-01T00:00:00Z`, read here as "no end". Grafana's extras
//! (dashboard, panel and silence links, observed values) and its
//! notification `title`/`message` are kept as text on the alert.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

/// One webhook body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub group_key: Option<String>,
    #[serde(default)]
    pub receiver: Option<String>,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub external_url: Option<String>,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub alerts: Vec<WireAlert>,
    /// Grafana's notification title and message (text, never markup).
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// Who sent a body, by its `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    AlertManager,
    Grafana,
}

impl Webhook {
    /// AlertManager sends `"4"`, Grafana Alerting `"1"`; no version is read
    /// as AlertManager's.
    pub fn sender(&self) -> Sender {
        match self.version.as_deref() {
            Some("1") => Sender::Grafana,
            _ => Sender::AlertManager,
        }
    }
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One alert as it arrives.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAlert {
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
    // Grafana's extras.
    #[serde(default, rename = "dashboardURL")]
    pub dashboard_url: Option<String>,
    #[serde(default, rename = "panelURL")]
    pub panel_url: Option<String>,
    #[serde(default, rename = "silenceURL")]
    pub silence_url: Option<String>,
    #[serde(default, rename = "imageURL")]
    pub image_url: Option<String>,
    #[serde(default)]
    pub values: Option<BTreeMap<String, f64>>,
    #[serde(default)]
    pub value_string: Option<String>,
}

/// What Grafana adds to an alert: links (kept as sent; shown as links only
/// when http(s)) and the values its rule observed, and the notification
/// the alert came in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panel_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_string: Option<String>,
    /// The notification's `title` and `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Longest extra value kept (a URL, a title, a message).
const MAX_EXTRA: usize = 4096;

fn kept(text: &Option<String>) -> Option<String> {
    text.as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(MAX_EXTRA).collect())
}

impl Extras {
    fn of(a: &WireAlert, hook: &Webhook) -> Option<Box<Extras>> {
        let extras = Extras {
            dashboard_url: kept(&a.dashboard_url),
            panel_url: kept(&a.panel_url),
            silence_url: kept(&a.silence_url),
            image_url: kept(&a.image_url),
            values: a.values.clone().unwrap_or_default(),
            value_string: kept(&a.value_string),
            title: kept(&hook.title),
            message: kept(&hook.message),
        };
        (extras != Extras::default()).then(|| Box::new(extras))
    }
}

/// A checked alert, ready for intake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub fingerprint: String,
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    /// `None` while firing (AlertManager's zero time).
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
    /// Grafana's extras, when it sent any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Box<Extras>>,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("(no alertname)", String::as_str)
    }
}

/// Why a body was refused; the message goes back to the sender as a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadBody(pub String);

/// Parses and checks a webhook body.
pub fn parse(body: &[u8]) -> Result<(Webhook, Vec<Alert>), BadBody> {
    let hook: Webhook = serde_json::from_slice(body).map_err(|e| {
        // serde reports some type mismatches as syntax; the body's own
        // validity decides which message is true.
        let valid_json = serde_json::from_slice::<serde_json::Value>(body).is_ok();
        let what = if valid_json {
            "the body is not an AlertManager (version 4) or Grafana (version 1) webhook"
        } else {
            "the body is not valid JSON"
        };
        BadBody(format!("{what}: {e}"))
    })?;
    if let Some(v) = hook.version.as_deref() {
        if v != "4" && v != "1" {
            return Err(BadBody(format!(
                "webhook version {v:?} is not supported; laojun reads AlertManager's version \"4\" and Grafana Alerting's \"1\""
            )));
        }
    }
    if hook.alerts.is_empty() {
        return Err(BadBody("the body has no alerts (`alerts` is empty)".into()));
    }
    let alerts = hook
        .alerts
        .iter()
        .enumerate()
        .map(|(i, a)| check(a, &hook).map_err(|why| BadBody(format!("alerts[{i}]: {why}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((hook, alerts))
}

fn check(a: &WireAlert, hook: &Webhook) -> Result<Alert, String> {
    let starts_at = time(&a.starts_at).map_err(|e| format!("startsAt {:?} {e}", a.starts_at))?;
    let ends_at = match a.ends_at.as_deref() {
        None | Some("") => None,
        Some(text) => {
            let t = time(text).map_err(|e| format!("endsAt {text:?} {e}"))?;
            // AlertManager's "no end" is Go's zero time, year 1.
            (t.year() > 1).then_some(t)
        }
    };
    for name in a.labels.keys() {
        if name.is_empty() {
            return Err("has a label with an empty name".into());
        }
    }
    let fingerprint = match a.fingerprint.as_deref() {
        Some(fp) if !fp.is_empty() => {
            if fp.len() > 64 || !fp.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!(
                    "fingerprint {fp:?} must be up to 64 letters and digits, as AlertManager sends"
                ));
            }
            fp.to_string()
        }
        _ => fingerprint_of(&a.labels),
    };
    Ok(Alert {
        fingerprint,
        status: a.status,
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        starts_at,
        ends_at,
        generator_url: a.generator_url.clone().filter(|u| !u.is_empty()),
        extras: Extras::of(a, hook),
    })
}

fn time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("is not an RFC 3339 time ({e}); AlertManager sends e.g. \"2026-11-29T12:46:35.609Z\""))
}

/// A stable fingerprint for alerts sent without one (not AlertManager's own
/// hash, which only AlertManager needs to reproduce): FNV-1a over the
/// sorted labels.
pub fn fingerprint_of(labels: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for byte in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/alertmanager/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn every_captured_alertmanager_body_parses() {
        for name in [
            "firing-single.json",
            "resolved-single.json",
            "firing-grouped.json",
            "firing-child-route.json",
            "prometheus-targetdown-firing.json",
            "prometheus-targetdown-resolved.json",
        ] {
            let (hook, alerts) = parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(hook.version.as_deref(), Some("4"), "{name}");
            assert!(!alerts.is_empty(), "{name}");
            for a in &alerts {
                assert_eq!(a.ends_at.is_none(), a.status == Status::Firing, "{name}: {a:?}");
            }
        }
        let (_, grouped) = parse(&fixture("firing-grouped.json")).unwrap();
        assert_eq!(grouped.len(), 2);
        assert_eq!(grouped[0].fingerprint, "568654a88cb32046");
        assert_eq!(grouped[0].starts_at.timestamp_subsec_millis(), 609);
    }

    #[test]
    fn times_with_zero_to_nine_fractional_digits_parse() {
        for t in [
            "2026-11-29T12:46:35Z",
            "2026-11-29T12:46:35.6Z",
            "2026-11-29T12:46:35.123456789Z",
            "2026-11-29T13:46:35.5+01:00",
        ] {
            assert!(time(t).is_ok(), "{t}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body = br#"{"version":"4","notification_reason":"repeat","routeLabels":{"a":"b"},"future":[1],
            "alerts":[{"status":"firing","labels":{"alertname":"X"},"startsAt":"2026-11-29T12:46:35Z","somethingNew":true}]}"#;
        let (_, alerts) = parse(body).unwrap();
        assert_eq!(alerts[0].fingerprint, fingerprint_of(&alerts[0].labels));
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"{", "not valid JSON"),
            (b"[]", "not an AlertManager (version 4) or Grafana (version 1) webhook"),
            (br#"{"alerts": []}"#, "no alerts"),
            (br#"{"version":"3","alerts":[]}"#, "version \"3\" is not supported"),
            (br#"{"alerts":[{"status":"burning","labels":{},"startsAt":"2026-11-29T12:46:35Z"}]}"#, "unknown variant `burning`"),
            (br#"{"alerts":[{"status":"firing","labels":{},"startsAt":"yesterday"}]}"#, "alerts[0]: startsAt \"yesterday\" is not an RFC 3339 time"),
            (br#"{"alerts":[{"status":"firing","labels":{"a":1},"startsAt":"2026-11-29T12:46:35Z"}]}"#, "invalid type: integer `1`, expected a string"),
            (br#"{"alerts":[{"status":"firing","labels":{},"startsAt":"2026-11-29T12:46:35Z","fingerprint":"../../x"}]}"#, "fingerprint"),
        ];
        for (body, expected) in cases {
            let err = parse(body).unwrap_err();
            assert!(err.0.contains(expected), "{} -> {err}", String::from_utf8_lossy(body));
        }
    }
}
