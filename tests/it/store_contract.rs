//! One store contract, two backends: the same day of an incident (alerts,
//! a duplicate, its runbook, an ack, a note, a pause, a manual run with an
//! idempotency key, the resolve) through the whole engine on sled and on
//! PostgreSQL reads back the same, and again after a restart on the same
//! store. Plus PostgreSQL's own: the schema migrated once however many
//! replicas start together, and a database from a newer laojun refused.

use laojun::client::{ApiClient, IncidentQuery, RunQuery, RunRequest};
use laojun::run::RunStatus;
use std::path::Path;

use serde_json::{json, Value};

use crate::support::{self, first_run, fixture, root_with, wait_run};

fn root() -> tempfile::TempDir {
    root_with(&[
        (
            "runbooks/note.yaml",
            "name: note\nsteps:\n  - id: look\n    action: wait\n    with: {secs: 0}\n",
        ),
        (
            "playbooks/errors.yaml",
            "name: errors\ntrigger: {alerts: ['alertname=\"HighErrorRate\"']}\nrunbooks: [{runbook: note}]\n",
        ),
    ])
}

/// What a user reads back, without the times and ids that differ between runs.
async fn read_back(c: &ApiClient) -> Value {
    let incidents = c
        .incidents(&IncidentQuery {
            limit: Some(100),
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    for inc in &incidents {
        let detail = c.incident(inc.id).await.unwrap();
        out.push(json!({
            "id": inc.id.to_string(),
            "status": inc.status,
            "severity": inc.severity,
            "alerts": inc.alerts.iter().map(|a| json!([a.fingerprint, a.status])).collect::<Vec<_>>(),
            "acknowledged_by": inc.acknowledged_by,
            "timeline": detail.timeline.iter().map(|e| e.what.kind_name()).collect::<Vec<_>>(),
        }));
    }
    let runs = c.runs(&RunQuery::default()).await.unwrap();
    let audit = c.audit(Some(50)).await.unwrap();
    json!({
        "incidents": out,
        "runs": runs.iter().map(|r| json!([r.id.to_string(), r.runbook, r.status.as_str(), r.incident.map(|i| i.to_string())])).collect::<Vec<_>>(),
        "audit": audit.iter().map(|a| json!([a.by, a.action, a.target])).collect::<Vec<_>>(),
        "paused": c.automation().await.unwrap().paused,
    })
}

/// The day, on `laojun serve` (the built binary) with `store` as its
/// config file's `store:` section; then the same store read back after
/// the process was killed and started again.
async fn a_day_on(store: &str) -> (Value, Value) {
    let (root, data) = (root(), tempfile::tempdir().unwrap());
    let (first, after) = a_day_in(store, root.path(), data.path()).await;
    let sled_files = data.path().join("data/store").exists();
    assert_eq!(sled_files, store == "{}", "sled's files only without store.postgres");
    (first, after)
}

/// `laojun serve` on `root`'s catalog, `data/data` as data_dir and
/// `store` as its config's `store:` section.
async fn serve_on(store: &str, root: &Path, data: &Path) -> support::Binary {
    let config = data.join("laojun.yaml");
    std::fs::write(&config, format!("store: {store}\n")).unwrap();
    support::spawn_binary(|c| {
        c.arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(root)
            .arg("--data-dir")
            .arg(data.join("data"))
            .env("LAOJUN_API_TOKEN", support::TOKEN);
    })
    .await
}

async fn a_day_in(store: &str, root: &Path, data: &Path) -> (Value, Value) {
    let start = || serve_on(store, root, data);
    let server = start().await;
    let c = server.client(support::TOKEN);
    let opened = c.post_alerts(fixture("firing-single.json")).await.unwrap();
    assert_eq!(opened.opened.len(), 1);
    // The other AlertManager peer's copy changes nothing.
    assert!(c
        .post_alerts(fixture("firing-single.json"))
        .await
        .unwrap()
        .opened
        .is_empty());
    let incident = opened.opened[0];
    let run = first_run(&c, incident).await;
    wait_run(&c, run, &[RunStatus::Succeeded]).await;
    c.ack(incident).await.unwrap();
    c.note(incident, &json!({"kind": "root_cause", "text": "a bad deploy"}))
        .await
        .unwrap();
    c.pause(Some("errors"), Some("maintenance")).await.unwrap();
    let request = RunRequest {
        idempotency_key: Some("once".into()),
        ..RunRequest::default()
    };
    let manual = c.start_run("note", &request).await.unwrap();
    let again = c.start_run("note", &request).await.unwrap();
    assert_eq!(
        (again.id, again.duplicate),
        (manual.id, true),
        "the same key is the same run"
    );
    wait_run(&c, manual.id, &[RunStatus::Succeeded]).await;
    c.resolve(incident).await.unwrap();
    let first = read_back(&c).await;
    // Everything answered is durable: a SIGKILL loses none of it.
    server.kill();

    let server = start().await;
    let after = read_back(&server.client(support::TOKEN)).await;
    drop(server);
    (first, after)
}

#[tokio::test(flavor = "multi_thread")]
async fn sled_and_postgres_keep_the_same_day_and_keep_it_across_a_restart() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let (on_sled, sled_after) = a_day_on("{}").await;
    assert_eq!(sled_after, on_sled, "sled after a restart");
    let (on_pg, pg_after) = a_day_on(&format!("{{postgres: {{url: '{url}', pool_size: 4}}}}")).await;
    assert_eq!(pg_after, on_pg, "PostgreSQL after a restart");
    assert_eq!(on_pg, on_sled, "PostgreSQL reads back what sled does");
    // And the day is all there.
    assert_eq!(on_pg["incidents"][0]["status"], "resolved", "{on_pg:#}");
    assert_eq!(on_pg["runs"].as_array().unwrap().len(), 2, "{on_pg:#}");
    assert_eq!(on_pg["paused"], false, "only a playbook was paused: {on_pg:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(std::sync::Arc::new(
            laojun::store::PostgresStore::connect(&url, 2, None).unwrap(),
        ));
    }
    let migrations: Vec<_> = stores
        .iter()
        .map(|store| {
            let store = store.clone();
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    // Under the lock each runs what the others have not: together, each
    // migration once, and none of them fails on another's tables.
    let mut ran = 0;
    for migration in migrations {
        ran += migration.await.unwrap().expect("every replica migrates");
    }
    assert_eq!(ran, laojun::store::PostgresStore::MIGRATIONS);
    assert_eq!(stores[0].migrate().await.unwrap(), 0, "nothing left to run");

    // A laojun that knows a later schema wrote here: this one stops.
    let client = tokio_postgres_client(&url).await;
    client
        .execute("UPDATE laojun_meta SET value = '99' WHERE key = 'format'", &[])
        .await
        .unwrap();
    let refused = laojun::store::PostgresStore::open(&url, 1, None, laojun::store::Use::Replica)
        .await
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("newer laojun"), "{refused}");
}

