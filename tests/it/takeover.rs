//! Three `laojun serve` processes on one PostgreSQL database, as replicas
//! behind one receiver: the run a replica journals is held by its lease;
//! when that replica is killed or stopped past the lease, another takes the
//! run over (a running step re-runs only when idempotent), says so on the
//! incident's timeline, and the old holder can no longer write for it.

use std::path::Path;
use std::time::Instant;

use laojun::client::ApiClient;
use laojun::incident::EventKind;
use laojun::run::{Run, RunStatus, StepStatus};

use crate::restart::endpoint;
use crate::support::{self, eventually, first_run, wait_run, webhook_body, Alert, Binary, TOKEN};

/// Short leases keep the test short: renewed every second, lapsed after 3.
const LEASE_SECS: u64 = 3;

/// One replica: its own data_dir and laojun.yaml, the same database.
async fn replica(url: &str, root: &Path) -> (Binary, tempfile::TempDir) {
    replica_with(url, root, "").await
}

/// A replica whose laojun.yaml also holds `more`.
async fn replica_with(url: &str, root: &Path, more: &str) -> (Binary, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("laojun.yaml");
    std::fs::write(
        &config,
        format!("store: {{postgres: {{url: '{url}', pool_size: 4, lease_secs: {LEASE_SECS}}}}}\n{more}"),
    )
    .unwrap();
    let binary = support::spawn_binary(|c| {
        c.arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(root)
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .env("LAOJUN_API_TOKEN", TOKEN);
    })
    .await;
    (binary, data)
}

async fn replicas(url: &str, root: &Path, count: usize) -> Vec<(Binary, tempfile::TempDir)> {
    let mut all = Vec::new();
    for _ in 0..count {
        all.push(replica(url, root).await);
    }
    all
}

/// The process id in a lease's owner (`host/pid-nonce`; `pid.n-nonce`
/// for the n-th store one process opens).
fn owner_pid(run: &Run) -> u32 {
    let owner = &run.lease.as_ref().expect("runs on PostgreSQL carry a lease").owner;
    let pid = owner.rsplit('/').next().unwrap();
    pid.split(['.', '-']).next().unwrap().parse().unwrap()
}

fn signal(binary: &Binary, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &binary.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig}");
}

/// A runbook with one `http` step to the endpoint's `path` (held open
/// while the endpoint hangs), then a no-op.
fn calling(name: &str, addr: std::net::SocketAddr, idempotent: bool) -> String {
    format!(
        "name: {name}\nsteps:\n  - id: call\n    action: http\n    idempotent: {idempotent}\n    timeout_secs: 300\n    with: {{url: \"http://{addr}/{name}\"}}\n  - id: done\n    action: wait\n    with: {{secs: 0}}\n"
    )
}

fn playbook(name: &str, alertname: &str, runbook: &str) -> String {
    format!("name: {name}\ntrigger: {{alerts: ['alertname=\"{alertname}\"']}}\nrunbooks: [{{runbook: {runbook}}}]\n")
}

