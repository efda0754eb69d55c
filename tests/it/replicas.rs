//! Several laojun engines on one PostgreSQL database, as replicas behind
//! one receiver: their writers take turns through the database (one
//! advisory lock per commit), so an alert is stored once, one group has
//! one open incident and ids never collide, whichever replica a copy of a
//! webhook reaches. (In one process here, on stores opened without the
//! one-laojun-per-database lock `serve` takes.)

use std::collections::BTreeSet;
use std::sync::Arc;

use laojun::client::{ApiClient, IncidentQuery, RunQuery};
use laojun::config::Config;
use laojun::engine::Engine;
use laojun::run::RunStatus;
use laojun::store::PostgresStore;

use crate::support::{self, first_run, fixture, root_with, wait_run, webhook_body, Alert};

/// `count` engines on the database at `url`, each with its own data_dir,
/// serving the API without a token.
async fn replicas(url: &str, count: usize, root: &std::path::Path) -> (Vec<ApiClient>, Vec<tempfile::TempDir>) {
    let (mut clients, mut dirs) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let store = PostgresStore::connect(url, 4, None).unwrap();
        store.migrate().await.unwrap();
        let data = tempfile::tempdir().unwrap();
        let config = Config {
            listen: "127.0.0.1:0".into(),
            root: root.to_path_buf(),
            data_dir: data.path().to_path_buf(),
            ..Config::default()
        };
        let engine = Engine::builder(config).store(Arc::new(store)).start().await.unwrap();
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(laojun::serve::serve(engine, std::future::pending(), move |addr| {
            let _ = addr_tx.send(addr);
        }));
        clients.push(ApiClient::new(format!("http://{}", addr_rx.await.unwrap()), None));
        dirs.push(data);
    }
    (clients, dirs)
}

fn root() -> tempfile::TempDir {
    root_with(&[
        (
            "runbooks/note.yaml",
            "name: note\nsteps:\n  - id: look\n    action: wait\n    with: {secs: 0}\n",
        ),
        (
            "playbooks/errors.yaml",
            "name: errors\ntrigger: {alerts: ['alertname=\"HighErrorRate\"']}\ngroup_by: [service]\nrunbooks: [{runbook: note}]\n",
        ),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_webhook_at_every_replica_makes_one_episode_one_incident_one_run() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let root = root();
    let (clients, _dirs) = replicas(&url, 3, root.path()).await;
    // An HA AlertManager pair: each peer sends the body, to any replica,
    // all at once.
    let posts = clients.iter().chain(clients.iter()).map(|c| {
        let c = c.clone();
        tokio::spawn(async move { c.post_alerts(fixture("firing-single.json")).await })
    });
    let mut opened = Vec::new();
    for post in posts {
        let answer = post.await.unwrap().expect("every copy gets a 200");
        opened.extend(answer.opened);
    }
    assert_eq!(
        opened.len(),
        1,
        "one copy opened the incident, the others changed nothing: {opened:?}"
    );
    let incident = opened[0];
    let run = first_run(&clients[0], incident).await;
    wait_run(&clients[0], run, &[RunStatus::Succeeded]).await;

    for c in &clients {
        let incidents = c.incidents(&IncidentQuery::default()).await.unwrap();
        assert_eq!(incidents.iter().map(|i| i.id).collect::<Vec<_>>(), vec![incident]);
        assert_eq!(incidents[0].alerts.len(), 1, "one episode");
        let runs = c.runs(&RunQuery::default()).await.unwrap();
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![run], "one run");
    }
    let timelines: Vec<_> = {
        let mut out = Vec::new();
        for c in &clients {
            let t = c.incident(incident).await.unwrap().timeline;
            out.push(t.iter().map(|e| e.what.kind_name()).collect::<Vec<_>>());
        }
        out
    };
    assert!(
        timelines.windows(2).all(|w| w[0] == w[1]),
        "every replica reads the same timeline: {timelines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_spread_over_replicas_stores_each_alert_once_with_one_incident_per_group() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let root = root();
    let (clients, _dirs) = replicas(&url, 3, root.path()).await;
    const SERVICES: usize = 12;
    const PER_SERVICE: usize = 5;
    // Every alert goes to two replicas (both AlertManager peers), each
    // body a different mix, all at once.
    let mut posts = Vec::new();
    for copy in 0..2 {
        for s in 0..SERVICES {
            for a in 0..PER_SERVICE {
                let alert = Alert::firing(serde_json::json!({
                    "alertname": "HighErrorRate", "service": format!("svc-{s}"), "pod": format!("pod-{a}")
                }))
                .fingerprint(&format!("{s:04x}{a:04x}"))
                .starts_at("2026-12-02T10:00:00Z");
                let c = clients[(s + a + copy) % clients.len()].clone();
                posts.push(tokio::spawn(async move { c.post_alerts(webhook_body([alert])).await }));
            }
        }
    }
    let mut opened = Vec::new();
    for post in posts {
        opened.extend(post.await.unwrap().expect("every body gets a 200").opened);
    }
    assert_eq!(opened.len(), SERVICES, "one incident per service group: {opened:?}");
    let ids: BTreeSet<_> = opened.iter().collect();
    assert_eq!(ids.len(), SERVICES, "ids never collide");
    for c in &clients {
        let incidents = c
            .incidents(&IncidentQuery {
                limit: Some(100),
                ..IncidentQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(incidents.len(), SERVICES);
        for inc in &incidents {
            let fingerprints: BTreeSet<_> = inc.alerts.iter().map(|a| a.fingerprint.clone()).collect();
            assert_eq!(
                (inc.alerts.len(), fingerprints.len()),
                (PER_SERVICE, PER_SERVICE),
                "each alert once in {}",
                inc.id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_one_replicas_run_changes_is_held_from_the_others_until_released_or_lapsed() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let open = async || {
        let store = PostgresStore::connect(&url, 2, None).unwrap().with_lease(3);
        store.migrate().await.unwrap();
        store
    };
    let (a, b) = (open().await, open().await);
    use laojun::ids::RunId;
    use laojun::store::Store;
    let deployment = vec!["Deployment prod/api".to_string()];
    let both = vec!["Service prod/api".to_string(), "Deployment prod/api".to_string()];
    let (one, two) = (RunId::new(1), RunId::new(2));
    assert_eq!(a.lock_targets(&deployment, one).unwrap(), None, "A's run takes it");
    assert_eq!(a.lock_targets(&deployment, one).unwrap(), None, "and may take it again");
    assert_eq!(
        b.lock_targets(&both, two).unwrap(),
        Some(("Deployment prod/api".to_string(), one)),
        "B's run waits, told who holds it"
    );
    // All or none: B's run did not keep the Service either.
    assert_eq!(
        a.lock_targets(&["Service prod/api".to_string()], RunId::new(3))
            .unwrap(),
        None
    );
    a.unlock_targets(&["Service prod/api".to_string()], RunId::new(3))
        .unwrap();
    a.unlock_targets(&deployment, one).unwrap();
    assert_eq!(
        b.lock_targets(&both, two).unwrap(),
        None,
        "released: B's run takes both"
    );
    // B goes silent (no renewal): after its lease, A's run may take them.
    support::eventually("B's hold to lapse", async || {
        (a.lock_targets(&deployment, one).unwrap().is_none()).then_some(())
    })
    .await;
    // B, waking, cannot release what A's run holds now.
    b.unlock_targets(&deployment, two).unwrap();
    assert_eq!(
        b.lock_targets(&deployment, two).unwrap(),
        Some(("Deployment prod/api".to_string(), one))
    );
}
