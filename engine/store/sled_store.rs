//! The embedded store: one sled tree under `data_dir`, keys prefixed by
//! record type so that one `apply_batch` covers any mix of writes
//! atomically.
//!
//! Key layout (numbers big-endian so keys sort by number):
//!
//! | key | value |
//! |---|---|
//! | `i/` u64 incident number | incident JSON (without timeline and alerts) |
//! | `l/` u64 incident, u32 index | one of the incident's alerts, JSON |
//! | `t/` u64 incident, u32 sequence | timeline event JSON, or a JSON array of the events from that sequence on (one commit's consecutive events) |
//! | `e/` fingerprint, 0x00, i64 startsAt ns (sign-flipped) | episode JSON |
//! | `o/` u64 incident number | the incident is not resolved: its routing entry JSON |
//! | `m/last_incident` | u64: the highest incident number handed out |
//! | `m/format` | u64: the layout's version (3; see `migrate`) |
//! | `r/` u64 run number | run JSON |
//! | `u/` u64 run number | empty: the run is not finished |
//! | `k/` idempotency key | run id |
//! | `m/last_run` | u64: the highest run number handed out |
//! | `m/automation` | JSON: the pauses in force (everything, and per playbook) |
//! | `n/` notice id | notice JSON (what laojun posted or will post to Slack) |
//! | `q/` notice id | empty: the notice is not posted yet |
//! | `s/` playbook name | RFC 3339 time the schedule last fired |
//! | `a/` u64 ns since 1970, u64 id | audit record JSON |
//! | `m/probe` | RFC 3339 time `/readyz` last proved the store takes writes |

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::{Audit, Episode, IncidentFilter, OpenEntry, Store, StoreError, Write};
use crate::alert::Status as AlertStatus;
use crate::ids::{IncidentId, RunId};
use crate::incident::{Event, Incident, IncidentAlert};
use crate::run::Run;

pub struct SledStore {
    db: sled::Db,
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            // Hot records (recently touched incidents, recent episodes)
            // stay in memory; the rest is read from disk (and the OS's page
            // cache). sled holds about twice this in decoded nodes; 16 MiB
            // keeps 100k open incidents under 150 MB resident.
            .cache_capacity(16 * 1024 * 1024)
            .open()?;
        let store = SledStore { db };
        store.migrate()?;
        Ok(store)
    }

    /// Brings a store written by an earlier laojun to the current layout,
    /// and refuses one written by a newer laojun.
    /// Format 1 (before `m/format` existed) kept each incident's alerts
    /// inside its record, left `o/` values empty and gave episodes no alert
    /// index. Each incident moves in one batch, so a migration cut short
    /// carries on at the next start; the format is written last.
    /// Format 2 has one event per `t/` key; 3 may hold runs of events
    /// (arrays), which format-2 code cannot read. Nothing moves from 2 to 3.
    fn migrate(&self) -> Result<(), StoreError> {
        let found = read_u64(&self.db, FORMAT)?;
        if found > CURRENT_FORMAT {
            return Err(StoreError::Newer {
                found,
                known: CURRENT_FORMAT,
            });
        }
        if found == CURRENT_FORMAT {
            return Ok(());
        }
        let mut moved = 0;
        for item in self.db.scan_prefix(b"i/") {
            let (key, bytes) = item?;
            let mut inc: Incident = serde_json::from_slice(&bytes)?;
            if inc.alerts.is_empty() {
                continue;
            }
            let n = inc.id.number();
            let mut batch = sled::Batch::default();
            for (index, alert) in inc.alerts.iter().enumerate() {
                let index = index as u32;
                let episode = Episode {
                    incident: inc.id,
                    alert: index,
                    status: alert.status,
                };
                batch.insert(
                    episode_key(&alert.fingerprint, alert.starts_at),
                    serde_json::to_vec(&episode)?,
                );
                batch.insert(alert_key(n, index), serde_json::to_vec(alert)?);
            }
            inc.alert_count = inc.alerts.len() as u32;
            inc.alerts_firing = inc.alerts.iter().filter(|a| a.status == AlertStatus::Firing).count() as u32;
            inc.alerts.clear();
            if self.db.contains_key(open_key(n))? {
                batch.insert(open_key(n), serde_json::to_vec(&OpenEntry::of(&inc))?);
            }
            batch.insert(key, serde_json::to_vec(&inc)?);
            self.db.apply_batch(batch)?;
            moved += 1;
        }
        self.db.insert(FORMAT, &CURRENT_FORMAT.to_be_bytes())?;
        self.db.flush()?;
        if moved > 0 {
            tracing::warn!(incidents = moved, "moved the store to the current layout");
        }
        Ok(())
    }
}

