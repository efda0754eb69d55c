//! `dns.failover` against Route53 as `moto_server` (PyPI `moto[server]`)
//! serves it on loopback: UPSERT to the standby target, the `from` guard,
//! weighted shifts, dry runs that change nothing, and throttling (through a
//! proxy that answers Route53's throttling error) retried as the step says.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::moto::{create, record_values, rrset, start_moto, zone};
use crate::support::{self, root_with, run_to_end, with_params, Alert, Server};
use laojun::client::RunRequest;
use laojun::incident::EventKind;
use laojun::run::RunStatus;
use serde_json::json;

const RUNBOOK: &str = r#"
name: dns
params:
  zone: string
  to: {type: string, default: ""}
  from: {type: string, default: ""}
steps:
  - id: failover
    action: dns.failover
    with: {hosted_zone_id: "{{params.zone}}", record_name: api.example.com, record_type: CNAME, from: "{{params.from}}", to: "{{params.to}}"}
    retries: {attempts: 2, backoff_secs: 0.1}
"#;

const WEIGHTED: &str = r#"
name: shift
params:
  zone: string
steps:
  - id: shift
    action: dns.failover
    with: {hosted_zone_id: "{{params.zone}}", record_name: www.example.com, record_type: CNAME, weights: {primary: 0, standby: 100}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn failover_upserts_the_standby_target_guards_with_from_and_dry_runs_change_nothing() {
    let Some(moto) = start_moto().await else { return };
    let (client, zone_id) = zone(&moto.url, "laojun-test").await;
    create(
        &client,
        &zone_id,
        vec![
            rrset("www.example.com", "a.example.com", Some(("primary", 100))),
            rrset("www.example.com", "b.example.com", Some(("standby", 0))),
        ],
    )
    .await;

    let root = root_with(&[("runbooks/dns.yaml", RUNBOOK), ("runbooks/shift.yaml", WEIGHTED)]);
    let (root_path, endpoint) = (root.path().to_path_buf(), moto.url.clone());
    let server = Server::start_with(move |c| {
        c.root = root_path;
        c.aws.endpoint_url = Some(endpoint);
    })
    .await;
    let c = server.client();
    let run = |body: RunRequest, runbook: &'static str| {
        let c = c.clone();
        async move { run_to_end(&c, runbook, &body).await }
    };

    // A dry run shows the change batch and changes nothing.
    let dry = run(
        RunRequest {
            dry_run: true,
            ..with_params(json!({"zone": zone_id, "to": "standby.example.com"}))
        },
        "dns",
    )
    .await;
    assert_eq!(dry.status, RunStatus::Succeeded, "{dry:#?}");
    assert_eq!(
        dry.steps[0].output["would_change"][0]["values"],
        json!(["standby.example.com"])
    );
    assert_eq!(dry.steps[0].output["previous"], json!(["primary.example.com"]));
    assert_eq!(
        record_values(&client, &zone_id, "api.example.com").await[0].2,
        ["primary.example.com"]
    );

    // `from` that does not match what the record holds stops the step, untried again.
    let guarded = run(
        with_params(json!({"zone": zone_id, "from": "elsewhere.example.com", "to": "standby.example.com"})),
        "dns",
    )
    .await;
    assert_eq!(guarded.status, RunStatus::Failed);
    assert_eq!(guarded.steps[0].attempts, 1);
    assert!(
        guarded.steps[0]
            .error
            .as_deref()
            .unwrap()
            .contains("not at elsewhere.example.com"),
        "{guarded:#?}"
    );

    let done = run(
        with_params(json!({"zone": zone_id, "from": "primary.example.com", "to": "standby.example.com"})),
        "dns",
    )
    .await;
    assert_eq!(done.status, RunStatus::Succeeded, "{done:#?}");
    let out = &done.steps[0].output;
    assert_eq!(out["status"], "INSYNC");
    assert!(out["change_id"].as_str().is_some_and(|id| !id.is_empty()), "{out}");
    assert_eq!(out["previous"], json!(["primary.example.com"]));
    assert_eq!(
        record_values(&client, &zone_id, "api.example.com").await[0].2,
        ["standby.example.com"]
    );

    // Running it again finds the record already there: nothing to change.
    let again = run(
        with_params(json!({"zone": zone_id, "to": "standby.example.com"})),
        "dns",
    )
    .await;
    assert_eq!(
        again.steps[0].summary.as_deref().unwrap(),
        format!("api.example.com. CNAME in zone {zone_id} already points at standby.example.com")
    );

    let shifted = run(with_params(json!({"zone": zone_id})), "shift").await;
    assert_eq!(shifted.status, RunStatus::Succeeded, "{shifted:#?}");
    assert_eq!(
        shifted.steps[0].output["previous"],
        json!({"primary": 100, "standby": 0})
    );
    let mut weights: Vec<(Option<String>, Option<i64>)> = record_values(&client, &zone_id, "www.example.com")
        .await
        .into_iter()
        .map(|(id, w, _)| (id, w))
        .collect();
    weights.sort();
    assert_eq!(
        weights,
        [(Some("primary".into()), Some(0)), (Some("standby".into()), Some(100))]
    );

    let missing = run(
        with_params(json!({"zone": "ZNOSUCHZONE", "to": "x.example.com"})),
        "dns",
    )
    .await;
    assert_eq!(missing.status, RunStatus::Failed);
    assert_eq!(
        missing.steps[0].attempts, 1,
        "a missing zone is not retried: {missing:#?}"
    );
    server.stop().await;
}