async fn timeline(c: &ApiClient, incident: laojun::ids::IncidentId) -> Vec<EventKind> {
    c.incident(incident)
        .await
        .unwrap()
        .timeline
        .into_iter()
        .map(|e| e.what)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_replicas_runs_are_taken_over_a_non_idempotent_call_is_not_made_twice() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let ep = endpoint().await;
    let root = support::root_with(&[
        ("runbooks/charge.yaml", &calling("charge", ep.addr, false)),
        ("runbooks/probe.yaml", &calling("probe", ep.addr, true)),
        ("playbooks/charge.yaml", &playbook("charge", "PaymentsDown", "charge")),
        ("playbooks/probe.yaml", &playbook("probe", "ProbeFailing", "probe")),
    ]);
    let mut replicas = replicas(&url, root.path(), 3).await;
    let c = replicas[0].0.client(TOKEN);
    let mut incidents = Vec::new();
    for name in ["PaymentsDown", "ProbeFailing"] {
        let body =
            webhook_body([Alert::firing(serde_json::json!({"alertname": name})).starts_at("2026-12-02T10:00:00Z")]);
        incidents.push(c.post_alerts(body).await.unwrap().opened[0]);
    }
    let charge = first_run(&c, incidents[0]).await;
    let probe = first_run(&c, incidents[1]).await;
    eventually("both runs to reach their http step", async || {
        (ep.hits.lock().unwrap().len() >= 2).then_some(())
    })
    .await;
    // The replica that journaled the runs holds them.
    let held = c.run(charge).await.unwrap();
    assert_eq!(owner_pid(&held), replicas[0].0.child.id(), "{:?}", held.lease);
    assert_eq!(held.lease.as_ref().unwrap().epoch, 1);

    let (dead, _dir) = replicas.remove(0);
    let dead_pid = dead.child.id();
    let killed = Instant::now();
    dead.kill();
    ep.hang.store(false, std::sync::atomic::Ordering::SeqCst);

    let c = replicas[0].0.client(TOKEN);
    let finished = [RunStatus::Interrupted, RunStatus::Succeeded, RunStatus::Failed];
    let charged = wait_run(&c, charge, &finished).await;
    let taken_after = killed.elapsed();
    let probed = wait_run(&c, probe, &finished).await;
    println!(
        "takeover: {charge} settled {:.1} s after its replica was SIGKILLed (lease {LEASE_SECS} s)",
        taken_after.as_secs_f64()
    );

    assert_eq!(charged.status, RunStatus::Interrupted, "{charged:#?}");
    assert_eq!(charged.steps[0].status, StepStatus::Interrupted);
    assert_eq!(
        charged.steps[1].status,
        StepStatus::Pending,
        "nothing after the interrupted step"
    );
    assert_eq!(probed.status, RunStatus::Succeeded, "{probed:#?}");
    let hits = ep.hits.lock().unwrap().clone();
    assert_eq!(
        hits.iter().filter(|p| *p == "/charge").count(),
        1,
        "at most once: {hits:?}"
    );
    assert_eq!(
        hits.iter().filter(|p| *p == "/probe").count(),
        2,
        "the idempotent call ran again: {hits:?}"
    );

    // A live replica holds them now, at the next epoch, and the timeline
    // says who took each over from whom.
    let live: Vec<u32> = replicas.iter().map(|(b, _)| b.child.id()).collect();
    for (run, incident) in [(&charged, incidents[0]), (&probed, incidents[1])] {
        assert!(live.contains(&owner_pid(run)), "{:?}", run.lease);
        assert_eq!(run.lease.as_ref().unwrap().epoch, 2);
        let events = timeline(&c, incident).await;
        let taken: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                EventKind::RunTakenOver {
                    run: r,
                    by,
                    from,
                    silent_secs,
                } if *r == run.id => Some((by.clone(), from.clone(), *silent_secs)),
                _ => None,
            })
            .collect();
        assert_eq!(taken.len(), 1, "one takeover on the timeline: {events:#?}");
        let (by, from, silent) = &taken[0];
        assert_eq!(by, &run.lease.as_ref().unwrap().owner);
        assert!(from.contains(&format!("/{dead_pid}-")), "{from}");
        assert!(
            *silent >= LEASE_SECS as f64 - 1.0,
            "silent for at least the lease: {silent}"
        );
    }
    let reason = charged.reason.clone().unwrap_or_default();
    assert!(reason.contains("not idempotent"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_stopped_past_its_lease_writes_nothing_for_the_run_it_lost() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let ep = endpoint().await;
    ep.hang.store(false, std::sync::atomic::Ordering::SeqCst);
    // A wait long enough to stop the replica in, then a call that must be
    // made once.
    let runbook = format!(
        "name: slow\nsteps:\n  - id: settle\n    action: wait\n    with: {{secs: {}}}\n  - id: call\n    action: http\n    with: {{url: \"http://{}/call\"}}\n",
        LEASE_SECS * 2,
        ep.addr
    );
    let root = support::root_with(&[
        ("runbooks/slow.yaml", &runbook),
        ("playbooks/slow.yaml", &playbook("slow", "Slow", "slow")),
    ]);
    let replicas = replicas(&url, root.path(), 3).await;
    let (a, b) = (&replicas[0].0, &replicas[1].0);
    let c = a.client(TOKEN);
    let body =
        webhook_body([Alert::firing(serde_json::json!({"alertname": "Slow"})).starts_at("2026-12-02T10:00:00Z")]);
    let incident = c.post_alerts(body).await.unwrap().opened[0];
    let run = first_run(&c, incident).await;
    eventually("the wait step to be running on A", async || {
        let r = c.run(run).await.ok()?;
        (r.steps[0].status == StepStatus::Running).then_some(())
    })
    .await;
    signal(a, "-STOP");

    // Another replica takes the run over once A's lease lapses, re-runs the
    // wait (idempotent) and finishes the run.
    let cb = b.client(TOKEN);
    let done = wait_run(
        &cb,
        run,
        &[RunStatus::Succeeded, RunStatus::Failed, RunStatus::Interrupted],
    )
    .await;
    assert_eq!(done.status, RunStatus::Succeeded, "{done:#?}");
    assert_eq!(done.lease.as_ref().unwrap().epoch, 2);
    assert_ne!(owner_pid(&done), a.child.id());

    // A wakes up: its wait is over and it tries to journal it; refused.
    signal(a, "-CONT");
    a.wait_for_log("not journaled: another replica holds the run now").await;
    let after = cb.run(run).await.unwrap();
    assert_eq!(after, done, "the run is as its new holder left it");
    let events = timeline(&cb, incident).await;
    let count = |f: &dyn Fn(&EventKind) -> bool| events.iter().filter(|e| f(e)).count();
    let ended = |step: &str| {
        count(
            &|e| matches!(e, EventKind::Step { run: r, step: s, status: StepStatus::Succeeded, .. } if *r == run && s == step),
        )
    };
    assert_eq!(
        ended("settle"),
        1,
        "A's late end of the wait is not on the timeline: {events:#?}"
    );
    assert_eq!(ended("call"), 1, "{events:#?}");
    assert_eq!(
        count(&|e| matches!(e, EventKind::RunFinished { run: r, .. } if *r == run)),
        1,
        "{events:#?}"
    );
    assert_eq!(
        ep.hits.lock().unwrap().iter().filter(|p| *p == "/call").count(),
        1,
        "the call was made once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_webhook_posted_to_three_replica_processes_makes_one_episode_one_incident_one_run() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let root = support::root_with(&[
        (
            "runbooks/note.yaml",
            "name: note\nsteps:\n  - id: look\n    action: wait\n    with: {secs: 0}\n",
        ),
        ("playbooks/errors.yaml", &playbook("errors", "HighErrorRate", "note")),
    ]);
    let replicas = replicas(&url, root.path(), 3).await;
    let clients: Vec<ApiClient> = replicas.iter().map(|(b, _)| b.client(TOKEN)).collect();
    let body = support::fixture("firing-single.json");
    // Both peers of an HA AlertManager pair send it to every replica.
    let posts = clients.iter().chain(clients.iter()).map(|c| {
        let (c, body) = (c.clone(), body.clone());
        tokio::spawn(async move { c.post_alerts(body).await })
    });
    let mut opened = Vec::new();
    for post in posts {
        opened.extend(post.await.unwrap().expect("every copy gets a 200").opened);
    }
    assert_eq!(opened.len(), 1, "{opened:?}");
    let run = first_run(&clients[2], opened[0]).await;
    wait_run(&clients[1], run, &[RunStatus::Succeeded]).await;
    for c in &clients {
        let incidents = c.incidents(&Default::default()).await.unwrap();
        assert_eq!(incidents.len(), 1, "every replica reads one incident");
        assert_eq!(incidents[0].alerts.len(), 1, "one episode");
        assert_eq!(incidents[0].runs, vec![run], "one run");
    }
}