fn incident_key(n: u64) -> Vec<u8> {
    [b"i/".as_slice(), &n.to_be_bytes()].concat()
}

fn alert_key(n: u64, index: u32) -> Vec<u8> {
    [b"l/".as_slice(), &n.to_be_bytes(), &index.to_be_bytes()].concat()
}

fn event_key(n: u64, seq: u32) -> Vec<u8> {
    [b"t/".as_slice(), &n.to_be_bytes(), &seq.to_be_bytes()].concat()
}

fn open_key(n: u64) -> Vec<u8> {
    [b"o/".as_slice(), &n.to_be_bytes()].concat()
}

fn episode_key(fingerprint: &str, starts_at: DateTime<Utc>) -> Vec<u8> {
    let nanos = starts_at
        .timestamp_nanos_opt()
        .unwrap_or(starts_at.timestamp().saturating_mul(1_000_000_000));
    // Flip the sign bit so negative times sort before positive ones.
    let sortable = (nanos as u64) ^ (1 << 63);
    [b"e/".as_slice(), fingerprint.as_bytes(), &[0], &sortable.to_be_bytes()].concat()
}

/// Web view sessions (not exported: a copied store starts signed out).
fn session_key(id_hash: &str) -> Vec<u8> {
    [b"w/".as_slice(), id_hash.as_bytes()].concat()
}

const LAST_INCIDENT: &[u8] = b"m/last_incident";
/// The layout's version: absent in the first one.
const FORMAT: &[u8] = b"m/format";
const CURRENT_FORMAT: u64 = 3;
/// The pauses in force (JSON).
const AUTOMATION: &[u8] = b"m/automation";
const LAST_RUN: &[u8] = b"m/last_run";
const PROBE: &[u8] = b"m/probe";

fn run_key(n: u64) -> Vec<u8> {
    [b"r/".as_slice(), &n.to_be_bytes()].concat()
}

fn unfinished_key(n: u64) -> Vec<u8> {
    [b"u/".as_slice(), &n.to_be_bytes()].concat()
}

fn idempotency_key(key: &str) -> Vec<u8> {
    [b"k/".as_slice(), key.as_bytes()].concat()
}

fn read_u64(db: &sled::Db, key: &[u8]) -> Result<u64, StoreError> {
    Ok(db
        .get(key)?
        .and_then(|b| b.as_ref().try_into().ok())
        .map_or(0, u64::from_be_bytes))
}

fn number_of(key: &[u8]) -> Option<u64> {
    key.get(2..10).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
}

