//! A storm larger than the intake queue: the overflow gets 503 with
//! Retry-After (never 429, which AlertManager would not retry), and once
//! senders retry as AlertManager does, every alert is stored exactly once.

mod support;

use std::collections::HashSet;

use serde_json::json;
use support::{Server, TOKEN};

#[tokio::test(flavor = "multi_thread")]
async fn overflow_gets_503_and_every_retried_alert_is_stored_once() {
    let server = Server::start_with(|c| c.intake.queue_capacity = 2).await;
    let url = format!("{}/api/v1/alerts", server.url);
    let http = reqwest::Client::new();
    let senders = 64;
    let per_sender = 25;
    let mut tasks = Vec::new();
    for s in 0..senders {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            for n in 0..per_sender {
                let body = json!({"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": format!("Storm{s}-{n}")},
                    "startsAt": "2026-11-29T12:00:00Z", "fingerprint": format!("{s:08x}{n:08x}")}]});
                loop {
                    let r = http.post(&url).bearer_auth(TOKEN).json(&body).send().await.expect("the server answers");
                    match r.status().as_u16() {
                        200 => break,
                        503 => {
                            assert_eq!(r.headers()["retry-after"], "1");
                            refused += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        }
                        other => panic!("a storm got {other}; only 200 or 503 are allowed"),
                    }
                }
            }
            refused
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap();
    }
    assert!(
        refused > 0,
        "a queue of 2 under 64 senders never filled; the test proves nothing"
    );
    let (_, list) = server.client().get("/api/v1/incidents?limit=10000").await;
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    let unique: HashSet<&&str> = titles.iter().collect();
    assert_eq!(titles.len(), senders * per_sender, "every alert stored");
    assert_eq!(unique.len(), titles.len(), "none stored twice");
    eprintln!(
        "{} alerts stored; {refused} requests got 503 and were retried",
        titles.len()
    );
    server.stop().await;
}
