//! The audit trail: who did what (manual runs, approvals, notes, resolves,
//! pause and resume), written with the other writes of its commit.

use super::Ledger;
use crate::store::{Audit, Write};

impl Ledger {
    /// Queues an audit record with the other writes.
    pub fn audit(&mut self, record: Audit) {
        self.pending.push(Write::Audit(record));
    }
}
