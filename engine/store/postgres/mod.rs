//! The store on PostgreSQL (`store.postgres.url`): the same records as
//! sled's, one table per kind, JSON values. `apply` runs every batch of a
//! commit in one transaction, so a commit is durable once it returns and
//! `flush` has nothing left to do. The schema is created and brought up
//! to date at open, under an advisory lock so replicas starting together
//! do not race (`laojun store migrate` does the same by hand).
//!
//! The `Store` trait is synchronous (the writer is a thread; reads run on
//! the blocking pool), so each call runs its queries on the runtime the
//! store was opened on and waits for them.

mod writes;

use std::path::Path;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Audit, Episode, Exclusive, IncidentFilter, OpenEntry, Store, StoreError, Write};
use crate::ids::{IncidentId, RunId};
use crate::incident::{Event, Incident, IncidentAlert};
use crate::run::Run;

/// The schema's versions, in order; `laojun_meta.format` says how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE laojun_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE incidents (n bigint PRIMARY KEY, record jsonb NOT NULL);
CREATE TABLE incident_alerts (incident bigint NOT NULL, idx integer NOT NULL, alert jsonb NOT NULL,
  PRIMARY KEY (incident, idx));
CREATE TABLE events (incident bigint NOT NULL, seq integer NOT NULL, event jsonb NOT NULL,
  PRIMARY KEY (incident, seq));
-- startsAt as AlertManager wrote it, to the nanosecond (timestamptz keeps microseconds).
CREATE TABLE episodes (fingerprint text NOT NULL, starts_at text NOT NULL, episode jsonb NOT NULL,
  PRIMARY KEY (fingerprint, starts_at));
CREATE TABLE open_incidents (incident bigint PRIMARY KEY, entry jsonb NOT NULL);
CREATE TABLE runs (n bigint PRIMARY KEY, run jsonb NOT NULL, created_at timestamptz NOT NULL,
  finished boolean NOT NULL);
CREATE INDEX runs_unfinished ON runs (n) WHERE NOT finished;
CREATE TABLE idempotency_keys (key text PRIMARY KEY, run text NOT NULL);
CREATE TABLE audit (id bigserial PRIMARY KEY, at timestamptz NOT NULL, record jsonb NOT NULL);
CREATE INDEX audit_at ON audit (at, id);
CREATE TABLE notices (id text PRIMARY KEY, notice jsonb NOT NULL, pending boolean NOT NULL,
  created_at timestamptz NOT NULL);
CREATE TABLE schedule_marks (playbook text PRIMARY KEY, fired_at text NOT NULL);
"#,
    r#"
-- Leases: the replica that holds an unfinished run, the epoch of that hold
-- (up by one at each takeover) and until when it holds without renewing.
ALTER TABLE runs ADD COLUMN owner text NOT NULL DEFAULT '',
  ADD COLUMN epoch bigint NOT NULL DEFAULT 0, ADD COLUMN lease_until timestamptz;
CREATE INDEX runs_leases ON runs (owner) WHERE NOT finished;
-- Decided on any replica, acted on by the one holding the run.
CREATE TABLE decisions (run bigint NOT NULL, step text NOT NULL, approved boolean NOT NULL,
  by_name text NOT NULL, at timestamptz NOT NULL, PRIMARY KEY (run, step));
CREATE TABLE cancels (run bigint PRIMARY KEY, why text NOT NULL, at timestamptz NOT NULL);
"#,
    r#"
-- The replica posting a pending notice, and until when: one poster at a time.
ALTER TABLE notices ADD COLUMN claimed_by text NOT NULL DEFAULT '', ADD COLUMN claim_until timestamptz;
"#,
    r#"
-- One run changes a target at a time, across replicas; a dead holder's
-- locks lapse with its leases.
CREATE TABLE target_locks (target text PRIMARY KEY, run bigint NOT NULL, owner text NOT NULL,
  until timestamptz NOT NULL);
"#,
    r#"
-- Web view sessions, by the hash of the id the cookie holds.
CREATE TABLE sessions (id_hash text PRIMARY KEY, session jsonb NOT NULL, expires_at timestamptz NOT NULL);
"#,
];

/// The writers of every replica take this advisory lock for one commit:
/// from before the ledger decides what to write until COMMIT.
const WRITE_LOCK: i64 = 0x6c61_6f6a_7577;

/// How long a session may sit in a transaction doing nothing before the
/// server ends it (and its locks): far above the time a writer decides
/// between statements, even for a batch of 512 webhooks.
const IDLE_IN_TRANSACTION_MS: u32 = 10_000;

/// laojun's tables, for `check`.
const TABLES: &[&str] = &[
    "laojun_meta",
    "incidents",
    "incident_alerts",
    "events",
    "episodes",
    "open_incidents",
    "runs",
    "idempotency_keys",
    "audit",
    "notices",
    "schedule_marks",
    "decisions",
    "cancels",
    "target_locks",
    "sessions",
];