async fn tokio_postgres_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn laojun(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn store_copy_moves_a_sled_day_into_postgres_once_and_serve_reads_it_back_the_same() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let (root, sled) = (root(), tempfile::tempdir().unwrap());
    let (on_sled, _) = a_day_in("{}", root.path(), sled.path()).await;
    let from = sled.path().join("data");
    let from = from.to_str().unwrap();

    let (code, out, err) = laojun(&["store", "copy", "--from", from, "--to", &url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("read back the same counts"), "{out}");
    assert!(out.contains("       2  runs"), "both runs counted: {out}");
    // Again: every record is already there, nothing doubles.
    let (code, again, err) = laojun(&["store", "copy", "--from", from, "--to", &url]);
    assert_eq!((code, &again), (0, &out), "{err}");

    let pg = tempfile::tempdir().unwrap();
    let server = serve_on(&format!("{{postgres: {{url: '{url}'}}}}"), root.path(), pg.path()).await;
    let on_pg = read_back(&server.client(support::TOKEN)).await;
    assert_eq!(on_pg, on_sled, "PostgreSQL after the copy reads back what sled did");
    // A copy into the database replicas serve from is refused; a second
    // replica serves the same records.
    let (code, _, err) = laojun(&["store", "copy", "--from", from, "--to", &url]);
    assert_eq!(code, 1);
    assert!(err.contains("a laojun is serving from this database"), "{err}");
    let other = tempfile::tempdir().unwrap();
    let second = serve_on(&format!("{{postgres: {{url: '{url}'}}}}"), root.path(), other.path()).await;
    assert_eq!(read_back(&second.client(support::TOKEN)).await, on_sled);
    // A folder with no store in it: refused, and said why.
    let (code, _, err) = laojun(&[
        "store",
        "copy",
        "--from",
        pg.path().join("nowhere").to_str().unwrap(),
        "--to",
        &url,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no laojun store in"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn store_migrate_brings_a_new_database_up_to_date_once_and_needs_store_postgres() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("laojun.yaml");
    std::fs::write(&config, format!("store: {{postgres: {{url: '{url}'}}}}\n")).unwrap();
    let config = config.to_str().unwrap();
    let known = laojun::store::PostgresStore::MIGRATIONS;
    let (code, out, err) = laojun(&["store", "migrate", "--config", config]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("ran {known} migration(s); the schema is at version {known}")),
        "{out}"
    );
    let (code, again, _) = laojun(&["store", "migrate", "--config", config]);
    assert_eq!(
        (code, again.as_str()),
        (0, format!("the schema was up to date (version {known})\n").as_str())
    );

    std::fs::write(dir.path().join("sled.yaml"), "listen: 127.0.0.1:0\n").unwrap();
    let (code, _, err) = laojun(&[
        "store",
        "migrate",
        "--config",
        dir.path().join("sled.yaml").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("store.postgres is not set"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_sslmode_require_the_store_talks_tls_and_checks_the_servers_certificate() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let url = format!("{url}?sslmode=require");
    let ca = support::postgres::ca_file();
    let (root, data) = (root(), tempfile::tempdir().unwrap());
    let store = format!("{{postgres: {{url: '{url}', ca_file: '{}'}}}}", ca.display());
    let server = serve_on(&store, root.path(), data.path()).await;
    let c = server.client(support::TOKEN);
    assert_eq!(
        c.post_alerts(fixture("firing-single.json")).await.unwrap().opened.len(),
        1
    );
    // Every session laojun holds on its database is encrypted.
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    let admin = tokio_postgres_client(&url.replace(&format!("/{db}?sslmode=require"), "/postgres")).await;
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1",
            &[&db],
        )
        .await
        .unwrap();
    let (encrypted, all): (i64, i64) = (row.get(0), row.get(1));
    assert!(all >= 2 && encrypted == all, "{encrypted} of {all} sessions use TLS");
    drop(server);

    // Trusting only the system's CAs, the test CA's certificate is refused.
    let config = data.path().join("laojun.yaml");
    std::fs::write(&config, format!("store: {{postgres: {{url: '{url}'}}}}\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_laojun"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--root")
        .arg(root.path())
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("certificate") && err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_says_whether_the_database_takes_laojuns_writes_and_what_to_grant_when_not() {
    let Some(url) = support::postgres::database() else {
        return;
    };
    let (root, dir) = (root(), tempfile::tempdir().unwrap());
    let store_row = |url: &str| {
        let config = dir.path().join("laojun.yaml");
        let yaml = format!(
            "root: '{}'\nstore: {{postgres: {{url: '{url}'}}}}\n",
            root.path().display()
        );
        std::fs::write(&config, yaml).unwrap();
        let (_, out, err) = laojun(&["check", "--config", config.to_str().unwrap(), "-o", "json"]);
        let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
        let row = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["backend"] == "store")
            .cloned();
        row.unwrap_or_else(|| panic!("no store row: {report:#}"))
    };
    let fresh = store_row(&url);
    assert_eq!(fresh["ok"], true, "{fresh:#}");
    assert!(
        fresh["detail"]
            .as_str()
            .unwrap()
            .contains("no schema yet; serve creates it"),
        "{fresh:#}"
    );

    laojun::store::PostgresStore::connect(&url, 1, None)
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let migrated = store_row(&url);
    assert!(
        migrated["detail"].as_str().unwrap().ends_with(&format!(
            "schema version {}, writable",
            laojun::store::PostgresStore::MIGRATIONS
        )),
        "{migrated:#}"
    );

    // A login that may read but not write: the check fails and says what to grant.
    let admin = tokio_postgres_client(&url).await;
    admin
        .batch_execute("CREATE ROLE reader LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
        .await
        .unwrap();
    let reader = store_row(&url.replacen("postgres://postgres@", "postgres://reader@", 1));
    assert_eq!(reader["ok"], false, "{reader:#}");
    assert!(
        reader["detail"]
            .as_str()
            .unwrap()
            .contains("GRANT INSERT, UPDATE, DELETE ON ALL TABLES"),
        "{reader:#}"
    );
    // Nothing was written by any check.
    let written: i64 = admin
        .query_one("SELECT count(*) FROM incidents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 0);
}
