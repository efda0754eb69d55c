//! Incident records, alerts and episodes as the commit in progress sees
//! them. Each is read from the store once and changed here; `take_writes`
//! hands out what changed, and the store answers for everything again once
//! the commit is on disk (`committed`). A commit may take its writes in
//! several chunks (see `writer`): a later chunk must build on the earlier
//! ones, which the store does not have yet, so they stay here until then.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::ids::IncidentId;
use crate::incident::{Incident, IncidentAlert};
use crate::store::{Episode, Store, StoreError, Write};

#[derive(Debug, Default)]
pub struct Overlay {
    /// Incident records (without alerts) read or changed since the last commit.
    records: BTreeMap<IncidentId, Incident>,
    /// Alerts read or changed since the last commit, by (incident, index).
    alerts: BTreeMap<(IncidentId, u32), IncidentAlert>,
    /// Episodes written since the last commit.
    episodes: HashMap<(String, DateTime<Utc>), Episode>,
    /// Episodes read ahead for this commit's alerts (`prefetch`): a key
    /// here that has none is not stored.
    stored: Option<HashMap<(String, DateTime<Utc>), Episode>>,
    /// The keys `stored` covers.
    looked_up: std::collections::HashSet<(String, DateTime<Utc>)>,
    /// Records and alerts changed since the last `take_writes`.
    changed_records: BTreeSet<IncidentId>,
    changed_alerts: BTreeSet<(IncidentId, u32)>,
}

impl Overlay {
    /// Incident `n`'s record, to change (written by the next
    /// `take_writes`); `None` when there is no such incident.
    pub fn record(&mut self, store: &dyn Store, n: IncidentId) -> Result<Option<&mut Incident>, StoreError> {
        if !self.has_record(store, n)? {
            return Ok(None);
        }
        self.changed_records.insert(n);
        Ok(self.records.get_mut(&n))
    }

    /// Whether incident `n` exists; reads its record once per commit but
    /// does not write it back unless `record` changes it.
    pub fn has_record(&mut self, store: &dyn Store, n: IncidentId) -> Result<bool, StoreError> {
        if let Entry::Vacant(slot) = self.records.entry(n) {
            match store.incident_record(n)? {
                Some(inc) => slot.insert(inc),
                None => return Ok(false),
            };
        }
        Ok(true)
    }

    /// A record already read or made in this commit.
    pub fn get(&self, n: IncidentId) -> Option<&Incident> {
        self.records.get(&n)
    }

    /// A new incident's record.
    pub fn insert(&mut self, n: IncidentId, incident: Incident) {
        self.records.insert(n, incident);
        self.changed_records.insert(n);
    }

    /// One of incident `n`'s alerts, to change, like `record`.
    pub fn alert(
        &mut self,
        store: &dyn Store,
        n: IncidentId,
        index: u32,
    ) -> Result<Option<&mut IncidentAlert>, StoreError> {
        if let Entry::Vacant(slot) = self.alerts.entry((n, index)) {
            match store.incident_alert(n, index)? {
                Some(a) => slot.insert(a),
                None => return Ok(None),
            };
        }
        self.changed_alerts.insert((n, index));
        Ok(self.alerts.get_mut(&(n, index)))
    }

    /// A new alert of incident `n`.
    pub fn insert_alert(&mut self, n: IncidentId, index: u32, alert: IncidentAlert) {
        self.alerts.insert((n, index), alert);
        self.changed_alerts.insert((n, index));
    }

    /// The episode (fingerprint + startsAt) as this commit left it, else as stored.
    pub fn episode(
        &self,
        store: &dyn Store,
        fingerprint: &str,
        starts_at: DateTime<Utc>,
    ) -> Result<Option<Episode>, StoreError> {
        let key = (fingerprint.to_string(), starts_at);
        if let Some(e) = self.episodes.get(&key) {
            return Ok(Some(*e));
        }
        match &self.stored {
            Some(stored) if self.looked_up.contains(&key) => Ok(stored.get(&key).copied()),
            _ => store.episode(fingerprint, starts_at),
        }
    }

    /// Reads the stored episodes of `keys` in one go, for `episode` to
    /// answer from until the commit ends.
    pub fn prefetch(&mut self, store: &dyn Store, keys: Vec<(String, DateTime<Utc>)>) -> Result<(), StoreError> {
        let found = store.episodes(&keys)?;
        self.looked_up = keys.into_iter().collect();
        self.stored = Some(found);
        Ok(())
    }

    /// Remembers an episode written in this commit (the caller writes it).
    pub fn put_episode(&mut self, fingerprint: &str, starts_at: DateTime<Utc>, episode: Episode) {
        self.episodes.insert((fingerprint.to_string(), starts_at), episode);
    }

