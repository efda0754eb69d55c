//! The open incidents by number, and how many there are of each severity
//! (for the metrics), kept up to date as they change.

use std::collections::HashMap;

use crate::ids::IncidentId;
use crate::severity::Severity;

/// Open incidents by number and how many there are of each severity (for
/// the metrics), kept up to date as they change.
#[derive(Default)]
pub struct OpenSet {
    severity: HashMap<IncidentId, Severity>,
    pub counts: [i64; 4],
}

impl OpenSet {
    pub fn insert(&mut self, n: IncidentId, severity: Severity) {
        if let Some(old) = self.severity.insert(n, severity) {
            self.counts[old as usize] -= 1;
        }
        self.counts[severity as usize] += 1;
    }

    pub fn remove(&mut self, n: IncidentId) -> bool {
        match self.severity.remove(&n) {
            Some(old) => {
                self.counts[old as usize] -= 1;
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, n: IncidentId) -> bool {
        self.severity.contains_key(&n)
    }

    pub fn clear(&mut self) {
        *self = OpenSet::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_severity_changes_and_removals() {
        let mut o = OpenSet::default();
        o.insert(IncidentId::new(1), Severity::P2);
        o.insert(IncidentId::new(2), Severity::P2);
        o.insert(IncidentId::new(1), Severity::P0);
        assert_eq!(o.counts, [1, 0, 1, 0]);
        assert!(o.remove(IncidentId::new(2)));
        assert!(!o.remove(IncidentId::new(2)), "removed once");
        assert_eq!(o.counts, [1, 0, 0, 0]);
        assert!(o.contains(IncidentId::new(1)) && !o.contains(IncidentId::new(2)));
    }
}
