//! A playbook's guards: `cooldown_secs` (per incident group) and
//! `max_runs` (per playbook and window). The history they judge from is
//! rebuilt from the store's runs after a restart.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::playbook::Playbook;
use crate::run::{Run, RunStatus, TriggerKind};

/// How long runs are remembered for cooldowns and max_runs after a restart.
pub const WINDOW_HOURS: i64 = 24;

/// Per playbook: when its runs started, and for which group.
#[derive(Debug, Default)]
pub struct History {
    starts: HashMap<String, Vec<(DateTime<Utc>, String)>>,
}

impl History {
    /// Lets a run of `playbook` for `group` start at `now` and counts it,
    /// or says which guard stops it. Check and count are one step, so two
    /// runs racing for the last slot do not both get it.
    pub fn admit(&mut self, playbook: &Playbook, group: &str, now: DateTime<Utc>) -> Result<(), String> {
        let starts = self.starts.entry(playbook.name.clone()).or_default();
        if let Some(cooldown) = playbook.guards.cooldown {
            let limit = now - chrono::Duration::from_std(cooldown).unwrap_or_default();
            if let Some((at, _)) = starts.iter().rev().find(|(at, g)| g == group && *at > limit) {
                return Err(format!(
                    "cooldown: playbook `{}` ran for this group at {} and waits {}s between runs (guards.cooldown_secs)",
                    playbook.name,
                    at.format("%H:%M:%S"),
                    cooldown.as_secs()
                ));
            }
        }
        if let Some((count, window)) = playbook.guards.max_runs {
            let limit = now - chrono::Duration::from_std(window).unwrap_or_default();
            let recent = starts.iter().filter(|(at, _)| *at > limit).count();
            if recent >= count as usize {
                return Err(format!(
                    "max_runs: playbook `{}` already ran {recent} times in the last {}s (guards.max_runs allows {count})",
                    playbook.name,
                    window.as_secs()
                ));
            }
        }
        starts.push((now, group.to_string()));
        Ok(())
    }

    /// Counts the alert-started runs of a previous process (`recent` is
    /// newest first, as the store lists them).
    pub fn rebuild(&mut self, recent: &[Run]) {
        for r in recent.iter().rev().filter(|r| {
            r.trigger == TriggerKind::Alert
                && r.counts_for_guards
                    .unwrap_or(!matches!(r.status, RunStatus::Refused | RunStatus::Paused))
        }) {
            if let (Some(p), Some(g)) = (&r.playbook, &r.group) {
                self.starts
                    .entry(p.clone())
                    .or_default()
                    .push((r.created_at, g.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playbook(guards: &str) -> Playbook {
        let src = format!("name: pb\ntrigger: {{alerts: ['alertname=\"X\"']}}\nrunbooks: []\nguards: {guards}\n");
        let mut found = Vec::new();
        let pb = crate::playbook::load(std::path::Path::new("playbooks/pb.yaml"), &src, &mut found);
        assert!(found.is_empty(), "{found:?}");
        pb.expect("the playbook loads")
    }

    #[test]
    fn a_cooldown_holds_per_group_and_ends() {
        let pb = playbook("{cooldown_secs: 60}");
        let mut h = History::default();
        let t0 = Utc::now();
        assert!(h.admit(&pb, "a", t0).is_ok());
        let why = h.admit(&pb, "a", t0 + chrono::Duration::seconds(30)).unwrap_err();
        assert!(why.starts_with("cooldown:"), "{why}");
        assert!(h.admit(&pb, "b", t0 + chrono::Duration::seconds(30)).is_ok());
        assert!(h.admit(&pb, "a", t0 + chrono::Duration::seconds(61)).is_ok());
    }

    #[test]
    fn max_runs_counts_every_group_in_the_window() {
        let pb = playbook("{max_runs: {count: 2, window_secs: 60}}");
        let mut h = History::default();
        let t0 = Utc::now();
        assert!(h.admit(&pb, "a", t0).is_ok());
        assert!(h.admit(&pb, "b", t0).is_ok());
        let why = h.admit(&pb, "c", t0).unwrap_err();
        assert!(why.contains("already ran 2 times"), "{why}");
        assert!(h.admit(&pb, "c", t0 + chrono::Duration::seconds(61)).is_ok());
    }
}
