//! A commit's writes as SQL: grouped by table, with the last write to each
//! key kept (what the writes one after another would leave), so that each
//! table takes one multi-row statement (`unnest` of arrays) instead of one
//! round trip per write. A 50-alert webhook made some 150 statements; it
//! now makes about five.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::{json, nanos, pg, CHANNEL};
use crate::store::{StoreError, Write};

/// One table's rows, by key; a later write to a key replaces the earlier.
type Rows<K, V> = BTreeMap<K, V>;

struct RunRow {
    run: serde_json::Value,
    created_at: DateTime<Utc>,
    finished: bool,
    owner: String,
    epoch: i64,
}

struct NoticeRow {
    notice: serde_json::Value,
    pending: bool,
    created_at: DateTime<Utc>,
}

#[derive(Default)]
struct Grouped {
    incidents: Rows<i64, serde_json::Value>,
    alerts: Rows<(i64, i32), serde_json::Value>,
    events: Rows<(i64, i32), serde_json::Value>,
    episodes: Rows<(String, String), serde_json::Value>,
    /// `None`: taken out of the index (the incident closed).
    open: Rows<i64, Option<serde_json::Value>>,
    meta: Rows<&'static str, String>,
    runs: Rows<i64, RunRow>,
    keys: Rows<String, String>,
    audits: Vec<(DateTime<Utc>, serde_json::Value)>,
    notices: Rows<String, NoticeRow>,
    marks: Rows<String, String>,
    /// `None`: ended.
    sessions: Rows<String, Option<(serde_json::Value, DateTime<Utc>)>>,
    /// The pauses changed: the other replicas are told at COMMIT.
    paused: bool,
}

impl Grouped {
    fn add(&mut self, w: Write) -> Result<(), StoreError> {
        let n = |x: u64| x as i64;
        match w {
            Write::Incident(mut inc) => {
                inc.alerts.clear();
                self.incidents.insert(n(inc.id.number()), json(&inc)?);
            }
            Write::Alert { incident, index, alert } => {
                self.alerts.insert((n(incident.number()), index as i32), json(&alert)?);
            }
            Write::Event { incident, seq, event } => {
                self.events.insert((n(incident.number()), seq as i32), json(&event)?);
            }
            Write::Episode {
                fingerprint,
                starts_at,
                episode,
            } => {
                self.episodes.insert((fingerprint, nanos(starts_at)), json(&episode)?);
            }
            Write::Open(entry) => {
                self.open.insert(n(entry.incident.number()), Some(json(&entry)?));
            }
            Write::Closed(incident) => {
                self.open.insert(n(incident.number()), None);
            }
            Write::LastIncident(last) => {
                self.meta.insert("last_incident", last.to_string());
            }
            Write::LastRun(last) => {
                self.meta.insert("last_run", last.to_string());
            }
            Write::Run(run) => {
                let (owner, epoch) = match &run.lease {
                    Some(l) => (l.owner.clone(), l.epoch as i64),
                    None => (String::new(), 0),
                };
                let row = RunRow {
                    run: json(&run)?,
                    created_at: run.created_at,
                    finished: run.status.is_finished(),
                    owner,
                    epoch,
                };
                self.runs.insert(n(run.id.number()), row);
            }
            Write::IdempotencyKey { key, run } => {
                self.keys.insert(key, run.to_string());
            }
            Write::Audit(record) => self.audits.push((record.at, json(&record)?)),
            Write::Automation(state) => {
                self.meta.insert("automation", serde_json::to_string(&state)?);
                self.paused = true;
            }
            Write::Notice(notice) => {
                let row = NoticeRow {
                    pending: notice.state == crate::notices::NoticeState::Pending,
                    created_at: notice.created_at,
                    notice: json(&notice)?,
                };
                self.notices.insert(notice.id, row);
            }
            Write::Probe(at) => {
                self.meta.insert("probe", at.to_rfc3339());
            }
            Write::ScheduleMark { playbook, fired_at } => {
                self.marks.insert(playbook, nanos(fired_at));
            }
            Write::Session(session) => {
                let expires = session.expires_at;
                self.sessions
                    .insert(session.id_hash.clone(), Some((json(&session)?, expires)));
            }
            Write::SessionEnded(id_hash) => {
                self.sessions.insert(id_hash, None);
            }
        }
        Ok(())
    }
}

