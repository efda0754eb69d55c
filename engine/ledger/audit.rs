//! The audit trail: who did what (manual runs, approvals, notes, resolves,
//! pause and resume), written with the other writes of its commit.

use super::Ledger;
use crate::store::{Audit, Write};

impl Ledger {
    /// Queues a notice's state.
    pub fn notice(&mut self, notice: crate::notices::Notice) {
        self.pending.push(Write::Notice(notice));
    }

    /// Queues the pauses now in force.
    pub fn automation(&mut self, state: crate::automation::Automation) {
        self.pending.push(Write::Automation(state));
    }

    /// Queues an audit record with the other writes.
    pub fn audit(&mut self, record: Audit) {
        self.pending.push(Write::Audit(record));
    }
}
