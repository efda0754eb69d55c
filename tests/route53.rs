//! `dns.failover` against Route53 as `moto_server` (PyPI `moto[server]`)
//! serves it on loopback: UPSERT to the standby target, the `from` guard,
//! weighted shifts, and dry runs that change nothing.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};
use serde_json::json;
use support::{root_with, Server};

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto_server on a free loopback port, or `None` outside CI when it is
/// not installed (in CI a missing component fails the test).
async fn start_moto() -> Option<Moto> {
    let found = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto_server is not installed; scripts/test installs it (pip install 'moto[server]')"
        );
        eprintln!("SKIPPED: moto_server is not installed");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/moto-api/")).await.is_err() {
        assert!(Instant::now() < deadline, "moto_server did not answer");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Some(Moto { child, url })
}

async fn route53(url: &str) -> aws_sdk_route53::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_route53::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_route53::Client::new(&conf)
}

fn rrset(name: &str, value: &str, id: Option<(&str, i64)>) -> ResourceRecordSet {
    let mut b = ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::Cname)
        .ttl(60)
        .resource_records(ResourceRecord::builder().value(value).build().unwrap());
    if let Some((id, weight)) = id {
        b = b.set_identifier(id).weight(weight);
    }
    b.build().unwrap()
}

async fn create(client: &aws_sdk_route53::Client, zone: &str, sets: Vec<ResourceRecordSet>) {
    let changes = sets
        .into_iter()
        .map(|s| {
            Change::builder()
                .action(ChangeAction::Create)
                .resource_record_set(s)
                .build()
                .unwrap()
        })
        .collect();
    client
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(ChangeBatch::builder().set_changes(Some(changes)).build().unwrap())
        .send()
        .await
        .unwrap();
}

async fn record_values(
    client: &aws_sdk_route53::Client,
    zone: &str,
    name: &str,
) -> Vec<(Option<String>, Option<i64>, Vec<String>)> {
    let out = client
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .unwrap();
    out.resource_record_sets()
        .iter()
        .filter(|s| s.name().trim_end_matches('.') == name)
        .map(|s| {
            (
                s.set_identifier().map(str::to_string),
                s.weight(),
                s.resource_records().iter().map(|r| r.value().to_string()).collect(),
            )
        })
        .collect()
}

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
    // The server under test uses the default credential chain: give it
    // moto's test credentials through the environment, as an operator would.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let client = route53(&moto.url).await;
    let zone = client
        .create_hosted_zone()
        .name("example.com")
        .caller_reference("laojun-test")
        .send()
        .await
        .unwrap();
    let zone_id = zone
        .hosted_zone()
        .unwrap()
        .id()
        .trim_start_matches("/hostedzone/")
        .to_string();
    create(
        &client,
        &zone_id,
        vec![rrset("api.example.com", "primary.example.com", None)],
    )
    .await;
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
    let run = |body: serde_json::Value, runbook: &'static str| {
        let c = c.clone();
        async move {
            let (status, a) = c
                .post(
                    &format!("/api/v1/runbooks/{runbook}/runs"),
                    serde_json::to_vec(&body).unwrap(),
                )
                .await;
            assert_eq!(status, 202, "{a}");
            c.wait_run(a["id"].as_str().unwrap(), &["succeeded", "failed"]).await
        }
    };

    // A dry run shows the change batch and changes nothing.
    let dry = run(
        json!({"dry_run": true, "params": {"zone": zone_id, "to": "standby.example.com"}}),
        "dns",
    )
    .await;
    assert_eq!(dry["status"], "succeeded", "{dry:#}");
    assert_eq!(
        dry["steps"][0]["output"]["would_change"][0]["values"],
        json!(["standby.example.com"])
    );
    assert_eq!(dry["steps"][0]["output"]["previous"], json!(["primary.example.com"]));
    assert_eq!(
        record_values(&client, &zone_id, "api.example.com").await[0].2,
        ["primary.example.com"]
    );

    // `from` that does not match what the record holds stops the step, untried again.
    let guarded = run(
        json!({"params": {"zone": zone_id, "from": "elsewhere.example.com", "to": "standby.example.com"}}),
        "dns",
    )
    .await;
    assert_eq!(guarded["status"], "failed");
    assert_eq!(guarded["steps"][0]["attempts"], 1);
    assert!(
        guarded["steps"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not at elsewhere.example.com"),
        "{guarded:#}"
    );

    let done = run(
        json!({"params": {"zone": zone_id, "from": "primary.example.com", "to": "standby.example.com"}}),
        "dns",
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let out = &done["steps"][0]["output"];
    assert_eq!(out["status"], "INSYNC");
    assert!(out["change_id"].as_str().is_some_and(|id| !id.is_empty()), "{out}");
    assert_eq!(out["previous"], json!(["primary.example.com"]));
    assert_eq!(
        record_values(&client, &zone_id, "api.example.com").await[0].2,
        ["standby.example.com"]
    );

    // Running it again finds the record already there: nothing to change.
    let again = run(json!({"params": {"zone": zone_id, "to": "standby.example.com"}}), "dns").await;
    assert_eq!(
        again["steps"][0]["summary"],
        format!("api.example.com. CNAME in zone {zone_id} already points at standby.example.com")
    );

    let shifted = run(json!({"params": {"zone": zone_id}}), "shift").await;
    assert_eq!(shifted["status"], "succeeded", "{shifted:#}");
    assert_eq!(
        shifted["steps"][0]["output"]["previous"],
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

    let missing = run(json!({"params": {"zone": "ZNOSUCHZONE", "to": "x.example.com"}}), "dns").await;
    assert_eq!(missing["status"], "failed");
    assert_eq!(
        missing["steps"][0]["attempts"], 1,
        "a missing zone is not retried: {missing:#}"
    );
    server.stop().await;
}