/// Replicas take this advisory lock while they migrate.
const MIGRATION_LOCK: i64 = 0x6c61_6f6a_756e; // "laojun"
/// Every replica serving from the database holds this one shared for as
/// long as it runs; `laojun store copy` takes it alone, so neither starts
/// while the other uses the database.
const IN_USE_LOCK: i64 = 0x6c61_6f6a_756f;

/// How a process uses the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// `serve`: one replica among any number.
    Replica,
    /// `laojun store copy`: nobody else.
    Alone,
}

pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    runtime: tokio::runtime::Handle,
    /// The session holding `IN_USE_LOCK`, once `open` took it.
    in_use: Option<tokio_postgres::Client>,
    /// This process among the replicas: its leases' name and length.
    replica: crate::store::Replica,
    /// Woken by the LISTEN session on another replica's NOTIFY.
    wake: std::sync::Arc<tokio::sync::Notify>,
    /// `laojun_meta.commits` after this process's last commit under
    /// `WRITE_LOCK` (-1 before the first): another value means another
    /// replica committed since.
    seen: std::sync::atomic::AtomicI64,
}

/// A driver or pool error with its causes (see `crate::causes`).
fn pg(e: impl std::error::Error) -> StoreError {
    StoreError::Postgres(crate::causes::with_causes(&e))
}

