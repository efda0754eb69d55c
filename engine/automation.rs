//! Whether automation may act: paused everywhere, or for some playbooks.
//! Kept in the store (so a pause survives a restart) and shown by
//! `GET /api/v1/automation`. Plain data; the executor holds the current one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who paused, why and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub since: DateTime<Utc>,
}

impl Pause {
    fn describe(&self) -> String {
        match &self.reason {
            Some(reason) => format!("by {}: {reason}", self.by),
            None => format!("by {}", self.by),
        }
    }
}

/// One pause or resume, applied by the writer to the pauses as stored at
/// that moment (under the replicas' write lock), so two replicas pausing
/// two playbooks at once keep both.
#[derive(Debug, Clone)]
pub enum PauseChange {
    /// Pauses everything (`None`) or one playbook.
    Pause {
        playbook: Option<String>,
        pause: Pause,
    },
    Resume {
        playbook: Option<String>,
    },
}

impl PauseChange {
    pub fn apply(&self, a: &mut Automation) {
        match self {
            PauseChange::Pause {
                playbook: Some(name),
                pause,
            } => {
                a.playbooks.insert(name.clone(), pause.clone());
            }
            PauseChange::Pause { playbook: None, pause } => a.paused = Some(pause.clone()),
            PauseChange::Resume { playbook: Some(name) } => {
                a.playbooks.remove(name);
            }
            PauseChange::Resume { playbook: None } => a.paused = None,
        }
    }
}

/// The pauses in force, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Automation {
    /// Everything is paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
    /// These playbooks are paused, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub playbooks: BTreeMap<String, Pause>,
}

impl Automation {
    /// Why nothing may start, when everything is paused.
    pub fn everything_paused(&self) -> Option<String> {
        self.paused
            .as_ref()
            .map(|p| format!("automation is paused ({})", p.describe()))
    }

    /// Why a run of `playbook` (or a manual run, `None`) may not start or go on.
    pub fn blocks(&self, playbook: Option<&str>) -> Option<String> {
        self.everything_paused().or_else(|| {
            let name = playbook?;
            self.playbooks
                .get(name)
                .map(|p| format!("playbook `{name}` is paused ({})", p.describe()))
        })
    }

    /// As `GET /api/v1/automation` shows it.
    pub fn view(&self) -> AutomationView {
        AutomationView {
            paused: self.paused.is_some(),
            reason: self.paused.as_ref().and_then(|p| p.reason.clone()),
            by: self.paused.as_ref().map(|p| p.by.clone()),
            since: self.paused.as_ref().map(|p| p.since),
            paused_playbooks: self
                .playbooks
                .iter()
                .map(|(name, p)| PlaybookPause {
                    playbook: name.clone(),
                    reason: p.reason.clone(),
                    by: p.by.clone(),
                    since: p.since,
                })
                .collect(),
        }
    }
}

/// `GET /api/v1/automation`, and the answer to pause and resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutomationView {
    /// Everything is paused.
    pub paused: bool,
    pub reason: Option<String>,
    pub by: Option<String>,
    pub since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub paused_playbooks: Vec<PlaybookPause>,
}

/// One paused playbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookPause {
    pub playbook: String,
    pub reason: Option<String>,
    pub by: String,
    pub since: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause(by: &str, reason: Option<&str>) -> Pause {
        Pause {
            by: by.into(),
            reason: reason.map(str::to_string),
            since: Utc::now(),
        }
    }

    #[test]
    fn a_playbook_pause_blocks_that_playbook_only_and_a_global_one_blocks_all() {
        let mut a = Automation::default();
        a.playbooks.insert("db".into(), pause("alice", Some("migrating")));
        assert_eq!(
            a.blocks(Some("db")).as_deref(),
            Some("playbook `db` is paused (by alice: migrating)")
        );
        assert_eq!(a.blocks(Some("web")), None);
        assert_eq!(a.blocks(None), None, "manual runs are not a playbook's");
        a.paused = Some(pause("bob", None));
        assert_eq!(a.blocks(None).as_deref(), Some("automation is paused (by bob)"));
        assert_eq!(a.blocks(Some("web")).as_deref(), Some("automation is paused (by bob)"));
        let view = a.view();
        assert!(view.paused);
        assert_eq!(view.paused_playbooks[0].playbook, "db");
    }
}
