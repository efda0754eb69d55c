//! The ledger's behaviour through its public methods, on a real store.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::*;
use crate::alert::{Alert, Status as AlertStatus};
use crate::incident::{NoteKind, Status};
use crate::playbook::DEFAULT_PLAYBOOK;
use crate::severity::Severity;
use crate::store::{IncidentFilter, SledStore};

fn playbook(src: &str) -> Playbook {
    let mut found = Vec::new();
    let name = src.lines().next().unwrap().trim_start_matches("name: ").to_string();
    let path = std::path::PathBuf::from(format!("playbooks/{name}.yaml"));
    crate::playbook::load(&path, src, &mut found).unwrap_or_else(|| panic!("{found:?}"))
}

fn setup() -> (tempfile::TempDir, Arc<dyn Store>, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let store = reopen(dir.path());
    let pbs = vec![playbook(
        "name: service-down\ntrigger: {alerts: ['alertname=\"ServiceDown\"']}\nseverity: {rules: [{match: ['env=\"prod\"'], severity: P0}]}\ngroup_by: [alertname, namespace]\n",
    )];
    let ledger = Ledger::new(store.clone(), pbs).unwrap();
    (dir, store, ledger)
}

fn alert(fp: &str, status: AlertStatus, starts: &str, labels: &[(&str, &str)]) -> Alert {
    Alert {
        fingerprint: fp.into(),
        status,
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        annotations: BTreeMap::new(),
        starts_at: DateTime::parse_from_rfc3339(starts).unwrap().with_timezone(&Utc),
        ends_at: None,
        generator_url: None,
        extras: None,
    }
}