impl PostgresStore {
    /// Connects to `url` (a libpq URL or key=value string) with a pool of
    /// `pool_size`, and brings the schema up to date. Call from within a
    /// tokio runtime; the store's calls then run on it.
    ///
    /// Replicas share the database (`Use::Replica`); `laojun store copy`
    /// needs it to itself (`Use::Alone`). A session-level advisory lock,
    /// held for as long as the store lives, keeps the two apart.
    pub async fn open(
        url: &str,
        pool_size: usize,
        ca_file: Option<&Path>,
        using: Use,
    ) -> Result<PostgresStore, StoreError> {
        let mut store = PostgresStore::connect(url, pool_size, ca_file)?;
        store.migrate().await?;
        let (session, connection) = store.config.connect(store.tls.clone()).await.map_err(pg)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "lost the PostgreSQL session that holds the store's lock");
            }
        });
        let (sql, refused) = match using {
            Use::Replica => (
                "SELECT pg_try_advisory_lock_shared($1)",
                "`laojun store copy` is writing this database; start laojun once it is done",
            ),
            Use::Alone => (
                "SELECT pg_try_advisory_lock($1)",
                "a laojun is serving from this database; stop every replica first",
            ),
        };
        let held: bool = session.query_one(sql, &[&IN_USE_LOCK]).await.map_err(pg)?.get(0);
        if !held {
            return Err(StoreError::Postgres(refused.into()));
        }
        store.in_use = Some(session);
        if using == Use::Replica {
            tokio::spawn(listen(store.config.clone(), store.tls.clone(), store.wake.clone()));
        }
        Ok(store)
    }

    /// Leases last `secs` without renewal (`store.postgres.lease_secs`).
    pub fn with_lease(mut self, secs: u64) -> PostgresStore {
        self.replica.lease = std::time::Duration::from_secs(secs);
        self
    }

    /// Lease length as the SQL parameter it is passed as.
    fn lease_secs(&self) -> f64 {
        self.replica.lease.as_secs_f64()
    }

    /// How many migrations this laojun knows.
    pub const MIGRATIONS: usize = MIGRATIONS.len();

    /// The pool, without touching the database yet (see `open`).
    /// TLS when the URL asks for it (`sslmode=require`), and then the
    /// server's certificate is always verified, against `ca_file` or the
    /// system's CA roots (stricter than libpq's `require`). Without it
    /// (`prefer`, the default, or `disable`) the connection is plain: a
    /// half-trusted TLS that any certificate satisfies is not offered.
    pub fn connect(url: &str, pool_size: usize, ca_file: Option<&Path>) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Postgres(format!("store.postgres.url does not parse: {e}")))?;
        if config.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        // A replica stopped mid-commit (SIGSTOP, a VM paused) would hold
        // the write lock, and with it every replica, for as long as it
        // sleeps: the server ends such a transaction after a while.
        let options = format!(
            "{} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}",
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim());
        let tls = tls(ca_file)?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(pg)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Postgres("the store must be opened on a tokio runtime".into()))?;
        Ok(PostgresStore {
            pool,
            config,
            tls,
            runtime,
            in_use: None,
            replica: crate::store::Replica {
                name: replica_name(),
                lease: std::time::Duration::from_secs(30),
            },
            wake: std::sync::Arc::new(tokio::sync::Notify::new()),
            seen: std::sync::atomic::AtomicI64::new(-1),
        })
    }

    /// Runs the migrations this database has not had, under the advisory
    /// lock; returns how many ran. A database migrated by a newer laojun
    /// is refused.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let mut client = self.pool.get().await.map_err(pg)?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg)?;
        let exists: bool = tx
            .query_one("SELECT to_regclass('laojun_meta') IS NOT NULL", &[])
            .await
            .map_err(pg)?
            .get(0);
        let found = if exists {
            tx.query_opt("SELECT value FROM laojun_meta WHERE key = 'format'", &[])
                .await
                .map_err(pg)?
                .map(|r| r.get::<_, String>(0).parse::<u64>().unwrap_or(0))
                .unwrap_or(0)
        } else {
            0
        };
        let known = MIGRATIONS.len() as u64;
        if found > known {
            return Err(StoreError::Newer { found, known });
        }
        for migration in &MIGRATIONS[found as usize..] {
            tx.batch_execute(migration).await.map_err(pg)?;
        }
        tx.execute(
            "INSERT INTO laojun_meta (key, value) VALUES ('format', $1) ON CONFLICT (key) DO UPDATE SET value = $1",
            &[&known.to_string()],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok((known - found) as usize)
    }

    /// For `laojun check`, changing nothing: the schema's version, and
    /// whether this login may write laojun's tables (or create them).
    pub async fn check(&self) -> Result<String, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT to_regclass('laojun_meta') IS NOT NULL, current_user, current_database(), \
                 has_database_privilege(current_database(), 'CREATE')",
                &[],
            )
            .await
            .map_err(pg)?;
        let (exists, user, db, create): (bool, String, String, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
        let known = MIGRATIONS.len();
        if !exists {
            return if create {
                Ok(format!("{user}@{db}: no schema yet; serve creates it at start"))
            } else {
                Err(StoreError::Postgres(format!(
                    "{user}@{db}: no schema, and {user} may not create one: GRANT CREATE ON DATABASE {db} TO {user}, or run laojun store migrate as its owner"
                )))
            };
        }
        let found: String = client
            .query_opt("SELECT value FROM laojun_meta WHERE key = 'format'", &[])
            .await
            .map_err(pg)?
            .map(|r| r.get(0))
            .unwrap_or_default();
        let found: usize = found.parse().unwrap_or(0);
        if found > known {
            return Err(StoreError::Newer {
                found: found as u64,
                known: known as u64,
            });
        }
        let writable: bool = client
            .query_one(
                "SELECT bool_and(has_table_privilege(t, 'INSERT, UPDATE, DELETE')) FROM unnest($1::text[]) t",
                &[&TABLES],
            )
            .await
            .map_err(pg)?
            .get(0);
        if !writable {
            return Err(StoreError::Postgres(format!(
                "{user}@{db}: {user} may not write every laojun table: GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {user}"
            )));
        }
        let pending = if found < known {
            format!("; serve runs {} migration(s) at start", known - found)
        } else {
            String::new()
        };
        Ok(format!("{user}@{db}: schema version {found}, writable{pending}"))
    }

    /// Runs `work` on the store's runtime and waits for it.
    fn block<T>(&self, work: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            // On a runtime thread: let the runtime move its other tasks
            // elsewhere while this one waits.
            tokio::task::block_in_place(|| self.runtime.block_on(work))
        } else {
            self.runtime.block_on(work)
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pg)
    }

    /// One JSON value by `sql` (one parameter), decoded.
    fn one<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        param: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<Option<T>, StoreError> {
        self.block(async {
            let row = self.client().await?.query_opt(sql, &[param]).await.map_err(pg)?;
            row.map(|r| Ok(serde_json::from_value(r.get::<_, serde_json::Value>(0))?))
                .transpose()
        })
    }

    /// Every JSON value `sql` gives, decoded.
    fn all<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<T>, StoreError> {
        self.block(async {
            let rows = self.client().await?.query(sql, params).await.map_err(pg)?;
            rows.into_iter()
                .map(|r| Ok(serde_json::from_value(r.get::<_, serde_json::Value>(0))?))
                .collect()
        })
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.block(async {
            let row = self
                .client()
                .await?
                .query_opt("SELECT value FROM laojun_meta WHERE key = $1", &[&key])
                .await
                .map_err(pg)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn fill_alerts(&self, inc: &mut Incident) -> Result<(), StoreError> {
        inc.alerts = self.all(
            "SELECT alert FROM incident_alerts WHERE incident = $1 ORDER BY idx",
            &[&(inc.id.number() as i64)],
        )?;
        Ok(())
    }
}

/// Run ids as the `bigint[]` the queries take.
fn numbers(runs: &[RunId]) -> Vec<i64> {
    runs.iter().map(|r| r.number() as i64).collect()
}

/// The channel replicas NOTIFY on when they store a decision, a cancel or
/// a pause.
const CHANNEL: &str = "laojun";

/// Keeps a session that LISTENs on `CHANNEL` and wakes `wake` on each
/// notification; when the session drops (the server restarted, an admin
/// ended it), connects again after a second. Replicas poll as well, so
/// nothing waits on this session alone.
async fn listen(mut config: tokio_postgres::Config, tls: MakeRustlsConnect, wake: std::sync::Arc<tokio::sync::Notify>) {
    config.application_name("laojun-listener");
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                                let _ = tx.send(());
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Some(e),
                            None => return None,
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        tracing::debug!("listening for other replicas' notifications");
                        // Whatever was stored while nobody listened.
                        wake.notify_one();
                        while heard.recv().await.is_some() {
                            wake.notify_one();
                        }
                    }
                    Err(e) => tracing::warn!(error = %crate::causes::with_causes(&e), "LISTEN failed"),
                }
                // Closing the session ends the driver (it would wait on it
                // forever after a failed LISTEN).
                drop(client);
                let why = driver.await.ok().flatten().map(|e| crate::causes::with_causes(&e));
                tracing::warn!(error = ?why, "the PostgreSQL session listening for other replicas ended; polling until it is back");
            }
            Err(e) => {
                tracing::warn!(error = %crate::causes::with_causes(&e), "cannot connect the PostgreSQL session that listens for other replicas; polling meanwhile")
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// This process's name among replicas: host and process id, and a count
/// when one process opens several stores (tests run replicas in one).
fn replica_name() -> String {
    static OPENED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "laojun".into());
    let n = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // A container restarted in place has the same host name and pid: the
    // nonce keeps the new process from renewing the old one's leases.
    let mut nonce = [0u8; 3];
    let _ = getrandom::fill(&mut nonce);
    let pid = std::process::id();
    let nonce = hex::encode(nonce);
    if n == 0 {
        format!("{host}/{pid}-{nonce}")
    } else {
        format!("{host}/{pid}.{n}-{nonce}")
    }
}

