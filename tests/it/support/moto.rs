//! Route53 as `moto_server` (PyPI `moto[server]`) serves it on loopback:
//! starting it, a zone with a record, and reading records back.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};

use super::{eventually, require, PATIENCE};

/// A running moto_server, killed when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto_server on a port it picks itself (`-p 0`, read back from the line
/// it prints), or `None` outside CI when it is not installed (in CI a
/// missing component fails the test). A port picked here and handed over
/// could be taken by another test's server before moto binds it; CI once
/// saw the fake Kubernetes server answer the Route53 client that way.
pub async fn start_moto() -> Option<Moto> {
    let binary = require("moto_server")?;
    let mut child = Command::new(binary)
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moto_server starts");
    // Werkzeug says where it listens and then logs every request on
    // stderr: a thread passes on the address and keeps the pipe drained.
    let stderr = child.stderr.take().unwrap();
    let (found, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.split("Running on ").nth(1) {
                if let Some(found) = found.take() {
                    let _ = found.send(url.trim().to_string());
                }
            }
        }
    });
    let url = tokio::task::spawn_blocking(move || listening.recv_timeout(PATIENCE))
        .await
        .unwrap()
        .expect("moto_server prints the address it listens on");
    let api = format!("{url}/moto-api/");
    eventually("moto_server to answer", async || {
        reqwest::get(&api).await.ok().map(|_| ())
    })
    .await;
    Some(Moto { child, url })
}

pub async fn route53(url: &str) -> aws_sdk_route53::Client {
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

pub fn rrset(name: &str, value: &str, id: Option<(&str, i64)>) -> ResourceRecordSet {
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

/// A client for moto at `url`, and the id (without `/hostedzone/`) of a new
/// `example.com` zone where `api.example.com` points at `primary.example.com`.
pub async fn zone(url: &str, caller_reference: &str) -> (aws_sdk_route53::Client, String) {
    // The server under test uses the default credential chain: give it
    // moto's test credentials through the environment, as an operator would.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let client = route53(url).await;
    let zone = client
        .create_hosted_zone()
        .name("example.com")
        .caller_reference(caller_reference)
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
    (client, zone_id)
}

pub async fn create(client: &aws_sdk_route53::Client, zone: &str, sets: Vec<ResourceRecordSet>) {
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

pub async fn record_values(
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