/// Opens the store again once the one dropped lets go of its lock
/// (sled's flusher thread lets go a little after the drop).
fn reopen(dir: &std::path::Path) -> Arc<dyn Store> {
    for _ in 0..100 {
        if let Ok(store) = SledStore::open(dir) {
            return Arc::new(store);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Arc::new(SledStore::open(dir).unwrap())
}

fn commit(ledger: &mut Ledger, store: &Arc<dyn Store>) {
    store.commit(vec![ledger.take_writes()]).unwrap();
    ledger.committed();
}

const T0: &str = "2026-11-29T12:00:00Z";
const T1: &str = "2026-11-29T13:00:00Z";

#[test]
fn repeats_and_ha_double_sends_change_nothing() {
    let (_d, store, mut ledger) = setup();
    let a = alert(
        "aa",
        AlertStatus::Firing,
        T0,
        &[("alertname", "ServiceDown"), ("namespace", "web")],
    );
    let first = ledger.apply(std::slice::from_ref(&a), Utc::now()).unwrap();
    assert_eq!(first.outcomes, [AlertOutcome::Opened]);
    assert_eq!(first.opened.len(), 1);
    commit(&mut ledger, &store);
    for _ in 0..3 {
        let again = ledger.apply(std::slice::from_ref(&a), Utc::now()).unwrap();
        assert_eq!(again.outcomes, [AlertOutcome::Repeat]);
        assert!(again.opened.is_empty());
        commit(&mut ledger, &store);
    }
    let all = store
        .incidents(&IncidentFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].alerts[0].repeats, 3);
    let kinds: Vec<String> = store
        .timeline(IncidentId::new(1))
        .unwrap()
        .iter()
        .map(|e| e.what.describe())
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
}

#[test]
fn alerts_of_one_group_share_an_incident_and_worse_ones_raise_its_severity() {
    let (_d, store, mut ledger) = setup();
    let a = alert(
        "aa",
        AlertStatus::Firing,
        T0,
        &[
            ("alertname", "ServiceDown"),
            ("namespace", "web"),
            ("severity", "critical"),
        ],
    );
    let b = alert(
        "bb",
        AlertStatus::Firing,
        T0,
        &[("alertname", "ServiceDown"), ("namespace", "web"), ("env", "prod")],
    );
    let c = alert(
        "cc",
        AlertStatus::Firing,
        T0,
        &[("alertname", "ServiceDown"), ("namespace", "api")],
    );
    let r = ledger.apply(&[a, b, c], Utc::now()).unwrap();
    assert_eq!(
        r.outcomes,
        [AlertOutcome::Opened, AlertOutcome::Joined, AlertOutcome::Opened]
    );
    commit(&mut ledger, &store);
    let inc = store.incident(IncidentId::new(1)).unwrap().unwrap();
    assert_eq!(inc.severity, Severity::P0);
    assert_eq!(inc.alerts.len(), 2);
    assert!(store.timeline(IncidentId::new(1)).unwrap().iter().any(|e| matches!(
        e.what,
        EventKind::SeverityRaised {
            from: Severity::P1,
            to: Severity::P0,
            ..
        }
    )));
}

#[test]
fn the_incident_resolves_when_all_its_alerts_resolve_and_a_new_episode_opens_a_new_one() {
    let (_d, store, mut ledger) = setup();
    let labels = [("alertname", "ServiceDown"), ("namespace", "web")];
    ledger
        .apply(&[alert("aa", AlertStatus::Firing, T0, &labels)], Utc::now())
        .unwrap();
    commit(&mut ledger, &store);
    let mut resolved = alert("aa", AlertStatus::Resolved, T0, &labels);
    resolved.ends_at = Some(Utc::now());
    assert_eq!(
        ledger.apply(&[resolved.clone()], Utc::now()).unwrap().outcomes,
        [AlertOutcome::Resolved]
    );
    commit(&mut ledger, &store);
    assert_eq!(
        store.incident(IncidentId::new(1)).unwrap().unwrap().status,
        Status::Resolved
    );
    // A late firing send of the same episode does not reopen it.
    assert_eq!(
        ledger
            .apply(&[alert("aa", AlertStatus::Firing, T0, &labels)], Utc::now())
            .unwrap()
            .outcomes,
        [AlertOutcome::Stale]
    );
    assert_eq!(
        ledger.apply(&[resolved], Utc::now()).unwrap().outcomes,
        [AlertOutcome::Repeat]
    );
    // The same fingerprint firing again later is a new episode.
    let again = ledger
        .apply(&[alert("aa", AlertStatus::Firing, T1, &labels)], Utc::now())
        .unwrap();
    assert_eq!(again.outcomes, [AlertOutcome::Opened]);
    commit(&mut ledger, &store);
    assert_eq!(
        store.incident(IncidentId::new(2)).unwrap().unwrap().status,
        Status::Open
    );
}

#[test]
fn an_incident_of_many_alerts_resolves_with_its_last_alert_also_across_a_restart() {
    let (dir, store, mut ledger) = setup();
    let labels = [("alertname", "ServiceDown"), ("namespace", "web")];
    let fp = |i: usize| format!("fp{i}");
    for i in 0..300 {
        ledger
            .apply(&[alert(&fp(i), AlertStatus::Firing, T0, &labels)], Utc::now())
            .unwrap();
        commit(&mut ledger, &store);
    }
    let resolve = |i: usize| {
        let mut a = alert(&fp(i), AlertStatus::Resolved, T0, &labels);
        a.ends_at = Some(Utc::now());
        a
    };
    let all: Vec<Alert> = (0..299).map(resolve).collect();
    ledger.apply(&all[..150], Utc::now()).unwrap();
    commit(&mut ledger, &store);
    drop(ledger);
    drop(store);
    let store = reopen(dir.path());
    let mut ledger = Ledger::new(store.clone(), vec![]).unwrap();
    ledger.apply(&all[150..], Utc::now()).unwrap();
    commit(&mut ledger, &store);
    let inc = store.incident(IncidentId::new(1)).unwrap().unwrap();
    assert_eq!(
        (inc.status, inc.alerts.len(), inc.alerts_firing),
        (Status::Open, 300, 1)
    );
    assert_eq!(inc.alerts[299].fingerprint, "fp299", "alerts keep their order");
    assert_eq!(
        ledger.apply(&[resolve(299)], Utc::now()).unwrap().outcomes,
        [AlertOutcome::Resolved]
    );
    commit(&mut ledger, &store);
    let inc = store.incident(IncidentId::new(1)).unwrap().unwrap();
    assert_eq!(inc.status, Status::Resolved);
    assert!(inc.alerts.iter().all(|a| a.status == AlertStatus::Resolved));
    assert_eq!(ledger.open_counts(), [0; 4]);
    assert_eq!(inc.events as usize, store.timeline(IncidentId::new(1)).unwrap().len());
}

#[test]
fn writes_taken_in_several_chunks_of_one_commit_build_on_each_other() {
    // The writer takes writes in chunks as a commit grows and applies
    // them all at its end: a later request in the same commit must see
    // what the earlier ones did to the same incident.
    let (_d, store, mut ledger) = setup();
    let labels = [("alertname", "ServiceDown"), ("namespace", "web")];
    let mut chunks = Vec::new();
    for i in 0..3 {
        ledger
            .apply(
                &[alert(&format!("fp{i}"), AlertStatus::Firing, T0, &labels)],
                Utc::now(),
            )
            .unwrap();
        chunks.push(ledger.take_writes());
    }
    let mut resolved = alert("fp0", AlertStatus::Resolved, T0, &labels);
    resolved.ends_at = Some(Utc::now());
    ledger.apply(&[resolved], Utc::now()).unwrap();
    chunks.push(ledger.take_writes());
    store.commit(chunks).unwrap();
    ledger.committed();
    let inc = store.incident(IncidentId::new(1)).unwrap().unwrap();
    let fingerprints: Vec<&str> = inc.alerts.iter().map(|a| a.fingerprint.as_str()).collect();
    assert_eq!(fingerprints, ["fp0", "fp1", "fp2"]);
    assert_eq!((inc.alerts_firing, inc.alerts[0].status), (2, AlertStatus::Resolved));
    let timeline = store.timeline(IncidentId::new(1)).unwrap();
    assert_eq!(inc.events as usize, timeline.len());
    let fired = timeline
        .iter()
        .filter(|e| matches!(e.what, EventKind::AlertFired { .. }))
        .count();
    assert_eq!(fired, 3, "no event overwrote another: {timeline:?}");
}

#[test]
fn alerts_no_playbook_matches_are_kept_under_the_default_playbook() {
    let (_d, store, mut ledger) = setup();
    ledger
        .apply(
            &[alert(
                "zz",
                AlertStatus::Firing,
                T0,
                &[("alertname", "DiskFull"), ("severity", "warning")],
            )],
            Utc::now(),
        )
        .unwrap();
    commit(&mut ledger, &store);
    let inc = store.incident(IncidentId::new(1)).unwrap().unwrap();
    assert_eq!(inc.playbook, DEFAULT_PLAYBOOK);
    assert_eq!(inc.severity, Severity::P2);
    assert_eq!(inc.title, "DiskFull");
}

#[test]
fn a_resolved_alert_never_seen_firing_is_recorded_resolved() {
    let (_d, store, mut ledger) = setup();
    let r = ledger
        .apply(
            &[alert("qq", AlertStatus::Resolved, T0, &[("alertname", "X")])],
            Utc::now(),
        )
        .unwrap();
    assert!(r.opened.is_empty(), "remediation never starts on a resolved alert");
    commit(&mut ledger, &store);
    assert_eq!(
        store.incident(IncidentId::new(1)).unwrap().unwrap().status,
        Status::Resolved
    );
}

#[test]
fn state_is_rebuilt_from_the_store() {
    let (dir, store, mut ledger) = setup();
    let labels = [("alertname", "ServiceDown"), ("namespace", "web")];
    ledger
        .apply(&[alert("aa", AlertStatus::Firing, T0, &labels)], Utc::now())
        .unwrap();
    commit(&mut ledger, &store);
    drop(ledger);
    drop(store);
    let store = reopen(dir.path());
    let mut ledger = Ledger::new(store.clone(), vec![]).unwrap();
    assert_eq!(
        ledger
            .apply(&[alert("aa", AlertStatus::Firing, T0, &labels)], Utc::now())
            .unwrap()
            .outcomes,
        [AlertOutcome::Repeat]
    );
    let r = ledger
        .apply(
            &[alert("bb", AlertStatus::Firing, T0, &[("alertname", "Other")])],
            Utc::now(),
        )
        .unwrap();
    assert_eq!(
        r.opened[0].incident.id.to_string(),
        "INC-2",
        "numbering goes on after a restart"
    );
}

fn note(kind: NoteKind, text: &str) -> Change {
    Change::Note(Note {
        kind,
        text: text.into(),
        owner: None,
        due: None,
    })
}

#[test]
fn notes_and_resolve_by_hand() {
    let (_d, store, mut ledger) = setup();
    ledger
        .apply(
            &[alert("aa", AlertStatus::Firing, T0, &[("alertname", "X")])],
            Utc::now(),
        )
        .unwrap();
    commit(&mut ledger, &store);
    let one = IncidentId::new(1);
    ledger
        .change(one, note(NoteKind::RootCause, "pool too small"), "alice", Utc::now())
        .unwrap();
    let resolve = || Change::Resolve {
        reason: Some("fixed by hand".into()),
    };
    let changed = ledger.change(one, resolve(), "alice", Utc::now()).unwrap();
    assert_eq!(changed.incident.status, Status::Resolved);
    assert!(
        ledger.take_changed().contains(&one),
        "a resolve rewrites the postmortem"
    );
    commit(&mut ledger, &store);
    assert!(matches!(
        ledger.change(one, resolve(), "bob", Utc::now()),
        Err(RequestError::Conflict(_))
    ));
    assert!(matches!(
        ledger.change(IncidentId::new(9), note(NoteKind::Note, "x"), "bob", Utc::now()),
        Err(RequestError::NotFound(_))
    ));
    ledger
        .change(one, note(NoteKind::Lesson, "after the fact"), "bob", Utc::now())
        .unwrap();
    assert_eq!(ledger.take_changed(), vec![one], "a note after resolve rewrites it");
    commit(&mut ledger, &store);
    let timeline = store.timeline(one).unwrap();
    assert!(matches!(
        &timeline.last().unwrap().what,
        EventKind::Note {
            note: NoteKind::Lesson,
            ..
        }
    ));
    assert!(timeline.iter().any(|e| matches!(
        &e.what,
        EventKind::StatusChanged { reason: Some(r), by, .. } if r == "fixed by hand" && by == "alice"
    )));
    assert_eq!(store.incident(one).unwrap().unwrap().events as usize, timeline.len());
}

#[test]
fn a_person_may_lower_severity_and_alerts_raise_it_again() {
    let (_d, store, mut ledger) = setup();
    let crit = [("alertname", "X"), ("severity", "critical")];
    ledger
        .apply(&[alert("aa", AlertStatus::Firing, T0, &crit)], Utc::now())
        .unwrap();
    commit(&mut ledger, &store);
    let one = IncidentId::new(1);
    let first = store.incident(one).unwrap().unwrap().severity;
    let lower = Change::Severity {
        severity: crate::severity::Severity::P3,
        reason: "only staging".into(),
    };
    let changed = ledger.change(one, lower.clone(), "alice", Utc::now()).unwrap();
    assert_eq!(changed.incident.severity, crate::severity::Severity::P3);
    assert_eq!(ledger.open_counts()[crate::severity::Severity::P3 as usize], 1);
    assert!(matches!(
        ledger.change(one, lower, "bob", Utc::now()),
        Err(RequestError::Conflict(_))
    ));
    commit(&mut ledger, &store);
    // A later alert of the group classified higher raises it again.
    ledger
        .apply(&[alert("bb", AlertStatus::Firing, T0, &crit)], Utc::now())
        .unwrap();
    commit(&mut ledger, &store);
    let inc = store.incident(one).unwrap().unwrap();
    assert_eq!(inc.severity, first);
    let history: Vec<_> = inc
        .severity_history
        .iter()
        .map(|h| (h.from, h.to, h.by.as_str()))
        .collect();
    assert_eq!(
        history,
        vec![
            (None, first, "alerts"),
            (Some(first), crate::severity::Severity::P3, "alice"),
            (Some(crate::severity::Severity::P3), first, "alerts"),
        ]
    );
}

#[test]
fn a_reopened_incident_takes_its_groups_alerts_unless_another_is_open() {
    let (_d, store, mut ledger) = setup();
    let labels = [("alertname", "X")];
    ledger
        .apply(&[alert("aa", AlertStatus::Firing, T0, &labels)], Utc::now())
        .unwrap();
    ledger
        .apply(&[alert("aa", AlertStatus::Resolved, T0, &labels)], Utc::now())
        .unwrap();
    commit(&mut ledger, &store);
    let one = IncidentId::new(1);
    let reopen = || Change::Reopen {
        reason: "errors are back".into(),
    };
    let changed = ledger.change(one, reopen(), "alice", Utc::now()).unwrap();
    assert_eq!(changed.incident.status, Status::Open);
    assert!(changed.incident.resolved_at.is_none());
    assert!(matches!(
        ledger.change(one, reopen(), "alice", Utc::now()),
        Err(RequestError::Conflict(_))
    ));
    commit(&mut ledger, &store);
    // A new alert of the group joins the reopened incident.
    let applied = ledger
        .apply(&[alert("bb", AlertStatus::Firing, T0, &labels)], Utc::now())
        .unwrap();
    assert_eq!(applied.outcomes, vec![AlertOutcome::Joined]);
    ledger
        .apply(&[alert("bb", AlertStatus::Resolved, T0, &labels)], Utc::now())
        .unwrap();
    commit(&mut ledger, &store);
    assert_eq!(store.incident(one).unwrap().unwrap().status, Status::Resolved);
    // Another incident of the group opens; reopening the first is refused, naming it.
    ledger
        .apply(&[alert("cc", AlertStatus::Firing, T0, &labels)], Utc::now())
        .unwrap();
    commit(&mut ledger, &store);
    match ledger.change(one, reopen(), "alice", Utc::now()) {
        Err(RequestError::Conflict(why)) => assert!(why.starts_with("INC-2 is open for the same group"), "{why}"),
        other => panic!("{other:?}"),
    }
}