/// The TLS connector: rustls with ring, trusting `ca_file`'s certificates
/// or else the system's.
fn tls(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                StoreError::Postgres(format!("store.postgres.ca_file {}: {e}", path.display()))
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"holds no certificate (PEM, BEGIN CERTIFICATE)"));
            }
        }
        None => {
            // Certificates the system has that rustls cannot parse are skipped.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(pg)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn json(value: &impl serde::Serialize) -> Result<serde_json::Value, StoreError> {
    Ok(serde_json::to_value(value)?)
}

fn nanos(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

async fn set_meta(tx: &impl GenericClient, key: &str, value: &str) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO laojun_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
        &[&key, &value],
    )
    .await
}

/// One commit under `WRITE_LOCK`, on a session of its own.
struct Locked<'a> {
    store: &'a PostgresStore,
    client: Option<deadpool_postgres::Object>,
    commits: i64,
    stale: bool,
}

impl Exclusive for Locked<'_> {
    fn stale(&self) -> bool {
        self.stale
    }

    fn held(&self, runs: &[(RunId, crate::run::Lease)]) -> Result<std::collections::HashSet<RunId>, StoreError> {
        let client = self
            .client
            .as_ref()
            .expect("a Locked holds its session until it applies");
        let ids: Vec<i64> = runs.iter().map(|(id, _)| id.number() as i64).collect();
        let rows = self.store.block(async {
            client
                .query(
                    "SELECT n, owner, epoch FROM runs WHERE n = ANY($1) AND lease_until > clock_timestamp()",
                    &[&ids],
                )
                .await
                .map_err(pg)
        })?;
        let now: std::collections::HashMap<i64, (String, i64)> =
            rows.iter().map(|r| (r.get(0), (r.get(1), r.get(2)))).collect();
        Ok(runs
            .iter()
            .filter(|(id, lease)| {
                now.get(&(id.number() as i64))
                    .is_some_and(|(owner, epoch)| *owner == lease.owner && *epoch == lease.epoch as i64)
            })
            .map(|(id, _)| *id)
            .collect())
    }

    fn apply(mut self: Box<Self>, batches: Vec<Vec<Write>>) -> Result<(), StoreError> {
        let client = self.client.take().expect("a Locked holds its session until it applies");
        let store = self.store;
        let next = self.commits + 1;
        let done = store.block(async {
            writes::write_all(
                &client,
                batches.into_iter().flatten(),
                &store.replica.name,
                store.lease_secs(),
            )
            .await?;
            set_meta(&client, "commits", &next.to_string()).await.map_err(pg)?;
            client.batch_execute("COMMIT").await.map_err(pg)
        });
        match done {
            Ok(()) => store.seen.store(next, std::sync::atomic::Ordering::Release),
            Err(_) => rollback(store, client),
        }
        done
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            rollback(self.store, client);
        }
    }
}

/// Ends the session's transaction (and with it the lock); a session that
/// cannot is closed rather than given back to the pool mid-transaction.
fn rollback(store: &PostgresStore, client: deadpool_postgres::Object) {
    if store
        .block(async { client.batch_execute("ROLLBACK").await.map_err(pg) })
        .is_err()
    {
        drop(deadpool_postgres::Object::take(client));
    }
}

impl Store for PostgresStore {
    fn replica(&self) -> Option<&crate::store::Replica> {
        Some(&self.replica)
    }