    /// Appends the records and alerts changed since the last call.
    pub fn take_writes(&mut self, into: &mut Vec<Write>) {
        for n in std::mem::take(&mut self.changed_records) {
            if let Some(inc) = self.records.get(&n) {
                into.push(Write::Incident(inc.clone()));
            }
        }
        for (incident, index) in std::mem::take(&mut self.changed_alerts) {
            if let Some(alert) = self.alerts.get(&(incident, index)) {
                into.push(Write::Alert {
                    incident,
                    index,
                    alert: alert.clone(),
                });
            }
        }
    }

    /// How many writes `take_writes` would add now.
    pub fn writes_waiting(&self) -> usize {
        self.changed_records.len() + self.changed_alerts.len()
    }

    /// The writes taken are on disk: read from the store from now on.
    pub fn committed(&mut self) {
        self.episodes.clear();
        self.stored = None;
        self.looked_up.clear();
        self.records.clear();
        self.alerts.clear();
    }

    /// Forgets everything, written or not (after a failed commit).
    pub fn clear(&mut self) {
        *self = Overlay::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Status as AlertStatus;
    use crate::store::SledStore;

    fn incident(n: u64) -> Incident {
        Incident {
            id: IncidentId::new(n),
            title: "t".into(),
            status: crate::incident::Status::Open,
            severity: crate::severity::Severity::P2,
            playbook: "default".into(),
            group: BTreeMap::new(),
            opened_at: Utc::now(),
            started_at: None,
            severity_history: Vec::new(),
            acknowledged_at: None,
            acknowledged_by: None,
            commander: None,
            responders: Vec::new(),
            mitigated_at: None,
            resolved_at: None,
            alerts: Vec::new(),
            alert_count: 0,
            alerts_firing: 0,
            runs: Vec::new(),
            events: 0,
        }
    }

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_change_in_an_earlier_chunk_is_seen_by_a_later_one_before_the_commit() {
        let (_dir, store) = store();
        let mut o = Overlay::default();
        o.insert(IncidentId::new(1), incident(1));
        let mut first = Vec::new();
        o.take_writes(&mut first);
        store.apply(vec![first]).unwrap();
        // The store has chunk one applied but a later chunk must still see
        // this commit's own version, which it changes further.
        o.record(&store, IncidentId::new(1)).unwrap().unwrap().events = 7;
        let mut second = Vec::new();
        o.take_writes(&mut second);
        assert!(matches!(&second[..], [Write::Incident(i)] if i.events == 7));
        store.commit(vec![second]).unwrap();
        o.committed();
        assert_eq!(
            o.record(&store, IncidentId::new(1)).unwrap().unwrap().events,
            7,
            "read back from the store"
        );
    }

    #[test]
    fn reading_a_record_writes_nothing_and_a_missing_one_is_none() {
        let (_dir, store) = store();
        store.commit(vec![vec![Write::Incident(incident(3))]]).unwrap();
        let mut o = Overlay::default();
        assert!(o.has_record(&store, IncidentId::new(3)).unwrap());
        assert!(!o.has_record(&store, IncidentId::new(4)).unwrap());
        assert!(o.record(&store, IncidentId::new(4)).unwrap().is_none());
        assert_eq!(o.writes_waiting(), 0);
        let mut writes = Vec::new();
        o.take_writes(&mut writes);
        assert!(writes.is_empty());
    }

    #[test]
    fn an_episode_of_this_commit_wins_over_the_stored_one_until_committed() {
        let (_dir, store) = store();
        let at = Utc::now();
        let stored = Episode {
            incident: IncidentId::new(1),
            alert: 0,
            status: AlertStatus::Firing,
        };
        store
            .commit(vec![vec![Write::Episode {
                fingerprint: "f".into(),
                starts_at: at,
                episode: stored,
            }]])
            .unwrap();
        let mut o = Overlay::default();
        let resolved = Episode {
            status: AlertStatus::Resolved,
            ..stored
        };
        o.put_episode("f", at, resolved);
        assert_eq!(o.episode(&store, "f", at).unwrap(), Some(resolved));
        o.committed();
        assert_eq!(
            o.episode(&store, "f", at).unwrap(),
            Some(stored),
            "the store never got it"
        );
    }

    #[test]
    fn after_clear_the_store_answers_again() {
        let (_dir, store) = store();
        let mut o = Overlay::default();
        o.insert(IncidentId::new(9), incident(9));
        o.clear();
        assert_eq!(o.writes_waiting(), 0);
        assert!(!o.has_record(&store, IncidentId::new(9)).unwrap());
    }
}