/// Writes `writes` on the commit's transaction `tx`, by `replica`; a run's
/// journal write renews its lease for `lease_secs`, and is refused (an
/// error, so the commit rolls back) when another replica holds the run.
pub(super) async fn write_all(
    tx: &impl GenericClient,
    writes: impl IntoIterator<Item = Write>,
    replica: &str,
    lease_secs: f64,
) -> Result<(), StoreError> {
    let mut g = Grouped::default();
    for w in writes {
        g.add(w)?;
    }
    if !g.incidents.is_empty() {
        let (ns, records): (Vec<i64>, Vec<serde_json::Value>) = g.incidents.into_iter().unzip();
        tx.execute(
            "INSERT INTO incidents (n, record) SELECT * FROM unnest($1::bigint[], $2::jsonb[]) \
             ON CONFLICT (n) DO UPDATE SET record = EXCLUDED.record",
            &[&ns, &records],
        )
        .await
        .map_err(pg)?;
    }
    for (table, rows) in [("incident_alerts", g.alerts), ("events", g.events)] {
        if rows.is_empty() {
            continue;
        }
        let (key, value) = match table {
            "incident_alerts" => ("idx", "alert"),
            _ => ("seq", "event"),
        };
        let mut incidents = Vec::with_capacity(rows.len());
        let mut indexes = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(rows.len());
        for ((incident, index), v) in rows {
            incidents.push(incident);
            indexes.push(index);
            values.push(v);
        }
        let sql = format!(
            "INSERT INTO {table} (incident, {key}, {value}) SELECT * FROM unnest($1::bigint[], $2::int[], $3::jsonb[]) \
             ON CONFLICT (incident, {key}) DO UPDATE SET {value} = EXCLUDED.{value}"
        );
        tx.execute(sql.as_str(), &[&incidents, &indexes, &values])
            .await
            .map_err(pg)?;
    }
    if !g.episodes.is_empty() {
        let mut fingerprints = Vec::with_capacity(g.episodes.len());
        let mut starts = Vec::with_capacity(g.episodes.len());
        let mut values = Vec::with_capacity(g.episodes.len());
        for ((fingerprint, starts_at), v) in g.episodes {
            fingerprints.push(fingerprint);
            starts.push(starts_at);
            values.push(v);
        }
        tx.execute(
            "INSERT INTO episodes (fingerprint, starts_at, episode) SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[]) \
             ON CONFLICT (fingerprint, starts_at) DO UPDATE SET episode = EXCLUDED.episode",
            &[&fingerprints, &starts, &values],
        )
        .await
        .map_err(pg)?;
    }
    if !g.open.is_empty() {
        let (mut put, mut put_entries, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for (incident, entry) in g.open {
            match entry {
                Some(e) => {
                    put.push(incident);
                    put_entries.push(e);
                }
                None => gone.push(incident),
            }
        }
        if !gone.is_empty() {
            tx.execute("DELETE FROM open_incidents WHERE incident = ANY($1)", &[&gone])
                .await
                .map_err(pg)?;
        }
        if !put.is_empty() {
            tx.execute(
                "INSERT INTO open_incidents (incident, entry) SELECT * FROM unnest($1::bigint[], $2::jsonb[]) \
                 ON CONFLICT (incident) DO UPDATE SET entry = EXCLUDED.entry",
                &[&put, &put_entries],
            )
            .await
            .map_err(pg)?;
        }
    }
    if !g.meta.is_empty() {
        let (keys, values): (Vec<&str>, Vec<String>) = g.meta.into_iter().unzip();
        set_meta_all(tx, &keys, &values).await.map_err(pg)?;
    }
    if !g.runs.is_empty() {
        write_runs(tx, g.runs, lease_secs).await?;
    }
    if !g.keys.is_empty() {
        let (keys, runs): (Vec<String>, Vec<String>) = g.keys.into_iter().unzip();
        tx.execute(
            "INSERT INTO idempotency_keys (key, run) SELECT * FROM unnest($1::text[], $2::text[]) \
             ON CONFLICT (key) DO UPDATE SET run = EXCLUDED.run",
            &[&keys, &runs],
        )
        .await
        .map_err(pg)?;
    }
    for (at, record) in g.audits {
        // A record the same to the nanosecond is the same record (a second
        // `laojun store copy`), not another action.
        tx.execute(
            "INSERT INTO audit (at, record) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM audit WHERE at = $1 AND record = $2)",
            &[&at, &record],
        )
        .await
        .map_err(pg)?;
    }
    if !g.notices.is_empty() {
        let len = g.notices.len();
        let (mut ids, mut notices, mut pending, mut created) = (
            Vec::with_capacity(len),
            Vec::with_capacity(len),
            Vec::with_capacity(len),
            Vec::with_capacity(len),
        );
        for (id, row) in g.notices {
            ids.push(id);
            notices.push(row.notice);
            pending.push(row.pending);
            created.push(row.created_at);
        }
        // The replica that journals a notice posts it: it holds the claim
        // from the start.
        tx.execute(
            "INSERT INTO notices (id, notice, pending, created_at, claimed_by, claim_until) \
             SELECT u.*, $5, clock_timestamp() + make_interval(secs => $6) \
             FROM unnest($1::text[], $2::jsonb[], $3::bool[], $4::timestamptz[]) u \
             ON CONFLICT (id) DO UPDATE SET notice = EXCLUDED.notice, pending = EXCLUDED.pending",
            &[&ids, &notices, &pending, &created, &replica, &lease_secs],
        )
        .await
        .map_err(pg)?;
    }
    if !g.marks.is_empty() {
        let (playbooks, fired): (Vec<String>, Vec<String>) = g.marks.into_iter().unzip();
        tx.execute(
            "INSERT INTO schedule_marks (playbook, fired_at) SELECT * FROM unnest($1::text[], $2::text[]) \
             ON CONFLICT (playbook) DO UPDATE SET fired_at = EXCLUDED.fired_at",
            &[&playbooks, &fired],
        )
        .await
        .map_err(pg)?;
    }
    if !g.sessions.is_empty() {
        let (mut put, mut values, mut expires, mut gone) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id_hash, session) in g.sessions {
            match session {
                Some((value, until)) => {
                    put.push(id_hash);
                    values.push(value);
                    expires.push(until);
                }
                None => gone.push(id_hash),
            }
        }
        if !gone.is_empty() {
            tx.execute("DELETE FROM sessions WHERE id_hash = ANY($1)", &[&gone])
                .await
                .map_err(pg)?;
        }
        if !put.is_empty() {
            tx.execute(
                "INSERT INTO sessions (id_hash, session, expires_at) SELECT * FROM unnest($1::text[], $2::jsonb[], $3::timestamptz[]) \
                 ON CONFLICT (id_hash) DO UPDATE SET session = EXCLUDED.session, expires_at = EXCLUDED.expires_at",
                &[&put, &values, &expires],
            )
            .await
            .map_err(pg)?;
        }
    }
    if g.paused {
        // Delivered at COMMIT: the other replicas read the pauses again.
        tx.execute("SELECT pg_notify($1, 'automation')", &[&CHANNEL])
            .await
            .map_err(pg)?;
    }
    Ok(())
}