/// A proxy in front of moto that answers Route53's own throttling error to
/// change calls while `throttle` is above the number of changes it has seen
/// (moto cannot throttle). Everything else is passed through.
struct Throttler {
    url: String,
    changes: Arc<AtomicUsize>,
    throttle: Arc<AtomicUsize>,
}

const THROTTLED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>laojun-test</RequestId></ErrorResponse>"#;

async fn throttler(upstream: String) -> Throttler {
    let changes = Arc::new(AtomicUsize::new(0));
    let throttle = Arc::new(AtomicUsize::new(0));
    let (seen, limit) = (changes.clone(), throttle.clone());
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| {
            let (http, upstream, seen, limit) = (http.clone(), upstream.clone(), seen.clone(), limit.clone());
            async move {
                // ChangeResourceRecordSets: POST /2013-04-01/hostedzone/{id}/rrset/
                if method == axum::http::Method::POST && uri.path().contains("/rrset") {
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    if n < limit.load(Ordering::SeqCst) {
                        return (
                            axum::http::StatusCode::BAD_REQUEST,
                            [("content-type", "text/xml")],
                            axum::body::Bytes::from_static(THROTTLED.as_bytes()),
                        );
                    }
                }
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                let mut request = http.request(method, format!("{upstream}{path}")).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        request = request.header(name, value);
                    }
                }
                let response = request.send().await.expect("moto answers");
                let status = axum::http::StatusCode::from_u16(response.status().as_u16()).unwrap();
                let bytes = response.bytes().await.unwrap_or_default();
                (status, [("content-type", "text/xml")], bytes)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Throttler { url, changes, throttle }
}

const PATIENT: &str = r#"
name: dns
params:
  zone: string
  to: string
steps:
  - id: failover
    action: dns.failover
    with: {hosted_zone_id: "{{params.zone}}", record_name: api.example.com, record_type: CNAME, to: "{{params.to}}"}
    retries: {attempts: 3, backoff_secs: 0.1}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn throttled_changes_are_retried_as_the_step_says_and_each_attempt_is_on_the_timeline() {
    let Some(moto) = start_moto().await else { return };
    let (client, zone_id) = zone(&moto.url, "laojun-throttle").await;
    let proxy = throttler(moto.url.clone()).await;
    let root = root_with(&[("runbooks/dns.yaml", PATIENT)]);
    let (root_path, endpoint) = (root.path().to_path_buf(), proxy.url.clone());
    let server = Server::start_with(move |c| {
        c.root = root_path;
        c.aws.endpoint_url = Some(endpoint);
    })
    .await;
    let c = server.client();
    let alert = support::webhook_body([Alert::firing(json!({"alertname": "PrimaryDown"}))
        .starts_at("2026-11-29T12:00:00Z")
        .fingerprint("d1")]);
    c.post_alerts(alert).await.expect("the alert is stored");
    let run = |to: &'static str| {
        let (c, zone_id) = (c.clone(), zone_id.clone());
        async move {
            let body = RunRequest {
                incident: Some("INC-1".parse().unwrap()),
                ..with_params(json!({"zone": zone_id, "to": to}))
            };
            run_to_end(&c, "dns", &body).await
        }
    };

    // Throttled twice, then through on the third of three attempts.
    proxy.throttle.store(2, Ordering::SeqCst);
    let done = run("standby.example.com").await;
    assert_eq!(done.status, RunStatus::Succeeded, "{done:#?}");
    assert_eq!(done.steps[0].attempts, 3);
    assert_eq!(proxy.changes.load(Ordering::SeqCst), 3, "one change call per attempt");
    assert_eq!(
        record_values(&client, &zone_id, "api.example.com").await[0].2,
        ["standby.example.com"]
    );
    let incident = c.incident("INC-1").await.unwrap();
    let throttled: Vec<&str> = incident
        .timeline
        .iter()
        .filter_map(|e| match &e.what {
            EventKind::Step { error: Some(error), .. } if error.contains("Throttling") => Some(error.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(throttled.len(), 2, "{:#?}", incident.timeline);
    assert!(throttled[0].contains("retrying"), "{}", throttled[0]);

    // Throttled on every attempt: the step fails after its three, and the record stays.
    proxy.changes.store(0, Ordering::SeqCst);
    proxy.throttle.store(usize::MAX, Ordering::SeqCst);
    let failed = run("third.example.com").await;
    assert_eq!(failed.status, RunStatus::Failed, "{failed:#?}");
    assert_eq!(failed.steps[0].attempts, 3);
    assert!(
        failed.steps[0].error.as_deref().unwrap().contains("Throttling"),
        "{failed:#?}"
    );
    assert_eq!(
        proxy.changes.load(Ordering::SeqCst),
        3,
        "the SDK does not retry on its own"
    );
    assert_eq!(
        record_values(&client, &zone_id, "api.example.com").await[0].2,
        ["standby.example.com"]
    );
    server.stop().await;
}
