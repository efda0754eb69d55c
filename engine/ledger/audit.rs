//! The audit trail: who did what (manual runs, approvals, notes, resolves,
//! pause and resume), written with the other writes of its commit.

use super::Ledger;
use crate::store::{Audit, Write};

impl Ledger {
    /// Queues a notice's state.
    pub fn notice(&mut self, notice: crate::notices::Notice) {
        self.pending.push(Write::Notice(notice));
    }

    /// Pauses or resumes on the pauses as stored (or as this commit left
    /// them), queues the result and answers it.
    pub fn automation(
        &mut self,
        change: &crate::automation::PauseChange,
    ) -> Result<crate::automation::Automation, crate::store::StoreError> {
        let mut now = match self.automation.take() {
            Some(a) => a,
            None => self.store.automation()?,
        };
        change.apply(&mut now);
        self.pending.push(Write::Automation(now.clone()));
        self.automation = Some(now.clone());
        Ok(now)
    }

    /// Queues a web view session's start or end.
    pub fn session(&mut self, write: Write) {
        self.pending.push(write);
    }

    /// Queues an audit record with the other writes.
    pub fn audit(&mut self, record: Audit) {
        self.pending.push(Write::Audit(record));
    }
}