    fn renew_leases(&self, runs: &[RunId]) -> Result<Vec<RunId>, StoreError> {
        let ids = numbers(runs);
        // No write lock: a takeover changes the owner under a row lock, so
        // a renewal either comes first (and the lease no longer lapsed) or
        // finds the run gone. Rows locked in `n` order, as commits lock
        // them, so the two never wait on each other in a cycle.
        self.block(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "WITH mine AS (SELECT n FROM runs WHERE n = ANY($3) AND owner = $1 AND NOT finished \
                       AND lease_until > clock_timestamp() ORDER BY n FOR UPDATE) \
                     UPDATE runs r SET lease_until = clock_timestamp() + make_interval(secs => $2) \
                     FROM mine WHERE r.n = mine.n RETURNING r.n",
                    &[&self.replica.name, &self.lease_secs(), &ids],
                )
                .await
                .map_err(pg)?;
            client
                .execute(
                    "UPDATE target_locks SET until = clock_timestamp() + make_interval(secs => $2) \
                     WHERE owner = $1 AND run = ANY($3) AND until > clock_timestamp()",
                    &[&self.replica.name, &self.lease_secs(), &ids],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(|r| RunId::new(r.get::<_, i64>(0) as u64)).collect())
        })
    }

    fn take_over(&self, except: &[RunId]) -> Result<Vec<crate::store::TakenOver>, StoreError> {
        let except = numbers(except);
        let rows = self.block(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            // Under the write lock: a writer checks leases and commits
            // under it, so no journal write of the old epoch lands after.
            // Not waiting for it: a busy lock means commits going on, and
            // the next look comes soon.
            let locked: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&WRITE_LOCK])
                .await
                .map_err(pg)?
                .get(0);
            if !locked {
                return Ok(Vec::new());
            }
            let rows = tx
                .query(
                    "WITH lapsed AS ( \
                       SELECT n, owner, COALESCE(lease_until, created_at) AS lapsed_at FROM runs \
                       WHERE NOT finished AND (lease_until IS NULL OR lease_until < clock_timestamp()) \
                         AND NOT (n = ANY($3)) \
                       ORDER BY n FOR UPDATE SKIP LOCKED) \
                     UPDATE runs r SET owner = $1, epoch = r.epoch + 1, \
                       lease_until = clock_timestamp() + make_interval(secs => $2), \
                       run = jsonb_set(r.run, '{lease}', jsonb_build_object('owner', $1::text, 'epoch', r.epoch + 1)) \
                     FROM lapsed WHERE r.n = lapsed.n \
                     RETURNING r.run, lapsed.owner, \
                       EXTRACT(EPOCH FROM clock_timestamp() - lapsed.lapsed_at)::float8 + $2",
                    &[&self.replica.name, &self.lease_secs(), &except],
                )
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(rows)
        })?;
        let mut taken = Vec::with_capacity(rows.len());
        for row in rows {
            let run: Run = serde_json::from_value(row.get(0))?;
            let from: String = row.get(1);
            let silent: f64 = row.get(2);
            taken.push(crate::store::TakenOver {
                run,
                silent: std::time::Duration::from_secs_f64(if from.is_empty() { 0.0 } else { silent.max(0.0) }),
                from,
            });
        }
        taken.sort_by_key(|t| t.run.id);
        Ok(taken)
    }

    fn wake_ups(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        Some(self.wake.clone())
    }

    fn lock_targets(&self, targets: &[String], run: RunId) -> Result<Option<(String, RunId)>, StoreError> {
        let mut sorted = targets.to_vec();
        // One order for every replica, so two runs wanting the same pair
        // never wait on each other in a cycle.
        sorted.sort();
        let n = run.number() as i64;
        self.block(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            let taken = tx
                .execute(
                    "INSERT INTO target_locks (target, run, owner, until) \
                     SELECT t, $2, $3, clock_timestamp() + make_interval(secs => $4) FROM unnest($1::text[]) t \
                     ON CONFLICT (target) DO UPDATE SET run = EXCLUDED.run, owner = EXCLUDED.owner, until = EXCLUDED.until \
                     WHERE target_locks.run = EXCLUDED.run OR target_locks.until < clock_timestamp()",
                    &[&sorted, &n, &self.replica.name, &self.lease_secs()],
                )
                .await
                .map_err(pg)?;
            if taken as usize == sorted.len() {
                tx.commit().await.map_err(pg)?;
                return Ok(None);
            }
            let holder = tx
                .query_opt(
                    "SELECT target, run FROM target_locks WHERE target = ANY($1) AND run <> $2 LIMIT 1",
                    &[&sorted, &n],
                )
                .await
                .map_err(pg)?;
            tx.rollback().await.map_err(pg)?;
            Ok(Some(holder.map_or_else(
                || (sorted[0].clone(), run),
                |r| (r.get::<_, String>(0), RunId::new(r.get::<_, i64>(1) as u64)),
            )))
        })
    }

    fn unlock_targets(&self, targets: &[String], run: RunId) -> Result<(), StoreError> {
        self.block(async {
            self.client()
                .await?
                .execute(
                    "WITH gone AS (DELETE FROM target_locks WHERE target = ANY($1) AND run = $2 AND owner = $3 RETURNING 1) \
                     SELECT pg_notify($4, 'unlocked') FROM gone LIMIT 1",
                    &[&targets, &(run.number() as i64), &self.replica.name, &CHANNEL],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    fn claim_notice(&self, id: &str) -> Result<bool, StoreError> {
        self.block(async {
            let claimed = self
                .client()
                .await?
                .execute(
                    "UPDATE notices SET claimed_by = $2, claim_until = clock_timestamp() + make_interval(secs => $3) \
                     WHERE id = $1 AND pending AND (claimed_by = $2 OR claim_until IS NULL OR claim_until < clock_timestamp())",
                    &[&id, &self.replica.name, &self.lease_secs()],
                )
                .await
                .map_err(pg)?;
            Ok(claimed == 1)
        })
    }

    fn decide(&self, d: &crate::store::Decided) -> Result<Option<crate::store::Decided>, StoreError> {
        let run = d.run.number() as i64;
        let taken = self.block(async {
            let client = self.client().await?;
            let inserted = client
                .execute(
                    "WITH taken AS (INSERT INTO decisions (run, step, approved, by_name, at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (run, step) DO NOTHING RETURNING run) \
                     SELECT pg_notify($6, 'decision') FROM taken",
                    &[&run, &d.step, &d.approved, &d.by, &d.at, &CHANNEL],
                )
                .await
                .map_err(pg)?;
            Ok(inserted == 1)
        })?;
        if taken {
            return Ok(None);
        }
        Ok(self.decisions(&[d.run])?.into_iter().find(|e| e.step == d.step))
    }

    fn decisions(&self, runs: &[RunId]) -> Result<Vec<crate::store::Decided>, StoreError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let ids = numbers(runs);
        let rows = self.block(async {
            self.client()
                .await?
                .query(
                    "SELECT run, step, approved, by_name, at FROM decisions WHERE run = ANY($1) ORDER BY at",
                    &[&ids],
                )
                .await
                .map_err(pg)
        })?;
        Ok(rows
            .iter()
            .map(|r| crate::store::Decided {
                run: RunId::new(r.get::<_, i64>(0) as u64),
                step: r.get(1),
                approved: r.get(2),
                by: r.get(3),
                at: r.get(4),
            })
            .collect())
    }

    fn ask_cancel(&self, run: RunId, why: &str) -> Result<(), StoreError> {
        self.block(async {
            self.client()
                .await?
                .execute(
                    "WITH asked AS (INSERT INTO cancels (run, why, at) VALUES ($1, $2, now()) \
                     ON CONFLICT (run) DO NOTHING RETURNING run) SELECT pg_notify($3, 'cancel') FROM asked",
                    &[&(run.number() as i64), &why, &CHANNEL],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    fn cancels(&self, runs: &[RunId]) -> Result<Vec<(RunId, String)>, StoreError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let ids = numbers(runs);
        let rows = self.block(async {
            self.client()
                .await?
                .query("SELECT run, why FROM cancels WHERE run = ANY($1)", &[&ids])
                .await
                .map_err(pg)
        })?;
        Ok(rows
            .iter()
            .map(|r| (RunId::new(r.get::<_, i64>(0) as u64), r.get(1)))
            .collect())
    }

    fn begin(&self) -> Result<Box<dyn Exclusive + '_>, StoreError> {
        let (client, commits) = self.block(async {
            let client = self.client().await?;
            let locked = async {
                client.batch_execute("BEGIN").await?;
                client
                    .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
                    .await?;
                let row = client
                    .query_opt("SELECT value FROM laojun_meta WHERE key = 'commits'", &[])
                    .await?;
                Ok::<_, tokio_postgres::Error>(row.map(|r| r.get::<_, String>(0)))
            }
            .await;
            match locked {
                Ok(commits) => Ok((client, commits)),
                Err(e) => {
                    drop(deadpool_postgres::Object::take(client));
                    Err(pg(e))
                }
            }
        })?;
        let commits = commits.map(|c| c.parse::<i64>().unwrap_or(0)).unwrap_or(0);
        let stale = commits != self.seen.load(std::sync::atomic::Ordering::Acquire);
        Ok(Box::new(Locked {
            store: self,
            client: Some(client),
            commits,
            stale,
        }))
    }

    fn apply(&self, batches: Vec<Vec<Write>>) -> Result<(), StoreError> {
        self.block(async {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            writes::write_all(
                &tx,
                batches.into_iter().flatten(),
                &self.replica.name,
                self.lease_secs(),
            )
            .await?;
            // 200 is answered after this: the commit is durable.
            tx.commit().await.map_err(pg)
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Every apply committed already.
        Ok(())
    }

    fn export(&self, each: &mut dyn FnMut(Write) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let rows =
            |sql: &'static str| self.block(async move { self.client().await?.query(sql, &[]).await.map_err(pg) });
        let value = |r: &tokio_postgres::Row, i: usize| r.get::<_, serde_json::Value>(i);
        let id = |r: &tokio_postgres::Row, i: usize| IncidentId::new(r.get::<_, i64>(i) as u64);
        for r in rows("SELECT record FROM incidents ORDER BY n")? {
            each(Write::Incident(serde_json::from_value(value(&r, 0))?))?;
        }
        for r in rows("SELECT incident, idx, alert FROM incident_alerts ORDER BY incident, idx")? {
            let (incident, index) = (id(&r, 0), r.get::<_, i32>(1) as u32);
            each(Write::Alert {
                incident,
                index,
                alert: serde_json::from_value(value(&r, 2))?,
            })?;
        }
        for r in rows("SELECT incident, seq, event FROM events ORDER BY incident, seq")? {
            let (incident, seq) = (id(&r, 0), r.get::<_, i32>(1) as u32);
            each(Write::Event {
                incident,
                seq,
                event: serde_json::from_value(value(&r, 2))?,
            })?;
        }
        for r in rows("SELECT fingerprint, starts_at, episode FROM episodes ORDER BY fingerprint, starts_at")? {
            each(Write::Episode {
                fingerprint: r.get(0),
                starts_at: time(&r.get::<_, String>(1))?,
                episode: serde_json::from_value(value(&r, 2))?,
            })?;
        }
        for r in rows("SELECT entry FROM open_incidents ORDER BY incident")? {
            each(Write::Open(serde_json::from_value(value(&r, 0))?))?;
        }
        for r in rows("SELECT run FROM runs ORDER BY n")? {
            each(Write::Run(serde_json::from_value(value(&r, 0))?))?;
        }
        for r in rows("SELECT key, run FROM idempotency_keys ORDER BY key")? {
            let run: String = r.get(1);
            let run = run
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("idempotency key run {run:?}: {e}")))?;
            each(Write::IdempotencyKey { key: r.get(0), run })?;
        }
        for r in rows("SELECT record FROM audit ORDER BY at, id")? {
            each(Write::Audit(serde_json::from_value(value(&r, 0))?))?;
        }
        for r in rows("SELECT notice FROM notices ORDER BY created_at, id")? {
            each(Write::Notice(serde_json::from_value(value(&r, 0))?))?;
        }
        for r in rows("SELECT playbook, fired_at FROM schedule_marks ORDER BY playbook")? {
            each(Write::ScheduleMark {
                playbook: r.get(0),
                fired_at: time(&r.get::<_, String>(1))?,
            })?;
        }
        if let Some(n) = self.meta("last_incident")? {
            each(Write::LastIncident(number(Some(n), "last_incident")?))?;
        }
        if let Some(n) = self.meta("last_run")? {
            each(Write::LastRun(number(Some(n), "last_run")?))?;
        }
        if let Some(text) = self.meta("automation")? {
            each(Write::Automation(serde_json::from_str(&text)?))?;
        }
        Ok(())
    }

    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        let Some(mut inc) = self.incident_record(id)? else {
            return Ok(None);
        };
        self.fill_alerts(&mut inc)?;
        Ok(Some(inc))
    }

    fn incident_record(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.one("SELECT record FROM incidents WHERE n = $1", &(id.number() as i64))
    }

    fn incident_alert(&self, id: IncidentId, index: u32) -> Result<Option<IncidentAlert>, StoreError> {
        Ok(self
            .all(
                "SELECT alert FROM incident_alerts WHERE incident = $1 AND idx = $2",
                &[&(id.number() as i64), &(index as i32)],
            )?
            .pop())
    }

    fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        let status = filter.status.map(|s| json(&s)).transpose()?;
        let severity = filter.severity.map(|s| json(&s)).transpose()?;
        let mut out: Vec<Incident> = self.all(
            "SELECT record FROM incidents WHERE ($1::jsonb IS NULL OR record->'status' = $1) AND ($2::jsonb IS NULL OR record->'severity' = $2) ORDER BY n DESC LIMIT $3",
            &[&status, &severity, &(filter.limit.min(i64::MAX as usize) as i64)],
        )?;
        for inc in &mut out {
            self.fill_alerts(inc)?;
        }
        Ok(out)
    }

    fn each_open(&self, each: &mut dyn FnMut(OpenEntry)) -> Result<(), StoreError> {
        let entries: Vec<OpenEntry> = self.all("SELECT entry FROM open_incidents ORDER BY incident", &[])?;
        entries.into_iter().for_each(each);
        Ok(())
    }

    fn timeline(&self, id: IncidentId) -> Result<Vec<Event>, StoreError> {
        self.all(
            "SELECT event FROM events WHERE incident = $1 ORDER BY seq",
            &[&(id.number() as i64)],
        )
    }

    fn episode(&self, fingerprint: &str, starts_at: DateTime<Utc>) -> Result<Option<Episode>, StoreError> {
        Ok(self
            .all(
                "SELECT episode FROM episodes WHERE fingerprint = $1 AND starts_at = $2",
                &[&fingerprint, &nanos(starts_at)],
            )?
            .pop())
    }

    fn episodes(
        &self,
        keys: &[(String, DateTime<Utc>)],
    ) -> Result<std::collections::HashMap<(String, DateTime<Utc>), Episode>, StoreError> {
        if keys.is_empty() {
            return Ok(Default::default());
        }
        let fingerprints: Vec<&str> = keys.iter().map(|(f, _)| f.as_str()).collect();
        let starts: Vec<String> = keys.iter().map(|(_, t)| nanos(*t)).collect();
        let rows = self.block(async {
            self.client()
                .await?
                .query(
                    "SELECT e.fingerprint, e.starts_at, e.episode FROM episodes e \
                     JOIN unnest($1::text[], $2::text[]) AS k(fingerprint, starts_at) \
                     ON e.fingerprint = k.fingerprint AND e.starts_at = k.starts_at",
                    &[&fingerprints, &starts],
                )
                .await
                .map_err(pg)
        })?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let episode: Episode = serde_json::from_value(row.get(2))?;
            found.insert((row.get::<_, String>(0), time(&row.get::<_, String>(1))?), episode);
        }
        Ok(found)
    }

    fn last_incident(&self) -> Result<u64, StoreError> {
        number(self.meta("last_incident")?, "last_incident")
    }

    fn run(&self, id: RunId) -> Result<Option<Run>, StoreError> {
        self.one("SELECT run FROM runs WHERE n = $1", &(id.number() as i64))
    }

    fn unfinished_runs(&self) -> Result<Vec<Run>, StoreError> {
        self.all("SELECT run FROM runs WHERE NOT finished ORDER BY n", &[])
    }

    fn runs_since(&self, since: DateTime<Utc>) -> Result<Vec<Run>, StoreError> {
        self.all("SELECT run FROM runs WHERE created_at >= $1 ORDER BY n DESC", &[&since])
    }

    fn last_run(&self) -> Result<u64, StoreError> {
        number(self.meta("last_run")?, "last_run")
    }

    fn run_for_key(&self, key: &str) -> Result<Option<RunId>, StoreError> {
        self.block(async {
            let row = self
                .client()
                .await?
                .query_opt("SELECT run FROM idempotency_keys WHERE key = $1", &[&key])
                .await
                .map_err(pg)?;
            row.map(|r| {
                let text: String = r.get(0);
                text.parse()
                    .map_err(|e| StoreError::Corrupt(format!("the run of idempotency key {key:?}: {e}")))
            })
            .transpose()
        })
    }

    fn audit(&self, limit: usize) -> Result<Vec<Audit>, StoreError> {
        self.all(
            "SELECT record FROM audit ORDER BY at DESC, id DESC LIMIT $1",
            &[&(limit.min(i64::MAX as usize) as i64)],
        )
    }

    fn automation(&self) -> Result<crate::automation::Automation, StoreError> {
        match self.meta("automation")? {
            Some(text) => Ok(serde_json::from_str(&text)?),
            None => Ok(Default::default()),
        }
    }

    fn notice(&self, id: &str) -> Result<Option<crate::notices::Notice>, StoreError> {
        self.one("SELECT notice FROM notices WHERE id = $1", &id)
    }

    fn pending_notices(&self) -> Result<Vec<crate::notices::Notice>, StoreError> {
        self.all("SELECT notice FROM notices WHERE pending ORDER BY created_at, id", &[])
    }

    fn schedule_mark(&self, playbook: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.block(async {
            let row = self
                .client()
                .await?
                .query_opt("SELECT fired_at FROM schedule_marks WHERE playbook = $1", &[&playbook])
                .await
                .map_err(pg)?;
            row.map(|r| time(&r.get::<_, String>(0))).transpose()
        })
    }

    fn session(&self, id_hash: &str) -> Result<Option<crate::store::Session>, StoreError> {
        self.one("SELECT session FROM sessions WHERE id_hash = $1", &id_hash)
    }

    fn claim_schedule(
        &self,
        playbook: &str,
        expected: Option<DateTime<Utc>>,
        new: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.block(async {
            let client = self.client().await?;
            // Compare-and-set in one statement: of replicas claiming the
            // same firing, exactly one moves the mark.
            let moved = match expected {
                None => {
                    client
                        .execute(
                            "INSERT INTO schedule_marks (playbook, fired_at) VALUES ($1, $2) ON CONFLICT (playbook) DO NOTHING",
                            &[&playbook, &nanos(new)],
                        )
                        .await
                }
                Some(old) => {
                    client
                        .execute(
                            "UPDATE schedule_marks SET fired_at = $2 WHERE playbook = $1 AND fired_at = $3",
                            &[&playbook, &nanos(new), &nanos(old)],
                        )
                        .await
                }
            }
            .map_err(pg)?;
            Ok(moved == 1)
        })
    }
}

fn time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("time {text:?}: {e}")))
}

fn number(value: Option<String>, key: &str) -> Result<u64, StoreError> {
    value
        .map(|v| {
            v.parse()
                .map_err(|e| StoreError::Corrupt(format!("laojun_meta.{key} {v:?}: {e}")))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}