/// Runs' journal writes: only the lease's holder writes. The writer
/// checked it under the write lock; the epoch guard here makes sure, and
/// a row it kept out fails the commit.
async fn write_runs(tx: &impl GenericClient, runs: Rows<i64, RunRow>, lease_secs: f64) -> Result<(), StoreError> {
    let len = runs.len();
    let (mut ns, mut values, mut created, mut finished, mut owners, mut epochs) = (
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
        Vec::with_capacity(len),
    );
    for (n, row) in runs {
        ns.push(n);
        values.push(row.run);
        created.push(row.created_at);
        finished.push(row.finished);
        owners.push(row.owner);
        epochs.push(row.epoch);
    }
    let written = tx
        .execute(
            "INSERT INTO runs (n, run, created_at, finished, owner, epoch, lease_until) \
             SELECT u.n, u.run, u.created_at, u.finished, u.owner, u.epoch, \
               CASE WHEN u.owner = '' THEN NULL ELSE clock_timestamp() + make_interval(secs => $7) END \
             FROM unnest($1::bigint[], $2::jsonb[], $3::timestamptz[], $4::bool[], $5::text[], $6::bigint[]) \
               AS u(n, run, created_at, finished, owner, epoch) \
             ON CONFLICT (n) DO UPDATE SET run = EXCLUDED.run, finished = EXCLUDED.finished, lease_until = EXCLUDED.lease_until \
             WHERE runs.owner = EXCLUDED.owner AND runs.epoch = EXCLUDED.epoch",
            &[&ns, &values, &created, &finished, &owners, &epochs, &lease_secs],
        )
        .await
        .map_err(pg)?;
    if written as usize != len {
        return Err(StoreError::Corrupt(format!(
            "{} of {len} runs' journal writes were refused: another replica holds them now",
            len - written as usize
        )));
    }
    Ok(())
}

/// Sets keys of `laojun_meta`, in one statement.
pub(super) async fn set_meta_all(
    tx: &impl GenericClient,
    keys: &[&str],
    values: &[String],
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO laojun_meta (key, value) SELECT * FROM unnest($1::text[], $2::text[]) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        &[&keys, &values],
    )
    .await
}