/// Ends every session laojun's replicas LISTEN on, as an admin or a
/// failover of the server would.
async fn end_listeners(url: &str) -> u64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'laojun-listener' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    rows.len() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_cancels_and_pauses_are_decided_on_any_replica_once_also_without_the_listener() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let root = support::root_with(&[
        (
            "runbooks/gate.yaml",
            "name: gate\nsteps:\n  - id: ask\n    action: approval\n    with: {message: 'fail over?'}\n  - id: again\n    action: approval\n    with: {message: 'really?'}\n  - id: after\n    action: wait\n    with: {secs: 0}\n",
        ),
        ("runbooks/long.yaml", "name: long\nsteps:\n  - id: hold\n    action: wait\n    with: {secs: 300}\n"),
        (
            "playbooks/other.yaml",
            "name: other\ntrigger: {alerts: ['alertname=\"Other\"']}\nrunbooks: [{runbook: long}]\n",
        ),
        (
            "playbooks/gate.yaml",
            "name: gate\ntrigger: {alerts: ['alertname=\"Gate\"']}\ngroup_by: [service]\nrunbooks: [{runbook: gate}]\n",
        ),
    ]);
    let replicas = replicas(&url, root.path(), 3).await;
    let [a, b, c] = [0, 1, 2].map(|i| replicas[i].0.client(TOKEN));
    let gate = |service: &str| {
        webhook_body([
            Alert::firing(serde_json::json!({"alertname": "Gate", "service": service}))
                .starts_at("2026-12-02T10:00:00Z"),
        ])
    };
    let incident = a.post_alerts(gate("api")).await.unwrap().opened[0];
    let run = first_run(&a, incident).await;
    wait_run(&a, run, &[RunStatus::AwaitingApproval]).await;

    // With the LISTEN sessions gone, replicas still hear by polling.
    assert_eq!(end_listeners(&url).await, 3, "one listener per replica");
    replicas[0]
        .0
        .wait_for_log("the PostgreSQL session listening for other replicas ended; polling until it is back")
        .await;

    // Approved on B; A, which holds the run, goes on to the second ask,
    // which that decision does not answer: C denies it.
    let decision = b.approve(run).await.expect("B takes the decision");
    assert_eq!(decision.by, "api-token", "{decision:?}");
    eventually("the second ask to wait", async || {
        let r = c.run(run).await.ok()?;
        (r.step("again")?.status == StepStatus::AwaitingApproval).then_some(())
    })
    .await;
    c.deny(run).await.expect("C decides the second ask");
    let done = wait_run(&a, run, &[RunStatus::Succeeded, RunStatus::Failed]).await;
    assert_eq!(done.status, RunStatus::Failed, "denied at the second ask: {done:#?}");
    assert_eq!(owner_pid(&done), replicas[0].0.child.id(), "A ran it to the end");
    let again = b.approve(run).await.expect_err("decided once");
    assert!(again.to_string().contains("already denied by api-token"), "{again}");
    let events = timeline(&c, incident).await;
    let decisions: Vec<(String, bool)> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::Approval {
                run: r, step, approved, ..
            } if *r == run => Some((step.clone(), *approved)),
            _ => None,
        })
        .collect();
    assert_eq!(
        decisions,
        [("ask".to_string(), true), ("again".to_string(), false)],
        "{events:#?}"
    );

    // Cancelled on B while it goes on at A.
    let long = a.start_run("long", &Default::default()).await.unwrap().id;
    wait_run(&a, long, &[RunStatus::Running]).await;
    b.cancel(long, Some("wrong region")).await.expect("B asks A to cancel");
    let cancelled = wait_run(&c, long, &[RunStatus::Cancelled, RunStatus::Succeeded]).await;
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert!(cancelled.reason.unwrap_or_default().contains("wrong region"));

    // Paused on A and, at the same moment, another playbook on B: every
    // replica holds both, and a new incident B opens starts nothing.
    let (on_a, on_b) = tokio::join!(a.pause(Some("gate"), Some("maintenance")), b.pause(Some("other"), None));
    on_a.unwrap();
    on_b.unwrap();
    for r in [&a, &b, &c] {
        eventually("every replica to hold both pauses", async || {
            let view = r.automation().await.ok()?;
            let paused: Vec<&str> = view.paused_playbooks.iter().map(|p| p.playbook.as_str()).collect();
            (paused == ["gate", "other"]).then_some(())
        })
        .await;
    }
    let other = b.post_alerts(gate("web")).await.unwrap().opened[0];
    let held = wait_run(
        &b,
        first_run(&b, other).await,
        &[RunStatus::Paused, RunStatus::Succeeded, RunStatus::AwaitingApproval],
    )
    .await;
    assert_eq!(held.status, RunStatus::Paused, "{held:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_on_three_replicas_fires_once_per_tick_also_when_one_is_killed() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let root = support::root_with(&[
        (
            "runbooks/tick.yaml",
            "name: tick\nparams:\n  due: {type: string}\nsteps:\n  - id: look\n    action: wait\n    with: {secs: 0}\n",
        ),
        (
            "playbooks/every-second.yaml",
            "name: every-second\ntrigger:\n  schedule: {cron: \"* * * * * *\"}\nrunbooks:\n  - runbook: tick\n    params: {due: \"{{schedule.due}}\"}\n",
        ),
    ]);
    let mut replicas = replicas(&url, root.path(), 3).await;
    let c = replicas[2].0.client(TOKEN);
    let runs = async |c: &ApiClient| {
        let query = laojun::client::RunQuery {
            playbook: Some("every-second".into()),
            limit: Some(1000),
            ..Default::default()
        };
        c.runs(&query).await.unwrap()
    };
    eventually("six ticks fired", async || (runs(&c).await.len() >= 6).then_some(())).await;
    let (dead, _dir) = replicas.remove(0);
    dead.kill();
    let before = runs(&c).await.len();
    eventually("six more ticks after the kill", async || {
        (runs(&c).await.len() >= before + 6).then_some(())
    })
    .await;
    let all = runs(&c).await;
    let mut dues: Vec<String> = all
        .iter()
        .map(|r| r.params["due"].as_str().unwrap_or_default().to_string())
        .collect();
    let fired = dues.len();
    dues.sort();
    dues.dedup();
    assert_eq!(dues.len(), fired, "each tick fired once across the replicas: {dues:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_over_replicas_killed_and_restarted_every_second_keeps_each_acknowledged_alert_once() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let root = support::root_with(&[
        ("runbooks/note.yaml", "name: note\nsteps:\n  - id: look\n    action: wait\n    with: {secs: 0}\n"),
        (
            "playbooks/storm.yaml",
            "name: storm\ntrigger: {alerts: ['alertname=\"Storm\"']}\ngroup_by: [service]\nrunbooks: [{runbook: note}]\n",
        ),
    ]);
    let mut replicas = replicas(&url, root.path(), 3).await;
    let urls = std::sync::Arc::new(std::sync::Mutex::new(
        replicas.iter().map(|(b, _)| b.url.clone()).collect::<Vec<_>>(),
    ));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Four senders, each posting bodies of 5 new alerts over 12 groups to
    // the replicas in turn; a refused or failed post goes to the next
    // replica until one answers 200, as AlertManager retries.
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let (urls, stop) = (urls.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut turn = sender;
                for body_n in 0.. {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let names: Vec<String> = (0..5).map(|i| format!("{sender}-{body_n}-{i}")).collect();
                    let body = webhook_body(names.iter().enumerate().map(|(i, n)| {
                        let service = format!("svc-{}", (body_n * 5 + i) % 12);
                        Alert::firing(serde_json::json!({"alertname": "Storm", "service": service, "n": n}))
                            .starts_at("2026-12-02T10:00:00Z")
                    }));
                    loop {
                        turn += 1;
                        let target = { urls.lock().unwrap()[turn % 3].clone() };
                        let client = ApiClient::new(target, Some(TOKEN.to_string()));
                        if client.post_alerts(body.clone()).await.is_ok() {
                            break;
                        }
                    }
                    acknowledged.extend(names);
                }
                acknowledged
            })
        })
        .collect();
    let mut cadence = tokio::time::interval(std::time::Duration::from_secs(1));
    for cycle in 0..20 {
        cadence.tick().await;
        let i = cycle % 3;
        let (victim, dir) = replicas.remove(i);
        victim.kill();
        drop(dir);
        let fresh = replica(&url, root.path()).await;
        urls.lock().unwrap()[i] = fresh.0.url.clone();
        replicas.insert(i, fresh);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for s in senders {
        acknowledged.extend(s.await.unwrap());
    }
    let c = replicas[0].0.client(TOKEN);
    let incidents = c
        .incidents(&laojun::client::IncidentQuery {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stored: Vec<String> = incidents
        .iter()
        .flat_map(|i| i.alerts.iter().map(|a| a.labels["n"].clone()))
        .collect();
    stored.sort();
    let total = stored.len();
    stored.dedup();
    assert_eq!(stored.len(), total, "no alert stored twice");
    acknowledged.sort();
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|n| stored.binary_search(n).is_err())
        .collect();
    assert!(missing.is_empty(), "acknowledged but not stored: {missing:?}");
    let mut groups: Vec<_> = incidents.iter().map(|i| i.group.clone()).collect();
    let count = groups.len();
    groups.sort();
    groups.dedup();
    assert_eq!(groups.len(), count, "one incident per group");
    println!(
        "storm: {} alerts acknowledged over 20 kill/restart cycles, {} incidents",
        acknowledged.len(),
        incidents.len()
    );
}

/// Whether the notice `id` is still waiting to be posted, as the database says.
async fn notice_pending(url: &str, id: &str) -> bool {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .query_one("SELECT pending FROM notices WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notice_is_posted_by_one_replica_and_taken_on_by_another_only_when_its_poster_goes_silent() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let slack = support::Listener::start().await;
    let more = format!("slack: {{webhook_url: '{}/hook'}}\n", slack.url);
    let root = support::root_with(&[
        (
            "runbooks/broken.yaml",
            "name: broken\nsteps:\n  - id: fail\n    action: script\n    with: {source: 'throw \"no\"'}\n",
        ),
        (
            "playbooks/broken.yaml",
            "name: broken\ntrigger: {alerts: ['alertname=\"Broken\"']}\ngroup_by: [service]\nrunbooks: [{runbook: broken}]\n",
        ),
    ]);
    let about = |run: &str| {
        let run = run.to_string();
        let slack = slack.clone();
        move || {
            slack
                .bodies()
                .iter()
                .filter(|b| {
                    b["text"]
                        .as_str()
                        .is_some_and(|t| t.contains(&run) && t.contains("failed"))
                })
                .count()
        }
    };
    let (a, _a_dir) = replica_with(&url, root.path(), &more).await;
    let broken = |service: &str| {
        webhook_body([
            Alert::firing(serde_json::json!({"alertname": "Broken", "service": service}))
                .starts_at("2026-12-02T10:00:00Z"),
        ])
    };

    // Slack fails A's first two tries; a replica starting meanwhile leaves
    // the notice to A.
    slack.answer_with(&[500, 500]);
    let c = a.client(TOKEN);
    let incident = c.post_alerts(broken("api")).await.unwrap().opened[0];
    let run = first_run(&c, incident).await;
    let posts = about(&run.to_string());
    eventually("A's first try", async || (posts() >= 1).then_some(())).await;
    let (b, _b_dir) = replica_with(&url, root.path(), &more).await;
    assert!(
        notice_pending(&url, &format!("run_failed:{run}")).await,
        "still A's to post when B started"
    );
    assert!(
        b.logged("posting notices a previous process journaled but did not post")
            .is_empty(),
        "B took on no notice at start"
    );
    eventually("A's third try to go through", async || {
        (!notice_pending(&url, &format!("run_failed:{run}")).await).then_some(())
    })
    .await;
    assert_eq!(posts(), 3, "A's three tries, and none from B");

    // A is killed between tries: once its claim lapses, B posts it.
    slack.answer_with(&[500]);
    let incident = c.post_alerts(broken("web")).await.unwrap().opened[0];
    let second = first_run(&c, incident).await;
    let posts = about(&second.to_string());
    eventually("A's first try", async || (posts() >= 1).then_some(())).await;
    a.kill();
    b.wait_for_log("posting notices another replica journaled but did not post")
        .await;
    eventually("B's post", async || (posts() >= 2).then_some(())).await;
    eventually("the notice to be sent", async || {
        (!notice_pending(&url, &format!("run_failed:{second}")).await).then_some(())
    })
    .await;
    assert_eq!(posts(), 2, "A's failed try and B's");
}