/// The writes that make one key's record again; `None` for keys that are
/// derived (`u/`, `q/`) or not records (`m/format`, `m/probe`).
fn decode_record(key: &[u8], value: &[u8]) -> Result<Option<Vec<Write>>, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("key {:?}", String::from_utf8_lossy(key)));
    let u32_at = |at: usize| {
        key.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(corrupt)
    };
    let number = || number_of(key).ok_or_else(corrupt);
    let text = || String::from_utf8_lossy(&key[2..]).into_owned();
    let time = |bytes: &[u8]| {
        DateTime::parse_from_rfc3339(&String::from_utf8_lossy(bytes))
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(key))))
    };
    let one = |w: Write| Ok(Some(vec![w]));
    match key.get(..2).unwrap_or_default() {
        b"i/" => one(Write::Incident(serde_json::from_slice(value)?)),
        b"l/" => one(Write::Alert {
            incident: IncidentId::new(number()?),
            index: u32_at(10)?,
            alert: serde_json::from_slice(value)?,
        }),
        b"t/" => {
            let (incident, first) = (IncidentId::new(number()?), u32_at(10)?);
            let events: Vec<Event> = if value.first() == Some(&b'[') {
                serde_json::from_slice(value)?
            } else {
                vec![serde_json::from_slice(value)?]
            };
            Ok(Some(
                events
                    .into_iter()
                    .enumerate()
                    .map(|(i, event)| Write::Event {
                        incident,
                        seq: first + i as u32,
                        event,
                    })
                    .collect(),
            ))
        }
        b"e/" => {
            let rest = &key[2..];
            // fingerprint, 0x00, 8 bytes of time (which may hold zeros too).
            let zero = rest
                .len()
                .checked_sub(9)
                .filter(|z| rest[*z] == 0)
                .ok_or_else(corrupt)?;
            let sortable = u64::from_be_bytes(rest[zero + 1..].try_into().map_err(|_| corrupt())?);
            let nanos = (sortable ^ (1 << 63)) as i64;
            one(Write::Episode {
                fingerprint: String::from_utf8_lossy(&rest[..zero]).into_owned(),
                starts_at: DateTime::from_timestamp_nanos(nanos),
                episode: serde_json::from_slice(value)?,
            })
        }
        b"o/" => one(Write::Open(serde_json::from_slice(value)?)),
        b"r/" => one(Write::Run(serde_json::from_slice(value)?)),
        b"k/" => one(Write::IdempotencyKey {
            key: text(),
            run: String::from_utf8_lossy(value).parse().map_err(|_| corrupt())?,
        }),
        b"n/" => one(Write::Notice(serde_json::from_slice(value)?)),
        b"s/" => one(Write::ScheduleMark {
            playbook: text(),
            fired_at: time(value)?,
        }),
        b"a/" => one(Write::Audit(serde_json::from_slice(value)?)),
        b"m/" => {
            let u64_value = || value.try_into().map(u64::from_be_bytes).map_err(|_| corrupt());
            match key {
                LAST_INCIDENT => one(Write::LastIncident(u64_value()?)),
                LAST_RUN => one(Write::LastRun(u64_value()?)),
                AUTOMATION => one(Write::Automation(serde_json::from_slice(value)?)),
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

impl SledStore {
    /// One batch of writes as a sled batch.
    fn batch(&self, writes: Vec<Write>) -> Result<sled::Batch, StoreError> {
        let mut batch = sled::Batch::default();
        // Events of one incident with consecutive numbers go under one key,
        // the first one's: sled's cost is per key, and a 50-alert body
        // makes 50 `alert_fired` events.
        let mut events: BTreeMap<u64, Vec<(u32, Event)>> = BTreeMap::new();
        for w in writes {
            match w {
                Write::Event { incident, seq, event } => {
                    events.entry(incident.number()).or_default().push((seq, event))
                }
                Write::Incident(mut inc) => {
                    // Alerts live under their own keys (`Write::Alert`).
                    inc.alerts.clear();
                    batch.insert(incident_key(inc.id.number()), serde_json::to_vec(&inc)?)
                }
                Write::Alert { incident, index, alert } => {
                    batch.insert(alert_key(incident.number(), index), serde_json::to_vec(&alert)?)
                }
                Write::Episode {
                    fingerprint,
                    starts_at,
                    episode,
                } => batch.insert(episode_key(&fingerprint, starts_at), serde_json::to_vec(&episode)?),
                Write::Open(entry) => batch.insert(open_key(entry.incident.number()), serde_json::to_vec(&entry)?),
                Write::Closed(incident) => batch.remove(open_key(incident.number())),
                Write::LastIncident(n) => batch.insert(LAST_INCIDENT, &n.to_be_bytes()),
                Write::Run(run) => {
                    let n = run.id.number();
                    if run.status.is_finished() {
                        batch.remove(unfinished_key(n));
                    } else {
                        batch.insert(unfinished_key(n), &[][..]);
                    }
                    batch.insert(run_key(n), serde_json::to_vec(&run)?);
                }
                Write::LastRun(n) => batch.insert(LAST_RUN, &n.to_be_bytes()),
                Write::IdempotencyKey { key, run } => batch.insert(idempotency_key(&key), run.to_string().as_bytes()),
                Write::Automation(state) => batch.insert(AUTOMATION, serde_json::to_vec(&state)?),
                Write::Notice(notice) => {
                    let pending = [b"q/".as_slice(), notice.id.as_bytes()].concat();
                    if notice.state == crate::notices::NoticeState::Pending {
                        batch.insert(pending, &[][..]);
                    } else {
                        batch.remove(pending);
                    }
                    batch.insert(
                        [b"n/".as_slice(), notice.id.as_bytes()].concat(),
                        serde_json::to_vec(&notice)?,
                    );
                }
                Write::Probe(at) => batch.insert(PROBE, at.to_rfc3339().as_bytes()),
                Write::Session(session) => batch.insert(session_key(&session.id_hash), serde_json::to_vec(&session)?),
                Write::SessionEnded(id_hash) => batch.remove(session_key(&id_hash)),
                Write::ScheduleMark { playbook, fired_at } => batch.insert(
                    [b"s/".as_slice(), playbook.as_bytes()].concat(),
                    fired_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true).as_bytes(),
                ),
                Write::Audit(record) => {
                    let nanos = record.at.timestamp_nanos_opt().unwrap_or(0).max(0) as u64;
                    // The id keeps two records of the same nanosecond apart.
                    let key = [
                        b"a/".as_slice(),
                        &nanos.to_be_bytes(),
                        &self.db.generate_id()?.to_be_bytes(),
                    ]
                    .concat();
                    batch.insert(key, serde_json::to_vec(&record)?);
                }
            }
        }
        for (incident, mut list) in events {
            list.sort_by_key(|(seq, _)| *seq);
            for run in list.chunk_by(|(a, _), (b, _)| *b == a + 1) {
                let value = match run {
                    [(_, one)] => serde_json::to_vec(one)?,
                    many => serde_json::to_vec(&many.iter().map(|(_, e)| e).collect::<Vec<_>>())?,
                };
                batch.insert(event_key(incident, run[0].0), value);
            }
        }
        Ok(batch)
    }

    fn fill_alerts(&self, inc: &mut Incident) -> Result<(), StoreError> {
        let prefix = [b"l/".as_slice(), &inc.id.number().to_be_bytes()].concat();
        inc.alerts = self
            .db
            .scan_prefix(prefix)
            .map(|item| Ok(serde_json::from_slice(&item?.1)?))
            .collect::<Result<_, StoreError>>()?;
        Ok(())
    }
}

impl Store for SledStore {
    fn apply(&self, batches: Vec<Vec<Write>>) -> Result<(), StoreError> {
        for writes in batches {
            self.db.apply_batch(self.batch(writes)?)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn stays_failed(&self) -> bool {
        // sled keeps the first I/O error and returns it for every call after.
        true
    }

    fn export(&self, each: &mut dyn FnMut(Write) -> Result<(), StoreError>) -> Result<(), StoreError> {
        for item in self.db.iter() {
            let (key, value) = item?;
            if let Some(write) = decode_record(&key, &value)? {
                for w in write {
                    each(w)?;
                }
            }
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
        match self.db.get(incident_key(id.number()))? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    fn incident_alert(&self, id: IncidentId, index: u32) -> Result<Option<IncidentAlert>, StoreError> {
        match self.db.get(alert_key(id.number(), index))? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(b"i/").rev() {
            let (_, bytes) = item?;
            let mut inc: Incident = serde_json::from_slice(&bytes)?;
            let wanted =
                filter.status.is_none_or(|s| inc.status == s) && filter.severity.is_none_or(|s| inc.severity == s);
            if wanted {
                self.fill_alerts(&mut inc)?;
                out.push(inc);
                if out.len() >= filter.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn each_open(&self, each: &mut dyn FnMut(OpenEntry)) -> Result<(), StoreError> {
        for item in self.db.scan_prefix(b"o/") {
            let (_, value) = item?;
            each(serde_json::from_slice(&value)?);
        }
        Ok(())
    }

    fn timeline(&self, id: IncidentId) -> Result<Vec<Event>, StoreError> {
        let prefix = [b"t/".as_slice(), &id.number().to_be_bytes()].concat();
        let mut timeline = Vec::new();
        for item in self.db.scan_prefix(prefix) {
            let (_, value) = item?;
            // One event, or a run of consecutive ones (see `batch`).
            if value.first() == Some(&b'[') {
                timeline.extend(serde_json::from_slice::<Vec<Event>>(&value)?);
            } else {
                timeline.push(serde_json::from_slice(&value)?);
            }
        }
        Ok(timeline)
    }

    fn episode(&self, fingerprint: &str, starts_at: DateTime<Utc>) -> Result<Option<Episode>, StoreError> {
        match self.db.get(episode_key(fingerprint, starts_at))? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    fn last_incident(&self) -> Result<u64, StoreError> {
        read_u64(&self.db, LAST_INCIDENT)
    }

    fn run(&self, id: RunId) -> Result<Option<Run>, StoreError> {
        match self.db.get(run_key(id.number()))? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    fn unfinished_runs(&self) -> Result<Vec<Run>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(b"u/") {
            let (key, _) = item?;
            if let Some(run) = number_of(&key).map(|n| self.run(RunId::new(n))).transpose()?.flatten() {
                out.push(run);
            }
        }
        Ok(out)
    }

    fn runs_since(&self, since: DateTime<Utc>) -> Result<Vec<Run>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(b"r/").rev() {
            let run: Run = serde_json::from_slice(&item?.1)?;
            if run.created_at < since {
                break;
            }
            out.push(run);
        }
        Ok(out)
    }

    fn last_run(&self) -> Result<u64, StoreError> {
        read_u64(&self.db, LAST_RUN)
    }

    fn audit(&self, limit: usize) -> Result<Vec<Audit>, StoreError> {
        self.db
            .scan_prefix(b"a/")
            .rev()
            .take(limit)
            .map(|item| Ok(serde_json::from_slice(&item?.1)?))
            .collect()
    }

    fn automation(&self) -> Result<crate::automation::Automation, StoreError> {
        match self.db.get(AUTOMATION)? {
            Some(bytes) => Ok(serde_json::from_slice(&bytes)?),
            None => Ok(Default::default()),
        }
    }

    fn notice(&self, id: &str) -> Result<Option<crate::notices::Notice>, StoreError> {
        match self.db.get([b"n/".as_slice(), id.as_bytes()].concat())? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    fn pending_notices(&self) -> Result<Vec<crate::notices::Notice>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(b"q/") {
            let (key, _) = item?;
            let id = String::from_utf8_lossy(&key[2..]).into_owned();
            out.extend(self.notice(&id)?);
        }
        out.sort_by_key(|n| n.created_at);
        Ok(out)
    }

    fn schedule_mark(&self, playbook: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let key = [b"s/".as_slice(), playbook.as_bytes()].concat();
        Ok(self
            .db
            .get(key)?
            .and_then(|v| DateTime::parse_from_rfc3339(&String::from_utf8_lossy(&v)).ok())
            .map(|t| t.with_timezone(&Utc)))
    }

    fn session(&self, id_hash: &str) -> Result<Option<crate::store::Session>, StoreError> {
        self.db
            .get(session_key(id_hash))?
            .map(|v| Ok(serde_json::from_slice(&v)?))
            .transpose()
    }

    fn claim_schedule(
        &self,
        playbook: &str,
        expected: Option<DateTime<Utc>>,
        new: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let key = [b"s/".as_slice(), playbook.as_bytes()].concat();
        let text = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true).into_bytes();
        let swapped = self.db.compare_and_swap(key, expected.map(text), Some(text(new)))?;
        if swapped.is_ok() {
            self.db.flush()?;
        }
        Ok(swapped.is_ok())
    }

    fn run_for_key(&self, key: &str) -> Result<Option<RunId>, StoreError> {
        match self.db.get(idempotency_key(key))? {
            Some(v) => {
                let text = String::from_utf8_lossy(&v);
                let id = text
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("the run of idempotency key {key:?}: {e}")))?;
                Ok(Some(id))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Alert;
    use crate::incident::Status;
    use crate::ledger::{AlertOutcome, Ledger};
    use std::sync::Arc;

    const STARTS: &str = "2026-11-29T12:00:00Z";

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
    }

    /// An open incident with two firing alerts as the first layout kept it.
    fn write_format_1(dir: &Path) {
        let db = sled::open(dir).unwrap();
        let alert = |fp: &str| {
            serde_json::json!({"fingerprint": fp, "status": "firing", "labels": {"alertname": "ServiceDown"},
                               "annotations": {}, "starts_at": STARTS, "ends_at": null, "repeats": 2})
        };
        let record = serde_json::json!({"id": "INC-1", "title": "ServiceDown", "status": "open", "severity": "P1",
            "playbook": "default", "group": {"alertname": "ServiceDown"}, "opened_at": STARTS,
            "mitigated_at": null, "resolved_at": null, "alerts": [alert("a"), alert("b")], "runs": [], "events": 0});
        db.insert(incident_key(1), serde_json::to_vec(&record).unwrap())
            .unwrap();
        db.insert(open_key(1), &[][..]).unwrap();
        for fp in ["a", "b"] {
            let episode = serde_json::json!({"incident": 1, "status": "firing"});
            db.insert(episode_key(fp, at(STARTS)), serde_json::to_vec(&episode).unwrap())
                .unwrap();
        }
        db.insert(LAST_INCIDENT, &1u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }

    fn open_when_free(dir: &Path) -> SledStore {
        for _ in 0..100 {
            if let Ok(store) = SledStore::open(dir) {
                return store;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        SledStore::open(dir).unwrap()
    }

    #[test]
    fn a_store_of_the_first_layout_keeps_its_alerts_and_resolves_with_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        write_format_1(dir.path());
        let store: Arc<dyn Store> = Arc::new(open_when_free(dir.path()));
        let inc = store.incident(IncidentId::new(1)).unwrap().unwrap();
        assert_eq!((inc.alerts.len(), inc.alert_count, inc.alerts_firing), (2, 2, 2));
        assert_eq!(inc.alerts[1].repeats, 2);
        let mut entries = Vec::new();
        store.each_open(&mut |e| entries.push(e)).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].playbook, "default");

        let mut intake = Ledger::new(store.clone(), vec![]).unwrap();
        let resolve = |fp: &str| Alert {
            fingerprint: fp.into(),
            status: AlertStatus::Resolved,
            labels: [("alertname".to_string(), "ServiceDown".to_string())].into(),
            annotations: Default::default(),
            starts_at: at(STARTS),
            ends_at: Some(at("2026-11-29T13:00:00Z")),
            generator_url: None,
            extras: None,
        };
        let outcome = intake.apply(&[resolve("a")], Utc::now()).unwrap().outcomes;
        assert_eq!(outcome, [AlertOutcome::Resolved]);
        store.commit(vec![intake.take_writes()]).unwrap();
        intake.committed();
        assert_eq!(
            store.incident(IncidentId::new(1)).unwrap().unwrap().status,
            Status::Open,
            "b still fires"
        );
        intake.apply(&[resolve("b")], Utc::now()).unwrap();
        store.commit(vec![intake.take_writes()]).unwrap();
        let inc = store.incident(IncidentId::new(1)).unwrap().unwrap();
        assert_eq!(inc.status, Status::Resolved);
        assert!(inc.alerts.iter().all(|a| a.status == AlertStatus::Resolved));
    }

    #[test]
    fn events_written_together_read_back_in_order_however_they_were_grouped() {
        use crate::incident::EventKind;
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let note = |i: u32| EventKind::Note {
            note: crate::incident::NoteKind::Note,
            text: format!("event {i}"),
            by: "test".into(),
            owner: None,
            due: None,
        };
        let event = |incident: u64, seq: u32| Write::Event {
            incident: IncidentId::new(incident),
            seq,
            event: Event {
                at: at(STARTS),
                what: note(seq),
            },
        };
        // Two incidents interleaved; incident 1 has a gap (3 comes later).
        let first = vec![
            event(1, 0),
            event(2, 0),
            event(1, 1),
            event(1, 2),
            event(2, 1),
            event(1, 4),
        ];
        store.commit(vec![first]).unwrap();
        store
            .commit(vec![vec![event(1, 3)], vec![event(1, 5), event(1, 6)]])
            .unwrap();
        let texts = |n: u64| -> Vec<String> {
            store
                .timeline(IncidentId::new(n))
                .unwrap()
                .into_iter()
                .map(|e| match e.what {
                    EventKind::Note { text, .. } => text,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let expected = |seqs: &[u32]| -> Vec<String> { seqs.iter().map(|i| format!("event {i}")).collect() };
        assert_eq!(texts(1), expected(&[0, 1, 2, 3, 4, 5, 6]));
        assert_eq!(texts(2), expected(&[0, 1]));
        // Fewer keys than events: runs of consecutive events share one.
        let keys = store
            .db
            .scan_prefix([b"t/".as_slice(), &1u64.to_be_bytes()].concat())
            .count();
        assert_eq!(keys, 4, "0-2, 3, 4, 5-6");
    }

    #[test]
    fn a_store_from_a_newer_laojun_is_refused_and_an_older_one_is_brought_up() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.insert(FORMAT, &99u64.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        // sled may still hold its lock on the directory for a moment.
        let mut refused = String::new();
        for _ in 0..100 {
            match SledStore::open(dir.path()) {
                Ok(_) => panic!("a store of layout 99 was opened"),
                Err(e @ StoreError::Newer { .. }) => {
                    refused = e.to_string();
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
        assert!(
            refused.contains("newer laojun (layout 99; this one reads up to 3)"),
            "{refused}"
        );

        let older = tempfile::tempdir().unwrap();
        {
            let db = sled::open(older.path()).unwrap();
            db.insert(FORMAT, &2u64.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let store = open_when_free(older.path());
        assert_eq!(read_u64(&store.db, FORMAT).unwrap(), CURRENT_FORMAT);
    }
}
